//! ApiVersions: the APIs and version ranges this broker implements (and nothing more).

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use super::{served_on_controller, supported, KafkaError, RequestContext};

/// The APIs of a client listener, or of a controller listener (`controller`).
fn api_keys(controller: bool) -> Vec<ApiVersion> {
    // Kafka's API keys are all below 100.
    (0..100i16)
        .filter_map(|k| ApiKey::try_from(k).ok())
        .filter(|key| !controller || served_on_controller(*key))
        .filter_map(|key| {
            let r = supported(key)?;
            Some(
                ApiVersion::default()
                    .with_api_key(key as i16)
                    .with_min_version(r.min)
                    .with_max_version(r.max),
            )
        })
        .collect()
}

pub fn handle(req: ApiVersionsRequest, ctx: &RequestContext) -> ApiVersionsResponse {
    if !req.client_software_name.is_empty() {
        tracing::debug!(
            client = %ctx.client_id,
            software = %req.client_software_name,
            software_version = %req.client_software_version,
            "client connected"
        );
    }
    ApiVersionsResponse::default().with_api_keys(api_keys(ctx.connection.controller))
}

/// The v0-shaped answer to an ApiVersions request at a version this broker does not know.
pub fn unsupported_version(controller: bool) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(KafkaError::UnsupportedVersion.code())
        .with_api_keys(api_keys(controller))
}
