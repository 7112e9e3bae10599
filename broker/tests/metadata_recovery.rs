//! The metadata log is the source of truth, so damage to it must never turn into lost data.
//! Before these fixes a torn or corrupt metadata tail was cut with a warning, and then every
//! partition directory the shorter metadata did not list was deleted with its records (7 bytes
//! cut after a clean stop lost a topic; one flipped byte after a kill lost three). Concurrent
//! topic creation applied an older image after a newer one and deleted live partitions, and a
//! 249-character topic name (legal) made deletion fail and every later change with it.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use fjord_broker::BrokerConfig;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::DeleteTopicsRequest;
use kafka_protocol::records::Compression;

fn metadata_segment(dir: &Path) -> PathBuf {
    dir.join("__cluster_metadata-0")
        .join(format!("{:020}.log", 0))
}

/// Starts a broker in `dir` and returns how start-up ended: an error, or `Ok` once it serves
/// (the broker is then stopped).
async fn start_up(dir: &Path) -> TestResult<Result<(), String>> {
    let config = BrokerConfig::load(
        None,
        Vec::new(),
        &[
            "listeners=PLAINTEXT://127.0.0.1:0".to_string(),
            format!("log.dirs={}", dir.display()),
            "fjord.metrics.listener=".to_string(),
        ],
    )?;
    let listeners = fjord_broker::bind(&config).await?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(fjord_broker::run(listeners, config, async move {
        let _ = rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    if run.is_finished() {
        return Ok(run.await?.map_err(|e| e.to_string()));
    }
    let _ = tx.send(());
    run.await??;
    Ok(Ok(()))
}

fn partition_dirs(dir: &Path, topic: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(topic))
        .collect();
    v.sort();
    v
}

async fn topic_with_records(c: &mut Client, t: &str) -> TestResult {
    create_topic(c, t, 1, &[]).await?;
    let (err, _) = produce(c, t, 0, batch(&[("k", "precious")], Compression::None), -1).await?;
    anyhow::ensure!(err == 0, "produce: {err}");
    Ok(())
}

#[tokio::test]
async fn a_cut_metadata_log_after_a_clean_stop_stops_start_up_and_deletes_nothing() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("cut");
    topic_with_records(&mut c, &t).await?;
    drop(c);
    let (dir, _guard) = b.stop().await?;
    let seg = metadata_segment(&dir);
    let len = fs::metadata(&seg)?.len();
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)?
        .set_len(len - 7)?;

    let e = start_up(&dir).await?.expect_err("start-up must stop");
    assert!(e.contains("__cluster_metadata-0"), "names the file: {e}");
    assert!(e.contains("position"), "and the position: {e}");
    assert_eq!(partition_dirs(&dir, &t), vec![format!("{t}-0")]);
    assert!(fs::metadata(dir.join(format!("{t}-0")).join(format!("{:020}.log", 0)))?.len() > 0);
    Ok(())
}

#[tokio::test]
async fn a_flipped_byte_in_the_metadata_log_after_a_kill_stops_start_up() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let topics: Vec<String> = (0..3).map(|i| topic(&format!("flip{i}"))).collect();
    for t in &topics {
        topic_with_records(&mut c, t).await?;
    }
    drop(c);
    let (dir, _guard) = b.crash().await?;
    // A byte inside the first batch's records: its CRC fails, and whole batches follow it.
    let seg = metadata_segment(&dir);
    let mut bytes = fs::read(&seg)?;
    bytes[70] ^= 0x40;
    fs::write(&seg, bytes)?;

    let e = start_up(&dir).await?.expect_err("start-up must stop");
    assert!(e.contains("__cluster_metadata-0"), "{e}");
    for t in &topics {
        assert_eq!(
            partition_dirs(&dir, t),
            vec![format!("{t}-0")],
            "{t} is kept"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_torn_last_metadata_batch_after_a_kill_is_cut_and_unknown_dirs_are_kept_aside(
) -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let t = topic("kept");
    topic_with_records(&mut c, &t).await?;
    drop(c);
    let (dir, guard) = b.crash().await?;
    // Half of a batch, as a kill during the last (unacknowledged) metadata append leaves it.
    let seg = metadata_segment(&dir);
    let mut bytes = fs::read(&seg)?;
    let tail = bytes[..40].to_vec();
    bytes.extend_from_slice(&tail);
    fs::write(&seg, bytes)?;
    // A partition directory the metadata never listed, with data in it.
    let ghost = dir.join("ghost-0");
    fs::create_dir(&ghost)?;
    fs::write(ghost.join(format!("{:020}.log", 0)), b"the user's bytes")?;

    let b = TestBroker::start_in(&dir, &[]).await?;
    let mut c = b.client().await?;
    let r = fetch(&mut c, &t, 0, 0).await?;
    assert_eq!(records_of(&r)?, vec![(0, "k".into(), "precious".into())]);
    let strays = partition_dirs(&dir, "ghost-0");
    assert_eq!(strays.len(), 1, "{strays:?}");
    assert!(strays[0].ends_with("-stray"), "{strays:?}");
    assert_eq!(
        fs::read(dir.join(&strays[0]).join(format!("{:020}.log", 0)))?,
        b"the user's bytes"
    );
    drop(c);
    b.stop().await?;
    drop(guard);
    Ok(())
}

#[tokio::test]
async fn a_249_character_topic_can_be_deleted_and_the_broker_goes_on() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let long = format!("{}{}", topic("long"), "x".repeat(249 - 37));
    assert_eq!(long.len(), 249);
    topic_with_records(&mut c, &long).await?;
    let r = c
        .send(
            DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default().with_name(Some(name(&long)))
            ]),
            6,
        )
        .await?;
    assert_eq!(
        r.responses[0].error_code, 0,
        "{:?}",
        r.responses[0].error_message
    );
    let after = topic("after");
    topic_with_records(&mut c, &after).await?;
    drop(c);
    let (dir, _guard) = b.stop().await?;
    assert_eq!(start_up(&dir).await?, Ok(()));
    assert!(
        partition_dirs(&dir, &long[..40]).is_empty(),
        "the long topic's log is gone"
    );
    Ok(())
}

/// Clients auto-creating different topics at once: each topic is served from its own live
/// directory, and every acknowledged record is there after a restart. (On several threads: the
/// race was between two commits' applies.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_auto_creation_keeps_every_topic() -> TestResult {
    const ROUNDS: usize = 6;
    let b = TestBroker::start(&[]).await?;
    for round in 0..ROUNDS {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..48 {
            let addr = b.addr;
            let t = topic(&format!("auto{round}-{i}"));
            tasks.spawn(async move {
                let mut c = Client::connect(addr).await?;
                let (err, _) = metadata(&mut c, &t, true).await?;
                anyhow::ensure!(err == 0, "{t}: metadata {err}");
                let (err, _) =
                    produce(&mut c, &t, 0, batch(&[("k", &t)], Compression::None), -1).await?;
                anyhow::ensure!(err == 0, "{t}: produce {err}");
                TestResult::Ok(t)
            });
        }
        let mut created = Vec::new();
        while let Some(r) = tasks.join_next().await {
            created.push(r??);
        }
        let mut c = b.client().await?;
        for t in &created {
            assert_eq!(records_of(&fetch(&mut c, t, 0, 0).await?)?.len(), 1, "{t}");
            assert_eq!(partition_dirs(&b.dir, t), vec![format!("{t}-0")]);
        }
    }
    let (dir, _guard) = b.stop().await?;
    let b = TestBroker::start_in(&dir, &[]).await?;
    let mut c = b.client().await?;
    let n = fs::read_dir(&dir)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("auto"))
        .count();
    assert_eq!(n, ROUNDS * 48);
    for e in fs::read_dir(&dir)?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(t) = name.strip_suffix("-0").filter(|n| n.starts_with("auto")) {
            assert_eq!(records_of(&fetch(&mut c, t, 0, 0).await?)?.len(), 1, "{t}");
        }
    }
    Ok(())
}
