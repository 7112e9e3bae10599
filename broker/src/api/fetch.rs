//! Fetch: whole stored batches from each partition, long-polling until `min_bytes` or
//! `max_wait_ms`. Consumers read up to the high watermark from the leader; follower replicas
//! (a `replica_id`, in `ReplicaState` from v15) read up to the log end, and their fetch offsets
//! move the high watermark. A reader whose last fetched epoch ended earlier on the leader gets
//! the diverging epoch and no records (KIP-595). A wait is woken only by the partitions it names
//! (see [`purgatory`](crate::replica::purgatory)).
//!
//! Rules clients depend on: a fetch offset inside a batch returns the whole batch (the client
//! skips the records before its offset); an empty partition carries an empty record set, never
//! null; the first partition returns at least one batch even above the byte limits (KIP-74);
//! Fetch v13+ names topics by id. Fetch sessions (KIP-227) are not offered: the response's
//! session id 0 tells clients to keep sending full fetches.
//!
//! Records never pass through the broker's memory: a read yields file ranges
//! ([`FileSlice`]), the response is encoded by `kafka-protocol` around them, and the connection
//! sends the ranges with sendfile(2). To find where each partition's records go in the encoded
//! response without encoding it by hand, the response is encoded twice, once with empty record
//! sets and once with null ones: the bytes differ exactly at the records fields.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::Encodable;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{encode_frame, str_bytes, Chunk, KafkaError, RequestContext};
use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::log::FileSlice;
use crate::replica::purgatory::Event;
use crate::replica::Reader;

const MAX_RECORDS_PER_RESPONSE: usize = 1 << 30;

/// A fetch response whose record sets are still file ranges: `slices` holds one entry per
/// partition, in the order the partitions appear in `response` (topic by topic), and the
/// partitions' own `records` are empty.
#[derive(Debug, Default)]
pub struct FetchReply {
    pub response: FetchResponse,
    pub slices: Vec<Option<FileSlice>>,
}

fn empty_partition(index: i32, e: KafkaError) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(e.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(Bytes::new()))
}

/// One pass over the requested partitions. Returns the response topics with the file range of
/// each partition's records, the bytes found, and whether any partition had an error (which
/// ends a long poll at once). `waiter` is registered on each partition before it is read, so a
/// change after the read wakes it.
fn read_once(
    broker: &Broker,
    req: &FetchRequest,
    version: i16,
    waiter: &Arc<Notify>,
) -> (
    Vec<FetchableTopicResponse>,
    Vec<Option<FileSlice>>,
    usize,
    bool,
) {
    let image = broker.metadata.image();
    // A frame's size is an i32: keep the records well inside it whatever the request asks
    // (only the first batch may exceed the budget, and a batch is at most message.max.bytes).
    let max_total = if req.max_bytes <= 0 {
        MAX_RECORDS_PER_RESPONSE
    } else {
        (req.max_bytes as usize).min(MAX_RECORDS_PER_RESPONSE)
    };
    let mut total = 0usize;
    let mut any_error = false;
    let mut topics = Vec::with_capacity(req.topics.len());
    let mut slices = Vec::new();
    let replica_id = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let (reader, event) = if replica_id >= 0 {
        (Reader::Follower(replica_id), Event::LogEnd)
    } else {
        (Reader::Consumer, Event::HighWatermark)
    };
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
                slices.push(None);
                continue;
            };
            let Some(partition) = broker.replicas.get(name, p.partition) else {
                any_error = true;
                parts.push(empty_partition(
                    p.partition,
                    KafkaError::UnknownTopicOrPartition,
                ));
                slices.push(None);
                continue;
            };
            partition.watchers.register(event, waiter);
            let last_fetched_epoch = if version >= 12 {
                p.last_fetched_epoch
            } else {
                -1
            };
            let start = match partition.start_fetch(
                reader,
                p.current_leader_epoch,
                p.fetch_offset,
                last_fetched_epoch,
            ) {
                Ok(s) => s,
                Err(e) => {
                    any_error = true;
                    parts.push(empty_partition(p.partition, e));
                    slices.push(None);
                    continue;
                }
            };
            let offsets = start.offsets;
            let (hw, log_start) = (offsets.high_watermark, offsets.log_start);
            if let Some((epoch, end_offset)) = start.diverging {
                // Answered at once, without records: the reader truncates first.
                any_error = true;
                let mut d = PartitionData::default()
                    .with_partition_index(p.partition)
                    .with_high_watermark(hw)
                    .with_last_stable_offset(hw)
                    .with_log_start_offset(log_start)
                    .with_records(Some(Bytes::new()));
                d.diverging_epoch.epoch = epoch;
                d.diverging_epoch.end_offset = end_offset;
                parts.push(d);
                slices.push(None);
                continue;
            }
            // Kafka's range is the log's (start to end), not the high watermark: a follower
            // fetches above it.
            if p.fetch_offset < log_start || p.fetch_offset > offsets.log_end {
                any_error = true;
                parts.push(
                    empty_partition(p.partition, KafkaError::OffsetOutOfRange)
                        .with_high_watermark(hw)
                        .with_last_stable_offset(hw)
                        .with_log_start_offset(log_start),
                );
                slices.push(None);
                continue;
            }
            let remaining = max_total.saturating_sub(total);
            let limit = (p.partition_max_bytes.max(0) as usize).min(remaining);
            // A follower outside the ISR (catching up, or added by a reassignment) of a
            // throttled partition gets nothing while the leader's throttle rate is exceeded.
            let throttled = matches!(reader, Reader::Follower(id) if !partition.in_isr(id));
            let slice = if remaining == 0
                || (throttled && broker.replicas.throttles.leader_holds(&partition.tp))
            {
                Ok(None)
            } else {
                partition.slice(p.fetch_offset, limit, total == 0, start.limit)
            };
            let slice = match slice {
                Ok(s) => s,
                Err(e) => {
                    if !matches!(e, crate::error::Error::LogDirOffline) {
                        tracing::error!(partition = %partition.tp.dir_name(), error = %e, "read failed");
                    }
                    any_error = true;
                    parts.push(empty_partition(p.partition, KafkaError::KafkaStorageError));
                    slices.push(None);
                    continue;
                }
            };
            let len = slice.as_ref().map_or(0, |s| s.len);
            if throttled && len > 0 {
                broker.replicas.throttles.leader_sent(&partition.tp, len);
            }
            total += len as usize;
            slices.push(slice);
            parts.push(
                PartitionData::default()
                    .with_partition_index(p.partition)
                    .with_high_watermark(hw)
                    .with_last_stable_offset(hw)
                    .with_log_start_offset(log_start)
                    .with_records(Some(Bytes::new())),
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
    (topics, slices, total, any_error)
}

pub async fn handle(broker: &Arc<Broker>, req: FetchRequest, ctx: &RequestContext) -> FetchReply {
    if req.session_id > 0 {
        return FetchReply {
            response: FetchResponse::default()
                .with_error_code(KafkaError::FetchSessionIdNotFound.code()),
            slices: Vec::new(),
        };
    }
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let min_bytes = req.min_bytes.max(0) as usize;
    loop {
        // A fresh waiter per pass: the previous one's registrations die with it.
        let waiter = Arc::new(Notify::new());
        let (topics, slices, total, any_error) = read_once(broker, &req, ctx.version, &waiter);
        if total >= min_bytes || any_error || Instant::now() >= deadline {
            broker.metrics.bytes_out.inc_by(total as u64);
            return FetchReply {
                response: FetchResponse::default()
                    .with_session_id(0)
                    .with_responses(topics),
                slices,
            };
        }
        tokio::select! {
            _ = waiter.notified() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

fn partitions_mut(r: &mut FetchResponse) -> impl Iterator<Item = &mut PartitionData> {
    r.responses.iter_mut().flat_map(|t| t.partitions.iter_mut())
}

/// Encodes a fetch response as the chunks the connection writes: memory for everything
/// `kafka-protocol` encodes, file ranges for the record sets.
pub fn encode(version: i16, correlation_id: i32, reply: FetchReply) -> Result<Vec<Chunk>> {
    let FetchReply {
        response: mut with_empty,
        slices,
    } = reply;
    let partitions = partitions_mut(&mut with_empty).count();
    if slices.len() != partitions {
        return Err(Error::Protocol(format!(
            "fetch response has {partitions} partitions but {} record ranges",
            slices.len()
        )));
    }
    for p in partitions_mut(&mut with_empty) {
        p.records = Some(Bytes::new());
    }
    let frame = |r: &FetchResponse| {
        encode_frame(ApiKey::Fetch, version, correlation_id, |b| {
            r.encode(b, version)
        })
    };
    if slices.iter().all(Option::is_none) {
        return Ok(vec![Chunk::Mem(frame(&with_empty)?)]);
    }
    let mut with_null = with_empty.clone();
    for (p, s) in partitions_mut(&mut with_null).zip(&slices) {
        if s.is_some() {
            p.records = None;
        }
    }
    let a = frame(&with_empty)?;
    let b = frame(&with_null)?;
    if let Some(chunks) = splice(&a, &b, version >= 12, &slices) {
        return Ok(chunks);
    }
    // Not expected: if the two encodings ever differ elsewhere, send the records from memory
    // rather than a wrong frame.
    tracing::warn!(
        version,
        "fetch records could not be spliced; sending them from memory"
    );
    for (p, s) in partitions_mut(&mut with_empty).zip(&slices) {
        if let Some(s) = s {
            p.records = Some(s.read_all().map_err(|e| {
                Error::Protocol(format!("reading records for a fetch response: {e}"))
            })?);
        }
    }
    Ok(vec![Chunk::Mem(frame(&with_empty)?)])
}

/// Builds the chunks from `a` (record sets empty) and `b` (the partitions with a slice have null
/// record sets): every difference must be one such records field, in order. The 4-byte size
/// prefix is recomputed for the spliced frame.
fn splice(a: &[u8], b: &[u8], flexible: bool, slices: &[Option<FileSlice>]) -> Option<Vec<Chunk>> {
    let (empty, null): (&[u8], &[u8]) = if flexible {
        (&[1], &[0])
    } else {
        (&[0, 0, 0, 0], &[0xff, 0xff, 0xff, 0xff])
    };
    if a.len() != b.len() || a.len() < 4 {
        return None;
    }
    let mut chunks = Vec::new();
    let mut mem = BytesMut::with_capacity(a.len() + 16);
    let mut cursor = 0usize;
    let mut total = 0u64;
    for s in slices.iter().flatten() {
        let at = cursor
            + a[cursor..]
                .iter()
                .zip(&b[cursor..])
                .position(|(x, y)| x != y)?;
        let end = at + empty.len();
        if a.get(at..end)? != empty || b.get(at..end)? != null {
            return None;
        }
        mem.extend_from_slice(&a[cursor..at]);
        let len = u32::try_from(s.len).ok().filter(|&l| l < i32::MAX as u32)?;
        if flexible {
            put_unsigned_varint(&mut mem, len + 1);
        } else {
            mem.put_i32(len as i32);
        }
        total += mem.len() as u64 + s.len;
        chunks.push(Chunk::Mem(mem.split().freeze()));
        chunks.push(Chunk::File(s.clone()));
        cursor = end;
    }
    if a[cursor..] != b[cursor..] {
        return None;
    }
    mem.extend_from_slice(&a[cursor..]);
    total += mem.len() as u64;
    chunks.push(Chunk::Mem(mem.freeze()));
    let size = i32::try_from(total - 4).ok()?;
    if let Some(Chunk::Mem(first)) = chunks.first_mut() {
        let mut patched = BytesMut::from(&first[..]);
        patched[0..4].copy_from_slice(&size.to_be_bytes());
        *first = patched.freeze();
    }
    Some(chunks)
}

fn put_unsigned_varint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use kafka_protocol::messages::fetch_response::{AbortedTransaction, LeaderIdAndEpoch};
    use kafka_protocol::messages::ResponseKind;
    use kafka_protocol::protocol::Message;

    use super::super::encode_response;

    use super::*;

    fn slice_of(data: &[u8]) -> FileSlice {
        let mut f = tempfile::tempfile().expect("temp file");
        f.write_all(b"prefix-").expect("write");
        f.write_all(data).expect("write");
        FileSlice {
            file: Arc::new(f),
            position: 7,
            len: data.len() as u64,
        }
    }

    fn materialize(chunks: &[Chunk]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in chunks {
            match c {
                Chunk::Mem(b) => out.extend_from_slice(b),
                Chunk::File(f) => out.extend_from_slice(&f.read_all().expect("read")),
            }
        }
        out
    }

    /// The spliced frame is byte for byte what `kafka-protocol` encodes with the records in
    /// memory, at every Fetch version, including partitions with tagged fields and errors.
    #[test]
    fn spliced_responses_equal_the_codec_encoding_at_every_version() {
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let records: Vec<Option<Vec<u8>>> = vec![
            Some(b"batch-one".to_vec()),
            None,
            Some(big),
            Some(vec![7u8; 130]),
        ];
        let range = super::super::supported(ApiKey::Fetch).expect("fetch is served");
        for version in range.min..=range.max {
            let partition = |i: i32| {
                let mut p = PartitionData::default()
                    .with_partition_index(i)
                    .with_high_watermark(100 + i as i64)
                    .with_last_stable_offset(100 + i as i64)
                    .with_log_start_offset(i as i64)
                    .with_records(Some(Bytes::new()));
                if i == 1 {
                    p = p.with_error_code(KafkaError::OffsetOutOfRange.code());
                }
                if i == 3 {
                    p = p
                        .with_aborted_transactions(Some(vec![AbortedTransaction::default()
                            .with_producer_id(kafka_protocol::messages::ProducerId(9))
                            .with_first_offset(3)]))
                        .with_current_leader(
                            LeaderIdAndEpoch::default()
                                .with_leader_id(kafka_protocol::messages::BrokerId(1))
                                .with_leader_epoch(4),
                        );
                }
                p
            };
            let topic = |name: &str, ids: std::ops::Range<i32>| {
                FetchableTopicResponse::default()
                    .with_topic(TopicName(str_bytes(if version >= 13 { "" } else { name })))
                    .with_topic_id(uuid::Uuid::from_u128(0x1234))
                    .with_partitions(ids.map(partition).collect())
            };
            let response = FetchResponse::default()
                .with_throttle_time_ms(0)
                .with_session_id(0)
                .with_responses(vec![topic("a", 0..2), topic("b", 2..4)]);
            let slices: Vec<Option<FileSlice>> =
                records.iter().map(|r| r.as_deref().map(slice_of)).collect();
            let chunks = encode(
                version,
                42,
                FetchReply {
                    response: response.clone(),
                    slices,
                },
            )
            .expect("encode");
            assert!(
                chunks.iter().any(|c| matches!(c, Chunk::File(_))),
                "v{version}: records were spliced, not copied"
            );
            let mut expected = response;
            for (p, r) in partitions_mut(&mut expected).zip(&records) {
                p.records = Some(r.clone().map(Bytes::from).unwrap_or_default());
            }
            let want = encode_response(ApiKey::Fetch, version, 42, &ResponseKind::Fetch(expected))
                .expect("codec");
            assert_eq!(materialize(&chunks), want.to_vec(), "Fetch v{version}");
        }
        assert!(FetchResponse::VERSIONS.max >= range.max);
    }
}
