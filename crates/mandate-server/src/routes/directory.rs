use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mandate_core::{AgentUpdate, NewAgent, NewHuman};
use mandate_domain::{Agent, AgentStatus, Human};
use mandate_store::{AgentFilter, HumanFilter};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{IssuedTokenBody, NewToken, PageBody};
use crate::AppState;
use crate::extract::{ApiJson, ApiQuery, Caller, path_id, query_id};
use crate::problem::{ApiResult, Problem};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_human, list_humans))
        .routes(routes!(get_human))
        .routes(routes!(create_human_token))
        .routes(routes!(set_password))
        .routes(routes!(create_agent, list_agents))
        .routes(routes!(get_agent, update_agent))
        .routes(routes!(create_agent_token))
}

/// Create a human (admin).
#[utoipa::path(post, path = "/v1/humans", tag = "humans", security(("bearer" = [])),
    request_body = NewHuman,
    responses(
        (status = 201, body = Human),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_human(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(new): ApiJson<NewHuman>,
) -> ApiResult<(StatusCode, Json<Human>)> {
    let human = state.service.create_human(&caller, new).await?;
    Ok((StatusCode::CREATED, Json(human)))
}

/// A console password. It is hashed (Argon2id) and never returned or logged.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    #[schema(format = Password, min_length = 10)]
    password: String,
}

/// Set a human's console password (admin, or the human themself); their console
/// sessions end.
#[utoipa::path(put, path = "/v1/humans/{id}/password", tag = "humans", security(("bearer" = [])),
    params(("id" = String, Path)),
    request_body = NewPassword,
    responses(
        (status = 204),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn set_password(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewPassword>,
) -> ApiResult<StatusCode> {
    state
        .service
        .set_password(
            &caller,
            path_id(&id)?,
            mandate_types::Secret::new(body.password),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct HumanQuery {
    after: Option<String>,
    limit: Option<u32>,
    email: Option<String>,
    group: Option<String>,
}

/// List humans (admin).
#[utoipa::path(get, path = "/v1/humans", tag = "humans", security(("bearer" = [])),
    params(HumanQuery),
    responses(
        (status = 200, body = PageBody<Human>),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_humans(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<HumanQuery>,
) -> ApiResult<Json<PageBody<Human>>> {
    let page = super::Paging {
        after: q.after,
        limit: q.limit,
    }
    .request::<mandate_types::HumanId>()?;
    let filter = HumanFilter {
        email: q.email,
        group: q.group,
    };
    Ok(Json(
        state
            .service
            .list_humans(&caller, filter, page)
            .await?
            .into(),
    ))
}

/// Get a human (admin, or the human themself).
#[utoipa::path(get, path = "/v1/humans/{id}", tag = "humans", security(("bearer" = [])),
    params(("id" = String, Path, description = "Human id")),
    responses(
        (status = 200, body = Human),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_human(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Human>> {
    Ok(Json(state.service.human(&caller, path_id(&id)?).await?))
}

/// Issue an API token for a human (admin). The token is shown once.
#[utoipa::path(post, path = "/v1/humans/{id}/tokens", tag = "humans", security(("bearer" = [])),
    params(("id" = String, Path, description = "Human id")),
    request_body = NewToken,
    responses(
        (status = 201, body = IssuedTokenBody),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_human_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(new): ApiJson<NewToken>,
) -> ApiResult<(StatusCode, Json<IssuedTokenBody>)> {
    let issued = state
        .service
        .issue_human_token(&caller, path_id(&id)?, &new.label)
        .await?;
    Ok((StatusCode::CREATED, Json(issued.into())))
}

/// Register an agent (admin).
#[utoipa::path(post, path = "/v1/agents", tag = "agents", security(("bearer" = [])),
    request_body = NewAgent,
    responses(
        (status = 201, body = Agent),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_agent(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(new): ApiJson<NewAgent>,
) -> ApiResult<(StatusCode, Json<Agent>)> {
    let agent = state.service.create_agent(&caller, new).await?;
    Ok((StatusCode::CREATED, Json(agent)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AgentQuery {
    after: Option<String>,
    limit: Option<u32>,
    owner: Option<String>,
    status: Option<AgentStatus>,
    name: Option<String>,
}

/// List agents (admin: all; a human: the agents they own or sponsor).
#[utoipa::path(get, path = "/v1/agents", tag = "agents", security(("bearer" = [])),
    params(AgentQuery),
    responses(
        (status = 200, body = PageBody<Agent>),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_agents(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<AgentQuery>,
) -> ApiResult<Json<PageBody<Agent>>> {
    let page = super::Paging {
        after: q.after,
        limit: q.limit,
    }
    .request::<mandate_types::AgentId>()?;
    let filter = AgentFilter {
        owner: query_id("owner", q.owner.as_deref())?,
        status: q.status,
        name: q.name,
        ..AgentFilter::default()
    };
    Ok(Json(
        state
            .service
            .list_agents(&caller, filter, page)
            .await?
            .into(),
    ))
}

/// Get an agent (admin, its owner or a sponsor, or the agent itself).
#[utoipa::path(get, path = "/v1/agents/{id}", tag = "agents", security(("bearer" = [])),
    params(("id" = String, Path, description = "Agent id")),
    responses(
        (status = 200, body = Agent),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_agent(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Agent>> {
    Ok(Json(state.service.agent(&caller, path_id(&id)?).await?))
}

/// Change an agent's status, credentials, labels or sponsors (admin).
#[utoipa::path(patch, path = "/v1/agents/{id}", tag = "agents", security(("bearer" = [])),
    params(("id" = String, Path, description = "Agent id")),
    request_body = AgentUpdate,
    responses(
        (status = 200, body = Agent),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_agent(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(update): ApiJson<AgentUpdate>,
) -> ApiResult<Json<Agent>> {
    Ok(Json(
        state
            .service
            .update_agent(&caller, path_id(&id)?, update)
            .await?,
    ))
}

/// Issue an API token for an agent (admin). The token is shown once.
#[utoipa::path(post, path = "/v1/agents/{id}/tokens", tag = "agents", security(("bearer" = [])),
    params(("id" = String, Path, description = "Agent id")),
    request_body = NewToken,
    responses(
        (status = 201, body = IssuedTokenBody),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_agent_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(new): ApiJson<NewToken>,
) -> ApiResult<(StatusCode, Json<IssuedTokenBody>)> {
    let issued = state
        .service
        .issue_agent_token(&caller, path_id(&id)?, &new.label)
        .await?;
    Ok((StatusCode::CREATED, Json(issued.into())))
}
