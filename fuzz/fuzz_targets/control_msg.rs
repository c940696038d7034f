//! PKF1 control messages (`punktfunk_core::control::msg`, feature `quic`) from
//! arbitrary bytes.
//!
//! * `decode` on the whole input: a decoded message re-encodes to exactly the
//!   input (every field is stored, the close reason is at most 256 bytes so the
//!   encoder does not clip it) and decodes again to the same value; an unknown
//!   type is skipped only when its header is well-formed; errors are `Protocol`.
//! * The input as a control *stream*: messages back to back, read the way the
//!   control plane's `read_msg` does (`decode_header`, then exactly `len` payload
//!   bytes, `decode_payload` for known types). The header bound is checked
//!   before anything would be buffered, so no claimed length above the largest
//!   bound is ever accepted.
//! * `InputEvent::decode`, `decode_input_datagram`, `decode_payload` on raw
//!   slices, and `clip_reason` on arbitrary text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use punktfunk_core::control::msg::{
    self, clip_reason, decode_header, decode_input_datagram, decode_payload, encode_input_datagram,
    payload_bounds, ControlMsg, InputEvent, HEADER_LEN, MAX_REASON_LEN, MAX_UNKNOWN_PAYLOAD,
};
use punktfunk_core::ErrorKind;

/// Largest payload any header may announce (close: 4 + reason; unknown: 4096).
const MAX_ANNOUNCED: usize = if MAX_UNKNOWN_PAYLOAD > 4 + MAX_REASON_LEN {
    MAX_UNKNOWN_PAYLOAD
} else {
    4 + MAX_REASON_LEN
};

fn check_round_trip(m: &ControlMsg, wire: &[u8]) {
    let enc = m.encode();
    assert_eq!(enc, wire, "{m:?} must re-encode to its input");
    match msg::decode(&enc) {
        Ok(Some(again)) => assert_eq!(&again, m),
        other => panic!("re-encoded {m:?} decodes to {other:?}"),
    }
}

fn whole(data: &[u8]) {
    match msg::decode(data) {
        Ok(Some(m)) => check_round_trip(&m, data),
        Ok(None) => {
            let h: [u8; HEADER_LEN] = data[..HEADER_LEN].try_into().unwrap();
            let h = decode_header(&h).expect("a skipped message has a good header");
            assert!(!h.known && h.len <= MAX_UNKNOWN_PAYLOAD);
            assert_eq!(data.len(), HEADER_LEN + h.len);
            assert_eq!(payload_bounds(h.type_id), None);
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
            let _ = e.to_string();
        }
    }
}

/// Reads messages back to back like the control plane's `read_msg`.
fn stream(mut data: &[u8]) {
    while data.len() >= HEADER_LEN {
        let (h, rest) = data.split_at(HEADER_LEN);
        let h: &[u8; HEADER_LEN] = h.try_into().unwrap();
        let header = match decode_header(h) {
            Ok(x) => x,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Protocol);
                return;
            }
        };
        assert!(header.len <= MAX_ANNOUNCED, "header admits {} bytes", header.len);
        if rest.len() < header.len {
            return; // the stream ends early: `read_exact` fails
        }
        let (payload, rest) = rest.split_at(header.len);
        if header.known {
            let (min, max) = payload_bounds(header.type_id).expect("known types have bounds");
            assert!((min..=max).contains(&payload.len()));
            match decode_payload(header.type_id, payload) {
                Ok(m) => {
                    let wire = &data[..HEADER_LEN + header.len];
                    check_round_trip(&m, wire);
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::Protocol);
                    return;
                }
            }
        }
        data = rest;
    }
}

fn pieces(data: &[u8]) {
    if let Ok(ev) = InputEvent::decode(data) {
        assert_eq!(&ev.encode()[..], data);
        let _ = ev.must_arrive();
    }
    if let Ok((seq, ev)) = decode_input_datagram(data) {
        assert_eq!(&encode_input_datagram(seq, &ev)[..], data);
    }
    if let Some((t, p)) = data.split_first_chunk::<2>() {
        let t = u16::from_be_bytes(*t);
        match decode_payload(t, p) {
            Ok(m) => {
                let enc = m.encode();
                assert_eq!(&enc[4..6], &t.to_be_bytes());
                assert_eq!(&enc[HEADER_LEN..], p);
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::Protocol),
        }
    }
    let text = String::from_utf8_lossy(data);
    let clipped = clip_reason(&text);
    assert!(clipped.len() <= MAX_REASON_LEN && text.starts_with(clipped));
    if text.len() <= MAX_REASON_LEN {
        assert_eq!(clipped, text);
    } else {
        // Cut at the last character boundary at or below the limit.
        assert!(clipped.len() > MAX_REASON_LEN - 4);
    }
}

fuzz_target!(|data: &[u8]| {
    whole(data);
    stream(data);
    pieces(data);
});
