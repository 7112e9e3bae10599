//! Partition reassignment as Kafka's controller does it (KIP-455), as pure functions from the
//! image to records. A reassignment to `target` first adds the new replicas (the partition's
//! replicas are the target followed by the replicas leaving); the new replicas fetch from the
//! leader like any follower and join the ISR when caught up; once the whole target is in sync
//! ([`complete_if_caught_up`], checked on every ISR change), the replicas become the target,
//! leaving replicas drop out of the ISR, and a leader that leaves hands over to the target's
//! first in-sync live replica. Brokers delete the logs of replicas they no longer hold when
//! they apply that image. A cancel restores the original replicas.

use kafka_protocol::error::ResponseError;

use super::brokers::{elect, in_order};
use super::image::{MetadataImage, MetadataRecord, PartitionImage};
use super::topics::Refusal;

/// The records that start (or replace, or with `target: None` cancel) the reassignment of one
/// partition, or Kafka's error for it.
pub fn plan_reassignment(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    target: Option<&[i32]>,
    allow_rf_change: bool,
) -> Result<Vec<MetadataRecord>, Refusal> {
    let t = image.topics.get(topic).ok_or_else(|| {
        Refusal::new(
            ResponseError::UnknownTopicOrPartition,
            format!("Unknown topic {topic}"),
        )
    })?;
    let p = t.partitions.get(partition as usize).ok_or_else(|| {
        Refusal::new(
            ResponseError::UnknownTopicOrPartition,
            format!("Unknown partition {topic}-{partition}"),
        )
    })?;
    let original = p.original();
    let next = match target {
        None => {
            if !p.is_reassigning() {
                return Err(Refusal::new(
                    ResponseError::NoReassignmentInProgress,
                    format!("No reassignment is in progress for {topic}-{partition}"),
                ));
            }
            let restored = finish(p, &original, |b| image.is_live(b));
            if restored == *p {
                // No original replica could lead: cancelling would leave nobody in sync.
                return Err(Refusal::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!("Cannot cancel the reassignment of {topic}-{partition}: none of the original replicas {original:?} is live and in sync"),
                ));
            }
            restored
        }
        Some(target) => {
            let mut sorted = target.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            if target.is_empty()
                || sorted.len() != target.len()
                || target.iter().any(|b| !image.brokers.contains_key(b))
            {
                return Err(Refusal::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!("Invalid replica assignment {target:?}: replicas must be distinct registered brokers"),
                ));
            }
            if !allow_rf_change && target.len() != original.len() {
                return Err(Refusal::new(
                    ResponseError::InvalidReplicationFactor,
                    "The replication factor would change and allowReplicationFactorChange is false",
                ));
            }
            if target == original.as_slice() && !p.is_reassigning() {
                return Ok(Vec::new());
            }
            let adding: Vec<i32> = target
                .iter()
                .copied()
                .filter(|b| !original.contains(b))
                .collect();
            let removing: Vec<i32> = original
                .iter()
                .copied()
                .filter(|b| !target.contains(b))
                .collect();
            let mut replicas = target.to_vec();
            replicas.extend(&removing);
            let live = |b: i32| image.is_live(b);
            if adding.is_empty() && removing.is_empty() {
                // Back to the original replicas (a rollback of a reassignment in progress).
                let restored = finish(p, target, live);
                if restored == *p {
                    return Err(Refusal::new(
                        ResponseError::InvalidReplicaAssignment,
                        format!("None of the replicas {target:?} of {topic}-{partition} is live and in sync"),
                    ));
                }
                return Ok(vec![restored.record(t.id, partition)]);
            }
            let started = PartitionImage {
                replicas,
                // Replicas a replaced reassignment was adding and this one drops leave the ISR.
                isr: p
                    .isr
                    .iter()
                    .copied()
                    .filter(|b| target.contains(b) || removing.contains(b))
                    .collect(),
                adding,
                removing,
                partition_epoch: p.partition_epoch + 1,
                ..p.clone()
            };
            // A leader that a replaced reassignment had added and this one drops hands over.
            let mut started = elect(&started, |b| live(b) && started.replicas.contains(&b));
            started.partition_epoch = p.partition_epoch + 1;
            if p.leader >= 0 && started.leader < 0 {
                return Err(Refusal::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!("No replica of {target:?} that is live and in sync could lead {topic}-{partition}"),
                ));
            }
            complete_if_caught_up(&started, live)
        }
    };
    Ok(vec![next.record(t.id, partition)])
}

/// The partition with its reassignment finished when every target replica is in sync:
/// replicas are the target, leaving replicas are out of the ISR, and the leader is a target
/// replica (a new one elected, at a new leader epoch, if the old one left). Unchanged while a
/// target replica still catches up, or when the target has no live in-sync replica to lead.
pub fn complete_if_caught_up(p: &PartitionImage, live: impl Fn(i32) -> bool) -> PartitionImage {
    if !p.is_reassigning() {
        return p.clone();
    }
    let target = p.target();
    if !target.iter().all(|r| p.isr.contains(r)) {
        return p.clone();
    }
    finish(p, &target, live)
}

/// The partition with `replicas` as its replicas and no reassignment: the ISR keeps only
/// them, and a leader outside them hands over (see [`elect`]). Unchanged if none of them is
/// in sync and live (nothing could lead without losing data).
fn finish(p: &PartitionImage, replicas: &[i32], live: impl Fn(i32) -> bool) -> PartitionImage {
    let isr = in_order(replicas, &p.isr);
    if !isr.iter().any(|b| live(*b)) {
        return p.clone();
    }
    let staged = PartitionImage {
        replicas: replicas.to_vec(),
        isr,
        adding: Vec::new(),
        removing: Vec::new(),
        ..p.clone()
    };
    let mut next = elect(&staged, |b| live(b) && replicas.contains(&b));
    next.partition_epoch = p.partition_epoch + 1;
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::brokers::{plan_isr_change, plan_register, IsrChange, Registration};
    use uuid::Uuid;

    /// Four live brokers and topic `t` with one partition on [1, 2, 3] led by 1.
    fn image() -> MetadataImage {
        let mut img = MetadataImage::default();
        for n in 1..=4 {
            let reg = Registration {
                node_id: n,
                host: "h".into(),
                port: n,
                rack: None,
            };
            for r in plan_register(&img, &reg) {
                img.apply(&r);
            }
        }
        let id = Uuid::from_u128(3);
        img.apply(&MetadataRecord::Topic {
            name: "t".into(),
            topic_id: id,
        });
        let p = PartitionImage {
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            leader: 1,
            ..Default::default()
        };
        img.apply(&p.record(id, 0));
        img
    }

    fn apply(img: &mut MetadataImage, records: Vec<MetadataRecord>) {
        for r in &records {
            img.apply(r);
        }
    }

    fn part(img: &MetadataImage) -> PartitionImage {
        img.topics["t"].partitions[0].clone()
    }

    fn join(img: &mut MetadataImage, isr: Vec<i32>) {
        let p = part(img);
        let change = IsrChange {
            topic_id: img.topics["t"].id,
            partition: 0,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr,
        };
        let records = plan_isr_change(img, &change).unwrap();
        apply(img, records);
    }

    #[test]
    fn a_move_adds_first_and_removes_once_the_new_replica_is_in_sync() {
        let mut img = image();
        let r = plan_reassignment(&img, "t", 0, Some(&[4, 2, 3]), false).unwrap();
        apply(&mut img, r);
        let p = part(&img);
        assert_eq!(
            (p.replicas.clone(), p.adding.clone(), p.removing.clone()),
            (vec![4, 2, 3, 1], vec![4], vec![1])
        );
        assert_eq!(
            (p.leader, p.isr.clone()),
            (1, vec![1, 2, 3]),
            "nothing moves before 4 catches up"
        );
        // 4 caught up: the leader adds it, which completes the move; 1 leaves and hands over.
        join(&mut img, vec![1, 2, 3, 4]);
        let p = part(&img);
        assert_eq!(p.replicas, vec![4, 2, 3]);
        assert!(!p.is_reassigning());
        assert_eq!(p.isr, vec![4, 2, 3]);
        assert_eq!((p.leader, p.leader_epoch), (4, 1));
    }

    #[test]
    fn a_rollback_while_an_added_replica_leads_hands_leadership_back() {
        let mut img = image();
        let r = plan_reassignment(&img, "t", 0, Some(&[4, 2, 3]), false).unwrap();
        apply(&mut img, r);
        // 4 is in sync and (say, after an election) leads, before the move completes.
        let mut p = part(&img);
        p.isr = vec![1, 2, 3, 4];
        p.leader = 4;
        p.leader_epoch += 1;
        img.apply(&p.record(img.topics["t"].id, 0));
        let r = plan_reassignment(&img, "t", 0, Some(&[1, 2, 3]), false).unwrap();
        apply(&mut img, r);
        let p = part(&img);
        assert!(!p.is_reassigning());
        assert!([1, 2, 3].contains(&p.leader), "{p:?}");
        assert!(!p.isr.contains(&4) && !p.replicas.contains(&4), "{p:?}");
    }

    #[test]
    fn a_cancel_restores_the_original_replicas() {
        let mut img = image();
        let r = plan_reassignment(&img, "t", 0, Some(&[4, 2, 3]), false).unwrap();
        apply(&mut img, r);
        let r = plan_reassignment(&img, "t", 0, None, false).unwrap();
        apply(&mut img, r);
        // The original replica set, in the order Kafka's revert leaves it (the target's order
        // first), and the leader never moved.
        let p = part(&img);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader),
            (vec![2, 3, 1], vec![2, 3, 1], 1)
        );
        assert!(!p.is_reassigning());
        let e = plan_reassignment(&img, "t", 0, None, false).unwrap_err();
        assert_eq!(e.code, ResponseError::NoReassignmentInProgress.code());
    }

    #[test]
    fn a_reorder_or_a_shrink_completes_at_once_and_bad_targets_are_refused() {
        let mut img = image();
        let r = plan_reassignment(&img, "t", 0, Some(&[2, 3]), true).unwrap();
        apply(&mut img, r);
        let p = part(&img);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader),
            (vec![2, 3], vec![2, 3], 2)
        );
        assert!(plan_reassignment(&img, "t", 0, Some(&[2, 3]), false)
            .unwrap()
            .is_empty());
        for bad in [&[][..], &[2, 2][..], &[9][..]] {
            let e = plan_reassignment(&img, "t", 0, Some(bad), true).unwrap_err();
            assert_eq!(
                e.code,
                ResponseError::InvalidReplicaAssignment.code(),
                "{bad:?}"
            );
        }
        let e = plan_reassignment(&img, "t", 0, Some(&[1, 2, 3]), false).unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidReplicationFactor.code());
    }
}
