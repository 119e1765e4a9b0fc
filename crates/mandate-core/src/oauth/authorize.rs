//! `GET /oauth2/authorize` and the consent screen's answer: authorization code with
//! PKCE (S256 only) and a resource indicator (RFC 8707) naming our MCP gateway.
//!
//! ```text
//!   request ─► client_id known? redirect_uri registered (exactly)?   no ─► error page
//!           ─► response_type=code, S256 challenge, resource ours      no ─► redirect error=
//!           ─► signed-in human (the console) ─► the offer: the resource's tools, tiers
//!           ─► held server-side under a random id, bound to the human and the session
//!   answer  ─► Grant: the client's agent (one per client and human) requests the
//!              mandate, the human consents (channel oauth) ─► code (SHA-256 stored,
//!              60 s, once) ─► redirect with code and state
//!           ─► Deny: nothing is created ─► redirect with error=access_denied
//! ```

use std::collections::BTreeSet;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use mandate_domain::{
    Agent, AgentCredentials, AgentStatus, ApprovalRules, Budgets, ConsentChannel, ConsentDecision,
    Mandate, MandateStatus, MandateTerms, Principal, Scope, ToolGrant,
};
use mandate_store::{MandateFilter, OnceKind, OnceRecord, PageRequest, StoreError, ToolFilter};
use mandate_types::{AgentId, DataClass, HumanId, MandateId, MandateMode, RiskTier, TenantId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::RegisteredClient;
use crate::{ConsentRequest, CoreError, EndRequest, Service};

/// How long a code may wait for its redemption.
pub const CODE_TTL_SECONDS: i64 = 60;
/// How long the consent screen may stay open.
pub const REQUEST_TTL_MINUTES: i64 = 15;
/// The longest mandate the consent screen grants.
pub const MAX_MANDATE_HOURS: i64 = 24 * 30;
const MAX_PARAM: usize = 4_096;
const MAX_OFFERED: usize = 200;

/// The query of an authorization request, each parameter at most once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub resource: Option<String>,
}

/// Why an authorization request fails, and how the browser is told.
#[derive(Debug)]
pub enum AuthorizeError {
    /// The client or its redirect URI cannot be trusted: an error page, never a redirect.
    Page(String),
    /// Back to the client's registered redirect URI with `error=` (RFC 6749 §4.1.2.1).
    Redirect(String),
    Core(CoreError),
}

impl From<CoreError> for AuthorizeError {
    fn from(e: CoreError) -> Self {
        AuthorizeError::Core(e)
    }
}

impl From<StoreError> for AuthorizeError {
    fn from(e: StoreError) -> Self {
        AuthorizeError::Core(e.into())
    }
}

impl AuthorizeParams {
    /// Reads a query string; a repeated or oversized parameter is refused.
    pub fn from_query(query: &str) -> Result<Self, AuthorizeError> {
        let mut p = AuthorizeParams::default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if value.len() > MAX_PARAM {
                return Err(AuthorizeError::Page(format!(
                    "The parameter `{}` is too long.",
                    name.chars().take(40).collect::<String>()
                )));
            }
            let slot = match name.as_ref() {
                "response_type" => &mut p.response_type,
                "client_id" => &mut p.client_id,
                "redirect_uri" => &mut p.redirect_uri,
                "scope" => &mut p.scope,
                "state" => &mut p.state,
                "code_challenge" => &mut p.code_challenge,
                "code_challenge_method" => &mut p.code_challenge_method,
                "resource" => &mut p.resource,
                _ => continue,
            };
            if slot.is_some() {
                return Err(AuthorizeError::Page(format!(
                    "The parameter `{name}` appears more than once."
                )));
            }
            *slot = Some(value.into_owned());
        }
        Ok(p)
    }

    /// The request as a query string again (for coming back after sign-in).
    pub fn to_query(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("response_type", &self.response_type),
            ("client_id", &self.client_id),
            ("redirect_uri", &self.redirect_uri),
            ("scope", &self.scope),
            ("state", &self.state),
            ("code_challenge", &self.code_challenge),
            ("code_challenge_method", &self.code_challenge_method),
            ("resource", &self.resource),
        ] {
            if let Some(v) = value {
                out.append_pair(name, v);
            }
        }
        out.finish()
    }
}

/// An authorization request that passed every check.
#[derive(Debug, Clone)]
pub struct ValidAuthorization {
    pub client: RegisteredClient,
    pub redirect_uri: String,
    pub state: Option<String>,
    /// Our issuer identifier, sent back as `iss` (RFC 9207).
    pub issuer: String,
    pub code_challenge: String,
    pub resource: String,
    /// `Some(server)` for `{public}/mcp/{server}`.
    pub server: Option<String>,
    /// The scope values asked for.
    pub scope: Vec<String>,
}

/// A tool the consent screen offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferedTool {
    /// Namespaced: `{server}.{tool}`.
    pub name: String,
    pub risk_tier: RiskTier,
    pub data_class: DataClass,
    pub description: String,
    /// Not granted by the client's active mandate from this person for this resource:
    /// what a re-authorization (a step-up) adds. Always false on a first authorization.
    #[serde(default)]
    pub added: bool,
    /// Its operator declared how its calls are undone (a rollback can undo them).
    #[serde(default)]
    pub reversible: bool,
}

/// An authorization request held for the human's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAuthorization {
    pub client_id: String,
    pub client_name: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub code_challenge: String,
    pub resource: String,
    pub offered: Vec<OfferedTool>,
    pub human_id: HumanId,
    /// SHA-256 of the console session the request was shown in.
    pub session: String,
    pub expires_at: DateTime<Utc>,
    /// The client registered `dpop_bound_access_tokens` (RFC 9449 §5.2).
    #[serde(default)]
    pub dpop_bound: bool,
}

/// What the human chose on the consent screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentChoices {
    pub intent: String,
    pub lifetime: Duration,
    pub max_calls: Option<u64>,
    pub mode: MandateMode,
    pub approval_tiers: BTreeSet<RiskTier>,
    pub tools: Vec<String>,
    pub data_ceiling: DataClass,
}

/// What an authorization code is bound to (stored under the code's SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub resource: String,
    pub mandate_id: MandateId,
    pub human_id: HumanId,
    pub agent_id: AgentId,
    /// Its redemption must carry a DPoP proof: the client registered
    /// `dpop_bound_access_tokens` (RFC 9449 §5.2).
    #[serde(default)]
    pub dpop_bound: bool,
}

pub(crate) fn sha256_hex(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An authorization response (RFC 6749 §4.1.2 and §4.1.2.1): `redirect_uri` with
/// `params`, the request's `state` and our `iss` (RFC 9207, so that a client talking
/// to several servers can tell who answered) appended to its query. Every redirect of
/// the authorization endpoint, success or error, is built here.
pub fn authorization_response(
    redirect_uri: &str,
    issuer: &str,
    params: &[(&str, &str)],
    state: Option<&str>,
) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    if let Some(s) = state {
        query.append_pair("state", s);
    }
    query.append_pair("iss", issuer);
    let query = query.finish();
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    format!("{redirect_uri}{sep}{query}")
}

fn error_redirect(
    v: &ValidAuthorizationParts<'_>,
    error: &str,
    description: &str,
) -> AuthorizeError {
    AuthorizeError::Redirect(authorization_response(
        v.redirect_uri,
        v.issuer,
        &[("error", error), ("error_description", description)],
        v.state,
    ))
}

struct ValidAuthorizationParts<'a> {
    redirect_uri: &'a str,
    state: Option<&'a str>,
    issuer: &'a str,
}

/// A PKCE S256 challenge: 43 base64url characters (a SHA-256).
fn is_s256_challenge(c: &str) -> bool {
    c.len() == 43 && URL_SAFE_NO_PAD.decode(c).is_ok_and(|b| b.len() == 32)
}

impl Service {
    /// Checks an authorization request. A bad client or redirect URI is shown on a page;
    /// everything else goes back to the (now trusted) redirect URI.
    pub async fn validate_authorization(
        &self,
        p: &AuthorizeParams,
    ) -> Result<ValidAuthorization, AuthorizeError> {
        let client_id = p.client_id.as_deref().ok_or_else(|| {
            AuthorizeError::Page("The request names no client (`client_id`).".into())
        })?;
        let client = if self.names_client_document(client_id) {
            self.document_client(client_id).await.map_err(|e| {
                AuthorizeError::Page(format!("The client's metadata document is refused: {e}."))
            })?
        } else {
            self.oauth_client(client_id)
                .await?
                .ok_or_else(|| AuthorizeError::Page("The client is not registered here.".into()))?
        };
        let redirect_uri = match p.redirect_uri.as_deref() {
            Some(uri) if client.metadata.redirect_uris.iter().any(|r| r == uri) => uri.to_owned(),
            Some(_) => {
                return Err(AuthorizeError::Page(
                    "The redirect URI is not one the client registered; nothing is sent there."
                        .into(),
                ));
            }
            None => match client.metadata.redirect_uris.as_slice() {
                [only] => only.clone(),
                _ => {
                    return Err(AuthorizeError::Page(
                        "The request names no redirect URI (`redirect_uri`).".into(),
                    ));
                }
            },
        };
        let issuer = self.authorization_issuer().map_err(|_| {
            AuthorizeError::Page("This server does not run the token service.".into())
        })?;
        let parts = ValidAuthorizationParts {
            redirect_uri: &redirect_uri,
            state: p.state.as_deref(),
            issuer: &issuer,
        };
        match p.response_type.as_deref() {
            Some("code") => {}
            _ => {
                return Err(error_redirect(
                    &parts,
                    "unsupported_response_type",
                    "only response_type=code is supported",
                ));
            }
        }
        let challenge = match (
            p.code_challenge.as_deref(),
            p.code_challenge_method.as_deref(),
        ) {
            (None, _) => {
                return Err(error_redirect(
                    &parts,
                    "invalid_request",
                    "PKCE is required: send code_challenge with code_challenge_method=S256",
                ));
            }
            (Some(c), Some("S256")) if is_s256_challenge(c) => c.to_owned(),
            (Some(_), Some("S256")) => {
                return Err(error_redirect(
                    &parts,
                    "invalid_request",
                    "code_challenge must be the base64url SHA-256 of the verifier",
                ));
            }
            (Some(_), _) => {
                return Err(error_redirect(
                    &parts,
                    "invalid_request",
                    "code_challenge_method must be S256 (plain is refused)",
                ));
            }
        };
        let Some(resource) = p.resource.as_deref() else {
            return Err(error_redirect(
                &parts,
                "invalid_target",
                "`resource` is required: the MCP endpoint the token is for",
            ));
        };
        let mcp = format!("{issuer}/mcp");
        let server = if resource == mcp {
            None
        } else if let Some(name) = resource
            .strip_prefix(&mcp)
            .and_then(|r| r.strip_prefix('/'))
            .filter(|n| !n.is_empty() && !n.contains(['/', '?', '#']))
        {
            if !self.server_exists(client.tenant_id, name).await? {
                return Err(error_redirect(
                    &parts,
                    "invalid_target",
                    "`resource` names no tool server of this gateway",
                ));
            }
            Some(name.to_owned())
        } else {
            return Err(error_redirect(
                &parts,
                "invalid_target",
                "`resource` must be this server's MCP endpoint",
            ));
        };
        let scope = p
            .scope
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(ValidAuthorization {
            redirect_uri: redirect_uri.clone(),
            state: p.state.clone(),
            issuer: issuer.clone(),
            code_challenge: challenge,
            resource: resource.to_owned(),
            server,
            scope,
            client,
        })
    }

    /// Our issuer identifier (the token service's), for `iss` in authorization responses.
    fn authorization_issuer(&self) -> Result<String, CoreError> {
        self.tokens
            .as_ref()
            .map(|t| t.config().issuer.clone())
            .ok_or_else(|| {
                CoreError::Unavailable("this server does not run the token service".into())
            })
    }

    async fn server_exists(&self, tenant: TenantId, name: &str) -> Result<bool, CoreError> {
        let servers = self
            .store
            .list_tool_servers(tenant, &PageRequest::first(PageRequest::MAX_LIMIT))
            .await?;
        Ok(servers.items.iter().any(|s| s.name == name))
    }

    /// The tools the consent screen offers `human`: those of the resource's server (or of
    /// every server), narrowed to the ones `scope` names when it names any; on a
    /// re-authorization, those the client's active mandate does not grant are marked
    /// `added`.
    pub async fn authorization_offer(
        &self,
        human: HumanId,
        v: &ValidAuthorization,
    ) -> Result<Vec<OfferedTool>, CoreError> {
        let mut offered = self.catalog_offer(v).await?;
        let tenant = v.client.tenant_id;
        let Some(agent) = self
            .store
            .oauth_client_agent(tenant, &v.client.client_id, human)
            .await?
        else {
            return Ok(offered);
        };
        let earlier = self
            .earlier_mandates(tenant, human, agent, &v.resource)
            .await?;
        if !earlier.is_empty() {
            for t in &mut offered {
                t.added = !earlier.iter().any(|m| {
                    m.terms
                        .scope
                        .tools
                        .iter()
                        .any(|g| mandate_domain::scope_covers(&g.tool, &t.name))
                });
            }
        }
        Ok(offered)
    }

    async fn catalog_offer(&self, v: &ValidAuthorization) -> Result<Vec<OfferedTool>, CoreError> {
        let tenant = v.client.tenant_id;
        let servers = self
            .store
            .list_tool_servers(tenant, &PageRequest::first(PageRequest::MAX_LIMIT))
            .await?;
        let mut all = Vec::new();
        for server in servers
            .items
            .iter()
            .filter(|s| v.server.as_ref().is_none_or(|n| *n == s.name))
        {
            let tools = self
                .store
                .list_tools(
                    tenant,
                    &ToolFilter {
                        server: Some(server.id),
                        risk_tier: None,
                    },
                    &PageRequest::first(PageRequest::MAX_LIMIT),
                )
                .await?;
            for t in tools.items {
                all.push(OfferedTool {
                    name: format!("{}.{}", server.name, t.name),
                    risk_tier: t.risk_tier,
                    data_class: t.data_class,
                    description: t.description.chars().take(300).collect(),
                    added: false,
                    reversible: t.reversible(),
                });
            }
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all.truncate(MAX_OFFERED);
        let named: Vec<OfferedTool> = all
            .iter()
            .filter(|t| v.scope.contains(&t.name))
            .cloned()
            .collect();
        Ok(if named.is_empty() { all } else { named })
    }

    /// Holds a checked request for the human's answer; the returned id names it.
    pub async fn hold_authorization(
        &self,
        human: HumanId,
        tenant: TenantId,
        session: &str,
        v: &ValidAuthorization,
        offered: Vec<OfferedTool>,
    ) -> Result<(String, PendingAuthorization), AuthorizeError> {
        if tenant != v.client.tenant_id {
            return Err(AuthorizeError::Page(
                "The client is not registered here.".into(),
            ));
        }
        let id = mandate_token::random_id("").map_err(|e| CoreError::Internal(e.to_string()))?;
        let pending = PendingAuthorization {
            client_id: v.client.client_id.clone(),
            client_name: v.client.display_name().to_owned(),
            redirect_uri: v.redirect_uri.clone(),
            state: v.state.clone(),
            code_challenge: v.code_challenge.clone(),
            resource: v.resource.clone(),
            offered,
            human_id: human,
            session: sha256_hex(session),
            expires_at: self.clock.now() + Duration::minutes(REQUEST_TTL_MINUTES),
            dpop_bound: v.client.metadata.dpop_bound_access_tokens,
        };
        self.store
            .put_once(&OnceRecord {
                kind: OnceKind::AuthorizationRequest,
                key_hash: sha256_hex(&id),
                tenant_id: tenant,
                data: serde_json::to_string(&pending)
                    .map_err(|e| CoreError::Internal(e.to_string()))?,
                expires_at: pending.expires_at,
                used_at: None,
            })
            .await?;
        Ok((id, pending))
    }

    /// A held request of this human in this session, unanswered and unexpired.
    /// Anything else — another person's, another session's, an answered one — is
    /// "not found".
    pub async fn pending_authorization(
        &self,
        id: &str,
        human: HumanId,
        session: &str,
    ) -> Result<PendingAuthorization, CoreError> {
        let missing = || CoreError::not_found("authorization request", "");
        if id.is_empty() || id.len() > 64 {
            return Err(missing());
        }
        let record = self
            .store
            .once(OnceKind::AuthorizationRequest, &sha256_hex(id))
            .await?
            .ok_or_else(missing)?;
        let pending: PendingAuthorization = serde_json::from_str(&record.data)
            .map_err(|e| CoreError::Internal(format!("stored authorization request: {e}")))?;
        let mine = pending.human_id == human && pending.session == sha256_hex(session);
        if !mine || record.used_at.is_some() || record.expires_at <= self.clock.now() {
            return Err(missing());
        }
        Ok(pending)
    }

    /// Answers a held request with Grant: the mandate is requested by the client's
    /// agent, consented by the human through the `oauth` channel, and a code is issued.
    /// Returns where to send the browser.
    pub async fn grant_authorization(
        &self,
        id: &str,
        caller: &Principal,
        session: &str,
        choices: ConsentChoices,
    ) -> Result<String, CoreError> {
        let Principal::Human { tenant, id: human } = *caller else {
            return Err(CoreError::Forbidden("only a person can consent".into()));
        };
        let pending = self.pending_authorization(id, human, session).await?;
        let terms = self.terms_from(&pending, human, &choices)?;
        // Validate before anything is written (the request stays open on a mistake).
        terms.clone().validated(self.clock.now())?;
        self.take_pending(id).await?;
        let agent = self.client_agent(tenant, &pending, human).await?;
        let mut terms = terms;
        terms.agent_id = agent;
        let earlier = self
            .earlier_mandates(tenant, human, agent, &pending.resource)
            .await?;
        let now = self.clock.now();
        let mandate_id = match earlier
            .iter()
            .find(|m| !m.is_due_to_expire(now) && same_terms(&terms, m))
        {
            // The person granted exactly this before: the code names that mandate,
            // nothing is created, and it is not revoked.
            Some(same) => {
                tracing::info!(mandate = %same.id, client = %pending.client_id, "re-authorization with equal terms reuses the mandate");
                same.id
            }
            None => {
                let requested = self
                    .request_mandate(&Principal::Agent { tenant, id: agent }, terms)
                    .await?;
                self.consent(
                    caller,
                    requested.mandate.id,
                    ConsentRequest {
                        decision: ConsentDecision::Granted,
                        terms_hash: Some(requested.mandate.terms_hash.0.clone()),
                        comment: None,
                    },
                    ConsentChannel::Oauth,
                )
                .await?
                .mandate
                .id
            }
        };
        self.replace_earlier_mandates(caller, &earlier, &pending, mandate_id)
            .await?;
        let code =
            mandate_token::random_id("mac_").map_err(|e| CoreError::Internal(e.to_string()))?;
        let grant = CodeGrant {
            client_id: pending.client_id.clone(),
            redirect_uri: pending.redirect_uri.clone(),
            code_challenge: pending.code_challenge.clone(),
            resource: pending.resource.clone(),
            mandate_id,
            human_id: human,
            agent_id: agent,
            dpop_bound: pending.dpop_bound,
        };
        self.store
            .put_once(&OnceRecord {
                kind: OnceKind::AuthorizationCode,
                key_hash: sha256_hex(&code),
                tenant_id: tenant,
                data: serde_json::to_string(&grant)
                    .map_err(|e| CoreError::Internal(e.to_string()))?,
                expires_at: self.clock.now() + Duration::seconds(CODE_TTL_SECONDS),
                used_at: None,
            })
            .await?;
        tracing::info!(mandate = %mandate_id, client = %pending.client_id, "authorization granted");
        Ok(authorization_response(
            &pending.redirect_uri,
            &self.authorization_issuer()?,
            &[("code", code.as_str())],
            pending.state.as_deref(),
        ))
    }

    /// Answers a held request with Deny: nothing is created; the client learns
    /// `access_denied`.
    pub async fn deny_authorization(
        &self,
        id: &str,
        caller: &Principal,
        session: &str,
    ) -> Result<String, CoreError> {
        let Principal::Human { id: human, .. } = *caller else {
            return Err(CoreError::Forbidden("only a person can answer".into()));
        };
        let pending = self.pending_authorization(id, human, session).await?;
        self.take_pending(id).await?;
        tracing::info!(client = %pending.client_id, human = %human, "authorization denied");
        Ok(authorization_response(
            &pending.redirect_uri,
            &self.authorization_issuer()?,
            &[
                ("error", "access_denied"),
                ("error_description", "the person refused"),
            ],
            pending.state.as_deref(),
        ))
    }

    async fn take_pending(&self, id: &str) -> Result<(), CoreError> {
        match self
            .store
            .use_once(
                OnceKind::AuthorizationRequest,
                &sha256_hex(id),
                self.clock.now(),
            )
            .await?
        {
            Some((_, true)) => Ok(()),
            _ => Err(CoreError::Conflict(
                "this authorization request was answered already".into(),
            )),
        }
    }

    /// The client's earlier active mandates from this person (the client's agent for
    /// them) for the same resource: every tool on the named server for
    /// `{public}/mcp/{server}`, any for `{public}/mcp`.
    async fn earlier_mandates(
        &self,
        tenant: TenantId,
        human: HumanId,
        agent: AgentId,
        resource: &str,
    ) -> Result<Vec<Mandate>, CoreError> {
        let mcp = format!("{}/mcp", self.authorization_issuer()?);
        let server = resource
            .strip_prefix(&mcp)
            .and_then(|r| r.strip_prefix('/'))
            .map(|name| format!("{name}."));
        let filter = MandateFilter {
            status: Some(MandateStatus::Active),
            agent: Some(agent),
            human: Some(human),
            consenter: None,
        };
        let mut earlier = Vec::new();
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        loop {
            let found = self.store.list_mandates(tenant, &filter, &page).await?;
            earlier.extend(found.items.into_iter().filter(|m| {
                server.as_deref().is_none_or(|prefix| {
                    m.terms
                        .scope
                        .tools
                        .iter()
                        .all(|t| t.tool.starts_with(prefix))
                })
            }));
            match found.next {
                Some(next) => {
                    page = PageRequest::new(Some(next.0), Some(PageRequest::MAX_LIMIT))
                        .map_err(|e| CoreError::Internal(e.to_string()))?;
                }
                None => break,
            }
        }
        Ok(earlier)
    }

    /// A re-authorization replaces what it re-authorizes: the `earlier` mandates other
    /// than `replacement` are revoked by the person, with the mandate that replaces
    /// them named as the reason in the audit. This runs once the replacement is
    /// active: if a revocation fails, the person sees the error and no code is
    /// issued, so the client gets no token of the new mandate while an earlier one it
    /// replaces is still active.
    async fn replace_earlier_mandates(
        &self,
        caller: &Principal,
        earlier: &[Mandate],
        pending: &PendingAuthorization,
        replacement: MandateId,
    ) -> Result<(), CoreError> {
        for m in earlier.iter().filter(|m| m.id != replacement) {
            let reason = format!(
                "replaced by mandate {replacement} when the person authorized client {} again",
                pending.client_id.chars().take(200).collect::<String>()
            );
            if let Err(e) = self
                .revoke(
                    caller,
                    m.id,
                    EndRequest {
                        reason: Some(reason),
                    },
                )
                .await
            {
                // Ended meanwhile (expired, revoked elsewhere): nothing left to replace.
                let now = self.clock.now();
                let still_live = self
                    .store
                    .mandate(caller.tenant(), m.id)
                    .await?
                    .is_some_and(|m| m.status == MandateStatus::Active && !m.is_due_to_expire(now));
                if still_live {
                    return Err(e);
                }
                continue;
            }
            tracing::info!(mandate = %m.id, by = %replacement, "mandate replaced by re-authorization");
        }
        Ok(())
    }

    fn terms_from(
        &self,
        pending: &PendingAuthorization,
        human: HumanId,
        c: &ConsentChoices,
    ) -> Result<MandateTerms, CoreError> {
        if c.tools.is_empty() {
            return Err(CoreError::invalid("Choose at least one tool."));
        }
        if let Some(t) = c
            .tools
            .iter()
            .find(|t| !pending.offered.iter().any(|o| o.name == **t))
        {
            return Err(CoreError::invalid(format!(
                "`{}` was not offered to this client.",
                t.chars().take(100).collect::<String>()
            )));
        }
        if c.lifetime < Duration::minutes(5) || c.lifetime > Duration::hours(MAX_MANDATE_HOURS) {
            return Err(CoreError::invalid(format!(
                "The mandate must last between 5 minutes and {} days.",
                MAX_MANDATE_HOURS / 24
            )));
        }
        if c.max_calls.is_some_and(|n| n == 0 || n > 1_000_000) {
            return Err(CoreError::invalid(
                "The call budget must be between 1 and 1000000.",
            ));
        }
        Ok(MandateTerms {
            // Replaced by the client's agent once the terms are known to be valid.
            agent_id: AgentId::generate(),
            human_id: human,
            intent: c.intent.clone(),
            purpose: None,
            scope: Scope {
                tools: c
                    .tools
                    .iter()
                    .map(|t| ToolGrant {
                        tool: t.clone(),
                        constraints: Default::default(),
                    })
                    .collect(),
            },
            data_ceiling: c.data_ceiling,
            mode: c.mode,
            budgets: Budgets {
                max_calls: c.max_calls,
                max_amount: None,
                currency: None,
            },
            approval: ApprovalRules {
                tiers: c.approval_tiers.clone(),
                tags: BTreeSet::new(),
            },
            owners: BTreeSet::new(),
            not_before: None,
            expires_at: self.clock.now() + c.lifetime,
            max_delegation_depth: 0,
        })
    }

    /// The agent a client acts as for `human`, made at the first consent: owned by that
    /// human (who is accountable for what they let it do), named after the client.
    async fn client_agent(
        &self,
        tenant: TenantId,
        pending: &PendingAuthorization,
        human: HumanId,
    ) -> Result<AgentId, CoreError> {
        if let Some(id) = self
            .store
            .oauth_client_agent(tenant, &pending.client_id, human)
            .await?
        {
            return match self.store.agent(tenant, id).await? {
                Some(a) if a.status == AgentStatus::Active => Ok(id),
                _ => Err(CoreError::Forbidden(
                    "this client's agent is disabled".into(),
                )),
            };
        }
        let slug: String = pending
            .client_name
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(32)
            .collect();
        let suffix =
            mandate_token::random_id("").map_err(|e| CoreError::Internal(e.to_string()))?;
        let suffix: String = suffix
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(10)
            .collect::<String>()
            .to_ascii_lowercase();
        let mut labels = std::collections::BTreeMap::new();
        labels.insert(
            "oauth.client_id".to_owned(),
            pending.client_id.chars().take(256).collect(),
        );
        labels.insert(
            "oauth.client_name".to_owned(),
            pending.client_name.chars().take(256).collect(),
        );
        let agent = Agent {
            id: AgentId::generate(),
            tenant_id: tenant,
            name: format!("oauth-{}-{suffix}", slug.trim_matches('-')),
            owner: human,
            sponsors: Vec::new(),
            credentials: AgentCredentials::default(),
            labels,
            status: AgentStatus::Active,
            created_at: self.clock.now(),
        };
        self.store.create_agent(&agent).await?;
        match self
            .store
            .bind_oauth_client_agent(tenant, &pending.client_id, human, agent.id)
            .await
        {
            Ok(()) => Ok(agent.id),
            Err(StoreError::Conflict { .. }) => self
                .store
                .oauth_client_agent(tenant, &pending.client_id, human)
                .await?
                .ok_or_else(|| CoreError::Conflict("retry".into())),
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether `wanted` asks for exactly what `earlier` was granted: every term (agent,
/// person, intent, scope, data ceiling, mode, budgets, approval rules, owners,
/// delegation depth) hashes equal, the expiry aside — a reused mandate keeps its own.
fn same_terms(wanted: &MandateTerms, earlier: &Mandate) -> bool {
    let mut wanted = wanted.clone();
    wanted.expires_at = earlier.terms.expires_at;
    wanted.hash() == earlier.terms_hash
}

/// Parses a risk tier or data class name from a form.
pub fn level<T: FromStr>(s: &str) -> Option<T> {
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_once_and_round_trip() {
        let p = AuthorizeParams::from_query(
            "response_type=code&client_id=mcl_x&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&state=s%20t&unknown=1",
        )
        .unwrap();
        assert_eq!(p.redirect_uri.as_deref(), Some("http://127.0.0.1:9/cb"));
        assert_eq!(AuthorizeParams::from_query(&p.to_query()).unwrap(), p);
        assert!(!p.to_query().contains("//"));
        assert!(matches!(
            AuthorizeParams::from_query("client_id=a&client_id=b"),
            Err(AuthorizeError::Page(_))
        ));
    }

    #[test]
    fn challenges_and_redirects() {
        assert!(is_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!is_s256_challenge("plain-verifier"));
        assert_eq!(
            authorization_response(
                "http://127.0.0.1/cb?a=1",
                "https://as.example",
                &[("code", "c&d")],
                Some("s 1"),
            ),
            "http://127.0.0.1/cb?a=1&code=c%26d&state=s+1&iss=https%3A%2F%2Fas.example"
        );
        // RFC 9207 on errors too, with or without state.
        assert_eq!(
            authorization_response(
                "com.example.app:/cb",
                "https://as.example",
                &[("error", "access_denied")],
                None,
            ),
            "com.example.app:/cb?error=access_denied&iss=https%3A%2F%2Fas.example"
        );
    }
}
