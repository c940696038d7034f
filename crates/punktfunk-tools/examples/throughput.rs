//! Side-by-side throughput on 127.0.0.1: raw UDP versus the full `Session`
//! (FEC + AES-GCM + batching + reassembly), with the system-call counts of
//! each, over the plain batched calls and over UDP GSO/GRO. The measurement
//! engine is `punktfunk_tools::bench`; this is its command line: argument
//! parsing and printing.
//!
//! ```text
//! cargo run --release -p punktfunk-tools --example throughput -- \
//!     [--seconds N] [--rate-mbps R] [--only CASES] [--offload on|off|both] [--scale] [--json]
//! ```
//!
//! `--only` takes a comma-separated list of `raw-scalar`, `raw-batch`,
//! `raw-gso`, `unpaced`, `window` and `paced` (default: all of them, in that
//! order). The raw cases fix their own I/O path (`raw-batch`: `sendmmsg` /
//! `recvmmsg`; `raw-gso`: GSO/GRO where the kernel offers them); each session
//! case runs once per path `--offload` selects: `on` (GSO/GRO where
//! available), `off` (`sendmmsg` / `recvmmsg`) or `both` (the default, on
//! first). The row name ends in the path actually used. The workload and the
//! cases are described in the `bench` module's documentation. `--seconds` is
//! the sending time per case (default 3); at `--seconds 2` the default run
//! takes about 25 s.
//!
//! `--scale` measures one QUIC host streaming 256 KiB frames to 1, 4 and 16
//! clients at once, `--rate-mbps` of goodput in total (default 1000),
//! `--seconds` each. With `--scale`, the cases run only if `--only` names
//! them.
//!
//! Columns of the first table: goodput (frame bytes delivered per second) and
//! wire rate; received packets per second; send and receive system calls per
//! second (`recv sc` includes empty receive calls) and `ppoll` waits per
//! second; packets per send and per receive call; send drops; packets sent but
//! never read; frames lost; and the CPU time of the sending and receiving
//! threads in percent of one core.
//!
//! Second table: whether the sender used GSO; for the paced rows the frame
//! latency (submit → last needed shard received) at the median and the 99th
//! percentile, and the 99th percentile of the latency beyond the sender's own
//! send span (which with pacing includes the deliberate spreading); CPU
//! seconds per GB (10^9 bytes) of payload delivered, sending and receiving
//! thread; and the allocations of the whole process during the case (counted
//! by this example's global allocator, `stats_alloc`; setup included, and for
//! the session cases also after warm-up, the steady state), in
//! total and per received packet.
//!
//! `--json` prints the rows as a JSON array; with `--scale` it prints an
//! object `{"cases": [...], "scale": [...]}` instead.
//!
//! Note on loopback: the kernel runs the receive path of a datagram inside the
//! sender's system call, so the sending thread pays for both stacks.

use std::time::Instant;

use punktfunk_tools::bench::{self, BenchConfig, Case, Row, Workload};

/// Counts every allocation of the process, so each case can report its own.
#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

/// Allocations and reallocations of the process so far.
fn allocations() -> u64 {
    let s = GLOBAL.stats();
    (s.allocations + s.reallocations) as u64
}

const USAGE: &str = "usage: throughput [--seconds N] [--rate-mbps R] \
    [--only raw-scalar,raw-batch,raw-gso,unpaced,window,paced] [--offload on|off|both] [--scale] [--json]";

/// Client counts of `--scale`.
const SCALE_CLIENTS: [usize; 3] = [1, 4, 16];

type ScaleRow = bench::ScaleRow;

/// `v` with `prec` decimals, or `-` for none.
fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.prec$}"))
}

/// `v` with `prec` decimals, or JSON `null`.
fn json_opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "null".into(), |v| format!("{v:.prec$}"))
}

fn print_table(rows: &[Row]) {
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(4);
    println!(
        "{:<w$} {:>5} {:>7} {:>6} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7} {:>5} {:>6} {:>6} {:>5} {:>5}",
        "case",
        "secs",
        "goodput",
        "wire",
        "kpkt/s",
        "send sc",
        "recv sc",
        "polls",
        "pkt per",
        "pkt per",
        "send",
        "pkts",
        "frames",
        "tx",
        "rx"
    );
    println!(
        "{:<w$} {:>5} {:>7} {:>6} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7} {:>5} {:>6} {:>6} {:>5} {:>5}",
        "",
        "",
        "Gbit/s",
        "Gbit/s",
        "",
        "/s",
        "/s",
        "/s",
        "send sc",
        "recv sc",
        "drops",
        "lost",
        "lost",
        "cpu%",
        "cpu%"
    );
    for r in rows {
        println!(
            "{:<w$} {:>5.2} {:>7.3} {:>6.3} {:>7.1} {:>8.0} {:>8.0} {:>7.0} {:>7.1} {:>7.1} {:>5} {:>6} {:>6} {:>5.0} {:>5.0}",
            r.name,
            r.secs,
            r.goodput_gbps(),
            r.wire_gbps(),
            r.packets_per_sec() / 1e3,
            r.send_syscalls_per_sec(),
            r.recv_syscalls_per_sec(),
            r.polls_per_sec(),
            r.packets_per_send_syscall(),
            r.packets_per_recv_syscall(),
            r.send_drops,
            r.packets_lost(),
            r.frames_lost,
            r.tx_cpu_percent(),
            r.rx_cpu_percent(),
        );
    }
    println!();
    println!(
        "{:<w$} {:>4} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9} {:>7} {:>9}",
        "case", "gso", "latency", "latency", "added", "tx cpu", "rx cpu", "allocs", "allocs", "steady"
    );
    println!(
        "{:<w$} {:>4} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9} {:>7} {:>9}",
        "", "", "p50 ms", "p99 ms", "p99 ms", "s/GB", "s/GB", "", "per pkt", "per pkt"
    );
    for r in rows {
        println!(
            "{:<w$} {:>4} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9} {:>7} {:>9}",
            r.name,
            if r.offload { "on" } else { "off" },
            opt(r.latency_p50_ms, 2),
            opt(r.latency_p99_ms, 2),
            opt(r.added_latency_p99_ms, 2),
            opt(r.tx_cpu_seconds_per_gb(), 2),
            opt(r.rx_cpu_seconds_per_gb(), 2),
            r.allocations.map_or_else(|| "-".into(), |a| a.to_string()),
            opt(r.allocations_per_packet(), 4),
            opt(r.steady_allocations_per_packet(), 6),
        );
    }
}

fn print_scale(rows: &[ScaleRow]) {
    println!(
        "{:>7} {:>5} {:>9} {:>7} {:>7} {:>6} {:>6} {:>6} {:>6} {:>5}",
        "clients", "secs", "aggregate", "min", "max", "host", "host", "frames", "frames", "send"
    );
    println!(
        "{:>7} {:>5} {:>9} {:>7} {:>7} {:>6} {:>6} {:>6} {:>6} {:>5}",
        "", "", "Gbit/s", "client", "client", "cpu s", "s/GB", "sent", "lost", "drops"
    );
    for r in rows {
        println!(
            "{:>7} {:>5.2} {:>9.3} {:>7.3} {:>7.3} {:>6.2} {:>6} {:>6} {:>6} {:>5}",
            r.clients,
            r.seconds,
            r.aggregate_goodput_gbps,
            r.min_client_gbps,
            r.max_client_gbps,
            r.host_cpu_seconds,
            opt(r.host_cpu_seconds_per_gb(), 2),
            r.frames_sent,
            r.frames_lost,
            r.send_drops,
        );
    }
}

/// The rows as JSON objects, one per line, indented by `indent`.
fn json_rows(rows: &[Row], indent: &str) -> Vec<String> {
    rows.iter()
        .map(|r| {
            format!(
                "{indent}{{\"case\": \"{}\", \"secs\": {:.3}, \"goodput_gbps\": {:.4}, \"wire_gbps\": {:.4}, \
                 \"packets_per_sec\": {:.0}, \"send_syscalls_per_sec\": {:.0}, \"recv_syscalls_per_sec\": {:.0}, \
                 \"polls_per_sec\": {:.0}, \"packets_per_send_syscall\": {:.2}, \"packets_per_recv_syscall\": {:.2}, \
                 \"frames_sent\": {}, \"frames_lost\": {}, \"packets_sent\": {}, \"packets_received\": {}, \
                 \"send_drops\": {}, \"tx_cpu_percent\": {:.0}, \"rx_cpu_percent\": {:.0}, \
                 \"id\": \"{}\", \"offload\": {}, \"latency_p50_ms\": {}, \"latency_p99_ms\": {}, \
                 \"added_latency_p99_ms\": {}, \"tx_cpu_seconds_per_gb\": {}, \"rx_cpu_seconds_per_gb\": {}, \
                 \"allocations\": {}, \"allocations_per_packet\": {}, \"steady_allocations_per_packet\": {}}}",
                r.name,
                r.secs,
                r.goodput_gbps(),
                r.wire_gbps(),
                r.packets_per_sec(),
                r.send_syscalls_per_sec(),
                r.recv_syscalls_per_sec(),
                r.polls_per_sec(),
                r.packets_per_send_syscall(),
                r.packets_per_recv_syscall(),
                r.frames_sent,
                r.frames_lost,
                r.packets_sent,
                r.packets_received,
                r.send_drops,
                r.tx_cpu_percent(),
                r.rx_cpu_percent(),
                r.case.name(),
                r.offload,
                json_opt(r.latency_p50_ms, 3),
                json_opt(r.latency_p99_ms, 3),
                json_opt(r.added_latency_p99_ms, 3),
                json_opt(r.tx_cpu_seconds_per_gb(), 3),
                json_opt(r.rx_cpu_seconds_per_gb(), 3),
                r.allocations.map_or_else(|| "null".into(), |a| a.to_string()),
                json_opt(r.allocations_per_packet(), 6),
                json_opt(r.steady_allocations_per_packet(), 6),
            )
        })
        .collect()
}

fn json_scale(rows: &[ScaleRow], indent: &str) -> Vec<String> {
    rows.iter()
        .map(|r| {
            let per_client: Vec<String> = r.per_client_gbps.iter().map(|g| format!("{g:.4}")).collect();
            format!(
                "{indent}{{\"clients\": {}, \"seconds\": {:.3}, \"aggregate_goodput_gbps\": {:.4}, \
                 \"per_client_gbps\": [{}], \"min_client_gbps\": {:.4}, \"max_client_gbps\": {:.4}, \
                 \"host_cpu_seconds\": {:.3}, \"host_cpu_seconds_per_gb\": {}, \"frames_sent\": {}, \
                 \"frames_lost\": {}, \"send_drops\": {}}}",
                r.clients,
                r.seconds,
                r.aggregate_goodput_gbps,
                per_client.join(", "),
                r.min_client_gbps,
                r.max_client_gbps,
                r.host_cpu_seconds,
                json_opt(r.host_cpu_seconds_per_gb(), 3),
                r.frames_sent,
                r.frames_lost,
                r.send_drops,
            )
        })
        .collect()
}

fn print_json(rows: &[Row], scale: Option<&[ScaleRow]>) {
    match scale {
        None => println!("[\n{}\n]", json_rows(rows, "  ").join(",\n")),
        Some(scale) => println!(
            "{{\n  \"cases\": [\n{}\n  ],\n  \"scale\": [\n{}\n  ]\n}}",
            json_rows(rows, "    ").join(",\n"),
            json_scale(scale, "    ").join(",\n")
        ),
    }
}

fn num<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
    let value = value.ok_or(format!("{flag} needs a value\n{USAGE}"))?;
    value
        .parse()
        .map_err(|_| format!("bad value {value:?} for {flag}\n{USAGE}"))
}

/// Runs `scale` for each of [`SCALE_CLIENTS`].
fn run_scale(config: &BenchConfig) -> Result<Vec<ScaleRow>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for clients in SCALE_CLIENTS {
        eprintln!(
            "scale: {clients} client(s), {} Mbit/s in total, {} s",
            config.rate_mbps, config.seconds
        );
        out.push(bench::scale(clients, config.rate_mbps, config.seconds)?);
    }
    Ok(out)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = BenchConfig {
        alloc_counter: Some(allocations),
        ..BenchConfig::default()
    };
    let mut json = false;
    let mut scale = false;
    let mut only = None;
    let mut offloads = vec![true, false];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => config.seconds = num(&a, args.next())?,
            "--rate-mbps" => config.rate_mbps = num(&a, args.next())?,
            "--json" => json = true,
            "--scale" => scale = true,
            "--only" => only = Some(args.next().ok_or(format!("--only needs a value\n{USAGE}"))?),
            "--offload" => {
                offloads = match args.next().as_deref() {
                    Some("on") => vec![true],
                    Some("off") => vec![false],
                    Some("both") => vec![true, false],
                    _ => return Err(format!("--offload takes on, off or both\n{USAGE}").into()),
                }
            }
            _ => return Err(format!("unknown option {a}\n{USAGE}").into()),
        }
    }
    if config.validate().is_err() {
        return Err("--seconds must be in (0, 60] and --rate-mbps above 0".into());
    }
    let only = match only {
        Some(list) => list,
        None if scale => String::new(),
        None => Case::ALL.map(|c| c.name()).join(","),
    };
    let cases = only
        .split(',')
        .filter(|c| !c.is_empty())
        .map(|c| Case::parse(c).ok_or(format!("unknown case {c:?}\n{USAGE}")))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(warn) = bench::socket_buffer_warning()? {
        eprintln!("warning: {warn}");
    }
    let w = Workload::new();
    if !cases.is_empty() {
        eprintln!(
            "{} s per case; a 1 MiB frame is {} datagrams of {} bytes",
            config.seconds, w.per_frame, w.datagram
        );
    }
    let before = bench::machine_cpu();
    let t0 = Instant::now();
    let mut rows = Vec::new();
    for case in cases {
        let paths: &[bool] = if case.is_session() { &offloads } else { &[true] };
        for &offload in paths {
            rows.push(bench::run(case, &BenchConfig { offload, ..config })?);
        }
    }
    let scale_rows = if scale { Some(run_scale(&config)?) } else { None };
    let after = bench::machine_cpu();
    let wall = t0.elapsed().as_secs_f64();
    // Loopback softirq work may be accounted outside the process, so "other" is an upper bound.
    eprintln!(
        "machine during the run: {:.0} % of a core busy outside this process (incl. softirq), {:.0} % stolen",
        ((after.busy - before.busy) - (after.own - before.own)).max(0.0) / wall * 100.0,
        (after.stolen - before.stolen) / wall * 100.0
    );
    if json {
        print_json(&rows, scale_rows.as_deref());
    } else {
        if !rows.is_empty() {
            print_table(&rows);
        }
        if let Some(s) = &scale_rows {
            if !rows.is_empty() {
                println!();
            }
            print_scale(s);
        }
    }
    Ok(())
}
