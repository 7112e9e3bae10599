//! Cluster metadata: an ordered log of [`MetadataRecord`]s applied to a [`MetadataImage`].
//!
//! Writers go through [`Metadata::commit`], which computes records from the current image under
//! one lock (so two CreateTopics for one name cannot both pass the existence check), appends them
//! durably as one atomic entry, and then publishes a new image. Readers take an `Arc` snapshot of
//! the image and never block writers.
//!
//! The log is the internal partition `__cluster_metadata-0` in the broker's log directory, one
//! record batch per commit, each record's value a JSON-encoded `MetadataRecord`. On a single
//! node this log is the quorum (one voter); the Raft quorum replaces [`MetadataLog`]'s append
//! with a replicated one and keeps everything above it.

pub mod image;
pub mod topics;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use parking_lot::RwLock;

pub use image::{MetadataImage, MetadataRecord, ResourceType};

use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::log::batch::{build_batch, validate_record_set};
use crate::log::{now_ms, PartitionLog, Recovery};

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

/// The metadata image plus the log that makes it durable.
pub struct Metadata {
    image: RwLock<Arc<MetadataImage>>,
    log: tokio::sync::Mutex<MetadataLog>,
}

impl Metadata {
    pub fn open(log_dir: &Path, clean: bool) -> Result<Self> {
        let (log, records) = MetadataLog::open(log_dir, clean)?;
        let mut image = MetadataImage::default();
        for r in &records {
            image.apply(r);
        }
        tracing::info!(
            records = records.len(),
            topics = image.topics.len(),
            "metadata log replayed"
        );
        Ok(Metadata {
            image: RwLock::new(Arc::new(image)),
            log: tokio::sync::Mutex::new(log),
        })
    }

    /// A consistent snapshot of the current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.read().clone()
    }

    /// Computes records from the current image with `plan`, commits them, and publishes the new
    /// image. `plan` may refuse with its own error, in which case nothing is written.
    pub async fn commit<E>(
        &self,
        plan: impl FnOnce(&MetadataImage) -> std::result::Result<Vec<MetadataRecord>, E>,
    ) -> Result<std::result::Result<Arc<MetadataImage>, E>> {
        let mut log = self.log.lock().await;
        let current = self.image();
        let records = match plan(&current) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        if records.is_empty() {
            return Ok(Ok(current));
        }
        log.append(&records)?;
        let mut next = (*current).clone();
        for r in &records {
            next.apply(r);
        }
        let next = Arc::new(next);
        *self.image.write() = next.clone();
        Ok(Ok(next))
    }

    pub async fn close(&self) -> Result<()> {
        self.log.lock().await.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[tokio::test]
    async fn committed_records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        {
            let m = Metadata::open(dir.path(), true).unwrap();
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
            // No close: a crash after commit must not lose the record.
        }
        let m = Metadata::open(dir.path(), false).unwrap();
        assert_eq!(m.image().topics["orders"].id, id);
        assert_eq!(m.image().applied, 1);
    }
}
