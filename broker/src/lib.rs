//! Fjord's broker: a Kafka-compatible broker with a segmented log, a metadata log applied to
//! an in-memory image, and a classic consumer group coordinator.
//!
//! Data flow: [`server`] (listeners, connections, framing) -> [`api`] (one handler per Kafka
//! API) -> subsystems: [`log`] (segments, indexes, recovery, retention), [`replica`]
//! (hosted partitions, idempotent producer state, high watermarks), [`metadata`] (the ordered
//! metadata log and image), [`group`] (consumer groups and committed offsets), [`metrics`].

pub mod api;
pub mod broker;
pub mod client;
pub mod cluster;
pub mod config;
pub mod error;
pub mod group;
pub mod log;
pub mod metadata;
pub mod metrics;
pub mod quorum;
pub mod replica;
pub mod server;

pub use config::BrokerConfig;
pub use error::{Error, Result};
pub use server::{bind, run};
