//! Replication between two real brokers over loopback, before the metadata quorum exists: both
//! start from the same metadata records written into their log directories (two registered
//! brokers, one topic whose partition has replicas [1, 2] and leader 1), so each holds the same
//! image. Broker 2's fetcher replicates from broker 1 with the Fetch API; the tests check what
//! the leader may acknowledge and serve, and that the replicas' logs end identical.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use fjord_broker::metadata::image::MetadataRecord;
use fjord_broker::metadata::MetadataLog;
use fjord_broker::BrokerConfig;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::records::Compression;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Node {
    addr: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<fjord_broker::Result<()>>,
}

impl Node {
    async fn client(&self) -> TestResult<Client> {
        Client::connect(self.addr).await
    }

    async fn stop(self) -> TestResult {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }

    /// As close to SIGKILL as an in-process broker gets: no shutdown path at all.
    async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn config(node_id: i32, dir: &Path) -> TestResult<BrokerConfig> {
    Ok(BrokerConfig::load(
        None,
        Vec::new(),
        &[
            format!("node.id={node_id}"),
            "listeners=PLAINTEXT://127.0.0.1:0".to_string(),
            format!("log.dirs={}", dir.display()),
            "fjord.metrics.listener=".to_string(),
            // Followers retry a lost leader quickly in tests.
            "replica.fetch.backoff.ms=50".to_string(),
            "offsets.topic.num.partitions=1".to_string(),
            "offsets.commit.timeout.ms=500".to_string(),
            "group.initial.rebalance.delay.ms=0".to_string(),
        ],
    )?)
}

/// Two bound (not started) nodes whose directories hold the same records: both brokers
/// registered, and one partition with replicas [1, 2] led by 1 for each topic named.
async fn two_nodes(
    d1: &Path,
    d2: &Path,
    topics: &[&str],
) -> TestResult<[(BrokerConfig, Vec<tokio::net::TcpListener>); 2]> {
    let named: Vec<(&str, uuid::Uuid)> =
        topics.iter().map(|t| (*t, uuid::Uuid::new_v4())).collect();
    two_nodes_with_ids(d1, d2, &named).await
}

async fn two_nodes_with_ids(
    d1: &Path,
    d2: &Path,
    topics: &[(&str, uuid::Uuid)],
) -> TestResult<[(BrokerConfig, Vec<tokio::net::TcpListener>); 2]> {
    let (c1, l1) = bind(1, d1).await?;
    let (c2, l2) = bind(2, d2).await?;
    let register = |node_id: i32, port: u16| MetadataRecord::RegisterBroker {
        node_id,
        host: "127.0.0.1".into(),
        port: port as i32,
        rack: None,
    };
    let mut records = vec![
        register(1, l1[0].local_addr()?.port()),
        register(2, l2[0].local_addr()?.port()),
    ];
    for &(name, topic_id) in topics {
        records.push(MetadataRecord::Topic {
            name: name.to_string(),
            topic_id,
        });
        records.push(MetadataRecord::Partition {
            topic_id,
            partition: 0,
            replicas: vec![1, 2],
            isr: vec![1, 2],
            leader: 1,
            leader_epoch: 0,
        });
    }
    seed(d1, &records)?;
    seed(d2, &records)?;
    Ok([(c1, l1), (c2, l2)])
}

/// Binds a node's listener (its port goes into the shared records) without starting it.
async fn bind(
    node_id: i32,
    dir: &Path,
) -> TestResult<(BrokerConfig, Vec<tokio::net::TcpListener>)> {
    let config = config(node_id, dir)?;
    let listeners = fjord_broker::bind(&config).await?;
    Ok((config, listeners))
}

async fn start(config: BrokerConfig, listeners: Vec<tokio::net::TcpListener>) -> TestResult<Node> {
    let addr = listeners[0].local_addr()?;
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(fjord_broker::run(listeners, config, async move {
        let _ = rx.await;
    }));
    eventually(
        "the broker answers ApiVersions",
        Duration::from_secs(20),
        || async {
            let mut c = Client::connect(addr).await.ok()?;
            c.api_versions().await.ok()
        },
    )
    .await?;
    Ok(Node { addr, stop, task })
}

fn seed(dir: &Path, records: &[MetadataRecord]) -> TestResult {
    let (mut log, existing) = MetadataLog::open(dir, false)?;
    anyhow::ensure!(existing.is_empty(), "seeding a used directory");
    log.append(records)?;
    log.close()?;
    Ok(())
}

/// What the controller would publish, committed to a stopped node's metadata quorum.
async fn append_metadata(dir: &Path, node_id: i32, records: &[MetadataRecord]) -> TestResult {
    let endpoint = fjord_broker::quorum::VoterEndpoint {
        host: "127.0.0.1".into(),
        port: 9093,
    };
    let voters = BTreeMap::from([(node_id as u64, endpoint)]);
    let m = fjord_broker::metadata::Metadata::open(dir, false, node_id, &voters).await?;
    m.commit(|_| Ok::<_, anyhow::Error>(records.to_vec()))
        .await??;
    m.close().await?;
    Ok(())
}

async fn produce_with(
    c: &mut Client,
    topic: &str,
    values: &[(&str, &str)],
    acks: i16,
    timeout_ms: i32,
) -> TestResult<(i16, i64)> {
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch(values, Compression::None)))])]);
    let r = c.send(req, 11).await?;
    let p = &r.responses[0].partition_responses[0];
    Ok((p.error_code, p.base_offset))
}

#[tokio::test]
async fn a_follower_replicates_and_acks_all_waits_for_it() -> TestResult {
    let (d1, d2) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let t = topic("replicated");
    let [(c1, l1), (c2, l2)] = two_nodes(d1.path(), d2.path(), &[&t]).await?;
    let leader = start(c1, l1).await?;
    let follower = start(c2, l2).await?;
    let mut c = leader.client().await?;

    // acks=all is answered once the follower has the records: the high watermark moved.
    for i in 0..5 {
        let v = format!("v{i}");
        let (err, base) = produce_with(&mut c, &t, &[("k", &v)], -1, 10_000).await?;
        assert_eq!((err, base), (0, i), "acks=all produce {i}");
    }
    let r = fetch(&mut c, &t, 0, 0).await?;
    assert_eq!(r.responses[0].partitions[0].high_watermark, 5);
    assert_eq!(records_of(&r)?.len(), 5);
    // Clients are served by the leader only.
    let mut f = follower.client().await?;
    let r = fetch(&mut f, &t, 0, 0).await?;
    assert_eq!(
        r.responses[0].partitions[0].error_code, 6,
        "NOT_LEADER_OR_FOLLOWER"
    );
    let (err, _) = produce_with(&mut f, &t, &[("k", "x")], 1, 1000).await?;
    assert_eq!(err, 6);

    // Without the follower, acks=1 still appends; acks=all waits for it and times out (the ISR
    // keeps it: shrinking needs the controller, which the quorum brings).
    follower.crash().await;
    let (err, base) = produce_with(&mut c, &t, &[("k", "one")], 1, 1000).await?;
    assert_eq!((err, base), (0, 5));
    let (err, _) = produce_with(&mut c, &t, &[("k", "all")], -1, 300).await?;
    assert_eq!(err, 7, "REQUEST_TIMED_OUT");
    // Consumers never see what is not replicated.
    let r = fetch(&mut c, &t, 0, 5).await?;
    assert_eq!(r.responses[0].partitions[0].high_watermark, 5);
    assert_eq!(records_of(&r)?.len(), 0);

    // The follower comes back, catches up, and the high watermark follows.
    let (c2, l2) = bind(2, d2.path()).await?;
    let follower = start(c2, l2).await?;
    let addr = leader.addr;
    eventually("the follower catches up", Duration::from_secs(20), || {
        let t = t.clone();
        async move {
            let mut c = Client::connect(addr).await.ok()?;
            let r = fetch(&mut c, &t, 0, 0).await.ok()?;
            (r.responses[0].partitions[0].high_watermark == 7).then_some(())
        }
    })
    .await?;
    let (err, base) = produce_with(&mut c, &t, &[("k", "after")], -1, 10_000).await?;
    assert_eq!((err, base), (0, 7));

    follower.stop().await?;
    leader.stop().await?;
    let dir = format!("{t}-0");
    let (on1, on2) = (segments(d1.path(), &dir)?, segments(d2.path(), &dir)?);
    assert!(!on1.is_empty());
    assert_eq!(on1, on2, "the replicas' logs are byte-identical");
    Ok(())
}

/// The group coordinator follows the leadership of the group's offsets partition: the other
/// broker answers NOT_COORDINATOR and FindCoordinator points at the leader; a commit is answered
/// once the follower has it, and without the follower it is COORDINATOR_NOT_AVAILABLE and
/// never becomes visible.
#[tokio::test]
async fn the_coordinator_is_the_offsets_leader_and_commits_wait_for_replication() -> TestResult {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{
        FindCoordinatorRequest, GroupId, OffsetCommitRequest, OffsetFetchRequest,
    };
    use kafka_protocol::protocol::StrBytes;
    let (d1, d2) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let t = topic("data");
    let [(c1, l1), (c2, l2)] = two_nodes(d1.path(), d2.path(), &[&t, "__consumer_offsets"]).await?;
    let leader = start(c1, l1).await?;
    let follower = start(c2, l2).await?;
    let group = GroupId(StrBytes::from_string(topic("g")));
    let commit = |offset: i64| {
        OffsetCommitRequest::default()
            .with_group_id(group.clone())
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(name(&t))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)])])
    };
    let fetch_committed = OffsetFetchRequest::default()
        .with_group_id(group.clone())
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(name(&t))
            .with_partition_indexes(vec![0])]));

    let mut f = follower.client().await?;
    let r = f
        .send(
            FindCoordinatorRequest::default().with_key(group.0.clone()),
            3,
        )
        .await?;
    assert_eq!(
        (r.error_code, r.node_id.0, r.port),
        (0, 1, leader.addr.port() as i32)
    );
    let r = f.send(commit(1), 8).await?;
    assert_eq!(r.topics[0].partitions[0].error_code, 16, "NOT_COORDINATOR");
    let r = f
        .send(
            OffsetFetchRequest::default().with_group_id(group.clone()),
            7,
        )
        .await?;
    assert_eq!(r.error_code, 16);

    let mut c = leader.client().await?;
    let r = c.send(commit(3), 8).await?;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let r = c.send(fetch_committed.clone(), 7).await?;
    assert_eq!(
        (r.error_code, r.topics[0].partitions[0].committed_offset),
        (0, 3)
    );

    follower.crash().await;
    let r = c.send(commit(4), 8).await?;
    assert_eq!(
        r.topics[0].partitions[0].error_code, 15,
        "COORDINATOR_NOT_AVAILABLE: not replicated within offsets.commit.timeout.ms"
    );
    let r = c.send(fetch_committed, 7).await?;
    assert_eq!(
        (r.error_code, r.topics[0].partitions[0].committed_offset),
        (0, 3),
        "an unreplicated commit is not visible"
    );
    leader.stop().await?;
    Ok(())
}

/// KIP-595's diverging epoch: a leader writes records its follower never gets, loses
/// leadership, and the new leader writes others at the same offsets. When the old leader comes
/// back as a follower, it truncates its unreplicated tail and takes the new leader's records:
/// both logs end byte-identical.
#[tokio::test]
async fn a_follower_truncates_a_tail_the_new_leader_never_had() -> TestResult {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{BrokerId, ListOffsetsRequest};
    let (d1, d2) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let t = topic("diverge");
    let topic_id = uuid::Uuid::new_v4();
    let [(c1, l1), (c2, l2)] = two_nodes_with_ids(d1.path(), d2.path(), &[(&t, topic_id)]).await?;
    let node1 = start(c1, l1).await?;
    let node2 = start(c2, l2).await?;
    let mut c = node1.client().await?;
    for v in ["a", "b"] {
        assert_eq!(
            produce_with(&mut c, &t, &[("k", v)], -1, 10_000).await?.0,
            0
        );
    }
    // Only the leader gets these two.
    node2.crash().await;
    for v in ["lost1", "lost2"] {
        assert_eq!(produce_with(&mut c, &t, &[("k", v)], 1, 1000).await?.0, 0);
    }
    node1.stop().await?;

    // The controller moves leadership to 2 (epoch 1); 2 writes at offset 2.
    let (c2, l2) = bind(2, d2.path()).await?;
    let moved = MetadataRecord::Partition {
        topic_id,
        partition: 0,
        replicas: vec![1, 2],
        isr: vec![2],
        leader: 2,
        leader_epoch: 1,
    };
    let node2_at = MetadataRecord::RegisterBroker {
        node_id: 2,
        host: "127.0.0.1".into(),
        port: l2[0].local_addr()?.port() as i32,
        rack: None,
    };
    append_metadata(d2.path(), 2, std::slice::from_ref(&moved)).await?;
    append_metadata(d1.path(), 1, &[moved, node2_at]).await?;
    let node2 = start(c2, l2).await?;
    let mut c = node2.client().await?;
    let (err, base) = produce_with(&mut c, &t, &[("k", "new")], 1, 1000).await?;
    assert_eq!((err, base), (0, 2));

    // 1 returns as a follower: its fetch from offset 4 in epoch 0 diverges at offset 2.
    let (c1, l1) = bind(1, d1.path()).await?;
    let node1 = start(c1, l1).await?;
    let (err, base) = produce_with(&mut c, &t, &[("k", "newer")], -1, 10_000).await?;
    assert_eq!((err, base), (0, 3));
    let addr = node1.addr;
    let t2 = t.clone();
    eventually("the old leader catches up", Duration::from_secs(20), || {
        let t = t2.clone();
        async move {
            let mut c = Client::connect(addr).await.ok()?;
            // The debugging replica id may ask a follower; its high watermark is the leader's
            // as far as its own log reaches.
            let req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-2))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(name(&t))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1)])]);
            let r = c.send(req, 4).await.ok()?;
            (r.topics[0].partitions[0].offset == 4).then_some(())
        }
    })
    .await?;
    let r = fetch(&mut c, &t, 0, 0).await?;
    let values: Vec<String> = records_of(&r)?.into_iter().map(|(_, _, v)| v).collect();
    assert_eq!(values, ["a", "b", "new", "newer"]);
    node1.stop().await?;
    node2.stop().await?;
    let dir = format!("{t}-0");
    assert_eq!(
        segments(d1.path(), &dir)?,
        segments(d2.path(), &dir)?,
        "the truncated follower's log is the new leader's, byte for byte"
    );
    Ok(())
}
