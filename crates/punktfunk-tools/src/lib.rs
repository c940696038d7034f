//! Tools built on punktfunk-core, kept out of the transport core: the
//! throughput measurement engine behind `punktfunk bench` and the
//! `throughput` example ([`bench`]), and the datagram relay behind the
//! command line's `udp://` source and output ([`relay`]).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod relay;
