//! Clear and inner data-packet headers (`punktfunk_core::wire`) from arbitrary bytes.
//!
//! Both decoders are checked against a reference decoder written from
//! docs/PROTOCOL.md §2.1/§2.2 (same result, same error, checks in the same
//! order), and whatever decodes must re-encode to exactly the bytes it came
//! from (the header has no redundant encodings: the reserved byte must be zero
//! and every other byte is a field).

#![no_main]

use libfuzzer_sys::fuzz_target;
use punktfunk_core::wire::{
    ClearHeader, InnerHeader, WireError, CLEAR_HEADER_LEN, FLAG_KEYFRAME, FLAG_PADDING, FLAG_PATH,
    FLAG_PROBE, INNER_HEADER_LEN, VERSION,
};

fn reference_clear(b: &[u8]) -> Result<ClearHeader, WireError> {
    if b.len() < CLEAR_HEADER_LEN {
        return Err(WireError::TooShort {
            need: CLEAR_HEADER_LEN,
            have: b.len(),
        });
    }
    if b[0] != VERSION {
        return Err(WireError::UnknownVersion(b[0]));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&b[1..9]);
    Ok(ClearHeader {
        seq: u64::from_be_bytes(seq),
    })
}

fn reference_inner(b: &[u8]) -> Result<InnerHeader, WireError> {
    if b.len() < INNER_HEADER_LEN {
        return Err(WireError::TooShort {
            need: INNER_HEADER_LEN,
            have: b.len(),
        });
    }
    let be = |at: usize, n: usize| b[at..at + n].iter().fold(0u64, |acc, &x| acc << 8 | u64::from(x));
    let h = InnerHeader {
        flags: b[0],
        block_index: be(2, 2) as u16,
        block_count: be(4, 2) as u16,
        shard_index: be(6, 2) as u16,
        data_shards: be(8, 2) as u16,
        recovery_shards: be(10, 2) as u16,
        frame_index: be(12, 8),
        frame_len: be(20, 4) as u32,
        pts: be(24, 8),
    };
    let unknown = h.flags & !(FLAG_KEYFRAME | FLAG_PROBE | FLAG_PATH | FLAG_PADDING);
    if unknown != 0 {
        return Err(WireError::UnknownFlags(unknown));
    }
    if b[1] != 0 {
        return Err(WireError::ReservedNotZero(b[1]));
    }
    if h.block_count == 0 || h.block_index >= h.block_count {
        return Err(WireError::Inconsistent("block index outside block count"));
    }
    if h.data_shards == 0 {
        return Err(WireError::Inconsistent("zero data shards"));
    }
    if u32::from(h.shard_index) >= u32::from(h.data_shards) + u32::from(h.recovery_shards) {
        return Err(WireError::Inconsistent("shard index outside k + m"));
    }
    Ok(h)
}

fn check_clear(b: &[u8]) {
    let got = ClearHeader::decode(b);
    assert_eq!(got, reference_clear(b), "clear header {b:02x?}");
    if let Ok(h) = got {
        let mut out = [0u8; CLEAR_HEADER_LEN];
        h.encode(&mut out);
        assert_eq!(&out[..], &b[..CLEAR_HEADER_LEN], "clear header must round-trip");
    }
    // The error message never panics either.
    if let Err(e) = got {
        let _ = e.to_string();
    }
}

fn check_inner(b: &[u8]) {
    let got = InnerHeader::decode(b);
    assert_eq!(got, reference_inner(b), "inner header {b:02x?}");
    match got {
        Ok(h) => {
            let mut out = [0u8; INNER_HEADER_LEN];
            h.encode(&mut out);
            assert_eq!(&out[..], &b[..INNER_HEADER_LEN], "inner header must round-trip");
            assert_eq!(h.is_keyframe(), h.flags & FLAG_KEYFRAME != 0);
            assert_eq!(h.is_probe(), h.flags & FLAG_PROBE != 0);
            assert_eq!(h.is_path(), h.flags & FLAG_PATH != 0);
            assert_eq!(h.is_padding(), h.flags & FLAG_PADDING != 0);
            // Decoding the re-encoded header gives the same value.
            assert_eq!(InnerHeader::decode(&out), Ok(h));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The input as one header each, and as a datagram: clear header, then the
    // (already opened) inner header behind it.
    check_clear(data);
    check_inner(data);
    if let Some(rest) = data.get(CLEAR_HEADER_LEN..) {
        check_inner(rest);
    }
});
