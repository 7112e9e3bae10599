//! The consumer group protocol of KIP-848 (`group.protocol=consumer`): ConsumerGroupHeartbeat
//! and ConsumerGroupDescribe. The logic is in `crate::group::consumer`.

use std::sync::Arc;

use kafka_protocol::messages::consumer_group_describe_response::{
    self as describe, DescribedGroup,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    self as heartbeat, ConsumerGroupHeartbeatResponse,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    TopicName,
};
use uuid::Uuid;

use super::{str_bytes, KafkaError, RequestContext};
use crate::broker::Broker;
use crate::group::consumer::{Assignment, Heartbeat, Refusal, Topics};
use crate::metadata::image::MetadataImage;

fn topics_of(image: &MetadataImage) -> Topics {
    image
        .topics
        .values()
        .map(|t| (t.name.clone(), (t.id, t.partitions.len() as i32)))
        .collect()
}

pub fn heartbeat(
    broker: &Arc<Broker>,
    req: ConsumerGroupHeartbeatRequest,
    ctx: &RequestContext,
) -> ConsumerGroupHeartbeatResponse {
    let refused = |Refusal(e, msg): Refusal| {
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(e.code())
            .with_error_message(Some(str_bytes(msg)))
            .with_member_epoch(-1)
    };
    let group = req.group_id.0.to_string();
    if group.is_empty() {
        return refused(Refusal(
            KafkaError::InvalidRequest,
            "GroupId can't be empty.".into(),
        ));
    }
    let mut member_id = req.member_id.to_string();
    if member_id.is_empty() && req.member_epoch == 0 && ctx.version == 0 {
        // Version 0: the coordinator names new members; from version 1 clients do.
        member_id = Uuid::new_v4().to_string();
    }
    let hb = Heartbeat {
        member_id,
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_names: req
            .subscribed_topic_names
            .as_ref()
            .map(|ns| ns.iter().map(|n| n.0.to_string()).collect()),
        subscribed_regex: req.subscribed_topic_regex.as_ref().map(|s| s.to_string()),
        server_assignor: req.server_assignor.as_ref().map(|s| s.to_string()),
        owned: req.topic_partitions.as_ref().map(|tps| {
            let mut a = Assignment::new();
            for tp in tps {
                a.entry(tp.topic_id)
                    .or_default()
                    .extend(tp.partitions.iter().copied());
            }
            a
        }),
        client_id: ctx.client_id.clone(),
        client_host: format!("/{}", ctx.connection.peer.ip()),
    };
    let topics = topics_of(&broker.metadata.image());
    match broker.groups.consumer_heartbeat(&group, hb, &topics) {
        Ok(r) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(str_bytes(r.member_id)))
            .with_member_epoch(r.member_epoch)
            .with_heartbeat_interval_ms(broker.groups.heartbeat_interval().as_millis() as i32)
            .with_assignment(r.assignment.map(|a| {
                heartbeat::Assignment::default().with_topic_partitions(
                    a.into_iter()
                        .map(|(id, ps)| {
                            heartbeat::TopicPartitions::default()
                                .with_topic_id(id)
                                .with_partitions(ps.into_iter().collect())
                        })
                        .collect(),
                )
            })),
        Err(refusal) => refused(refusal),
    }
}

fn described_assignment(a: &Assignment, image: &MetadataImage) -> describe::Assignment {
    describe::Assignment::default().with_topic_partitions(
        a.iter()
            .filter(|(_, ps)| !ps.is_empty())
            .map(|(id, ps)| {
                let name = image
                    .topic_by_id(id)
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                describe::TopicPartitions::default()
                    .with_topic_id(*id)
                    .with_topic_name(TopicName(str_bytes(name)))
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    )
}

pub fn describe(
    broker: &Arc<Broker>,
    req: ConsumerGroupDescribeRequest,
    _ctx: &RequestContext,
) -> ConsumerGroupDescribeResponse {
    let image = broker.metadata.image();
    let groups = req
        .group_ids
        .into_iter()
        .map(|id| {
            if let Err(e) = broker.groups.check_coordinator(id.0.as_str()) {
                return DescribedGroup::default()
                    .with_group_id(id)
                    .with_error_code(e.code());
            }
            let found = broker.groups.describe_consumer_group(id.0.as_str(), |g| {
                DescribedGroup::default()
                    .with_group_state(str_bytes(g.state_name()))
                    .with_group_epoch(g.epoch)
                    .with_assignment_epoch(g.assignment_epoch)
                    .with_assignor_name(str_bytes(g.assignor.clone()))
                    .with_members(
                        g.members
                            .values()
                            .map(|m| {
                                describe::Member::default()
                                    .with_member_id(str_bytes(m.id.clone()))
                                    .with_instance_id(m.instance_id.clone().map(str_bytes))
                                    .with_rack_id(m.rack_id.clone().map(str_bytes))
                                    .with_member_epoch(m.epoch)
                                    .with_client_id(str_bytes(m.client_id.clone()))
                                    .with_client_host(str_bytes(m.client_host.clone()))
                                    .with_subscribed_topic_names(
                                        m.subscribed_names
                                            .iter()
                                            .map(|n| TopicName(str_bytes(n.clone())))
                                            .collect(),
                                    )
                                    .with_subscribed_topic_regex(
                                        m.subscribed_regex.clone().map(str_bytes),
                                    )
                                    .with_assignment(described_assignment(&m.assigned, &image))
                                    .with_target_assignment(described_assignment(
                                        g.target.get(&m.id).unwrap_or(&Assignment::new()),
                                        &image,
                                    ))
                                    // 1: a member of the consumer protocol (0 is classic).
                                    .with_member_type(1)
                            })
                            .collect(),
                    )
            });
            match found {
                Some(g) => g.with_group_id(id),
                None => {
                    let (code, msg) = if broker.groups.is_classic_group(id.0.as_str()) {
                        (
                            KafkaError::GroupIdNotFound,
                            format!("Group {} is not a consumer group.", id.0.as_str()),
                        )
                    } else {
                        (
                            KafkaError::GroupIdNotFound,
                            format!("Group {} not found.", id.0.as_str()),
                        )
                    };
                    DescribedGroup::default()
                        .with_group_id(id)
                        .with_group_state(str_bytes("Dead"))
                        .with_error_code(code.code())
                        .with_error_message(Some(str_bytes(msg)))
                }
            }
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
