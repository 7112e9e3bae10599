//! Requests and records an attacker (or a broken client) sends. Before these fixes a 14-byte
//! request whose array length claimed 2^31-1 elements aborted the process (kafka-protocol 0.18
//! reserved the claimed capacity), and record batches that Kafka's log validator refuses were
//! stored, to become poison pills for consumers. Each case here closes one connection or gets
//! Kafka's error code, stores nothing, and leaves the broker serving everyone else.

mod common;

use bytes::{BufMut, BytesMut};
use common::*;
use fjord_broker::api::{empty_request, served_keys, supported};
use kafka_protocol::messages::{MetadataRequest, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::Compression;

/// A request frame: header for `key`/`version`, then `body` as given.
fn frame(key: kafka_protocol::messages::ApiKey, version: i16, body: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("hostile")))
        .encode(&mut b, key.request_header_version(version))
        .expect("header encodes");
    b.put_slice(body);
    let mut out = (b.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&b);
    out
}

#[tokio::test]
async fn the_14_byte_request_that_aborted_the_broker_closes_one_connection() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let metadata = kafka_protocol::messages::ApiKey::Metadata;
    assert!(
        supported(metadata).is_some_and(|r| r.min <= 1),
        "Metadata v1 is served"
    );
    // Metadata v1: a header with a null client id, then a topic array that claims 2^31-1
    // names.
    let raw = [
        0, 0, 0, 14, 0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff,
    ];
    c.send_raw(&raw).await?;
    assert!(c.read_frame().await?.is_none(), "the connection is closed");
    let r = b
        .client()
        .await?
        .send(MetadataRequest::default(), 12)
        .await?;
    assert_eq!(r.brokers.len(), 1, "and the broker still serves");
    Ok(())
}

/// Every API Fjord serves, at its newest and oldest version, with a huge count written over
/// every position of its body: each frame is answered or closes its connection, and the broker
/// keeps its data and keeps serving.
#[tokio::test]
async fn a_huge_count_anywhere_in_any_served_request_never_takes_the_broker_down() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut admin = b.client().await?;
    let t = topic("survivor");
    create_topic(&mut admin, &t, 1, &[]).await?;
    let (err, _) = produce(
        &mut admin,
        &t,
        0,
        batch(&[("k", "kept")], Compression::None),
        -1,
    )
    .await?;
    assert_eq!(err, 0);

    let mut sent = 0;
    for key in served_keys() {
        let range = supported(key).expect("served");
        for version in [range.min, range.max] {
            let mut body = BytesMut::new();
            empty_request(key)
                .expect("served")
                .encode(&mut body, version)?;
            for at in 0..=body.len() {
                for huge in [&i32::MAX.to_be_bytes()[..], &[0xfe, 0xff, 0xff, 0xff, 0x0f]] {
                    let mut damaged = body[..at].to_vec();
                    damaged.extend_from_slice(huge);
                    damaged.extend_from_slice(&body[(at + huge.len()).min(body.len())..]);
                    let mut c = b.client().await?;
                    c.send_raw(&frame(key, version, &damaged)).await?;
                    // A request that decodes may need no answer (Produce with acks=0), so an
                    // ApiVersions follows: the connection answers it, or has been closed.
                    let probe =
                        c.encode(&kafka_protocol::messages::ApiVersionsRequest::default(), 3)?;
                    let _ = c.send_raw(&probe).await;
                    let answered =
                        tokio::time::timeout(std::time::Duration::from_secs(10), async {
                            while let Ok(Some(f)) = c.read_frame().await {
                                if f[0..4] == probe[8..12] {
                                    return true;
                                }
                            }
                            false
                        })
                        .await;
                    anyhow::ensure!(
                        answered.is_ok(),
                        "{key:?} v{version} at {at}: no answer and not closed"
                    );
                    sent += 1;
                }
            }
        }
    }
    assert!(sent > 300, "{sent}");
    let r = fetch(&mut admin, &t, 0, 0).await?;
    assert_eq!(records_of(&r)?, vec![(0, "k".into(), "kept".into())]);
    Ok(())
}

/// Rewrites header bytes of a batch and fixes its CRC, as a hostile client would: the CRC
/// check passes, so only validation can stop it.
fn forged(b: &[u8], at: usize, bytes: &[u8]) -> bytes::Bytes {
    let mut b = b.to_vec();
    b[at..at + bytes.len()].copy_from_slice(bytes);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    bytes::Bytes::from(b)
}

#[tokio::test]
async fn batches_kafka_refuses_are_refused_and_nothing_is_stored() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("validated");
    create_topic(&mut c, &t, 1, &[]).await?;
    let good = batch(&[("a", "1"), ("b", "2")], Compression::None);
    let ten_years_ms = 10 * 365 * 24 * 3_600_000i64;
    let now = fjord_broker::log::now_ms();
    let future = {
        // Both the base timestamp and the max timestamp ten years ahead.
        let mut f = good.to_vec();
        f[27..35].copy_from_slice(&(now + ten_years_ms).to_be_bytes());
        f[35..43].copy_from_slice(&(now + ten_years_ms + 1).to_be_bytes());
        forged(&f, 0, &f.clone()[0..8])
    };
    let corrupt_gzip = {
        let g = batch(&[("k", &"v".repeat(500))], Compression::Gzip).to_vec();
        let mut bad = g.clone();
        let mid = 61 + (g.len() - 61) / 2;
        for x in &mut bad[mid..mid + 6] {
            *x ^= 0xa5;
        }
        forged(&bad, 0, &bad.clone()[0..8])
    };
    // (what, record set, expected error code)
    let cases: Vec<(&str, bytes::Bytes, i16)> = vec![
        (
            "count 3 for lastOffsetDelta 1",
            forged(&good, 57, &3i32.to_be_bytes()),
            87,
        ),
        ("count 0", forged(&good, 57, &0i32.to_be_bytes()), 87),
        (
            "lastOffsetDelta 2^31-1",
            forged(&good, 23, &i32::MAX.to_be_bytes()),
            87,
        ),
        (
            "a control batch",
            forged(&good, 21, &0x20i16.to_be_bytes()),
            87,
        ),
        (
            "a producer id with base sequence -1",
            forged(&good, 43, &42i64.to_be_bytes()),
            87,
        ),
        ("a timestamp ten years ahead", future, 32),
        ("gzip that does not decompress", corrupt_gzip, 2),
    ];
    for (what, records, code) in cases {
        let (err, _) = produce(&mut c, &t, 0, records, -1).await?;
        assert_eq!(err, code, "{what}");
    }
    let (err, base) = produce(&mut c, &t, 0, good.clone(), -1).await?;
    assert_eq!((err, base), (0, 0), "nothing refused took an offset");
    let r = fetch(&mut c, &t, 0, 0).await?;
    assert_eq!(
        records_of(&r)?,
        vec![(0, "a".into(), "1".into()), (1, "b".into(), "2".into())]
    );
    Ok(())
}

#[tokio::test]
async fn the_timestamp_window_is_a_topic_config() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("old-ok");
    create_topic(
        &mut c,
        &t,
        1,
        &[("message.timestamp.before.max.ms", "60000")],
    )
    .await?;
    let old = {
        let g = batch(&[("k", "v")], Compression::None).to_vec();
        let then = fjord_broker::log::now_ms() - 3_600_000;
        let mut f = g.clone();
        f[27..35].copy_from_slice(&then.to_be_bytes());
        f[35..43].copy_from_slice(&then.to_be_bytes());
        forged(&f, 0, &f.clone()[0..8])
    };
    let (err, _) = produce(&mut c, &t, 0, old.clone(), -1).await?;
    assert_eq!(err, 32, "an hour old is past a one-minute window");
    let lax = topic("old-default");
    create_topic(&mut c, &lax, 1, &[]).await?;
    let (err, _) = produce(&mut c, &lax, 0, old, -1).await?;
    assert_eq!(
        err, 0,
        "by default any past timestamp is accepted, as in Kafka"
    );
    Ok(())
}

/// CreateTopics with 2^31-1 partitions crashed the broker and CreatePartitions to 2^31-1 grew
/// its memory without bound; Kafka refuses both above 10,000 partitions per request.
#[tokio::test]
async fn requests_for_too_many_partitions_are_policy_violations() -> TestResult {
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{CreatePartitionsRequest, CreateTopicsRequest};
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let huge = topic("huge");
    for count in [i32::MAX, 10_001] {
        let r = c
            .send(
                CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
                    .with_name(name(&huge))
                    .with_num_partitions(count)
                    .with_replication_factor(1)]),
                7,
            )
            .await?;
        assert_eq!(r.topics[0].error_code, 44, "POLICY_VIOLATION for {count}");
    }
    let (err, _) = metadata(&mut c, &huge, false).await?;
    assert_eq!(err, 3, "nothing was created");

    let t = topic("grow");
    create_topic(&mut c, &t, 1, &[]).await?;
    let r = c
        .send(
            CreatePartitionsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(name(&t))
                    .with_count(i32::MAX)
                    .with_assignments(None)]),
            3,
        )
        .await?;
    assert_eq!(r.results[0].error_code, 44);
    // Within the limit, growing still works.
    let r = c
        .send(
            CreatePartitionsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(name(&t))
                    .with_count(3)
                    .with_assignments(None)]),
            3,
        )
        .await?;
    assert_eq!(r.results[0].error_code, 0);
    Ok(())
}
