//! The protocol without I/O: handshakes, message handling and timers driven
//! message by message in virtual time.

use std::time::{Duration, Instant};

use super::client::{
    AwaitingServerHello, ClientAction, ClientEvent, ClientOffer, ClientProto, LOSS_REPORT_INTERVAL,
};
use super::host::{
    probe_refused, AwaitingHello, DatagramOutcome, HostAction, HostEvent, HostOffer, HostProto, PathStep,
    ProbePolicy,
};
use super::*;
use crate::control::adaptive::{AdaptiveFec, FecBand};
use crate::control::msg::{encode_input_datagram, ControlMsg, InputEvent};
use crate::control::{MAX_BITRATE_KBPS, MAX_PROBE_KBPS, MAX_PROBE_MS};
use crate::stats::StatsSnapshot;

fn offer(max_bitrate_kbps: u32) -> HostOffer {
    HostOffer {
        session: SessionConfig::default(),
        max_bitrate_kbps,
    }
}

fn client_offer(requested_bitrate_kbps: u32) -> ClientOffer {
    ClientOffer {
        requested_bitrate_kbps,
        max_shard_payload: 1200,
        session: SessionConfig {
            max_frame_bytes: 1 << 20,
            ..SessionConfig::default()
        },
    }
}

/// Both handshakes run against each other, message by message, the path
/// challenge and its answer included.
fn handshake(host_max: u32, requested: u32) -> (Negotiated, Negotiated) {
    let now = Instant::now();
    let (awaiting, hello) = AwaitingServerHello::start(client_offer(requested), 40_000);
    let received = AwaitingHello::new(offer(host_max))
        .on_message(Some(hello))
        .unwrap();
    assert_eq!(received.client_data_port(), 40_000);
    let (ready_phase, server_hello) = received.answer(50_000, [7; 16]);
    let (validating, ready) = awaiting.on_message(Some(server_hello)).unwrap();
    assert_eq!(ready, ControlMsg::Ready);
    let mut path = ready_phase.on_message(Some(ready), [9; 16], now).unwrap();
    let challenge = path.poll_transmit(now).unwrap().expect("a challenge at once");
    let answer = validating.on_path(challenge).expect("the client answers it");
    let PathStep::Validated(on_host, validated) = path.on_path(answer) else {
        panic!("the answer validates the path")
    };
    let on_client = validating.on_message(Some(validated)).unwrap();
    (on_host, on_client)
}

#[test]
fn the_data_path_is_validated_only_by_the_token_sent_there() {
    use crate::wire::{PathKind, PathMessage};
    let t0 = Instant::now();
    let (_, hello) = AwaitingServerHello::start(client_offer(0), 1);
    let (ready_phase, _) = AwaitingHello::new(offer(1000))
        .on_message(Some(hello))
        .unwrap()
        .answer(2, [1; 16]);
    let token = [0xA5; 16];
    let path = ready_phase
        .on_message(Some(ControlMsg::Ready), token, t0)
        .unwrap();
    // A guessed answer before any challenge went out is ignored.
    let early = PathMessage {
        kind: PathKind::Response,
        token,
    };
    let mut path = path_still(path.on_path(early));
    let challenge = path.poll_transmit(t0).unwrap().unwrap();
    assert_eq!((challenge.kind, challenge.token), (PathKind::Challenge, token));
    assert_eq!(
        path.poll_transmit(t0).unwrap(),
        None,
        "one challenge per interval"
    );
    // A wrong token, or the challenge reflected back, validates nothing.
    let wrong = PathMessage {
        kind: PathKind::Response,
        token: [0; 16],
    };
    path = path_still(path.on_path(wrong));
    path = path_still(path.on_path(challenge));
    // Unanswered, the challenge is repeated a few times, then the handshake fails.
    let mut at = t0;
    for _ in 1..super::host::PATH_CHALLENGES {
        at = path.poll_timeout();
        assert!(path.poll_transmit(at).unwrap().is_some());
    }
    assert_eq!(
        at - t0,
        super::host::PATH_CHALLENGE_INTERVAL * (super::host::PATH_CHALLENGES - 1)
    );
    let e = path.poll_transmit(path.poll_timeout()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(e.message().contains("did not answer"), "{e}");
}

fn path_still(step: PathStep) -> super::host::ValidatingPath {
    match step {
        PathStep::Validated(..) => panic!("the path was validated"),
        PathStep::Pending(p) => p,
    }
}

#[test]
fn both_ends_settle_the_same_session_and_the_shard_fits_the_client() {
    let (host, client) = handshake(MAX_BITRATE_KBPS, 50_000);
    assert_eq!(host.session_id, [7; 16]);
    assert_eq!(host.session_id, client.session_id);
    assert_eq!(
        host.granted_bitrate_kbps, 50_000,
        "a request below the cap is granted"
    );
    assert_eq!(client.granted_bitrate_kbps, 50_000);
    assert_eq!((host.host_data_port, host.client_data_port), (50_000, 40_000));
    assert_eq!((client.host_data_port, client.client_data_port), (50_000, 40_000));
    // The host's 1344-byte shards shrink to the 1200 the client accepts.
    assert_eq!(host.session.fec, client.session.fec);
    assert_eq!(host.session.fec.shard_payload, 1200);
    // The client keeps its own, smaller frame limit.
    assert_eq!(client.session.max_frame_bytes, 1 << 20);
}

#[test]
fn the_grant_never_exceeds_the_host_cap_or_the_protocol_cap() {
    assert_eq!(handshake(10_000, 50_000).0.granted_bitrate_kbps, 10_000);
    assert_eq!(
        handshake(10_000, 0).0.granted_bitrate_kbps,
        10_000,
        "0 asks for the cap"
    );
    assert_eq!(
        handshake(u32::MAX, 0).0.granted_bitrate_kbps,
        MAX_BITRATE_KBPS,
        "no host grants more than the protocol allows"
    );
}

#[test]
fn a_handshake_out_of_order_is_the_peers_protocol_error() {
    let wrong_first = AwaitingHello::new(offer(1000)).on_message(Some(ControlMsg::Ready));
    assert_eq!(wrong_first.unwrap_err().kind(), ErrorKind::Protocol);
    let ended = AwaitingHello::new(offer(1000)).on_message(None);
    assert_eq!(ended.unwrap_err().kind(), ErrorKind::Protocol);
    let (_, mut hello) = AwaitingServerHello::start(client_offer(0), 1);
    if let ControlMsg::ClientHello { version, .. } = &mut hello {
        *version = 99;
    }
    let e = AwaitingHello::new(offer(1000))
        .on_message(Some(hello))
        .unwrap_err();
    assert!(e.message().contains("version 99"), "{e}");
    // A client that cannot take even the smallest shard.
    let (_, mut hello) = AwaitingServerHello::start(client_offer(0), 1);
    if let ControlMsg::ClientHello {
        max_shard_payload, ..
    } = &mut hello
    {
        *max_shard_payload = 1;
    }
    let e = AwaitingHello::new(offer(1000))
        .on_message(Some(hello))
        .unwrap_err();
    assert!(e.message().contains("client limits rejected"), "{e}");
    // The host skips Ready's wait: a second hello is refused.
    let (_, hello) = AwaitingServerHello::start(client_offer(0), 1);
    let (ready_phase, _) = AwaitingHello::new(offer(1000))
        .on_message(Some(hello.clone()))
        .unwrap()
        .answer(2, [1; 16]);
    let e = ready_phase
        .on_message(Some(hello), [0; 16], Instant::now())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    // A client waiting for the path's validation takes nothing else.
    let (awaiting, hello) = AwaitingServerHello::start(client_offer(0), 1);
    let (_, server_hello) = AwaitingHello::new(offer(1000))
        .on_message(Some(hello))
        .unwrap()
        .answer(2, [1; 16]);
    let (validating, _) = awaiting.on_message(Some(server_hello)).unwrap();
    let e = validating.on_message(Some(ControlMsg::Ready)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
}

#[test]
fn a_host_answer_beyond_the_clients_limits_is_refused() {
    let (awaiting, _) = AwaitingServerHello::start(client_offer(0), 1);
    let too_big = ControlMsg::ServerHello {
        session_id: [0; 16],
        fec_percent: 10,
        max_data_shards: 4096,
        shard_payload: 1400,
        max_frame_bytes: 1 << 20,
        granted_bitrate_kbps: 1,
        data_port: 2,
    };
    let e = awaiting.on_message(Some(too_big)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert!(e.message().contains("above the 1200"), "{e}");
    let (awaiting, _) = AwaitingServerHello::start(client_offer(0), 1);
    let bad_fec = ControlMsg::ServerHello {
        session_id: [0; 16],
        fec_percent: 200,
        max_data_shards: 4096,
        shard_payload: 1200,
        max_frame_bytes: 1 << 20,
        granted_bitrate_kbps: 1,
        data_port: 2,
    };
    let e = awaiting.on_message(Some(bad_fec)).unwrap_err();
    assert!(e.message().contains("host parameters rejected"), "{e}");
}

#[test]
fn errors_close_with_the_code_of_whoever_is_at_fault() {
    let cases = [
        (ErrorKind::Protocol, close_code::PROTOCOL),
        (ErrorKind::Timeout, close_code::PROTOCOL),
        (ErrorKind::Unauthorized, close_code::UNAUTHORIZED),
        (ErrorKind::Io, close_code::INTERNAL),
        (ErrorKind::Internal, close_code::INTERNAL),
        (ErrorKind::InvalidArgument, close_code::INTERNAL),
        (ErrorKind::Closed, close_code::NORMAL),
    ];
    for (kind, code) in cases {
        let r = close_for(&Error::new(kind, "why"));
        assert_eq!((r.code, r.reason.as_str()), (code, "why"), "{kind:?}");
    }
    let long = "é".repeat(1000);
    let r = close_for(&Error::new(ErrorKind::Protocol, long));
    assert!(r.reason.len() <= crate::control::msg::MAX_REASON_LEN);
}

fn established() -> HostProto {
    let (negotiated, _) = handshake(MAX_BITRATE_KBPS, 0);
    let probes = ProbePolicy {
        ceiling_kbps: MAX_PROBE_KBPS,
        ..ProbePolicy::default()
    };
    HostProto::new(
        &negotiated,
        Some(FecBand { min: 5, max: 40 }),
        probes,
        Instant::now(),
    )
}

#[test]
fn the_host_turns_messages_into_events_and_delivers_reliable_input_once() {
    let mut p = established();
    let now = Instant::now();
    assert_eq!(
        p.handle(ControlMsg::KeyframeRequest { first_lost: 9 }, now),
        vec![HostAction::Event(HostEvent::KeyframeRequest { first_lost: 9 })]
    );
    let key = InputEvent::KeyDown { code: 4 };
    let on_stream = ControlMsg::Input { seq: 1, event: key };
    assert_eq!(
        p.handle(on_stream.clone(), now),
        vec![HostAction::Event(HostEvent::Input(key))]
    );
    // The same edge again, on the stream or as a datagram: not delivered twice.
    assert!(p.handle(on_stream, now).is_empty());
    assert_eq!(
        p.handle_datagram(&encode_input_datagram(1, &key), now),
        DatagramOutcome::Duplicate
    );
    // Lossy events come as datagrams; garbage is dropped for the driver to count.
    let motion = InputEvent::MouseMove { dx: 1, dy: 2 };
    assert_eq!(
        p.handle_datagram(&encode_input_datagram(2, &motion), now),
        DatagramOutcome::Event(HostEvent::Input(motion))
    );
    assert_eq!(p.handle_datagram(&[1, 2, 3], now), DatagramOutcome::Dropped);
    // Messages meant for a client are ignored.
    assert!(p.handle(ControlMsg::FecChanged { percent: 3 }, now).is_empty());
    let close = CloseReason {
        code: 4,
        reason: "bye".into(),
    };
    assert_eq!(
        p.handle(ControlMsg::Close(close.clone()), now),
        vec![HostAction::Close(close)]
    );
}

#[test]
fn one_probe_at_a_time_within_the_protocol_bounds() {
    let mut p = established();
    let now = Instant::now();
    let ask = ControlMsg::ProbeRequest {
        target_kbps: u32::MAX,
        duration_ms: u32::MAX,
    };
    assert_eq!(
        p.handle(ask.clone(), now),
        vec![HostAction::StartProbe {
            kbps: MAX_PROBE_KBPS,
            ms: MAX_PROBE_MS
        }]
    );
    assert!(
        p.handle(ask.clone(), now).is_empty(),
        "a second request while one runs is ignored"
    );
    p.probe_finished();
    assert_eq!(p.handle(ask, now).len(), 1, "after it ends another may start");
}

fn probe_session(policy: ProbePolicy, granted_kbps: u32) -> HostProto {
    let (negotiated, _) = handshake(granted_kbps, 0);
    HostProto::new(&negotiated, None, policy, Instant::now())
}

#[test]
fn probes_stay_under_the_hosts_ceiling_and_the_clients_budget() {
    let t0 = Instant::now();
    let ask = |kbps, ms| ControlMsg::ProbeRequest {
        target_kbps: kbps,
        duration_ms: ms,
    };
    // Default ceiling: the session's grant (here 20 Mbit/s), whatever is asked.
    let mut p = probe_session(ProbePolicy::default(), 20_000);
    assert_eq!(
        p.handle(ask(3_000_000, 5000), t0),
        vec![HostAction::StartProbe {
            kbps: 20_000,
            ms: 5000
        }]
    );
    p.probe_finished();
    // 10 s of probe time per minute: the second 5 s probe fits, a third gets nothing.
    assert_eq!(p.handle(ask(1000, 5000), t0).len(), 1);
    p.probe_finished();
    assert_eq!(
        p.handle(ask(1000, 5000), t0),
        vec![HostAction::Send(probe_refused())]
    );
    // The budget refills over the minute: after 15 s, 2.5 s more.
    let later = t0 + Duration::from_secs(15);
    assert_eq!(
        p.handle(ask(1000, 5000), later),
        vec![HostAction::StartProbe { kbps: 1000, ms: 2500 }],
        "shortened to what is left"
    );
    // An explicit ceiling, and probes switched off.
    let mut p = probe_session(
        ProbePolicy {
            ceiling_kbps: 5000,
            ..ProbePolicy::default()
        },
        1_000_000,
    );
    assert_eq!(
        p.handle(ask(3_000_000, 100), t0),
        vec![HostAction::StartProbe { kbps: 5000, ms: 100 }]
    );
    let mut off = probe_session(
        ProbePolicy {
            enabled: false,
            ..ProbePolicy::default()
        },
        1000,
    );
    assert_eq!(
        off.handle(ask(100, 100), t0),
        vec![HostAction::Send(probe_refused())]
    );
}

/// A loss report of `completed` and `dropped` frames, 100 datagrams a frame.
fn report(completed: u64, dropped: u64) -> ControlMsg {
    ControlMsg::LossReport {
        frames_completed: completed,
        frames_dropped: dropped,
        fec_recovered_shards: 0,
        packets_received: completed * 100,
    }
}

#[test]
fn loss_reports_move_fec_with_a_message_an_event_and_the_new_percentage() {
    let mut p = established();
    p.fec_set(40);
    let now = Instant::now();
    assert!(
        p.handle(report(10, 0), now).is_empty(),
        "the first report is the baseline"
    );
    // A dead frame moves FEC up by 10 points, capped by the band: at its top, nothing changes.
    assert!(
        p.handle(report(20, 1), now).is_empty(),
        "already at the band's top"
    );
    p.fec_set(20);
    assert_eq!(
        p.handle(report(30, 2), now),
        vec![
            HostAction::SetFec(30),
            HostAction::Send(ControlMsg::FecChanged { percent: 30 }),
            HostAction::Event(HostEvent::FecChanged { percent: 30 }),
        ]
    );
}

#[test]
fn a_frame_lost_to_congestion_leaves_fec_alone() {
    let mut p = established();
    p.fec_set(20);
    let now = Instant::now();
    assert!(p.handle(report(10, 0), now).is_empty());
    // The rate control backed off for congestion: the dead frame is its to answer.
    p.note_congestion(1);
    assert!(p.handle(report(20, 1), now).is_empty());
    assert!(p.handle(report(30, 2), now).is_empty());
    // Two reports on, a dead frame raises FEC again.
    assert_eq!(p.handle(report(40, 3), now)[0], HostAction::SetFec(30));
}

#[test]
fn the_client_reports_loss_on_its_cadence_and_reads_host_messages() {
    let t0 = Instant::now();
    let mut p = ClientProto::new(t0);
    let stats = StatsSnapshot {
        frames_completed: 5,
        packets_received: 50,
        ..StatsSnapshot::default()
    };
    assert_eq!(p.poll_timeout(), t0 + LOSS_REPORT_INTERVAL);
    assert_eq!(
        p.handle_timeout(t0 + Duration::from_millis(100), &stats),
        None,
        "not yet due"
    );
    let report = p.handle_timeout(t0 + LOSS_REPORT_INTERVAL, &stats).unwrap();
    assert!(matches!(
        report,
        ControlMsg::LossReport {
            frames_completed: 5,
            packets_received: 50,
            ..
        }
    ));
    assert_eq!(
        p.poll_timeout(),
        t0 + 2 * LOSS_REPORT_INTERVAL,
        "the cadence holds"
    );
    // A timer woken very late sends one report, then keeps the cadence from then.
    let late = t0 + Duration::from_secs(10);
    assert!(p.handle_timeout(late, &stats).is_some());
    assert!(
        p.handle_timeout(late, &stats).is_none(),
        "no burst of overdue reports"
    );
    assert_eq!(p.poll_timeout(), late + LOSS_REPORT_INTERVAL);
    assert_eq!(
        p.handle(ControlMsg::FecChanged { percent: 12 }, late),
        Some(ClientAction::Event(ClientEvent::FecChanged { percent: 12 }))
    );
    assert!(matches!(
        p.handle(
            ControlMsg::ProbeDone {
                packets_sent: 3,
                bytes_sent: 9,
                send_drops: 1,
                duration_us: 7,
                rate_kbps: 8
            },
            late
        ),
        Some(ClientAction::ProbeDone {
            packets_sent: 3,
            send_drops: 1,
            duration_us: 7,
            rate_kbps: 8
        })
    ));
    assert_eq!(
        p.handle(ControlMsg::Ready, late),
        None,
        "host-bound messages are ignored"
    );
}

#[test]
fn input_dedup_is_bounded_and_refuses_every_later_copy() {
    let mut d = InputDedup::default();
    assert!(d.first(7));
    assert!(!d.first(7), "the second copy is refused");
    assert!(!d.first(7), "and the third");
    // A client sending ever-decreasing sequences cannot grow the set.
    for seq in (0..100_000u32).rev() {
        d.first(seq);
    }
    assert!(d.seen.len() <= INPUT_DEDUP_WINDOW);
}

#[test]
fn hostile_loss_reports_do_not_panic_the_policy() {
    let mut a = AdaptiveFec::new(FecBand::default(), 10);
    a.on_counters(0, 0, 0, 0);
    let _ = a.on_counters(u64::MAX, u64::MAX, u64::MAX, u64::MAX);
    let _ = a.on_counters(1, 0, 0, 0);
    let band = FecBand::default();
    assert!((band.min..=band.max).contains(&a.current()));
}
