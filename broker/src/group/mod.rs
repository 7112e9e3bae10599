//! The group coordinator: consumer groups (the classic protocol, and the consumer protocol of
//! KIP-848 in [`consumer`]) and committed offsets.
//!
//! Membership lives in [`state::Group`] state machines; this layer parks JoinGroup/SyncGroup
//! requests on oneshot channels until the state machine releases them, runs the timer tick, and
//! persists committed offsets in the internal `__consumer_offsets` topic using Apache Kafka's
//! record schema (OffsetCommitKey v1, OffsetCommitValue v3), so offsets survive restarts. The
//! partition of a group is `abs(javaHash(group)) % offsets.topic.num.partitions`, as in Kafka.
//! Member state is not persisted: after a restart members rejoin, as they do after a
//! coordinator failover in Kafka.
//!
//! A node coordinates the groups of the offsets partitions it leads, and only those
//! ([`GroupCoordinator::sync_leadership`]): it loads a partition's offsets when it becomes its
//! leader and forgets its groups when it stops being one; everything else is NOT_COORDINATOR.
//! A commit is answered, and becomes visible to OffsetFetch, once its records are on every
//! in-sync replica of the offsets partition (the high watermark passed them).

pub mod consumer;
pub mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::RecordBatchDecoder;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::config::BrokerConfig;
use crate::log::batch::{build_batch, BatchHeader, KeyValue};
use crate::log::now_ms;
use crate::metadata::MetadataImage;
use crate::replica::{Partition, ReplicaManager, TopicPartition};
use consumer::{ConsumerGroup, Heartbeat, HeartbeatReply, Refusal, Topics};
use state::{Answer, Group, JoinRequest, JoinResult, Limits, Reply, SyncResult};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

#[derive(Default)]
struct Inner {
    groups: HashMap<String, Group>,
    consumer_groups: HashMap<String, ConsumerGroup>,
    offsets: HashMap<String, BTreeMap<TopicPartition, CommittedOffset>>,
    /// The offsets-log offset of the record behind each visible committed offset: replicated
    /// commits are applied in log order even when their waits end out of order.
    written_at: HashMap<(String, TopicPartition), i64>,
    joins: HashMap<(String, String), oneshot::Sender<JoinResult>>,
    syncs: HashMap<(String, String), oneshot::Sender<SyncResult>>,
}

impl Inner {
    fn deliver(&mut self, group: &str, replies: Vec<Reply>) {
        for r in replies {
            tracing::debug!(group, reply = ?r, "released");
            match r {
                Reply::Join(member, result) => {
                    if let Some(tx) = self.joins.remove(&(group.to_string(), member)) {
                        let _ = tx.send(result);
                    }
                }
                Reply::Sync(member, result) => {
                    if let Some(tx) = self.syncs.remove(&(group.to_string(), member)) {
                        let _ = tx.send(result);
                    }
                }
            }
        }
    }
}

/// A written offsets batch that a commit waits for before it is answered.
pub struct PendingWrite {
    partition: Arc<Partition>,
    last_offset: i64,
    leader_epoch: i32,
}

pub struct GroupCoordinator {
    inner: Mutex<Inner>,
    /// The offsets partitions this node leads and has loaded: the groups it coordinates.
    active: Mutex<BTreeSet<i32>>,
    /// Serializes leadership changes (a load reads the log without holding `inner`).
    leadership: Mutex<()>,
    node_id: i32,
    /// How long a commit waits for its records to be replicated (`offsets.commit.timeout.ms`).
    commit_timeout: Duration,
    limits: Limits,
    consumer_limits: consumer::Limits,
    offsets_partitions: i32,
    replicas: Arc<ReplicaManager>,
}

/// Records where tombstones were written, so a commit appended before them whose replication
/// wait ends after them does not bring the deleted offsets back.
fn mark_written(
    inner: &mut Inner,
    group: &str,
    entries: &[(TopicPartition, Option<CommittedOffset>)],
    written: Option<&PendingWrite>,
) {
    let Some(w) = written else { return };
    for (tp, _) in entries {
        inner
            .written_at
            .insert((group.to_string(), tp.clone()), w.last_offset);
    }
}

/// What a commit answers when its offsets append fails, as Kafka's group coordinator maps it:
/// a replication problem is COORDINATOR_NOT_AVAILABLE (retriable), a lost leadership or log
/// directory NOT_COORDINATOR (the client looks the coordinator up again).
fn append_error(code: i16) -> ResponseError {
    use ResponseError as E;
    match E::try_from_code(code) {
        Some(
            E::UnknownTopicOrPartition
            | E::NotEnoughReplicas
            | E::NotEnoughReplicasAfterAppend
            | E::RequestTimedOut,
        ) => E::CoordinatorNotAvailable,
        Some(E::NotLeaderOrFollower | E::KafkaStorageError) => E::NotCoordinator,
        Some(E::MessageTooLarge | E::RecordListTooLarge | E::InvalidFetchSize) => {
            E::InvalidCommitOffsetSize
        }
        Some(other) => other,
        None => E::UnknownServerError,
    }
}

/// Java's `String.hashCode`, which Kafka uses to place a group on an offsets partition.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// A summary of a group for DescribeGroups / ListGroups.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    /// (member id, instance id, client id, client host, metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
    /// A group of the consumer protocol (KIP-848); `members` is then empty.
    pub is_consumer_group: bool,
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

fn get_str(b: &mut Bytes) -> Option<String> {
    if b.remaining() < 2 {
        return None;
    }
    let n = b.get_i16();
    if n < 0 {
        return Some(String::new());
    }
    if b.remaining() < n as usize {
        return None;
    }
    let s = b.split_to(n as usize);
    String::from_utf8(s.to_vec()).ok()
}

/// OffsetCommitKey v1: group, topic, partition.
fn offset_key(group: &str, tp: &TopicPartition) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(1);
    put_str(&mut b, group);
    put_str(&mut b, &tp.topic);
    b.put_i32(tp.partition);
    b.freeze()
}

/// OffsetCommitValue v3: offset, leader epoch, metadata, commit timestamp.
fn offset_value(o: &CommittedOffset) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    b.put_i64(o.offset);
    b.put_i32(o.leader_epoch);
    put_str(&mut b, &o.metadata);
    b.put_i64(o.commit_timestamp);
    b.freeze()
}

fn parse_offset_record(
    key: &mut Bytes,
    value: Option<&mut Bytes>,
) -> Option<(String, TopicPartition, Option<CommittedOffset>)> {
    if key.remaining() < 2 {
        return None;
    }
    let version = key.get_i16();
    if version > 1 {
        return None; // Group metadata records (v2) are not written by Fjord.
    }
    let group = get_str(key)?;
    let topic = get_str(key)?;
    if key.remaining() < 4 {
        return None;
    }
    let tp = TopicPartition::new(topic, key.get_i32());
    let Some(v) = value else {
        return Some((group, tp, None));
    };
    if v.remaining() < 2 {
        return None;
    }
    let vv = v.get_i16();
    if v.remaining() < 8 {
        return None;
    }
    let offset = v.get_i64();
    let leader_epoch = if vv >= 3 && v.remaining() >= 4 {
        v.get_i32()
    } else {
        -1
    };
    let metadata = get_str(v).unwrap_or_default();
    let commit_timestamp = if v.remaining() >= 8 { v.get_i64() } else { 0 };
    Some((
        group,
        tp,
        Some(CommittedOffset {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp,
        }),
    ))
}

impl GroupCoordinator {
    pub fn new(config: &BrokerConfig, replicas: Arc<ReplicaManager>) -> Self {
        GroupCoordinator {
            inner: Mutex::new(Inner::default()),
            active: Mutex::new(BTreeSet::new()),
            leadership: Mutex::new(()),
            node_id: config.node_id,
            commit_timeout: Duration::from_millis(config.offsets_commit_timeout_ms),
            limits: Limits {
                min_session_timeout_ms: config.group_min_session_timeout_ms,
                max_session_timeout_ms: config.group_max_session_timeout_ms,
                initial_rebalance_delay: Duration::from_millis(
                    config.group_initial_rebalance_delay_ms,
                ),
                max_size: config.group_max_size as usize,
            },
            consumer_limits: consumer::Limits {
                session_timeout: Duration::from_millis(config.group_consumer_session_timeout_ms),
                heartbeat_interval: Duration::from_millis(
                    config.group_consumer_heartbeat_interval_ms,
                ),
                max_size: config.group_consumer_max_size as usize,
            },
            offsets_partitions: config.offsets_topic_num_partitions,
            replicas,
        }
    }

    pub fn partition_for(&self, group: &str) -> i32 {
        (java_string_hash(group) & 0x7fff_ffff) % self.offsets_partitions
    }

    /// NOT_COORDINATOR unless this node coordinates the group (leads its offsets partition).
    pub fn check_coordinator(&self, group: &str) -> Result<(), ResponseError> {
        if self.active.lock().contains(&self.partition_for(group)) {
            Ok(())
        } else {
            Err(ResponseError::NotCoordinator)
        }
    }

    /// Follows the leadership of the offsets partitions in `image`: loads the offsets of each
    /// partition newly led here, and forgets the groups of each one no longer led here (their
    /// waiting joins and syncs get NOT_COORDINATOR, as after a coordinator move in Kafka).
    /// Returns how many offset records were loaded.
    pub fn sync_leadership(&self, image: &MetadataImage) -> crate::error::Result<usize> {
        let _one_at_a_time = self.leadership.lock();
        let led: BTreeSet<i32> = image
            .topics
            .get(OFFSETS_TOPIC)
            .map(|t| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.leader == self.node_id)
                    .map(|(i, _)| i as i32)
                    .filter(|i| self.replicas.get(OFFSETS_TOPIC, *i).is_some())
                    .collect()
            })
            .unwrap_or_default();
        let current = self.active.lock().clone();
        for p in current.difference(&led) {
            self.active.lock().remove(p);
            self.resign(*p);
            tracing::info!(
                partition = p,
                "no longer the group coordinator of this offsets partition"
            );
        }
        let mut loaded = 0;
        for p in led.difference(&current) {
            loaded += self.load_partition(*p)?;
            self.active.lock().insert(*p);
        }
        Ok(loaded)
    }

    /// Forgets every group of an offsets partition this node no longer leads.
    fn resign(&self, partition: i32) {
        let mut inner = self.inner.lock();
        let mine = |g: &str| self.partition_for(g) == partition;
        inner.groups.retain(|g, _| !mine(g));
        inner.consumer_groups.retain(|g, _| !mine(g));
        inner.offsets.retain(|g, _| !mine(g));
        inner.written_at.retain(|(g, _), _| !mine(g));
        let joins: Vec<_> = inner
            .joins
            .keys()
            .filter(|(g, _)| mine(g))
            .cloned()
            .collect();
        for key in joins {
            if let Some(tx) = inner.joins.remove(&key) {
                let _ = tx.send(JoinResult::error(ResponseError::NotCoordinator, &key.1));
            }
        }
        let syncs: Vec<_> = inner
            .syncs
            .keys()
            .filter(|(g, _)| mine(g))
            .cloned()
            .collect();
        for key in syncs {
            if let Some(tx) = inner.syncs.remove(&key) {
                let _ = tx.send(SyncResult::error(ResponseError::NotCoordinator));
            }
        }
    }

    /// Rebuilds the committed offsets of one offsets partition from its log, to its end (as the
    /// new leader, its log is what followers will converge to).
    fn load_partition(&self, p: i32) -> crate::error::Result<usize> {
        let mut loaded = 0;
        let mut inner = self.inner.lock();
        {
            let Some(part) = self.replicas.get(OFFSETS_TOPIC, p) else {
                return Ok(0);
            };
            let mut offset = 0;
            let end = part.offsets().log_end;
            while offset < end {
                let r = part.read_to(offset, 1 << 20, end)?;
                if r.records.is_empty() {
                    break;
                }
                // Advance by the batch headers, not the records: a compacted batch can end
                // short of its last offset, and a read from there returns the same batch.
                let before = offset;
                let mut pos = 0;
                while let Some(h) = r.records.get(pos..).and_then(BatchHeader::parse) {
                    let end = pos.saturating_add(h.total_len()).min(r.records.len());
                    offset = offset.max(h.last_offset().saturating_add(1));
                    let mut one = r.records.slice(pos..end);
                    pos = end;
                    let set = match RecordBatchDecoder::decode(&mut one) {
                        Ok(set) => set,
                        Err(e) => {
                            tracing::warn!(partition = p, offset = h.base_offset, error = %e, "skipping an undecodable offsets batch");
                            continue;
                        }
                    };
                    for rec in set.records {
                        let Some(mut key) = rec.key else { continue };
                        let mut value = rec.value;
                        if let Some((group, tp, o)) = parse_offset_record(&mut key, value.as_mut())
                        {
                            let at = (group.clone(), tp.clone());
                            let g = inner.offsets.entry(group).or_default();
                            match o {
                                Some(o) => {
                                    g.insert(tp, o);
                                    inner.written_at.insert(at, rec.offset);
                                }
                                None => {
                                    g.remove(&tp);
                                    inner.written_at.remove(&at);
                                }
                            }
                            loaded += 1;
                        }
                    }
                }
                if offset <= before {
                    tracing::warn!(
                        partition = p,
                        offset,
                        "the offsets log makes no progress here; loaded up to this offset"
                    );
                    break;
                }
            }
        }
        inner.offsets.retain(|_, m| !m.is_empty());
        Ok(loaded)
    }

    /// Appends offset records (value `None` deletes) for one group to its offsets partition.
    fn persist(
        &self,
        group: &str,
        entries: &[(TopicPartition, Option<CommittedOffset>)],
    ) -> Result<Option<PendingWrite>, ResponseError> {
        if entries.is_empty() {
            return Ok(None);
        }
        let part = self
            .replicas
            .get(OFFSETS_TOPIC, self.partition_for(group))
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        let keys: Vec<Bytes> = entries
            .iter()
            .map(|(tp, _)| offset_key(group, tp))
            .collect();
        let values: Vec<Option<Bytes>> = entries
            .iter()
            .map(|(_, o)| o.as_ref().map(offset_value))
            .collect();
        let kv: Vec<KeyValue<'_>> = keys
            .iter()
            .zip(values.iter())
            .map(|(k, v)| (Some(k.as_ref()), v.as_deref()))
            .collect();
        let batch = build_batch(0, now_ms(), &kv);
        match part.append(&batch, Some(usize::MAX), -1) {
            Ok(o) if o.error == 0 => Ok(Some(PendingWrite {
                partition: part,
                last_offset: o.last_offset,
                leader_epoch: o.leader_epoch,
            })),
            Ok(o) => {
                tracing::warn!(group, code = o.error, "offsets append refused");
                Err(append_error(o.error))
            }
            Err(e) => {
                tracing::error!(group, error = %e, "offsets append failed");
                Err(ResponseError::KafkaStorageError)
            }
        }
    }

    pub async fn join(&self, group_id: &str, req: JoinRequest) -> JoinResult {
        if let Err(e) = self.check_coordinator(group_id) {
            return JoinResult::error(e, &req.member_id);
        }
        let rx = {
            let mut inner = self.inner.lock();
            if inner
                .consumer_groups
                .get(group_id)
                .is_some_and(|g| !g.is_empty())
            {
                return JoinResult::error(ResponseError::InconsistentGroupProtocol, &req.member_id);
            }
            // An empty consumer group becomes a classic one (its offsets stay).
            inner.consumer_groups.remove(group_id);
            let group = inner
                .groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id));
            let member = req.member_id.clone();
            let (answer, replies) = group.join(req, &self.limits, Instant::now());
            tracing::debug!(group = group_id, %member, ?answer, state = group.state.name(),
                generation = group.generation, released = replies.len(), "join");
            inner.deliver(group_id, replies);
            match answer {
                Answer::Now(r) => return r,
                Answer::Parked { member_id } => {
                    let (tx, rx) = oneshot::channel();
                    inner
                        .joins
                        .insert((group_id.to_string(), member_id.clone()), tx);
                    (rx, member_id)
                }
            }
        };
        rx.0.await
            .unwrap_or_else(|_| JoinResult::error(ResponseError::UnknownMemberId, &rx.1))
    }

    pub async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        if let Err(e) = self.check_coordinator(group_id) {
            return SyncResult::error(e);
        }
        let rx = {
            let mut inner = self.inner.lock();
            let Some(group) = inner.groups.get_mut(group_id) else {
                return SyncResult::error(ResponseError::UnknownMemberId);
            };
            let (answer, replies) = group.sync(
                member_id,
                instance_id,
                generation,
                assignments,
                Instant::now(),
            );
            tracing::debug!(
                group = group_id,
                member = member_id,
                generation,
                ?answer,
                state = group.state.name(),
                released = replies.len(),
                "sync"
            );
            inner.deliver(group_id, replies);
            match answer {
                Answer::Now(r) => return r,
                Answer::Parked { member_id } => {
                    let (tx, rx) = oneshot::channel();
                    inner.syncs.insert((group_id.to_string(), member_id), tx);
                    rx
                }
            }
        };
        rx.await
            .unwrap_or_else(|_| SyncResult::error(ResponseError::RebalanceInProgress))
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> i16 {
        if let Err(e) = self.check_coordinator(group_id) {
            return e.code();
        }
        let mut inner = self.inner.lock();
        match inner.groups.get_mut(group_id) {
            Some(g) => {
                let code = g.heartbeat(member_id, instance_id, generation, Instant::now());
                tracing::debug!(
                    group = group_id,
                    member = member_id,
                    generation,
                    code,
                    state = g.state.name(),
                    "heartbeat"
                );
                code
            }
            None => ResponseError::UnknownMemberId.code(),
        }
    }

    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> (i16, Vec<state::LeaveResult>) {
        if let Err(e) = self.check_coordinator(group_id) {
            return (e.code(), Vec::new());
        }
        let mut inner = self.inner.lock();
        let Some(group) = inner.groups.get_mut(group_id) else {
            return (ResponseError::UnknownMemberId.code(), Vec::new());
        };
        let (results, replies) = group.leave(members, &self.limits, Instant::now());
        tracing::debug!(
            group = group_id,
            ?results,
            state = group.state.name(),
            "leave"
        );
        inner.deliver(group_id, replies);
        (0, results)
    }

    /// Runs the timers of every group; called every 100 ms.
    pub fn tick(&self) {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        let ids: Vec<String> = inner.groups.keys().cloned().collect();
        for id in ids {
            let replies = match inner.groups.get_mut(&id) {
                Some(g) => g.tick(now, &self.limits),
                None => continue,
            };
            inner.deliver(&id, replies);
        }
        for (id, g) in inner.consumer_groups.iter_mut() {
            for member in g.tick(now) {
                tracing::debug!(group = %id, %member, epoch = g.epoch, "consumer group member expired");
            }
        }
    }

    pub fn heartbeat_interval(&self) -> Duration {
        self.consumer_limits.heartbeat_interval
    }

    /// One ConsumerGroupHeartbeat (KIP-848).
    pub fn consumer_heartbeat(
        &self,
        group_id: &str,
        hb: Heartbeat,
        topics: &Topics,
    ) -> Result<HeartbeatReply, Refusal> {
        self.check_coordinator(group_id).map_err(|e| {
            Refusal(
                e,
                format!("This node does not coordinate group {group_id}."),
            )
        })?;
        let mut inner = self.inner.lock();
        if let Some(classic) = inner.groups.get(group_id) {
            if !classic.is_empty() {
                return Err(Refusal(
                    ResponseError::GroupIdNotFound,
                    format!("Group {group_id} is not a consumer group."),
                ));
            }
            inner.groups.remove(group_id);
        }
        if hb.member_epoch != 0 && !inner.consumer_groups.contains_key(group_id) {
            // Kafka says GROUP_ID_NOT_FOUND here, but its groups outlive a restart; ours do not,
            // and UNKNOWN_MEMBER_ID is what makes both Java and librdkafka members join again.
            return Err(Refusal(
                ResponseError::UnknownMemberId,
                format!(
                    "Member {} is not a member of group {group_id}.",
                    hb.member_id
                ),
            ));
        }
        let group = inner
            .consumer_groups
            .entry(group_id.to_string())
            .or_insert_with(|| ConsumerGroup::new(group_id));
        let member = hb.member_id.clone();
        let epoch = hb.member_epoch;
        let r = group.heartbeat(hb, topics, &self.consumer_limits, Instant::now());
        tracing::debug!(group = group_id, %member, epoch, result = ?r,
            group_epoch = group.epoch, state = group.state_name(), "consumer heartbeat");
        if group.is_empty() && group.epoch == 0 {
            // A refused first heartbeat leaves no group behind.
            inner.consumer_groups.remove(group_id);
        }
        r
    }

    /// A consumer group (KIP-848) for ConsumerGroupDescribe, or `None` when the id is not one.
    pub fn describe_consumer_group<T>(
        &self,
        group_id: &str,
        f: impl FnOnce(&ConsumerGroup) -> T,
    ) -> Option<T> {
        self.inner.lock().consumer_groups.get(group_id).map(f)
    }

    /// Whether a live classic group has this id (ConsumerGroupDescribe refuses those).
    pub fn is_classic_group(&self, group_id: &str) -> bool {
        let inner = self.inner.lock();
        inner
            .groups
            .get(group_id)
            .is_some_and(|g| !g.is_empty() || g.generation > 0)
            || (!inner.consumer_groups.contains_key(group_id)
                && inner.offsets.contains_key(group_id))
    }

    /// Commits offsets. `member_id` empty and `generation` -1 is a standalone commit, allowed
    /// only while the group has no members. Returns one error code for the whole request, or
    /// per-partition codes.
    pub async fn commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
    ) -> i16 {
        if let Err(e) = self.check_coordinator(group_id) {
            return e.code();
        }
        let pending =
            match self.write_commit(group_id, member_id, instance_id, generation, &offsets) {
                Ok(Some(p)) => p,
                Ok(None) => return 0,
                Err(code) => return code,
            };
        let deadline = tokio::time::Instant::now() + self.commit_timeout;
        if let Err(e) = pending
            .partition
            .replicated(pending.last_offset, pending.leader_epoch, deadline)
            .await
        {
            tracing::warn!(group = group_id, error = ?e, "an offset commit was not replicated");
            return append_error(e.code()).code();
        }
        // Visible once replicated; an older commit whose wait ended later never overwrites it.
        let mut inner = self.inner.lock();
        for (tp, o) in offsets {
            let at = (group_id.to_string(), tp);
            if inner
                .written_at
                .get(&at)
                .is_some_and(|w| *w > pending.last_offset)
            {
                continue;
            }
            inner
                .offsets
                .entry(group_id.to_string())
                .or_default()
                .insert(at.1.clone(), o);
            inner.written_at.insert(at, pending.last_offset);
        }
        0
    }

    /// Checks a commit against the group's members and appends it to the offsets log.
    fn write_commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        offsets: &[(TopicPartition, CommittedOffset)],
    ) -> Result<Option<PendingWrite>, i16> {
        let inner = self.inner.lock();
        if let Some(g) = inner.consumer_groups.get(group_id) {
            if g.is_empty() && generation < 0 {
                // Admin commits (kafka-consumer-groups --reset-offsets) to an empty group.
            } else if let Some(m) = g.members.get(member_id) {
                if generation != m.epoch {
                    return Err(ResponseError::StaleMemberEpoch.code());
                }
            } else {
                return Err(ResponseError::UnknownMemberId.code());
            }
        } else if let Some(g) = inner.groups.get(group_id) {
            if generation < 0 && member_id.is_empty() {
                if !g.members.is_empty() {
                    return Err(ResponseError::UnknownMemberId.code());
                }
            } else {
                if let Some(i) = instance_id {
                    if g.members
                        .values()
                        .any(|m| m.instance_id.as_deref() == Some(i) && m.id != member_id)
                    {
                        return Err(ResponseError::FencedInstanceId.code());
                    }
                }
                if !g.members.contains_key(member_id) {
                    return Err(ResponseError::UnknownMemberId.code());
                }
                if g.generation != generation {
                    return Err(ResponseError::IllegalGeneration.code());
                }
                if g.state == state::GroupState::CompletingRebalance {
                    return Err(ResponseError::RebalanceInProgress.code());
                }
            }
        } else if generation >= 0 {
            return Err(ResponseError::IllegalGeneration.code());
        }
        let entries: Vec<(TopicPartition, Option<CommittedOffset>)> = offsets
            .iter()
            .map(|(tp, o)| (tp.clone(), Some(o.clone())))
            .collect();
        // Appended under the lock, so commits reach the log in the order they were checked.
        self.persist(group_id, &entries).map_err(|e| e.code())
    }

    /// Committed offsets of a group: all of them, or those asked for.
    pub fn fetch_offsets(&self, group_id: &str) -> BTreeMap<TopicPartition, CommittedOffset> {
        self.inner
            .lock()
            .offsets
            .get(group_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Every group id with members or offsets.
    pub fn group_ids(&self) -> Vec<String> {
        let inner = self.inner.lock();
        let mut ids: Vec<String> = inner
            .groups
            .iter()
            .filter(|(_, g)| !g.is_empty() || g.generation > 0)
            .map(|(id, _)| id.clone())
            .chain(
                inner
                    .consumer_groups
                    .iter()
                    .filter(|(_, g)| !g.is_empty() || g.epoch > 0)
                    .map(|(id, _)| id.clone()),
            )
            .chain(inner.offsets.keys().cloned())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupSummary> {
        let inner = self.inner.lock();
        if let Some(g) = inner.consumer_groups.get(group_id) {
            return Some(GroupSummary {
                group_id: group_id.to_string(),
                state: g.state_name(),
                protocol_type: "consumer".into(),
                protocol: String::new(),
                members: Vec::new(),
                is_consumer_group: true,
            });
        }
        match inner.groups.get(group_id) {
            Some(g) => {
                let protocol = g.protocol.clone().unwrap_or_default();
                Some(GroupSummary {
                    group_id: group_id.to_string(),
                    state: g.state.name(),
                    protocol_type: g.protocol_type.clone().unwrap_or_default(),
                    protocol: protocol.clone(),
                    members: g
                        .members
                        .values()
                        .map(|m| {
                            (
                                m.id.clone(),
                                m.instance_id.clone(),
                                m.client_id.clone(),
                                m.client_host.clone(),
                                m.metadata_for(&protocol),
                                m.assignment.clone(),
                            )
                        })
                        .collect(),
                    is_consumer_group: false,
                })
            }
            None if inner.offsets.contains_key(group_id) => Some(GroupSummary {
                group_id: group_id.to_string(),
                state: "Empty",
                protocol_type: "consumer".into(),
                protocol: String::new(),
                members: Vec::new(),
                is_consumer_group: false,
            }),
            None => None,
        }
    }

    /// Deletes an empty group and its offsets.
    pub fn delete_group(&self, group_id: &str) -> i16 {
        if let Err(e) = self.check_coordinator(group_id) {
            return e.code();
        }
        let mut inner = self.inner.lock();
        let has_offsets = inner.offsets.contains_key(group_id);
        let consumer_group = inner.consumer_groups.get(group_id);
        if consumer_group.is_some_and(|g| !g.is_empty()) {
            return ResponseError::NonEmptyGroup.code();
        }
        let known = consumer_group.is_some();
        match inner.groups.get(group_id) {
            Some(g) if !g.is_empty() => return ResponseError::NonEmptyGroup.code(),
            None if !has_offsets && !known => return ResponseError::GroupIdNotFound.code(),
            _ => {}
        }
        let tombstones: Vec<(TopicPartition, Option<CommittedOffset>)> = inner
            .offsets
            .get(group_id)
            .map(|m| m.keys().map(|tp| (tp.clone(), None)).collect())
            .unwrap_or_default();
        match self.persist(group_id, &tombstones) {
            Ok(written) => mark_written(&mut inner, group_id, &tombstones, written.as_ref()),
            Err(e) => return e.code(),
        }
        inner.offsets.remove(group_id);
        inner.groups.remove(group_id);
        inner.consumer_groups.remove(group_id);
        0
    }

    /// Deletes committed offsets of some partitions (OffsetDelete), refused while the group
    /// has active members (they may be consuming those partitions).
    pub fn delete_offsets(
        &self,
        group_id: &str,
        tps: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, i16)>, i16> {
        self.check_coordinator(group_id).map_err(|e| e.code())?;
        let mut inner = self.inner.lock();
        let has_offsets = inner.offsets.contains_key(group_id);
        let active = inner
            .groups
            .get(group_id)
            .is_some_and(|g| !g.members.is_empty())
            || inner
                .consumer_groups
                .get(group_id)
                .is_some_and(|g| !g.is_empty());
        if !has_offsets && !active {
            return Err(ResponseError::GroupIdNotFound.code());
        }
        if active {
            return Ok(tps
                .iter()
                .map(|tp| (tp.clone(), ResponseError::GroupSubscribedToTopic.code()))
                .collect());
        }
        let tombstones: Vec<(TopicPartition, Option<CommittedOffset>)> =
            tps.iter().map(|tp| (tp.clone(), None)).collect();
        let written = self.persist(group_id, &tombstones).map_err(|e| e.code())?;
        mark_written(&mut inner, group_id, &tombstones, written.as_ref());
        if let Some(m) = inner.offsets.get_mut(group_id) {
            for tp in tps {
                m.remove(tp);
            }
        }
        inner.offsets.retain(|_, m| !m.is_empty());
        Ok(tps.iter().map(|tp| (tp.clone(), 0)).collect())
    }

    /// Forgets offsets of topics that no longer exist (after DeleteTopics).
    pub fn forget_topic(&self, topic: &str) {
        let mut inner = self.inner.lock();
        let mut per_group: Vec<(String, Vec<TopicPartition>)> = Vec::new();
        for (g, m) in inner.offsets.iter() {
            let tps: Vec<TopicPartition> =
                m.keys().filter(|tp| tp.topic == topic).cloned().collect();
            if !tps.is_empty() {
                per_group.push((g.clone(), tps));
            }
        }
        for (g, tps) in per_group {
            let tombstones: Vec<_> = tps.iter().map(|tp| (tp.clone(), None)).collect();
            if let Ok(written) = self.persist(&g, &tombstones) {
                mark_written(&mut inner, &g, &tombstones, written.as_ref());
                if let Some(m) = inner.offsets.get_mut(&g) {
                    for tp in &tps {
                        m.remove(tp);
                    }
                }
            }
        }
        inner.offsets.retain(|_, m| !m.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_javas_string_hash_code() {
        // Values from Java's "...".hashCode().
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("order-processor"), -1_129_616_173);
    }

    #[test]
    fn offset_records_round_trip_in_kafkas_schema() {
        let tp = TopicPartition::new("orders", 3);
        let o = CommittedOffset {
            offset: 42,
            leader_epoch: 0,
            metadata: "m".into(),
            commit_timestamp: 7,
        };
        let mut k = offset_key("g", &tp);
        let mut v = offset_value(&o);
        assert_eq!(
            parse_offset_record(&mut k, Some(&mut v)),
            Some(("g".into(), tp, Some(o)))
        );
    }
}
