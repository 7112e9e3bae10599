//! Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete.

use std::sync::Arc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};

use super::{str_bytes, KafkaError, RequestContext};
use crate::broker::Broker;
use crate::group::CommittedOffset;
use crate::log::now_ms;
use crate::replica::TopicPartition;

pub async fn commit(
    broker: &Arc<Broker>,
    req: OffsetCommitRequest,
    _ctx: &RequestContext,
) -> OffsetCommitResponse {
    let group = req.group_id.0.to_string();
    // Clients find the coordinator first, which creates the offsets topic; a bare commit may not.
    let offsets_ready = broker.ensure_offsets_topic().await.is_ok();
    let now = now_ms();
    // Kafka checks the cluster's metadata, not this node's replicas: a group's coordinator
    // need not hold any replica of the partitions its members commit for.
    let image = broker.metadata.image();
    let exists = |topic: &str, partition: i32| {
        image
            .topics
            .get(topic)
            .is_some_and(|t| partition >= 0 && (partition as usize) < t.partitions.len())
    };
    // Partition-level problems first; the rest are committed together.
    let mut codes: Vec<(TopicName, Vec<(i32, i16)>)> = Vec::new();
    let mut accepted = Vec::new();
    for t in &req.topics {
        let mut parts = Vec::new();
        for p in &t.partitions {
            let code = if group.is_empty() {
                KafkaError::InvalidGroupId.code()
            } else if !offsets_ready {
                KafkaError::CoordinatorNotAvailable.code()
            } else if !exists(t.name.0.as_str(), p.partition_index) {
                KafkaError::UnknownTopicOrPartition.code()
            } else if p
                .committed_metadata
                .as_ref()
                .is_some_and(|m| m.len() > broker.config.offset_metadata_max_bytes)
            {
                KafkaError::OffsetMetadataTooLarge.code()
            } else {
                accepted.push((
                    TopicPartition::new(t.name.0.as_str(), p.partition_index),
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p
                            .committed_metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                        commit_timestamp: now,
                    },
                ));
                -1 // decided below
            };
            parts.push((p.partition_index, code));
        }
        codes.push((t.name.clone(), parts));
    }
    let group_code = if accepted.is_empty() {
        0
    } else {
        broker
            .groups
            .commit(
                &group,
                req.member_id.as_str(),
                req.group_instance_id.as_deref(),
                req.generation_id_or_member_epoch,
                accepted,
            )
            .await
    };
    let topics = codes
        .into_iter()
        .map(|(name, parts)| {
            OffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(i, code)| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(i)
                                .with_error_code(if code == -1 { group_code } else { code })
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// (topic, partitions) asked for, or `None` for all committed.
type Wanted = Option<Vec<(String, Vec<i32>)>>;

/// Per topic: each partition with its committed offset, if any.
type Found = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

fn lookup(broker: &Broker, group: &str, wanted: Wanted) -> Found {
    let committed = broker.groups.fetch_offsets(group);
    match wanted {
        Some(list) => list
            .into_iter()
            .map(|(topic, parts)| {
                let found = parts
                    .into_iter()
                    .map(|p| {
                        (
                            p,
                            committed
                                .get(&TopicPartition::new(topic.as_str(), p))
                                .cloned(),
                        )
                    })
                    .collect();
                (topic, found)
            })
            .collect(),
        None => {
            let mut by_topic: std::collections::BTreeMap<
                String,
                Vec<(i32, Option<CommittedOffset>)>,
            > = Default::default();
            for (tp, o) in committed {
                by_topic
                    .entry(tp.topic)
                    .or_default()
                    .push((tp.partition, Some(o)));
            }
            by_topic.into_iter().collect()
        }
    }
}

pub fn fetch(
    broker: &Arc<Broker>,
    req: OffsetFetchRequest,
    ctx: &RequestContext,
) -> OffsetFetchResponse {
    if ctx.version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                if let Err(e) = broker.groups.check_coordinator(g.group_id.0.as_str()) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(e.code());
                }
                let wanted = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let topics = lookup(broker, g.group_id.0.as_str(), wanted)
                    .into_iter()
                    .map(|(topic, parts)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(str_bytes(topic)))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|(p, o)| {
                                        let o = o.unwrap_or(CommittedOffset {
                                            offset: -1,
                                            leader_epoch: -1,
                                            metadata: String::new(),
                                            commit_timestamp: -1,
                                        });
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(o.offset)
                                            .with_committed_leader_epoch(o.leader_epoch)
                                            .with_metadata(Some(str_bytes(o.metadata)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    if let Err(e) = broker.groups.check_coordinator(req.group_id.0.as_str()) {
        return OffsetFetchResponse::default().with_error_code(e.code());
    }
    let wanted = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let topics = lookup(broker, req.group_id.0.as_str(), wanted)
        .into_iter()
        .map(|(topic, parts)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(str_bytes(topic)))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, o)| {
                            let o = o.unwrap_or(CommittedOffset {
                                offset: -1,
                                leader_epoch: -1,
                                metadata: String::new(),
                                commit_timestamp: -1,
                            });
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o.offset)
                                .with_committed_leader_epoch(o.leader_epoch)
                                .with_metadata(Some(str_bytes(o.metadata)))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

pub fn delete(
    broker: &Arc<Broker>,
    req: OffsetDeleteRequest,
    _ctx: &RequestContext,
) -> OffsetDeleteResponse {
    let tps: Vec<TopicPartition> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(t.name.0.as_str(), p.partition_index))
        })
        .collect();
    match broker.groups.delete_offsets(req.group_id.0.as_str(), &tps) {
        Err(code) => OffsetDeleteResponse::default().with_error_code(code),
        Ok(results) => {
            let topics = req
                .topics
                .iter()
                .map(|t| {
                    OffsetDeleteResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    let code = results
                                        .iter()
                                        .find(|(tp, _)| {
                                            tp.topic == t.name.0.as_str()
                                                && tp.partition == p.partition_index
                                        })
                                        .map(|(_, c)| *c)
                                        .unwrap_or(0);
                                    OffsetDeleteResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
            OffsetDeleteResponse::default().with_topics(topics)
        }
    }
}
