//! Per-partition wake-ups for requests that wait: fetches waiting for `min.bytes` and produces
//! waiting for `acks=all` (Kafka's purgatories). A waiter registers one `Notify` on each
//! partition it waits for, then reads, then awaits; a change on any of them wakes it. Because
//! `Notify::notify_one` keeps a permit when nobody is awaiting yet, a change between the read and
//! the await is never missed. Only the partitions a request names wake it: an append to one
//! partition no longer wakes every waiting fetch in the broker.
//!
//! Registrations are weak, so a request that ends (answered, timed out or dropped with its
//! connection) needs no deregistration; dead entries are pruned whenever the list is touched,
//! which bounds each list by the waiters alive at that moment.

use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::Notify;

/// What a waiter waits for on a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The high watermark moved, or leadership changed: consumers and `acks=all` producers.
    HighWatermark,
    /// The log end moved, or leadership changed: followers fetching to replicate.
    LogEnd,
}

#[derive(Default)]
pub struct Watchers {
    high_watermark: Mutex<Vec<Weak<Notify>>>,
    log_end: Mutex<Vec<Weak<Notify>>>,
}

impl Watchers {
    pub fn register(&self, event: Event, waiter: &Arc<Notify>) {
        let mut list = self.list(event).lock();
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(waiter));
    }

    /// Wakes every live waiter for `event`.
    pub fn wake(&self, event: Event) {
        let mut list = self.list(event).lock();
        list.retain(|w| match w.upgrade() {
            Some(n) => {
                n.notify_one();
                true
            }
            None => false,
        });
    }

    /// Leadership changed: every waiter re-checks (a produce ends with NOT_LEADER_OR_FOLLOWER).
    pub fn wake_all(&self) {
        self.wake(Event::HighWatermark);
        self.wake(Event::LogEnd);
    }

    fn list(&self, event: Event) -> &Mutex<Vec<Weak<Notify>>> {
        match event {
            Event::HighWatermark => &self.high_watermark,
            Event::LogEnd => &self.log_end,
        }
    }

    #[cfg(test)]
    fn len(&self, event: Event) -> usize {
        self.list(event).lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_wake_before_the_await_is_not_lost() {
        let w = Watchers::default();
        let n = Arc::new(Notify::new());
        w.register(Event::HighWatermark, &n);
        w.wake(Event::HighWatermark);
        tokio::time::timeout(Duration::from_secs(5), n.notified())
            .await
            .expect("the permit stored by the wake");
    }

    #[tokio::test]
    async fn a_waiter_is_woken_only_by_its_own_event_and_partition() {
        let (a, b) = (Watchers::default(), Watchers::default());
        let n = Arc::new(Notify::new());
        a.register(Event::HighWatermark, &n);
        b.wake(Event::HighWatermark);
        a.wake(Event::LogEnd);
        // No permit was stored, so the wait can only end by the timeout.
        let waited = tokio::time::timeout(Duration::from_millis(50), n.notified()).await;
        assert!(waited.is_err(), "woken by another partition or event");
    }

    #[test]
    fn ended_waiters_are_pruned() {
        let w = Watchers::default();
        for _ in 0..100 {
            let n = Arc::new(Notify::new());
            w.register(Event::LogEnd, &n);
        }
        assert_eq!(w.len(Event::LogEnd), 1);
        let alive = Arc::new(Notify::new());
        w.register(Event::LogEnd, &alive);
        w.wake(Event::LogEnd);
        assert_eq!(w.len(Event::LogEnd), 1);
    }
}
