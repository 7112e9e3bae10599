//! Log compaction for `cleanup.policy=compact`, at the granularity of whole batches.
//!
//! Kafka's cleaner keeps the latest record of every key and rewrites batches around the
//! records it removes. Fjord's cleaner removes a batch only when *every* record in it is
//! superseded by a later record with the same key (or is a tombstone, the latest of its key,
//! older than `delete.retention.ms`); kept batches are copied byte for byte, so offsets,
//! CRCs, producer ids and sequences never change. That keeps fewer promises than it could
//! (a batch with one live record keeps its dead ones) but all the ones Kafka makes: the latest
//! value of every key stays readable at its offset, and order is never changed. For the
//! commit batches of `__consumer_offsets`, which a later commit of the same partitions
//! supersedes as a whole, it removes nearly everything.
//!
//! Never removed: control batches, the last batch of each producer id (its sequence is what
//! the idempotence check rebuilds from after a restart), keyless records, batches younger than
//! `min.compaction.lag.ms`, and anything in the active segment.
//!
//! The work runs without the partition lock on segments that can no longer change; only the
//! swap of a cleaned file for the original takes the lock (see
//! [`PartitionLog::install_compacted`](super::PartitionLog::install_compacted)).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;

use super::batch::{BatchHeader, HEADER_LEN};
use super::segment::file_name;
use crate::config::TopicConfig;
use crate::error::{Error, Result};

/// A segment as the cleaner reads it: the bytes up to `size` do not change.
#[derive(Debug, Clone)]
pub struct SegmentRef {
    pub base_offset: i64,
    pub file: Arc<File>,
    pub size: u64,
}

/// What to clean, taken under the partition lock: the closed segments, and the active one
/// (read only to learn which keys it supersedes).
#[derive(Debug, Clone)]
pub struct CompactionJob {
    pub dir: PathBuf,
    pub closed: Vec<SegmentRef>,
    pub active: SegmentRef,
    /// The end of the closed segments when the job was taken.
    pub through: i64,
}

/// A cleaned copy of one closed segment, written next to it as `<base>.log.cleaned`.
#[derive(Debug)]
pub struct Cleaned {
    pub base_offset: i64,
    pub original_size: u64,
    pub path: PathBuf,
    pub batches_removed: usize,
}

pub const CLEANED_SUFFIX: &str = "cleaned";

/// Calls `f` with the position, header and bytes of every whole batch of the segment.
fn for_each_batch(
    seg: &SegmentRef,
    path: &Path,
    mut f: impl FnMut(u64, &BatchHeader, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut pos = 0u64;
    let mut buf = Vec::new();
    while pos + HEADER_LEN as u64 <= seg.size {
        let mut head = [0u8; HEADER_LEN];
        seg.file
            .read_exact_at(&mut head, pos)
            .map_err(|e| Error::io(path, e))?;
        let Some(h) = BatchHeader::parse(&head) else {
            break;
        };
        let len = h.total_len() as u64;
        if len < HEADER_LEN as u64 || pos + len > seg.size {
            break;
        }
        buf.resize(len as usize, 0);
        seg.file
            .read_exact_at(&mut buf, pos)
            .map_err(|e| Error::io(path, e))?;
        f(pos, &h, &buf)?;
        pos += len;
    }
    Ok(())
}

/// Offset, key and whether the value is null, of every record of a batch.
fn records_of(raw: &[u8], path: &Path, at: u64) -> Result<Vec<(i64, Option<Bytes>, bool)>> {
    let mut bytes = Bytes::copy_from_slice(raw);
    let set = RecordBatchDecoder::decode(&mut bytes).map_err(|e| Error::SegmentCorrupt {
        path: path.to_path_buf(),
        position: at,
        reason: format!("undecodable batch: {e}"),
    })?;
    Ok(set
        .records
        .into_iter()
        .map(|r| (r.offset, r.key, r.value.is_none()))
        .collect())
}

/// Finds what can go and writes a cleaned copy of every closed segment that loses a batch.
pub fn clean(job: &CompactionJob, config: &TopicConfig, now: i64) -> Result<Vec<Cleaned>> {
    let seg_path = |s: &SegmentRef| job.dir.join(file_name(s.base_offset, "log"));
    // Pass 1: the latest offset of every key, and the last batch of every producer.
    let mut latest: HashMap<Bytes, i64> = HashMap::new();
    let mut last_of_producer: HashMap<i64, i64> = HashMap::new();
    for seg in job.closed.iter().chain(std::iter::once(&job.active)) {
        let path = seg_path(seg);
        for_each_batch(seg, &path, |pos, h, raw| {
            if h.producer_id >= 0 {
                last_of_producer.insert(h.producer_id, h.base_offset);
            }
            if h.is_control() {
                return Ok(());
            }
            for (offset, key, _) in records_of(raw, &path, pos)? {
                if let Some(k) = key {
                    // A copy: the decoded key points into the whole (decompressed) batch.
                    latest.insert(Bytes::copy_from_slice(&k), offset);
                }
            }
            Ok(())
        })?;
    }
    // Pass 2: copy the batches that keep something, per closed segment, in offset order.
    // `kept_keys` holds every key with a record in a batch kept so far: a tombstone may only
    // go when no older record of its key survives, or the deleted value would come back.
    let mut kept_keys: HashSet<Bytes> = HashSet::new();
    let mut out = Vec::new();
    for seg in &job.closed {
        let path = seg_path(seg);
        let mut keep: Vec<(u64, u64)> = Vec::new();
        let mut removed = 0usize;
        for_each_batch(seg, &path, |pos, h, raw| {
            let len = raw.len() as u64;
            let pinned = h.is_control()
                || (h.producer_id >= 0
                    && last_of_producer.get(&h.producer_id) == Some(&h.base_offset))
                || now - h.max_timestamp < config.min_compaction_lag_ms;
            let records = if pinned {
                Vec::new()
            } else {
                records_of(raw, &path, pos)?
            };
            let dead = !pinned
                && !records.is_empty()
                && records.iter().all(|(offset, key, tombstone)| {
                    let Some(k) = key else { return false };
                    match latest.get(k) {
                        Some(&l) if l > *offset => true,
                        Some(&l) if l == *offset => {
                            *tombstone
                                && now - h.max_timestamp >= config.delete_retention_ms
                                && !kept_keys.contains(k)
                        }
                        _ => false,
                    }
                });
            if dead {
                removed += 1;
            } else {
                let records = if pinned {
                    records_of(raw, &path, pos)?
                } else {
                    records
                };
                for (_, key, _) in records {
                    if let Some(k) = key {
                        kept_keys.insert(Bytes::copy_from_slice(&k));
                    }
                }
                keep.push((pos, len));
            }
            Ok(())
        })?;
        if removed == 0 {
            continue;
        }
        let cleaned = job.dir.join(format!(
            "{}.{CLEANED_SUFFIX}",
            file_name(seg.base_offset, "log")
        ));
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&cleaned)
            .map_err(|e| Error::io(&cleaned, e))?;
        let mut buf = Vec::new();
        for (pos, len) in keep {
            buf.resize(len as usize, 0);
            seg.file
                .read_exact_at(&mut buf, pos)
                .map_err(|e| Error::io(&path, e))?;
            f.write_all(&buf).map_err(|e| Error::io(&cleaned, e))?;
        }
        f.sync_all().map_err(|e| Error::io(&cleaned, e))?;
        out.push(Cleaned {
            base_offset: seg.base_offset,
            original_size: seg.size,
            path: cleaned,
            batches_removed: removed,
        });
    }
    Ok(out)
}
