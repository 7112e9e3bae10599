//! DeleteRecords: move a partition's log start offset forward (`kafka-delete-records`).

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{KafkaError, RequestContext};
use crate::broker::Broker;

pub fn delete_records(
    broker: &Arc<Broker>,
    req: DeleteRecordsRequest,
    _ctx: &RequestContext,
) -> DeleteRecordsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    let Some(partition) = broker.replicas.get(t.name.0.as_str(), p.partition_index) else {
                        return r.with_error_code(KafkaError::UnknownTopicOrPartition.code());
                    };
                    if broker.replicas.dir_health.is_offline() {
                        return r.with_error_code(KafkaError::KafkaStorageError.code());
                    }
                    let mut st = partition.state.lock();
                    if let Err(e) = st.partition.check_leader() {
                        return r.with_error_code(e.code());
                    }
                    let hw = st.offsets().high_watermark;
                    // -1 means "up to the high watermark".
                    let target = if p.offset == -1 { hw } else { p.offset };
                    if target < 0 || target > hw {
                        return r.with_error_code(KafkaError::OffsetOutOfRange.code());
                    }
                    match st.log.advance_log_start(target) {
                        Ok(low) => r.with_low_watermark(low),
                        Err(e) => {
                            tracing::error!(partition = %partition.tp.dir_name(), error = %e, "delete records failed");
                            r.with_error_code(KafkaError::KafkaStorageError.code())
                        }
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
