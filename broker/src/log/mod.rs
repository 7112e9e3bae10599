//! The partition log: an ordered list of [`Segment`]s in one directory, `<topic>-<partition>/`.
//!
//! Invariants: segments are contiguous and ordered by base offset; only the last (active)
//! segment is appended to; `log_start_offset <= next_offset`; every stored batch passed CRC
//! validation and carries the offset the log assigned it. Recovery after a crash verifies the
//! active segment batch by batch and truncates a torn tail.

pub mod batch;
pub mod compact;
pub mod files;
pub mod segment;
pub mod validate;

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;

pub use batch::BatchHeader;
pub use segment::{now_ms, FileSlice, Segment};

use crate::config::TopicConfig;
use crate::error::{Error, Result};

const LOG_START_FILE: &str = "log-start-offset";

/// What recovery may cut from the end of a segment that does not end with a whole, valid batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Partition logs: everything from the first invalid batch on, as Kafka's log recovery
    /// does (what was cut was never acknowledged with `acks=all` on a healthy disk).
    TruncateInvalidTail,
    /// The metadata log, the source of truth for everything else: only a torn last batch after
    /// a crash (incomplete, zeros, or a last batch whose CRC fails), which was never
    /// committed because its flush had not returned. Anything else, or any damage after a
    /// clean shutdown, stops start-up with the file and position.
    TornTailOnly,
}

#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    segments: Vec<Segment>,
    log_start_offset: i64,
    pub config: TopicConfig,
    /// The end of the closed segments at the last compaction (-1: none yet).
    cleaned_through: i64,
    /// The partition was deleted: its directory is gone or going, nothing may be swapped in.
    deleted: bool,
}

/// What a read returned.
#[derive(Debug, Clone)]
pub struct ReadResult {
    pub records: Bytes,
    pub log_start_offset: i64,
    pub next_offset: i64,
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`. `clean` says the broker shut down cleanly, in which
    /// case saved indexes are trusted; otherwise the active segment is verified.
    pub fn open(dir: &Path, config: TopicConfig, clean: bool) -> Result<Self> {
        Self::open_with(dir, config, clean, Recovery::TruncateInvalidTail)
    }

    /// [`Self::open`] with a choice of what recovery may cut (see [`Recovery`]).
    pub fn open_with(
        dir: &Path,
        config: TopicConfig,
        clean: bool,
        recovery: Recovery,
    ) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let entries: Vec<String> = fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        // A cleaned copy that was never swapped in (a crash during compaction) is redundant.
        for name in &entries {
            if name.ends_with(&format!(".log.{}", compact::CLEANED_SUFFIX)) {
                let p = dir.join(name);
                fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
        let mut bases: Vec<i64> = entries
            .iter()
            .filter_map(|name| name.strip_suffix(".log")?.parse::<i64>().ok())
            .collect();
        if let Some(&base) = bases.iter().find(|&&b| b < 0) {
            return Err(Error::SegmentCorrupt {
                path: dir.join(segment::file_name(base, "log")),
                position: 0,
                reason: "a segment's base offset cannot be negative".into(),
            });
        }
        bases.sort_unstable();
        let mut segments = Vec::with_capacity(bases.len().max(1));
        let n = bases.len();
        for (i, base) in bases.into_iter().enumerate() {
            let last = i + 1 == n;
            let seg = Segment::open(
                dir,
                base,
                last && !clean,
                config.index_interval_bytes,
                recovery,
            )?;
            segments.push(seg);
        }
        // A later segment must start where the one before it ends; a gap means a lost file.
        for w in segments.windows(2) {
            if w[0].next_offset > w[1].base_offset {
                return Err(Error::SegmentCorrupt {
                    path: dir.to_path_buf(),
                    position: 0,
                    reason: format!(
                        "segment {} ends at {} after segment {} starts",
                        w[0].base_offset, w[0].next_offset, w[1].base_offset
                    ),
                });
            }
        }
        if segments.is_empty() {
            segments.push(Segment::create(dir, 0)?);
        }
        let saved_start = fs::read_to_string(dir.join(LOG_START_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        let first_base = segments[0].base_offset;
        let next = segments.last().map(|s| s.next_offset).unwrap_or(0);
        let log = PartitionLog {
            dir: dir.to_path_buf(),
            log_start_offset: saved_start.max(first_base).min(next),
            segments,
            config,
            cleaned_through: -1,
            deleted: false,
        };
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn next_offset(&self) -> i64 {
        self.active().next_offset
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a log always has an active segment")
    }

    /// Rolls to a new segment when the active one is full or old enough.
    fn maybe_roll(&mut self, incoming: usize, now: i64) -> Result<()> {
        let cfg = &self.config;
        let a = self.active();
        let full = a.size > 0 && a.size + incoming as u64 > cfg.segment_bytes;
        let old = a.size > 0 && now - a.created_ms >= cfg.segment_ms;
        // Relative offsets in the index are u32 and positions are u32: roll before either wraps.
        let wide = a.next_offset - a.base_offset > i32::MAX as i64
            || a.size + incoming as u64 > u32::MAX as u64;
        if full || old || wide {
            self.roll()?;
        }
        Ok(())
    }

    pub fn roll(&mut self) -> Result<()> {
        self.roll_at(self.next_offset())
    }

    /// Closes the active segment and starts one whose base is `base` (at least the log end).
    fn roll_at(&mut self, base: i64) -> Result<()> {
        self.active_mut().save_indexes()?;
        let seg = Segment::create(&self.dir, base)?;
        self.segments.push(seg);
        Ok(())
    }

    /// Appends a validated record set. `batches` are the positions and headers returned by
    /// [`batch::validate_record_set`]. Returns the base offset of the first batch.
    pub fn append(
        &mut self,
        records: &[u8],
        batches: &[(usize, BatchHeader)],
        leader_epoch: i32,
        now: i64,
    ) -> Result<i64> {
        let first = self.next_offset();
        for (pos, h) in batches {
            let raw = &records[*pos..*pos + h.total_len()];
            // Only a damaged log (a segment file named near i64::MAX) gets here.
            if self
                .next_offset()
                .checked_add(h.last_offset_delta as i64 + 1)
                .is_none()
            {
                return Err(Error::SegmentCorrupt {
                    path: self.dir.clone(),
                    position: self.active().size,
                    reason: format!("offsets after {} would pass 2^63-1", self.next_offset()),
                });
            }
            self.maybe_roll(raw.len(), now)?;
            let base = self.next_offset();
            let interval = self.config.index_interval_bytes;
            if self.config.log_append_time {
                let mut owned = raw.to_vec();
                batch::set_log_append_time(&mut owned, now);
                let h2 = BatchHeader::parse(&owned).expect("validated batch");
                let prefix = batch::stored_prefix(&h2, base, leader_epoch);
                self.active_mut()
                    .append(&prefix, &owned[16..], &h2, base, interval)?;
            } else {
                let prefix = batch::stored_prefix(h, base, leader_epoch);
                self.active_mut()
                    .append(&prefix, &raw[16..], h, base, interval)?;
            }
        }
        Ok(first)
    }

    /// Appends batches fetched from the leader as they are: their offsets, leader epochs and
    /// timestamps are the leader's, so the replicas' logs are byte-identical. Batches that end
    /// below the log end (already here) are skipped; offsets may jump forward (a compacted
    /// leader log has gaps). A batch that starts below the log end but ends above it means the
    /// logs diverged, which the fetcher resolves by truncating first: it is refused.
    pub fn append_replicated(
        &mut self,
        records: &[u8],
        batches: &[(usize, BatchHeader)],
        now: i64,
    ) -> Result<i64> {
        for (pos, h) in batches {
            let next = self.next_offset();
            let last = h.last_offset();
            if last < next {
                continue;
            }
            if h.base_offset < next {
                return Err(Error::CorruptBatch(format!(
                    "a replicated batch at offsets {}..={last} overlaps the log end {next}",
                    h.base_offset
                )));
            }
            let raw = &records[*pos..*pos + h.total_len()];
            // Relative offsets in a segment are u32: a gap this wide starts a new segment at
            // the batch (an empty segment cannot be moved; only a fresh log can have one here,
            // and the fetcher starts a fresh log at the leader's log start).
            if last - self.active().base_offset > i32::MAX as i64 {
                if self.active().size == 0 {
                    return Err(Error::CorruptBatch(format!(
                        "a replicated batch at offset {} is too far past the empty segment at {}",
                        h.base_offset,
                        self.active().base_offset
                    )));
                }
                self.roll_at(h.base_offset)?;
            } else {
                self.maybe_roll(raw.len(), now)?;
            }
            let prefix: [u8; 16] = raw[..16]
                .try_into()
                .expect("a validated batch has a header");
            let interval = self.config.index_interval_bytes;
            self.active_mut()
                .append(&prefix, &raw[16..], h, h.base_offset, interval)?;
        }
        Ok(self.next_offset())
    }

    /// Reads whole batches starting at the batch that contains `offset`, up to `max_bytes`
    /// (at least one batch when `min_one`), never past `limit` (the high watermark).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        limit: i64,
    ) -> Result<ReadResult> {
        let mut out = ReadResult {
            records: Bytes::new(),
            log_start_offset: self.log_start_offset,
            next_offset: self.next_offset(),
        };
        if offset >= limit {
            return Ok(out);
        }
        if let Some(seg) = self.segment_for(offset) {
            out.records = seg.read(offset, max_bytes, min_one)?;
        }
        Ok(out)
    }

    /// The first segment holding a batch at or after `offset`. It answers a read even with
    /// nothing (its first batch above `max_bytes` without `min_one`): a later segment's
    /// batches would skip offsets. Segments emptied by compaction hold nothing to read.
    fn segment_for(&self, offset: i64) -> Option<&Segment> {
        let i = self
            .segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        self.segments[i..]
            .iter()
            .find(|s| s.size > 0 && s.next_offset > offset)
    }

    /// Like [`Self::read`], but returns the file range of the batches instead of their bytes
    /// (the Fetch path, which sends them with sendfile).
    pub fn slice(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        limit: i64,
    ) -> Result<Option<FileSlice>> {
        if offset >= limit {
            return Ok(None);
        }
        match self.segment_for(offset) {
            Some(seg) => seg.slice(offset, max_bytes, min_one),
            None => Ok(None),
        }
    }

    /// The first record whose timestamp is at or after `ts`: its offset and timestamp, or
    /// `None`. The time index finds the batch; the batch is decoded (decompressing if need be)
    /// to find the record, as Kafka does.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>> {
        for seg in &self.segments {
            let Some((base, batch_max)) = seg.offset_for_timestamp(ts)? else {
                continue;
            };
            let mut bytes = seg.read(base, 1, true)?;
            let exact = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes)
                .ok()
                .and_then(|set| {
                    set.records
                        .iter()
                        .find(|r| r.timestamp >= ts && r.offset >= self.log_start_offset)
                        .map(|r| (r.offset, r.timestamp))
                });
            return Ok(Some(
                exact.unwrap_or((base.max(self.log_start_offset), batch_max)),
            ));
        }
        Ok(None)
    }

    /// The largest timestamp in the log and the offset of its batch (ListOffsets MAX_TIMESTAMP).
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>> {
        let mut best: Option<(i64, i64)> = None;
        for seg in &self.segments {
            seg.for_each_header(|h| {
                if best.is_none_or(|(t, _)| h.max_timestamp > t) {
                    best = Some((h.max_timestamp, h.last_offset()));
                }
            })?;
        }
        Ok(best)
    }

    /// Visits every batch header from the oldest segment on.
    pub fn for_each_header(&self, mut f: impl FnMut(&BatchHeader)) -> Result<()> {
        for seg in &self.segments {
            seg.for_each_header(&mut f)?;
        }
        Ok(())
    }

    /// Moves the log start forward (DeleteRecords) and drops segments wholly below it.
    pub fn advance_log_start(&mut self, offset: i64) -> Result<i64> {
        let offset = offset.min(self.next_offset());
        if offset > self.log_start_offset {
            self.log_start_offset = offset;
            let p = self.dir.join(LOG_START_FILE);
            fs::write(&p, offset.to_string()).map_err(|e| Error::io(&p, e))?;
        }
        // The log start itself is bounded by the high watermark (DeleteRecords checks it).
        self.delete_segments_while(i64::MAX, |seg, log_start| seg.next_offset <= log_start)?;
        Ok(self.log_start_offset)
    }

    /// Drops every batch at or after `offset` (Kafka's `truncateTo`): a follower whose log
    /// diverged from its leader's, or a Raft log told to remove a conflicting suffix. Segments
    /// wholly above go, the one holding `offset` is cut before the batch that contains it, so
    /// the next offset is that batch's base (exactly `offset` when batches hold one record).
    /// Below the log start nothing is left to keep: see [`Self::truncate_fully_and_start_at`].
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        if offset >= self.next_offset() {
            return Ok(());
        }
        if offset <= self.log_start_offset {
            return self.truncate_fully_and_start_at(offset.max(0));
        }
        // Highest first: a crash part-way leaves a prefix of the old log, which opens cleanly.
        while self.segments.len() > 1 && self.active().base_offset >= offset {
            let seg = self.segments.pop().expect("more than one segment");
            seg.delete()?;
        }
        let interval = self.config.index_interval_bytes;
        self.active_mut().truncate_to(offset, interval)?;
        if self.next_offset() < self.log_start_offset {
            // The cut batch also held the log start (DeleteRecords can move it into a batch):
            // nothing readable is left, and the log must not end before it starts.
            return self.truncate_fully_and_start_at(self.log_start_offset);
        }
        self.cleaned_through = self.cleaned_through.min(self.next_offset());
        sync_dir(&self.dir)
    }

    /// Empties the log and makes `offset` both its start and its next offset (Kafka's
    /// `truncateFullyAndStartAt`): a Raft follower that installed a snapshot past its log end,
    /// or a replica whose whole log diverged. [`Self::advance_log_start`] cannot do this, as it
    /// never moves the start past the end.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        if offset < 0 {
            return Err(Error::SegmentCorrupt {
                path: self.dir.clone(),
                position: 0,
                reason: format!("cannot start a log at negative offset {offset}"),
            });
        }
        // Highest first, as in `truncate_to`; a crash before the new segment exists leaves an
        // empty log at 0, which the owner (the quorum's `quorum-state`) knows to reset again.
        while let Some(seg) = self.segments.pop() {
            seg.delete()?;
        }
        self.segments.push(Segment::create(&self.dir, offset)?);
        self.log_start_offset = offset;
        let p = self.dir.join(LOG_START_FILE);
        fs::write(&p, offset.to_string()).map_err(|e| Error::io(&p, e))?;
        self.cleaned_through = -1;
        sync_dir(&self.dir)
    }

    /// Drops old segments (never the active one while it is empty) while `doomed` says so.
    /// Deletes the oldest segments while `doomed` says so; never the active one, and never one
    /// holding an offset at or above `limit` (the high watermark: what replicas may still need).
    fn delete_segments_while(
        &mut self,
        limit: i64,
        mut doomed: impl FnMut(&Segment, i64) -> bool,
    ) -> Result<usize> {
        let mut deleted = 0;
        while self.segments.len() > 1
            && self.segments[0].next_offset <= limit
            && doomed(&self.segments[0], self.log_start_offset)
        {
            let seg = self.segments.remove(0);
            seg.delete()?;
            deleted += 1;
            self.log_start_offset = self.log_start_offset.max(self.segments[0].base_offset);
        }
        Ok(deleted)
    }

    /// Applies `retention.ms` and `retention.bytes` to the segments wholly below
    /// `high_watermark` (as Kafka's retention never passes it); returns how many segments were
    /// deleted.
    pub fn enforce_retention(&mut self, now: i64, high_watermark: i64) -> Result<usize> {
        let cfg = self.config.clone();
        // An expired active segment with data is rolled first so that it can go too.
        let active = self.active();
        if cfg.retention_ms >= 0
            && active.size > 0
            && active.max_timestamp >= 0
            && now - active.max_timestamp > cfg.retention_ms
        {
            self.roll()?;
        }
        let mut deleted = 0;
        if cfg.retention_ms >= 0 {
            deleted += self.delete_segments_while(high_watermark, |seg, _| {
                let ts = if seg.max_timestamp >= 0 {
                    seg.max_timestamp
                } else {
                    seg.created_ms
                };
                now - ts > cfg.retention_ms
            })?;
        }
        if cfg.retention_bytes >= 0 {
            let mut size = self.size_bytes();
            deleted += self.delete_segments_while(high_watermark, |seg, _| {
                if size.saturating_sub(seg.size) >= cfg.retention_bytes as u64
                    && size > cfg.retention_bytes as u64
                {
                    size -= seg.size;
                    true
                } else {
                    false
                }
            })?;
        }
        if deleted > 0 {
            let p = self.dir.join(LOG_START_FILE);
            fs::write(&p, self.log_start_offset.to_string()).map_err(|e| Error::io(&p, e))?;
        }
        Ok(deleted)
    }

    /// Marks the log deleted; the caller removes the directory while it holds the partition
    /// lock, so a compaction finishing later cannot write into a directory reused by a new
    /// topic of the same name.
    pub fn mark_deleted(&mut self) {
        self.deleted = true;
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// What the cleaner should work on, when the topic is compacted and segments were closed
    /// since the last compaction. It waits while the closed segments reach past
    /// `high_watermark`: compaction never passes it, as in Kafka.
    pub fn compaction_job(&self, high_watermark: i64) -> Option<compact::CompactionJob> {
        if !self.config.compact || self.segments.len() < 2 {
            return None;
        }
        let (active, closed) = self.segments.split_last()?;
        let through = closed.last()?.next_offset;
        if through <= self.cleaned_through || through > high_watermark {
            return None;
        }
        // A segment that cannot be opened now skips this round; the next one tries again.
        let to_ref = |s: &Segment| {
            let (file, size) = s.snapshot().ok()?;
            Some(compact::SegmentRef {
                base_offset: s.base_offset,
                file,
                size,
            })
        };
        Some(compact::CompactionJob {
            dir: self.dir.clone(),
            closed: closed
                .iter()
                .filter(|s| s.size > 0)
                .map(to_ref)
                .collect::<Option<Vec<_>>>()?,
            active: to_ref(active)?,
            through,
        })
    }

    /// Swaps cleaned copies in for their segments (each unchanged since the job was taken;
    /// a stale copy is dropped). Returns how many batches went.
    pub fn install_compacted(
        &mut self,
        job: &compact::CompactionJob,
        cleaned: Vec<compact::Cleaned>,
    ) -> Result<usize> {
        if self.deleted {
            // The directory may already belong to a re-created topic of the same name.
            for c in cleaned {
                let _ = fs::remove_file(&c.path);
            }
            return Ok(0);
        }
        let mut removed = 0;
        for c in cleaned {
            let closed = self.segments.len().saturating_sub(1);
            let Some(i) = self.segments[..closed]
                .iter()
                .position(|s| s.base_offset == c.base_offset && s.size == c.original_size)
            else {
                let _ = fs::remove_file(&c.path);
                continue;
            };
            // Without the saved summary the segment is rescanned on open, so a crash on either
            // side of the rename leaves a consistent segment (the old one or the cleaned one).
            self.segments[i].invalidate_saved_indexes();
            let (max_timestamp, created_ms) =
                (self.segments[i].max_timestamp, self.segments[i].created_ms);
            let target = self.dir.join(segment::file_name(c.base_offset, "log"));
            fs::rename(&c.path, &target).map_err(|e| Error::io(&target, e))?;
            let mut seg = Segment::open(
                &self.dir,
                c.base_offset,
                false,
                self.config.index_interval_bytes,
                Recovery::TruncateInvalidTail,
            )?;
            // Time retention of `compact,delete` topics goes by the original data's age.
            seg.max_timestamp = seg.max_timestamp.max(max_timestamp);
            seg.created_ms = created_ms;
            removed += c.batches_removed;
            if seg.size == 0 && i > 0 {
                // An emptied segment after the first holds nothing a read needs; the first
                // stays so that the log start offset does not move.
                self.segments.remove(i);
                seg.delete()?;
            } else {
                self.segments[i] = seg;
            }
        }
        self.cleaned_through = job.through;
        Ok(removed)
    }

    /// Rolls by age even when nothing is produced (so idle topics still expire).
    pub fn roll_if_old(&mut self, now: i64) -> Result<()> {
        self.maybe_roll(0, now)
    }

    /// Flushes data and saves the active segment's indexes (clean shutdown).
    pub fn close(&mut self) -> Result<()> {
        for seg in &mut self.segments {
            seg.save_indexes()?;
        }
        self.active().flush()
    }

    pub fn flush(&self) -> Result<()> {
        self.active().flush()
    }
}

/// Makes file creations, renames and deletions in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::batch::{build_batch, validate_record_set};
    use super::*;
    use std::io::Write;

    fn cfg() -> TopicConfig {
        TopicConfig::resolve(|k| match k {
            "segment.bytes" => Some("1000".into()),
            "index.interval.bytes" => Some("100".into()),
            _ => None,
        })
    }

    fn append_values(log: &mut PartitionLog, n: usize, ts: i64) -> Vec<i64> {
        (0..n)
            .map(|i| {
                let v = format!("value-{i}");
                let b = build_batch(0, ts, &[(None, Some(v.as_bytes()))]);
                let batches = validate_record_set(&b, 1 << 20).unwrap();
                log.append(&b, &batches, 0, ts).unwrap()
            })
            .collect()
    }

    fn all_offsets(log: &PartitionLog) -> Vec<i64> {
        let mut v = Vec::new();
        log.for_each_header(|h| v.push(h.base_offset)).unwrap();
        v
    }

    /// Found by fuzzing `log_recovery` (`fuzz/corpus/log_recovery/regression-*`): offsets no
    /// append can write are damage, not wrapped arithmetic.
    #[test]
    fn offsets_near_the_ends_of_i64_are_damage() {
        // A batch at base offset 2^63-1, found by a recovery scan: cut, not a log end of -2^63.
        let dir = tempfile::tempdir().unwrap();
        let mut b = build_batch(0, 1, &[(None, Some(b"v"))]);
        b[0..8].copy_from_slice(&i64::MAX.to_be_bytes());
        fs::write(dir.path().join(segment::file_name(0, "log")), &b).unwrap();
        let log = PartitionLog::open(dir.path(), cfg(), true).unwrap();
        assert_eq!(log.next_offset(), 0);
        assert_eq!(log.size_bytes(), 0);

        // A batch too far from its segment's base for the index's relative offsets.
        let dir = tempfile::tempdir().unwrap();
        let mut b = build_batch(0, 1, &[(None, Some(b"v"))]);
        b[0..8].copy_from_slice(&(u32::MAX as i64 + 1).to_be_bytes());
        fs::write(dir.path().join(segment::file_name(0, "log")), &b).unwrap();
        let log = PartitionLog::open(dir.path(), cfg(), false).unwrap();
        assert_eq!(log.next_offset(), 0);

        // A segment file named with a negative base offset: start-up names it.
        let dir = tempfile::tempdir().unwrap();
        let name = segment::file_name(-5, "log");
        fs::write(dir.path().join(&name), b"").unwrap();
        let e = PartitionLog::open(dir.path(), cfg(), true).unwrap_err();
        assert!(e.to_string().contains(&name), "{e}");

        // An empty last segment named 2^63-1: appends are refused instead of wrapping.
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(segment::file_name(0, "log")), b"").unwrap();
        fs::write(dir.path().join(segment::file_name(i64::MAX, "log")), b"").unwrap();
        let mut log = PartitionLog::open(dir.path(), cfg(), true).unwrap();
        assert_eq!(log.next_offset(), i64::MAX);
        let b = build_batch(0, 1, &[(None, Some(b"v"))]);
        let batches = validate_record_set(&b, 1 << 20).unwrap();
        assert!(log.append(&b, &batches, 0, 1).is_err());
        assert_eq!(log.next_offset(), i64::MAX);
    }

    #[test]
    fn appends_assign_consecutive_offsets_and_roll_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), cfg(), true).unwrap();
        let offsets = append_values(&mut log, 50, 1);
        assert_eq!(offsets, (0..50).collect::<Vec<_>>());
        assert!(log.segment_count() > 1, "1000-byte segments must roll");
        assert_eq!(all_offsets(&log), (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn fetch_inside_a_batch_returns_the_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), cfg(), true).unwrap();
        let b = build_batch(
            0,
            1,
            &[(None, Some(b"a")), (None, Some(b"b")), (None, Some(b"c"))],
        );
        let batches = validate_record_set(&b, 1 << 20).unwrap();
        log.append(&b, &batches, 0, 1).unwrap();
        let r = log.read(1, 1 << 20, true, log.next_offset()).unwrap();
        let h = BatchHeader::parse(&r.records).unwrap();
        assert_eq!(h.base_offset, 0);
        assert_eq!(h.records_count, 3);
        assert_eq!(r.records.len(), b.len());
    }

    #[test]
    fn reads_return_at_least_one_batch_and_respect_max_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), cfg(), true).unwrap();
        append_values(&mut log, 10, 1);
        let r = log.read(0, 1, true, 10).unwrap();
        assert_eq!(validate_record_set(&r.records, 1 << 20).unwrap().len(), 1);
        let r = log.read(0, 1, false, 10).unwrap();
        assert!(r.records.is_empty());
        let r = log.read(10, 1000, true, 10).unwrap();
        assert!(r.records.is_empty());
    }

    /// The file ranges the Fetch path sends (and `read` returns) hold exactly the whole batches
    /// a walk over the raw segment file finds, for every offset and byte limit, with batches
    /// smaller and larger than the 4 KiB header window.
    #[test]
    fn slices_hold_exactly_the_whole_batches_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = TopicConfig::resolve(|k| match k {
            "segment.bytes" => Some("1048576".into()),
            "index.interval.bytes" => Some("4096".into()),
            _ => None,
        });
        let mut log = PartitionLog::open(dir.path(), cfg, true).unwrap();
        for i in 0..60usize {
            let v = vec![b'x'; [10, 300, 5000, 9000, 40][i % 5]];
            let b = build_batch(0, 1, &[(None, Some(&v)), (None, Some(b"y"))]);
            let batches = validate_record_set(&b, 1 << 20).unwrap();
            log.append(&b, &batches, 0, 1).unwrap();
        }
        assert_eq!(log.segment_count(), 1);
        let raw = fs::read(dir.path().join(segment::file_name(0, "log"))).unwrap();
        // (position, length, last offset) of every batch, from the file itself.
        let mut batches = Vec::new();
        let mut pos = 0;
        while pos < raw.len() {
            let h = BatchHeader::parse(&raw[pos..]).unwrap();
            batches.push((pos, h.total_len(), h.last_offset()));
            pos += h.total_len();
        }
        let expected = |offset: i64, max: usize, min_one: bool| -> Vec<u8> {
            let first = batches.iter().position(|b| b.2 >= offset).unwrap();
            let start = batches[first].0;
            let mut end = start;
            for (i, &(p, len, _)) in batches.iter().enumerate().skip(first) {
                if p + len - start > max && !(i == first && min_one) {
                    break;
                }
                end = p + len;
            }
            raw[start..end].to_vec()
        };
        let end = log.next_offset();
        for offset in (0..end).step_by(3) {
            for max in [1, 100, 4000, 4097, 9100, 20_000, 70_000, 1 << 20] {
                for min_one in [true, false] {
                    let want = expected(offset, max, min_one);
                    let slice = log.slice(offset, max, min_one, end).unwrap();
                    let sliced = slice.map(|s| s.read_all().unwrap()).unwrap_or_default();
                    assert_eq!(sliced, want, "offset {offset} max {max} min_one {min_one}");
                    let read = log.read(offset, max, min_one, end).unwrap().records;
                    assert_eq!(
                        read, want,
                        "read: offset {offset} max {max} min_one {min_one}"
                    );
                }
            }
        }
    }

    /// A batch too big for what is left of a fetch's byte budget ends that partition's data for
    /// this fetch; the batches of the next segment must not be returned in its place.
    #[test]
    fn a_too_big_batch_at_a_segment_end_is_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), cfg(), true).unwrap();
        append_values(&mut log, 3, 1);
        let big = vec![b'z'; 2000];
        let b = build_batch(0, 1, &[(None, Some(&big))]);
        let batches = validate_record_set(&b, 1 << 20).unwrap();
        let big_offset = log.append(&b, &batches, 0, 1).unwrap();
        append_values(&mut log, 3, 1);
        assert!(
            log.segment_count() > 1,
            "the big batch fills its 1000-byte segment"
        );
        let end = log.next_offset();
        let r = log.read(big_offset, 1000, false, end).unwrap();
        assert!(
            r.records.is_empty(),
            "nothing fits, and nothing else is returned"
        );
        assert!(log.slice(big_offset, 1000, false, end).unwrap().is_none());
        let r = log.read(big_offset, 1000, true, end).unwrap();
        assert_eq!(
            BatchHeader::parse(&r.records).unwrap().base_offset,
            big_offset
        );
        let s = log.slice(big_offset, 1000, true, end).unwrap().unwrap();
        assert_eq!(s.read_all().unwrap(), r.records);
    }

    fn compacted_cfg(delete_retention_ms: &str) -> TopicConfig {
        let d = delete_retention_ms.to_string();
        TopicConfig::resolve(move |k| match k {
            "segment.bytes" => Some("1000".into()),
            "index.interval.bytes" => Some("100".into()),
            "cleanup.policy" => Some("compact".into()),
            "delete.retention.ms" => Some(d.clone()),
            _ => None,
        })
    }

    /// Appends one batch per (key, value); a `None` value is a tombstone.
    fn append_keyed(log: &mut PartitionLog, kvs: &[(&str, Option<&str>)], ts: i64) {
        for (k, v) in kvs {
            let b = build_batch(0, ts, &[(Some(k.as_bytes()), v.map(str::as_bytes))]);
            let batches = validate_record_set(&b, 1 << 20).unwrap();
            log.append(&b, &batches, 0, ts).unwrap();
        }
    }

    fn compact_now(log: &mut PartitionLog, now: i64) -> usize {
        let Some(job) = log.compaction_job(i64::MAX) else {
            return 0;
        };
        let cleaned = compact::clean(&job, &log.config, now).unwrap();
        log.install_compacted(&job, cleaned).unwrap()
    }

    /// Every record from `offset` on, as (offset, key, value), read the way Fetch reads.
    fn read_all(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
        let mut out = Vec::new();
        let mut offset = 0;
        let end = log.next_offset();
        while offset < end {
            let Some(slice) = log.slice(offset, 1 << 20, true, end).unwrap() else {
                break;
            };
            let mut bytes = slice.read_all().unwrap();
            for set in kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes).unwrap()
            {
                for r in set.records {
                    let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                    let value = r.value.map(|v| String::from_utf8(v.to_vec()).unwrap());
                    out.push((r.offset, key, value));
                    offset = r.offset + 1;
                }
            }
        }
        out
    }

    #[test]
    fn compaction_keeps_the_latest_value_of_every_key_at_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), compacted_cfg("86400000"), true).unwrap();
        for round in 0..10 {
            let v: Vec<String> = (0..5).map(|k| format!("v{round}-{k}")).collect();
            let kvs: Vec<(String, Option<&str>)> = (0..5)
                .map(|k| (format!("k{k}"), Some(v[k].as_str())))
                .collect();
            let refs: Vec<(&str, Option<&str>)> =
                kvs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            append_keyed(&mut log, &refs, 1);
        }
        log.roll().unwrap();
        let segments = log.segment_count();
        assert!(segments > 3);
        assert!(
            log.compaction_job(49).is_none(),
            "the cleaner waits for the high watermark to pass the closed segments"
        );
        assert!(log.compaction_job(50).is_some());
        let removed = compact_now(&mut log, 2);
        assert_eq!(removed, 45, "every batch but the last five is superseded");
        let expected: Vec<(i64, String, Option<String>)> = (0..5)
            .map(|k| (45 + k as i64, format!("k{k}"), Some(format!("v9-{k}"))))
            .collect();
        assert_eq!(read_all(&log), expected);
        assert_eq!(log.next_offset(), 50, "offsets are never reused");
        assert_eq!(
            log.segment_count(),
            3,
            "of {segments}, emptied segments go except the first (the log start); the one \
             with the last round and the active one stay"
        );
        assert_eq!(log.log_start_offset(), 0);
        assert_eq!(compact_now(&mut log, 3), 0, "nothing new to clean");
        // New data in a later segment supersedes more; a fetch from 0 skips the gaps.
        append_keyed(&mut log, &[("k0", Some("last"))], 1);
        log.roll().unwrap();
        assert_eq!(compact_now(&mut log, 4), 1);
        let got = read_all(&log);
        assert_eq!(got.first().unwrap().0, 46);
        assert_eq!(
            got.last().unwrap(),
            &(50, "k0".to_string(), Some("last".to_string()))
        );
        // The same after a clean close and after a crash (rescan).
        log.close().unwrap();
        let log = PartitionLog::open(dir.path(), compacted_cfg("86400000"), true).unwrap();
        assert_eq!(read_all(&log), got);
        let log = PartitionLog::open(dir.path(), compacted_cfg("86400000"), false).unwrap();
        assert_eq!(read_all(&log), got);
    }

    #[test]
    fn tombstones_stay_for_delete_retention_then_go() {
        let run = |retention: &str| {
            let dir = tempfile::tempdir().unwrap();
            let mut log = PartitionLog::open(dir.path(), compacted_cfg(retention), true).unwrap();
            append_keyed(
                &mut log,
                &[("a", Some("1")), ("b", Some("2")), ("a", None)],
                1_000,
            );
            log.roll().unwrap();
            compact_now(&mut log, 5_000);
            read_all(&log)
        };
        assert_eq!(
            run("86400000"),
            vec![(1, "b".into(), Some("2".into())), (2, "a".into(), None)],
            "the tombstone hides the old value and is kept"
        );
        assert_eq!(
            run("1000"),
            vec![(1, "b".into(), Some("2".into()))],
            "past delete.retention.ms the tombstone goes too"
        );
    }

    /// A tombstone whose key still has an older record in a kept batch stays past
    /// delete.retention.ms: removing it would bring the deleted value back.
    #[test]
    fn an_expired_tombstone_stays_while_an_older_value_of_its_key_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), compacted_cfg("1000"), true).unwrap();
        let b = build_batch(
            0,
            1_000,
            &[(Some(b"a"), Some(b"1")), (Some(b"b"), Some(b"1"))],
        );
        let batches = validate_record_set(&b, 1 << 20).unwrap();
        log.append(&b, &batches, 0, 1_000).unwrap();
        append_keyed(&mut log, &[("a", None)], 1_000);
        log.roll().unwrap();
        assert_eq!(compact_now(&mut log, 5_000), 0);
        assert_eq!(
            read_all(&log),
            vec![
                (0, "a".into(), Some("1".into())),
                (1, "b".into(), Some("1".into())),
                (2, "a".into(), None)
            ]
        );
    }

    #[test]
    fn compaction_keeps_each_producers_last_batch_and_ignores_the_active_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), compacted_cfg("86400000"), true).unwrap();
        // Producer 7 writes k=1 then k=2; both are superseded by a plain write of k later.
        for v in ["1", "2"] {
            let mut b = build_batch(0, 1, &[(Some(b"k"), Some(v.as_bytes()))]);
            b[43..51].copy_from_slice(&7i64.to_be_bytes());
            let h = BatchHeader::parse(&b).unwrap();
            let crc = crc32c::crc32c(&b[21..h.total_len()]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            let batches = validate_record_set(&b, 1 << 20).unwrap();
            log.append(&b, &batches, 0, 1).unwrap();
        }
        append_keyed(&mut log, &[("k", Some("3"))], 1);
        assert_eq!(
            compact_now(&mut log, 2),
            0,
            "the active segment is never cleaned"
        );
        log.roll().unwrap();
        append_keyed(&mut log, &[("k", Some("4"))], 1);
        assert_eq!(compact_now(&mut log, 2), 2);
        let got: Vec<i64> = read_all(&log).into_iter().map(|r| r.0).collect();
        assert_eq!(got, vec![1, 3], "producer 7's last batch (offset 1) stays");
    }

    #[test]
    fn reopening_after_a_clean_close_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = PartitionLog::open(dir.path(), cfg(), true).unwrap();
            append_values(&mut log, 30, 1);
            log.close().unwrap();
        }
        let log = PartitionLog::open(dir.path(), cfg(), true).unwrap();
        assert_eq!(log.next_offset(), 30);
        assert_eq!(all_offsets(&log), (0..30).collect::<Vec<_>>());
        let r = log.read(17, 1 << 20, true, 30).unwrap();
        assert_eq!(BatchHeader::parse(&r.records).unwrap().base_offset, 17);
    }

    #[test]
    fn recovery_truncates_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let last_file;
        {
            let mut log = PartitionLog::open(dir.path(), cfg(), true).unwrap();
            append_values(&mut log, 5, 1);
            last_file = log
                .dir()
                .join(segment::file_name(log.active().base_offset, "log"));
        }
        // Half a batch, as a kill -9 in the middle of a write leaves it.
        let b = build_batch(5, 1, &[(None, Some(b"torn"))]);
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&last_file)
            .unwrap();
        f.write_all(&b[..b.len() / 2]).unwrap();
        drop(f);
        let mut log = PartitionLog::open(dir.path(), cfg(), false).unwrap();
        assert_eq!(log.next_offset(), 5);
        assert_eq!(append_values(&mut log, 1, 1), vec![5]);
        assert_eq!(all_offsets(&log), (0..6).collect::<Vec<_>>());
    }

    #[test]
    fn recovery_truncates_at_a_corrupt_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path;
        {
            let mut log = PartitionLog::open(dir.path(), cfg(), true).unwrap();
            append_values(&mut log, 3, 1);
            path = log.dir().join(segment::file_name(0, "log"));
        }
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 2] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let log = PartitionLog::open(dir.path(), cfg(), false).unwrap();
        assert_eq!(log.next_offset(), 2);
    }

    #[test]
    fn retention_by_bytes_and_time_deletes_old_segments_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), cfg(), true).unwrap();
        append_values(&mut log, 60, 1_000);
        let before = log.segment_count();
        log.config.retention_bytes = 1500;
        // Nothing at or above the high watermark goes, however old.
        assert_eq!(log.enforce_retention(2_000, 0).unwrap(), 0);
        let deleted = log.enforce_retention(2_000, 60).unwrap();
        assert!(deleted > 0 && log.segment_count() < before);
        assert!(log.size_bytes() <= 1500 + 1000);
        assert!(log.log_start_offset() > 0);
        assert_eq!(log.next_offset(), 60);
        log.config.retention_bytes = -1;
        log.config.retention_ms = 10;
        log.enforce_retention(1_000_000, 60).unwrap();
        assert_eq!(log.size_bytes(), 0);
        assert_eq!(log.log_start_offset(), 60);
        assert_eq!(append_values(&mut log, 1, 1_000_000), vec![60]);
    }

    #[test]
    fn offsets_for_timestamps_find_the_first_batch_at_or_after() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), cfg(), true).unwrap();
        for i in 0..40 {
            append_values(&mut log, 1, 100 + i * 10);
        }
        assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 100)));
        assert_eq!(log.offset_for_timestamp(205).unwrap(), Some((11, 210)));
        assert_eq!(log.offset_for_timestamp(210).unwrap(), Some((11, 210)));
        assert_eq!(log.offset_for_timestamp(10_000).unwrap(), None);
    }

    #[test]
    fn delete_records_moves_the_log_start_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = PartitionLog::open(dir.path(), cfg(), true).unwrap();
            append_values(&mut log, 40, 1);
            assert_eq!(log.advance_log_start(25).unwrap(), 25);
            log.close().unwrap();
        }
        let log = PartitionLog::open(dir.path(), cfg(), true).unwrap();
        assert_eq!(log.log_start_offset(), 25);
    }

    fn append_batch(log: &mut PartitionLog, records: usize, ts: i64) -> i64 {
        let values: Vec<String> = (0..records).map(|i| format!("v{i}")).collect();
        let kvs: Vec<_> = values.iter().map(|v| (None, Some(v.as_bytes()))).collect();
        let b = build_batch(0, ts, &kvs);
        let batches = validate_record_set(&b, 1 << 20).unwrap();
        log.append(&b, &batches, 7, ts).unwrap()
    }

    /// `(base, last)` of every batch a reader can still reach (ending at or after the start).
    fn visible_batches(log: &PartitionLog) -> Vec<(i64, i64)> {
        let mut v = Vec::new();
        log.for_each_header(|h| {
            if h.last_offset() >= log.log_start_offset() {
                v.push((h.base_offset, h.last_offset()))
            }
        })
        .unwrap();
        v
    }

    fn log_state(log: &PartitionLog) -> (i64, i64, Vec<(i64, i64)>) {
        (
            log.log_start_offset(),
            log.next_offset(),
            visible_batches(log),
        )
    }

    #[test]
    fn truncate_to_cuts_inside_a_segment_and_drops_the_segments_above() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), cfg(), true).unwrap();
        append_values(&mut log, 60, 1);
        assert!(log.segment_count() > 3);
        log.truncate_to(23).unwrap();
        assert_eq!(log.next_offset(), 23);
        assert_eq!(all_offsets(&log), (0..23).collect::<Vec<_>>());
        let segments = log.segment_count();
        assert_eq!(append_values(&mut log, 2, 2), vec![23, 24]);
        let read = log.read(23, 1 << 20, true, i64::MAX).unwrap();
        let h = BatchHeader::parse(&read.records).unwrap();
        assert_eq!((h.base_offset, h.base_timestamp), (23, 2));
        log.close().unwrap();
        let log = PartitionLog::open(dir.path(), cfg(), true).unwrap();
        assert_eq!(log.segment_count(), segments);
        assert_eq!(all_offsets(&log), (0..25).collect::<Vec<_>>());
    }

    #[test]
    fn truncate_fully_and_start_at_leaves_an_empty_log_that_continues_there() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), cfg(), true).unwrap();
        append_values(&mut log, 30, 1);
        log.truncate_fully_and_start_at(100).unwrap();
        assert_eq!((log.log_start_offset(), log.next_offset()), (100, 100));
        assert_eq!(log.segment_count(), 1);
        assert!(all_offsets(&log).is_empty());
        // Reopened without a clean shutdown: recovery must agree with the saved start.
        let mut log = PartitionLog::open(dir.path(), cfg(), false).unwrap();
        assert_eq!((log.log_start_offset(), log.next_offset()), (100, 100));
        assert_eq!(append_values(&mut log, 1, 1), vec![100]);
        // And back below the old start, as a Raft follower truncating to an earlier index.
        log.truncate_fully_and_start_at(5).unwrap();
        assert_eq!(append_values(&mut log, 1, 1), vec![5]);
        drop(log);
        let log = PartitionLog::open(dir.path(), cfg(), false).unwrap();
        assert_eq!((log.log_start_offset(), log.next_offset()), (5, 6));
    }

    proptest::proptest! {
        /// Against a model of whole batches: `truncate_to(t)` keeps exactly the batches that
        /// end before `t`, never leaves the end before the start, and a reopen (after a clean
        /// shutdown or a crash) sees the same log, which appends at its next offset.
        #[test]
        fn truncate_to_matches_a_model_and_survives_reopen(
            sizes in proptest::collection::vec(1usize..4, 0..40),
            start_pick in 0u32..100,
            cut_pick in 0u32..110,
            clean in proptest::bool::ANY,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut log = PartitionLog::open(dir.path(), cfg(), true).unwrap();
            let mut batches = Vec::new();
            for &n in &sizes {
                let base = append_batch(&mut log, n, 1);
                batches.push((base, base + n as i64 - 1));
            }
            let end = log.next_offset();
            let start = log.advance_log_start(end * start_pick as i64 / 100).unwrap();
            let cut = end * cut_pick as i64 / 100;
            log.truncate_to(cut).unwrap();

            let expected = if cut >= end {
                (start, end, batches.iter().copied().filter(|b| b.1 >= start).collect())
            } else if cut <= start {
                (cut, cut, vec![])
            } else {
                let first_gone = batches.iter().find(|b| b.1 >= cut).unwrap().0;
                if first_gone < start {
                    (start, start, vec![])
                } else {
                    let kept = batches.iter().copied().filter(|b| b.1 >= start && b.1 < cut);
                    (start, first_gone, kept.collect())
                }
            };
            proptest::prop_assert_eq!(log_state(&log), expected.clone());
            if clean {
                log.close().unwrap();
            }
            drop(log);
            let mut log = PartitionLog::open(dir.path(), cfg(), clean).unwrap();
            proptest::prop_assert_eq!(log_state(&log), expected.clone());
            proptest::prop_assert_eq!(append_batch(&mut log, 2, 3), expected.1);
        }
    }
}
