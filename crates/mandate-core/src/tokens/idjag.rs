//! The jwt-bearer grant with an Identity Assertion JWT Authorization Grant (ID-JAG,
//! draft-ietf-oauth-identity-assertion-authz-grant §4.4) from a configured enterprise
//! identity provider: the MCP "Enterprise-Managed Authorization" extension.
//!
//! ```text
//!   client ─► an agent's assertion (private_key_jwt | JWT-SVID | federated)
//!           | a registered public client: client_id alone (it has no credentials)
//!   assertion ─► EnterpriseIdps::verify (mandate-token: signature from the IdP's JWKS,
//!               typ, iss, aud = our issuer, exp/iat, jti, client_id = that client and
//!               one the IdP may speak for, resource ours) ─► its jti to claim
//!   person  ─► the IdP's configured mapping ─► the email of a person of its tenant
//!   agent   ─► the client's agent (the agent itself | the agent of client and person)
//!   mandate ─► an active, unexpired mandate of that person for that agent (for the
//!              resource's server), named in authorization_details when there are
//!              several ─► decide_grant(exchange_token)
//!   scope   ─► the mandate's tools ∩ the assertion's scope ∩ the request's scope
//!   commit  ─► the ID-JAG's jti claimed (replay refused on every replica), the grant,
//!              token.issued {grant_type: jwt-bearer, id_jag_iss, id_jag_jti}
//! ```
//!
//! The assertion never creates or widens a mandate: without one the client is told to
//! have one requested. No refresh token is issued (draft §4.4.3): the client presents
//! a new ID-JAG, since each one is used once.

use chrono::DateTime;
use mandate_audit::EventKind;
use mandate_domain::{Agent, AgentStatus, Human, Mandate, MandateStatus};
use mandate_store::{HumanFilter, MandateFilter, PageRequest, UsedAssertion};
use mandate_token::{
    EnterpriseIdp, IdJag, IdJagExpect, JWT_BEARER_GRANT, REQUEST_MANDATES_SCOPE, TokenError,
    narrow_by_assertion,
};
use mandate_types::TenantId;
use serde_json::json;

use super::code::public_client;
use super::issue::{DpopRequired, OnceWrites, Parent, mandate_tools, narrow, parse_details};
use super::{TokenService, unavailable};
use crate::{TokenRequest, TokenResponse};

/// The issuer prefix under which an ID-JAG's `jti` is claimed in the store's used
/// assertions (`{prefix}{iss}`): no client id has this form, and a replay is told
/// apart from a client assertion's.
pub(super) const ID_JAG_USES: &str = "urn:mandate:id-jag:";

/// Who presents the ID-JAG.
enum Client {
    /// An agent that authenticated with its own assertion; `client_id` is its id.
    Agent(Agent),
    /// A registered public OAuth client (`client_id` only), and whether it registered
    /// `dpop_bound_access_tokens`.
    Public {
        client_id: String,
        tenant: TenantId,
        dpop_bound: bool,
    },
}

impl TokenService {
    pub(super) async fn id_jag(&self, req: &TokenRequest) -> Result<TokenResponse, TokenError> {
        let assertion = req
            .assertion
            .as_deref()
            .ok_or_else(|| TokenError::InvalidRequest("`assertion` is missing".into()))?;
        if !req.audience.is_empty() {
            return Err(TokenError::InvalidRequest(
                "`audience` is not used with an ID-JAG; name the MCP endpoint in `resource`".into(),
            ));
        }
        let (client, mut used) = self.id_jag_client(req).await?;
        let issued = self.id_jag_grant(req, assertion, &client, &mut used).await;
        if issued.is_err() {
            // A refused request spends what it used (the client's assertion, the ID-JAG
            // once verified): neither is ever tried twice.
            self.spend(used).await;
        }
        issued
    }

    /// The client: an agent by its assertion, or a registered public client.
    async fn id_jag_client(
        &self,
        req: &TokenRequest,
    ) -> Result<(Client, Vec<UsedAssertion>), TokenError> {
        if req.client_assertion.is_some() || req.client_assertion_type.is_some() {
            let (agent, used) = self.authenticate_client(req).await?;
            return Ok((Client::Agent(agent), used));
        }
        let client_id = public_client(req, "ID-JAG grants without a client assertion")?;
        let record = self
            .store
            .oauth_client(client_id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| TokenError::InvalidClient("unknown client".into()))?;
        let metadata: crate::oauth::ClientMetadata =
            serde_json::from_str(&record.metadata).map_err(unavailable)?;
        Ok((
            Client::Public {
                client_id: record.client_id,
                tenant: record.tenant_id,
                dpop_bound: metadata.dpop_bound_access_tokens,
            },
            Vec::new(),
        ))
    }

    async fn id_jag_grant(
        &self,
        req: &TokenRequest,
        assertion: &str,
        client: &Client,
        used: &mut Vec<UsedAssertion>,
    ) -> Result<TokenResponse, TokenError> {
        let Some(enterprise) = self.enterprise.as_ref() else {
            return Err(TokenError::UnsupportedGrantType(format!(
                "{JWT_BEARER_GRANT} is not accepted: no enterprise identity provider is configured"
            )));
        };
        let client_id = match client {
            Client::Agent(agent) => agent.id.to_string(),
            Client::Public { client_id, .. } => client_id.clone(),
        };
        let now = self.clock.now();
        let serves = |r: &str| self.serves(r);
        let (jag, idp) = enterprise
            .verify(
                assertion,
                &IdJagExpect {
                    audience: &self.config.issuer,
                    client_id: &client_id,
                    serves: &serves,
                    now: now.timestamp(),
                    skew: self.config.skew_seconds,
                },
            )
            .await?;
        // Used once, whatever follows: claimed in the commit that issues, or on its own.
        used.push(UsedAssertion {
            issuer: format!("{ID_JAG_USES}{}", jag.issuer),
            jti: jag.jti.clone(),
            expires_at: DateTime::from_timestamp(jag.expires_at, 0).unwrap_or(now),
        });
        let tenant = self
            .store
            .tenant_by_name(&idp.tenant)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                tracing::warn!(issuer = %idp.issuer, tenant = %idp.tenant, "the enterprise IdP's tenant does not exist");
                TokenError::InvalidGrant("the ID-JAG's subject maps to no person here".into())
            })?
            .id;
        let client_tenant = match client {
            Client::Agent(agent) => agent.tenant_id,
            Client::Public { tenant, .. } => *tenant,
        };
        if client_tenant != tenant {
            return Err(TokenError::InvalidGrant(
                "this identity provider does not speak for the client's tenant".into(),
            ));
        }
        let resource = self.id_jag_resource(req, &jag, tenant).await?;
        let human = self.id_jag_person(idp, &jag, tenant).await?;
        let (agent, jkt) = match client {
            Client::Agent(agent) => {
                let jkt = self.token_endpoint_dpop(req, DpopRequired::ByServer, used)?;
                (agent.clone(), jkt)
            }
            Client::Public {
                client_id,
                dpop_bound,
                ..
            } => {
                let agent = self
                    .client_agent(tenant, client_id, &human)
                    .await?
                    .ok_or_else(|| no_mandate(client, &self.config.issuer))?;
                let jkt =
                    self.token_endpoint_dpop(req, DpopRequired::ByClient(*dpop_bound), used)?;
                (agent, jkt)
            }
        };
        let mandate = self
            .id_jag_mandate(req, client, &agent, &human, &resource)
            .await?;
        self.decide_direct(&agent, &mandate)
            .map_err(TokenError::InvalidGrant)?;
        let granted = mandate_tools(&mandate);
        // The IdP's scope only narrows the mandate: what it names beyond the mandate's
        // tools is dropped, never added; nothing left is a refusal.
        let allowed = narrow_by_assertion(&granted, jag.scope.as_deref());
        if allowed.is_empty() {
            return Err(TokenError::InvalidScope(
                "the ID-JAG's scope grants none of the mandate's tools".into(),
            ));
        }
        let ask = parse_details(req.authorization_details.as_deref())?;
        let scope = narrow(&allowed, ask.and_then(|a| a.tools), req.scope.as_deref())?;
        let audience = if resource.starts_with(&format!("{}/mcp", self.config.issuer)) {
            self.authorized_audience(&resource)
        } else {
            vec![resource.clone()]
        };
        let token = self.mandate_token(&mandate, vec![agent.id], &agent, audience, scope, jkt)?;
        self.record_and_sign(
            token,
            &agent,
            used,
            OnceWrites::default(),
            Some(&mandate),
            Parent::None,
            EventKind::TokenIssued,
            &[
                ("grant_type", json!(JWT_BEARER_GRANT)),
                ("id_jag_iss", json!(jag.issuer)),
                ("id_jag_jti", json!(jag.jti)),
            ],
        )
        .await
    }

    /// Whether we issue tokens for `resource`: one of our audiences, or the MCP
    /// endpoint of one tool server (`{issuer}/mcp/{name}`, checked against the
    /// catalog once the tenant is known).
    fn serves(&self, resource: &str) -> bool {
        self.config.audiences.iter().any(|a| a == resource) || self.server_name(resource).is_some()
    }

    fn server_name<'r>(&self, resource: &'r str) -> Option<&'r str> {
        resource
            .strip_prefix(&self.config.issuer)
            .and_then(|r| r.strip_prefix("/mcp/"))
            .filter(|n| !n.is_empty() && !n.contains(['/', '?', '#']))
    }

    /// The one resource the token is for: the request's `resource` (one of the
    /// assertion's, if it names any), else the assertion's only one, else our MCP
    /// endpoint.
    async fn id_jag_resource(
        &self,
        req: &TokenRequest,
        jag: &IdJag,
        tenant: TenantId,
    ) -> Result<String, TokenError> {
        let resource = match (req.resource.as_slice(), jag.resources.as_slice()) {
            ([asked], []) if self.serves(asked) => asked.clone(),
            ([asked], granted) if granted.contains(asked) => asked.clone(),
            ([_], _) => {
                return Err(TokenError::InvalidTarget(
                    "`resource` is not one the ID-JAG grants, or not one this server issues tokens for".into(),
                ));
            }
            ([], []) => format!("{}/mcp", self.config.issuer),
            ([], [only]) => only.clone(),
            ([], _) => {
                return Err(TokenError::InvalidTarget(
                    "the ID-JAG names several resources: name one in `resource`".into(),
                ));
            }
            _ => {
                return Err(TokenError::InvalidTarget(
                    "name one `resource` per request".into(),
                ));
            }
        };
        if let Some(name) = self.server_name(&resource) {
            let servers = self
                .store
                .list_tool_servers(tenant, &PageRequest::first(PageRequest::MAX_LIMIT))
                .await
                .map_err(unavailable)?;
            if !servers.items.iter().any(|s| s.name == name) {
                return Err(TokenError::InvalidTarget(
                    "the resource names no tool server of this gateway".into(),
                ));
            }
        }
        Ok(resource)
    }

    /// The person the ID-JAG is about, by the IdP's configured mapping.
    async fn id_jag_person(
        &self,
        idp: &EnterpriseIdp,
        jag: &IdJag,
        tenant: TenantId,
    ) -> Result<Human, TokenError> {
        let email = idp.person_email(jag)?;
        let filter = HumanFilter {
            email: Some(email),
            group: None,
        };
        // Emails are unique in a tenant (and stored lower-cased): one page of one.
        let found = self
            .store
            .list_humans(tenant, &filter, &PageRequest::first(1))
            .await
            .map_err(unavailable)?;
        found.items.into_iter().next().ok_or_else(|| {
            TokenError::InvalidGrant("the ID-JAG's subject maps to no person here".into())
        })
    }

    /// The agent a public client acts as for `human`, if one was made (at the person's
    /// first consent to it); it must be active.
    async fn client_agent(
        &self,
        tenant: TenantId,
        client_id: &str,
        human: &Human,
    ) -> Result<Option<Agent>, TokenError> {
        let Some(id) = self
            .store
            .oauth_client_agent(tenant, client_id, human.id)
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let agent = self
            .store
            .agent(tenant, id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                TokenError::InvalidGrant("the client's agent no longer exists".into())
            })?;
        if agent.status != AgentStatus::Active {
            return Err(TokenError::InvalidGrant(
                "the client's agent is disabled".into(),
            ));
        }
        Ok(Some(agent))
    }

    /// The mandate the token is issued under: an active, unexpired mandate of `human`
    /// for `agent` (all of whose tools are on the resource's server, for a per-server
    /// resource); the one `authorization_details` names, or the only one.
    async fn id_jag_mandate(
        &self,
        req: &TokenRequest,
        client: &Client,
        agent: &Agent,
        human: &Human,
        resource: &str,
    ) -> Result<Mandate, TokenError> {
        let now = self.clock.now();
        let prefix = self.server_name(resource).map(|n| format!("{n}."));
        let filter = MandateFilter {
            status: Some(MandateStatus::Active),
            agent: Some(agent.id),
            human: Some(human.id),
            consenter: None,
        };
        let mut live: Vec<Mandate> = Vec::new();
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        loop {
            let found = self
                .store
                .list_mandates(agent.tenant_id, &filter, &page)
                .await
                .map_err(unavailable)?;
            live.extend(found.items.into_iter().filter(|m| {
                m.status == MandateStatus::Active
                    && m.terms.expires_at > now
                    && m.terms.agent_id == agent.id
                    && m.terms.human_id == human.id
                    && prefix
                        .as_deref()
                        .is_none_or(|p| m.terms.scope.tools.iter().all(|t| t.tool.starts_with(p)))
            }));
            match found.next {
                Some(next) => {
                    page = PageRequest::new(Some(next.0), Some(PageRequest::MAX_LIMIT))
                        .map_err(unavailable)?;
                }
                None => break,
            }
        }
        let named = parse_details(req.authorization_details.as_deref())?.map(|a| a.mandate);
        match named {
            Some(id) => live.into_iter().find(|m| m.id == id).ok_or_else(|| {
                TokenError::InvalidGrant(format!(
                    "mandate {id} is not an active mandate of this person for this client"
                ))
            }),
            None if live.len() > 1 => Err(TokenError::InvalidGrant(
                "this person has several active mandates for this client: name one in `authorization_details` ([{\"type\": \"mandate\", \"mandate_id\": …}])".into(),
            )),
            None => live
                .pop()
                .ok_or_else(|| no_mandate(client, &self.config.issuer)),
        }
    }
}

/// The refusal when the person has no mandate for the client: the assertion grants
/// nothing on its own; a mandate must be requested, and how.
fn no_mandate(client: &Client, issuer: &str) -> TokenError {
    let how = match client {
        Client::Agent(_) => format!(
            "the agent requests one (POST {issuer}/v1/mandates with a task token of scope `{REQUEST_MANDATES_SCOPE}`) and the person consents to it"
        ),
        Client::Public { .. } => format!(
            "the person authorizes this client at {issuer}/oauth2/authorize (authorization code with PKCE)"
        ),
    };
    TokenError::InvalidGrant(format!(
        "the person has no active mandate for this client: a mandate must be requested first — {how}; then present a new ID-JAG"
    ))
}
