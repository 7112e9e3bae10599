//! AlterPartitionReassignments and ListPartitionReassignments (`kafka-reassign-partitions`).
//!
//! The controller's side is [`crate::metadata::reassign`]: new replicas are added and catch up
//! as followers, the reassignment completes when they are all in sync, and the replicas that
//! left delete their logs. A cancel (no target) restores the original replicas.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};

use super::{str_bytes, RequestContext};
use crate::broker::Broker;
use crate::metadata::reassign::plan_reassignment;

pub async fn alter(
    broker: &Arc<Broker>,
    req: AlterPartitionReassignmentsRequest,
    ctx: &RequestContext,
) -> AlterPartitionReassignmentsResponse {
    // v0 had no choice: the replication factor could change.
    let allow_rf_change = ctx.version == 0 || req.allow_replication_factor_change;
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let target: Option<Vec<i32>> = p.replicas.map(|r| r.iter().map(|b| b.0).collect());
            let outcome = broker
                .commit_metadata(|img| {
                    plan_reassignment(
                        img,
                        &name,
                        p.partition_index,
                        target.as_deref(),
                        allow_rf_change,
                    )
                })
                .await;
            let r =
                ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            parts.push(match outcome {
                Ok(_) => r,
                Err(e) => r
                    .with_error_code(e.code)
                    .with_error_message(Some(str_bytes(e.message))),
            });
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(t.name)
                .with_partitions(parts),
        );
    }
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_rf_change)
        .with_responses(responses)
}

pub fn list(
    broker: &Arc<Broker>,
    req: ListPartitionReassignmentsRequest,
    _ctx: &RequestContext,
) -> ListPartitionReassignmentsResponse {
    let image = broker.metadata.image();
    let wanted: Option<BTreeMap<String, Vec<i32>>> = req.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let mut topics = Vec::new();
    for t in image.topics.values() {
        let asked = wanted.as_ref().map(|w| w.get(&t.name));
        if asked == Some(None) {
            continue;
        }
        let partitions: Vec<OngoingPartitionReassignment> = t
            .partitions
            .iter()
            .enumerate()
            .filter(|(i, p)| {
                p.is_reassigning() && asked.flatten().is_none_or(|ps| ps.contains(&(*i as i32)))
            })
            .map(|(i, p)| {
                OngoingPartitionReassignment::default()
                    .with_partition_index(i as i32)
                    .with_replicas(ids(&p.replicas))
                    .with_adding_replicas(ids(&p.adding))
                    .with_removing_replicas(ids(&p.removing))
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(str_bytes(&t.name)))
                    .with_partitions(partitions),
            );
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
