//! Session counters: relaxed atomics written by the data path, read as a snapshot.
//!
//! Every counter only grows, except the rate gauges (`estimated_kbps`,
//! `target_kbps`, `rtt_us`, `queue_delay_us`, `rate_state`, `pacing_kbps`,
//! `delivery_kbps`, `competing_flow`), which a host session's rate
//! controller sets to its latest figures. A snapshot is not one atomic cut across all counters
//! (each is read separately), which is fine for monitoring and for the end-of-run
//! accounting tests, which read after the data path has gone quiet.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Live counters shared between a session's data path and its observers.
        #[derive(Debug, Default)]
        pub struct Stats {
            $( $(#[$doc])* pub $name: AtomicU64, )*
        }

        /// A plain copy of [`Stats`] taken at one moment.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct StatsSnapshot {
            $( $(#[$doc])* pub $name: u64, )*
        }

        impl Stats {
            /// Copies every counter.
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $( $name: self.$name.load(Ordering::Relaxed), )* }
            }
        }

        impl StatsSnapshot {
            /// Names and values of every counter, in declaration order.
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![ $( (stringify!($name), self.$name), )* ]
            }
        }
    };
}

counters! {
    /// Frames handed to `submit_frame`.
    frames_submitted,
    /// Frames delivered whole and byte-exact by `poll_frame`.
    frames_completed,
    /// Frames that will never be delivered (aged out, evicted, superseded, or never seen).
    frames_dropped,
    /// Data packets handed to the kernel (or to the in-process transport).
    packets_sent,
    /// Datagrams read from the transport, before any check.
    packets_received,
    /// Packets dropped locally on send because the send buffer was full.
    packets_send_dropped,
    /// Received packets that failed AES-GCM authentication.
    recv_dropped_auth,
    /// Received packets whose sequence was already seen (replays, duplicates).
    recv_dropped_replay,
    /// Received packets with a bad version, length or inconsistent header.
    recv_dropped_malformed,
    /// Authenticated packets claiming sizes beyond the negotiated bounds.
    recv_dropped_out_of_bounds,
    /// Packets too old for the replay window, for a frame already given up, or for a
    /// new frame older than every open one while all reassembly slots are busy.
    recv_dropped_stale,
    /// Authenticated shards not needed: their block was already complete, the same
    /// shard arrived twice, or the frame was delivered recently.
    packets_redundant,
    /// Data shards rebuilt by FEC instead of received.
    fec_recovered_shards,
    /// Wire bytes handed to the transport (headers, tags and FEC included).
    bytes_sent,
    /// Wire bytes read from the transport.
    bytes_received,
    /// Frame payload bytes delivered to the application.
    payload_bytes_delivered,
    /// Send system calls made (sendmmsg / sendmsg / send).
    send_syscalls,
    /// Receive system calls made (recvmmsg / recv), including empty ones.
    recv_syscalls,
    /// Readiness waits (ppoll) made by the transport before receiving.
    recv_wait_syscalls,
    /// Key epochs started on the send side (rotation, see docs/PROTOCOL.md).
    key_rotations,
    /// Probe (speed-test filler) packets received and authenticated.
    probe_packets_received,
    /// Datagrams from a source other than the session's peer, dropped by a
    /// filtering UDP transport before any other check (not in `packets_received`).
    recv_dropped_foreign,
    /// Times the rate controller backed off for congestion (a growing queue,
    /// loss at a full queue, loss beyond what FEC repairs, stale reports, a
    /// start-up ramp that overshot).
    congestion_events,
    /// Gauge: the rate controller's estimate of the path, kbit/s (0 without one).
    estimated_kbps,
    /// Gauge: the media bitrate the encoder should aim for, kbit/s: the
    /// estimate less FEC and header overhead, within the session's ceiling,
    /// as last published (the figure `target_bitrate_kbps` returns; it moves
    /// when the target moved by more than 3 %).
    target_kbps,
    /// Gauge: the QUIC connection's smoothed round-trip time, µs.
    rtt_us,
    /// Gauge: queue delay on the path (one-way delay above its recent
    /// minimum), µs.
    queue_delay_us,
    /// Gauge: what the host's rate controller is doing, as a
    /// [`crate::rate::RateState::code`]: 1 start-up, 2 probe, 3 drain,
    /// 4 steady, 5 back-off, 6 hold (feedback silent), 7 fixed; 0 without a
    /// controller of the session's own (client sessions, `adaptive: false`,
    /// browser sessions, whose rate QUIC's congestion control sets).
    rate_state,
    /// Gauge: the rate datagrams leave at, kbit/s (host sessions with rate
    /// control; within the host-wide ceiling).
    pacing_kbps,
    /// Gauge: the rate the client last measured arriving, kbit/s (0: no
    /// report yet).
    delivery_kbps,
    /// Gauge: 1 while the rate controller shares the bottleneck with a
    /// loss-based flow (it then backs off for loss only, not for the queue
    /// that flow keeps), else 0.
    competing_flow,
    /// Client feedback reports the rate controller used.
    feedback_reports,
    /// Client feedback datagrams refused: undecodable, contradicting
    /// earlier reports or what was sent. Each changes nothing else.
    feedback_dropped,
    /// Feedback reports about packets sent so long ago that they say nothing
    /// of the path now (a path that stopped delivering, or reports held up);
    /// each round of them halved the estimate.
    stale_reports,
    /// Times the rate controller learnt its one-way-delay base again (cut
    /// after cut left the queue delay where it was).
    delay_base_resets,
    /// Reports with loss the rate controller judged random (flat delay,
    /// path not full): left to FEC, no back-off.
    random_loss_reports,
}

impl Stats {
    /// Adds `n` to a counter (relaxed).
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets a gauge (relaxed).
    #[inline]
    pub fn set(gauge: &AtomicU64, v: u64) {
        gauge.store(v, Ordering::Relaxed);
    }
}

impl StatsSnapshot {
    /// All receive-side drops, whatever the reason.
    pub fn recv_dropped_total(&self) -> u64 {
        self.recv_dropped_auth
            + self.recv_dropped_replay
            + self.recv_dropped_malformed
            + self.recv_dropped_out_of_bounds
            + self.recv_dropped_stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_copies_every_counter() {
        let s = Stats::default();
        Stats::add(&s.packets_sent, 3);
        Stats::add(&s.recv_dropped_auth, 2);
        Stats::add(&s.recv_dropped_stale, 5);
        let snap = s.snapshot();
        assert_eq!(snap.packets_sent, 3);
        assert_eq!(snap.recv_dropped_total(), 7);
        let fields = snap.fields();
        assert_eq!(fields.len(), 36);
        assert!(fields.contains(&("recv_dropped_auth", 2)));
    }
}
