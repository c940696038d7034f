//! The Rust side of `punktfunk bench`: raw UDP and the core session measured
//! on threads of their own (see `punktfunk_core::bench`), off the JS thread.

use napi::bindgen_prelude::AsyncTask;
use napi::{Env, Task};
use napi_derive::napi;

use punktfunk_core::bench::{self, BenchConfig, Case};

use super::{guard, invalid, js_error};

/// One measured case; figures are totals over `secs`.
#[napi(object)]
pub struct NativeBenchRow {
    /// Case label.
    pub name: String,
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
}

/// Runs one benchmark case on the libuv thread pool.
pub struct BenchTask {
    case: Case,
    config: BenchConfig,
}

impl Task for BenchTask {
    type Output = bench::Row;
    type JsValue = NativeBenchRow;

    fn compute(&mut self) -> napi::Result<bench::Row> {
        guard(|| bench::run(self.case, &self.config).map_err(js_error))
    }

    fn resolve(&mut self, _env: Env, r: bench::Row) -> napi::Result<NativeBenchRow> {
        Ok(NativeBenchRow {
            name: r.name,
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
        })
    }
}

/// Measures one case (`raw-scalar`, `raw-batch`, `unpaced`, `window`,
/// `paced`) for `seconds`; `rate_mbps` sets the paced case's goodput.
#[napi(ts_return_type = "Promise<NativeBenchRow>")]
pub fn bench_run(kase: String, seconds: f64, rate_mbps: f64) -> napi::Result<AsyncTask<BenchTask>> {
    guard(|| {
        let case = Case::parse(&kase).ok_or_else(|| invalid(format!("unknown bench case {kase:?}")))?;
        let config = BenchConfig {
            seconds,
            rate_mbps,
            ..BenchConfig::default()
        };
        config.validate().map_err(js_error)?;
        Ok(AsyncTask::new(BenchTask { case, config }))
    })
}
