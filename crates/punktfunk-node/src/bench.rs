//! The Rust side of `punktfunk bench`: raw UDP, the core session and one host
//! serving many clients, measured on threads of their own (see
//! `punktfunk_tools::bench`), off the JS thread.
//!
//! Built with the `alloc-count` feature (`npm run build`), the addon counts
//! its own allocations (a counting global allocator over the system one; Rust
//! allocations only, not the JavaScript heap) so the bench can report
//! allocations per packet. Released binaries do not count: their allocation
//! figures are `null`.

use napi::bindgen_prelude::AsyncTask;
use napi::{Env, Task};
use napi_derive::napi;

use punktfunk_tools::bench::{self, BenchConfig, Case, ScaleRow};

use super::{guard, invalid, js_error, settle, Result};

#[cfg(feature = "alloc-count")]
#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

/// Allocations and reallocations the addon has made so far.
#[cfg(feature = "alloc-count")]
fn allocations() -> u64 {
    let s = GLOBAL.stats();
    (s.allocations + s.reallocations) as u64
}

/// The allocation counter, in a build that counts.
fn counter() -> Option<fn() -> u64> {
    #[cfg(feature = "alloc-count")]
    return Some(allocations);
    #[cfg(not(feature = "alloc-count"))]
    return None;
}

/// Rust allocations of this addon so far (allocations plus reallocations),
/// or `null` in a build that does not count them (released binaries).
#[napi]
pub fn allocation_count() -> Option<f64> {
    counter().map(|c| c() as f64)
}

/// One measured case; figures are totals over `secs`.
#[napi(object)]
pub struct NativeBenchRow {
    /// Case label.
    pub name: String,
    /// Whether the sender used UDP GSO.
    pub offload: bool,
    /// Measured seconds.
    pub secs: f64,
    /// Frames sent.
    pub frames_sent: f64,
    /// Frames never delivered.
    pub frames_lost: f64,
    /// Frame bytes delivered.
    pub payload_bytes: f64,
    /// Wire bytes delivered.
    pub wire_bytes: f64,
    /// Datagrams sent.
    pub packets_sent: f64,
    /// Datagrams received.
    pub packets_received: f64,
    /// Send system calls.
    pub send_syscalls: f64,
    /// Receive system calls.
    pub recv_syscalls: f64,
    /// Readiness waits on the receive side.
    pub polls: f64,
    /// Datagrams dropped locally on send.
    pub send_drops: f64,
    /// CPU seconds of the sending thread.
    pub tx_cpu: f64,
    /// CPU seconds of the receiving thread.
    pub rx_cpu: f64,
    /// Paced case: frame latency p50, submit → delivered, ms.
    pub latency_p50_ms: Option<f64>,
    /// Paced case: frame latency p99, ms.
    pub latency_p99_ms: Option<f64>,
    /// Paced case: p99 of latency beyond the frame's own send span, ms.
    pub added_latency_p99_ms: Option<f64>,
    /// Allocations during the whole case (setup included).
    pub allocations: f64,
    /// Session cases: allocations per datagram after warm-up.
    pub steady_allocations_per_packet: Option<f64>,
}

/// Runs one benchmark case on the libuv thread pool.
pub struct BenchTask {
    case: Case,
    config: BenchConfig,
}

impl Task for BenchTask {
    type Output = Result<bench::Row>;
    type JsValue = NativeBenchRow;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(guard(|| bench::run(self.case, &self.config).map_err(js_error)))
    }

    fn resolve(&mut self, env: Env, r: Self::Output) -> napi::Result<NativeBenchRow> {
        let r = settle(&env, r)?;
        Ok(NativeBenchRow {
            steady_allocations_per_packet: r.steady_allocations_per_packet(),
            name: r.name,
            offload: r.offload,
            secs: r.secs,
            frames_sent: r.frames_sent as f64,
            frames_lost: r.frames_lost as f64,
            payload_bytes: r.payload_bytes as f64,
            wire_bytes: r.wire_bytes as f64,
            packets_sent: r.packets_sent as f64,
            packets_received: r.packets_received as f64,
            send_syscalls: r.send_syscalls as f64,
            recv_syscalls: r.recv_syscalls as f64,
            polls: r.polls as f64,
            send_drops: r.send_drops as f64,
            tx_cpu: r.tx_cpu,
            rx_cpu: r.rx_cpu,
            latency_p50_ms: r.latency_p50_ms,
            latency_p99_ms: r.latency_p99_ms,
            added_latency_p99_ms: r.added_latency_p99_ms,
            allocations: r.allocations.unwrap_or(0) as f64,
        })
    }
}

/// Measures one case (`raw-scalar`, `raw-batch`, `raw-gso`, `unpaced`,
/// `window`, `paced`) for `seconds`; `rate_mbps` sets the paced case's
/// goodput; `offload` picks GSO/GRO or sendmmsg/recvmmsg for the session cases.
#[napi(ts_return_type = "Promise<NativeBenchRow>")]
pub fn bench_run(kase: String, seconds: f64, rate_mbps: f64, offload: bool) -> Result<AsyncTask<BenchTask>> {
    guard(|| {
        let case = Case::parse(&kase).ok_or_else(|| invalid(format!("unknown bench case {kase:?}")))?;
        let config = BenchConfig {
            seconds,
            rate_mbps,
            offload,
            alloc_counter: counter(),
        };
        config.validate().map_err(js_error)?;
        Ok(AsyncTask::new(BenchTask { case, config }))
    })
}

/// One host serving several clients (see `punktfunk_tools::bench::ScaleRow`).
#[napi(object)]
pub struct NativeScaleRow {
    /// Clients served at once.
    pub clients: u32,
    /// Measured seconds.
    pub seconds: f64,
    /// Goodput of all clients together, Gbit/s.
    pub aggregate_goodput_gbps: f64,
    /// Goodput of each client, Gbit/s.
    pub per_client_gbps: Vec<f64>,
    /// CPU seconds of the host's sending threads.
    pub host_cpu_seconds: f64,
    /// Frames sent to all clients.
    pub frames_sent: f64,
    /// Frames that never arrived.
    pub frames_lost: f64,
    /// Datagrams dropped on send.
    pub send_drops: f64,
}

/// Runs the scale measurement on the libuv thread pool.
pub struct ScaleTask {
    clients: usize,
    rate_mbps: f64,
    seconds: f64,
}

impl Task for ScaleTask {
    type Output = Result<ScaleRow>;
    type JsValue = NativeScaleRow;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(guard(|| {
            bench::scale(self.clients, self.rate_mbps, self.seconds).map_err(js_error)
        }))
    }

    fn resolve(&mut self, env: Env, r: Self::Output) -> napi::Result<NativeScaleRow> {
        let r = settle(&env, r)?;
        Ok(NativeScaleRow {
            clients: r.clients as u32,
            seconds: r.seconds,
            aggregate_goodput_gbps: r.aggregate_goodput_gbps,
            per_client_gbps: r.per_client_gbps,
            host_cpu_seconds: r.host_cpu_seconds,
            frames_sent: r.frames_sent as f64,
            frames_lost: r.frames_lost as f64,
            send_drops: r.send_drops as f64,
        })
    }
}

/// One host on 127.0.0.1 streaming to `clients` clients that share
/// `rate_mbps` of goodput, for `seconds`.
#[napi(ts_return_type = "Promise<NativeScaleRow>")]
pub fn bench_scale(clients: u32, rate_mbps: f64, seconds: f64) -> Result<AsyncTask<ScaleTask>> {
    guard(|| {
        if !(rate_mbps.is_finite()
            && rate_mbps > 0.0
            && seconds.is_finite()
            && seconds > 0.0
            && seconds <= 60.0)
        {
            return Err(invalid("bench scale needs a positive rate and 0 < seconds <= 60"));
        }
        Ok(AsyncTask::new(ScaleTask {
            clients: clients as usize,
            rate_mbps,
            seconds,
        }))
    })
}
