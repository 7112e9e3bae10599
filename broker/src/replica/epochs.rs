//! The leader-epoch cache of a partition replica: for each leader epoch the first offset
//! written in it, as Kafka's `LeaderEpochFileCache` keeps it. It answers OffsetForLeaderEpoch
//! ("where did epoch E end?") and the diverging-epoch check of Fetch (KIP-320, KIP-595), which
//! is how a follower or a consumer finds the tail it must drop after a leader change.
//!
//! It is kept in the partition directory as `leader-epoch-checkpoint` in Kafka's text format
//! (version line, count line, then `epoch start_offset` lines), written only when an epoch
//! begins, so compaction cannot lose an epoch whose batches it removed. At open it is completed
//! from the batch headers (a directory written before the file existed, or a crash between an
//! append and the file write) and cut to the log's end.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const CHECKPOINT: &str = "leader-epoch-checkpoint";

/// Kafka's "no such epoch" answer: `(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)`.
pub const UNDEFINED: (i32, i64) = (-1, -1);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochs {
    /// `(epoch, start offset)`, both strictly increasing.
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochs {
    /// Records that `epoch` begins at `start`. An epoch at or below the latest, or a start below
    /// the latest start, changes nothing: the log is only ever appended in epoch order.
    /// Returns whether the cache changed (and should be saved).
    pub fn assign(&mut self, epoch: i32, start: i64) -> bool {
        if epoch < 0 {
            return false;
        }
        if let Some(&(last_epoch, last_start)) = self.entries.last() {
            if epoch <= last_epoch || start < last_start {
                return false;
            }
        }
        self.entries.push((epoch, start));
        true
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    /// Kafka's `endOffsetFor`: the largest epoch at or below `requested` and the offset where
    /// it ended (the next epoch's start, or the log end for the latest). An epoch newer than any
    /// known, or -1, is [`UNDEFINED`]; one older than the first known answers the first known
    /// epoch's start, so the asker truncates to before everything this replica has.
    pub fn end_offset_for(&self, requested: i32, log_end: i64) -> (i32, i64) {
        if requested < 0 {
            return UNDEFINED;
        }
        match self.entries.last() {
            None => return UNDEFINED,
            Some(&(latest, _)) if latest == requested => return (requested, log_end),
            Some(&(latest, _)) if latest < requested => return UNDEFINED,
            _ => {}
        }
        // The first entry above the requested epoch exists (the latest is above it).
        let higher = self.entries.partition_point(|e| e.0 <= requested);
        let end = self.entries[higher].1;
        match higher.checked_sub(1) {
            Some(floor) => (self.entries[floor].0, end),
            None => (requested, end),
        }
    }

    /// Drops the epochs that begin at or after `offset` (the log was truncated to it).
    pub fn truncate_from_end(&mut self, offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.1 < offset);
        self.entries.len() != before
    }

    /// Reads the checkpoint of a partition directory (absent or damaged: empty).
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(CHECKPOINT);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::io(&path, e)),
        };
        // A damaged file is rebuilt from the batch headers by the caller, as one that was
        // never written is; only an epoch whose batches compaction removed is lost that way.
        Ok(Self::parse(&text).unwrap_or_else(|why| {
            tracing::warn!(file = %path.display(), %why, "damaged leader-epoch checkpoint: rebuilding it from the log");
            Self::default()
        }))
    }

    fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut lines = text.lines();
        if lines.next().map(str::trim) != Some("0") {
            return Err("not a version 0 leader-epoch checkpoint".into());
        }
        let count: usize = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or("no entry count")?;
        let mut epochs = LeaderEpochs::default();
        for line in lines.take(count) {
            let mut f = line.split_whitespace();
            let (Some(e), Some(o)) = (f.next(), f.next()) else {
                return Err(format!("bad entry {line:?}"));
            };
            let epoch = e.parse().map_err(|_| format!("bad epoch in {line:?}"))?;
            let start = o.parse().map_err(|_| format!("bad offset in {line:?}"))?;
            epochs.assign(epoch, start);
        }
        Ok(epochs)
    }

    /// Writes the checkpoint durably (temporary file, fsync, rename).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut text = format!("0\n{}\n", self.entries.len());
        for (epoch, start) in &self.entries {
            text.push_str(&format!("{epoch} {start}\n"));
        }
        let tmp: PathBuf = dir.join(format!("{CHECKPOINT}.tmp"));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, dir.join(CHECKPOINT))
        };
        write().map_err(|e| Error::io(dir.join(CHECKPOINT), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochs {
        let mut c = LeaderEpochs::default();
        for (e, o) in entries {
            assert!(c.assign(*e, *o));
        }
        c
    }

    #[test]
    fn end_offsets_follow_kafkas_rules() {
        let c = cache(&[(1, 0), (3, 10), (4, 25)]);
        assert_eq!(
            c.end_offset_for(4, 40),
            (4, 40),
            "latest epoch: the log end"
        );
        assert_eq!(c.end_offset_for(3, 40), (3, 25));
        assert_eq!(
            c.end_offset_for(2, 40),
            (1, 10),
            "unknown epoch: the one below it"
        );
        assert_eq!(
            c.end_offset_for(0, 40),
            (0, 0),
            "below the first: its start"
        );
        assert_eq!(c.end_offset_for(5, 40), UNDEFINED, "newer than any");
        assert_eq!(c.end_offset_for(-1, 40), UNDEFINED);
        assert_eq!(LeaderEpochs::default().end_offset_for(0, 0), UNDEFINED);
    }

    #[test]
    fn epochs_only_move_forward_and_truncation_drops_the_tail() {
        let mut c = cache(&[(0, 0), (2, 5)]);
        assert!(!c.assign(2, 9), "same epoch again");
        assert!(!c.assign(1, 9), "older epoch");
        assert!(!c.assign(3, 4), "start below the latest");
        assert!(c.assign(3, 9));
        assert!(c.truncate_from_end(5));
        assert_eq!(c, cache(&[(0, 0)]));
        assert!(!c.truncate_from_end(5));
    }

    #[test]
    fn the_checkpoint_round_trips_in_kafkas_format() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            LeaderEpochs::load(dir.path()).unwrap(),
            LeaderEpochs::default()
        );
        let c = cache(&[(0, 0), (7, 123)]);
        c.save(dir.path()).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join(CHECKPOINT)).unwrap(),
            "0\n2\n0 0\n7 123\n"
        );
        assert_eq!(LeaderEpochs::load(dir.path()).unwrap(), c);
        fs::write(dir.path().join(CHECKPOINT), "1\n0\n").unwrap();
        assert_eq!(
            LeaderEpochs::load(dir.path()).unwrap(),
            LeaderEpochs::default()
        );
    }
}
