//! The quorum's type configuration and the values it replicates.
//!
//! [`MetadataCommand`] is what a controller commits: the records a plan produced plus the
//! image version it was planned on (optimistic concurrency, see [`CommitOutcome::Conflict`]).
//! [`StoredEntry`] is Fjord's own encoding of a Raft entry on disk, independent of
//! openraft's serde, so that the log outlives a move to openraft 0.10.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::metadata::MetadataRecord;

/// The metadata feature level this build applies; a command above it is never skipped.
/// A command carries the highest level of its records ([`MetadataRecord::feature_level`]).
/// 2: broker epochs and fencing (`BrokerFenced`), partition epochs.
/// 3: the cluster id in the metadata log (`ClusterId`).
pub const SUPPORTED_COMMAND_VERSION: u16 = 3;

openraft::declare_raft_types!(
    /// The Raft type configuration of Fjord's metadata quorum.
    pub QuorumTypes:
        D = MetadataCommand,
        R = CommitOutcome,
        NodeId = u64,
        Node = VoterEndpoint,
        Entry = openraft::Entry<QuorumTypes>,
        // Spelled out: the macro's default names `Cursor` unqualified.
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Entry = openraft::Entry<QuorumTypes>;
pub type LogId = openraft::LogId<u64>;
pub type Vote = openraft::Vote<u64>;
pub type StorageError = openraft::StorageError<u64>;
pub type StoredMembership = openraft::StoredMembership<u64, VoterEndpoint>;
pub type SnapshotMeta = openraft::SnapshotMeta<u64, VoterEndpoint>;

/// One atomic metadata change: the records of one plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataCommand {
    /// Feature level of the command ([`SUPPORTED_COMMAND_VERSION`]).
    pub v: u16,
    /// The image version the plan read; the command applies only on that version.
    pub planned_at: u64,
    /// The leader's clock when it planned; the batch timestamp, so every voter writes the
    /// same bytes.
    pub ts_ms: i64,
    pub records: Vec<MetadataRecord>,
}

/// What applying one entry did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommitOutcome {
    /// The command's records are in the image, which is now at `version`.
    Applied { version: u64 },
    /// The command was planned on another image version and changed nothing: re-plan.
    Conflict { version: u64 },
    /// A blank or membership entry.
    NotData,
}

/// Where a voter listens for quorum RPCs (its controller listener).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoterEndpoint {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for VoterEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A Raft entry's payload as Fjord stores it in a batch's single record value (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum StoredEntry {
    /// A new leader's first entry.
    Blank,
    Data {
        command: MetadataCommand,
    },
    /// A voter set (a joint configuration has several), with every voter's endpoint. The
    /// endpoints are pairs, not a map: serde's buffering of internally tagged enums cannot
    /// read JSON's string keys back as numbers.
    Voters {
        configs: Vec<BTreeSet<u64>>,
        nodes: Vec<(u64, VoterEndpoint)>,
    },
}

/// A log position as stored in `quorum-state` and checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLogId {
    pub term: u64,
    pub index: u64,
}

impl From<LogId> for StoredLogId {
    fn from(id: LogId) -> Self {
        StoredLogId {
            term: id.leader_id.term,
            index: id.index,
        }
    }
}

impl From<StoredLogId> for LogId {
    fn from(id: StoredLogId) -> Self {
        // With `single-term-leader` a committed leader id is the term alone; the node id
        // argument is ignored.
        openraft::LogId::new(openraft::CommittedLeaderId::new(id.term, 0), id.index)
    }
}

/// A voter set with the log position that set it, as stored in checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredVoters {
    pub log_id: Option<StoredLogId>,
    pub configs: Vec<BTreeSet<u64>>,
    pub nodes: BTreeMap<u64, VoterEndpoint>,
}

impl From<&StoredMembership> for StoredVoters {
    fn from(m: &StoredMembership) -> Self {
        StoredVoters {
            log_id: m.log_id().map(Into::into),
            configs: m.membership().get_joint_config().clone(),
            nodes: m
                .membership()
                .nodes()
                .map(|(id, n)| (*id, n.clone()))
                .collect(),
        }
    }
}

impl From<StoredVoters> for StoredMembership {
    fn from(v: StoredVoters) -> Self {
        openraft::StoredMembership::new(
            v.log_id.map(Into::into),
            openraft::Membership::new(v.configs, v.nodes),
        )
    }
}
