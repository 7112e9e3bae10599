//! Fetch: whole stored batches from each partition, long-polling until `min_bytes` or
//! `max_wait_ms`.
//!
//! Rules clients depend on: a fetch offset inside a batch returns the whole batch (the client
//! skips the records before its offset); an empty partition carries an empty record set, never
//! null; the first partition returns at least one batch even above the byte limits (KIP-74);
//! Fetch v13+ names topics by id. Fetch sessions (KIP-227) are not offered: the response's
//! session id 0 tells clients to keep sending full fetches.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use tokio::time::Instant;

use super::{str_bytes, KafkaError, RequestContext};
use crate::broker::Broker;

fn empty_partition(index: i32, e: KafkaError) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(e.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(Bytes::new()))
}

/// One pass over the requested partitions. Returns the response topics and the bytes read,
/// and whether any partition had an error (which ends a long poll at once).
fn read_once(
    broker: &Broker,
    req: &FetchRequest,
    version: i16,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let image = broker.metadata.image();
    let max_total = if req.max_bytes <= 0 {
        usize::MAX
    } else {
        req.max_bytes as usize
    };
    let mut total = 0usize;
    let mut any_error = false;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = if version >= 13 {
            image.topic_by_id(&t.topic_id).map(|t| t.name.clone())
        } else {
            Some(t.topic.0.to_string())
        };
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let Some(name) = name.as_deref() else {
                any_error = true;
                parts.push(empty_partition(p.partition, KafkaError::UnknownTopicId));
                continue;
            };
            let Some(partition) = broker.replicas.get(name, p.partition) else {
                any_error = true;
                parts.push(empty_partition(
                    p.partition,
                    KafkaError::UnknownTopicOrPartition,
                ));
                continue;
            };
            let (hw, log_start) = {
                let st = partition.state.lock();
                (st.log.next_offset(), st.log.log_start_offset())
            };
            if p.fetch_offset < log_start || p.fetch_offset > hw {
                any_error = true;
                parts.push(
                    empty_partition(p.partition, KafkaError::OffsetOutOfRange)
                        .with_high_watermark(hw)
                        .with_last_stable_offset(hw)
                        .with_log_start_offset(log_start),
                );
                continue;
            }
            let remaining = max_total.saturating_sub(total);
            let limit = (p.partition_max_bytes.max(0) as usize).min(remaining);
            let records = if remaining == 0 {
                Ok(Bytes::new())
            } else {
                partition
                    .read(p.fetch_offset, limit, total == 0)
                    .map(|r| r.records)
            };
            let records = match records {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(partition = %partition.tp.dir_name(), error = %e, "read failed");
                    any_error = true;
                    parts.push(empty_partition(p.partition, KafkaError::KafkaStorageError));
                    continue;
                }
            };
            total += records.len();
            parts.push(
                PartitionData::default()
                    .with_partition_index(p.partition)
                    .with_high_watermark(hw)
                    .with_last_stable_offset(hw)
                    .with_log_start_offset(log_start)
                    .with_records(Some(records)),
            );
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(if version >= 13 {
                    TopicName(str_bytes(""))
                } else {
                    t.topic.clone()
                })
                .with_topic_id(t.topic_id)
                .with_partitions(parts),
        );
    }
    (topics, total, any_error)
}

pub async fn handle(
    broker: &Arc<Broker>,
    req: FetchRequest,
    ctx: &RequestContext,
) -> FetchResponse {
    if req.session_id > 0 {
        return FetchResponse::default().with_error_code(KafkaError::FetchSessionIdNotFound.code());
    }
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let min_bytes = req.min_bytes.max(0) as usize;
    loop {
        // Register for wake-ups before reading, so an append between the read and the wait
        // is not missed.
        let notified = broker.replicas.data_arrived.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (topics, total, any_error) = read_once(broker, &req, ctx.version);
        if total >= min_bytes || any_error || Instant::now() >= deadline {
            broker.metrics.bytes_out.inc_by(total as u64);
            return FetchResponse::default()
                .with_session_id(0)
                .with_responses(topics);
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}
