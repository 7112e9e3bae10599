//! AlterPartitionReassignments and ListPartitionReassignments (`kafka-reassign-partitions`).
//!
//! On a single node every valid target replica set is this broker, so a reassignment completes
//! the moment it is committed and none is ever in progress. Moving replicas between brokers
//! (adding, catching up, removing) arrives with replication.

use std::sync::Arc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::{str_bytes, KafkaError, RequestContext};
use crate::broker::Broker;
use crate::metadata::topics::Refusal;
use crate::metadata::MetadataRecord;

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
                    let topic = img
                        .topics
                        .get(&name)
                        .ok_or_else(|| Refusal::new(KafkaError::UnknownTopicOrPartition, format!("Unknown topic {name}")))?;
                    let current = topic
                        .partitions
                        .get(p.partition_index as usize)
                        .ok_or_else(|| Refusal::new(KafkaError::UnknownTopicOrPartition, "Unknown partition"))?;
                    let Some(target) = &target else {
                        return Err(Refusal::new(KafkaError::NoReassignmentInProgress, "No reassignment is in progress"));
                    };
                    let mut sorted = target.clone();
                    sorted.sort_unstable();
                    sorted.dedup();
                    if target.is_empty() || sorted.len() != target.len() || target.iter().any(|b| !img.brokers.contains_key(b)) {
                        return Err(Refusal::new(
                            KafkaError::InvalidReplicaAssignment,
                            format!("Invalid replica assignment {target:?}: replicas must be distinct registered brokers"),
                        ));
                    }
                    if !allow_rf_change && target.len() != current.replicas.len() {
                        return Err(Refusal::new(
                            KafkaError::InvalidReplicationFactor,
                            "The replication factor would change and allowReplicationFactorChange is false",
                        ));
                    }
                    if *target == current.replicas {
                        return Ok(Vec::new());
                    }
                    Ok(vec![MetadataRecord::Partition {
                        topic_id: topic.id,
                        partition: p.partition_index,
                        replicas: target.clone(),
                        isr: target.clone(),
                        leader: target[0],
                        leader_epoch: current.leader_epoch + 1,
                        partition_epoch: current.partition_epoch + 1,
                    }])
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
    _broker: &Arc<Broker>,
    _req: ListPartitionReassignmentsRequest,
    _ctx: &RequestContext,
) -> ListPartitionReassignmentsResponse {
    // Reassignments complete when committed on a single node; none is ever ongoing.
    ListPartitionReassignmentsResponse::default()
}
