//! Test support: a real broker on `127.0.0.1:0` in this process, and a minimal Kafka client
//! that speaks the wire protocol through the `kafka-protocol` crate.

#![allow(dead_code)]

pub mod cluster;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fjord_broker::BrokerConfig;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, FetchRequest, FetchResponse, MetadataRequest, ProduceRequest,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub type TestResult<T = ()> = anyhow::Result<T>;

pub struct TestBroker {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<fjord_broker::Result<()>>>,
}

impl TestBroker {
    pub async fn start(extra: &[&str]) -> TestResult<Self> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().to_path_buf();
        let mut b = Self::start_in(&dir, extra).await?;
        b._tmp = Some(tmp);
        Ok(b)
    }

    pub async fn start_in(dir: &Path, extra: &[&str]) -> TestResult<Self> {
        let mut overrides = vec![
            "listeners=PLAINTEXT://127.0.0.1:0".to_string(),
            format!("log.dirs={}", dir.display()),
            "fjord.metrics.listener=127.0.0.1:0".to_string(),
            "group.initial.rebalance.delay.ms=0".to_string(),
            "offsets.topic.num.partitions=3".to_string(),
        ];
        overrides.extend(extra.iter().map(|s| s.to_string()));
        let config = BrokerConfig::load(None, Vec::new(), &overrides)?;
        let listeners = fjord_broker::bind(&config).await?;
        let addr = listeners[0].local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(fjord_broker::run(listeners, config, async move {
            let _ = rx.await;
        }));
        let mut b = TestBroker {
            addr,
            dir: dir.to_path_buf(),
            _tmp: None,
            stop: Some(tx),
            task: Some(task),
        };
        // Ready when ApiVersions answers.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = Client::connect(addr).await {
                if c.api_versions().await.is_ok() {
                    break;
                }
            }
            if b.task.as_ref().is_some_and(|t| t.is_finished()) {
                let t = b.task.take().expect("checked above");
                anyhow::bail!("broker stopped while starting: {:?}", t.await?);
            }
            anyhow::ensure!(Instant::now() < deadline, "broker did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(b)
    }

    /// Clean shutdown; keeps the directory (and its TempDir guard) for a restart.
    pub async fn stop(mut self) -> TestResult<(PathBuf, Option<tempfile::TempDir>)> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await??;
        }
        Ok((self.dir.clone(), self._tmp.take()))
    }

    /// Abrupt stop: the broker task is aborted without its shutdown path (no flush, no
    /// clean-shutdown marker), as close to a crash as an in-process broker gets.
    pub async fn crash(mut self) -> TestResult<(PathBuf, Option<tempfile::TempDir>)> {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
        Ok((self.dir.clone(), self._tmp.take()))
    }

    pub async fn client(&self) -> TestResult<Client> {
        Client::connect(self.addr).await
    }
}

pub struct Client {
    pub stream: TcpStream,
    correlation: i32,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> TestResult<Self> {
        let stream = TcpStream::connect(addr).await?;
        Self::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> TestResult<Self> {
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            correlation: 0,
        })
    }

    pub fn encode<R: Request + Encodable>(&mut self, req: &R, version: i16) -> TestResult<Bytes> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("fjord-test")));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version))?;
        req.encode(&mut body, version)?;
        let mut framed = BytesMut::with_capacity(body.len() + 4);
        framed.put_i32(body.len() as i32);
        framed.put_slice(&body);
        Ok(framed.freeze())
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> TestResult {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Reads one response frame; `Ok(None)` when the broker closed the connection.
    pub async fn read_frame(&mut self) -> TestResult<Option<Bytes>> {
        let len = match self.stream.read_i32().await {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut buf = vec![0u8; len as usize];
        self.stream.read_exact(&mut buf).await?;
        Ok(Some(Bytes::from(buf)))
    }

    pub async fn send<R>(&mut self, req: R, version: i16) -> TestResult<R::Response>
    where
        R: Request + Encodable,
        R::Response: Decodable + HeaderVersion,
    {
        let frame = self.encode(&req, version)?;
        self.send_raw(&frame).await?;
        let mut resp = self
            .read_frame()
            .await?
            .ok_or_else(|| anyhow::anyhow!("connection closed"))?;
        let header_version = if R::KEY == ApiKey::ApiVersions as i16 {
            0
        } else {
            <R::Response as HeaderVersion>::header_version(version)
        };
        let header = ResponseHeader::decode(&mut resp, header_version)?;
        anyhow::ensure!(
            header.correlation_id == self.correlation,
            "correlation id mismatch"
        );
        let body = <R::Response as Decodable>::decode(&mut resp, version)?;
        anyhow::ensure!(
            !resp.has_remaining(),
            "{} bytes left after the response",
            resp.remaining()
        );
        Ok(body)
    }

    pub async fn api_versions(
        &mut self,
    ) -> TestResult<kafka_protocol::messages::ApiVersionsResponse> {
        self.send(kafka_protocol::messages::ApiVersionsRequest::default(), 3)
            .await
    }
}

/// A fresh topic name per test.
pub fn topic(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}

/// Polls `f` until it returns `Some`, or fails at the deadline.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> TestResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

use indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// One encoded batch of key/value records, as a producer would send it.
pub fn batch(values: &[(&str, &str)], compression: Compression) -> Bytes {
    idempotent_batch(values, compression, -1, -1, -1)
}

pub fn idempotent_batch(
    values: &[(&str, &str)],
    compression: Compression,
    producer_id: i64,
    epoch: i16,
    sequence: i32,
) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch unless offset - sequence stays constant.
            sequence: if sequence < 0 {
                i as i32 - 1
            } else {
                sequence + i as i32
            },
            timestamp: now + i as i64,
            key: Some(Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encodable records");
    buf.freeze()
}

/// Decodes fetched bytes into (offset, key, value).
pub fn decode(mut records: Bytes) -> TestResult<Vec<(i64, String, String)>> {
    let mut out = Vec::new();
    for set in RecordBatchDecoder::decode_all(&mut records)? {
        for r in set.records {
            let k = r
                .key
                .map(|k| String::from_utf8_lossy(&k).to_string())
                .unwrap_or_default();
            let v = r
                .value
                .map(|v| String::from_utf8_lossy(&v).to_string())
                .unwrap_or_default();
            out.push((r.offset, k, v));
        }
    }
    Ok(out)
}

// Request helpers shared by the integration tests.

pub fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub async fn create_topic(
    c: &mut Client,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> TestResult {
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        )]);
    let r = c.send(req, 7).await?;
    anyhow::ensure!(
        r.topics[0].error_code == 0,
        "create failed: {:?}",
        r.topics[0].error_message
    );
    Ok(())
}

/// Produces one record set; returns (error code, base offset).
pub async fn produce(
    c: &mut Client,
    topic: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> TestResult<(i16, i64)> {
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    let r = c.send(req, 11).await?;
    let p = &r.responses[0].partition_responses[0];
    Ok((p.error_code, p.base_offset))
}

pub fn fetch_req(
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    min_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(50 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

pub async fn fetch(
    c: &mut Client,
    topic: &str,
    partition: i32,
    offset: i64,
) -> TestResult<FetchResponse> {
    c.send(fetch_req(topic, partition, offset, 0, 0), 12).await
}

/// The records of the first partition of a fetch response.
pub fn records_of(r: &FetchResponse) -> TestResult<Vec<(i64, String, String)>> {
    decode(
        r.responses[0].partitions[0]
            .records
            .clone()
            .unwrap_or_default(),
    )
}

/// Metadata for one topic: (error code, topic id). `auto_create` as clients set it.
pub async fn metadata(c: &mut Client, t: &str, auto_create: bool) -> TestResult<(i16, uuid::Uuid)> {
    let md = c
        .send(
            MetadataRequest::default()
                .with_allow_auto_topic_creation(auto_create)
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(name(t)))
                ])),
            12,
        )
        .await?;
    Ok((md.topics[0].error_code, md.topics[0].topic_id))
}

/// OffsetCommit of `offset` for partition 0 of `topic` by `group`, outside any generation (as
/// an admin client or a simple consumer commits).
pub fn commit_request(
    group: &str,
    topic: &str,
    offset: i64,
) -> kafka_protocol::messages::OffsetCommitRequest {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    kafka_protocol::messages::OffsetCommitRequest::default()
        .with_group_id(kafka_protocol::messages::GroupId(StrBytes::from_string(
            group.to_string(),
        )))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])])
}

/// FindCoordinator for a group, as every client sends before its first group request (it
/// creates `__consumer_offsets` on first use); fails unless this broker is the coordinator.
pub async fn find_coordinator(c: &mut Client, group: &str) -> TestResult {
    let r = c
        .send(
            kafka_protocol::messages::FindCoordinatorRequest::default()
                .with_key(StrBytes::from_string(group.to_string())),
            3,
        )
        .await?;
    anyhow::ensure!(r.error_code == 0, "FindCoordinator: error {}", r.error_code);
    Ok(())
}

/// Every byte of a partition's segment files, by file name: replicas compare equal when their
/// logs are byte-identical.
pub fn segments(
    dir: &Path,
    partition_dir: &str,
) -> TestResult<std::collections::BTreeMap<String, Vec<u8>>> {
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(dir.join(partition_dir))? {
        let path = e?.path();
        if path.extension().is_some_and(|x| x == "log") {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            out.insert(name, std::fs::read(&path)?);
        }
    }
    Ok(out)
}
