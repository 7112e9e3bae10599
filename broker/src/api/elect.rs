//! ElectLeaders, for `kafka-leader-election.sh --election-type preferred|unclean`: the elections
//! are planned together on one image ([`plan_election`]) and committed as one metadata entry.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};

use super::{str_bytes, KafkaError, RequestContext};
use crate::broker::Broker;
use crate::metadata::brokers::{plan_election, Election};
use crate::metadata::topics::Refusal;

pub async fn elect_leaders(
    broker: &Arc<Broker>,
    req: ElectLeadersRequest,
    _ctx: &RequestContext,
) -> ElectLeadersResponse {
    let election = match req.election_type {
        0 => Election::Preferred,
        1 => Election::Unclean,
        other => {
            tracing::debug!(
                election_type = other,
                "ElectLeaders with an unknown election type"
            );
            return ElectLeadersResponse::default()
                .with_error_code(KafkaError::InvalidRequest.code());
        }
    };
    // No list means every partition; then those that need no election are not reported.
    let explicit = req.topic_partitions.is_some();
    let wanted: Vec<(String, i32)> = match req.topic_partitions {
        Some(topics) => topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
            .collect(),
        None => {
            let image = broker.metadata.image();
            image
                .topics
                .values()
                .flat_map(|t| (0..t.partitions.len() as i32).map(|p| (t.name.clone(), p)))
                .collect()
        }
    };
    let mut results: Vec<(String, i32, Result<(), Refusal>)> = Vec::new();
    let committed = broker
        .commit_metadata(|img| {
            results.clear();
            let mut records = Vec::new();
            for (topic, partition) in &wanted {
                let outcome = plan_election(img, topic, *partition, election).map(|r| {
                    records.push(r);
                });
                results.push((topic.clone(), *partition, outcome));
            }
            Ok(records)
        })
        .await;
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for (topic, partition, outcome) in results {
        let outcome = match (&committed, outcome) {
            (Err(e), Ok(())) => Err(e.clone()),
            (_, outcome) => outcome,
        };
        let r = PartitionResult::default().with_partition_id(partition);
        let r = match outcome {
            Ok(()) => r,
            Err(e) if !explicit && e.code == KafkaError::ElectionNotNeeded.code() => continue,
            Err(e) => r
                .with_error_code(e.code)
                .with_error_message(Some(str_bytes(e.message))),
        };
        by_topic.entry(topic).or_default().push(r);
    }
    ElectLeadersResponse::default().with_replica_election_results(
        by_topic
            .into_iter()
            .map(|(topic, partitions)| {
                ReplicaElectionResult::default()
                    .with_topic(TopicName(str_bytes(topic)))
                    .with_partition_result(partitions)
            })
            .collect(),
    )
}
