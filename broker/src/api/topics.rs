//! CreateTopics, DeleteTopics and CreatePartitions: validated by the controller's planning
//! functions and committed to the metadata log one topic at a time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use uuid::Uuid;

use super::{str_bytes, KafkaError, RequestContext};
use crate::broker::Broker;
use crate::metadata::topics::{plan_create_partitions, plan_create_topic, Refusal, TopicSpec};
use crate::metadata::MetadataRecord;

/// Kafka's `MAX_PARTITIONS_PER_BATCH` (and `MAX_RECORDS_PER_USER_OP`): the most partitions
/// one CreateTopics or CreatePartitions request may add.
pub const MAX_PARTITIONS_PER_REQUEST: i64 = 10_000;

pub async fn create_topics(
    broker: &Arc<Broker>,
    req: CreateTopicsRequest,
    _ctx: &RequestContext,
) -> CreateTopicsResponse {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in &req.topics {
        *counts.entry(t.name.0.to_string()).or_default() += 1;
    }
    let defaults = broker.defaults();
    let mut results = Vec::with_capacity(req.topics.len());
    // Kafka's controller refuses the whole request above 10,000 partitions (a request for
    // 2^31-1 partitions crashed the broker before).
    let total: i64 = req
        .topics
        .iter()
        .map(|t| match (t.assignments.len(), t.num_partitions) {
            (0, n) if n > 0 => n as i64,
            (0, _) => defaults.partitions.max(0) as i64,
            (a, _) => a as i64,
        })
        .sum();
    if total > MAX_PARTITIONS_PER_REQUEST {
        let results = req
            .topics
            .into_iter()
            .map(|t| {
                CreatableTopicResult::default()
                    .with_name(t.name)
                    .with_error_code(KafkaError::PolicyViolation.code())
                    .with_error_message(Some(str_bytes(
                        "Excessively large number of partitions per request.",
                    )))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
            })
            .collect();
        return CreateTopicsResponse::default().with_topics(results);
    }
    for t in req.topics {
        let name = t.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(t.name.clone());
        if counts[&name] > 1 {
            results.push(
                result
                    .with_error_code(KafkaError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(format!(
                        "Create topics request from client contains duplicate topic {name}"
                    )))),
            );
            continue;
        }
        let mut configs = BTreeMap::new();
        for c in &t.configs {
            if let Some(v) = &c.value {
                configs.insert(c.name.to_string(), v.to_string());
            }
        }
        let assignments: BTreeMap<i32, Vec<i32>> = t
            .assignments
            .iter()
            .map(|a| {
                (
                    a.partition_index,
                    a.broker_ids.iter().map(|b| b.0).collect(),
                )
            })
            .collect();
        let spec = TopicSpec {
            name: &name,
            partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments,
            configs,
        };
        let outcome: Result<Uuid, Refusal> = if req.validate_only {
            plan_create_topic(&broker.metadata.image(), &spec, &defaults).map(|(id, _)| id)
        } else {
            let mut created = Uuid::nil();
            broker
                .commit_metadata(|img| {
                    plan_create_topic(img, &spec, &defaults).map(|(id, recs)| {
                        created = id;
                        recs
                    })
                })
                .await
                .map(|_| created)
        };
        match outcome {
            Ok(id) => {
                let image = broker.metadata.image();
                let (partitions, rf) = match image.topics.get(&name) {
                    Some(t) => (
                        t.partitions.len() as i32,
                        t.partitions
                            .first()
                            .map(|p| p.original().len())
                            .unwrap_or(1) as i16,
                    ),
                    None => (
                        if t.num_partitions > 0 {
                            t.num_partitions
                        } else {
                            defaults.partitions
                        },
                        if t.replication_factor > 0 {
                            t.replication_factor
                        } else {
                            defaults.replication_factor
                        },
                    ),
                };
                if !req.validate_only {
                    tracing::info!(topic = %name, partitions, "created topic");
                }
                results.push(
                    result
                        .with_topic_id(if req.validate_only { Uuid::nil() } else { id })
                        .with_num_partitions(partitions)
                        .with_replication_factor(rf),
                );
            }
            Err(r) => results.push(
                result
                    .with_error_code(r.code)
                    .with_error_message(Some(str_bytes(r.message)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            ),
        }
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub async fn delete_topics(
    broker: &Arc<Broker>,
    req: DeleteTopicsRequest,
    _ctx: &RequestContext,
) -> DeleteTopicsResponse {
    // v0-5 name topics in `topic_names`; v6 uses `topics` with a name or an id.
    let mut wanted: Vec<(Option<String>, Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), Uuid::nil()))
        .collect();
    wanted.extend(
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)),
    );
    let enabled = broker.config.static_value("delete.topic.enable").as_deref() != Some("false");
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let image = broker.metadata.image();
        let found = match &name {
            Some(n) => image.topics.get(n),
            None => image.topic_by_id(&id),
        };
        let result = DeletableTopicResult::default()
            .with_name(name.clone().map(|n| TopicName(str_bytes(n))))
            .with_topic_id(id);
        let Some(topic) = found.cloned() else {
            let e = if name.is_some() {
                KafkaError::UnknownTopicOrPartition
            } else {
                KafkaError::UnknownTopicId
            };
            responses.push(result.with_error_code(e.code()));
            continue;
        };
        if !enabled {
            responses.push(result.with_error_code(KafkaError::TopicDeletionDisabled.code()));
            continue;
        }
        if topic.is_internal() {
            responses.push(
                result
                    .with_error_code(KafkaError::InvalidTopicException.code())
                    .with_error_message(Some(str_bytes(format!(
                        "Topic {} is internal and cannot be deleted",
                        topic.name
                    )))),
            );
            continue;
        }
        let outcome = broker
            .commit_metadata(|img| {
                if img.topics.get(&topic.name).map(|t| t.id) != Some(topic.id) {
                    return Err(Refusal::new(
                        KafkaError::UnknownTopicOrPartition,
                        "deleted concurrently",
                    ));
                }
                Ok(vec![MetadataRecord::RemoveTopic { topic_id: topic.id }])
            })
            .await;
        match outcome {
            Ok(_) => {
                broker.groups.forget_topic(&topic.name);
                tracing::info!(topic = %topic.name, "deleted topic");
                responses.push(
                    result
                        .with_name(Some(TopicName(str_bytes(&topic.name))))
                        .with_topic_id(topic.id),
                );
            }
            Err(r) => responses.push(
                result
                    .with_error_code(r.code)
                    .with_error_message(Some(str_bytes(r.message))),
            ),
        }
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub async fn create_partitions(
    broker: &Arc<Broker>,
    req: CreatePartitionsRequest,
    _ctx: &RequestContext,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    let image = broker.metadata.image();
    let added: i64 = req
        .topics
        .iter()
        .filter_map(|t| {
            let current = image.topics.get(t.name.0.as_str())?.partitions.len() as i64;
            Some((t.count as i64 - current).max(0))
        })
        .sum();
    if added > MAX_PARTITIONS_PER_REQUEST {
        // Kafka bounds the records of one controller operation at 10,000.
        let results = req
            .topics
            .into_iter()
            .map(|t| {
                CreatePartitionsTopicResult::default()
                    .with_name(t.name)
                    .with_error_code(KafkaError::PolicyViolation.code())
                    .with_error_message(Some(str_bytes(
                        "Unable to perform excessively large batch operation.",
                    )))
            })
            .collect();
        return CreatePartitionsResponse::default().with_results(results);
    }
    for t in req.topics {
        let name = t.name.0.to_string();
        let assignments: Option<Vec<Vec<i32>>> = t.assignments.as_ref().map(|a| {
            a.iter()
                .map(|x| x.broker_ids.iter().map(|b| b.0).collect())
                .collect()
        });
        let outcome = if req.validate_only {
            plan_create_partitions(
                &broker.metadata.image(),
                &name,
                t.count,
                assignments.as_deref(),
            )
            .map(|_| ())
        } else {
            broker
                .commit_metadata(|img| {
                    plan_create_partitions(img, &name, t.count, assignments.as_deref())
                })
                .await
                .map(|_| ())
        };
        let result = CreatePartitionsTopicResult::default().with_name(t.name);
        results.push(match outcome {
            Ok(()) => result,
            Err(r) => result
                .with_error_code(r.code)
                .with_error_message(Some(str_bytes(r.message))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
