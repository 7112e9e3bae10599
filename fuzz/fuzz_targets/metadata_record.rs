//! The metadata record codec (JSON values of the metadata log) and the image they build.
//!
//! The input is parsed as one `MetadataRecord` (as `MetadataLog::open` parses each record
//! value) and, separately, as a stream of concatenated records, each applied in order to one
//! `MetadataImage`, so that records meet the state earlier ones left (a partition of a topic
//! that exists, a config of a topic that was removed). Every record that parses must
//! serialize and parse back to itself: the log writes with `serde_json::to_vec` and replays
//! with `serde_json::from_slice`, so a record that does not round-trip would stop the broker
//! from starting.
#![no_main]

use fjord_broker::metadata::{MetadataImage, MetadataRecord};
use libfuzzer_sys::fuzz_target;

// The allocation cap (see fuzz/src/lib.rs).
use fjord_fuzz as _;

fn round_trip(rec: &MetadataRecord) {
    let json = serde_json::to_vec(rec).expect("a parsed metadata record serializes");
    let back: MetadataRecord =
        serde_json::from_slice(&json).expect("a serialized metadata record parses");
    assert_eq!(&back, rec, "metadata record does not round-trip");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = serde_json::from_slice::<MetadataRecord>(data) {
        round_trip(&rec);
        let mut image = MetadataImage::default();
        image.apply(&rec);
    }
    let mut image = MetadataImage::default();
    let stream = serde_json::Deserializer::from_slice(data).into_iter::<MetadataRecord>();
    for rec in stream.take(256) {
        let Ok(rec) = rec else { break };
        round_trip(&rec);
        image.apply(&rec);
    }
    // What readers do with an image.
    for t in image.topics.values() {
        let _ = image.topic_by_id(&t.id);
        let _ = t.is_internal();
    }
    for node in image.brokers.keys() {
        let _ = image.dynamic_broker_value(*node, "log.retention.ms");
    }
});
