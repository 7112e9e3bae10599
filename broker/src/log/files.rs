//! Segment files are opened on demand and a bounded set of them is held open, so that a broker
//! with tens of thousands of partitions starts and serves within an ordinary descriptor limit.
//! Before, every segment held its file open for the life of the broker: 100,000 partitions ran
//! out of descriptors, and the broker could neither serve nor restart.
//!
//! A [`SegmentFile`] names a file and keeps an open handle while it is in use. Each open handle
//! is registered with the process-wide [`OpenFiles`] set; when a new open takes the set past its
//! limit, handles are closed in clock order (a handle used since the last sweep gets a second
//! chance). Closing only drops the set's reference: a handle lent out ([`SegmentFile::get`]
//! returns an `Arc<File>`, which a fetch response keeps until sendfile is done) stays open
//! until its last user drops it. The limit is half of the soft `RLIMIT_NOFILE`, leaving the rest
//! for sockets and transient files.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;

/// One segment file: its path and, while it is open, its handle.
#[derive(Debug)]
pub struct SegmentFile {
    path: PathBuf,
    slot: Arc<Slot>,
}

#[derive(Debug, Default)]
struct Slot {
    file: Mutex<Option<Arc<File>>>,
    /// Used since the last sweep reached it.
    used: AtomicBool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.file.get_mut().take().is_some() {
            open_files().open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl SegmentFile {
    /// Creates the file if it does not exist.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let f = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let s = SegmentFile {
            path: path.to_path_buf(),
            slot: Arc::default(),
        };
        s.install(f);
        Ok(s)
    }

    /// An existing file; fails when it is missing or unreadable.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let s = SegmentFile {
            path: path.to_path_buf(),
            slot: Arc::default(),
        };
        s.get()?;
        Ok(s)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open handle, opening the file again if it was closed to stay within the limit.
    /// Appends go through this handle: it is opened in append mode.
    pub fn get(&self) -> std::io::Result<Arc<File>> {
        self.slot.used.store(true, Ordering::Relaxed);
        if let Some(f) = self.slot.file.lock().as_ref() {
            return Ok(f.clone());
        }
        let f = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        Ok(self.install(f))
    }

    fn install(&self, f: File) -> Arc<File> {
        let f = Arc::new(f);
        {
            let mut slot = self.slot.file.lock();
            if let Some(existing) = slot.as_ref() {
                return existing.clone(); // Another thread opened it meanwhile.
            }
            *slot = Some(f.clone());
        }
        open_files().opened(&self.slot);
        f
    }

    /// Whether a handle is held now (for tests and metrics).
    pub fn is_open(&self) -> bool {
        self.slot.file.lock().is_some()
    }
}

/// The process-wide set of open segment handles.
pub struct OpenFiles {
    open: AtomicUsize,
    limit: AtomicUsize,
    clock: Mutex<VecDeque<Weak<Slot>>>,
}

pub fn open_files() -> &'static OpenFiles {
    static SET: OnceLock<OpenFiles> = OnceLock::new();
    SET.get_or_init(|| OpenFiles {
        open: AtomicUsize::new(0),
        limit: AtomicUsize::new(default_limit()),
        clock: Mutex::new(VecDeque::new()),
    })
}

/// Half of the soft descriptor limit, at least 64.
fn default_limit() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1024);
    (soft / 2).clamp(64, 1 << 20) as usize
}

impl OpenFiles {
    /// How many segment handles are open.
    pub fn open_count(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Acquire)
    }

    /// Changes the limit (tests, and the broker after it read its configuration).
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit.max(1), Ordering::Release);
    }

    fn opened(&self, slot: &Arc<Slot>) {
        let mut clock = self.clock.lock();
        // Handles of segments that are gone leave dead entries behind; drop them now and then.
        if clock.len() > 2 * self.open_count() + 1024 {
            clock.retain(|w| w.strong_count() > 0);
        }
        clock.push_back(Arc::downgrade(slot));
        let mut open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        let limit = self.limit();
        // Each handle is looked at most twice (once to clear its use bit, once to close it).
        let mut budget = 2 * clock.len();
        while open > limit && budget > 0 {
            budget -= 1;
            let Some(weak) = clock.pop_front() else { break };
            let Some(victim) = weak.upgrade() else {
                continue; // Its segment is gone; Slot::drop counted it.
            };
            if Arc::ptr_eq(&victim, slot) {
                clock.push_back(weak); // Never the handle just opened.
                continue;
            }
            if victim.used.swap(false, Ordering::Relaxed) {
                clock.push_back(weak);
                continue;
            }
            let closed = victim.file.lock().take();
            if closed.is_some() {
                open = self.open.fetch_sub(1, Ordering::AcqRel) - 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    #[test]
    fn handles_beyond_the_limit_are_closed_and_reopened_on_use() {
        let dir = tempfile::tempdir().unwrap();
        let set = open_files();
        // Other tests in this process open files too: measure relative to what is open now.
        let files: Vec<SegmentFile> = (0..50)
            .map(|i| {
                let f = SegmentFile::create(&dir.path().join(format!("{i}.log"))).unwrap();
                (&*f.get().unwrap())
                    .write_all(format!("file {i}").as_bytes())
                    .unwrap();
                f
            })
            .collect();
        let before = set.limit();
        set.set_limit(set.open_count().saturating_sub(40).max(1));
        SegmentFile::create(&dir.path().join("trigger.log")).unwrap();
        let open = files.iter().filter(|f| f.is_open()).count();
        assert!(open < 50, "some handles were closed ({open} open)");
        for (i, f) in files.iter().enumerate() {
            let want = format!("file {i}");
            let mut buf = vec![0u8; want.len()];
            f.get().unwrap().read_exact_at(&mut buf, 0).unwrap();
            assert_eq!(buf, want.as_bytes(), "reopened and read");
        }
        set.set_limit(before);
    }

    #[test]
    fn a_lent_handle_outlives_its_closing() {
        let dir = tempfile::tempdir().unwrap();
        let f = SegmentFile::create(&dir.path().join("a.log")).unwrap();
        (&*f.get().unwrap()).write_all(b"kept").unwrap();
        let lent = f.get().unwrap();
        f.slot.file.lock().take();
        open_files().open.fetch_sub(1, Ordering::AcqRel);
        let mut buf = [0u8; 4];
        lent.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"kept");
    }
}
