//! Per-OS socket shims, one file per OS, each with the same functions over a
//! `std::net::UdpSocket`: Linux gets batched system calls and the UDP
//! offloads ([`linux`]); every other OS gets the portable fallback written
//! against `std` alone ([`portable`], compiled on Linux too so its tests keep
//! it honest). [`os`] is the one for this build.

#[cfg(target_os = "linux")]
pub(crate) mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux as os;

#[cfg_attr(target_os = "linux", allow(dead_code))]
pub(crate) mod portable;
#[cfg(not(target_os = "linux"))]
pub(crate) use portable as os;

/// Which socket buffer to size.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Buffer {
    Send,
    Recv,
}
