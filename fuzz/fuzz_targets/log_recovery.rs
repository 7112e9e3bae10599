//! Segment and index recovery from arbitrary bytes: a partition log and the metadata log
//! opened from files a crash, a bad disk or a bug could leave.
//!
//! Input layout (everything after the flags is optional, a short input is all segment):
//!
//! ```text
//! flags: u8          bit 0: the broker shut down cleanly (saved indexes are trusted)
//!                    bit 1: the first segment has saved indexes (.index, .timeindex, .fjordmeta)
//!                    bit 2: the bytes are split into two segments
//! if bit 1: index_len u16, timeindex_len u16, next_offset i64, max_timestamp i64
//! if bit 2: split u32 (taken modulo the segment length + 1), second base offset i64
//! if bit 1: index bytes (index_len), time index bytes (timeindex_len)
//! the rest: the segment bytes (00000000000000000000.log, then the second segment if split)
//! ```
//!
//! The files go into a fresh directory `t-0/`, opened with `PartitionLog::open` (errors are
//! fine), read through from the log start with `read` and `slice`, searched by timestamp, then
//! appended to, closed, and reopened cleanly (which must keep the log end). The same files go into `__cluster_metadata-0/`,
//! opened with `MetadataLog::open` (the pre-quorum metadata log that a first start migrates),
//! which recovers strictly and replays every record. Nothing may panic.
#![no_main]

use std::fs;
use std::path::{Path, PathBuf};

use fjord_broker::config::TopicConfig;
use fjord_broker::log::batch::{build_batch, validate_record_set, BatchHeader};
use fjord_broker::log::PartitionLog;
use fjord_broker::metadata::{MetadataLog, METADATA_DIR};
use libfuzzer_sys::fuzz_target;

// The allocation cap (see fuzz/src/lib.rs).
use fjord_fuzz as _;

const NOW_MS: i64 = 1_700_000_000_000;

struct Files {
    clean: bool,
    /// (file name, contents)
    files: Vec<(String, Vec<u8>)>,
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(data.len());
    let (head, rest) = data.split_at(n);
    *data = rest;
    head
}

fn take_array<const N: usize>(data: &mut &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    let head = take(data, N);
    a[..head.len()].copy_from_slice(head);
    a
}

fn name(base: i64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

fn layout(mut data: &[u8]) -> Files {
    let flags = take_array::<1>(&mut data)[0];
    let mut files = Vec::new();
    let saved = if flags & 2 != 0 {
        let index_len = u16::from_be_bytes(take_array(&mut data)) as usize;
        let time_len = u16::from_be_bytes(take_array(&mut data)) as usize;
        let next = take_array::<8>(&mut data);
        let max_ts = take_array::<8>(&mut data);
        Some((index_len, time_len, next, max_ts))
    } else {
        None
    };
    let split = if flags & 4 != 0 {
        let at = u32::from_be_bytes(take_array(&mut data)) as usize;
        let base = i64::from_be_bytes(take_array(&mut data));
        Some((at, base))
    } else {
        None
    };
    let mut first_len = None;
    if let Some((index_len, time_len, next, max_ts)) = saved {
        let index = take(&mut data, index_len).to_vec();
        let time = take(&mut data, time_len).to_vec();
        files.push((name(0, "index"), index));
        files.push((name(0, "timeindex"), time));
        // The summary's size must match the file for the indexes to be used; the rest is data.
        first_len = Some((next, max_ts));
    }
    let segment = data;
    let (first, second) = match split {
        Some((at, base)) => {
            let at = at % (segment.len() + 1);
            (&segment[..at], Some((base, &segment[at..])))
        }
        None => (segment, None),
    };
    if let Some((next, max_ts)) = first_len {
        let mut meta = Vec::with_capacity(24);
        meta.extend_from_slice(&(first.len() as u64).to_be_bytes());
        meta.extend_from_slice(&next);
        meta.extend_from_slice(&max_ts);
        files.push((name(0, "fjordmeta"), meta));
    }
    files.push((name(0, "log"), first.to_vec()));
    if let Some((base, bytes)) = second {
        if base != 0 {
            files.push((name(base, "log"), bytes.to_vec()));
        }
    }
    Files {
        clean: flags & 1 != 0,
        files,
    }
}

fn write(dir: &Path, files: &Files) -> Option<()> {
    fs::create_dir_all(dir).ok()?;
    for (name, bytes) in &files.files {
        fs::write(dir.join(name), bytes).ok()?;
    }
    Some(())
}

/// Reads the whole log from its start, batch by batch, as fetches would.
fn read_through(log: &PartitionLog) {
    let end = log.next_offset();
    let mut offset = log.log_start_offset();
    for _ in 0..64 {
        if offset >= end {
            break;
        }
        if let Ok(Some(slice)) = log.slice(offset, 1 << 16, false, end) {
            let _ = slice.read_all();
        }
        let Ok(r) = log.read(offset, 1 << 16, true, end) else {
            break;
        };
        let mut next = offset;
        let mut pos = 0usize;
        while pos < r.records.len() {
            let Some(h) = BatchHeader::parse(&r.records[pos..]) else {
                break;
            };
            next = next.max(
                h.base_offset
                    .saturating_add(h.last_offset_delta as i64)
                    .saturating_add(1),
            );
            pos = pos.saturating_add(h.total_len());
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    let _ = log.for_each_header(|_| {});
    if let Ok(Some((max_ts, _))) = log.max_timestamp() {
        let _ = log.offset_for_timestamp(max_ts);
    }
    let _ = log.offset_for_timestamp(0);
    let _ = log.offset_for_timestamp(NOW_MS);
}

fn partition_log(root: &Path, files: &Files) {
    let dir: PathBuf = root.join("t-0");
    if write(&dir, files).is_none() {
        return;
    }
    let config = TopicConfig::resolve(|_| None);
    let Ok(mut log) = PartitionLog::open(&dir, config.clone(), files.clean) else {
        return;
    };
    read_through(&log);
    // A produce after recovery, then a clean shutdown and restart.
    let batch = build_batch(0, NOW_MS, &[(Some(b"k"), Some(b"v"))]);
    let batches = validate_record_set(&batch, 1 << 20).expect("build_batch makes a valid batch");
    if log.append(&batch, &batches, 0, NOW_MS).is_ok() {
        let end = log.next_offset();
        let _ = log.read(end.saturating_sub(1), 1 << 16, true, end);
    }
    let end = log.next_offset();
    if log.close().is_ok() {
        drop(log);
        if let Ok(log) = PartitionLog::open(&dir, config, true) {
            read_through(&log);
            assert_eq!(
                log.next_offset(),
                end,
                "a clean restart changed the log end"
            );
        }
    }
}

fn metadata_log(root: &Path, files: &Files) {
    if write(&root.join(METADATA_DIR), files).is_none() {
        return;
    }
    let _ = MetadataLog::open(root, files.clean);
}

/// A fresh directory for one input, under `TMPDIR`: `e2e/fuzz/run` points it at a tmpfs
/// directory of its own (the target writes and syncs files on every input), which it removes at
/// the end, with whatever a crashing input left behind.
fn scratch() -> Option<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("fjord-fuzz-")
        .tempdir()
        .ok()
}

fuzz_target!(|data: &[u8]| {
    let files = layout(data);
    let Some(tmp) = scratch() else { return };
    partition_log(&tmp.path().join("p"), &files);
    metadata_log(&tmp.path().join("m"), &files);
});
