//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics and brokers.
//!
//! Topic values resolve as topic override, then dynamic broker default, then static broker
//! setting, then Kafka's default, and each entry reports which of those it came from, which is
//! what `kafka-configs --describe` and `kafka-topics --describe` filter on.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use super::{str_bytes, KafkaError, RequestContext};
use crate::broker::Broker;
use crate::config::{
    validate_topic_value, ValueType, BROKER_KEYS, DYNAMIC_BROKER_KEYS, TOPIC_KEYS,
};
use crate::metadata::topics::Refusal;
use crate::metadata::{MetadataImage, MetadataRecord, ResourceType};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

// DescribeConfigsResponse.ConfigSource
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn config_type(ty: ValueType) -> i8 {
    match ty {
        ValueType::Bool => 1,
        ValueType::Str | ValueType::Ignored => 2,
        ValueType::Int => 3,
        ValueType::Long => 5,
        ValueType::List => 7,
    }
}

fn entry(
    name: &str,
    value: Option<String>,
    source: i8,
    ty: ValueType,
    read_only: bool,
) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(name))
        .with_value(value.map(str_bytes))
        .with_config_source(source)
        .with_config_type(config_type(ty))
        .with_read_only(read_only)
}

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(str_bytes(name))
        .with_value(Some(str_bytes(value)))
        .with_source(source)
}

/// Every level that has a value for a topic key, most specific first (Kafka's synonyms).
fn topic_synonyms(
    broker: &Broker,
    image: &MetadataImage,
    overrides: Option<&BTreeMap<String, String>>,
    key: &str,
    broker_key: &str,
) -> Vec<DescribeConfigsSynonym> {
    let mut out = Vec::new();
    if let Some(v) = overrides.and_then(|o| o.get(key)) {
        out.push(synonym(key, v, SOURCE_TOPIC));
    }
    if let Some(v) = image
        .broker_configs
        .get(&broker.config.node_id.to_string())
        .and_then(|m| m.get(broker_key))
    {
        out.push(synonym(broker_key, v, SOURCE_DYNAMIC_BROKER));
    }
    if let Some(v) = image.broker_configs.get("").and_then(|m| m.get(broker_key)) {
        out.push(synonym(broker_key, v, SOURCE_DYNAMIC_DEFAULT_BROKER));
    }
    if let Some(v) = broker.config.static_value(broker_key) {
        let source = if broker.config.is_set(broker_key) {
            SOURCE_STATIC_BROKER
        } else {
            SOURCE_DEFAULT
        };
        out.push(synonym(broker_key, &v, source));
    }
    out
}

fn describe_topic(
    broker: &Broker,
    image: &MetadataImage,
    name: &str,
) -> Result<Vec<DescribeConfigsResourceResult>, KafkaError> {
    let topic = image
        .topics
        .get(name)
        .ok_or(KafkaError::UnknownTopicOrPartition)?;
    Ok(TOPIC_KEYS
        .iter()
        .map(|t| {
            let synonyms =
                topic_synonyms(broker, image, Some(&topic.configs), t.name, t.broker_key);
            let (value, source) = match synonyms.first() {
                Some(s) => (s.value.as_ref().map(|v| v.to_string()), s.source),
                None => (None, SOURCE_DEFAULT),
            };
            entry(t.name, value, source, t.ty, false).with_synonyms(synonyms)
        })
        .collect())
}

fn describe_broker(
    broker: &Broker,
    image: &MetadataImage,
    name: &str,
) -> Result<Vec<DescribeConfigsResourceResult>, KafkaError> {
    let node = broker.config.node_id.to_string();
    if name.is_empty() {
        // The cluster-wide dynamic defaults only.
        return Ok(image
            .broker_configs
            .get("")
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        entry(
                            k,
                            Some(v.clone()),
                            SOURCE_DYNAMIC_DEFAULT_BROKER,
                            ValueType::Str,
                            false,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default());
    }
    if name != node {
        return Err(KafkaError::InvalidRequest);
    }
    Ok(BROKER_KEYS
        .iter()
        .filter(|d| d.ty != ValueType::Ignored)
        .map(|d| {
            let dynamic = DYNAMIC_BROKER_KEYS.contains(&d.name);
            if let Some(v) = image.broker_configs.get(&node).and_then(|m| m.get(d.name)) {
                return entry(d.name, Some(v.clone()), SOURCE_DYNAMIC_BROKER, d.ty, false);
            }
            if let Some(v) = image.broker_configs.get("").and_then(|m| m.get(d.name)) {
                return entry(
                    d.name,
                    Some(v.clone()),
                    SOURCE_DYNAMIC_DEFAULT_BROKER,
                    d.ty,
                    false,
                );
            }
            let source = if broker.config.is_set(d.name) {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            };
            entry(
                d.name,
                broker.config.static_value(d.name),
                source,
                d.ty,
                !dynamic,
            )
        })
        .collect())
}

pub fn describe(
    broker: &Arc<Broker>,
    req: DescribeConfigsRequest,
    _ctx: &RequestContext,
) -> DescribeConfigsResponse {
    let image = broker.metadata.image();
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            let found = match r.resource_type {
                TOPIC => describe_topic(broker, &image, &name),
                BROKER => describe_broker(broker, &image, &name),
                _ => Err(KafkaError::InvalidRequest),
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            match found {
                Ok(mut configs) => {
                    if !req.include_synonyms {
                        for c in &mut configs {
                            c.synonyms.clear();
                        }
                    }
                    if let Some(keys) = &r.configuration_keys {
                        configs.retain(|c| keys.iter().any(|k| k == &c.name));
                    }
                    result.with_configs(configs)
                }
                Err(e) => result
                    .with_error_code(e.code())
                    .with_error_message(Some(str_bytes(format!("{e:?}: {name}")))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// One requested change: key and new value (`None` deletes the override).
type Change = (String, Option<String>);

fn validate(
    resource_type: i8,
    name: &str,
    image: &MetadataImage,
    node: i32,
    changes: &[Change],
) -> Result<ResourceType, Refusal> {
    let rt = match resource_type {
        TOPIC => {
            if !image.topics.contains_key(name) {
                return Err(Refusal::new(
                    KafkaError::UnknownTopicOrPartition,
                    format!("Topic {name} does not exist"),
                ));
            }
            ResourceType::Topic
        }
        BROKER => {
            if !name.is_empty() && name != node.to_string() {
                return Err(Refusal::new(
                    KafkaError::InvalidRequest,
                    format!("Unknown broker {name}"),
                ));
            }
            ResourceType::Broker
        }
        _ => {
            return Err(Refusal::new(
                KafkaError::InvalidRequest,
                "Only topic and broker configs can be altered",
            ))
        }
    };
    for (k, v) in changes {
        match rt {
            ResourceType::Topic => {
                if !TOPIC_KEYS.iter().any(|t| t.name == k) {
                    return Err(Refusal::new(
                        KafkaError::InvalidConfig,
                        format!("Unknown topic config name: {k}"),
                    ));
                }
                if let Some(v) = v {
                    validate_topic_value(k, v)
                        .map_err(|m| Refusal::new(KafkaError::InvalidConfig, m))?;
                }
            }
            ResourceType::Broker => {
                if !DYNAMIC_BROKER_KEYS.contains(&k.as_str()) {
                    return Err(Refusal::new(
                        KafkaError::InvalidRequest,
                        format!("Cannot update these configs dynamically: [{k}]"),
                    ));
                }
                if let (Some(v), Some(t)) = (v, TOPIC_KEYS.iter().find(|t| t.broker_key == k)) {
                    validate_topic_value(t.name, v).map_err(|m| {
                        Refusal::new(KafkaError::InvalidConfig, m.replace(t.name, k))
                    })?;
                }
            }
        }
    }
    Ok(rt)
}

fn records(rt: ResourceType, name: &str, changes: Vec<Change>) -> Vec<MetadataRecord> {
    changes
        .into_iter()
        .map(|(key, value)| MetadataRecord::Config {
            resource_type: rt,
            resource: name.to_string(),
            key,
            value,
        })
        .collect()
}

fn current(image: &MetadataImage, rt: ResourceType, name: &str) -> BTreeMap<String, String> {
    match rt {
        ResourceType::Topic => image
            .topics
            .get(name)
            .map(|t| t.configs.clone())
            .unwrap_or_default(),
        ResourceType::Broker => image.broker_configs.get(name).cloned().unwrap_or_default(),
    }
}

/// Validates and (unless `validate_only`) commits changes computed from the current image.
async fn apply(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    mut changes: impl FnMut(&MetadataImage, ResourceType) -> Result<Vec<Change>, Refusal>,
) -> Result<(), Refusal> {
    let node = broker.config.node_id;
    if validate_only {
        let image = broker.metadata.image();
        let rt = validate(resource_type, name, &image, node, &[])?;
        let c = changes(&image, rt)?;
        validate(resource_type, name, &image, node, &c)?;
        return Ok(());
    }
    broker
        .commit_metadata(|img| {
            let rt = validate(resource_type, name, img, node, &[])?;
            let c = changes(img, rt)?;
            validate(resource_type, name, img, node, &c)?;
            Ok(records(rt, name, c))
        })
        .await
        .map(|_| ())
}

pub async fn alter(
    broker: &Arc<Broker>,
    req: AlterConfigsRequest,
    _ctx: &RequestContext,
) -> AlterConfigsResponse {
    let mut responses = Vec::new();
    for r in req.resources {
        let name = r.resource_name.to_string();
        let wanted: BTreeMap<String, String> = r
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        // Legacy AlterConfigs replaces the whole set of overrides.
        let outcome = apply(
            broker,
            r.resource_type,
            &name,
            req.validate_only,
            |img, rt| {
                let mut changes: Vec<Change> = current(img, rt, &name)
                    .into_keys()
                    .filter(|k| !wanted.contains_key(k))
                    .map(|k| (k, None))
                    .collect();
                changes.extend(wanted.iter().map(|(k, v)| (k.clone(), Some(v.clone()))));
                Ok(changes)
            },
        )
        .await;
        let resp = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        responses.push(match outcome {
            Ok(()) => resp,
            Err(e) => resp
                .with_error_code(e.code)
                .with_error_message(Some(str_bytes(e.message))),
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

pub async fn incremental_alter(
    broker: &Arc<Broker>,
    req: IncrementalAlterConfigsRequest,
    _ctx: &RequestContext,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::new();
    for r in req.resources {
        let name = r.resource_name.to_string();
        let ops: Vec<(String, i8, Option<String>)> = r
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.config_operation,
                    c.value.as_ref().map(|v| v.to_string()),
                )
            })
            .collect();
        let outcome = apply(
            broker,
            r.resource_type,
            &name,
            req.validate_only,
            |img, rt| {
                let existing = current(img, rt, &name);
                let mut changes = Vec::new();
                for (key, op, value) in &ops {
                    let list = |k: &str| -> Vec<String> {
                        existing
                            .get(k)
                            .map(|v| {
                                v.split(',')
                                    .filter(|s| !s.is_empty())
                                    .map(str::to_string)
                                    .collect()
                            })
                            .unwrap_or_default()
                    };
                    let change = match *op {
                        SET => (key.clone(), value.clone()),
                        DELETE => (key.clone(), None),
                        APPEND | SUBTRACT => {
                            let mut items = list(key);
                            for v in value
                                .as_deref()
                                .unwrap_or("")
                                .split(',')
                                .filter(|s| !s.is_empty())
                            {
                                if *op == APPEND && !items.iter().any(|i| i == v) {
                                    items.push(v.to_string());
                                } else if *op == SUBTRACT {
                                    items.retain(|i| i != v);
                                }
                            }
                            (
                                key.clone(),
                                if items.is_empty() {
                                    None
                                } else {
                                    Some(items.join(","))
                                },
                            )
                        }
                        other => {
                            return Err(Refusal::new(
                                KafkaError::InvalidRequest,
                                format!("Unknown config operation {other}"),
                            ))
                        }
                    };
                    if change.1.is_none() && *op == SET {
                        return Err(Refusal::new(
                            KafkaError::InvalidRequest,
                            format!("Null value not supported for {key}"),
                        ));
                    }
                    changes.push(change);
                }
                Ok(changes)
            },
        )
        .await;
        let resp = IncrementalResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        responses.push(match outcome {
            Ok(()) => resp,
            Err(e) => resp
                .with_error_code(e.code)
                .with_error_message(Some(str_bytes(e.message))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
