//! Linux socket shim: `sendmmsg` (with UDP GSO), `recvmmsg` (with UDP GRO),
//! `ppoll` and buffer options.
//!
//! This module and its siblings under `transport::sys` hold the only `unsafe`
//! code of punktfunk-core. Every block says why it is sound. Nothing here keeps
//! state: callers pass a socket they own for the duration of the call.

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::Buffer;
use crate::transport::{RecvMeta, RECV_BATCH, SEND_BATCH};

/// Sends datagrams with one `sendmmsg` (see [`send_mmsg`]) and counts the call.
pub(crate) fn send(
    sock: &UdpSocket,
    datagrams: &[&[u8]],
    dest: Option<&SocketAddr>,
    max_segments: usize,
    calls: &AtomicU64,
) -> io::Result<usize> {
    calls.fetch_add(1, Ordering::Relaxed);
    send_mmsg(sock.as_raw_fd(), datagrams, dest, max_segments)
}

/// Receives one batch with one `recvmmsg` (see [`recv_mmsg`]) and counts the call.
pub(crate) fn recv(
    sock: &UdpSocket,
    bufs: &mut [Vec<u8>],
    meta: &mut [RecvMeta],
    from: Option<&mut [Option<SocketAddr>; RECV_BATCH]>,
    gro: bool,
    stamps: bool,
    calls: &AtomicU64,
) -> io::Result<usize> {
    calls.fetch_add(1, Ordering::Relaxed);
    recv_mmsg(sock.as_raw_fd(), bufs, meta, from, gro, stamps)
}

/// Waits in `ppoll` until the socket is readable or `timeout` passes.
pub(crate) fn wait_readable(sock: &UdpSocket, timeout: Duration) -> io::Result<bool> {
    ppoll_readable(sock.as_raw_fd(), timeout)
}

/// Asks for `bytes` of socket buffer (see [`set_buffer_fd`]).
pub(crate) fn set_buffer(sock: &UdpSocket, which: Buffer, bytes: usize) -> io::Result<(usize, bool)> {
    set_buffer_fd(sock.as_raw_fd(), which, bytes)
}

/// Whether the kernel offers UDP GSO on this socket.
pub(crate) fn gso_supported(sock: &UdpSocket) -> bool {
    get_int(sock.as_raw_fd(), libc::SOL_UDP, UDP_SEGMENT).is_ok()
}

/// Turns UDP GRO on or off; fails where the kernel does not support it.
pub(crate) fn set_gro(sock: &UdpSocket, on: bool) -> io::Result<()> {
    set_int(sock.as_raw_fd(), libc::SOL_UDP, UDP_GRO, libc::c_int::from(on))
}

/// GSO sends the kernel or the device refuses (rather than a full buffer).
pub(crate) fn gso_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO) | Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(libc::ENOPROTOOPT)
    )
}

/// Asks the kernel to stamp every received datagram with its arrival time
/// (`SO_TIMESTAMPNS`, read by [`recv_timestamped`]).
pub(crate) fn enable_rx_timestamps(sock: &UdpSocket) -> io::Result<()> {
    set_int(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
}

/// Receives one datagram without blocking, with the kernel's arrival time
/// (see [`recv_timestamped_fd`]).
pub(crate) fn recv_timestamped(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<Option<(usize, Option<Duration>)>> {
    recv_timestamped_fd(sock.as_raw_fd(), buf)
}

/// A socket address in the C layout, with its length.
fn to_raw(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid (empty) `sockaddr_storage`.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `sockaddr_storage` is larger than and aligned for any
            // `sockaddr_*`; writing a `sockaddr_in` at its start is how C fills it.
            unsafe { ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for `sockaddr_in6`.
            unsafe { ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// The Rust form of a socket address the kernel wrote; `None` for families
/// other than IPv4 and IPv6.
fn from_raw(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a `sockaddr_in`, and the
            // kernel wrote at least that many bytes; the storage is aligned for it.
            let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for `sockaddr_in6`.
            let sin6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// `UDP_SEGMENT` (linux/udp.h): the GSO segment size of a send, as a control
/// message. Not among every libc target's constants, so spelled out here.
const UDP_SEGMENT: libc::c_int = 103;
/// `UDP_GRO` (linux/udp.h): coalesce received datagrams; the segment size
/// arrives as a control message.
const UDP_GRO: libc::c_int = 104;
/// Most UDP payload bytes one GSO message carries (64 KiB less the IPv6 and
/// UDP headers, rounded down).
pub(crate) const GSO_MAX_BYTES: usize = 65_000;
/// Most segments one GSO message carries (the kernel's `UDP_MAX_SEGMENTS` is
/// 64 on older kernels, 128 on newer ones).
pub(crate) const GSO_MAX_SEGMENTS: usize = 64;
/// Most datagrams one [`send_mmsg`] call takes (one iovec each, on the stack).
pub(crate) const SEND_MAX_DATAGRAMS: usize = 1024;

/// A control-message buffer of `N` bytes, aligned for `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct CmsgBuf<const N: usize>([u8; N]);

impl<const N: usize> CmsgBuf<N> {
    /// An empty buffer.
    const EMPTY: Self = CmsgBuf([0; N]);
}

/// Room for the one control message a send carries: the GSO segment size
/// (`CMSG_SPACE(2)` is 24 bytes on 64-bit Linux).
type SendCmsg = CmsgBuf<32>;

/// Room for the control messages a receive may get: the GRO segment size
/// and the kernel's receive time (`CMSG_SPACE(4) + CMSG_SPACE(16)` is 56
/// bytes on 64-bit Linux).
type RecvCmsg = CmsgBuf<64>;

/// Sends datagrams with one `sendmmsg`, to the connected peer or, with `dest`,
/// to that address on an unconnected socket; returns how many the kernel took
/// (a prefix of `datagrams`).
///
/// With `max_segments` of 1 every datagram is a message of its own (at most
/// [`SEND_BATCH`]). Above 1 this is UDP GSO: runs of consecutive datagrams of
/// one length (the last of a run may be shorter) go as one message with a
/// `UDP_SEGMENT` control message, which the kernel (or the NIC) splits back
/// into those datagrams; at most `max_segments` and [`GSO_MAX_BYTES`] per
/// message, [`SEND_BATCH`] messages and [`SEND_MAX_DATAGRAMS`] datagrams per call.
/// A message the kernel did not take is not taken at all, so the count stays
/// a prefix.
fn send_mmsg(
    fd: RawFd,
    datagrams: &[&[u8]],
    dest: Option<&SocketAddr>,
    max_segments: usize,
) -> io::Result<usize> {
    let datagrams = &datagrams[..datagrams.len().min(SEND_MAX_DATAGRAMS)];
    if datagrams.is_empty() {
        return Ok(0);
    }
    let mut iovs = [libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }; SEND_MAX_DATAGRAMS];
    for (iov, d) in iovs.iter_mut().zip(datagrams) {
        iov.iov_base = d.as_ptr() as *mut libc::c_void;
        iov.iov_len = d.len();
    }
    // Group the datagrams into messages: (first datagram, count, segment size).
    let mut groups = [(0usize, 0usize, 0usize); SEND_BATCH];
    let mut nmsg = 0;
    let mut at = 0;
    while at < datagrams.len() && nmsg < SEND_BATCH {
        let seg = datagrams[at].len();
        let mut end = at + 1;
        let mut bytes = seg;
        if max_segments > 1 && seg > 0 && seg <= usize::from(u16::MAX) {
            while end < datagrams.len() && end - at < max_segments {
                let l = datagrams[end].len();
                if l == 0 || l > seg || bytes + l > GSO_MAX_BYTES {
                    break;
                }
                bytes += l;
                end += 1;
                if l < seg {
                    break; // only the last segment of a message may be shorter
                }
            }
        }
        groups[nmsg] = (at, end - at, seg);
        nmsg += 1;
        at = end;
    }
    // SAFETY: `mmsghdr` is a plain C struct of integers and pointers (plus, on some
    // libcs, private padding); all-zero is its documented "empty" value.
    let mut msgs: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
    let mut ctrl = [SendCmsg::EMPTY; SEND_BATCH];
    let mut name = dest.map(to_raw);
    let iov_base = iovs.as_mut_ptr();
    for (i, &(first, count, seg)) in groups[..nmsg].iter().enumerate() {
        let hdr = &mut msgs[i].msg_hdr;
        // SAFETY: `first + count <= datagrams.len() <= SEND_MAX_DATAGRAMS`, so the
        // pointer stays inside `iovs`.
        hdr.msg_iov = unsafe { iov_base.add(first) };
        hdr.msg_iovlen = count as _;
        if let Some((ss, len)) = name.as_mut() {
            hdr.msg_name = ss as *mut _ as *mut libc::c_void;
            hdr.msg_namelen = *len;
        }
        if count > 1 {
            hdr.msg_control = ctrl[i].0.as_mut_ptr() as *mut libc::c_void;
            // SAFETY: CMSG_SPACE only computes a size.
            hdr.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as _;
            // SAFETY: the control buffer is 32 bytes, aligned for `cmsghdr`, and
            // `msg_controllen` (24 on 64-bit Linux) fits in it, so CMSG_FIRSTHDR
            // returns a pointer to its start and CMSG_DATA one 16 bytes in; the
            // two-byte write stays inside the buffer (unaligned write allowed).
            unsafe {
                let c = libc::CMSG_FIRSTHDR(hdr);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, seg as u16);
            }
        }
    }
    // SAFETY: `msgs[..nmsg]` point at runs of `iovs`, which point at the caller's
    // slices, at one address in `name` (with `dest`) and at their own control
    // buffer in `ctrl`; all of them outlive the call, and the kernel only reads
    // through them (the `*mut` is the C signature, not a write). `fd` is an open
    // socket owned by the caller for the duration of the call.
    // The flags are a c_int in glibc and a c_uint in musl: `as _` fits either.
    let r = unsafe {
        libc::sendmmsg(
            fd,
            msgs.as_mut_ptr(),
            nmsg as libc::c_uint,
            libc::MSG_DONTWAIT as _,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(groups[..r as usize].iter().map(|g| g.1).sum())
}

/// Receives up to [`RECV_BATCH`] buffers with one non-blocking `recvmmsg`.
/// Each buffer's whole length is usable space; what arrived goes to `meta`,
/// and with `from` each datagram's source address (`None` for an unknown family).
///
/// With `gro`, each buffer may hold several datagrams the kernel coalesced
/// (UDP GRO): `meta[i].segment` is their size (the last may be shorter).
/// Buffers should then be
/// [`SEGMENTED_RECV_BUFFER`](crate::transport::SEGMENTED_RECV_BUFFER) long.
fn recv_mmsg(
    fd: RawFd,
    bufs: &mut [Vec<u8>],
    meta: &mut [RecvMeta],
    from: Option<&mut [Option<SocketAddr>; RECV_BATCH]>,
    gro: bool,
    stamps: bool,
) -> io::Result<usize> {
    let n = bufs.len().min(meta.len()).min(RECV_BATCH);
    if n == 0 {
        return Ok(0);
    }
    let mut iovs = [libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }; RECV_BATCH];
    // SAFETY: as in `send_mmsg`, all-zero is a valid empty `mmsghdr`.
    let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
    let mut ctrl = [RecvCmsg::EMPTY; RECV_BATCH];
    let want_names = from.is_some();
    let want_ctrl = gro || stamps;
    // SAFETY: all-zero is a valid (empty) `sockaddr_storage`.
    let mut names: [libc::sockaddr_storage; RECV_BATCH] = unsafe { std::mem::zeroed() };
    for (i, b) in bufs[..n].iter_mut().enumerate() {
        iovs[i].iov_base = b.as_mut_ptr() as *mut libc::c_void;
        iovs[i].iov_len = b.len();
    }
    let iov_base = iovs.as_mut_ptr();
    for i in 0..n {
        let hdr = &mut msgs[i].msg_hdr;
        // SAFETY: `i < n <= RECV_BATCH`, inside `iovs`.
        hdr.msg_iov = unsafe { iov_base.add(i) };
        hdr.msg_iovlen = 1;
        if want_names {
            hdr.msg_name = &mut names[i] as *mut _ as *mut libc::c_void;
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        if want_ctrl {
            hdr.msg_control = ctrl[i].0.as_mut_ptr() as *mut libc::c_void;
            hdr.msg_controllen = size_of::<RecvCmsg>() as _;
        }
    }
    // SAFETY: each iovec points at the initialised contents of a distinct caller
    // buffer, exclusively borrowed for the call, with its exact length, so the
    // kernel writes only inside them; each address buffer is a distinct local
    // `sockaddr_storage` and each control buffer a distinct local `RecvCmsg`,
    // with their true sizes in `msg_namelen` / `msg_controllen`. A null timeout
    // is allowed and MSG_DONTWAIT makes the call non-blocking.
    let r = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT as _, // c_int in glibc, c_uint in musl
            ptr::null_mut(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let got = r as usize;
    // The kernel's clock (CLOCK_REALTIME) read against ours, once per batch.
    let clocks = stamps.then(|| (Instant::now(), SystemTime::now()));
    for (m, msg) in meta.iter_mut().zip(msgs.iter()).take(got) {
        let len = msg.msg_len as usize;
        let (segment, at) = if want_ctrl {
            control_messages(&msg.msg_hdr)
        } else {
            (None, None)
        };
        let arrival = match (clocks, at) {
            // Before the read by however long it waited in the socket (a
            // clock stepped backwards reads as "now").
            (Some((now, wall)), Some(at)) => Some(
                now.checked_sub(wall.duration_since(at).unwrap_or_default())
                    .unwrap_or(now),
            ),
            _ => None,
        };
        *m = RecvMeta {
            len,
            segment: segment.filter(|_| gro).unwrap_or(len),
            arrival,
        };
    }
    if let Some(from) = from {
        for i in 0..got {
            from[i] = from_raw(&names[i], msgs[i].msg_hdr.msg_namelen);
        }
    }
    Ok(got)
}

/// The `UDP_GRO` segment size and the kernel's receive time
/// (`SCM_TIMESTAMPNS`) among a received message's control messages.
// `msg_controllen` and `cmsg_len` are `usize` on glibc but `u32` on musl.
#[allow(clippy::unnecessary_cast)]
fn control_messages(hdr: &libc::msghdr) -> (Option<usize>, Option<SystemTime>) {
    let (mut segment, mut at) = (None, None);
    if hdr.msg_control.is_null() || (hdr.msg_controllen as usize) < size_of::<libc::cmsghdr>() {
        return (segment, at);
    }
    // SAFETY: the kernel filled `msg_control` (a live, aligned control buffer) with
    // `msg_controllen` bytes of well-formed control messages; CMSG_FIRSTHDR and
    // CMSG_NXTHDR only return headers that lie whole inside that length, and
    // the payload read is bounded by the header's own `cmsg_len`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP
                && (*c).cmsg_type == UDP_GRO
                && (*c).cmsg_len as usize >= libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as usize
            {
                let v = ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                segment = usize::try_from(v).ok().filter(|&v| v > 0);
            } else if (*c).cmsg_level == libc::SOL_SOCKET
                && (*c).cmsg_type == libc::SCM_TIMESTAMPNS
                && (*c).cmsg_len as usize >= libc::CMSG_LEN(size_of::<libc::timespec>() as u32) as usize
            {
                let ts = ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                at = wall_time(&ts);
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    (segment, at)
}

/// A kernel `timespec` on the realtime clock as a `SystemTime` (`None` for
/// values no clock gives).
fn wall_time(ts: &libc::timespec) -> Option<SystemTime> {
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u32::try_from(ts.tv_nsec).ok().filter(|&n| n < 1_000_000_000)?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// Waits until `fd` is readable or `timeout` passes. An interrupted wait
/// reports "not readable" so the caller simply loops.
fn ppoll_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        // `as _`: the field's own type (libc deprecates naming time_t on musl).
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as _,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `pfd` and `ts` are valid for the call; one descriptor is passed and
    // the signal mask pointer is null (no mask change).
    let r = unsafe { libc::ppoll(&mut pfd, 1, &ts, ptr::null()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(e);
    }
    if pfd.revents & libc::POLLNVAL != 0 {
        // A closed descriptor would otherwise read as "not readable" forever.
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    Ok(r > 0 && pfd.revents & (libc::POLLIN | libc::POLLERR) != 0)
}

fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: passes a pointer to a live `c_int` with its exact size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn get_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `value`, which is that size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            &mut value as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(value)
    }
}

/// Asks for `bytes` of socket buffer, first with the privileged FORCE option
/// (ignores `net.core.*mem_max`), then the ordinary one. Returns the usable size
/// the kernel granted (half of what it reports, since Linux doubles the request
/// for bookkeeping) and whether the FORCE option worked.
fn set_buffer_fd(fd: RawFd, which: Buffer, bytes: usize) -> io::Result<(usize, bool)> {
    let (force, plain) = match which {
        Buffer::Send => (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        Buffer::Recv => (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
    };
    let value = bytes.min(i32::MAX as usize / 2) as libc::c_int;
    let forced = set_int(fd, libc::SOL_SOCKET, force, value).is_ok();
    if !forced {
        set_int(fd, libc::SOL_SOCKET, plain, value)?;
    }
    let reported = get_int(fd, libc::SOL_SOCKET, plain)?;
    Ok(((reported.max(0) as usize) / 2, forced))
}

/// Receives one datagram without blocking, with the kernel's arrival time
/// (`CLOCK_REALTIME`, since the epoch) when timestamps are on; `Ok(None)` when
/// nothing is pending.
fn recv_timestamped_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<(usize, Option<Duration>)>> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut ctrl = RecvCmsg::EMPTY;
    // SAFETY: all-zero is a valid empty `msghdr`.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = ctrl.0.as_mut_ptr() as *mut libc::c_void;
    hdr.msg_controllen = size_of::<RecvCmsg>() as _;
    // SAFETY: `hdr` points at one iovec over the caller's buffer (exclusively
    // borrowed, exact length) and at a local, aligned control buffer with its
    // true size; both outlive the call. MSG_DONTWAIT keeps it non-blocking.
    let r = unsafe { libc::recvmsg(fd, &mut hdr, libc::MSG_DONTWAIT) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(e)
        };
    }
    let stamp = control_messages(&hdr)
        .1
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok());
    Ok(Some((r as usize, stamp)))
}
