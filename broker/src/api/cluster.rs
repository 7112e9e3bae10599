//! Cluster-level APIs: DescribeCluster, FindCoordinator, InitProducerId, DescribeLogDirs.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, DescribeLogDirsRequest,
    DescribeLogDirsResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, TopicName,
};

use super::{str_bytes, KafkaError, RequestContext};
use crate::broker::Broker;

/// DescribeCluster's endpoint types (KIP-919).
const BROKER_ENDPOINTS: i8 = 1;
const CONTROLLER_ENDPOINTS: i8 = 2;

/// DescribeCluster: on a client listener the brokers, on a controller listener the voters and
/// the active controller among them (what an admin client bootstrapped with
/// `bootstrap.controllers` routes DescribeQuorum to). Asking a listener for the other kind of
/// endpoints is MISMATCHED_ENDPOINT_TYPE, as in Kafka.
pub fn describe_cluster(
    broker: &Arc<Broker>,
    req: DescribeClusterRequest,
    ctx: &RequestContext,
) -> DescribeClusterResponse {
    let here = if ctx.connection.controller {
        CONTROLLER_ENDPOINTS
    } else {
        BROKER_ENDPOINTS
    };
    let asked = if ctx.version >= 1 {
        req.endpoint_type
    } else {
        BROKER_ENDPOINTS
    };
    let refuse = |error: KafkaError, message: String| {
        // v0 has no endpoint type, so its refusal is INVALID_REQUEST.
        let error = if ctx.version >= 1 {
            error
        } else {
            KafkaError::InvalidRequest
        };
        DescribeClusterResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(&message)))
            .with_endpoint_type(here)
            .with_cluster_id(str_bytes(&broker.cluster_id))
            .with_controller_id(BrokerId(-1))
    };
    if asked != BROKER_ENDPOINTS && asked != CONTROLLER_ENDPOINTS {
        return refuse(
            KafkaError::UnsupportedEndpointType,
            format!("unknown endpoint type {asked}"),
        );
    }
    if asked != here {
        let (sent, wanted) = if here == BROKER_ENDPOINTS {
            ("BROKER", "CONTROLLER")
        } else {
            ("CONTROLLER", "BROKER")
        };
        return refuse(
            KafkaError::MismatchedEndpointType,
            format!(
                "The request was sent to an endpoint of type {sent}, but we wanted an endpoint \
                 of type {wanted}"
            ),
        );
    }
    if here == CONTROLLER_ENDPOINTS {
        let leader = broker.metadata.quorum_status().leader;
        // A node alone (no `controller.quorum.voters`) is the one voter, on this listener.
        let alone = broker.config.voters.is_empty().then(|| {
            let l = broker.config.controller_listeners.first();
            let host = l.map_or("", |l| l.host.as_str());
            let voter = crate::quorum::VoterEndpoint {
                host: if host.is_empty() { "localhost" } else { host }.to_string(),
                port: l.map_or(0, |l| l.port),
            };
            std::collections::BTreeMap::from([(broker.config.node_id as u64, voter)])
        });
        let voters = alone.as_ref().unwrap_or(&broker.config.voters);
        let controller_id = leader
            .filter(|id| voters.contains_key(id))
            .map_or(-1, |id| id as i32);
        return DescribeClusterResponse::default()
            .with_cluster_id(str_bytes(&broker.cluster_id))
            .with_controller_id(BrokerId(controller_id))
            .with_endpoint_type(CONTROLLER_ENDPOINTS)
            .with_brokers(
                voters
                    .iter()
                    .map(|(id, v)| {
                        DescribeClusterBroker::default()
                            .with_broker_id(BrokerId(*id as i32))
                            .with_host(str_bytes(&v.host))
                            .with_port(v.port as i32)
                    })
                    .collect(),
            );
    }
    let image = broker.metadata.image();
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&broker.cluster_id))
        .with_controller_id(BrokerId(broker.config.node_id))
        .with_endpoint_type(BROKER_ENDPOINTS)
        .with_brokers(
            image
                .brokers
                .values()
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.node_id))
                        .with_host(str_bytes(&b.host))
                        .with_port(b.port)
                        .with_rack(b.rack.as_ref().map(str_bytes))
                })
                .collect(),
        )
}

const GROUP_KEY: i8 = 0;

pub async fn find_coordinator(
    broker: &Arc<Broker>,
    req: FindCoordinatorRequest,
    ctx: &RequestContext,
) -> FindCoordinatorResponse {
    let offsets_ready = if req.key_type == GROUP_KEY {
        broker.ensure_offsets_topic().await.map_err(|r| {
            tracing::error!(reason = %r.message, "cannot create the offsets topic");
        })
    } else {
        Ok(())
    };
    // A group's coordinator is the leader of its offsets partition; transactions are not
    // supported yet.
    let image = broker.metadata.image();
    let answer = |key: &str| -> Coordinator {
        let c = Coordinator::default().with_key(str_bytes(key));
        if req.key_type != GROUP_KEY {
            return c
                .with_error_code(KafkaError::CoordinatorNotAvailable.code())
                .with_error_message(Some(str_bytes(
                    "Transactions are not supported by this broker yet",
                )))
                .with_node_id(BrokerId(-1))
                .with_port(-1);
        }
        if offsets_ready.is_err() {
            return c
                .with_error_code(KafkaError::CoordinatorNotAvailable.code())
                .with_node_id(BrokerId(-1))
                .with_port(-1);
        }
        let partition = broker.groups.partition_for(key);
        let leader = image
            .topics
            .get(crate::group::OFFSETS_TOPIC)
            .and_then(|t| t.partitions.get(partition as usize))
            .map_or(-1, |p| p.leader);
        if leader == broker.config.node_id {
            return c
                .with_node_id(BrokerId(leader))
                .with_host(str_bytes(&broker.endpoint.host))
                .with_port(broker.endpoint.port);
        }
        match image.brokers.get(&leader) {
            Some(b) => c
                .with_node_id(BrokerId(leader))
                .with_host(str_bytes(&b.host))
                .with_port(b.port),
            // No leader (or one not registered): retriable, the client asks again.
            None => c
                .with_error_code(KafkaError::CoordinatorNotAvailable.code())
                .with_node_id(BrokerId(-1))
                .with_port(-1),
        }
    };
    if ctx.version >= 4 {
        let coordinators = req.coordinator_keys.iter().map(|k| answer(k)).collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = answer(&req.key);
    FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_error_message(c.error_message)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port)
}

pub async fn init_producer_id(
    broker: &Arc<Broker>,
    req: InitProducerIdRequest,
    _ctx: &RequestContext,
) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req
        .transactional_id
        .as_ref()
        .is_some_and(|t| !t.0.is_empty())
    {
        return resp.with_error_code(KafkaError::TransactionalIdAuthorizationFailed.code());
    }
    // Without a transactional id Kafka always answers with a new producer id at epoch 0, even
    // when the request names one (KIP-360's epoch bump is for transactional producers): a
    // claimed id is not checked against anything, so bumping it would let any client fence
    // another producer's batches.
    match broker.allocate_producer_id().await {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => resp.with_error_code(e.code),
    }
}

pub fn describe_log_dirs(
    broker: &Arc<Broker>,
    req: DescribeLogDirsRequest,
    _ctx: &RequestContext,
) -> DescribeLogDirsResponse {
    let wanted = |topic: &str, partition: i32| -> bool {
        match &req.topics {
            None => true,
            Some(ts) => ts
                .iter()
                .any(|t| t.topic.0.as_str() == topic && t.partitions.contains(&partition)),
        }
    };
    let mut by_topic: std::collections::BTreeMap<String, Vec<DescribeLogDirsPartition>> =
        Default::default();
    for p in broker.replicas.all() {
        if !wanted(&p.tp.topic, p.tp.partition) {
            continue;
        }
        let size = p.state.lock().log.size_bytes();
        by_topic.entry(p.tp.topic.clone()).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(p.tp.partition)
                .with_partition_size(size as i64),
        );
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default()
                .with_name(TopicName(str_bytes(name)))
                .with_partitions(partitions)
        })
        .collect();
    let dir = std::fs::canonicalize(broker.replicas.log_dir())
        .unwrap_or_else(|_| broker.replicas.log_dir().to_path_buf());
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(-1)
        .with_usable_bytes(-1)])
}
