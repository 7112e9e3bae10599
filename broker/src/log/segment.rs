//! One segment of a partition log: `<base:020>.log` with its sparse offset index
//! (`.index`, entries of relative offset u32 + position u32) and time index (`.timeindex`,
//! entries of timestamp i64 + relative offset u32).
//!
//! The `.log` file holds record batches exactly as stored; it is the only source of truth.
//! Indexes are kept in memory and written to disk when the segment is rolled or the broker shuts
//! down cleanly; any index that is missing or disagrees with the log is rebuilt from the log.

use std::fs::{self, File};
use std::io::{IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

use super::batch::{BatchHeader, HEADER_LEN, LOG_OVERHEAD};
use super::files::SegmentFile;
use super::Recovery;
use crate::error::{Error, Result};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn file_name(base: i64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

/// A range of whole batches in a segment file. Fetch responses carry these instead of the bytes,
/// and the connection sends them with sendfile(2), so record data never passes through the
/// broker's memory (as in Kafka's `FileRecords`).
#[derive(Debug, Clone)]
pub struct FileSlice {
    pub file: Arc<File>,
    pub position: u64,
    pub len: u64,
}

impl FileSlice {
    /// The bytes of the range, for paths that need them in memory.
    pub fn read_all(&self) -> std::io::Result<Bytes> {
        let mut buf = BytesMut::zeroed(self.len as usize);
        self.file.read_exact_at(&mut buf, self.position)?;
        Ok(buf.freeze())
    }
}

#[derive(Debug)]
pub struct Segment {
    pub base_offset: i64,
    path: PathBuf,
    /// Opened on demand (see [`super::files`]); a handle lent to a [`FileSlice`] on its way
    /// to a socket keeps an unlinked segment readable until the last of them is sent.
    file: SegmentFile,
    /// Bytes of whole batches in the file.
    pub size: u64,
    /// The offset after the last batch.
    pub next_offset: i64,
    /// Largest batch timestamp, or -1 when the segment has none.
    pub max_timestamp: i64,
    /// When the segment was created (wall clock), for rolling by `segment.ms`.
    pub created_ms: i64,
    index: Vec<(u32, u32)>,
    time_index: Vec<(i64, u32)>,
    bytes_since_index: u32,
    index_dirty: bool,
}

/// What a scan of the `.log` file found.
struct Scan {
    valid_len: u64,
    next_offset: i64,
    max_timestamp: i64,
    index: Vec<(u32, u32)>,
    time_index: Vec<(i64, u32)>,
    bytes_since_index: u32,
}

impl Segment {
    pub fn create(dir: &Path, base_offset: i64) -> Result<Self> {
        let path = dir.join(file_name(base_offset, "log"));
        let file = SegmentFile::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Segment {
            base_offset,
            path,
            file,
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            created_ms: now_ms(),
            index: Vec::new(),
            time_index: Vec::new(),
            bytes_since_index: 0,
            index_dirty: true,
        })
    }

    /// Opens an existing segment. With `verify`, every batch's CRC is checked and the file is
    /// truncated after the last whole, valid batch (recovery after a crash). Without it, the
    /// saved indexes are used when they are consistent with the file.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        verify: bool,
        index_interval: u32,
        recovery: Recovery,
    ) -> Result<Self> {
        let path = dir.join(file_name(base_offset, "log"));
        let file = SegmentFile::open(&path).map_err(|e| Error::io(&path, e))?;
        let meta = fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        let file_len = meta.len();
        let created_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
            .unwrap_or_else(now_ms);
        let mut seg = Segment {
            base_offset,
            path,
            file,
            size: file_len,
            next_offset: base_offset,
            max_timestamp: -1,
            created_ms,
            index: Vec::new(),
            time_index: Vec::new(),
            bytes_since_index: 0,
            index_dirty: false,
        };
        if !verify {
            if let Some(()) = seg.load_indexes(file_len) {
                return Ok(seg);
            }
        }
        let scan = seg.scan(verify, index_interval)?;
        if scan.valid_len < file_len && recovery == Recovery::TornTailOnly {
            seg.check_torn_tail(verify, scan.valid_len, file_len)?;
        }
        if scan.valid_len < file_len {
            tracing::warn!(
                segment = %seg.path.display(),
                valid = scan.valid_len,
                file = file_len,
                "truncating torn or corrupt tail"
            );
            seg.handle()?
                .set_len(scan.valid_len)
                .map_err(|e| Error::io(&seg.path, e))?;
        }
        seg.size = scan.valid_len;
        seg.next_offset = scan.next_offset;
        seg.max_timestamp = scan.max_timestamp;
        seg.index = scan.index;
        seg.time_index = scan.time_index;
        seg.bytes_since_index = scan.bytes_since_index;
        seg.index_dirty = true;
        Ok(seg)
    }

    /// Under [`Recovery::TornTailOnly`]: the bytes from `valid` to the end must be what a
    /// crash in the middle of the last append leaves, or the segment is corrupt.
    fn check_torn_tail(&self, crashed: bool, valid: u64, file_len: u64) -> Result<()> {
        let corrupt = |reason: String| Error::SegmentCorrupt {
            path: self.path.clone(),
            position: valid,
            reason,
        };
        if !crashed {
            return Err(corrupt(format!(
                "{} bytes after the last valid batch, after a clean shutdown",
                file_len - valid
            )));
        }
        let mut tail = vec![0u8; (file_len - valid) as usize];
        self.handle()?
            .read_exact_at(&mut tail, valid)
            .map_err(|e| Error::io(&self.path, e))?;
        let torn = match BatchHeader::parse(&tail) {
            _ if tail.iter().all(|&b| b == 0) => true,
            // Too short for a header, or a batch that runs past the end: an incomplete write.
            None => true,
            Some(h) => h.batch_length >= 0 && h.total_len() as u64 >= tail.len() as u64,
        };
        if torn {
            Ok(())
        } else {
            Err(corrupt(format!(
                "an invalid batch followed by {} more bytes: not a torn write",
                file_len - valid
            )))
        }
    }

    fn index_paths(&self) -> (PathBuf, PathBuf, PathBuf) {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        (
            dir.join(file_name(self.base_offset, "index")),
            dir.join(file_name(self.base_offset, "timeindex")),
            dir.join(file_name(self.base_offset, "fjordmeta")),
        )
    }

    /// Loads saved indexes plus the segment summary; `None` when any is missing or stale.
    fn load_indexes(&mut self, file_len: u64) -> Option<()> {
        let (ip, tp, mp) = self.index_paths();
        let meta = fs::read(&mp).ok()?;
        if meta.len() != 24 {
            return None;
        }
        let size = u64::from_be_bytes(meta[0..8].try_into().ok()?);
        let next = i64::from_be_bytes(meta[8..16].try_into().ok()?);
        let max_ts = i64::from_be_bytes(meta[16..24].try_into().ok()?);
        // A summary that cannot describe this segment is stale (or damaged): rebuild.
        if size != file_len || next < self.base_offset {
            return None;
        }
        let ib = fs::read(&ip).ok()?;
        let tb = fs::read(&tp).ok()?;
        if ib.len() % 8 != 0 || tb.len() % 12 != 0 {
            return None;
        }
        let index: Vec<(u32, u32)> = ib
            .chunks_exact(8)
            .map(|c| {
                (
                    u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                    u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect();
        if index.iter().any(|&(_, pos)| pos as u64 >= file_len.max(1)) {
            return None;
        }
        self.time_index = tb
            .chunks_exact(12)
            .map(|c| {
                (
                    i64::from_be_bytes(c[0..8].try_into().expect("8 bytes")),
                    u32::from_be_bytes(c[8..12].try_into().expect("4 bytes")),
                )
            })
            .collect();
        self.index = index;
        self.size = size;
        self.next_offset = next;
        self.max_timestamp = max_ts;
        Some(())
    }

    /// Writes the indexes and the summary next to the log (atomically, via rename).
    pub fn save_indexes(&mut self) -> Result<()> {
        if !self.index_dirty {
            return Ok(());
        }
        let (ip, tp, mp) = self.index_paths();
        let mut ib = Vec::with_capacity(self.index.len() * 8);
        for (rel, pos) in &self.index {
            ib.extend_from_slice(&rel.to_be_bytes());
            ib.extend_from_slice(&pos.to_be_bytes());
        }
        let mut tb = Vec::with_capacity(self.time_index.len() * 12);
        for (ts, rel) in &self.time_index {
            tb.extend_from_slice(&ts.to_be_bytes());
            tb.extend_from_slice(&rel.to_be_bytes());
        }
        let mut mb = Vec::with_capacity(24);
        mb.extend_from_slice(&self.size.to_be_bytes());
        mb.extend_from_slice(&self.next_offset.to_be_bytes());
        mb.extend_from_slice(&self.max_timestamp.to_be_bytes());
        self.handle()?
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))?;
        for (p, b) in [(&ip, ib), (&tp, tb), (&mp, mb)] {
            let tmp = p.with_extension("tmp");
            fs::write(&tmp, b).map_err(|e| Error::io(&tmp, e))?;
            fs::rename(&tmp, p).map_err(|e| Error::io(p, e))?;
        }
        self.index_dirty = false;
        Ok(())
    }

    /// The file and its size now, for readers that work without the partition lock on
    /// bytes that can no longer change (closed segments, or the active one up to `size`).
    pub fn snapshot(&self) -> Result<(Arc<File>, u64)> {
        Ok((self.handle()?, self.size))
    }

    /// The open file, reopened if it was closed to stay within the descriptor budget.
    fn handle(&self) -> Result<Arc<File>> {
        self.file.get().map_err(|e| Error::io(&self.path, e))
    }

    /// Forgets saved indexes, so that a crash before the next clean save rebuilds them.
    pub fn invalidate_saved_indexes(&self) {
        let (_, _, mp) = self.index_paths();
        let _ = fs::remove_file(mp);
    }

    fn read_header(&self, pos: u64) -> Result<Option<BatchHeader>> {
        let mut buf = [0u8; HEADER_LEN];
        match self.handle()?.read_exact_at(&mut buf, pos) {
            Ok(()) => Ok(BatchHeader::parse(&buf)),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(Error::io(&self.path, e)),
        }
    }

    fn scan(&self, verify: bool, index_interval: u32) -> Result<Scan> {
        let file_len = self
            .handle()?
            .metadata()
            .map_err(|e| Error::io(&self.path, e))?
            .len();
        let mut s = Scan {
            valid_len: 0,
            next_offset: self.base_offset,
            max_timestamp: -1,
            index: Vec::new(),
            time_index: Vec::new(),
            bytes_since_index: 0,
        };
        let mut pos = 0u64;
        let mut buf = Vec::new();
        while pos < file_len {
            let Some(h) = self.read_header(pos)? else {
                break;
            };
            let len = h.total_len() as u64;
            if h.magic != 2
                || h.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32
                || pos + len > file_len
                || h.base_offset < s.next_offset
                || h.last_offset_delta < 0
            {
                break;
            }
            // Offsets the index cannot hold relative to the segment's base, or a batch whose
            // last offset overflows: no append writes either, so the bytes are damage.
            let Some(rel) = h
                .base_offset
                .checked_sub(self.base_offset)
                .and_then(|r| u32::try_from(r).ok())
            else {
                break;
            };
            let Some(next_offset) = h.base_offset.checked_add(h.last_offset_delta as i64 + 1)
            else {
                break;
            };
            if verify {
                buf.resize(len as usize, 0);
                self.handle()?
                    .read_exact_at(&mut buf, pos)
                    .map_err(|e| Error::io(&self.path, e))?;
                if !super::batch::crc_matches(&buf) {
                    break;
                }
            }
            if s.index.is_empty() || s.bytes_since_index >= index_interval {
                s.index.push((rel, pos as u32));
                s.bytes_since_index = 0;
            }
            s.bytes_since_index += len as u32;
            if h.max_timestamp > s.max_timestamp {
                s.max_timestamp = h.max_timestamp;
                s.time_index.push((h.max_timestamp, rel));
            }
            s.next_offset = next_offset;
            pos += len;
            s.valid_len = pos;
        }
        Ok(s)
    }

    /// Appends one batch whose first 16 bytes are replaced by `prefix` (base offset, length,
    /// leader epoch) without copying the rest: the kernel gathers both slices.
    pub fn append(
        &mut self,
        prefix: &[u8; 16],
        rest: &[u8],
        header: &BatchHeader,
        base_offset: i64,
        index_interval: u32,
    ) -> Result<()> {
        let pos = self.size;
        let total = prefix.len() + rest.len();
        if let Err(e) = self.write_all_at_end(prefix, rest) {
            // A full disk leaves part of the batch behind. Cut it, or the next batch (the file
            // is in append mode) would land after it while the index points elsewhere.
            if let Err(cut) = self
                .handle()
                .and_then(|f| f.set_len(pos).map_err(|e| Error::io(&self.path, e)))
            {
                tracing::error!(segment = %self.path.display(), error = %cut, "could not cut a partly written batch");
            }
            return Err(Error::io(&self.path, e));
        }
        let rel = (base_offset - self.base_offset) as u32;
        if self.index.is_empty() || self.bytes_since_index >= index_interval {
            self.index.push((rel, pos as u32));
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += total as u32;
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.time_index.push((header.max_timestamp, rel));
        }
        if !self.index_dirty {
            self.invalidate_saved_indexes();
            self.index_dirty = true;
        }
        self.size += total as u64;
        self.next_offset = base_offset + header.last_offset_delta as i64 + 1;
        Ok(())
    }

    fn write_all_at_end(&self, prefix: &[u8; 16], rest: &[u8]) -> std::io::Result<()> {
        let file = self.file.get()?;
        let total = prefix.len() + rest.len();
        let mut written = 0usize;
        while written < total {
            let n = if written < prefix.len() {
                let slices = [IoSlice::new(&prefix[written..]), IoSlice::new(rest)];
                (&*file).write_vectored(&slices)
            } else {
                (&*file).write(&rest[written - prefix.len()..])
            }?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "short write",
                ));
            }
            written += n;
        }
        Ok(())
    }

    /// Position of the batch that contains `offset`, or of the first batch after it.
    /// `None` when the segment has no batch at or after the offset.
    pub fn position_of(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        let rel = (offset - self.base_offset).max(0) as u32;
        let start = match self.index.partition_point(|&(r, _)| r <= rel) {
            0 => 0,
            i => self.index[i - 1].1 as u64,
        };
        let mut pos = start;
        while pos < self.size {
            let Some(h) = self.read_header(pos)? else {
                break;
            };
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Reads whole batches from `offset`: at least the first batch (even when it alone exceeds
    /// `max_bytes`, KIP-74) when `min_one` is set, then as many more as fit in `max_bytes`.
    /// The bytes of [`Self::slice`], for readers that need them in memory.
    pub fn read(&self, offset: i64, max_bytes: usize, min_one: bool) -> Result<Bytes> {
        match self.slice(offset, max_bytes, min_one)? {
            Some(s) => s.read_all().map_err(|e| Error::io(&self.path, e)),
            None => Ok(Bytes::new()),
        }
    }

    /// The file range of whole batches from `offset`: at least the first batch (even when it
    /// alone exceeds `max_bytes`, KIP-74) when `min_one` is set, then as many more as fit.
    pub fn slice(&self, offset: i64, max_bytes: usize, min_one: bool) -> Result<Option<FileSlice>> {
        let Some((start, first)) = self.position_of(offset)? else {
            return Ok(None);
        };
        let first_len = first.total_len() as u64;
        if start + first_len > self.size {
            return Err(Error::SegmentCorrupt {
                path: self.path.clone(),
                position: start,
                reason: format!("a {first_len}-byte batch runs past the end ({})", self.size),
            });
        }
        let end = if first_len > max_bytes as u64 {
            if !min_one {
                return Ok(None);
            }
            start + first_len
        } else {
            let limit = start.saturating_add(max_bytes as u64).min(self.size);
            self.last_boundary(start + first_len, limit)?
        };
        Ok(Some(FileSlice {
            file: self.handle()?,
            position: start,
            len: end - start,
        }))
    }

    /// The end of the last whole batch at or before `limit`, walking batch headers from
    /// `from` (a batch boundary), or from the last indexed batch before `limit` when that is
    /// further. Headers are read in 4 KiB windows, so small batches cost few system calls.
    fn last_boundary(&self, from: u64, limit: u64) -> Result<u64> {
        let i = self.index.partition_point(|&(_, p)| p as u64 <= limit);
        let mut pos = match i {
            0 => from,
            i => (self.index[i - 1].1 as u64).max(from),
        };
        let mut window = [0u8; 4096];
        loop {
            if pos + LOG_OVERHEAD as u64 > limit {
                return Ok(pos);
            }
            let n = ((limit - pos) as usize).min(window.len());
            self.handle()?
                .read_exact_at(&mut window[..n], pos)
                .map_err(|e| Error::io(&self.path, e))?;
            // `w` is the next header's position relative to `pos`.
            let mut w = 0usize;
            while w + LOG_OVERHEAD <= n {
                let len = i32::from_be_bytes(window[w + 8..w + 12].try_into().expect("4 bytes"));
                let next = w + LOG_OVERHEAD + len.max(0) as usize;
                if pos + next as u64 > limit {
                    return Ok(pos + w as u64);
                }
                w = next;
            }
            pos += w as u64;
        }
    }

    /// The base offset and max timestamp of the first batch whose max timestamp is at or
    /// after `ts`.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>> {
        if self.max_timestamp < ts {
            return Ok(None);
        }
        let i = self.time_index.partition_point(|&(t, _)| t < ts);
        let start_offset = match i {
            0 => self.base_offset,
            // The entry before holds a batch whose max timestamp is below ts; start there.
            i => self.base_offset + self.time_index[i - 1].1 as i64,
        };
        let Some((mut pos, _)) = self.position_of(start_offset)? else {
            return Ok(None);
        };
        while pos < self.size {
            let Some(h) = self.read_header(pos)? else {
                break;
            };
            if h.max_timestamp >= ts {
                return Ok(Some((h.base_offset, h.max_timestamp)));
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Visits every batch header in order (producer state rebuild, tests).
    pub fn for_each_header(&self, mut f: impl FnMut(&BatchHeader)) -> Result<()> {
        let mut pos = 0;
        while pos < self.size {
            let Some(h) = self.read_header(pos)? else {
                break;
            };
            f(&h);
            pos += h.total_len() as u64;
        }
        Ok(())
    }

    /// Cuts the segment before the batch that holds `offset` (and everything after it), then
    /// rebuilds the indexes from what is left. A truncation is rare (a follower whose log
    /// diverged from its leader's), so a rescan is cheaper to get right than index surgery.
    pub fn truncate_to(&mut self, offset: i64, index_interval: u32) -> Result<()> {
        let Some((pos, _)) = self.position_of(offset)? else {
            return Ok(());
        };
        // Saved indexes describe the longer file; a crash before the next save must rebuild.
        self.invalidate_saved_indexes();
        let file = self.handle()?;
        file.set_len(pos).map_err(|e| Error::io(&self.path, e))?;
        file.sync_data().map_err(|e| Error::io(&self.path, e))?;
        let scan = self.scan(false, index_interval)?;
        self.size = scan.valid_len;
        self.next_offset = scan.next_offset;
        self.max_timestamp = scan.max_timestamp;
        self.index = scan.index;
        self.time_index = scan.time_index;
        self.bytes_since_index = scan.bytes_since_index;
        self.index_dirty = true;
        Ok(())
    }

    pub fn flush(&self) -> Result<()> {
        self.handle()?
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Removes the segment's files.
    pub fn delete(self) -> Result<()> {
        let (ip, tp, mp) = self.index_paths();
        for p in [&ip, &tp, &mp] {
            let _ = fs::remove_file(p);
        }
        fs::remove_file(&self.path).map_err(|e| Error::io(&self.path, e))
    }
}
