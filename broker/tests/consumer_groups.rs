//! The consumer group protocol of KIP-848 over the wire: the broker assigns partitions by
//! topic id, a member gives partitions up before another member receives them, commits carry
//! member epochs, and ConsumerGroupDescribe shows the group. Real clients (librdkafka, the
//! Java consumer and `kafka-consumer-groups.sh`) are exercised in e2e/compat.

mod common;

use std::collections::BTreeSet;

use common::*;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
    GroupId, JoinGroupRequest, MetadataRequest, OffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn partitions(r: &ConsumerGroupHeartbeatResponse) -> Option<BTreeSet<i32>> {
    r.assignment.as_ref().map(|a| {
        a.topic_partitions
            .iter()
            .flat_map(|tp| tp.partitions.iter().copied())
            .collect()
    })
}

fn owned(topic_id: Uuid, ps: &BTreeSet<i32>) -> Option<Vec<TopicPartitions>> {
    Some(vec![TopicPartitions::default()
        .with_topic_id(topic_id)
        .with_partitions(ps.iter().copied().collect())])
}

fn join(group: &str, member: &str, topic: &str) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(vec![name(topic)]))
        .with_topic_partitions(Some(vec![]))
}

fn beat(
    group: &str,
    member: &str,
    epoch: i32,
    topic_id: Uuid,
    ps: &BTreeSet<i32>,
) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(-1)
        .with_topic_partitions(owned(topic_id, ps))
}

fn commit(group: &str, member: &str, epoch: i32, topic: &str) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_generation_id_or_member_epoch(epoch)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(1)])])
}

#[tokio::test]
async fn two_members_converge_without_owning_a_partition_twice() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("kip848");
    create_topic(&mut c, &t, 4, &[]).await?;
    let md = c
        .send(
            MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name(&t)))
            ])),
            12,
        )
        .await?;
    let topic_id = md.topics[0].topic_id;
    let g = topic("group");
    let (a, bm) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
    find_coordinator(&mut c, &g).await?;

    let r = c.send(join(&g, &a, &t), 1).await?;
    assert_eq!(
        (r.error_code, r.member_epoch),
        (0, 1),
        "{:?}",
        r.error_message
    );
    assert_eq!(r.heartbeat_interval_ms, 5000);
    assert_eq!(
        r.assignment.as_ref().unwrap().topic_partitions[0].topic_id,
        topic_id
    );
    let mut a_owned = partitions(&r).unwrap();
    assert_eq!(a_owned.len(), 4);

    // b joins: epoch 2, but nothing yet, since a still owns everything.
    let r = c.send(join(&g, &bm, &t), 1).await?;
    assert_eq!((r.error_code, r.member_epoch), (0, 2));
    assert_eq!(partitions(&r).unwrap().len(), 0);

    // a is told to keep two (its epoch stays 1 until it has let the others go) ...
    let r = c.send(beat(&g, &a, 1, topic_id, &a_owned), 1).await?;
    assert_eq!(r.member_epoch, 1);
    a_owned = partitions(&r).unwrap();
    assert_eq!(a_owned.len(), 2);
    // ... a commit at its epoch is accepted, one from an older epoch is stale.
    let r2 = c.send(commit(&g, &a, 1, &t), 9).await?;
    assert_eq!(r2.topics[0].partitions[0].error_code, 0);
    let r2 = c.send(commit(&g, &a, 0, &t), 9).await?;
    assert_eq!(
        r2.topics[0].partitions[0].error_code, 113,
        "STALE_MEMBER_EPOCH"
    );
    let r2 = c.send(commit(&g, &a, 7, &t), 9).await?;
    assert_eq!(
        r2.topics[0].partitions[0].error_code, 113,
        "STALE_MEMBER_EPOCH (from the future too, as Kafka 4.3 answers)"
    );

    // ... then reports it, and moves to epoch 2.
    let r = c.send(beat(&g, &a, 1, topic_id, &a_owned), 1).await?;
    assert_eq!(r.member_epoch, 2);
    let r = c
        .send(beat(&g, &bm, 2, topic_id, &BTreeSet::new()), 1)
        .await?;
    let b_owned = partitions(&r).unwrap();
    assert_eq!(b_owned.len(), 2);
    assert!(a_owned.is_disjoint(&b_owned));

    let d = c
        .send(
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(&g))]),
            0,
        )
        .await?;
    let dg = &d.groups[0];
    assert_eq!(dg.error_code, 0);
    assert_eq!(
        (
            dg.group_state.as_str(),
            dg.group_epoch,
            dg.assignor_name.as_str()
        ),
        ("Stable", 2, "uniform")
    );
    assert_eq!(dg.members.len(), 2);
    assert!(dg
        .members
        .iter()
        .all(|m| m.assignment.topic_partitions[0].topic_name.0.as_str() == t));

    // A classic JoinGroup cannot take over the live group.
    let r = c
        .send(
            JoinGroupRequest::default()
                .with_group_id(GroupId(s(&g)))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![
                    JoinGroupRequestProtocol::default().with_name(s("range"))
                ]),
            9,
        )
        .await?;
    assert_eq!(r.error_code, 23, "INCONSISTENT_GROUP_PROTOCOL");

    // Leaving (epoch -1) hands everything to the other member.
    let r = c
        .send(
            beat(&g, &bm, -1, topic_id, &b_owned).with_topic_partitions(None),
            1,
        )
        .await?;
    assert_eq!((r.error_code, r.member_epoch), (0, -1));
    let r = c.send(beat(&g, &a, 2, topic_id, &a_owned), 1).await?;
    assert_eq!(partitions(&r).unwrap().len(), 4);
    Ok(())
}

#[tokio::test]
async fn bad_heartbeats_get_an_error_and_a_reason() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let g = topic("group");
    find_coordinator(&mut c, &g).await?;
    let r = c
        .send(
            join(&g, "m", "t").with_server_assignor(Some(s("sticky"))),
            1,
        )
        .await?;
    assert_eq!(r.error_code, 112, "UNSUPPORTED_ASSIGNOR");
    assert!(r.error_message.unwrap().contains("sticky"));
    let r = c.send(join(&g, "", "t"), 1).await?;
    assert_eq!(
        r.error_code, 42,
        "INVALID_REQUEST: v1 members name themselves"
    );
    // Refused first heartbeats leave no group behind.
    let d = c
        .send(
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(&g))]),
            0,
        )
        .await?;
    assert_eq!(d.groups[0].error_code, 69, "GROUP_ID_NOT_FOUND");
    // Version 0: the broker names the member.
    let r = c.send(join(&g, "", "t"), 0).await?;
    assert_eq!(r.error_code, 0);
    assert!(!r.member_id.unwrap().is_empty());
    let r = c
        .send(beat(&g, "stranger", 3, Uuid::nil(), &BTreeSet::new()), 1)
        .await?;
    assert_eq!(r.error_code, 25, "UNKNOWN_MEMBER_ID");
    Ok(())
}
