//! The produce-path record validator: what Kafka's `LogValidator` checks before a batch is
//! stored, so that nothing a consumer would choke on reaches the log.
//!
//! Per batch (from its header): the record count is positive and equals `lastOffsetDelta + 1`;
//! no control batch comes from a client; a batch with a producer id has a base sequence.
//! Per record (the records are parsed, decompressing compressed batches as a stream): every
//! length and count is consistent with the bytes that are there, the batch holds exactly the
//! records it claims and nothing after them, CreateTime timestamps lie within
//! `message.timestamp.{before,after}.max.ms` of now, and a compacted topic gets only keyed
//! records. A compressed payload that does not decompress, or decompresses past
//! [`MAX_DECOMPRESSED_BYTES`], is corrupt: decompression is streamed and never buffered whole,
//! so a small batch that inflates to gigabytes costs time up to the cap and no memory.
//!
//! Errors map to Kafka's: [`Invalid::Corrupt`] is CORRUPT_MESSAGE, [`Invalid::Record`] is
//! INVALID_RECORD, [`Invalid::Timestamp`] is INVALID_TIMESTAMP (both with the indexes of the
//! offending records when there are some).

use std::io::{self, BufRead, BufReader, Read};

use super::batch::{BatchHeader, HEADER_LEN};

/// The most a compressed batch may inflate to. Java producers write batches of 16 KiB to 1 MiB
/// and librdkafka up to `batch.size` (1 MB by default) before compression.
pub const MAX_DECOMPRESSED_BYTES: u64 = 128 << 20;

/// The topic's rules that apply to every record.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub now_ms: i64,
    /// `message.timestamp.type=CreateTime`: record timestamps are checked against now.
    pub create_time: bool,
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
    /// `cleanup.policy` contains `compact`: every record needs a key.
    pub compacted: bool,
}

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// The bytes are not a well-formed batch (CORRUPT_MESSAGE).
    Corrupt(String),
    /// A well-formed batch that breaks a rule (INVALID_RECORD); the indexes of the records
    /// that break it, when it is about records.
    Record { message: String, records: Vec<i32> },
    /// Timestamps out of range (INVALID_TIMESTAMP), with the offending record indexes.
    Timestamp { message: String, records: Vec<i32> },
}

/// Checks one whole batch (header and records). `first_index` is the index of its first record
/// within the produced record set, for per-record errors. Returns the max timestamp the
/// stored header must carry when the producer's differs from its records' maximum (Kafka
/// rewrites it too).
pub fn check_batch(
    batch: &[u8],
    h: &BatchHeader,
    rules: &Rules,
    first_index: i32,
) -> Result<Option<i64>, Invalid> {
    check_header(h)?;
    let payload = &batch[HEADER_LEN..h.total_len()];
    let mut errors = RecordErrors::default();
    let max_timestamp = match h.compression() {
        0 => parse_records(
            &mut SliceSource(payload),
            h,
            rules,
            first_index,
            &mut errors,
        )?,
        codec => {
            let reader = decompressor(codec, payload)?;
            let mut src = StreamSource {
                inner: BufReader::with_capacity(32 * 1024, reader.take(MAX_DECOMPRESSED_BYTES + 1)),
                read: 0,
            };
            let parsed = parse_records(&mut src, h, rules, first_index, &mut errors);
            if src.read > MAX_DECOMPRESSED_BYTES {
                return Err(Invalid::Corrupt(format!(
                    "the batch decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes"
                )));
            }
            parsed?
        }
    };
    errors.into_result()?;
    Ok(max_timestamp)
}

/// Kafka's `LogValidator.validateBatch`, for magic v2.
fn check_header(h: &BatchHeader) -> Result<(), Invalid> {
    let invalid = |message: String| {
        Err(Invalid::Record {
            message,
            records: Vec::new(),
        })
    };
    if h.last_offset_delta < 0 {
        return invalid(format!(
            "Batch has an invalid offset range: last offset delta {}.",
            h.last_offset_delta
        ));
    }
    if h.records_count <= 0 {
        return invalid(format!(
            "Invalid reported count for record batch: {}.",
            h.records_count
        ));
    }
    if h.last_offset_delta as i64 + 1 != h.records_count as i64 {
        return invalid(format!(
            "Inconsistent batch offset range [0, {}] and count of records {}.",
            h.last_offset_delta, h.records_count
        ));
    }
    if h.is_control() {
        return invalid("Clients are not allowed to write control records.".into());
    }
    if h.has_producer_id() && h.base_sequence < 0 {
        return invalid(format!(
            "Invalid sequence number {} in record batch with producerId {}.",
            h.base_sequence, h.producer_id
        ));
    }
    Ok(())
}

#[derive(Default)]
struct RecordErrors {
    missing_key: Vec<i32>,
    bad_timestamp: Vec<i32>,
    timestamp_message: Option<String>,
}

impl RecordErrors {
    fn into_result(self) -> Result<(), Invalid> {
        // As Kafka's processRecordErrors: any timestamp error makes it INVALID_TIMESTAMP.
        if let Some(message) = self.timestamp_message {
            return Err(Invalid::Timestamp {
                message,
                records: self.bad_timestamp,
            });
        }
        if !self.missing_key.is_empty() {
            return Err(Invalid::Record {
                message: "Compacted topic cannot accept message without key.".into(),
                records: self.missing_key,
            });
        }
        Ok(())
    }
}

/// Where record bytes come from: the batch itself, or a decompressing stream.
trait Source {
    /// The next byte, `None` at the end.
    fn byte(&mut self) -> Result<Option<u8>, Invalid>;
    /// Skips `n` bytes; false when fewer remain.
    fn skip(&mut self, n: u64) -> Result<bool, Invalid>;
}

struct SliceSource<'a>(&'a [u8]);

impl Source for SliceSource<'_> {
    fn byte(&mut self) -> Result<Option<u8>, Invalid> {
        Ok(self.0.split_first().map(|(b, rest)| {
            self.0 = rest;
            *b
        }))
    }

    fn skip(&mut self, n: u64) -> Result<bool, Invalid> {
        if n > self.0.len() as u64 {
            return Ok(false);
        }
        self.0 = &self.0[n as usize..];
        Ok(true)
    }
}

struct StreamSource<R: BufRead> {
    inner: R,
    read: u64,
}

fn decompress_error(e: io::Error) -> Invalid {
    Invalid::Corrupt(format!("the compressed records do not decompress: {e}"))
}

impl<R: BufRead> Source for StreamSource<R> {
    fn byte(&mut self) -> Result<Option<u8>, Invalid> {
        let buf = self.inner.fill_buf().map_err(decompress_error)?;
        let Some(&b) = buf.first() else {
            return Ok(None);
        };
        self.inner.consume(1);
        self.read += 1;
        Ok(Some(b))
    }

    fn skip(&mut self, mut n: u64) -> Result<bool, Invalid> {
        while n > 0 {
            let buf = self.inner.fill_buf().map_err(decompress_error)?;
            if buf.is_empty() {
                return Ok(false);
            }
            let k = (buf.len() as u64).min(n) as usize;
            self.inner.consume(k);
            self.read += k as u64;
            n -= k as u64;
        }
        Ok(true)
    }
}

/// A record whose fields do not add up. Kafka's `DefaultRecord.readFrom` throws
/// `InvalidRecordException` for these (INVALID_RECORD, which producers do not retry); only a
/// CRC mismatch or a payload that does not decompress is CORRUPT_MESSAGE.
fn malformed(message: String) -> Invalid {
    Invalid::Record {
        message,
        records: Vec::new(),
    }
}

fn corrupt(what: &str) -> Invalid {
    malformed(format!("invalid record structure: {what}"))
}

/// A zig-zag varint of at most `max_bytes` bytes (5 for int, 10 for long).
fn varint(src: &mut impl Source, max_bytes: u32, what: &str) -> Result<i64, Invalid> {
    let mut raw: u64 = 0;
    for i in 0..max_bytes {
        let b = src.byte()?.ok_or_else(|| corrupt(what))?;
        raw |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    Err(corrupt(what))
}

/// A varint-prefixed byte field; returns its length (-1 or any negative value is null, as in
/// Kafka's `DefaultRecord.readFrom`).
fn skip_field(src: &mut impl Source, what: &str) -> Result<i64, Invalid> {
    let len = varint(src, 5, what)?;
    if len > 0 && !src.skip(len as u64)? {
        return Err(corrupt(what));
    }
    Ok(len)
}

/// Kafka's `DefaultRecord.readFrom` for each record, then: exactly `records_count` records and
/// nothing after them.
fn parse_records(
    src: &mut impl Source,
    h: &BatchHeader,
    rules: &Rules,
    first_index: i32,
    errors: &mut RecordErrors,
) -> Result<Option<i64>, Invalid> {
    let log_append_time = h.attributes & 0x08 != 0;
    let mut max_timestamp = -1i64;
    for i in 0..h.records_count {
        let size = varint(src, 5, "record length")?;
        if size <= 0 {
            return Err(corrupt("record length"));
        }
        // Count what the record's fields take, to check them against its declared size.
        let mut counted = Counting { inner: src, n: 0 };
        let _attributes = counted.byte()?.ok_or_else(|| corrupt("attributes"))?;
        let timestamp_delta = varint(&mut counted, 10, "timestamp delta")?;
        let offset_delta = varint(&mut counted, 5, "offset delta")?;
        // Kafka's validator requires the inner records of a compressed batch to be numbered
        // 0, 1, 2...; an uncompressed batch's deltas are kept as sent (as Kafka keeps them).
        if h.compression() != 0 && h.base_offset.wrapping_add(offset_delta) != i as i64 {
            return Err(malformed(format!(
                "Inner record {i} inside the compressed record batch does not have incremental \
                 offsets, expected offset is {i}, found {}",
                h.base_offset.wrapping_add(offset_delta)
            )));
        }
        let key_len = skip_field(&mut counted, "key")?;
        skip_field(&mut counted, "value")?;
        let headers = varint(&mut counted, 5, "header count")?;
        if headers < 0 {
            return Err(corrupt("negative header count"));
        }
        for _ in 0..headers {
            if skip_field(&mut counted, "header key")? < 0 {
                return Err(corrupt("negative header key length"));
            }
            skip_field(&mut counted, "header value")?;
            if counted.n > size as u64 {
                return Err(corrupt("headers run past the record"));
            }
        }
        if counted.n != size as u64 {
            return Err(malformed(format!(
                "Invalid record size: expected to read {size} bytes in record payload, but instead read {}",
                counted.n
            )));
        }
        let index = first_index.saturating_add(i);
        if rules.compacted && key_len < 0 {
            errors.missing_key.push(index);
        }
        // A batch marked LogAppendTime carries its time in maxTimestamp (checked below).
        if rules.create_time && !log_append_time {
            let ts = h.base_timestamp.saturating_add(timestamp_delta);
            check_timestamp(ts, rules, h, i, index, errors);
            max_timestamp = max_timestamp.max(ts);
        }
    }
    if src.byte()?.is_some() {
        return Err(malformed(
            "Incorrect declared batch size, records still remaining in file".into(),
        ));
    }
    if rules.create_time {
        // The stored header's maxTimestamp feeds the time index and retention, so it is held to
        // the same window and must be the records' own maximum (Kafka rewrites it; no client
        // sends another value).
        if log_append_time {
            check_timestamp(h.max_timestamp, rules, h, 0, first_index, errors);
        } else if h.max_timestamp != max_timestamp {
            return Ok(Some(max_timestamp));
        }
    }
    Ok(None)
}

fn check_timestamp(
    ts: i64,
    rules: &Rules,
    h: &BatchHeader,
    i: i32,
    index: i32,
    errors: &mut RecordErrors,
) {
    let early = rules.now_ms.saturating_sub(rules.timestamp_before_max_ms);
    let late = rules.now_ms.saturating_add(rules.timestamp_after_max_ms);
    if ts != -1 && (ts < early || ts > late) {
        if !errors.bad_timestamp.contains(&index) {
            errors.bad_timestamp.push(index);
        }
        errors.timestamp_message.get_or_insert_with(|| {
            format!(
                "Timestamp {ts} of message with offset {} is out of range. The timestamp should be within [{early}, {late}]",
                h.base_offset.wrapping_add(i as i64)
            )
        });
    }
}

/// Counts the bytes read through it.
struct Counting<'a, S: Source> {
    inner: &'a mut S,
    n: u64,
}

impl<S: Source> Source for Counting<'_, S> {
    fn byte(&mut self) -> Result<Option<u8>, Invalid> {
        let b = self.inner.byte()?;
        self.n += b.is_some() as u64;
        Ok(b)
    }

    fn skip(&mut self, n: u64) -> Result<bool, Invalid> {
        let ok = self.inner.skip(n)?;
        self.n += n;
        Ok(ok)
    }
}

/// A streaming decompressor for Kafka's codecs: 1 gzip, 2 snappy (xerial framing as the Java
/// client writes it, or a raw block as librdkafka does), 3 lz4 (the KIP-57 frame), 4 zstd.
fn decompressor<'a>(codec: i16, payload: &'a [u8]) -> Result<Box<dyn Read + 'a>, Invalid> {
    Ok(match codec {
        1 => Box::new(flate2::read::GzDecoder::new(payload)),
        2 => Box::new(SnappyReader::new(payload)?),
        3 => Box::new(lz4::Decoder::new(payload).map_err(decompress_error)?),
        4 => Box::new(zstd::stream::read::Decoder::with_buffer(payload).map_err(decompress_error)?),
        other => {
            return Err(Invalid::Corrupt(format!(
                "unknown compression codec {other}"
            )))
        }
    })
}

const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;
/// Snappy cannot expand a block by more than this: its longest copy (64 bytes) takes a 2-byte
/// tag. A block that claims more is corrupt, and is refused before anything is allocated.
const SNAPPY_MAX_RATIO: u64 = 32;

/// Snappy blocks decoded one at a time.
struct SnappyReader<'a> {
    rest: &'a [u8],
    xerial: bool,
    block: Vec<u8>,
    pos: usize,
    total: u64,
}

impl<'a> SnappyReader<'a> {
    fn new(payload: &'a [u8]) -> Result<Self, Invalid> {
        let xerial = payload.starts_with(XERIAL_MAGIC);
        if xerial && payload.len() < XERIAL_HEADER_LEN {
            return Err(Invalid::Corrupt("truncated snappy (xerial) header".into()));
        }
        Ok(SnappyReader {
            rest: if xerial {
                &payload[XERIAL_HEADER_LEN..]
            } else {
                payload
            },
            xerial,
            block: Vec::new(),
            pos: 0,
            total: 0,
        })
    }

    fn next_block(&mut self) -> io::Result<bool> {
        if self.rest.is_empty() {
            return Ok(false);
        }
        let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
        let compressed = if self.xerial {
            if self.rest.len() < 4 {
                return Err(bad("truncated snappy block length"));
            }
            let n = u32::from_be_bytes(self.rest[..4].try_into().expect("4 bytes")) as usize;
            if self.rest.len() - 4 < n {
                return Err(bad("snappy block runs past the batch"));
            }
            let block = &self.rest[4..4 + n];
            self.rest = &self.rest[4 + n..];
            block
        } else {
            std::mem::take(&mut self.rest)
        };
        let len = snap::raw::decompress_len(compressed).map_err(|e| bad(&e.to_string()))? as u64;
        if len > SNAPPY_MAX_RATIO * compressed.len() as u64 + 64
            || self.total + len > MAX_DECOMPRESSED_BYTES + 1
        {
            return Err(bad("snappy block claims more than it can hold"));
        }
        self.block.resize(len as usize, 0);
        snap::raw::Decoder::new()
            .decompress(compressed, &mut self.block)
            .map_err(|e| bad(&e.to_string()))?;
        self.total += len;
        self.pos = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.block.len() - self.pos);
        out[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::{build_batch, validate_record_set, BatchHeader};
    use bytes::{Bytes, BytesMut};
    use indexmap::IndexMap;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    const NOW: i64 = 1_700_000_000_000;

    fn rules() -> Rules {
        Rules {
            now_ms: NOW,
            create_time: true,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            compacted: false,
        }
    }

    fn encoded(compression: Compression, values: &[&[u8]], ts: i64) -> Bytes {
        encoded_from(compression, values, ts, 0)
    }

    fn encoded_from(compression: Compression, values: &[&[u8]], ts: i64, first: i64) -> Bytes {
        let records: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: first + i as i64,
                // The encoder starts a new batch unless offset - sequence stays constant.
                sequence: i as i32 - 1,
                timestamp: ts + i as i64,
                key: Some(Bytes::from_static(b"k")),
                value: Some(Bytes::copy_from_slice(v)),
                headers: IndexMap::from([(
                    kafka_protocol::protocol::StrBytes::from_static_str("h"),
                    Some(Bytes::from_static(b"x")),
                )]),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    fn check(b: &[u8], rules: &Rules) -> Result<Option<i64>, Invalid> {
        let h = BatchHeader::parse(b).unwrap();
        check_batch(b, &h, rules, 0)
    }

    /// Rewrites header fields and fixes the CRC, as a hostile client would.
    fn patch(b: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
        let mut b = b.to_vec();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn batches_from_real_encoders_pass_with_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = encoded(c, &[b"one", b"two", &[7u8; 5000]], NOW);
            assert_eq!(check(&b, &rules()), Ok(None), "{c:?}");
        }
        let b = build_batch(0, NOW, &[(None, Some(b"v")), (Some(b"k"), None)]);
        assert_eq!(check(&b, &rules()), Ok(None));
    }

    #[test]
    fn header_lies_are_invalid_records() {
        let b = build_batch(0, NOW, &[(None, Some(b"a")), (None, Some(b"b"))]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("count 3 for 2", patch(&b, 57, &3i32.to_be_bytes())),
            ("count 0", patch(&b, 57, &0i32.to_be_bytes())),
            (
                "last offset delta 2^31-1",
                patch(&b, 23, &i32::MAX.to_be_bytes()),
            ),
            ("control batch", patch(&b, 21, &0x20i16.to_be_bytes())),
            (
                "producer id without sequence",
                patch(&b, 43, &7i64.to_be_bytes()),
            ),
        ];
        for (what, bad) in cases {
            assert!(
                validate_record_set(&bad, 1 << 20).is_ok(),
                "{what}: framing is fine"
            );
            assert!(
                matches!(check(&bad, &rules()), Err(Invalid::Record { .. })),
                "{what}: {:?}",
                check(&bad, &rules())
            );
        }
    }

    #[test]
    fn fewer_records_than_claimed_or_trailing_bytes_are_invalid_records() {
        // Count and last offset delta both say 3; the body holds 2.
        let b = build_batch(0, NOW, &[(None, Some(b"a")), (None, Some(b"b"))]);
        let mut bad = patch(&b, 57, &3i32.to_be_bytes());
        bad = patch(&bad, 23, &2i32.to_be_bytes());
        assert!(matches!(check(&bad, &rules()), Err(Invalid::Record { .. })));
        // Claims 1 record but holds 2.
        let mut bad = patch(&b, 57, &1i32.to_be_bytes());
        bad = patch(&bad, 23, &0i32.to_be_bytes());
        assert!(matches!(
            check(&bad, &rules()),
            Err(Invalid::Record { message, .. }) if message.contains("records still remaining")
        ));
    }

    #[test]
    fn timestamps_beyond_the_limits_are_refused_with_the_record_index() {
        let ten_years = 10 * 365 * 24 * 3_600_000i64;
        let b = encoded(Compression::None, &[b"x"], NOW + ten_years);
        match check(&b, &rules()) {
            Err(Invalid::Timestamp { records, message }) => {
                assert_eq!(records, vec![0]);
                assert!(message.contains("out of range"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let mut r = rules();
        r.timestamp_before_max_ms = 1000;
        let old = encoded(Compression::Zstd, &[b"x", b"y"], NOW - 5000);
        let got = check(&old, &r);
        assert!(
            matches!(&got, Err(Invalid::Timestamp { records, .. }) if *records == vec![0, 1]),
            "{got:?}"
        );
        r.create_time = false;
        assert_eq!(
            check(&old, &r),
            Ok(None),
            "LogAppendTime topics take any timestamp"
        );
    }

    #[test]
    fn a_forged_max_timestamp_is_corrected_or_refused() {
        let b = build_batch(0, NOW, &[(None, Some(b"a")), (None, Some(b"b"))]);
        let forged = patch(&b, 35, &i64::MAX.to_be_bytes());
        assert_eq!(
            check(&forged, &rules()),
            Ok(Some(NOW)),
            "stored with the records' maximum, as Kafka rewrites it"
        );
        // Marked LogAppendTime by the client in a CreateTime topic: its maxTimestamp is the
        // records' time, held to the window.
        let lat = patch(&forged, 21, &0x08i16.to_be_bytes());
        assert!(matches!(
            check(&lat, &rules()),
            Err(Invalid::Timestamp { .. })
        ));
    }

    #[test]
    fn a_compacted_topic_refuses_records_without_a_key() {
        let b = build_batch(0, NOW, &[(Some(b"k"), Some(b"v")), (None, Some(b"w"))]);
        let mut r = rules();
        r.compacted = true;
        assert!(
            matches!(check(&b, &r), Err(Invalid::Record { records, .. }) if records == vec![1])
        );
    }

    #[test]
    fn a_corrupt_compressed_payload_under_a_valid_crc_is_corrupt() {
        for c in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = encoded(c, &[&[1u8; 300], &[2u8; 300]], NOW);
            let mid = HEADER_LEN + (b.len() - HEADER_LEN) / 2;
            let mut bad = b.to_vec();
            for x in &mut bad[mid..mid + 8] {
                *x ^= 0x5a;
            }
            let first = bad[0..8].to_owned();
            let bad = patch(&bad, 0, &first);
            // Usually the codec's own checksum or framing fails (CORRUPT_MESSAGE); a codec
            // without a checksum may inflate to garbage records instead (INVALID_RECORD).
            assert!(
                matches!(
                    check(&bad, &rules()),
                    Err(Invalid::Corrupt(_) | Invalid::Record { .. })
                ),
                "{c:?}: {:?}",
                check(&bad, &rules())
            );
        }
    }

    #[test]
    fn a_decompression_bomb_is_refused_at_the_cap_without_buffering_it() {
        // One record whose value is 200 MiB of zeros: a few hundred KiB of zstd.
        let value_len: i64 = 200 << 20;
        let mut record = vec![0u8]; // attributes
        record.extend([0, 0]); // timestamp delta 0, offset delta 0
        record.push(1); // key: null (-1)
        let mut v = (value_len << 1) as u64;
        while v >= 0x80 {
            record.push((v as u8) | 0x80);
            v >>= 7;
        }
        record.push(v as u8);
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        let mut size = ((record.len() as i64 + value_len + 1) << 1) as u64;
        let mut prefix = Vec::new();
        while size >= 0x80 {
            prefix.push((size as u8) | 0x80);
            size >>= 7;
        }
        prefix.push(size as u8);
        use std::io::Write;
        enc.write_all(&prefix).unwrap();
        enc.write_all(&record).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..200 {
            enc.write_all(&zeros).unwrap();
        }
        enc.write_all(&[0]).unwrap(); // no headers
        let payload = enc.finish().unwrap();
        let mut b = build_batch(0, NOW, &[(None, Some(b"x"))]);
        b.truncate(HEADER_LEN);
        b.extend_from_slice(&payload);
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        let b = patch(&b, 21, &4i16.to_be_bytes());
        let e = check(&b, &rules()).unwrap_err();
        assert!(
            matches!(&e, Invalid::Corrupt(m) if m.contains("more than")),
            "{e:?}"
        );
    }

    #[test]
    fn a_snappy_block_claiming_gigabytes_is_refused_before_allocating() {
        // A raw snappy block whose length preamble says 2^32-1 bytes.
        let payload = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        let mut b = build_batch(0, NOW, &[(None, Some(b"x"))]);
        b.truncate(HEADER_LEN);
        b.extend_from_slice(&payload);
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        let b = patch(&b, 21, &2i16.to_be_bytes());
        assert!(matches!(check(&b, &rules()), Err(Invalid::Corrupt(_))));
    }

    #[test]
    fn compressed_inner_offsets_must_count_from_zero() {
        for c in [Compression::Gzip, Compression::Zstd] {
            let good = encoded_from(c, &[b"a", b"b"], NOW, 0);
            assert_eq!(check(&good, &rules()), Ok(None), "{c:?}");
            let bad = encoded_from(c, &[b"a", b"b"], NOW, 7);
            assert!(
                matches!(
                    check(&bad, &rules()),
                    Err(Invalid::Record { message, .. }) if message.contains("incremental offsets")
                ),
                "{c:?}: {:?}",
                check(&bad, &rules())
            );
        }
        // Uncompressed batches keep their deltas as sent, as in Kafka.
        let plain = encoded_from(Compression::None, &[b"a", b"b"], NOW, 7);
        assert_eq!(check(&plain, &rules()), Ok(None));
    }

    /// What validation costs per byte: `cargo test --release -p fjord-broker --lib
    /// validation_throughput -- --ignored --nocapture` (a measurement, not a check).
    #[test]
    #[ignore]
    fn validation_throughput() {
        let value = [7u8; 1024];
        let values: Vec<&[u8]> = (0..1000).map(|_| &value[..]).collect();
        for c in [
            Compression::None,
            Compression::Lz4,
            Compression::Zstd,
            Compression::Gzip,
        ] {
            let b = encoded(c, &values, NOW);
            let h = BatchHeader::parse(&b).unwrap();
            let rounds = 200;
            let started = std::time::Instant::now();
            for _ in 0..rounds {
                check_batch(&b, &h, &rules(), 0).unwrap();
            }
            let secs = started.elapsed().as_secs_f64();
            let records = (rounds * values.len()) as f64;
            println!(
                "{c:?}: {:.0} MiB/s of record data, {:.1} ns per 1 KiB record",
                records * 1024.0 / secs / (1 << 20) as f64,
                secs / records * 1e9
            );
        }
    }

    proptest::proptest! {
        /// Arbitrary bytes after a valid header never panic and never pass as a batch they
        /// are not.
        #[test]
        fn arbitrary_record_bytes_never_panic(body in proptest::collection::vec(0u8..=255, 0..300), count in 1i32..5, codec in 0i16..5) {
            let mut b = build_batch(0, NOW, &[(None, Some(b"x"))]);
            b.truncate(HEADER_LEN);
            b.extend_from_slice(&body);
            let len = (b.len() - 12) as i32;
            b[8..12].copy_from_slice(&len.to_be_bytes());
            let mut b = patch(&b, 57, &count.to_be_bytes());
            b = patch(&b, 23, &(count - 1).to_be_bytes());
            b = patch(&b, 21, &codec.to_be_bytes());
            let _ = check(&b, &rules());
        }
    }
}
