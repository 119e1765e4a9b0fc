//! `/v1/policies`: the operator's policy set — read, validate, replace.

use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use mandate_core::PolicySummary;
use mandate_policy::PolicySource;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::extract::{ApiJson, Caller};
use crate::problem::{ApiResult, Problem};

/// The largest policy set accepted through the API.
pub const MAX_POLICY_BODY_BYTES: usize = 16 * 1024 * 1024;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_policies, put_policies))
        .routes(routes!(get_policy_source))
        .routes(routes!(validate_policies))
        .layer(DefaultBodyLimit::max(MAX_POLICY_BODY_BYTES))
}

/// The running policy set: digest and every policy (built-in first).
#[utoipa::path(get, path = "/v1/policies", tag = "policies", security(("bearer" = [])),
    responses(
        (status = 200, body = PolicySummary),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_policies(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<Json<PolicySummary>> {
    Ok(Json(state.service.policy_summary(&caller)?))
}

/// Replace the operator's policy set, whole. A set that does not compile is refused
/// (422, every problem with file, line and column) and the running set stays.
#[utoipa::path(put, path = "/v1/policies", tag = "policies", security(("bearer" = [])),
    request_body(content = Object, description = "`{policies: [{name, text}], schemas: [{name, text}], entities: {name, text}}`"),
    responses(
        (status = 200, body = PolicySummary),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn put_policies(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(source): ApiJson<PolicySource>,
) -> ApiResult<Json<PolicySummary>> {
    Ok(Json(state.service.put_policies(&caller, source).await?))
}

/// The running set's files, as `PUT /v1/policies` takes them.
#[utoipa::path(get, path = "/v1/policies/source", tag = "policies", security(("bearer" = [])),
    responses(
        (status = 200, body = Object),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_policy_source(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<Json<PolicySource>> {
    Ok(Json(state.service.policy_source(&caller)?))
}

/// Compile a set without installing it: 200 with its summary, or 422 with every problem.
#[utoipa::path(post, path = "/v1/policies/validate", tag = "policies", security(("bearer" = [])),
    request_body(content = Object),
    responses(
        (status = 200, body = PolicySummary),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn validate_policies(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(source): ApiJson<PolicySource>,
) -> ApiResult<Json<PolicySummary>> {
    Ok(Json(state.service.validate_policies(&caller, source)?))
}
