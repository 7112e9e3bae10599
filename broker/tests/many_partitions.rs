//! A broker hosts more partitions than it may hold files open: segment files are opened on
//! demand and a bounded set is kept open (`log::files`). Before, every segment held its file for
//! the life of the broker: CreateTopics with 100,000 partitions ran out of descriptors, was
//! committed anyway, and the broker could then neither serve nor restart ("Too many open
//! files"). This binary holds this one test because it lowers its own descriptor limit to
//! 1024, the usual default.

mod common;

use common::*;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::CreateTopicsRequest;
use kafka_protocol::records::Compression;

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_partitions_start_serve_and_restart_within_1024_descriptors() -> TestResult {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let hard = getrlimit(Resource::Nofile).maximum;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(1024),
            maximum: hard,
        },
    )?;
    fjord_broker::log::files::open_files().set_limit(512);

    let started = std::time::Instant::now();
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let topics: Vec<String> = (0..5).map(|i| topic(&format!("wide{i}"))).collect();
    for t in &topics {
        let r = c
            .send(
                CreateTopicsRequest::default()
                    .with_timeout_ms(600_000)
                    .with_topics(vec![CreatableTopic::default()
                        .with_name(name(t))
                        .with_num_partitions(10_000)
                        .with_replication_factor(1)]),
                7,
            )
            .await?;
        assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
        eprintln!("created {t} at {:?}", started.elapsed());
    }
    // Partitions spread over every topic, first and last included.
    let sample: Vec<(usize, i32)> = (0..5)
        .flat_map(|t| [(t, 0), (t, 9_999), (t, 1_234 * t as i32 + 17)])
        .collect();
    for (t, p) in &sample {
        let v = format!("{t}/{p}");
        let (err, _) = produce(
            &mut c,
            &topics[*t],
            *p,
            batch(&[("k", &v)], Compression::None),
            -1,
        )
        .await?;
        assert_eq!(err, 0, "produce to {}-{p}", topics[*t]);
    }
    for (t, p) in &sample {
        let r = fetch(&mut c, &topics[*t], *p, 0).await?;
        assert_eq!(records_of(&r)?, vec![(0, "k".into(), format!("{t}/{p}"))]);
    }
    assert!(open_descriptors() < 1024, "{} open", open_descriptors());
    drop(c);

    // After a crash every active segment is verified at start-up, the heavier path.
    let (dir, _guard) = b.crash().await?;
    eprintln!("crashed at {:?}", started.elapsed());
    let b = TestBroker::start_in(&dir, &[]).await?;
    eprintln!("restarted at {:?}", started.elapsed());
    let mut c = b.client().await?;
    for (t, p) in &sample {
        let r = fetch(&mut c, &topics[*t], *p, 0).await?;
        assert_eq!(records_of(&r)?, vec![(0, "k".into(), format!("{t}/{p}"))]);
        let (err, base) = produce(
            &mut c,
            &topics[*t],
            *p,
            batch(&[("k", "again")], Compression::None),
            -1,
        )
        .await?;
        assert_eq!((err, base), (0, 1));
    }
    assert!(open_descriptors() < 1024, "{} open", open_descriptors());
    eprintln!("served after the restart at {:?}", started.elapsed());
    Ok(())
}
