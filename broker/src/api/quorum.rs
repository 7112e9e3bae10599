//! DescribeQuorum, for `kafka-metadata-quorum.sh describe --status` and `--replication`: the
//! metadata quorum as its leader sees it. Whichever node the client reached asks the leader,
//! as a Kafka broker forwards the request to the active controller.

use std::sync::Arc;

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};

use super::{str_bytes, KafkaError, RequestContext};
use crate::broker::Broker;
use crate::metadata::METADATA_DIR;

/// The metadata topic's name, as Kafka names its log.
const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn describe(
    broker: &Arc<Broker>,
    req: DescribeQuorumRequest,
    _ctx: &RequestContext,
) -> DescribeQuorumResponse {
    debug_assert!(METADATA_DIR.starts_with(METADATA_TOPIC));
    let described = match broker.metadata.describe_quorum().await {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(error = %e, "DescribeQuorum could not reach the quorum leader");
            None
        }
    };
    // Voters are reached on the controller listener (a node alone: on its client listener).
    let listener = broker
        .config
        .raw
        .get("controller.listener.names")
        .and_then(|names| names.split(',').map(str::trim).find(|n| !n.is_empty()))
        .map(str::to_string)
        .or_else(|| broker.config.listeners.first().map(|l| l.name.clone()))
        .unwrap_or_else(|| "CONTROLLER".into());
    let mut nodes = Vec::new();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let out = PartitionData::default().with_partition_index(p.partition_index);
                    if t.topic_name.0.as_str() != METADATA_TOPIC || p.partition_index != 0 {
                        return out
                            .with_error_code(KafkaError::UnknownTopicOrPartition.code())
                            .with_leader_id(BrokerId(-1));
                    }
                    let Some(d) = &described else {
                        return out
                            .with_error_code(KafkaError::NotLeaderOrFollower.code())
                            .with_error_message(Some(str_bytes(
                                "The metadata quorum has no leader",
                            )))
                            .with_leader_id(BrokerId(-1));
                    };
                    nodes = d
                        .voters
                        .iter()
                        .map(|v| {
                            Node::default()
                                .with_node_id(BrokerId(v.id as i32))
                                .with_listeners(vec![Listener::default()
                                    .with_name(str_bytes(&listener))
                                    .with_host(str_bytes(&v.endpoint.host))
                                    .with_port(v.endpoint.port)])
                        })
                        .collect();
                    out.with_leader_id(BrokerId(d.leader as i32))
                        .with_leader_epoch(d.term as i32)
                        .with_high_watermark(d.high_watermark)
                        .with_current_voters(
                            d.voters
                                .iter()
                                .map(|v| {
                                    ReplicaState::default()
                                        .with_replica_id(BrokerId(v.id as i32))
                                        .with_log_end_offset(v.log_end_offset)
                                        .with_last_fetch_timestamp(v.last_fetch_ms)
                                        .with_last_caught_up_timestamp(v.last_caught_up_ms)
                                })
                                .collect(),
                        )
                        .with_observers(
                            d.observers
                                .iter()
                                .map(|o| {
                                    ReplicaState::default()
                                        .with_replica_id(BrokerId(o.id as i32))
                                        .with_log_end_offset(o.log_end_offset)
                                        .with_last_fetch_timestamp(o.last_fetch_ms)
                                        .with_last_caught_up_timestamp(o.last_caught_up_ms)
                                })
                                .collect(),
                        )
                })
                .collect();
            TopicData::default()
                .with_topic_name(t.topic_name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DescribeQuorumResponse::default()
        .with_topics(topics)
        .with_nodes(nodes)
}
