//! Clusters of combined broker-and-controller nodes (see `common::cluster`): metadata shared
//! through the quorum, partitions replicated between nodes, and what happens when a node
//! dies, comes back, or shuts down: the active controller fences a silent broker, a follower
//! in the ISR takes over, no acknowledged record is lost, and the returning broker catches up
//! and rejoins the ISR.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::cluster::{partitions, wait_for_partition, Cluster, PartitionView};
use common::*;
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ApiVersionsRequest, BrokerId, CreateTopicsRequest,
    DescribeClusterRequest, ListPartitionReassignmentsRequest, MetadataRequest, ProduceRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

/// Creates `t` with `partitions` partitions of `rf` replicas (or the `assignment` given) and
/// `min.insync.replicas=2`.
async fn create(
    c: &mut Client,
    t: &str,
    partitions: i32,
    rf: i16,
    assignment: Option<Vec<i32>>,
) -> TestResult {
    let mut topic = CreatableTopic::default()
        .with_name(name(t))
        .with_num_partitions(partitions)
        .with_replication_factor(rf)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("min.insync.replicas"))
            .with_value(Some(StrBytes::from_static_str("2")))]);
    if let Some(replicas) = assignment {
        topic = topic
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(vec![CreatableReplicaAssignment::default()
                .with_partition_index(0)
                .with_broker_ids(replicas.into_iter().map(BrokerId).collect())]);
    }
    let r = c
        .send(CreateTopicsRequest::default().with_topics(vec![topic]), 7)
        .await?;
    anyhow::ensure!(
        r.topics[0].error_code == 0,
        "create {t}: {:?}",
        r.topics[0].error_message
    );
    Ok(())
}

/// One record `v` to partition 0 of `t`; returns (error code, base offset).
async fn send(c: &mut Client, t: &str, v: &str, acks: i16) -> TestResult<(i16, i64)> {
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(t))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch(&[("k", v)], Compression::None)))])]);
    let r = c.send(req, 11).await?;
    let p = &r.responses[0].partition_responses[0];
    Ok((p.error_code, p.base_offset))
}

/// The values of partition 0 of `t` from the start, as the node at `addr` serves them.
async fn values(addr: std::net::SocketAddr, t: &str) -> TestResult<Vec<String>> {
    let mut c = Client::connect(addr).await?;
    let r = fetch(&mut c, t, 0, 0).await?;
    anyhow::ensure!(r.responses[0].partitions[0].error_code == 0, "fetch error");
    Ok(records_of(&r)?.into_iter().map(|(_, _, v)| v).collect())
}

/// DescribeQuorum for the metadata partition, as `kafka-metadata-quorum.sh` sends it.
fn describe_quorum() -> kafka_protocol::messages::DescribeQuorumRequest {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    kafka_protocol::messages::DescribeQuorumRequest::default().with_topics(vec![
        TopicData::default()
            .with_topic_name(name("__cluster_metadata"))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)]),
    ])
}

/// ElectLeaders (preferred) for partition 0 of `t`, as `kafka-leader-election.sh` sends it.
fn elect_preferred(t: &str) -> kafka_protocol::messages::ElectLeadersRequest {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    kafka_protocol::messages::ElectLeadersRequest::default()
        .with_election_type(0)
        .with_timeout_ms(30_000)
        .with_topic_partitions(Some(vec![TopicPartitions::default()
            .with_topic(name(t))
            .with_partitions(vec![0])]))
}

/// Creates `t` with one partition of three replicas (`min.insync.replicas=2`) through node 1,
/// and returns it once all three are in sync.
async fn rf3_topic(cluster: &Cluster, t: &str) -> TestResult<PartitionView> {
    create(&mut cluster.node(1).client_conn().await?, t, 1, 3, None).await?;
    wait_for_partition(cluster.node(1).addr, t, 0, "three in sync", |p| {
        p.isr.len() == 3
    })
    .await
}

/// Waits until a node other than `old` shows partition 0 of `t` led by another node, and that
/// node serves it (it applied its leadership).
async fn new_leader(cluster: &Cluster, t: &str, old: i32) -> TestResult<PartitionView> {
    let watcher = cluster.other_than(&[old]).addr;
    let after = wait_for_partition(watcher, t, 0, "a new leader", |p| {
        p.leader >= 0 && p.leader != old
    })
    .await?;
    let new = after.leader;
    wait_for_partition(cluster.node(new).addr, t, 0, "the new leader knows", |p| {
        p.leader == new
    })
    .await?;
    Ok(after)
}

/// Restarts `old` and waits until `leader` shows all three replicas in sync again.
async fn rejoin(cluster: &mut Cluster, t: &str, old: i32, leader: i32) -> TestResult {
    cluster.restart(old).await?;
    wait_for_partition(
        cluster.node(leader).addr,
        t,
        0,
        "the old leader back in the ISR",
        |p| p.isr.len() == 3,
    )
    .await?;
    Ok(())
}

/// Every node's segment files of `partition_dir` are byte-identical.
fn assert_identical(dirs: &[PathBuf], partition_dir: &str) -> TestResult {
    let first = segments(&dirs[0], partition_dir)?;
    assert!(!first.is_empty());
    for d in &dirs[1..] {
        assert_eq!(
            segments(d, partition_dir)?,
            first,
            "{partition_dir} is byte-identical on every replica"
        );
    }
    Ok(())
}

#[tokio::test]
async fn three_voters_share_metadata_and_replicate_a_topic() -> TestResult {
    let cluster = Cluster::start(3, &[]).await?;
    let t = topic("rf3");

    // Created through node 2, whichever node leads the quorum.
    let mut c = Client::connect(cluster.node(2).addr).await?;
    let r = c
        .send(
            CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
                .with_name(name(&t))
                .with_num_partitions(3)
                .with_replication_factor(3)]),
            7,
        )
        .await?;
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);

    // Every node serves the same assignment: three replicas each, all in sync, leaders spread.
    let expected = partitions(cluster.node(2).addr, &t).await?;
    assert_eq!(expected.len(), 3);
    for p in &expected {
        assert_eq!(p.replicas.len(), 3);
        assert_eq!(p.isr.len(), 3);
        assert!(p.replicas.contains(&p.leader));
    }
    let leaders: std::collections::BTreeSet<i32> = expected.iter().map(|p| p.leader).collect();
    assert_eq!(leaders.len(), 3, "one leader per node: {expected:?}");
    for node in &cluster.nodes {
        let addr = node.addr;
        let t = t.clone();
        let want = expected.clone();
        eventually("every node has the topic", Duration::from_secs(20), || {
            let t = t.clone();
            let want = want.clone();
            async move { (partitions(addr, &t).await.ok()? == want).then_some(()) }
        })
        .await?;
    }

    // acks=all on each partition's leader is answered once both followers have the records.
    for p in &expected {
        let (partition, leader) = (&p.partition, &p.leader);
        let mut c = Client::connect(cluster.node(*leader).addr).await?;
        for i in 0..5 {
            let req = ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(10_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(name(&t))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(*partition)
                        .with_records(Some(batch(
                            &[("k", &format!("p{partition}-{i}"))],
                            Compression::None,
                        )))])]);
            let r = c.send(req, 11).await?;
            let p = &r.responses[0].partition_responses[0];
            assert_eq!(
                (p.error_code, p.base_offset),
                (0, i),
                "partition {partition}"
            );
        }
        let r = fetch(&mut c, &t, *partition, 0).await?;
        assert_eq!(r.responses[0].partitions[0].high_watermark, 5);
    }

    // DescribeQuorum (kafka-metadata-quorum.sh) answers the same on every node: one leader,
    // three voters with their controller endpoints, each holding the log.
    let mut leaders = std::collections::BTreeSet::new();
    for node in &cluster.nodes {
        let addr = node.addr;
        let (leader, voters, endpoints) = eventually(
            "the quorum described",
            Duration::from_secs(20),
            || async move {
                let mut c = Client::connect(addr).await.ok()?;
                let r = c.send(describe_quorum(), 2).await.ok()?;
                let p = &r.topics[0].partitions[0];
                let caught_up = p.current_voters.len() == 3
                    && p.current_voters.iter().all(|v| v.log_end_offset > 0);
                (p.error_code == 0 && caught_up && p.high_watermark > 0).then(|| {
                    let voters: Vec<i32> =
                        p.current_voters.iter().map(|v| v.replica_id.0).collect();
                    let endpoints: Vec<usize> = r.nodes.iter().map(|n| n.listeners.len()).collect();
                    (p.leader_id.0, voters, endpoints)
                })
            },
        )
        .await?;
        assert_eq!(voters, [1, 2, 3]);
        assert_eq!(endpoints, [1, 1, 1]);
        leaders.insert(leader);
    }
    assert_eq!(leaders.len(), 1, "one quorum leader: {leaders:?}");

    let dirs: Vec<PathBuf> = cluster.nodes.iter().map(|n| n.dir.clone()).collect();
    let _kept = cluster.stop().await?;
    for p in 0..3 {
        assert_identical(&dirs, &format!("{t}-{p}"))?;
    }
    Ok(())
}

/// Acceptance 2 of issue 8 with the node killed in-process: the leader of an RF 3 partition
/// with `min.insync.replicas=2` dies; the active controller fences it after
/// `broker.session.timeout.ms`, a follower from the ISR leads at a new epoch, `acks=all` goes on,
/// and every acknowledged record is there once, in order. The dead node restarts, catches up,
/// rejoins the ISR, and ends with the same bytes as the others.
async fn cluster_id(addr: std::net::SocketAddr) -> TestResult<Option<String>> {
    let mut c = Client::connect(addr).await?;
    let r = c
        .send(MetadataRequest::default().with_topics(Some(vec![])), 12)
        .await?;
    Ok(r.cluster_id.map(|id| id.to_string()))
}

#[tokio::test]
async fn every_node_reports_the_cluster_id_and_a_foreign_directory_is_refused() -> TestResult {
    let mut cluster = Cluster::start(3, &[]).await?;
    // Nobody was given an id: the first node to start committed one, and all report it,
    // broker-only nodes included (librdkafka warns of a client connected to several clusters
    // when they differ).
    let id = cluster_id(cluster.node(1).addr)
        .await?
        .expect("a cluster id");
    assert_eq!(id.len(), 22, "{id}");
    cluster.add_broker().await?;
    cluster.wait_for_brokers(4).await?;
    for node in &cluster.nodes {
        assert_eq!(cluster_id(node.addr).await?.as_deref(), Some(id.as_str()));
        let meta = std::fs::read_to_string(node.dir.join("meta.properties"))?;
        assert!(meta.contains(&format!("cluster.id={id}\n")), "{meta}");
    }

    // A directory of another cluster does not join this one.
    cluster.stop_node(3).await?;
    let meta = cluster.node(3).dir.join("meta.properties");
    std::fs::write(
        &meta,
        "version=1\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\nnode.id=3\n",
    )?;
    cluster.restart(3).await?;
    let err = cluster
        .exit_of(3, Duration::from_secs(30))
        .await?
        .expect_err("start-up refused");
    let text = err.to_string();
    assert!(
        text.contains("cluster.id")
            && text.contains("AAAAAAAAAAAAAAAAAAAAAA")
            && text.contains(&id),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn controller_only_nodes_run_the_quorum_and_fence_a_dead_broker() -> TestResult {
    let mut cluster = Cluster::start_dedicated(3, 3, &[]).await?;
    let b = cluster.node(4).addr;
    // Clients see the brokers only; the controllers vote, the brokers observe.
    let r = Client::connect(b)
        .await?
        .send(MetadataRequest::default(), 12)
        .await?;
    let mut ids: Vec<i32> = r.brokers.iter().map(|x| x.node_id.0).collect();
    ids.sort_unstable();
    assert_eq!(ids, [4, 5, 6]);
    let quorum_leader = eventually(
        "three voters, three observers",
        Duration::from_secs(20),
        || async move {
            let mut c = Client::connect(b).await.ok()?;
            let r = c.send(describe_quorum(), 2).await.ok()?;
            let p = &r.topics[0].partitions[0];
            let mut voters: Vec<i32> = p.current_voters.iter().map(|v| v.replica_id.0).collect();
            let mut observers: Vec<i32> = p.observers.iter().map(|o| o.replica_id.0).collect();
            voters.sort_unstable();
            observers.sort_unstable();
            (p.error_code == 0 && voters == [1, 2, 3] && observers == [4, 5, 6])
                .then_some(p.leader_id.0)
        },
    )
    .await?;
    assert!((1..=3).contains(&quorum_leader), "{quorum_leader}");

    // A controller listener serves the controller's APIs (KIP-919's bootstrap.controllers):
    // the voters and the active controller among them; anything else closes the connection.
    let mut ctl = Client::connect(cluster.node(1).addr).await?;
    let r = ctl.send(ApiVersionsRequest::default(), 3).await?;
    let keys: Vec<i16> = r.api_keys.iter().map(|k| k.api_key).collect();
    assert_eq!(
        keys,
        [18, 55, 60],
        "ApiVersions, DescribeQuorum, DescribeCluster"
    );
    let r = ctl
        .send(DescribeClusterRequest::default().with_endpoint_type(2), 1)
        .await?;
    assert_eq!((r.error_code, r.endpoint_type), (0, 2));
    let ids: Vec<i32> = r.brokers.iter().map(|x| x.broker_id.0).collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(r.controller_id.0, quorum_leader);
    let r = ctl
        .send(DescribeClusterRequest::default().with_endpoint_type(1), 1)
        .await?;
    assert_eq!(r.error_code, 114, "MISMATCHED_ENDPOINT_TYPE");
    let r = Client::connect(b)
        .await?
        .send(DescribeClusterRequest::default().with_endpoint_type(2), 1)
        .await?;
    assert_eq!(r.error_code, 114, "MISMATCHED_ENDPOINT_TYPE");
    assert!(
        ctl.send(MetadataRequest::default(), 12).await.is_err(),
        "Metadata is not a controller API"
    );

    let t = topic("dedicated");
    create(&mut cluster.node(4).client_conn().await?, &t, 1, 3, None).await?;
    let p = wait_for_partition(b, &t, 0, "three in sync", |p| p.isr.len() == 3).await?;
    assert_eq!(
        {
            let mut r = p.replicas.clone();
            r.sort_unstable();
            r
        },
        [4, 5, 6],
        "replicas on brokers only"
    );
    let mut c = cluster.node(p.leader).client_conn().await?;
    let mut acked = Vec::new();
    for i in 0..5 {
        let v = format!("v{i}");
        assert_eq!(send(&mut c, &t, &v, -1).await?, (0, i));
        acked.push(v);
    }

    // The active controller and the partition's leader die: the other two controllers elect
    // a new active controller, which fences the silent broker and moves the leadership.
    cluster.crash(quorum_leader).await;
    cluster.crash(p.leader).await;
    let after = new_leader(&cluster, &t, p.leader).await?;
    let mut c = cluster.node(after.leader).client_conn().await?;
    assert_eq!(send(&mut c, &t, "after", -1).await?, (0, 5));
    acked.push("after".into());
    assert_eq!(values(cluster.node(after.leader).addr, &t).await?, acked);

    // Both come back: the controller rejoins the quorum, the broker the ISR.
    cluster.restart(quorum_leader).await?;
    rejoin(&mut cluster, &t, p.leader, after.leader).await?;
    Ok(())
}

#[tokio::test]
async fn a_dead_leader_is_fenced_a_follower_takes_over_and_it_rejoins() -> TestResult {
    let mut cluster = Cluster::start(3, &[]).await?;
    let t = topic("failover");
    let before = rf3_topic(&cluster, &t).await?;
    let old = before.leader;
    let mut c = cluster.node(old).client_conn().await?;
    let mut acked = Vec::new();
    for i in 0..5 {
        let v = format!("v{i}");
        assert_eq!(send(&mut c, &t, &v, -1).await?, (0, i));
        acked.push(v);
    }

    cluster.crash(old).await;
    let after = new_leader(&cluster, &t, old).await?;
    assert!(!after.isr.contains(&old), "{after:?}");
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    assert_eq!(after.isr.len(), 2);
    let new = after.leader;
    let mut c = cluster.node(new).client_conn().await?;
    for i in 5..10 {
        let v = format!("v{i}");
        assert_eq!(send(&mut c, &t, &v, -1).await?, (0, i));
        acked.push(v);
    }
    assert_eq!(values(cluster.node(new).addr, &t).await?, acked);

    rejoin(&mut cluster, &t, old, new).await?;
    assert_eq!(send(&mut c, &t, "v10", -1).await?, (0, 10));
    acked.push("v10".into());
    assert_eq!(values(cluster.node(new).addr, &t).await?, acked);

    // kafka-leader-election.sh --election-type preferred: the first replica leads again.
    assert_eq!(
        before.replicas[0], old,
        "the topic was placed with its leader first"
    );
    let r = cluster
        .node(new)
        .client_conn()
        .await?
        .send(elect_preferred(&t), 2)
        .await?;
    let result = &r.replica_election_results[0].partition_result[0];
    assert_eq!((r.error_code, result.error_code), (0, 0), "{result:?}");
    let back = new_leader(&cluster, &t, new).await?;
    assert_eq!(back.leader, old);
    let mut c = cluster.node(old).client_conn().await?;
    assert_eq!(send(&mut c, &t, "v11", -1).await?, (0, 11));
    acked.push("v11".into());
    assert_eq!(values(cluster.node(old).addr, &t).await?, acked);
    // Asked again, there is nothing to do.
    let r = c.send(elect_preferred(&t), 2).await?;
    assert_eq!(
        r.replica_election_results[0].partition_result[0].error_code, 84,
        "ELECTION_NOT_NEEDED"
    );

    let dirs: Vec<PathBuf> = cluster.nodes.iter().map(|n| n.dir.clone()).collect();
    let _kept = cluster.stop().await?;
    assert_identical(&dirs, &format!("{t}-0"))
}

/// Acceptance 3 of issue 8: with two of a partition's three replicas down (and fenced: five
/// voters keep a quorum), the ISR is the leader alone, below `min.insync.replicas=2`:
/// `acks=all` is NOT_ENOUGH_REPLICAS and writes nothing, `acks=1` still works.
#[tokio::test]
async fn two_replicas_down_is_not_enough_replicas_for_acks_all() -> TestResult {
    let mut cluster = Cluster::start(5, &[]).await?;
    let t = topic("minisr");
    create(
        &mut cluster.node(1).client_conn().await?,
        &t,
        1,
        -1,
        Some(vec![1, 2, 3]),
    )
    .await?;
    let mut c = cluster.node(1).client_conn().await?;
    wait_for_partition(cluster.node(1).addr, &t, 0, "leader 1", |p| p.leader == 1).await?;
    assert_eq!(send(&mut c, &t, "a", -1).await?, (0, 0));
    cluster.crash(2).await;
    cluster.crash(3).await;
    wait_for_partition(
        cluster.node(1).addr,
        &t,
        0,
        "the ISR shrunk to the leader",
        |p| p.isr == [1],
    )
    .await?;
    assert_eq!(
        send(&mut c, &t, "b", -1).await?.0,
        19,
        "NOT_ENOUGH_REPLICAS"
    );
    assert_eq!(send(&mut c, &t, "c", 1).await?, (0, 1));
    assert_eq!(values(cluster.node(1).addr, &t).await?, ["a", "c"]);
    cluster.stop().await?;
    Ok(())
}

/// A clean stop of a leader (SIGTERM) moves leadership first: the partition never goes
/// leaderless, and the stopping node leaves the ISR before it exits.
#[tokio::test]
async fn a_stopping_leader_hands_leadership_over_first() -> TestResult {
    // No broker is ever fenced for silence here: only the stopping node moves leadership.
    let mut cluster = Cluster::start(3, &["broker.session.timeout.ms=600000"]).await?;
    let t = topic("handover");
    let before = rf3_topic(&cluster, &t).await?;
    let old = before.leader;
    cluster.stop_node(old).await?;
    let after = wait_for_partition(
        cluster.other_than(&[old]).addr,
        &t,
        0,
        "a new leader",
        |p| p.leader != old,
    )
    .await?;
    assert!(after.leader >= 0, "{after:?}");
    assert!(!after.isr.contains(&old), "{after:?}");
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    cluster.stop().await?;
    Ok(())
}

/// What FindCoordinator for `group` names through the node at `addr`: (error, node id).
async fn coordinator(addr: std::net::SocketAddr, group: &str) -> TestResult<(i16, i32)> {
    let mut c = Client::connect(addr).await?;
    let r = c
        .send(
            kafka_protocol::messages::FindCoordinatorRequest::default()
                .with_key(StrBytes::from_string(group.to_string())),
            3,
        )
        .await?;
    Ok((r.error_code, r.node_id.0))
}

/// The group coordinator is the leader of the group's `__consumer_offsets` partition: other
/// nodes answer NOT_COORDINATOR, and a commit is answered once it is replicated. When the
/// coordinator dies, FindCoordinator names the new leader, which serves the committed offset.
/// Commits for partitions the coordinator holds no replica of are accepted like any other.
#[tokio::test]
async fn committed_offsets_survive_the_coordinators_death() -> TestResult {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{GroupId, OffsetFetchRequest};
    let mut cluster = Cluster::start(3, &[]).await?;
    let t = topic("data");
    let group = topic("g");
    create(&mut cluster.node(1).client_conn().await?, &t, 1, 3, None).await?;
    let first = cluster.node(1).addr;
    let g = group.clone();
    let old = eventually("a coordinator", Duration::from_secs(30), || {
        let g = g.clone();
        async move {
            let (err, node) = coordinator(first, &g).await.ok()?;
            (err == 0).then_some(node)
        }
    })
    .await?;
    let commit = |offset: i64| commit_request(&group, &t, offset);
    let other = cluster.other_than(&[old]).addr;
    let r = Client::connect(other).await?.send(commit(1), 8).await?;
    assert_eq!(r.topics[0].partitions[0].error_code, 16, "NOT_COORDINATOR");
    let mut c = cluster.node(old).client_conn().await?;
    // The offsets partition's followers may still be catching up from its creation.
    let r = c.send(commit(3), 8).await?;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    // The coordinator holds no replica of a partition only another node has; the commit is
    // still accepted, as Kafka checks the cluster's metadata.
    let elsewhere = topic("elsewhere");
    let other_id = cluster.other_than(&[old]).id;
    create(&mut c, &elsewhere, 1, -1, Some(vec![other_id])).await?;
    let r = c.send(commit_request(&group, &elsewhere, 5), 8).await?;
    assert_eq!(
        r.topics[0].partitions[0].error_code, 0,
        "a partition led elsewhere"
    );
    let r = c
        .send(commit_request(&group, &topic("nowhere"), 5), 8)
        .await?;
    assert_eq!(
        r.topics[0].partitions[0].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );

    cluster.crash(old).await;
    let g = group.clone();
    let new = eventually("another coordinator", Duration::from_secs(30), || {
        let g = g.clone();
        async move {
            let (err, node) = coordinator(other, &g).await.ok()?;
            (err == 0 && node != old).then_some(node)
        }
    })
    .await?;
    let addr = cluster.node(new).addr;
    let fetch_committed = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.clone())))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(name(&t))
            .with_partition_indexes(vec![0])]));
    let committed = eventually(
        "the new coordinator serves offsets",
        Duration::from_secs(30),
        || {
            let req = fetch_committed.clone();
            async move {
                let r = Client::connect(addr).await.ok()?.send(req, 7).await.ok()?;
                (r.error_code == 0).then(|| r.topics[0].partitions[0].committed_offset)
            }
        },
    )
    .await?;
    assert_eq!(
        committed, 3,
        "the commit the old coordinator answered survived it"
    );
    cluster.stop().await?;
    Ok(())
}

/// Appends `values` to a stopped node's replica of `partition_dir` as batches of leader epoch
/// `epoch`: what a leader that appended and died before any follower fetched leaves on disk.
fn append_unreplicated(
    dir: &std::path::Path,
    partition_dir: &str,
    epoch: i32,
    values: &[&str],
) -> TestResult {
    use fjord_broker::config::TopicConfig;
    use fjord_broker::log::batch::{build_batch, validate_record_set};
    use fjord_broker::log::{PartitionLog, Recovery};
    let mut log = PartitionLog::open_with(
        &dir.join(partition_dir),
        TopicConfig::resolve(|_| None),
        false,
        Recovery::TruncateInvalidTail,
    )?;
    for v in values {
        let b = build_batch(0, 0, &[(Some(b"k".as_slice()), Some(v.as_bytes()))]);
        let batches = validate_record_set(&b, usize::MAX)
            .map_err(|e| anyhow::anyhow!("invalid batch: {e:?}"))?;
        log.append(&b, &batches, epoch, 0)?;
    }
    log.flush()?;
    log.close()?;
    Ok(())
}

/// KIP-595's diverging epoch: a leader dies with records no follower got; the new leader writes
/// others at the same offsets. The old leader returns as a follower, truncates the tail nobody
/// else had and takes the new leader's records: every log ends byte-identical.
#[tokio::test]
async fn a_returning_leader_truncates_the_tail_nobody_else_had() -> TestResult {
    let mut cluster = Cluster::start(3, &[]).await?;
    let t = topic("diverge");
    let before = rf3_topic(&cluster, &t).await?;
    let old = before.leader;
    let mut c = cluster.node(old).client_conn().await?;
    for (i, v) in ["a", "b"].iter().enumerate() {
        assert_eq!(send(&mut c, &t, v, -1).await?, (0, i as i64));
    }
    cluster.crash(old).await;
    append_unreplicated(
        &cluster.node(old).dir,
        &format!("{t}-0"),
        before.leader_epoch,
        &["lost1", "lost2"],
    )?;
    let new = new_leader(&cluster, &t, old).await?.leader;
    let mut c = cluster.node(new).client_conn().await?;
    assert_eq!(send(&mut c, &t, "new", -1).await?, (0, 2));

    rejoin(&mut cluster, &t, old, new).await?;
    assert_eq!(send(&mut c, &t, "newer", -1).await?, (0, 3));
    assert_eq!(
        values(cluster.node(new).addr, &t).await?,
        ["a", "b", "new", "newer"]
    );
    let dirs: Vec<PathBuf> = cluster.nodes.iter().map(|n| n.dir.clone()).collect();
    let _kept = cluster.stop().await?;
    assert_identical(&dirs, &format!("{t}-0"))
}

/// `auto.leader.rebalance.enable`: once the broker that lost its leadership is back in sync,
/// the controller gives the partition back to its preferred replica by itself.
#[tokio::test]
async fn leadership_returns_to_the_preferred_replica_by_itself() -> TestResult {
    let mut cluster = Cluster::start(3, &["leader.imbalance.check.interval.seconds=1"]).await?;
    let t = topic("rebalance");
    let before = rf3_topic(&cluster, &t).await?;
    let old = before.leader;
    cluster.crash(old).await;
    let new = new_leader(&cluster, &t, old).await?.leader;
    cluster.restart(old).await?;
    let back = wait_for_partition(
        cluster.node(new).addr,
        &t,
        0,
        "the preferred leader back",
        |p| p.leader == old,
    )
    .await?;
    assert_eq!(back.isr.len(), 3);
    cluster.stop().await?;
    Ok(())
}

/// AlterPartitionReassignments and ListPartitionReassignments as `kafka-reassign-partitions.sh
/// --execute / --verify / --cancel` send them. A partition on [1, 2] moves to [3, 2]: broker 3
/// catches up as a follower and joins the ISR, the move completes, leadership goes to 3, broker
/// 1 deletes its replica, and 3's log is byte-identical to 2's. A move to a broker that is down
/// stays in progress until it is cancelled, which restores the replicas.
#[tokio::test]
async fn a_reassignment_moves_the_data_and_a_cancel_restores_the_replicas() -> TestResult {
    let mut cluster = Cluster::start(3, &[]).await?;
    let t = topic("moved");
    create(
        &mut cluster.node(1).client_conn().await?,
        &t,
        -1,
        -1,
        Some(vec![1, 2]),
    )
    .await?;
    wait_for_partition(cluster.node(1).addr, &t, 0, "both in sync", |p| {
        p.isr.len() == 2
    })
    .await?;
    let mut c = cluster.node(1).client_conn().await?;
    let mut acked = Vec::new();
    for i in 0..20 {
        let v = format!("v{i}");
        assert_eq!(send(&mut c, &t, &v, -1).await?, (0, i));
        acked.push(v);
    }

    let mut admin = cluster.node(2).client_conn().await?;
    let r = admin.send(reassign(&t, Some(vec![3, 2])), 0).await?;
    assert_eq!(r.responses[0].partitions[0].error_code, 0, "{r:?}");
    let moved = wait_for_partition(cluster.node(3).addr, &t, 0, "the move done", |p| {
        p.replicas == [3, 2] && p.leader == 3
    })
    .await?;
    assert_eq!(moved.isr, [3, 2]);
    let r = admin
        .send(ListPartitionReassignmentsRequest::default(), 0)
        .await?;
    assert!(r.topics.is_empty(), "nothing in progress: {r:?}");
    let gone = cluster.node(1).dir.join(format!("{t}-0"));
    eventually("the old replica deleted", Duration::from_secs(20), || {
        let gone = gone.clone();
        async move { (!gone.exists()).then_some(()) }
    })
    .await?;
    let mut c = cluster.node(3).client_conn().await?;
    assert_eq!(send(&mut c, &t, "after", -1).await?, (0, 20));
    acked.push("after".into());
    assert_eq!(values(cluster.node(3).addr, &t).await?, acked);

    // A move to a broker that is down cannot complete; --cancel restores the replicas.
    cluster.crash(1).await;
    let r = admin.send(reassign(&t, Some(vec![1, 2])), 0).await?;
    assert_eq!(r.responses[0].partitions[0].error_code, 0, "{r:?}");
    let r = admin
        .send(ListPartitionReassignmentsRequest::default(), 0)
        .await?;
    let ongoing = &r.topics[0].partitions[0];
    assert_eq!(
        (
            ongoing.adding_replicas.clone(),
            ongoing.removing_replicas.clone()
        ),
        (vec![BrokerId(1)], vec![BrokerId(3)])
    );
    let r = admin.send(reassign(&t, None), 0).await?;
    assert_eq!(r.responses[0].partitions[0].error_code, 0, "{r:?}");
    let back = partitions(cluster.node(2).addr, &t).await?[0].clone();
    let mut replicas = back.replicas.clone();
    replicas.sort();
    assert_eq!((replicas, back.leader), (vec![2, 3], 3), "{back:?}");
    let r = admin.send(reassign(&t, None), 0).await?;
    assert_eq!(
        r.responses[0].partitions[0].error_code, 85,
        "NO_REASSIGNMENT_IN_PROGRESS"
    );

    let dirs: Vec<PathBuf> = [2, 3]
        .iter()
        .map(|n| cluster.node(*n).dir.clone())
        .collect();
    let _kept = cluster.stop().await?;
    assert_identical(&dirs, &format!("{t}-0"))
}

/// AlterPartitionReassignments of partition 0 of `t` to `target` (None cancels).
fn reassign(t: &str, target: Option<Vec<i32>>) -> AlterPartitionReassignmentsRequest {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(name(t))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(0)
                .with_replicas(
                    target.map(|r| r.into_iter().map(BrokerId).collect()),
                )])])
}

/// The guides' fourth node: a broker-only node (`process.roles=broker`) joins three combined
/// nodes. It follows the quorum as an observer (DescribeQuorum lists it), registers, takes a
/// replica by reassignment and leads it with every acknowledged record, and after a crash
/// restarts from its own metadata checkpoint and rejoins the ISR.
#[tokio::test]
async fn a_broker_only_node_joins_and_takes_over_a_replica() -> TestResult {
    let mut cluster = Cluster::start(3, &[]).await?;
    let t = topic("joined");
    create(
        &mut cluster.node(1).client_conn().await?,
        &t,
        -1,
        -1,
        Some(vec![1, 2]),
    )
    .await?;
    wait_for_partition(cluster.node(1).addr, &t, 0, "both in sync", |p| {
        p.isr.len() == 2
    })
    .await?;
    let mut c = cluster.node(1).client_conn().await?;
    let mut acked = Vec::new();
    for i in 0..10 {
        let v = format!("v{i}");
        assert_eq!(send(&mut c, &t, &v, -1).await?, (0, i));
        acked.push(v);
    }

    let id = cluster.add_broker().await?;
    assert_eq!(id, 4);
    cluster.wait_for_brokers(4).await?;
    let addr = cluster.node(4).addr;
    let observers = eventually(
        "the new broker observes the quorum",
        Duration::from_secs(20),
        || async move {
            let mut c = Client::connect(addr).await.ok()?;
            let r = c.send(describe_quorum(), 2).await.ok()?;
            let p = &r.topics[0].partitions[0];
            let observers: Vec<i32> = p.observers.iter().map(|o| o.replica_id.0).collect();
            (p.error_code == 0 && p.current_voters.len() == 3 && !observers.is_empty())
                .then_some(observers)
        },
    )
    .await?;
    assert_eq!(observers, [4]);

    let mut admin = cluster.node(4).client_conn().await?;
    let r = admin.send(reassign(&t, Some(vec![4, 2])), 0).await?;
    assert_eq!(r.responses[0].partitions[0].error_code, 0, "{r:?}");
    let moved = wait_for_partition(addr, &t, 0, "the move to the new broker done", |p| {
        p.replicas == [4, 2] && p.leader == 4
    })
    .await?;
    assert_eq!(moved.isr, [4, 2]);
    assert_eq!(values(addr, &t).await?, acked);

    // A crash: it restarts from its own checkpoint, leadership comes back by election.
    cluster.crash(4).await;
    wait_for_partition(cluster.node(2).addr, &t, 0, "node 2 leads", |p| {
        p.leader == 2
    })
    .await?;
    let mut c = cluster.node(2).client_conn().await?;
    assert_eq!(send(&mut c, &t, "while-down", 1).await?, (0, 10));
    acked.push("while-down".into());
    cluster.restart(4).await?;
    wait_for_partition(cluster.node(2).addr, &t, 0, "node 4 back in the ISR", |p| {
        p.isr.len() == 2
    })
    .await?;
    let mut c = cluster.node(2).client_conn().await?;
    let r = c.send(elect_preferred(&t), 2).await?;
    assert_eq!(r.error_code, 0, "{r:?}");
    wait_for_partition(addr, &t, 0, "node 4 leads again", |p| p.leader == 4).await?;
    assert_eq!(values(addr, &t).await?, acked);

    let dirs: Vec<PathBuf> = [2, 4]
        .iter()
        .map(|n| cluster.node(*n).dir.clone())
        .collect();
    let _kept = cluster.stop().await?;
    assert_identical(&dirs, &format!("{t}-0"))
}
