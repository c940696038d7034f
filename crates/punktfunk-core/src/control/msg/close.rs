//! Why a session ended (docs/PROTOCOL.md §9.7): the [`close_code`] numbers
//! and the [`CloseReason`] both ends can read.

use super::MAX_REASON_LEN;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_clipped_at_a_character_boundary() {
        let ascii = "x".repeat(MAX_REASON_LEN + 10);
        assert_eq!(clip_reason(&ascii).len(), MAX_REASON_LEN);
        // 'ä' is two bytes and '€' three: the cut may not split either.
        let mixed = format!("{}€€", "ä".repeat(127));
        let clipped = clip_reason(&mixed);
        assert_eq!(clipped.len(), 254);
        assert!(clipped.chars().all(|c| c == 'ä'));
        assert_eq!(clip_reason("short"), "short");
    }
}
