//! UDP relays for the command line: a source that bundles incoming datagrams
//! on a thread of its own, and a sink that sends bundles' datagrams in
//! batches, so JavaScript handles one frame per bundle, never one datagram.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use napi::bindgen_prelude::{Buffer, Function};
use napi_derive::napi;

use punktfunk_tools::relay::{SourceFilter, UdpSink, UdpSource};

use super::{guard, invalid, js_error, parse_addr, wake, waker, Result, Waker, WAKE_READABLE};

/// Bundles waiting for JavaScript before more are dropped (and counted).
const SOURCE_BACKLOG: usize = 256;

/// One bundle from a source, or the end of its input.
#[napi(object)]
pub struct NativeBundle {
    /// The bundle frame (`0x02 ‖ (u16 length ‖ datagram)*`); absent at the end.
    pub data: Option<Buffer>,
    /// Datagrams in it.
    pub datagrams: u32,
    /// The input ended (an empty datagram, or the socket failed).
    pub end: bool,
    /// Why the socket failed, at the end.
    pub error: Option<String>,
}

/// What a source has counted.
#[napi(object)]
pub struct NativeSourceCounters {
    /// Datagrams read and bundled.
    pub datagrams: f64,
    /// Bundles made.
    pub bundles: f64,
    /// Datagrams too long for a bundle.
    pub oversize: f64,
    /// Bundles dropped because JavaScript did not take them in time.
    pub backlog_dropped: f64,
    /// Datagrams from senders the source filter refused.
    pub refused: f64,
}

enum Item {
    Bundle(Vec<u8>, usize),
    End(Option<String>),
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    dropped: u64,
}

/// Datagrams arriving on a UDP port, bundled (see `punktfunk_tools::relay`).
#[napi]
pub struct NativeUdpSource {
    source: Mutex<Option<UdpSource>>,
    /// The counters as they stood when the source closed.
    last: Mutex<punktfunk_tools::relay::SourceCounters>,
    queue: Arc<Mutex<Queue>>,
    address: String,
    waker: Mutex<Option<Arc<Waker>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads datagrams on `bind` from the senders `allow` names (`any`,
/// `loopback`, `IP` or `IP:PORT`; see `SourceFilter::parse`) into bundles of at
/// most `max_bundle` bytes, each sent `window_us` after its first datagram;
/// `on_wake(1)` when bundles (or the end) are ready to `poll`.
#[napi]
pub fn udp_source_open(
    bind: String,
    allow: String,
    max_bundle: u32,
    window_us: f64,
    on_wake: Function<'_, u32, ()>,
) -> Result<NativeUdpSource> {
    guard(|| {
        if !(window_us.is_finite() && (0.0..=10_000_000.0).contains(&window_us)) {
            return Err(invalid(format!("bundle window {window_us} µs is out of range")));
        }
        if max_bundle < 16 {
            return Err(invalid("bundles must hold at least 16 bytes"));
        }
        let addr = parse_addr(&bind, "udp source address")?;
        let allow = SourceFilter::parse(&allow).map_err(js_error)?;
        let w = waker(&on_wake)?;
        let queue = Arc::new(Mutex::new(Queue::default()));
        let (q1, q2) = (queue.clone(), queue.clone());
        let (n1, n2) = (wake(&w, WAKE_READABLE), wake(&w, WAKE_READABLE));
        let push = move |q: &Mutex<Queue>, item: Item, notify: &punktfunk_core::session::Notify| {
            let mut q = lock(q);
            let was_empty = q.items.is_empty();
            if matches!(item, Item::Bundle(..)) && q.items.len() >= SOURCE_BACKLOG {
                q.dropped += 1;
                return;
            }
            q.items.push_back(item);
            drop(q);
            if was_empty {
                notify();
            }
        };
        let push2 = push;
        let source = UdpSource::start(
            addr,
            allow,
            max_bundle as usize,
            Duration::from_secs_f64(window_us / 1e6),
            move |b, n| push(&q1, Item::Bundle(b, n), &n1),
            move |e| push2(&q2, Item::End(e.map(|e| e.message().to_string())), &n2),
        )
        .map_err(js_error)?;
        Ok(NativeUdpSource {
            address: source.local_addr().to_string(),
            source: Mutex::new(Some(source)),
            last: Mutex::default(),
            queue,
            waker: Mutex::new(Some(w)),
        })
    })
}

#[napi]
impl NativeUdpSource {
    /// The address datagrams are read on.
    #[napi]
    pub fn address(&self) -> String {
        self.address.clone()
    }

    /// The next bundle (or the end), or `null` when nothing is waiting.
    #[napi]
    pub fn poll(&self) -> Result<Option<NativeBundle>> {
        guard(|| {
            Ok(lock(&self.queue).items.pop_front().map(|item| match item {
                Item::Bundle(b, n) => NativeBundle {
                    data: Some(Buffer::from(b)),
                    datagrams: n.min(u32::MAX as usize) as u32,
                    end: false,
                    error: None,
                },
                Item::End(error) => NativeBundle {
                    data: None,
                    datagrams: 0,
                    end: true,
                    error,
                },
            }))
        })
    }

    /// Counters so far.
    #[napi]
    pub fn counters(&self) -> Result<NativeSourceCounters> {
        guard(|| {
            let c = lock(&self.source)
                .as_ref()
                .map_or_else(|| *lock(&self.last), UdpSource::counters);
            Ok(NativeSourceCounters {
                datagrams: c.datagrams as f64,
                bundles: c.bundles as f64,
                oversize: c.oversize as f64,
                backlog_dropped: lock(&self.queue).dropped as f64,
                refused: c.refused as f64,
            })
        })
    }

    /// Stops reading, waits for the thread and releases the wake-up callback.
    #[napi]
    pub fn close(&self) -> Result<()> {
        guard(|| {
            if let Some(mut s) = lock(&self.source).take() {
                s.close();
                *lock(&self.last) = s.counters();
            }
            lock(&self.waker).take();
            Ok(())
        })
    }
}

/// Sends datagrams to one UDP address (see `punktfunk_tools::relay::UdpSink`).
#[napi]
pub struct NativeUdpSink {
    sink: Mutex<Option<UdpSink>>,
}

/// What a sink has counted.
#[napi(object)]
pub struct NativeSinkCounters {
    /// Datagrams sent.
    pub datagrams: f64,
    /// Datagrams the socket refused (its buffer was full).
    pub dropped: f64,
    /// Frames that were not well-formed bundles.
    pub malformed: f64,
}

/// Opens a socket sending to `target` (`IP:port`).
#[napi]
pub fn udp_sink_open(target: String) -> Result<NativeUdpSink> {
    guard(|| {
        let addr = parse_addr(&target, "udp output address")?;
        Ok(NativeUdpSink {
            sink: Mutex::new(Some(UdpSink::open(addr).map_err(js_error)?)),
        })
    })
}

#[napi]
impl NativeUdpSink {
    fn with<T>(&self, f: impl FnOnce(&mut UdpSink) -> punktfunk_core::Result<T>) -> Result<T> {
        guard(|| match lock(&self.sink).as_mut() {
            Some(s) => f(s).map_err(js_error),
            None => Err(js_error(punktfunk_core::Error::closed(
                "the UDP output is closed",
            ))),
        })
    }

    /// Sends every datagram of a bundle frame; returns how many went out
    /// (0 for a malformed frame, which is counted).
    #[napi]
    pub fn send_bundle(&self, frame: Buffer) -> Result<u32> {
        self.with(|s| s.send_bundle(&frame).map(|n| n.min(u32::MAX as usize) as u32))
    }

    /// Sends a byte-stream piece cut into datagrams of `datagram_bytes`.
    #[napi]
    pub fn send_bytes(&self, bytes: Buffer, datagram_bytes: u32) -> Result<u32> {
        self.with(|s| {
            s.send_bytes(&bytes, datagram_bytes as usize)
                .map(|n| n.min(u32::MAX as usize) as u32)
        })
    }

    /// Counters so far.
    #[napi]
    pub fn counters(&self) -> Result<NativeSinkCounters> {
        self.with(|s| {
            let c = s.counters();
            Ok(NativeSinkCounters {
                datagrams: c.datagrams as f64,
                dropped: c.dropped as f64,
                malformed: c.malformed as f64,
            })
        })
    }

    /// Closes the socket.
    #[napi]
    pub fn close(&self) {
        lock(&self.sink).take();
    }
}
