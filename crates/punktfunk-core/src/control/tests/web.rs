//! Browser sessions over real WebTransport on 127.0.0.1, with a Rust
//! WebTransport client standing in for the page (the page itself is tested in
//! Chromium by scripts/web-test.ts): proof of key, allow list, frames whole and
//! in order, input and keyframe requests, close reasons, and native clients on
//! the same port.

use std::collections::BTreeSet;

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use web_transport_quinn::{RecvStream, SendStream, Session as WtSession};

use super::*;
use crate::control::web::{device_fingerprint, proof_message, WebConfig, WebMsg, FRAME_HEADER_LEN};

fn web_host(name: &str, allow: Option<BTreeSet<Fingerprint>>) -> Host {
    web_host_with(name, allow, WebConfig::default())
}

fn web_host_with(name: &str, allow: Option<BTreeSet<Fingerprint>>, web: WebConfig) -> Host {
    let cfg = HostConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        identity_dir: temp_dir(name),
        authorized_clients: allow,
        web: Some(web),
        ..HostConfig::default()
    };
    Host::listen(cfg).unwrap()
}

/// A host with `web`, and one browser connected to it: its session, the
/// runtime it runs on, and the host's side.
fn connected_browser(name: &str, web: WebConfig) -> (Host, tokio::runtime::Runtime, WtSession, HostSession) {
    let host = web_host_with(name, None, web);
    let addr = host.local_addr().unwrap();
    let hash = host.web_certificate_hash().unwrap();
    let rt = rt();
    let (session, _send, _recv) = rt
        .block_on(connect(addr, hash, "/punktfunk", &Device::new()))
        .unwrap();
    let s = host.accept(Some(Duration::from_secs(5))).unwrap().unwrap();
    (host, rt, session, s)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// A device key as a browser keeps one.
struct Device {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Device {
    fn new() -> Device {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        Device { pair, rng }
    }

    fn key(&self) -> [u8; 65] {
        self.pair.public_key().as_ref().try_into().unwrap()
    }

    fn fingerprint(&self) -> Fingerprint {
        device_fingerprint(&self.key())
    }
}

async fn read(recv: &mut RecvStream) -> WebMsg {
    let mut h = [0u8; 3];
    recv.read_exact(&mut h).await.unwrap();
    let mut body = vec![0u8; usize::from(u16::from_be_bytes([h[1], h[2]]))];
    recv.read_exact(&mut body).await.unwrap();
    WebMsg::decode(h[0], &body).unwrap()
}

async fn write(send: &mut SendStream, m: &WebMsg) {
    send.write_all(&m.encode()).await.unwrap();
}

/// Connects as a browser would: WebTransport with the pinned hash, then the proof.
async fn connect(
    host: SocketAddr,
    hash: [u8; 32],
    path: &str,
    device: &Device,
) -> std::result::Result<(WtSession, SendStream, RecvStream), String> {
    let client = web_transport_quinn::ClientBuilder::new()
        .with_server_certificate_hashes(vec![hash.to_vec()])
        .map_err(|e| e.to_string())?;
    let url: url::Url = format!("https://{host}{path}").parse().unwrap();
    let session = client.connect(url).await.map_err(|e| e.to_string())?;
    let (mut send, mut recv) = session.open_bi().await.map_err(|e| e.to_string())?;
    // The host speaks first, once the stream carries something.
    let WebMsg::Challenge(nonce) = read(&mut recv).await else {
        panic!("no challenge")
    };
    let sig = device
        .pair
        .sign(&device.rng, &proof_message(&nonce, &hash))
        .unwrap();
    let hello = WebMsg::Hello {
        key: device.key(),
        signature: sig.as_ref().try_into().unwrap(),
    };
    write(&mut send, &hello).await;
    Ok((session, send, recv))
}

use std::net::SocketAddr;

/// Reads one frame stream: header, then payload.
async fn read_frame(mut s: RecvStream) -> (u64, bool, Vec<u8>) {
    let mut h = [0u8; FRAME_HEADER_LEN];
    s.read_exact(&mut h).await.unwrap();
    assert_eq!(h[0], 1, "version");
    let len = u32::from_be_bytes(h[4..8].try_into().unwrap()) as usize;
    let index = u64::from_be_bytes(h[8..16].try_into().unwrap());
    let body = s.read_to_end(len + 1).await.unwrap();
    assert_eq!(body.len(), len);
    (index, h[1] & 1 == 1, body)
}

#[test]
fn a_browser_session_carries_frames_input_and_close_like_a_native_one() {
    let host = web_host("web-session", None);
    let addr = host.local_addr().unwrap();
    let hash = host.web_certificate_hash().expect("serving browsers");
    let device = Device::new();
    let rt = rt();
    let (session, mut send, mut recv) = rt.block_on(connect(addr, hash, "/punktfunk", &device)).unwrap();
    let s = host
        .accept(Some(Duration::from_secs(5)))
        .unwrap()
        .expect("a session");
    assert_eq!(s.carrier(), Carrier::Web);
    assert_eq!(s.client_fingerprint(), Some(device.fingerprint()));
    let WebMsg::Welcome {
        window, session_id, ..
    } = rt.block_on(read(&mut recv))
    else {
        panic!("no welcome")
    };
    assert_eq!(window, 16);
    assert_eq!(session_id, s.session_id());
    assert_eq!(
        s.set_fec_percent(20).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );

    // 40 frames, one of 1 MB: each whole and byte-exact, indices in order.
    let sizes: Vec<usize> = (0..40)
        .map(|i| if i == 5 { 1 << 20 } else { 100 + i * 997 })
        .collect();
    let reader = {
        let session = session.clone();
        let n = sizes.len();
        rt.spawn(async move {
            let mut tasks = Vec::new();
            for _ in 0..n {
                let st = session.accept_uni().await.unwrap();
                tasks.push(tokio::spawn(read_frame(st)));
            }
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        })
    };
    for (i, len) in sizes.iter().enumerate() {
        let meta = FrameMeta {
            pts: i as u64,
            keyframe: i % 10 == 0,
        };
        s.submit_frame(&frame(i, *len), meta).unwrap();
    }
    // Streams are opened in frame order, but the WebTransport layer hands
    // them over as their stream headers arrive, so the reader (as the page
    // does) puts them back in order by index.
    let mut got = rt.block_on(reader).unwrap();
    got.sort_by_key(|f| f.0);
    for (i, (index, key, body)) in got.iter().enumerate() {
        assert_eq!(*index, i as u64);
        assert_eq!(*key, i % 10 == 0);
        assert!(*body == frame(i, sizes[i]), "frame {i} byte-exact");
    }
    let st = s.stats();
    assert_eq!(st.frames_submitted, 40);
    assert_eq!(st.frames_dropped, 0);

    // Input in order, then a keyframe request.
    rt.block_on(async {
        for code in 0..100 {
            write(&mut send, &WebMsg::Input(InputEvent::KeyDown { code })).await;
        }
        write(&mut send, &WebMsg::KeyframeRequest(7)).await;
    });
    for code in 0..100 {
        assert_eq!(
            next_host_event(&s),
            HostEvent::Input(InputEvent::KeyDown { code })
        );
    }
    assert_eq!(next_host_event(&s), HostEvent::KeyframeRequest { first_lost: 7 });

    // The browser leaves with its own code and reason.
    session.close(4, b"tab closed");
    assert_eq!(
        next_host_event(&s),
        HostEvent::Closed(CloseReason {
            code: 4,
            reason: "tab closed".into()
        })
    );
    assert_eq!(s.closed_reason().map(|r| r.code), Some(4));
    assert_eq!(
        s.submit_frame(b"late", FrameMeta::default()).unwrap_err().kind(),
        ErrorKind::Closed
    );
}

#[test]
fn the_host_ends_a_browser_session_after_its_last_frame_with_a_reason_it_reads() {
    let host = web_host("web-close", None);
    let addr = host.local_addr().unwrap();
    let hash = host.web_certificate_hash().unwrap();
    let rt = rt();
    let (session, _send, mut recv) = rt
        .block_on(connect(addr, hash, "/punktfunk", &Device::new()))
        .unwrap();
    let s = host.accept(Some(Duration::from_secs(5))).unwrap().unwrap();
    for i in 0..50 {
        s.submit_frame(&frame(i, 64 << 10), FrameMeta::default()).unwrap();
    }
    // The host says which frame was the last; the page settles every frame
    // before it, then closes with the host's code and reason.
    let closing = thread::spawn(move || {
        s.close(close_code::NORMAL, "end of stream (50 frames)");
        s.closed_reason()
    });
    let (frames, bye) = rt.block_on(async {
        let mut frames = 0;
        for _ in 0..50 {
            let st = session.accept_uni().await.unwrap();
            read_frame(st).await;
            frames += 1;
        }
        let bye = loop {
            match read(&mut recv).await {
                WebMsg::Close {
                    next_index,
                    code,
                    reason,
                } => break (next_index, code, reason),
                _ => continue,
            }
        };
        session.close(bye.1, bye.2.as_bytes());
        (frames, bye)
    });
    assert_eq!(frames, 50);
    assert_eq!(bye, (50, 0, "end of stream (50 frames)".to_string()));
    let r = closing.join().unwrap().unwrap();
    assert_eq!((r.code, r.reason.as_str()), (0, "end of stream (50 frames)"));
}

#[test]
fn a_browser_that_ignores_the_hosts_close_is_closed_after_the_frame_age() {
    let web = WebConfig {
        window: 16,
        max_frame_age: Duration::from_millis(100),
    };
    let (_host, rt, session, s) = connected_browser("web-close-ignored", web);
    let started = Instant::now();
    s.close(close_code::APPLICATION, "bye");
    assert!(started.elapsed() < Duration::from_secs(5));
    let r = crate::control::web::session::web_reason(&rt.block_on(session.closed()));
    assert_eq!((r.code, r.reason.as_str()), (close_code::APPLICATION, "bye"));
}

#[test]
fn an_unlisted_device_is_refused_before_media_and_a_listed_one_admitted() {
    let listed = Device::new();
    let stranger = Device::new();
    let allow: BTreeSet<_> = [listed.fingerprint()].into();
    let host = web_host("web-allow", Some(allow));
    let addr = host.local_addr().unwrap();
    let hash = host.web_certificate_hash().unwrap();
    let rt = rt();

    let (session, _s, _r) = rt.block_on(connect(addr, hash, "/punktfunk", &stranger)).unwrap();
    let e = rt.block_on(session.closed());
    let r = crate::control::web::session::web_reason(&e);
    assert_eq!(r.code, close_code::UNAUTHORIZED);
    assert!(
        r.reason
            .contains(&crate::control::web::hex(&stranger.fingerprint().0)),
        "{}",
        r.reason
    );
    let refused = host.accept(Some(Duration::from_secs(5))).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Unauthorized);

    let (_session, _s, _r) = rt.block_on(connect(addr, hash, "/punktfunk", &listed)).unwrap();
    let s = host.accept(Some(Duration::from_secs(5))).unwrap().unwrap();
    assert_eq!(s.client_fingerprint(), Some(listed.fingerprint()));
}

#[test]
fn a_forged_proof_and_a_wrong_path_are_refused() {
    let host = web_host("web-forged", None);
    let addr = host.local_addr().unwrap();
    let hash = host.web_certificate_hash().unwrap();
    let rt = rt();
    // Signed for another host's certificate: the proof does not verify.
    let device = Device::new();
    let forged = rt.block_on(async {
        let client = web_transport_quinn::ClientBuilder::new()
            .with_server_certificate_hashes(vec![hash.to_vec()])
            .unwrap();
        let session = client
            .connect(format!("https://{addr}/punktfunk").parse::<url::Url>().unwrap())
            .await
            .unwrap();
        let (mut send, mut recv) = session.open_bi().await.unwrap();
        let WebMsg::Challenge(nonce) = read(&mut recv).await else {
            panic!()
        };
        let sig = device
            .pair
            .sign(&device.rng, &proof_message(&nonce, &[0; 32]))
            .unwrap();
        let hello = WebMsg::Hello {
            key: device.key(),
            signature: sig.as_ref().try_into().unwrap(),
        };
        write(&mut send, &hello).await;
        crate::control::web::session::web_reason(&session.closed().await)
    });
    assert_eq!(forged.code, close_code::PROTOCOL, "{forged:?}");
    assert_eq!(
        host.accept(Some(Duration::from_secs(5))).unwrap_err().kind(),
        ErrorKind::Protocol
    );
    let wrong = rt.block_on(connect(addr, hash, "/elsewhere", &device));
    assert!(wrong.is_err(), "a path other than /punktfunk is refused");
}

#[test]
fn native_clients_and_browsers_share_the_port() {
    let host = web_host("web-native", None);
    let addr = host.local_addr().unwrap();
    let fp = host.fingerprint();
    let hash = host.web_certificate_hash().unwrap();
    assert_ne!(hash, fp.0, "browsers get their own certificate");
    let mut c = Client::connect(addr, ClientConfig::new(Trust::Pin(fp))).unwrap();
    let native = host.accept(Some(Duration::from_secs(5))).unwrap().unwrap();
    assert_eq!(native.carrier(), Carrier::Native);
    native
        .submit_frame(&frame(1, 5000), FrameMeta::default())
        .unwrap();
    assert_eq!(read_frames(&mut c, 1)[0].data, frame(1, 5000));
    let rt = rt();
    let (_session, _s, _r) = rt
        .block_on(connect(addr, hash, "/punktfunk", &Device::new()))
        .unwrap();
    let web = host.accept(Some(Duration::from_secs(5))).unwrap().unwrap();
    assert_eq!(web.carrier(), Carrier::Web);
}

#[test]
fn frames_a_browser_refuses_are_counted_dropped_and_never_stall_the_host() {
    let web = WebConfig {
        window: 4,
        max_frame_age: Duration::from_millis(200),
    };
    let (_host, rt, session, s) = connected_browser("web-stopped", web);
    // The page stops every frame stream it is offered (as a tab that gives
    // up on old frames does): each is a dropped frame, and the window frees.
    rt.spawn(async move {
        while let Ok(mut st) = session.accept_uni().await {
            let _ = st.stop(9);
        }
    });
    for i in 0..24 {
        s.submit_frame(&frame(i, 256 << 10), FrameMeta::default())
            .unwrap();
    }
    // Every frame went out (the window kept freeing), and the refused ones
    // are counted. A frame whose every byte the page's QUIC stack had
    // acknowledged before its stop arrived was delivered, not refused: on a
    // slow machine (an emulated one) a few are.
    s.sender().finish(Duration::from_secs(10)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.stats().frames_dropped < 24 && Instant::now() < deadline {
        thread::yield_now();
    }
    let st = s.stats();
    assert_eq!(st.frames_submitted, 24);
    assert!(st.frames_dropped >= 16, "{st:?}");
}

#[test]
fn a_peer_cannot_open_streams_the_host_never_reads() {
    // Not `connected_browser`: it drops the control stream's halves, and the
    // count below needs that stream open (with it closed, 3 open, not 2).
    let host = web_host("web-streams", None);
    let addr = host.local_addr().unwrap();
    let hash = host.web_certificate_hash().unwrap();
    let rt = rt();
    let (session, _send, _recv) = rt
        .block_on(connect(addr, hash, "/punktfunk", &Device::new()))
        .unwrap();
    let _s = host.accept(Some(Duration::from_secs(5))).unwrap().unwrap();
    // Two bidirectional streams are in use (CONNECT and control); the host
    // allows four at once, so of ten more only two open.
    let opened = rt.block_on(async {
        let mut streams = Vec::new();
        for _ in 0..10 {
            match tokio::time::timeout(Duration::from_millis(200), quinn::Connection::open_bi(&session)).await
            {
                Ok(Ok(s)) => streams.push(s),
                _ => break,
            }
        }
        // Opening alone sends nothing: write to each so the host sees them.
        for (send, _) in &mut streams {
            let _ = send.write_all(b"x").await;
        }
        streams.len()
    });
    assert_eq!(opened, 2, "streams beyond the host's limit stay closed");
}
