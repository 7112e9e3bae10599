//! Request decoding for every API key and version the broker advertises.
//!
//! The input is a request frame without its size prefix, as `api::handle` sees it: api key,
//! api version, then the rest of the header and the body. A key the broker does not serve, or
//! a version outside the advertised range, is mapped onto one that is served (so no input is
//! wasted on the dispatcher's early refusal), then the header and the body are decoded exactly
//! as `api::handle` decodes them. Decoding may fail; it must not panic, abort or allocate
//! without bound (the run uses `-malloc_limit_mb`).
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;
use libfuzzer_sys::fuzz_target;

// The allocation cap (see fuzz/src/lib.rs).
use fjord_fuzz as _;

/// (key, min version, max version) for every served key, in key order.
fn served() -> &'static [(ApiKey, i16, i16)] {
    static SERVED: OnceLock<Vec<(ApiKey, i16, i16)>> = OnceLock::new();
    SERVED.get_or_init(|| {
        let v: Vec<_> = fjord_broker::api::served_keys()
            .into_iter()
            .filter_map(|k| fjord_broker::api::supported(k).map(|r| (k, r.min, r.max)))
            .filter(|(_, min, max)| min <= max)
            .collect();
        assert!(!v.is_empty(), "the broker serves no API");
        v
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let raw_key = i16::from_be_bytes([data[0], data[1]]);
    let raw_version = i16::from_be_bytes([data[2], data[3]]);
    let served = served();
    let (key, min, max) = served
        .iter()
        .copied()
        .find(|(k, _, _)| *k as i16 == raw_key)
        .unwrap_or(served[raw_key as u16 as usize % served.len()]);
    let version = if (min..=max).contains(&raw_version) {
        raw_version
    } else {
        let span = (max as i32 - min as i32 + 1) as u32;
        (min as i32 + (raw_version as u16 as u32 % span) as i32) as i16
    };
    let mut frame = Bytes::copy_from_slice(data);
    if RequestHeader::decode(&mut frame, key.request_header_version(version)).is_err() {
        return;
    }
    let _ = RequestKind::decode(key, &mut frame, version);
});
