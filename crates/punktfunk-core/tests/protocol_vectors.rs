//! Checks the test vectors of `docs/PROTOCOL.md` against the real code.
//!
//! The vectors are parsed from the document itself (fenced blocks with the info
//! string `pkf-vector`), so the specification and the implementation cannot drift:
//! editing a byte of the document, or changing the wire format, the key schedule,
//! the FEC coder or the layout rules in the code, fails this test.

use std::collections::{BTreeMap, HashMap};

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, KeyInit, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;

use punktfunk_core::crypto::{Opener, Sealer, REPLAY_WINDOW};
use punktfunk_core::fec::{recovery_count, FecDecoder, FecEncoder, FrameLayout};
use punktfunk_core::rate::{ArrivalSample, Feedback, FeedbackError};
use punktfunk_core::transport::RecvMeta;
use punktfunk_core::wire::{
    ClearHeader, InnerHeader, WireError, CLEAR_HEADER_LEN, INNER_HEADER_LEN, PACKET_OVERHEAD, TAG_LEN,
};
use punktfunk_core::{
    DirectionKey, FecConfig, FrameEvent, FrameMeta, LoopbackTransport, Role, Session, SessionConfig,
    SessionKeys, StatsSnapshot, Transport,
};

const DOC: &str = "../../docs/PROTOCOL.md";
const FENCE: &str = "```pkf-vector";

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

/// One `pkf-vector` block: `name: value` lines, continuation lines indented.
#[derive(Clone, Debug)]
struct Vector {
    name: String,
    kind: String,
    fields: BTreeMap<String, String>,
}

impl Vector {
    /// Removes and returns a field; panics if it is missing.
    fn take(&mut self, key: &str) -> String {
        self.fields
            .remove(key)
            .unwrap_or_else(|| panic!("vector {}: missing field `{key}`", self.name))
    }

    fn take_opt(&mut self, key: &str) -> Option<String> {
        self.fields.remove(key)
    }

    fn take_hex(&mut self, key: &str) -> Vec<u8> {
        let name = self.name.clone();
        parse_hex(&self.take(key), &format!("{name}.{key}"))
    }

    /// Panics if any field was not consumed (a typo or an unchecked claim).
    fn finish(self) {
        assert!(
            self.fields.is_empty(),
            "vector {}: unchecked fields {:?}",
            self.name,
            self.fields.keys().collect::<Vec<_>>()
        );
    }
}

fn parse_doc(text: &str) -> Vec<Vector> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim_end() != FENCE {
            continue;
        }
        let mut fields: Vec<(String, String)> = Vec::new();
        loop {
            let line = lines.next().expect("unterminated pkf-vector block");
            if line.trim_end() == "```" {
                break;
            }
            if line.trim().is_empty() {
                continue;
            }
            if line.starts_with(char::is_whitespace) {
                let last = fields.last_mut().expect("continuation line before any field");
                last.1.push(' ');
                last.1.push_str(line.trim());
            } else {
                let (k, v) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("not a `name: value` line: {line:?}"));
                fields.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let mut map = BTreeMap::new();
        for (k, v) in fields {
            assert!(map.insert(k.clone(), v).is_none(), "duplicate field `{k}`");
        }
        let name = map
            .remove("vector")
            .expect("vector block without a `vector:` name");
        let kind = map
            .remove("kind")
            .unwrap_or_else(|| panic!("vector {name}: no `kind:`"));
        out.push(Vector {
            name,
            kind,
            fields: map,
        });
    }
    out
}

/// Hex bytes: whitespace-separated groups of an even number of hex digits.
fn parse_hex(s: &str, what: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for group in s.split_whitespace() {
        assert!(
            group.len() % 2 == 0 && group.bytes().all(|b| b.is_ascii_hexdigit()),
            "{what}: bad hex group {group:?}"
        );
        for i in (0..group.len()).step_by(2) {
            out.push(u8::from_str_radix(&group[i..i + 2], 16).expect("checked hex"));
        }
    }
    out
}

/// `a=1 b=0x2 ...` pairs.
fn parse_kv(s: &str, what: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for pair in s.split_whitespace() {
        let (k, v) = pair
            .split_once('=')
            .unwrap_or_else(|| panic!("{what}: not a key=value pair: {pair:?}"));
        assert!(
            map.insert(k.to_string(), v.to_string()).is_none(),
            "{what}: duplicate key {k}"
        );
    }
    map
}

fn parse_u64(s: &str, what: &str) -> u64 {
    let r = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.unwrap_or_else(|e| panic!("{what}: bad integer {s:?}: {e}"))
}

/// Key/value pairs that are each read exactly once.
struct Kv {
    what: String,
    map: BTreeMap<String, String>,
}

impl Kv {
    fn new(s: &str, what: &str) -> Kv {
        Kv {
            what: what.to_string(),
            map: parse_kv(s, what),
        }
    }

    fn raw(&mut self, key: &str) -> String {
        self.map
            .remove(key)
            .unwrap_or_else(|| panic!("{}: missing `{key}`", self.what))
    }

    fn u64(&mut self, key: &str) -> u64 {
        let what = format!("{}.{key}", self.what);
        parse_u64(&self.raw(key), &what)
    }

    fn usize(&mut self, key: &str) -> usize {
        usize::try_from(self.u64(key)).expect("fits usize")
    }

    fn narrow<T: TryFrom<u64>>(&mut self, key: &str) -> T {
        let v = self.u64(key);
        T::try_from(v).unwrap_or_else(|_| panic!("{}.{key}: {v} out of range", self.what))
    }

    fn list(&mut self, key: &str) -> Vec<usize> {
        let what = format!("{}.{key}", self.what);
        self.raw(key)
            .split(',')
            .map(|x| parse_u64(x, &what) as usize)
            .collect()
    }

    fn bytes(&mut self, key: &str) -> Vec<u8> {
        let what = format!("{}.{key}", self.what);
        parse_hex(&self.raw(key), &what)
    }

    fn finish(self) {
        assert!(
            self.map.is_empty(),
            "{}: unchecked keys {:?}",
            self.what,
            self.map.keys().collect::<Vec<_>>()
        );
    }
}

fn inner_header(s: &str, what: &str) -> InnerHeader {
    let mut kv = Kv::new(s, what);
    let h = InnerHeader {
        flags: kv.narrow("flags"),
        block_index: kv.narrow("block_index"),
        block_count: kv.narrow("block_count"),
        shard_index: kv.narrow("shard_index"),
        data_shards: kv.narrow("data_shards"),
        recovery_shards: kv.narrow("recovery_shards"),
        frame_index: kv.u64("frame_index"),
        frame_len: kv.narrow("frame_len"),
        pts: kv.u64("pts"),
    };
    kv.finish();
    h
}

fn encode_inner(h: &InnerHeader) -> [u8; INNER_HEADER_LEN] {
    let mut b = [0u8; INNER_HEADER_LEN];
    h.encode(&mut b);
    b
}

// ---------------------------------------------------------------------------
// Helpers around the library
// ---------------------------------------------------------------------------

fn session_config(kv: &mut Kv) -> SessionConfig {
    SessionConfig {
        fec: FecConfig {
            fec_percent: kv.narrow("fec_percent"),
            max_data_per_block: kv.usize("max_data_per_block"),
            shard_payload: kv.usize("shard_payload"),
        },
        ..SessionConfig::default()
    }
}

/// `[0; 9] || plaintext || [0; 16]` sealed by a fresh sealer at `seq`.
fn seal(key: &DirectionKey, seq: u64, plaintext: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; CLEAR_HEADER_LEN];
    p.extend_from_slice(plaintext);
    p.extend_from_slice(&[0u8; TAG_LEN]);
    assert_eq!(Sealer::starting_at(key.clone(), seq).seal(&mut p), Ok(seq));
    p
}

/// A key for the direction the test does not use.
fn unused_key() -> DirectionKey {
    DirectionKey::new([0x55; 16], [0x66; 4])
}

/// Delivers `datagrams` to a fresh client session that opens with `h2c` and
/// returns its counters and every event it produced.
fn deliver(
    config: &SessionConfig,
    h2c: &DirectionKey,
    datagrams: &[Vec<u8>],
) -> (StatsSnapshot, Vec<FrameEvent>) {
    let keys = SessionKeys {
        host_to_client: h2c.clone(),
        client_to_host: unused_key(),
    };
    let (net, end) = LoopbackTransport::pair(datagrams.len() + 16);
    let mut client = Session::new(Role::Client, config.clone(), &keys, end).expect("valid config");
    for d in datagrams {
        assert!(net.send(d).expect("loopback send"), "loopback dropped a datagram");
    }
    let mut events = Vec::new();
    while let Some(ev) = client.poll_frame(std::time::Instant::now()).expect("poll") {
        events.push(ev);
    }
    (client.stats(), events)
}

/// Counters that name what happened to one received datagram, besides acceptance.
const OUTCOMES: [&str; 7] = [
    "recv_dropped_auth",
    "recv_dropped_replay",
    "recv_dropped_malformed",
    "recv_dropped_out_of_bounds",
    "recv_dropped_stale",
    "packets_redundant",
    "probe_packets_received",
];

fn outcomes(s: &StatsSnapshot) -> BTreeMap<&'static str, u64> {
    s.fields()
        .into_iter()
        .filter(|(n, _)| OUTCOMES.contains(n))
        .collect()
}

/// Independent model of the key schedule (HKDF + AES-GCM used directly, not
/// through `punktfunk_core::crypto`): returns (epoch key, nonce, datagram).
fn reference_seal(key: &[u8], salt: &[u8], seq: u64, plaintext: &[u8]) -> ([u8; 16], [u8; 12], Vec<u8>) {
    let epoch = seq >> 22;
    let mut info = b"pkf1 epoch key".to_vec();
    info.extend_from_slice(&epoch.to_be_bytes());
    let mut epoch_key = [0u8; 16];
    Hkdf::<Sha256>::new(Some(salt), key)
        .expand(&info, &mut epoch_key)
        .expect("16-byte okm");
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(salt);
    nonce[4..].copy_from_slice(&seq.to_be_bytes());
    let mut out = vec![1u8];
    out.extend_from_slice(&seq.to_be_bytes());
    let mut body = plaintext.to_vec();
    let tag = Aes128Gcm::new_from_slice(&epoch_key)
        .expect("16-byte key")
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), &out, &mut body)
        .expect("seal");
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    (epoch_key, nonce, out)
}

// ---------------------------------------------------------------------------
// Checks per kind
// ---------------------------------------------------------------------------

fn check_clear_header(mut v: Vector) {
    let mut input = Kv::new(&v.take("input"), &v.name);
    let seq = input.u64("seq");
    input.finish();
    let hex = v.take_hex("hex");
    let mut enc = [0u8; CLEAR_HEADER_LEN];
    ClearHeader { seq }.encode(&mut enc);
    assert_eq!(enc.as_slice(), hex.as_slice(), "{}: encode", v.name);
    assert_eq!(
        ClearHeader::decode(&hex),
        Ok(ClearHeader { seq }),
        "{}: decode",
        v.name
    );
    let mut wrong = hex.clone();
    wrong[0] = 2;
    assert_eq!(ClearHeader::decode(&wrong), Err(WireError::UnknownVersion(2)));
    assert!(matches!(
        ClearHeader::decode(&hex[..CLEAR_HEADER_LEN - 1]),
        Err(WireError::TooShort { .. })
    ));
    v.finish();
}

fn check_inner_header(mut v: Vector, reference: &SessionConfig) {
    let hex = v.take_hex("hex");
    assert_eq!(hex.len(), INNER_HEADER_LEN, "{}: length", v.name);
    let decoded = InnerHeader::decode(&hex);
    match (v.take_opt("input"), v.take_opt("error")) {
        (Some(input), None) => {
            let h = inner_header(&input, &v.name);
            assert_eq!(encode_inner(&h).as_slice(), hex.as_slice(), "{}: encode", v.name);
            assert_eq!(decoded, Ok(h), "{}: decode", v.name);
        }
        (None, Some(error)) => {
            let ok = match error.as_str() {
                "too-short" => matches!(decoded, Err(WireError::TooShort { .. })),
                "unknown-version" => matches!(decoded, Err(WireError::UnknownVersion(_))),
                "unknown-flags" => matches!(decoded, Err(WireError::UnknownFlags(_))),
                "reserved-not-zero" => matches!(decoded, Err(WireError::ReservedNotZero(_))),
                "inconsistent" => matches!(decoded, Err(WireError::Inconsistent(_))),
                other => panic!("{}: unknown error class {other:?}", v.name),
            };
            assert!(ok, "{}: expected {error}, decode gave {decoded:?}", v.name);
        }
        _ => panic!("{}: needs exactly one of `input` and `error`", v.name),
    }

    // What a receiver does with it: seal it with a zero payload and deliver it.
    let expect = v.take("receiver");
    let key = DirectionKey::new([0x11; 16], [0x22; 4]);
    let mut plaintext = hex.clone();
    plaintext.resize(INNER_HEADER_LEN + reference.fec.shard_payload, 0);
    let (stats, _) = deliver(reference, &key, &[seal(&key, 0, &plaintext)]);
    assert_eq!(stats.packets_received, 1);
    let got = outcomes(&stats);
    let want: BTreeMap<&str, u64> = OUTCOMES.iter().map(|&n| (n, u64::from(n == expect))).collect();
    assert!(
        expect == "accepted" || OUTCOMES.contains(&expect.as_str()),
        "{}: unknown receiver outcome {expect:?}",
        v.name
    );
    assert_eq!(got, want, "{}: receiver outcome", v.name);
    v.finish();
}

fn check_layout(mut v: Vector) {
    let mut input = Kv::new(&v.take("input"), &format!("{}.input", v.name));
    let frame_len = input.usize("frame_len");
    let cfg = FecConfig {
        fec_percent: input.narrow("fec_percent"),
        max_data_per_block: input.usize("max_data_per_block"),
        shard_payload: input.usize("shard_payload"),
    };
    input.finish();
    cfg.validate().expect("vector uses a valid FecConfig");
    let mut out = Kv::new(&v.take("output"), &format!("{}.output", v.name));
    let l = FrameLayout::new(frame_len, &cfg);
    assert_eq!(l.data_shards, out.usize("data_shards"), "{}: N", v.name);
    assert_eq!(l.blocks, out.usize("blocks"), "{}: B", v.name);
    let ks: Vec<usize> = (0..l.blocks).map(|b| l.block(b).data_shards).collect();
    let firsts: Vec<usize> = (0..l.blocks).map(|b| l.block(b).first_shard).collect();
    let ms: Vec<usize> = ks.iter().map(|&k| recovery_count(k, cfg.fec_percent)).collect();
    assert_eq!(ks, out.list("k"), "{}: k per block", v.name);
    assert_eq!(firsts, out.list("first_shard"), "{}: first shards", v.name);
    assert_eq!(ms, out.list("m"), "{}: m per block", v.name);
    assert_eq!(
        cfg.datagram_len(),
        out.usize("datagram_len"),
        "{}: datagram",
        v.name
    );
    assert_eq!(cfg.datagram_len(), cfg.shard_payload + PACKET_OVERHEAD);
    out.finish();
    v.finish();
}

fn check_fec_block(mut v: Vector) {
    let mut input = Kv::new(&v.take("input"), &v.name);
    let (k, m, s) = (
        input.usize("data_shards"),
        input.usize("recovery_shards"),
        input.usize("shard_bytes"),
    );
    input.finish();
    let data: Vec<Vec<u8>> = (0..k).map(|i| v.take_hex(&format!("data_{i}"))).collect();
    let rec: Vec<Vec<u8>> = (0..m).map(|i| v.take_hex(&format!("recovery_{i}"))).collect();
    assert!(
        data.iter().chain(&rec).all(|x| x.len() == s),
        "{}: shard sizes",
        v.name
    );
    let mut got = vec![Vec::new(); m];
    FecEncoder::new()
        .encode(k, m, s, data.iter().map(|d| d.as_slice()), |i, r| {
            got[i] = r.to_vec()
        })
        .expect("encode");
    assert_eq!(got, rec, "{}: recovery shards", v.name);

    // Any k of the k + m shards rebuild the data shards (all subsets; small blocks only).
    assert!(k + m <= 16, "{}: keep vector blocks small", v.name);
    let mut dec = FecDecoder::new();
    for mask in 0u32..(1 << (k + m)) {
        if mask.count_ones() as usize != k {
            continue;
        }
        dec.reset(k, m, s).expect("reset");
        for i in (0..k + m).filter(|i| mask & (1 << i) != 0) {
            if i < k {
                dec.add_original(i, &data[i]).expect("add data");
            } else {
                dec.add_recovery(i - k, &rec[i - k]).expect("add recovery");
            }
        }
        let mut rebuilt = 0;
        dec.decode(|i, shard| {
            assert_eq!(shard, data[i].as_slice(), "{}: rebuilt shard {i}", v.name);
            rebuilt += 1;
        })
        .expect("decode");
        assert_eq!(rebuilt, (0..k).filter(|i| mask & (1 << i) == 0).count());
    }
    v.finish();
}

/// Checks a sealed datagram against the sealer, the opener, an independent
/// model of the key schedule, and a receiving session's drop classification.
fn check_sealed(v: &mut Vector, key: &DirectionKey, raw_key: &[u8], raw_salt: &[u8], seq: u64) {
    let name = v.name.clone();
    let header = inner_header(&v.take("header"), &format!("{name}.header"));
    let payload = v.take_hex("payload");
    let epoch_key = v.take_hex("epoch_key");
    let nonce = v.take_hex("nonce");
    let hex = v.take_hex("hex");
    let mut plaintext = encode_inner(&header).to_vec();
    plaintext.extend_from_slice(&payload);
    assert_eq!(
        hex.len(),
        PACKET_OVERHEAD + payload.len(),
        "{name}: datagram length"
    );

    // The real sealer produces exactly the document's bytes.
    assert_eq!(seal(key, seq, &plaintext), hex, "{name}: Sealer output");
    assert_eq!(
        ClearHeader::decode(&hex),
        Ok(ClearHeader { seq }),
        "{name}: clear header"
    );

    // The real opener accepts them (any sequence on first use) and yields the plaintext.
    let mut opened = hex.clone();
    assert_eq!(
        Opener::new(key.clone()).open(&mut opened),
        Ok(seq),
        "{name}: open"
    );
    let plain = &opened[CLEAR_HEADER_LEN..opened.len() - TAG_LEN];
    assert_eq!(plain, plaintext.as_slice(), "{name}: plaintext");
    assert_eq!(InnerHeader::decode(plain), Ok(header), "{name}: inner header");

    // An independent model of §5 gives the same intermediate values and bytes.
    let (model_key, model_nonce, model) = reference_seal(raw_key, raw_salt, seq, &plaintext);
    assert_eq!(model_key.as_slice(), epoch_key.as_slice(), "{name}: epoch key");
    assert_eq!(model_nonce.as_slice(), nonce.as_slice(), "{name}: nonce");
    assert_eq!(model, hex, "{name}: reference model datagram");

    // Any flipped bit fails to open.
    for at in 0..hex.len() {
        let mut p = hex.clone();
        p[at] ^= 0x01;
        assert!(
            Opener::new(key.clone()).open(&mut p).is_err(),
            "{name}: flip at {at} opened"
        );
    }

    // Drop classification (§3) on a receiver whose shard size matches the payload.
    let cfg = SessionConfig {
        fec: FecConfig {
            shard_payload: payload.len(),
            max_data_per_block: 100,
            fec_percent: 10,
        },
        ..SessionConfig::default()
    };
    let mut forged = hex.clone();
    *forged.last_mut().expect("tag") ^= 0x80;
    let mut version2 = hex.clone();
    version2[0] = 2;
    let far = seal(key, seq + REPLAY_WINDOW, &plaintext);
    let sequence = [
        forged,                        // auth (the window is not touched)
        hex.clone(),                   // accepted
        hex.clone(),                   // replay
        version2,                      // malformed
        hex[..hex.len() - 1].to_vec(), // malformed (length)
        far,                           // authenticates; same shard again: redundant
        hex.clone(),                   // now 2^17 behind the newest: stale
    ];
    let (stats, _) = deliver(&cfg, key, &sequence);
    let want = BTreeMap::from([
        ("recv_dropped_auth", 1),
        ("recv_dropped_replay", 1),
        ("recv_dropped_malformed", 2),
        ("recv_dropped_out_of_bounds", 0),
        ("recv_dropped_stale", 1),
        ("packets_redundant", 1),
        ("probe_packets_received", 0),
    ]);
    assert_eq!(outcomes(&stats), want, "{name}: drop classification");
    assert_eq!(stats.packets_received, sequence.len() as u64);
}

fn check_sealed_datagram(mut v: Vector) {
    let mut input = Kv::new(&v.take("input"), &format!("{}.input", v.name));
    let raw_key = input.bytes("key");
    let raw_salt = input.bytes("salt");
    let seq = input.u64("seq");
    input.finish();
    let key = DirectionKey::new(
        raw_key.clone().try_into().expect("16-byte key"),
        raw_salt.clone().try_into().expect("4-byte salt"),
    );
    check_sealed(&mut v, &key, &raw_key, &raw_salt, seq);
    v.finish();
}

/// Checks the derived direction keys of a `session-keys` vector; returns the keys
/// and the host → client key and salt bytes.
fn derived_keys(v: &mut Vector) -> (SessionKeys, Vec<u8>, Vec<u8>) {
    let secret = v.take_hex("secret");
    let context = v.take("context");
    let context = context
        .strip_prefix('"')
        .and_then(|c| c.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{}: context must be quoted", v.name))
        .to_string();
    let keys = SessionKeys::derive(&secret, context.as_bytes()).expect("derive");
    let mut h2c = (Vec::new(), Vec::new());
    for (label, dir, field) in [
        (&b"pkf1 h2c"[..], &keys.host_to_client, "h2c"),
        (&b"pkf1 c2h"[..], &keys.client_to_host, "c2h"),
    ] {
        let key = v.take_hex(&format!("{field}_key"));
        let salt = v.take_hex(&format!("{field}_salt"));
        // An independent HKDF (§5.1) agrees with the document...
        let mut okm = [0u8; 20];
        Hkdf::<Sha256>::new(Some(context.as_bytes()), &secret)
            .expand(label, &mut okm)
            .expect("20-byte okm");
        assert_eq!(&okm[..16], key.as_slice(), "{}: {field} key (model)", v.name);
        assert_eq!(&okm[16..], salt.as_slice(), "{}: {field} salt (model)", v.name);
        // ...and so does the library (its key bytes are private: compare through
        // DirectionKey's PartialEq).
        let expected = DirectionKey::new(
            key.clone().try_into().expect("16-byte key"),
            salt.clone().try_into().expect("4-byte salt"),
        );
        assert!(*dir == expected, "{}: derived {field} key differs", v.name);
        if field == "h2c" {
            h2c = (key, salt);
        }
    }
    (keys, h2c.0, h2c.1)
}

fn check_session_keys(mut v: Vector) -> SessionKeys {
    let (keys, h2c_key, h2c_salt) = derived_keys(&mut v);
    let mut input = Kv::new(&v.take("input"), &format!("{}.input", v.name));
    let seq = input.u64("seq");
    input.finish();
    // Seal with the derived key object itself; the model uses the document's bytes.
    check_sealed(&mut v, &keys.host_to_client, &h2c_key, &h2c_salt, seq);
    v.finish();
    keys
}

fn check_sealed_frame(mut v: Vector, all_keys: &HashMap<String, SessionKeys>) {
    let keys_name = v.take("keys");
    let keys = all_keys
        .get(&keys_name)
        .unwrap_or_else(|| panic!("{}: no session-keys vector {keys_name:?}", v.name))
        .clone();
    let mut input = Kv::new(&v.take("input"), &format!("{}.input", v.name));
    let cfg = session_config(&mut input);
    let pts = input.u64("pts");
    let keyframe = match input.raw("keyframe").as_str() {
        "true" => true,
        "false" => false,
        other => panic!("{}: keyframe={other:?}", v.name),
    };
    let frame_index = input.u64("frame_index");
    input.finish();
    assert_eq!(frame_index, 0, "{}: a fresh session sends frame 0 first", v.name);
    let frame = v.take_hex("frame");
    let mut expected = Vec::new();
    while let Some(d) = v.take_opt(&format!("datagram_{}", expected.len())) {
        expected.push(parse_hex(&d, &v.name));
    }
    assert!(!expected.is_empty(), "{}: no datagrams", v.name);

    // A real host session emits exactly these datagrams.
    let (host_end, net) = LoopbackTransport::pair(expected.len() + 16);
    let mut host = Session::new(Role::Host, cfg.clone(), &keys, host_end).expect("host");
    let report = host
        .submit_frame(&frame, FrameMeta { pts, keyframe })
        .expect("submit");
    assert_eq!(report.frame_index, frame_index);
    assert_eq!(report.packets_sent, expected.len(), "{}: datagram count", v.name);
    let mut bufs = vec![vec![0u8; cfg.fec.datagram_len() + 1]; expected.len() + 1];
    let mut meta = vec![RecvMeta::default(); expected.len() + 1];
    let n = net.recv_batch(&mut bufs, &mut meta).expect("recv");
    assert_eq!(n, expected.len(), "{}: datagrams on the wire", v.name);
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(
            &bufs[i][..meta[i].len],
            want.as_slice(),
            "{}: datagram {i}",
            v.name
        );
    }

    // Every datagram is a consistent shard of one block; the recovery shards come last.
    let mut opener = Opener::new(keys.host_to_client.clone());
    let mut headers = Vec::new();
    for (i, d) in expected.iter().enumerate() {
        let mut p = d.clone();
        assert_eq!(
            opener.open(&mut p),
            Ok(i as u64),
            "{}: sequence of datagram {i}",
            v.name
        );
        headers.push(InnerHeader::decode(&p[CLEAR_HEADER_LEN..]).expect("header"));
    }
    let k = headers[0].data_shards as usize;
    let m = headers[0].recovery_shards as usize;
    assert!(
        headers.iter().all(|h| h.block_count == 1),
        "{}: single-block frame",
        v.name
    );
    assert_eq!(headers.len(), k + m);
    assert!(m <= k, "{}: the loss case below needs m <= k", v.name);

    // A client delivers the frame from all datagrams, and with the first m (data) lost.
    for (skip, recovered) in [(0, 0), (m, m as u32)] {
        let (stats, events) = deliver(&cfg, &keys.host_to_client, &expected[skip..]);
        assert_eq!(stats.recv_dropped_total(), 0, "{}: drops", v.name);
        match events.as_slice() {
            [FrameEvent::Frame(f)] => {
                assert_eq!(f.data, frame, "{}: frame bytes (skip {skip})", v.name);
                assert_eq!((f.index, f.pts, f.keyframe), (frame_index, pts, keyframe));
                assert_eq!(f.recovered_shards, recovered, "{}: recovered shards", v.name);
            }
            other => panic!("{}: expected one frame, got {other:?}", v.name),
        }
    }
    v.finish();
}

fn check_rate_feedback(mut v: Vector) {
    let hex = v.take_hex("hex");
    let decoded = Feedback::decode(&hex);
    match (v.take_opt("input"), v.take_opt("error")) {
        (Some(input), None) => {
            let mut kv = Kv::new(&input, &v.name);
            let mut fb = Feedback::default();
            fb.seq = kv.narrow("seq");
            fb.urgent = match kv.raw("urgent").as_str() {
                "true" => true,
                "false" => false,
                other => panic!("{}: urgent={other:?}", v.name),
            };
            fb.packets_received = kv.u64("packets_received");
            fb.bytes_received = kv.u64("bytes_received");
            fb.highest_seq = kv.u64("highest_seq");
            fb.packets_lost = kv.u64("packets_lost");
            for pair in kv.raw("samples").split(',') {
                let (seq, at) = pair
                    .split_once('@')
                    .unwrap_or_else(|| panic!("{}: sample {pair:?} is not seq@arrival", v.name));
                assert!(fb.push_sample(ArrivalSample {
                    seq: parse_u64(seq, &v.name),
                    arrival_us: parse_u64(at, &v.name),
                }));
            }
            kv.finish();
            assert_eq!(fb.encode().expect("valid report"), hex, "{}: encode", v.name);
            assert_eq!(decoded, Ok(fb), "{}: decode", v.name);
        }
        (None, Some(error)) => {
            let ok = match error.as_str() {
                "too-short" => matches!(decoded, Err(FeedbackError::TooShort { .. })),
                "bad-magic" => matches!(decoded, Err(FeedbackError::BadMagic)),
                "unknown-version" => matches!(decoded, Err(FeedbackError::UnknownVersion(_))),
                "unknown-flags" => matches!(decoded, Err(FeedbackError::UnknownFlags(_))),
                "too-many-samples" => matches!(decoded, Err(FeedbackError::TooManySamples(_))),
                "length-mismatch" => matches!(decoded, Err(FeedbackError::LengthMismatch { .. })),
                "inconsistent" => matches!(decoded, Err(FeedbackError::Inconsistent(_))),
                other => panic!("{}: unknown error class {other:?}", v.name),
            };
            assert!(ok, "{}: expected {error}, decode gave {decoded:?}", v.name);
        }
        _ => panic!("{}: needs exactly one of `input` and `error`", v.name),
    }
    v.finish();
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

#[test]
fn protocol_md_vectors_match_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(DOC);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let vectors = parse_doc(&text);
    assert!(
        vectors.len() >= 3,
        "expected at least 3 vectors in {}, found {}",
        path.display(),
        vectors.len()
    );
    let mut names = std::collections::HashSet::new();
    for v in &vectors {
        assert!(names.insert(v.name.clone()), "duplicate vector name {}", v.name);
    }
    // The reference receiver first: inner-header vectors are classified against it.
    let mut reference = None;
    for v in vectors.iter().filter(|v| v.kind == "receiver-config") {
        assert!(reference.is_none(), "more than one receiver-config vector");
        let mut v = v.clone();
        let mut input = Kv::new(&v.take("input"), &v.name);
        let mut cfg = session_config(&mut input);
        cfg.max_frame_bytes = input.usize("max_frame_bytes");
        input.finish();
        cfg.validate().expect("reference receiver config is valid");
        reference = Some(cfg);
        v.finish();
    }
    let reference = reference.expect("a receiver-config vector");

    let mut keys = HashMap::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let order = |k: &str| usize::from(k == "sealed-frame");
    let mut sorted = vectors.clone();
    sorted.sort_by_key(|v| order(&v.kind)); // sealed frames need the session keys
    for v in sorted {
        *counts.entry(v.kind.clone()).or_default() += 1;
        match v.kind.as_str() {
            "receiver-config" => {}
            "clear-header" => check_clear_header(v),
            "inner-header" => check_inner_header(v, &reference),
            "frame-layout" => check_layout(v),
            "fec-block" => check_fec_block(v),
            "sealed-datagram" => check_sealed_datagram(v),
            "session-keys" => {
                let name = v.name.clone();
                keys.insert(name, check_session_keys(v));
            }
            "sealed-frame" => check_sealed_frame(v, &keys),
            "rate-feedback" => check_rate_feedback(v),
            other => panic!("vector {}: unknown kind {other:?}", v.name),
        }
    }
    for kind in ["clear-header", "inner-header", "sealed-datagram", "rate-feedback"] {
        assert!(counts.contains_key(kind), "no {kind} vector in PROTOCOL.md");
    }
    eprintln!("checked {} vectors: {counts:?}", vectors.len());
}

#[test]
fn the_parser_rejects_edited_hex() {
    // Guard against a parser that would silently skip malformed bytes.
    let doc = "```pkf-vector\nvector: x\nkind: clear-header\ninput: seq=1\nhex: 01 00 0g\n```\n";
    let v = parse_doc(doc);
    assert_eq!(v.len(), 1);
    let r = std::panic::catch_unwind(|| parse_hex(&v[0].fields["hex"], "x"));
    assert!(r.is_err());
}
