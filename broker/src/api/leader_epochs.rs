//! OffsetForLeaderEpoch: where a leader epoch ended in this replica's log. Followers ask it
//! after a leader change to find the tail they must truncate, and consumers ask it to validate
//! their position after one (KIP-320); both get the largest epoch at or below the one asked and
//! the offset it ended at (see [`LeaderEpochs::end_offset_for`](crate::replica::epochs::LeaderEpochs::end_offset_for)).

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{KafkaError, RequestContext};
use crate::broker::Broker;

/// Kafka's `DEBUGGING_REPLICA_ID`: the only asker a replica that does not lead answers.
const DEBUGGING_REPLICA_ID: i32 = -2;

pub fn handle(
    broker: &Arc<Broker>,
    req: OffsetForLeaderEpochRequest,
    _ctx: &RequestContext,
) -> OffsetForLeaderEpochResponse {
    let leader_only = req.replica_id.0 != DEBUGGING_REPLICA_ID;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let r = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let Some(partition) = broker.replicas.get(t.topic.0.as_str(), p.partition)
                    else {
                        return r.with_error_code(KafkaError::UnknownTopicOrPartition.code());
                    };
                    match partition.end_offset_for(
                        p.current_leader_epoch,
                        p.leader_epoch,
                        leader_only,
                    ) {
                        Ok((epoch, end)) => r.with_leader_epoch(epoch).with_end_offset(end),
                        Err(e) => r.with_error_code(e.code()),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
