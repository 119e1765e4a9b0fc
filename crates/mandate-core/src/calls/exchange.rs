//! Outbound token exchange: a tool server whose `credential_ref` is `exchange:NAME`
//! is called with a token its own authorization server issues for the mandate's person
//! and agent, obtained with assertions Mandate signs (RFC 8693 token exchange or the
//! RFC 7523 JWT bearer grant; `mandate_token::upstream::outbound`), instead of a
//! stored secret.
//!
//! ```text
//!   call under a mandate ─► cache (exchange, mandate): a token still good for 30 s?
//!      ─► yes: `Authorization: Bearer …`
//!      ─► no: assertions signed with the token key (typ JWT, 60 s, fresh jti):
//!             person as subject, agent as actor, mandate id, tool server
//!             ─► the upstream's token endpoint (client secret from the vault, if any)
//!             ─► kept until 30 s before its expiry (not kept without one)
//! ```
//!
//! The token names one mandate, so it is kept per mandate: another mandate of the same
//! person gets its own. An ended mandate's calls are refused before any credential is
//! looked at, so its kept token is never used again (at most 10 000 are kept; expired
//! ones are dropped first when that bound is reached). Failures
//! refuse the call (fail closed) and say nothing of the upstream's answer to the agent.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::HeaderMap;
use mandate_broker::Injection;
use mandate_domain::{Mandate, ToolServer};
use mandate_token::upstream::outbound::{OnBehalf, Outbound};
use mandate_types::{Clock, MandateId, Secret};
use tokio::sync::Mutex;

use super::CallError;
use super::vault::{Broker, unavailable};
use crate::tokens::TokenService;

const EXCHANGE_PREFIX: &str = "exchange:";
/// A kept token is used until this long before it expires.
const MARGIN_SECONDS: i64 = 30;
/// The most tokens kept (one per mandate and exchange); at the bound, expired ones go
/// and a new one is not kept while none has.
const MAX_KEPT: usize = 10_000;

/// The exchanges tool servers may name, and what obtaining a token needs.
#[derive(Debug, Clone)]
pub struct ExchangeSettings {
    /// By the name an `exchange:NAME` reference uses.
    pub exchanges: BTreeMap<String, OutboundExchange>,
    /// Signs the assertions (the key Mandate publishes in its JWKS).
    pub tokens: Arc<TokenService>,
    pub clock: Arc<dyn Clock>,
}

/// One configured upstream authorization server.
#[derive(Debug, Clone)]
pub struct OutboundExchange {
    pub outbound: Arc<Outbound>,
    /// A vault secret of the tool server's tenant holding Mandate's client secret
    /// there, when the endpoint authenticates clients.
    pub client_secret: Option<String>,
}

/// A token obtained, and until when (Unix seconds) to use it.
type KeptToken = (Secret<String>, i64);

/// Tokens obtained, by (exchange, mandate).
#[derive(Default)]
pub(super) struct Kept(Mutex<HashMap<(String, MandateId), KeptToken>>);

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kept(<tokens>)")
    }
}

/// The exchange a server's credential is obtained with, if it takes one.
pub fn exchange_of(server: &ToolServer) -> Option<&str> {
    server
        .credential_ref
        .as_deref()
        .and_then(|r| r.strip_prefix(EXCHANGE_PREFIX))
}

/// Whether `server` is called with a credential of the mandate's person (a connection
/// or an exchange): never used to build what the whole tenant sees, such as a listing.
pub fn per_person_credential(server: &ToolServer) -> bool {
    super::connection_provider(server).is_some() || exchange_of(server).is_some()
}

impl Broker {
    /// Lets tool servers name the exchanges in `settings`.
    #[must_use]
    pub fn with_exchanges(mut self, settings: ExchangeSettings) -> Self {
        self.exchanges = Some(settings);
        self
    }

    /// The header carrying a token the upstream's authorization server issued for
    /// this mandate's person and agent.
    pub(super) async fn exchange_header(
        &self,
        server: &ToolServer,
        mandate: &Mandate,
        name: &str,
    ) -> Result<HeaderMap, CallError> {
        let settings = self.exchanges.as_ref().ok_or_else(|| {
            unavailable("a tool server names a token exchange, but none is configured")
        })?;
        let exchange = settings
            .exchanges
            .get(name)
            .ok_or_else(|| unavailable(format!("no token exchange `{name}` is configured")))?;
        let now = settings.clock.now().timestamp();
        let key = (name.to_owned(), mandate.id);
        let kept = self.kept.0.lock().await.get(&key).cloned();
        let token = match kept {
            Some((token, until)) if until > now => token,
            _ => {
                // Not under the lock: a slow upstream holds up only its own callers (two
                // concurrent first calls of one mandate may both ask; either answer
                // serves).
                let (token, until) = self
                    .obtain(settings, exchange, server, mandate, now)
                    .await?;
                let mut kept = self.kept.0.lock().await;
                match until {
                    Some(until) => {
                        if kept.len() >= MAX_KEPT {
                            kept.retain(|_, (_, u)| *u > now);
                        }
                        if kept.len() < MAX_KEPT {
                            kept.insert(key, (token.clone(), until));
                        }
                    }
                    None => {
                        kept.remove(&key);
                    }
                }
                token
            }
        };
        let (header, value) = Injection::Bearer.header(&token).map_err(unavailable)?;
        let mut headers = HeaderMap::new();
        headers.insert(header, value);
        Ok(headers)
    }

    /// Asks the upstream for a token: the token, and until when it may be kept.
    async fn obtain(
        &self,
        settings: &ExchangeSettings,
        exchange: &OutboundExchange,
        server: &ToolServer,
        mandate: &Mandate,
        now: i64,
    ) -> Result<(Secret<String>, Option<i64>), CallError> {
        let (person, agent, id) = (
            mandate.terms.human_id.to_string(),
            mandate.terms.agent_id.to_string(),
            mandate.id.to_string(),
        );
        let issuer = settings.tokens.config().issuer.clone();
        let who = OnBehalf {
            issuer: &issuer,
            person: &person,
            agent: &agent,
            mandate_id: &id,
            tool_server: &server.name,
            now,
        };
        let jti = || mandate_token::keys::random_id("jti_").map_err(unavailable);
        let (subject, actor) = exchange.outbound.claims(&who, [jti()?, jti()?]);
        let subject = Secret::new(
            settings
                .tokens
                .sign_assertion(&subject)
                .map_err(unavailable)?,
        );
        let actor = match actor {
            Some(claims) => Some(Secret::new(
                settings
                    .tokens
                    .sign_assertion(&claims)
                    .map_err(unavailable)?,
            )),
            None => None,
        };
        let secret = match &exchange.client_secret {
            Some(name) => Some(self.vault_secret(server, name).await?.0),
            None => None,
        };
        let set = exchange
            .outbound
            .obtain(&who, &subject, actor.as_ref(), secret.as_ref())
            .await
            .map_err(|e| {
                unavailable(format!(
                    "tool server `{}`: the token exchange failed: {e}",
                    server.name
                ))
            })?;
        let until = set
            .expires_in
            .map(|s| now + s - MARGIN_SECONDS)
            .filter(|until| *until > now);
        Ok((set.access_token, until))
    }
}
