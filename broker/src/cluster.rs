//! The loops that keep a cluster's metadata true to what is running, each a thin driver of a
//! pure planner in [`crate::metadata::brokers`]:
//!
//! - every node sends the active controller (the quorum leader) a heartbeat each
//!   `broker.heartbeat.interval.ms` ([`heartbeats`]);
//! - the active controller fences a broker it has not heard from for
//!   `broker.session.timeout.ms`, which moves the leadership of its partitions and takes it
//!   out of their ISRs, and unfences it when it is heard from again ([`fence_and_unfence`]);
//! - each partition leader asks for ISR changes: followers that stopped catching up for
//!   `replica.lag.time.max.ms` out, caught-up ones back in ([`isr_changes`]);
//! - a node shutting down fences itself first, so that leadership moves before it stops
//!   serving ([`controlled_shutdown`]).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use kafka_protocol::error::ResponseError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker::Broker;
use crate::metadata::brokers::{
    plan_election, plan_fence, plan_isr_change, plan_unfence, to_rebalance, Election, IsrChange,
};
use crate::metadata::MetadataImage;

/// Sends this node's heartbeat to the active controller, forever.
pub async fn heartbeats(broker: Arc<Broker>) {
    let every = Duration::from_millis(broker.config.broker_heartbeat_interval_ms);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let node = broker.config.node_id;
    loop {
        tick.tick().await;
        let want_fence = broker.shutting_down.load(Ordering::Relaxed);
        let epoch = broker
            .metadata
            .image()
            .brokers
            .get(&node)
            .map_or(-1, |b| b.epoch);
        if let Err(e) = broker.metadata.heartbeat(node, epoch, want_fence).await {
            tracing::debug!(error = %e, "heartbeat to the active controller failed");
        }
    }
}

/// On the active controller: fences brokers whose session expired, unfences fenced brokers
/// that are heard from again (unless they asked to stay fenced, shutting down).
pub async fn fence_and_unfence(broker: Arc<Broker>) {
    let session = Duration::from_millis(broker.config.broker_session_timeout_ms);
    let every = Duration::from_millis(broker.config.broker_heartbeat_interval_ms)
        .min(Duration::from_millis(250));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading_since: Option<Instant> = None;
    // When this controller first saw each fenced broker fenced: only a heartbeat received
    // after that unfences it (an older one may predate a controlled shutdown's fence).
    let mut fenced_seen: HashMap<i32, Instant> = HashMap::new();
    loop {
        tick.tick().await;
        if !broker.metadata.is_controller() {
            leading_since = None;
            fenced_seen.clear();
            continue;
        }
        // A new controller gives every broker a whole session from now.
        let since = *leading_since.get_or_insert_with(Instant::now);
        let seen = broker.metadata.heartbeats_seen();
        let image = broker.metadata.latest().image;
        let now = Instant::now();
        fenced_seen.retain(|id, _| image.brokers.get(id).is_some_and(|b| b.fenced));
        for b in image.brokers.values() {
            let node = b.node_id;
            let heard = seen.get(&node);
            let last = heard.map_or(since, |s| s.at.max(since));
            let alive = now.duration_since(last) < session;
            // This node runs the loop, so it is alive whatever its heartbeat task's timing.
            let me = node == broker.config.node_id;
            if !b.fenced && !alive && !me {
                tracing::warn!(
                    broker = node,
                    silent_ms = now.duration_since(last).as_millis() as u64,
                    "fencing a broker that stopped heartbeating"
                );
                // Only the incarnation judged silent: one that registered since is alive.
                let epoch = Some(b.epoch);
                if let Err(r) = broker
                    .commit_metadata(|img| Ok(plan_fence(img, node, epoch)))
                    .await
                {
                    tracing::warn!(broker = node, error = %r.message, "fencing failed; retrying");
                }
                continue;
            }
            if !b.fenced {
                continue;
            }
            let fenced_at = *fenced_seen.entry(node).or_insert(now);
            let heard_since = heard.is_some_and(|s| {
                !s.want_fence && s.at > fenced_at && now.duration_since(s.at) < session
            });
            if heard_since {
                tracing::info!(broker = node, "unfencing a broker that heartbeats again");
                if let Err(r) = broker
                    .commit_metadata(|img| Ok(plan_unfence(img, node)))
                    .await
                {
                    tracing::warn!(broker = node, error = %r.message, "unfencing failed; retrying");
                }
            }
        }
    }
}

/// On every node: asks for the ISR changes its led partitions need (Kafka's AlterPartition).
pub async fn isr_changes(broker: Arc<Broker>) {
    let every =
        Duration::from_millis((broker.config.replica_lag_time_max_ms / 2).clamp(1, 500) as u64);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let image = broker.metadata.image();
        for change in broker.replicas.isr_proposals(&image) {
            let outcome = broker
                .commit_metadata(|img| plan_isr_change(img, &change))
                .await;
            match outcome {
                Ok(_) => {
                    let (added, removed) = isr_delta(&change, &image);
                    broker.metrics.isr_expands.inc_by(added);
                    broker.metrics.isr_shrinks.inc_by(removed);
                    tracing::info!(
                        topic_id = %change.topic_id,
                        partition = change.partition,
                        isr = ?change.isr,
                        "ISR changed"
                    )
                }
                Err(r) if r.code == ResponseError::IneligibleReplica.code() => {
                    broker.replicas.isr_refused(&change);
                    tracing::debug!(partition = change.partition, error = %r.message, "ISR change refused");
                }
                // The partition moved on (an image clears the proposal), or the outcome is
                // unknown (the proposal keeps holding the high watermark): nothing to undo.
                Err(r) => {
                    tracing::debug!(partition = change.partition, error = %r.message, "ISR change refused");
                }
            }
        }
    }
}

/// On the active controller, every `leader.imbalance.check.interval.seconds`: preferred
/// replicas that are live and in sync lead again where their broker's imbalance is above
/// `leader.imbalance.per.broker.percentage` (Kafka's `auto.leader.rebalance.enable`), so that
/// leadership spreads back after a broker returns.
pub async fn rebalance_leaders(broker: Arc<Broker>) {
    let Some((every_ms, percentage)) = broker.config.leader_rebalance else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_millis(every_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if !broker.metadata.is_controller() {
            continue;
        }
        let mut moved = 0;
        let outcome = broker
            .commit_metadata(|img| {
                let records: Vec<_> = to_rebalance(img, percentage)
                    .iter()
                    .filter_map(|(t, p)| plan_election(img, t, *p, Election::Preferred).ok())
                    .collect();
                moved = records.len();
                Ok(records)
            })
            .await;
        match outcome {
            Ok(_) if moved > 0 => {
                tracing::info!(
                    partitions = moved,
                    "preferred leaders elected (auto rebalance)"
                )
            }
            Ok(_) => {}
            Err(r) => tracing::warn!(error = %r.message, "automatic leader rebalance failed"),
        }
    }
}

/// How many members `change` adds to and removes from the ISR `image` had.
fn isr_delta(change: &IsrChange, image: &MetadataImage) -> (u64, u64) {
    let before = image
        .topic_by_id(&change.topic_id)
        .and_then(|t| t.partitions.get(change.partition as usize))
        .map(|p| p.isr.clone())
        .unwrap_or_default();
    let added = change.isr.iter().filter(|b| !before.contains(b)).count();
    let removed = before.iter().filter(|b| !change.isr.contains(b)).count();
    (added as u64, removed as u64)
}

/// Moves leadership away from this node before it stops (Kafka's controlled shutdown): its
/// heartbeats ask to stay fenced, and it fences itself, which elects other leaders for what
/// it led. Skipped for a node alone in its cluster, which has nowhere to move leadership.
pub async fn controlled_shutdown(broker: &Broker) {
    broker.shutting_down.store(true, Ordering::Relaxed);
    let image = broker.metadata.image();
    let node = broker.config.node_id;
    if image.live_brokers().all(|b| b.node_id == node) {
        return;
    }
    // Said before the fence is committed, so that the controller never unfences it again
    // (the controller keeps `want_fence` for the rest of this incarnation).
    for _ in 0..20 {
        let epoch = image.brokers.get(&node).map_or(-1, |b| b.epoch);
        match broker.metadata.heartbeat(node, epoch, true).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "heartbeat to the active controller failed"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past a session, the controller fences a silent broker anyway: waiting longer for a
    // quorum that is not there only delays the stop.
    let session = Duration::from_millis(broker.config.broker_session_timeout_ms);
    let started = Instant::now();
    let fenced = broker.commit_metadata(|img| Ok(plan_fence(img, node, None)));
    match tokio::time::timeout(session, fenced).await {
        Ok(Ok(_)) => tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            "controlled shutdown: leadership moved to other brokers"
        ),
        Ok(Err(r)) => {
            tracing::warn!(error = %r.message, "controlled shutdown failed; stopping anyway")
        }
        Err(_) => tracing::warn!(
            timeout_ms = session.as_millis() as u64,
            "controlled shutdown found no quorum; stopping anyway"
        ),
    }
}
