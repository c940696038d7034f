//! Control messages and their `PKF1` framing (docs/PROTOCOL.md §9).
//!
//! Every message on the control stream is `"PKF1" | type (u16 BE) | length (u32
//! BE) | payload`. The length is checked against the type's bound *before* any
//! payload is buffered; unknown types up to [`MAX_UNKNOWN_PAYLOAD`] bytes are
//! skipped, so a newer peer can add messages. Input events that may be lost
//! (pointer motion, scroll, analog axes) travel as QUIC datagrams with the same
//! event encoding ([`InputEvent::encode`]).

use crate::error::{Error, ErrorKind, Result};

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

/// A gamepad axis (`PUNKTFUNK_AXIS_*` in C).
pub mod axis {
    /// Left stick, horizontal.
    pub const LEFT_X: u8 = 0;
    /// Left stick, vertical.
    pub const LEFT_Y: u8 = 1;
    /// Right stick, horizontal.
    pub const RIGHT_X: u8 = 2;
    /// Right stick, vertical.
    pub const RIGHT_Y: u8 = 3;
    /// Left trigger.
    pub const LEFT_TRIGGER: u8 = 4;
    /// Right trigger.
    pub const RIGHT_TRIGGER: u8 = 5;
    /// Number of axes.
    pub const COUNT: u8 = 6;
}

/// Gamepad button bits (`PUNKTFUNK_BTN_*` in C) for [`InputEvent::GamepadButtons`].
pub mod button {
    /// A (south).
    pub const A: u32 = 1 << 0;
    /// B (east).
    pub const B: u32 = 1 << 1;
    /// X (west).
    pub const X: u32 = 1 << 2;
    /// Y (north).
    pub const Y: u32 = 1 << 3;
    /// Left shoulder.
    pub const LEFT_SHOULDER: u32 = 1 << 4;
    /// Right shoulder.
    pub const RIGHT_SHOULDER: u32 = 1 << 5;
    /// Back / select / view.
    pub const BACK: u32 = 1 << 6;
    /// Start / menu.
    pub const START: u32 = 1 << 7;
    /// Guide / home.
    pub const GUIDE: u32 = 1 << 8;
    /// Left stick press.
    pub const LEFT_STICK: u32 = 1 << 9;
    /// Right stick press.
    pub const RIGHT_STICK: u32 = 1 << 10;
    /// D-pad up.
    pub const DPAD_UP: u32 = 1 << 11;
    /// D-pad down.
    pub const DPAD_DOWN: u32 = 1 << 12;
    /// D-pad left.
    pub const DPAD_LEFT: u32 = 1 << 13;
    /// D-pad right.
    pub const DPAD_RIGHT: u32 = 1 << 14;
}

/// One input event from client to host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputEvent {
    /// A key went down (platform-neutral key code, e.g. USB HID usage).
    KeyDown {
        /// Key code.
        code: u32,
    },
    /// A key went up.
    KeyUp {
        /// Key code.
        code: u32,
    },
    /// Relative pointer motion.
    MouseMove {
        /// Horizontal delta.
        dx: i32,
        /// Vertical delta.
        dy: i32,
    },
    /// Absolute pointer position, normalised to `0..=65535` on each axis.
    MouseMoveAbsolute {
        /// Horizontal position.
        x: u16,
        /// Vertical position.
        y: u16,
    },
    /// A mouse button changed (1 left, 2 middle, 3 right, 4/5 side).
    MouseButton {
        /// Button number.
        button: u8,
        /// Pressed (true) or released.
        down: bool,
    },
    /// Scroll, in 1/120 of a notch.
    Scroll {
        /// Horizontal amount.
        dx: i16,
        /// Vertical amount.
        dy: i16,
    },
    /// The full button state of a gamepad ([`button`] bits).
    GamepadButtons {
        /// Gamepad number.
        pad: u8,
        /// Pressed buttons.
        buttons: u32,
    },
    /// One gamepad axis ([`axis`]); sticks −32768..=32767, triggers 0..=32767.
    GamepadAxis {
        /// Gamepad number.
        pad: u8,
        /// Axis number.
        axis: u8,
        /// Value.
        value: i16,
    },
}

/// Encoded size of every input event.
pub const INPUT_EVENT_LEN: usize = 12;

/// The kind of an [`InputEvent`], without its fields: what bindings name with
/// a string or a constant (`PUNKTFUNK_INPUT_*` in C, whose values are
/// [`InputKind::number`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// [`InputEvent::KeyDown`].
    KeyDown,
    /// [`InputEvent::KeyUp`].
    KeyUp,
    /// [`InputEvent::MouseMove`].
    MouseMove,
    /// [`InputEvent::MouseMoveAbsolute`].
    MouseMoveAbsolute,
    /// [`InputEvent::MouseButton`].
    MouseButton,
    /// [`InputEvent::Scroll`].
    Scroll,
    /// [`InputEvent::GamepadButtons`].
    GamepadButtons,
    /// [`InputEvent::GamepadAxis`].
    GamepadAxis,
}

impl InputKind {
    /// Every kind, in wire order.
    pub const ALL: [InputKind; 8] = [
        InputKind::KeyDown,
        InputKind::KeyUp,
        InputKind::MouseMove,
        InputKind::MouseMoveAbsolute,
        InputKind::MouseButton,
        InputKind::Scroll,
        InputKind::GamepadButtons,
        InputKind::GamepadAxis,
    ];

    /// The kind's number: its wire kind byte, 1 to 8.
    pub fn number(self) -> u32 {
        self as u32 + 1
    }

    /// The kind numbered `n` ([`InputKind::number`]), if any.
    pub fn from_number(n: u32) -> Option<InputKind> {
        Self::ALL.get((n as usize).wrapping_sub(1)).copied()
    }

    /// The kind's name in the TypeScript SDK (`keyDown`, `mouseMove`, ...).
    pub fn name(self) -> &'static str {
        match self {
            InputKind::KeyDown => "keyDown",
            InputKind::KeyUp => "keyUp",
            InputKind::MouseMove => "mouseMove",
            InputKind::MouseMoveAbsolute => "mouseMoveAbsolute",
            InputKind::MouseButton => "mouseButton",
            InputKind::Scroll => "scroll",
            InputKind::GamepadButtons => "gamepadButtons",
            InputKind::GamepadAxis => "gamepadAxis",
        }
    }

    /// The kind named `name` ([`InputKind::name`]), if any.
    pub fn from_name(name: &str) -> Option<InputKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// An input event as one flat record, the way the bindings carry it (a C
/// struct, a JavaScript object): every field wide enough for any value a
/// caller may pass, `None` where absent. [`InputEvent::from_fields`] narrows
/// and range-checks the fields a kind uses and ignores the rest;
/// [`InputEvent::fields`] fills exactly those.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InputFields {
    /// Key code (key down / up).
    pub code: Option<u32>,
    /// Horizontal delta (mouse move: i32; scroll: i16).
    pub dx: Option<i64>,
    /// Vertical delta (mouse move: i32; scroll: i16).
    pub dy: Option<i64>,
    /// Absolute horizontal position, 0..=65535.
    pub x: Option<i64>,
    /// Absolute vertical position, 0..=65535.
    pub y: Option<i64>,
    /// Mouse button number, 0..=255.
    pub button: Option<i64>,
    /// Button pressed.
    pub down: Option<bool>,
    /// Gamepad number, 0..=255.
    pub pad: Option<i64>,
    /// Gamepad button bits ([`button`]).
    pub buttons: Option<u32>,
    /// Gamepad axis ([`axis`], below [`axis::COUNT`]).
    pub axis: Option<i64>,
    /// Axis value, −32768..=32767.
    pub value: Option<i64>,
}

impl InputEvent {
    /// The event's kind.
    pub fn kind(&self) -> InputKind {
        match self {
            InputEvent::KeyDown { .. } => InputKind::KeyDown,
            InputEvent::KeyUp { .. } => InputKind::KeyUp,
            InputEvent::MouseMove { .. } => InputKind::MouseMove,
            InputEvent::MouseMoveAbsolute { .. } => InputKind::MouseMoveAbsolute,
            InputEvent::MouseButton { .. } => InputKind::MouseButton,
            InputEvent::Scroll { .. } => InputKind::Scroll,
            InputEvent::GamepadButtons { .. } => InputKind::GamepadButtons,
            InputEvent::GamepadAxis { .. } => InputKind::GamepadAxis,
        }
    }

    /// The event as a flat record: the fields of its kind set, the rest `None`.
    pub fn fields(&self) -> InputFields {
        let mut f = InputFields::default();
        match *self {
            InputEvent::KeyDown { code } | InputEvent::KeyUp { code } => f.code = Some(code),
            InputEvent::MouseMove { dx, dy } => (f.dx, f.dy) = (Some(dx.into()), Some(dy.into())),
            InputEvent::MouseMoveAbsolute { x, y } => (f.x, f.y) = (Some(x.into()), Some(y.into())),
            InputEvent::MouseButton { button, down } => {
                (f.button, f.down) = (Some(button.into()), Some(down))
            }
            InputEvent::Scroll { dx, dy } => (f.dx, f.dy) = (Some(dx.into()), Some(dy.into())),
            InputEvent::GamepadButtons { pad, buttons } => {
                (f.pad, f.buttons) = (Some(pad.into()), Some(buttons))
            }
            InputEvent::GamepadAxis { pad, axis, value } => {
                (f.pad, f.axis, f.value) = (Some(pad.into()), Some(axis.into()), Some(value.into()))
            }
        }
        f
    }

    /// Builds an event of `kind` from a flat record. A field the kind uses
    /// that is `None` or does not fit its type (or an axis that is not one of
    /// [`axis`]) is an [`ErrorKind::InvalidArgument`] error naming the kind and
    /// the field; fields the kind does not use are ignored.
    pub fn from_fields(kind: InputKind, f: &InputFields) -> Result<InputEvent> {
        let ty = kind.name();
        fn need<T>(v: Option<T>, ty: &str, field: &str) -> Result<T> {
            v.ok_or_else(|| Error::invalid(format!("input {ty} needs {field}")))
        }
        fn fit<T: TryFrom<i64>>(v: Option<i64>, ty: &str, field: &str) -> Result<T> {
            let v = need(v, ty, field)?;
            T::try_from(v).map_err(|_| Error::invalid(format!("input {ty}: {field} {v} is out of range")))
        }
        Ok(match kind {
            InputKind::KeyDown => InputEvent::KeyDown {
                code: need(f.code, ty, "code")?,
            },
            InputKind::KeyUp => InputEvent::KeyUp {
                code: need(f.code, ty, "code")?,
            },
            InputKind::MouseMove => InputEvent::MouseMove {
                dx: fit(f.dx, ty, "dx")?,
                dy: fit(f.dy, ty, "dy")?,
            },
            InputKind::MouseMoveAbsolute => InputEvent::MouseMoveAbsolute {
                x: fit(f.x, ty, "x")?,
                y: fit(f.y, ty, "y")?,
            },
            InputKind::MouseButton => InputEvent::MouseButton {
                button: fit(f.button, ty, "button")?,
                down: need(f.down, ty, "down")?,
            },
            InputKind::Scroll => InputEvent::Scroll {
                dx: fit(f.dx, ty, "dx")?,
                dy: fit(f.dy, ty, "dy")?,
            },
            InputKind::GamepadButtons => InputEvent::GamepadButtons {
                pad: fit(f.pad, ty, "pad")?,
                buttons: need(f.buttons, ty, "buttons")?,
            },
            InputKind::GamepadAxis => {
                let a: u8 = fit(f.axis, ty, "axis")?;
                if a >= axis::COUNT {
                    return Err(Error::invalid(format!(
                        "input {ty}: axis {a} is not an axis (0..{})",
                        axis::COUNT
                    )));
                }
                InputEvent::GamepadAxis {
                    pad: fit(f.pad, ty, "pad")?,
                    axis: a,
                    value: fit(f.value, ty, "value")?,
                }
            }
        })
    }

    /// Whether losing this event would leave the host in a wrong state (key and
    /// button edges): such events go on the reliable stream, the rest as datagrams.
    pub fn must_arrive(&self) -> bool {
        matches!(
            self,
            InputEvent::KeyDown { .. }
                | InputEvent::KeyUp { .. }
                | InputEvent::MouseButton { .. }
                | InputEvent::GamepadButtons { .. }
        )
    }

    /// Fixed 12-byte encoding: kind byte, then fields big-endian, zero padded.
    pub fn encode(&self) -> [u8; INPUT_EVENT_LEN] {
        let mut b = [0u8; INPUT_EVENT_LEN];
        match *self {
            InputEvent::KeyDown { code } => {
                b[0] = 1;
                b[1..5].copy_from_slice(&code.to_be_bytes());
            }
            InputEvent::KeyUp { code } => {
                b[0] = 2;
                b[1..5].copy_from_slice(&code.to_be_bytes());
            }
            InputEvent::MouseMove { dx, dy } => {
                b[0] = 3;
                b[1..5].copy_from_slice(&dx.to_be_bytes());
                b[5..9].copy_from_slice(&dy.to_be_bytes());
            }
            InputEvent::MouseMoveAbsolute { x, y } => {
                b[0] = 4;
                b[1..3].copy_from_slice(&x.to_be_bytes());
                b[3..5].copy_from_slice(&y.to_be_bytes());
            }
            InputEvent::MouseButton { button, down } => {
                b[0] = 5;
                b[1] = button;
                b[2] = down as u8;
            }
            InputEvent::Scroll { dx, dy } => {
                b[0] = 6;
                b[1..3].copy_from_slice(&dx.to_be_bytes());
                b[3..5].copy_from_slice(&dy.to_be_bytes());
            }
            InputEvent::GamepadButtons { pad, buttons } => {
                b[0] = 7;
                b[1] = pad;
                b[2..6].copy_from_slice(&buttons.to_be_bytes());
            }
            InputEvent::GamepadAxis { pad, axis, value } => {
                b[0] = 8;
                b[1] = pad;
                b[2] = axis;
                b[3..5].copy_from_slice(&value.to_be_bytes());
            }
        }
        b
    }

    /// Decodes [`InputEvent::encode`]'s output; anything else is a protocol error.
    pub fn decode(b: &[u8]) -> Result<InputEvent> {
        let b: &[u8; INPUT_EVENT_LEN] = b.try_into().map_err(|_| {
            protocol(format!(
                "input event of {} bytes, expected {INPUT_EVENT_LEN}",
                b.len()
            ))
        })?;
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let ev = match b[0] {
            1 => InputEvent::KeyDown { code: u32_at(1) },
            2 => InputEvent::KeyUp { code: u32_at(1) },
            3 => InputEvent::MouseMove {
                dx: u32_at(1) as i32,
                dy: u32_at(5) as i32,
            },
            4 => InputEvent::MouseMoveAbsolute {
                x: u16_at(1),
                y: u16_at(3),
            },
            5 if b[2] <= 1 => InputEvent::MouseButton {
                button: b[1],
                down: b[2] == 1,
            },
            6 => InputEvent::Scroll {
                dx: u16_at(1) as i16,
                dy: u16_at(3) as i16,
            },
            7 => InputEvent::GamepadButtons {
                pad: b[1],
                buttons: u32_at(2),
            },
            8 if b[2] < axis::COUNT => InputEvent::GamepadAxis {
                pad: b[1],
                axis: b[2],
                value: u16_at(3) as i16,
            },
            k => return Err(protocol(format!("bad input event kind {k} or field"))),
        };
        if ev.encode() != *b {
            return Err(protocol("input event has non-zero padding"));
        }
        Ok(ev)
    }
}

/// Size of an input datagram: sequence number (u32 BE) and the event.
pub const INPUT_DATAGRAM_LEN: usize = 4 + INPUT_EVENT_LEN;

/// Encodes an input event with its sequence number (QUIC datagram payload).
pub fn encode_input_datagram(seq: u32, event: &InputEvent) -> [u8; INPUT_DATAGRAM_LEN] {
    let mut b = [0u8; INPUT_DATAGRAM_LEN];
    b[..4].copy_from_slice(&seq.to_be_bytes());
    b[4..].copy_from_slice(&event.encode());
    b
}

/// Decodes [`encode_input_datagram`]'s output.
pub fn decode_input_datagram(b: &[u8]) -> Result<(u32, InputEvent)> {
    if b.len() != INPUT_DATAGRAM_LEN {
        return Err(protocol(format!(
            "input datagram of {} bytes, expected {INPUT_DATAGRAM_LEN}",
            b.len()
        )));
    }
    let seq = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Ok((seq, InputEvent::decode(&b[4..])?))
}

/// Cuts a close reason to [`MAX_REASON_LEN`] bytes at a character boundary.
pub fn clip_reason(text: &str) -> &str {
    let mut end = text.len().min(MAX_REASON_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Why a side closed the session; both ends can read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseReason {
    /// Machine-readable code (see [`close_code`]).
    pub code: u32,
    /// Human-readable text, at most [`MAX_REASON_LEN`] bytes.
    pub reason: String,
}

/// Close codes.
pub mod close_code {
    /// Normal end of the session (e.g. end of stream).
    pub const NORMAL: u32 = 0;
    /// The peer broke the protocol.
    pub const PROTOCOL: u32 = 1;
    /// Nothing was heard within the idle timeout.
    pub const IDLE: u32 = 2;
    /// The host is shutting down.
    pub const HOST_SHUTDOWN: u32 = 3;
    /// The application closed the session with its own reason.
    pub const APPLICATION: u32 = 4;
    /// The host admits only authorized clients, and this one is not among them.
    pub const UNAUTHORIZED: u32 = 5;
    /// The closing side failed (I/O, an internal error): not the peer's fault.
    pub const INTERNAL: u32 = 6;
}

/// One control message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlMsg {
    /// Client → host, first message.
    ClientHello {
        /// [`CONTROL_VERSION`].
        version: u16,
        /// Bitrate the client asks for, kbit/s.
        requested_bitrate_kbps: u32,
        /// Largest shard payload the client accepts (bounds its datagram size).
        max_shard_payload: u16,
        /// `CAP_*` bits.
        capabilities: u32,
        /// UDP port of the client's data-plane socket (same IP as the QUIC connection).
        data_port: u16,
    },
    /// Host → client, answer to the hello.
    ServerHello {
        /// Random id of this session; binds the key derivation.
        session_id: [u8; 16],
        /// Initial FEC percentage.
        fec_percent: u8,
        /// Data shards per FEC block.
        max_data_shards: u16,
        /// Shard payload bytes per datagram.
        shard_payload: u16,
        /// Largest frame the host will send.
        max_frame_bytes: u32,
        /// Bitrate granted, kbit/s (at most `MAX_BITRATE_KBPS`).
        granted_bitrate_kbps: u32,
        /// UDP port of the host's data-plane socket for this client.
        data_port: u16,
    },
    /// Client → host: data socket ready, keys derived; the host may stream.
    Ready,
    /// Client → host: please send a keyframe (frames from `first_lost` on were lost).
    KeyframeRequest {
        /// First lost frame index.
        first_lost: u64,
    },
    /// Host → client: the FEC percentage changed (informational).
    FecChanged {
        /// New percentage.
        percent: u8,
    },
    /// Client → host: cumulative receive counters.
    LossReport {
        /// Frames delivered so far.
        frames_completed: u64,
        /// Frames lost so far.
        frames_dropped: u64,
        /// Shards rebuilt by FEC so far.
        fec_recovered_shards: u64,
        /// Datagrams received so far.
        packets_received: u64,
    },
    /// Client → host: send probe filler at this rate for this long.
    ProbeRequest {
        /// Target rate, kbit/s (at most `MAX_PROBE_KBPS`).
        target_kbps: u32,
        /// Duration, ms (at most 5000).
        duration_ms: u32,
    },
    /// Host → client: the probe is over; what the host sent.
    ProbeDone {
        /// Probe datagrams sent.
        packets_sent: u64,
        /// Probe wire bytes sent.
        bytes_sent: u64,
        /// Probe datagrams dropped locally (socket buffer full).
        send_drops: u64,
        /// How long sending took, µs.
        duration_us: u64,
        /// The rate the host sent at, kbit/s: below the rate asked for when
        /// the host clamped it to its probe ceiling, 0 when it refused.
        rate_kbps: u32,
    },
    /// Host → client: the client's data address answered the path challenge;
    /// frames flow to it from now on (the end of the handshake).
    PathValidated,
    /// Client → host: an input event that must arrive (key and button edges),
    /// with its sequence number (the same event may also come as a datagram;
    /// the host delivers whichever copy arrives first).
    Input {
        /// Client-assigned sequence number of the event.
        seq: u32,
        /// The event.
        event: InputEvent,
    },
    /// Either way: the sender is closing the session.
    Close(CloseReason),
}

fn protocol(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Protocol, msg)
}

impl ControlMsg {
    fn type_id(&self) -> u16 {
        match self {
            ControlMsg::ClientHello { .. } => ty::CLIENT_HELLO,
            ControlMsg::ServerHello { .. } => ty::SERVER_HELLO,
            ControlMsg::Ready => ty::READY,
            ControlMsg::KeyframeRequest { .. } => ty::KEYFRAME_REQUEST,
            ControlMsg::FecChanged { .. } => ty::FEC_CHANGED,
            ControlMsg::LossReport { .. } => ty::LOSS_REPORT,
            ControlMsg::ProbeRequest { .. } => ty::PROBE_REQUEST,
            ControlMsg::ProbeDone { .. } => ty::PROBE_DONE,
            ControlMsg::PathValidated => ty::PATH_VALIDATED,
            ControlMsg::Input { .. } => ty::INPUT,
            ControlMsg::Close(_) => ty::CLOSE,
        }
    }

    /// Encodes the message with its `PKF1` header.
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(64);
        match self {
            ControlMsg::ClientHello {
                version,
                requested_bitrate_kbps,
                max_shard_payload,
                capabilities,
                data_port,
            } => {
                p.extend_from_slice(&version.to_be_bytes());
                p.extend_from_slice(&requested_bitrate_kbps.to_be_bytes());
                p.extend_from_slice(&max_shard_payload.to_be_bytes());
                p.extend_from_slice(&capabilities.to_be_bytes());
                p.extend_from_slice(&data_port.to_be_bytes());
            }
            ControlMsg::ServerHello {
                session_id,
                fec_percent,
                max_data_shards,
                shard_payload,
                max_frame_bytes,
                granted_bitrate_kbps,
                data_port,
            } => {
                p.extend_from_slice(session_id);
                p.push(*fec_percent);
                p.extend_from_slice(&max_data_shards.to_be_bytes());
                p.extend_from_slice(&shard_payload.to_be_bytes());
                p.extend_from_slice(&max_frame_bytes.to_be_bytes());
                p.extend_from_slice(&granted_bitrate_kbps.to_be_bytes());
                p.extend_from_slice(&data_port.to_be_bytes());
            }
            ControlMsg::Ready => {}
            ControlMsg::KeyframeRequest { first_lost } => p.extend_from_slice(&first_lost.to_be_bytes()),
            ControlMsg::FecChanged { percent } => p.push(*percent),
            ControlMsg::LossReport {
                frames_completed,
                frames_dropped,
                fec_recovered_shards,
                packets_received,
            } => {
                for v in [
                    frames_completed,
                    frames_dropped,
                    fec_recovered_shards,
                    packets_received,
                ] {
                    p.extend_from_slice(&v.to_be_bytes());
                }
            }
            ControlMsg::ProbeRequest {
                target_kbps,
                duration_ms,
            } => {
                p.extend_from_slice(&target_kbps.to_be_bytes());
                p.extend_from_slice(&duration_ms.to_be_bytes());
            }
            ControlMsg::ProbeDone {
                packets_sent,
                bytes_sent,
                send_drops,
                duration_us,
                rate_kbps,
            } => {
                for v in [packets_sent, bytes_sent, send_drops, duration_us] {
                    p.extend_from_slice(&v.to_be_bytes());
                }
                p.extend_from_slice(&rate_kbps.to_be_bytes());
            }
            ControlMsg::PathValidated => {}
            ControlMsg::Input { seq, event } => {
                p.extend_from_slice(&seq.to_be_bytes());
                p.extend_from_slice(&event.encode());
            }
            ControlMsg::Close(r) => {
                p.extend_from_slice(&r.code.to_be_bytes());
                p.extend_from_slice(clip_reason(&r.reason).as_bytes());
            }
        }
        let mut out = Vec::with_capacity(HEADER_LEN + p.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.type_id().to_be_bytes());
        out.extend_from_slice(&(p.len() as u32).to_be_bytes());
        out.extend_from_slice(&p);
        out
    }
}

/// The payload length bound of a message type: `Some((min, max))` for known
/// types, `None` for unknown ones (skipped up to [`MAX_UNKNOWN_PAYLOAD`]).
pub fn payload_bounds(type_id: u16) -> Option<(usize, usize)> {
    let exact = |n| Some((n, n));
    match type_id {
        ty::CLIENT_HELLO => exact(14),
        ty::SERVER_HELLO => exact(31),
        ty::READY => exact(0),
        ty::KEYFRAME_REQUEST => exact(8),
        ty::FEC_CHANGED => exact(1),
        ty::LOSS_REPORT => exact(32),
        ty::PROBE_REQUEST => exact(8),
        ty::PROBE_DONE => exact(36),
        ty::PATH_VALIDATED => exact(0),
        ty::INPUT => exact(INPUT_DATAGRAM_LEN),
        ty::CLOSE => Some((4, 4 + MAX_REASON_LEN)),
        _ => None,
    }
}

/// A parsed `PKF1` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Message type.
    pub type_id: u16,
    /// Payload length, already checked against the type's bound.
    pub len: usize,
    /// False for a type this version does not know (skip the payload).
    pub known: bool,
}

/// Parses and checks a header: magic, then the length against the type's bound.
pub fn decode_header(b: &[u8; HEADER_LEN]) -> Result<Header> {
    if b[..4] != MAGIC {
        return Err(protocol("control message without the PKF1 magic"));
    }
    let type_id = u16::from_be_bytes([b[4], b[5]]);
    let len = u32::from_be_bytes([b[6], b[7], b[8], b[9]]) as usize;
    match payload_bounds(type_id) {
        Some((min, max)) if (min..=max).contains(&len) => Ok(Header {
            type_id,
            len,
            known: true,
        }),
        Some((min, max)) => Err(protocol(format!(
            "control message type {type_id} with {len} payload bytes (allowed {min}..={max})"
        ))),
        None if len <= MAX_UNKNOWN_PAYLOAD => Ok(Header {
            type_id,
            len,
            known: false,
        }),
        None => Err(protocol(format!(
            "unknown control message type {type_id} with {len} payload bytes (skippable up to {MAX_UNKNOWN_PAYLOAD})"
        ))),
    }
}

/// Decodes the payload of a known message type (lengths already checked).
pub fn decode_payload(type_id: u16, p: &[u8]) -> Result<ControlMsg> {
    let bounds = payload_bounds(type_id).ok_or_else(|| protocol(format!("unknown type {type_id}")))?;
    if !(bounds.0..=bounds.1).contains(&p.len()) {
        return Err(protocol(format!("type {type_id}: {} payload bytes", p.len())));
    }
    let u16_at = |i: usize| u16::from_be_bytes([p[i], p[i + 1]]);
    let u32_at = |i: usize| u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
    let u64_at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&p[i..i + 8]);
        u64::from_be_bytes(a)
    };
    Ok(match type_id {
        ty::CLIENT_HELLO => ControlMsg::ClientHello {
            version: u16_at(0),
            requested_bitrate_kbps: u32_at(2),
            max_shard_payload: u16_at(6),
            capabilities: u32_at(8),
            data_port: u16_at(12),
        },
        ty::SERVER_HELLO => {
            let mut session_id = [0u8; 16];
            session_id.copy_from_slice(&p[..16]);
            ControlMsg::ServerHello {
                session_id,
                fec_percent: p[16],
                max_data_shards: u16_at(17),
                shard_payload: u16_at(19),
                max_frame_bytes: u32_at(21),
                granted_bitrate_kbps: u32_at(25),
                data_port: u16_at(29),
            }
        }
        ty::READY => ControlMsg::Ready,
        ty::KEYFRAME_REQUEST => ControlMsg::KeyframeRequest {
            first_lost: u64_at(0),
        },
        ty::FEC_CHANGED => ControlMsg::FecChanged { percent: p[0] },
        ty::LOSS_REPORT => ControlMsg::LossReport {
            frames_completed: u64_at(0),
            frames_dropped: u64_at(8),
            fec_recovered_shards: u64_at(16),
            packets_received: u64_at(24),
        },
        ty::PROBE_REQUEST => ControlMsg::ProbeRequest {
            target_kbps: u32_at(0),
            duration_ms: u32_at(4),
        },
        ty::PROBE_DONE => ControlMsg::ProbeDone {
            packets_sent: u64_at(0),
            bytes_sent: u64_at(8),
            send_drops: u64_at(16),
            duration_us: u64_at(24),
            rate_kbps: u32_at(32),
        },
        ty::PATH_VALIDATED => ControlMsg::PathValidated,
        ty::INPUT => {
            let (seq, event) = decode_input_datagram(p)?;
            ControlMsg::Input { seq, event }
        }
        ty::CLOSE => ControlMsg::Close(CloseReason {
            code: u32_at(0),
            reason: std::str::from_utf8(&p[4..])
                .map_err(|_| protocol("close reason is not UTF-8"))?
                .to_string(),
        }),
        _ => unreachable!("bounds checked above"),
    })
}

/// Decodes one whole message from a buffer (header and payload), for tests
/// and fuzzing; `Ok(None)` for a well-formed message of an unknown type.
pub fn decode(b: &[u8]) -> Result<Option<ControlMsg>> {
    let h: &[u8; HEADER_LEN] = b
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| protocol("control message shorter than its header"))?;
    let h = decode_header(h)?;
    let p = &b[HEADER_LEN..];
    if p.len() != h.len {
        return Err(protocol(format!(
            "payload is {} bytes, header says {}",
            p.len(),
            h.len
        )));
    }
    if !h.known {
        return Ok(None);
    }
    decode_payload(h.type_id, p).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn input_kinds_are_numbered_and_named_once() {
        for (i, k) in InputKind::ALL.into_iter().enumerate() {
            assert_eq!(k.number(), i as u32 + 1);
            assert_eq!(InputKind::from_number(k.number()), Some(k));
            assert_eq!(InputKind::from_name(k.name()), Some(k));
        }
        for n in [0, 9, u32::MAX] {
            assert_eq!(InputKind::from_number(n), None);
        }
        assert_eq!(InputKind::from_name("keydown"), None);
    }

    #[test]
    fn input_fields_round_trip_and_are_checked() {
        let all = [
            InputEvent::KeyDown { code: u32::MAX },
            InputEvent::KeyUp { code: 0 },
            InputEvent::MouseMove {
                dx: i32::MIN,
                dy: i32::MAX,
            },
            InputEvent::MouseMoveAbsolute { x: 0, y: 65535 },
            InputEvent::MouseButton {
                button: 255,
                down: true,
            },
            InputEvent::Scroll {
                dx: -32768,
                dy: 32767,
            },
            InputEvent::GamepadButtons {
                pad: 3,
                buttons: button::A | button::DPAD_RIGHT,
            },
            InputEvent::GamepadAxis {
                pad: 255,
                axis: axis::RIGHT_TRIGGER,
                value: -1,
            },
        ];
        for e in all {
            let f = e.fields();
            assert_eq!(InputEvent::from_fields(e.kind(), &f).unwrap(), e);
            // The kind's byte on the wire is its number.
            assert_eq!(u32::from(e.encode()[0]), e.kind().number());
        }
        let invalid = |k, f: InputFields| {
            let e = InputEvent::from_fields(k, &f).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            e.to_string()
        };
        // A missing field is named; fields the kind does not use are ignored.
        let m = invalid(
            InputKind::MouseButton,
            InputFields {
                button: Some(1),
                ..Default::default()
            },
        );
        assert!(m.contains("mouseButton needs down"), "{m}");
        let ok = InputFields {
            code: Some(4),
            dx: Some(i64::MAX),
            ..Default::default()
        };
        assert_eq!(
            InputEvent::from_fields(InputKind::KeyUp, &ok).unwrap(),
            InputEvent::KeyUp { code: 4 }
        );
        // Every narrowing is checked, at both ends of each range.
        for (k, f, field) in [
            (
                InputKind::MouseMove,
                InputFields {
                    dx: Some(1 << 31),
                    dy: Some(0),
                    ..Default::default()
                },
                "dx",
            ),
            (
                InputKind::MouseMoveAbsolute,
                InputFields {
                    x: Some(0),
                    y: Some(65536),
                    ..Default::default()
                },
                "y",
            ),
            (
                InputKind::MouseMoveAbsolute,
                InputFields {
                    x: Some(-1),
                    y: Some(0),
                    ..Default::default()
                },
                "x",
            ),
            (
                InputKind::MouseButton,
                InputFields {
                    button: Some(256),
                    down: Some(true),
                    ..Default::default()
                },
                "button",
            ),
            (
                InputKind::Scroll,
                InputFields {
                    dx: Some(0),
                    dy: Some(-32769),
                    ..Default::default()
                },
                "dy",
            ),
            (
                InputKind::GamepadButtons,
                InputFields {
                    pad: Some(-1),
                    buttons: Some(0),
                    ..Default::default()
                },
                "pad",
            ),
            (
                InputKind::GamepadAxis,
                InputFields {
                    pad: Some(0),
                    axis: Some(0),
                    value: Some(40_000),
                    ..Default::default()
                },
                "value",
            ),
        ] {
            let m = invalid(k, f);
            assert!(
                m.contains(&format!("{field} ")) && m.contains("out of range"),
                "{m}"
            );
        }
        let m = invalid(
            InputKind::GamepadAxis,
            InputFields {
                pad: Some(0),
                axis: Some(axis::COUNT.into()),
                value: Some(0),
                ..Default::default()
            },
        );
        assert!(m.contains("is not an axis"), "{m}");
    }

    fn samples() -> Vec<ControlMsg> {
        vec![
            ControlMsg::ClientHello {
                version: 1,
                requested_bitrate_kbps: 50_000,
                max_shard_payload: 1344,
                capabilities: CAP_PROBE | CAP_INPUT,
                data_port: 40000,
            },
            ControlMsg::ServerHello {
                session_id: [7; 16],
                fec_percent: 10,
                max_data_shards: 4096,
                shard_payload: 1344,
                max_frame_bytes: 16 << 20,
                granted_bitrate_kbps: 2_000_000,
                data_port: 50000,
            },
            ControlMsg::Ready,
            ControlMsg::KeyframeRequest { first_lost: 99 },
            ControlMsg::FecChanged { percent: 25 },
            ControlMsg::LossReport {
                frames_completed: 1,
                frames_dropped: 2,
                fec_recovered_shards: 3,
                packets_received: 4,
            },
            ControlMsg::ProbeRequest {
                target_kbps: 3_000_000,
                duration_ms: 5000,
            },
            ControlMsg::ProbeDone {
                packets_sent: 1,
                bytes_sent: 2,
                send_drops: 3,
                duration_us: 4,
                rate_kbps: 5,
            },
            ControlMsg::PathValidated,
            ControlMsg::Input {
                seq: 7,
                event: InputEvent::KeyDown { code: 4 },
            },
            ControlMsg::Close(CloseReason {
                code: close_code::NORMAL,
                reason: "end of stream".into(),
            }),
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in samples() {
            let b = m.encode();
            assert_eq!(decode(&b).unwrap(), Some(m.clone()), "{m:?}");
            let (min, max) = payload_bounds(u16::from_be_bytes([b[4], b[5]])).unwrap();
            assert!(
                (min..=max).contains(&(b.len() - HEADER_LEN)),
                "{m:?} within its bound"
            );
        }
    }

    #[test]
    fn lengths_are_checked_before_buffering() {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(&MAGIC);
        h[4..6].copy_from_slice(&ty::SERVER_HELLO.to_be_bytes());
        h[6..10].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode_header(&h).unwrap_err().kind(), ErrorKind::Protocol);
        h[4..6].copy_from_slice(&999u16.to_be_bytes());
        h[6..10].copy_from_slice(&100u32.to_be_bytes());
        assert!(
            !decode_header(&h).unwrap().known,
            "unknown small types are skippable"
        );
        h[6..10].copy_from_slice(&((MAX_UNKNOWN_PAYLOAD + 1) as u32).to_be_bytes());
        assert!(decode_header(&h).is_err(), "unknown huge types are not");
        h[..4].copy_from_slice(b"PKF2");
        assert!(decode_header(&h).is_err());
    }

    #[test]
    fn close_reasons_are_cut_at_a_character_boundary() {
        let long = "ä".repeat(200); // 400 bytes
        let b = ControlMsg::Close(CloseReason {
            code: 4,
            reason: long,
        })
        .encode();
        match decode(&b).unwrap() {
            Some(ControlMsg::Close(r)) => {
                assert!(r.reason.len() <= MAX_REASON_LEN && r.reason.chars().all(|c| c == 'ä'));
            }
            other => panic!("{other:?}"),
        }
    }

    fn any_event() -> impl Strategy<Value = InputEvent> {
        prop_oneof![
            any::<u32>().prop_map(|code| InputEvent::KeyDown { code }),
            any::<u32>().prop_map(|code| InputEvent::KeyUp { code }),
            (any::<i32>(), any::<i32>()).prop_map(|(dx, dy)| InputEvent::MouseMove { dx, dy }),
            (any::<u16>(), any::<u16>()).prop_map(|(x, y)| InputEvent::MouseMoveAbsolute { x, y }),
            (any::<u8>(), any::<bool>()).prop_map(|(button, down)| InputEvent::MouseButton { button, down }),
            (any::<i16>(), any::<i16>()).prop_map(|(dx, dy)| InputEvent::Scroll { dx, dy }),
            (any::<u8>(), any::<u32>())
                .prop_map(|(pad, buttons)| InputEvent::GamepadButtons { pad, buttons }),
            (any::<u8>(), 0..axis::COUNT, any::<i16>())
                .prop_map(|(pad, axis, value)| InputEvent::GamepadAxis { pad, axis, value }),
        ]
    }

    proptest! {
        #[test]
        fn input_events_round_trip(ev in any_event()) {
            prop_assert_eq!(InputEvent::decode(&ev.encode()).unwrap(), ev);
        }

        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&b);
            let _ = InputEvent::decode(&b);
        }

        #[test]
        fn random_payloads_of_valid_length_never_panic(t in 1u16..=10, seed in proptest::collection::vec(any::<u8>(), 300)) {
            let (min, max) = payload_bounds(t).unwrap();
            let len = min + (seed[0] as usize) % (max - min + 1);
            let _ = decode_payload(t, &seed[..len.min(seed.len())]);
        }
    }
}
