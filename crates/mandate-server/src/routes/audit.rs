use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use mandate_audit::{Event, EventKind};
use mandate_core::Verification;
use mandate_store::AuditFilter;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::extract::{ApiQuery, Caller, query_id};
use crate::problem::{ApiResult, Problem};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(verify))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    mandate: Option<String>,
    agent: Option<String>,
    human: Option<String>,
    /// An event type, e.g. `consent.granted`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kind: Option<String>,
    /// RFC 3339; events at or after.
    since: Option<DateTime<Utc>>,
    /// RFC 3339; events before.
    until: Option<DateTime<Utc>>,
    /// The `next` value of the previous page (a sequence number).
    after: Option<u64>,
    /// 1 to 1000 (default 100).
    limit: Option<u32>,
}

/// One page of the audit log, in sequence order.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<Event>,
    /// Pass as `after` for the next page; null on the last page.
    pub next: Option<u64>,
}

/// Read the audit log (admin: all of the tenant's; others: one mandate they can see).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("bearer" = [])),
    params(AuditQuery),
    responses(
        (status = 200, body = AuditPage),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_events(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    let kind = q
        .kind
        .as_deref()
        .map(str::parse::<EventKind>)
        .transpose()
        .map_err(|e| Problem::bad_request(format!("`type`: {e}")))?;
    let filter = AuditFilter {
        mandate: query_id("mandate", q.mandate.as_deref())?,
        agent: query_id("agent", q.agent.as_deref())?,
        human: query_id("human", q.human.as_deref())?,
        kind,
        since: q.since,
        until: q.until,
    };
    // Sequence numbers are stored as 64-bit signed integers: a cursor beyond them is
    // none this API handed out.
    if q.after.is_some_and(|after| i64::try_from(after).is_err()) {
        return Err(Problem::bad_request(
            "`after` is not a cursor of this listing: pass the `next` of the previous page",
        ));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1_000).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "`limit` must be between 1 and 1000, got {limit}"
        )));
    }
    // One more than asked tells whether there is a next page.
    let mut items = state
        .service
        .audit_events(&caller, filter, q.after, limit + 1)
        .await?;
    let more = items.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next = if more {
        items.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(Json(AuditPage { items, next }))
}

/// Verify the tenant's hash chain and its signed checkpoints (admin). Names the first
/// sequence number where they break.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses(
        (status = 200, body = Verification),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn verify(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<Json<Verification>> {
    Ok(Json(state.service.verify_audit_as(&caller).await?))
}
