//! One error taxonomy for every surface.
//!
//! Each [`ErrorKind`] has a stable string code (used by the TypeScript SDK as
//! `PunktfunkError.code`) and a stable negative status (used by the C ABI).
//! Both mappings live here, and only here, so the surfaces cannot drift apart.

use std::fmt;
use std::io;

/// What went wrong, grouped by who is at fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller passed a value outside its documented range (API misuse).
    InvalidArgument,
    /// The session or handle was already closed.
    Closed,
    /// An operating-system I/O call failed in a way that is not a transient drop.
    Io,
    /// A bounded queue was full and the caller asked not to wait.
    QueueFull,
    /// An operation did not finish within its time limit.
    Timeout,
    /// The peer sent something that violates the protocol.
    Protocol,
    /// The peer's identity did not match the pinned fingerprint.
    PinMismatch,
    /// A bug inside punktfunk-core (for example a caught panic).
    Internal,
    /// The host admits only authorized clients, and this one is not among them.
    Unauthorized,
    /// A private key file may be read or written by users other than its
    /// owner; it is refused rather than used.
    InsecureKey,
}

impl ErrorKind {
    /// Stable string code, e.g. `"ERR_PF_INVALID_ARG"`. Never changes once published.
    pub const fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "ERR_PF_INVALID_ARG",
            ErrorKind::Closed => "ERR_PF_CLOSED",
            ErrorKind::Io => "ERR_PF_IO",
            ErrorKind::QueueFull => "ERR_PF_QUEUE_FULL",
            ErrorKind::Timeout => "ERR_PF_TIMEOUT",
            ErrorKind::Protocol => "ERR_PF_PROTOCOL",
            ErrorKind::PinMismatch => "ERR_PF_PIN_MISMATCH",
            ErrorKind::Internal => "ERR_PF_INTERNAL",
            ErrorKind::Unauthorized => "ERR_PF_UNAUTHORIZED",
            ErrorKind::InsecureKey => "ERR_PF_INSECURE_KEY",
        }
    }

    /// Stable negative status for the C ABI (`0` is success there).
    pub const fn status(self) -> i32 {
        match self {
            ErrorKind::InvalidArgument => -1,
            ErrorKind::Closed => -2,
            ErrorKind::Io => -3,
            ErrorKind::QueueFull => -4,
            ErrorKind::Timeout => -5,
            ErrorKind::Protocol => -6,
            ErrorKind::PinMismatch => -7,
            ErrorKind::Internal => -8,
            ErrorKind::Unauthorized => -9,
            ErrorKind::InsecureKey => -10,
        }
    }

    /// Every kind, in status order; handy for tables and exhaustive tests.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::InvalidArgument,
        ErrorKind::Closed,
        ErrorKind::Io,
        ErrorKind::QueueFull,
        ErrorKind::Timeout,
        ErrorKind::Protocol,
        ErrorKind::PinMismatch,
        ErrorKind::Internal,
        ErrorKind::Unauthorized,
        ErrorKind::InsecureKey,
    ];
}

/// An error with a kind (for programs) and a message (for people).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// Builds an error of `kind` with a human-readable `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// Shorthand for [`ErrorKind::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    /// Shorthand for [`ErrorKind::Closed`].
    pub fn closed(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Closed, message)
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The stable code of the kind, e.g. `"ERR_PF_IO"`.
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// The human-readable message (without the code).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Runs `f`, turning a panic inside it into an [`ErrorKind::Internal`]
    /// error that names `what` and the panic's message: the one place a
    /// panic becomes an error, for worker threads and every binding.
    pub fn catch_panic<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::new(ErrorKind::Internal, format!("panic in {what}: {msg}")))
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.message)
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        let kind = match e.kind() {
            io::ErrorKind::TimedOut => ErrorKind::Timeout,
            io::ErrorKind::InvalidInput => ErrorKind::InvalidArgument,
            _ => ErrorKind::Io,
        };
        Error::new(kind, e.to_string())
    }
}

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_and_statuses_are_unique_and_negative() {
        let codes: HashSet<_> = ErrorKind::ALL.iter().map(|k| k.code()).collect();
        let statuses: HashSet<_> = ErrorKind::ALL.iter().map(|k| k.status()).collect();
        assert_eq!(codes.len(), ErrorKind::ALL.len());
        assert_eq!(statuses.len(), ErrorKind::ALL.len());
        assert!(ErrorKind::ALL.iter().all(|k| k.status() < 0));
        assert!(ErrorKind::ALL.iter().all(|k| k.code().starts_with("ERR_PF_")));
    }

    #[test]
    fn display_carries_code_and_message() {
        let e = Error::invalid("fec_percent 101 is above 100");
        assert_eq!(e.to_string(), "ERR_PF_INVALID_ARG: fec_percent 101 is above 100");
        let io: Error = io::Error::new(io::ErrorKind::TimedOut, "slow").into();
        assert_eq!(io.kind(), ErrorKind::Timeout);
    }
}
