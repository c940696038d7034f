//! # punktfunk-core
//!
//! The transport core of a low-latency game and desktop streaming system.
//!
//! A host hands encoded video frames to a [`Session`]; each frame is cut into
//! equal shards, protected with Reed-Solomon FEC over GF(2^16) ([`fec`]), sealed
//! per datagram with AES-128-GCM ([`crypto`]) and sent in batches over a
//! [`Transport`] (batched UDP on Linux, see [`transport`]). The client reassembles,
//! repairs losses with FEC and delivers each frame whole and byte-exact, or
//! reports it lost. Nothing received from the network can panic the session or
//! make it allocate beyond its configured bounds: bad packets are counted in
//! [`Stats`] by reason and skipped.
//!
//! ```
//! use punktfunk_core::{FrameEvent, FrameMeta, LoopbackTransport, Role, Session, SessionConfig, SessionKeys};
//! use std::time::Duration;
//!
//! let keys = SessionKeys::derive(&[7u8; 32], b"example").unwrap();
//! let (a, b) = LoopbackTransport::pair(4096);
//! let mut host = Session::new(Role::Host, SessionConfig::default(), &keys, a).unwrap();
//! let mut client = Session::new(Role::Client, SessionConfig::default(), &keys, b).unwrap();
//!
//! let frame = vec![42u8; 100_000];
//! host.submit_frame(&frame, FrameMeta { pts: 1, keyframe: true }).unwrap();
//! match client.recv_frame(Duration::from_secs(1)).unwrap() {
//!     Some(FrameEvent::Frame(f)) => assert_eq!(f.data, frame),
//!     other => panic!("expected a frame, got {other:?}"),
//! }
//! ```

#![deny(unsafe_code)]
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(feature = "quic")]
pub mod control;
/// Browsers as clients (WebTransport): [`control::web`].
#[cfg(feature = "quic")]
pub use control::web;
pub mod crypto;
pub mod error;
pub mod fec;
pub mod rate;
pub mod session;
pub mod stats;
pub mod transport;
pub mod wire;

pub use crypto::{DirectionKey, SessionKeys};
pub use error::{Error, ErrorKind, Result};
pub use fec::FecConfig;
pub use session::{
    Frame, FrameEvent, FrameMeta, FrameReceiver, FrameSender, FrameSink, FrameSource, Pacing, RecvWorker,
    Rejected, Role, SendWorker, Session, SessionConfig, StatsHandle, SubmitReport,
};
pub use stats::{Stats, StatsSnapshot};
pub use transport::{
    Impaired, ImpairmentConfig, LoopbackTransport, Offload, Transport, UdpConfig, UdpTransport, RECV_BATCH,
    SEND_BATCH,
};
