//! Replication throttles (KIP-73), as `kafka-reassign-partitions.sh --execute --throttle`
//! sets them and `--verify` clears them:
//!
//! - the dynamic broker configs `leader.replication.throttled.rate` and
//!   `follower.replication.throttled.rate` (bytes per second) cap what this node sends to, and
//!   fetches as, a replica of a throttled partition;
//! - the topic configs `leader.replication.throttled.replicas` and
//!   `follower.replication.throttled.replicas` (`partition:broker,...` or `*`) name the
//!   partitions throttled on which broker (an entry applies on the broker it names).
//!
//! As in Kafka, only a replica outside the ISR is throttled (one catching up, a reassignment's
//! new replica): an in-sync follower is never held back, so `acks=all` latency is untouched.
//! A leader holds back the records of a throttled partition while its byte rate over the last
//! window is above the limit, and a follower leaves such partitions out of its fetches; both
//! measure the rate as Kafka's `ReplicationQuotaManager` does (eleven one-second samples, at
//! least ten seconds of window).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use super::TopicPartition;
use crate::metadata::MetadataImage;

pub const LEADER_RATE: &str = "leader.replication.throttled.rate";
pub const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";
pub const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
pub const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";

/// Kafka's `replication.quota.window.num` and `.size.seconds`.
const SAMPLES: u64 = 11;

/// A byte rate over a sliding window of one-second samples.
#[derive(Debug)]
pub struct Quota {
    start: Instant,
    /// (second since `start`, bytes in that second), oldest first.
    samples: Mutex<VecDeque<(u64, u64)>>,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            start: Instant::now(),
            samples: Mutex::new(VecDeque::new()),
        }
    }
}

impl Quota {
    fn now(&self) -> u64 {
        self.start.elapsed().as_secs()
    }

    pub fn record(&self, bytes: u64) {
        self.record_at(self.now(), bytes);
    }

    fn record_at(&self, second: u64, bytes: u64) {
        let mut samples = self.samples.lock();
        match samples.back_mut() {
            Some((s, b)) if *s == second => *b += bytes,
            _ => samples.push_back((second, bytes)),
        }
        while samples.front().is_some_and(|(s, _)| *s + SAMPLES <= second) {
            samples.pop_front();
        }
    }

    /// Whether the rate over the window is above `limit` bytes per second.
    pub fn exceeded(&self, limit: u64) -> bool {
        self.exceeded_at(self.now(), limit)
    }

    fn exceeded_at(&self, second: u64, limit: u64) -> bool {
        let samples = self.samples.lock();
        let live = samples.iter().filter(|(s, _)| *s + SAMPLES > second);
        let (oldest, bytes) = live.fold((second, 0u64), |(o, b), (s, n)| (o.min(*s), b + n));
        // Kafka's `Rate`: the elapsed window, but never less than all samples but one.
        let window = (second - oldest + 1).max(SAMPLES - 1);
        bytes > limit.saturating_mul(window)
    }
}

/// Which partitions of a topic a throttled-replicas list names for this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Throttled {
    All,
    Partitions(HashSet<i32>),
}

/// Parses `partition:broker,...` or `*`, keeping the partitions listed for `node`. None when
/// nothing applies here.
fn parse_replicas(value: &str, node: i32) -> Option<Throttled> {
    let value = value.trim();
    if value == "*" {
        return Some(Throttled::All);
    }
    let partitions: HashSet<i32> = value
        .split(',')
        .filter_map(|item| {
            let (p, b) = item.trim().split_once(':')?;
            (b.trim().parse::<i32>().ok()? == node).then_some(p.trim().parse().ok()?)
        })
        .collect();
    (!partitions.is_empty()).then_some(Throttled::Partitions(partitions))
}

/// Whether `value` is a valid throttled-replicas list (`*`, empty, or `partition:broker`
/// pairs), as Kafka's `ThrottledReplicaListValidator` checks.
pub fn valid_replica_list(value: &str) -> bool {
    let value = value.trim();
    value.is_empty()
        || value == "*"
        || value.split(',').all(|item| {
            item.trim().split_once(':').is_some_and(|(p, b)| {
                p.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok()
            })
        })
}

#[derive(Debug, Default)]
struct Rules {
    leader_rate: Option<u64>,
    follower_rate: Option<u64>,
    leader: HashMap<String, Throttled>,
    follower: HashMap<String, Throttled>,
}

impl Rules {
    fn matches(side: &HashMap<String, Throttled>, tp: &TopicPartition) -> bool {
        match side.get(&tp.topic) {
            Some(Throttled::All) => true,
            Some(Throttled::Partitions(ps)) => ps.contains(&tp.partition),
            None => false,
        }
    }
}

/// This node's replication throttles: the rules from the newest image, and the two quotas.
#[derive(Debug)]
pub struct Throttles {
    node: i32,
    /// The static `server.properties` rates, used where no dynamic config is set.
    static_rates: (Option<u64>, Option<u64>),
    rules: RwLock<Rules>,
    leader: Quota,
    follower: Quota,
}

/// A rate setting: a positive byte count below `Long.MAX_VALUE` (Kafka's "unlimited").
fn rate(value: Option<&String>) -> Option<u64> {
    value
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|&r| (0..i64::MAX).contains(&r))
        .map(|r| r as u64)
}

impl Throttles {
    pub fn new(node: i32, raw: &std::collections::BTreeMap<String, String>) -> Self {
        Throttles {
            node,
            static_rates: (rate(raw.get(LEADER_RATE)), rate(raw.get(FOLLOWER_RATE))),
            rules: RwLock::default(),
            leader: Quota::default(),
            follower: Quota::default(),
        }
    }

    /// Takes the rates and throttled replicas from `image`.
    pub fn update(&self, image: &MetadataImage) {
        let mut rules = Rules {
            leader_rate: rate(image.dynamic_broker_value(self.node, LEADER_RATE))
                .or(self.static_rates.0),
            follower_rate: rate(image.dynamic_broker_value(self.node, FOLLOWER_RATE))
                .or(self.static_rates.1),
            ..Rules::default()
        };
        for (name, t) in &image.topics {
            for (key, side) in [
                (LEADER_REPLICAS, &mut rules.leader),
                (FOLLOWER_REPLICAS, &mut rules.follower),
            ] {
                if let Some(th) = t
                    .configs
                    .get(key)
                    .and_then(|v| parse_replicas(v, self.node))
                {
                    side.insert(name.clone(), th);
                }
            }
        }
        *self.rules.write() = rules;
    }

    /// Leader side: whether records of `tp` are held back from a follower outside the ISR.
    pub fn leader_holds(&self, tp: &TopicPartition) -> bool {
        let rules = self.rules.read();
        rules
            .leader_rate
            .is_some_and(|limit| Rules::matches(&rules.leader, tp) && self.leader.exceeded(limit))
    }

    /// Leader side: `bytes` of `tp` went to a follower outside the ISR.
    pub fn leader_sent(&self, tp: &TopicPartition, bytes: u64) {
        let rules = self.rules.read();
        if rules.leader_rate.is_some() && Rules::matches(&rules.leader, tp) {
            self.leader.record(bytes);
        }
    }

    /// Follower side: whether this node leaves `tp` (not in its ISR) out of its next fetch.
    pub fn follower_holds(&self, tp: &TopicPartition) -> bool {
        let rules = self.rules.read();
        rules.follower_rate.is_some_and(|limit| {
            Rules::matches(&rules.follower, tp) && self.follower.exceeded(limit)
        })
    }

    /// Follower side: `bytes` of `tp` arrived while this node was outside its ISR.
    pub fn follower_got(&self, tp: &TopicPartition, bytes: u64) {
        let rules = self.rules.read();
        if rules.follower_rate.is_some() && Rules::matches(&rules.follower, tp) {
            self.follower.record(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_measured_over_at_least_ten_seconds() {
        let q = Quota::default();
        q.record_at(0, 1000);
        // 1000 bytes over a 10 s window: 100 B/s.
        assert!(q.exceeded_at(0, 99));
        assert!(!q.exceeded_at(0, 100));
        // Later the window is the time since the sample (1000 B over 11 s), until it ages out.
        assert!(q.exceeded_at(10, 90) && !q.exceeded_at(10, 91));
        assert!(!q.exceeded_at(11, 0));
        q.record_at(20, 10);
        q.record_at(25, 10);
        assert!(q.exceeded_at(25, 1) && !q.exceeded_at(25, 2));
    }

    #[test]
    fn replica_lists_apply_on_the_broker_they_name() {
        assert_eq!(parse_replicas("*", 3), Some(Throttled::All));
        assert_eq!(
            parse_replicas("0:1,0:3,1:3,2:2", 3),
            Some(Throttled::Partitions(HashSet::from([0, 1])))
        );
        assert_eq!(parse_replicas("0:1", 3), None);
        assert_eq!(parse_replicas("", 3), None);
        assert!(
            valid_replica_list("0:1, 1:2") && valid_replica_list("*") && valid_replica_list("")
        );
        assert!(
            !valid_replica_list("0-1")
                && !valid_replica_list("a:1")
                && !valid_replica_list("*,0:1")
        );
    }

    #[test]
    fn only_a_configured_rate_and_a_listed_partition_are_held() {
        let mut image = MetadataImage::default();
        let t = Throttles::new(3, &Default::default());
        let tp = TopicPartition::new("t", 0);
        t.update(&image);
        t.leader_sent(&tp, 1 << 30);
        assert!(!t.leader_holds(&tp), "no rate, no throttle");
        image.apply(&crate::metadata::MetadataRecord::Config {
            resource_type: crate::metadata::ResourceType::Broker,
            resource: "3".into(),
            key: LEADER_RATE.into(),
            value: Some("10".into()),
        });
        image.apply(&crate::metadata::MetadataRecord::Topic {
            name: "t".into(),
            topic_id: uuid::Uuid::new_v4(),
        });
        image.apply(&crate::metadata::MetadataRecord::Config {
            resource_type: crate::metadata::ResourceType::Topic,
            resource: "t".into(),
            key: LEADER_REPLICAS.into(),
            value: Some("0:3".into()),
        });
        t.update(&image);
        assert!(!t.leader_holds(&tp), "nothing sent yet");
        t.leader_sent(&tp, 1000);
        assert!(t.leader_holds(&tp));
        assert!(!t.leader_holds(&TopicPartition::new("t", 1)));
        assert!(!t.follower_holds(&tp));
    }
}
