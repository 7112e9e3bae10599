//! Metadata records and the in-memory image they build.
//!
//! The image is a pure function of the ordered record log: replaying the same records gives
//! the same image on every broker. That is what lets a Raft quorum replace the single-node log
//! underneath without touching the readers.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One entry of the metadata log (the KRaft record types Fjord needs so far).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// A broker (re)starting: `epoch` is new for every start (Kafka's broker epoch), and a
    /// registered broker is unfenced until the controller stops hearing from it.
    RegisterBroker {
        node_id: i32,
        host: String,
        port: i32,
        rack: Option<String>,
        #[serde(default)]
        epoch: i64,
    },
    /// The active controller fenced a broker it stopped hearing from, or a broker shutting
    /// down fenced itself (Kafka's FenceBrokerRecord); `fenced: false` unfences it again.
    BrokerFenced {
        node_id: i32,
        fenced: bool,
    },
    Topic {
        name: String,
        topic_id: Uuid,
    },
    Partition {
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        leader: i32,
        leader_epoch: i32,
        /// Bumped by every change to the partition (ISR included), as Kafka's partition epoch:
        /// an ISR change planned on an older one is refused.
        #[serde(default)]
        partition_epoch: i32,
        /// A reassignment in progress: replicas joining and leaving (`replicas` holds both).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        adding_replicas: Vec<i32>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        removing_replicas: Vec<i32>,
    },
    RemoveTopic {
        topic_id: Uuid,
    },
    /// A dynamic config entry; `value: None` deletes it. `resource` is a topic name for
    /// topics, and for brokers the node id or "" for the cluster-wide default.
    Config {
        resource_type: ResourceType,
        resource: String,
        key: String,
        value: Option<String>,
    },
    /// Producer ids below `next` have been handed out.
    ProducerIds {
        next: i64,
    },
    /// The cluster's id, committed by the first node to start (Kafka's `kafka-storage.sh
    /// format -t` writes it into every node's directory instead). Only the first one counts.
    ClusterId {
        id: String,
    },
}

impl MetadataRecord {
    /// The metadata feature level that introduced this record: a command carries the highest
    /// of its records', so a node of an older build replays every command made only of records
    /// it knows (see [`crate::quorum`]'s `SUPPORTED_COMMAND_VERSION`).
    pub fn feature_level(&self) -> u16 {
        match self {
            MetadataRecord::ClusterId { .. } => 3,
            _ => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ResourceType {
    Topic,
    Broker,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionImage {
    /// During a reassignment: the target replicas, then those being removed.
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// Replicas a reassignment adds (not yet all in sync) and removes.
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

impl PartitionImage {
    /// The record that sets partition `partition` of topic `topic_id` to this.
    pub fn record(&self, topic_id: Uuid, partition: i32) -> MetadataRecord {
        MetadataRecord::Partition {
            topic_id,
            partition,
            replicas: self.replicas.clone(),
            isr: self.isr.clone(),
            leader: self.leader,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            adding_replicas: self.adding.clone(),
            removing_replicas: self.removing.clone(),
        }
    }

    pub fn is_reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas a reassignment in progress leads to (the replicas when there is none).
    pub fn target(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing.contains(r))
            .collect()
    }

    /// The replicas before a reassignment in progress (the replicas when there is none).
    pub fn original(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.adding.contains(r))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<PartitionImage>,
    pub configs: BTreeMap<String, String>,
}

/// The topics the broker's coordinators write (Kafka's `Topic.INTERNAL_TOPICS`).
pub fn is_internal_topic(name: &str) -> bool {
    matches!(
        name,
        "__consumer_offsets" | "__transaction_state" | "__share_group_state"
    )
}

impl TopicImage {
    /// Kafka's `Topic.isInternal`: the coordinators' own topics. Clients cannot produce to
    /// them or delete them; a user topic that merely starts with `__` is not internal.
    pub fn is_internal(&self) -> bool {
        is_internal_topic(&self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerImage {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    pub epoch: i64,
    /// Fenced brokers lead nothing and are in no ISR (but the last member of one).
    pub fenced: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataImage {
    pub topics: BTreeMap<String, TopicImage>,
    pub topic_ids: HashMap<Uuid, String>,
    pub brokers: BTreeMap<i32, BrokerImage>,
    /// Dynamic broker configs: "" is the cluster default, otherwise a node id.
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    pub next_producer_id: i64,
    /// The id every node of the cluster reports (`None` until the first node commits one).
    pub cluster_id: Option<String>,
    /// How many records have been applied.
    pub applied: u64,
}

impl MetadataImage {
    pub fn apply(&mut self, rec: &MetadataRecord) {
        self.applied += 1;
        match rec {
            MetadataRecord::RegisterBroker {
                node_id,
                host,
                port,
                rack,
                epoch,
            } => {
                self.brokers.insert(
                    *node_id,
                    BrokerImage {
                        node_id: *node_id,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        epoch: *epoch,
                        fenced: false,
                    },
                );
            }
            MetadataRecord::BrokerFenced { node_id, fenced } => {
                if let Some(b) = self.brokers.get_mut(node_id) {
                    b.fenced = *fenced;
                }
            }
            MetadataRecord::Topic { name, topic_id } => {
                self.topic_ids.insert(*topic_id, name.clone());
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        name: name.clone(),
                        id: *topic_id,
                        partitions: Vec::new(),
                        configs: BTreeMap::new(),
                    },
                );
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
                adding_replicas,
                removing_replicas,
            } => {
                let Some(t) = self
                    .topic_ids
                    .get(topic_id)
                    .and_then(|n| self.topics.get_mut(n))
                else {
                    return;
                };
                let p = PartitionImage {
                    replicas: replicas.clone(),
                    isr: isr.clone(),
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                    adding: adding_replicas.clone(),
                    removing: removing_replicas.clone(),
                };
                let i = *partition as usize;
                if i < t.partitions.len() {
                    t.partitions[i] = p;
                } else if i == t.partitions.len() {
                    t.partitions.push(p);
                }
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                if let Some(name) = self.topic_ids.remove(topic_id) {
                    self.topics.remove(&name);
                }
            }
            MetadataRecord::Config {
                resource_type,
                resource,
                key,
                value,
            } => {
                let map = match resource_type {
                    ResourceType::Topic => match self.topics.get_mut(resource) {
                        Some(t) => &mut t.configs,
                        None => return,
                    },
                    ResourceType::Broker => {
                        self.broker_configs.entry(resource.clone()).or_default()
                    }
                };
                match value {
                    Some(v) => {
                        map.insert(key.clone(), v.clone());
                    }
                    None => {
                        map.remove(key);
                    }
                }
            }
            MetadataRecord::ProducerIds { next } => {
                self.next_producer_id = self.next_producer_id.max(*next);
            }
            MetadataRecord::ClusterId { id } => {
                if self.cluster_id.is_none() {
                    self.cluster_id = Some(id.clone());
                }
            }
        }
    }

    /// Records that rebuild this image when applied to an empty one (a checkpoint's content);
    /// only [`Self::applied`] differs, as it counts the records of the original history.
    /// Assumes what the planners guarantee: a topic name belongs to one topic id at a time
    /// (CreateTopics refuses an existing name), so `topic_ids` mirrors `topics`.
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut out = Vec::new();
        if let Some(id) = &self.cluster_id {
            out.push(MetadataRecord::ClusterId { id: id.clone() });
        }
        for b in self.brokers.values() {
            out.push(MetadataRecord::RegisterBroker {
                node_id: b.node_id,
                host: b.host.clone(),
                port: b.port,
                rack: b.rack.clone(),
                epoch: b.epoch,
            });
            if b.fenced {
                out.push(MetadataRecord::BrokerFenced {
                    node_id: b.node_id,
                    fenced: true,
                });
            }
        }
        for (resource, configs) in &self.broker_configs {
            if configs.is_empty() {
                // Deleting an absent key leaves an empty entry behind; so does replaying this.
                out.push(MetadataRecord::Config {
                    resource_type: ResourceType::Broker,
                    resource: resource.clone(),
                    key: String::new(),
                    value: None,
                });
            }
            for (key, value) in configs {
                out.push(MetadataRecord::Config {
                    resource_type: ResourceType::Broker,
                    resource: resource.clone(),
                    key: key.clone(),
                    value: Some(value.clone()),
                });
            }
        }
        for t in self.topics.values() {
            out.push(MetadataRecord::Topic {
                name: t.name.clone(),
                topic_id: t.id,
            });
            for (i, p) in t.partitions.iter().enumerate() {
                out.push(p.record(t.id, i as i32));
            }
            for (key, value) in &t.configs {
                out.push(MetadataRecord::Config {
                    resource_type: ResourceType::Topic,
                    resource: t.name.clone(),
                    key: key.clone(),
                    value: Some(value.clone()),
                });
            }
        }
        if self.next_producer_id != 0 {
            out.push(MetadataRecord::ProducerIds {
                next: self.next_producer_id,
            });
        }
        out
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicImage> {
        self.topic_ids.get(id).and_then(|n| self.topics.get(n))
    }

    /// Registered brokers that are not fenced: where leaders and new replicas may go.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerImage> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    pub fn is_live(&self, node: i32) -> bool {
        self.brokers.get(&node).is_some_and(|b| !b.fenced)
    }

    /// A dynamic broker value for `node` (node-specific first, then the cluster default).
    pub fn dynamic_broker_value(&self, node: i32, key: &str) -> Option<&String> {
        self.broker_configs
            .get(&node.to_string())
            .and_then(|m| m.get(key))
            .or_else(|| self.broker_configs.get("").and_then(|m| m.get(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaying_records_builds_topics_and_removal_forgets_them() {
        let id = Uuid::new_v4();
        let recs = vec![
            MetadataRecord::Topic {
                name: "t".into(),
                topic_id: id,
            },
            MetadataRecord::Partition {
                topic_id: id,
                partition: 0,
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            },
            MetadataRecord::Config {
                resource_type: ResourceType::Topic,
                resource: "t".into(),
                key: "retention.ms".into(),
                value: Some("1000".into()),
            },
        ];
        let mut img = MetadataImage::default();
        for r in &recs {
            img.apply(r);
        }
        assert_eq!(img.topics["t"].partitions.len(), 1);
        assert_eq!(img.topics["t"].configs["retention.ms"], "1000");
        let json = serde_json::to_string(&recs[0]).unwrap();
        assert_eq!(
            serde_json::from_str::<MetadataRecord>(&json).unwrap(),
            recs[0]
        );
        img.apply(&MetadataRecord::RemoveTopic { topic_id: id });
        assert!(img.topics.is_empty() && img.topic_ids.is_empty());
    }

    fn record() -> impl proptest::strategy::Strategy<Value = MetadataRecord> {
        use proptest::prelude::*;
        let id = (0u128..4).prop_map(Uuid::from_u128);
        // One name per id, as the planners guarantee (see `to_records`).
        let topic = (0u128..4).prop_map(|i| (format!("t{i}"), Uuid::from_u128(i)));
        let ids = proptest::collection::vec(0i32..4, 0..3);
        prop_oneof![
            (
                0i32..3,
                "h[a-c]",
                1i32..10,
                proptest::option::of("r[ab]"),
                0i64..9
            )
                .prop_map(|(node_id, host, port, rack, epoch)| {
                    MetadataRecord::RegisterBroker {
                        node_id,
                        host,
                        port,
                        rack,
                        epoch,
                    }
                }),
            (0i32..4, proptest::bool::ANY)
                .prop_map(|(node_id, fenced)| MetadataRecord::BrokerFenced { node_id, fenced }),
            topic.prop_map(|(name, topic_id)| MetadataRecord::Topic { name, topic_id }),
            (
                (id.clone(), 0i32..3, ids.clone(), ids.clone(), -1i32..3),
                (0i32..5, 0i32..5, ids.clone(), ids)
            )
                .prop_map(
                    |(
                        (topic_id, partition, replicas, isr, leader),
                        (leader_epoch, partition_epoch, adding_replicas, removing_replicas),
                    )| {
                        MetadataRecord::Partition {
                            topic_id,
                            partition,
                            replicas,
                            isr,
                            leader,
                            leader_epoch,
                            partition_epoch,
                            adding_replicas,
                            removing_replicas,
                        }
                    },
                ),
            id.prop_map(|topic_id| MetadataRecord::RemoveTopic { topic_id }),
            (
                prop_oneof![Just(ResourceType::Topic), Just(ResourceType::Broker)],
                prop_oneof![Just(String::new()), "t[0-3]", "[0-2]"],
                "k[ab]",
                proptest::option::of("v[ab]"),
            )
                .prop_map(|(resource_type, resource, key, value)| {
                    MetadataRecord::Config {
                        resource_type,
                        resource,
                        key,
                        value,
                    }
                }),
            (0i64..100).prop_map(|next| MetadataRecord::ProducerIds { next }),
            "c[ab]".prop_map(|id| MetadataRecord::ClusterId { id }),
        ]
    }

    proptest::proptest! {
        /// A checkpoint stores `to_records()`: replaying them must give back the same image.
        #[test]
        fn replaying_to_records_rebuilds_an_equal_image(
            history in proptest::collection::vec(record(), 0..40),
        ) {
            let mut img = MetadataImage::default();
            for r in &history {
                img.apply(r);
            }
            let mut rebuilt = MetadataImage::default();
            for r in img.to_records() {
                rebuilt.apply(&r);
            }
            rebuilt.applied = img.applied;
            proptest::prop_assert_eq!(rebuilt, img);
        }
    }
}
