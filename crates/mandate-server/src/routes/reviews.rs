//! Access reviews (`/v1/reviews`): the report as JSON or CSV, marking a finding, and
//! revoking from the report — `mandate_core::reviews`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::{ACCEPT, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use mandate_core::reviews::{
    MarkRequest, MarkView, ReviewQuery, ReviewReport, ReviewRevocation, RevokeRequest, parse_days,
    to_csv,
};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::extract::{ApiJson, ApiQuery, Caller, path_id, query_id};
use crate::problem::{ApiResult, Problem};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(review))
        .routes(routes!(mark_finding))
        .routes(routes!(revoke))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ReviewParams {
    /// The window: the last N days, 1 to 365 (default 30).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 365)]
    days: Option<String>,
    /// `json` (the default) or `csv` (one row per finding; `Accept: text/csv` alike).
    format: Option<String>,
    /// Only this agent.
    agent: Option<String>,
}

/// Whether the answer is CSV: `format` decides; without it, an `Accept` naming
/// `text/csv`.
fn wants_csv(format: Option<&str>, headers: &HeaderMap) -> Result<bool, Problem> {
    match format {
        Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(other) => {
            let shown: String = other.chars().take(32).collect();
            Err(Problem::bad_request(format!(
                "`format`: `{shown}` is not `json` or `csv`"
            )))
        }
        None => Ok(headers
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.split(';').next().map(str::trim) == Some("text/csv"))),
    }
}

/// The access review: per agent, its mandates and their state, the tools in scope
/// against the tools used in the window (unused scope is a finding), denied attempts
/// and drift alerts, approvals asked and given, the credentials the broker injects for
/// it (names only), and the people whose data it touched. An admin reviews every
/// agent of the tenant; a person the agents they own or sponsor; agents may not.
#[utoipa::path(get, path = "/v1/reviews", tag = "reviews", security(("bearer" = [])),
    params(ReviewParams),
    responses(
        (status = 200, description = "The review (JSON, or CSV with one row per finding)",
            content((ReviewReport = "application/json"), (String = "text/csv"))),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn review(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<ReviewParams>,
) -> ApiResult<Response> {
    let days = parse_days(params.days.as_deref()).map_err(Problem::bad_request)?;
    let csv = wants_csv(params.format.as_deref(), &headers)?;
    let agent = query_id("agent", params.agent.as_deref())?;
    let report = state
        .service
        .review(&caller, ReviewQuery { days, agent })
        .await?;
    if !csv {
        return Ok(Json(report).into_response());
    }
    Ok((
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"access-review.csv\""),
            ),
        ],
        to_csv(&report),
    )
        .into_response())
}

/// Mark a finding of the review (`acknowledged`, `accepted_risk`, `remediated`, with a
/// comment): kept with the finding's stable id in later reports, and recorded in the
/// ledger (`review.finding_marked`). A finding that no review the caller may read (at
/// `days`, default 30) shows is not found.
#[utoipa::path(post, path = "/v1/reviews/findings/{id}", tag = "reviews", security(("bearer" = [])),
    params(("id" = String, Path, description = "Finding id (`fnd_…`)")),
    request_body = MarkRequest,
    responses(
        (status = 200, body = MarkView),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn mark_finding(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<MarkRequest>,
) -> ApiResult<Json<MarkView>> {
    if request
        .days
        .is_some_and(|d| !(1..=mandate_core::reviews::MAX_DAYS).contains(&d))
    {
        return Err(Problem::bad_request(format!(
            "`days` must be from 1 to {}",
            mandate_core::reviews::MAX_DAYS
        )));
    }
    Ok(Json(
        state.service.mark_finding(&caller, &id, request).await?,
    ))
}

/// Revoke from the review: one mandate of the agent (`mandate_id`), or every active
/// one the caller may revoke (the others are listed as skipped), each as any
/// revocation (`mandate.revoked`); with `disable_agent` (admins only) the agent is
/// disabled too (`agent.updated`).
#[utoipa::path(post, path = "/v1/reviews/agents/{id}/revoke", tag = "reviews", security(("bearer" = [])),
    params(("id" = String, Path, description = "Agent id")),
    request_body = RevokeRequest,
    responses(
        (status = 200, body = ReviewRevocation),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn revoke(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<RevokeRequest>,
) -> ApiResult<Json<ReviewRevocation>> {
    Ok(Json(
        state
            .service
            .revoke_from_review(&caller, path_id(&id)?, request)
            .await?,
    ))
}
