//! Input events (docs/PROTOCOL.md §9.5): the gamepad [`axis`] and [`button`]
//! numbers, [`InputEvent`] and its fixed 12-byte encoding, the flat
//! [`InputFields`] record the bindings carry, and the input datagram
//! (sequence number and event) sent over QUIC datagrams.

use super::protocol;
use crate::error::{Error, Result};

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
    /// [`axis`]) is an [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) error naming the kind and
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
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
    }
}
