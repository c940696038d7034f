//! Control messages and their `PKF1` framing (docs/PROTOCOL.md §9).
//!
//! Every message on the control stream is `"PKF1" | type (u16 BE) | length (u32
//! BE) | payload`. The length is checked against the type's bound *before* any
//! payload is buffered; unknown types up to [`MAX_UNKNOWN_PAYLOAD`] bytes are
//! skipped, so a newer peer can add messages. Input events that may be lost
//! (pointer motion, scroll, analog axes) travel as QUIC datagrams with the same
//! event encoding ([`InputEvent::encode`]).
//!
//! `message` holds the message enum and its codec, `input` the input
//! events, `close` the close codes and reasons; everything is re-exported
//! here, so `control::msg::X` is the one path to use.

use crate::error::{Error, ErrorKind};

/// Frame magic of every control message.
pub const MAGIC: [u8; 4] = *b"PKF1";
/// Bytes before the payload: magic, type, length.
pub const HEADER_LEN: usize = 10;
/// Largest payload of a message type this version does not know; larger is a protocol error.
pub const MAX_UNKNOWN_PAYLOAD: usize = 4096;
/// Longest close reason, in bytes of UTF-8.
pub const MAX_REASON_LEN: usize = 256;
/// Protocol version sent in the client hello.
pub const CONTROL_VERSION: u16 = 2;
/// Capability bit: the client can receive probe (speed-test) datagrams.
pub const CAP_PROBE: u32 = 1;
/// Capability bit: the client sends input.
pub const CAP_INPUT: u32 = 2;

/// Message type numbers.
mod ty {
    pub const CLIENT_HELLO: u16 = 1;
    pub const SERVER_HELLO: u16 = 2;
    pub const READY: u16 = 3;
    pub const KEYFRAME_REQUEST: u16 = 4;
    pub const FEC_CHANGED: u16 = 5;
    pub const LOSS_REPORT: u16 = 6;
    pub const PROBE_REQUEST: u16 = 7;
    pub const PROBE_DONE: u16 = 8;
    pub const INPUT: u16 = 9;
    pub const CLOSE: u16 = 10;
    pub const PATH_VALIDATED: u16 = 11;
}

mod close;
mod input;
mod message;

pub use close::{clip_reason, close_code, CloseReason};
pub use input::{
    axis, button, decode_input_datagram, encode_input_datagram, InputEvent, InputFields, InputKind,
    INPUT_DATAGRAM_LEN, INPUT_EVENT_LEN,
};
pub use message::{decode, decode_header, decode_payload, payload_bounds, ControlMsg, Header};

fn protocol(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Protocol, msg)
}
