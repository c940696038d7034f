//! The QUIC control plane (feature `quic`): host identity and pinning, the
//! `PKF1` handshake, key agreement, input, keyframe requests, FEC changes,
//! loss reports, the speed test and close reasons. docs/PROTOCOL.md §9 has the
//! message formats.
//!
//! Two layers. [`proto`] is the protocol without I/O: the handshake phases as
//! types, message handling as `handle(msg, now) -> actions`, what was
//! negotiated, and which close code an error deserves. The drivers run it on
//! quinn and a small tokio runtime owned by each [`Host`] and [`Client`]:
//! `runtime` (settings, framing on the stream, keys, closing), `host`
//! and `host_session` (listening, each client's handshake, its session with
//! a send thread of its own), `client` and `client_session`. Their API is
//! blocking, for threads of their own (and for the C ABI and the Node.js
//! binding, which call it from worker threads).
//!
//! ```text
//! client                                   host
//!   bind data socket (UDP, port Pc)
//!   QUIC connect, ALPN punktfunk/1  ───────► certificate: pinned fingerprint or TOFU
//!   ClientHello{version, bitrate, Pc} ────►  bind data socket Ph, aimed at client IP:Pc
//!                                     ◄────  ServerHello{session id, FEC, shard size, bitrate, Ph}
//!   aim data socket at host IP:Ph
//!   keys = HKDF(TLS exporter, session id)    keys = HKDF(TLS exporter, session id)
//!   Ready                             ────►  random path token
//!                                     ◄────  path challenge (sealed, on the data socket)
//!   path response (from data socket)  ────►  token checked
//!                                     ◄────  PathValidated; frames flow on the data plane
//! ```
//!
//! docs/ARCHITECTURE.md follows one handshake and one frame through the files.

mod adaptive;
mod client;
mod client_session;
mod events;
mod governor;
mod host;
mod host_rate;
mod host_session;
mod identity;
pub mod msg;
pub mod proto;
mod runtime;
pub mod web;

pub use adaptive::{AdaptiveFec, FecBand};
pub use client::{Client, ClientConfig};
pub use client_session::{ClientControl, ClientReceiver, ProbeResult};
pub use host::{Host, HostConfig, HostCounters};
pub use host_rate::RateSettings;
pub use host_session::{Carrier, HostSession, CLOSE_DRAIN};
pub use identity::{
    default_config_dir, default_known_hosts, Fingerprint, Identity, KnownHosts, Trust, KNOWN_HOSTS_FILE,
};
pub use msg::{axis, button, close_code, CloseReason, InputEvent, InputFields, InputKind};
pub use proto::client::ClientEvent;
pub use proto::host::{HostEvent, ProbePolicy};
pub use runtime::{DatagramFilter, Hooks, KeyTap, Tap};

/// ALPN protocol id of the control connection.
pub const ALPN: &[u8] = b"punktfunk/1";
/// Highest bitrate a host grants, kbit/s.
pub const MAX_BITRATE_KBPS: u32 = 2_000_000;
/// Highest speed-test rate a client may ask for, kbit/s.
pub const MAX_PROBE_KBPS: u32 = 3_000_000;
/// Longest speed test, ms.
pub const MAX_PROBE_MS: u32 = 5_000;

#[cfg(test)]
mod tests;
