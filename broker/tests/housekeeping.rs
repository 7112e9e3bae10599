//! Background work a user relies on without asking: retention and the metrics endpoint.

mod common;

use std::time::Duration;

use common::*;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn produce_one(c: &mut Client, t: &str, value: &str) -> TestResult {
    let (err, _) = produce(c, t, 0, batch(&[("k", value)], Compression::None), 1).await?;
    anyhow::ensure!(err == 0, "produce failed with {err}");
    Ok(())
}

async fn earliest(c: &mut Client, t: &str) -> TestResult<i64> {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(t))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-2)])]);
    Ok(c.send(req, 7).await?.topics[0].partitions[0].offset)
}

#[tokio::test]
async fn retention_bytes_deletes_old_segments_in_the_background() -> TestResult {
    let b = TestBroker::start(&["log.retention.check.interval.ms=100"]).await?;
    let mut c = b.client().await?;
    let t = topic("retention");
    let create = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name(&t))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(
            [("segment.bytes", "1024"), ("retention.bytes", "2048")]
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_static_str(k))
                        .with_value(Some(StrBytes::from_static_str(v)))
                })
                .collect(),
        )]);
    assert_eq!(c.send(create, 7).await?.topics[0].error_code, 0);
    let value = "v".repeat(300);
    for _ in 0..40 {
        produce_one(&mut c, &t, &value).await?;
    }
    // A retention pass can run while the records are still arriving: wait until one after the
    // last append has brought the log within retention.bytes (plus the active segment).
    let dir = b.dir.join(format!("{t}-0"));
    let on_disk = || -> u64 {
        std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                    .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                    .sum()
            })
            .unwrap_or(u64::MAX)
    };
    let (start, bytes) = eventually(
        "retention to move the log start and trim the log",
        Duration::from_secs(10),
        || async {
            let mut c = b.client().await.ok()?;
            let e = earliest(&mut c, &t).await.ok()?;
            let bytes = on_disk();
            (e > 0 && bytes <= 2048 + 1024).then_some((e, bytes))
        },
    )
    .await?;
    assert!(start < 40);
    assert!(bytes <= 2048 + 1024, "{bytes} bytes left on disk");
    Ok(())
}

#[tokio::test]
async fn metrics_report_requests_log_sizes_and_group_lag() -> TestResult {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listener = format!("fjord.metrics.listener=127.0.0.1:{port}");
    let b = TestBroker::start(&[listener.as_str()]).await?;
    let mut c = b.client().await?;
    let t = topic("metrics");
    let md = MetadataRequest::default().with_topics(Some(vec![
        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(name(&t))),
    ]));
    assert_eq!(
        c.send(md, 12).await?.topics[0].error_code,
        0,
        "auto-created"
    );
    for i in 0..5 {
        produce_one(&mut c, &t, &format!("v{i}")).await?;
    }
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("lagging")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic::default()
            .with_name(name(&t))
            .with_partitions(vec![
                kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(2),
            ])]);
    assert_eq!(
        c.send(commit, 8).await?.topics[0].partitions[0].error_code,
        0
    );
    // One replica can never satisfy min.insync.replicas=2.
    create_topic(&mut c, &topic("minisr"), 1, &[("min.insync.replicas", "2")]).await?;

    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    assert!(
        body.contains("kafka_network_requests_total{api=\"Produce\"} 5"),
        "{body}"
    );
    assert!(body.contains("kafka_network_request_duration_seconds_bucket{api=\"Produce\""));
    assert!(
        body.contains(&format!(
            "kafka_consumergroup_lag{{consumergroup=\"lagging\",partition=\"0\",topic=\"{t}\"}} 3"
        )),
        "{body}"
    );
    assert!(body.contains(&format!(
        "kafka_log_end_offset{{partition=\"0\",topic=\"{t}\"}} 5"
    )));
    assert!(body.contains(&format!(
        "kafka_log_size_bytes{{partition=\"0\",topic=\"{t}\"}}"
    )));
    assert!(body.contains("kafka_server_bytes_in_total"));
    // The topic, the minisr topic and three offsets partitions, all led here.
    for line in [
        "kafka_server_replicamanager_partitioncount 5",
        "kafka_server_replicamanager_leadercount 5",
        "kafka_server_replicamanager_underreplicatedpartitions 0",
        "kafka_server_replicamanager_underminisrpartitioncount 1",
        "kafka_controller_kafkacontroller_offlinepartitionscount 0",
        // A single node is the active controller of a cluster of one live broker.
        "kafka_controller_kafkacontroller_activecontrollercount 1",
        "kafka_controller_kafkacontroller_activebrokercount 1",
        "kafka_controller_kafkacontroller_fencedbrokercount 0",
        "kafka_server_replicamanager_isrshrinks_total 0",
    ] {
        assert!(body.lines().any(|l| l == line), "{line} in {body}");
    }
    Ok(())
}

/// A compacted topic loses superseded batches in the background; a consumer reading from the
/// start then sees the latest value of every key, at its original offset.
#[tokio::test]
async fn compaction_removes_superseded_records_in_the_background() -> TestResult {
    let b = TestBroker::start(&["log.retention.check.interval.ms=100"]).await?;
    let mut c = b.client().await?;
    let t = topic("compacted");
    create_topic(
        &mut c,
        &t,
        1,
        &[("segment.bytes", "1024"), ("cleanup.policy", "compact")],
    )
    .await?;
    let value = |round: usize, key: usize| format!("{round}-{key}-{}", "v".repeat(300));
    for round in 0..10 {
        for key in 0..4 {
            let k = format!("key{key}");
            let (err, _) = produce(
                &mut c,
                &t,
                0,
                batch(&[(&k, &value(round, key))], Compression::None),
                1,
            )
            .await?;
            anyhow::ensure!(err == 0, "produce failed with {err}");
        }
    }
    // Everything from offset 0 on, fetch by fetch.
    async fn read_all(c: &mut Client, t: &str) -> TestResult<Vec<(i64, String, String)>> {
        let mut out: Vec<(i64, String, String)> = Vec::new();
        loop {
            let next = out.last().map_or(0, |r| r.0 + 1);
            let got = records_of(&fetch(c, t, 0, next).await?)?;
            let got: Vec<_> = got.into_iter().filter(|r| r.0 >= next).collect();
            if got.is_empty() {
                return Ok(out);
            }
            out.extend(got);
        }
    }
    let compacted = eventually(
        "compaction to remove superseded batches",
        Duration::from_secs(10),
        || async {
            let mut c = b.client().await.ok()?;
            let all = read_all(&mut c, &t).await.ok()?;
            (all.len() < 20).then_some(all)
        },
    )
    .await?;
    // The last round is in the active segment or after it: every key's latest value is there.
    for key in 0..4 {
        let latest = compacted
            .iter()
            .rev()
            .find(|r| r.1 == format!("key{key}"))
            .expect("every key is still readable");
        assert_eq!(latest.2, value(9, key));
        assert_eq!(latest.0, 36 + key as i64, "at its original offset");
    }
    let offsets: Vec<i64> = compacted.iter().map(|r| r.0).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    Ok(())
}
