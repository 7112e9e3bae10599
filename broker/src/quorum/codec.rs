//! Pure encodings of the quorum's durable state: a Raft entry as one record batch, the
//! `quorum-state` file, and checkpoint files.
//!
//! One entry is one magic-v2 batch holding one record, so a batch's `baseOffset` is the entry's
//! index and its `partitionLeaderEpoch` the entry's term (KRaft's layout of
//! `__cluster_metadata`). The record value is a JSON [`StoredEntry`]; the batch timestamp is the
//! command's `ts_ms` (0 for blank and voter entries), so every voter stores identical bytes.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use serde::{Deserialize, Serialize};

use super::types::{Entry, LogId, StoredEntry, StoredLogId, StoredMembership, StoredVoters, Vote};
use crate::log::batch::{build_batch, crc_matches, stored_prefix};
use crate::log::BatchHeader;
use crate::metadata::{MetadataImage, MetadataRecord};

/// Why stored bytes could not be decoded; the caller adds where they came from.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

/// The batch that stores `entry`, exactly as it sits in the log.
pub fn encode_entry(entry: &Entry) -> Result<Vec<u8>, CodecError> {
    let (stored, ts) = match &entry.payload {
        openraft::EntryPayload::Blank => (StoredEntry::Blank, 0),
        openraft::EntryPayload::Normal(command) => (
            StoredEntry::Data {
                command: command.clone(),
            },
            command.ts_ms,
        ),
        openraft::EntryPayload::Membership(m) => (
            StoredEntry::Voters {
                configs: m.get_joint_config().clone(),
                nodes: m.nodes().map(|(id, n)| (*id, n.clone())).collect(),
            },
            0,
        ),
    };
    let term = i32::try_from(entry.log_id.leader_id.term).map_err(|_| {
        CodecError(format!(
            "term {} does not fit a leader epoch",
            entry.log_id.leader_id.term
        ))
    })?;
    let index = i64::try_from(entry.log_id.index).map_err(|_| {
        CodecError(format!(
            "index {} does not fit an offset",
            entry.log_id.index
        ))
    })?;
    let value = serde_json::to_vec(&stored).map_err(|e| CodecError(e.to_string()))?;
    let mut batch = build_batch(index, ts, &[(None, Some(&value))]);
    let header = BatchHeader::parse(&batch).expect("build_batch writes a whole header");
    batch[..16].copy_from_slice(&stored_prefix(&header, index, term));
    Ok(batch)
}

/// The entry stored in one whole batch (as [`encode_entry`] wrote it).
pub fn decode_entry(batch: &[u8]) -> Result<Entry, CodecError> {
    let header = BatchHeader::parse(batch)
        .ok_or_else(|| CodecError("a batch shorter than its header".into()))?;
    if !crc_matches(batch) {
        return Err(CodecError(format!(
            "batch at offset {} fails its CRC",
            header.base_offset
        )));
    }
    if header.last_offset_delta != 0 || header.base_offset < 0 || header.partition_leader_epoch < 0
    {
        return Err(CodecError(format!(
            "batch at offset {} is not a quorum entry (last offset delta {}, epoch {})",
            header.base_offset, header.last_offset_delta, header.partition_leader_epoch
        )));
    }
    let mut bytes = Bytes::copy_from_slice(&batch[..header.total_len()]);
    let set = RecordBatchDecoder::decode(&mut bytes)
        .map_err(|e| CodecError(format!("batch at offset {}: {e}", header.base_offset)))?;
    let [record] = set.records.as_slice() else {
        return Err(CodecError(format!(
            "batch at offset {} holds {} records, not one",
            header.base_offset,
            set.records.len()
        )));
    };
    let value = record.value.as_deref().unwrap_or_default();
    let stored: StoredEntry = serde_json::from_slice(value)
        .map_err(|e| CodecError(format!("entry at offset {}: {e}", header.base_offset)))?;
    let log_id: LogId = StoredLogId {
        term: header.partition_leader_epoch as u64,
        index: header.base_offset as u64,
    }
    .into();
    let payload = match stored {
        StoredEntry::Blank => openraft::EntryPayload::Blank,
        StoredEntry::Data { command } => openraft::EntryPayload::Normal(command),
        StoredEntry::Voters { configs, nodes } => openraft::EntryPayload::Membership(
            openraft::Membership::new(configs, nodes.into_iter().collect::<BTreeMap<_, _>>()),
        ),
    };
    Ok(Entry { log_id, payload })
}

/// The vote as stored: the term, whom this node voted for, and whether a quorum granted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredVote {
    pub term: u64,
    pub voted_for: Option<u64>,
    pub committed: bool,
}

/// The `quorum-state` file (Kafka's name): what Raft must remember besides the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumState {
    pub version: u16,
    pub vote: Option<StoredVote>,
    pub committed: Option<StoredLogId>,
    /// The last purged entry: it leaves the log, but its term is still needed.
    pub purged: Option<StoredLogId>,
}

pub const QUORUM_STATE_VERSION: u16 = 1;

impl QuorumState {
    pub fn vote(&self) -> Option<Vote> {
        self.vote.map(|v| openraft::Vote {
            leader_id: openraft::LeaderId {
                term: v.term,
                voted_for: v.voted_for,
            },
            committed: v.committed,
        })
    }

    pub fn set_vote(&mut self, vote: &Vote) {
        self.vote = Some(StoredVote {
            term: vote.leader_id.term,
            voted_for: vote.leader_id.voted_for,
            committed: vote.committed,
        });
    }
}

/// The first line of a checkpoint file; the image's records follow, one JSON line each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointHeader {
    pub version: u16,
    pub last_log_id: Option<StoredLogId>,
    pub voters: StoredVoters,
    /// The image version (data commands applied), which planners compare against.
    pub image_version: u64,
    /// [`MetadataImage::applied`], restored rather than recounted from the records.
    pub applied: u64,
}

pub const CHECKPOINT_VERSION: u16 = 1;

/// A state machine's content at one log position.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub last_log_id: Option<LogId>,
    pub membership: StoredMembership,
    pub image_version: u64,
    pub image: std::sync::Arc<MetadataImage>,
}

pub fn encode_checkpoint(c: &Checkpoint) -> Vec<u8> {
    let header = CheckpointHeader {
        version: CHECKPOINT_VERSION,
        last_log_id: c.last_log_id.map(Into::into),
        voters: (&c.membership).into(),
        image_version: c.image_version,
        applied: c.image.applied,
    };
    // Serializing plain data structures to a Vec cannot fail.
    let mut out = serde_json::to_vec(&header).expect("checkpoint header serializes");
    out.push(b'\n');
    for record in c.image.to_records() {
        serde_json::to_writer(&mut out, &record).expect("metadata records serialize");
        out.push(b'\n');
    }
    out
}

pub fn decode_checkpoint(bytes: &[u8]) -> Result<Checkpoint, CodecError> {
    let mut lines = bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    let header: CheckpointHeader = serde_json::from_slice(
        lines
            .next()
            .ok_or_else(|| CodecError("an empty checkpoint".into()))?,
    )
    .map_err(|e| CodecError(format!("checkpoint header: {e}")))?;
    if header.version != CHECKPOINT_VERSION {
        return Err(CodecError(format!(
            "checkpoint version {} is not {CHECKPOINT_VERSION}",
            header.version
        )));
    }
    let mut image = MetadataImage::default();
    for (i, line) in lines.enumerate() {
        let record: MetadataRecord = serde_json::from_slice(line)
            .map_err(|e| CodecError(format!("checkpoint record {i}: {e}")))?;
        image.apply(&record);
    }
    image.applied = header.applied;
    Ok(Checkpoint {
        last_log_id: header.last_log_id.map(Into::into),
        membership: header.voters.into(),
        image_version: header.image_version,
        image: std::sync::Arc::new(image),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;
    use crate::log::batch::validate_record_set;
    use crate::quorum::types::{MetadataCommand, VoterEndpoint};

    fn payload() -> impl Strategy<Value = openraft::EntryPayload<crate::quorum::QuorumTypes>> {
        prop_oneof![
            Just(openraft::EntryPayload::Blank),
            (
                0u64..1000,
                any::<i64>(),
                proptest::collection::vec("[a-z]{1,8}", 0..4)
            )
                .prop_map(|(planned_at, ts_ms, names)| {
                    openraft::EntryPayload::Normal(MetadataCommand {
                        v: 1,
                        planned_at,
                        ts_ms,
                        records: names
                            .into_iter()
                            .map(|name| MetadataRecord::Topic {
                                name,
                                topic_id: Uuid::from_u128(7),
                            })
                            .collect(),
                    })
                }),
            proptest::collection::btree_set(0u64..9, 1..4).prop_map(|ids| {
                let nodes: BTreeMap<u64, VoterEndpoint> = ids
                    .iter()
                    .map(|&id| {
                        (
                            id,
                            VoterEndpoint {
                                host: format!("c{id}"),
                                port: 9093,
                            },
                        )
                    })
                    .collect();
                openraft::EntryPayload::Membership(openraft::Membership::new(
                    vec![ids.into_iter().collect::<BTreeSet<_>>()],
                    nodes,
                ))
            }),
        ]
    }

    proptest! {
        /// An entry survives the batch encoding with its log id in the batch header and a
        /// valid CRC, so the partition log accepts the batch as any other.
        #[test]
        fn entries_round_trip_through_a_batch(
            term in 0u64..=i32::MAX as u64,
            index in 0u64..=i64::MAX as u64,
            payload in payload(),
        ) {
            let entry = Entry {
                log_id: StoredLogId { term, index }.into(),
                payload,
            };
            let batch = encode_entry(&entry).unwrap();
            let batches = validate_record_set(&batch, usize::MAX).unwrap();
            prop_assert_eq!(batches.len(), 1);
            let h = batches[0].1;
            prop_assert_eq!((h.base_offset, h.partition_leader_epoch), (index as i64, term as i32));
            let back = decode_entry(&batch).unwrap();
            prop_assert_eq!(back.log_id, entry.log_id);
            prop_assert_eq!(format!("{:?}", back.payload), format!("{:?}", entry.payload));
        }
    }

    #[test]
    fn a_term_beyond_a_leader_epoch_is_refused() {
        let entry = Entry {
            log_id: StoredLogId {
                term: i32::MAX as u64 + 1,
                index: 0,
            }
            .into(),
            payload: openraft::EntryPayload::Blank,
        };
        assert!(encode_entry(&entry).is_err());
    }
}
