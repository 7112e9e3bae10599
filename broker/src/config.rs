//! Broker and topic configuration, with Apache Kafka's property names.
//!
//! A [`BrokerConfig`] is read from a Kafka-style properties file, then environment variables
//! (`FJORD_LOG_DIRS=/data` sets `log.dirs`), then `--override key=value` arguments, in that order
//! of precedence. Every key is checked against [`BROKER_KEYS`]; an unknown key or a value that
//! does not parse stops start-up with an error naming the key. Keys that Apache Kafka has but
//! Fjord does not need (thread counts, buffer sizes) are accepted and listed as `Ignored`.
//!
//! Topic configuration ([`TOPIC_KEYS`]) resolves, per key: topic override, then the dynamic
//! broker default set with `kafka-configs --entity-type brokers --entity-default`, then the
//! static broker setting it derives from, then Kafka's default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// How a key's value is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Int,
    Long,
    Bool,
    Str,
    List,
    /// Known to Apache Kafka, accepted, not used by Fjord.
    Ignored,
}

pub struct KeyDef {
    pub name: &'static str,
    pub ty: ValueType,
    /// Kafka's default, as text; `None` when the key has no default (null).
    pub default: Option<&'static str>,
}

const fn key(name: &'static str, ty: ValueType, default: Option<&'static str>) -> KeyDef {
    KeyDef { name, ty, default }
}

use ValueType::*;

/// A setting's name from an Apache Kafka image variable without its `KAFKA_` prefix: `_` is
/// `.`, `__` is `_` and `___` is `-` (`KAFKA_LOG_DIRS` is `log.dirs`).
pub fn kafka_image_key(rest: &str) -> String {
    rest.to_ascii_lowercase()
        .replace("___", "\u{0}")
        .replace("__", "\u{1}")
        .replace('_', ".")
        .replace('\u{0}', "-")
        .replace('\u{1}', "_")
}

/// Every broker setting Fjord accepts.
pub const BROKER_KEYS: &[KeyDef] = &[
    key("node.id", Int, Some("1")),
    key("broker.id", Int, None),
    key("process.roles", List, Some("broker,controller")),
    key("listeners", List, Some("PLAINTEXT://:9092")),
    key("advertised.listeners", List, None),
    key(
        "listener.security.protocol.map",
        List,
        Some("PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"),
    ),
    key("inter.broker.listener.name", Str, None),
    key("controller.listener.names", List, Some("CONTROLLER")),
    key("controller.quorum.voters", List, None),
    key("controller.quorum.bootstrap.servers", List, None),
    key("cluster.id", Str, None),
    key("broker.rack", Str, None),
    key("log.dirs", List, None),
    key("log.dir", Str, Some("/tmp/fjord-logs")),
    key("num.partitions", Int, Some("1")),
    key("default.replication.factor", Int, Some("1")),
    key("min.insync.replicas", Int, Some("1")),
    // Follower fetchers (Kafka's defaults).
    key("replica.fetch.wait.max.ms", Int, Some("500")),
    key("replica.fetch.min.bytes", Int, Some("1")),
    key("replica.fetch.max.bytes", Int, Some("1048576")),
    key("replica.fetch.response.max.bytes", Int, Some("10485760")),
    key("replica.fetch.backoff.ms", Int, Some("1000")),
    key("replica.lag.time.max.ms", Long, Some("30000")),
    // Broker liveness as the active controller judges it (Kafka's defaults).
    key("broker.heartbeat.interval.ms", Int, Some("2000")),
    key("broker.session.timeout.ms", Int, Some("9000")),
    // The controller's automatic preferred-leader election (Kafka's defaults).
    key("auto.leader.rebalance.enable", Bool, Some("true")),
    key("leader.imbalance.check.interval.seconds", Long, Some("300")),
    key("leader.imbalance.per.broker.percentage", Int, Some("10")),
    key("auto.create.topics.enable", Bool, Some("true")),
    key("delete.topic.enable", Bool, Some("true")),
    key("log.retention.ms", Long, None),
    key("log.retention.minutes", Int, None),
    key("log.retention.hours", Int, Some("168")),
    key("log.retention.bytes", Long, Some("-1")),
    key("log.segment.bytes", Int, Some("1073741824")),
    key("log.roll.ms", Long, None),
    key("log.roll.hours", Int, Some("168")),
    key("log.retention.check.interval.ms", Long, Some("300000")),
    key("log.index.interval.bytes", Int, Some("4096")),
    key("log.segment.delete.delay.ms", Long, Some("60000")),
    key("log.cleanup.policy", List, Some("delete")),
    key("log.cleaner.delete.retention.ms", Long, Some("86400000")),
    key("log.cleaner.min.compaction.lag.ms", Long, Some("0")),
    key("log.message.timestamp.type", Str, Some("CreateTime")),
    key(
        "log.message.timestamp.before.max.ms",
        Long,
        Some("9223372036854775807"),
    ),
    key("log.message.timestamp.after.max.ms", Long, Some("3600000")),
    key(
        "log.flush.interval.messages",
        Long,
        Some("9223372036854775807"),
    ),
    key("log.flush.interval.ms", Long, None),
    key("compression.type", Str, Some("producer")),
    key("message.max.bytes", Int, Some("1048588")),
    key("socket.request.max.bytes", Int, Some("104857600")),
    key("connections.max.idle.ms", Long, Some("600000")),
    key("offsets.topic.num.partitions", Int, Some("50")),
    key("offsets.topic.replication.factor", Int, Some("3")),
    key("offsets.commit.timeout.ms", Int, Some("5000")),
    key("offsets.retention.minutes", Int, Some("10080")),
    key("offsets.topic.segment.bytes", Int, Some("104857600")),
    key("offset.metadata.max.bytes", Int, Some("4096")),
    key("group.initial.rebalance.delay.ms", Int, Some("3000")),
    key("group.min.session.timeout.ms", Int, Some("6000")),
    key("group.max.session.timeout.ms", Int, Some("1800000")),
    key("group.max.size", Int, Some("2147483647")),
    key("group.consumer.session.timeout.ms", Int, Some("45000")),
    key("group.consumer.heartbeat.interval.ms", Int, Some("5000")),
    key("group.consumer.max.size", Int, Some("2147483647")),
    key("unclean.leader.election.enable", Bool, Some("false")),
    key(
        "leader.replication.throttled.rate",
        Long,
        Some("9223372036854775807"),
    ),
    key(
        "follower.replication.throttled.rate",
        Long,
        Some("9223372036854775807"),
    ),
    key(
        "replica.alter.log.dirs.io.max.bytes.per.second",
        Long,
        Some("9223372036854775807"),
    ),
    key("fjord.metrics.listener", Str, Some("0.0.0.0:9644")),
    // The metadata quorum snapshots its image after this many entries, and keeps this many
    // entries behind a snapshot for followers and broker-only nodes a little behind.
    key("fjord.metadata.snapshot.entries", Long, Some("10000")),
    key("fjord.metadata.snapshot.entries.kept", Long, Some("10000")),
    // Accepted for compatibility with existing server.properties files; Fjord sizes these itself.
    key("num.network.threads", Ignored, Some("3")),
    key("num.io.threads", Ignored, Some("8")),
    key("num.recovery.threads.per.data.dir", Ignored, Some("2")),
    key("num.replica.fetchers", Ignored, Some("1")),
    key("socket.send.buffer.bytes", Ignored, Some("102400")),
    key("socket.receive.buffer.bytes", Ignored, Some("102400")),
    key(
        "transaction.state.log.replication.factor",
        Ignored,
        Some("3"),
    ),
    key("transaction.state.log.min.isr", Ignored, Some("2")),
    key(
        "share.coordinator.state.topic.replication.factor",
        Ignored,
        Some("3"),
    ),
    key("share.coordinator.state.topic.min.isr", Ignored, Some("2")),
    key("log.flush.scheduler.interval.ms", Ignored, None),
    key("log.cleaner.enable", Ignored, Some("true")),
    key("metadata.log.dir", Ignored, None),
];

/// A topic-level setting: its name, type, the broker key whose effective value is its default
/// (`""`: none), and the smallest value it takes (numbers only). Defaults live only in
/// [`BROKER_KEYS`].
pub struct TopicKey {
    pub name: &'static str,
    pub ty: ValueType,
    pub broker_key: &'static str,
    pub min: i64,
}

const fn topic_key(name: &'static str, ty: ValueType, broker_key: &'static str) -> TopicKey {
    TopicKey {
        name,
        ty,
        broker_key,
        min: 0,
    }
}

const fn topic_key_min(
    name: &'static str,
    ty: ValueType,
    broker_key: &'static str,
    min: i64,
) -> TopicKey {
    TopicKey {
        name,
        ty,
        broker_key,
        min,
    }
}

/// Every topic-level setting Fjord accepts.
pub const TOPIC_KEYS: &[TopicKey] = &[
    topic_key("cleanup.policy", List, "log.cleanup.policy"),
    topic_key(
        "delete.retention.ms",
        Long,
        "log.cleaner.delete.retention.ms",
    ),
    topic_key(
        "min.compaction.lag.ms",
        Long,
        "log.cleaner.min.compaction.lag.ms",
    ),
    topic_key("compression.type", Str, "compression.type"),
    topic_key_min("retention.ms", Long, "log.retention.ms", -1),
    topic_key_min("retention.bytes", Long, "log.retention.bytes", -1),
    topic_key_min("segment.bytes", Int, "log.segment.bytes", 14),
    topic_key_min("segment.ms", Long, "log.roll.ms", 1),
    topic_key("max.message.bytes", Int, "message.max.bytes"),
    topic_key("message.timestamp.type", Str, "log.message.timestamp.type"),
    topic_key(
        "message.timestamp.before.max.ms",
        Long,
        "log.message.timestamp.before.max.ms",
    ),
    topic_key(
        "message.timestamp.after.max.ms",
        Long,
        "log.message.timestamp.after.max.ms",
    ),
    topic_key_min("min.insync.replicas", Int, "min.insync.replicas", 1),
    topic_key_min("index.interval.bytes", Int, "log.index.interval.bytes", 1),
    topic_key("file.delete.delay.ms", Long, "log.segment.delete.delay.ms"),
    topic_key(
        "unclean.leader.election.enable",
        Bool,
        "unclean.leader.election.enable",
    ),
    topic_key("flush.messages", Long, "log.flush.interval.messages"),
    // Set and cleared by kafka-reassign-partitions; no broker-wide default.
    topic_key("leader.replication.throttled.replicas", List, ""),
    topic_key("follower.replication.throttled.replicas", List, ""),
];

pub fn topic_key_def(name: &str) -> Option<&'static TopicKey> {
    TOPIC_KEYS.iter().find(|t| t.name == name)
}

/// The broker key a topic key's default comes from.
pub fn broker_key_of(topic_key: &str) -> Option<&'static str> {
    topic_key_def(topic_key)
        .map(|t| t.broker_key)
        .filter(|b| !b.is_empty())
}

/// A topic key's value when neither the topic nor the broker sets it: the built-in default of
/// its broker key (derived keys included, `retention.ms` from `log.retention.hours`).
pub fn topic_default(topic_key: &str) -> Option<String> {
    static_value_in(&BTreeMap::new(), broker_key_of(topic_key)?)
}

/// Broker keys that may be changed at run time with IncrementalAlterConfigs / AlterConfigs.
pub const DYNAMIC_BROKER_KEYS: &[&str] = &[
    "log.retention.ms",
    "log.retention.bytes",
    "log.segment.bytes",
    "log.roll.ms",
    "log.cleanup.policy",
    "log.cleaner.delete.retention.ms",
    "log.cleaner.min.compaction.lag.ms",
    "log.message.timestamp.type",
    "message.max.bytes",
    "compression.type",
    "min.insync.replicas",
    "log.index.interval.bytes",
    "log.segment.delete.delay.ms",
    "unclean.leader.election.enable",
    "log.flush.interval.messages",
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
    "replica.alter.log.dirs.io.max.bytes.per.second",
];

/// One listener, `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    /// Empty means every interface.
    pub host: String,
    pub port: u16,
}

impl Listener {
    pub fn parse(key: &str, text: &str) -> Result<Self> {
        let (name, rest) = text
            .split_once("://")
            .ok_or_else(|| Error::config(key, format!("`{text}` is not NAME://host:port")))?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| Error::config(key, format!("`{text}` has no port")))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| Error::config(key, format!("`{text}` has an invalid port")))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if name.is_empty() {
            return Err(Error::config(key, format!("`{text}` has no listener name")));
        }
        Ok(Listener {
            name: name.to_string(),
            host,
            port,
        })
    }
}

/// Parses a Kafka-style properties file: `key=value` or `key: value`, `#`/`!` comments.
pub fn parse_properties(text: &str) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let split = line
            .find(['=', ':'])
            .ok_or_else(|| Error::config(line, format!("line {} is not key=value", n + 1)))?;
        let (k, v) = line.split_at(split);
        map.insert(k.trim().to_string(), v[1..].trim().to_string());
    }
    Ok(map)
}

/// The broker's resolved static configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Every key the operator set (file, environment, overrides), validated.
    pub raw: BTreeMap<String, String>,
    pub node_id: i32,
    /// Whether this node serves clients and hosts replicas (`process.roles` has `broker`); a
    /// controller-only node is a voter and runs the controller's duties, nothing else.
    pub broker: bool,
    /// Whether this node is a controller (a voter of the metadata quorum) as well as a broker
    /// (`process.roles`); a broker-only node follows the voters as an observer.
    pub controller: bool,
    pub cluster_id: Option<String>,
    pub listeners: Vec<Listener>,
    pub advertised_listeners: Vec<Listener>,
    pub log_dir: PathBuf,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub auto_create_topics_enable: bool,
    pub retention_check_interval_ms: u64,
    pub socket_request_max_bytes: usize,
    /// A connection with no request for this long is closed (Kafka's default: 10 minutes).
    pub connections_max_idle_ms: u64,
    pub offsets_topic_num_partitions: i32,
    pub offsets_topic_segment_bytes: i32,
    /// The longest metadata string an offset commit may carry (OFFSET_METADATA_TOO_LARGE).
    pub offset_metadata_max_bytes: usize,
    pub offsets_retention_ms: i64,
    /// How long a commit waits for its records to reach every in-sync replica.
    pub offsets_commit_timeout_ms: u64,
    /// Capped by the registered brokers when the topic is created, as Kafka does.
    pub offsets_topic_replication_factor: i16,
    pub group_initial_rebalance_delay_ms: u64,
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    pub group_max_size: i32,
    pub group_consumer_session_timeout_ms: u64,
    pub group_consumer_heartbeat_interval_ms: u64,
    pub group_consumer_max_size: i32,
    pub metrics_listener: Option<String>,
    pub replica_fetch: ReplicaFetchSettings,
    /// `broker.rack`: registered with the broker, for rack-aware placement.
    pub rack: Option<String>,
    /// A follower out of step with its leader's log end for this long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// How often this node tells the active controller it is alive.
    pub broker_heartbeat_interval_ms: u64,
    /// A broker not heard from for this long is fenced: it loses leadership and the ISRs.
    pub broker_session_timeout_ms: u64,
    /// `auto.leader.rebalance.enable`, every `leader.imbalance.check.interval.seconds` (in ms),
    /// above `leader.imbalance.per.broker.percentage`.
    pub leader_rebalance: Option<(u64, u32)>,
    /// `fjord.metadata.snapshot.entries` and `fjord.metadata.snapshot.entries.kept`.
    pub metadata_snapshot_entries: u64,
    pub metadata_entries_kept: u64,
    /// `controller.quorum.voters`; empty for a node that is a quorum of one (itself).
    pub voters: BTreeMap<u64, crate::quorum::VoterEndpoint>,
    /// The `listeners` named in `controller.listener.names`: where other voters reach this one.
    pub controller_listeners: Vec<Listener>,
}

/// How follower replicas fetch from their leaders (`replica.fetch.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaFetchSettings {
    pub wait_max_ms: i32,
    pub min_bytes: i32,
    /// Per partition, as `partition_max_bytes` (the first batch may exceed it, KIP-74).
    pub max_bytes: i32,
    pub response_max_bytes: i32,
    pub backoff_ms: u64,
}

impl BrokerConfig {
    /// Defaults only: a single node on port 9092.
    pub fn single_node_defaults() -> Self {
        Self::from_map(BTreeMap::new()).expect("the built-in defaults are valid")
    }

    /// Builds from file text (may be empty), environment pairs and overrides.
    pub fn load(
        file: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[String],
    ) -> Result<Self> {
        let mut map = match file {
            Some(text) => parse_properties(text)?,
            None => BTreeMap::new(),
        };
        let env: Vec<(String, String)> = env.into_iter().collect();
        // Apache Kafka's image convention first (`KAFKA_NODE_ID`, `CLUSTER_ID`), so that a
        // docker-compose file written for it runs Fjord; FJORD_ names then take precedence.
        // Both prefixes also name other things (KAFKA_HEAP_OPTS, FJORD_LOG, FJORD_CACHE, ...):
        // only names that map to a broker setting are taken as one.
        for (k, v) in &env {
            let key = if k == "CLUSTER_ID" {
                Some("cluster.id".to_string())
            } else {
                k.strip_prefix("KAFKA_").map(kafka_image_key)
            };
            if let Some(key) = key.filter(|key| BROKER_KEYS.iter().any(|d| d.name == key)) {
                map.insert(key, v.clone());
            }
        }
        for (k, v) in env {
            if let Some(rest) = k.strip_prefix("FJORD_") {
                let key = rest.to_ascii_lowercase().replace('_', ".");
                if BROKER_KEYS.iter().any(|d| d.name == key) {
                    map.insert(key, v);
                }
            }
        }
        for o in overrides {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| Error::config(o, "--override takes key=value"))?;
            map.insert(k.trim().to_string(), v.trim().to_string());
        }
        Self::from_map(map)
    }

    pub fn from_map(raw: BTreeMap<String, String>) -> Result<Self> {
        for (k, v) in &raw {
            let def = BROKER_KEYS
                .iter()
                .find(|d| d.name == k)
                .ok_or_else(|| Error::config(k, "unknown setting"))?;
            check_value(k, def.ty, v)?;
        }
        let get = |k: &str| -> Option<String> {
            raw.get(k)
                .cloned()
                .or_else(|| default_of(k).map(str::to_string))
        };
        let int = |k: &str| -> i64 {
            get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or_default()
        };
        let positive = |k: &str, min: i64| -> Result<i64> {
            let v = int(k);
            if v < min {
                return Err(Error::config(k, format!("must be at least {min}, got {v}")));
            }
            Ok(v)
        };

        let node_id = match raw.get("broker.id") {
            // Checked as an Int above.
            Some(b) if !raw.contains_key("node.id") => b.parse().unwrap_or_default(),
            _ => int("node.id") as i32,
        };
        if node_id < 0 {
            return Err(Error::config("node.id", "must be non-negative"));
        }
        let roles = get("process.roles").unwrap_or_default();
        let mut roles: Vec<&str> = roles.split(',').map(str::trim).collect();
        roles.sort_unstable();
        let (broker, controller) = match roles.as_slice() {
            ["broker", "controller"] => (true, true),
            ["broker"] => (true, false),
            ["controller"] => (false, true),
            _ => {
                return Err(Error::config(
                    "process.roles",
                    "must be `broker`, `controller` or `broker,controller`",
                ))
            }
        };
        let voters =
            match (
                raw.get("controller.quorum.voters"),
                raw.get("controller.quorum.bootstrap.servers"),
            ) {
                (Some(v), _) => crate::quorum::bootstrap::parse_voters(v)?,
                // Kafka 4's own `config/server.properties`: one combined node naming itself as the
                // only bootstrap server, formatted `--standalone`. A quorum of this node alone.
                (None, Some(servers))
                    if broker
                        && controller
                        && servers.split(',').filter(|s| !s.trim().is_empty()).count() == 1 =>
                {
                    BTreeMap::new()
                }
                (None, Some(_)) => return Err(Error::config(
                    "controller.quorum.bootstrap.servers",
                    "a dynamic quorum (KIP-853) is not supported beyond a single combined node; \
                     list the voters in controller.quorum.voters",
                )),
                (None, None) => BTreeMap::new(),
            };
        let is_voter = voters.contains_key(&(node_id as u64));
        if controller && !voters.is_empty() && !is_voter {
            return Err(Error::config(
                "controller.quorum.voters",
                format!(
                    "node {node_id} has the controller role but is not one of the voters \
                     (a node that is not a voter has process.roles=broker)"
                ),
            ));
        }
        if !broker && !is_voter {
            return Err(Error::config(
                "controller.quorum.voters",
                format!(
                    "node {node_id} is a controller-only node (process.roles=controller) and must \
                     be one of the voters"
                ),
            ));
        }
        if !controller && voters.is_empty() {
            return Err(Error::config(
                "controller.quorum.voters",
                "a broker-only node (process.roles=broker) needs the controllers it follows",
            ));
        }
        if !controller && is_voter {
            return Err(Error::config(
                "controller.quorum.voters",
                format!(
                    "node {node_id} is a broker-only node (process.roles=broker) and must not be \
                     one of the voters"
                ),
            ));
        }
        let protocol_map = get("listener.security.protocol.map").unwrap_or_default();
        let mut protocols = BTreeMap::new();
        for pair in protocol_map.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, proto) = pair.split_once(':').ok_or_else(|| {
                Error::config(
                    "listener.security.protocol.map",
                    format!("`{pair}` is not NAME:PROTOCOL"),
                )
            })?;
            protocols.insert(name.trim().to_string(), proto.trim().to_string());
        }
        let controller_names = get("controller.listener.names").unwrap_or_default();
        let is_controller = |l: &Listener| controller_names.split(',').any(|c| c.trim() == l.name);
        let mut controller_listeners = Vec::new();
        if let Some(text) = get("listeners") {
            for item in text.split(',').filter(|s| !s.trim().is_empty()) {
                let l = Listener::parse("listeners", item.trim())?;
                if is_controller(&l) {
                    controller_listeners.push(l);
                }
            }
        }
        let parse_listeners = |k: &str| -> Result<Vec<Listener>> {
            let mut out = Vec::new();
            if let Some(text) = get(k) {
                for item in text.split(',').filter(|s| !s.trim().is_empty()) {
                    let l = Listener::parse(k, item.trim())?;
                    if is_controller(&l) {
                        continue; // Quorum RPCs, not clients (`controller_listeners`).
                    }
                    let proto = protocols
                        .get(&l.name)
                        .map(String::as_str)
                        .unwrap_or(&l.name);
                    if proto != "PLAINTEXT" {
                        return Err(Error::config(
                            k,
                            format!(
                                "listener {} uses {proto}; only PLAINTEXT is supported so far",
                                l.name
                            ),
                        ));
                    }
                    out.push(l);
                }
            }
            Ok(out)
        };
        let listeners = parse_listeners("listeners")?;
        if broker && listeners.is_empty() {
            return Err(Error::config(
                "listeners",
                "no client listener is configured",
            ));
        }
        let advertised_listeners = parse_listeners("advertised.listeners")?;
        // The one bootstrap server of a standalone node must be this node's own controller
        // listener: naming another would start a second, separate quorum.
        if let (true, Some(server)) = (
            voters.is_empty(),
            raw.get("controller.quorum.bootstrap.servers"),
        ) {
            let port = server
                .trim()
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok());
            if !controller_listeners
                .iter()
                .any(|l| Some(l.port) == port && l.port != 0)
            {
                return Err(Error::config(
                    "controller.quorum.bootstrap.servers",
                    format!(
                        "`{server}` is not this node's controller listener; a quorum of several \
                         nodes lists them in controller.quorum.voters"
                    ),
                ));
            }
        }
        if controller && (voters.len() > 1 || !broker) && controller_listeners.is_empty() {
            return Err(Error::config(
                "controller.listener.names",
                "other voters reach this one on a controller listener: name one of `listeners` here",
            ));
        }
        if !broker && !listeners.is_empty() {
            return Err(Error::config(
                "listeners",
                "a controller-only node (process.roles=controller) has only the listeners of \
                 controller.listener.names, as Kafka requires",
            ));
        }

        let log_dir = match raw.get("log.dirs") {
            Some(dirs) => {
                let dirs: Vec<&str> = dirs.split(',').map(str::trim).collect();
                if dirs.len() != 1 || dirs[0].is_empty() {
                    return Err(Error::config(
                        "log.dirs",
                        "exactly one directory is supported so far",
                    ));
                }
                PathBuf::from(dirs[0])
            }
            None => PathBuf::from(get("log.dir").unwrap_or_default()),
        };
        let metrics_listener = get("fjord.metrics.listener").filter(|s| !s.is_empty());
        if let Some(m) = &metrics_listener {
            let with_host = if m.starts_with(':') {
                format!("0.0.0.0{m}")
            } else {
                m.clone()
            };
            with_host.parse::<SocketAddr>().map_err(|_| {
                Error::config("fjord.metrics.listener", format!("`{m}` is not host:port"))
            })?;
        }
        let cfg = BrokerConfig {
            node_id,
            broker,
            controller,
            cluster_id: raw.get("cluster.id").cloned(),
            listeners,
            advertised_listeners,
            log_dir,
            num_partitions: positive("num.partitions", 1)? as i32,
            default_replication_factor: positive("default.replication.factor", 1)? as i16,
            voters,
            controller_listeners,
            replica_fetch: ReplicaFetchSettings {
                wait_max_ms: positive("replica.fetch.wait.max.ms", 0)? as i32,
                min_bytes: positive("replica.fetch.min.bytes", 1)? as i32,
                max_bytes: positive("replica.fetch.max.bytes", 0)? as i32,
                response_max_bytes: positive("replica.fetch.response.max.bytes", 0)? as i32,
                backoff_ms: positive("replica.fetch.backoff.ms", 0)? as u64,
            },
            leader_rebalance: (get("auto.leader.rebalance.enable").as_deref() == Some("true"))
                .then(|| -> Result<(u64, u32)> {
                    Ok((
                        positive("leader.imbalance.check.interval.seconds", 1)? as u64 * 1000,
                        positive("leader.imbalance.per.broker.percentage", 0)?.min(100) as u32,
                    ))
                })
                .transpose()?,
            rack: raw.get("broker.rack").filter(|r| !r.is_empty()).cloned(),
            replica_lag_time_max_ms: positive("replica.lag.time.max.ms", 1)?,
            broker_heartbeat_interval_ms: positive("broker.heartbeat.interval.ms", 1)? as u64,
            broker_session_timeout_ms: positive("broker.session.timeout.ms", 1)? as u64,
            metadata_snapshot_entries: positive("fjord.metadata.snapshot.entries", 1)? as u64,
            metadata_entries_kept: positive("fjord.metadata.snapshot.entries.kept", 1)? as u64,
            auto_create_topics_enable: get("auto.create.topics.enable").as_deref() == Some("true"),
            retention_check_interval_ms: positive("log.retention.check.interval.ms", 1)? as u64,
            socket_request_max_bytes: positive("socket.request.max.bytes", 1024)? as usize,
            connections_max_idle_ms: positive("connections.max.idle.ms", 1)? as u64,
            offsets_topic_num_partitions: positive("offsets.topic.num.partitions", 1)? as i32,
            offsets_topic_segment_bytes: positive("offsets.topic.segment.bytes", 14)? as i32,
            offset_metadata_max_bytes: positive("offset.metadata.max.bytes", 0)? as usize,
            offsets_retention_ms: positive("offsets.retention.minutes", 1)? * 60_000,
            offsets_commit_timeout_ms: positive("offsets.commit.timeout.ms", 1)? as u64,
            offsets_topic_replication_factor: positive("offsets.topic.replication.factor", 1)?
                .min(i16::MAX as i64) as i16,
            group_initial_rebalance_delay_ms: positive("group.initial.rebalance.delay.ms", 0)?
                as u64,
            group_min_session_timeout_ms: positive("group.min.session.timeout.ms", 0)? as i32,
            group_max_session_timeout_ms: positive("group.max.session.timeout.ms", 0)? as i32,
            group_max_size: positive("group.max.size", 1)? as i32,
            group_consumer_session_timeout_ms: positive("group.consumer.session.timeout.ms", 1)?
                as u64,
            group_consumer_heartbeat_interval_ms: positive(
                "group.consumer.heartbeat.interval.ms",
                1,
            )? as u64,
            group_consumer_max_size: positive("group.consumer.max.size", 1)? as i32,
            metrics_listener,
            raw,
        };
        if cfg.voters.len() <= 1 && cfg.default_replication_factor != 1 {
            return Err(Error::config(
                "default.replication.factor",
                "a single node can only hold replication factor 1",
            ));
        }
        // Validate the static topic defaults through the same checks a topic config gets.
        for t in TOPIC_KEYS.iter().filter(|t| !t.broker_key.is_empty()) {
            if let Some(v) = cfg.static_value(t.broker_key) {
                validate_topic_value(t.name, &v)
                    .map_err(|reason| Error::config(t.broker_key, reason))?;
            }
        }
        Ok(cfg)
    }

    /// The effective static value of a broker key (set, derived, or default).
    pub fn static_value(&self, key: &str) -> Option<String> {
        match key {
            "log.dirs" => Some(self.log_dir.display().to_string()),
            "node.id" | "broker.id" => Some(self.node_id.to_string()),
            _ => static_value_in(&self.raw, key),
        }
    }

    /// Whether the operator set the key (directly or via a key it derives from).
    pub fn is_set(&self, key: &str) -> bool {
        match key {
            "log.retention.ms" => [
                "log.retention.ms",
                "log.retention.minutes",
                "log.retention.hours",
            ]
            .iter()
            .any(|k| self.raw.contains_key(*k)),
            "log.roll.ms" => ["log.roll.ms", "log.roll.hours"]
                .iter()
                .any(|k| self.raw.contains_key(*k)),
            _ => self.raw.contains_key(key),
        }
    }
}

pub fn default_of(key: &str) -> Option<&'static str> {
    BROKER_KEYS
        .iter()
        .find(|d| d.name == key)
        .and_then(|d| d.default)
}

/// A numeric key's built-in default (the table's defaults are checked by a unit test).
fn numeric_default(key: &str) -> i64 {
    default_of(key)
        .and_then(|d| d.parse().ok())
        .unwrap_or_default()
}

/// The value of a broker key in `raw` (the operator's settings), falling back to the key it
/// derives from as Kafka does (`log.retention.ms` < `.minutes` < `.hours`, `log.roll.ms` <
/// `.hours`), then to its default.
fn static_value_in(raw: &BTreeMap<String, String>, key: &str) -> Option<String> {
    let number = |k: &str| -> i64 {
        raw.get(k)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or_else(|| numeric_default(k))
    };
    match key {
        "log.retention.ms" => {
            if let Some(v) = raw.get("log.retention.ms") {
                return Some(v.clone());
            }
            if let Some(m) = raw.get("log.retention.minutes") {
                return m.parse::<i64>().ok().map(|m| (m * 60_000).to_string());
            }
            Some((number("log.retention.hours") * 3_600_000).to_string())
        }
        "log.roll.ms" => {
            if let Some(v) = raw.get("log.roll.ms") {
                return Some(v.clone());
            }
            Some((number("log.roll.hours") * 3_600_000).to_string())
        }
        _ => raw
            .get(key)
            .cloned()
            .or_else(|| default_of(key).map(str::to_string)),
    }
}

fn check_value(key: &str, ty: ValueType, v: &str) -> Result<()> {
    let ok = match ty {
        Int => v.parse::<i32>().is_ok(),
        Long => v.parse::<i64>().is_ok(),
        Bool => v == "true" || v == "false",
        Str | List | Ignored => true,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::config(key, format!("`{v}` is not a valid {ty:?}")))
    }
}

/// Checks one topic-level value; the error is a sentence for the client.
pub fn validate_topic_value(key: &str, value: &str) -> std::result::Result<(), String> {
    let def = topic_key_def(key).ok_or_else(|| format!("Unknown topic config name: {key}"))?;
    let (ty, min) = (def.ty, def.min);
    let bad = || format!("Invalid value {value} for configuration {key}");
    match ty {
        Int | Long => {
            let n = value.parse::<i64>().map_err(|_| bad())?;
            if n < min || (ty == Int && n > i32::MAX as i64) {
                return Err(format!("{}: value must be at least {min}", bad()));
            }
        }
        Bool if value != "true" && value != "false" => return Err(bad()),
        Bool => {}
        _ => {}
    }
    if key.ends_with(".replication.throttled.replicas")
        && !crate::replica::throttle::valid_replica_list(value)
    {
        return Err(format!(
            "{}: must be `*` or a list of partition:broker pairs",
            bad()
        ));
    }
    let allowed: &[&str] = match key {
        "cleanup.policy" => &["delete", "compact", "compact,delete", "delete,compact"],
        "message.timestamp.type" => &["CreateTime", "LogAppendTime"],
        "compression.type" => &["uncompressed", "producer", "gzip", "snappy", "lz4", "zstd"],
        _ => &[],
    };
    if !allowed.is_empty() && !allowed.contains(&value) {
        return Err(format!("{}: must be one of {}", bad(), allowed.join(", ")));
    }
    Ok(())
}

/// The resolved settings of one topic that the log and the produce path use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub max_message_bytes: i32,
    pub log_append_time: bool,
    pub index_interval_bytes: u32,
    /// `cleanup.policy` contains `compact`: superseded batches are removed (see `log::compact`).
    pub compact: bool,
    /// `cleanup.policy` contains `delete`: retention by time and size applies.
    pub delete: bool,
    /// How long a tombstone stays once it is the latest record of its key.
    pub delete_retention_ms: i64,
    /// Batches younger than this are never compacted away.
    pub min_compaction_lag_ms: i64,
    /// How far a CreateTime timestamp may lie before now (INVALID_TIMESTAMP past it).
    pub timestamp_before_max_ms: i64,
    /// How far a CreateTime timestamp may lie after now (one hour, as in Kafka 4).
    pub timestamp_after_max_ms: i64,
    /// `acks=all` needs at least this many in-sync replicas (NOT_ENOUGH_REPLICAS below it).
    pub min_insync_replicas: i32,
}

impl TopicConfig {
    /// Resolves from a lookup that already applied override > dynamic > static > default.
    /// Keys the lookup does not answer take their built-in default ([`topic_default`]);
    /// numbers are held to the key's minimum.
    pub fn resolve(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let text = |k: &str| lookup(k).or_else(|| topic_default(k));
        let num = |k: &str| {
            let min = topic_key_def(k).map_or(i64::MIN, |d| d.min);
            text(k)
                .and_then(|v| v.parse::<i64>().ok())
                .or_else(|| topic_default(k).and_then(|v| v.parse().ok()))
                .unwrap_or_default()
                .max(min)
        };
        let policy = text("cleanup.policy").unwrap_or_default();
        TopicConfig {
            retention_ms: num("retention.ms"),
            retention_bytes: num("retention.bytes"),
            segment_bytes: num("segment.bytes") as u64,
            segment_ms: num("segment.ms"),
            max_message_bytes: num("max.message.bytes") as i32,
            log_append_time: text("message.timestamp.type").as_deref() == Some("LogAppendTime"),
            index_interval_bytes: num("index.interval.bytes") as u32,
            compact: policy.contains("compact"),
            delete: policy.contains("delete"),
            delete_retention_ms: num("delete.retention.ms"),
            min_compaction_lag_ms: num("min.compaction.lag.ms"),
            timestamp_before_max_ms: num("message.timestamp.before.max.ms"),
            timestamp_after_max_ms: num("message.timestamp.after.max.ms"),
            min_insync_replicas: num("min.insync.replicas").min(i32::MAX as i64) as i32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(overrides: &[&str]) -> Result<BrokerConfig> {
        let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        BrokerConfig::load(None, Vec::new(), &o)
    }

    #[test]
    fn cleanup_policy_resolves_to_compact_and_delete_flags() {
        let policy = |p: Option<&str>| {
            let c = TopicConfig::resolve(|k| match k {
                "cleanup.policy" => p.map(str::to_string),
                _ => None,
            });
            (c.compact, c.delete)
        };
        assert_eq!(policy(None), (false, true));
        assert_eq!(policy(Some("delete")), (false, true));
        assert_eq!(policy(Some("compact")), (true, false));
        assert_eq!(policy(Some("compact,delete")), (true, true));
        assert_eq!(policy(Some("delete,compact")), (true, true));
    }

    /// Each default is written once, in `BROKER_KEYS`; topic defaults and the typed
    /// `TopicConfig` come from it.
    #[test]
    fn the_key_tables_are_consistent_and_defaults_come_from_one_place() {
        for d in BROKER_KEYS {
            if let Some(v) = d.default {
                check_value(d.name, d.ty, v).unwrap();
            }
        }
        for t in TOPIC_KEYS {
            if !t.broker_key.is_empty() {
                assert!(
                    BROKER_KEYS.iter().any(|d| d.name == t.broker_key),
                    "{} derives from unknown {}",
                    t.name,
                    t.broker_key
                );
            }
            if let Some(v) = topic_default(t.name) {
                validate_topic_value(t.name, &v).unwrap();
            }
        }
        for k in DYNAMIC_BROKER_KEYS {
            assert!(BROKER_KEYS.iter().any(|d| d.name == *k), "{k}");
        }
        let built_in = TopicConfig::resolve(|_| None);
        assert_eq!(built_in, TopicConfig::resolve(topic_default));
        assert_eq!(built_in.retention_ms, 7 * 24 * 3_600_000);
        assert_eq!(built_in.segment_bytes, 1 << 30);
        assert_eq!(built_in.segment_ms, 7 * 24 * 3_600_000);
        assert_eq!(built_in.max_message_bytes, 1_048_588);
        assert_eq!(built_in.timestamp_before_max_ms, i64::MAX);
        assert_eq!(built_in.timestamp_after_max_ms, 3_600_000);
        assert!(built_in.delete && !built_in.compact);
        // Out-of-range values are held to the key's minimum.
        let low = TopicConfig::resolve(|k| (k == "segment.bytes").then(|| "1".to_string()));
        assert_eq!(low.segment_bytes, 14);
    }

    #[test]
    fn defaults_are_a_single_node_on_9092() {
        let c = BrokerConfig::single_node_defaults();
        assert_eq!(c.node_id, 1);
        assert_eq!(c.listeners[0].port, 9092);
        assert_eq!(c.log_dir, PathBuf::from("/tmp/fjord-logs"));
        assert_eq!(
            c.static_value("log.retention.ms").as_deref(),
            Some("604800000")
        );
    }

    #[test]
    fn unknown_setting_is_named_in_the_error() {
        let e = load(&["log.retenshun.ms=5"]).unwrap_err().to_string();
        assert!(e.contains("log.retenshun.ms"), "{e}");
    }

    #[test]
    fn invalid_value_is_named_in_the_error() {
        let e = load(&["num.partitions=many"]).unwrap_err().to_string();
        assert!(e.contains("num.partitions"), "{e}");
        let e = load(&["log.message.timestamp.type=Sometime"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("log.message.timestamp.type"), "{e}");
    }

    #[test]
    fn retention_hours_minutes_and_ms_take_kafkas_precedence() {
        let c = load(&["log.retention.hours=1"]).unwrap();
        assert_eq!(
            c.static_value("log.retention.ms").as_deref(),
            Some("3600000")
        );
        let c = load(&["log.retention.hours=1", "log.retention.minutes=2"]).unwrap();
        assert_eq!(
            c.static_value("log.retention.ms").as_deref(),
            Some("120000")
        );
        let c = load(&["log.retention.minutes=2", "log.retention.ms=7"]).unwrap();
        assert_eq!(c.static_value("log.retention.ms").as_deref(), Some("7"));
    }

    #[test]
    fn kafka_image_variables_name_settings() {
        let env = vec![
            ("KAFKA_NODE_ID".to_string(), "3".to_string()),
            (
                "KAFKA_PROCESS_ROLES".to_string(),
                "broker,controller".to_string(),
            ),
            (
                "KAFKA_CONTROLLER_QUORUM_VOTERS".to_string(),
                "3@127.0.0.1:9093".to_string(),
            ),
            (
                "KAFKA_LISTENERS".to_string(),
                "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:9093".to_string(),
            ),
            ("KAFKA_HEAP_OPTS".to_string(), "-Xmx1G".to_string()),
            (
                "CLUSTER_ID".to_string(),
                "MkU3OEVBNTcwNTJENDM2Qk".to_string(),
            ),
            ("KAFKA_NUM_PARTITIONS".to_string(), "2".to_string()),
            ("FJORD_NUM_PARTITIONS".to_string(), "4".to_string()),
        ];
        let c = BrokerConfig::load(None, env, &[]).unwrap();
        assert_eq!(c.node_id, 3);
        assert_eq!(c.voters.len(), 1);
        assert_eq!(c.cluster_id.as_deref(), Some("MkU3OEVBNTcwNTJENDM2Qk"));
        assert_eq!(c.num_partitions, 4, "FJORD_ wins over KAFKA_");
        assert_eq!(kafka_image_key("LOG_DIRS"), "log.dirs");
        assert_eq!(
            kafka_image_key("LISTENER_NAME_CLIENT_SCRAM___SHA___256_SASL__JAAS__CONFIG"),
            "listener.name.client.scram-sha-256.sasl_jaas_config"
        );
    }

    #[test]
    fn properties_file_env_and_overrides_layer_in_order() {
        let file = "# comment\nnum.partitions=3\nlog.dirs = /a\n";
        let env = vec![
            ("FJORD_NUM_PARTITIONS".to_string(), "4".to_string()),
            ("FJORD_CACHE".to_string(), "/not/a/setting".to_string()),
        ];
        let c = BrokerConfig::load(Some(file), env.clone(), &[]).unwrap();
        assert_eq!(c.num_partitions, 4);
        assert_eq!(c.log_dir, PathBuf::from("/a"));
        let c = BrokerConfig::load(Some(file), env, &["num.partitions=5".into()]).unwrap();
        assert_eq!(c.num_partitions, 5);
    }

    #[test]
    fn controller_listener_is_skipped_and_sasl_is_refused_for_now() {
        let c = load(&[
            "listeners=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:9093",
            "controller.quorum.voters=1@127.0.0.1:9093",
        ])
        .unwrap();
        assert_eq!(c.listeners.len(), 1);
        let e = load(&["listeners=SASL_PLAINTEXT://:9092"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("listeners"), "{e}");
    }

    /// Apache Kafka 4's `config/server.properties` as it ships (comments left out): a single
    /// combined node with `controller.quorum.bootstrap.servers` naming itself.
    #[test]
    fn kafkas_own_server_properties_start_a_single_node() {
        let text = "process.roles=broker,controller\nnode.id=1\n\
            controller.quorum.bootstrap.servers=localhost:9093\n\
            listeners=PLAINTEXT://:9092,CONTROLLER://:9093\ninter.broker.listener.name=PLAINTEXT\n\
            advertised.listeners=PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093\n\
            controller.listener.names=CONTROLLER\n\
            listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL\n\
            num.network.threads=3\nnum.io.threads=8\nsocket.send.buffer.bytes=102400\n\
            socket.receive.buffer.bytes=102400\nsocket.request.max.bytes=104857600\n\
            log.dirs=/tmp/kraft-combined-logs\nnum.partitions=1\n\
            num.recovery.threads.per.data.dir=1\noffsets.topic.replication.factor=1\n\
            share.coordinator.state.topic.replication.factor=1\n\
            share.coordinator.state.topic.min.isr=1\ntransaction.state.log.replication.factor=1\n\
            transaction.state.log.min.isr=1\nlog.retention.hours=168\n\
            log.segment.bytes=1073741824\nlog.retention.check.interval.ms=300000\n";
        let c = BrokerConfig::load(Some(text), Vec::new(), &[]).unwrap();
        assert!(
            c.broker && c.controller && c.voters.is_empty(),
            "a quorum of itself"
        );
        assert_eq!(c.controller_listeners.len(), 1);
        // Another node's controller is not this node's quorum.
        let e = load(&[
            "controller.quorum.bootstrap.servers=elsewhere:9094",
            "listeners=PLAINTEXT://:0,CONTROLLER://:9093",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("controller.quorum.bootstrap.servers"), "{e}");
        // Several bootstrap servers are a dynamic quorum (KIP-853), which Fjord does not run.
        let e = load(&[
            "controller.quorum.bootstrap.servers=a:9093,b:9093",
            "listeners=PLAINTEXT://:0,CONTROLLER://:9093",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("controller.quorum.bootstrap.servers"), "{e}");
    }

    #[test]
    fn process_roles_and_voters_must_agree() {
        let voters = "controller.quorum.voters=1@127.0.0.1:9093,2@127.0.0.1:9094";
        let broker_only = load(&["node.id=4", "process.roles=broker", voters]).unwrap();
        assert!(!broker_only.controller);
        assert!(broker_only.controller_listeners.is_empty());
        let combined = load(&[
            "node.id=1",
            "listeners=PLAINTEXT://:0,CONTROLLER://:9093",
            voters,
        ])
        .unwrap();
        assert!(combined.controller && combined.broker);
        let controller_only = load(&[
            "node.id=2",
            "process.roles=controller",
            "listeners=CONTROLLER://:9094",
            voters,
        ])
        .unwrap();
        assert!(controller_only.controller && !controller_only.broker);
        assert!(controller_only.listeners.is_empty());
        for (settings, key) in [
            (
                vec!["node.id=1", "process.roles=broker", voters],
                "controller.quorum.voters",
            ),
            (
                vec!["node.id=4", "process.roles=broker"],
                "controller.quorum.voters",
            ),
            (vec!["node.id=4", voters], "controller.quorum.voters"),
            // A controller-only node needs a controller listener and a place among the voters.
            (
                vec!["node.id=1", "process.roles=controller", voters],
                "controller.listener.names",
            ),
            (
                vec![
                    "node.id=3",
                    "process.roles=controller",
                    "listeners=CONTROLLER://:9095",
                    voters,
                ],
                "controller.quorum.voters",
            ),
            (
                vec![
                    "node.id=2",
                    "process.roles=controller",
                    "listeners=PLAINTEXT://:9092,CONTROLLER://:9094",
                    voters,
                ],
                "listeners",
            ),
            (
                vec!["node.id=1", "process.roles=broker,broker", voters],
                "process.roles",
            ),
        ] {
            let e = load(&settings).unwrap_err().to_string();
            assert!(e.contains(key), "{settings:?}: {e}");
        }
    }

    #[test]
    fn topic_values_are_checked() {
        assert!(validate_topic_value("retention.ms", "1000").is_ok());
        assert!(validate_topic_value("retention.ms", "-1").is_ok());
        assert!(validate_topic_value("retention.ms", "-2").is_err());
        assert!(validate_topic_value("retention.ms", "soon").is_err());
        assert!(validate_topic_value("cleanup.policy", "shred").is_err());
        assert!(validate_topic_value("no.such.key", "1").is_err());
    }
}
