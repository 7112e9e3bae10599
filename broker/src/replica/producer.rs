//! Idempotent producer state per partition (KIP-98): for each producer id, its epoch and the
//! sequence ranges of its last five batches, so that a retried batch is acknowledged with its
//! original offset instead of being appended twice, and a gap in sequences is refused.

use std::collections::{HashMap, VecDeque};

use crate::log::BatchHeader;

/// Kafka's `max.in.flight.requests.per.connection` ceiling for idempotence.
const CACHED_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CachedBatch {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
}

#[derive(Debug, Clone, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<CachedBatch>,
}

/// What to do with a batch from an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    Append,
    /// Already in the log at this base offset: acknowledge, do not append.
    Duplicate {
        base_offset: i64,
    },
    OutOfOrder {
        expected: i32,
    },
    /// The producer has been superseded by a newer epoch.
    Fenced,
    /// A non-zero first sequence from a producer this partition does not know.
    UnknownProducer,
}

#[derive(Debug, Default)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
}

fn next_seq(s: i32) -> i32 {
    if s == i32::MAX {
        0
    } else {
        s + 1
    }
}

impl ProducerStateTable {
    pub fn check(&self, h: &BatchHeader) -> SequenceCheck {
        if !h.has_producer_id() || h.base_sequence < 0 {
            return SequenceCheck::Append;
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            return if h.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::UnknownProducer
            };
        };
        if h.producer_epoch < entry.epoch {
            return SequenceCheck::Fenced;
        }
        if h.producer_epoch > entry.epoch {
            return if h.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder { expected: 0 }
            };
        }
        if let Some(b) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == h.last_sequence())
        {
            return SequenceCheck::Duplicate {
                base_offset: b.base_offset,
            };
        }
        let expected = entry
            .batches
            .back()
            .map(|b| next_seq(b.last_seq))
            .unwrap_or(0);
        if h.base_sequence == expected {
            SequenceCheck::Append
        } else {
            SequenceCheck::OutOfOrder { expected }
        }
    }

    /// A copy of the state of the producers of `batches` alone, to check a request's batches
    /// one after another before any is appended.
    pub fn scratch<'a>(&self, batches: impl Iterator<Item = &'a BatchHeader>) -> Self {
        let mut out = ProducerStateTable::default();
        for h in batches {
            if let Some(e) = self.producers.get(&h.producer_id) {
                out.producers.insert(h.producer_id, e.clone());
            }
        }
        out
    }

    /// Records a batch that was appended at `base_offset` (also used to rebuild from the log).
    pub fn record(&mut self, h: &BatchHeader, base_offset: i64) {
        if !h.has_producer_id() || h.base_sequence < 0 {
            return;
        }
        let entry = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(CachedBatch {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset,
        });
        while entry.batches.len() > CACHED_BATCHES {
            entry.batches.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::build_batch;

    fn header(pid: i64, epoch: i16, seq: i32, n: usize) -> BatchHeader {
        let recs: Vec<crate::log::batch::KeyValue<'_>> =
            (0..n).map(|_| (None, Some(&b"v"[..]))).collect();
        let mut h = BatchHeader::parse(&build_batch(0, 1, &recs)).unwrap();
        h.producer_id = pid;
        h.producer_epoch = epoch;
        h.base_sequence = seq;
        h
    }

    #[test]
    fn in_order_batches_append_and_a_retry_is_a_duplicate() {
        let mut t = ProducerStateTable::default();
        let a = header(7, 0, 0, 3);
        assert_eq!(t.check(&a), SequenceCheck::Append);
        t.record(&a, 100);
        let b = header(7, 0, 3, 2);
        assert_eq!(t.check(&b), SequenceCheck::Append);
        t.record(&b, 103);
        assert_eq!(t.check(&a), SequenceCheck::Duplicate { base_offset: 100 });
        assert_eq!(t.check(&b), SequenceCheck::Duplicate { base_offset: 103 });
    }

    #[test]
    fn a_gap_is_out_of_order_and_an_old_epoch_is_fenced() {
        let mut t = ProducerStateTable::default();
        let a = header(7, 1, 0, 1);
        t.record(&a, 0);
        assert_eq!(
            t.check(&header(7, 1, 5, 1)),
            SequenceCheck::OutOfOrder { expected: 1 }
        );
        assert_eq!(t.check(&header(7, 0, 1, 1)), SequenceCheck::Fenced);
        assert_eq!(t.check(&header(7, 2, 0, 1)), SequenceCheck::Append);
        assert_eq!(t.check(&header(8, 0, 4, 1)), SequenceCheck::UnknownProducer);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut t = ProducerStateTable::default();
        for i in 0..7 {
            t.record(&header(1, 0, i, 1), i as i64);
        }
        assert!(matches!(
            t.check(&header(1, 0, 6, 1)),
            SequenceCheck::Duplicate { .. }
        ));
        assert!(matches!(
            t.check(&header(1, 0, 0, 1)),
            SequenceCheck::OutOfOrder { .. }
        ));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut t = ProducerStateTable::default();
        t.record(&header(1, 0, i32::MAX, 1), 0);
        assert_eq!(t.check(&header(1, 0, 0, 1)), SequenceCheck::Append);
    }
}
