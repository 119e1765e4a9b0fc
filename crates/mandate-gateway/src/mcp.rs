//! `/mcp` (every tool server of the caller's tenant, names namespaced `server.tool`)
//! and `/mcp/{server}` (one server, its own names), over Streamable HTTP.
//!
//! Each POST is authenticated on its own (sessions only route relayed requests).
//! Forwarded requests answer with JSON when the upstream answers before it sends
//! anything else, and switch to an SSE stream when it first sends a notification or a
//! request for the client (progress, logs, elicitation, sampling), relaying those with
//! request ids of our own.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mandate_core::Presented;
use mandate_mcp::Outcome;
use mandate_mcp::jsonrpc::{self, Message, code, error_object};
use mandate_mcp::revision::{self, RequestHeaders};
use mandate_policy::CallAction;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::catalog::{Listing, PROMPTS, RESOURCES, Snapshot};
use crate::enforce::{Caller, Execution, Target, Verdict};
use crate::error::unauthorized;
use crate::relay::{ChannelStream, Relay, record_outcome};
use crate::{Gateway, GatewayError};

const SESSION_HEADER: &str = "mcp-session-id";

pub(crate) fn routes(gateway: Gateway) -> Router {
    let limit = gateway.config.max_body_bytes;
    Router::new()
        .route(
            "/mcp",
            get(not_allowed)
                .post(
                    |s: State<Gateway>, m: Method, u: Uri, h: HeaderMap, b: Bytes| {
                        serve(s, None, m, u, h, b)
                    },
                )
                .delete(|s: State<Gateway>, u: Uri, h: HeaderMap| delete(s, u, h)),
        )
        .route(
            "/mcp/{server}",
            get(not_allowed)
                .post(
                    |s: State<Gateway>,
                     Path(server): Path<String>,
                     m: Method,
                     u: Uri,
                     h: HeaderMap,
                     b: Bytes| { serve(s, Some(server), m, u, h, b) },
                )
                .delete(|s: State<Gateway>, u: Uri, h: HeaderMap| delete(s, u, h)),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(resource_metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource/proxy",
            get(proxy_resource_metadata),
        )
        .layer(DefaultBodyLimit::max(limit))
        .with_state(gateway)
}

async fn not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST, DELETE")],
        "this endpoint has no standalone event stream",
    )
        .into_response()
}

/// RFC 9728 protected-resource metadata for the MCP endpoint.
async fn resource_metadata(State(gateway): State<Gateway>) -> Response {
    metadata(&gateway, gateway.config.mcp_resource())
}

async fn proxy_resource_metadata(State(gateway): State<Gateway>) -> Response {
    metadata(&gateway, gateway.config.proxy_resource())
}

fn metadata(gateway: &Gateway, resource: String) -> Response {
    axum::Json(json!({
        "resource": resource,
        "authorization_servers": [gateway.config.public_url],
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": ["EdDSA", "ES256"],
        "resource_name": "Mandate gateway",
        "authorization_details_types_supported": ["mandate"],
    }))
    .into_response()
}

fn json_response(status: StatusCode, body: &Value, session: Option<&str>) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(id) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        response.headers_mut().insert(SESSION_HEADER, id);
    }
    response
}

fn rpc_error(status: StatusCode, id: Value, code: i64, message: &str) -> Response {
    json_response(
        status,
        &jsonrpc::error_response(id, code, message, None),
        None,
    )
}

/// DNS-rebinding defence: an `Origin` must be the public URL's, loopback, or listed.
pub(crate) fn origin_allowed(gateway: &Gateway, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    if origin == gateway.config.public_url
        || gateway.config.allowed_origins.iter().any(|o| o == origin)
    {
        return true;
    }
    let Ok(url) = reqwest::Url::parse(origin) else {
        return false;
    };
    matches!(
        url.host_str(),
        Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
    )
}

/// DNS-rebinding defence: `Host` must name the public URL's host or loopback.
pub(crate) fn host_allowed(gateway: &Gateway, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return true;
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    mandate_types::net::is_loopback_host(name) || gateway.public_host.as_deref() == Some(name)
}

/// The token, as the request presents it.
pub(crate) async fn caller(
    gateway: &Gateway,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    audience: &str,
) -> Result<Caller, Response> {
    let metadata_url = if audience.ends_with("/proxy") {
        format!(
            "{}/.well-known/oauth-protected-resource/proxy",
            gateway.config.public_url
        )
    } else {
        gateway.config.resource_metadata_url()
    };
    let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(unauthorized(&gateway.config, &metadata_url, None));
    };
    let (scheme, token) = auth.split_once(' ').unwrap_or((auth, ""));
    let dpop_scheme = scheme.eq_ignore_ascii_case("dpop");
    if !(dpop_scheme || scheme.eq_ignore_ascii_case("bearer")) || token.trim().is_empty() {
        return Err(unauthorized(
            &gateway.config,
            &metadata_url,
            Some("use the Bearer or DPoP scheme"),
        ));
    }
    let url = format!(
        "{}{}",
        gateway.config.public_url,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let presented = Presented {
        token: token.trim(),
        dpop_scheme,
        proof: headers.get("dpop").and_then(|v| v.to_str().ok()),
        method: method.as_str(),
        url: &url,
        audience,
    };
    match gateway.authenticate(&presented).await {
        Ok(caller) => Ok(caller),
        Err(GatewayError::Unauthenticated { description }) => Err(unauthorized(
            &gateway.config,
            &metadata_url,
            Some(description.as_deref().unwrap_or("invalid token")),
        )),
        Err(e) => {
            let (code, message) = e.rpc();
            Err(rpc_error(e.status(), Value::Null, code, &message))
        }
    }
}

async fn delete(State(gateway): State<Gateway>, uri: Uri, headers: HeaderMap) -> Response {
    let audience = gateway.config.mcp_resource();
    let caller = match caller(&gateway, &Method::DELETE, &uri, &headers, &audience).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(id) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
        return (StatusCode::BAD_REQUEST, "no Mcp-Session-Id").into_response();
    };
    if gateway
        .sessions
        .close(id, caller.agent.id, caller.mandate.id)
        .await
    {
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// One request's context.
struct Exchange<'a> {
    gateway: &'a Gateway,
    caller: &'a Arc<Caller>,
    /// `Some` on `/mcp/{server}`.
    server: Option<&'a str>,
    session: Option<String>,
    /// The client offered URL elicitation (2025-11-25) when it initialized.
    url_elicitation: bool,
    stateless: bool,
    accepts_sse: bool,
}

async fn serve(
    State(gateway): State<Gateway>,
    server: Option<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !origin_allowed(&gateway, &headers) {
        return rpc_error(
            StatusCode::FORBIDDEN,
            Value::Null,
            code::INVALID_REQUEST,
            "origin not allowed",
        );
    }
    if !host_allowed(&gateway, &headers) {
        return rpc_error(
            StatusCode::FORBIDDEN,
            Value::Null,
            code::INVALID_REQUEST,
            "host not allowed",
        );
    }
    let audience = gateway.config.mcp_resource();
    let caller = match caller(&gateway, &method, &uri, &headers, &audience).await {
        Ok(c) => Arc::new(c),
        Err(r) => return r,
    };
    let message = match Message::parse(&body) {
        Ok(m) => m,
        Err(e) => return rpc_error(StatusCode::BAD_REQUEST, Value::Null, e.code, &e.message),
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let version = header("mcp-protocol-version");
    if let Some(v) = version
        && !revision::is_supported(v)
    {
        let id = match &message {
            Message::Request { id, .. } => id.clone(),
            _ => Value::Null,
        };
        return json_response(
            StatusCode::BAD_REQUEST,
            &jsonrpc::error_response(
                id,
                code::INVALID_REQUEST,
                format!(
                    "unsupported protocol version `{}`",
                    v.chars().take(32).collect::<String>()
                ),
                Some(json!({"supported": revision::SUPPORTED})),
            ),
            None,
        );
    }
    let stateless = version.is_some_and(revision::is_stateless);
    let accepts_sse = header("accept").is_some_and(|a| a.contains("text/event-stream"));
    let mut session = None;
    let mut url_elicitation = false;
    if !stateless && let Some(id) = header(SESSION_HEADER) {
        let Some((_, capabilities)) = gateway
            .sessions
            .touch(id, caller.agent.id, caller.mandate.id)
            .await
        else {
            return rpc_error(
                StatusCode::NOT_FOUND,
                Value::Null,
                code::INVALID_REQUEST,
                "unknown session; initialize again",
            );
        };
        url_elicitation = capabilities.pointer("/elicitation/url").is_some();
        session = Some(id.to_owned());
    }
    if let (true, Message::Request { method, params, id }) = (stateless, &message)
        && let Err(e) = revision::check_stateless_headers(
            &RequestHeaders {
                protocol_version: version,
                method: header("mcp-method"),
                name: header("mcp-name"),
            },
            method,
            params.as_ref(),
        )
    {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            id.clone(),
            code::HEADER_MISMATCH,
            &e.to_string(),
        );
    }
    let exchange = Exchange {
        gateway: &gateway,
        caller: &caller,
        server: server.as_deref(),
        session,
        url_elicitation,
        stateless,
        accepts_sse,
    };
    match message {
        Message::Notification { .. } => StatusCode::ACCEPTED.into_response(),
        Message::Response { id, outcome } => exchange.answer(id, outcome).await,
        Message::Request { id, method, params } => exchange.request(id, &method, params).await,
    }
}

/// What a request resolves to before anything is forwarded.
enum Plan {
    /// Answered here.
    Local(Outcome),
    /// Forwarded to one upstream after the decision allowed it.
    Forward {
        listing: Arc<Listing>,
        method: String,
        params: Option<Value>,
        tool_name: Option<String>,
    },
}

fn denied(message: &str, data: Value) -> Outcome {
    Err(error_object(code::DENIED, message, Some(data)))
}

fn hidden(name: &str) -> Outcome {
    denied(
        &format!(
            "tool `{}` is not available under this mandate",
            name.chars().take(128).collect::<String>()
        ),
        json!({"reason": "not available"}),
    )
}

impl Exchange<'_> {
    async fn answer(&self, id: Value, outcome: Outcome) -> Response {
        let Some(session) = &self.session else {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                code::INVALID_REQUEST,
                "a response needs the session it answers in",
            );
        };
        let Some(ask) = self.gateway.sessions.answered(session, &id).await else {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                code::INVALID_REQUEST,
                "this response answers no pending request",
            );
        };
        match ask
            .upstream
            .respond(ask.upstream_id, outcome, &ask.headers)
            .await
        {
            Ok(()) => StatusCode::ACCEPTED.into_response(),
            Err(e) => rpc_error(
                StatusCode::BAD_GATEWAY,
                Value::Null,
                code::UPSTREAM_UNAVAILABLE,
                &e.to_string(),
            ),
        }
    }

    async fn request(&self, id: Value, method: &str, params: Option<Value>) -> Response {
        if method == "initialize" {
            return self.initialize(id, params).await;
        }
        let plan = match self.plan(method, params).await {
            Ok(plan) => plan,
            Err(e) => {
                let (code, message) = e.rpc();
                return json_response(
                    StatusCode::OK,
                    &jsonrpc::error_response(id, code, message, None),
                    None,
                );
            }
        };
        match plan {
            Plan::Local(outcome) => {
                json_response(StatusCode::OK, &jsonrpc::response(id, outcome), None)
            }
            Plan::Forward {
                listing,
                method,
                params,
                tool_name,
            } => self.forward(id, listing, &method, params, tool_name).await,
        }
    }

    async fn initialize(&self, id: Value, params: Option<Value>) -> Response {
        let requested = params
            .as_ref()
            .and_then(|p| p.get("protocolVersion"))
            .and_then(Value::as_str);
        let version = revision::negotiate(requested);
        let mut capabilities = json!({"tools": {"listChanged": false}});
        let mut server_info =
            json!({"name": "mandate-gateway", "version": env!("CARGO_PKG_VERSION")});
        let mut instructions = Value::Null;
        if let Some(server) = self.server {
            match self.gateway.snapshot(&self.caller.mandate).await {
                Ok(snapshot) => match snapshot.info.get(server) {
                    Some(info) => {
                        capabilities = info.get("capabilities").cloned().unwrap_or(capabilities);
                        if let Some(si) = info.get("serverInfo") {
                            server_info = si.clone();
                        }
                        instructions = info.get("instructions").cloned().unwrap_or(Value::Null);
                    }
                    None if !snapshot.servers.contains_key(server) => {
                        return json_response(
                            StatusCode::OK,
                            &jsonrpc::response(id, hidden(server)),
                            None,
                        );
                    }
                    None => {}
                },
                Err(e) => {
                    let (code, message) = e.rpc();
                    return json_response(
                        StatusCode::OK,
                        &jsonrpc::error_response(id, code, message, None),
                        None,
                    );
                }
            }
        } else {
            capabilities = json!({
                "tools": {"listChanged": false},
                "resources": {},
                "prompts": {},
                "logging": {},
            });
        }
        let client_capabilities = params
            .as_ref()
            .and_then(|p| p.get("capabilities"))
            .cloned()
            .unwrap_or_else(|| json!({}));
        let Some(session) = self
            .gateway
            .sessions
            .open(
                self.caller.agent.id,
                self.caller.mandate.id,
                version,
                client_capabilities,
            )
            .await
        else {
            return json_response(
                StatusCode::OK,
                &jsonrpc::error_response(
                    id,
                    code::INTERNAL_ERROR,
                    "no session could be opened",
                    None,
                ),
                None,
            );
        };
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": capabilities,
            "serverInfo": server_info,
        });
        if !instructions.is_null() {
            set(&mut result, "instructions", instructions);
        }
        json_response(
            StatusCode::OK,
            &jsonrpc::response(id, Ok(result)),
            Some(&session),
        )
    }

    /// The listings this endpoint serves (one server's, or every server's).
    fn in_view<'s>(
        &self,
        snapshot: &'s Snapshot,
    ) -> impl Iterator<Item = (&'s String, &'s Arc<Listing>)> {
        let only = self.server.map(str::to_owned);
        snapshot
            .tools
            .iter()
            .filter(move |(_, l)| only.as_deref().is_none_or(|s| l.server.name == s))
    }

    /// The name a client uses for a listing.
    fn client_name(&self, listing: &Listing) -> String {
        match self.server {
            Some(_) => listing.tool.name.clone(),
            None => format!("{}.{}", listing.server.name, listing.tool.name),
        }
    }

    fn resolve<'s>(&self, snapshot: &'s Snapshot, name: &str) -> Option<&'s Arc<Listing>> {
        let full = match self.server {
            Some(server) => format!("{server}.{name}"),
            None => name.to_owned(),
        };
        snapshot
            .listing(&full)
            .filter(|l| !l.tool.name.starts_with('/'))
    }

    async fn plan(&self, method: &str, params: Option<Value>) -> Result<Plan, GatewayError> {
        let gateway = self.gateway;
        match method {
            "ping" => Ok(Plan::Local(Ok(json!({})))),
            "server/discover" => Ok(Plan::Local(Ok(json!({
                "supportedVersions": revision::SUPPORTED,
                "capabilities": {"tools": {"listChanged": false}, "resources": {}, "prompts": {}},
                "serverInfo": {"name": "mandate-gateway", "version": env!("CARGO_PKG_VERSION")},
            })))),
            "tools/list" => {
                let snapshot = gateway.snapshot(&self.caller.mandate).await?;
                let candidates: Vec<&Arc<Listing>> = self
                    .in_view(&snapshot)
                    .map(|(_, l)| l)
                    .filter(|l| !l.tool.name.starts_with('/'))
                    .collect();
                let targets = candidates.iter().map(|l| Target {
                    server: &l.server,
                    tool: &l.tool,
                });
                let shown = gateway.visible(self.caller, targets).await?;
                let tools: Vec<Value> = shown
                    .iter()
                    .filter_map(|t| snapshot.listing(&format!("{}.{}", t.server.name, t.tool.name)))
                    .map(|l| {
                        let mut def = l.definition.clone();
                        if let Some(map) = def.as_object_mut() {
                            map.insert("name".into(), json!(self.client_name(l)));
                        }
                        def
                    })
                    .collect();
                Ok(Plan::Local(Ok(json!({"tools": tools}))))
            }
            "tools/call" => {
                let mut params = params.unwrap_or_else(|| json!({}));
                let Some(name) = params.get("name").and_then(Value::as_str) else {
                    return Err(GatewayError::Invalid("tools/call needs a `name`".into()));
                };
                let name = name.to_owned();
                let no_arguments = json!({});
                let arguments = params.get("arguments").unwrap_or(&no_arguments);
                if !arguments.is_object() {
                    return Err(GatewayError::Invalid(
                        "`arguments` must be an object".into(),
                    ));
                }
                let snapshot = gateway.snapshot(&self.caller.mandate).await?;
                let Some(listing) = self.resolve(&snapshot, &name) else {
                    gateway.refuse_unknown(self.caller, &name).await?;
                    return Ok(Plan::Local(hidden(&name)));
                };
                let verdict = gateway
                    .authorize(
                        self.caller,
                        CallAction::CallTool,
                        Target {
                            server: &listing.server,
                            tool: &listing.tool,
                        },
                        Some(arguments),
                        Execution::Agent,
                    )
                    .await?;
                match verdict {
                    Verdict::Allow { .. } => {
                        // The upstream knows the tool by its own name; the arguments go
                        // on exactly as decided (the request is moved, not copied).
                        set(&mut params, "name", json!(listing.tool.name));
                        Ok(Plan::Forward {
                            listing: listing.clone(),
                            method: method.to_owned(),
                            params: Some(params),
                            tool_name: Some(name),
                        })
                    }
                    other => Ok(Plan::Local(self.refusal(&name, other))),
                }
            }
            "resources/list" | "resources/templates/list" | "prompts/list" => {
                self.list_across(method, params).await
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                self.on_entry(RESOURCES, CallAction::ReadResource, method, params)
                    .await
            }
            "prompts/get" => {
                self.on_entry(PROMPTS, CallAction::GetPrompt, method, params)
                    .await
            }
            "completion/complete" => {
                let entry = match params
                    .as_ref()
                    .and_then(|p| p.pointer("/ref/type"))
                    .and_then(Value::as_str)
                {
                    Some("ref/prompt") => (PROMPTS, CallAction::GetPrompt),
                    _ => (RESOURCES, CallAction::ReadResource),
                };
                self.on_entry(entry.0, entry.1, method, params).await
            }
            "logging/setLevel" => match self.server {
                Some(server) => {
                    let snapshot = gateway.snapshot(&self.caller.mandate).await?;
                    let Some(listing) = snapshot
                        .tools
                        .values()
                        .find(|l| l.server.name == server)
                        .cloned()
                    else {
                        return Ok(Plan::Local(hidden(server)));
                    };
                    Ok(Plan::Forward {
                        listing,
                        method: method.to_owned(),
                        params,
                        tool_name: None,
                    })
                }
                None => Ok(Plan::Local(Ok(json!({})))),
            },
            _ => Ok(Plan::Local(Err(error_object(
                code::METHOD_NOT_FOUND,
                format!(
                    "method `{}` is not supported",
                    method.chars().take(64).collect::<String>()
                ),
                None,
            )))),
        }
    }

    fn refusal(&self, name: &str, verdict: Verdict) -> Outcome {
        let public = &self.gateway.config.public_url;
        match verdict {
            Verdict::Deny { hidden: true, .. } | Verdict::Allow { .. } => hidden(name),
            Verdict::Deny { reason, .. } => denied(
                &format!("denied by the mandate's policy: {reason}"),
                json!({"reason": reason}),
            ),
            Verdict::Approval(a) => {
                let message = format!(
                    "this call needs a human's approval; approval {} is pending — retry with the same arguments once it is approved",
                    a.id
                );
                let url = format!("{public}/ui/approvals/{}", a.id);
                let mut data = json!({
                    "remedy": "approval",
                    "approval_id": a.id,
                    "approval_url": url,
                    "status": a.status,
                    "expires_at": a.expires_at,
                });
                if self.url_elicitation {
                    // MCP 2025-11-25 URL elicitation: the client may open the page
                    // where the human decides, then retry.
                    set(
                        &mut data,
                        "elicitations",
                        json!([{"mode": "url", "elicitationId": a.id, "url": url, "message": message}]),
                    );
                    Err(error_object(
                        code::URL_ELICITATION_REQUIRED,
                        message,
                        Some(data),
                    ))
                } else {
                    denied(&message, data)
                }
            }
            Verdict::Proposal(p) => denied(
                &format!(
                    "the mandate is recommend-only: the call was recorded as proposal {} for a human to execute; nothing was executed",
                    p.id
                ),
                json!({
                    "remedy": "recommend",
                    "proposal_id": p.id,
                    "proposal_url": format!("{public}/ui/proposals/{}", p.id),
                }),
            ),
        }
    }

    /// Decides a resource or prompt request on its server's `/` entry.
    async fn on_entry(
        &self,
        entry: &str,
        action: CallAction,
        method: &str,
        params: Option<Value>,
    ) -> Result<Plan, GatewayError> {
        let snapshot = self.gateway.snapshot(&self.caller.mandate).await?;
        let (server, params) = match self.server {
            Some(server) => (server.to_owned(), params),
            None if entry == PROMPTS => {
                // Aggregated prompts are namespaced like tools.
                let mut params = params.unwrap_or_else(|| json!({}));
                let name = params
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let Some((server, prompt)) = name.split_once('.') else {
                    return Ok(Plan::Local(hidden(&name)));
                };
                set(&mut params, "name", json!(prompt));
                (server.to_owned(), Some(params))
            }
            None => {
                // Aggregated resources: the first server whose entry allows it and
                // which has the resource answers.
                return self
                    .read_anywhere(&snapshot, entry, action, method, params)
                    .await;
            }
        };
        let Some(listing) = snapshot.special(&server, entry) else {
            return Ok(Plan::Local(hidden(&server)));
        };
        let label = params
            .as_ref()
            .and_then(|p| p.get("uri").or_else(|| p.get("name")))
            .cloned()
            .unwrap_or(Value::Null);
        let verdict = self
            .gateway
            .authorize(
                self.caller,
                action,
                Target {
                    server: &listing.server,
                    tool: &listing.tool,
                },
                Some(&json!({"method": method, "target": label})),
                Execution::Agent,
            )
            .await?;
        match verdict {
            Verdict::Allow { .. } => Ok(Plan::Forward {
                listing: listing.clone(),
                method: method.to_owned(),
                params,
                tool_name: None,
            }),
            other => Ok(Plan::Local(
                self.refusal(&format!("{server}.{entry}"), other),
            )),
        }
    }

    async fn read_anywhere(
        &self,
        snapshot: &Snapshot,
        entry: &str,
        action: CallAction,
        method: &str,
        params: Option<Value>,
    ) -> Result<Plan, GatewayError> {
        let mut last = hidden(entry);
        for listing in snapshot.tools.values().filter(|l| l.tool.name == entry) {
            let verdict = self
                .gateway
                .authorize(
                    self.caller,
                    action,
                    Target {
                        server: &listing.server,
                        tool: &listing.tool,
                    },
                    Some(&json!({"method": method, "target": params.as_ref().and_then(|p| p.get("uri")).cloned()})),
                    Execution::Agent,
                )
                .await?;
            if !matches!(verdict, Verdict::Allow { .. }) {
                continue;
            }
            let outcome = self
                .gateway
                .call_upstream(listing, &self.caller.mandate, method, params.clone(), None)
                .await;
            match outcome {
                Ok(Ok(result)) => return Ok(Plan::Local(Ok(result))),
                Ok(Err(error)) => last = Err(error),
                Err(e) => last = Err(error_object(e.rpc().0, e.rpc().1, None)),
            }
        }
        Ok(Plan::Local(last))
    }

    /// Lists resources, templates or prompts across the servers the caller may use.
    async fn list_across(&self, method: &str, params: Option<Value>) -> Result<Plan, GatewayError> {
        let snapshot = self.gateway.snapshot(&self.caller.mandate).await?;
        let (entry, action, key) = match method {
            "prompts/list" => (PROMPTS, CallAction::GetPrompt, "prompts"),
            "resources/templates/list" => {
                (RESOURCES, CallAction::ReadResource, "resourceTemplates")
            }
            _ => (RESOURCES, CallAction::ReadResource, "resources"),
        };
        let listings: Vec<&Arc<Listing>> = self
            .in_view(&snapshot)
            .map(|(_, l)| l)
            .filter(|l| l.tool.name == entry)
            .collect();
        let mut items = Vec::new();
        for listing in listings {
            let verdict = self
                .gateway
                .authorize(
                    self.caller,
                    action,
                    Target {
                        server: &listing.server,
                        tool: &listing.tool,
                    },
                    Some(&json!({"method": method})),
                    Execution::Agent,
                )
                .await?;
            if !matches!(verdict, Verdict::Allow { .. }) {
                continue;
            }
            if self.server.is_some() {
                // One server: its answer as it is (pagination included).
                return Ok(Plan::Forward {
                    listing: listing.clone(),
                    method: method.to_owned(),
                    params,
                    tool_name: None,
                });
            }
            match self
                .gateway
                .call_upstream(listing, &self.caller.mandate, method, None, None)
                .await
            {
                Ok(Ok(result)) => {
                    for mut item in result
                        .get(key)
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                    {
                        if entry == PROMPTS
                            && let Some(name) =
                                item.get("name").and_then(Value::as_str).map(str::to_owned)
                        {
                            set(
                                &mut item,
                                "name",
                                json!(format!("{}.{name}", listing.server.name)),
                            );
                        }
                        items.push(item);
                    }
                }
                Ok(Err(_)) | Err(_) => {
                    tracing::warn!(server = %listing.server.name, method, "an upstream could not list; left out");
                }
            }
        }
        Ok(Plan::Local(Ok(json!({ key: items }))))
    }

    /// Forwards an allowed request: JSON if the upstream answers straight away, an SSE
    /// stream once it sends anything else first.
    async fn forward(
        &self,
        id: Value,
        listing: Arc<Listing>,
        method: &str,
        params: Option<Value>,
        tool_name: Option<String>,
    ) -> Response {
        let (events_tx, mut events) = mpsc::channel::<Value>(64);
        let wants_events = self.accepts_sse && !self.stateless;
        let started = Instant::now();
        // The upstream call runs in a task of its own: a client that goes away does not
        // cancel a call already forwarded.
        let gateway = self.gateway.clone();
        let caller = self.caller.clone();
        let method_owned = method.to_owned();
        let listing_for_call = listing.clone();
        let mut call = tokio::spawn(async move {
            gateway
                .call_upstream(
                    &listing_for_call,
                    &caller.mandate,
                    &method_owned,
                    params,
                    wants_events.then_some(events_tx),
                )
                .await
        });
        // Whichever comes first: the answer (JSON) or an event (switch to SSE).
        let first = tokio::select! {
            biased;
            done = &mut call => Err(flatten(done)),
            event = events.recv() => match event {
                Some(event) => Ok(event),
                // No events will come (the client takes none): wait for the answer.
                None => Err(flatten((&mut call).await)),
            },
        };
        match first {
            Err(outcome) => {
                self.record_outcome(&listing, tool_name.as_deref(), &outcome, started);
                json_response(StatusCode::OK, &to_response(id, outcome), None)
            }
            Ok(first_event) => {
                let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
                let relay = Relay {
                    gateway: self.gateway.clone(),
                    session: self.session.clone(),
                    listing: listing.clone(),
                    caller: self.caller.clone(),
                };
                let tool_name = tool_name.clone();
                tokio::spawn(async move {
                    if !relay.send(&tx, first_event).await {
                        call.abort();
                        return;
                    }
                    loop {
                        tokio::select! {
                            biased;
                            event = events.recv() => match event {
                                Some(event) => {
                                    if !relay.send(&tx, event).await {
                                        call.abort();
                                        return;
                                    }
                                }
                                None => {
                                    let outcome = flatten((&mut call).await);
                                    relay.finish(&tx, id, outcome, tool_name.as_deref(), started).await;
                                    return;
                                }
                            },
                            done = &mut call => {
                                // Events sent before the answer still go first.
                                while let Ok(event) = events.try_recv() {
                                    if !relay.send(&tx, event).await {
                                        return;
                                    }
                                }
                                relay.finish(&tx, id, flatten(done), tool_name.as_deref(), started).await;
                                return;
                            }
                        }
                    }
                });
                let body = Body::new(ChannelStream(rx));
                let mut response = Response::new(body);
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
                response
            }
        }
    }

    fn record_outcome(
        &self,
        listing: &Listing,
        tool_name: Option<&str>,
        outcome: &Result<Outcome, GatewayError>,
        started: Instant,
    ) {
        record_outcome(
            self.gateway,
            self.caller,
            listing,
            tool_name,
            outcome,
            started,
        );
    }
}

fn flatten(
    done: Result<Result<Outcome, GatewayError>, tokio::task::JoinError>,
) -> Result<Outcome, GatewayError> {
    done.unwrap_or_else(|_| Err(GatewayError::Unavailable("the call was interrupted".into())))
}

pub(crate) fn to_response(id: Value, outcome: Result<Outcome, GatewayError>) -> Value {
    match outcome {
        Ok(outcome) => jsonrpc::response(id, outcome),
        Err(e) => {
            let (code, message) = e.rpc();
            jsonrpc::error_response(id, code, message, None)
        }
    }
}

/// Sets `key` on a JSON object (anything else is left as it is).
pub(crate) fn set(value: &mut Value, key: &str, new: Value) {
    if let Some(map) = value.as_object_mut() {
        map.insert(key.to_owned(), new);
    }
}
