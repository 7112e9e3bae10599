//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4), or the
//! first offset at or after a timestamp.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{KafkaError, RequestContext};
use crate::broker::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub fn handle(
    broker: &Arc<Broker>,
    req: ListOffsetsRequest,
    ctx: &RequestContext,
) -> ListOffsetsResponse {
    let leader_only = req.replica_id.0 != -2;
    let follower = req.replica_id.0 >= 0;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let resp = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1);
                    let Some(partition) = broker.replicas.get(&name, p.partition_index) else {
                        return resp.with_error_code(KafkaError::UnknownTopicOrPartition.code());
                    };
                    // Only the debugging id (-2) may ask a replica that does not lead, as in
                    // Kafka; clients ask the leader.
                    if let Err(e) = partition.client_offsets(p.current_leader_epoch, leader_only) {
                        return resp.with_error_code(e.code());
                    }
                    let st = partition.state.lock();
                    let found = match p.timestamp {
                        // A follower (replica id >= 0) asks for the log end, as in Kafka.
                        LATEST if follower => Ok(Some((st.offsets().log_end, -1))),
                        LATEST | LATEST_TIERED => Ok(Some((st.offsets().high_watermark, -1))),
                        EARLIEST | EARLIEST_LOCAL => Ok(Some((st.offsets().log_start, -1))),
                        MAX_TIMESTAMP => st.log.max_timestamp().map(|m| m.map(|(ts, o)| (o, ts))),
                        ts if ts >= 0 => st.log.offset_for_timestamp(ts),
                        _ => return resp.with_error_code(KafkaError::InvalidRequest.code()),
                    };
                    match found {
                        Ok(Some((offset, ts))) => resp
                            .with_offset(offset)
                            .with_timestamp(ts)
                            .with_leader_epoch(if ctx.version >= 4 { st.partition.leader_epoch() } else { -1 }),
                        Ok(None) => resp,
                        Err(e) => {
                            tracing::error!(partition = %partition.tp.dir_name(), error = %e, "list offsets failed");
                            resp.with_error_code(KafkaError::KafkaStorageError.code())
                        }
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
