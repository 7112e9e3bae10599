//! The request dispatcher: one module per Kafka API (or small family of APIs), one table of the
//! versions Fjord implements.
//!
//! Frames are decoded with the `kafka-protocol` crate. ApiVersions at a version this broker
//! does not know is answered in the v0 shape with UNSUPPORTED_VERSION and the supported ranges
//! (KIP-511), so a newer client can downgrade; any other unsupported version, an unknown API
//! key, or an undecodable frame is an error that closes the connection.

mod api_versions;
mod cluster;
mod configs;
mod consumer_groups;
mod elect;
mod fetch;
mod groups;
mod leader_epochs;
mod list_offsets;
mod metadata;
mod offsets;
mod produce;
mod quorum;
mod reassign;
mod records;
mod topics;

use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes, VersionRange};

use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::log::FileSlice;
use crate::server::Connection;

/// A piece of a response frame as the connection writes it: bytes in memory, or a range of a
/// segment file that goes from the page cache to the socket with sendfile(2).
#[derive(Debug, Clone)]
pub enum Chunk {
    Mem(Bytes),
    File(FileSlice),
}

/// What a handler knows about the request besides its body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub version: i16,
    pub client_id: String,
    pub connection: Connection,
}

/// The versions Fjord implements for each API it serves; `None` means not served.
pub fn supported(key: ApiKey) -> Option<VersionRange> {
    let r = match key {
        ApiKey::Produce => ProduceRequest::VERSIONS,
        ApiKey::Fetch => FetchRequest::VERSIONS,
        ApiKey::ListOffsets => ListOffsetsRequest::VERSIONS,
        ApiKey::OffsetForLeaderEpoch => OffsetForLeaderEpochRequest::VERSIONS,
        ApiKey::Metadata => MetadataRequest::VERSIONS,
        ApiKey::OffsetCommit => OffsetCommitRequest::VERSIONS,
        ApiKey::OffsetFetch => OffsetFetchRequest::VERSIONS,
        ApiKey::FindCoordinator => FindCoordinatorRequest::VERSIONS,
        ApiKey::JoinGroup => JoinGroupRequest::VERSIONS,
        ApiKey::Heartbeat => HeartbeatRequest::VERSIONS,
        ApiKey::LeaveGroup => LeaveGroupRequest::VERSIONS,
        ApiKey::SyncGroup => SyncGroupRequest::VERSIONS,
        ApiKey::DescribeGroups => DescribeGroupsRequest::VERSIONS,
        ApiKey::ListGroups => ListGroupsRequest::VERSIONS,
        ApiKey::ApiVersions => ApiVersionsRequest::VERSIONS,
        ApiKey::CreateTopics => CreateTopicsRequest::VERSIONS,
        ApiKey::DeleteTopics => DeleteTopicsRequest::VERSIONS,
        ApiKey::DeleteRecords => DeleteRecordsRequest::VERSIONS,
        ApiKey::InitProducerId => InitProducerIdRequest::VERSIONS,
        ApiKey::DescribeConfigs => DescribeConfigsRequest::VERSIONS,
        ApiKey::AlterConfigs => AlterConfigsRequest::VERSIONS,
        ApiKey::DescribeLogDirs => DescribeLogDirsRequest::VERSIONS,
        ApiKey::CreatePartitions => CreatePartitionsRequest::VERSIONS,
        ApiKey::DeleteGroups => DeleteGroupsRequest::VERSIONS,
        ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsRequest::VERSIONS,
        ApiKey::OffsetDelete => OffsetDeleteRequest::VERSIONS,
        ApiKey::DescribeCluster => DescribeClusterRequest::VERSIONS,
        ApiKey::AlterPartitionReassignments => AlterPartitionReassignmentsRequest::VERSIONS,
        ApiKey::ListPartitionReassignments => ListPartitionReassignmentsRequest::VERSIONS,
        ApiKey::ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest::VERSIONS,
        ApiKey::ConsumerGroupDescribe => ConsumerGroupDescribeRequest::VERSIONS,
        ApiKey::DescribeQuorum => DescribeQuorumRequest::VERSIONS,
        ApiKey::ElectLeaders => ElectLeadersRequest::VERSIONS,
        _ => return None,
    };
    // The crate's message structs and its ApiKey table can disagree; serve what both know.
    Some(r.intersect(&key.valid_versions()))
}

/// Whether a controller listener serves `key`: the APIs an admin client bootstrapped with
/// `bootstrap.controllers` sends (KIP-919), as a Kafka controller advertises them.
pub fn served_on_controller(key: ApiKey) -> bool {
    matches!(
        key,
        ApiKey::ApiVersions | ApiKey::DescribeCluster | ApiKey::DescribeQuorum
    )
}

/// An empty request of every API Fjord serves, for tests and fuzz targets that start from a
/// well-formed body and damage it.
#[doc(hidden)]
pub fn empty_request(key: ApiKey) -> Option<RequestKind> {
    use RequestKind as Rq;
    Some(match key {
        ApiKey::Produce => Rq::Produce(Default::default()),
        ApiKey::Fetch => Rq::Fetch(Default::default()),
        ApiKey::ListOffsets => Rq::ListOffsets(Default::default()),
        ApiKey::OffsetForLeaderEpoch => Rq::OffsetForLeaderEpoch(Default::default()),
        ApiKey::Metadata => Rq::Metadata(Default::default()),
        ApiKey::OffsetCommit => Rq::OffsetCommit(Default::default()),
        ApiKey::OffsetFetch => Rq::OffsetFetch(Default::default()),
        ApiKey::FindCoordinator => Rq::FindCoordinator(Default::default()),
        ApiKey::JoinGroup => Rq::JoinGroup(Default::default()),
        ApiKey::Heartbeat => Rq::Heartbeat(Default::default()),
        ApiKey::LeaveGroup => Rq::LeaveGroup(Default::default()),
        ApiKey::SyncGroup => Rq::SyncGroup(Default::default()),
        ApiKey::DescribeGroups => Rq::DescribeGroups(Default::default()),
        ApiKey::ListGroups => Rq::ListGroups(Default::default()),
        ApiKey::ApiVersions => Rq::ApiVersions(Default::default()),
        ApiKey::CreateTopics => Rq::CreateTopics(Default::default()),
        ApiKey::DeleteTopics => Rq::DeleteTopics(Default::default()),
        ApiKey::DeleteRecords => Rq::DeleteRecords(Default::default()),
        ApiKey::InitProducerId => Rq::InitProducerId(Default::default()),
        ApiKey::DescribeConfigs => Rq::DescribeConfigs(Default::default()),
        ApiKey::AlterConfigs => Rq::AlterConfigs(Default::default()),
        ApiKey::DescribeLogDirs => Rq::DescribeLogDirs(Default::default()),
        ApiKey::CreatePartitions => Rq::CreatePartitions(Default::default()),
        ApiKey::DeleteGroups => Rq::DeleteGroups(Default::default()),
        ApiKey::IncrementalAlterConfigs => Rq::IncrementalAlterConfigs(Default::default()),
        ApiKey::OffsetDelete => Rq::OffsetDelete(Default::default()),
        ApiKey::DescribeCluster => Rq::DescribeCluster(Default::default()),
        ApiKey::AlterPartitionReassignments => Rq::AlterPartitionReassignments(Default::default()),
        ApiKey::ListPartitionReassignments => Rq::ListPartitionReassignments(Default::default()),
        ApiKey::ConsumerGroupHeartbeat => Rq::ConsumerGroupHeartbeat(Default::default()),
        ApiKey::ConsumerGroupDescribe => Rq::ConsumerGroupDescribe(Default::default()),
        ApiKey::DescribeQuorum => Rq::DescribeQuorum(Default::default()),
        ApiKey::ElectLeaders => Rq::ElectLeaders(Default::default()),
        _ => return None,
    })
}

/// Every API Fjord serves.
#[doc(hidden)]
pub fn served_keys() -> Vec<ApiKey> {
    (0..200i16)
        .filter_map(|k| ApiKey::try_from(k).ok())
        .filter(|k| supported(*k).is_some())
        .collect()
}

fn api_name(key: ApiKey) -> String {
    format!("{key:?}")
}

/// Handles one request frame (without its size prefix). Returns the size-prefixed response as
/// chunks to write in order, or `None` when the request expects none (Produce with acks=0).
pub async fn handle(
    broker: &Arc<Broker>,
    mut frame: Bytes,
    conn: &Connection,
) -> Result<Option<Vec<Chunk>>> {
    if frame.len() < 8 {
        return Err(Error::Protocol(format!(
            "{}-byte frame is too short for a header",
            frame.len()
        )));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key = ApiKey::try_from(raw_key)
        .map_err(|_| Error::Protocol(format!("unknown API key {raw_key}")))?;
    if conn.controller && !served_on_controller(key) {
        return Err(Error::Protocol(format!(
            "{key:?} is not served on a controller listener"
        )));
    }
    let range = supported(key);
    let in_range = range.is_some_and(|r| version >= r.min && version <= r.max);
    if !in_range {
        if key == ApiKey::ApiVersions {
            tracing::info!(
                version,
                "ApiVersions at an unknown version: answering in v0 with the supported ranges"
            );
            let resp = api_versions::unsupported_version(conn.controller);
            return encode_response(
                ApiKey::ApiVersions,
                0,
                correlation_id,
                &ResponseKind::ApiVersions(resp),
            )
            .map(|b| Some(vec![Chunk::Mem(b)]));
        }
        return Err(Error::Protocol(format!(
            "{key:?} v{version} is not supported (supported: {range:?})"
        )));
    }
    let header = RequestHeader::decode(&mut frame, key.request_header_version(version))
        .map_err(|e| Error::Protocol(format!("bad {key:?} header: {e}")))?;
    let request = RequestKind::decode(key, &mut frame, version)
        .map_err(|e| Error::Protocol(format!("bad {key:?} v{version} body: {e}")))?;
    let ctx = RequestContext {
        version,
        client_id: header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        connection: conn.clone(),
    };
    tracing::debug!(api = ?key, version, correlation_id, client = %ctx.client_id, "request");
    let name = api_name(key);
    let started = Instant::now();
    let response = match request {
        RequestKind::Fetch(r) => Reply::Fetch(fetch::handle(broker, r, &ctx).await),
        request => match dispatch(broker, key, request, &ctx).await? {
            Some(r) => Reply::Message(r),
            None => Reply::Nothing,
        },
    };
    broker
        .metrics
        .request_latency
        .with_label_values(&[name.as_str()])
        .observe(started.elapsed().as_secs_f64());
    broker
        .metrics
        .requests
        .with_label_values(&[name.as_str()])
        .inc();
    match response {
        Reply::Message(r) => {
            encode_response(key, version, correlation_id, &r).map(|b| Some(vec![Chunk::Mem(b)]))
        }
        Reply::Fetch(r) => fetch::encode(version, correlation_id, r).map(Some),
        Reply::Nothing => Ok(None),
    }
}

enum Reply {
    Message(ResponseKind),
    /// Fetch responses keep their records as file ranges until they are written.
    Fetch(fetch::FetchReply),
    Nothing,
}

async fn dispatch(
    broker: &Arc<Broker>,
    key: ApiKey,
    request: RequestKind,
    ctx: &RequestContext,
) -> Result<Option<ResponseKind>> {
    use RequestKind as Rq;
    use ResponseKind as Rs;
    Ok(Some(match request {
        Rq::ApiVersions(r) => Rs::ApiVersions(api_versions::handle(r, ctx)),
        Rq::Metadata(r) => Rs::Metadata(metadata::handle(broker, r, ctx).await),
        Rq::Produce(r) => return Ok(produce::handle(broker, r, ctx).await.map(Rs::Produce)),
        Rq::ListOffsets(r) => Rs::ListOffsets(list_offsets::handle(broker, r, ctx)),
        Rq::OffsetForLeaderEpoch(r) => {
            Rs::OffsetForLeaderEpoch(leader_epochs::handle(broker, r, ctx))
        }
        Rq::CreateTopics(r) => Rs::CreateTopics(topics::create_topics(broker, r, ctx).await),
        Rq::DeleteTopics(r) => Rs::DeleteTopics(topics::delete_topics(broker, r, ctx).await),
        Rq::CreatePartitions(r) => {
            Rs::CreatePartitions(topics::create_partitions(broker, r, ctx).await)
        }
        Rq::DescribeConfigs(r) => Rs::DescribeConfigs(configs::describe(broker, r, ctx)),
        Rq::AlterConfigs(r) => Rs::AlterConfigs(configs::alter(broker, r, ctx).await),
        Rq::IncrementalAlterConfigs(r) => {
            Rs::IncrementalAlterConfigs(configs::incremental_alter(broker, r, ctx).await)
        }
        Rq::DescribeCluster(r) => Rs::DescribeCluster(cluster::describe_cluster(broker, r, ctx)),
        Rq::InitProducerId(r) => {
            Rs::InitProducerId(cluster::init_producer_id(broker, r, ctx).await)
        }
        Rq::FindCoordinator(r) => {
            Rs::FindCoordinator(cluster::find_coordinator(broker, r, ctx).await)
        }
        Rq::DescribeLogDirs(r) => Rs::DescribeLogDirs(cluster::describe_log_dirs(broker, r, ctx)),
        Rq::DeleteRecords(r) => Rs::DeleteRecords(records::delete_records(broker, r, ctx)),
        Rq::JoinGroup(r) => Rs::JoinGroup(groups::join(broker, r, ctx).await),
        Rq::SyncGroup(r) => Rs::SyncGroup(groups::sync(broker, r, ctx).await),
        Rq::Heartbeat(r) => Rs::Heartbeat(groups::heartbeat(broker, r, ctx)),
        Rq::LeaveGroup(r) => Rs::LeaveGroup(groups::leave(broker, r, ctx)),
        Rq::DescribeGroups(r) => Rs::DescribeGroups(groups::describe(broker, r, ctx)),
        Rq::ListGroups(r) => Rs::ListGroups(groups::list(broker, r, ctx)),
        Rq::DeleteGroups(r) => Rs::DeleteGroups(groups::delete(broker, r, ctx)),
        Rq::OffsetCommit(r) => Rs::OffsetCommit(offsets::commit(broker, r, ctx).await),
        Rq::OffsetFetch(r) => Rs::OffsetFetch(offsets::fetch(broker, r, ctx)),
        Rq::OffsetDelete(r) => Rs::OffsetDelete(offsets::delete(broker, r, ctx)),
        Rq::AlterPartitionReassignments(r) => {
            Rs::AlterPartitionReassignments(reassign::alter(broker, r, ctx).await)
        }
        Rq::ListPartitionReassignments(r) => {
            Rs::ListPartitionReassignments(reassign::list(broker, r, ctx))
        }
        Rq::ConsumerGroupHeartbeat(r) => {
            Rs::ConsumerGroupHeartbeat(consumer_groups::heartbeat(broker, r, ctx))
        }
        Rq::ConsumerGroupDescribe(r) => {
            Rs::ConsumerGroupDescribe(consumer_groups::describe(broker, r, ctx))
        }
        Rq::DescribeQuorum(r) => Rs::DescribeQuorum(quorum::describe(broker, r, ctx).await),
        Rq::ElectLeaders(r) => Rs::ElectLeaders(elect::elect_leaders(broker, r, ctx).await),
        // `supported` and this match list the same APIs; reaching here is a bug, and closing
        // the connection is better than leaving the client waiting for an answer.
        _ => {
            return Err(Error::Protocol(format!(
                "{key:?} is advertised but has no handler"
            )))
        }
    }))
}

fn encode_response(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<Bytes> {
    encode_frame(key, version, correlation_id, |buf| {
        response.encode(buf, version)
    })
}

/// A size-prefixed response frame: the header, then whatever `body` encodes.
fn encode_frame(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: impl FnOnce(&mut BytesMut) -> anyhow::Result<()>,
) -> Result<Bytes> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    // ApiVersions responses always use header v0, even for flexible versions (KIP-511).
    let header_version = if key == ApiKey::ApiVersions {
        0
    } else {
        key.response_header_version(version)
    };
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, header_version)
        .map_err(|e| Error::Protocol(format!("encoding {key:?} header: {e}")))?;
    body(&mut buf).map_err(|e| Error::Protocol(format!("encoding {key:?} v{version}: {e}")))?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub(crate) use kafka_protocol::error::ResponseError as KafkaError;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every served API has an example request, so the hostile-input tests cover them all.
    #[test]
    fn every_served_api_has_an_empty_request() {
        let keys = served_keys();
        assert!(keys.len() >= 30, "{keys:?}");
        for k in keys {
            assert!(empty_request(k).is_some(), "{k:?}");
        }
    }

    /// A 2^31-1 element count at any position of any served request, at any version, is an
    /// error and not an allocation: kafka-protocol 0.18 reserved the claimed capacity up front
    /// and the process aborted (see vendor/kafka-protocol/FJORD-PATCH.md).
    #[test]
    fn a_huge_claimed_count_anywhere_in_any_request_is_refused_without_allocating() {
        let mut tried = 0;
        for key in served_keys() {
            let range = supported(key).expect("served");
            for version in range.min..=range.max {
                let mut body = BytesMut::new();
                empty_request(key)
                    .expect("served")
                    .encode(&mut body, version)
                    .expect("an empty request encodes");
                let huge: [&[u8]; 2] = [
                    &i32::MAX.to_be_bytes(),
                    // Unsigned varint 0xffff_fffe: a compact array of 2^32-3 elements.
                    &[0xfe, 0xff, 0xff, 0xff, 0x0f],
                ];
                for at in 0..=body.len() {
                    for h in huge {
                        let mut damaged = body[..at].to_vec();
                        damaged.extend_from_slice(h);
                        damaged.extend_from_slice(&body[(at + h.len()).min(body.len())..]);
                        let mut b = Bytes::from(damaged);
                        let _ = RequestKind::decode(key, &mut b, version);
                        tried += 1;
                    }
                }
            }
        }
        assert!(tried > 1000, "{tried}");
    }
}
