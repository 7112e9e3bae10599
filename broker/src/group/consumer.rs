//! Consumer groups of the new rebalance protocol (KIP-848): the broker computes the
//! assignment and each member converges to it through ConsumerGroupHeartbeat.
//!
//! A group has an epoch, bumped whenever its membership, a member's subscription or the
//! partitions of a subscribed topic change. When the group epoch passes the epoch of the
//! target assignment, the server-side assignor computes a new target for every member. Each
//! member then reconciles on its own heartbeats, as Kafka's `CurrentAssignmentBuilder` does:
//! it first gives up the partitions that are no longer its own (its epoch stays; the partitions
//! stay reserved until it reports it no longer owns them), then moves to the target epoch and
//! receives the new partitions that no other member still holds; partitions still held
//! elsewhere come on later heartbeats. So a partition is never owned by two members at once.
//!
//! Membership is not persisted, as for classic groups: after a coordinator restart members get
//! UNKNOWN_MEMBER_ID and join again with epoch 0.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use regex::Regex;
use uuid::Uuid;

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// The topics a group may subscribe to: name -> (id, partition count).
pub type Topics = BTreeMap<String, (Uuid, i32)>;

/// The server-side assignors, by the names clients send in `group.remote.assignor`.
pub const ASSIGNORS: [&str; 2] = ["uniform", "range"];

/// Leave epochs of the heartbeat request.
pub const LEAVE_EPOCH: i32 = -1;
/// For a member that joins without a rebalance timeout: `max.poll.interval.ms`'s default.
const DEFAULT_REBALANCE_TIMEOUT: Duration = Duration::from_secs(300);
pub const STATIC_LEAVE_EPOCH: i32 = -2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Owns exactly its target (or all of it that it can have).
    Stable,
    /// Must give up partitions before it moves to the target epoch.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions other members still hold.
    UnreleasedPartitions,
}

impl MemberState {
    pub fn name(self) -> &'static str {
        match self {
            MemberState::Stable => "Stable",
            MemberState::UnrevokedPartitions => "UnrevokedPartitions",
            MemberState::UnreleasedPartitions => "UnreleasedPartitions",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    pub rebalance_timeout: Duration,
    pub server_assignor: Option<String>,
    pub subscribed_names: BTreeSet<String>,
    pub subscribed_regex: Option<String>,
    /// `subscribed_regex` compiled to match whole topic names.
    regex: Option<Regex>,
    /// The topics the regex matched when it was last resolved. As in Kafka, a new regex is
    /// resolved after the heartbeat that brought it (clients see the literal topics first and
    /// the matched ones on a later heartbeat), and again whenever topics come or go.
    regex_topics: BTreeSet<String>,
    regex_pending: bool,
    /// What the member owns (as far as the coordinator told it).
    pub assigned: Assignment,
    /// Partitions it was told to give up and has not yet reported gone.
    pub revoking: Assignment,
    session_deadline: Instant,
    revocation_deadline: Option<Instant>,
}

impl Member {
    /// The topic names this member subscribes to, resolved against the existing topics.
    fn subscribed_topics<'a>(&self, topics: &'a Topics) -> BTreeSet<&'a str> {
        topics
            .keys()
            .filter(|name| {
                self.subscribed_names.contains(name.as_str())
                    || self.regex_topics.contains(name.as_str())
            })
            .map(|s| s.as_str())
            .collect()
    }

    fn set_regex(&mut self, r: Option<String>) {
        self.regex = r
            .as_deref()
            .and_then(|r| Regex::new(&format!("^(?:{r})$")).ok());
        self.subscribed_regex = r;
        self.regex_topics.clear();
        self.regex_pending = self.regex.is_some();
    }

    fn resolve_regex(&mut self, topics: &Topics) {
        self.regex_pending = false;
        self.regex_topics = match &self.regex {
            Some(re) => topics
                .keys()
                .filter(|n| !n.starts_with("__") && re.is_match(n))
                .cloned()
                .collect(),
            None => BTreeSet::new(),
        };
    }

    fn owns(&self, topic: &Uuid, partition: i32) -> bool {
        [&self.assigned, &self.revoking]
            .iter()
            .any(|a| a.get(topic).is_some_and(|ps| ps.contains(&partition)))
    }
}

/// One ConsumerGroupHeartbeat, decoded. `None` fields were not sent ("unchanged").
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub subscribed_names: Option<Vec<String>>,
    pub subscribed_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub member_id: String,
    pub member_epoch: i32,
    /// The partitions the member should own now; `None` means "unchanged".
    pub assignment: Option<Assignment>,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub max_size: usize,
}

/// The error of a refused heartbeat, with the message Kafka would give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub ResponseError, pub String);

fn refuse<T>(e: ResponseError, msg: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(e, msg.into()))
}

#[derive(Debug, Default)]
pub struct ConsumerGroup {
    pub id: String,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, Member>,
    pub target: BTreeMap<String, Assignment>,
    /// The subscribed topics' metadata as of the last epoch bump.
    subscribed: Topics,
    /// The topic names regexes were last resolved against.
    resolved_against: BTreeSet<String>,
    pub assignor: String,
}

fn is_subset(a: &Assignment, b: &Assignment) -> bool {
    a.iter()
        .all(|(t, ps)| ps.is_empty() || b.get(t).is_some_and(|bs| ps.is_subset(bs)))
}

fn minus(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .filter_map(|(t, ps)| {
            let rest: BTreeSet<i32> = match b.get(t) {
                Some(bs) => ps.difference(bs).copied().collect(),
                None => ps.clone(),
            };
            (!rest.is_empty()).then_some((*t, rest))
        })
        .collect()
}

fn intersect(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .filter_map(|(t, ps)| {
            let both: BTreeSet<i32> = ps.intersection(b.get(t)?).copied().collect();
            (!both.is_empty()).then_some((*t, both))
        })
        .collect()
}

fn is_empty(a: &Assignment) -> bool {
    a.values().all(|ps| ps.is_empty())
}

impl ConsumerGroup {
    pub fn new(id: &str) -> Self {
        ConsumerGroup {
            id: id.to_string(),
            assignor: ASSIGNORS[0].to_string(),
            ..Default::default()
        }
    }

    /// Kafka's group states for DescribeGroups/ListGroups/ConsumerGroupDescribe.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.epoch != self.assignment_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Handles one heartbeat. `topics` is the current metadata of every topic.
    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        topics: &Topics,
        limits: &Limits,
        now: Instant,
    ) -> Result<HeartbeatReply, Refusal> {
        if hb.member_id.is_empty() {
            return refuse(ResponseError::InvalidRequest, "MemberId can't be empty.");
        }
        if let Some(a) = &hb.server_assignor {
            if !ASSIGNORS.contains(&a.as_str()) {
                return refuse(
                    ResponseError::UnsupportedAssignor,
                    format!(
                        "ServerAssignor {a} is not supported. Supported assignors: uniform, range."
                    ),
                );
            }
        }
        if let Some(r) = &hb.subscribed_regex {
            if Regex::new(r).is_err() {
                return refuse(
                    ResponseError::InvalidRegularExpression,
                    format!("SubscribedTopicRegex `{r}` is not a valid regular expression."),
                );
            }
        }
        if hb.member_epoch == STATIC_LEAVE_EPOCH && hb.instance_id.is_none() {
            return refuse(ResponseError::InvalidRequest, "InstanceId can't be null.");
        }
        let mut new_member = false;
        match hb.member_epoch {
            LEAVE_EPOCH | STATIC_LEAVE_EPOCH => return self.leave(&hb, now),
            0 => new_member = self.join(&hb, limits, now)?,
            e if e > 0 => self.check_epoch(&hb)?,
            e => {
                return refuse(
                    ResponseError::InvalidRequest,
                    format!("MemberEpoch {e} is invalid."),
                )
            }
        }
        let member_id = hb.member_id.clone();
        self.resolve_regexes(topics);
        let full_request = hb.rebalance_timeout_ms != -1
            && (hb.subscribed_names.is_some() || hb.subscribed_regex.is_some())
            && hb.owned.is_some();

        // Update the member; a new subscription bumps the group epoch.
        let mut bump = false;
        {
            let m = self.members.get_mut(&member_id).expect("member exists");
            m.session_deadline = now + limits.session_timeout;
            m.client_id = hb.client_id.clone();
            m.client_host = hb.client_host.clone();
            if hb.rebalance_timeout_ms > 0 {
                m.rebalance_timeout = Duration::from_millis(hb.rebalance_timeout_ms as u64);
            }
            if hb.rack_id.is_some() {
                m.rack_id = hb.rack_id.clone();
            }
            if hb.server_assignor.is_some() && hb.server_assignor != m.server_assignor {
                // Another assignor may change the target: a new epoch computes it.
                m.server_assignor = hb.server_assignor.clone();
                bump = true;
            }
            if let Some(names) = &hb.subscribed_names {
                let names: BTreeSet<String> = names.iter().cloned().collect();
                if names != m.subscribed_names {
                    m.subscribed_names = names;
                    bump = true;
                }
            }
            if let Some(r) = &hb.subscribed_regex {
                // An empty regex means none (librdkafka sends one in every full request).
                let r = Some(r.clone()).filter(|r| !r.is_empty());
                if r != m.subscribed_regex {
                    m.set_regex(r);
                    bump = true;
                }
            }
        }
        if new_member {
            bump = true;
        }
        // The subscribed topics' partitions changed (created, grown, deleted)?
        let snapshot = self.subscription_snapshot(topics);
        if snapshot != self.subscribed {
            self.subscribed = snapshot;
            bump = true;
        }
        if bump {
            self.epoch += 1;
        }
        if self.epoch > self.assignment_epoch {
            self.compute_target(topics);
        }

        let before = self.members[&member_id].assigned.clone();
        self.reconcile(&member_id, hb.owned.as_ref(), now);
        let m = &self.members[&member_id];
        let changed = m.assigned != before;
        Ok(HeartbeatReply {
            member_id: member_id.clone(),
            member_epoch: m.epoch,
            assignment: (hb.member_epoch == 0 || full_request || changed)
                .then(|| m.assigned.clone()),
        })
    }

    /// Resolves new regexes (from earlier heartbeats), and every regex when topics changed.
    fn resolve_regexes(&mut self, topics: &Topics) {
        let changed = !topics.keys().eq(self.resolved_against.iter());
        if changed {
            self.resolved_against = topics.keys().cloned().collect();
        }
        for m in self.members.values_mut() {
            if m.regex_pending || (changed && m.regex.is_some()) {
                m.resolve_regex(topics);
            }
        }
    }

    /// Adds or resets the member of a join (epoch 0); true when it is a new member.
    fn join(&mut self, hb: &Heartbeat, limits: &Limits, now: Instant) -> Result<bool, Refusal> {
        // Kafka refuses a join without RebalanceTimeoutMs or TopicPartitions. librdkafka 2.12
        // sometimes sends one, when it leaves and subscribes again before its leave has
        // settled (its own test 0045 does this), and then stops with a fatal error. A joining
        // member owns nothing whatever it says, and the rebalance timeout has a default, so
        // Fjord accepts those; it still needs a subscription.
        if hb.owned.as_ref().is_some_and(|o| !is_empty(o)) {
            return refuse(
                ResponseError::InvalidRequest,
                "TopicPartitions must be empty when (re-)joining.",
            );
        }
        if hb.subscribed_names.is_none()
            && hb.subscribed_regex.is_none()
            && !self.members.contains_key(&hb.member_id)
        {
            return refuse(
                ResponseError::InvalidRequest,
                "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
            );
        }
        if self.members.contains_key(&hb.member_id) {
            // A member that lost its state joins again under its id: it owns nothing now.
            let m = self.members.get_mut(&hb.member_id).expect("present");
            m.assigned.clear();
            m.revoking.clear();
            m.state = MemberState::Stable;
            m.revocation_deadline = None;
            m.previous_epoch = m.epoch;
            m.epoch = 0;
            return Ok(false);
        }
        // A static member coming back replaces its earlier incarnation and keeps its partitions.
        let mut inherited = None;
        if let Some(instance) = &hb.instance_id {
            if let Some(old) = self
                .members
                .values()
                .find(|m| m.instance_id.as_deref() == Some(instance.as_str()))
            {
                if old.epoch != STATIC_LEAVE_EPOCH {
                    return refuse(
                        ResponseError::UnreleasedInstanceId,
                        format!(
                            "Static member {} with instance id {instance} is not released yet.",
                            old.id
                        ),
                    );
                }
                let old_id = old.id.clone();
                let old = self.members.remove(&old_id).expect("present");
                let target = self.target.remove(&old_id);
                inherited = Some((old, target));
            }
        }
        if inherited.is_none() && self.members.len() >= limits.max_size {
            return refuse(
                ResponseError::GroupMaxSizeReached,
                format!(
                    "The consumer group has reached its maximum capacity of {} members.",
                    limits.max_size
                ),
            );
        }
        let mut member = Member {
            id: hb.member_id.clone(),
            instance_id: hb.instance_id.clone(),
            rack_id: hb.rack_id.clone(),
            client_id: hb.client_id.clone(),
            client_host: hb.client_host.clone(),
            epoch: 0,
            previous_epoch: -1,
            state: MemberState::Stable,
            rebalance_timeout: if hb.rebalance_timeout_ms > 0 {
                Duration::from_millis(hb.rebalance_timeout_ms as u64)
            } else {
                DEFAULT_REBALANCE_TIMEOUT
            },
            server_assignor: None,
            subscribed_names: BTreeSet::new(),
            subscribed_regex: None,
            regex: None,
            regex_topics: BTreeSet::new(),
            regex_pending: false,
            assigned: Assignment::new(),
            revoking: Assignment::new(),
            session_deadline: now + limits.session_timeout,
            revocation_deadline: None,
        };
        let inherited_none = inherited.is_none();
        if let Some((old, target)) = inherited {
            member.assigned = old.assigned;
            member.subscribed_names = old.subscribed_names;
            member.set_regex(old.subscribed_regex);
            member.regex_topics = old.regex_topics;
            member.regex_pending = old.regex_pending;
            member.server_assignor = old.server_assignor;
            member.epoch = old.previous_epoch;
            if let Some(t) = target {
                self.target.insert(member.id.clone(), t);
            }
        }
        let new = inherited_none;
        self.members.insert(member.id.clone(), member);
        Ok(new)
    }

    fn check_epoch(&self, hb: &Heartbeat) -> Result<(), Refusal> {
        let Some(m) = self.members.get(&hb.member_id) else {
            return refuse(
                ResponseError::UnknownMemberId,
                format!(
                    "Member {} is not a member of group {}.",
                    hb.member_id, self.id
                ),
            );
        };
        let e = hb.member_epoch;
        let lost_response =
            e == m.previous_epoch && hb.owned.as_ref().is_none_or(|o| is_subset(o, &m.assigned));
        if e > m.epoch || (e < m.epoch && !lost_response) {
            return refuse(
                ResponseError::FencedMemberEpoch,
                format!(
                    "The consumer group member has epoch {e}, the group coordinator knows it at {}. The member must abandon all its partitions and rejoin.",
                    m.epoch
                ),
            );
        }
        Ok(())
    }

    fn leave(&mut self, hb: &Heartbeat, now: Instant) -> Result<HeartbeatReply, Refusal> {
        let _ = now;
        // A static member is found by its instance id, and only the current incarnation may
        // leave: a late leave from an earlier one must not remove its successor.
        let id = match &hb.instance_id {
            Some(instance) => {
                match self
                    .members
                    .values()
                    .find(|m| m.instance_id.as_deref() == Some(instance.as_str()))
                {
                    Some(m) if m.id != hb.member_id => {
                        return refuse(
                            ResponseError::FencedInstanceId,
                            format!(
                                "Static member {} with instance id {instance} was replaced by {}.",
                                hb.member_id, m.id
                            ),
                        )
                    }
                    Some(m) => m.id.clone(),
                    None => {
                        return refuse(
                            ResponseError::UnknownMemberId,
                            format!("Instance id {instance} is unknown in group {}.", self.id),
                        )
                    }
                }
            }
            None => match self.members.get(&hb.member_id) {
                Some(m) => m.id.clone(),
                None => {
                    return refuse(
                        ResponseError::UnknownMemberId,
                        format!(
                            "Member {} is not a member of group {}.",
                            hb.member_id, self.id
                        ),
                    )
                }
            },
        };
        if hb.member_epoch == STATIC_LEAVE_EPOCH {
            // Its partitions wait for it (until its session times out): no rebalance.
            let m = self.members.get_mut(&id).expect("present");
            m.previous_epoch = m.epoch;
            m.epoch = STATIC_LEAVE_EPOCH;
        } else {
            self.remove(&id);
        }
        Ok(HeartbeatReply {
            member_id: hb.member_id.clone(),
            member_epoch: hb.member_epoch,
            assignment: None,
        })
    }

    fn remove(&mut self, id: &str) {
        if self.members.remove(id).is_some() {
            self.target.remove(id);
            self.epoch += 1;
        }
    }

    /// Expires members whose session or revocation ran out. Returns the expired member ids.
    pub fn tick(&mut self, now: Instant) -> Vec<String> {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                now >= m.session_deadline || m.revocation_deadline.is_some_and(|d| now >= d)
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            self.remove(id);
        }
        expired
    }

    fn subscription_snapshot(&self, topics: &Topics) -> Topics {
        let mut names = BTreeSet::new();
        for m in self.members.values() {
            names.extend(m.subscribed_topics(topics));
        }
        names
            .into_iter()
            .map(|n| (n.to_string(), topics[n]))
            .collect()
    }

    fn compute_target(&mut self, topics: &Topics) {
        // The assignor most members ask for; uniform when none does.
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.server_assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        self.assignor = votes
            .iter()
            .max_by_key(|(name, n)| (**n, std::cmp::Reverse(**name)))
            .map(|(name, _)| name.to_string())
            .unwrap_or_else(|| ASSIGNORS[0].to_string());
        let subscriptions: BTreeMap<String, BTreeSet<String>> = self
            .members
            .values()
            .map(|m| {
                (
                    m.id.clone(),
                    m.subscribed_topics(topics)
                        .into_iter()
                        .map(String::from)
                        .collect(),
                )
            })
            .collect();
        self.target = if self.assignor == "range" {
            assign_range(&subscriptions, topics)
        } else {
            assign_uniform(&subscriptions, topics, &self.target)
        };
        self.assignment_epoch = self.epoch;
    }

    /// Moves one member towards its target (Kafka's `CurrentAssignmentBuilder`).
    fn reconcile(&mut self, id: &str, owned: Option<&Assignment>, now: Instant) {
        let target = self.target.get(id).cloned().unwrap_or_default();
        let target_epoch = self.assignment_epoch;
        let m = &self.members[id];
        match m.state {
            MemberState::Stable | MemberState::UnreleasedPartitions => {
                if m.epoch == target_epoch && m.state == MemberState::Stable {
                    return;
                }
            }
            MemberState::UnrevokedPartitions => {
                let still_owned = owned.is_none_or(|o| !is_empty(&intersect(o, &m.revoking)));
                if still_owned && m.epoch == target_epoch {
                    return;
                }
                if still_owned {
                    // A newer target while revoking: revoke against that one instead.
                    let keep = intersect(&m.assigned, &target);
                    let revoke = minus(&m.assigned, &target);
                    let m = self.members.get_mut(id).expect("present");
                    m.assigned = keep;
                    for (t, ps) in revoke {
                        m.revoking.entry(t).or_default().extend(ps);
                    }
                    return;
                }
                let m = self.members.get_mut(id).expect("present");
                m.revoking.clear();
                m.revocation_deadline = None;
            }
        }
        let m = &self.members[id];
        let revoke = minus(&m.assigned, &target);
        // A member that no longer reports them (it rejoined, or let them go already) need not
        // be asked: they are free at once.
        let still_owned = owned.is_none_or(|o| !is_empty(&intersect(o, &revoke)));
        if !is_empty(&revoke) && still_owned {
            let keep = intersect(&m.assigned, &target);
            let m = self.members.get_mut(id).expect("present");
            m.assigned = keep;
            m.revoking = revoke;
            m.state = MemberState::UnrevokedPartitions;
            m.revocation_deadline = Some(now + m.rebalance_timeout);
            return;
        }
        // Everything it keeps is in its target: it moves to the target epoch and gets the new
        // partitions no other member still holds.
        let mut assigned = intersect(&m.assigned, &target);
        let mut unreleased = false;
        for (t, ps) in &target {
            for p in ps {
                if assigned.get(t).is_some_and(|a| a.contains(p)) {
                    continue;
                }
                let held = self.members.values().any(|o| o.id != id && o.owns(t, *p));
                if held {
                    unreleased = true;
                } else {
                    assigned.entry(*t).or_default().insert(*p);
                }
            }
        }
        let m = self.members.get_mut(id).expect("present");
        m.assigned = assigned;
        if m.epoch != target_epoch {
            m.previous_epoch = m.epoch;
            m.epoch = target_epoch;
        }
        m.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
    }
}

/// Every partition of every topic someone subscribes to, in (topic name, partition) order.
fn partitions_of<'a>(
    subscriptions: &'a BTreeMap<String, BTreeSet<String>>,
    topics: &'a Topics,
) -> Vec<(&'a str, Uuid, i32)> {
    let names: BTreeSet<&str> = subscriptions
        .values()
        .flat_map(|s| s.iter().map(|n| n.as_str()))
        .collect();
    names
        .into_iter()
        .filter_map(|n| topics.get(n).map(|(id, count)| (n, *id, *count)))
        .flat_map(|(n, id, count)| (0..count).map(move |p| (n, id, p)))
        .collect()
}

/// The range assignor: per topic, contiguous ranges over the subscribed members in id order,
/// the first members taking one more when the partitions do not divide evenly.
pub fn assign_range(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    topics: &Topics,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = subscriptions
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for (name, (id, count)) in topics {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, s)| s.contains(name))
            .map(|(m, _)| m)
            .collect();
        if members.is_empty() {
            continue;
        }
        let n = members.len() as i32;
        let (per, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, m) in members.iter().enumerate() {
            let take = per + i32::from((i as i32) < extra);
            if take > 0 {
                out.get_mut(*m)
                    .expect("member")
                    .entry(*id)
                    .or_default()
                    .extend(next..next + take);
            }
            next += take;
        }
    }
    out
}

/// The uniform assignor: balanced (no member has two partitions more than another member that
/// could take one of them) and sticky (a partition stays with its previous target owner when
/// balance allows).
pub fn assign_uniform(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    topics: &Topics,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let partitions = partitions_of(subscriptions, topics);
    let eligible = |name: &str| -> Vec<&String> {
        subscriptions
            .iter()
            .filter(|(_, s)| s.contains(name))
            .map(|(m, _)| m)
            .collect()
    };
    // owner of each partition, and partitions of each member
    let mut owner: BTreeMap<(Uuid, i32), String> = BTreeMap::new();
    let mut load: BTreeMap<&String, usize> = subscriptions.keys().map(|m| (m, 0)).collect();
    // 1. keep previous owners that still subscribe (step 3 restores balance)
    for (name, id, p) in &partitions {
        let prev = previous
            .iter()
            .find(|(_, a)| a.get(id).is_some_and(|ps| ps.contains(p)))
            .map(|(m, _)| m);
        if let Some(m) = prev {
            if let Some((key, l)) = load.iter_mut().find(|(k, _)| **k == m) {
                if subscriptions[*key].contains(*name) {
                    *l += 1;
                    owner.insert((*id, *p), m.clone());
                }
            }
        }
    }
    // 2. the rest to the least loaded eligible member
    for (name, id, p) in &partitions {
        if owner.contains_key(&(*id, *p)) {
            continue;
        }
        let candidates = eligible(name);
        if let Some(m) = candidates.iter().min_by_key(|m| (load[**m], (**m).clone())) {
            *load.get_mut(*m).expect("member") += 1;
            owner.insert((*id, *p), (*m).clone());
        }
    }
    // 3. move partitions from heavier to lighter eligible members until balanced
    loop {
        let mut moved = false;
        for (name, id, p) in partitions.iter().rev() {
            let from = owner[&(*id, *p)].clone();
            let lightest = eligible(name)
                .into_iter()
                .min_by_key(|m| (load[*m], (*m).clone()));
            if let Some(to) = lightest {
                if load[&from] > load[to] + 1 {
                    *load.get_mut(&from).expect("member") -= 1;
                    *load.get_mut(to).expect("member") += 1;
                    owner.insert((*id, *p), to.clone());
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
    let mut out: BTreeMap<String, Assignment> = subscriptions
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for ((id, p), m) in owner {
        out.get_mut(&m)
            .expect("member")
            .entry(id)
            .or_default()
            .insert(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(5),
            max_size: 100,
        }
    }

    fn topics(spec: &[(&str, i32)]) -> Topics {
        spec.iter()
            .map(|(n, c)| {
                (
                    n.to_string(),
                    (
                        Uuid::from_u128(n.len() as u128 * 7919 + n.as_bytes()[0] as u128),
                        *c,
                    ),
                )
            })
            .collect()
    }

    fn join(member: &str, subscribed: &[&str]) -> Heartbeat {
        Heartbeat {
            member_id: member.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 30_000,
            subscribed_names: Some(subscribed.iter().map(|s| s.to_string()).collect()),
            owned: Some(Assignment::new()),
            ..Default::default()
        }
    }

    fn beat(member: &str, epoch: i32, owned: &Assignment) -> Heartbeat {
        Heartbeat {
            member_id: member.into(),
            member_epoch: epoch,
            rebalance_timeout_ms: -1,
            owned: Some(owned.clone()),
            ..Default::default()
        }
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(|p| p.len()).sum()
    }

    /// A client that does what the coordinator says: owns what the last assignment said.
    struct Client {
        id: String,
        epoch: i32,
        owned: Assignment,
        /// After an error or a lost response, clients send a full request (with their
        /// subscription and rebalance timeout), which always gets the assignment back.
        full: bool,
    }

    impl Client {
        fn beat(&mut self, g: &mut ConsumerGroup, t: &Topics, now: Instant) -> HeartbeatReply {
            let r = g
                .heartbeat(beat(&self.id, self.epoch, &self.owned), t, &limits(), now)
                .expect("heartbeat accepted");
            self.epoch = r.member_epoch;
            if let Some(a) = &r.assignment {
                self.owned = a.clone();
            }
            r
        }
    }

    fn joined(g: &mut ConsumerGroup, id: &str, subs: &[&str], t: &Topics, now: Instant) -> Client {
        let r = g
            .heartbeat(join(id, subs), t, &limits(), now)
            .expect("join accepted");
        Client {
            id: id.into(),
            epoch: r.member_epoch,
            owned: r.assignment.expect("a join gets an assignment"),
            full: false,
        }
    }

    fn no_partition_owned_twice(clients: &[&Client]) {
        let mut seen = BTreeSet::new();
        for c in clients {
            for (t, ps) in &c.owned {
                for p in ps {
                    assert!(seen.insert((*t, *p)), "{t}-{p} owned twice");
                }
            }
        }
    }

    #[test]
    fn a_lone_member_gets_every_partition_at_once() {
        let t = topics(&[("orders", 4)]);
        let mut g = ConsumerGroup::new("g");
        let now = Instant::now();
        let a = joined(&mut g, "a", &["orders"], &t, now);
        assert_eq!(a.epoch, 1);
        assert_eq!(count(&a.owned), 4);
        assert_eq!(g.state_name(), "Stable");
    }

    #[test]
    fn a_second_member_gets_half_only_after_the_first_gives_it_up() {
        let t = topics(&[("orders", 4)]);
        let mut g = ConsumerGroup::new("g");
        let now = Instant::now();
        let mut a = joined(&mut g, "a", &["orders"], &t, now);
        let mut b = joined(&mut g, "b", &["orders"], &t, now);
        // b is at the new epoch but gets nothing a still owns.
        assert_eq!(b.epoch, 2);
        assert_eq!(count(&b.owned), 0);
        assert_eq!(g.state_name(), "Reconciling");
        no_partition_owned_twice(&[&a, &b]);
        // a is told to keep two; its epoch stays until it reports the others gone.
        let r = a.beat(&mut g, &t, now);
        assert_eq!((r.member_epoch, count(&a.owned)), (1, 2));
        no_partition_owned_twice(&[&a, &b]);
        let r = a.beat(&mut g, &t, now);
        assert_eq!(r.member_epoch, 2);
        b.beat(&mut g, &t, now);
        assert_eq!(count(&b.owned), 2);
        no_partition_owned_twice(&[&a, &b]);
        assert_eq!(g.state_name(), "Stable");
    }

    #[test]
    fn when_a_member_leaves_the_other_takes_everything() {
        let t = topics(&[("orders", 4)]);
        let mut g = ConsumerGroup::new("g");
        let now = Instant::now();
        let mut a = joined(&mut g, "a", &["orders"], &t, now);
        let mut b = joined(&mut g, "b", &["orders"], &t, now);
        for _ in 0..3 {
            a.beat(&mut g, &t, now);
            b.beat(&mut g, &t, now);
        }
        assert_eq!((count(&a.owned), count(&b.owned)), (2, 2));
        let mut leave = beat("b", LEAVE_EPOCH, &b.owned);
        leave.owned = None;
        assert_eq!(
            g.heartbeat(leave, &t, &limits(), now).unwrap().member_epoch,
            -1
        );
        a.beat(&mut g, &t, now);
        assert_eq!(count(&a.owned), 4);
        assert_eq!(g.members.len(), 1);
    }

    #[test]
    fn a_silent_member_expires_and_one_that_never_revokes_is_fenced() {
        let t = topics(&[("orders", 4)]);
        let mut g = ConsumerGroup::new("g");
        let now = Instant::now();
        let mut a = joined(&mut g, "a", &["orders"], &t, now);
        let _b = joined(&mut g, "b", &["orders"], &t, now);
        // a is asked to revoke two partitions but keeps reporting them.
        let stubborn = a.owned.clone();
        a.beat(&mut g, &t, now);
        g.heartbeat(beat("a", a.epoch, &stubborn), &t, &limits(), now)
            .unwrap();
        assert_eq!(g.members["a"].state, MemberState::UnrevokedPartitions);
        // b's session runs past a's revocation timeout (30 s) but not its own (45 s)
        g.heartbeat(
            beat("b", 2, &Assignment::new()),
            &t,
            &limits(),
            now + Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(g.tick(now + Duration::from_secs(31)), vec!["a".to_string()]);
        assert_eq!(g.tick(now + Duration::from_secs(66)), vec!["b".to_string()]);
        assert!(g.is_empty());
        let err = g
            .heartbeat(beat("a", 1, &Assignment::new()), &t, &limits(), now)
            .unwrap_err();
        assert_eq!(err.0, ResponseError::UnknownMemberId);
    }

    #[test]
    fn epochs_from_the_future_are_fenced_and_a_lost_response_is_forgiven() {
        let t = topics(&[("orders", 2)]);
        let mut g = ConsumerGroup::new("g");
        let now = Instant::now();
        let a = joined(&mut g, "a", &["orders"], &t, now);
        let err = g
            .heartbeat(beat("a", 7, &a.owned), &t, &limits(), now)
            .unwrap_err();
        assert_eq!(err.0, ResponseError::FencedMemberEpoch);
        // The join's answer (epoch 1) was lost: the client repeats with its previous epoch 0 ...
        // which is a join; a client at epoch 1 whose answer moving it to 2 was lost may come
        // back with 1.
        let _b = joined(&mut g, "b", &["orders"], &t, now);
        let mut a = a;
        let r = a.beat(&mut g, &t, now); // told to revoke one, epoch stays 1
        assert_eq!(r.member_epoch, 1);
        let r = a.beat(&mut g, &t, now); // moves to 2
        assert_eq!(r.member_epoch, 2);
        let again = g
            .heartbeat(beat("a", 1, &a.owned), &t, &limits(), now)
            .unwrap();
        assert_eq!(again.member_epoch, 2);
    }

    #[test]
    fn a_bad_first_heartbeat_is_refused_with_a_reason() {
        let t = topics(&[("orders", 2)]);
        let mut g = ConsumerGroup::new("g");
        let now = Instant::now();
        let mut hb = join("a", &["orders"]);
        hb.subscribed_names = None;
        assert_eq!(
            g.heartbeat(hb, &t, &limits(), now).unwrap_err().0,
            ResponseError::InvalidRequest
        );
        let mut hb = join("a", &["orders"]);
        hb.server_assignor = Some("sticky".into());
        assert_eq!(
            g.heartbeat(hb, &t, &limits(), now).unwrap_err().0,
            ResponseError::UnsupportedAssignor
        );
        let mut hb = join("", &["orders"]);
        hb.member_id = String::new();
        assert_eq!(
            g.heartbeat(hb, &t, &limits(), now).unwrap_err().0,
            ResponseError::InvalidRequest
        );
        let mut hb = join("a", &["orders"]);
        hb.owned = Some([(t["orders"].0, [0].into())].into());
        assert_eq!(
            g.heartbeat(hb, &t, &limits(), now).unwrap_err().0,
            ResponseError::InvalidRequest,
            "a joining member cannot own partitions"
        );
        assert!(g.is_empty());
    }

    #[test]
    fn a_join_without_rebalance_timeout_or_owned_partitions_is_accepted() {
        // librdkafka 2.12 sends such a join when it subscribes again right after leaving.
        let t = topics(&[("orders", 2)]);
        let mut g = ConsumerGroup::new("g");
        let now = Instant::now();
        let mut hb = join("a", &["orders"]);
        hb.rebalance_timeout_ms = -1;
        hb.owned = None;
        let r = g.heartbeat(hb, &t, &limits(), now).unwrap();
        assert_eq!((r.member_epoch, count(&r.assignment.unwrap())), (1, 2));
        assert_eq!(g.members["a"].rebalance_timeout, DEFAULT_REBALANCE_TIMEOUT);
    }

    #[test]
    fn new_partitions_and_new_topics_matching_a_regex_are_assigned() {
        let mut t = topics(&[("orders", 2), ("payments", 1)]);
        let mut g = ConsumerGroup::new("g");
        let now = Instant::now();
        // Literal topics are assigned at once; a new regex is resolved after the heartbeat
        // that brought it, as Kafka does (librdkafka's 0045 test expects exactly this).
        let mut hb = join("a", &["payments"]);
        hb.subscribed_regex = Some("ord.*".into());
        let r = g.heartbeat(hb, &t, &limits(), now).unwrap();
        let mut a = Client {
            id: "a".into(),
            epoch: r.member_epoch,
            owned: r.assignment.unwrap(),
            full: false,
        };
        assert_eq!(count(&a.owned), 1);
        a.beat(&mut g, &t, now);
        assert_eq!(count(&a.owned), 3);
        t.get_mut("orders").unwrap().1 = 4;
        t.insert("orders-eu".into(), (Uuid::from_u128(99), 3));
        t.insert("other".into(), (Uuid::from_u128(98), 3));
        a.beat(&mut g, &t, now);
        assert_eq!(count(&a.owned), 8);
        assert_eq!(a.epoch, 3);
    }

    #[test]
    fn repeating_a_full_request_with_an_empty_regex_changes_nothing() {
        let t = topics(&[("orders", 2)]);
        let mut g = ConsumerGroup::new("g");
        let now = Instant::now();
        let a = joined(&mut g, "a", &["orders"], &t, now);
        // librdkafka sends an empty regex and its topic names in every full request.
        let mut full = beat("a", a.epoch, &a.owned);
        full.rebalance_timeout_ms = 30_000;
        full.subscribed_names = Some(vec!["orders".into()]);
        full.subscribed_regex = Some(String::new());
        for _ in 0..3 {
            let r = g.heartbeat(full.clone(), &t, &limits(), now).unwrap();
            assert_eq!(r.member_epoch, 1);
            assert_eq!(
                r.assignment.as_ref(),
                Some(&a.owned),
                "a full request gets the assignment"
            );
        }
        assert_eq!(g.epoch, 1);
        let mut partial = beat("a", 1, &a.owned);
        partial.owned = None;
        assert_eq!(
            g.heartbeat(partial, &t, &limits(), now).unwrap().assignment,
            None
        );
    }

    #[test]
    fn a_static_member_comes_back_to_its_partitions_without_a_rebalance() {
        let t = topics(&[("orders", 4)]);
        let mut g = ConsumerGroup::new("g");
        let now = Instant::now();
        let mut hb = join("a1", &["orders"]);
        hb.instance_id = Some("pod-0".into());
        g.heartbeat(hb, &t, &limits(), now).unwrap();
        let mut b = joined(&mut g, "b", &["orders"], &t, now);
        let mut a = Client {
            id: "a1".into(),
            epoch: 1,
            owned: Assignment::new(),
            full: false,
        };
        a.owned = g.members["a1"].assigned.clone();
        for _ in 0..3 {
            a.beat(&mut g, &t, now);
            b.beat(&mut g, &t, now);
        }
        let kept = a.owned.clone();
        let epoch = g.epoch;
        let mut leave = beat("a1", STATIC_LEAVE_EPOCH, &kept);
        leave.instance_id = Some("pod-0".into());
        g.heartbeat(leave, &t, &limits(), now).unwrap();
        // Back with a new member id, before its session ran out.
        let mut hb = join("a2", &["orders"]);
        hb.instance_id = Some("pod-0".into());
        let r = g.heartbeat(hb, &t, &limits(), now).unwrap();
        assert_eq!(r.assignment.unwrap(), kept);
        assert_eq!(r.member_epoch, a.epoch, "it carries on at its epoch");
        assert_eq!(g.epoch, epoch, "no rebalance");
        // A late leave from the old incarnation does not remove the new one.
        let mut late = beat("a1", LEAVE_EPOCH, &kept);
        late.instance_id = Some("pod-0".into());
        assert_eq!(
            g.heartbeat(late, &t, &limits(), now).unwrap_err().0,
            ResponseError::FencedInstanceId
        );
        assert!(g.members.contains_key("a2"));
        // Another instance with the same id while it is active is refused.
        let mut hb = join("a3", &["orders"]);
        hb.instance_id = Some("pod-0".into());
        assert_eq!(
            g.heartbeat(hb, &t, &limits(), now).unwrap_err().0,
            ResponseError::UnreleasedInstanceId
        );
    }

    #[test]
    fn a_static_member_whose_target_changed_while_away_is_not_asked_to_revoke() {
        let t = topics(&[("orders", 6)]);
        let mut g = ConsumerGroup::new("g");
        let now = Instant::now();
        let mut hb = join("a1", &["orders"]);
        hb.instance_id = Some("pod-0".into());
        hb.server_assignor = Some("range".into());
        let r = g.heartbeat(hb, &t, &limits(), now).unwrap();
        assert_eq!(count(r.assignment.as_ref().unwrap()), 6);
        let mut leave = beat("a1", STATIC_LEAVE_EPOCH, r.assignment.as_ref().unwrap());
        leave.instance_id = Some("pod-0".into());
        g.heartbeat(leave, &t, &limits(), now).unwrap();
        // Someone joins meanwhile: the target of the absent member shrinks.
        let mut b = joined(&mut g, "b", &["orders"], &t, now);
        // It comes back owning nothing (a join reports no partitions).
        let mut hb = join("a2", &["orders"]);
        hb.instance_id = Some("pod-0".into());
        let r = g.heartbeat(hb, &t, &limits(), now).unwrap();
        assert!(r.member_epoch > 0, "never epoch 0 in a reply");
        let mut a = Client {
            id: "a2".into(),
            epoch: r.member_epoch,
            owned: r.assignment.unwrap(),
            full: false,
        };
        for _ in 0..3 {
            a.beat(&mut g, &t, now);
            b.beat(&mut g, &t, now);
        }
        assert_eq!((count(&a.owned), count(&b.owned)), (3, 3));
        no_partition_owned_twice(&[&a, &b]);
    }

    #[test]
    fn uniform_keeps_partitions_when_an_unrelated_member_joins() {
        let t = topics(&[("x", 2), ("z", 20)]);
        let subs: BTreeMap<String, BTreeSet<String>> = [("a", "z"), ("b", "z"), ("c", "x")]
            .iter()
            .map(|(m, topic)| (m.to_string(), [topic.to_string()].into()))
            .collect();
        let before = assign_uniform(&subs, &t, &BTreeMap::new());
        let mut more = subs.clone();
        more.insert("d".into(), ["x".to_string()].into());
        let after = assign_uniform(&more, &t, &before);
        assert_eq!(after["a"], before["a"]);
        assert_eq!(after["b"], before["b"]);
        assert_eq!((count(&after["c"]), count(&after["d"])), (1, 1));
    }

    /// One heartbeat of a well-behaved client: it takes what it is told, joins again under its
    /// id when fenced (after lost responses), and is gone when the group forgot it.
    fn drive(g: &mut ConsumerGroup, c: &mut Client, t: &Topics, now: Instant) -> bool {
        let mut hb = beat(&c.id, c.epoch, &c.owned);
        if std::mem::take(&mut c.full) {
            hb.rebalance_timeout_ms = 30_000;
            hb.subscribed_names = Some(g.members[&c.id].subscribed_names.iter().cloned().collect());
        }
        match g.heartbeat(hb, t, &limits(), now) {
            Ok(r) => {
                assert!(r.member_epoch > 0, "epoch 0 in a reply");
                c.epoch = r.member_epoch;
                if let Some(a) = r.assignment {
                    c.owned = a;
                }
                true
            }
            Err(Refusal(ResponseError::UnknownMemberId, _)) => false,
            Err(Refusal(ResponseError::FencedMemberEpoch, _)) => {
                let subs: Vec<String> = g.members[&c.id].subscribed_names.iter().cloned().collect();
                let subs: Vec<&str> = subs.iter().map(|s| s.as_str()).collect();
                let r = g.heartbeat(join(&c.id, &subs), t, &limits(), now).unwrap();
                assert!(r.member_epoch > 0);
                c.epoch = r.member_epoch;
                c.owned = r.assignment.unwrap();
                true
            }
            Err(e) => panic!("{e:?}"),
        }
    }

    /// Random joins, leaves, lost responses, expiries and topic growth: no two live members
    /// ever own one partition, no reply carries epoch 0, and a quiet group converges.
    #[test]
    fn random_histories_never_hand_out_a_partition_twice() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for round in 0..200 {
            let mut t = topics(&[("orders", 3), ("payments", 5)]);
            let mut g = ConsumerGroup::new("g");
            let start = Instant::now();
            let mut now = start;
            let mut clients: Vec<Client> = Vec::new();
            let mut next_id = 0;
            let assignor = ["uniform", "range"][round % 2];
            for _ in 0..150 {
                match rand(10) {
                    0 if clients.len() < 5 => {
                        next_id += 1;
                        let id = format!("m{next_id}");
                        let subs: &[&str] =
                            [&["orders"][..], &["payments"], &["orders", "payments"]][rand(3)];
                        let mut hb = join(&id, subs);
                        hb.server_assignor = Some(assignor.into());
                        let r = g.heartbeat(hb, &t, &limits(), now).unwrap();
                        assert!(r.member_epoch > 0);
                        clients.push(Client {
                            id,
                            epoch: r.member_epoch,
                            owned: r.assignment.unwrap(),
                            full: false,
                        });
                    }
                    1 if !clients.is_empty() => {
                        let c = clients.remove(rand(clients.len()));
                        let mut hb = beat(&c.id, LEAVE_EPOCH, &c.owned);
                        hb.owned = None;
                        g.heartbeat(hb, &t, &limits(), now).unwrap();
                    }
                    2 if !clients.is_empty() => {
                        // A heartbeat whose response is lost.
                        let i = rand(clients.len());
                        let c = &mut clients[i];
                        let _ = g.heartbeat(beat(&c.id, c.epoch, &c.owned), &t, &limits(), now);
                        c.full = true;
                    }
                    3 => {
                        now += Duration::from_secs(rand(40) as u64);
                        g.tick(now);
                        clients.retain(|c| g.members.contains_key(&c.id));
                    }
                    4 => {
                        t.get_mut("payments").unwrap().1 += 1;
                    }
                    _ if !clients.is_empty() => {
                        let i = rand(clients.len());
                        if !drive(&mut g, &mut clients[i], &t, now) {
                            clients.remove(i);
                        }
                    }
                    _ => {}
                }
                no_partition_owned_twice(&clients.iter().collect::<Vec<_>>());
            }
            // Quiet: everyone heartbeats a few times and the group is stable, every partition
            // of a subscribed topic owned.
            for _ in 0..4 {
                clients.retain_mut(|c| drive(&mut g, c, &t, now));
            }
            if !clients.is_empty() {
                assert_eq!(
                    g.state_name(),
                    "Stable",
                    "round {round}: epoch {} target {:?} members {:#?}",
                    g.epoch,
                    g.target,
                    g.members
                        .values()
                        .map(|m| (&m.id, m.epoch, m.state, &m.assigned, &m.revoking))
                        .collect::<Vec<_>>()
                );
                let owned: usize = clients.iter().map(|c| count(&c.owned)).sum();
                let subscribed: i32 = g.subscribed.values().map(|(_, n)| n).sum();
                assert_eq!(owned, subscribed as usize, "round {round}");
            }
        }
    }

    #[test]
    fn uniform_is_balanced_and_sticky_and_range_is_contiguous() {
        let t = topics(&[("a", 5), ("bb", 3)]);
        let subs = |ms: &[&str]| -> BTreeMap<String, BTreeSet<String>> {
            ms.iter()
                .map(|m| (m.to_string(), ["a".to_string(), "bb".to_string()].into()))
                .collect()
        };
        let one = assign_uniform(&subs(&["m1", "m2"]), &t, &BTreeMap::new());
        assert_eq!(one.values().map(count).collect::<Vec<_>>(), vec![4, 4]);
        let two = assign_uniform(&subs(&["m1", "m2", "m3"]), &t, &one);
        let loads: Vec<usize> = two.values().map(count).collect();
        assert_eq!(loads.iter().sum::<usize>(), 8);
        assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1);
        // m1 and m2 keep everything they still have (only moves to m3).
        for m in ["m1", "m2"] {
            assert!(
                is_subset(&two[m], &one[m]),
                "{m} lost a partition it could keep"
            );
        }
        let range = assign_range(&subs(&["m1", "m2"]), &t);
        let a_id = t["a"].0;
        assert_eq!(range["m1"][&a_id], [0, 1, 2].into());
        assert_eq!(range["m2"][&a_id], [3, 4].into());
    }
}
