//! Consumer group membership APIs (classic protocol): JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, DescribeGroups, ListGroups, DeleteGroups. The logic is in `crate::group`.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, SyncGroupRequest,
    SyncGroupResponse,
};

use super::{str_bytes, KafkaError, RequestContext};
use crate::broker::Broker;
use crate::group::state::JoinRequest;

/// Versions below the flexible ones encode these strings as non-nullable.
fn nullable(
    s: Option<String>,
    nullable_from: i16,
    version: i16,
) -> Option<kafka_protocol::protocol::StrBytes> {
    match s {
        Some(s) => Some(str_bytes(s)),
        None if version < nullable_from => Some(str_bytes("")),
        None => None,
    }
}

pub async fn join(
    broker: &Arc<Broker>,
    req: JoinGroupRequest,
    ctx: &RequestContext,
) -> JoinGroupResponse {
    let v = ctx.version;
    let group = req.group_id.0.to_string();
    if group.is_empty() {
        return JoinGroupResponse::default()
            .with_error_code(KafkaError::InvalidGroupId.code())
            .with_generation_id(-1)
            .with_protocol_name(nullable(None, 7, v));
    }
    let join = JoinRequest {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: ctx.client_id.clone(),
        client_host: format!("/{}", ctx.connection.peer.ip()),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout; Kafka uses the session timeout then.
        rebalance_timeout_ms: if v == 0 {
            req.session_timeout_ms
        } else {
            req.rebalance_timeout_ms
        },
        require_known_member_id: v >= 4,
    };
    let r = broker.groups.join(&group, join).await;
    JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation)
        .with_protocol_type(r.protocol_type.map(str_bytes))
        .with_protocol_name(nullable(r.protocol_name, 7, v))
        .with_leader(str_bytes(r.leader))
        .with_member_id(str_bytes(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(id))
                        .with_group_instance_id(instance.map(str_bytes))
                        .with_metadata(metadata)
                })
                .collect(),
        )
}

pub async fn sync(
    broker: &Arc<Broker>,
    req: SyncGroupRequest,
    ctx: &RequestContext,
) -> SyncGroupResponse {
    let r = broker
        .groups
        .sync(
            req.group_id.0.as_str(),
            req.member_id.as_str(),
            req.group_instance_id.as_deref(),
            req.generation_id,
            req.assignments
                .iter()
                .map(|a| (a.member_id.to_string(), a.assignment.clone()))
                .collect(),
        )
        .await;
    let _ = ctx;
    SyncGroupResponse::default()
        .with_error_code(r.error)
        .with_protocol_type(r.protocol_type.map(str_bytes))
        .with_protocol_name(r.protocol_name.map(str_bytes))
        .with_assignment(r.assignment)
}

pub fn heartbeat(
    broker: &Arc<Broker>,
    req: HeartbeatRequest,
    _ctx: &RequestContext,
) -> HeartbeatResponse {
    let code = broker.groups.heartbeat(
        req.group_id.0.as_str(),
        req.member_id.as_str(),
        req.group_instance_id.as_deref(),
        req.generation_id,
    );
    HeartbeatResponse::default().with_error_code(code)
}

pub fn leave(
    broker: &Arc<Broker>,
    req: LeaveGroupRequest,
    ctx: &RequestContext,
) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if ctx.version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let (code, results) = broker.groups.leave(req.group_id.0.as_str(), &members);
    if ctx.version < 3 {
        let code = if code != 0 {
            code
        } else {
            results.first().map(|r| r.2).unwrap_or(0)
        };
        return LeaveGroupResponse::default().with_error_code(code);
    }
    LeaveGroupResponse::default()
        .with_error_code(code)
        .with_members(
            results
                .into_iter()
                .map(|(id, instance, code)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(id))
                        .with_group_instance_id(instance.map(str_bytes))
                        .with_error_code(code)
                })
                .collect(),
        )
}

pub fn describe(
    broker: &Arc<Broker>,
    req: DescribeGroupsRequest,
    ctx: &RequestContext,
) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .into_iter()
        .map(|g| {
            if let Err(e) = broker.groups.check_coordinator(g.0.as_str()) {
                return DescribedGroup::default()
                    .with_group_id(g)
                    .with_error_code(e.code());
            }
            match broker.groups.describe(g.0.as_str()) {
                Some(s) => DescribedGroup::default()
                    .with_group_id(g)
                    .with_group_state(str_bytes(s.state))
                    .with_protocol_type(str_bytes(s.protocol_type))
                    .with_protocol_data(str_bytes(s.protocol))
                    .with_members(
                        s.members
                            .into_iter()
                            .map(|(id, instance, client, host, metadata, assignment)| {
                                DescribedGroupMember::default()
                                    .with_member_id(str_bytes(id))
                                    .with_group_instance_id(instance.map(str_bytes))
                                    .with_client_id(str_bytes(client))
                                    .with_client_host(str_bytes(host))
                                    .with_member_metadata(metadata)
                                    .with_member_assignment(assignment)
                            })
                            .collect(),
                    ),
                None if ctx.version >= 6 => DescribedGroup::default()
                    .with_group_id(g)
                    .with_group_state(str_bytes("Dead"))
                    .with_error_code(KafkaError::GroupIdNotFound.code()),
                None => DescribedGroup::default()
                    .with_group_id(g)
                    .with_group_state(str_bytes("Dead")),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub fn list(
    broker: &Arc<Broker>,
    req: ListGroupsRequest,
    _ctx: &RequestContext,
) -> ListGroupsResponse {
    let groups = broker
        .groups
        .group_ids()
        .into_iter()
        .filter_map(|id| broker.groups.describe(&id))
        .filter(|s| {
            req.states_filter.is_empty()
                || req
                    .states_filter
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(s.state))
        })
        .filter(|s| {
            let kind = if s.is_consumer_group {
                "consumer"
            } else {
                "classic"
            };
            req.types_filter.is_empty()
                || req
                    .types_filter
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(kind))
        })
        .map(|s| {
            let kind = if s.is_consumer_group {
                "consumer"
            } else {
                "classic"
            };
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(s.group_id)))
                .with_protocol_type(str_bytes(s.protocol_type))
                .with_group_state(str_bytes(s.state))
                .with_group_type(str_bytes(kind))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub fn delete(
    broker: &Arc<Broker>,
    req: DeleteGroupsRequest,
    _ctx: &RequestContext,
) -> DeleteGroupsResponse {
    let results = req
        .groups_names
        .into_iter()
        .map(|g| {
            let code = broker.groups.delete_group(g.0.as_str());
            DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(code)
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
