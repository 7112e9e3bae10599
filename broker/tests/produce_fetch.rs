//! Produce and Fetch through the wire protocol against a real broker.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, InitProducerIdRequest, ListOffsetsRequest, MetadataRequest,
};
use kafka_protocol::records::Compression;

#[tokio::test]
async fn every_codec_round_trips_byte_for_byte() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("codecs");
    create_topic(&mut c, &t, 1, &[]).await?;
    let mut expected = Vec::new();
    let mut next = 0;
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let values: Vec<(String, String)> = (0..5)
            .map(|i| (format!("k{i}"), format!("{codec:?} value {i} 한국어")))
            .collect();
        let refs: Vec<(&str, &str)> = values
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (err, base) = produce(&mut c, &t, 0, batch(&refs, codec), -1).await?;
        assert_eq!((err, base), (0, next), "{codec:?}");
        for (i, (k, v)) in values.into_iter().enumerate() {
            expected.push((next + i as i64, k, v));
        }
        next += 5;
    }
    let r = fetch(&mut c, &t, 0, 0).await?;
    let p = &r.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, 25));
    assert_eq!(decode(p.records.clone().expect("records"))?, expected);
    Ok(())
}

#[tokio::test]
async fn fetch_inside_a_batch_returns_the_whole_batch() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("inside");
    create_topic(&mut c, &t, 1, &[]).await?;
    produce(
        &mut c,
        &t,
        0,
        batch(&[("a", "1"), ("b", "2"), ("c", "3")], Compression::Lz4),
        1,
    )
    .await?;
    let r = fetch(&mut c, &t, 0, 2).await?;
    let got = decode(
        r.responses[0].partitions[0]
            .records
            .clone()
            .expect("records"),
    )?;
    assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), vec![0, 1, 2]);
    Ok(())
}

#[tokio::test]
async fn an_empty_partition_returns_an_empty_record_set_not_null() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("empty");
    create_topic(&mut c, &t, 1, &[]).await?;
    for version in [4, 12, 15] {
        let r = c.send(fetch_req(&t, 0, 0, 0, 0), version).await?;
        assert_eq!(
            r.responses[0].partitions[0]
                .records
                .as_ref()
                .map(|r| r.len()),
            Some(0),
            "v{version}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn fetch_by_topic_id_works_from_v13() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("byid");
    create_topic(&mut c, &t, 1, &[]).await?;
    produce(&mut c, &t, 0, batch(&[("k", "v")], Compression::None), 1).await?;
    let md = c
        .send(
            MetadataRequest::default().with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(name(&t))),
            ])),
            12,
        )
        .await?;
    let id = md.topics[0].topic_id;
    assert!(!id.is_nil(), "topic ids are non-zero");
    let mut req = fetch_req("", 0, 0, 0, 0);
    req.topics[0].topic_id = id;
    let r = c.send(req, 16).await?;
    assert_eq!(r.responses[0].topic_id, id);
    assert_eq!(records_of(&r)?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_long_poll_waits_for_data_and_wakes_when_it_arrives() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("longpoll");
    create_topic(&mut c, &t, 1, &[]).await?;
    // Nothing arrives: the fetch waits for max_wait_ms.
    let started = Instant::now();
    let r = c.send(fetch_req(&t, 0, 0, 300, 1), 12).await?;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "returned before max_wait_ms"
    );
    assert_eq!(
        r.responses[0].partitions[0]
            .records
            .as_ref()
            .map(|r| r.len()),
        Some(0)
    );
    // Data arrives while another connection waits with a long max_wait_ms.
    let mut waiter = b.client().await?;
    let t2 = t.clone();
    let wait = tokio::spawn(async move { waiter.send(fetch_req(&t2, 0, 0, 30_000, 1), 12).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    produce(&mut c, &t, 0, batch(&[("k", "v")], Compression::None), 1).await?;
    let r = tokio::time::timeout(Duration::from_secs(10), wait).await???;
    assert_eq!(records_of(&r)?.len(), 1);
    Ok(())
}

/// OffsetForLeaderEpoch and Fetch's diverging epoch (KIP-320, KIP-595) on one node: every
/// record was written in epoch 0, so epoch 0 ends at the log end; a reader claiming a newer
/// epoch it fetched in is told it diverged; a fetch from a node that is not a replica is
/// refused.
#[tokio::test]
async fn leader_epochs_answer_where_an_epoch_ended() -> TestResult {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::OffsetForLeaderEpochRequest;
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("leaderepochs");
    create_topic(&mut c, &t, 1, &[]).await?;
    for v in ["a", "b", "c"] {
        let (err, _) = produce(&mut c, &t, 0, batch(&[("k", v)], Compression::None), -1).await?;
        assert_eq!(err, 0);
    }
    let ask = |replica: i32, current: i32, epoch: i32| {
        OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(replica))
            .with_topics(vec![OffsetForLeaderTopic::default()
                .with_topic(name(&t))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(current)
                    .with_leader_epoch(epoch)])])
    };
    for (replica, current, epoch, want) in [
        (-1, 0, 0, (0, 0, 3)),
        (-1, -1, 0, (0, 0, 3)),
        (-1, 0, 1, (0, -1, -1)),  // newer than any epoch: undefined
        (-1, 1, 0, (75, -1, -1)), // UNKNOWN_LEADER_EPOCH
        (1, 0, 0, (0, 0, 3)),
    ] {
        let r = c.send(ask(replica, current, epoch), 4).await?;
        let p = &r.topics[0].partitions[0];
        assert_eq!(
            (p.error_code, p.leader_epoch, p.end_offset),
            want,
            "replica {replica}, current epoch {current}, asked epoch {epoch}"
        );
    }
    // A reader that claims it last fetched in epoch 1, newer than any this log has: Kafka
    // cannot place it and answers OFFSET_OUT_OF_RANGE.
    let mut req = fetch_req(&t, 0, 3, 0, 0);
    req.topics[0].partitions[0].last_fetched_epoch = 1;
    let r = c.send(req, 12).await?;
    assert_eq!(r.responses[0].partitions[0].error_code, 1);
    assert_eq!(records_of(&r)?.len(), 0);
    // Consistent with the log: no divergence, records as usual.
    let mut req = fetch_req(&t, 0, 1, 0, 0);
    req.topics[0].partitions[0].last_fetched_epoch = 0;
    let r = c.send(req, 12).await?;
    assert_eq!(r.responses[0].partitions[0].diverging_epoch.epoch, -1);
    assert_eq!(records_of(&r)?.len(), 2);
    // A replica fetch from a node that holds no replica of the partition.
    let mut req = fetch_req(&t, 0, 0, 0, 0);
    req.replica_id = BrokerId(7);
    let r = c.send(req, 12).await?;
    assert_eq!(
        r.responses[0].partitions[0].error_code, 6,
        "NOT_LEADER_OR_FOLLOWER"
    );
    Ok(())
}

/// `min.insync.replicas` above the ISR: `acks=all` is refused before anything is written
/// (NOT_ENOUGH_REPLICAS, as Kafka answers), while `acks=1` still appends.
#[tokio::test]
async fn acks_all_below_min_insync_replicas_is_not_enough_replicas() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("minisr");
    create_topic(&mut c, &t, 1, &[("min.insync.replicas", "2")]).await?;
    let (err, _) = produce(&mut c, &t, 0, batch(&[("k", "all")], Compression::None), -1).await?;
    assert_eq!(err, 19, "NOT_ENOUGH_REPLICAS");
    let (err, base) = produce(&mut c, &t, 0, batch(&[("k", "one")], Compression::None), 1).await?;
    assert_eq!(
        (err, base),
        (0, 0),
        "acks=1 appends at offset 0: acks=all wrote nothing"
    );
    let r = fetch(&mut c, &t, 0, 0).await?;
    let values: Vec<String> = records_of(&r)?.into_iter().map(|(_, _, v)| v).collect();
    assert_eq!(values, ["one"]);
    // With the default of 1, acks=all is acknowledged once the record is on the ISR (here,
    // when the append returns).
    let t = topic("minisr1");
    create_topic(&mut c, &t, 1, &[]).await?;
    let (err, base) = produce(&mut c, &t, 0, batch(&[("k", "v")], Compression::None), -1).await?;
    assert_eq!((err, base), (0, 0));
    Ok(())
}

#[tokio::test]
async fn a_batch_over_max_message_bytes_is_message_too_large() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("toolarge");
    create_topic(&mut c, &t, 1, &[("max.message.bytes", "1000")]).await?;
    let big = "x".repeat(2000);
    let (err, _) = produce(
        &mut c,
        &t,
        0,
        batch(&[("k", big.as_str())], Compression::None),
        1,
    )
    .await?;
    assert_eq!(err, 10, "MESSAGE_TOO_LARGE");
    let (err, base) = produce(
        &mut c,
        &t,
        0,
        batch(&[("k", "small")], Compression::None),
        1,
    )
    .await?;
    assert_eq!(
        (err, base),
        (0, 0),
        "nothing was stored by the refused batch"
    );
    Ok(())
}

/// Clients send the leader epoch their metadata showed; the replica's must be the same one
/// Metadata reports (0 here), and a newer one is UNKNOWN_LEADER_EPOCH as in Kafka.
#[tokio::test]
async fn fetch_and_list_offsets_check_the_current_leader_epoch() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("epochs");
    create_topic(&mut c, &t, 1, &[]).await?;
    let (err, _) = produce(&mut c, &t, 0, batch(&[("k", "v")], Compression::None), 1).await?;
    assert_eq!(err, 0);
    let with_epoch = |epoch: i32| {
        let mut req = fetch_req(&t, 0, 0, 0, 0);
        req.topics[0].partitions[0].current_leader_epoch = epoch;
        req
    };
    for (epoch, code) in [(-1, 0), (0, 0), (1, 75)] {
        let r = c.send(with_epoch(epoch), 12).await?;
        assert_eq!(
            r.responses[0].partitions[0].error_code, code,
            "fetch at epoch {epoch}"
        );
    }
    let list = |epoch: i32| {
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(name(&t))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_current_leader_epoch(epoch)
                    .with_timestamp(-1)])])
    };
    for (epoch, code) in [(-1, 0), (0, 0), (1, 75)] {
        let r = c.send(list(epoch), 7).await?;
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, code, "list offsets at epoch {epoch}");
        if code == 0 {
            assert_eq!((p.offset, p.leader_epoch), (1, 0));
        }
    }
    Ok(())
}

#[tokio::test]
async fn clients_cannot_write_to_internal_topics() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("user");
    create_topic(&mut c, &t, 1, &[]).await?;
    let (err, _) = produce(&mut c, &t, 0, batch(&[("k", "v")], Compression::None), 1).await?;
    assert_eq!(err, 0);
    for internal in ["__consumer_offsets", "__transaction_state"] {
        let (err, _) = produce(
            &mut c,
            internal,
            0,
            batch(&[("k", "v")], Compression::None),
            1,
        )
        .await?;
        assert_eq!(err, 17, "{internal}: INVALID_TOPIC_EXCEPTION");
    }
    // A user topic that merely starts with "__" is an ordinary topic, as in Kafka.
    let t = topic("__mine");
    create_topic(&mut c, &t, 1, &[]).await?;
    let (err, _) = produce(&mut c, &t, 0, batch(&[("k", "v")], Compression::None), 1).await?;
    assert_eq!(err, 0);
    Ok(())
}

#[tokio::test]
async fn a_corrupt_batch_is_refused_and_stores_nothing() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("corrupt");
    create_topic(&mut c, &t, 1, &[]).await?;
    let mut bad = batch(&[("k", "v")], Compression::None).to_vec();
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    let (err, _) = produce(&mut c, &t, 0, Bytes::from(bad), 1).await?;
    assert_eq!(err, 2, "CORRUPT_MESSAGE");
    let r = fetch(&mut c, &t, 0, 0).await?;
    assert_eq!(r.responses[0].partitions[0].high_watermark, 0);
    Ok(())
}

#[tokio::test]
async fn bad_topic_names_are_invalid_topic_exception() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name("no spaces allowed"))
        .with_num_partitions(1)
        .with_replication_factor(1)]);
    let r = c.send(req, 7).await?;
    assert_eq!(r.topics[0].error_code, 17, "INVALID_TOPIC_EXCEPTION");
    let md = c
        .send(
            MetadataRequest::default()
                .with_allow_auto_topic_creation(true)
                .with_topics(Some(vec![
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(name("bad/name"))),
                ])),
            12,
        )
        .await?;
    assert_eq!(md.topics[0].error_code, 17);
    Ok(())
}

#[tokio::test]
async fn metadata_auto_creates_topics_with_stable_ids() -> TestResult {
    let b = TestBroker::start(&["num.partitions=3"]).await?;
    let mut c = b.client().await?;
    let t = topic("auto");
    let ask = || {
        MetadataRequest::default()
            .with_allow_auto_topic_creation(true)
            .with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(name(&t))),
            ]))
    };
    let first = c.send(ask(), 12).await?;
    assert_eq!(first.topics[0].error_code, 0);
    assert_eq!(first.topics[0].partitions.len(), 3);
    let second = c.send(ask(), 12).await?;
    assert_eq!(first.topics[0].topic_id, second.topics[0].topic_id);
    Ok(())
}

#[tokio::test]
async fn an_idempotent_retry_is_acknowledged_and_not_appended_again() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("idem");
    create_topic(&mut c, &t, 1, &[]).await?;
    let pid = c
        .send(
            InitProducerIdRequest::default().with_transaction_timeout_ms(60_000),
            4,
        )
        .await?;
    assert_eq!(pid.error_code, 0);
    let (id, epoch) = (pid.producer_id.0, pid.producer_epoch);
    assert!(id >= 0);
    let first = idempotent_batch(&[("k", "a"), ("k", "b")], Compression::None, id, epoch, 0);
    assert_eq!(produce(&mut c, &t, 0, first.clone(), -1).await?, (0, 0));
    let second = idempotent_batch(&[("k", "c")], Compression::None, id, epoch, 2);
    assert_eq!(produce(&mut c, &t, 0, second, -1).await?, (0, 2));
    // The first batch again, as a producer retrying after a lost response.
    assert_eq!(produce(&mut c, &t, 0, first, -1).await?, (0, 0));
    // A gap in sequence numbers.
    let gap = idempotent_batch(&[("k", "z")], Compression::None, id, epoch, 9);
    assert_eq!(
        produce(&mut c, &t, 0, gap, -1).await?.0,
        45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    let r = fetch(&mut c, &t, 0, 0).await?;
    let values: Vec<String> = decode(
        r.responses[0].partitions[0]
            .records
            .clone()
            .expect("records"),
    )?
    .into_iter()
    .map(|r| r.2)
    .collect();
    assert_eq!(values, vec!["a", "b", "c"]);
    Ok(())
}

/// Two batches of one producer in one record set are checked one after the other (the second
/// against the state the first leaves), and a retry of the pair appends nothing.
#[tokio::test]
async fn a_retried_multi_batch_produce_is_not_appended_twice() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("idem-multi");
    create_topic(&mut c, &t, 1, &[]).await?;
    let pid = c
        .send(
            InitProducerIdRequest::default().with_transaction_timeout_ms(60_000),
            4,
        )
        .await?;
    let (id, epoch) = (pid.producer_id.0, pid.producer_epoch);
    let mut pair =
        idempotent_batch(&[("k", "a"), ("k", "b")], Compression::None, id, epoch, 0).to_vec();
    pair.extend_from_slice(&idempotent_batch(
        &[("k", "c")],
        Compression::None,
        id,
        epoch,
        2,
    ));
    let pair = bytes::Bytes::from(pair);
    assert_eq!(produce(&mut c, &t, 0, pair.clone(), -1).await?, (0, 0));
    let (err, _) = produce(&mut c, &t, 0, pair, -1).await?;
    assert_eq!(err, 46, "DUPLICATE_SEQUENCE_NUMBER, nothing appended");
    let r = fetch(&mut c, &t, 0, 0).await?;
    let values: Vec<String> = records_of(&r)?.into_iter().map(|r| r.2).collect();
    assert_eq!(values, vec!["a", "b", "c"]);
    Ok(())
}

/// InitProducerId without a transactional id hands out a new producer id at epoch 0, as Kafka
/// does, whatever producer id the request claims: bumping a claimed id's epoch let any client
/// fence another producer.
#[tokio::test]
async fn init_producer_id_never_bumps_a_claimed_producer_id() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let victim = c
        .send(
            InitProducerIdRequest::default().with_transaction_timeout_ms(60_000),
            4,
        )
        .await?;
    let claim = InitProducerIdRequest::default()
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(victim.producer_id)
        .with_producer_epoch(victim.producer_epoch);
    let r = c.send(claim, 4).await?;
    assert_eq!(r.error_code, 0);
    assert_ne!(r.producer_id, victim.producer_id, "a new producer id");
    assert_eq!(r.producer_epoch, 0);
    Ok(())
}

#[tokio::test]
async fn list_offsets_finds_earliest_latest_and_by_timestamp() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("offsets");
    create_topic(&mut c, &t, 1, &[]).await?;
    for _ in 0..3 {
        produce(
            &mut c,
            &t,
            0,
            batch(&[("k", "v"), ("k", "w")], Compression::None),
            1,
        )
        .await?;
    }
    let ask = |ts: i64| {
        ListOffsetsRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(name(&t))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(ts)])])
    };
    let offset =
        |r: kafka_protocol::messages::ListOffsetsResponse| r.topics[0].partitions[0].offset;
    assert_eq!(offset(c.send(ask(-2), 7).await?), 0);
    // Versions before 4 have no leader epoch field; the response must still encode.
    for v in 1..=3 {
        assert_eq!(offset(c.send(ask(-1), v).await?), 6, "ListOffsets v{v}");
    }
    assert_eq!(offset(c.send(ask(-1), 7).await?), 6);
    assert_eq!(offset(c.send(ask(0), 7).await?), 0);
    let none = c.send(ask(4_000_000_000_000), 7).await?;
    assert_eq!(offset(none), -1);
    Ok(())
}

/// A fetch response far larger than the socket buffers (so sendfile has to wait for the
/// client), over three partitions and several segments, arrives whole: every record in order,
/// byte for byte, and the next response on the same connection is framed correctly. Run at a
/// non-flexible and a flexible Fetch version, whose record length prefixes differ.
#[tokio::test]
async fn a_large_fetch_over_partitions_and_segments_arrives_whole() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("large");
    create_topic(&mut c, &t, 3, &[("segment.bytes", "2097152")]).await?;
    let mut expected: Vec<Vec<(i64, String, String)>> = vec![Vec::new(); 3];
    for p in 0..3i32 {
        for i in 0..100i64 {
            // ~40 KiB of varied text per record: segments roll every ~50 batches, and one
            // fetch carries ~6 MiB, more than loopback socket buffers hold.
            let v: String = (0..40_000)
                .map(|j| char::from(b'a' + ((j * 7 + i * 13 + p as i64) % 26) as u8))
                .collect();
            let k = format!("p{p}-{i}");
            let (err, base) =
                produce(&mut c, &t, p, batch(&[(&k, &v)], Compression::None), 1).await?;
            assert_eq!((err, base), (0, i));
            expected[p as usize].push((i, k, v));
        }
    }
    for version in [11i16, 12] {
        // The common one-partition request, widened to all three partitions.
        let mut req = fetch_req(&t, 0, 0, 0, 0);
        let one = req.topics[0].partitions[0]
            .clone()
            .with_partition_max_bytes(8 << 20);
        req.topics[0].partitions = (0..3).map(|p| one.clone().with_partition(p)).collect();
        let mut got: Vec<Vec<(i64, String, String)>> = vec![Vec::new(); 3];
        // A fetch stops at a segment's end; keep fetching until every partition is read.
        for _ in 0..10 {
            let mut req = req.clone();
            for fp in req.topics[0].partitions.iter_mut() {
                fp.fetch_offset = got[fp.partition as usize].len() as i64;
            }
            let r: kafka_protocol::messages::FetchResponse = c.send(req, version).await?;
            for part in &r.responses[0].partitions {
                assert_eq!(part.error_code, 0);
                let records = decode(part.records.clone().expect("records"))?;
                got[part.partition_index as usize].extend(records);
            }
            if got.iter().all(|g| g.len() == 100) {
                break;
            }
        }
        assert_eq!(got, expected, "Fetch v{version}");
    }
    // The connection is still in step: a small request after the large responses.
    let r = fetch(&mut c, &t, 1, 99).await?;
    assert_eq!(records_of(&r)?, vec![expected[1][99].clone()]);
    Ok(())
}
