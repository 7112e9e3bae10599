//! Broker-only nodes (`process.roles=broker`): KRaft's observers. A broker-only node runs no
//! Raft. It pulls committed entries from a voter (the leader when it knows one) and applies
//! them with the same [`StateMachine`] the voters use, so its image is theirs, entry for
//! entry. A node further behind than the voter's log reaches (the entries were folded into
//! a snapshot and purged) gets the voter's checkpoint instead, installs it and goes on from
//! there. The node writes its own checkpoints as it applies, so a restart starts from the
//! newest one and fetches only what came after.
//!
//! Why not openraft learners (see docs/issue-8/quorum.md §5): a learner is pushed to by the
//! leader and is a membership change; an observer dials the controllers as a Kafka broker
//! does, only ever sees committed entries (its image never moves backwards), and joins or
//! leaves without a log entry.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::time::Duration;

use openraft::storage::{RaftLogReader, RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
use openraft::Raft;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::leader::LeaderState;
use super::network::PeerClient;
use super::state_machine::{Published, StateMachine};
use super::storage::LogStore;
use super::types::{Entry, QuorumTypes, SnapshotMeta, VoterEndpoint};
use crate::error::{Error, Result};

/// Entries sent in one answer at most.
const MAX_ENTRIES: u64 = 500;
/// How long a voter holds a fetch that found nothing new (KRaft's observers use 500 ms).
pub const MAX_WAIT: Duration = Duration::from_millis(500);
/// How long an observer waits after a voter could not be reached before it asks the next.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// An observer's fetch: the entries from `next_index` on.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ObserveRequest {
    pub node_id: u64,
    pub next_index: u64,
    pub max_wait_ms: u64,
}

/// A voter's answer: committed entries from the index asked for, or (when those were purged)
/// the meta of the voter's snapshot, whose bytes follow the JSON in the response's tail.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObserveReply {
    /// The leader as the voter knows it, and its term.
    pub leader: Option<u64>,
    pub term: u64,
    pub entries: Vec<Entry>,
    pub snapshot: Option<SnapshotMeta>,
    /// The voter's last applied (so committed) index: an observer that reached it is caught
    /// up.
    pub applied_index: Option<u64>,
}

/// What a voter answers observers from: its log and its state machine (clones share them).
#[derive(Clone)]
pub struct Source {
    pub log: LogStore,
    pub state_machine: StateMachine,
}

fn storage(e: impl std::fmt::Display) -> Error {
    Error::Metadata(format!("reading the quorum log for an observer: {e}"))
}

impl Source {
    /// Answers one observer fetch: waits up to `max_wait_ms` (at most [`MAX_WAIT`] twice) for
    /// an entry at `next_index` to be applied here, then sends what there is. Only applied
    /// entries are sent, and applied entries are committed: an observer never has to
    /// truncate.
    pub async fn answer(
        &self,
        raft: &Raft<QuorumTypes>,
        leader: &LeaderState,
        req: ObserveRequest,
    ) -> Result<(ObserveReply, Vec<u8>)> {
        let mut images = self.state_machine.subscribe();
        let wait = Duration::from_millis(req.max_wait_ms).min(MAX_WAIT * 2);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let applied = images.borrow_and_update().applied_index;
            if applied.is_some_and(|a| a >= req.next_index) {
                break;
            }
            match tokio::time::timeout_at(deadline, images.changed()).await {
                Ok(Ok(())) => {}
                _ => break,
            }
        }
        let m = raft.metrics().borrow().clone();
        let applied = images.borrow().applied_index;
        let mut reply = ObserveReply {
            leader: m.current_leader,
            term: m.current_term,
            entries: Vec::new(),
            snapshot: None,
            applied_index: applied,
        };
        let mut log = self.log.clone();
        let purged = log
            .get_log_state()
            .await
            .map_err(storage)?
            .last_purged_log_id
            .map(|l| l.index);
        let mut tail = Vec::new();
        if purged.is_some_and(|p| req.next_index <= p) {
            let mut sm = self.state_machine.clone();
            if let Some(s) = sm.get_current_snapshot().await.map_err(storage)? {
                reply.applied_index = s.meta.last_log_id.map(|l| l.index);
                reply.snapshot = Some(s.meta);
                tail = s.snapshot.into_inner();
            }
        } else if let Some(applied) = applied.filter(|&a| a >= req.next_index) {
            let end = (applied + 1).min(req.next_index + MAX_ENTRIES);
            reply.entries = log
                .try_get_log_entries(req.next_index..end)
                .await
                .map_err(storage)?;
        }
        if m.state.is_leader() {
            let end = reply
                .snapshot
                .as_ref()
                .and_then(|s| s.last_log_id)
                .or(reply.entries.last().map(|e| e.log_id))
                .map_or(req.next_index, |l| l.index + 1);
            let caught_up = applied.is_none_or(|a| end > a);
            leader.observed(req.node_id, end, caught_up);
        }
        Ok((reply, tail))
    }
}

/// Where an observer stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObserverView {
    pub leader: Option<u64>,
    pub term: u64,
    /// Whether it has applied all a voter had applied when it last asked.
    pub caught_up: bool,
}

/// A broker-only node's metadata: its state machine, fed by [`follow`].
pub struct Observer {
    pub node_id: u64,
    pub voters: BTreeMap<u64, VoterEndpoint>,
    pub state_machine: StateMachine,
    pub view: watch::Receiver<ObserverView>,
    task: tokio::task::JoinHandle<()>,
    /// The directory lock, held as long as the observer runs.
    _lock: std::fs::File,
}

impl Observer {
    /// Opens the observer's state in `dir` (its newest checkpoint) and starts pulling from
    /// `voters`.
    pub async fn start(
        node_id: u64,
        voters: BTreeMap<u64, VoterEndpoint>,
        dir: &Path,
        checkpoint_every: u64,
    ) -> Result<Observer> {
        if dir.join(super::storage::STATE_FILE).exists() {
            return Err(Error::config(
                "process.roles",
                format!(
                    "{} holds a quorum voter's log: this node was a controller, and a voter \
                     cannot become a broker-only node",
                    dir.display()
                ),
            ));
        }
        let lock = super::storage::lock_dir(dir).await?;
        let state_machine = StateMachine::open(dir)?;
        let (view_tx, view) = watch::channel(ObserverView::default());
        let task = tokio::spawn(follow(
            node_id,
            voters.clone(),
            state_machine.clone(),
            view_tx,
            checkpoint_every,
        ));
        Ok(Observer {
            node_id,
            voters,
            state_machine,
            view,
            task,
            _lock: lock,
        })
    }

    pub fn images(&self) -> watch::Receiver<Published> {
        self.state_machine.subscribe()
    }

    /// Stops pulling.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Pulls entries forever: from the leader when the last answer named one, otherwise from
/// the voters in turn.
async fn follow(
    node_id: u64,
    voters: BTreeMap<u64, VoterEndpoint>,
    mut state_machine: StateMachine,
    view: watch::Sender<ObserverView>,
    checkpoint_every: u64,
) {
    let ids: Vec<u64> = voters.keys().copied().collect();
    let mut turn = 0usize;
    let mut target = ids[0];
    let mut client: Option<PeerClient> = None;
    let mut checkpointed = state_machine.subscribe().borrow().applied_index;
    loop {
        let applied = state_machine.subscribe().borrow().applied_index;
        let req = ObserveRequest {
            node_id,
            next_index: applied.map_or(0, |a| a + 1),
            max_wait_ms: MAX_WAIT.as_millis() as u64,
        };
        let c =
            client.get_or_insert_with(|| PeerClient::to_voter(node_id, target, &voters[&target]));
        let answer = c.observe(req, MAX_WAIT * 2 + Duration::from_secs(5)).await;
        let result = match answer {
            Ok((reply, tail)) => apply(&mut state_machine, &view, req, reply, tail).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(leader) => {
                if let Some(l) = leader.filter(|l| *l != target && voters.contains_key(l)) {
                    target = l;
                    client = None;
                }
            }
            Err(e) => {
                tracing::debug!(voter = target, error = %e, "fetching metadata from a voter failed; trying the next");
                turn += 1;
                target = ids[turn % ids.len()];
                client = None;
                view.send_modify(|v| v.leader = None);
                tokio::time::sleep(RETRY_BACKOFF).await;
                continue;
            }
        }
        let now = state_machine.subscribe().borrow().applied_index;
        let since = now.unwrap_or(0).saturating_sub(checkpointed.unwrap_or(0));
        if now.is_some() && (checkpointed.is_none() || since >= checkpoint_every) {
            match state_machine
                .get_snapshot_builder()
                .await
                .build_snapshot()
                .await
            {
                Ok(_) => checkpointed = now,
                Err(e) => tracing::warn!(error = %e, "writing a metadata checkpoint failed"),
            }
        }
    }
}

/// Applies one answer; returns the leader it named.
async fn apply(
    state_machine: &mut StateMachine,
    view: &watch::Sender<ObserverView>,
    req: ObserveRequest,
    reply: ObserveReply,
    tail: Vec<u8>,
) -> Result<Option<u64>> {
    if let Some(meta) = &reply.snapshot {
        tracing::info!(snapshot = %meta.snapshot_id, "installing the metadata snapshot of a voter");
        state_machine
            .install_snapshot(meta, Box::new(Cursor::new(tail)))
            .await
            .map_err(|e| Error::Metadata(format!("installing a metadata snapshot: {e}")))?;
    } else if let Some(first) = reply.entries.first() {
        if first.log_id.index != req.next_index {
            return Err(Error::Metadata(format!(
                "a voter answered a fetch from {} with entries from {}",
                req.next_index, first.log_id.index
            )));
        }
        state_machine
            .apply(reply.entries)
            .await
            .map_err(|e| Error::Metadata(format!("applying metadata entries: {e}")))?;
    }
    let applied = state_machine.subscribe().borrow().applied_index;
    let caught_up = reply.applied_index.is_none_or(|a| applied >= Some(a));
    view.send_replace(ObserverView {
        leader: reply.leader,
        term: reply.term,
        caught_up,
    });
    Ok(reply.leader)
}
