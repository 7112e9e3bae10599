//! The broker's shared state and its start-up sequence.
//!
//! Start-up: open the log directory (noting whether the last shutdown was clean), read or create
//! `meta.properties` (cluster id, node id), replay the metadata log, register this broker and the
//! `__consumer_offsets` topic if they are new, open every hosted partition (recovering the
//! active segments after a crash), and load committed offsets.

use std::collections::BTreeMap;
use std::fs;
use std::sync::Arc;

use crate::config::BrokerConfig;
use crate::error::{Error, Result};
use crate::group::{GroupCoordinator, OFFSETS_TOPIC};
use crate::metadata::brokers::{plan_register, Registration};
use crate::metadata::topics::{plan_create_topic, Defaults, Refusal, TopicSpec};
use crate::metadata::{Metadata, MetadataImage, MetadataRecord};
use crate::metrics::Metrics;
use crate::replica::ReplicaManager;

/// Where clients reach this broker.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: i32,
}

pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    pub endpoint: Endpoint,
    pub metadata: Arc<Metadata>,
    pub replicas: Arc<ReplicaManager>,
    pub groups: GroupCoordinator,
    pub metrics: Metrics,
    /// The block of producer ids this broker may hand out: (next, end).
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// Set when a controlled shutdown begins: heartbeats then ask to stay fenced.
    pub shutting_down: std::sync::atomic::AtomicBool,
}

/// Producer ids are reserved in the metadata log in blocks, as KRaft does.
const PRODUCER_ID_BLOCK: i64 = 1000;

fn read_meta_properties(path: &std::path::Path) -> BTreeMap<String, String> {
    fs::read_to_string(path)
        .ok()
        .and_then(|t| crate::config::parse_properties(&t).ok())
        .unwrap_or_default()
}

/// The cluster's id, as the metadata log holds it. The first node to start commits one (the
/// one `local` names: its directory's or its setting's, else a new one); every node then
/// reports that one. A directory or a setting naming another cluster stops start-up, as
/// Kafka's nodes refuse a quorum of another cluster.
async fn agree_cluster_id(
    metadata: &Metadata,
    local: Option<(&'static str, String)>,
) -> Result<String> {
    let proposal = local
        .as_ref()
        .map(|(_, id)| id.clone())
        .unwrap_or_else(new_cluster_id);
    let image = metadata
        .commit(|img| {
            Ok::<_, Refusal>(match img.cluster_id {
                Some(_) => vec![],
                None => vec![MetadataRecord::ClusterId {
                    id: proposal.clone(),
                }],
            })
        })
        .await?
        .map_err(|r| Error::Metadata(r.message))?;
    let agreed = image
        .cluster_id
        .clone()
        .ok_or_else(|| Error::Metadata("the metadata log holds no cluster id".into()))?;
    match local {
        Some((source, id)) if id != agreed => Err(Error::config(
            "cluster.id",
            format!("{source} cluster {id}, but the metadata quorum's cluster is {agreed}"),
        )),
        _ => Ok(agreed),
    }
}

/// A Kafka-style cluster id: 16 random bytes, URL-safe base64 without padding (22 chars).
fn new_cluster_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = String::new();
    for b in bytes {
        bits = (bits << 8) | b as u32;
        nbits += 8;
        while nbits >= 6 {
            nbits -= 6;
            out.push(ALPHABET[((bits >> nbits) & 63) as usize] as char);
        }
    }
    if nbits > 0 {
        out.push(ALPHABET[((bits << (6 - nbits)) & 63) as usize] as char);
    }
    out
}

impl Broker {
    /// Opens storage and joins the metadata quorum `metadata` (started by the caller, so that
    /// its peers can reach it first). `endpoint` is what clients are told to connect to.
    pub async fn start(
        config: BrokerConfig,
        endpoint: Endpoint,
        metadata: Arc<Metadata>,
    ) -> Result<Arc<Self>> {
        let replicas = Arc::new(ReplicaManager::new(&config)?);
        let clean = replicas.clean_start();
        let meta_path = config.log_dir.join("meta.properties");
        let meta = read_meta_properties(&meta_path);
        // What this node brings: its directory's cluster (which a setting must not contradict),
        // else the `cluster.id` setting (`CLUSTER_ID` in Kafka's image convention).
        let local = match (meta.get("cluster.id"), &config.cluster_id) {
            (Some(on_disk), Some(wanted)) if on_disk != wanted => {
                return Err(Error::config(
                    "cluster.id",
                    format!("the log directory belongs to cluster {on_disk}, not {wanted}"),
                ))
            }
            (Some(on_disk), _) => Some(("the log directory belongs to", on_disk.clone())),
            (None, Some(wanted)) => Some(("the setting names", wanted.clone())),
            (None, None) => None,
        };
        if let Some(id) = meta.get("node.id") {
            if id != &config.node_id.to_string() {
                return Err(Error::config(
                    "node.id",
                    format!(
                        "the log directory belongs to node {id}, not {}",
                        config.node_id
                    ),
                ));
            }
        }
        metadata.wait_ready().await?;
        let cluster_id = agree_cluster_id(&metadata, local).await?;
        if meta.is_empty() {
            let text = format!(
                "version=1\ncluster.id={cluster_id}\nnode.id={}\n",
                config.node_id
            );
            fs::write(&meta_path, text).map_err(|e| Error::io(&meta_path, e))?;
        }
        let groups = GroupCoordinator::new(&config, replicas.clone());
        let broker = Arc::new(Broker {
            cluster_id,
            endpoint: endpoint.clone(),
            metadata,
            replicas,
            groups,
            metrics: Metrics::new(),
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            config,
        });

        let node_id = broker.config.node_id;
        let registration = Registration {
            node_id,
            host: endpoint.host.clone(),
            port: endpoint.port,
            rack: broker.config.rack.clone(),
        };
        if broker.config.broker {
            broker
                .metadata
                .commit(|img| Ok::<_, Refusal>(plan_register(img, &registration)))
                .await?
                .map_err(|r| Error::Metadata(r.message))?;
        }
        let latest = broker.metadata.latest();
        let image = latest.image.clone();
        let strays = broker.replicas.set_aside_strays(&image)?;
        broker.replicas.sync(&image)?;
        let loaded = broker.groups.sync_leadership(&image)?;
        broker.metadata.mark_applied(latest.version, image);
        tracing::info!(
            cluster_id = %broker.cluster_id,
            node_id,
            clean_shutdown = clean,
            offsets = loaded,
            stray_logs = strays,
            "broker started"
        );
        Ok(broker)
    }

    pub fn defaults(&self) -> Defaults {
        Defaults {
            partitions: self.config.num_partitions,
            replication_factor: self.config.default_replication_factor,
        }
    }

    /// Commits metadata records planned from the image and applies them to local replicas.
    pub async fn commit_metadata(
        &self,
        plan: impl FnMut(&MetadataImage) -> std::result::Result<Vec<MetadataRecord>, Refusal>,
    ) -> std::result::Result<Arc<MetadataImage>, Refusal> {
        if self.replicas.dir_health.is_offline() {
            return Err(Refusal::new(
                kafka_protocol::error::ResponseError::KafkaStorageError,
                "the log directory is offline after an I/O error",
            ));
        }
        let (version, image) = match self.metadata.commit_at(plan).await {
            Ok(Ok(committed)) => committed,
            Ok(Err(refusal)) => return Err(refusal),
            Err(e) if e.is_storage_failure() => {
                // The metadata log shares the log directory: a failed write (or fsync) takes it
                // offline, and no later commit is planned from an image the log no longer
                // matches.
                self.replicas.dir_health.fail(&e);
                tracing::error!(error = %e, "metadata commit failed");
                return Err(Refusal::new(
                    kafka_protocol::error::ResponseError::KafkaStorageError,
                    e.to_string(),
                ));
            }
            Err(e) => {
                // No quorum leader took it (an election, a partitioned voter): retriable, as
                // Kafka's NOT_CONTROLLER is for admin clients.
                tracing::warn!(error = %e, "metadata commit failed");
                return Err(Refusal::new(
                    kafka_protocol::error::ResponseError::NotController,
                    e.to_string(),
                ));
            }
        };
        if let Err(e) = self.replicas.sync(&image) {
            tracing::error!(error = %e, "applying metadata to replicas failed");
            return Err(Refusal::new(
                kafka_protocol::error::ResponseError::KafkaStorageError,
                e.to_string(),
            ));
        }
        if let Err(e) = self.groups.sync_leadership(&image) {
            tracing::error!(error = %e, "loading group offsets failed");
            return Err(Refusal::new(
                kafka_protocol::error::ResponseError::KafkaStorageError,
                e.to_string(),
            ));
        }
        self.metadata.mark_applied(version, image.clone());
        Ok(image)
    }

    /// Applies every image the quorum publishes, in order, to the local replicas and the group
    /// coordinator: writes made on other nodes reach this one only this way. (A commit made
    /// here also applies its image itself before it answers, so that CreateTopics answers
    /// once the partitions exist; applying an image twice changes nothing.)
    pub async fn apply_published_images(self: Arc<Self>) {
        let mut images = self.metadata.subscribe();
        while images.changed().await.is_ok() {
            let published = images.borrow_and_update().clone();
            if self.metadata.applied_version() >= published.version {
                continue; // A commit made here applied it before answering.
            }
            let broker = self.clone();
            let image = published.image.clone();
            let applied = tokio::task::spawn_blocking(move || {
                broker.replicas.sync(&image)?;
                broker.groups.sync_leadership(&image).map(|_| ())
            })
            .await;
            // Handlers read it from now on, even if a partition failed to open (it is logged,
            // and retried with the next image).
            self.metadata
                .mark_applied(published.version, published.image);
            match applied {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "applying a metadata image failed"),
                Err(e) => tracing::error!(error = %e, "the metadata apply task failed"),
            }
        }
    }

    /// Creates a topic with broker defaults because a client asked for it in Metadata or
    /// Produce (`auto.create.topics.enable`). Returns whether the topic exists afterwards.
    pub async fn auto_create(&self, name: &str) -> std::result::Result<(), Refusal> {
        let defaults = self.defaults();
        let result = self
            .commit_metadata(|img| {
                if img.topics.contains_key(name) {
                    return Ok(Vec::new());
                }
                let spec = TopicSpec {
                    name,
                    partitions: -1,
                    replication_factor: -1,
                    assignments: BTreeMap::new(),
                    configs: BTreeMap::new(),
                };
                plan_create_topic(img, &spec, &defaults).map(|(_, r)| r)
            })
            .await;
        if result.is_ok() {
            tracing::info!(topic = name, "auto-created topic");
        }
        result.map(|_| ())
    }

    /// Creates `__consumer_offsets` the first time a group needs a coordinator, as Kafka does
    /// (so it is not listed before any group has existed).
    pub async fn ensure_offsets_topic(&self) -> std::result::Result<(), Refusal> {
        if self.metadata.image().topics.contains_key(OFFSETS_TOPIC) {
            return Ok(());
        }
        let partitions = self.config.offsets_topic_num_partitions;
        let segment_bytes = self.config.offsets_topic_segment_bytes;
        let replication_factor = self.config.offsets_topic_replication_factor;
        let defaults = self.defaults();
        self.commit_metadata(|img| {
            if img.topics.contains_key(OFFSETS_TOPIC) {
                return Ok(Vec::new());
            }
            let mut configs = BTreeMap::new();
            configs.insert("cleanup.policy".to_string(), "compact".to_string());
            configs.insert("segment.bytes".to_string(), segment_bytes.to_string());
            // Kafka's `offsets.topic.replication.factor` (3), capped by the live brokers.
            let replication_factor =
                replication_factor.min(img.live_brokers().count().max(1) as i16);
            let spec = TopicSpec {
                name: OFFSETS_TOPIC,
                partitions,
                replication_factor,
                assignments: BTreeMap::new(),
                configs,
            };
            plan_create_topic(img, &spec, &defaults).map(|(_, r)| r)
        })
        .await
        .map(|_| ())
    }

    /// A producer id no other producer has had, reserving a new block when needed.
    pub async fn allocate_producer_id(&self) -> std::result::Result<i64, Refusal> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            let mut start = 0;
            self.commit_metadata(|img| {
                start = img.next_producer_id;
                Ok(vec![MetadataRecord::ProducerIds {
                    next: start + PRODUCER_ID_BLOCK,
                }])
            })
            .await?;
            *ids = (start, start + PRODUCER_ID_BLOCK);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Clean shutdown: flush logs, save indexes, mark the directory clean.
    pub async fn shutdown(&self) -> Result<()> {
        self.metadata.close().await?;
        self.replicas.shutdown()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_ids_look_like_kafkas() {
        let id = super::new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
}
