//! Writes the seed corpus of every fuzz target into `fuzz/corpus/<target>/` (or the directory
//! given as the first argument): small, valid inputs made with the same encoders the broker and
//! the clients use, for the fuzzer to start from and damage.
//!
//! ```sh
//! CARGO_TARGET_DIR=fuzz/target/gen cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus
//! ```
//!
//! Only files named `seed-*` are rewritten; other files (regression inputs) are kept.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use fjord_broker::config::TopicConfig;
use fjord_broker::log::batch::{build_batch, validate_record_set};
use fjord_broker::log::PartitionLog;
use fjord_broker::metadata::{MetadataLog, MetadataRecord, METADATA_DIR};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const NOW_MS: i64 = 1_700_000_000_000;

fn s(v: &'static str) -> StrBytes {
    StrBytes::from_static_str(v)
}

struct Out {
    dir: PathBuf,
    count: usize,
    bytes: usize,
}

impl Out {
    fn new(root: &Path, target: &str) -> Out {
        let dir = root.join(target);
        fs::create_dir_all(&dir).unwrap();
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.file_name().to_string_lossy().starts_with("seed-") {
                fs::remove_file(e.path()).unwrap();
            }
        }
        Out {
            dir,
            count: 0,
            bytes: 0,
        }
    }

    fn put(&mut self, name: &str, data: &[u8]) {
        fs::write(self.dir.join(format!("seed-{name}")), data).unwrap();
        self.count += 1;
        self.bytes += data.len();
    }

    fn report(&self) {
        println!(
            "{}: {} files, {} bytes",
            self.dir.display(),
            self.count,
            self.bytes
        );
    }
}

// ---- record batches ------------------------------------------------------------------------

fn records(n: usize, producer_id: i64, headers: bool) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: if producer_id >= 0 { 0 } else { -1 },
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch unless offset - sequence stays constant.
            sequence: if producer_id >= 0 {
                i as i32
            } else {
                i as i32 - 1
            },
            timestamp: NOW_MS + i as i64,
            key: if i % 3 == 2 {
                None
            } else {
                Some(Bytes::from(format!("key-{i}")))
            },
            value: Some(Bytes::from(format!("value {i} {}", "x".repeat(i * 7)))),
            headers: if headers {
                IndexMap::from([(s("h"), Some(Bytes::from_static(b"v"))), (s("n"), None)])
            } else {
                IndexMap::new()
            },
        })
        .collect()
}

fn encode_batch(compression: Compression, recs: &[Record]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        recs.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.to_vec()
}

const CODECS: [(Compression, &str); 5] = [
    (Compression::None, "none"),
    (Compression::Gzip, "gzip"),
    (Compression::Snappy, "snappy"),
    (Compression::Lz4, "lz4"),
    (Compression::Zstd, "zstd"),
];

/// The record sets of the `record_batch` seeds, by name.
fn record_sets() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (codec, name) in CODECS {
        out.push((
            format!("{name}-1"),
            encode_batch(codec, &records(1, -1, false)),
        ));
        out.push((
            format!("{name}-5-headers"),
            encode_batch(codec, &records(5, -1, true)),
        ));
        out.push((
            format!("{name}-idempotent-3"),
            encode_batch(codec, &records(3, 42, false)),
        ));
    }
    // Two batches in one record set, as a producer sends after a batch fills up.
    let mut two = encode_batch(Compression::None, &records(2, -1, false));
    two.extend(encode_batch(Compression::Zstd, &records(3, -1, true)));
    out.push(("two-batches".into(), two));
    // The broker's own batches (committed offsets, the metadata log).
    out.push((
        "build-batch".into(),
        build_batch(
            0,
            NOW_MS,
            &[
                (Some(b"k"), Some(b"v")),
                (None, Some(b"tombstone?")),
                (Some(b"k2"), None),
            ],
        ),
    ));
    for (name, set) in &out {
        validate_record_set(set, 1 << 20).unwrap_or_else(|e| panic!("seed {name}: {e:?}"));
    }
    out
}

fn with_rule_bits(mut set: Vec<u8>, bits: u8) -> Vec<u8> {
    // Byte 15 (the leader epoch, which the broker overwrites) selects the rules; see the target.
    set[15] = (set[15] & !3) | bits;
    set
}

// ---- requests ------------------------------------------------------------------------------

fn frame(key: ApiKey, version: i16, body: &RequestKind) -> Option<Vec<u8>> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(s("fjord-fuzz")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .ok()?;
    body.encode(&mut buf, version).ok()?;
    // A seed must be a request the broker decodes, as the target decodes it.
    let mut back = buf.clone().freeze();
    let h = RequestHeader::decode(&mut back, key.request_header_version(version))
        .unwrap_or_else(|e| panic!("{key:?} v{version}: header does not decode: {e}"));
    assert_eq!(h, header, "{key:?} v{version}: header round trip");
    RequestKind::decode(key, &mut back, version)
        .unwrap_or_else(|e| panic!("{key:?} v{version}: body does not decode: {e}"));
    assert!(
        back.is_empty(),
        "{key:?} v{version}: bytes left after the body"
    );
    Some(buf.to_vec())
}

fn rich_requests() -> Vec<(&'static str, RequestKind)> {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};

    let batch = Bytes::from(encode_batch(Compression::None, &records(2, -1, false)));
    let topic = TopicName(s("orders"));
    vec![
        (
            "produce",
            RequestKind::Produce(
                ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(30_000)
                    .with_topic_data(vec![TopicProduceData::default()
                        .with_name(topic.clone())
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch.clone()))])]),
            ),
        ),
        (
            "produce-by-id",
            RequestKind::Produce(
                ProduceRequest::default()
                    .with_acks(1)
                    .with_timeout_ms(30_000)
                    .with_topic_data(vec![TopicProduceData::default().with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(1)
                            .with_records(Some(batch)),
                    ])]),
            ),
        ),
        (
            "fetch",
            RequestKind::Fetch(
                FetchRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_max_wait_ms(500)
                    .with_min_bytes(1)
                    .with_max_bytes(52_428_800)
                    .with_topics(vec![FetchTopic::default()
                        .with_topic(topic.clone())
                        .with_partitions(vec![FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(5)
                            .with_partition_max_bytes(1 << 20)])]),
            ),
        ),
        (
            "metadata",
            RequestKind::Metadata(
                MetadataRequest::default()
                    .with_topics(Some(vec![
                        MetadataRequestTopic::default().with_name(Some(topic.clone()))
                    ]))
                    .with_allow_auto_topic_creation(true),
            ),
        ),
        (
            "create-topics",
            RequestKind::CreateTopics(
                CreateTopicsRequest::default()
                    .with_topics(vec![CreatableTopic::default()
                        .with_name(topic.clone())
                        .with_num_partitions(3)
                        .with_replication_factor(1)
                        .with_configs(vec![CreatableTopicConfig::default()
                            .with_name(s("cleanup.policy"))
                            .with_value(Some(s("compact")))])])
                    .with_timeout_ms(30_000),
            ),
        ),
        (
            "join-group",
            RequestKind::JoinGroup(
                JoinGroupRequest::default()
                    .with_group_id(GroupId(s("g")))
                    .with_session_timeout_ms(45_000)
                    .with_rebalance_timeout_ms(300_000)
                    .with_protocol_type(s("consumer"))
                    .with_protocols(vec![JoinGroupRequestProtocol::default()
                        .with_name(s("range"))
                        .with_metadata(Bytes::from_static(
                            b"\x00\x01\x00\x00\x00\x01\x00\x06orders",
                        ))]),
            ),
        ),
        (
            "offset-commit",
            RequestKind::OffsetCommit(
                OffsetCommitRequest::default()
                    .with_group_id(GroupId(s("g")))
                    .with_generation_id_or_member_epoch(1)
                    .with_member_id(s("m-1"))
                    .with_retention_time_ms(-1)
                    .with_topics(vec![OffsetCommitRequestTopic::default()
                        .with_name(topic.clone())
                        .with_partitions(vec![OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(10)
                            .with_committed_metadata(Some(s("")))])]),
            ),
        ),
        (
            "list-offsets",
            RequestKind::ListOffsets(
                ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_topics(vec![ListOffsetsTopic::default()
                        .with_name(topic)
                        .with_partitions(vec![ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-1)])]),
            ),
        ),
        (
            "api-versions-tagged",
            RequestKind::ApiVersions(
                ApiVersionsRequest::default()
                    .with_client_software_name(s("fjord-fuzz"))
                    .with_client_software_version(s("1.0"))
                    .with_unknown_tagged_fields([(99, Bytes::from_static(b"tag"))].into()),
            ),
        ),
    ]
}

fn request_corpus(root: &Path) {
    let mut out = Out::new(root, "request_decode");
    let mut seen = std::collections::HashSet::new();
    for key in fjord_broker::api::served_keys() {
        let range = fjord_broker::api::supported(key).unwrap();
        let empty = fjord_broker::api::empty_request(key).unwrap();
        for v in range.min..=range.max {
            match frame(key, v, &empty) {
                Some(f) => {
                    if seen.insert(f.clone()) {
                        out.put(&format!("{key:?}-v{v}-empty"), &f);
                    }
                }
                None => println!(
                    "request_decode: no seed for {key:?} v{v} (the empty request does not encode)"
                ),
            }
        }
    }
    for (name, body) in rich_requests() {
        let key = body_key(&body);
        let range = fjord_broker::api::supported(key).unwrap();
        for v in range.min..=range.max {
            if let Some(f) = frame(key, v, &body) {
                if seen.insert(f.clone()) {
                    out.put(&format!("{key:?}-v{v}-{name}"), &f);
                }
            }
        }
    }
    out.report();
}

fn body_key(body: &RequestKind) -> ApiKey {
    match body {
        RequestKind::Produce(_) => ApiKey::Produce,
        RequestKind::Fetch(_) => ApiKey::Fetch,
        RequestKind::Metadata(_) => ApiKey::Metadata,
        RequestKind::CreateTopics(_) => ApiKey::CreateTopics,
        RequestKind::JoinGroup(_) => ApiKey::JoinGroup,
        RequestKind::OffsetCommit(_) => ApiKey::OffsetCommit,
        RequestKind::ListOffsets(_) => ApiKey::ListOffsets,
        RequestKind::ApiVersions(_) => ApiKey::ApiVersions,
        _ => unreachable!("add the key of this seed request"),
    }
}

// ---- metadata records ----------------------------------------------------------------------

const TOPIC_ID: &str = "5d4b4f3e-9a1c-4c2e-8f4b-6a7d1e2c3b4a";

fn metadata_json() -> Vec<(&'static str, String)> {
    let recs = [
        (
            "register-broker",
            r#"{"type":"RegisterBroker","node_id":1,"host":"localhost","port":9092,"rack":null}"#
                .to_string(),
        ),
        (
            "register-broker-rack",
            r#"{"type":"RegisterBroker","node_id":2,"host":"fjord-1.fjord","port":9093,"rack":"eu-1a"}"#
                .to_string(),
        ),
        (
            "topic",
            format!(r#"{{"type":"Topic","name":"orders","topic_id":"{TOPIC_ID}"}}"#),
        ),
        (
            "partition",
            format!(
                r#"{{"type":"Partition","topic_id":"{TOPIC_ID}","partition":0,"replicas":[1],"isr":[1],"leader":1,"leader_epoch":0}}"#
            ),
        ),
        (
            "remove-topic",
            format!(r#"{{"type":"RemoveTopic","topic_id":"{TOPIC_ID}"}}"#),
        ),
        (
            "config-topic",
            r#"{"type":"Config","resource_type":"Topic","resource":"orders","key":"retention.ms","value":"1000"}"#
                .to_string(),
        ),
        (
            "config-broker-delete",
            r#"{"type":"Config","resource_type":"Broker","resource":"","key":"log.retention.ms","value":null}"#
                .to_string(),
        ),
        (
            "producer-ids",
            r#"{"type":"ProducerIds","next":1000}"#.to_string(),
        ),
    ];
    for (name, json) in &recs {
        serde_json::from_str::<MetadataRecord>(json).unwrap_or_else(|e| panic!("seed {name}: {e}"));
    }
    recs.to_vec()
}

fn metadata_corpus(root: &Path) {
    let mut out = Out::new(root, "metadata_record");
    let recs = metadata_json();
    for (name, json) in &recs {
        out.put(name, json.as_bytes());
    }
    // A stream: the records in the order a broker writes them, one per line.
    let order = [
        "register-broker",
        "topic",
        "partition",
        "config-topic",
        "config-broker-delete",
        "producer-ids",
        "remove-topic",
    ];
    let stream: Vec<String> = order
        .iter()
        .map(|n| recs.iter().find(|(m, _)| m == n).unwrap().1.clone())
        .collect();
    out.put("stream", stream.join("\n").as_bytes());
    out.report();
}

// ---- segments ------------------------------------------------------------------------------

struct LogFiles {
    log: Vec<u8>,
    index: Vec<u8>,
    timeindex: Vec<u8>,
    next_offset: i64,
    max_ts: i64,
}

fn read_segment(dir: &Path, base: i64, next_offset: i64, max_ts: i64) -> LogFiles {
    let f = |ext: &str| fs::read(dir.join(format!("{base:020}.{ext}"))).unwrap_or_default();
    LogFiles {
        log: f("log"),
        index: f("index"),
        timeindex: f("timeindex"),
        next_offset,
        max_ts,
    }
}

/// A partition log with the given record sets appended, closed cleanly.
fn make_log(sets: &[Vec<u8>], roll_after: Option<usize>) -> (tempfile::TempDir, Vec<i64>) {
    let tmp = tempfile::tempdir().unwrap();
    let config = TopicConfig::resolve(|k| match k {
        "index.interval.bytes" => Some("64".into()),
        _ => None,
    });
    let mut log = PartitionLog::open(tmp.path(), config, false).unwrap();
    let mut bases = vec![0];
    for (i, set) in sets.iter().enumerate() {
        let batches = validate_record_set(set, 1 << 20).unwrap();
        log.append(set, &batches, 0, NOW_MS + i as i64).unwrap();
        if roll_after == Some(i) {
            log.roll().unwrap();
            bases.push(log.next_offset());
        }
    }
    log.close().unwrap();
    (tmp, bases)
}

fn u16be(n: usize) -> [u8; 2] {
    u16::try_from(n).unwrap().to_be_bytes()
}

fn segment_corpus(root: &Path) {
    let mut out = Out::new(root, "log_recovery");
    let sets: Vec<Vec<u8>> = record_sets()
        .into_iter()
        .filter(|(n, _)| n.ends_with("-1") || n.ends_with("-headers") || n == "two-batches")
        .map(|(_, b)| b)
        .collect();

    // One segment, opened after a crash (flags 0) and after a clean shutdown without indexes (1).
    let (tmp, _) = make_log(&sets, None);
    let seg = read_segment(tmp.path(), 0, 0, 0);
    for flags in [0u8, 1] {
        let mut input = vec![flags];
        input.extend(&seg.log);
        out.put(&format!("segment-flags{flags}"), &input);
    }
    // A torn tail: half of a batch after the last whole one.
    let mut torn = vec![0u8];
    torn.extend(&seg.log);
    torn.extend(&sets[0][..sets[0].len() / 2]);
    out.put("segment-torn-tail", &torn);
    // A tail of zeros (preallocated space after a crash).
    let mut zeros = vec![0u8];
    zeros.extend(&seg.log);
    zeros.extend([0u8; 64]);
    out.put("segment-zero-tail", &zeros);

    // The same segment with the indexes a clean shutdown saved (flags 3: clean, saved).
    let summary = {
        let log = PartitionLog::open(tmp.path(), TopicConfig::resolve(|_| None), true).unwrap();
        (
            log.next_offset(),
            log.max_timestamp().unwrap().map_or(-1, |(t, _)| t),
        )
    };
    let seg = read_segment(tmp.path(), 0, summary.0, summary.1);
    for flags in [3u8, 2] {
        let mut input = vec![flags];
        input.extend(u16be(seg.index.len()));
        input.extend(u16be(seg.timeindex.len()));
        input.extend(seg.next_offset.to_be_bytes());
        input.extend(seg.max_ts.to_be_bytes());
        input.extend(&seg.index);
        input.extend(&seg.timeindex);
        input.extend(&seg.log);
        out.put(&format!("segment-saved-indexes-flags{flags}"), &input);
    }
    drop(tmp);

    // Two segments (flags 4: split, then the second segment's base offset).
    let (tmp, bases) = make_log(&sets, Some(sets.len() / 2));
    let first = read_segment(tmp.path(), 0, 0, 0);
    let second = read_segment(tmp.path(), bases[1], 0, 0);
    let mut input = vec![4u8];
    input.extend(u32::try_from(first.log.len()).unwrap().to_be_bytes());
    input.extend(bases[1].to_be_bytes());
    input.extend(&first.log);
    input.extend(&second.log);
    out.put("two-segments", &input);
    drop(tmp);

    // A metadata log as `MetadataLog::append` writes it (one batch of JSON records per commit),
    // with a fixed time instead of the clock so that the seed does not change.
    let recs: Vec<String> = metadata_json()
        .into_iter()
        .filter(|(n, _)| *n != "remove-topic")
        .map(|(_, j)| {
            let r: MetadataRecord = serde_json::from_str(&j).unwrap();
            serde_json::to_string(&r).unwrap()
        })
        .collect();
    let commits: Vec<Vec<u8>> = [&recs[..2], &recs[2..4], &recs[4..]]
        .iter()
        .map(|c| {
            let kv: Vec<_> = c.iter().map(|v| (None, Some(v.as_bytes()))).collect();
            build_batch(0, NOW_MS, &kv)
        })
        .collect();
    let (tmp, _) = make_log(&commits, None);
    let mlog = read_segment(tmp.path(), 0, 0, 0).log;
    // It must be what the broker replays.
    {
        let replay = tempfile::tempdir().unwrap();
        let dir = replay.path().join(METADATA_DIR);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("{:020}.log", 0)), &mlog).unwrap();
        let (_, replayed) = MetadataLog::open(replay.path(), false).unwrap();
        assert_eq!(
            replayed.len(),
            recs.len(),
            "metadata log seed does not replay"
        );
    }
    for flags in [0u8, 1] {
        let mut input = vec![flags];
        input.extend(&mlog);
        out.put(&format!("metadata-log-flags{flags}"), &input);
    }
    out.report();
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));

    let mut out = Out::new(&root, "record_batch");
    for (name, set) in record_sets() {
        out.put(&name, &set);
    }
    let none1 = encode_batch(Compression::None, &records(3, -1, false));
    out.put("none-3-compacted", &with_rule_bits(none1.clone(), 1));
    out.put("none-3-log-append-time", &with_rule_bits(none1, 2));
    out.report();

    request_corpus(&root);
    metadata_corpus(&root);
    segment_corpus(&root);
}
