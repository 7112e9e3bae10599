//! Three brokers that are also the three voters of the metadata quorum, as a Kafka KRaft
//! cluster of combined nodes runs: each node on its own client and controller listeners on
//! loopback, `controller.quorum.voters` naming all three. A topic created on any node reaches
//! every node through the quorum, and its partitions replicate between them.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use fjord_broker::BrokerConfig;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{CreateTopicsRequest, MetadataRequest, ProduceRequest};
use kafka_protocol::records::Compression;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Node {
    id: i32,
    addr: SocketAddr,
    dir: PathBuf,
    stop: oneshot::Sender<()>,
    task: JoinHandle<fjord_broker::Result<()>>,
}

/// A cluster of combined broker-and-controller nodes on loopback.
struct Cluster {
    nodes: Vec<Node>,
    _dirs: Vec<tempfile::TempDir>,
}

fn overrides(node_id: i32, dir: &Path) -> Vec<String> {
    vec![
        format!("node.id={node_id}"),
        "listeners=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0".to_string(),
        "controller.listener.names=CONTROLLER".to_string(),
        format!("log.dirs={}", dir.display()),
        "fjord.metrics.listener=".to_string(),
        "replica.fetch.backoff.ms=50".to_string(),
        "offsets.topic.num.partitions=3".to_string(),
        "group.initial.rebalance.delay.ms=0".to_string(),
    ]
}

impl Cluster {
    async fn start(n: i32) -> TestResult<Cluster> {
        let mut dirs = Vec::new();
        let mut bound = Vec::new();
        for id in 1..=n {
            let dir = tempfile::tempdir()?;
            let config = BrokerConfig::load(None, Vec::new(), &overrides(id, dir.path()))?;
            let clients = fjord_broker::bind(&config).await?;
            let controllers = fjord_broker::server::bind_controllers(&config).await?;
            bound.push((id, dir.path().to_path_buf(), clients, controllers));
            dirs.push(dir);
        }
        let voters: Vec<String> = bound
            .iter()
            .map(|(id, _, _, c)| Ok(format!("{id}@127.0.0.1:{}", c[0].local_addr()?.port())))
            .collect::<TestResult<_>>()?;
        let voters = format!("controller.quorum.voters={}", voters.join(","));
        let mut nodes = Vec::new();
        for (id, dir, clients, controllers) in bound {
            let mut o = overrides(id, &dir);
            o.push(voters.clone());
            let config = BrokerConfig::load(None, Vec::new(), &o)?;
            let addr = clients[0].local_addr()?;
            let (stop, rx) = oneshot::channel::<()>();
            let task = tokio::spawn(fjord_broker::server::run_with(
                clients,
                controllers,
                config,
                async move {
                    let _ = rx.await;
                },
            ));
            nodes.push(Node {
                id,
                addr,
                dir,
                stop,
                task,
            });
        }
        // Formed when every node serves and sees every broker registered (until then a
        // CreateTopics may find too few brokers, as on a starting Kafka cluster).
        for node in &nodes {
            let addr = node.addr;
            eventually(
                "every node sees every broker",
                Duration::from_secs(60),
                || async move {
                    let mut c = Client::connect(addr).await.ok()?;
                    let r = c.send(MetadataRequest::default(), 12).await.ok()?;
                    (r.brokers.len() == n as usize).then_some(())
                },
            )
            .await?;
        }
        Ok(Cluster { nodes, _dirs: dirs })
    }

    fn node(&self, id: i32) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .expect("a node of the cluster")
    }

    /// Stops every node cleanly; the directories stay until the returned guards drop.
    async fn stop(self) -> TestResult<Vec<tempfile::TempDir>> {
        for n in self.nodes {
            let _ = n.stop.send(());
            n.task.await??;
        }
        Ok(self._dirs)
    }
}

/// (partition, leader, replicas, isr) of a topic as one node's Metadata answers it.
async fn partitions(addr: SocketAddr, t: &str) -> TestResult<Vec<(i32, i32, Vec<i32>, Vec<i32>)>> {
    let mut c = Client::connect(addr).await?;
    let r = c
        .send(
            MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name(t)))
            ])),
            12,
        )
        .await?;
    anyhow::ensure!(
        r.topics[0].error_code == 0,
        "topic error {}",
        r.topics[0].error_code
    );
    let mut out: Vec<_> = r.topics[0]
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.leader_id.0,
                p.replica_nodes.iter().map(|b| b.0).collect(),
                p.isr_nodes.iter().map(|b| b.0).collect(),
            )
        })
        .collect();
    out.sort();
    Ok(out)
}

#[tokio::test]
async fn three_voters_share_metadata_and_replicate_a_topic() -> TestResult {
    let cluster = Cluster::start(3).await?;
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
    for (_, leader, replicas, isr) in &expected {
        assert_eq!(replicas.len(), 3);
        assert_eq!(isr.len(), 3);
        assert!(replicas.contains(leader));
    }
    let leaders: std::collections::BTreeSet<i32> = expected.iter().map(|p| p.1).collect();
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
    for (partition, leader, _, _) in &expected {
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

    let dirs: Vec<PathBuf> = cluster.nodes.iter().map(|n| n.dir.clone()).collect();
    let _kept = cluster.stop().await?;
    for p in 0..3 {
        let dir = format!("{t}-{p}");
        let first = segments(&dirs[0], &dir)?;
        assert!(!first.is_empty());
        for d in &dirs[1..] {
            assert_eq!(
                segments(d, &dir)?,
                first,
                "{dir} is byte-identical on every replica"
            );
        }
    }
    Ok(())
}
