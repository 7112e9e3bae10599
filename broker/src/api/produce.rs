//! Produce: validate and append each partition's record set, then acknowledge per `acks`.
//!
//! Batches are appended as the producer sent them (offsets assigned, CRC checked, idempotent
//! sequences checked); compressed batches are never decompressed. `acks=all` answers once the
//! high watermark passes each partition's last appended offset, or when the request's
//! `timeout_ms` runs out (REQUEST_TIMED_OUT); on a single node that is when the append returns.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::{str_bytes, KafkaError, RequestContext};
use crate::broker::Broker;

fn partition_error(index: i32, e: KafkaError) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(e.code())
        .with_base_offset(-1)
}

pub async fn handle(
    broker: &Arc<Broker>,
    req: ProduceRequest,
    _ctx: &RequestContext,
) -> Option<ProduceResponse> {
    let acks = req.acks;
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.timeout_ms.max(0) as u64);
    let image = broker.metadata.image();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    // (topic index, partition index in it, partition, last offset, leader epoch) of each
    // append an `acks=all` produce waits for.
    let mut waits = Vec::new();
    for topic in req.topic_data {
        let name = if topic.name.0.is_empty() {
            image.topic_by_id(&topic.topic_id).map(|t| t.name.clone())
        } else {
            Some(topic.name.0.to_string())
        };
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for p in topic.partition_data {
            if !matches!(acks, -1..=1) {
                partitions.push(partition_error(p.index, KafkaError::InvalidRequiredAcks));
                continue;
            }
            if req.transactional_id.is_some() {
                partitions.push(partition_error(
                    p.index,
                    KafkaError::TransactionalIdAuthorizationFailed,
                ));
                continue;
            }
            // Only the coordinators write their own topics (Kafka: "Cannot append to
            // internal topic", INVALID_TOPIC_EXCEPTION).
            if name
                .as_deref()
                .is_some_and(crate::metadata::image::is_internal_topic)
            {
                partitions.push(partition_error(p.index, KafkaError::InvalidTopicException));
                continue;
            }
            let Some(partition) = name
                .as_deref()
                .and_then(|n| broker.replicas.get(n, p.index))
            else {
                let e = if name.is_none() {
                    KafkaError::UnknownTopicId
                } else {
                    KafkaError::UnknownTopicOrPartition
                };
                partitions.push(partition_error(p.index, e));
                continue;
            };
            let Some(records) = p.records else {
                partitions.push(partition_error(p.index, KafkaError::CorruptMessage));
                continue;
            };
            match partition.append(&records, None, acks) {
                Ok(outcome) => {
                    if outcome.error == 0 {
                        broker.metrics.bytes_in.inc_by(records.len() as u64);
                        if acks == -1 {
                            waits.push((
                                responses.len(),
                                partitions.len(),
                                partition.clone(),
                                outcome.last_offset,
                                outcome.leader_epoch,
                            ));
                        }
                    }
                    partitions.push(
                        PartitionProduceResponse::default()
                            .with_index(p.index)
                            .with_error_code(outcome.error)
                            .with_base_offset(outcome.base_offset)
                            .with_log_append_time_ms(outcome.log_append_time)
                            .with_log_start_offset(outcome.log_start_offset)
                            .with_error_message(outcome.message.map(str_bytes))
                            .with_record_errors(
                                outcome
                                    .record_errors
                                    .into_iter()
                                    .map(|i| {
                                        BatchIndexAndErrorMessage::default().with_batch_index(i)
                                    })
                                    .collect(),
                            ),
                    );
                }
                Err(crate::error::Error::LogDirOffline) => {
                    partitions.push(partition_error(p.index, KafkaError::KafkaStorageError));
                }
                Err(e) => {
                    tracing::error!(partition = %partition.tp.dir_name(), error = %e, "append failed");
                    partitions.push(partition_error(p.index, KafkaError::KafkaStorageError));
                }
            }
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_topic_id(topic.topic_id)
                .with_partition_responses(partitions),
        );
    }
    // Every partition waits against the one deadline, so the request ends by its timeout.
    for (t, p, partition, last_offset, epoch) in waits {
        if let Err(e) = partition.replicated(last_offset, epoch, deadline).await {
            let r = &mut responses[t].partition_responses[p];
            r.error_code = e.code();
            r.base_offset = -1;
        }
    }
    if acks == 0 {
        return None;
    }
    Some(ProduceResponse::default().with_responses(responses))
}
