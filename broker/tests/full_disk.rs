//! A full disk must never cost acknowledged data. Before this fix a short write during an
//! append stayed in the segment: the file is in append mode, so the next batches landed after
//! the torn bytes while the index pointed elsewhere. Filling the disk, freeing it and producing
//! 20 records got 20 acknowledgements, fetches answered KAFKA_STORAGE_ERROR, and the records
//! were gone after a clean restart. Now the first failed write takes the log directory
//! offline (KAFKA_STORAGE_ERROR for everything in it, as Kafka does), the torn bytes are cut,
//! and a restart recovers every acknowledged record.
//!
//! The disk is a real one: a 3 MiB tmpfs mounted for the test (so it runs as root, as CI does).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use kafka_protocol::records::Compression;

const KAFKA_STORAGE_ERROR: i16 = 56;

struct SmallDisk {
    path: PathBuf,
    _tmp: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> TestResult<Self> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("disk");
        std::fs::create_dir(&path)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(SmallDisk { path, _tmp: tmp })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes a file until the disk is full.
fn fill(path: &Path) -> TestResult {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    let chunk = vec![0xeeu8; 64 * 1024];
    loop {
        match f.write(&chunk) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

#[tokio::test]
async fn a_full_disk_takes_the_log_dir_offline_and_loses_nothing_acknowledged() -> TestResult {
    let disk = SmallDisk::mount("3m")?;
    let logs = disk.path.join("logs");
    let b = TestBroker::start_in(&logs, &[]).await?;
    let mut c = b.client().await?;
    let t = topic("full");
    create_topic(&mut c, &t, 1, &[]).await?;
    let mut acked: Vec<String> = Vec::new();
    for i in 0..10 {
        let v = format!("before-{i}");
        let (err, _) = produce(&mut c, &t, 0, batch(&[("k", &v)], Compression::None), -1).await?;
        assert_eq!(err, 0);
        acked.push(v);
    }

    // Fill what is left, then keep producing 8 KiB records until the disk refuses one.
    let filler = disk.path.join("filler");
    fill(&filler)?;
    let big = "x".repeat(8 * 1024);
    let mut refused = false;
    for i in 0..64 {
        let v = format!("during-{i}-{big}");
        let (err, _) = produce(&mut c, &t, 0, batch(&[("k", &v)], Compression::None), -1).await?;
        match err {
            0 => acked.push(v),
            KAFKA_STORAGE_ERROR => {
                refused = true;
                break;
            }
            other => anyhow::bail!("unexpected error {other}"),
        }
    }
    assert!(refused, "the full disk refused a write");

    // Space returns; the directory stays offline until a restart: nothing is acknowledged that
    // could not be read back.
    std::fs::remove_file(&filler)?;
    for i in 0..20 {
        let v = format!("after-{i}");
        let (err, _) = produce(&mut c, &t, 0, batch(&[("k", &v)], Compression::None), -1).await?;
        assert_eq!(err, KAFKA_STORAGE_ERROR, "record {i} after the failure");
    }
    let r = fetch(&mut c, &t, 0, 0).await?;
    assert_eq!(r.responses[0].partitions[0].error_code, KAFKA_STORAGE_ERROR);
    drop(c);

    // A clean stop of an offline directory leaves no clean-shutdown marker: the restart
    // recovers, and every acknowledged record is there, in order, with nothing else.
    b.stop().await?;
    let b = TestBroker::start_in(&logs, &[]).await?;
    let mut c = b.client().await?;
    let mut got = Vec::new();
    let mut offset = 0;
    loop {
        let r = fetch(&mut c, &t, 0, offset).await?;
        assert_eq!(r.responses[0].partitions[0].error_code, 0);
        let recs = records_of(&r)?;
        let Some(last) = recs.last() else { break };
        offset = last.0 + 1;
        got.extend(recs.into_iter().map(|(_, _, v)| v));
    }
    assert_eq!(got.len(), acked.len());
    assert!(got == acked, "the acknowledged records, in order");
    let (err, _) = produce(
        &mut c,
        &t,
        0,
        batch(&[("k", "back")], Compression::None),
        -1,
    )
    .await?;
    assert_eq!(err, 0, "and the broker takes writes again");
    drop(c);
    b.stop().await?;
    Ok(())
}
