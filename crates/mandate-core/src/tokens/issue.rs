//! `/oauth2/token`: client authentication and the grants.

use std::str::FromStr;
use std::sync::Arc;

use mandate_audit::{EventKind, NewEvent};
use mandate_domain::{Agent, AgentStatus, Grant, Mandate};
use mandate_policy::{GrantAction, GrantRequest};
use mandate_store::{Entry, OnceRecord, Refusal, SpentOnce, UsedAssertion};
use mandate_token::{
    DpopRequest, Expect, JWT_BEARER, JWT_BEARER_GRANT, MANDATE_DETAILS_TYPE,
    REQUEST_MANDATES_SCOPE, TaskToken, TokenError, scope_is_subset, time_ordered_id, untrusted,
    unverified_issuer, verify_client_assertion, verify_jwt_svid,
};
use mandate_types::{AgentId, MandateId};
use serde_json::{Value, json};
use tracing::Instrument as _;

use super::{TokenService, unavailable};
use crate::trace::TARGET as TRACE;

/// RFC 8693 grant type.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 token types we accept and issue.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// A token request, as parsed from the form (each parameter at most once).
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub grant_type: String,
    pub client_id: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
    pub scope: Option<String>,
    pub authorization_details: Option<String>,
    /// RFC 8707 `resource` values (may repeat).
    pub resource: Vec<String>,
    /// RFC 8693 `audience` values (may repeat).
    pub audience: Vec<String>,
    pub subject_token: Option<String>,
    pub subject_token_type: Option<String>,
    pub actor_token: Option<String>,
    pub actor_token_type: Option<String>,
    pub requested_token_type: Option<String>,
    /// `authorization_code`: the code, the PKCE verifier and the redirect URI.
    pub code: Option<String>,
    pub code_verifier: Option<String>,
    pub redirect_uri: Option<String>,
    /// `refresh_token`: the refresh token.
    pub refresh_token: Option<String>,
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer`: the ID-JAG (RFC 7523 §2.1).
    pub assertion: Option<String>,
    /// The `DPoP` header.
    pub dpop: Option<String>,
}

/// A successful token response (RFC 6749 §5.1, RFC 8693 §2.2.1).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    /// `DPoP` or `Bearer`.
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<Value>,
    /// A (rotated) refresh token: authorization code and refresh grants only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// What a new grant hangs under: nothing, the token exchanged for it, or the first
/// token of its refresh-token family (revoking that one ends the family).
#[derive(Debug, Clone, Copy)]
pub(super) enum Parent<'a> {
    None,
    Token(&'a TaskToken),
    Family(&'a str),
}

impl Parent<'_> {
    fn jti(self) -> Option<String> {
        match self {
            Parent::None => None,
            Parent::Token(t) => Some(t.jti.clone()),
            Parent::Family(jti) => Some(jti.to_owned()),
        }
    }
}

/// The once-only records an issuance spends (an authorization code, a refresh token)
/// and issues (a refresh token), in its commit.
#[derive(Debug, Clone, Default)]
pub(super) struct OnceWrites {
    pub spend: Option<SpentOnce>,
    pub issue: Option<OnceRecord>,
}

/// What the client asked for in `authorization_details`.
pub(super) struct MandateAsk {
    pub mandate: MandateId,
    pub tools: Option<Vec<String>>,
}

/// Longest value of any one parameter we read.
const MAX_PARAM: usize = 16 * 1024;

impl TokenService {
    /// Handles a token request end to end. Every refusal is an OAuth error; nothing
    /// is issued unless the grant is recorded and its audit event is durable.
    pub async fn token(&self, req: &TokenRequest) -> Result<TokenResponse, TokenError> {
        for (name, value) in [
            ("client_assertion", &req.client_assertion),
            ("scope", &req.scope),
            ("authorization_details", &req.authorization_details),
            ("subject_token", &req.subject_token),
            ("actor_token", &req.actor_token),
            ("code", &req.code),
            ("code_verifier", &req.code_verifier),
            ("redirect_uri", &req.redirect_uri),
            ("refresh_token", &req.refresh_token),
            ("assertion", &req.assertion),
        ] {
            if value.as_ref().is_some_and(|v| v.len() > MAX_PARAM) {
                return Err(TokenError::InvalidRequest(format!("`{name}` is too long")));
            }
        }
        let grant_type = req.grant_type.as_str();
        if grant_type == super::AUTHORIZATION_CODE {
            return self.authorization_code(req).await;
        }
        if grant_type == super::REFRESH_TOKEN {
            return self.refresh(req).await;
        }
        if grant_type == JWT_BEARER_GRANT && self.enterprise.is_some() {
            return self.id_jag(req).await;
        }
        if grant_type != "client_credentials" && grant_type != TOKEN_EXCHANGE {
            return Err(TokenError::UnsupportedGrantType(format!(
                "grant type {} is not supported (use authorization_code, refresh_token, client_credentials, token-exchange, or jwt-bearer with an ID-JAG where an enterprise identity provider is configured)",
                untrusted(grant_type)
            )));
        }
        let (client, mut used) = self
            .authenticate_client(req)
            .instrument(tracing::info_span!(target: TRACE, "assertion_check"))
            .await?;
        let issued = match (
            self.token_endpoint_dpop(req, DpopRequired::ByServer, &mut used),
            self.audience(req),
        ) {
            (Ok(jkt), Ok(audience)) => match grant_type {
                "client_credentials" => {
                    self.client_credentials(req, &client, &mut used, jkt, audience)
                        .await
                }
                _ => self.exchange(req, &client, &mut used, jkt, audience).await,
            },
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        if issued.is_err() {
            // A refused request spends its assertions too (those its commit did not
            // already claim): a captured assertion is never tried twice.
            self.spend(used).await;
        }
        issued
    }

    /// Records assertions as used, outside any grant, for a request that was refused
    /// anyway: a replay or a failure to record changes nothing for its answer (a
    /// failure is logged where it happens).
    pub(super) async fn spend(&self, used: Vec<UsedAssertion>) {
        let _refused_anyway = self.spend_now(used).await;
    }

    /// Records assertions as used now, refusing a replay: for requests that write
    /// nothing else (revocation).
    pub(crate) async fn spend_now(&self, used: Vec<UsedAssertion>) -> Result<(), TokenError> {
        let entry = Entry {
            assertions: used,
            ..Entry::default()
        };
        match self.ledger.commit(entry).await.map_err(unavailable)? {
            Ok(_) => Ok(()),
            Err(refused) => Err(refusal(refused, Via::Mandate)),
        }
    }

    /// Client authentication: a JWT assertion (`private_key_jwt`, a JWT-SVID, or an
    /// ID token of a federated issuer). The agent must exist and be active. Returns the
    /// assertion's one use to record (a `private_key_jwt`'s `jti`), which the caller
    /// commits with what the request writes, or spends on its own.
    pub(crate) async fn authenticate_client(
        &self,
        req: &TokenRequest,
    ) -> Result<(Agent, Vec<UsedAssertion>), TokenError> {
        match req.client_assertion_type.as_deref() {
            Some(JWT_BEARER) => {}
            Some(other) => {
                return Err(TokenError::InvalidClient(format!(
                    "client_assertion_type {} is not supported",
                    untrusted(other)
                )));
            }
            None => {
                return Err(TokenError::InvalidClient(
                    "client authentication is required: private_key_jwt, a JWT-SVID or a federated ID token".into(),
                ));
            }
        }
        let assertion = req
            .client_assertion
            .as_deref()
            .ok_or_else(|| TokenError::InvalidClient("`client_assertion` is missing".into()))?;
        let (agent, used) = self.agent_for_assertion(assertion).await?;
        if let Some(client_id) = &req.client_id
            && client_id != &agent.id.to_string()
        {
            self.spend(used.into_iter().collect()).await;
            return Err(TokenError::InvalidClient(
                "`client_id` does not match the client assertion".into(),
            ));
        }
        Ok((agent, used.into_iter().collect()))
    }

    /// Which agent an assertion authenticates, after verifying it, and the use of it to
    /// record (a `private_key_jwt` is used once: its `jti` is claimed in the commit).
    pub(crate) async fn agent_for_assertion(
        &self,
        assertion: &str,
    ) -> Result<(Agent, Option<UsedAssertion>), TokenError> {
        let now = self.clock.now();
        let endpoint = self.config.token_endpoint();
        let audiences = [endpoint.as_str(), self.config.issuer.as_str()];
        let issuer = unverified_issuer(assertion).ok();
        let mut used = None;
        let agent = if let Some(id) = issuer.as_deref().and_then(|i| AgentId::from_str(i).ok()) {
            // private_key_jwt: iss = sub = the agent id.
            let agent = self
                .store
                .agent_by_client_id(id)
                .await
                .map_err(unavailable)?
                .ok_or_else(|| TokenError::InvalidClient("unknown client".into()))?;
            let verified = verify_client_assertion(
                assertion,
                &id.to_string(),
                &self.client_keys.keys(agent.id, &agent.credentials.jwks),
                &audiences,
                now.timestamp(),
            )?;
            let expires = chrono::DateTime::from_timestamp(verified.expires_at, 0).unwrap_or(now);
            used = Some(UsedAssertion {
                issuer: verified.client_id,
                jti: verified.jti,
                expires_at: expires,
            });
            agent
        } else if let Some(federation) = self.federation.as_ref().filter(|f| {
            issuer
                .as_deref()
                .is_some_and(|i| f.issuers().any(|x| x.issuer == i))
        }) {
            let (iss, sub) = federation.verify(assertion, now.timestamp()).await?;
            self.store
                .agent_by_federated(&iss, &sub)
                .await
                .map_err(unavailable)?
                .ok_or_else(|| {
                    TokenError::InvalidClient(
                        "no agent is registered for this federated identity".into(),
                    )
                })?
        } else if !self.spiffe.is_empty() {
            let id = verify_jwt_svid(assertion, &self.spiffe, &audiences, now.timestamp())?;
            self.store
                .agent_by_spiffe_id(&id.to_string())
                .await
                .map_err(unavailable)?
                .ok_or_else(|| {
                    TokenError::InvalidClient("no agent is registered for this SPIFFE ID".into())
                })?
        } else {
            return Err(TokenError::InvalidClient(
                "the client assertion names no known client or trusted issuer".into(),
            ));
        };
        if agent.status != AgentStatus::Active {
            self.spend(used.into_iter().collect()).await;
            return Err(TokenError::InvalidClient("the agent is disabled".into()));
        }
        Ok((agent, used))
    }

    /// The DPoP proof of a token request, if any: its key's thumbprint. `required`
    /// says who demands one when it is missing: the server of its agents
    /// (`require_dpop`), or a public client that registered `dpop_bound_access_tokens`
    /// (RFC 9449 §5.2). Public clients that did not may send a proof or not (the
    /// common MCP client libraries send none at the token endpoint).
    ///
    /// On a store that replicas share, the proof's use is pushed onto `used`: it is
    /// claimed in the store with the rest of the request's writes, so a proof replayed
    /// at another replica (whose own memory has not seen it) is refused there too.
    pub(super) fn token_endpoint_dpop(
        &self,
        req: &TokenRequest,
        required: DpopRequired,
        used: &mut Vec<UsedAssertion>,
    ) -> Result<Option<String>, TokenError> {
        match req.dpop.as_deref() {
            Some(proof) => {
                let endpoint = self.config.token_endpoint();
                let proof = self.dpop.check(
                    proof,
                    &DpopRequest {
                        method: "POST",
                        url: &endpoint,
                        access_token: None,
                        now: self.clock.now().timestamp(),
                    },
                )?;
                // On a store that one process owns, this replica's memory is the
                // only one that could see the proof again.
                if self.store.shared() {
                    used.push(UsedAssertion {
                        issuer: DPOP_PROOF_USES.to_owned(),
                    jti: proof.replay_id(),
                        expires_at: chrono::DateTime::from_timestamp(proof.expires_at(), 0)
                            .unwrap_or_else(|| self.clock.now()),
                    });
                }
                Ok(Some(proof.jkt().to_owned()))
            }
            None => match required {
                DpopRequired::ByServer if self.config.require_dpop => {
                    Err(TokenError::InvalidDpopProof(
                        "this server issues DPoP-bound tokens only to agents: send a DPoP proof"
                            .into(),
                    ))
                }
                DpopRequired::ByClient(true) => Err(TokenError::InvalidDpopProof(
                    "this client registered `dpop_bound_access_tokens`: send a DPoP proof with every token request (RFC 9449 §5.2)"
                        .into(),
                )),
                DpopRequired::ByServer | DpopRequired::ByClient(false) => Ok(None),
            },
        }
    }

    /// The audience: the `resource` / `audience` values asked for, each one we serve;
    /// by default our first audience (the MCP gateway).
    fn audience(&self, req: &TokenRequest) -> Result<Vec<String>, TokenError> {
        let asked: Vec<&String> = req.resource.iter().chain(req.audience.iter()).collect();
        if asked.is_empty() {
            return Ok(self.config.audiences.iter().take(1).cloned().collect());
        }
        let mut out: Vec<String> = Vec::new();
        for a in asked {
            if !self.config.audiences.contains(a) {
                return Err(TokenError::InvalidTarget(format!(
                    "{} is not a resource this server issues tokens for",
                    untrusted(a)
                )));
            }
            if !out.contains(a) {
                out.push(a.clone());
            }
        }
        Ok(out)
    }

    async fn client_credentials(
        &self,
        req: &TokenRequest,
        agent: &Agent,
        used: &mut Vec<UsedAssertion>,
        jkt: Option<String>,
        audience: Vec<String>,
    ) -> Result<TokenResponse, TokenError> {
        let Some(ask) = parse_details(req.authorization_details.as_deref())? else {
            // Without a mandate: a token that can only request mandates.
            match req.scope.as_deref().map(str::trim) {
                None | Some("") | Some(REQUEST_MANDATES_SCOPE) => {}
                Some(_) => {
                    return Err(TokenError::InvalidScope(format!(
                        "without a mandate in `authorization_details` only `{REQUEST_MANDATES_SCOPE}` can be granted"
                    )));
                }
            }
            let issuer = self.config.issuer.clone();
            let token = self.new_token(
                agent.id.to_string(),
                vec![agent.id],
                vec![issuer],
                vec![REQUEST_MANDATES_SCOPE.into()],
                None,
                None,
                jkt,
                agent,
                self.clock.now() + self.config.max_lifetime,
            )?;
            return self
                .record_and_sign(
                    token,
                    agent,
                    used,
                    OnceWrites::default(),
                    None,
                    Parent::None,
                    EventKind::TokenIssued,
                    &[],
                )
                .await;
        };
        let mandate = self.load_mandate(agent, ask.mandate).await?;
        self.decide_direct(agent, &mandate)
            .map_err(TokenError::InvalidGrant)?;
        let granted = mandate_tools(&mandate);
        let scope = narrow(&granted, ask.tools, req.scope.as_deref())?;
        let token = self.mandate_token(&mandate, vec![agent.id], agent, audience, scope, jkt)?;
        self.record_and_sign(
            token,
            agent,
            used,
            OnceWrites::default(),
            Some(&mandate),
            Parent::None,
            EventKind::TokenIssued,
            &[],
        )
        .await
    }

    async fn exchange(
        &self,
        req: &TokenRequest,
        agent: &Agent,
        used: &mut Vec<UsedAssertion>,
        jkt: Option<String>,
        audience: Vec<String>,
    ) -> Result<TokenResponse, TokenError> {
        if let Some(t) = req.requested_token_type.as_deref()
            && t != ACCESS_TOKEN_TYPE
        {
            return Err(TokenError::InvalidRequest(format!(
                "requested_token_type {} is not supported",
                untrusted(t)
            )));
        }
        let subject = req
            .subject_token
            .as_deref()
            .ok_or_else(|| TokenError::InvalidRequest("`subject_token` is missing".into()))?;
        match req.subject_token_type.as_deref() {
            Some(ACCESS_TOKEN_TYPE) | Some(JWT_TOKEN_TYPE) => {}
            _ => {
                return Err(TokenError::InvalidRequest(format!(
                    "`subject_token_type` must be {ACCESS_TOKEN_TYPE}"
                )));
            }
        }
        let parent = self.parent_token(subject).await?;
        let Some(mandate_id) = parent.mandate else {
            return Err(TokenError::InvalidGrant(
                "the subject token carries no mandate".into(),
            ));
        };
        if parent.tenant != agent.tenant_id {
            return Err(TokenError::InvalidGrant(
                "the subject token is not valid here".into(),
            ));
        }
        let mandate = self.load_mandate(agent, mandate_id).await?;
        if mandate.status.is_final() || mandate.terms.expires_at <= self.clock.now() {
            // Its tokens died with it (the subject token among them).
            return Err(refusal(
                Refusal::Missing {
                    what: "live mandate".into(),
                },
                Via::SubjectToken,
            ));
        }
        let holder = parent
            .actor()
            .ok_or_else(|| TokenError::InvalidGrant("the subject token names no actor".into()))?;
        let renewal = holder == agent.id;
        // The actor token: the receiving agent's own credential.
        match (req.actor_token.as_deref(), req.actor_token_type.as_deref()) {
            (Some(actor), Some(JWT_TOKEN_TYPE)) => {
                let (actor_agent, actor_used) =
                    self.agent_for_assertion(actor).await.map_err(|e| {
                        TokenError::InvalidGrant(format!(
                            "the actor token is refused: {}",
                            e.description()
                        ))
                    })?;
                used.extend(actor_used);
                if actor_agent.id != agent.id {
                    return Err(TokenError::InvalidGrant(
                        "the actor token does not identify the authenticated client".into(),
                    ));
                }
            }
            (Some(_), _) => {
                return Err(TokenError::InvalidRequest(format!(
                    "`actor_token_type` must be {JWT_TOKEN_TYPE}"
                )));
            }
            (None, _) if renewal => {}
            (None, _) => {
                return Err(TokenError::InvalidRequest(
                    "delegation needs an `actor_token`: the receiving agent's own credential"
                        .into(),
                ));
            }
        }
        let parent_chain = parent.delegation_chain();
        let now = self.clock.now();
        let set = self.policies.pdp().current();
        let (actors, chain, kind) = if renewal {
            (parent.actors.clone(), parent_chain, EventKind::TokenRenewed)
        } else {
            let delegator = self
                .store
                .agent(agent.tenant_id, holder)
                .await
                .map_err(unavailable)?
                .ok_or_else(|| {
                    TokenError::InvalidGrant("the delegating agent no longer exists".into())
                })?;
            let decision = set.decide_grant(&GrantRequest {
                action: GrantAction::Delegate { to: agent },
                agent: &delegator,
                mandate: &mandate,
                delegation_chain: &parent_chain,
                now,
            });
            if !decision.allowed {
                return Err(TokenError::InvalidGrant(decision.reason));
            }
            let mut actors = vec![agent.id];
            actors.extend(parent.actors.iter().copied());
            let mut chain = parent_chain;
            chain.push(holder);
            (actors, chain, EventKind::TokenExchanged)
        };
        let decision = tracing::info_span!(target: TRACE, "decision").in_scope(|| {
            set.decide_grant(&GrantRequest {
                action: GrantAction::ExchangeToken,
                agent,
                mandate: &mandate,
                delegation_chain: &chain,
                now,
            })
        });
        if !decision.allowed {
            return Err(TokenError::InvalidGrant(decision.reason));
        }
        let ask = parse_details(req.authorization_details.as_deref())?;
        if let Some(ask) = &ask
            && ask.mandate != mandate.id
        {
            return Err(TokenError::InvalidAuthorizationDetails(
                "`authorization_details` names another mandate than the subject token".into(),
            ));
        }
        let scope = narrow(
            &parent.scope,
            ask.and_then(|a| a.tools),
            req.scope.as_deref(),
        )?;
        let token = self.mandate_token(&mandate, actors, agent, audience, scope, jkt)?;
        let mut response = self
            .record_and_sign(
                token,
                agent,
                used,
                OnceWrites::default(),
                Some(&mandate),
                Parent::Token(&parent),
                kind,
                &[],
            )
            .await?;
        response.issued_token_type = Some(ACCESS_TOKEN_TYPE);
        Ok(response)
    }

    /// A subject token to exchange: ours, verified, unexpired and not on this replica's
    /// revocation list. Whether it is live is checked again where it counts, in the
    /// transaction that writes the new grant (a revocation this replica has not heard of
    /// yet refuses it there).
    async fn parent_token(&self, token: &str) -> Result<TaskToken, TokenError> {
        let parsed = self.signed_token(token).await?;
        if self.revoked.is_revoked(&parsed.jti) {
            return Err(TokenError::InvalidGrant(
                "the token has been revoked or has expired".into(),
            ));
        }
        Ok(parsed)
    }

    /// One of our tokens, verified and unexpired (not yet checked for revocation).
    /// Its signature and claims are checked once per replica (or not at all when this
    /// replica issued it): see `verified.rs`.
    async fn signed_token(&self, token: &str) -> Result<TaskToken, TokenError> {
        let now = self.clock.now().timestamp();
        let parsed = match self.verified.unexpired(token, now) {
            Some(known) => known,
            None => {
                let claims = self
                    .verify_signature(token)
                    .await
                    .map_err(|e| TokenError::InvalidGrant(e.description()))?;
                let parsed = Arc::new(
                    TaskToken::from_claims(
                        &claims,
                        &Expect {
                            issuer: &self.config.issuer,
                            audience: None,
                            now,
                            skew: self.config.skew_seconds,
                        },
                    )
                    .map_err(|e| TokenError::InvalidGrant(e.description()))?,
                );
                self.verified.put(token, parsed.clone());
                parsed
            }
        };
        super::own_token_live(&parsed, now)
            .map_err(|e| TokenError::InvalidGrant(e.description()))?;
        Ok(TaskToken::clone(&parsed))
    }

    /// One of our tokens, verified, unexpired, and live in the store (the
    /// authoritative check: a revocation this replica has not heard of yet counts).
    pub(crate) async fn live_token(&self, token: &str) -> Result<TaskToken, TokenError> {
        let parsed = self.signed_token(token).await?;
        let grant = self
            .store
            .grant(parsed.tenant, &parsed.jti)
            .await
            .map_err(unavailable)?;
        match grant {
            Some(g) if g.is_live(self.clock.now()) => Ok(parsed),
            Some(_) => Err(TokenError::InvalidGrant(
                "the token has been revoked or has expired".into(),
            )),
            None => Err(TokenError::InvalidGrant("the token is unknown".into())),
        }
    }

    async fn load_mandate(&self, agent: &Agent, id: MandateId) -> Result<Mandate, TokenError> {
        self.store
            .mandate(agent.tenant_id, id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                TokenError::InvalidAuthorizationDetails(format!("mandate {id} does not exist"))
            })
    }

    /// The policies' decision on `agent` holding a token under `mandate` directly (no
    /// delegation chain, as the first token of a grant): the reason when refused.
    pub(super) fn decide_direct(&self, agent: &Agent, mandate: &Mandate) -> Result<(), String> {
        let decision = tracing::info_span!(target: TRACE, "decision").in_scope(|| {
            self.policies.pdp().current().decide_grant(&GrantRequest {
                action: GrantAction::ExchangeToken,
                agent,
                mandate,
                delegation_chain: &[],
                now: self.clock.now(),
            })
        });
        if decision.allowed {
            Ok(())
        } else {
            Err(decision.reason)
        }
    }

    /// Never past the mandate's end, never longer than the configured maximum.
    pub(super) fn expiry(&self, mandate: &Mandate) -> chrono::DateTime<chrono::Utc> {
        (self.clock.now() + self.config.max_lifetime).min(mandate.terms.expires_at)
    }

    /// A token under `mandate` held by `agent` (`actors`: it first, then whoever
    /// delegated to it): the mandate's person as its subject, the mandate's terms as
    /// its authorization details, expiring with the mandate at the latest.
    pub(super) fn mandate_token(
        &self,
        mandate: &Mandate,
        actors: Vec<AgentId>,
        agent: &Agent,
        audience: Vec<String>,
        scope: Vec<String>,
        jkt: Option<String>,
    ) -> Result<TaskToken, TokenError> {
        let details = mandate_details(mandate, &scope);
        self.new_token(
            mandate.terms.human_id.to_string(),
            actors,
            audience,
            scope,
            Some(mandate.id),
            Some(details),
            jkt,
            agent,
            self.expiry(mandate),
        )
    }

    #[allow(clippy::too_many_arguments, reason = "the claims of one token, named")]
    pub(super) fn new_token(
        &self,
        subject: String,
        actors: Vec<AgentId>,
        audience: Vec<String>,
        scope: Vec<String>,
        mandate: Option<MandateId>,
        details: Option<Value>,
        jkt: Option<String>,
        agent: &Agent,
        expires: chrono::DateTime<chrono::Utc>,
    ) -> Result<TaskToken, TokenError> {
        let at = self.clock.now();
        let now = at.timestamp();
        let expires_at = expires.timestamp();
        if expires_at <= now {
            return Err(TokenError::InvalidGrant("the mandate has expired".into()));
        }
        Ok(TaskToken {
            issuer: self.config.issuer.clone(),
            // Ordered by time: a batch of grants lands on a few pages of the index.
            jti: time_ordered_id("t", at)?,
            tenant: agent.tenant_id,
            subject,
            actors,
            audience,
            issued_at: now,
            expires_at,
            scope,
            mandate,
            authorization_details: details,
            cnf_jkt: jkt,
        })
    }

    /// Records the grant and its audit event (durable), then signs. `audit`: more
    /// fields of the event (what the grant rested on: an ID-JAG's issuer and `jti`,
    /// never the assertion).
    #[allow(
        clippy::too_many_arguments,
        reason = "what one issuance records, named"
    )]
    pub(super) async fn record_and_sign(
        &self,
        token: TaskToken,
        agent: &Agent,
        used: &mut Vec<UsedAssertion>,
        once: OnceWrites,
        mandate: Option<&Mandate>,
        parent: Parent<'_>,
        kind: EventKind,
        audit: &[(&'static str, Value)],
    ) -> Result<TokenResponse, TokenError> {
        let issued_at = chrono::DateTime::from_timestamp(token.issued_at, 0)
            .unwrap_or_else(|| self.clock.now());
        let expires_at = chrono::DateTime::from_timestamp(token.expires_at, 0).unwrap_or(issued_at);
        let depth = u8::try_from(token.actors.len().saturating_sub(1)).unwrap_or(u8::MAX);
        let grant = Grant {
            jti: token.jti.clone(),
            tenant_id: token.tenant,
            mandate_id: token.mandate,
            agent_id: agent.id,
            parent_jti: parent.jti(),
            depth,
            scope: token.scope.clone(),
            cnf_jkt: token.cnf_jkt.clone(),
            issued_at,
            expires_at,
            revoked_at: None,
        };
        let mut event = NewEvent::new(token.tenant, kind, format!("agent:{}", agent.id))
            .agent(agent.id)
            .with("jti", token.jti.clone())
            .with("scope", json!(token.scope))
            .with("aud", json!(token.audience))
            .with("expires_at", json!(expires_at))
            .with("depth", depth)
            .with("dpop_bound", token.cnf_jkt.is_some());
        event.actor = token.actors.iter().map(|a| format!("agent:{a}")).collect();
        if event.actor.is_empty() {
            event.actor = vec![format!("agent:{}", agent.id)];
        }
        if let Some(m) = mandate {
            event = event.mandate(m.id).human(m.terms.human_id);
        }
        if let Some(jti) = parent.jti() {
            event = event.with("parent_jti", jti);
        }
        if let Parent::Family(family) = parent {
            event = event
                .with("grant_type", "refresh_token")
                .with("refresh_family", family);
        }
        for (name, value) in audit {
            event = event.with(name, value.clone());
        }
        // One commit: the assertions' use, the grant and its event, in the ledger's
        // batch. The mandate (and the parent) are checked again in that transaction: one
        // that ended since we read it refuses, and nothing is issued.
        let entry = Entry {
            assertions: std::mem::take(used),
            once: once.spend,
            grant: Some(grant),
            event: Some(event),
            revoke: None,
            issue: once.issue,
        };
        if let Err(refused) = self
            .ledger
            .commit(entry)
            .instrument(tracing::info_span!(target: TRACE, "durable_write"))
            .await
            .map_err(unavailable)?
        {
            let via = match parent {
                Parent::None => Via::Mandate,
                Parent::Token(_) => Via::SubjectToken,
                Parent::Family(_) => Via::RefreshToken,
            };
            return Err(refusal(refused, via));
        }
        let access_token = tracing::info_span!(target: TRACE, "signing").in_scope(|| {
            self.ring
                .load()
                .sign(mandate_token::ACCESS_TOKEN_TYP, &token)
        })?;
        // What verifying `access_token` would yield is `token` itself (the claims
        // round-trip exactly): its first use here, a call or an exchange, skips the
        // signature check. Expiry and revocation are still checked at every use.
        let authorization_details = token.authorization_details.clone();
        let response = TokenResponse {
            access_token,
            token_type: if token.cnf_jkt.is_some() {
                "DPoP"
            } else {
                "Bearer"
            },
            expires_in: token.expires_at - token.issued_at,
            scope: token.scope.join(" "),
            issued_token_type: None,
            authorization_details,
            refresh_token: None,
        };
        self.verified.put(&response.access_token, Arc::new(token));
        Ok(response)
    }
}

/// The issuer under which DPoP proofs presented at the token endpoint are claimed in
/// the store's used assertions (their `jti` there is [`mandate_token::DpopProof::replay_id`]).
/// No client id has this form (agents' ids are `agt_…`).
pub(super) const DPOP_PROOF_USES: &str = "urn:mandate:dpop-proof";

/// What a commit refused for a spent authorization code says (the code's handler then
/// tells a replay from an expiry).
pub(super) const SPENT: &str = "the code was used before or has expired";

/// What a refused commit's grant rested on: its mandate alone, a subject token, or a
/// refresh token's family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    Mandate,
    SubjectToken,
    RefreshToken,
}

/// A refusal by the commit's checks, as the OAuth client sees it.
/// Who decides whether a token request must carry a DPoP proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DpopRequired {
    /// The server's `require_dpop`: agents' grants (client credentials, token exchange).
    ByServer,
    /// A public client's registration (`dpop_bound_access_tokens`, RFC 9449 §5.2):
    /// authorization codes and refresh tokens.
    ByClient(bool),
}

pub(super) fn refusal(refused: Refusal, via: Via) -> TokenError {
    match (refused, via) {
        (Refusal::Used, Via::RefreshToken) => TokenError::InvalidGrant(super::refresh::USED.into()),
        (Refusal::Used, _) => TokenError::InvalidGrant(SPENT.into()),
        (Refusal::Replay { issuer }, _) if issuer == DPOP_PROOF_USES => {
            TokenError::InvalidDpopProof("the proof has been used before (`jti`)".into())
        }
        (Refusal::Replay { issuer }, _) if issuer.starts_with(super::idjag::ID_JAG_USES) => {
            TokenError::InvalidGrant("the ID-JAG was used before (`jti` replay)".into())
        }
        (Refusal::Replay { .. }, _) => {
            TokenError::InvalidClient("the client assertion was used before (`jti` replay)".into())
        }
        (Refusal::Missing { .. }, Via::SubjectToken) => TokenError::InvalidGrant(
            "the subject token has been revoked or its mandate has ended".into(),
        ),
        (Refusal::Missing { .. }, Via::RefreshToken) => TokenError::InvalidGrant(
            "the refresh token has been revoked or its mandate has ended".into(),
        ),
        (Refusal::Missing { .. }, Via::Mandate) => {
            TokenError::InvalidGrant("the mandate is no longer active".into())
        }
    }
}

/// Reads `authorization_details` (RFC 9396): a JSON array; at most one entry of type
/// `mandate`, naming `mandate_id` and optionally narrowing `tools`. Other types are
/// refused (we would not honour them).
pub(super) fn parse_details(raw: Option<&str>) -> Result<Option<MandateAsk>, TokenError> {
    let bad = |m: &str| TokenError::InvalidAuthorizationDetails(m.to_owned());
    let Some(raw) = raw else { return Ok(None) };
    let value: Value = mandate_jose::parse_json_strict(raw.as_bytes())
        .map_err(|_| bad("`authorization_details` is not valid JSON"))?;
    let Value::Array(items) = value else {
        return Err(bad("`authorization_details` must be a JSON array"));
    };
    let mut found = None;
    for item in &items {
        let Value::Object(obj) = item else {
            return Err(bad("each authorization detail must be an object"));
        };
        match obj.get("type").and_then(Value::as_str) {
            Some(MANDATE_DETAILS_TYPE) => {}
            Some(other) => {
                return Err(TokenError::InvalidAuthorizationDetails(format!(
                    "authorization detail type {} is not supported",
                    untrusted(other)
                )));
            }
            None => return Err(bad("an authorization detail has no `type`")),
        }
        for key in obj.keys() {
            if !["type", "mandate_id", "tools", "locations", "actions"].contains(&key.as_str()) {
                return Err(TokenError::InvalidAuthorizationDetails(format!(
                    "unknown member {} in a mandate authorization detail",
                    untrusted(key)
                )));
            }
        }
        if found.is_some() {
            return Err(bad("name one mandate per request"));
        }
        let id = obj
            .get("mandate_id")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("the mandate authorization detail needs `mandate_id`"))?;
        let mandate =
            MandateId::from_str(id).map_err(|_| bad("`mandate_id` is not a mandate id"))?;
        let tools = match obj.get("tools") {
            None => None,
            Some(Value::Array(t)) => Some(
                t.iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| bad("`tools` must hold strings"))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err(bad("`tools` must be an array of tool names")),
        };
        found = Some(MandateAsk { mandate, tools });
    }
    if found.is_none() {
        return Err(bad("`authorization_details` names no mandate"));
    }
    Ok(found)
}

/// The scope granted: what the parent (or mandate) holds, narrowed by the tools
/// asked for in `authorization_details` and by `scope`; asking for more is refused.
pub(super) fn narrow(
    granted: &[String],
    tools: Option<Vec<String>>,
    scope: Option<&str>,
) -> Result<Vec<String>, TokenError> {
    let mut out = granted.to_vec();
    if let Some(tools) = tools {
        if !scope_is_subset(&tools, &out) {
            return Err(TokenError::InvalidAuthorizationDetails(
                "the tools asked for are not all within the granted scope".into(),
            ));
        }
        out = tools;
    }
    if let Some(scope) = scope.map(str::trim).filter(|s| !s.is_empty()) {
        let asked: Vec<String> = scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if !scope_is_subset(&asked, &out) {
            return Err(TokenError::InvalidScope(
                "the scope asked for is wider than the one granted".into(),
            ));
        }
        out = asked;
    }
    Ok(out)
}

/// The tools a mandate grants, as a token's scope names them.
pub(super) fn mandate_tools(mandate: &Mandate) -> Vec<String> {
    mandate
        .terms
        .scope
        .tools
        .iter()
        .map(|t| t.tool.clone())
        .collect()
}

/// The `authorization_details` a token carries: the mandate's terms as they bind it.
pub(super) fn mandate_details(mandate: &Mandate, scope: &[String]) -> Value {
    let t = &mandate.terms;
    json!([{
        "type": MANDATE_DETAILS_TYPE,
        "mandate_id": mandate.id.to_string(),
        "tools": scope,
        "intent": t.intent,
        "data_ceiling": t.data_ceiling.as_str(),
        "mode": t.mode.as_str(),
        "expires_at": t.expires_at,
        "terms_hash": mandate.terms_hash.0,
    }])
}
