//! RFC 9457 problem details: the one place where errors become admin-API responses.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mandate_core::CoreError;
use mandate_domain::LifecycleError;
use serde::Serialize;
use utoipa::ToSchema;

/// The problem type of a store or ledger that failed: transient, retried.
const UNAVAILABLE: &str = "urn:mandate:problem:unavailable";

/// An error response (`application/problem+json`, RFC 9457).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URN naming the kind of problem, e.g. `urn:mandate:problem:not-found`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    /// What went wrong with this request, for a person to read.
    pub detail: String,
    /// A refused policy set: every problem, located (file, line, column, policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub problems: Option<Vec<mandate_policy::Problem>>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        slug: &str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            kind: format!("urn:mandate:problem:{slug}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            problems: None,
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }

    pub fn unauthenticated() -> Self {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Unauthenticated",
            CoreError::Unauthenticated.to_string(),
        )
    }

    /// An AuthZEN request the specification calls malformed.
    pub fn authzen(err: mandate_policy::BadRequest) -> Self {
        Problem::bad_request(err.0)
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, Json(&self)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        // A store that does not answer is expected back: say when to try again (a
        // 503 for a part that is off, such as the broker, is not retried).
        if self.kind == UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<CoreError> for Problem {
    fn from(err: CoreError) -> Self {
        use StatusCode as S;
        let detail = err.to_string();
        match err {
            CoreError::Unauthenticated => Problem::unauthenticated(),
            CoreError::Forbidden(_) => Problem::new(S::FORBIDDEN, "forbidden", "Forbidden", detail),
            CoreError::NotFound { .. } => Problem::not_found(detail),
            CoreError::Invalid { .. } => Problem::new(
                S::UNPROCESSABLE_ENTITY,
                "invalid-request",
                "Invalid request",
                detail,
            ),
            CoreError::Conflict(_) => Problem::new(S::CONFLICT, "conflict", "Conflict", detail),
            CoreError::Lifecycle(e) => {
                let (slug, title) = match e {
                    LifecycleError::Illegal { .. } | LifecycleError::NotDue(_) => {
                        ("illegal-transition", "Illegal transition")
                    }
                    LifecycleError::TermsChanged { .. } => ("terms-changed", "Terms changed"),
                    LifecycleError::NotAConsenter(_) => ("forbidden", "Forbidden"),
                    LifecycleError::AlreadyAnswered(_) => ("already-answered", "Already answered"),
                };
                let status = if slug == "forbidden" {
                    S::FORBIDDEN
                } else {
                    S::CONFLICT
                };
                Problem::new(status, slug, title, detail)
            }
            CoreError::Expired(_) => {
                Problem::new(S::CONFLICT, "mandate-expired", "Mandate expired", detail)
            }
            CoreError::PolicySet(e) => Problem {
                problems: Some(e.problems),
                ..Problem::new(
                    S::UNPROCESSABLE_ENTITY,
                    "invalid-policy-set",
                    "Invalid policy set",
                    detail,
                )
            },
            CoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "store unavailable");
                Problem::new(
                    S::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Service unavailable",
                    "the store is unavailable; nothing was changed, retry later",
                )
            }
            CoreError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                Problem::new(
                    S::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                    "internal error; see the server log",
                )
            }
        }
    }
}

impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Self {
        use StatusCode as S;
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Problem::new(
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "the body must be JSON, sent with `Content-Type: application/json`",
            ),
            JsonRejection::JsonSyntaxError(e) => Problem::new(
                S::BAD_REQUEST,
                "malformed-json",
                "Malformed JSON",
                format!(
                    "the body is not valid JSON: {}",
                    e.body_text()
                        .trim_start_matches("Failed to parse the request body as JSON: ")
                ),
            ),
            JsonRejection::JsonDataError(e) => Problem::new(
                S::UNPROCESSABLE_ENTITY,
                "invalid-request",
                "Invalid request",
                e.body_text()
                    .trim_start_matches(
                        "Failed to deserialize the JSON body into the target type: ",
                    )
                    .to_owned(),
            ),
            JsonRejection::BytesRejection(e) if e.status() == S::PAYLOAD_TOO_LARGE => Problem::new(
                S::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
                format!(
                    "the body exceeds this endpoint's limit: {} KiB (policy sets {} MiB, AuthZEN {} MiB)",
                    crate::MAX_BODY_BYTES / 1024,
                    crate::routes::policies::MAX_POLICY_BODY_BYTES / (1024 * 1024),
                    crate::routes::authzen::MAX_AUTHZEN_BODY_BYTES / (1024 * 1024),
                ),
            ),
            other => Problem::bad_request(other.body_text()),
        }
    }
}

impl From<serde_path_to_error::Error<serde_json::Error>> for Problem {
    fn from(err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = err.path().to_string();
        let detail = if path == "." {
            err.inner().to_string()
        } else {
            format!("{path}: {}", err.inner())
        };
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-request",
            "Invalid request",
            detail,
        )
    }
}

impl From<QueryRejection> for Problem {
    fn from(rejection: QueryRejection) -> Self {
        Problem::bad_request(
            rejection
                .body_text()
                .trim_start_matches("Failed to deserialize query string: ")
                .to_owned(),
        )
    }
}

impl From<PathRejection> for Problem {
    fn from(rejection: PathRejection) -> Self {
        Problem::not_found(rejection.body_text())
    }
}

/// The response of a handler: a value, or a problem.
pub type ApiResult<T> = Result<T, Problem>;
