//! Cluster metadata: an ordered log of [`MetadataRecord`]s applied to a [`MetadataImage`].
//!
//! Writers go through [`Metadata::commit`], which computes records from the current image under
//! one lock (so two CreateTopics for one name cannot both pass the existence check), commits them
//! through the metadata quorum ([`crate::quorum`]) as one atomic entry, and returns the image
//! they produced. Readers take an `Arc` snapshot of the image and never block writers.
//!
//! [`MetadataLog`] is the single-node log from before the quorum (one batch of JSON-encoded
//! records per commit in `__cluster_metadata-0`); it is read once, to migrate such a directory.

pub mod brokers;
pub mod image;
pub mod reassign;
pub mod topics;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;

pub use image::{MetadataImage, MetadataRecord, ResourceType};

use crate::config::{BrokerConfig, TopicConfig};
use crate::error::{Error, Result};
use crate::log::batch::{build_batch, validate_record_set};
use crate::log::{now_ms, PartitionLog, Recovery};
use crate::quorum::{CommitOutcome, Published, Quorum, Settings, VoterEndpoint};

pub const METADATA_DIR: &str = "__cluster_metadata-0";

/// The durable, ordered store of metadata records.
pub struct MetadataLog {
    log: PartitionLog,
}

impl MetadataLog {
    pub(crate) fn topic_config() -> TopicConfig {
        // Metadata is never deleted by retention: it is the source of truth.
        TopicConfig::resolve(|k| match k {
            "retention.ms" | "retention.bytes" => Some("-1".into()),
            "segment.bytes" => Some((64 << 20).to_string()),
            "segment.ms" => Some(i64::MAX.to_string()),
            _ => None,
        })
    }

    /// Opens the log and returns every record in it, in order.
    pub fn open(log_dir: &Path, clean: bool) -> Result<(Self, Vec<MetadataRecord>)> {
        let log = PartitionLog::open_with(
            &log_dir.join(METADATA_DIR),
            Self::topic_config(),
            clean,
            Recovery::TornTailOnly,
        )?;
        let mut records = Vec::new();
        let mut offset = log.log_start_offset();
        let end = log.next_offset();
        while offset < end {
            let r = log.read(offset, 1 << 20, true, end)?;
            if r.records.is_empty() {
                break;
            }
            // The next read starts after the last batch read, whatever records it held: a
            // batch whose records stop short of its last offset made this loop re-read it
            // forever (found by the log_recovery fuzz target).
            let before = offset;
            let mut pos = 0;
            while let Some(h) = crate::log::BatchHeader::parse(&r.records[pos..]) {
                offset = offset.max(h.base_offset.saturating_add(h.last_offset_delta as i64 + 1));
                pos += h.total_len();
                if h.total_len() == 0 || pos >= r.records.len() {
                    break;
                }
            }
            if offset <= before {
                return Err(Error::Metadata(format!(
                    "{}: the batch at offset {before} does not advance the log",
                    log.dir().display()
                )));
            }
            let mut buf: Bytes = r.records;
            let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| {
                Error::Metadata(format!(
                    "{}: undecodable batch at offset {offset}: {e}",
                    log.dir().display()
                ))
            })?;
            for set in sets {
                for rec in set.records {
                    if rec.offset < log.log_start_offset() {
                        continue;
                    }
                    let value = rec.value.unwrap_or_default();
                    let parsed: MetadataRecord = serde_json::from_slice(&value).map_err(|e| {
                        Error::Metadata(format!(
                            "{}: record at offset {}: {e}",
                            log.dir().display(),
                            rec.offset
                        ))
                    })?;
                    records.push(parsed);
                }
            }
        }
        Ok((MetadataLog { log }, records))
    }

    /// Appends the records as one batch and flushes it to disk before returning.
    pub fn append(&mut self, records: &[MetadataRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let values: Vec<Vec<u8>> = records
            .iter()
            .map(|r| serde_json::to_vec(r).expect("metadata records always serialize"))
            .collect();
        let kv: Vec<crate::log::batch::KeyValue<'_>> =
            values.iter().map(|v| (None, Some(v.as_slice()))).collect();
        let now = now_ms();
        let batch = build_batch(0, now, &kv);
        let batches = validate_record_set(&batch, usize::MAX)
            .map_err(|e| Error::Metadata(format!("built an invalid batch: {e:?}")))?;
        self.log.append(&batch, &batches, 0, now)?;
        self.log.flush()
    }

    pub fn close(&mut self) -> Result<()> {
        self.log.close()
    }
}

/// Plans retried after conflicts before a commit gives up.
const PLAN_ATTEMPTS: usize = 5;
/// How long a commit waits for this node to apply what the leader applied.
const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(15);

/// The metadata image and the quorum that makes it durable. A node with no
/// `controller.quorum.voters` is a quorum of one: itself.
pub struct Metadata {
    quorum: Quorum,
    images: tokio::sync::watch::Receiver<Published>,
    /// One planner at a time on this node: a plan reads the image it will be applied to.
    planning: tokio::sync::Mutex<()>,
    /// Whether this node is the only voter (it then waits to lead before it serves).
    alone: bool,
    /// Records of a pre-quorum log, committed once the quorum has a leader.
    migrating: parking_lot::Mutex<Option<Vec<MetadataRecord>>>,
    /// The newest image this node's replicas and coordinators have applied, with its version:
    /// what request handlers read, so a client never learns of a partition before this node
    /// serves it.
    applied: tokio::sync::watch::Sender<(u64, Arc<MetadataImage>)>,
}

impl Metadata {
    /// Starts this node's voter as the broker configuration says: the voters of
    /// `controller.quorum.voters`, or this node alone at `endpoint`. It does not wait for a
    /// leader: see [`wait_ready`](Self::wait_ready).
    pub async fn start(config: &BrokerConfig, endpoint: &crate::broker::Endpoint) -> Result<Self> {
        let voters = if config.voters.is_empty() {
            BTreeMap::from([(
                config.node_id as u64,
                VoterEndpoint {
                    host: endpoint.host.clone(),
                    port: endpoint.port as u16,
                },
            )])
        } else {
            config.voters.clone()
        };
        let snapshots = |s: Settings| Settings {
            snapshot_every_entries: config.metadata_snapshot_entries,
            entries_kept_after_snapshot: config.metadata_entries_kept,
            ..s
        };
        let dir = config.log_dir.join(METADATA_DIR);
        if !config.controller {
            let quorum = Quorum::observe(
                config.node_id as u64,
                &voters,
                &dir,
                snapshots(Settings::default()),
            )
            .await?;
            return Ok(Self::with(quorum, false, None));
        }
        let clean = crate::replica::was_shut_down_cleanly(&config.log_dir);
        Self::start_in(&config.log_dir, clean, config.node_id, &voters, snapshots).await
    }

    fn with(quorum: Quorum, alone: bool, migrating: Option<Vec<MetadataRecord>>) -> Self {
        let images = quorum.images();
        Metadata {
            quorum,
            images,
            planning: tokio::sync::Mutex::new(()),
            alone,
            migrating: parking_lot::Mutex::new(migrating),
            applied: tokio::sync::watch::Sender::new((0, Arc::new(MetadataImage::default()))),
        }
    }

    /// [`start`](Self::start) and [`wait_ready`](Self::wait_ready) with explicit settings.
    pub async fn open(
        log_dir: &Path,
        clean: bool,
        node_id: i32,
        voters: &BTreeMap<u64, VoterEndpoint>,
    ) -> Result<Self> {
        let m = Self::start_in(log_dir, clean, node_id, voters, |s| s).await?;
        m.wait_ready().await?;
        Ok(m)
    }

    /// Starts this node's voter of the metadata quorum in `log_dir/__cluster_metadata-0`. A
    /// directory written before the quorum existed (the single-node log, no `quorum-state`) is
    /// migrated: its records become the quorum's first entry, and the old directory is kept
    /// beside it as `__cluster_metadata-0.<id>-legacy`.
    async fn start_in(
        log_dir: &Path,
        clean: bool,
        node_id: i32,
        voters: &BTreeMap<u64, VoterEndpoint>,
        settings: impl FnOnce(Settings) -> Settings,
    ) -> Result<Self> {
        let dir = log_dir.join(METADATA_DIR);
        let legacy = if dir.exists() && !Quorum::is_formatted(&dir) {
            let (mut log, records) = MetadataLog::open(log_dir, clean)?;
            log.close()?;
            let aside = log_dir.join(crate::replica::aside_name(
                "__cluster_metadata",
                0,
                "-legacy",
            ));
            std::fs::rename(&dir, &aside).map_err(|e| Error::io(&dir, e))?;
            tracing::info!(records = records.len(), kept_at = %aside.display(), "migrating the single-node metadata log to the quorum");
            Some(records).filter(|r| !r.is_empty())
        } else {
            None
        };
        let alone = voters.len() == 1;
        let settings = settings(if alone {
            Settings::single_voter()
        } else {
            Settings::default()
        });
        let quorum = Quorum::start(node_id as u64, voters, &dir, settings).await?;
        Ok(Self::with(quorum, alone, legacy))
    }

    /// Waits until the quorum has a leader and this node has applied its entries (a single
    /// voter: until it leads), then commits the records of a migrated pre-quorum log.
    pub async fn wait_ready(&self) -> Result<()> {
        let wait = std::time::Duration::from_secs(60);
        if self.alone {
            self.quorum.wait_until_leading(wait).await?;
        } else {
            self.quorum.wait_for_leader(wait).await?;
        }
        let migrating = self.migrating.lock().take();
        if let Some(records) = migrating {
            self.commit(|_| Ok::<_, Error>(records.clone())).await??;
        }
        tracing::info!(
            topics = self.image().topics.len(),
            version = self.images.borrow().version,
            "metadata quorum ready"
        );
        Ok(())
    }

    /// A consistent snapshot of the current image.
    ///
    /// This is the image this node has applied (see [`mark_applied`](Self::mark_applied));
    /// until the broker applies one, the quorum's latest.
    pub fn image(&self) -> Arc<MetadataImage> {
        let applied = self.applied.borrow();
        if applied.0 == 0 && self.images.borrow().version > 0 {
            return self.images.borrow().image.clone();
        }
        applied.1.clone()
    }

    /// The quorum's latest image on this node, with its version (ahead of [`image`](Self::image)
    /// until the broker has applied it).
    pub fn latest(&self) -> Published {
        self.images.borrow().clone()
    }

    /// The version of the newest image this node has applied.
    pub fn applied_version(&self) -> u64 {
        self.applied.borrow().0
    }

    /// Records that this node applied the image of `version`. Never moves back.
    pub fn mark_applied(&self, version: u64, image: Arc<MetadataImage>) {
        self.applied.send_if_modified(|current| {
            if version > current.0 || (version == current.0 && current.0 == 0) {
                *current = (version, image);
                true
            } else {
                false
            }
        });
    }

    /// Waits until this node has applied the image of `version` (up to a timeout).
    pub async fn wait_applied(&self, version: u64) -> Result<Arc<MetadataImage>> {
        let mut applied = self.applied.subscribe();
        let image = tokio::time::timeout(CATCH_UP, applied.wait_for(|a| a.0 >= version))
            .await
            .map_err(|_| {
                Error::Metadata(format!(
                    "this node did not apply metadata version {version} within {CATCH_UP:?}"
                ))
            })?
            .map_err(|_| Error::Metadata("the metadata apply loop stopped".into()))?
            .1
            .clone();
        Ok(image)
    }

    /// Computes records from the current image with `plan`, commits them through the quorum,
    /// and returns the image they produced (once this node has applied it). `plan` may refuse
    /// with its own error, in which case nothing is written. A plan made on an image another
    /// node's write has since changed is refused by the quorum (optimistic concurrency): this
    /// node catches up and plans again, so `plan` may run more than once.
    pub async fn commit<E>(
        &self,
        plan: impl FnMut(&MetadataImage) -> std::result::Result<Vec<MetadataRecord>, E>,
    ) -> Result<std::result::Result<Arc<MetadataImage>, E>> {
        Ok(self.commit_at(plan).await?.map(|(_, image)| image))
    }

    /// [`commit`](Self::commit), also returning the version of the image it produced.
    pub async fn commit_at<E>(
        &self,
        mut plan: impl FnMut(&MetadataImage) -> std::result::Result<Vec<MetadataRecord>, E>,
    ) -> Result<std::result::Result<(u64, Arc<MetadataImage>), E>> {
        let _one_planner = self.planning.lock().await;
        let mut images = self.images.clone();
        for _ in 0..PLAN_ATTEMPTS {
            let current = images.borrow_and_update().clone();
            let records = match plan(&current.image) {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            if records.is_empty() {
                return Ok(Ok((current.version, current.image)));
            }
            let (version, applied) = match self.quorum.write(current.version, records).await? {
                CommitOutcome::Applied { version } => (version, true),
                CommitOutcome::Conflict { version } => (version, false),
                CommitOutcome::NotData => {
                    return Err(Error::Metadata(
                        "the quorum answered a metadata write as a non-data entry".into(),
                    ))
                }
            };
            let caught_up =
                tokio::time::timeout(CATCH_UP, images.wait_for(|p| p.version >= version))
                    .await
                    .map_err(|_| {
                        Error::Metadata(format!(
                        "this node did not apply metadata version {version} within {CATCH_UP:?}"
                    ))
                    })?
                    .map_err(|_| Error::Metadata("the metadata quorum stopped".into()))?
                    .image
                    .clone();
            if applied {
                return Ok(Ok((version, caught_up)));
            }
        }
        Err(Error::Metadata(format!(
            "metadata kept changing under {PLAN_ATTEMPTS} plans in a row"
        )))
    }

    /// The images this node applies, in order, as they are published.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Published> {
        self.images.clone()
    }

    /// Tells the active controller that incarnation `epoch` of `node_id` is alive (and whether
    /// it wants to be fenced); returns whether a leader took it.
    pub async fn heartbeat(&self, node_id: i32, epoch: i64, want_fence: bool) -> Result<bool> {
        let hb = crate::quorum::leader::Heartbeat {
            node_id,
            epoch,
            want_fence,
        };
        self.quorum
            .heartbeat(hb, std::time::Duration::from_secs(1))
            .await
    }

    /// The quorum as its leader sees it (DescribeQuorum); None while it has no leader.
    pub async fn describe_quorum(&self) -> Result<Option<crate::quorum::leader::Described>> {
        self.quorum
            .describe(std::time::Duration::from_secs(5))
            .await
    }

    /// Whether this node is the active controller (it leads the quorum).
    pub fn is_controller(&self) -> bool {
        self.quorum.status().is_leader
    }

    /// Where this voter stands in the quorum.
    pub fn quorum_status(&self) -> crate::quorum::QuorumStatus {
        self.quorum.status()
    }

    /// The heartbeats this node received as the active controller.
    pub fn heartbeats_seen(&self) -> std::collections::HashMap<i32, crate::quorum::leader::Seen> {
        self.quorum.heartbeats_seen()
    }

    /// Answers a quorum RPC frame from another voter.
    pub async fn serve_raft(&self, frame: &[u8]) -> Result<Vec<u8>> {
        self.quorum.serve(frame).await
    }

    pub async fn close(&self) -> Result<()> {
        self.quorum.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn endpoint() -> BTreeMap<u64, VoterEndpoint> {
        BTreeMap::from([(
            1,
            VoterEndpoint {
                host: "127.0.0.1".into(),
                port: 9093,
            },
        )])
    }

    #[tokio::test]
    async fn committed_records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        {
            let m = Metadata::open(dir.path(), true, 1, &endpoint())
                .await
                .unwrap();
            m.commit(|_| {
                Ok::<_, ()>(vec![MetadataRecord::Topic {
                    name: "orders".into(),
                    topic_id: id,
                }])
            })
            .await
            .unwrap()
            .unwrap();
            let refused = m
                .commit(|_| Err::<Vec<MetadataRecord>, _>("no"))
                .await
                .unwrap();
            assert!(refused.is_err());
            // The commit is durable when it returns; stopping the quorum writes nothing more.
            m.close().await.unwrap();
        }
        let m = Metadata::open(dir.path(), false, 1, &endpoint())
            .await
            .unwrap();
        assert_eq!(m.image().topics["orders"].id, id);
        assert_eq!(m.image().applied, 1);
    }

    /// A log directory from before the quorum: its records become the quorum's first entry,
    /// once, and the old log is kept beside the new one.
    #[tokio::test]
    async fn a_single_node_log_is_migrated_to_the_quorum_once() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        let (mut legacy, _) = MetadataLog::open(dir.path(), false).unwrap();
        legacy
            .append(&[MetadataRecord::Topic {
                name: "old".into(),
                topic_id: id,
            }])
            .unwrap();
        legacy.close().unwrap();
        for _ in 0..2 {
            let m = Metadata::open(dir.path(), false, 1, &endpoint())
                .await
                .unwrap();
            assert_eq!(m.image().topics["old"].id, id);
            assert_eq!(m.image().topics.len(), 1);
            m.close().await.unwrap();
        }
        let kept: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with("-legacy"))
            .collect();
        assert_eq!(kept.len(), 1, "{kept:?}");
    }
}
