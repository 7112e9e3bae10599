//! Record batch (magic v2) headers: parsing, validation and the few fields the broker rewrites.
//!
//! Layout (KIP-98): baseOffset i64, batchLength i32, partitionLeaderEpoch i32, magic i8,
//! crc u32 (CRC-32C of everything from `attributes` to the end), attributes i16,
//! lastOffsetDelta i32, baseTimestamp i64, maxTimestamp i64, producerId i64, producerEpoch i16,
//! baseSequence i32, recordsCount i32, then the (possibly compressed) records. The broker never
//! decompresses: everything it needs is in this 61-byte header, which is why every codec is
//! accepted as sent.

/// Bytes before `batchLength` counts: baseOffset and batchLength itself.
pub const LOG_OVERHEAD: usize = 12;
/// The whole fixed header.
pub const HEADER_LEN: usize = 61;
const CRC_START: usize = 21;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the length field.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8-byte slice"))
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4-byte slice"))
}
fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().expect("2-byte slice"))
}

impl BatchHeader {
    /// Parses the fixed header; `None` when fewer than [`HEADER_LEN`] bytes are given.
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() < HEADER_LEN {
            return None;
        }
        Some(BatchHeader {
            base_offset: i64_at(b, 0),
            batch_length: i32_at(b, 8),
            partition_leader_epoch: i32_at(b, 12),
            magic: b[16] as i8,
            crc: u32::from_be_bytes(b[17..21].try_into().expect("4-byte slice")),
            attributes: i16_at(b, 21),
            last_offset_delta: i32_at(b, 23),
            base_timestamp: i64_at(b, 27),
            max_timestamp: i64_at(b, 35),
            producer_id: i64_at(b, 43),
            producer_epoch: i16_at(b, 51),
            base_sequence: i32_at(b, 53),
            records_count: i32_at(b, 57),
        })
    }

    /// Bytes the whole batch occupies, header included.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// The offset of the batch's last record. Saturates: a header read from a damaged file
    /// (after a clean shutdown the saved summary is trusted and headers are not re-checked)
    /// must not overflow.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(self.last_offset_delta as i64)
    }

    pub fn compression(&self) -> i16 {
        self.attributes & 0x07
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// The sequence of the last record, wrapping at `i32::MAX` as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        (last % (i32::MAX as i64 + 1)) as i32
    }
}

/// Why a produced record set was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// Framing, magic, or CRC is wrong (CORRUPT_MESSAGE).
    Corrupt(String),
    /// One batch is larger than `max.message.bytes` (MESSAGE_TOO_LARGE).
    TooLarge { size: usize, max: usize },
    /// Magic v0/v1 message sets are not accepted by Kafka 4 either.
    OldFormat,
}

/// Verifies the CRC-32C of one whole batch.
pub fn crc_matches(batch: &[u8]) -> bool {
    match BatchHeader::parse(batch) {
        Some(h) if batch.len() >= h.total_len() => {
            crc32c::crc32c(&batch[CRC_START..h.total_len()]) == h.crc
        }
        _ => false,
    }
}

/// Splits a produced record set into batches, checking each one's framing, magic, size and CRC.
/// Returns each batch's start position and header.
pub fn validate_record_set(
    records: &[u8],
    max_batch_bytes: usize,
) -> Result<Vec<(usize, BatchHeader)>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() < LOG_OVERHEAD + 5 {
            return Err(BatchError::Corrupt("truncated batch header".into()));
        }
        if rest[16] as i8 != 2 {
            return Err(BatchError::OldFormat);
        }
        let h = BatchHeader::parse(rest)
            .ok_or_else(|| BatchError::Corrupt("truncated batch header".into()))?;
        if h.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::Corrupt(format!(
                "batch length {} too small",
                h.batch_length
            )));
        }
        let len = h.total_len();
        if len > max_batch_bytes {
            return Err(BatchError::TooLarge {
                size: len,
                max: max_batch_bytes,
            });
        }
        if rest.len() < len {
            return Err(BatchError::Corrupt(
                "batch extends past the record set".into(),
            ));
        }
        if h.last_offset_delta < 0 || h.records_count < 0 {
            return Err(BatchError::Corrupt("negative record count".into()));
        }
        if crc32c::crc32c(&rest[CRC_START..len]) != h.crc {
            return Err(BatchError::Corrupt("CRC mismatch".into()));
        }
        if h.compression() > 4 {
            return Err(BatchError::Corrupt(format!(
                "unknown codec {}",
                h.compression()
            )));
        }
        out.push((pos, h));
        pos += len;
    }
    if out.is_empty() {
        return Err(BatchError::Corrupt("empty record set".into()));
    }
    Ok(out)
}

/// The first 16 bytes of a batch as stored: assigned base offset, unchanged length, leader epoch.
pub fn stored_prefix(h: &BatchHeader, base_offset: i64, leader_epoch: i32) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[0..8].copy_from_slice(&base_offset.to_be_bytes());
    p[8..12].copy_from_slice(&h.batch_length.to_be_bytes());
    p[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    p
}

/// Marks a batch as LogAppendTime with the given time, and recomputes its CRC.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attrs = i16_at(batch, 21) | 0x08;
    batch[21..23].copy_from_slice(&attrs.to_be_bytes());
    batch[35..43].copy_from_slice(&now_ms.to_be_bytes());
    let h = BatchHeader::parse(batch).expect("validated batch");
    let crc = crc32c::crc32c(&batch[CRC_START..h.total_len()]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Sets a batch's max timestamp and recomputes its CRC.
pub fn set_max_timestamp(batch: &mut [u8], max_timestamp: i64) {
    batch[35..43].copy_from_slice(&max_timestamp.to_be_bytes());
    let h = BatchHeader::parse(batch).expect("validated batch");
    let crc = crc32c::crc32c(&batch[CRC_START..h.total_len()]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// A record's key and value, either of which may be null.
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Builds an uncompressed batch of records with the given key/value pairs. Used for the broker's
/// own writes (committed offsets, the metadata log) and by tests.
pub fn build_batch(base_offset: i64, timestamp_ms: i64, records: &[KeyValue<'_>]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            if z < 0x80 {
                out.push(z as u8);
                return;
            }
            out.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
    }
    let mut body = Vec::new();
    for (i, (k, v)) in records.iter().enumerate() {
        let mut r = Vec::new();
        r.push(0); // attributes
        varint(&mut r, 0); // timestamp delta
        varint(&mut r, i as i64); // offset delta
        match k {
            Some(k) => {
                varint(&mut r, k.len() as i64);
                r.extend_from_slice(k);
            }
            None => varint(&mut r, -1),
        }
        match v {
            Some(v) => {
                varint(&mut r, v.len() as i64);
                r.extend_from_slice(v);
            }
            None => varint(&mut r, -1),
        }
        varint(&mut r, 0); // headers
        varint(&mut body, r.len() as i64);
        body.extend_from_slice(&r);
    }
    let mut b = Vec::with_capacity(HEADER_LEN + body.len());
    b.extend_from_slice(&base_offset.to_be_bytes());
    b.extend_from_slice(&((HEADER_LEN - LOG_OVERHEAD + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // leader epoch
    b.push(2); // magic
    b.extend_from_slice(&[0; 4]); // crc, filled below
    b.extend_from_slice(&0i16.to_be_bytes()); // attributes
    b.extend_from_slice(&((records.len().max(1) - 1) as i32).to_be_bytes());
    b.extend_from_slice(&timestamp_ms.to_be_bytes());
    b.extend_from_slice(&timestamp_ms.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&(records.len() as i32).to_be_bytes());
    b.extend_from_slice(&body);
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_built_batch_validates_and_reports_its_fields() {
        let b = build_batch(0, 1234, &[(Some(b"k"), Some(b"v")), (None, Some(b"w"))]);
        let v = validate_record_set(&b, 1 << 20).unwrap();
        assert_eq!(v.len(), 1);
        let h = v[0].1;
        assert_eq!(h.records_count, 2);
        assert_eq!(h.last_offset_delta, 1);
        assert_eq!(h.max_timestamp, 1234);
        assert!(crc_matches(&b));
    }

    #[test]
    fn a_flipped_bit_fails_the_crc() {
        let mut b = build_batch(0, 1, &[(None, Some(b"value"))]);
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(matches!(
            validate_record_set(&b, 1 << 20),
            Err(BatchError::Corrupt(_))
        ));
    }

    #[test]
    fn an_oversized_batch_is_too_large() {
        let b = build_batch(0, 1, &[(None, Some(&[0u8; 1000]))]);
        assert!(matches!(
            validate_record_set(&b, 100),
            Err(BatchError::TooLarge { .. })
        ));
    }

    #[test]
    fn log_append_time_keeps_the_crc_valid() {
        let mut b = build_batch(0, 1, &[(None, Some(b"x"))]);
        set_log_append_time(&mut b, 99);
        assert!(crc_matches(&b));
        assert_eq!(BatchHeader::parse(&b).unwrap().max_timestamp, 99);
    }

    proptest! {
        #[test]
        fn any_truncation_is_rejected_not_panicking(len in 0usize..200, cut in 0usize..200) {
            let b = build_batch(0, 1, &[(None, Some(&vec![7u8; len]))]);
            let cut = cut.min(b.len());
            if cut < b.len() {
                prop_assert!(validate_record_set(&b[..cut], 1 << 20).is_err());
            }
        }
    }
}
