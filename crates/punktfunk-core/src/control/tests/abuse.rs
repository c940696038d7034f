//! What a client can make a host do: aim its stream or probes at someone
//! else, flood it with handshakes or requests, leave sessions hanging. Each
//! test is an attack that worked before the host defended against it.

use super::*;
use crate::control::identity::PinVerifier;
use crate::control::msg::{ControlMsg, CONTROL_VERSION};
use crate::control::runtime::{provider, read_msg, runtime, write_msg, Runtime};
use quinn::crypto::rustls::QuicClientConfig;
use std::net::{SocketAddr, UdpSocket};

/// A QUIC connection to `addr` pinned to `fp`, for sending what a
/// well-behaved client never would.
fn raw_connection(rt: &Runtime, addr: SocketAddr, fp: Fingerprint) -> (quinn::Endpoint, quinn::Connection) {
    let verifier = Arc::new(PinVerifier::new(Some(fp), provider()));
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = {
        let _g = rt.enter();
        quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap()
    };
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let conn = rt
        .block_on(async { endpoint.connect(addr, "punktfunk.invalid").unwrap().await })
        .unwrap();
    (endpoint, conn)
}

/// A UDP socket standing in for some other service; counts what reaches it.
struct Victim(UdpSocket);

impl Victim {
    fn new() -> Victim {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        Victim(s)
    }
    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }
    /// Datagrams and bytes that arrived until it stayed quiet for 200 ms.
    fn received(&self) -> (usize, usize) {
        let mut buf = [0u8; 65536];
        let (mut n, mut bytes) = (0, 0);
        while let Ok(len) = self.0.recv(&mut buf) {
            n += 1;
            bytes += len;
        }
        (n, bytes)
    }
}

fn hello(data_port: u16) -> ControlMsg {
    ControlMsg::ClientHello {
        version: CONTROL_VERSION,
        requested_bitrate_kbps: 0,
        max_shard_payload: 1400,
        capabilities: 3,
        data_port,
    }
}

#[test]
fn a_hello_naming_another_service_on_the_clients_address_gets_no_stream() {
    let h = host(None);
    let (addr, fp) = (h.local_addr().unwrap(), h.fingerprint());
    let victim = Victim::new();
    let rt = runtime().unwrap();
    let (_ep, conn) = raw_connection(&rt, addr, fp);
    // The client completes the handshake but names the victim's port for its data.
    let server_hello = rt.block_on(async {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        write_msg(&mut send, &hello(victim.port()), None).await.unwrap();
        let answer = read_msg(&mut recv).await.unwrap();
        write_msg(&mut send, &ControlMsg::Ready, None).await.unwrap();
        (answer, send, recv)
    });
    assert!(matches!(server_hello.0, Some(ControlMsg::ServerHello { .. })));
    // The host challenges that address a few times, hears nothing back, and
    // hands the application no session.
    let e = h.accept(Some(Duration::from_secs(10))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.message().contains("did not answer"), "{e}");
    let (datagrams, bytes) = victim.received();
    let dlen = SessionConfig::default().fec.datagram_len();
    assert!(
        (1..=crate::control::proto::host::PATH_CHALLENGES as usize).contains(&datagrams),
        "{datagrams} datagrams reached the victim"
    );
    assert_eq!(
        bytes,
        datagrams * dlen,
        "only the full-size challenges, nothing else"
    );
    // The client is told why.
    let reason = rt.block_on(conn.closed());
    assert_eq!(
        crate::control::runtime::close_reason(&reason).code,
        close_code::PROTOCOL
    );
}

#[test]
fn a_connection_that_moves_to_another_address_is_not_followed() {
    let h = host(None);
    let (addr, fp) = (h.local_addr().unwrap(), h.fingerprint());
    let rt = runtime().unwrap();
    let (ep, conn) = raw_connection(&rt, addr, fp);
    // After the QUIC handshake the client's packets come from somewhere else
    // (a forged source address looks the same to the host).
    let victim = Victim::new();
    let moved = UdpSocket::bind("127.0.0.1:0").unwrap();
    let moved_port = moved.local_addr().unwrap().port();
    {
        let _g = rt.enter();
        ep.rebind(moved).unwrap();
    }
    rt.block_on(async {
        if let Ok((mut send, _recv)) = conn.open_bi().await {
            let _ = write_msg(&mut send, &hello(victim.port()), None).await;
        }
    });
    // The host ignores the moved connection: no hello arrives, no data path opens.
    assert!(matches!(h.accept(Some(Duration::from_millis(1500))), Ok(None)));
    assert_eq!(victim.received(), (0, 0), "nothing reached the victim");
    assert_ne!(moved_port, 0);
}

fn host_with(cfg: HostConfig) -> Host {
    let cfg = HostConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..cfg
    };
    Host::with_identity(cfg, Identity::generate().unwrap()).unwrap()
}

#[test]
fn a_probe_stays_under_the_hosts_ceiling_and_can_be_switched_off() {
    let h = host_with(HostConfig {
        max_bitrate_kbps: 20_000,
        ..HostConfig::default()
    });
    let (addr, fp) = (h.local_addr().unwrap(), h.fingerprint());
    let host_side = thread::spawn(move || {
        let s = h.accept(Some(Duration::from_secs(10))).unwrap().expect("client");
        while !matches!(
            s.next_event(Duration::from_secs(10)).unwrap(),
            Some(HostEvent::Closed(_)) | None
        ) {}
    });
    let mut c = Client::connect(addr, ClientConfig::new(Trust::Pin(fp))).unwrap();
    assert_eq!(c.granted_bitrate_kbps(), 20_000);
    // 3 Gbit/s asked; the host sends at its ceiling, the session's 20 Mbit/s grant.
    let r = c.speed_test(MAX_PROBE_KBPS, Duration::from_millis(500)).unwrap();
    assert_eq!(r.rate_kbps, 20_000, "{r:?}");
    assert!(r.clamped());
    let sent_kbps = r.packets_sent as f64 * (SessionConfig::default().fec.datagram_len() * 8) as f64
        / r.duration.as_secs_f64()
        / 1e3;
    assert!(sent_kbps <= 20_000.0 * 1.05, "{sent_kbps} kbit/s sent: {r:?}");
    c.close(close_code::NORMAL, "done");
    host_side.join().unwrap();

    // Without rate control (no padding) the host sends nothing but what is asked.
    let off = host_with(HostConfig {
        probe: ProbePolicy {
            enabled: false,
            ..ProbePolicy::default()
        },
        rate: RateSettings {
            adaptive: false,
            ..RateSettings::default()
        },
        ..HostConfig::default()
    });
    let (addr, fp) = (off.local_addr().unwrap(), off.fingerprint());
    let host_side = thread::spawn(move || {
        let s = off
            .accept(Some(Duration::from_secs(10)))
            .unwrap()
            .expect("client");
        (off, s)
    });
    let mut c = Client::connect(addr, ClientConfig::new(Trust::Pin(fp))).unwrap();
    let (_off, s) = host_side.join().unwrap();
    let before = s.stats().packets_sent;
    let r = c.speed_test(100_000, Duration::from_millis(500)).unwrap();
    assert_eq!((r.rate_kbps, r.packets_sent), (0, 0), "refused at once: {r:?}");
    assert_eq!(s.stats().packets_sent, before, "the host sent nothing");
}

#[test]
fn a_probe_stops_with_the_connection_and_never_runs_before_the_session_is_accepted() {
    let h = host_with(HostConfig {
        accept_timeout: Duration::from_millis(400),
        ..HostConfig::default()
    });
    let (addr, fp) = (h.local_addr().unwrap(), h.fingerprint());
    // Nobody accepts: the client's probe request gets no filler, and the
    // session is closed when the accept timeout runs out.
    let mut c = Client::connect(addr, ClientConfig::new(Trust::Pin(fp))).unwrap();
    let e = c.speed_test(100_000, Duration::from_millis(2000)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
    let reason = c.closed_reason().unwrap();
    assert_eq!(reason.code, close_code::INTERNAL, "{reason:?}");
    assert!(reason.reason.contains("did not accept"), "{reason:?}");
    assert_eq!(c.stats().probe_packets_received, 0);
    assert!(
        matches!(h.accept(Some(Duration::from_millis(100))), Ok(None)),
        "the expired session is gone"
    );

    // Accepted, the probe runs; the client closes mid-probe and the host
    // stops sending within a moment.
    let host_side = thread::spawn(move || {
        let s = h.accept(Some(Duration::from_secs(10))).unwrap().expect("client");
        while !matches!(
            s.next_event(Duration::from_secs(10)).unwrap(),
            Some(HostEvent::Closed(_)) | None
        ) {}
        let at_close = s.stats().packets_sent;
        // A few probe steps later nothing more has gone out.
        assert!(
            s.next_event(Duration::from_millis(100)).is_err(),
            "the session is over"
        );
        (at_close, s.stats().packets_sent)
    });
    let c = Client::connect(addr, ClientConfig::new(Trust::Pin(fp))).unwrap();
    let (rx, control) = c.split();
    let mut rx = crate::session::RecvWorker::spawn(rx, 16, None).unwrap();
    let control = Arc::new(control);
    let prober = {
        let control = control.clone();
        thread::spawn(move || control.speed_test(200_000, Duration::from_millis(4000)))
    };
    let t0 = Instant::now();
    while rx.stats().probe_packets_received < 1000 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::yield_now();
    }
    control.close(close_code::NORMAL, "gone");
    let r = prober.join().unwrap();
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Closed);
    let (at_close, later) = host_side.join().unwrap();
    assert_eq!(later, at_close, "{} datagrams after the close", later - at_close);
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "the probe did not run its full 4 s"
    );
    rx.close();
}

#[test]
fn handshakes_beyond_the_limit_are_refused_and_every_new_address_is_retried() {
    let h = host_with(HostConfig {
        max_handshakes: 1,
        handshake_timeout: Duration::from_secs(3),
        ..HostConfig::default()
    });
    let (addr, fp) = (h.local_addr().unwrap(), h.fingerprint());
    let rt = runtime().unwrap();
    // A client that completes QUIC but never says hello holds the one slot.
    let (_ep, _stalled) = raw_connection(&rt, addr, fp);
    let mut cfg = ClientConfig::new(Trust::Pin(fp));
    cfg.connect_timeout = Duration::from_secs(2);
    let e = Client::connect(addr, cfg).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    let c = h.counters();
    assert_eq!(c.refused, 1, "{c:?}");
    assert_eq!(c.handshakes, 1, "{c:?}");
    assert_eq!(c.retried, 2, "each new address was sent a Retry first: {c:?}");
    // Once the stalled handshake times out, the slot is free again.
    let failed = h.accept(Some(Duration::from_secs(10))).unwrap_err();
    assert_eq!(failed.kind(), ErrorKind::Timeout, "{failed}");
    // The host side hands its session back rather than dropping it: a drop
    // closes the connection, which may reach the client before the host's
    // hello reply is read.
    let host_side = thread::spawn(move || (h.accept(Some(Duration::from_secs(10))).unwrap(), h));
    let client = Client::connect(addr, ClientConfig::new(Trust::Pin(fp)));
    let (session, _h) = host_side.join().unwrap();
    assert!(session.is_some(), "the host accepts the client");
    if let Err(e) = client {
        panic!("a client connects once the slot is free: {e}");
    }
}

#[test]
fn one_clients_probe_and_fec_churn_do_not_delay_anothers_control_traffic() {
    let h = host_with(HostConfig {
        probe: ProbePolicy {
            ceiling_kbps: 2_000_000,
            ..ProbePolicy::default()
        },
        ..HostConfig::default()
    });
    let (addr, fp) = (h.local_addr().unwrap(), h.fingerprint());
    let host_side = thread::spawn(move || {
        let a = h.accept(Some(Duration::from_secs(10))).unwrap().expect("a");
        let b = h.accept(Some(Duration::from_secs(10))).unwrap().expect("b");
        // Whichever connected first is the prober; the other sends input.
        (h, a, b)
    });
    let mut prober = Client::connect(addr, ClientConfig::new(Trust::Pin(fp))).unwrap();
    let typist = Client::connect(addr, ClientConfig::new(Trust::Pin(fp))).unwrap();
    let (_h, a, b) = host_side.join().unwrap();
    let (probed, typed) = if a.session_id() == prober.session_id() {
        (a, b)
    } else {
        (b, a)
    };
    let churn = thread::spawn(move || {
        // The prober's session changes FEC as fast as it can meanwhile.
        let t0 = Instant::now();
        let mut changes = 0u32;
        while t0.elapsed() < Duration::from_millis(1500) {
            probed.set_fec_percent((changes % 50) as u8).unwrap();
            changes += 1;
        }
        (probed, changes)
    });
    let probe = thread::spawn(move || prober.speed_test(1_000_000, Duration::from_millis(1500)));
    // Meanwhile every input event of the other client reaches its session quickly.
    let mut worst = Duration::ZERO;
    for i in 0..30u32 {
        let sent = Instant::now();
        typist.send_input(InputEvent::KeyDown { code: i }).unwrap();
        match next_host_event(&typed) {
            HostEvent::Input(InputEvent::KeyDown { code }) => assert_eq!(code, i),
            other => panic!("unexpected {other:?}"),
        }
        worst = worst.max(sent.elapsed());
        typist.send_input(InputEvent::KeyUp { code: i }).unwrap();
        let _ = next_host_event(&typed);
    }
    let r = probe.join().unwrap().unwrap();
    let (_probed, changes) = churn.join().unwrap();
    assert!(
        r.packets_sent > 1000 && changes > 100,
        "{r:?}, {changes} FEC changes"
    );
    assert!(
        worst < Duration::from_millis(500),
        "an input event took {worst:?}"
    );
}

#[test]
fn a_burst_of_fec_changes_is_folded_not_queued() {
    let h = host(None);
    let (addr, fp) = (h.local_addr().unwrap(), h.fingerprint());
    let host_side = thread::spawn(move || {
        let s = h.accept(Some(Duration::from_secs(10))).unwrap().expect("client");
        (h, s)
    });
    let mut c = Client::connect(addr, ClientConfig::new(Trust::Pin(fp))).unwrap();
    let (_h, s) = host_side.join().unwrap();
    // A million changes, far faster than the send thread or the control
    // stream take them: each returns at once, the send queue keeps one
    // pending change, the control stream's queue drops what it cannot hold.
    for i in 0..1_000_000u32 {
        s.set_fec_percent((i % 100) as u8).unwrap();
        assert!(
            s.sender().pending_jobs() <= 1,
            "changes pile up in the send queue"
        );
    }
    // The session still works, with the last percentage.
    s.submit_frame(b"after", FrameMeta::default()).unwrap();
    assert_eq!(read_frames(&mut c, 1)[0].data, b"after");
    assert_eq!(s.fec_percent(), 99);
}

#[test]
fn a_peers_close_reason_is_clipped_to_the_protocols_bound() {
    use crate::control::msg::MAX_REASON_LEN;
    use crate::control::runtime::close_reason;
    // QUIC lets a peer close with a reason as long as a datagram; the
    // application and the transport close frames both reach close_reason.
    let long = bytes::Bytes::from("\u{1b}[2J".repeat(200) + &"ä".repeat(300));
    let app = quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
        error_code: quinn::VarInt::from_u32(7),
        reason: long.clone(),
    });
    let r = close_reason(&app);
    assert_eq!(r.code, 7);
    assert!(r.reason.len() <= MAX_REASON_LEN, "{}", r.reason.len());
    assert!(r.reason.starts_with("\u{1b}[2J"));
    // A multi-byte character cut by the bound is not turned into more bytes.
    let cut = quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
        error_code: quinn::VarInt::from_u32(7),
        reason: bytes::Bytes::from("€".repeat(300)),
    });
    let r = close_reason(&cut);
    assert!(r.reason.len() <= MAX_REASON_LEN && r.reason.chars().all(|c| c == '€'));
    let transport = quinn::ConnectionError::ConnectionClosed(quinn::ConnectionClose {
        error_code: quinn::TransportErrorCode::PROTOCOL_VIOLATION,
        frame_type: None,
        reason: long,
    });
    let r = close_reason(&transport);
    assert_eq!(r.code, close_code::PROTOCOL);
    assert!(r.reason.len() <= MAX_REASON_LEN, "{}", r.reason.len());
}
