//! The replica manager: the partitions this broker hosts, their logs, producer state and
//! replication state ([`partition::PartitionState`]), and the per-partition wake-ups that waiting
//! fetches and `acks=all` produces use ([`purgatory`]).
//!
//! The per-partition state sits behind one mutex so that leadership checks, sequence checks and
//! appends are atomic; reads take the same lock only to locate and copy bytes. Waiters are woken
//! after the lock is released.
//!
//! Partition directories carry a `partition.metadata` file with the topic id (as Kafka does), so
//! a directory left from a deleted topic is never mistaken for a re-created one of the same name.

pub mod epochs;
pub mod fetcher;
pub mod partition;
pub mod producer;
pub mod purgatory;
pub mod throttle;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use crate::config::{broker_key_of, BrokerConfig, TopicConfig};
use crate::error::{Error, Result};
use crate::log::batch::{validate_record_set, BatchError};
use crate::log::validate::{check_batch, Invalid, Rules};
use crate::log::{now_ms, FileSlice, PartitionLog, ReadResult};
use crate::metadata::brokers::IsrChange;
use crate::metadata::{MetadataImage, METADATA_DIR};
use epochs::LeaderEpochs;
pub use partition::Offsets;
use partition::PartitionState;
use producer::{ProducerStateTable, SequenceCheck};
use purgatory::{Event, Watchers};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

/// This broker's replica of a partition: its log, its producers' sequence state and its
/// replication state, changed together under the partition's lock.
pub struct LocalReplica {
    pub log: PartitionLog,
    pub producers: ProducerStateTable,
    pub partition: PartitionState,
    /// Where each leader epoch began in this log (OffsetForLeaderEpoch, diverging epochs).
    pub epochs: LeaderEpochs,
}

/// Who is fetching: a client reads up to the high watermark, a follower replica up to the log
/// end (and its fetch offset tells the leader how far it has replicated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    Consumer,
    Follower(i32),
}

/// A follower's position in its log, sent in its next fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerPosition {
    pub leader_epoch: i32,
    pub fetch_offset: i64,
    pub last_fetched_epoch: i32,
    pub log_start: i64,
}

/// Where a fetch may read, decided under the partition's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchStart {
    pub offsets: Offsets,
    /// Read below this offset (the high watermark for consumers, the log end for followers).
    pub limit: i64,
    /// The reader's last fetched epoch ended earlier here, at `(epoch, end offset)`: it must
    /// truncate to that offset before fetching on (Fetch v12+'s `DivergingEpoch`, KIP-595).
    pub diverging: Option<(i32, i64)>,
}

impl LocalReplica {
    /// The offsets clients see; [`PartitionState`] decides the high watermark.
    pub fn offsets(&self) -> Offsets {
        self.partition
            .offsets(self.log.log_start_offset(), self.log.next_offset())
    }
}

pub struct Partition {
    pub tp: TopicPartition,
    pub topic_id: Uuid,
    pub state: Mutex<LocalReplica>,
    /// Requests waiting for this partition's high watermark or log end to move.
    pub watchers: Watchers,
    /// The log directory's health, shared by every partition in it (see [`LogDir`]).
    dir: Arc<LogDir>,
}

/// The log directory's health. The first I/O error on a write takes it offline, as Kafka's
/// `LogDirFailureChannel` does: from then on every partition in it answers
/// KAFKA_STORAGE_ERROR, nothing more is written, and the next start is treated as after a
/// crash (no clean-shutdown marker), so recovery cuts whatever a failed write left.
#[derive(Debug, Default)]
pub struct LogDir {
    offline: std::sync::atomic::AtomicBool,
}

impl LogDir {
    pub fn is_offline(&self) -> bool {
        self.offline.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn fail(&self, error: &Error) {
        if !self.offline.swap(true, std::sync::atomic::Ordering::AcqRel) {
            tracing::error!(%error, "log directory offline after an I/O error: partitions answer KAFKA_STORAGE_ERROR until the broker restarts");
        }
    }

    /// Passes `result` through, taking the directory offline first if it failed on storage.
    fn watch<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            if e.is_storage_failure() {
                self.fail(e);
            }
        }
        result
    }

    fn check(&self) -> Result<()> {
        if self.is_offline() {
            return Err(Error::LogDirOffline);
        }
        Ok(())
    }
}

/// The outcome of appending one partition's record set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    pub error: i16,
    pub base_offset: i64,
    /// The offset of the last record appended (an `acks=all` produce waits until the high
    /// watermark passes it), and the leader epoch it was appended under.
    pub last_offset: i64,
    pub leader_epoch: i32,
    pub log_start_offset: i64,
    pub log_append_time: i64,
    /// Indexes (within the request's record set) of the records that made it invalid.
    pub record_errors: Vec<i32>,
    pub message: Option<String>,
}

impl AppendOutcome {
    fn error(e: ResponseError) -> Self {
        AppendOutcome {
            error: e.code(),
            base_offset: -1,
            last_offset: -1,
            leader_epoch: -1,
            log_start_offset: -1,
            log_append_time: -1,
            record_errors: Vec::new(),
            message: None,
        }
    }
}

fn invalid(code: ResponseError, message: String, records: Vec<i32>) -> AppendOutcome {
    let mut o = AppendOutcome::error(code);
    o.message = Some(message);
    o.record_errors = records;
    o
}

impl Partition {
    /// Checks leadership, validates, checks idempotence, and appends. Data problems are error
    /// codes, storage failures are `Err`; either way the record set is appended whole or not at
    /// all. With `acks=-1` the caller then waits in [`replicated`](Self::replicated).
    pub fn append(
        &self,
        records: &[u8],
        max_message_bytes: Option<usize>,
        acks: i16,
    ) -> Result<AppendOutcome> {
        // The topic's rules, read under the lock; the checks (which may decompress) run
        // without it, so producers to one partition validate in parallel.
        let now = now_ms();
        let (max, rules) = {
            let st = self.state.lock();
            let cfg = &st.log.config;
            let rules = Rules {
                now_ms: now,
                create_time: !cfg.log_append_time,
                timestamp_before_max_ms: cfg.timestamp_before_max_ms,
                timestamp_after_max_ms: cfg.timestamp_after_max_ms,
                compacted: cfg.compact,
            };
            let max = max_message_bytes.unwrap_or(cfg.max_message_bytes.max(0) as usize);
            (max, rules)
        };
        let batches = match validate_record_set(records, max) {
            Ok(b) => b,
            Err(BatchError::TooLarge { .. }) => {
                return Ok(AppendOutcome::error(ResponseError::MessageTooLarge))
            }
            Err(BatchError::OldFormat) => {
                return Ok(AppendOutcome::error(
                    ResponseError::UnsupportedForMessageFormat,
                ))
            }
            Err(BatchError::Corrupt(why)) => {
                tracing::warn!(partition = %self.tp.dir_name(), %why, "refusing a corrupt record set");
                return Ok(AppendOutcome::error(ResponseError::CorruptMessage));
            }
        };
        let mut first_index = 0i32;
        let mut corrected: Vec<(usize, i64)> = Vec::new();
        for (pos, h) in &batches {
            if h.is_transactional() {
                return Ok(AppendOutcome::error(
                    ResponseError::TransactionalIdAuthorizationFailed,
                ));
            }
            let batch = &records[*pos..*pos + h.total_len()];
            let refused = match check_batch(batch, h, &rules, first_index) {
                Ok(None) => None,
                Ok(Some(max_timestamp)) => {
                    corrected.push((*pos, max_timestamp));
                    None
                }
                Err(Invalid::Corrupt(why)) => {
                    Some((ResponseError::CorruptMessage, why, Vec::new()))
                }
                Err(Invalid::Record { message, records }) => {
                    Some((ResponseError::InvalidRecord, message, records))
                }
                Err(Invalid::Timestamp { message, records }) => {
                    Some((ResponseError::InvalidTimestamp, message, records))
                }
            };
            if let Some((code, why, bad)) = refused {
                tracing::warn!(partition = %self.tp.dir_name(), error = ?code, %why, "refusing a record batch");
                let why = format!("{why} (topic partition {})", self.tp.dir_name());
                return Ok(invalid(code, why, bad));
            }
            first_index = first_index.saturating_add(h.records_count);
        }
        // A header whose maxTimestamp is not its records' maximum is stored with theirs (it
        // feeds the time index and retention), as Kafka rewrites it.
        let owned;
        let (records, batches) = if corrected.is_empty() {
            (records, batches)
        } else {
            let mut fixed = records.to_vec();
            for (pos, ts) in &corrected {
                crate::log::batch::set_max_timestamp(&mut fixed[*pos..], *ts);
            }
            owned = fixed;
            let batches = validate_record_set(&owned, max)
                .map_err(|e| Error::CorruptBatch(format!("{e:?} after a timestamp fix")))?;
            (owned.as_slice(), batches)
        };
        let mut st = self.state.lock();
        if let Err(e) = st.partition.check_produce(acks) {
            return Ok(AppendOutcome::error(e));
        }
        // Idempotence is checked for every batch before any is written, each against the state
        // the batches before it in this request leave, so a request is appended whole or not
        // at all.
        let mut duplicate = None;
        let mut pending = st.producers.scratch(batches.iter().map(|(_, h)| h));
        for (_, h) in &batches {
            match pending.check(h) {
                SequenceCheck::Append => pending.record(h, -1),
                SequenceCheck::Duplicate { base_offset } => {
                    if batches.len() == 1 {
                        duplicate = Some(base_offset);
                    } else {
                        return Ok(AppendOutcome::error(ResponseError::DuplicateSequenceNumber));
                    }
                }
                SequenceCheck::OutOfOrder { .. } => {
                    return Ok(AppendOutcome::error(
                        ResponseError::OutOfOrderSequenceNumber,
                    ))
                }
                SequenceCheck::Fenced => {
                    return Ok(AppendOutcome::error(ResponseError::InvalidProducerEpoch))
                }
                SequenceCheck::UnknownProducer => {
                    return Ok(AppendOutcome::error(ResponseError::UnknownProducerId))
                }
            }
        }
        let log_append_time = if st.log.config.log_append_time {
            now
        } else {
            -1
        };
        let epoch = st.partition.leader_epoch();
        if let Some(base_offset) = duplicate {
            // A retry of a batch already written: it is acknowledged as the original would be,
            // so an `acks=all` retry waits for the original's records (up to the log end).
            return Ok(AppendOutcome {
                error: 0,
                base_offset,
                last_offset: st.log.next_offset() - 1,
                leader_epoch: epoch,
                log_start_offset: st.log.log_start_offset(),
                log_append_time,
                record_errors: Vec::new(),
                message: None,
            });
        }
        self.dir.check()?;
        if st.log.is_deleted() {
            // Deleted (its directory renamed) after this request looked the partition up.
            return Ok(AppendOutcome::error(ResponseError::UnknownTopicOrPartition));
        }
        // The first append of an epoch records where it begins, durably and before the
        // records, as Kafka's leader does.
        let start = st.log.next_offset();
        let appended = if st.epochs.assign(epoch, start) {
            st.epochs.save(st.log.dir())
        } else {
            Ok(())
        }
        .and_then(|()| st.log.append(records, &batches, epoch, now));
        let base = self.dir.watch(appended)?;
        let mut offset = base;
        for (_, h) in &batches {
            st.producers.record(h, offset);
            offset += h.last_offset_delta as i64 + 1;
        }
        let log_end = st.log.next_offset();
        let high_watermark_moved = st.partition.on_append(log_end);
        let outcome = AppendOutcome {
            error: 0,
            base_offset: base,
            last_offset: offset - 1,
            leader_epoch: epoch,
            log_start_offset: st.log.log_start_offset(),
            log_append_time,
            record_errors: Vec::new(),
            message: None,
        };
        drop(st);
        self.watchers.wake(Event::LogEnd);
        if high_watermark_moved {
            self.watchers.wake(Event::HighWatermark);
        }
        Ok(outcome)
    }

    /// A follower appends what its leader sent for `leader_epoch` (see
    /// [`PartitionLog::append_replicated`]), follows the leader's log start, and takes the
    /// leader's high watermark up to its own log end. A response to a fetch made under an
    /// older leadership is dropped (`Ok(None)`); otherwise returns the new log end. No
    /// records (the leader had nothing new) still carry its high watermark and log start.
    pub fn append_replicated(
        &self,
        records: &[u8],
        leader_epoch: i32,
        leader_high_watermark: i64,
        leader_log_start: i64,
    ) -> Result<Option<i64>> {
        let batches = if records.is_empty() {
            Vec::new()
        } else {
            validate_record_set(records, usize::MAX)
                .map_err(|e| Error::CorruptBatch(format!("from the leader: {e:?}")))?
        };
        for (pos, h) in &batches {
            if !crate::log::batch::crc_matches(&records[*pos..*pos + h.total_len()]) {
                return Err(Error::CorruptBatch(format!(
                    "from the leader: batch at offset {} fails its CRC",
                    h.base_offset
                )));
            }
        }
        self.dir.check()?;
        let mut st = self.state.lock();
        if st.partition.is_leader()
            || st.partition.leader_epoch() != leader_epoch
            || st.log.is_deleted()
        {
            return Ok(None);
        }
        let result = (|| -> Result<i64> {
            let next = st.log.next_offset();
            if batches.is_empty() {
                let start = leader_log_start.min(next);
                if start > st.log.log_start_offset() {
                    st.log.advance_log_start(start)?;
                }
                return Ok(next);
            }
            let mut epochs = st.epochs.clone();
            for (_, h) in batches.iter().filter(|(_, h)| h.last_offset() >= next) {
                epochs.assign(h.partition_leader_epoch, h.base_offset);
            }
            if epochs != st.epochs {
                epochs.save(st.log.dir())?;
                st.epochs = epochs;
            }
            let log_end = st.log.append_replicated(records, &batches, now_ms())?;
            for (_, h) in batches.iter().filter(|(_, h)| h.last_offset() >= next) {
                st.producers.record(h, h.base_offset);
            }
            let start = leader_log_start.min(log_end);
            if start > st.log.log_start_offset() {
                st.log.advance_log_start(start)?;
            }
            Ok(log_end)
        })();
        let log_end = self.dir.watch(result)?;
        let moved = st
            .partition
            .on_leader_high_watermark(leader_high_watermark, log_end);
        drop(st);
        self.watchers.wake(Event::LogEnd);
        if moved {
            self.watchers.wake(Event::HighWatermark);
        }
        Ok(Some(log_end))
    }

    /// A follower whose last fetched epoch the leader says ended at `end_offset` (Fetch's
    /// diverging epoch, with the leader's largest epoch at or below ours) drops its divergent
    /// tail: it truncates to where both logs agree, the smaller of the leader's and its own end
    /// of that epoch, as Kafka's fetcher does. A later fetch checks again, so a log that
    /// diverged over several epochs converges in several rounds. `Ok(None)` when the fetch was
    /// made under another leadership.
    pub fn truncate_diverged(
        &self,
        leader_epoch: i32,
        epoch: i32,
        end_offset: i64,
    ) -> Result<Option<i64>> {
        self.truncate_follower(
            leader_epoch,
            |st| {
                let (mine, my_end) = st.epochs.end_offset_for(epoch, st.log.next_offset());
                if mine == epoch {
                    end_offset.min(my_end)
                } else {
                    end_offset
                }
            },
            false,
        )
    }

    /// A follower whose fetch offset is past the leader's log end truncates to it.
    pub fn truncate_to_leader_end(
        &self,
        leader_epoch: i32,
        leader_end: i64,
    ) -> Result<Option<i64>> {
        self.truncate_follower(leader_epoch, |_| leader_end, false)
    }

    /// A follower whose fetch offset is below the leader's log start (the leader deleted what
    /// it needs next) empties its log and starts at the leader's log start.
    pub fn restart_at_leader_start(
        &self,
        leader_epoch: i32,
        leader_start: i64,
    ) -> Result<Option<i64>> {
        self.truncate_follower(leader_epoch, |_| leader_start, true)
    }

    fn truncate_follower(
        &self,
        leader_epoch: i32,
        offset: impl FnOnce(&LocalReplica) -> i64,
        restart: bool,
    ) -> Result<Option<i64>> {
        self.dir.check()?;
        let mut st = self.state.lock();
        if st.partition.is_leader()
            || st.partition.leader_epoch() != leader_epoch
            || st.log.is_deleted()
        {
            return Ok(None);
        }
        let target = offset(&st).max(0);
        let before = st.log.next_offset();
        let result = (|| -> Result<i64> {
            if restart {
                st.log.truncate_fully_and_start_at(target)?;
            } else {
                st.log.truncate_to(target)?;
            }
            let end = st.log.next_offset();
            let mut epochs = st.epochs.clone();
            epochs.truncate_from_end(end);
            if epochs != st.epochs {
                epochs.save(st.log.dir())?;
                st.epochs = epochs;
            }
            // Producer state is rebuilt from what is left (the truncated batches' sequences
            // must not count as written).
            let mut producers = ProducerStateTable::default();
            st.log
                .for_each_header(|h| producers.record(h, h.base_offset))?;
            st.producers = producers;
            Ok(end)
        })();
        let end = self.dir.watch(result)?;
        st.partition.on_truncate(end);
        if end != before {
            tracing::info!(partition = %self.tp.dir_name(), from = before, to = end, "truncated to the leader's log");
        }
        Ok(Some(end))
    }

    /// Whether `node` is in this partition's ISR.
    pub fn in_isr(&self, node: i32) -> bool {
        self.state.lock().partition.isr().contains(&node)
    }

    /// What a follower's next fetch asks for: the partition's leader epoch, its log end (the
    /// fetch offset), the epoch of its last batch and its log start. `None` while it leads.
    pub fn follower_position(&self) -> Option<FollowerPosition> {
        let st = self.state.lock();
        if st.partition.is_leader() || st.log.is_deleted() {
            return None;
        }
        Some(FollowerPosition {
            leader_epoch: st.partition.leader_epoch(),
            fetch_offset: st.log.next_offset(),
            last_fetched_epoch: st.epochs.latest_epoch().unwrap_or(-1),
            log_start: st.log.log_start_offset(),
        })
    }

    /// Waits until the high watermark passes `last_offset` (an `acks=all` append is on every
    /// in-sync replica), or until `deadline` (REQUEST_TIMED_OUT, as Kafka answers a produce
    /// whose `timeout_ms` ran out). See [`PartitionState::replicated`] for the other outcomes.
    pub async fn replicated(
        &self,
        last_offset: i64,
        leader_epoch: i32,
        deadline: Instant,
    ) -> std::result::Result<(), ResponseError> {
        let waiter = Arc::new(Notify::new());
        self.watchers.register(Event::HighWatermark, &waiter);
        loop {
            {
                let st = self.state.lock();
                if st.log.is_deleted() {
                    return Err(ResponseError::UnknownTopicOrPartition);
                }
                if let Some(done) = st.partition.replicated(last_offset, leader_epoch) {
                    return done;
                }
            }
            tokio::select! {
                _ = waiter.notified() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return self.state.lock().partition.replicated(last_offset, leader_epoch)
                        .unwrap_or(Err(ResponseError::RequestTimedOut));
                }
            }
        }
    }

    /// Kafka's checks for a fetch (the reader's `current_leader_epoch`, leadership, a follower
    /// being a replica) and where it may read. A follower's fetch offset is its log end: the
    /// leader records it, which may advance the high watermark and wake waiting consumers and
    /// `acks=all` producers.
    pub fn start_fetch(
        &self,
        reader: Reader,
        current_leader_epoch: i32,
        fetch_offset: i64,
        last_fetched_epoch: i32,
    ) -> std::result::Result<FetchStart, ResponseError> {
        let mut st = self.state.lock();
        st.partition.check_epoch(current_leader_epoch)?;
        st.partition.check_leader()?;
        let log_end = st.log.next_offset();
        let mut diverging = None;
        if last_fetched_epoch >= 0 {
            // As Kafka's `validateFetchOffsetAndMaybeGetDivergingEpoch`: an epoch this log
            // cannot place is out of range; one that ended before the fetch offset diverged.
            let (epoch, end) = st.epochs.end_offset_for(last_fetched_epoch, log_end);
            if (epoch, end) == epochs::UNDEFINED {
                return Err(ResponseError::OffsetOutOfRange);
            }
            if epoch < last_fetched_epoch || end < fetch_offset {
                diverging = Some((epoch, end));
            }
        }
        let (limit, moved) = match reader {
            Reader::Consumer => (st.offsets().high_watermark, false),
            Reader::Follower(id) => {
                if !st.partition.is_replica(id) {
                    return Err(ResponseError::NotLeaderOrFollower);
                }
                let moved = diverging.is_none()
                    && st
                        .partition
                        .on_follower_fetch(id, fetch_offset, log_end, now_ms())
                        .high_watermark_advanced;
                (log_end, moved)
            }
        };
        let start = FetchStart {
            offsets: st.offsets(),
            limit,
            diverging,
        };
        drop(st);
        if moved {
            self.watchers.wake(Event::HighWatermark);
        }
        Ok(start)
    }

    /// OffsetForLeaderEpoch: where `requested` ended in this log, after the asker's
    /// `current_leader_epoch` check and, when `leader_only`, the leadership check.
    pub fn end_offset_for(
        &self,
        current_leader_epoch: i32,
        requested: i32,
        leader_only: bool,
    ) -> std::result::Result<(i32, i64), ResponseError> {
        let st = self.state.lock();
        st.partition.check_epoch(current_leader_epoch)?;
        if leader_only {
            st.partition.check_leader()?;
        }
        Ok(st.epochs.end_offset_for(requested, st.log.next_offset()))
    }

    /// The offsets a client may use, after Kafka's checks for a client request: its
    /// `current_leader_epoch` (see [`PartitionState::check_epoch`]) and, when `leader_only`,
    /// that this replica leads (NOT_LEADER_OR_FOLLOWER otherwise).
    pub fn client_offsets(
        &self,
        current_leader_epoch: i32,
        leader_only: bool,
    ) -> std::result::Result<Offsets, ResponseError> {
        let st = self.state.lock();
        st.partition.check_epoch(current_leader_epoch)?;
        if leader_only {
            st.partition.check_leader()?;
        }
        Ok(st.offsets())
    }

    /// Kafka's check of a client's `current_leader_epoch` (Fetch v9+, ListOffsets v4+): -1
    /// skips it; an older epoch than this replica's is FENCED_LEADER_EPOCH (the client's
    /// metadata is stale), a newer one UNKNOWN_LEADER_EPOCH (this replica's is).
    pub fn check_leader_epoch(&self, current: i32) -> std::result::Result<(), ResponseError> {
        self.state.lock().partition.check_epoch(current)
    }

    pub fn offsets(&self) -> Offsets {
        self.state.lock().offsets()
    }

    pub fn high_watermark(&self) -> i64 {
        self.offsets().high_watermark
    }

    /// Whole batches from `offset` below `limit` (at least one), for readers inside the broker
    /// that decide their own bound (a coordinator loading its partition to the log end).
    pub fn read_to(&self, offset: i64, max_bytes: usize, limit: i64) -> Result<ReadResult> {
        self.dir.check()?;
        self.state.lock().log.read(offset, max_bytes, true, limit)
    }

    /// The file range of whole batches from `offset` up to `limit` (from [`start_fetch`](
    /// Self::start_fetch); see [`PartitionLog::slice`](crate::log::PartitionLog::slice)).
    pub fn slice(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        limit: i64,
    ) -> Result<Option<FileSlice>> {
        self.dir.check()?;
        self.state
            .lock()
            .log
            .slice(offset, max_bytes, min_one, limit)
    }
}

pub struct ReplicaManager {
    log_dir: PathBuf,
    node_id: i32,
    config: BrokerConfig,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// The tasks that fetch followed partitions from their leaders.
    fetchers: fetcher::FetcherManager,
    /// Replication throttles, from the newest image.
    pub throttles: Arc<throttle::Throttles>,
    clean_start: bool,
    /// The newest image applied. Images are applied one at a time and never an older one
    /// after a newer: an older image lacks what a newer one created, and applying it would
    /// delete live partitions.
    applied: Mutex<Option<Arc<MetadataImage>>>,
    pub dir_health: Arc<LogDir>,
}

/// Whether the previous run left the clean-shutdown marker (read, not consumed: the replica
/// manager consumes it when it opens the directory).
pub fn was_shut_down_cleanly(log_dir: &Path) -> bool {
    log_dir.join(CLEAN_SHUTDOWN).exists()
}

const PARTITION_METADATA: &str = "partition.metadata";
const CLEAN_SHUTDOWN: &str = ".fjord-clean-shutdown";

impl ReplicaManager {
    /// Prepares the log directory. Returns whether the previous shutdown was clean.
    pub fn new(config: &BrokerConfig) -> Result<Self> {
        let dir = config.log_dir.clone();
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let marker = dir.join(CLEAN_SHUTDOWN);
        let clean_start = marker.exists();
        if clean_start {
            fs::remove_file(&marker).map_err(|e| Error::io(&marker, e))?;
        }
        let throttles = Arc::new(throttle::Throttles::new(config.node_id, &config.raw));
        Ok(ReplicaManager {
            log_dir: dir,
            node_id: config.node_id,
            config: config.clone(),
            partitions: RwLock::new(HashMap::new()),
            fetchers: fetcher::FetcherManager::new(
                config.node_id,
                config.replica_fetch,
                throttles.clone(),
            ),
            throttles,
            clean_start,
            applied: Mutex::new(None),
            dir_health: Arc::new(LogDir::default()),
        })
    }

    pub fn clean_start(&self) -> bool {
        self.clean_start
    }

    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .get(&TopicPartition::new(topic, partition))
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().values().cloned().collect()
    }

    /// The ISR changes this node's led partitions need (Kafka's AlterPartition requests):
    /// followers that stopped catching up for `replica.lag.time.max.ms` out, caught-up live
    /// followers in. Each partition's additions hold its high watermark from now on, until the
    /// controller's answer comes back in an image or [`isr_refused`](Self::isr_refused).
    pub fn isr_proposals(&self, image: &MetadataImage) -> Vec<IsrChange> {
        let now = now_ms();
        let max_lag = self.config.replica_lag_time_max_ms;
        let mut out = Vec::new();
        for p in self.all() {
            let mut st = p.state.lock();
            let Some(isr) = st.partition.propose_isr(now, max_lag, |b| image.is_live(b)) else {
                continue;
            };
            out.push(IsrChange {
                topic_id: p.topic_id,
                partition: p.tp.partition,
                leader: self.node_id,
                leader_epoch: st.partition.leader_epoch(),
                partition_epoch: st.partition.partition_epoch(),
                isr,
            });
        }
        out
    }

    /// The controller refused `change` (the partition moved on meanwhile).
    pub fn isr_refused(&self, change: &IsrChange) {
        let p = self
            .partitions
            .read()
            .values()
            .find(|p| p.topic_id == change.topic_id && p.tp.partition == change.partition)
            .cloned();
        if let Some(p) = p {
            p.state.lock().partition.proposal_refused();
        }
    }

    /// The resolved config of a topic from the image and the broker's settings.
    pub fn topic_config(&self, image: &MetadataImage, topic: &str) -> TopicConfig {
        let overrides = image.topics.get(topic).map(|t| &t.configs);
        TopicConfig::resolve(|key| {
            if let Some(v) = overrides.and_then(|o| o.get(key)) {
                return Some(v.clone());
            }
            let broker_key = broker_key_of(key)?;
            image
                .dynamic_broker_value(self.node_id, broker_key)
                .cloned()
                .or_else(|| self.config.static_value(broker_key))
        })
    }

    /// The partitions of this node in the image, with their topic ids.
    fn wanted(&self, image: &MetadataImage) -> HashMap<TopicPartition, Uuid> {
        let mut wanted = HashMap::new();
        for t in image.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                if p.replicas.contains(&self.node_id) {
                    wanted.insert(TopicPartition::new(&t.name, i as i32), t.id);
                }
            }
        }
        wanted
    }

    /// Start-up, before any partition is opened: purges directories renamed for deletion, and
    /// moves aside (`...-stray`, as Kafka does) every partition directory the image does not
    /// list or that belongs to another incarnation of its topic. Stray data is never deleted
    /// here: the metadata log may have lost its tail, and the data is the user's.
    pub fn set_aside_strays(&self, image: &MetadataImage) -> Result<usize> {
        let wanted = self.wanted(image);
        let entries = fs::read_dir(&self.log_dir).map_err(|e| Error::io(&self.log_dir, e))?;
        let mut strays = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !e.path().is_dir() || name == METADATA_DIR || name.ends_with(STRAY_SUFFIX) {
                continue;
            }
            if name.ends_with(DELETE_SUFFIX) {
                if let Err(err) = fs::remove_dir_all(e.path()) {
                    tracing::warn!(dir = %e.path().display(), error = %err, "could not purge a deleted partition");
                }
                continue;
            }
            let Some((topic, part)) = name.rsplit_once('-') else {
                continue;
            };
            let Ok(part) = part.parse::<i32>() else {
                continue;
            };
            let on_disk = read_topic_id(&e.path());
            let known = match (wanted.get(&TopicPartition::new(topic, part)), on_disk) {
                (Some(want), Some(have)) => *want == have,
                (Some(_), None) => true, // Created before its partition.metadata was written.
                (None, _) => false,
            };
            if known {
                continue;
            }
            let target = self.log_dir.join(aside_name(topic, part, STRAY_SUFFIX));
            fs::rename(e.path(), &target).map_err(|err| Error::io(e.path(), err))?;
            tracing::warn!(
                dir = %name,
                moved_to = %target.display(),
                topic_id = ?on_disk,
                "the metadata does not list this partition directory: kept aside as a stray log, not deleted"
            );
            strays += 1;
        }
        Ok(strays)
    }

    /// Brings hosted partitions in line with the image: opens or creates logs for new
    /// partitions, applies changed configs, and deletes the logs of deleted topics. Images are
    /// applied in log order: one older than the last applied is skipped (the newer one already
    /// holds its changes). A partition whose directory cannot be removed is logged and left;
    /// it does not stop this or any later change.
    pub fn sync(&self, image: &Arc<MetadataImage>) -> Result<()> {
        let mut newest = self.applied.lock();
        // An older image than one already applied is never applied (it lacks what the newer
        // one created); the newest is applied again instead, which also retries a partition
        // that failed to open, so a caller never returns success without its partitions.
        let image = match newest.as_ref() {
            Some(n) if n.applied > image.applied => n.clone(),
            _ => image.clone(),
        };
        *newest = Some(image.clone());
        let image = &*image;
        self.throttles.update(image);
        let wanted = self.wanted(image);
        // Remove partitions no longer wanted (or whose topic was re-created under a new id).
        let doomed: Vec<Arc<Partition>> = {
            let mut parts = self.partitions.write();
            let gone: Vec<TopicPartition> = parts
                .iter()
                .filter(|(tp, p)| wanted.get(tp) != Some(&p.topic_id))
                .map(|(tp, _)| tp.clone())
                .collect();
            gone.iter().filter_map(|tp| parts.remove(tp)).collect()
        };
        for p in doomed {
            let mut st = p.state.lock();
            st.log.mark_deleted();
            let dir = st.log.dir().to_path_buf();
            if let Err(e) = delete_partition_dir(&dir, &p.tp) {
                tracing::error!(partition = %p.tp.dir_name(), error = %e, "could not delete the log of a deleted partition");
            }
            drop(st);
            p.watchers.wake_all();
        }
        let mut result = Ok(());
        // (leader, partition) of every partition this node follows.
        let mut followed = Vec::new();
        // Resolved once per topic: a topic may have thousands of partitions.
        let mut configs: HashMap<String, TopicConfig> = HashMap::new();
        for (tp, id) in wanted {
            let config = configs
                .entry(tp.topic.clone())
                .or_insert_with(|| self.topic_config(image, &tp.topic))
                .clone();
            // Leadership, epoch and ISR are the image's: batches are stamped with its epoch and
            // ListOffsets and Metadata report the same number.
            let Some(assignment) = image
                .topics
                .get(&tp.topic)
                .and_then(|t| t.partitions.get(tp.partition as usize))
            else {
                continue; // `wanted` lists only partitions the image has.
            };
            let now = now_ms();
            let existing = self.get(&tp.topic, tp.partition);
            match existing {
                Some(p) => {
                    let mut st = p.state.lock();
                    let min_isr = config.min_insync_replicas;
                    if st.log.config != config {
                        st.log.config = config;
                    }
                    let log_end = st.log.next_offset();
                    let changed = st.partition.apply(assignment, min_isr, log_end, now);
                    drop(st);
                    if changed {
                        p.watchers.wake_all();
                    }
                    if assignment.leader != self.node_id && assignment.leader >= 0 {
                        followed.push((assignment.leader, p));
                    }
                }
                None => match self.open_partition(&tp, id, config, assignment) {
                    Ok(p) => {
                        if assignment.leader != self.node_id && assignment.leader >= 0 {
                            followed.push((assignment.leader, p.clone()));
                        }
                        self.partitions.write().insert(tp, p);
                    }
                    Err(e) => {
                        tracing::error!(partition = %tp.dir_name(), error = %e, "could not open a partition");
                        result = Err(e);
                    }
                },
            }
        }
        self.fetchers.update(followed, &image.brokers);
        result
    }

    fn open_partition(
        &self,
        tp: &TopicPartition,
        id: Uuid,
        config: TopicConfig,
        assignment: &crate::metadata::image::PartitionImage,
    ) -> Result<Arc<Partition>> {
        let dir = self.log_dir.join(tp.dir_name());
        if read_topic_id(&dir).is_some_and(|on_disk| on_disk != id) {
            // Another incarnation of the topic left it (deleted while the broker was down).
            let target = self
                .log_dir
                .join(aside_name(&tp.topic, tp.partition, STRAY_SUFFIX));
            fs::rename(&dir, &target).map_err(|e| Error::io(&dir, e))?;
            tracing::warn!(partition = %tp.dir_name(), moved_to = %target.display(), "kept aside a directory of another incarnation of this topic");
        }
        let min_isr = config.min_insync_replicas;
        let log = PartitionLog::open(&dir, config, self.clean_start)?;
        write_topic_id(&dir, id)?;
        let mut producers = ProducerStateTable::default();
        let saved = LeaderEpochs::load(&dir)?;
        let mut epochs = saved.clone();
        log.for_each_header(|h| {
            producers.record(h, h.base_offset);
            epochs.assign(h.partition_leader_epoch, h.base_offset);
        })?;
        epochs.truncate_from_end(log.next_offset());
        if epochs != saved {
            epochs.save(&dir)?;
        }
        // No high-watermark checkpoint yet: a replica starts from its log start, and a leader
        // whose ISR is itself moves to its log end at once.
        let mut partition = PartitionState::new(self.node_id, log.log_start_offset());
        partition.apply(assignment, min_isr, log.next_offset(), now_ms());
        Ok(Arc::new(Partition {
            tp: tp.clone(),
            topic_id: id,
            state: Mutex::new(LocalReplica {
                log,
                producers,
                partition,
                epochs,
            }),
            watchers: Watchers::default(),
            dir: self.dir_health.clone(),
        }))
    }

    /// Background housekeeping: age-based rolls and retention, for every partition.
    pub fn enforce_retention(&self) -> usize {
        if self.dir_health.is_offline() {
            return 0; // Nothing is written to an offline directory.
        }
        let now = now_ms();
        let mut deleted = 0;
        for p in self.all() {
            let mut st = p.state.lock();
            if let Err(e) = st.log.roll_if_old(now) {
                tracing::warn!(partition = %p.tp.dir_name(), error = %e, "roll failed");
            }
            if let Some(job) = st.log.compaction_job(st.offsets().high_watermark) {
                let config = st.log.config.clone();
                // The cleaner reads closed segments without the lock.
                drop(st);
                self.compact(&p, &job, &config, now);
                st = p.state.lock();
            }
            if st.log.is_deleted() {
                continue; // Deleted while it was being compacted: its files are not ours now.
            }
            if !st.log.config.delete {
                continue; // `cleanup.policy=compact` alone: no time or size retention.
            }
            let high_watermark = st.offsets().high_watermark;
            match st.log.enforce_retention(now, high_watermark) {
                Ok(n) => deleted += n,
                Err(e) => {
                    tracing::warn!(partition = %p.tp.dir_name(), error = %e, "retention failed")
                }
            }
        }
        deleted
    }

    fn compact(
        &self,
        p: &Partition,
        job: &crate::log::compact::CompactionJob,
        config: &crate::config::TopicConfig,
        now: i64,
    ) {
        let cleaned = match crate::log::compact::clean(job, config, now) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(partition = %p.tp.dir_name(), error = %e, "compaction failed");
                return;
            }
        };
        match p.state.lock().log.install_compacted(job, cleaned) {
            Ok(0) => {}
            Ok(n) => tracing::info!(partition = %p.tp.dir_name(), batches = n, "compacted"),
            Err(e) => {
                tracing::warn!(partition = %p.tp.dir_name(), error = %e, "compaction swap failed")
            }
        }
    }

    /// Flushes and closes every log and leaves the clean-shutdown marker.
    pub fn shutdown(&self) -> Result<()> {
        self.fetchers.shutdown();
        if self.dir_health.is_offline() {
            tracing::warn!("the log directory is offline: no clean-shutdown marker, the next start recovers every active segment");
            return Ok(());
        }
        for p in self.all() {
            p.state.lock().log.close()?;
        }
        let marker = self.log_dir.join(CLEAN_SHUTDOWN);
        fs::write(&marker, b"").map_err(|e| Error::io(&marker, e))
    }
}

fn read_topic_id(dir: &Path) -> Option<Uuid> {
    let text = fs::read_to_string(dir.join(PARTITION_METADATA)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("topic_id: "))
        .and_then(|id| Uuid::parse_str(id.trim()).ok())
}

fn write_topic_id(dir: &Path, id: Uuid) -> Result<()> {
    let p = dir.join(PARTITION_METADATA);
    fs::write(&p, format!("version: 0\ntopic_id: {id}\n")).map_err(|e| Error::io(&p, e))
}

const DELETE_SUFFIX: &str = "-delete";
const STRAY_SUFFIX: &str = "-stray";

/// The name a partition directory is renamed to when it is deleted or set aside, as Kafka's
/// `LocalLog` builds it: `<topic>-<partition>.<unique id><suffix>`, with the topic cut short so
/// the name fits the 255-byte file-name limit (a 249-character topic name is legal).
pub fn aside_name(topic: &str, partition: i32, suffix: &str) -> String {
    let tail = format!("-{partition}.{}{suffix}", Uuid::new_v4().simple());
    let mut keep = topic.len().min(255 - tail.len());
    while !topic.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{tail}", &topic[..keep])
}

/// Renames the directory out of the way at once (so a re-created topic starts empty) and
/// removes it; the rename is what makes deletion atomic across a crash.
fn delete_partition_dir(dir: &Path, tp: &TopicPartition) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let target = dir.with_file_name(aside_name(&tp.topic, tp.partition, DELETE_SUFFIX));
    fs::rename(dir, &target).map_err(|e| Error::io(dir, e))?;
    if let Err(e) = fs::remove_dir_all(&target) {
        tracing::warn!(dir = %target.display(), error = %e, "could not remove a deleted partition");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::image::MetadataRecord;

    /// A replica manager on a fresh log directory (kept alive by the returned guard).
    fn replica_manager() -> (tempfile::TempDir, BrokerConfig, ReplicaManager) {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::load(
            None,
            Vec::new(),
            &[format!("log.dirs={}", dir.path().display())],
        )
        .unwrap();
        let replicas = ReplicaManager::new(&config).unwrap();
        (dir, config, replicas)
    }

    /// The replica's leader epoch (stamped into batches, returned by ListOffsets) follows the
    /// image's (returned by Metadata); it stayed 0 after a reassignment bumped the image's.
    #[test]
    fn the_leader_epoch_comes_from_the_image() {
        let (_dir, config, replicas) = replica_manager();
        let topic_id = Uuid::new_v4();
        let partition = |epoch| MetadataRecord::Partition {
            topic_id,
            partition: 0,
            replicas: vec![config.node_id],
            isr: vec![config.node_id],
            leader: config.node_id,
            leader_epoch: epoch,
            partition_epoch: epoch,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        };
        let mut image = MetadataImage::default();
        image.apply(&MetadataRecord::Topic {
            name: "t".into(),
            topic_id,
        });
        image.apply(&partition(3));
        replicas.sync(&Arc::new(image.clone())).unwrap();
        let p = replicas.get("t", 0).unwrap();
        assert_eq!(p.state.lock().partition.leader_epoch(), 3);
        image.apply(&partition(4));
        replicas.sync(&Arc::new(image.clone())).unwrap();
        assert_eq!(p.state.lock().partition.leader_epoch(), 4);
        assert_eq!(p.check_leader_epoch(-1), Ok(()));
        assert_eq!(p.check_leader_epoch(4), Ok(()));
        assert_eq!(
            p.check_leader_epoch(3),
            Err(ResponseError::FencedLeaderEpoch)
        );
        assert_eq!(
            p.check_leader_epoch(5),
            Err(ResponseError::UnknownLeaderEpoch)
        );

        // The epochs the batches were written in survive a reopen (the checkpoint).
        let b = crate::log::batch::build_batch(0, now_ms(), &[(None, Some(b"v"))]);
        assert_eq!(p.append(&b, None, -1).unwrap().error, 0);
        assert_eq!(p.end_offset_for(-1, 3, true), Ok((3, 0)));
        assert_eq!(p.end_offset_for(-1, 4, true), Ok((4, 1)));
        drop(p);
        let reopened = ReplicaManager::new(&config).unwrap();
        reopened.sync(&Arc::new(image.clone())).unwrap();
        let p = reopened.get("t", 0).unwrap();
        assert_eq!(p.end_offset_for(-1, 3, true), Ok((3, 0)));
        assert_eq!(p.end_offset_for(-1, 2, true), Ok((2, 0)));

        // One replica: an append is replicated when it returns, the high watermark is the end.
        let b = crate::log::batch::build_batch(0, now_ms(), &[(None, Some(b"v"))]);
        assert_eq!(p.append(&b, None, -1).unwrap().error, 0);
        assert_eq!(
            p.offsets(),
            Offsets {
                log_start: 0,
                high_watermark: 2,
                log_end: 2
            }
        );
    }

    /// A fetch response without new records for a partition (the leader had nothing more)
    /// still carries the leader's high watermark to the follower; it was refused as a corrupt
    /// record set, and the follower's high watermark stood still.
    #[test]
    fn a_follower_takes_the_high_watermark_from_a_response_without_records() {
        let (_dir, config, replicas) = replica_manager();
        let topic_id = Uuid::new_v4();
        let leader = config.node_id + 1;
        let mut image = MetadataImage::default();
        image.apply(&MetadataRecord::Topic {
            name: "t".into(),
            topic_id,
        });
        image.apply(&MetadataRecord::Partition {
            topic_id,
            partition: 0,
            replicas: vec![leader, config.node_id],
            isr: vec![leader, config.node_id],
            leader,
            leader_epoch: 1,
            partition_epoch: 1,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        });
        replicas.sync(&Arc::new(image)).unwrap();
        let p = replicas.get("t", 0).unwrap();
        let b = crate::log::batch::build_batch(0, now_ms(), &[(None, Some(b"v"))]);
        assert_eq!(p.append_replicated(&b, 1, 0, 0).unwrap(), Some(1));
        assert_eq!(p.offsets().high_watermark, 0);
        assert_eq!(p.append_replicated(&[], 1, 1, 0).unwrap(), Some(1));
        assert_eq!(
            p.offsets(),
            Offsets {
                log_start: 0,
                high_watermark: 1,
                log_end: 1
            }
        );
    }

    /// The leader side of replication: followers' fetch offsets move the high watermark, which
    /// is what consumers may read and what an `acks=all` produce waits for.
    #[tokio::test]
    async fn follower_fetches_advance_the_high_watermark_and_release_acks_all() {
        let (_dir, config, replicas) = replica_manager();
        let me = config.node_id;
        let (f1, f2) = (me + 1, me + 2);
        let topic_id = Uuid::new_v4();
        let mut image = MetadataImage::default();
        image.apply(&MetadataRecord::Topic {
            name: "r".into(),
            topic_id,
        });
        image.apply(&MetadataRecord::Partition {
            topic_id,
            partition: 0,
            replicas: vec![me, f1, f2],
            isr: vec![me, f1, f2],
            leader: me,
            leader_epoch: 2,
            partition_epoch: 2,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        });
        replicas.sync(&Arc::new(image)).unwrap();
        let p = replicas.get("r", 0).unwrap();
        let b =
            crate::log::batch::build_batch(0, now_ms(), &[(None, Some(b"a")), (None, Some(b"b"))]);
        let appended = p.append(&b, None, -1).unwrap();
        assert_eq!((appended.error, appended.last_offset), (0, 1));
        assert_eq!(p.offsets().high_watermark, 0, "on the leader only");
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        let waiting = {
            let p = p.clone();
            tokio::spawn(async move { p.replicated(1, 2, deadline).await })
        };
        // Consumers read nothing yet; a follower reads to the log end.
        assert_eq!(p.start_fetch(Reader::Consumer, -1, 0, -1).unwrap().limit, 0);
        let s = p.start_fetch(Reader::Follower(f1), 2, 2, 2).unwrap();
        assert_eq!((s.limit, s.diverging), (2, None));
        assert_eq!(p.offsets().high_watermark, 0, "f2 has not fetched");
        p.start_fetch(Reader::Follower(f2), 2, 1, 2).unwrap();
        assert_eq!(p.offsets().high_watermark, 1);
        // Offset 1 is not on every in-sync replica yet: the wait cannot have ended.
        assert!(!waiting.is_finished());
        p.start_fetch(Reader::Follower(f2), 2, 2, 2).unwrap();
        assert_eq!(p.offsets().high_watermark, 2);
        assert_eq!(waiting.await.unwrap(), Ok(()));
        // A follower whose last epoch (1) this leader never wrote in diverged where the
        // leader's first epoch began.
        let s = p.start_fetch(Reader::Follower(f1), 2, 2, 1).unwrap();
        assert_eq!(s.diverging, Some((1, 0)));
        assert_eq!(
            p.start_fetch(Reader::Follower(me + 9), 2, 0, -1),
            Err(ResponseError::NotLeaderOrFollower)
        );
    }
}
