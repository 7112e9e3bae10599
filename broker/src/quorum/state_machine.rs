//! [`StateMachine`]: applies committed entries, in order, to a [`MetadataImage`] and publishes
//! each new image on a `watch` channel (the one ordered apply loop of issue 8).
//!
//! A data entry applies only when it was planned on the image version it finds
//! ([`CommitOutcome::Conflict`] otherwise), so a plan made on a stale image (across a leader
//! change, say) can never commit. Snapshots are checkpoint files next to the log,
//! `<endOffset:020>-<term:010>.checkpoint` (Kafka's naming), built from the image; the two
//! newest are kept, and the newest is loaded at open. Entries after it are re-applied by
//! openraft from the log at start-up.

use std::fs;
use std::io::{self, Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, StorageIOError};
use parking_lot::Mutex;
use tokio::sync::watch;

use super::codec::{decode_checkpoint, encode_checkpoint, Checkpoint};
use super::types::{
    CommitOutcome, Entry, LogId, QuorumTypes, SnapshotMeta, StorageError, StoredMembership,
    SUPPORTED_COMMAND_VERSION,
};
use crate::metadata::MetadataImage;

const CHECKPOINT_SUFFIX: &str = ".checkpoint";
const CHECKPOINTS_KEPT: usize = 2;

/// What subscribers see after each apply.
#[derive(Debug, Clone, Default)]
pub struct Published {
    pub image: Arc<MetadataImage>,
    /// Data commands applied so far: what a planner passes as `planned_at`.
    pub version: u64,
    /// The index of the last applied entry.
    pub applied_index: Option<u64>,
    /// Counts the times the image was replaced wholesale (an installed snapshot). A
    /// subscriber that sees it change reconciles the whole image instead of applying a
    /// difference; a counter, unlike a flag, survives the watch channel keeping only the
    /// latest value.
    pub generation: u64,
}

/// The state machine of one voter. Clones share it (a clone is its snapshot builder).
#[derive(Clone)]
pub struct StateMachine {
    dir: PathBuf,
    state: Arc<Mutex<Applied>>,
    publisher: Arc<watch::Sender<Published>>,
}

struct Applied {
    image: Arc<MetadataImage>,
    version: u64,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    current: Option<(SnapshotMeta, Arc<Vec<u8>>)>,
}

fn checkpoint_name(last: Option<LogId>) -> String {
    let (end, term) = last.map_or((0, 0), |l| (l.index + 1, l.leader_id.term));
    format!("{end:020}-{term:010}{CHECKPOINT_SUFFIX}")
}

fn snapshot_meta(last: Option<LogId>, membership: StoredMembership) -> SnapshotMeta {
    SnapshotMeta {
        snapshot_id: last.map_or("0-0".into(), |l| {
            format!("{}-{}", l.index, l.leader_id.term)
        }),
        last_log_id: last,
        last_membership: membership,
    }
}

fn checkpoint_err(meta: &SnapshotMeta, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_snapshot(Some(meta.signature()), &e).into()
}

/// Writes a checkpoint durably, then drops all but the newest few.
fn write_checkpoint(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    fs::File::open(dir)?.sync_all()?;
    let mut names = checkpoint_names(dir)?;
    names.sort_unstable();
    let old = names.len().saturating_sub(CHECKPOINTS_KEPT);
    for stale in &names[..old] {
        fs::remove_file(dir.join(stale))?;
    }
    Ok(())
}

fn checkpoint_names(dir: &Path) -> io::Result<Vec<String>> {
    Ok(fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(CHECKPOINT_SUFFIX))
        .collect())
}

impl StateMachine {
    /// Loads the newest checkpoint in `dir` (an empty image without one). Blocking.
    pub fn open(dir: &Path) -> crate::Result<Self> {
        fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
        let names = checkpoint_names(dir).map_err(|e| crate::Error::io(dir, e))?;
        for e in fs::read_dir(dir)
            .map_err(|e| crate::Error::io(dir, e))?
            .flatten()
        {
            // A checkpoint whose write did not finish.
            if e.file_name().to_string_lossy().ends_with(".checkpoint.tmp") {
                let _ = fs::remove_file(e.path());
            }
        }
        let newest = names.iter().max();
        let mut applied = Applied {
            image: Arc::default(),
            version: 0,
            last_applied: None,
            membership: StoredMembership::default(),
            current: None,
        };
        if let Some(name) = newest {
            let path = dir.join(name);
            let bytes = fs::read(&path).map_err(|e| crate::Error::io(&path, e))?;
            let c = decode_checkpoint(&bytes)
                .map_err(|e| crate::Error::Metadata(format!("{}: {e}", path.display())))?;
            applied.current = Some((
                snapshot_meta(c.last_log_id, c.membership.clone()),
                Arc::new(bytes),
            ));
            applied.image = c.image;
            applied.version = c.image_version;
            applied.last_applied = c.last_log_id;
            applied.membership = c.membership;
        }
        let (publisher, _) = watch::channel(Published {
            image: applied.image.clone(),
            version: applied.version,
            applied_index: applied.last_applied.map(|l| l.index),
            generation: 0,
        });
        Ok(StateMachine {
            dir: dir.to_path_buf(),
            state: Arc::new(Mutex::new(applied)),
            publisher: Arc::new(publisher),
        })
    }

    /// Images as they are applied; the current one is there at once.
    pub fn subscribe(&self) -> watch::Receiver<Published> {
        self.publisher.subscribe()
    }

    fn publish(&self, a: &Applied, replaced: bool) {
        let generation = self.publisher.borrow().generation + u64::from(replaced);
        self.publisher.send_replace(Published {
            image: a.image.clone(),
            version: a.version,
            applied_index: a.last_applied.map(|l| l.index),
            generation,
        });
    }
}

impl RaftSnapshotBuilder<QuorumTypes> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<QuorumTypes>, StorageError> {
        let checkpoint = {
            let a = self.state.lock();
            Checkpoint {
                last_log_id: a.last_applied,
                membership: a.membership.clone(),
                image_version: a.version,
                image: a.image.clone(),
            }
        };
        let meta = snapshot_meta(checkpoint.last_log_id, checkpoint.membership.clone());
        let dir = self.dir.clone();
        let name = checkpoint_name(checkpoint.last_log_id);
        let bytes = tokio::task::spawn_blocking(move || {
            let bytes = encode_checkpoint(&checkpoint);
            write_checkpoint(&dir, &name, &bytes).map(|()| bytes)
        })
        .await
        .map_err(|e| checkpoint_err(&meta, e))?
        .map_err(|e| checkpoint_err(&meta, e))?;
        let bytes = Arc::new(bytes);
        let mut a = self.state.lock();
        // openraft builds in a task of its own: a snapshot installed meanwhile is newer.
        if a.current
            .as_ref()
            .is_none_or(|(m, _)| m.last_log_id <= meta.last_log_id)
        {
            a.current = Some((meta.clone(), bytes.clone()));
        }
        drop(a);
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes.to_vec())),
        })
    }
}

impl RaftStateMachine<QuorumTypes> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let a = self.state.lock();
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommitOutcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut a = self.state.lock();
        let mut outcomes = Vec::new();
        for entry in entries {
            let outcome = match entry.payload {
                EntryPayload::Blank => CommitOutcome::NotData,
                EntryPayload::Membership(m) => {
                    a.membership = StoredMembership::new(Some(entry.log_id), m);
                    CommitOutcome::NotData
                }
                EntryPayload::Normal(cmd) => {
                    if cmd.v > SUPPORTED_COMMAND_VERSION {
                        // Skipping it would fork this node's image from the others'.
                        let e = crate::Error::Metadata(format!(
                            "command version {} is above the supported {SUPPORTED_COMMAND_VERSION}",
                            cmd.v
                        ));
                        return Err(StorageIOError::apply(entry.log_id, &e).into());
                    }
                    if cmd.planned_at != a.version {
                        CommitOutcome::Conflict { version: a.version }
                    } else {
                        let image = Arc::make_mut(&mut a.image);
                        for r in &cmd.records {
                            image.apply(r);
                        }
                        a.version += 1;
                        CommitOutcome::Applied { version: a.version }
                    }
                }
            };
            a.last_applied = Some(entry.log_id);
            outcomes.push(outcome);
        }
        self.publish(&a, false);
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let c = decode_checkpoint(&bytes).map_err(|e| checkpoint_err(meta, e))?;
        // Durable before it is visible: a crash must not forget an image others were shown.
        let dir = self.dir.clone();
        let name = checkpoint_name(meta.last_log_id);
        let bytes = tokio::task::spawn_blocking(move || {
            write_checkpoint(&dir, &name, &bytes).map(|()| bytes)
        })
        .await
        .map_err(|e| checkpoint_err(meta, e))?
        .map_err(|e| checkpoint_err(meta, e))?;
        let mut a = self.state.lock();
        a.image = c.image;
        a.version = c.image_version;
        a.last_applied = meta.last_log_id;
        a.membership = meta.last_membership.clone();
        a.current = Some((meta.clone(), Arc::new(bytes)));
        self.publish(&a, true);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<QuorumTypes>>, StorageError> {
        let a = self.state.lock();
        Ok(a.current.as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes.to_vec())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::RaftSnapshotBuilder;
    use uuid::Uuid;

    use super::*;
    use crate::metadata::MetadataRecord;
    use crate::quorum::types::{MetadataCommand, StoredLogId};

    fn data(index: u64, planned_at: u64, v: u16, name: &str) -> Entry {
        Entry {
            log_id: StoredLogId { term: 1, index }.into(),
            payload: EntryPayload::Normal(MetadataCommand {
                v,
                planned_at,
                ts_ms: 0,
                records: vec![MetadataRecord::Topic {
                    name: name.into(),
                    topic_id: Uuid::new_v4(),
                }],
            }),
        }
    }

    #[tokio::test]
    async fn a_command_planned_on_another_version_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        let images = sm.subscribe();
        let out = sm
            .apply([
                data(1, 0, 1, "a"),
                data(2, 0, 1, "stale"),
                data(3, 1, 1, "b"),
            ])
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                CommitOutcome::Applied { version: 1 },
                CommitOutcome::Conflict { version: 1 },
                CommitOutcome::Applied { version: 2 },
            ]
        );
        let p = images.borrow().clone();
        assert_eq!((p.version, p.applied_index), (2, Some(3)));
        assert!(p.image.topics.contains_key("b") && !p.image.topics.contains_key("stale"));
    }

    #[tokio::test]
    async fn a_command_above_the_supported_version_is_an_error_not_a_skip() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        let newer = SUPPORTED_COMMAND_VERSION + 1;
        assert!(sm.apply([data(1, 0, newer, "a")]).await.is_err());
    }

    #[tokio::test]
    async fn a_reopened_state_machine_starts_from_its_newest_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        for i in 0..4u64 {
            sm.apply([data(i + 1, i, 1, &format!("t{i}"))])
                .await
                .unwrap();
            sm.get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .unwrap();
        }
        let image = sm.subscribe().borrow().image.clone();
        let names = checkpoint_names(dir.path()).unwrap();
        assert_eq!(names.len(), CHECKPOINTS_KEPT);
        let mut back = StateMachine::open(dir.path()).unwrap();
        let (applied, _) = back.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(4));
        let p = back.subscribe().borrow().clone();
        assert_eq!((p.version, &*p.image), (4, &*image));
    }
}
