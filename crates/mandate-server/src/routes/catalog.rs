use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mandate_core::{NewTool, NewToolServer, ToolServerUpdate, ToolUpdate};
use mandate_domain::{Tool, ToolServer};
use mandate_store::ToolFilter;
use mandate_types::RiskTier;
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
        .routes(routes!(create_tool_server, list_tool_servers))
        .routes(routes!(get_tool_server, update_tool_server))
        .routes(routes!(create_tool, list_tools))
        .routes(routes!(get_tool, update_tool))
}

/// Register a tool server (admin).
#[utoipa::path(post, path = "/v1/tool-servers", tag = "tools", security(("bearer" = [])),
    request_body = NewToolServer,
    responses(
        (status = 201, body = ToolServer),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_tool_server(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(new): ApiJson<NewToolServer>,
) -> ApiResult<(StatusCode, Json<ToolServer>)> {
    let server = state.service.create_tool_server(&caller, new).await?;
    Ok((StatusCode::CREATED, Json(server)))
}

/// List tool servers (admin).
#[utoipa::path(get, path = "/v1/tool-servers", tag = "tools", security(("bearer" = [])),
    params(Paging),
    responses(
        (status = 200, body = PageBody<ToolServer>),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_tool_servers(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(paging): ApiQuery<Paging>,
) -> ApiResult<Json<PageBody<ToolServer>>> {
    let page = paging.request::<mandate_types::ToolServerId>()?;
    Ok(Json(
        state.service.list_tool_servers(&caller, page).await?.into(),
    ))
}

/// Get a tool server (admin).
#[utoipa::path(get, path = "/v1/tool-servers/{id}", tag = "tools", security(("bearer" = [])),
    params(("id" = String, Path, description = "Tool server id")),
    responses(
        (status = 200, body = ToolServer),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_tool_server(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ToolServer>> {
    Ok(Json(
        state.service.tool_server(&caller, path_id(&id)?).await?,
    ))
}

/// Change a tool server's operator settings, e.g. `step_up` (admin).
#[utoipa::path(patch, path = "/v1/tool-servers/{id}", tag = "tools", security(("bearer" = [])),
    params(("id" = String, Path, description = "Tool server id")),
    request_body = ToolServerUpdate,
    responses(
        (status = 200, body = ToolServer),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_tool_server(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(update): ApiJson<ToolServerUpdate>,
) -> ApiResult<Json<ToolServer>> {
    Ok(Json(
        state
            .service
            .update_tool_server(&caller, path_id(&id)?, update)
            .await?,
    ))
}

/// Register a tool on a server (admin). Its risk tier defaults from its annotations.
#[utoipa::path(post, path = "/v1/tools", tag = "tools", security(("bearer" = [])),
    request_body = NewTool,
    responses(
        (status = 201, body = Tool),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_tool(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(new): ApiJson<NewTool>,
) -> ApiResult<(StatusCode, Json<Tool>)> {
    let tool = state.service.create_tool(&caller, new).await?;
    Ok((StatusCode::CREATED, Json(tool)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ToolQuery {
    after: Option<String>,
    limit: Option<u32>,
    server: Option<String>,
    risk_tier: Option<RiskTier>,
}

/// List tools (admin).
#[utoipa::path(get, path = "/v1/tools", tag = "tools", security(("bearer" = [])),
    params(ToolQuery),
    responses(
        (status = 200, body = PageBody<Tool>),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_tools(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<ToolQuery>,
) -> ApiResult<Json<PageBody<Tool>>> {
    let page = Paging {
        after: q.after,
        limit: q.limit,
    }
    .request::<mandate_types::ToolId>()?;
    let filter = ToolFilter {
        server: query_id("server", q.server.as_deref())?,
        risk_tier: q.risk_tier,
    };
    Ok(Json(
        state
            .service
            .list_tools(&caller, filter, page)
            .await?
            .into(),
    ))
}

/// Get a tool (admin).
#[utoipa::path(get, path = "/v1/tools/{id}", tag = "tools", security(("bearer" = [])),
    params(("id" = String, Path, description = "Tool id")),
    responses(
        (status = 200, body = Tool),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_tool(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Tool>> {
    Ok(Json(state.service.tool(&caller, path_id(&id)?).await?))
}

/// Override a tool's tier, tags, data class or description (admin).
#[utoipa::path(patch, path = "/v1/tools/{id}", tag = "tools", security(("bearer" = [])),
    params(("id" = String, Path, description = "Tool id")),
    request_body = ToolUpdate,
    responses(
        (status = 200, body = Tool),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_tool(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(update): ApiJson<ToolUpdate>,
) -> ApiResult<Json<Tool>> {
    Ok(Json(
        state
            .service
            .update_tool(&caller, path_id(&id)?, update)
            .await?,
    ))
}
