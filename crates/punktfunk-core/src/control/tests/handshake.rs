//! Who gets in: pinning, trust on first use, client authorization, and what
//! a host does with clients that break the protocol.

use super::*;
use crate::control::identity::PinVerifier;
use crate::control::runtime::{close_reason, provider};
use quinn::crypto::rustls::QuicClientConfig;
use std::net::SocketAddr;

#[test]
fn a_wrong_pin_is_refused_before_any_data_flows() {
    let h = host(None);
    let addr = h.local_addr().unwrap();
    let host_side = thread::spawn(move || h.accept(Some(Duration::from_secs(5))));
    let wrong = Fingerprint([0x42; 32]);
    let e = Client::connect(addr, ClientConfig::new(Trust::Pin(wrong))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PinMismatch, "{e}");
    assert!(
        e.message().contains(&wrong.to_hex()),
        "the message names the pin: {e}"
    );
    let accepted = host_side.join().unwrap();
    assert!(
        !matches!(accepted, Ok(Some(_))),
        "the host must not get a session from a refused client"
    );
}

#[test]
fn a_host_with_authorized_clients_admits_them_and_refuses_everyone_else() {
    let dir = temp_dir("authz");
    let (good, bad) = (dir.join("good"), dir.join("bad"));
    let good_fp = Identity::load_or_create(&good).unwrap().fingerprint();
    let cfg = HostConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        authorized_clients: Some([good_fp].into_iter().collect()),
        ..HostConfig::default()
    };
    let h = Host::with_identity(cfg, Identity::generate().unwrap()).unwrap();
    let addr = h.local_addr().unwrap();
    let client = |identity: Option<&PathBuf>| ClientConfig {
        identity_dir: identity.cloned(),
        ..ClientConfig::new(Trust::Pin(h.fingerprint()))
    };
    let (anonymous, stranger, friend) = (client(None), client(Some(&bad)), client(Some(&good)));
    let host_side = thread::spawn(move || {
        // Two refusals, reported as accept errors; the host keeps listening.
        let mut refused = Vec::new();
        loop {
            match h.accept(Some(Duration::from_secs(10))) {
                Err(e) => refused.push(e),
                Ok(Some(s)) => {
                    s.submit_frame(b"welcome", FrameMeta::default()).unwrap();
                    let fp = s.client_fingerprint();
                    let _ = next_host_event(&s);
                    return (refused, fp);
                }
                Ok(None) => panic!("no client within 10 s"),
            }
        }
    });
    for (cfg, what) in [
        (anonymous, "presented no identity"),
        (stranger, "is not authorized"),
    ] {
        let e = Client::connect(addr, cfg).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
        assert!(e.message().contains(what), "the client hears why: {e}");
    }
    let mut c = Client::connect(addr, friend).unwrap();
    assert_eq!(read_frames(&mut c, 1)[0].data, b"welcome".to_vec());
    c.close(close_code::NORMAL, "bye");
    let (refused, fp) = host_side.join().unwrap();
    assert_eq!(fp, Some(good_fp), "the host knows who it admitted");
    assert_eq!(refused.len(), 2, "{refused:?}");
    for e in &refused {
        assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    }
    assert!(!refused[1].message().contains(&good_fp.to_hex()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn without_a_list_any_client_is_admitted_and_its_identity_reported() {
    let dir = temp_dir("anyclient");
    let h = host(None);
    let addr = h.local_addr().unwrap();
    let fp = h.fingerprint();
    let host_side = thread::spawn(move || {
        (0..2)
            .map(|_| {
                let s = h.accept(Some(Duration::from_secs(10))).unwrap().expect("client");
                let who = s.client_fingerprint();
                s.close(close_code::NORMAL, "bye");
                who
            })
            .collect::<Vec<_>>()
    });
    let me = Identity::load_or_create(&dir).unwrap().fingerprint();
    let with = ClientConfig {
        identity_dir: Some(dir.clone()),
        ..ClientConfig::new(Trust::Pin(fp))
    };
    drop(Client::connect(addr, with).unwrap());
    drop(Client::connect(addr, ClientConfig::new(Trust::Pin(fp))).unwrap());
    assert_eq!(host_side.join().unwrap(), vec![Some(me), None]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn trust_on_first_use_records_and_then_enforces_the_fingerprint() {
    let dir = temp_dir("tofu");
    let h = host(None);
    let addr = h.local_addr().unwrap();
    let fp = h.fingerprint();
    let host_side = thread::spawn(move || {
        for _ in 0..2 {
            let s = h.accept(Some(Duration::from_secs(10))).unwrap().expect("client");
            s.close(close_code::NORMAL, "bye");
        }
        h
    });
    let c = Client::connect(addr, ClientConfig::new(Trust::Tofu(dir.join(KNOWN_HOSTS_FILE)))).unwrap();
    assert_eq!(c.fingerprint(), fp);
    assert_eq!(
        KnownHosts::in_dir(&dir).lookup(&addr.to_string()).unwrap(),
        Some(fp)
    );
    drop(c);
    let c = Client::connect(addr, ClientConfig::new(Trust::Tofu(dir.join(KNOWN_HOSTS_FILE)))).unwrap();
    assert_eq!(c.fingerprint(), fp, "second connect uses the recorded pin");
    drop(c);
    let _h = host_side.join().unwrap();

    // A different host at an address already known: refused.
    let other = host(None);
    let other_addr = other.local_addr().unwrap();
    KnownHosts::in_dir(&dir)
        .record(&other_addr.to_string(), fp)
        .unwrap();
    let t = thread::spawn(move || other.accept(Some(Duration::from_secs(5))).map(|s| s.is_some()));
    let e = Client::connect(
        other_addr,
        ClientConfig::new(Trust::Tofu(dir.join(KNOWN_HOSTS_FILE))),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PinMismatch);
    let _ = t.join();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn connecting_to_nothing_fails_within_the_timeout() {
    // A bound but silent UDP socket: nothing answers the QUIC handshake.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let mut cfg = ClientConfig::new(Trust::Pin(Fingerprint([0; 32])));
    cfg.connect_timeout = Duration::from_millis(800);
    let t0 = Instant::now();
    let e = Client::connect(addr, cfg).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.message().contains(&addr.to_string()), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[test]
fn the_host_fingerprint_survives_a_restart() {
    let dir = temp_dir("restart");
    let cfg = HostConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        identity_dir: dir.clone(),
        ..HostConfig::default()
    };
    let first = Host::listen(cfg.clone()).unwrap().fingerprint();
    let second = Host::listen(cfg).unwrap().fingerprint();
    assert_eq!(first, second);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_dropped_host_has_released_its_port() {
    // The accept loop holds the runtime too; if it let go last, the runtime
    // (and the endpoint's socket) stopped in the background, a moment later.
    for _ in 0..20 {
        let h = host(None);
        let addr = h.local_addr().unwrap();
        let cfg = ClientConfig::new(Trust::Pin(h.fingerprint()));
        let c = thread::spawn(move || Client::connect(addr, cfg).unwrap());
        let s = h.accept(Some(Duration::from_secs(10))).unwrap().expect("client");
        s.close(close_code::NORMAL, "bye");
        drop(s);
        drop(c.join().unwrap());
        drop(h);
        std::net::UdpSocket::bind(addr).expect("the port is free once the host is dropped");
    }
}

/// Opens a raw QUIC connection to `addr` pinned to `fp`, for sending what a
/// well-behaved client never would.
fn raw_connection(
    rt: &crate::control::runtime::Runtime,
    addr: SocketAddr,
    fp: Fingerprint,
) -> (quinn::Endpoint, quinn::Connection) {
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

#[test]
fn a_misbehaving_client_is_closed_with_a_reason_while_another_keeps_streaming() {
    let h = host(None);
    let addr = h.local_addr().unwrap();
    let fp = h.fingerprint();
    let (tx, rx) = std::sync::mpsc::channel::<&'static str>();
    let host_side = thread::spawn(move || {
        let good = h
            .accept(Some(Duration::from_secs(10)))
            .unwrap()
            .expect("good client");
        // Serve the good client while the bad ones come and go.
        let mut refused = Vec::new();
        let mut i = 0usize;
        let deadline = Instant::now() + Duration::from_secs(20);
        while refused.len() < 3 && Instant::now() < deadline {
            if let Err(e) = h.accept(Some(Duration::from_millis(50))) {
                refused.push(e.kind());
            }
            good.submit_frame(&frame(i, 20_000), FrameMeta::default())
                .unwrap();
            i += 1;
        }
        let _ = rx.recv_timeout(Duration::from_secs(10));
        let after = (0..5).all(|k| {
            good.submit_frame(&frame(i + k, 20_000), FrameMeta::default())
                .is_ok()
        });
        good.close(close_code::NORMAL, "done");
        (refused, after, i + 5)
    });
    let mut good = Client::connect(addr, ClientConfig::new(Trust::Pin(fp))).unwrap();
    let rt = crate::control::runtime::runtime().unwrap();
    let mut reasons = Vec::new();
    let garbage: [Vec<u8>; 3] = [
        (0..200u32).map(|i| (i * 7919 % 251) as u8).collect(),
        {
            // A valid magic and type with a length far beyond its bound.
            let mut b = msg::MAGIC.to_vec();
            b.extend_from_slice(&1u16.to_be_bytes());
            b.extend_from_slice(&u32::MAX.to_be_bytes());
            b
        },
        {
            // An unknown type (skippable) followed by a huge unknown one (not).
            let mut b = msg::MAGIC.to_vec();
            b.extend_from_slice(&999u16.to_be_bytes());
            b.extend_from_slice(&3u32.to_be_bytes());
            b.extend_from_slice(&[1, 2, 3]);
            b.extend_from_slice(&msg::MAGIC);
            b.extend_from_slice(&998u16.to_be_bytes());
            b.extend_from_slice(&(1u32 << 30).to_be_bytes());
            b
        },
    ];
    for g in &garbage {
        let (_ep, conn) = raw_connection(&rt, addr, fp);
        let reason = rt.block_on(async {
            let (mut send, _recv) = conn.open_bi().await.unwrap();
            send.write_all(g).await.unwrap();
            conn.closed().await
        });
        reasons.push(close_reason(&reason));
    }
    tx.send("bad clients done").unwrap();
    let (refused, after, total) = host_side.join().unwrap();
    assert_eq!(
        refused,
        vec![ErrorKind::Protocol; 3],
        "each bad client failed its handshake"
    );
    for r in &reasons {
        assert_eq!(r.code, close_code::PROTOCOL, "{r:?}");
        assert!(!r.reason.is_empty(), "the bad client is told why: {r:?}");
    }
    assert!(after, "the good session kept working");
    let frames = read_frames(&mut good, total);
    assert_eq!(frames.len(), total, "the good client got every frame");
}
