//! The controller's decisions about topics, as pure functions from the image to the records
//! that carry them out, or to the Kafka error that refuses them.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use uuid::Uuid;

use super::image::{MetadataImage, MetadataRecord, ResourceType};
use crate::config::validate_topic_value;

/// A refusal: Kafka error code and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: i16,
    pub message: String,
}

impl Refusal {
    pub fn new(e: ResponseError, message: impl Into<String>) -> Self {
        Refusal {
            code: e.code(),
            message: message.into(),
        }
    }
}

/// Kafka's topic name rules: 1..=249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), Refusal> {
    let bad = |why: &str| {
        Err(Refusal::new(
            ResponseError::InvalidTopicException,
            format!("Topic name \"{name}\" is illegal, {why}"),
        ))
    };
    if name.is_empty() {
        return bad("it can't be empty");
    }
    if name == "." || name == ".." {
        return bad("it can't be '.' or '..'");
    }
    if name.len() > 249 {
        return bad("it can't be longer than 249 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return bad("it contains a character other than ASCII alphanumerics, '.', '_' and '-'");
    }
    Ok(())
}

/// What a CreateTopics entry (or an auto-creation) asks for.
pub struct TopicSpec<'a> {
    pub name: &'a str,
    /// -1 for the broker default.
    pub partitions: i32,
    /// -1 for the broker default.
    pub replication_factor: i16,
    /// Manual assignment: partition index -> replicas.
    pub assignments: BTreeMap<i32, Vec<i32>>,
    pub configs: BTreeMap<String, String>,
}

pub struct Defaults {
    pub partitions: i32,
    pub replication_factor: i16,
}

/// Records that create a topic, or why it cannot be created.
pub fn plan_create_topic(
    image: &MetadataImage,
    spec: &TopicSpec<'_>,
    defaults: &Defaults,
) -> Result<(Uuid, Vec<MetadataRecord>), Refusal> {
    validate_topic_name(spec.name)?;
    if image.topics.contains_key(spec.name) {
        return Err(Refusal::new(
            ResponseError::TopicAlreadyExists,
            format!("Topic '{}' already exists.", spec.name),
        ));
    }
    // Kafka refuses names that collide once '.' and '_' are treated alike (metric names).
    let folded = spec.name.replace('.', "_");
    if let Some(other) = image.topics.keys().find(|t| t.replace('.', "_") == folded) {
        return Err(Refusal::new(
            ResponseError::InvalidTopicException,
            format!(
                "Topic '{}' collides with existing topic: {other}",
                spec.name
            ),
        ));
    }
    let brokers: Vec<i32> = image.brokers.keys().copied().collect();
    let live: Vec<i32> = image.live_brokers().map(|b| b.node_id).collect();
    let assignments: Vec<Vec<i32>> = if !spec.assignments.is_empty() {
        if spec.partitions != -1 || spec.replication_factor != -1 {
            return Err(Refusal::new(
                ResponseError::InvalidRequest,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
            ));
        }
        let n = spec.assignments.len() as i32;
        let mut out = Vec::new();
        for i in 0..n {
            let replicas = spec.assignments.get(&i).ok_or_else(|| {
                Refusal::new(
                    ResponseError::InvalidReplicaAssignment,
                    "Partitions must be numbered from 0 without gaps",
                )
            })?;
            check_replicas(replicas, &brokers)?;
            out.push(replicas.clone());
        }
        out
    } else {
        let partitions = if spec.partitions == -1 {
            defaults.partitions
        } else {
            spec.partitions
        };
        let rf = if spec.replication_factor == -1 {
            defaults.replication_factor
        } else {
            spec.replication_factor
        };
        if partitions < 1 {
            return Err(Refusal::new(
                ResponseError::InvalidPartitions,
                "Number of partitions must be larger than 0.",
            ));
        }
        if rf < 1 {
            return Err(Refusal::new(
                ResponseError::InvalidReplicationFactor,
                "Replication factor must be larger than 0.",
            ));
        }
        if rf as usize > live.len() {
            return Err(Refusal::new(
                ResponseError::InvalidReplicationFactor,
                format!("Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {} broker(s) are registered.", live.len()),
            ));
        }
        (0..partitions)
            .map(|p| assign(&live, p, rf as usize))
            .collect()
    };
    for (k, v) in &spec.configs {
        validate_topic_value(k, v).map_err(|m| Refusal::new(ResponseError::InvalidConfig, m))?;
    }
    let id = Uuid::new_v4();
    let mut recs = vec![MetadataRecord::Topic {
        name: spec.name.to_string(),
        topic_id: id,
    }];
    for (p, replicas) in assignments.into_iter().enumerate() {
        recs.push(partition_record(image, id, p as i32, replicas)?);
    }
    for (k, v) in &spec.configs {
        recs.push(MetadataRecord::Config {
            resource_type: ResourceType::Topic,
            resource: spec.name.to_string(),
            key: k.clone(),
            value: Some(v.clone()),
        });
    }
    Ok((id, recs))
}

fn check_replicas(replicas: &[i32], brokers: &[i32]) -> Result<(), Refusal> {
    if replicas.is_empty() {
        return Err(Refusal::new(
            ResponseError::InvalidReplicaAssignment,
            "A partition needs at least one replica",
        ));
    }
    let mut seen = replicas.to_vec();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != replicas.len() {
        return Err(Refusal::new(
            ResponseError::InvalidReplicaAssignment,
            "Duplicate brokers in a replica assignment",
        ));
    }
    if let Some(b) = replicas.iter().find(|b| !brokers.contains(b)) {
        return Err(Refusal::new(
            ResponseError::InvalidReplicaAssignment,
            format!("Broker {b} is not registered"),
        ));
    }
    Ok(())
}

/// Round-robin placement, leaders spread across brokers.
fn assign(brokers: &[i32], partition: i32, rf: usize) -> Vec<i32> {
    (0..rf)
        .map(|r| brokers[(partition as usize + r) % brokers.len()])
        .collect()
}

/// A new partition: its live replicas are in sync (it is empty), and the first of them leads.
/// Kafka refuses a manual assignment whose replicas are all fenced.
fn partition_record(
    image: &MetadataImage,
    topic_id: Uuid,
    partition: i32,
    replicas: Vec<i32>,
) -> Result<MetadataRecord, Refusal> {
    let isr: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|b| image.is_live(*b))
        .collect();
    let Some(&leader) = isr.first() else {
        return Err(Refusal::new(
            ResponseError::InvalidReplicaAssignment,
            format!("All brokers specified in the partition assignment for partition {partition} are fenced or in controlled shutdown."),
        ));
    };
    Ok(MetadataRecord::Partition {
        topic_id,
        partition,
        leader,
        isr,
        replicas,
        leader_epoch: 0,
        partition_epoch: 0,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    })
}

/// Records that grow a topic to `count` partitions.
pub fn plan_create_partitions(
    image: &MetadataImage,
    name: &str,
    count: i32,
    assignments: Option<&[Vec<i32>]>,
) -> Result<Vec<MetadataRecord>, Refusal> {
    let t = image.topics.get(name).ok_or_else(|| {
        Refusal::new(
            ResponseError::UnknownTopicOrPartition,
            format!("This server does not host this topic-partition: {name}"),
        )
    })?;
    let current = t.partitions.len() as i32;
    if count < current {
        return Err(Refusal::new(
            ResponseError::InvalidPartitions,
            format!("Topic currently has {current} partitions, which is higher than the requested {count}."),
        ));
    }
    if count == current {
        return Err(Refusal::new(
            ResponseError::InvalidPartitions,
            format!("Topic already has {current} partitions."),
        ));
    }
    let brokers: Vec<i32> = image.brokers.keys().copied().collect();
    let live: Vec<i32> = image.live_brokers().map(|b| b.node_id).collect();
    let rf = t
        .partitions
        .first()
        .map(|p| p.original().len())
        .unwrap_or(1);
    let mut recs = Vec::new();
    for p in current..count {
        let replicas = match assignments {
            Some(a) => {
                let r = a.get((p - current) as usize).ok_or_else(|| {
                    Refusal::new(
                        ResponseError::InvalidReplicaAssignment,
                        "Too few assignments for the new partitions",
                    )
                })?;
                check_replicas(r, &brokers)?;
                r.clone()
            }
            None if live.is_empty() => {
                return Err(Refusal::new(
                    ResponseError::InvalidReplicationFactor,
                    "No live broker can host the new partitions",
                ))
            }
            None => assign(&live, p, rf.min(live.len())),
        };
        recs.push(partition_record(image, t.id, p, replicas)?);
    }
    Ok(recs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with_broker() -> MetadataImage {
        let mut img = MetadataImage::default();
        img.apply(&MetadataRecord::RegisterBroker {
            node_id: 1,
            host: "localhost".into(),
            port: 9092,
            rack: None,
            epoch: 1,
        });
        img
    }

    fn spec(name: &str, partitions: i32) -> TopicSpec<'_> {
        TopicSpec {
            name,
            partitions,
            replication_factor: -1,
            assignments: BTreeMap::new(),
            configs: BTreeMap::new(),
        }
    }

    const D: Defaults = Defaults {
        partitions: 1,
        replication_factor: 1,
    };

    #[test]
    fn names_follow_kafkas_rules() {
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        for bad in ["", ".", "..", "has space", "슬픔", &"x".repeat(250)] {
            assert_eq!(
                validate_topic_name(bad).unwrap_err().code,
                ResponseError::InvalidTopicException.code()
            );
        }
    }

    #[test]
    fn create_then_create_again_is_already_exists() {
        let mut img = image_with_broker();
        let (_, recs) = plan_create_topic(&img, &spec("t", 3), &D).unwrap();
        for r in &recs {
            img.apply(r);
        }
        assert_eq!(img.topics["t"].partitions.len(), 3);
        let e = plan_create_topic(&img, &spec("t", 3), &D).unwrap_err();
        assert_eq!(e.code, ResponseError::TopicAlreadyExists.code());
        let e = plan_create_topic(&img, &spec("t.", 3), &D);
        assert!(e.is_ok());
    }

    #[test]
    fn replication_factor_above_the_broker_count_is_refused() {
        let img = image_with_broker();
        let mut s = spec("t", 1);
        s.replication_factor = 3;
        let e = plan_create_topic(&img, &s, &D).unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidReplicationFactor.code());
    }

    #[test]
    fn partitions_grow_but_never_shrink() {
        let mut img = image_with_broker();
        let (_, recs) = plan_create_topic(&img, &spec("t", 2), &D).unwrap();
        recs.iter().for_each(|r| img.apply(r));
        let grow = plan_create_partitions(&img, "t", 4, None).unwrap();
        assert_eq!(grow.len(), 2);
        grow.iter().for_each(|r| img.apply(r));
        assert_eq!(img.topics["t"].partitions.len(), 4);
        let e = plan_create_partitions(&img, "t", 3, None).unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidPartitions.code());
    }

    #[test]
    fn bad_topic_config_is_invalid_config() {
        let img = image_with_broker();
        let mut s = spec("t", 1);
        s.configs.insert("retention.ms".into(), "forever".into());
        let e = plan_create_topic(&img, &s, &D).unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidConfig.code());
    }
}
