use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mandate_core::{ConsentRequest, EndRequest, MandateView};
use mandate_domain::{ConsentChannel, Mandate, MandateStatus, MandateTerms};
use mandate_store::MandateFilter;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{PageBody, Paging};
use crate::AppState;
use crate::extract::{ApiJson, ApiQuery, Caller, path_id, query_id};
use crate::problem::{ApiResult, Problem};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_mandate, list_mandates))
        .routes(routes!(get_mandate))
        .routes(routes!(consent))
        .routes(routes!(complete))
        .routes(routes!(revoke))
}

/// Request a mandate. An agent may request one for itself; it starts `requested` and
/// becomes `active` only when its grantor and every named owner consent.
#[utoipa::path(post, path = "/v1/mandates", tag = "mandates", security(("bearer" = [])),
    request_body = MandateTerms,
    responses(
        (status = 201, body = MandateView),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn request_mandate(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(terms): ApiJson<MandateTerms>,
) -> ApiResult<(StatusCode, Json<MandateView>)> {
    let view = state.service.request_mandate(&caller, terms).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct MandateQuery {
    after: Option<String>,
    limit: Option<u32>,
    #[param(value_type = Option<String>)]
    status: Option<MandateStatus>,
    agent: Option<String>,
    /// The grantor.
    human: Option<String>,
    /// Someone who must consent: the grantor or a named owner.
    consenter: Option<String>,
}

/// List mandates (admin: all; an agent: its own; a human: those they granted or must
/// consent to as a named owner).
#[utoipa::path(get, path = "/v1/mandates", tag = "mandates", security(("bearer" = [])),
    params(MandateQuery),
    responses(
        (status = 200, body = PageBody<Mandate>),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_mandates(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<MandateQuery>,
) -> ApiResult<Json<PageBody<Mandate>>> {
    let page = Paging {
        after: q.after,
        limit: q.limit,
    }
    .request::<mandate_types::MandateId>()?;
    let filter = MandateFilter {
        status: q.status,
        agent: query_id("agent", q.agent.as_deref())?,
        human: query_id("human", q.human.as_deref())?,
        consenter: query_id("consenter", q.consenter.as_deref())?,
    };
    Ok(Json(
        state
            .service
            .list_mandates(&caller, filter, page)
            .await?
            .into(),
    ))
}

/// Get a mandate with its consents (admin, its agent, its grantor, its owners).
#[utoipa::path(get, path = "/v1/mandates/{id}", tag = "mandates", security(("bearer" = [])),
    params(("id" = String, Path, description = "Mandate id")),
    responses(
        (status = 200, body = MandateView),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_mandate(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<MandateView>> {
    Ok(Json(state.service.mandate(&caller, path_id(&id)?).await?))
}

/// Consent to (`granted`) or refuse (`denied`) a mandate: its grantor or a named owner.
#[utoipa::path(post, path = "/v1/mandates/{id}/consent", tag = "mandates", security(("bearer" = [])),
    params(("id" = String, Path, description = "Mandate id")),
    request_body = ConsentRequest,
    responses(
        (status = 200, body = MandateView),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn consent(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<ConsentRequest>,
) -> ApiResult<Json<MandateView>> {
    let view = state
        .service
        .consent(&caller, path_id(&id)?, request, ConsentChannel::Api)
        .await?;
    Ok(Json(view))
}

/// Complete an active mandate: its task is done (its agent, its grantor, or admin).
#[utoipa::path(post, path = "/v1/mandates/{id}/complete", tag = "mandates", security(("bearer" = [])),
    params(("id" = String, Path, description = "Mandate id")),
    request_body(content = Option<EndRequest>),
    responses(
        (status = 200, body = MandateView),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn complete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Option<ApiJson<EndRequest>>,
) -> ApiResult<Json<MandateView>> {
    let request = body.map(|b| b.0).unwrap_or_default();
    Ok(Json(
        state
            .service
            .complete(&caller, path_id(&id)?, request)
            .await?,
    ))
}

/// Revoke an active mandate (its grantor, a named owner, or admin).
#[utoipa::path(post, path = "/v1/mandates/{id}/revoke", tag = "mandates", security(("bearer" = [])),
    params(("id" = String, Path, description = "Mandate id")),
    request_body(content = Option<EndRequest>),
    responses(
        (status = 200, body = MandateView),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn revoke(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Option<ApiJson<EndRequest>>,
) -> ApiResult<Json<MandateView>> {
    let request = body.map(|b| b.0).unwrap_or_default();
    Ok(Json(
        state
            .service
            .revoke(&caller, path_id(&id)?, request)
            .await?,
    ))
}
