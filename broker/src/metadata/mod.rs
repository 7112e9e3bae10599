//! Cluster metadata: an ordered log of [`MetadataRecord`]s applied to a [`MetadataImage`].
//!
//! Writers go through [`Metadata::commit`], which computes records from the current image under
//! one lock (so two CreateTopics for one name cannot both pass the existence check), commits them
//! through the metadata quorum ([`crate::quorum`]) as one atomic entry, and returns the image
//! they produced. Readers take an `Arc` snapshot of the image and never block writers.
//!
//! [`MetadataLog`] is the single-node log from before the quorum (one batch of JSON-encoded
//! records per commit in `__cluster_metadata-0`); it is read once, to migrate such a directory.

pub mod image;
pub mod topics;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;

pub use image::{MetadataImage, MetadataRecord, ResourceType};

use crate::config::TopicConfig;
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

/// The metadata image and the quorum that makes it durable. A node with no
/// `controller.quorum.voters` is a quorum of one: itself.
pub struct Metadata {
    quorum: Quorum,
    images: tokio::sync::watch::Receiver<Published>,
    /// One planner at a time on this node: a plan reads the image it will be applied to.
    planning: tokio::sync::Mutex<()>,
}

impl Metadata {
    /// Starts this node's voter of the metadata quorum in `log_dir/__cluster_metadata-0`. A
    /// directory written before the quorum existed (the single-node log, no `quorum-state`) is
    /// migrated: its records become the quorum's first entry, and the old directory is kept
    /// beside it as `__cluster_metadata-0.<id>-legacy`.
    pub async fn open(
        log_dir: &Path,
        clean: bool,
        node_id: i32,
        endpoint: VoterEndpoint,
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
            Some(records)
        } else {
            None
        };
        let voters = BTreeMap::from([(node_id as u64, endpoint)]);
        let quorum = Quorum::start(node_id as u64, &voters, &dir, Settings::single_voter()).await?;
        quorum
            .wait_until_leading(std::time::Duration::from_secs(30))
            .await?;
        let images = quorum.images();
        let metadata = Metadata {
            quorum,
            images,
            planning: tokio::sync::Mutex::new(()),
        };
        if let Some(records) = legacy.filter(|r| !r.is_empty()) {
            metadata.commit(|_| Ok::<_, Error>(records)).await??;
        }
        let image = metadata.image();
        tracing::info!(
            topics = image.topics.len(),
            version = metadata.images.borrow().version,
            "metadata quorum started"
        );
        Ok(metadata)
    }

    /// A consistent snapshot of the current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.images.borrow().image.clone()
    }

    /// Computes records from the current image with `plan`, commits them through the quorum,
    /// and returns the image they produced. `plan` may refuse with its own error, in which case
    /// nothing is written.
    pub async fn commit<E>(
        &self,
        plan: impl FnOnce(&MetadataImage) -> std::result::Result<Vec<MetadataRecord>, E>,
    ) -> Result<std::result::Result<Arc<MetadataImage>, E>> {
        let _one_planner = self.planning.lock().await;
        let mut images = self.images.clone();
        let current = images.borrow_and_update().clone();
        let records = match plan(&current.image) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        if records.is_empty() {
            return Ok(Ok(current.image));
        }
        let version = match self.quorum.write(current.version, records).await? {
            CommitOutcome::Applied { version } => version,
            // Only this node plans, one plan at a time: another version under it is a bug.
            other => {
                return Err(Error::Metadata(format!(
                    "the quorum did not apply a plan made at version {}: {other:?}",
                    current.version
                )))
            }
        };
        let published = images
            .wait_for(|p| p.version >= version)
            .await
            .map_err(|_| Error::Metadata("the metadata quorum stopped".into()))?;
        Ok(Ok(published.image.clone()))
    }

    pub async fn close(&self) -> Result<()> {
        self.quorum.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn endpoint() -> VoterEndpoint {
        VoterEndpoint {
            host: "127.0.0.1".into(),
            port: 9093,
        }
    }

    #[tokio::test]
    async fn committed_records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        {
            let m = Metadata::open(dir.path(), true, 1, endpoint())
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
        let m = Metadata::open(dir.path(), false, 1, endpoint())
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
            let m = Metadata::open(dir.path(), false, 1, endpoint())
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
