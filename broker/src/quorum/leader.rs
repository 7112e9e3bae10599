//! What only the quorum leader (the active controller) knows, kept in memory as Kafka's
//! controller keeps it: which brokers heartbeat ([`Liveness`]), when each voter last
//! acknowledged replication ([`ReplicaTimes`]), and the view DescribeQuorum reports
//! ([`Described`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::RaftMetrics;
use serde::{Deserialize, Serialize};

use super::types::VoterEndpoint;
use crate::log::now_ms;

/// A broker's heartbeat: it is alive, and whether it wants to be fenced (it is shutting down).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node_id: i32,
    /// The broker epoch of the incarnation sending it (-1 before it registered).
    #[serde(default)]
    pub epoch: i64,
    pub want_fence: bool,
}

/// The answer: whether the voter asked leads (only the leader keeps heartbeats).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct HeartbeatReply {
    pub leader: bool,
}

/// When a broker was last heard from, and what it asked.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub at: std::time::Instant,
    pub epoch: i64,
    /// Once an incarnation asked to be fenced (shutting down), it stays asked: a heartbeat it
    /// sent earlier and that arrives later does not take it back.
    pub want_fence: bool,
}

/// The heartbeats this voter received while it led. A new leader starts with none and gives
/// every broker a whole session before it fences anyone.
#[derive(Debug, Default)]
pub struct Liveness {
    seen: parking_lot::Mutex<HashMap<i32, Seen>>,
}

impl Liveness {
    pub fn record(&self, hb: Heartbeat) {
        let mut seen = self.seen.lock();
        let asked = seen
            .get(&hb.node_id)
            .is_some_and(|s| s.epoch == hb.epoch && s.want_fence);
        seen.insert(
            hb.node_id,
            Seen {
                at: std::time::Instant::now(),
                epoch: hb.epoch,
                want_fence: hb.want_fence || asked,
            },
        );
    }

    pub fn snapshot(&self) -> HashMap<i32, Seen> {
        self.seen.lock().clone()
    }
}

/// When a follower last acknowledged an AppendEntries (Kafka's last fetch) and last
/// acknowledged the leader's whole log (last caught up), in milliseconds since the epoch.
#[derive(Debug, Clone, Copy, Default)]
struct Ack {
    fetched_ms: i64,
    caught_up_ms: i64,
}

/// Replication acknowledgements as the leader's replication clients see them.
#[derive(Debug, Default)]
pub struct ReplicaTimes {
    acks: parking_lot::Mutex<HashMap<u64, Ack>>,
    /// The leader's last log index (kept current by the quorum), to tell a caught-up ack.
    pub last_index: AtomicU64,
}

impl ReplicaTimes {
    /// `target` acknowledged the log up to `index` (None: it holds nothing yet).
    pub fn acked(&self, target: u64, index: Option<u64>) {
        let now = now_ms();
        let mut acks = self.acks.lock();
        let a = acks.entry(target).or_default();
        a.fetched_ms = now;
        if index.is_some_and(|i| i >= self.last_index.load(Ordering::Relaxed)) {
            a.caught_up_ms = now;
        }
    }
}

/// One voter as DescribeQuorum reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoterState {
    pub id: u64,
    /// The offset after the last entry it holds (-1 unknown).
    pub log_end_offset: i64,
    pub last_fetch_ms: i64,
    pub last_caught_up_ms: i64,
    pub endpoint: VoterEndpoint,
}

/// One observer (a broker-only node) as DescribeQuorum reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObserverState {
    pub id: u64,
    pub log_end_offset: i64,
    pub last_fetch_ms: i64,
    pub last_caught_up_ms: i64,
}

/// The leader's view of the quorum (Kafka's DescribeQuorum answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Described {
    pub leader: u64,
    pub term: u64,
    /// The offset after the last committed entry.
    pub high_watermark: i64,
    pub voters: Vec<VoterState>,
    #[serde(default)]
    pub observers: Vec<ObserverState>,
}

/// An observer not heard from for this long is no longer reported (KRaft's
/// `OBSERVER_SESSION_TIMEOUT_MS`).
const OBSERVER_SESSION_MS: i64 = 300_000;

/// The leader's in-memory state, shared by the quorum and its network.
#[derive(Debug, Default)]
pub struct LeaderState {
    pub liveness: Liveness,
    pub times: Arc<ReplicaTimes>,
    observers: parking_lot::Mutex<BTreeMap<u64, ObserverState>>,
}

impl LeaderState {
    /// Observer `id` fetched: it now holds the log up to `log_end` (exclusive), all of it
    /// if `caught_up`.
    pub fn observed(&self, id: u64, log_end: u64, caught_up: bool) {
        let now = now_ms();
        let mut observers = self.observers.lock();
        let o = observers.entry(id).or_insert(ObserverState {
            id,
            log_end_offset: 0,
            last_fetch_ms: -1,
            last_caught_up_ms: -1,
        });
        o.log_end_offset = log_end as i64;
        o.last_fetch_ms = now;
        if caught_up {
            o.last_caught_up_ms = now;
        }
    }

    /// The quorum as this voter sees it, if it leads.
    pub fn describe(&self, m: &RaftMetrics<u64, VoterEndpoint>) -> Option<Described> {
        if !m.state.is_leader() {
            return None;
        }
        let end = |index: Option<u64>| index.map_or(0, |i| i as i64 + 1);
        let matched: BTreeMap<u64, Option<u64>> = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, log)| (*id, log.map(|l| l.index)))
                    .collect()
            })
            .unwrap_or_default();
        let acks = self.times.acks.lock().clone();
        let now = now_ms();
        let voters = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, endpoint)| {
                let (log_end_offset, ack) = if *id == m.id {
                    let me = Ack {
                        fetched_ms: now,
                        caught_up_ms: now,
                    };
                    (end(m.last_log_index), me)
                } else {
                    let log_end = matched.get(id).map_or(-1, |i| end(*i));
                    (log_end, acks.get(id).copied().unwrap_or_default())
                };
                VoterState {
                    id: *id,
                    log_end_offset,
                    last_fetch_ms: if ack.fetched_ms > 0 {
                        ack.fetched_ms
                    } else {
                        -1
                    },
                    last_caught_up_ms: if ack.caught_up_ms > 0 {
                        ack.caught_up_ms
                    } else {
                        -1
                    },
                    endpoint: endpoint.clone(),
                }
            })
            .collect();
        let observers = {
            let mut observers = self.observers.lock();
            observers.retain(|_, o| now - o.last_fetch_ms < OBSERVER_SESSION_MS);
            observers.values().copied().collect()
        };
        Some(Described {
            leader: m.id,
            term: m.current_term,
            high_watermark: end(m.last_applied.map(|l| l.index)),
            voters,
            observers,
        })
    }
}
