//! [`LogStore`]: openraft's log storage over a [`PartitionLog`] in `__cluster_metadata-0/`.
//!
//! Each entry is one batch whose offset is the entry's index (see [`super::codec`]); the vote,
//! the commit index and the last purged entry live in the `quorum-state` file, written as tmp +
//! fsync + rename + fsync of the directory. `quorum-state` is the authority on what was purged:
//! at open, a log that still holds purged entries (a crash between the two writes of a purge) is
//! cut to match.
//!
//! Every disk access runs under one mutex in `spawn_blocking`, off the RaftCore task. `append`
//! fsyncs once per call and reports completion before it returns, so appended entries are
//! durable and readable together. The newest entries are also kept decoded in memory (the
//! tail cache), which serves the read-back of every apply.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};
use parking_lot::Mutex;

use super::codec::{decode_entry, encode_entry, QuorumState, QUORUM_STATE_VERSION};
use super::types::{Entry, LogId, QuorumTypes, StorageError, StoredLogId, Vote};
use crate::log::batch::validate_record_set;
use crate::log::{now_ms, BatchHeader, PartitionLog, Recovery};
use crate::metadata::MetadataLog;

pub const STATE_FILE: &str = "quorum-state";
const LOCK_FILE: &str = ".lock";

/// Takes an exclusive `flock` on `dir/.lock`, waiting up to five seconds for a previous owner
/// to let go. Two Raft logs on one directory would corrupt it: a second process started on the
/// same log directory, or (in tests) a new broker in the directory of one whose Raft core is
/// still stopping, as Kafka's log directory `.lock` prevents. The wait yields to the runtime:
/// the previous owner may be stopping on it.
pub async fn lock_dir(dir: &Path) -> crate::Result<fs::File> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match try_lock_dir(dir) {
            Err((_, true)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            result => return result.map_err(|e| e.0),
        }
    }
}

/// One attempt at [`lock_dir`]; the flag says the lock is held elsewhere (worth waiting for).
fn try_lock_dir(dir: &Path) -> Result<fs::File, (crate::Error, bool)> {
    use rustix::fs::{flock, FlockOperation};
    fs::create_dir_all(dir).map_err(|e| (crate::Error::io(dir, e), false))?;
    let path = dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| (crate::Error::io(&path, e), false))?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(e) => Err((
            crate::Error::Metadata(format!(
                "{}: the metadata log is in use by another process ({e})",
                path.display()
            )),
            e == rustix::io::Errno::WOULDBLOCK,
        )),
    }
}

/// A reply to one read holds about this much, and at least one entry: it bounds the size
/// of an AppendEntries frame.
const READ_BYTES: usize = 1 << 20;

/// The Raft log of one voter. Clones share the same log (it is also its own reader).
#[derive(Clone)]
pub struct LogStore {
    disk: Arc<Mutex<Disk>>,
}

struct Disk {
    /// An exclusive lock on the directory for as long as this log is open (see
    /// [`lock_dir`]); dropped with the log when the Raft core stops.
    _lock: fs::File,
    dir: PathBuf,
    log: PartitionLog,
    state: QuorumState,
    /// The last entry in the log, `None` when the log is empty.
    last: Option<LogId>,
    /// The newest entries, contiguous by index. openraft 0.9 applies committed entries by
    /// reading them back, and replication reads near the end: both are served from here
    /// instead of the files. openraft's `max_payload_entries` bounds a reply from it.
    tail: BTreeMap<u64, Entry>,
}

/// Entries kept in [`Disk::tail`].
const TAIL_ENTRIES: usize = 1024;

fn read_err(e: crate::Error) -> StorageError {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: crate::Error) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

fn vote_err(e: crate::Error) -> StorageError {
    StorageIOError::write_vote(&e).into()
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, refusing a directory locked by another log.
    #[cfg(test)]
    pub fn open(dir: &Path) -> crate::Result<Self> {
        let lock = try_lock_dir(dir).map_err(|e| e.0)?;
        Self::open_locked(dir, lock)
    }

    /// Opens (or creates) the log in `dir`, whose lock the caller took ([`lock_dir`]).
    /// Blocking: call it before the Raft starts.
    pub fn open_locked(dir: &Path, lock: fs::File) -> crate::Result<Self> {
        fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
        let path = dir.join(STATE_FILE);
        let state = match fs::read(&path) {
            Ok(bytes) => {
                let state: QuorumState = serde_json::from_slice(&bytes)
                    .map_err(|e| crate::Error::Metadata(format!("{}: {e}", path.display())))?;
                if state.version != QUORUM_STATE_VERSION {
                    return Err(crate::Error::Metadata(format!(
                        "{}: version {} is not {QUORUM_STATE_VERSION}",
                        path.display(),
                        state.version
                    )));
                }
                state
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => QuorumState {
                version: QUORUM_STATE_VERSION,
                ..QuorumState::default()
            },
            Err(e) => return Err(crate::Error::io(&path, e)),
        };
        let mut log = PartitionLog::open_with(
            dir,
            MetadataLog::topic_config(),
            false,
            Recovery::TornTailOnly,
        )?;
        if let Some(purged) = state.purged {
            let start = purged.index as i64 + 1;
            if log.next_offset() < start {
                log.truncate_fully_and_start_at(start)?;
            } else if log.log_start_offset() < start {
                log.advance_log_start(start)?;
            }
        }
        let last = last_in_log(&log)?;
        // Entries are fsynced before they count as committed, so a log that ends before its
        // commit index lost committed entries to damage (recovery cut them as a torn tail):
        // stop, naming the file, rather than let the quorum run without them.
        if let Some(committed) = state.committed {
            let end = last.map(|l| l.index).or(state.purged.map(|p| p.index));
            if end.is_none_or(|e| e < committed.index) {
                return Err(crate::Error::SegmentCorrupt {
                    path: dir.to_path_buf(),
                    position: log.size_bytes(),
                    reason: format!(
                        "the metadata log ends at index {end:?}, before its committed index {}: \
                         committed entries are missing (restore the directory, or replace this \
                         voter's log from the others)",
                        committed.index
                    ),
                });
            }
        }
        Ok(LogStore {
            disk: Arc::new(Mutex::new(Disk {
                _lock: lock,
                dir: dir.to_path_buf(),
                log,
                state,
                last,
                tail: BTreeMap::new(),
            })),
        })
    }

    /// Runs `f` on the disk state in the blocking pool; `to_storage` says which openraft
    /// error a failure is (openraft's error type is large, so Fjord's stays inside).
    async fn with_disk<T: Send + 'static>(
        &self,
        to_storage: fn(crate::Error) -> StorageError,
        f: impl FnOnce(&mut Disk) -> crate::Result<T> + Send + 'static,
    ) -> Result<T, StorageError> {
        let disk = self.disk.clone();
        tokio::task::spawn_blocking(move || f(&mut disk.lock()))
            .await
            .map_err(|e| to_storage(crate::Error::Metadata(format!("quorum log task: {e}"))))?
            .map_err(to_storage)
    }
}

/// The id of the log's last entry, read from its batch header.
fn last_in_log(log: &PartitionLog) -> crate::Result<Option<LogId>> {
    let next = log.next_offset();
    if next <= log.log_start_offset() {
        return Ok(None);
    }
    let r = log.read(next - 1, 1, true, next)?;
    let h = BatchHeader::parse(&r.records).ok_or_else(|| {
        crate::Error::Metadata(format!(
            "{}: no batch holds the last offset {}",
            log.dir().display(),
            next - 1
        ))
    })?;
    Ok(Some(
        StoredLogId {
            term: h.partition_leader_epoch.max(0) as u64,
            index: h.base_offset as u64,
        }
        .into(),
    ))
}

impl Disk {
    fn save_state(&self) -> crate::Result<()> {
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let bytes = serde_json::to_vec(&self.state).expect("the quorum state serializes");
        let write = || -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            io::Write::write_all(&mut f, &bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| crate::Error::io(&path, e))
    }

    /// Entries with indexes in `[start, end)` that the log holds, stopping after about
    /// `max_bytes` (always at least one entry when any is in range).
    fn read(&self, start: u64, end: u64, max_bytes: usize) -> crate::Result<Vec<Entry>> {
        let start = start.max(self.log.log_start_offset() as u64);
        let end = end.min(self.log.next_offset() as u64);
        if start >= end {
            return Ok(Vec::new());
        }
        if self
            .tail
            .first_key_value()
            .is_some_and(|(&first, _)| first <= start)
        {
            return Ok(self
                .tail
                .range(start..end)
                .map(|(_, e)| e.clone())
                .collect());
        }
        let mut out = Vec::new();
        let mut offset = start;
        let mut budget = max_bytes;
        while offset < end && budget > 0 {
            let r = self
                .log
                .read(offset as i64, budget.min(READ_BYTES), true, end as i64)?;
            let records = &r.records[..];
            if records.is_empty() {
                break;
            }
            let mut pos = 0;
            while let Some(h) = BatchHeader::parse(&records[pos..]) {
                let len = h.total_len();
                if pos + len > records.len() || offset >= end {
                    break;
                }
                let entry = decode_entry(&records[pos..pos + len]).map_err(|e| {
                    crate::Error::Metadata(format!("{}: {e}", self.log.dir().display()))
                })?;
                if entry.log_id.index != offset {
                    return Err(crate::Error::Metadata(format!(
                        "{}: found entry {} where entry {offset} belongs",
                        self.log.dir().display(),
                        entry.log_id.index
                    )));
                }
                out.push(entry);
                offset += 1;
                pos += len;
                budget = budget.saturating_sub(len);
            }
        }
        Ok(out)
    }

    fn append(&mut self, entries: Vec<Entry>) -> crate::Result<()> {
        for entry in entries {
            let index = entry.log_id.index as i64;
            let next = self.log.next_offset();
            if index != next {
                // An empty log (new, or purged past its end) continues wherever Raft says.
                if self.log.log_start_offset() == next && index > next {
                    self.log.truncate_fully_and_start_at(index)?;
                    self.tail.clear();
                } else {
                    return Err(crate::Error::Metadata(format!(
                        "{}: entry {index} does not follow the log end {next}",
                        self.log.dir().display()
                    )));
                }
            }
            let batch = encode_entry(&entry).map_err(|e| crate::Error::Metadata(e.0))?;
            let batches = validate_record_set(&batch, usize::MAX).map_err(|e| {
                crate::Error::Metadata(format!("entry {index} built an invalid batch: {e:?}"))
            })?;
            let term = batches[0].1.partition_leader_epoch;
            self.log.append(&batch, &batches, term, now_ms())?;
            self.last = Some(entry.log_id);
            self.tail.insert(entry.log_id.index, entry);
            if self.tail.len() > TAIL_ENTRIES {
                self.tail.pop_first();
            }
        }
        self.log.flush()
    }
}

fn range_to_bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<QuorumTypes> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = range_to_bounds(&range);
        self.with_disk(read_err, move |d| d.read(start, end, usize::MAX))
            .await
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        self.with_disk(read_err, move |d| d.read(start, end, READ_BYTES))
            .await
    }
}

impl RaftLogStorage<QuorumTypes> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<QuorumTypes>, StorageError> {
        let d = self.disk.lock();
        let purged: Option<LogId> = d.state.purged.map(Into::into);
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: std::cmp::max(d.last, purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.with_disk(vote_err, move |d| {
            d.state.set_vote(&vote);
            d.save_state()
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.disk.lock().state.vote())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.with_disk(write_err, move |d| {
            d.state.committed = committed.map(Into::into);
            d.save_state()
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.disk.lock().state.committed.map(Into::into))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<QuorumTypes>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let result = self.with_disk(write_err, move |d| d.append(entries)).await;
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.with_disk(write_err, move |d| {
            d.log.truncate_to(log_id.index as i64)?;
            d.tail.split_off(&log_id.index);
            d.last = last_in_log(&d.log)?;
            Ok(())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.with_disk(write_err, move |d| {
            // The state first: a crash before the log follows is repaired at open.
            d.state.purged = Some(log_id.into());
            d.save_state()?;
            let start = log_id.index as i64 + 1;
            if d.log.next_offset() < start {
                // openraft purges past the log end after installing a snapshot.
                d.log.truncate_fully_and_start_at(start)?;
                d.tail.clear();
                d.last = None;
            } else {
                d.log.advance_log_start(start)?;
                d.tail = d.tail.split_off(&(start as u64));
                if d.log.next_offset() == start {
                    d.last = None;
                }
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::types::MetadataCommand;

    fn entries(terms_from: u64, range: std::ops::Range<u64>) -> Vec<Entry> {
        range
            .map(|index| Entry {
                log_id: StoredLogId {
                    term: terms_from + index / 4,
                    index,
                }
                .into(),
                payload: openraft::EntryPayload::Normal(MetadataCommand {
                    v: 1,
                    planned_at: index,
                    ts_ms: 1_000 + index as i64,
                    records: vec![],
                }),
            })
            .collect()
    }

    fn append(store: &LogStore, batch: Vec<Entry>) {
        store.disk.lock().append(batch).unwrap();
    }

    async fn snapshot_of(
        store: &mut LogStore,
    ) -> (LogState<QuorumTypes>, Option<Vote>, Vec<LogId>) {
        let state = store.get_log_state().await.unwrap();
        let vote = store.read_vote().await.unwrap();
        let ids = store
            .try_get_log_entries(..)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id)
            .collect();
        (state, vote, ids)
    }

    #[tokio::test]
    async fn a_reopened_store_has_the_same_log_vote_and_commit_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        store.save_vote(&Vote::new(3, 2)).await.unwrap();
        append(&store, entries(1, 0..12));
        store.purge(entries(1, 3..4)[0].log_id).await.unwrap();
        store.truncate(entries(1, 9..10)[0].log_id).await.unwrap();
        append(&store, entries(5, 9..11));
        let committed = Some(entries(5, 10..11)[0].log_id);
        store.save_committed(committed).await.unwrap();
        let before = snapshot_of(&mut store).await;
        assert_eq!(before.2.len(), 7); // 4..=10
        assert_eq!(before.2.last(), committed.as_ref());
        drop(store);

        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(snapshot_of(&mut store).await, before);
        assert_eq!(store.read_committed().await.unwrap(), committed);
    }

    #[tokio::test]
    async fn reads_from_the_tail_cache_match_reads_from_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut cached = LogStore::open(dir.path()).unwrap();
        append(&cached, entries(1, 0..1500));
        cached
            .truncate(entries(1, 1400..1401)[0].log_id)
            .await
            .unwrap();
        append(&cached, entries(9, 1400..1450));
        let ranges = [(0, 10), (400, 480), (470, 1450), (1440, 2000), (1449, 1450)];
        let mut from_cache = Vec::new();
        for (start, end) in ranges {
            let a = cached.try_get_log_entries(start..end).await.unwrap();
            assert_eq!(a.len() as u64, end.min(1450) - start);
            from_cache.push(format!("{a:?}"));
        }
        // One open log per directory (its lock): reopened, it reads from the files.
        drop(cached);
        let mut files = LogStore::open(dir.path()).unwrap();
        for ((start, end), a) in ranges.into_iter().zip(from_cache) {
            let b = files.try_get_log_entries(start..end).await.unwrap();
            assert_eq!(a, format!("{b:?}"), "{start}..{end}");
        }
        assert!(files
            .try_get_log_entries(2000..3000)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn a_purge_cut_short_by_a_crash_is_finished_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        append(&store, entries(1, 0..10));
        // `quorum-state` is written first: a crash right after it leaves the log untouched.
        {
            let mut d = store.disk.lock();
            d.state.purged = Some(StoredLogId { term: 2, index: 5 });
            d.save_state().unwrap();
        }
        drop(store);
        let mut store = LogStore::open(dir.path()).unwrap();
        let (state, _, ids) = snapshot_of(&mut store).await;
        assert_eq!(state.last_purged_log_id.unwrap().index, 5);
        assert_eq!(ids.first().unwrap().index, 6);

        // Purged past the end (a follower that installed a snapshot): empty, continues after.
        {
            let mut d = store.disk.lock();
            d.state.purged = Some(StoredLogId { term: 7, index: 40 });
            d.save_state().unwrap();
        }
        drop(store);
        let mut store = LogStore::open(dir.path()).unwrap();
        let (state, _, ids) = snapshot_of(&mut store).await;
        assert!(ids.is_empty());
        assert_eq!(state.last_log_id, state.last_purged_log_id);
        append(&store, entries(7, 41..42));
        assert_eq!(
            store
                .get_log_state()
                .await
                .unwrap()
                .last_log_id
                .unwrap()
                .index,
            41
        );
    }
}
