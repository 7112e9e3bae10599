//! The classic consumer group protocol as a plain state machine (no I/O, no clocks of its own).
//!
//! States follow Apache Kafka's `GroupMetadata`: Empty -> PreparingRebalance ->
//! CompletingRebalance -> Stable, back to PreparingRebalance whenever membership or
//! subscriptions change. Every method takes `now` and returns the replies it releases for
//! requests that were parked (JoinGroup waits for the other members, SyncGroup waits for the
//! leader's assignment); the async layer delivers them. `tick` handles the timers: the initial
//! rebalance delay, the rebalance timeout, and session expiry.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(&self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    last_heartbeat: Instant,
    awaiting_join: bool,
    awaiting_sync: bool,
}

impl Member {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// What a JoinGroup request asks.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// JoinGroup v4+: an unknown member first gets MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// (member id, instance id, metadata) — only for the leader.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    pub fn error(e: ResponseError, member_id: &str) -> Self {
        JoinResult {
            error: e.code(),
            generation: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(e: ResponseError) -> Self {
        SyncResult {
            error: e.code(),
            ..Default::default()
        }
    }
}

/// A LeaveGroup outcome per member: member id, instance id, error code.
pub type LeaveResult = (String, Option<String>, i16);

/// A reply to a parked request, addressed by member id.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Join(String, JoinResult),
    Sync(String, SyncResult),
}

/// The immediate answer to a join or sync: either a result now, or "parked, wait".
#[derive(Debug, Clone, PartialEq)]
pub enum Answer<T> {
    Now(T),
    Parked { member_id: String },
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub initial_rebalance_delay: Duration,
    pub max_size: usize,
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: IndexMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with when they expire.
    pending: HashMap<String, Instant>,
    static_members: HashMap<String, String>,
    rebalance_deadline: Option<Instant>,
    /// The initial delay (group.initial.rebalance.delay.ms) for a group that was empty.
    delay_deadline: Option<Instant>,
    delay_started: Option<Instant>,
}

impl Group {
    pub fn new(id: &str) -> Self {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: IndexMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            rebalance_deadline: None,
            delay_deadline: None,
            delay_started: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    fn new_member_id(&mut self, client_id: &str, instance: Option<&str>) -> String {
        let prefix = instance.unwrap_or(client_id);
        format!("{prefix}-{}", uuid::Uuid::new_v4())
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        // Some protocol must be supported by every member and the newcomer.
        protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    pub fn join(
        &mut self,
        req: JoinRequest,
        limits: &Limits,
        now: Instant,
    ) -> (Answer<JoinResult>, Vec<Reply>) {
        let mut replies = Vec::new();
        if req.session_timeout_ms < limits.min_session_timeout_ms
            || req.session_timeout_ms > limits.max_session_timeout_ms
        {
            return (
                Answer::Now(JoinResult::error(
                    ResponseError::InvalidSessionTimeout,
                    &req.member_id,
                )),
                replies,
            );
        }
        let known = self.members.contains_key(&req.member_id);
        if !known && !self.supports(&req.protocol_type, &req.protocols) {
            return (
                Answer::Now(JoinResult::error(
                    ResponseError::InconsistentGroupProtocol,
                    &req.member_id,
                )),
                replies,
            );
        }
        let mut member_id = req.member_id.clone();
        if member_id.is_empty() {
            if self.members.len() + self.pending.len() >= limits.max_size {
                return (
                    Answer::Now(JoinResult::error(ResponseError::GroupMaxSizeReached, "")),
                    replies,
                );
            }
            member_id = self.new_member_id(&req.client_id, req.instance_id.as_deref());
            if let Some(instance) = &req.instance_id {
                // A static member that restarted: the old member id is replaced (KIP-345).
                if let Some(old) = self.static_members.get(instance).cloned() {
                    replies.extend(self.remove_member(&old, now, ResponseError::FencedInstanceId));
                }
                self.static_members
                    .insert(instance.clone(), member_id.clone());
            } else if req.require_known_member_id {
                self.pending.insert(
                    member_id.clone(),
                    now + Duration::from_millis(req.session_timeout_ms as u64),
                );
                return (
                    Answer::Now(JoinResult {
                        error: ResponseError::MemberIdRequired.code(),
                        generation: -1,
                        member_id,
                        ..Default::default()
                    }),
                    replies,
                );
            }
        } else if !known && self.pending.remove(&member_id).is_none() {
            return (
                Answer::Now(JoinResult::error(
                    ResponseError::UnknownMemberId,
                    &member_id,
                )),
                replies,
            );
        } else if let Some(instance) = &req.instance_id {
            if let Some(current) = self.static_members.get(instance) {
                if *current != member_id {
                    return (
                        Answer::Now(JoinResult::error(
                            ResponseError::FencedInstanceId,
                            &member_id,
                        )),
                        replies,
                    );
                }
            } else {
                self.static_members
                    .insert(instance.clone(), member_id.clone());
            }
        }

        let is_new = !self.members.contains_key(&member_id);
        let changed = is_new
            || self
                .members
                .get(&member_id)
                .is_some_and(|m| m.protocols != req.protocols);
        let member = self
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                id: member_id.clone(),
                instance_id: req.instance_id.clone(),
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                session_timeout: Duration::from_millis(req.session_timeout_ms as u64),
                rebalance_timeout: Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64),
                protocols: req.protocols.clone(),
                assignment: Bytes::new(),
                last_heartbeat: now,
                awaiting_join: false,
                awaiting_sync: false,
            });
        member.protocols = req.protocols.clone();
        member.session_timeout = Duration::from_millis(req.session_timeout_ms as u64);
        member.rebalance_timeout = Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64);
        member.last_heartbeat = now;
        if self.protocol_type.is_none() {
            self.protocol_type = Some(req.protocol_type.clone());
        }

        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance
                if !changed && self.leader.as_deref() != Some(&member_id) =>
            {
                // A follower that lost its join response: tell it the current generation again.
                let result = self.join_result_for(&member_id);
                return (Answer::Now(result), replies);
            }
            GroupState::PreparingRebalance => {}
            _ => replies.extend(self.prepare_rebalance(now, limits)),
        }
        if let Some(m) = self.members.get_mut(&member_id) {
            m.awaiting_join = true;
        }
        if is_new && self.delay_deadline.is_some() {
            // Kafka's InitialDelayedJoin: each newcomer extends the delay, up to the rebalance timeout.
            let start = self.delay_started.unwrap_or(now);
            let cap = start + self.max_rebalance_timeout();
            self.delay_deadline = Some((now + limits.initial_rebalance_delay).min(cap));
        }
        replies.extend(self.try_complete_join(now));
        // The member's own reply may have been released by try_complete_join.
        if let Some(pos) = replies
            .iter()
            .position(|r| matches!(r, Reply::Join(m, _) if *m == member_id))
        {
            if let Reply::Join(_, result) = replies.remove(pos) {
                return (Answer::Now(result), replies);
            }
        }
        (Answer::Parked { member_id }, replies)
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(60))
    }

    fn prepare_rebalance(&mut self, now: Instant, limits: &Limits) -> Vec<Reply> {
        let mut replies = Vec::new();
        if self.state == GroupState::CompletingRebalance {
            // Members waiting for the old assignment must rejoin.
            for m in self.members.values_mut() {
                if m.awaiting_sync {
                    m.awaiting_sync = false;
                    replies.push(Reply::Sync(
                        m.id.clone(),
                        SyncResult::error(ResponseError::RebalanceInProgress),
                    ));
                }
            }
        }
        let was_empty = self.state == GroupState::Empty;
        self.state = GroupState::PreparingRebalance;
        self.rebalance_deadline = Some(now + self.max_rebalance_timeout());
        if was_empty && !limits.initial_rebalance_delay.is_zero() {
            self.delay_started = Some(now);
            self.delay_deadline = Some(now + limits.initial_rebalance_delay);
        }
        replies
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join)
    }

    fn try_complete_join(&mut self, now: Instant) -> Vec<Reply> {
        if self.state != GroupState::PreparingRebalance {
            return Vec::new();
        }
        if let Some(d) = self.delay_deadline {
            if now < d {
                return Vec::new();
            }
        }
        let expired = self.rebalance_deadline.is_some_and(|d| now >= d);
        if self.all_joined() || expired {
            self.complete_join(now)
        } else {
            Vec::new()
        }
    }

    fn complete_join(&mut self, now: Instant) -> Vec<Reply> {
        self.delay_deadline = None;
        self.delay_started = None;
        self.rebalance_deadline = None;
        self.pending.clear();
        // Members that did not rejoin in time are dropped from the new generation.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join)
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.forget(&id);
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return Vec::new();
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        let mut replies = Vec::new();
        for id in ids {
            let result = self.join_result_for(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.awaiting_join = false;
                m.last_heartbeat = now;
                m.assignment = Bytes::new();
            }
            replies.push(Reply::Join(id, result));
        }
        replies
    }

    /// The protocol every member supports that most members prefer (Kafka's vote).
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .collect();
        let mut votes: HashMap<&String, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some((p, _)) = m.protocols.iter().find(|(p, _)| candidates.contains(&p)) {
                *votes.entry(p).or_default() += 1;
            }
        }
        candidates
            .iter()
            .max_by_key(|c| {
                (
                    votes.get(*c).copied().unwrap_or(0),
                    std::cmp::Reverse(candidates.iter().position(|x| x == *c)),
                )
            })
            .map(|s| s.to_string())
    }

    fn join_result_for(&self, member_id: &str) -> JoinResult {
        let protocol = self.protocol.clone().unwrap_or_default();
        let is_leader = self.leader.as_deref() == Some(member_id);
        JoinResult {
            error: 0,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if is_leader {
                self.members
                    .values()
                    .map(|m| {
                        (
                            m.id.clone(),
                            m.instance_id.clone(),
                            m.metadata_for(&protocol),
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if let Some(instance) = instance_id {
            if let Some(current) = self.static_members.get(instance) {
                if current != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> (Answer<SyncResult>, Vec<Reply>) {
        if let Err(e) = self.check_member(member_id, instance_id, generation) {
            return (Answer::Now(SyncResult::error(e)), Vec::new());
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat = now;
        }
        match self.state {
            GroupState::Empty => (
                Answer::Now(SyncResult::error(ResponseError::UnknownMemberId)),
                Vec::new(),
            ),
            GroupState::PreparingRebalance => (
                Answer::Now(SyncResult::error(ResponseError::RebalanceInProgress)),
                Vec::new(),
            ),
            GroupState::Stable => (Answer::Now(self.sync_result_for(member_id)), Vec::new()),
            GroupState::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(member_id) {
                    m.awaiting_sync = true;
                }
                if self.leader.as_deref() != Some(member_id) {
                    return (
                        Answer::Parked {
                            member_id: member_id.to_string(),
                        },
                        Vec::new(),
                    );
                }
                let given: HashMap<String, Bytes> = assignments.into_iter().collect();
                for m in self.members.values_mut() {
                    m.assignment = given.get(&m.id).cloned().unwrap_or_default();
                }
                self.state = GroupState::Stable;
                let mut own = None;
                let mut replies = Vec::new();
                let waiting: Vec<String> = self
                    .members
                    .values()
                    .filter(|m| m.awaiting_sync)
                    .map(|m| m.id.clone())
                    .collect();
                for id in waiting {
                    let r = self.sync_result_for(&id);
                    if let Some(m) = self.members.get_mut(&id) {
                        m.awaiting_sync = false;
                    }
                    if id == member_id {
                        own = Some(r);
                    } else {
                        replies.push(Reply::Sync(id, r));
                    }
                }
                (
                    Answer::Now(own.unwrap_or_else(|| self.sync_result_for(member_id))),
                    replies,
                )
            }
        }
    }

    fn sync_result_for(&self, member_id: &str) -> SyncResult {
        SyncResult {
            error: 0,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> i16 {
        if let Err(e) = self.check_member(member_id, instance_id, generation) {
            return e.code();
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat = now;
        }
        match self.state {
            GroupState::PreparingRebalance => ResponseError::RebalanceInProgress.code(),
            GroupState::Empty => ResponseError::UnknownMemberId.code(),
            _ => 0,
        }
    }

    /// Removes members (LeaveGroup). Returns per-member error codes and released replies.
    pub fn leave(
        &mut self,
        members: &[(String, Option<String>)],
        limits: &Limits,
        now: Instant,
    ) -> (Vec<LeaveResult>, Vec<Reply>) {
        let mut results = Vec::new();
        let mut replies = Vec::new();
        for (member_id, instance_id) in members {
            let id = if member_id.is_empty() {
                instance_id
                    .as_ref()
                    .and_then(|i| self.static_members.get(i).cloned())
            } else {
                Some(member_id.clone())
            };
            let code = match id {
                Some(id) if self.members.contains_key(&id) => {
                    if let (Some(i), Some(current)) = (
                        instance_id,
                        instance_id
                            .as_ref()
                            .and_then(|i| self.static_members.get(i)),
                    ) {
                        if *current != id {
                            results.push((
                                member_id.clone(),
                                Some(i.clone()),
                                ResponseError::FencedInstanceId.code(),
                            ));
                            continue;
                        }
                    }
                    replies.extend(self.remove_member(&id, now, ResponseError::UnknownMemberId));
                    0
                }
                Some(id) if self.pending.remove(&id).is_some() => 0,
                _ => ResponseError::UnknownMemberId.code(),
            };
            results.push((member_id.clone(), instance_id.clone(), code));
        }
        replies.extend(self.after_membership_change(now, limits));
        (results, replies)
    }

    /// Drops a member and answers its parked requests with `why`.
    fn remove_member(&mut self, id: &str, _now: Instant, why: ResponseError) -> Vec<Reply> {
        let mut replies = Vec::new();
        if let Some(m) = self.members.get(id) {
            if m.awaiting_join {
                replies.push(Reply::Join(id.to_string(), JoinResult::error(why, id)));
            }
            if m.awaiting_sync {
                replies.push(Reply::Sync(id.to_string(), SyncResult::error(why)));
            }
        }
        self.forget(id);
        replies
    }

    fn forget(&mut self, id: &str) {
        if let Some(m) = self.members.shift_remove(id) {
            if let Some(i) = m.instance_id {
                if self.static_members.get(&i).map(String::as_str) == Some(id) {
                    self.static_members.remove(&i);
                }
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    fn after_membership_change(&mut self, now: Instant, limits: &Limits) -> Vec<Reply> {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.state = GroupState::Empty;
                    self.generation += 1;
                    self.protocol = None;
                    self.leader = None;
                    Vec::new()
                } else {
                    let mut r = self.prepare_rebalance(now, limits);
                    r.extend(self.try_complete_join(now));
                    r
                }
            }
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty => Vec::new(),
        }
    }

    /// Timers: initial delay, rebalance timeout, session expiry, pending member expiry.
    pub fn tick(&mut self, now: Instant, limits: &Limits) -> Vec<Reply> {
        let mut replies = Vec::new();
        self.pending.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                !m.awaiting_join && now.duration_since(m.last_heartbeat) > m.session_timeout
            })
            .map(|m| m.id.clone())
            .collect();
        if !expired.is_empty() {
            for id in &expired {
                tracing::info!(group = %self.id, member = %id, "member session expired");
                replies.extend(self.remove_member(id, now, ResponseError::UnknownMemberId));
            }
            replies.extend(self.after_membership_change(now, limits));
        }
        replies.extend(self.try_complete_join(now));
        replies
    }

    pub fn member_ids(&self) -> HashSet<String> {
        self.members.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            min_session_timeout_ms: 10,
            max_session_timeout_ms: 100_000,
            initial_rebalance_delay: Duration::ZERO,
            max_size: 100,
        }
    }

    fn req(member: &str) -> JoinRequest {
        JoinRequest {
            member_id: member.to_string(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            require_known_member_id: true,
        }
    }

    /// Joins a new member through MEMBER_ID_REQUIRED; returns its id and the answer.
    fn join_new(g: &mut Group, now: Instant) -> (String, Answer<JoinResult>, Vec<Reply>) {
        let (a, _) = g.join(req(""), &limits(), now);
        let Answer::Now(r) = a else {
            panic!("expected MEMBER_ID_REQUIRED")
        };
        assert_eq!(r.error, ResponseError::MemberIdRequired.code());
        let (a, replies) = g.join(req(&r.member_id), &limits(), now);
        (r.member_id, a, replies)
    }

    #[test]
    fn a_single_member_joins_syncs_and_is_stable() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let (id, a, _) = join_new(&mut g, now);
        let Answer::Now(r) = a else {
            panic!("a lone member completes at once")
        };
        assert_eq!(
            (r.error, r.generation, r.leader.as_str()),
            (0, 1, id.as_str())
        );
        assert_eq!(r.members.len(), 1);
        assert_eq!(g.state, GroupState::CompletingRebalance);
        let (a, _) = g.sync(
            &id,
            None,
            1,
            vec![(id.clone(), Bytes::from_static(b"A"))],
            now,
        );
        assert_eq!(
            a,
            Answer::Now(SyncResult {
                error: 0,
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                assignment: Bytes::from_static(b"A")
            })
        );
        assert_eq!(g.state, GroupState::Stable);
        assert_eq!(g.heartbeat(&id, None, 1, now), 0);
    }

    #[test]
    fn a_second_member_triggers_a_rebalance_that_waits_for_the_first() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let (a_id, _, _) = join_new(&mut g, now);
        g.sync(&a_id, None, 1, vec![], now);
        let (b_id, b_answer, _) = join_new(&mut g, now);
        assert!(matches!(b_answer, Answer::Parked { .. }));
        assert_eq!(
            g.heartbeat(&a_id, None, 1, now),
            ResponseError::RebalanceInProgress.code()
        );
        let (a_answer, replies) = g.join(req(&a_id), &limits(), now);
        let Answer::Now(ra) = a_answer else { panic!() };
        assert_eq!(ra.generation, 2);
        assert_eq!(replies.len(), 1);
        assert!(matches!(&replies[0], Reply::Join(m, r) if *m == b_id && r.generation == 2));
        // The follower parks in sync until the leader assigns.
        let (b_sync, _) = g.sync(&b_id, None, 2, vec![], now);
        assert!(matches!(b_sync, Answer::Parked { .. }));
        let (a_sync, replies) = g.sync(
            &a_id,
            None,
            2,
            vec![
                (a_id.clone(), Bytes::from_static(b"0,1")),
                (b_id.clone(), Bytes::from_static(b"2,3")),
            ],
            now,
        );
        assert!(matches!(a_sync, Answer::Now(SyncResult { error: 0, .. })));
        assert!(
            matches!(&replies[0], Reply::Sync(m, r) if *m == b_id && r.assignment == Bytes::from_static(b"2,3"))
        );
    }

    #[test]
    fn leaving_rebalances_the_rest_and_the_last_one_empties_the_group() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let (a, _, _) = join_new(&mut g, now);
        g.sync(&a, None, 1, vec![], now);
        let (b, _, _) = join_new(&mut g, now);
        g.join(req(&a), &limits(), now);
        g.sync(&a, None, 2, vec![], now);
        let (res, _) = g.leave(&[(b.clone(), None)], &limits(), now);
        assert_eq!(res[0].2, 0);
        assert_eq!(g.state, GroupState::PreparingRebalance);
        let (ans, _) = g.join(req(&a), &limits(), now);
        assert!(matches!(ans, Answer::Now(JoinResult { generation: 3, .. })));
        g.leave(&[(a, None)], &limits(), now);
        assert_eq!(g.state, GroupState::Empty);
    }

    #[test]
    fn a_silent_member_expires_after_its_session_timeout() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let (a, _, _) = join_new(&mut g, now);
        g.sync(&a, None, 1, vec![], now);
        assert!(g.tick(now + Duration::from_secs(5), &limits()).is_empty());
        assert_eq!(g.state, GroupState::Stable);
        g.tick(now + Duration::from_secs(11), &limits());
        assert_eq!(g.state, GroupState::Empty);
        assert!(g.members.is_empty());
    }

    #[test]
    fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let (a, _, _) = join_new(&mut g, now);
        g.sync(&a, None, 1, vec![], now);
        let (b, ans, _) = join_new(&mut g, now);
        assert!(matches!(ans, Answer::Parked { .. }));
        let replies = g.tick(now + Duration::from_secs(31), &limits());
        assert!(matches!(&replies[..], [Reply::Join(m, r)] if *m == b && r.members.len() == 1));
        assert!(!g.members.contains_key(&a));
    }

    #[test]
    fn static_member_rejoining_with_a_new_id_fences_the_old_one() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let mut r = req("");
        r.instance_id = Some("pod-0".into());
        let (Answer::Now(first), _) = g.join(r.clone(), &limits(), now) else {
            panic!()
        };
        assert_eq!(first.error, 0);
        let (Answer::Now(second), _) = g.join(r, &limits(), now) else {
            panic!()
        };
        assert_ne!(first.member_id, second.member_id);
        assert_eq!(
            g.heartbeat(&first.member_id, Some("pod-0"), second.generation, now),
            ResponseError::FencedInstanceId.code()
        );
    }

    #[test]
    fn unknown_members_and_old_generations_are_refused() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let (a, _, _) = join_new(&mut g, now);
        assert_eq!(
            g.heartbeat("nobody", None, 1, now),
            ResponseError::UnknownMemberId.code()
        );
        assert_eq!(
            g.heartbeat(&a, None, 7, now),
            ResponseError::IllegalGeneration.code()
        );
        let (ans, _) = g.join(req("nobody"), &limits(), now);
        assert!(
            matches!(ans, Answer::Now(JoinResult { error, .. }) if error == ResponseError::UnknownMemberId.code())
        );
    }

    #[test]
    fn initial_delay_holds_the_first_rebalance() {
        let now = Instant::now();
        let mut l = limits();
        l.initial_rebalance_delay = Duration::from_secs(3);
        let mut g = Group::new("g");
        let (Answer::Now(r), _) = g.join(req(""), &l, now) else {
            panic!()
        };
        let (ans, _) = g.join(req(&r.member_id), &l, now);
        assert!(matches!(ans, Answer::Parked { .. }));
        assert!(g.tick(now + Duration::from_secs(1), &l).is_empty());
        let replies = g.tick(now + Duration::from_secs(4), &l);
        assert!(matches!(&replies[..], [Reply::Join(_, r)] if r.generation == 1));
    }
}
