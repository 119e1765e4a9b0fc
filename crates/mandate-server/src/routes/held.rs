//! Held calls: approvals (`/v1/approvals`) and proposals (`/v1/proposals`), the use
//! cases of `mandate_core::calls`; a proposal executes through the same decision as
//! an agent's call, and the gateway forwards it.

use axum::Json;
use axum::extract::{Path, State};
use mandate_core::calls::{Calls, RollbackReport};
use mandate_domain::{Approval, ApprovalStatus, Proposal, ProposalStatus};
use mandate_store::{ApprovalFilter, ProposalFilter};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{PageBody, Paging};
use crate::AppState;
use crate::extract::{ApiJson, ApiQuery, Caller, path_id, query_id};
use crate::problem::{ApiResult, Problem};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_approvals))
        .routes(routes!(get_approval))
        .routes(routes!(approve))
        .routes(routes!(deny))
        .routes(routes!(list_proposals))
        .routes(routes!(get_proposal))
        .routes(routes!(execute))
        .routes(routes!(reject))
        .routes(routes!(rollback))
}

fn calls(state: &AppState) -> Result<&Calls, Problem> {
    state.calls.as_ref().ok_or_else(|| {
        Problem::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "gateway-not-running",
            "The gateway is not running",
            "this server runs without the gateway (no token service)",
        )
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct HeldQuery {
    after: Option<String>,
    limit: Option<u32>,
    /// `pending`, `approved`, `denied`, `used`, `expired` (approvals) or `recorded`,
    /// `executing`, `executed`, `failed`, `rejected` (proposals).
    status: Option<String>,
    mandate: Option<String>,
}

impl HeldQuery {
    /// The page, the status (`what` names its kind in the error) and the mandate.
    /// `I`: the listing's id type, which its cursors are.
    fn read<S, I: std::str::FromStr>(
        self,
        parse: fn(&str) -> Option<S>,
        what: &str,
    ) -> Result<HeldRead<S>, Problem> {
        let status = match self.status.as_deref() {
            None => None,
            Some(s) => Some(parse(s).ok_or_else(|| {
                let s: String = s.chars().take(32).collect();
                Problem::bad_request(format!("`status`: `{s}` is not {what} status"))
            })?),
        };
        let mandate = query_id("mandate", self.mandate.as_deref())?;
        let page = Paging {
            after: self.after,
            limit: self.limit,
        }
        .request::<I>()?;
        Ok((page, status, mandate))
    }
}

type HeldRead<S> = (
    mandate_store::PageRequest,
    Option<S>,
    Option<mandate_types::MandateId>,
);

/// A decision's optional comment.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// Up to 1000 characters, kept with the approval.
    pub comment: Option<String>,
}

/// List approvals (admin: all; a human: those under mandates they must consent to).
#[utoipa::path(get, path = "/v1/approvals", tag = "approvals", security(("bearer" = [])),
    params(HeldQuery),
    responses(
        (status = 200, body = PageBody<Approval>),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_approvals(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<HeldQuery>,
) -> ApiResult<Json<PageBody<Approval>>> {
    let (page, status, mandate) =
        q.read::<_, mandate_types::ApprovalId>(ApprovalStatus::parse, "an approval")?;
    let filter = ApprovalFilter { status, mandate };
    Ok(Json(
        calls(&state)?
            .list_approvals(&caller, filter, page)
            .await?
            .into(),
    ))
}

/// Get an approval: the tool, its tier, the arguments (redactions applied), the mandate.
#[utoipa::path(get, path = "/v1/approvals/{id}", tag = "approvals", security(("bearer" = [])),
    params(("id" = String, Path, description = "Approval id")),
    responses(
        (status = 200, body = Approval),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_approval(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Approval>> {
    Ok(Json(calls(&state)?.approval(&caller, path_id(&id)?).await?))
}

/// Approve a pending call: the agent's retry with identical arguments then passes, once.
#[utoipa::path(post, path = "/v1/approvals/{id}/approve", tag = "approvals", security(("bearer" = [])),
    params(("id" = String, Path, description = "Approval id")),
    request_body(content = Option<DecisionBody>),
    responses(
        (status = 200, body = Approval),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn approve(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Option<ApiJson<DecisionBody>>,
) -> ApiResult<Json<Approval>> {
    let comment = body.and_then(|b| b.0.comment);
    Ok(Json(
        calls(&state)?
            .decide_approval(&caller, path_id(&id)?, true, comment)
            .await?,
    ))
}

/// Deny a pending call.
#[utoipa::path(post, path = "/v1/approvals/{id}/deny", tag = "approvals", security(("bearer" = [])),
    params(("id" = String, Path, description = "Approval id")),
    request_body(content = Option<DecisionBody>),
    responses(
        (status = 200, body = Approval),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn deny(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Option<ApiJson<DecisionBody>>,
) -> ApiResult<Json<Approval>> {
    let comment = body.and_then(|b| b.0.comment);
    Ok(Json(
        calls(&state)?
            .decide_approval(&caller, path_id(&id)?, false, comment)
            .await?,
    ))
}

/// List proposals recorded by recommend-only mandates.
#[utoipa::path(get, path = "/v1/proposals", tag = "approvals", security(("bearer" = [])),
    params(HeldQuery),
    responses(
        (status = 200, body = PageBody<Proposal>),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_proposals(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<HeldQuery>,
) -> ApiResult<Json<PageBody<Proposal>>> {
    let (page, status, mandate) =
        q.read::<_, mandate_types::ProposalId>(ProposalStatus::parse, "a proposal")?;
    let filter = ProposalFilter { status, mandate };
    Ok(Json(
        calls(&state)?
            .list_proposals(&caller, filter, page)
            .await?
            .into(),
    ))
}

#[utoipa::path(get, path = "/v1/proposals/{id}", tag = "approvals", security(("bearer" = [])),
    params(("id" = String, Path, description = "Proposal id")),
    responses(
        (status = 200, body = Proposal),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_proposal(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Proposal>> {
    Ok(Json(calls(&state)?.proposal(&caller, path_id(&id)?).await?))
}

/// Execute a proposal through the gateway's enforcement path (decided again now), once.
#[utoipa::path(post, path = "/v1/proposals/{id}/execute", tag = "approvals", security(("bearer" = [])),
    params(("id" = String, Path, description = "Proposal id")),
    responses(
        (status = 200, body = Proposal),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn execute(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Proposal>> {
    Ok(Json(
        calls(&state)?
            .execute_proposal(&caller, path_id(&id)?, false)
            .await?,
    ))
}

/// Reject a proposal: it is never executed.
#[utoipa::path(post, path = "/v1/proposals/{id}/reject", tag = "approvals", security(("bearer" = [])),
    params(("id" = String, Path, description = "Proposal id")),
    responses(
        (status = 200, body = Proposal),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn reject(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Proposal>> {
    Ok(Json(
        calls(&state)?
            .execute_proposal(&caller, path_id(&id)?, true)
            .await?,
    ))
}

/// What to roll back: one call (its `tool.called` event's sequence number), or every
/// compensable call of the mandate when absent.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RollbackRequest {
    call: Option<u64>,
}

/// Roll back one call or a whole mandate: the recorded compensations run newest first,
/// each decided and forwarded like any call, on the caller's authority (a person who
/// must consent to the mandate, or an admin). A failed step stops the rollback
/// (`complete: false`, the steps not run named); running it again continues and never
/// repeats a step that is done.
#[utoipa::path(post, path = "/v1/mandates/{id}/rollback", tag = "approvals", security(("bearer" = [])),
    params(("id" = String, Path, description = "Mandate id")),
    request_body(content = Option<RollbackRequest>),
    responses(
        (status = 200, body = RollbackReport),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn rollback(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Option<ApiJson<RollbackRequest>>,
) -> ApiResult<Json<RollbackReport>> {
    let request = body.map(|ApiJson(r)| r).unwrap_or_default();
    Ok(Json(
        calls(&state)?
            .rollback(&caller, path_id(&id)?, request.call)
            .await?,
    ))
}
