//! The control protocol without I/O.
//!
//! Everything here is pure: no socket, no runtime, no clock. The handshake is
//! a chain of phases, each a type consumed by value by the message that ends
//! it, so a skipped step does not compile ([`host::AwaitingHello`] →
//! [`host::HelloReceived`] → [`host::AwaitingReady`] →
//! [`host::ValidatingPath`] → [`Negotiated`]; the client's
//! [`client::AwaitingServerHello`] → [`client::ValidatingPath`] →
//! [`Negotiated`]). An established
//! session is [`host::HostProto`] / [`client::ClientProto`]: messages in
//! (`handle(msg, now)`), actions out, and a deadline when time matters. The
//! drivers (`control::host`, `control::client` on quinn and tokio) move bytes
//! and time and do what the actions say.

pub mod client;
pub mod host;

use std::collections::BTreeSet;

use crate::error::{Error, ErrorKind};
use crate::session::SessionConfig;

use super::msg::{clip_reason, close_code, CloseReason};

/// What the handshake settled for one session: the same on both ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// Random id of the session, chosen by the host; binds the data-plane keys.
    pub session_id: [u8; 16],
    /// The data plane's parameters (FEC, shard size, frame limit, and the
    /// receiving end's local limits).
    pub session: SessionConfig,
    /// Bitrate granted, kbit/s.
    pub granted_bitrate_kbps: u32,
    /// UDP port of the host's data socket for this client.
    pub host_data_port: u16,
    /// UDP port of the client's data socket, as the client announced it.
    pub client_data_port: u16,
}

/// The close code and reason for an error that ends a session, by who is at
/// fault: the peer broke the protocol or was too slow ([`close_code::PROTOCOL`]),
/// the peer is not admitted ([`close_code::UNAUTHORIZED`]), or this end failed
/// (I/O, an internal error, its own configuration: [`close_code::INTERNAL`],
/// never blamed on the peer). The one mapping from errors to the wire.
pub fn close_for(e: &Error) -> CloseReason {
    let code = match e.kind() {
        ErrorKind::Protocol | ErrorKind::Timeout | ErrorKind::PinMismatch => close_code::PROTOCOL,
        ErrorKind::Unauthorized => close_code::UNAUTHORIZED,
        ErrorKind::Closed => close_code::NORMAL,
        ErrorKind::Io
        | ErrorKind::Internal
        | ErrorKind::InvalidArgument
        | ErrorKind::QueueFull
        | ErrorKind::InsecureKey => close_code::INTERNAL,
    };
    CloseReason {
        code,
        reason: clip_reason(e.message()).to_string(),
    }
}

/// An error for a peer that broke the protocol.
pub(crate) fn protocol(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Protocol, msg)
}

/// Reliable input sequence numbers remembered for de-duplication.
pub const INPUT_DEDUP_WINDOW: usize = 4096;

/// Delivers each reliable input event once, whichever copy (datagram or
/// stream) arrives first.
#[derive(Debug, Default)]
pub struct InputDedup {
    seen: BTreeSet<u32>,
}

impl InputDedup {
    /// True the first time `seq` is offered. Remembers the last
    /// [`INPUT_DEDUP_WINDOW`] sequences offered (bounded whatever the client
    /// sends), so every later copy of one of them is refused.
    pub fn first(&mut self, seq: u32) -> bool {
        if !self.seen.insert(seq) {
            return false;
        }
        if self.seen.len() > INPUT_DEDUP_WINDOW {
            self.seen.pop_first();
        }
        true
    }
}

#[cfg(test)]
mod tests;
