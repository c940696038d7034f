//! Side-by-side throughput on 127.0.0.1: raw UDP versus the full `Session`
//! (FEC + AES-GCM + batching + reassembly), with the system-call counts of each.
//! The measurement engine is `punktfunk_core::bench` (feature `bench`); this is
//! its command line: argument parsing and printing.
//!
//! ```text
//! cargo run --release -p punktfunk-core --features bench --example throughput -- [--seconds N] [--rate-mbps R] [--only CASES] [--json]
//! ```
//!
//! `--only` takes a comma-separated list of `raw-scalar`, `raw-batch`,
//! `unpaced`, `window` and `paced` (default: all of them, in that order). The
//! workload and the cases are described in the `bench` module's documentation.
//!
//! Columns: goodput (frame bytes delivered per second) and wire rate; received
//! packets per second; send and receive system calls per second (`recv sc`
//! includes empty `recvmmsg` calls) and `ppoll` waits per second; packets per
//! send and per receive call; send drops; packets sent but never read; frames
//! lost; and the CPU time of the sending and receiving threads in percent of
//! one core.
//!
//! Note on loopback: the kernel runs the receive path of a datagram inside the
//! sender's system call, so the sending thread pays for both stacks.

use std::time::Instant;

use punktfunk_core::bench::{self, BenchConfig, Case, Row, Workload};

const USAGE: &str = "usage: throughput [--seconds N] [--rate-mbps R] [--only raw-scalar,raw-batch,unpaced,window,paced] [--json]";

fn print_table(rows: &[Row]) {
    println!(
        "{:<40} {:>5} {:>7} {:>6} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7} {:>5} {:>6} {:>6} {:>5} {:>5}",
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
        "{:<40} {:>5} {:>7} {:>6} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7} {:>5} {:>6} {:>6} {:>5} {:>5}",
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
            "{:<40} {:>5.2} {:>7.3} {:>6.3} {:>7.1} {:>8.0} {:>8.0} {:>7.0} {:>7.1} {:>7.1} {:>5} {:>6} {:>6} {:>5.0} {:>5.0}",
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
}

fn print_json(rows: &[Row]) {
    println!("[");
    for (i, r) in rows.iter().enumerate() {
        println!(
            "  {{\"case\": \"{}\", \"secs\": {:.3}, \"goodput_gbps\": {:.4}, \"wire_gbps\": {:.4}, \
             \"packets_per_sec\": {:.0}, \"send_syscalls_per_sec\": {:.0}, \"recv_syscalls_per_sec\": {:.0}, \
             \"polls_per_sec\": {:.0}, \"packets_per_send_syscall\": {:.2}, \"packets_per_recv_syscall\": {:.2}, \
             \"frames_sent\": {}, \"frames_lost\": {}, \"packets_sent\": {}, \"packets_received\": {}, \
             \"send_drops\": {}, \"tx_cpu_percent\": {:.0}, \"rx_cpu_percent\": {:.0}}}{}",
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
            if i + 1 < rows.len() { "," } else { "" },
        );
    }
    println!("]");
}

fn num<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
    let value = value.ok_or(format!("{flag} needs a value\n{USAGE}"))?;
    value
        .parse()
        .map_err(|_| format!("bad value {value:?} for {flag}\n{USAGE}"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = BenchConfig::default();
    let mut json = false;
    let mut only = String::from("raw-scalar,raw-batch,unpaced,window,paced");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => config.seconds = num(&a, args.next())?,
            "--rate-mbps" => config.rate_mbps = num(&a, args.next())?,
            "--json" => json = true,
            "--only" => only = args.next().ok_or(format!("--only needs a value\n{USAGE}"))?,
            _ => return Err(format!("unknown option {a}\n{USAGE}").into()),
        }
    }
    if config.validate().is_err() {
        return Err("--seconds must be in (0, 60] and --rate-mbps above 0".into());
    }
    let cases = only
        .split(',')
        .map(|c| Case::parse(c).ok_or(format!("unknown case {c:?}\n{USAGE}")))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(warn) = bench::socket_buffer_warning()? {
        eprintln!("warning: {warn}");
    }
    let w = Workload::new();
    eprintln!(
        "{} s per case; a 1 MiB frame is {} datagrams of {} bytes",
        config.seconds, w.per_frame, w.datagram
    );
    let before = bench::machine_cpu();
    let t0 = Instant::now();
    let mut rows = Vec::new();
    for case in cases {
        rows.push(bench::run(case, &config)?);
    }
    let after = bench::machine_cpu();
    let wall = t0.elapsed().as_secs_f64();
    // Loopback softirq work may be accounted outside the process, so "other" is an upper bound.
    eprintln!(
        "machine during the run: {:.0} % of a core busy outside this process (incl. softirq), {:.0} % stolen",
        ((after.busy - before.busy) - (after.own - before.own)).max(0.0) / wall * 100.0,
        (after.stolen - before.stolen) / wall * 100.0
    );
    if json {
        print_json(&rows);
    } else {
        print_table(&rows);
    }
    Ok(())
}
