//! `/v1/secrets`: the credential broker's vault (administrators only). A secret goes
//! in and never comes out: listings show names, key ids and times.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mandate_core::calls::{Broker, SecretInput};
use mandate_store::SecretMeta;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::extract::{ApiJson, Caller};
use crate::problem::{ApiResult, Problem};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_secrets))
        .routes(routes!(put_secret, delete_secret))
}

/// What is shown of a secret: never its value or sealed form.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretView {
    pub name: String,
    /// The master key it is sealed under.
    pub key_id: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<SecretMeta> for SecretView {
    fn from(m: SecretMeta) -> Self {
        SecretView {
            name: m.name,
            key_id: m.key_id,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

fn broker(state: &AppState) -> Result<&std::sync::Arc<Broker>, Problem> {
    state.vault.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "broker-not-configured",
            "The credential broker is off",
            "set MANDATE_MASTER_KEY or MANDATE_MASTER_KEY_FILE to store secrets",
        )
    })
}

/// List the tenant's secrets (names, key ids, times — never values).
#[utoipa::path(get, path = "/v1/secrets", tag = "tools", security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<SecretView>),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "the credential broker is off (no master key), or the store did not answer"),
    ))]
async fn list_secrets(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<Json<Vec<SecretView>>> {
    let listed = broker(&state)?.list_secrets(&caller).await?;
    Ok(Json(listed.into_iter().map(SecretView::from).collect()))
}

/// Store (or replace) a secret, sealed with AES-256-GCM under the newest master key.
/// Tool servers name it as `credential_ref: "secret:NAME"`.
#[utoipa::path(put, path = "/v1/secrets/{name}", tag = "tools", security(("bearer" = [])),
    params(("name" = String, Path, description = "Secret name")),
    request_body = SecretInput,
    responses(
        (status = 200, body = SecretView),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "the credential broker is off (no master key), or the store did not answer"),
    ))]
async fn put_secret(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    ApiJson(input): ApiJson<SecretInput>,
) -> ApiResult<Json<SecretView>> {
    Ok(Json(
        broker(&state)?
            .put_secret(&caller, &name, input)
            .await?
            .into(),
    ))
}

#[utoipa::path(delete, path = "/v1/secrets/{name}", tag = "tools", security(("bearer" = [])),
    params(("name" = String, Path, description = "Secret name")),
    responses(
        (status = 204),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "the credential broker is off (no master key), or the store did not answer"),
    ))]
async fn delete_secret(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    broker(&state)?.delete_secret(&caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
