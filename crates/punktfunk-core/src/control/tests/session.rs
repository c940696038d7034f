//! An established session: frames, input, the speed test, FEC changes,
//! keys, timeouts and close reasons.

use super::*;
use std::net::SocketAddr;

#[test]
fn pinned_client_gets_frames_sends_input_and_reads_the_close_reason() {
    let h = host(None);
    let addr = h.local_addr().unwrap();
    let fp = h.fingerprint();
    let sizes = [1usize, 5000, 2_000_000, 300_000];
    let host_side = thread::spawn(move || {
        let s = h
            .accept(Some(Duration::from_secs(10)))
            .unwrap()
            .expect("a client");
        assert_eq!(
            s.granted_bitrate_kbps(),
            50_000,
            "the request is granted when below the cap"
        );
        for (i, &n) in sizes.iter().enumerate() {
            s.submit_frame(
                &frame(i, n),
                FrameMeta {
                    pts: i as u64,
                    keyframe: i == 0,
                },
            )
            .unwrap();
        }
        let mut inputs = Vec::new();
        let mut keyframe = None;
        while inputs.len() < 5 || keyframe.is_none() {
            match next_host_event(&s) {
                HostEvent::Input(ev) => inputs.push(ev),
                HostEvent::KeyframeRequest { first_lost } => keyframe = Some(first_lost),
                e => panic!("unexpected {e:?}"),
            }
        }
        s.close(close_code::NORMAL, "end of stream");
        (inputs, keyframe, s.stats())
    });
    let mut cfg = ClientConfig::new(Trust::Pin(fp));
    cfg.requested_bitrate_kbps = 50_000;
    let mut c = Client::connect(addr, cfg).unwrap();
    let got = read_frames(&mut c, sizes.len());
    for (i, f) in got.iter().enumerate() {
        assert_eq!(f.index, i as u64);
        assert_eq!(f.data, frame(i, sizes[i]), "frame {i} differs");
        assert_eq!((f.pts, f.keyframe), (i as u64, i == 0));
    }
    let sent = [
        InputEvent::KeyDown { code: 4 },
        InputEvent::MouseMove { dx: -3, dy: 7 },
        InputEvent::GamepadAxis {
            pad: 0,
            axis: axis::LEFT_X,
            value: -32768,
        },
        InputEvent::GamepadButtons {
            pad: 1,
            buttons: button::A | button::START,
        },
        InputEvent::KeyUp { code: 4 },
    ];
    for ev in sent {
        c.send_input(ev).unwrap();
    }
    c.request_keyframe(99).unwrap();
    // The host closes after reading everything: the client sees its reason.
    let deadline = Instant::now() + Duration::from_secs(10);
    let err = loop {
        assert!(Instant::now() < deadline, "the host's close never arrived");
        if let Err(e) = c.recv_frame(Duration::from_millis(100)) {
            break e;
        }
    };
    assert_eq!(err.kind(), ErrorKind::Closed);
    let reason = c.closed_reason().expect("closed");
    assert_eq!(reason.code, close_code::NORMAL);
    assert_eq!(reason.reason, "end of stream");
    let (inputs, keyframe, hstats) = host_side.join().unwrap();
    // Key edges and button state arrive exactly once each, edges in order.
    let edges: Vec<_> = inputs.iter().filter(|e| e.must_arrive()).copied().collect();
    assert_eq!(
        edges,
        vec![sent[0], sent[3], sent[4]],
        "reliable events, once each, in order"
    );
    assert!(
        inputs.contains(&sent[1]) && inputs.contains(&sent[2]),
        "datagram events arrive on loopback"
    );
    assert_eq!(keyframe, Some(99));
    assert_eq!(hstats.frames_submitted, sizes.len() as u64);
    assert_eq!(c.stats().frames_completed, sizes.len() as u64);
}

#[test]
fn speed_test_reports_what_arrived_without_touching_frame_indices() {
    let h = host(None);
    let addr = h.local_addr().unwrap();
    let cfg = ClientConfig::new(Trust::Pin(h.fingerprint()));
    let host_side = thread::spawn(move || {
        let s = h.accept(Some(Duration::from_secs(10))).unwrap().expect("client");
        s.submit_frame(b"before", FrameMeta::default()).unwrap();
        // Serve until the client leaves (the probe runs on the host's QUIC task).
        while !matches!(
            s.next_event(Duration::from_secs(10)).unwrap(),
            Some(HostEvent::Closed(_)) | None
        ) {}
        s.submit_frame(b"after", FrameMeta::default()).ok();
        s.stats()
    });
    let mut c = Client::connect(addr, cfg).unwrap();
    let r = c.speed_test(200_000, Duration::from_secs(1)).unwrap();
    assert!(r.packets_sent > 0, "{r:?}");
    // The reported rate is what arrived over the probe's duration, exactly...
    let datagram_bits = (SessionConfig::default().fec.datagram_len() * 8) as f64;
    let arrived_kbps = r.packets_received as f64 * datagram_bits / r.duration.as_secs_f64() / 1e3;
    assert!(
        (r.delivered_kbps - arrived_kbps).abs() <= arrived_kbps * 0.02,
        "{} kbit/s reported, {arrived_kbps} counted: {r:?}",
        r.delivered_kbps
    );
    // ...and near what was asked: never above it, and not far below it even
    // when the machine is busy (the benchmarks, not this test, measure how close).
    assert!(
        (100_000.0..=220_000.0).contains(&r.delivered_kbps),
        "200 Mbit/s asked, {} kbit/s delivered: {r:?}",
        r.delivered_kbps
    );
    assert_eq!(r.loss_percent, 0.0, "loopback loses nothing at 200 Mbit/s: {r:?}");
    assert_eq!(r.send_drops, 0);
    assert!(r.duration >= Duration::from_millis(950), "{r:?}");
    let f = read_frames(&mut c, 1);
    assert_eq!(
        (f[0].index, f[0].data.as_slice()),
        (0, b"before".as_slice()),
        "frames keep their indices"
    );
    let e = c
        .speed_test(MAX_PROBE_KBPS + 1, Duration::from_millis(100))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    c.close(close_code::NORMAL, "done");
    let hs = host_side.join().unwrap();
    assert_eq!(hs.frames_submitted, 1, "the probe submitted no frames");
}

#[test]
fn one_host_serves_several_clients_each_with_its_own_session() {
    let h = host(None);
    let addr = h.local_addr().unwrap();
    let fp = h.fingerprint();
    let host_side = thread::spawn(move || {
        let mut sessions = Vec::new();
        for i in 0..3 {
            let s = h.accept(Some(Duration::from_secs(10))).unwrap();
            sessions.push(s.unwrap_or_else(|| panic!("client {i} never came")));
        }
        let ids: Vec<_> = sessions.iter().map(|s| s.session_id()).collect();
        for (i, s) in sessions.iter().enumerate() {
            s.submit_frame(&frame(i, 100_000 + i), FrameMeta::default())
                .unwrap();
        }
        for s in &sessions {
            assert!(matches!(next_host_event(s), HostEvent::Closed(_)));
        }
        ids
    });
    let threads: Vec<_> = (0..3)
        .map(|_| {
            thread::spawn(move || {
                let mut c =
                    Client::connect(addr, ClientConfig::new(Trust::Pin(fp))).expect("client connects");
                let f = read_frames(&mut c, 1).remove(0);
                c.close(close_code::NORMAL, "thanks");
                (c.session_id(), f.data)
            })
        })
        .collect();
    let clients: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ids = host_side.join().unwrap();
    for (id, data) in clients {
        let i = ids
            .iter()
            .position(|x| *x == id)
            .expect("the host knows this session");
        assert_eq!(data, frame(i, 100_000 + i), "each client got its own stream");
    }
}

#[test]
fn the_client_close_reason_reaches_the_host() {
    let h = host(None);
    let addr = h.local_addr().unwrap();
    let fp = h.fingerprint();
    let host_side = thread::spawn(move || {
        let s = h.accept(Some(Duration::from_secs(10))).unwrap().expect("client");
        let e = next_host_event(&s);
        (e, s.submit_frame(b"x", FrameMeta::default()).map(|_| ()))
    });
    let c = Client::connect(addr, ClientConfig::new(Trust::Pin(fp))).unwrap();
    c.close(close_code::APPLICATION, "user quit");
    let (event, later) = host_side.join().unwrap();
    assert_eq!(
        event,
        HostEvent::Closed(CloseReason {
            code: close_code::APPLICATION,
            reason: "user quit".into()
        })
    );
    assert_eq!(
        later.unwrap_err().kind(),
        ErrorKind::Closed,
        "no frames after the client left"
    );
}

#[test]
fn adaptive_fec_on_the_host_follows_loss_reports() {
    let h = host(Some(FecBand { min: 5, max: 40 }));
    let addr = h.local_addr().unwrap();
    let fp = h.fingerprint();
    // The client acknowledges each frame, so the host streams as fast as
    // the client reads and nothing is lost to an overrun buffer.
    let (ack_tx, ack_rx) = std::sync::mpsc::channel::<()>();
    let host_side = thread::spawn(move || {
        let s = h.accept(Some(Duration::from_secs(10))).unwrap().expect("client");
        s.set_fec_percent(40).unwrap();
        // Stream clean frames; the client's reports should walk FEC down.
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut i = 0usize;
        while s.fec_percent() > 30 && Instant::now() < deadline {
            s.submit_frame(&frame(i, 50_000), FrameMeta::default()).unwrap();
            i += 1;
            ack_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        let pct = s.fec_percent();
        s.close(close_code::NORMAL, "done");
        pct
    });
    let mut c = Client::connect(addr, ClientConfig::new(Trust::Pin(fp))).unwrap();
    let mut saw_change = false;
    while let Ok(ev) = c.recv_frame(Duration::from_secs(10)) {
        if matches!(ev, Some(FrameEvent::Frame(_))) {
            let _ = ack_tx.send(());
        }
        while let Some(ev) = c.poll_event() {
            saw_change |= matches!(ev, ClientEvent::FecChanged { .. });
        }
    }
    let pct = host_side.join().unwrap();
    assert!(pct <= 30, "a clean link brings FEC down from 40, got {pct}");
    assert!(saw_change, "the client hears about FEC changes");
}

#[test]
fn split_halves_run_on_workers_with_events_notified() {
    use crate::session::RecvWorker;
    let h = host(None);
    let addr = h.local_addr().unwrap();
    let fp = h.fingerprint();
    let host_side = thread::spawn(move || {
        let s = h.accept(Some(Duration::from_secs(10))).unwrap().expect("client");
        let (signal, woken) = std::sync::mpsc::channel();
        s.set_notify(Some(Arc::new(move || {
            let _ = signal.send(());
        })));
        let tx = s.sender();
        for i in 0..10 {
            tx.submit(frame(i, 80_000), FrameMeta::default(), None).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut input = None;
        while input.is_none() && Instant::now() < deadline {
            if let Some(HostEvent::Input(ev)) = s.next_event(Duration::from_millis(100)).unwrap() {
                input = Some(ev);
            }
        }
        // The callback runs on the network thread as the event is queued; a
        // reader woken by its own timeout may take the event first.
        woken
            .recv_timeout(Duration::from_secs(10))
            .expect("the notify callback ran");
        while !matches!(
            s.next_event(Duration::from_secs(10)).unwrap(),
            Some(HostEvent::Closed(_)) | None
        ) {}
        input
    });
    let c = Client::connect(addr, ClientConfig::new(Trust::Pin(fp))).unwrap();
    let (rx, control) = c.split();
    let mut rx = RecvWorker::spawn(rx, 16, None).unwrap();
    for i in 0..10 {
        match rx.next(Some(Duration::from_secs(10))).unwrap() {
            Some(FrameEvent::Frame(f)) => assert_eq!(f.data, frame(i, 80_000)),
            other => panic!("unexpected {other:?}"),
        }
    }
    let probe = control.speed_test(50_000, Duration::from_millis(300)).unwrap();
    assert!(
        probe.packets_received > 0,
        "the worker kept reading during the probe: {probe:?}"
    );
    control.send_input(InputEvent::KeyDown { code: 30 }).unwrap();
    control.close(close_code::NORMAL, "bye");
    assert_eq!(host_side.join().unwrap(), Some(InputEvent::KeyDown { code: 30 }));
    // The session is over: the receive worker reports the end.
    let end = rx.next(Some(Duration::from_secs(10)));
    assert!(
        matches!(end, Err(ref e) if e.kind() == ErrorKind::Closed),
        "{end:?}"
    );
    rx.close();
}

#[test]
fn keys_match_per_session_differ_between_sessions_and_never_cross_the_control_stream() {
    // Taps on both ends: every control message written, every key derived.
    let sent = Arc::new(Mutex::new(Vec::<u8>::new()));
    let keys = |log: &Arc<Mutex<Vec<Vec<u8>>>>| -> KeyTap {
        let log = log.clone();
        Arc::new(move |k: &crate::SessionKeys| {
            let km = [k.host_to_client.material(), k.client_to_host.material()].concat();
            log.lock().unwrap().push(km);
        })
    };
    let tap = || -> Tap {
        let sent = sent.clone();
        Arc::new(move |b: &[u8]| sent.lock().unwrap().extend_from_slice(b))
    };
    let (host_keys, client_keys) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let hooks = |log| Hooks {
        on_control_sent: Some(tap()),
        dangerous_on_session_keys: Some(keys(log)),
        input_datagram_filter: None,
    };
    let cfg = HostConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        hooks: hooks(&host_keys),
        ..HostConfig::default()
    };
    let h = Host::with_identity(cfg, Identity::generate().unwrap()).unwrap();
    let addr = h.local_addr().unwrap();
    let fp = h.fingerprint();
    let host_side = thread::spawn(move || {
        let a = h
            .accept(Some(Duration::from_secs(10)))
            .unwrap()
            .expect("client a");
        let b = h
            .accept(Some(Duration::from_secs(10)))
            .unwrap()
            .expect("client b");
        assert_ne!(a.session_id(), b.session_id());
        a.close(close_code::NORMAL, "done");
        b.close(close_code::NORMAL, "done");
    });
    let client = || ClientConfig {
        hooks: hooks(&client_keys),
        ..ClientConfig::new(Trust::Pin(fp))
    };
    let ca = Client::connect(addr, client()).unwrap();
    let cb = Client::connect(addr, client()).unwrap();
    host_side.join().unwrap();
    drop((ca, cb));
    let mut on_host = host_keys.lock().unwrap().clone();
    let mut on_clients = client_keys.lock().unwrap().clone();
    on_host.sort();
    on_clients.sort();
    // Both sides of each session derived the same keys; two sessions never share them.
    assert_eq!(on_host.len(), 2);
    assert_eq!(on_host, on_clients, "client and host of one session agree");
    let (ha, hb) = (&on_host[0], &on_host[1]);
    assert_ne!(ha, hb, "two sessions never share keys");
    assert_eq!(ha.len(), 2 * (16 + 4), "two directions of key and salt");
    // No 8-byte window of any key or salt appears in any control message sent.
    let sent = sent.lock().unwrap().clone();
    assert!(sent.len() > 100, "messages were recorded");
    for km in [ha, hb] {
        for w in km.windows(8) {
            assert!(
                !sent.windows(8).any(|x| x == w),
                "key material leaked into a control message"
            );
        }
    }
}

#[test]
fn key_edges_survive_lost_input_datagrams() {
    let h = host(None);
    let addr = h.local_addr().unwrap();
    let fp = h.fingerprint();
    let host_side = thread::spawn(move || {
        let s = h.accept(Some(Duration::from_secs(10))).unwrap().expect("client");
        let mut got = Vec::new();
        while let Some(e) = s.next_event(Duration::from_millis(1500)).unwrap() {
            match e {
                HostEvent::Input(ev) => got.push(ev),
                HostEvent::Closed(_) => break,
                _ => {}
            }
        }
        got
    });
    // Every input datagram is lost on the way.
    let cfg = ClientConfig {
        hooks: Hooks {
            input_datagram_filter: Some(Arc::new(|_| false)),
            ..Hooks::default()
        },
        ..ClientConfig::new(Trust::Pin(fp))
    };
    let c = Client::connect(addr, cfg).unwrap();
    let sent = [
        InputEvent::KeyDown { code: 1 },
        InputEvent::MouseMove { dx: 1, dy: 1 },
        InputEvent::MouseButton {
            button: 1,
            down: true,
        },
        InputEvent::GamepadAxis {
            pad: 0,
            axis: axis::LEFT_Y,
            value: 9,
        },
        InputEvent::MouseButton {
            button: 1,
            down: false,
        },
        InputEvent::KeyUp { code: 1 },
    ];
    for ev in sent {
        c.send_input(ev).unwrap();
    }
    c.close(close_code::NORMAL, "done");
    let got = host_side.join().unwrap();
    assert_eq!(
        got,
        vec![sent[0], sent[2], sent[4], sent[5]],
        "every datagram was lost: the edges still arrive, in order, with their values"
    );
}

/// A UDP relay between a client and a host that can go silent.
struct Relay {
    addr: SocketAddr,
    cut: Arc<std::sync::atomic::AtomicBool>,
}

fn relay(to: SocketAddr) -> Relay {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let addr = sock.local_addr().unwrap();
    let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let c = cut.clone();
    thread::spawn(move || {
        let mut client: Option<SocketAddr> = None;
        let mut buf = [0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            if c.load(Ordering::Relaxed) {
                continue;
            }
            if from == to {
                if let Some(cl) = client {
                    let _ = sock.send_to(&buf[..n], cl);
                }
            } else {
                client = Some(from);
                let _ = sock.send_to(&buf[..n], to);
            }
        }
    });
    Relay { addr, cut }
}

#[test]
fn a_silent_peer_times_out_and_both_sides_say_why() {
    let cfg = HostConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        idle_timeout: Duration::from_millis(1500),
        keepalive: Duration::from_millis(300),
        ..HostConfig::default()
    };
    let h = Host::with_identity(cfg, Identity::generate().unwrap()).unwrap();
    let r = relay(h.local_addr().unwrap());
    let fp = h.fingerprint();
    let cut = r.cut.clone();
    let host_side = thread::spawn(move || {
        let s = h.accept(Some(Duration::from_secs(10))).unwrap().expect("client");
        let t0 = Instant::now();
        let ev = loop {
            match s.next_event(Duration::from_secs(10)).unwrap() {
                Some(HostEvent::Closed(r)) => break r,
                Some(_) => {}
                None => panic!("no close within 10 s"),
            }
        };
        (ev, t0.elapsed())
    });
    let mut cc = ClientConfig::new(Trust::Pin(fp));
    cc.idle_timeout = Duration::from_millis(1500);
    cc.keepalive = Duration::from_millis(300);
    let mut c = Client::connect(r.addr, cc).unwrap();
    // Half the idle timeout and more without a frame: keep-alives hold it open.
    assert_eq!(c.recv_frame(Duration::from_millis(800)).unwrap(), None);
    assert!(
        c.closed_reason().is_none(),
        "keep-alives hold an idle session open"
    );
    cut.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    let err = loop {
        if let Err(e) = c.recv_frame(Duration::from_millis(100)) {
            break e;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "the client never noticed");
    };
    assert_eq!(err.kind(), ErrorKind::Closed);
    let client_reason = c.closed_reason().unwrap();
    assert_eq!(client_reason.code, close_code::IDLE, "{client_reason:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "within the idle timeout (+ slack): {:?}",
        t0.elapsed()
    );
    let (host_reason, _) = host_side.join().unwrap();
    assert_eq!(host_reason.code, close_code::IDLE, "{host_reason:?}");
}

#[test]
fn datagrams_from_anyone_but_the_peer_are_dropped_and_counted() {
    let h = host(None);
    let addr = h.local_addr().unwrap();
    let fp = h.fingerprint();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let host_side = thread::spawn(move || {
        let s = h.accept(Some(Duration::from_secs(10))).unwrap().expect("client");
        go_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        for i in 0..5 {
            s.submit_frame(&frame(i, 30_000), FrameMeta::default()).unwrap();
        }
        while !matches!(
            s.next_event(Duration::from_secs(10)).unwrap(),
            Some(HostEvent::Closed(_)) | None
        ) {}
    });
    let mut c = Client::connect(addr, ClientConfig::new(Trust::Pin(fp))).unwrap();
    let data_addr = c.data_local_addr().unwrap();
    // A stranger who learned the data port floods it with datagrams of the right size.
    let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let junk = vec![0x5Au8; SessionConfig::default().fec.datagram_len()];
    for _ in 0..200 {
        stranger.send_to(&junk, data_addr).unwrap();
    }
    go_tx.send(()).unwrap();
    let frames = read_frames(&mut c, 5);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.data, frame(i, 30_000));
    }
    let s = c.stats();
    assert_eq!(s.recv_dropped_foreign, 200, "every stranger datagram is counted");
    assert_eq!(
        s.recv_dropped_auth + s.recv_dropped_malformed,
        0,
        "and none reached the opener"
    );
    c.close(close_code::NORMAL, "done");
    host_side.join().unwrap();
}

#[test]
fn simulated_loss_on_the_host_path_is_repaired_by_fec_over_real_sockets() {
    let cfg = HostConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        adaptive_fec: None,
        impairment: Some(crate::transport::ImpairmentConfig::drop_every(20)),
        ..HostConfig::default()
    };
    let bad = HostConfig {
        impairment: Some(crate::transport::ImpairmentConfig::random_loss(1, 150.0)),
        ..cfg.clone()
    };
    let e = Host::with_identity(bad, Identity::generate().unwrap()).unwrap_err();
    assert!(e.message().contains("loss_percent"), "{e}");
    let h = Host::with_identity(cfg, Identity::generate().unwrap()).unwrap();
    let addr = h.local_addr().unwrap();
    let fp = h.fingerprint();
    let host_side = thread::spawn(move || {
        let s = h.accept(Some(Duration::from_secs(10))).unwrap().expect("client");
        s.set_fec_percent(20).unwrap();
        for i in 0..5 {
            s.submit_frame(&frame(i, 400_000), FrameMeta::default()).unwrap();
        }
        // Closing sends what is queued first.
        s.close(close_code::NORMAL, "done");
        s.stats()
    });
    let mut c = Client::connect(addr, ClientConfig::new(Trust::Pin(fp))).unwrap();
    let got = read_frames(&mut c, 5);
    for (i, f) in got.iter().enumerate() {
        assert_eq!(f.data, frame(i, 400_000), "frame {i} is byte-exact");
    }
    let sent = host_side.join().unwrap();
    let recv = c.stats();
    // One datagram in 20 never reached the socket, yet every frame arrived.
    assert!(recv.packets_received < sent.packets_sent, "{recv:?} vs {sent:?}");
    assert!(recv.fec_recovered_shards > 0, "{recv:?}");
}

#[test]
fn the_rate_controller_reports_its_state_and_counts_bad_feedback() {
    use crate::rate::feedback::{FEEDBACK_HEADER_LEN, FEEDBACK_MAGIC};
    use crate::rate::RateState;
    let h = host(None);
    let (addr, fp) = (h.local_addr().unwrap(), h.fingerprint());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_host = stop.clone();
    let host_side = thread::spawn(move || {
        let s = h
            .accept(Some(Duration::from_secs(10)))
            .unwrap()
            .expect("a client");
        // ~60 frames/s as an encoder following the target would send them
        // (at most 100 KB: a sanitizer build seals a few MB a second), for
        // at most 15 s.
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut i = 0usize;
        while !stop_host.load(Ordering::Relaxed) && Instant::now() < deadline {
            let len = (s.target_bitrate_kbps() as usize * 1000 / 8 / 60).clamp(100, 100_000);
            s.submit_frame(
                &frame(i, len),
                FrameMeta {
                    pts: i as u64,
                    keyframe: i == 0,
                },
            )
            .unwrap();
            i += 1;
            thread::sleep(Duration::from_millis(16));
        }
        let st = s.stats();
        s.close(close_code::NORMAL, "end of stream");
        st
    });
    let mut c = Client::connect(addr, ClientConfig::new(Trust::Pin(fp))).unwrap();
    // Frames for a second, so reports flow; then three reports no client
    // would send (the magic and a header's length, nothing valid in it).
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        let _ = c.recv_frame(Duration::from_millis(50));
    }
    let mut bad = vec![0xffu8; FEEDBACK_HEADER_LEN];
    bad[..4].copy_from_slice(&FEEDBACK_MAGIC);
    for _ in 0..3 {
        c.control().send_raw_datagram(&bad);
    }
    // The session keeps running: frames still arrive after the bad reports
    // (a few suffice; a sanitizer build is slow).
    let before = c.stats().frames_completed;
    let until = Instant::now() + Duration::from_secs(8);
    while c.stats().frames_completed < before + 5 && Instant::now() < until {
        let _ = c.recv_frame(Duration::from_millis(50));
    }
    assert!(c.stats().frames_completed >= before + 5, "frames kept arriving");
    stop.store(true, Ordering::Relaxed);
    let st = host_side.join().unwrap();
    assert_eq!(st.feedback_dropped, 3, "every bad report is counted: {st:?}");
    assert!(
        st.feedback_reports >= 20,
        "reports every 5-50 ms for 1.5 s: {st:?}"
    );
    let state = RateState::from_code(st.rate_state).expect("a controller state");
    assert_ne!(state, RateState::Fixed);
    assert!(st.pacing_kbps > 0 && st.delivery_kbps > 0, "{st:?}");
    // A gauge of 0 or 1, and 1 only after cuts that left the queue where it
    // was (two at least): on loopback that is rare, but beside other tests'
    // traffic on a busy two-core machine it happened once in a CI run.
    assert!(st.competing_flow <= 1, "{st:?}");
    assert!(st.competing_flow == 0 || st.congestion_events >= 2, "{st:?}");
    // The client has no rate controller of its own.
    assert_eq!(c.stats().rate_state, 0);
}
