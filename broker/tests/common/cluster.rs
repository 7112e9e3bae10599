//! A cluster of combined broker-and-controller nodes in this process, as a Kafka KRaft cluster
//! of combined nodes runs: each node on its own client and controller listeners on loopback,
//! `controller.quorum.voters` naming all of them. Nodes can be crashed (their task aborted:
//! no shutdown path at all), stopped cleanly (a controlled shutdown first), and restarted on
//! the same ports and directory. [`Cluster::add_broker`] adds a broker-only node
//! (`process.roles=broker`), which follows the voters without being one;
//! [`Cluster::start_dedicated`] starts controller-only voters (`process.roles=controller`)
//! and broker-only nodes, as production KRaft clusters are often laid out.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fjord_broker::BrokerConfig;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::MetadataRequest;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{eventually, name, Client, TestResult};

pub struct Node {
    pub id: i32,
    /// The client listener; a controller-only node's controller listener (not for clients).
    pub addr: SocketAddr,
    pub dir: PathBuf,
    /// Whether the node is a broker (`false`: controller-only).
    pub broker: bool,
    /// None for a broker-only node.
    controller_port: Option<u16>,
    running: Option<Running>,
}

impl Node {
    pub async fn client_conn(&self) -> TestResult<Client> {
        Client::connect(self.addr).await
    }
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    voters: String,
    extra: Vec<String>,
    _dirs: Vec<tempfile::TempDir>,
}

/// Settings that make a test cluster react in a test's time: heartbeats every 100 ms, a
/// broker fenced after 1.5 s of silence, followers retrying a lost leader after 50 ms.
fn overrides(
    node_id: i32,
    dir: &Path,
    client: Option<u16>,
    controller: Option<u16>,
) -> Vec<String> {
    let (roles, listeners) = match (client, controller) {
        (Some(client), Some(c)) => (
            "broker,controller",
            format!("PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{c}"),
        ),
        (Some(client), None) => ("broker", format!("PLAINTEXT://127.0.0.1:{client}")),
        (None, Some(c)) => ("controller", format!("CONTROLLER://127.0.0.1:{c}")),
        (None, None) => unreachable!("a node is a broker, a controller or both"),
    };
    vec![
        format!("node.id={node_id}"),
        format!("process.roles={roles}"),
        format!("listeners={listeners}"),
        "controller.listener.names=CONTROLLER".to_string(),
        format!("log.dirs={}", dir.display()),
        "fjord.metrics.listener=".to_string(),
        "replica.fetch.backoff.ms=50".to_string(),
        "broker.heartbeat.interval.ms=100".to_string(),
        "broker.session.timeout.ms=1500".to_string(),
        "offsets.topic.num.partitions=3".to_string(),
        "group.initial.rebalance.delay.ms=0".to_string(),
    ]
}

impl Cluster {
    /// No nodes yet; `voters` are (node id, controller port) on loopback.
    fn empty(voters: &[(i32, u16)], extra: &[&str], dirs: Vec<tempfile::TempDir>) -> Cluster {
        let voters: Vec<String> = voters
            .iter()
            .map(|(id, port)| format!("{id}@127.0.0.1:{port}"))
            .collect();
        Cluster {
            nodes: Vec::new(),
            voters: format!("controller.quorum.voters={}", voters.join(",")),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _dirs: dirs,
        }
    }

    /// `n` nodes, each with `extra` settings on top of the test defaults; returns once every
    /// node serves and sees every broker registered.
    pub async fn start(n: i32, extra: &[&str]) -> TestResult<Cluster> {
        let mut dirs = Vec::new();
        let mut bound = Vec::new();
        for id in 1..=n {
            let dir = tempfile::tempdir()?;
            let config = BrokerConfig::load(
                None,
                Vec::new(),
                &overrides(id, dir.path(), Some(0), Some(0)),
            )?;
            let clients = fjord_broker::bind(&config).await?;
            let controllers = fjord_broker::server::bind_controllers(&config).await?;
            bound.push((id, dir.path().to_path_buf(), clients, controllers));
            dirs.push(dir);
        }
        let voters = bound
            .iter()
            .map(|(id, _, _, c)| Ok((*id, c[0].local_addr()?.port())))
            .collect::<TestResult<Vec<_>>>()?;
        let mut cluster = Cluster::empty(&voters, extra, dirs);
        for (id, dir, clients, controllers) in bound {
            let addr = clients[0].local_addr()?;
            let controller_port = Some(controllers[0].local_addr()?.port());
            let mut node = Node {
                id,
                addr,
                dir,
                broker: true,
                controller_port,
                running: None,
            };
            cluster.run(&mut node, clients, controllers)?;
            cluster.nodes.push(node);
        }
        cluster.wait_for_brokers(n as usize).await?;
        Ok(cluster)
    }

    /// `controllers` controller-only voters (ids from 1) and `brokers` broker-only nodes (the
    /// next ids); returns once every broker serves and sees every broker registered.
    pub async fn start_dedicated(
        controllers: i32,
        brokers: i32,
        extra: &[&str],
    ) -> TestResult<Cluster> {
        let mut dirs = Vec::new();
        let mut bound = Vec::new();
        for id in 1..=controllers {
            let dir = tempfile::tempdir()?;
            // Only to bind port 0: a controller-only node must name itself among the voters.
            let mut o = overrides(id, dir.path(), None, Some(0));
            o.push(format!("controller.quorum.voters={id}@127.0.0.1:1"));
            let config = BrokerConfig::load(None, Vec::new(), &o)?;
            let controllers = fjord_broker::server::bind_controllers(&config).await?;
            bound.push((id, dir.path().to_path_buf(), controllers));
            dirs.push(dir);
        }
        let voters = bound
            .iter()
            .map(|(id, _, c)| Ok((*id, c[0].local_addr()?.port())))
            .collect::<TestResult<Vec<_>>>()?;
        let mut cluster = Cluster::empty(&voters, extra, dirs);
        for (id, dir, controllers) in bound {
            let addr = controllers[0].local_addr()?;
            let mut node = Node {
                id,
                addr,
                dir,
                broker: false,
                controller_port: Some(addr.port()),
                running: None,
            };
            cluster.run(&mut node, Vec::new(), controllers)?;
            cluster.nodes.push(node);
        }
        for _ in 0..brokers {
            cluster.add_broker().await?;
        }
        cluster.wait_for_brokers(brokers as usize).await?;
        Ok(cluster)
    }

    /// Starts a broker-only node (`process.roles=broker`) with the next free id; returns its
    /// id once it is running (not yet registered).
    pub async fn add_broker(&mut self) -> TestResult<i32> {
        let id = self.nodes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
        let dir = tempfile::tempdir()?;
        let mut o = overrides(id, dir.path(), Some(0), None);
        o.push(self.voters.clone());
        let config = BrokerConfig::load(None, Vec::new(), &o)?;
        let clients = fjord_broker::bind(&config).await?;
        let mut node = Node {
            id,
            addr: clients[0].local_addr()?,
            dir: dir.path().to_path_buf(),
            broker: true,
            controller_port: None,
            running: None,
        };
        self._dirs.push(dir);
        let config = self.config(&node)?;
        node.running = Some(spawn(config, clients, Vec::new()));
        self.nodes.push(node);
        Ok(id)
    }

    fn config(&self, node: &Node) -> TestResult<BrokerConfig> {
        let client = node.broker.then(|| node.addr.port());
        let mut o = overrides(node.id, &node.dir, client, node.controller_port);
        o.push(self.voters.clone());
        o.extend(self.extra.iter().cloned());
        Ok(BrokerConfig::load(None, Vec::new(), &o)?)
    }

    fn run(
        &self,
        node: &mut Node,
        clients: Vec<tokio::net::TcpListener>,
        controllers: Vec<tokio::net::TcpListener>,
    ) -> TestResult {
        node.running = Some(spawn(self.config(node)?, clients, controllers));
        Ok(())
    }

    /// Waits until every running broker answers Metadata listing `n` brokers.
    pub async fn wait_for_brokers(&self, n: usize) -> TestResult {
        for node in self
            .nodes
            .iter()
            .filter(|n| n.running.is_some() && n.broker)
        {
            let addr = node.addr;
            eventually(
                "every node sees every broker",
                Duration::from_secs(60),
                || async move {
                    let mut c = Client::connect(addr).await.ok()?;
                    let r = c.send(MetadataRequest::default(), 12).await.ok()?;
                    (r.brokers.len() == n).then_some(())
                },
            )
            .await?;
        }
        Ok(())
    }

    pub fn node(&self, id: i32) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .expect("a node of the cluster")
    }

    fn node_mut(&mut self, id: i32) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("a node of the cluster")
    }

    /// A running broker other than `not`.
    pub fn other_than(&self, not: &[i32]) -> &Node {
        self.nodes
            .iter()
            .find(|n| !not.contains(&n.id) && n.running.is_some() && n.broker)
            .expect("another running node")
    }

    /// As close to SIGKILL as an in-process node gets: its task is aborted, nothing is flushed
    /// or marked clean, its quorum voter stops.
    pub async fn crash(&mut self, id: i32) {
        if let Some((_, task)) = self.node_mut(id).running.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// A clean stop: controlled shutdown, then logs flushed and the directory marked clean.
    pub async fn stop_node(&mut self, id: i32) -> TestResult {
        if let Some((stop, task)) = self.node_mut(id).running.take() {
            let _ = stop.send(());
            task.await??;
        }
        Ok(())
    }

    /// Starts a stopped or crashed node again on its ports and directory.
    pub async fn restart(&mut self, id: i32) -> TestResult {
        let config = {
            let node = self.node(id);
            anyhow::ensure!(node.running.is_none(), "node {id} is running");
            self.config(node)?
        };
        // The old listeners are closed; the ports are bound again (SO_REUSEADDR).
        let mut bound = None;
        for _ in 0..100 {
            match (
                fjord_broker::bind(&config).await,
                fjord_broker::server::bind_controllers(&config).await,
            ) {
                (Ok(c), Ok(k)) => {
                    bound = Some((c, k));
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let (clients, controllers) =
            bound.ok_or_else(|| anyhow::anyhow!("node {id}'s ports stayed taken"))?;
        self.node_mut(id).running = Some(spawn(config, clients, controllers));
        Ok(())
    }

    /// Waits up to `within` for node `id` to exit by itself (a start-up refused), and returns
    /// how it ended.
    pub async fn exit_of(
        &mut self,
        id: i32,
        within: Duration,
    ) -> TestResult<fjord_broker::Result<()>> {
        let (_stop, task) = self
            .node_mut(id)
            .running
            .take()
            .ok_or_else(|| anyhow::anyhow!("node {id} is not running"))?;
        Ok(tokio::time::timeout(within, task).await??)
    }

    /// Stops every running node cleanly; the directories stay until the returned guards drop.
    pub async fn stop(mut self) -> TestResult<Vec<tempfile::TempDir>> {
        let ids: Vec<i32> = self.nodes.iter().map(|n| n.id).collect();
        for id in ids {
            self.stop_node(id).await?;
        }
        Ok(std::mem::take(&mut self._dirs))
    }
}

type Running = (oneshot::Sender<()>, JoinHandle<fjord_broker::Result<()>>);

fn spawn(
    config: BrokerConfig,
    clients: Vec<tokio::net::TcpListener>,
    controllers: Vec<tokio::net::TcpListener>,
) -> Running {
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(fjord_broker::server::run_with(
        clients,
        controllers,
        config,
        async move {
            let _ = rx.await;
        },
    ));
    (stop, task)
}

/// One partition as a node's Metadata answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// A topic's partitions as the node at `addr` answers Metadata.
pub async fn partitions(addr: SocketAddr, t: &str) -> TestResult<Vec<PartitionView>> {
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
        .map(|p| PartitionView {
            partition: p.partition_index,
            leader: p.leader_id.0,
            leader_epoch: p.leader_epoch,
            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
        })
        .collect();
    out.sort_by_key(|p| p.partition);
    Ok(out)
}

/// Waits until the node at `addr` shows partition `p` of `t` as `check` wants it.
pub async fn wait_for_partition(
    addr: SocketAddr,
    t: &str,
    p: i32,
    what: &str,
    check: impl Fn(&PartitionView) -> bool,
) -> TestResult<PartitionView> {
    let check = &check;
    eventually(what, Duration::from_secs(30), || async move {
        let parts = partitions(addr, t).await.ok()?;
        parts.into_iter().find(|v| v.partition == p && check(v))
    })
    .await
}
