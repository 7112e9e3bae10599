//! Metadata: brokers, the controller, and topics with their ids and partition leaders.
//! Unknown topics are created on request when `auto.create.topics.enable` is on and the client
//! allows it, and returned at once (the creation is committed before the response).

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

use super::{str_bytes, KafkaError, RequestContext};
use crate::broker::Broker;
use crate::metadata::image::TopicImage;
use crate::metadata::topics::validate_topic_name;

pub(crate) fn topic_response(t: &TopicImage) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(&t.name))))
        .with_topic_id(t.id)
        .with_is_internal(t.is_internal())
        .with_partitions(
            t.partitions
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    MetadataResponsePartition::default()
                        .with_partition_index(i as i32)
                        .with_leader_id(BrokerId(p.leader))
                        .with_leader_epoch(p.leader_epoch)
                        .with_replica_nodes(p.replicas.iter().map(|b| BrokerId(*b)).collect())
                        .with_isr_nodes(p.isr.iter().map(|b| BrokerId(*b)).collect())
                })
                .collect(),
        )
}

fn error_topic(name: Option<&str>, id: Uuid, e: KafkaError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name.map(|n| TopicName(str_bytes(n))))
        .with_topic_id(id)
        .with_error_code(e.code())
}

pub async fn handle(
    broker: &Arc<Broker>,
    req: MetadataRequest,
    ctx: &RequestContext,
) -> MetadataResponse {
    let all = match &req.topics {
        None => true,
        Some(t) => ctx.version == 0 && t.is_empty(),
    };
    let mut topics = Vec::new();
    if all {
        let image = broker.metadata.image();
        topics.extend(image.topics.values().map(topic_response));
    } else {
        for t in req.topics.unwrap_or_default() {
            let image = broker.metadata.image();
            let name = t
                .name
                .as_ref()
                .map(|n| n.0.to_string())
                .filter(|n| !n.is_empty());
            let Some(name) = name else {
                match image.topic_by_id(&t.topic_id) {
                    Some(found) => topics.push(topic_response(found)),
                    None => topics.push(error_topic(None, t.topic_id, KafkaError::UnknownTopicId)),
                }
                continue;
            };
            if let Some(found) = image.topics.get(&name) {
                topics.push(topic_response(found));
                continue;
            }
            if validate_topic_name(&name).is_err() {
                topics.push(error_topic(
                    Some(&name),
                    Uuid::nil(),
                    KafkaError::InvalidTopicException,
                ));
                continue;
            }
            let may_create = broker.config.auto_create_topics_enable
                && (req.allow_auto_topic_creation || ctx.version < 4);
            if !may_create {
                topics.push(error_topic(
                    Some(&name),
                    Uuid::nil(),
                    KafkaError::UnknownTopicOrPartition,
                ));
                continue;
            }
            match broker.auto_create(&name).await {
                Ok(()) => match broker.metadata.image().topics.get(&name) {
                    Some(created) => topics.push(topic_response(created)),
                    None => topics.push(error_topic(
                        Some(&name),
                        Uuid::nil(),
                        KafkaError::LeaderNotAvailable,
                    )),
                },
                Err(r) => {
                    tracing::warn!(topic = %name, reason = %r.message, "auto-creation refused");
                    let e = kafka_protocol::error::ParseResponseErrorCode::err(r.code)
                        .unwrap_or(KafkaError::UnknownServerError);
                    topics.push(error_topic(Some(&name), Uuid::nil(), e));
                }
            }
        }
    }
    let image = broker.metadata.image();
    MetadataResponse::default()
        .with_brokers(
            image
                .brokers
                .values()
                .map(|b| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(b.node_id))
                        .with_host(str_bytes(&b.host))
                        .with_port(b.port)
                        .with_rack(b.rack.as_ref().map(str_bytes))
                })
                .collect(),
        )
        .with_cluster_id(Some(str_bytes(&broker.cluster_id)))
        .with_controller_id(BrokerId(broker.config.node_id))
        .with_topics(topics)
}
