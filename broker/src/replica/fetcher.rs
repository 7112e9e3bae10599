//! Follower fetchers: one task per leader broker this node follows partitions of, fetching
//! them with the Fetch API as a replica (`replica_id` = this node) and appending what arrives
//! as it is. The fetch offset it sends is the follower's log end, which is how the leader learns
//! the follower's progress and moves the high watermark (see [`PartitionState`](super::partition::PartitionState)).
//!
//! The set of partitions each fetcher serves comes from the metadata image
//! ([`FetcherManager::update`], called by the replica manager after each image); a response to a
//! fetch made under an older leadership is dropped by [`Partition::append_replicated`]. A broken
//! connection or a failed request backs off `replica.fetch.backoff.ms` and reconnects.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::throttle::Throttles;
use super::{Partition, TopicPartition};
use crate::client::Client;
use crate::config::ReplicaFetchSettings;
use crate::metadata::image::BrokerImage;

/// Fetch v12: topics by name, `replica_id` in the body, `last_fetched_epoch` for divergence.
const FETCH_VERSION: i16 = 12;
/// ListOffsets v4: `current_leader_epoch`, one offset per partition.
const LIST_OFFSETS_VERSION: i16 = 4;
/// How long a fetcher whose every partition is held by the follower throttle waits before it
/// looks again (the quota's samples are a second long).
const THROTTLED_PAUSE: Duration = Duration::from_millis(500);

type Followed = Arc<Mutex<BTreeMap<TopicPartition, Arc<Partition>>>>;

struct Fetcher {
    /// `host:port` of the leader when the task started; a new address starts a new task.
    address: String,
    partitions: Followed,
    changed: Arc<Notify>,
    task: JoinHandle<()>,
}

pub struct FetcherManager {
    node_id: i32,
    settings: ReplicaFetchSettings,
    throttles: Arc<Throttles>,
    /// The runtime fetcher tasks run on (the broker's); `None` where no runtime exists (unit
    /// tests that apply images synchronously), in which case nothing is fetched.
    runtime: Option<Handle>,
    fetchers: Mutex<HashMap<i32, Fetcher>>,
}

impl FetcherManager {
    pub fn new(node_id: i32, settings: ReplicaFetchSettings, throttles: Arc<Throttles>) -> Self {
        FetcherManager {
            node_id,
            settings,
            throttles,
            runtime: Handle::try_current().ok(),
            fetchers: Mutex::new(HashMap::new()),
        }
    }

    /// Makes the fetchers serve exactly `followed` (partition, its leader): partitions move
    /// between fetchers, fetchers start for new leaders and stop for leaders no longer
    /// followed or whose address changed.
    pub fn update(
        &self,
        followed: Vec<(i32, Arc<Partition>)>,
        brokers: &BTreeMap<i32, BrokerImage>,
    ) {
        let Some(runtime) = &self.runtime else {
            return;
        };
        let mut by_leader: HashMap<i32, BTreeMap<TopicPartition, Arc<Partition>>> = HashMap::new();
        for (leader, p) in followed {
            by_leader.entry(leader).or_default().insert(p.tp.clone(), p);
        }
        let mut fetchers = self.fetchers.lock();
        fetchers.retain(|leader, f| {
            let keep = by_leader.contains_key(leader)
                && brokers.get(leader).is_some_and(|b| address(b) == f.address);
            if !keep {
                f.task.abort();
            }
            keep
        });
        for (leader, partitions) in by_leader {
            if let Some(f) = fetchers.get(&leader) {
                *f.partitions.lock() = partitions;
                f.changed.notify_one();
                continue;
            }
            let Some(broker) = brokers.get(&leader) else {
                tracing::warn!(
                    leader,
                    "following a leader that is not registered: nothing to fetch from until it is"
                );
                continue;
            };
            let address = address(broker);
            let followed: Followed = Arc::new(Mutex::new(partitions));
            let changed = Arc::new(Notify::new());
            let task = runtime.spawn(run(
                self.node_id,
                leader,
                address.clone(),
                followed.clone(),
                changed.clone(),
                self.settings,
                self.throttles.clone(),
            ));
            fetchers.insert(
                leader,
                Fetcher {
                    address,
                    partitions: followed,
                    changed,
                    task,
                },
            );
        }
    }

    /// Stops every fetcher (broker shutdown).
    pub fn shutdown(&self) {
        for (_, f) in self.fetchers.lock().drain() {
            f.task.abort();
        }
    }
}

/// Fetchers never outlive their broker (a broker task aborted in a test, like a killed
/// process, stops replicating).
impl Drop for FetcherManager {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn address(b: &BrokerImage) -> String {
    format!("{}:{}", b.host, b.port)
}

async fn run(
    node_id: i32,
    leader: i32,
    address: String,
    followed: Followed,
    changed: Arc<Notify>,
    settings: ReplicaFetchSettings,
    throttles: Arc<Throttles>,
) {
    let backoff = Duration::from_millis(settings.backoff_ms);
    let client_id = format!("fjord-replica-fetcher-{node_id}-from-{leader}");
    // Room for the records plus the response's own fields.
    let max_frame = settings.response_max_bytes.max(settings.max_bytes) as usize + (1 << 20);
    let mut client: Option<Client> = None;
    let mut warned = false;
    loop {
        let partitions: Vec<Arc<Partition>> = followed.lock().values().cloned().collect();
        let mut positions = HashMap::new();
        let mut topics: BTreeMap<String, Vec<FetchPartition>> = BTreeMap::new();
        // Partitions left out by the follower throttle: fetched again once its rate allows.
        let mut held = false;
        for p in &partitions {
            let Some(pos) = p.follower_position() else {
                continue;
            };
            let catching_up = !p.in_isr(node_id);
            if catching_up && throttles.follower_holds(&p.tp) {
                held = true;
                continue;
            }
            positions.insert(p.tp.clone(), (p.clone(), pos.leader_epoch, catching_up));
            topics.entry(p.tp.topic.clone()).or_default().push(
                FetchPartition::default()
                    .with_partition(p.tp.partition)
                    .with_current_leader_epoch(pos.leader_epoch)
                    .with_fetch_offset(pos.fetch_offset)
                    .with_last_fetched_epoch(pos.last_fetched_epoch)
                    .with_log_start_offset(pos.log_start)
                    .with_partition_max_bytes(settings.max_bytes),
            );
        }
        if topics.is_empty() {
            if held {
                tokio::select! {
                    _ = changed.notified() => {}
                    _ = tokio::time::sleep(THROTTLED_PAUSE) => {}
                }
            } else {
                changed.notified().await;
            }
            continue;
        }
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(node_id))
            .with_max_wait_ms(settings.wait_max_ms)
            .with_min_bytes(settings.min_bytes)
            .with_max_bytes(settings.response_max_bytes)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, parts)| {
                        FetchTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(t)))
                            .with_partitions(parts)
                    })
                    .collect(),
            );
        if client.is_none() {
            match connect(&address, &client_id, max_frame).await {
                Ok(c) => {
                    tracing::info!(leader, %address, "replica fetcher connected");
                    warned = false;
                    client = Some(c);
                }
                Err(e) => {
                    if !warned {
                        tracing::warn!(leader, %address, error = %e, "replica fetcher cannot reach the leader; retrying");
                        warned = true;
                    }
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else {
            continue;
        };
        let response = match c.send(&req, FETCH_VERSION).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(leader, %address, error = %e, "replica fetch failed; reconnecting");
                client = None;
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        if response.error_code != 0 {
            tracing::warn!(leader, error = ?ResponseError::try_from_code(response.error_code), "replica fetch refused");
            tokio::time::sleep(backoff).await;
            continue;
        }
        let mut errors = 0;
        for t in response.responses {
            for d in t.partitions {
                let tp = TopicPartition::new(t.topic.0.as_str(), d.partition_index);
                let Some((p, epoch, catching_up)) = positions.get(&tp) else {
                    continue;
                };
                if d.error_code == ResponseError::OffsetOutOfRange.code() {
                    // Past the leader's end (it lost an unreplicated tail) or below its start.
                    if let Err(e) = out_of_range(c, node_id, p, *epoch).await {
                        errors += 1;
                        tracing::warn!(partition = %tp.dir_name(), leader, error = %e, "could not recover from an out-of-range fetch");
                    }
                    continue;
                }
                if d.error_code != 0 {
                    errors += 1;
                    tracing::debug!(partition = %tp.dir_name(), leader, error = ?ResponseError::try_from_code(d.error_code), "replica fetch of a partition refused");
                    continue;
                }
                if d.diverging_epoch.epoch >= 0 {
                    let (e, end) = (d.diverging_epoch.epoch, d.diverging_epoch.end_offset);
                    if let Err(err) = p.truncate_diverged(*epoch, e, end) {
                        errors += 1;
                        tracing::error!(partition = %tp.dir_name(), leader, error = %err, "could not truncate a diverged log");
                    }
                    continue;
                }
                let records = d.records.unwrap_or_default();
                if *catching_up {
                    throttles.follower_got(&tp, records.len() as u64);
                }
                if let Err(e) =
                    p.append_replicated(&records, *epoch, d.high_watermark, d.log_start_offset)
                {
                    errors += 1;
                    tracing::error!(partition = %tp.dir_name(), leader, error = %e, "could not append replicated records");
                }
            }
        }
        if errors > 0 && errors == positions.len() {
            // Nothing progressed: wait for metadata (a new leader) or the leader to recover.
            tokio::select! {
                _ = changed.notified() => {}
                _ = tokio::time::sleep(backoff) => {}
            }
        }
    }
}

/// Asks the leader for its log end and start (ListOffsets as a replica) and truncates to the
/// end, or restarts at the start, whichever the follower's position is outside of.
async fn out_of_range(
    c: &mut Client,
    node_id: i32,
    p: &Partition,
    leader_epoch: i32,
) -> crate::Result<()> {
    let Some(pos) = p.follower_position() else {
        return Ok(());
    };
    let leader_end = leader_offset(c, node_id, p, leader_epoch, -1).await?;
    if pos.fetch_offset > leader_end {
        p.truncate_to_leader_end(leader_epoch, leader_end)?;
        return Ok(());
    }
    let leader_start = leader_offset(c, node_id, p, leader_epoch, -2).await?;
    if pos.fetch_offset < leader_start {
        p.restart_at_leader_start(leader_epoch, leader_start)?;
    }
    Ok(())
}

/// ListOffsets LATEST (-1, the log end for a replica) or EARLIEST (-2) from the leader.
async fn leader_offset(
    c: &mut Client,
    node_id: i32,
    p: &Partition,
    leader_epoch: i32,
    timestamp: i64,
) -> crate::Result<i64> {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(node_id))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(p.tp.topic.clone())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(p.tp.partition)
                .with_current_leader_epoch(leader_epoch)
                .with_timestamp(timestamp)])]);
    let r = c.send(&req, LIST_OFFSETS_VERSION).await?;
    let part = r
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| crate::Error::Protocol("an empty ListOffsets response".into()))?;
    if part.error_code != 0 {
        return Err(crate::Error::Protocol(format!(
            "ListOffsets from the leader: error {}",
            part.error_code
        )));
    }
    Ok(part.offset)
}

async fn connect(address: &str, client_id: &str, max_frame: usize) -> crate::Result<Client> {
    let addr: SocketAddr = tokio::net::lookup_host(address)
        .await?
        .next()
        .ok_or_else(|| crate::Error::Metadata(format!("{address} resolves to no address")))?;
    Client::connect(addr, client_id, max_frame).await
}
