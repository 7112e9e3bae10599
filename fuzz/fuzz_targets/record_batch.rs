//! The produce path's record-set parser and validator, on arbitrary bytes.
//!
//! `log::batch::validate_record_set` splits the set into batches (framing, magic, size, CRC);
//! each batch it returns goes through `log::validate::check_batch` (header rules and every
//! record, decompressing as a stream), as `replica::Partition::append` does. Byte 15 of the
//! input (the low byte of the first batch's partition leader epoch, which the broker
//! overwrites) picks the topic's rules: bit 0 `cleanup.policy=compact`, bit 1
//! `message.timestamp.type=LogAppendTime`. An accepted batch is then handled as the log
//! handles stored batches: stamped with the log-append time when the topic says so, given the
//! offset the log assigns, and decoded with kafka-protocol's `RecordBatchDecoder`, which
//! compaction and ListOffsets use on stored batches.
#![no_main]

use bytes::Bytes;
use fjord_broker::log::batch::{
    crc_matches, set_log_append_time, stored_prefix, validate_record_set, BatchHeader,
};
use fjord_broker::log::validate::{check_batch, Rules};
use kafka_protocol::records::RecordBatchDecoder;
use libfuzzer_sys::fuzz_target;

// The allocation cap (see fuzz/src/lib.rs).
use fjord_fuzz as _;

/// A fixed "now", so that every run of an input takes the same path.
const NOW_MS: i64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(batches) = validate_record_set(data, 1 << 20) else {
        return;
    };
    let bits = data.get(15).copied().unwrap_or(0);
    let log_append_time = bits & 2 != 0;
    let rules = Rules {
        now_ms: NOW_MS,
        create_time: !log_append_time,
        timestamp_before_max_ms: i64::MAX,
        timestamp_after_max_ms: 3_600_000,
        compacted: bits & 1 != 0,
    };
    let mut first_index = 0i32;
    for (pos, h) in &batches {
        let batch = &data[*pos..*pos + h.total_len()];
        let accepted = check_batch(batch, h, &rules, first_index).is_ok();
        first_index = first_index.saturating_add(h.records_count);
        if !accepted {
            continue;
        }
        // As `PartitionLog::append` stores it: the log-append time when the topic says so,
        // then the offset the log assigns (here, the first of a new partition) and the leader
        // epoch in place of what the client sent.
        let mut stored = batch.to_vec();
        if log_append_time {
            set_log_append_time(&mut stored, NOW_MS);
            assert!(crc_matches(&stored), "set_log_append_time left a bad CRC");
        }
        let h = BatchHeader::parse(&stored).expect("an accepted batch has a header");
        stored[..16].copy_from_slice(&stored_prefix(&h, 0, 0));
        let mut bytes = Bytes::from(stored);
        let _ = RecordBatchDecoder::decode(&mut bytes);
    }
});
