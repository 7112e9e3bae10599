//! Voters on real TCP loopback sockets and temporary directories: commit, fail over, catch
//! up. Every wait has a deadline; nothing sleeps for a fixed time except short polls of
//! Raft metrics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::network::spawn_accept_loop;
use super::{CommitOutcome, Quorum, Settings, VoterEndpoint};
use crate::metadata::{MetadataImage, MetadataRecord};

/// Generous for a loaded 2-core machine; a healthy run takes a few seconds.
const DEADLINE: Duration = Duration::from_secs(30);

fn test_settings() -> Settings {
    Settings {
        heartbeat_ms: 50,
        election_base_ms: 300,
        ..Settings::default()
    }
}

struct Voter {
    id: u64,
    dir: PathBuf,
    quorum: Quorum,
    server: JoinHandle<()>,
}

impl Voter {
    async fn start(
        id: u64,
        voters: &BTreeMap<u64, VoterEndpoint>,
        dir: &Path,
        listener: TcpListener,
        settings: Settings,
    ) -> Voter {
        let quorum = Quorum::start(id, voters, dir, settings).await.unwrap();
        let super::Role::Voter { raft, source } = &quorum.role else {
            unreachable!("started as a voter")
        };
        let server = spawn_accept_loop(
            listener,
            raft.clone(),
            quorum.leader_state.clone(),
            source.clone(),
        );
        Voter {
            id,
            dir: dir.to_path_buf(),
            quorum,
            server,
        }
    }

    /// Stops the voter and closes its listener and connections; returns its directory.
    async fn stop(self) -> PathBuf {
        self.quorum.shutdown().await.unwrap();
        self.server.abort();
        let _ = self.server.await;
        self.dir
    }

    fn version(&self) -> u64 {
        self.quorum.images().borrow().version
    }

    fn image(&self) -> std::sync::Arc<MetadataImage> {
        self.quorum.images().borrow().image.clone()
    }

    async fn wait_for_version(&self, version: u64) {
        let mut images = self.quorum.images();
        tokio::time::timeout(DEADLINE, images.wait_for(|p| p.version >= version))
            .await
            .unwrap_or_else(|_| panic!("voter {} never reached version {version}", self.id))
            .unwrap();
    }
}

/// Binds one listener per voter and the voter map that names them.
async fn bind_voters(n: u64) -> (BTreeMap<u64, VoterEndpoint>, Vec<TcpListener>) {
    let mut voters = BTreeMap::new();
    let mut listeners = Vec::new();
    for id in 1..=n {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        voters.insert(
            id,
            VoterEndpoint {
                host: "127.0.0.1".into(),
                port,
            },
        );
        listeners.push(l);
    }
    (voters, listeners)
}

/// The voter that leads in a term above `above_term`, once one does (the newest, should a
/// deposed leader not know yet).
async fn leader(voters: &[Voter], above_term: u64) -> (usize, u64) {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let newest = voters
                .iter()
                .enumerate()
                .map(|(i, v)| (i, v.quorum.status()))
                .filter(|(_, s)| s.is_leader && s.term > above_term)
                .max_by_key(|(_, s)| s.term);
            if let Some((i, s)) = newest {
                return (i, s.term);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("no leader was elected")
}

fn topic(name: &str) -> Vec<MetadataRecord> {
    vec![MetadataRecord::Topic {
        name: name.into(),
        topic_id: Uuid::new_v4(),
    }]
}

/// Commits `records` on the current leader, planning on its image (re-planning on a conflict,
/// as `Metadata::commit` will); returns the image version that holds them.
async fn commit(voters: &[Voter], records: Vec<MetadataRecord>) -> u64 {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let Some(leader) = voters.iter().find(|v| v.quorum.status().is_leader) else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let planned = leader.version();
            match leader.quorum.write(planned, records.clone()).await {
                Ok(CommitOutcome::Applied { version }) => return version,
                Ok(CommitOutcome::Conflict { .. }) => continue,
                Ok(CommitOutcome::NotData) => panic!("a data entry applied as a non-data one"),
                // A new leader may not yet have committed its first entry.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("the commit never succeeded")
}

fn segment_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join(crate::log::segment::file_name(0, "log"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_commit_fail_over_and_catch_up() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (voters, listeners) = bind_voters(3).await;
    let mut nodes = Vec::new();
    for ((id, listener), dir) in (1..=3).zip(listeners).zip(&dirs) {
        nodes.push(Voter::start(id, &voters, dir.path(), listener, test_settings()).await);
    }

    for i in 0..20 {
        commit(&nodes, topic(&format!("before-{i}"))).await;
    }
    for v in &nodes {
        v.wait_for_version(20).await;
    }
    let (l, term) = leader(&nodes, 0).await;
    let image = nodes[l].image();
    assert_eq!(image.topics.len(), 20);
    let applied = nodes[l].quorum.images().borrow().applied_index;
    for v in &nodes {
        assert_eq!(*v.image(), *image, "voter {} has another image", v.id);
        assert_eq!(v.quorum.images().borrow().applied_index, applied);
    }
    // Every voter stored the same batches, byte for byte.
    let bytes = segment_bytes(&nodes[0].dir);
    assert!(!bytes.is_empty());
    for v in &nodes[1..] {
        assert_eq!(
            segment_bytes(&v.dir),
            bytes,
            "voter {} stored other batches",
            v.id
        );
    }

    let old = nodes.remove(l);
    let old_id = old.id;
    let old_dir = old.stop().await;

    // A new leader in a higher term commits.
    let (_, term2) = leader(&nodes, term).await;
    let mut version = 0;
    for i in 0..5 {
        version = commit(&nodes, topic(&format!("after-{i}"))).await;
    }
    assert!(version >= 25);
    let (l2, _) = leader(&nodes, term2 - 1).await;

    // The old leader restarts from its directory (and port) and catches up.
    let listener = TcpListener::bind(("127.0.0.1", voters[&old_id].port))
        .await
        .unwrap();
    let back = Voter::start(old_id, &voters, &old_dir, listener, test_settings()).await;
    back.wait_for_version(version).await;
    assert_eq!(*back.image(), *nodes[l2].image());
    assert_eq!(back.image().topics.len(), 25);

    for v in nodes {
        v.stop().await;
    }
    back.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_far_behind_installs_a_checkpoint() {
    let settings = Settings {
        snapshot_every_entries: 5,
        entries_kept_after_snapshot: 2,
        ..test_settings()
    };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (voters, listeners) = bind_voters(3).await;
    let mut nodes = Vec::new();
    for ((id, listener), dir) in (1..=3).zip(listeners).zip(&dirs) {
        nodes.push(Voter::start(id, &voters, dir.path(), listener, settings).await);
    }
    commit(&nodes, topic("first")).await;
    for v in &nodes {
        v.wait_for_version(1).await;
    }
    let (l, _) = leader(&nodes, 0).await;

    let f = (l + 1) % nodes.len();
    let follower = nodes.remove(f);
    let follower_id = follower.id;
    let follower_dir = follower.stop().await;
    for i in 0..50 {
        commit(&nodes, topic(&format!("missed-{i}"))).await;
    }
    let (l, _) = leader(&nodes, 0).await;
    // The entries the follower lacks are gone from the leader's log.
    let leader_status = nodes[l].quorum.status();
    assert!(leader_status.snapshot_index.unwrap() > 45);

    let listener = TcpListener::bind(("127.0.0.1", voters[&follower_id].port))
        .await
        .unwrap();
    let back = Voter::start(follower_id, &voters, &follower_dir, listener, settings).await;
    back.wait_for_version(51).await;
    assert_eq!(*back.image(), *nodes[l].image());
    assert!(
        back.quorum.images().borrow().generation >= 1,
        "the follower caught up without installing a checkpoint"
    );
    let checkpoints = std::fs::read_dir(&follower_dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".checkpoint"))
        .count();
    assert!(checkpoints >= 1);

    for v in nodes {
        v.stop().await;
    }
    back.stop().await;
}

/// A broker-only node (an observer) that joins after the voters folded their log into a
/// snapshot and purged it: it installs a voter's snapshot, follows new entries, writes its own
/// checkpoints, and a restart starts from them. A leader change does not stop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_joining_after_the_log_was_truncated_starts_from_a_snapshot() {
    let settings = Settings {
        snapshot_every_entries: 5,
        entries_kept_after_snapshot: 2,
        ..test_settings()
    };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (voters, listeners) = bind_voters(3).await;
    let mut nodes = Vec::new();
    for ((id, listener), dir) in (1..=3).zip(listeners).zip(&dirs) {
        nodes.push(Voter::start(id, &voters, dir.path(), listener, settings).await);
    }
    for i in 0..30 {
        commit(&nodes, topic(&format!("before-{i}"))).await;
    }
    let (l, _) = leader(&nodes, 0).await;
    assert!(nodes[l].quorum.status().snapshot_index.unwrap() > 20);

    let observer_dir = tempfile::tempdir().unwrap();
    let observer = Quorum::observe(4, &voters, observer_dir.path(), settings)
        .await
        .unwrap();
    observer.wait_for_leader(DEADLINE).await.unwrap();
    let caught_up = |q: &Quorum, version: u64| {
        let mut images = q.images();
        async move {
            tokio::time::timeout(DEADLINE, images.wait_for(|p| p.version >= version))
                .await
                .unwrap_or_else(|_| panic!("the observer never reached version {version}"))
                .unwrap();
        }
    };
    caught_up(&observer, 30).await;
    assert_eq!(*observer.images().borrow().image, *nodes[l].image());
    assert_eq!(
        observer.images().borrow().generation,
        1,
        "the observer caught up without installing the snapshot"
    );
    let status = observer.status();
    assert_eq!(
        (status.is_leader, status.leader),
        (false, Some(nodes[l].id))
    );

    // It follows new entries, across a change of leader.
    commit(&nodes, topic("after")).await;
    caught_up(&observer, 31).await;
    let old = nodes.remove(l);
    old.stop().await;
    let (l, _) = leader(&nodes, 0).await;
    commit(&nodes, topic("new-leader")).await;
    caught_up(&observer, 32).await;
    assert_eq!(*observer.images().borrow().image, *nodes[l].image());

    // Writes and the leader's view reach the leader from it.
    let planned = observer.images().borrow().version;
    let written = observer
        .write(planned, topic("from-the-observer"))
        .await
        .unwrap();
    assert_eq!(written, CommitOutcome::Applied { version: 33 });
    let described = observer.describe(DEADLINE).await.unwrap().unwrap();
    assert_eq!(
        described.observers.iter().map(|o| o.id).collect::<Vec<_>>(),
        [4]
    );

    // A restart starts from its own checkpoint and fetches only what came after.
    observer.shutdown().await.unwrap();
    drop(observer);
    commit(&nodes, topic("while-away")).await;
    let back = Quorum::observe(4, &voters, observer_dir.path(), settings)
        .await
        .unwrap();
    assert!(back.images().borrow().version >= 30, "no checkpoint loaded");
    caught_up(&back, 34).await;
    assert_eq!(*back.images().borrow().image, *nodes[l].image());
    back.shutdown().await.unwrap();
    for v in nodes {
        v.stop().await;
    }
}

/// Issue 8's risk 7.1: openraft 0.9 draws one election timeout per process, and two voters
/// whose draws meet split every vote. With disjoint ranges every kill must elect a leader.
/// About a minute; run it with `--ignored` after touching timings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn thirty_leader_kills_in_a_row_each_elect_a_new_leader() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (voters, listeners) = bind_voters(3).await;
    let mut nodes = Vec::new();
    for ((id, listener), dir) in (1..=3).zip(listeners).zip(&dirs) {
        nodes.push(Voter::start(id, &voters, dir.path(), listener, test_settings()).await);
    }
    for round in 0..30 {
        let version = commit(&nodes, topic(&format!("round-{round}"))).await;
        let (l, term) = leader(&nodes, 0).await;
        let old = nodes.remove(l);
        let (id, dir) = (old.id, old.stop().await);
        leader(&nodes, term).await;
        let listener = TcpListener::bind(("127.0.0.1", voters[&id].port))
            .await
            .unwrap();
        let back = Voter::start(id, &voters, &dir, listener, test_settings()).await;
        back.wait_for_version(version).await;
        nodes.push(back);
    }
    for v in nodes {
        v.stop().await;
    }
}
