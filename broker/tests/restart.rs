//! Durability across restarts: topics (with their ids), configs, records and committed offsets.

mod common;

use std::time::Duration;

use common::*;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

async fn produce_n(c: &mut Client, t: &str, from: usize, n: usize) -> TestResult {
    for i in from..from + n {
        let v = format!("value-{i}");
        let (err, _) = produce(c, t, 0, batch(&[("k", v.as_str())], Compression::Gzip), 1).await?;
        anyhow::ensure!(err == 0, "produce failed with {err}");
    }
    Ok(())
}

async fn read_all(c: &mut Client, t: &str) -> TestResult<Vec<(i64, String, String)>> {
    records_of(&fetch(c, t, 0, 0).await?)
}

#[tokio::test]
async fn topics_configs_records_and_offsets_survive_a_restart() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("durable");
    let create = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name(&t))
        .with_num_partitions(2)
        .with_replication_factor(1)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("retention.ms"))
            .with_value(Some(StrBytes::from_static_str("123456789")))])]);
    assert_eq!(c.send(create, 7).await?.topics[0].error_code, 0);
    let (_, id) = metadata(&mut c, &t, true).await?;
    produce_n(&mut c, &t, 0, 20).await?;
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g1")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(name(&t))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(17)])]);
    let r = c.send(commit, 8).await?;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let before = read_all(&mut c, &t).await?;
    assert_eq!(before.len(), 20);
    drop(c);

    let (dir, guard) = b.stop().await?;
    let b = TestBroker::start_in(&dir, &[]).await?;
    let mut c = b.client().await?;
    assert_eq!(
        metadata(&mut c, &t, true).await?,
        (0, id),
        "same topic id after restart"
    );
    assert_eq!(read_all(&mut c, &t).await?, before);
    let configs = c
        .send(
            DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_string(t.clone()))
                    .with_configuration_keys(Some(vec![StrBytes::from_static_str("retention.ms")])),
            ]),
            4,
        )
        .await?;
    let entry = &configs.results[0].configs[0];
    assert_eq!(entry.value.as_deref(), Some("123456789"));
    assert_eq!(entry.config_source, 1, "a topic override");
    let fetched = c
        .send(
            OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g1")))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(name(&t))
                    .with_partition_indexes(vec![0, 1])])),
            7,
        )
        .await?;
    let parts = &fetched.topics[0].partitions;
    assert_eq!(
        (parts[0].committed_offset, parts[1].committed_offset),
        (17, -1)
    );
    // Offsets continue where they were.
    produce_n(&mut c, &t, 20, 1).await?;
    assert_eq!(read_all(&mut c, &t).await?.last().map(|r| r.0), Some(20));
    b.stop().await?;
    drop(guard);
    Ok(())
}

#[tokio::test]
async fn acknowledged_records_survive_a_crash() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("crash");
    metadata(&mut c, &t, true).await?; // auto-creates
    produce_n(&mut c, &t, 0, 50).await?;
    drop(c);
    let (dir, guard) = b.crash().await?;
    let b = TestBroker::start_in(&dir, &[]).await?;
    let mut c = b.client().await?;
    let got = read_all(&mut c, &t).await?;
    assert_eq!(
        got.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..50).collect::<Vec<_>>()
    );
    assert_eq!(got[49].2, "value-49");
    b.stop().await?;
    drop(guard);
    Ok(())
}

/// Starts a broker in `dir`, failing (instead of hanging) when start-up takes over 30 s.
async fn start_within_30s(dir: &std::path::Path, extra: &[&str]) -> TestResult<TestBroker> {
    tokio::time::timeout(Duration::from_secs(30), TestBroker::start_in(dir, extra))
        .await
        .map_err(|_| anyhow::anyhow!("start-up did not finish"))?
}

/// The offset `group` committed for partition 0 of `t`.
async fn committed(c: &mut Client, group: &str, t: &str) -> TestResult<i64> {
    let fetched = c
        .send(
            OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(name(t))
                    .with_partition_indexes(vec![0])])),
            7,
        )
        .await?;
    Ok(fetched.topics[0].partitions[0].committed_offset)
}

/// The group coordinator reloads committed offsets at start-up. It used to advance by the
/// records it decoded, so a stored batch whose records end before its last offset (what a
/// damaged file or a compacted batch can hold) was read again and again: start-up never ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offsets_batch_that_ends_short_does_not_hang_start_up() -> TestResult {
    const ONE: &[&str] = &["offsets.topic.num.partitions=1"];
    let b = TestBroker::start(ONE).await?;
    let mut c = b.client().await?;
    let t = topic("short");
    metadata(&mut c, &t, true).await?;
    let commit = |group: &str, offset: i64| commit_request(group, &t, offset);
    let r = c.send(commit("g1", 17), 8).await?;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    drop(c);
    let (dir, guard) = b.stop().await?;

    // Copy the stored commit batch to offset 1 with lastOffsetDelta 3 (its one record stays
    // at offset 1: the batch ends short of offset 4), CRC fixed, as a crash would leave it.
    let seg = dir
        .join("__consumer_offsets-0")
        .join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&seg)?;
    let len = 12 + i32::from_be_bytes(bytes[8..12].try_into()?) as usize;
    anyhow::ensure!(bytes.len() == len, "one batch in the offsets log");
    let mut short = bytes.clone();
    short[0..8].copy_from_slice(&1i64.to_be_bytes());
    short[23..27].copy_from_slice(&3i32.to_be_bytes());
    let crc = crc32c::crc32c(&short[21..]);
    short[17..21].copy_from_slice(&crc.to_be_bytes());
    bytes.extend_from_slice(&short);
    std::fs::write(&seg, &bytes)?;

    let b = start_within_30s(&dir, ONE).await?;
    let mut c = b.client().await?;
    assert_eq!(committed(&mut c, "g1", &t).await?, 17);
    // New commits land after the short batch and survive another restart.
    let r = c.send(commit("g2", 5), 8).await?;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    drop(c);
    let (dir, _) = b.stop().await?;
    let b = start_within_30s(&dir, ONE).await?;
    let mut c = b.client().await?;
    assert_eq!(committed(&mut c, "g2", &t).await?, 5);
    b.stop().await?;
    drop(guard);
    Ok(())
}

#[tokio::test]
async fn a_recreated_topic_starts_empty_with_a_new_id() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("recreate");
    let (_, first) = metadata(&mut c, &t, true).await?;
    produce_n(&mut c, &t, 0, 5).await?;
    let del = c
        .send(
            DeleteTopicsRequest::default()
                .with_topics(vec![DeleteTopicState::default().with_name(Some(name(&t)))]),
            6,
        )
        .await?;
    assert_eq!(del.responses[0].error_code, 0);
    assert_eq!(
        metadata(&mut c, &t, false).await?.0,
        3,
        "UNKNOWN_TOPIC_OR_PARTITION after delete"
    );
    let (_, second) = metadata(&mut c, &t, true).await?; // auto-created again
    assert_ne!(first, second);
    assert!(read_all(&mut c, &t).await?.is_empty());
    Ok(())
}
