//! A partition's replication state, with no I/O: this replica's role (leader or follower), the
//! leader epoch, the replicas and the in-sync set, each follower's progress as the leader sees
//! it, and the high watermark. Handlers ask it; nothing else decides the high watermark or
//! whether a request may be served here.
//!
//! The log owns the log start and log end offsets; they are passed in where a decision needs
//! them, so there is never a second copy to drift. On the leader the high watermark is the
//! smallest log end offset in the ISR (the leader's own included) and never moves back; on a
//! single node the ISR is the leader alone, so an append is replicated when it returns.
//!
//! ISR changes are proposals ([`PartitionState::lagging_followers`],
//! [`FollowerFetch::expand_isr`]): the controller decides them and they come back through the
//! metadata image ([`PartitionState::apply`]), as Kafka's AlterPartition does (KIP-497).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;

use crate::metadata::image::PartitionImage;

/// A partition's offsets, read together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    pub log_start: i64,
    /// What consumers may read up to (exclusive) and what ListOffsets LATEST returns.
    pub high_watermark: i64,
    /// The offset the next append gets; fetch offsets above it are out of range.
    pub log_end: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    /// Following `leader` (-1 while the partition has none).
    Follower {
        leader: i32,
    },
}

/// A follower's progress as its leader saw it in its fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    /// The follower's log end offset: the offset it last fetched from (-1 until it fetches).
    log_end: i64,
    /// When it last fetched from the leader's log end or beyond (Kafka's `lastCaughtUpTimeMs`).
    caught_up_ms: i64,
}

/// What a follower's fetch changed on the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FollowerFetch {
    /// The high watermark moved: waiting consumers and `acks=all` producers wake.
    pub high_watermark_advanced: bool,
    /// The follower is out of the ISR and has caught up to the high watermark: propose adding it.
    pub expand_isr: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    node_id: i32,
    role: Role,
    leader_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    /// The image's partition epoch: an ISR change is planned on it.
    partition_epoch: i32,
    /// How many of `replicas` a reassignment is still adding.
    adding: usize,
    /// Members this leader asked the controller to add to the ISR, not yet in the image. The
    /// high watermark waits for them too (Kafka's "maximal ISR", KIP-497): a member added
    /// once its log reached the high watermark must never find it moved past its log end.
    joining: Vec<i32>,
    /// The leader's log end when it took this leader epoch: a follower joins the ISR only
    /// once it has everything up to there.
    epoch_start: i64,
    /// `min.insync.replicas` of the topic: `acks=all` is refused below it.
    min_isr: i32,
    high_watermark: i64,
    /// The other replicas' progress; kept only while this replica leads.
    followers: BTreeMap<i32, Progress>,
}

impl PartitionState {
    /// A replica that has not yet seen the partition in an image: it follows no one and serves
    /// nothing until [`apply`](Self::apply) says what it is. `high_watermark` is what survived
    /// the last run (the log start if nothing did).
    pub fn new(node_id: i32, high_watermark: i64) -> Self {
        PartitionState {
            node_id,
            role: Role::Follower { leader: -1 },
            leader_epoch: -1,
            replicas: Vec::new(),
            isr: Vec::new(),
            partition_epoch: -1,
            adding: 0,
            joining: Vec::new(),
            epoch_start: 0,
            min_isr: 1,
            high_watermark,
            followers: BTreeMap::new(),
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }

    /// Led here with fewer in-sync replicas than replicas (Kafka's UnderReplicatedPartitions
    /// counts it on the leader).
    pub fn is_under_replicated(&self) -> bool {
        // Replicas a reassignment is still adding do not count (as in Kafka).
        self.is_leader() && self.isr.len() < self.replicas.len() - self.adding
    }

    /// Led here with fewer in-sync replicas than `min.insync.replicas`: `acks=all` is refused.
    pub fn is_under_min_isr(&self) -> bool {
        self.is_leader() && (self.isr.len() as i64) < self.min_isr as i64
    }

    pub fn is_replica(&self, node: i32) -> bool {
        self.replicas.contains(&node)
    }

    /// Takes the partition's assignment from a metadata image. Returns true when this replica
    /// became leader or follower anew (a new epoch or role): requests waiting on the old
    /// leadership must end. A new leader keeps its high watermark (it only ever moves forward)
    /// and forgets what it knew of the followers: they prove their progress by fetching again,
    /// and until then they count as caught up at `now_ms` so that none is dropped from the ISR
    /// the moment leadership moves (Kafka resets the replicas' state the same way).
    pub fn apply(&mut self, p: &PartitionImage, min_isr: i32, log_end: i64, now_ms: i64) -> bool {
        let role = if p.leader == self.node_id {
            Role::Leader
        } else {
            Role::Follower { leader: p.leader }
        };
        let changed = role != self.role || p.leader_epoch != self.leader_epoch;
        self.role = role;
        self.leader_epoch = p.leader_epoch;
        self.replicas = p.replicas.clone();
        if changed || p.partition_epoch != self.partition_epoch {
            self.joining.clear();
        }
        // A follower that leaves the ISR (fenced, restarted: it may have lost what it had
        // not flushed) proves its log end again by fetching before it may rejoin; what it
        // fetched before is no evidence of what it holds now.
        for (id, progress) in self.followers.iter_mut() {
            if self.isr.contains(id) && !p.isr.contains(id) {
                progress.log_end = -1;
            }
        }
        self.isr = p.isr.clone();
        self.partition_epoch = p.partition_epoch;
        self.adding = p.adding.iter().filter(|b| p.replicas.contains(b)).count();
        self.min_isr = min_isr;
        if changed && self.is_leader() {
            self.epoch_start = log_end;
        }
        if self.is_leader() {
            let fresh = Progress {
                log_end: -1,
                caught_up_ms: now_ms,
            };
            if changed {
                self.followers.clear();
            }
            let others: Vec<i32> = self
                .replicas
                .iter()
                .copied()
                .filter(|r| *r != self.node_id)
                .collect();
            self.followers.retain(|id, _| others.contains(id));
            for id in others {
                self.followers.entry(id).or_insert(fresh);
            }
            // A smaller ISR may let the high watermark move.
            self.advance_high_watermark(log_end);
        } else {
            self.followers.clear();
        }
        changed
    }

    /// Kafka's check of a client's `current_leader_epoch` (Fetch v9+, ListOffsets v4+): -1
    /// skips it; an older epoch than this replica's is FENCED_LEADER_EPOCH (the client's
    /// metadata is stale), a newer one UNKNOWN_LEADER_EPOCH (this replica's is).
    pub fn check_epoch(&self, current: i32) -> Result<(), ResponseError> {
        match current {
            c if c < 0 || c == self.leader_epoch => Ok(()),
            c if c < self.leader_epoch => Err(ResponseError::FencedLeaderEpoch),
            _ => Err(ResponseError::UnknownLeaderEpoch),
        }
    }

    /// Whether a client (a consumer, a producer, an admin reading offsets) may be served here.
    pub fn check_leader(&self) -> Result<(), ResponseError> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(ResponseError::NotLeaderOrFollower)
        }
    }

    /// Whether a produce with these `acks` may be appended: only on the leader, and with
    /// `acks=all` only while the ISR has at least `min.insync.replicas` members (Kafka's
    /// NOT_ENOUGH_REPLICAS, checked before the append so nothing is written).
    pub fn check_produce(&self, acks: i16) -> Result<(), ResponseError> {
        self.check_leader()?;
        if acks == -1 && (self.isr.len() as i64) < self.min_isr as i64 {
            return Err(ResponseError::NotEnoughReplicas);
        }
        Ok(())
    }

    /// Whether an `acks=all` append ending at `last_offset` is done: `None` while it waits
    /// for the ISR. Once the high watermark passes it, an ISR that shrank below
    /// `min.insync.replicas` meanwhile makes it NOT_ENOUGH_REPLICAS_AFTER_APPEND, as in Kafka
    /// (the records are written, but not as durably as asked). Losing leadership ends the wait
    /// with NOT_LEADER_OR_FOLLOWER: the new leader may not have the records.
    pub fn replicated(
        &self,
        last_offset: i64,
        leader_epoch: i32,
    ) -> Option<Result<(), ResponseError>> {
        if !self.is_leader() || self.leader_epoch != leader_epoch {
            return Some(Err(ResponseError::NotLeaderOrFollower));
        }
        if self.high_watermark <= last_offset {
            return None;
        }
        if (self.isr.len() as i64) < self.min_isr as i64 {
            return Some(Err(ResponseError::NotEnoughReplicasAfterAppend));
        }
        Some(Ok(()))
    }

    /// The leader appended: with the ISR the leader alone, the high watermark follows at once.
    /// Returns whether it moved.
    pub fn on_append(&mut self, log_end: i64) -> bool {
        self.advance_high_watermark(log_end)
    }

    /// A follower fetched from `fetch_offset`, which is its log end offset (everything before
    /// it is on its disk). `log_end` is the leader's.
    pub fn on_follower_fetch(
        &mut self,
        follower: i32,
        fetch_offset: i64,
        log_end: i64,
        now_ms: i64,
    ) -> FollowerFetch {
        if !self.is_leader() {
            return FollowerFetch::default();
        }
        let Some(progress) = self.followers.get_mut(&follower) else {
            return FollowerFetch::default(); // Not a replica of this partition (any more).
        };
        progress.log_end = fetch_offset;
        if fetch_offset >= log_end {
            progress.caught_up_ms = now_ms;
        }
        let high_watermark_advanced = self.advance_high_watermark(log_end);
        let expand_isr = !self.isr.contains(&follower) && self.may_join(fetch_offset);
        FollowerFetch {
            high_watermark_advanced,
            expand_isr,
        }
    }

    /// The ISR members that have not caught up with the leader's log end for longer than
    /// `max_lag_ms` (`replica.lag.time.max.ms`): the leader proposes removing them.
    pub fn lagging_followers(&self, now_ms: i64, max_lag_ms: i64) -> Vec<i32> {
        if !self.is_leader() {
            return Vec::new();
        }
        self.followers
            .iter()
            .filter(|(id, p)| self.isr.contains(id) && now_ms - p.caught_up_ms > max_lag_ms)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether a follower whose log ends at `log_end` may join the ISR: it has everything
    /// below the high watermark and everything written before this leader epoch began.
    fn may_join(&self, log_end: i64) -> bool {
        log_end >= self.high_watermark && log_end >= self.epoch_start
    }

    /// The ISR this leader should ask the controller for, if it differs from the image's:
    /// lagging members out (see [`lagging_followers`](Self::lagging_followers)), caught-up
    /// replicas that `eligible` allows (live brokers) in. Additions count toward the high
    /// watermark from now on, until the image answers (see [`apply`](Self::apply)).
    pub fn propose_isr(
        &mut self,
        now_ms: i64,
        max_lag_ms: i64,
        eligible: impl Fn(i32) -> bool,
    ) -> Option<Vec<i32>> {
        // Checked for every partition twice a second: a replica with no followers (every
        // partition of a single node) has nothing to propose and allocates nothing.
        if !self.is_leader() || self.followers.is_empty() {
            return None;
        }
        let lagging = self.lagging_followers(now_ms, max_lag_ms);
        let joining: Vec<i32> = self
            .followers
            .iter()
            .filter(|(id, p)| {
                !self.isr.contains(id)
                    && p.log_end >= 0
                    && self.may_join(p.log_end)
                    && eligible(**id)
            })
            .map(|(id, _)| *id)
            .collect();
        // Recomputed every time: a proposal whose outcome is unknown keeps holding the high
        // watermark for as long as its members could be in the ISR.
        self.joining = joining.clone();
        if lagging.is_empty() && joining.is_empty() {
            return None;
        }
        let isr: Vec<i32> = self
            .replicas
            .iter()
            .copied()
            .filter(|r| (self.isr.contains(r) && !lagging.contains(r)) || joining.contains(r))
            .collect();
        Some(isr)
    }

    /// The controller refused a proposed ISR for good (a member is not eligible): the members
    /// it would have added stop holding the high watermark. (A refusal because the partition
    /// moved on needs nothing: the image that moved it clears them.)
    pub fn proposal_refused(&mut self) {
        self.joining.clear();
    }

    /// A follower learns the leader's high watermark from its fetch responses; it never holds
    /// more than it has itself.
    pub fn on_leader_high_watermark(&mut self, leader_hw: i64, log_end: i64) -> bool {
        let hw = leader_hw.min(log_end);
        if self.is_leader() || hw == self.high_watermark {
            return false;
        }
        self.high_watermark = hw;
        true
    }

    /// A follower truncated its log to `log_end`: it holds no more than that as replicated.
    pub fn on_truncate(&mut self, log_end: i64) {
        self.high_watermark = self.high_watermark.min(log_end);
    }

    /// The offsets clients see. The high watermark is never above the log end (a follower that
    /// truncated) nor below the log start (records deleted below it).
    pub fn offsets(&self, log_start: i64, log_end: i64) -> Offsets {
        Offsets {
            log_start,
            high_watermark: self.high_watermark.min(log_end).max(log_start),
            log_end,
        }
    }

    /// The leader's high watermark: the smallest log end offset among the ISR. It never moves
    /// back (a follower whose progress is unknown holds it where it is).
    fn advance_high_watermark(&mut self, log_end: i64) -> bool {
        if !self.is_leader() {
            return false;
        }
        let mut hw = log_end;
        for id in self.isr.iter().chain(&self.joining) {
            if *id == self.node_id {
                continue;
            }
            hw = hw.min(self.followers.get(id).map_or(-1, |p| p.log_end));
        }
        if hw > self.high_watermark {
            self.high_watermark = hw;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(leader: i32, epoch: i32, replicas: &[i32], isr: &[i32]) -> PartitionImage {
        PartitionImage {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: epoch,
            partition_epoch: epoch,
            ..Default::default()
        }
    }

    #[test]
    fn a_single_replica_is_replicated_when_the_append_returns() {
        let mut s = PartitionState::new(1, 0);
        assert!(s.apply(&image(1, 0, &[1], &[1]), 1, 0, 0));
        assert_eq!(s.check_produce(-1), Ok(()));
        assert!(s.on_append(5));
        assert_eq!(
            s.offsets(0, 5),
            Offsets {
                log_start: 0,
                high_watermark: 5,
                log_end: 5
            }
        );
        assert_eq!(s.replicated(4, 0), Some(Ok(())));
    }

    #[test]
    fn the_high_watermark_is_the_smallest_log_end_in_the_isr() {
        let mut s = PartitionState::new(1, 0);
        s.apply(&image(1, 3, &[1, 2, 3], &[1, 2, 3]), 2, 10, 0);
        // Neither follower has fetched: nothing is replicated yet.
        assert_eq!(s.offsets(0, 10).high_watermark, 0);
        assert_eq!(s.replicated(9, 3), None);
        assert!(!s.on_follower_fetch(2, 10, 10, 1).high_watermark_advanced);
        let f = s.on_follower_fetch(3, 7, 10, 1);
        assert!(f.high_watermark_advanced);
        assert!(!f.expand_isr);
        assert_eq!(s.offsets(0, 10).high_watermark, 7);
        assert_eq!(s.replicated(6, 3), Some(Ok(())));
        assert_eq!(s.replicated(7, 3), None);
        // A follower that restarts from an earlier offset never moves the watermark back.
        s.on_follower_fetch(3, 2, 10, 2);
        assert_eq!(s.offsets(0, 10).high_watermark, 7);
    }

    #[test]
    fn a_smaller_isr_lets_the_high_watermark_advance() {
        let mut s = PartitionState::new(1, 0);
        s.apply(&image(1, 0, &[1, 2, 3], &[1, 2, 3]), 2, 10, 0);
        s.on_follower_fetch(2, 10, 10, 1);
        assert_eq!(s.offsets(0, 10).high_watermark, 0);
        // The controller dropped 3 from the ISR.
        assert!(!s.apply(&image(1, 0, &[1, 2, 3], &[1, 2]), 2, 10, 2));
        assert_eq!(s.offsets(0, 10).high_watermark, 10);
    }

    #[test]
    fn acks_all_below_min_isr_is_refused_before_and_after_the_append() {
        let mut s = PartitionState::new(1, 0);
        s.apply(&image(1, 0, &[1, 2, 3], &[1]), 2, 0, 0);
        assert_eq!(s.check_produce(-1), Err(ResponseError::NotEnoughReplicas));
        assert!(s.is_under_replicated() && s.is_under_min_isr());
        assert_eq!(s.check_produce(1), Ok(()));
        assert_eq!(s.check_produce(0), Ok(()));

        // The ISR shrinks below the minimum while an append waits.
        s.apply(&image(1, 0, &[1, 2, 3], &[1, 2]), 2, 0, 0);
        assert_eq!(s.check_produce(-1), Ok(()));
        assert!(s.is_under_replicated() && !s.is_under_min_isr());
        s.on_append(4);
        assert_eq!(s.replicated(3, 0), None);
        s.apply(&image(1, 0, &[1, 2, 3], &[1]), 2, 4, 1);
        assert_eq!(
            s.replicated(3, 0),
            Some(Err(ResponseError::NotEnoughReplicasAfterAppend))
        );
    }

    #[test]
    fn losing_leadership_ends_the_wait_and_refuses_clients() {
        let mut s = PartitionState::new(1, 0);
        s.apply(&image(1, 4, &[1, 2], &[1, 2]), 1, 10, 0);
        assert_eq!(s.replicated(9, 4), None);
        assert!(s.apply(&image(2, 5, &[1, 2], &[2]), 1, 10, 1));
        assert_eq!(s.role(), Role::Follower { leader: 2 });
        assert_eq!(
            s.replicated(9, 4),
            Some(Err(ResponseError::NotLeaderOrFollower))
        );
        assert_eq!(s.check_produce(1), Err(ResponseError::NotLeaderOrFollower));
        assert_eq!(s.check_leader(), Err(ResponseError::NotLeaderOrFollower));
        // Leadership that comes back at a newer epoch does not satisfy a wait from the old one.
        s.apply(&image(1, 6, &[1, 2], &[1]), 1, 10, 2);
        assert_eq!(
            s.replicated(9, 4),
            Some(Err(ResponseError::NotLeaderOrFollower))
        );
    }

    #[test]
    fn a_stale_or_future_epoch_is_fenced() {
        let mut s = PartitionState::new(1, 0);
        s.apply(&image(1, 4, &[1], &[1]), 1, 0, 0);
        assert_eq!(s.check_epoch(-1), Ok(()));
        assert_eq!(s.check_epoch(4), Ok(()));
        assert_eq!(s.check_epoch(3), Err(ResponseError::FencedLeaderEpoch));
        assert_eq!(s.check_epoch(5), Err(ResponseError::UnknownLeaderEpoch));
    }

    #[test]
    fn followers_that_stop_catching_up_are_proposed_for_removal_and_return() {
        let mut s = PartitionState::new(1, 0);
        s.apply(&image(1, 0, &[1, 2, 3], &[1, 2, 3]), 2, 10, 1_000);
        s.on_follower_fetch(2, 10, 10, 5_000);
        s.on_follower_fetch(3, 8, 10, 5_000);
        // Leadership counts as catching up, so nobody lags right after an election.
        assert!(s.lagging_followers(30_000, 30_000).is_empty());
        assert_eq!(s.lagging_followers(31_001, 30_000), vec![3]);
        s.apply(&image(1, 0, &[1, 2, 3], &[1, 2]), 2, 10, 31_001);
        // Back at the high watermark: propose it again.
        let f = s.on_follower_fetch(3, 10, 10, 32_000);
        assert!(f.expand_isr);
        // A fetch from a node that is not a replica changes nothing.
        assert_eq!(
            s.on_follower_fetch(9, 10, 10, 32_000),
            FollowerFetch::default()
        );
    }

    #[test]
    fn a_follower_takes_the_leaders_high_watermark_up_to_its_own_log_end() {
        let mut s = PartitionState::new(2, 0);
        s.apply(&image(1, 0, &[1, 2], &[1, 2]), 1, 3, 0);
        assert!(s.on_leader_high_watermark(10, 3));
        assert_eq!(s.offsets(0, 3).high_watermark, 3);
        assert!(s.on_leader_high_watermark(10, 10));
        assert_eq!(s.offsets(0, 10).high_watermark, 10);
        // Records deleted below it: the watermark is never under the log start.
        assert_eq!(s.offsets(12, 12).high_watermark, 12);
    }
}
