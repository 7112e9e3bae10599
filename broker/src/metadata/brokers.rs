//! The controller's decisions about brokers and the partitions they lead, as pure functions
//! from the image to the records that carry them out: registration, fencing (a broker the
//! controller stopped hearing from, or one shutting down), unfencing, and ISR changes a
//! partition leader asks for (Kafka's AlterPartition).
//!
//! Every change of leader or ISR goes through [`elect`]: the ISR keeps only live brokers (but
//! never becomes empty: the last member stays, as Kafka keeps it, so that it can lead again
//! when it comes back), the leader stays if it is live and in the ISR, otherwise the first
//! live ISR member in replica order leads, and with none the partition is offline (leader
//! -1). Unclean election (`unclean.leader.election.enable`) is never done here.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use uuid::Uuid;

use super::image::{MetadataImage, MetadataRecord, PartitionImage};
use super::topics::Refusal;

/// Where a broker is reached and where it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// The partition after an election among the live brokers `live`: the ISR without dead
/// members (unless that empties it), and a leader from it. The leader epoch moves when the
/// leader changes, the partition epoch on any change.
pub(super) fn elect(p: &PartitionImage, live: impl Fn(i32) -> bool) -> PartitionImage {
    let mut isr: Vec<i32> = p.isr.iter().copied().filter(|b| live(*b)).collect();
    if isr.is_empty() {
        isr = p.isr.clone();
    }
    let leader = if p.leader >= 0 && live(p.leader) && isr.contains(&p.leader) {
        p.leader
    } else {
        p.replicas
            .iter()
            .copied()
            .find(|r| live(*r) && isr.contains(r))
            .unwrap_or(-1)
    };
    let mut next = PartitionImage {
        isr,
        leader,
        ..p.clone()
    };
    if next.leader != p.leader {
        next.leader_epoch += 1;
    }
    if next != *p {
        next.partition_epoch += 1;
    }
    next
}

fn partition_record(topic_id: Uuid, partition: usize, p: PartitionImage) -> MetadataRecord {
    p.record(topic_id, partition as i32)
}

/// The partition records that `change` makes (only the partitions it changes).
fn changed_partitions(
    image: &MetadataImage,
    mut change: impl FnMut(&PartitionImage) -> PartitionImage,
) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for t in image.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            let next = change(p);
            if next != *p {
                out.push(partition_record(t.id, i, next));
            }
        }
    }
    out
}

/// A broker process starting: a new broker epoch, unfenced. Its previous incarnation is
/// fenced first (it may have lost what it had not flushed, so it leaves every ISR that has
/// another live member and gives up leadership to one); then it leads the partitions that
/// had no live ISR member but it. A broker whose incarnation led a partition alone keeps
/// leading it at a new leader epoch, so that followers check their logs against it again.
pub fn plan_register(image: &MetadataImage, reg: &Registration) -> Vec<MetadataRecord> {
    let node = reg.node_id;
    let epoch = image.applied as i64 + 1;
    let mut out = vec![MetadataRecord::RegisterBroker {
        node_id: node,
        host: reg.host.clone(),
        port: reg.port,
        rack: reg.rack.clone(),
        epoch,
    }];
    out.extend(changed_partitions(image, |p| {
        let fenced = elect(p, |b| b != node && image.is_live(b));
        let back = elect(&fenced, |b| b == node || image.is_live(b));
        // One step as far as epochs go: the leader epoch moves once if the leader changed or
        // is the new incarnation.
        let mut next = PartitionImage {
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            ..back
        };
        if next.leader != p.leader || p.leader == node {
            next.leader_epoch += 1;
        }
        if next != *p {
            next.partition_epoch += 1;
        }
        next
    }));
    out
}

/// Fences `node`: it leaves every ISR it is not the last member of, and the partitions it led
/// get a new leader from their ISR (or none). Nothing when it is already fenced or unknown, or
/// when `epoch` is given and the broker has registered since (a new incarnation).
pub fn plan_fence(image: &MetadataImage, node: i32, epoch: Option<i64>) -> Vec<MetadataRecord> {
    let Some(b) = image.brokers.get(&node) else {
        return Vec::new();
    };
    if b.fenced || epoch.is_some_and(|e| e != b.epoch) {
        return Vec::new();
    }
    let mut out = vec![MetadataRecord::BrokerFenced {
        node_id: node,
        fenced: true,
    }];
    out.extend(changed_partitions(image, |p| {
        elect(p, |b| b != node && image.is_live(b))
    }));
    out
}

/// Unfences `node`: it may lead again, and leads the partitions left without a leader whose
/// ISR it is in. Nothing when it is live already or unknown.
pub fn plan_unfence(image: &MetadataImage, node: i32) -> Vec<MetadataRecord> {
    if !image.brokers.get(&node).is_some_and(|b| b.fenced) {
        return Vec::new();
    }
    let mut out = vec![MetadataRecord::BrokerFenced {
        node_id: node,
        fenced: false,
    }];
    out.extend(changed_partitions(image, |p| {
        if p.leader >= 0 {
            return p.clone();
        }
        elect(p, |b| b == node || image.is_live(b))
    }));
    out
}

/// Kafka's election types (ElectLeaders, `kafka-leader-election.sh --election-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Election {
    /// The first replica leads again if it is live and in sync.
    Preferred,
    /// A partition without a leader takes any live replica, even an out-of-sync one (it may
    /// lack acknowledged records): only when an operator asks for it.
    Unclean,
}

/// The record that carries out an election on one partition, or why none is done: Kafka's
/// ELECTION_NOT_NEEDED (the partition has the leader asked for), PREFERRED_LEADER_NOT_AVAILABLE
/// and ELIGIBLE_LEADERS_NOT_AVAILABLE.
pub fn plan_election(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    election: Election,
) -> Result<MetadataRecord, Refusal> {
    let t = image.topics.get(topic);
    let Some((t, p)) = t.and_then(|t| Some((t, t.partitions.get(partition as usize)?))) else {
        return Err(Refusal::new(
            ResponseError::UnknownTopicOrPartition,
            format!("{topic}-{partition} does not exist"),
        ));
    };
    let mut next = p.clone();
    match election {
        Election::Preferred => {
            let preferred = p.replicas.first().copied().unwrap_or(-1);
            if p.leader == preferred {
                return Err(Refusal::new(
                    ResponseError::ElectionNotNeeded,
                    "the preferred replica already leads",
                ));
            }
            if !image.is_live(preferred) || !p.isr.contains(&preferred) {
                return Err(Refusal::new(
                    ResponseError::PreferredLeaderNotAvailable,
                    format!("the preferred replica {preferred} is not live and in sync"),
                ));
            }
            next.leader = preferred;
        }
        Election::Unclean => {
            if p.leader >= 0 {
                return Err(Refusal::new(
                    ResponseError::ElectionNotNeeded,
                    "the partition has a leader",
                ));
            }
            let in_sync = p
                .replicas
                .iter()
                .copied()
                .find(|r| image.is_live(*r) && p.isr.contains(r));
            let any = p.replicas.iter().copied().find(|r| image.is_live(*r));
            match (in_sync, any) {
                (Some(r), _) => next.leader = r,
                (None, Some(r)) => {
                    tracing::warn!(topic, partition, leader = r, "unclean leader election: records acknowledged by the last in-sync replicas may be lost");
                    next.leader = r;
                    next.isr = vec![r];
                }
                (None, None) => {
                    return Err(Refusal::new(
                        ResponseError::EligibleLeadersNotAvailable,
                        "no replica of the partition is live",
                    ))
                }
            }
        }
    }
    next.leader_epoch += 1;
    next.partition_epoch += 1;
    Ok(partition_record(t.id, partition as usize, next))
}

/// The partitions whose preferred replica is live and in sync but does not lead (what the
/// automatic leader rebalance, `auto.leader.rebalance.enable`, elects), leaving out partitions
/// being reassigned (as Kafka's controller does).
pub fn imbalanced(image: &MetadataImage) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for t in image.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            let Some(&preferred) = p.replicas.first() else {
                continue;
            };
            // Not during a reassignment: its first replica may be one still being added.
            if p.leader != preferred
                && !p.is_reassigning()
                && image.is_live(preferred)
                && p.isr.contains(&preferred)
            {
                out.push((t.name.clone(), i as i32));
            }
        }
    }
    out
}

/// The imbalanced partitions (see [`imbalanced`]) of the brokers whose imbalance is above
/// `percentage`: partitions they prefer but do not lead, out of all they prefer (Kafka's
/// `leader.imbalance.per.broker.percentage`).
pub fn to_rebalance(image: &MetadataImage, percentage: u32) -> Vec<(String, i32)> {
    let mut preferred: BTreeMap<i32, (u64, u64)> = BTreeMap::new();
    for t in image.topics.values() {
        for p in &t.partitions {
            if let Some(&first) = p.replicas.first() {
                let e = preferred.entry(first).or_default();
                e.0 += 1;
                e.1 += (p.leader != first) as u64;
            }
        }
    }
    imbalanced(image)
        .into_iter()
        .filter(|(topic, p)| {
            let first = image.topics[topic].partitions[*p as usize].replicas[0];
            let (all, off) = preferred[&first];
            off * 100 > percentage as u64 * all
        })
        .collect()
}

/// What a partition leader asks of the controller: a new ISR, planned on the leader epoch and
/// partition epoch it knows (Kafka's AlterPartition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// The brokers of `order` that are in `members`, in `order`'s order (Kafka keeps an ISR in
/// replica order).
pub(super) fn in_order(order: &[i32], members: &[i32]) -> Vec<i32> {
    order
        .iter()
        .copied()
        .filter(|r| members.contains(r))
        .collect()
}

/// The record that applies an ISR change, or Kafka's AlterPartition error: a leader that is
/// not the partition's leader at that epoch is FENCED_LEADER_EPOCH, a stale partition epoch
/// INVALID_UPDATE_VERSION, an ISR with a non-replica or a fenced broker INELIGIBLE_REPLICA.
pub fn plan_isr_change(
    image: &MetadataImage,
    change: &IsrChange,
) -> Result<Vec<MetadataRecord>, Refusal> {
    let p = image
        .topic_by_id(&change.topic_id)
        .and_then(|t| t.partitions.get(change.partition as usize))
        .ok_or_else(|| {
            Refusal::new(
                ResponseError::UnknownTopicOrPartition,
                "the partition does not exist",
            )
        })?;
    let same_leader = p.leader == change.leader && p.leader_epoch == change.leader_epoch;
    if same_leader && in_order(&p.replicas, &change.isr) == p.isr {
        // Already applied: a retried request whose first attempt was committed.
        return Ok(Vec::new());
    }
    if !same_leader {
        return Err(Refusal::new(
            ResponseError::FencedLeaderEpoch,
            format!(
                "broker {} at leader epoch {} does not lead (the leader is {} at epoch {})",
                change.leader, change.leader_epoch, p.leader, p.leader_epoch
            ),
        ));
    }
    if p.partition_epoch != change.partition_epoch {
        return Err(Refusal::new(
            ResponseError::InvalidUpdateVersion,
            format!(
                "partition epoch {} is not the current {}",
                change.partition_epoch, p.partition_epoch
            ),
        ));
    }
    if !change.isr.contains(&change.leader) {
        return Err(Refusal::new(
            ResponseError::InvalidRequest,
            "the ISR must contain the leader",
        ));
    }
    for b in &change.isr {
        let added = !p.isr.contains(b);
        if !p.replicas.contains(b) || (added && !image.is_live(*b)) {
            return Err(Refusal::new(
                ResponseError::IneligibleReplica,
                format!("broker {b} cannot join the ISR"),
            ));
        }
    }
    let isr = in_order(&p.replicas, &change.isr);
    let next = PartitionImage {
        isr,
        partition_epoch: p.partition_epoch + 1,
        ..p.clone()
    };
    // The ISR change may complete a reassignment in progress.
    let next = super::reassign::complete_if_caught_up(&next, |b| image.is_live(b));
    Ok(vec![next.record(change.topic_id, change.partition)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(node_id: i32) -> Registration {
        Registration {
            node_id,
            host: "localhost".into(),
            port: 9000 + node_id,
            rack: None,
        }
    }

    /// Three registered brokers and a topic with partitions led by 1, 2 and 3 in turn.
    fn cluster() -> (MetadataImage, Uuid) {
        let mut img = MetadataImage::default();
        for n in 1..=3 {
            for r in plan_register(&img, &reg(n)) {
                img.apply(&r);
            }
        }
        let id = Uuid::from_u128(7);
        img.apply(&MetadataRecord::Topic {
            name: "t".into(),
            topic_id: id,
        });
        for p in 0..3 {
            let replicas: Vec<i32> = (0..3).map(|r| (p + r) % 3 + 1).collect();
            img.apply(&MetadataRecord::Partition {
                topic_id: id,
                partition: p,
                leader: replicas[0],
                isr: replicas.clone(),
                replicas,
                leader_epoch: 0,
                partition_epoch: 0,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            });
        }
        (img, id)
    }

    /// Applies what `plan` makes of the image to it.
    fn apply(img: &mut MetadataImage, plan: impl FnOnce(&MetadataImage) -> Vec<MetadataRecord>) {
        for r in &plan(img) {
            img.apply(r);
        }
    }

    fn part(img: &MetadataImage, p: usize) -> &PartitionImage {
        &img.topics["t"].partitions[p]
    }

    #[test]
    fn a_fenced_broker_loses_leadership_and_leaves_the_isr() {
        let (mut img, _) = cluster();
        apply(&mut img, |i| plan_fence(i, 1, None));
        assert!(img.brokers[&1].fenced);
        // Partition 0 was led by 1: the next replica in order that is in sync leads.
        let p0 = part(&img, 0);
        assert_eq!((p0.leader, p0.leader_epoch, p0.partition_epoch), (2, 1, 1));
        assert_eq!(p0.isr, vec![2, 3]);
        // Partition 1 kept its leader (2) and epoch; only the ISR changed.
        let p1 = part(&img, 1);
        assert_eq!((p1.leader, p1.leader_epoch, p1.partition_epoch), (2, 0, 1));
        assert_eq!(p1.isr, vec![2, 3]);
        // Fencing twice changes nothing.
        assert!(plan_fence(&img, 1, None).is_empty());
    }

    #[test]
    fn the_last_in_sync_replica_stays_and_leads_again_when_it_returns() {
        let (mut img, _) = cluster();
        apply(&mut img, |i| plan_fence(i, 1, None));
        apply(&mut img, |i| plan_fence(i, 2, None));
        apply(&mut img, |i| plan_fence(i, 3, None));
        for p in 0..3 {
            assert_eq!(part(&img, p).leader, -1, "{:?}", part(&img, p));
            assert_eq!(part(&img, p).isr, vec![3], "no unclean election");
        }
        // Broker 1 comes back: it is in no ISR, so nothing comes back online with it.
        apply(&mut img, |i| plan_unfence(i, 1));
        assert_eq!(part(&img, 0).leader, -1);
        // Broker 3, the last in sync, does.
        let before = part(&img, 0).leader_epoch;
        apply(&mut img, |i| plan_unfence(i, 3));
        assert_eq!(part(&img, 0).leader, 3);
        assert_eq!(part(&img, 0).leader_epoch, before + 1);
        assert!(plan_unfence(&img, 3).is_empty());
    }

    #[test]
    fn a_restarted_broker_is_a_new_incarnation() {
        let (mut img, _) = cluster();
        let epoch = img.brokers[&1].epoch;
        apply(&mut img, |i| plan_register(i, &reg(1)));
        assert!(img.brokers[&1].epoch > epoch);
        // A controller that judged the old incarnation silent does not fence the new one.
        assert!(plan_fence(&img, 1, Some(epoch)).is_empty());
        assert!(!plan_fence(&img, 1, Some(img.brokers[&1].epoch)).is_empty());
        // It gave up leadership and its ISR places to brokers that never stopped.
        let p0 = part(&img, 0);
        assert_eq!((p0.leader, p0.isr.clone()), (2, vec![2, 3]));
        assert_eq!(part(&img, 1).isr, vec![2, 3]);

        // Alone in a partition's ISR, it leads it again, at a new epoch.
        let mut single = MetadataImage::default();
        apply(&mut single, |i| plan_register(i, &reg(1)));
        let id = Uuid::from_u128(9);
        single.apply(&MetadataRecord::Topic {
            name: "t".into(),
            topic_id: id,
        });
        single.apply(&MetadataRecord::Partition {
            topic_id: id,
            partition: 0,
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 4,
            partition_epoch: 4,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        });
        apply(&mut single, |i| plan_register(i, &reg(1)));
        let p = part(&single, 0);
        assert_eq!((p.leader, p.leader_epoch, p.isr.clone()), (1, 5, vec![1]));
    }

    #[test]
    fn preferred_and_unclean_elections_follow_kafkas_rules() {
        let (mut img, _) = cluster();
        let code = |r: Result<MetadataRecord, Refusal>| r.unwrap_err().code;
        assert_eq!(
            code(plan_election(&img, "t", 0, Election::Preferred)),
            ResponseError::ElectionNotNeeded.code()
        );
        assert_eq!(
            code(plan_election(&img, "t", 9, Election::Preferred)),
            ResponseError::UnknownTopicOrPartition.code()
        );
        // Broker 1 dies and returns: partition 0 is led by 2, and 1 is out of sync.
        apply(&mut img, |i| plan_fence(i, 1, None));
        apply(&mut img, |i| plan_unfence(i, 1));
        assert_eq!(imbalanced(&img), Vec::<(String, i32)>::new());
        assert_eq!(
            code(plan_election(&img, "t", 0, Election::Preferred)),
            ResponseError::PreferredLeaderNotAvailable.code()
        );
        // Back in sync, it is imbalanced, and the election gives it back its leadership.
        let back = IsrChange {
            topic_id: img.topics["t"].id,
            partition: 0,
            leader: 2,
            leader_epoch: part(&img, 0).leader_epoch,
            partition_epoch: part(&img, 0).partition_epoch,
            isr: vec![1, 2, 3],
        };
        apply(&mut img, |i| plan_isr_change(i, &back).unwrap());
        assert_eq!(imbalanced(&img), vec![("t".to_string(), 0)]);
        // One of broker 1's one preferred partition is led elsewhere: 100% > 10%.
        assert_eq!(to_rebalance(&img, 10), vec![("t".to_string(), 0)]);
        assert!(to_rebalance(&img, 100).is_empty());
        let epoch = part(&img, 0).leader_epoch;
        apply(&mut img, |i| {
            vec![plan_election(i, "t", 0, Election::Preferred).unwrap()]
        });
        assert_eq!(
            (part(&img, 0).leader, part(&img, 0).leader_epoch),
            (1, epoch + 1)
        );

        // Unclean: only a partition without a leader, and then any live replica.
        assert_eq!(
            code(plan_election(&img, "t", 0, Election::Unclean)),
            ResponseError::ElectionNotNeeded.code()
        );
        for b in [2, 3, 1] {
            apply(&mut img, |i| plan_fence(i, b, None));
        }
        assert_eq!(
            (part(&img, 0).leader, part(&img, 0).isr.clone()),
            (-1, vec![1])
        );
        assert_eq!(
            code(plan_election(&img, "t", 0, Election::Unclean)),
            ResponseError::EligibleLeadersNotAvailable.code()
        );
        img.apply(&MetadataRecord::BrokerFenced {
            node_id: 3,
            fenced: false,
        });
        apply(&mut img, |i| {
            vec![plan_election(i, "t", 0, Election::Unclean).unwrap()]
        });
        assert_eq!(
            (part(&img, 0).leader, part(&img, 0).isr.clone()),
            (3, vec![3])
        );
    }

    #[test]
    fn isr_changes_are_checked_against_leader_and_partition_epochs() {
        let (mut img, id) = cluster();
        let change = IsrChange {
            topic_id: id,
            partition: 0,
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            isr: vec![1, 3],
        };
        apply(&mut img, |i| plan_isr_change(i, &change).unwrap());
        assert_eq!(part(&img, 0).isr, vec![1, 3]);
        assert_eq!(part(&img, 0).partition_epoch, 1);
        // The same request again (a retry whose first attempt was committed) changes nothing.
        assert_eq!(plan_isr_change(&img, &change).unwrap(), Vec::new());
        // Another change planned on the old partition epoch is stale.
        let stale = IsrChange {
            isr: vec![1, 2, 3],
            ..change.clone()
        };
        let e = plan_isr_change(&img, &stale).unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidUpdateVersion.code());
        // Not the leader.
        let e = plan_isr_change(
            &img,
            &IsrChange {
                leader: 2,
                partition_epoch: 1,
                ..change.clone()
            },
        )
        .unwrap_err();
        assert_eq!(e.code, ResponseError::FencedLeaderEpoch.code());
        // A fenced broker cannot join.
        apply(&mut img, |i| plan_fence(i, 2, None));
        let e = plan_isr_change(
            &img,
            &IsrChange {
                partition_epoch: part(&img, 0).partition_epoch,
                isr: vec![1, 2, 3],
                ..change.clone()
            },
        )
        .unwrap_err();
        assert_eq!(e.code, ResponseError::IneligibleReplica.code());
        // Back in replica order, whatever order it was asked in.
        apply(&mut img, |i| plan_unfence(i, 2));
        apply(&mut img, |i| {
            let change = IsrChange {
                partition_epoch: part(i, 0).partition_epoch,
                isr: vec![3, 2, 1],
                ..change
            };
            plan_isr_change(i, &change).unwrap()
        });
        assert_eq!(part(&img, 0).isr, vec![1, 2, 3]);
    }
}
