//! OpenID AuthZEN Authorization API 1.0 over HTTP: evaluation, evaluations, the three
//! searches and discovery. Callers are policy enforcement points holding an admin
//! token; they are answered from the operator's policies. `X-Request-ID` is echoed.

use axum::Json;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderName};
use axum::middleware::Next;
use axum::response::Response;
use mandate_core::trace::{self, TraceContext};
use mandate_policy::{Decision, SearchKind, parse_evaluation, parse_evaluations, parse_search};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::extract::Caller;
use crate::problem::{ApiResult, Problem};

/// Batches of up to 1 000 items need more room than the admin API's default.
pub const MAX_AUTHZEN_BODY_BYTES: usize = 1024 * 1024;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(evaluation))
        .routes(routes!(evaluations))
        .routes(routes!(search_subject))
        .routes(routes!(search_resource))
        .routes(routes!(search_action))
        .layer(DefaultBodyLimit::max(MAX_AUTHZEN_BODY_BYTES))
        .layer(axum::middleware::from_fn(echo_request_id))
}

pub fn discovery_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(configuration))
}

/// Copies the caller's `X-Request-ID` onto the response, whatever the status.
async fn echo_request_id(request: Request, next: Next) -> Response {
    let id = request.headers().get(&REQUEST_ID).cloned();
    let mut response = next.run(request).await;
    if let Some(id) = id {
        response.headers_mut().insert(REQUEST_ID.clone(), id);
    }
    response
}

fn decision_body(decision: &Decision) -> Value {
    let context = match decision.remedy {
        Some(remedy) => {
            json!({ "reason": decision.reason, "policies": decision.policies, "remedy": remedy })
        }
        None => json!({ "reason": decision.reason, "policies": decision.policies }),
    };
    json!({ "decision": decision.allowed, "context": context })
}

/// Decide one request.
#[utoipa::path(post, path = "/access/v1/evaluation", tag = "authzen", security(("bearer" = [])),
    request_body(content = Object, description = "AuthZEN access evaluation request: subject, action, resource, context"),
    responses(
        (status = 200, body = Object, description = "`{decision, context: {reason, policies}}`"),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn evaluation(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let span = tracing::info_span!(target: trace::TARGET, "authzen_evaluation");
    trace::begin(&span, TraceContext::from_headers(&headers));
    span.in_scope(|| -> ApiResult<Json<Value>> {
        let Json(body) = body?;
        let request = parse_evaluation(&body).map_err(Problem::authzen)?;
        let set = state.service.authzen_set(&caller)?;
        let decision = tracing::info_span!(target: trace::TARGET, "decision")
            .in_scope(|| set.decide_access(&request));
        Ok(Json(decision_body(&decision)))
    })
}

/// Decide a batch: top-level fields are defaults each item overrides field by field;
/// `options.evaluations_semantic` may stop at the first deny or permit.
#[utoipa::path(post, path = "/access/v1/evaluations", tag = "authzen", security(("bearer" = [])),
    request_body(content = Object),
    responses(
        (status = 200, body = Object, description = "`{evaluations: [{decision, context}]}`, or one decision without items"),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn evaluations(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(body) = body?;
    let batch = parse_evaluations(&body).map_err(Problem::authzen)?;
    let set = state.service.authzen_set(&caller)?;
    let results = set.decide_batch(&batch);
    if batch.items.is_none() {
        let single = results
            .first()
            .and_then(|r| r.as_ref().ok())
            .map(decision_body)
            .unwrap_or_else(|| json!({ "decision": false }));
        return Ok(Json(single));
    }
    let items: Vec<Value> = results
        .iter()
        .map(|result| match result {
            Ok(decision) => decision_body(decision),
            Err(e) => json!({
                "decision": false,
                "context": { "error": { "status": 400, "message": e.0 } },
            }),
        })
        .collect();
    Ok(Json(json!({ "evaluations": items })))
}

async fn search(
    state: AppState,
    caller: Caller,
    kind: SearchKind,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(body) = body?;
    let search = parse_search(kind, &body).map_err(Problem::authzen)?;
    let set = state.service.authzen_set(&caller.0)?;
    let page = set.search(&search);
    Ok(Json(json!({
        "results": page.results,
        "page": { "next_token": page.next_token, "count": page.results.len(), "total": page.total },
    })))
}

/// Which subjects of a type may perform the action on the resource.
#[utoipa::path(post, path = "/access/v1/search/subject", tag = "authzen", security(("bearer" = [])),
    request_body(content = Object),
    responses(
        (status = 200, body = Object, description = "`{results: [{type, id}], page: {next_token, count, total}}`"),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn search_subject(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    search(state, caller, SearchKind::Subject, body).await
}

/// Which resources of a type the subject may perform the action on.
#[utoipa::path(post, path = "/access/v1/search/resource", tag = "authzen", security(("bearer" = [])),
    request_body(content = Object),
    responses(
        (status = 200, body = Object, description = "`{results: [{type, id}], page: {next_token, count, total}}`"),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn search_resource(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    search(state, caller, SearchKind::Resource, body).await
}

/// Which actions the subject may perform on the resource.
#[utoipa::path(post, path = "/access/v1/search/action", tag = "authzen", security(("bearer" = [])),
    request_body(content = Object),
    responses(
        (status = 200, body = Object, description = "`{results: [{name}], page: {next_token, count, total}}`"),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn search_action(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    search(state, caller, SearchKind::Action, body).await
}

/// AuthZEN discovery: where the decision point and each endpoint live.
#[utoipa::path(get, path = "/.well-known/authzen-configuration", tag = "authzen",
    responses((status = 200, body = Object)))]
async fn configuration(State(state): State<AppState>) -> Json<Value> {
    let base = state.public_url.trim_end_matches('/');
    Json(json!({
        "policy_decision_point": base,
        "access_evaluation_endpoint": format!("{base}/access/v1/evaluation"),
        "access_evaluations_endpoint": format!("{base}/access/v1/evaluations"),
        "search_subject_endpoint": format!("{base}/access/v1/search/subject"),
        "search_resource_endpoint": format!("{base}/access/v1/search/resource"),
        "search_action_endpoint": format!("{base}/access/v1/search/action"),
    }))
}
