//! Linux socket shim: `sendmmsg`, `recvmmsg`, `ppoll` and buffer options.
//!
//! This module and its siblings under `transport::sys` hold the only `unsafe`
//! code of punktfunk-core. Every block says why it is sound. Nothing here keeps
//! state: callers pass a raw descriptor they own for the duration of the call.

use std::io;
use std::os::fd::RawFd;
use std::ptr;
use std::time::Duration;

use crate::transport::{RECV_BATCH, SEND_BATCH};

/// Sends up to [`SEND_BATCH`] datagrams on a connected socket with one `sendmmsg`.
/// Returns how many the kernel took (a prefix of `datagrams`).
pub(crate) fn send_mmsg(fd: RawFd, datagrams: &[&[u8]]) -> io::Result<usize> {
    let n = datagrams.len().min(SEND_BATCH);
    if n == 0 {
        return Ok(0);
    }
    let mut iovs = [libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }; SEND_BATCH];
    // SAFETY: `mmsghdr` is a plain C struct of integers and pointers (plus, on some
    // libcs, private padding); all-zero is its documented "empty" value.
    let mut msgs: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
    for (i, d) in datagrams[..n].iter().enumerate() {
        iovs[i].iov_base = d.as_ptr() as *mut libc::c_void;
        iovs[i].iov_len = d.len();
        msgs[i].msg_hdr.msg_iov = &mut iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `msgs[..n]` point at `iovs[..n]`, which point at the caller's slices;
    // all of them outlive the call, and the kernel only reads through them (the
    // `*mut` in `iov_base` is the C signature, not a write). `fd` is an open socket
    // owned by the caller for the duration of the call.
    let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Receives up to [`RECV_BATCH`] datagrams with one non-blocking `recvmmsg`.
/// Each buffer's whole length is usable space; lengths go to `lens`.
pub(crate) fn recv_mmsg(fd: RawFd, bufs: &mut [Vec<u8>], lens: &mut [usize]) -> io::Result<usize> {
    let n = bufs.len().min(lens.len()).min(RECV_BATCH);
    if n == 0 {
        return Ok(0);
    }
    let mut iovs = [libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }; RECV_BATCH];
    // SAFETY: as in `send_mmsg`, all-zero is a valid empty `mmsghdr`.
    let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
    for (i, b) in bufs[..n].iter_mut().enumerate() {
        iovs[i].iov_base = b.as_mut_ptr() as *mut libc::c_void;
        iovs[i].iov_len = b.len();
        msgs[i].msg_hdr.msg_iov = &mut iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: each iovec points at the initialised contents of a distinct caller
    // buffer, exclusively borrowed for the call, with its exact length, so the
    // kernel writes only inside them. No address or control buffers are passed.
    // A null timeout is allowed and MSG_DONTWAIT makes the call non-blocking.
    let r = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            ptr::null_mut(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let got = r as usize;
    for (len, m) in lens.iter_mut().zip(msgs.iter()).take(got) {
        *len = m.msg_len as usize;
    }
    Ok(got)
}

/// Waits until `fd` is readable or `timeout` passes. An interrupted wait
/// reports "not readable" so the caller simply loops.
pub(crate) fn wait_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
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

/// Which socket buffer to size.
#[derive(Clone, Copy)]
pub(crate) enum Buffer {
    Send,
    Recv,
}

/// Asks for `bytes` of socket buffer, first with the privileged FORCE option
/// (ignores `net.core.*mem_max`), then the ordinary one. Returns the usable size
/// the kernel granted (half of what it reports, since Linux doubles the request
/// for bookkeeping) and whether the FORCE option worked.
pub(crate) fn set_buffer(fd: RawFd, which: Buffer, bytes: usize) -> io::Result<(usize, bool)> {
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
