//! The token service's use cases: issue, exchange and renew task tokens, verify them
//! for resources, introspect and revoke them, and keep every replica's revocation
//! list and key set current.
//!
//! ```text
//!   /oauth2/token ─► authenticate the client (private_key_jwt | JWT-SVID | federated OIDC)
//!                 ─► DPoP proof (htm POST, htu = our token endpoint) ─► jkt
//!                 ─► grant: client_credentials (+ authorization_details naming a mandate)
//!                           or token-exchange (delegation, or renewal of one's own token);
//!                           public clients: authorization_code, refresh_token (rotated)
//!                           an enterprise IdP's ID-JAG (jwt-bearer) under an active
//!                           mandate of its person for the client's agent (idjag.rs)
//!                 ─► policy decision (exchange_token, delegate) — never a blind refresh
//!                 ─► grants row (parent = the token exchanged) ─► token.* audit event
//!                 ─► sign (at+jwt)
//!   resource      ─► verify_access: signature, typ, iss, aud, exp, revocation list,
//!                    DPoP proof bound to cnf.jkt
//! ```

mod admin;
mod code;
mod form;
mod idjag;
mod issue;
mod refresh;
mod verified;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant};

use arc_swap::ArcSwap;
use chrono::{DateTime, Duration, Utc};
use mandate_jose::SigningKey;
use mandate_store::{Store, TokenKey};
use mandate_token::{
    ACCESS_TOKEN_TYP, DpopConfig, DpopRequest, DpopVerifier, EnterpriseIdps, Expect, Federation,
    KeyError, KeyRing, RevocationList, TaskToken, TokenError, TrustBundles,
};
use mandate_types::Clock;
use serde_json::{Map, Value};

use crate::{Ledger, PolicyAdmin};
use verified::{ClientKeyCache, VerifiedTokens};

pub use admin::{Introspection, RevokeRequest};
pub use code::AUTHORIZATION_CODE;
pub use form::TokenForm;
pub use issue::{ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE, TOKEN_EXCHANGE, TokenRequest, TokenResponse};
pub use refresh::REFRESH_TOKEN;

/// How the token service behaves.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// Our issuer identifier: the public URL (no trailing slash).
    pub issuer: String,
    /// The resources tokens may be issued for (RFC 8707); the first is the default.
    pub audiences: Vec<String>,
    /// No token lives longer than this (and none outlives its mandate).
    pub max_lifetime: Duration,
    /// Clock difference tolerated on tokens and assertions, seconds.
    pub skew_seconds: i64,
    /// Refuse agents' token requests (client credentials, token exchange) without a DPoP
    /// proof. Interactive clients register `dpop_bound_access_tokens` instead.
    pub require_dpop: bool,
    /// Require server-issued DPoP nonces (RFC 9449 §8).
    pub dpop_nonce: bool,
    /// Shared by every replica so each accepts the others' nonces.
    pub dpop_nonce_secret: [u8; 32],
    /// How often the revocation list is caught up when no notification comes.
    pub revocation_poll: StdDuration,
}

impl TokenConfig {
    /// Defaults for a server reached at `public_url`: audiences `{url}/mcp`, `{url}`
    /// and `{url}/proxy`; 5-minute tokens; DPoP optional, nonces off.
    pub fn new(public_url: &str, dpop_nonce_secret: [u8; 32]) -> TokenConfig {
        let issuer = public_url.trim_end_matches('/').to_owned();
        TokenConfig {
            audiences: vec![
                format!("{issuer}/mcp"),
                issuer.clone(),
                format!("{issuer}/proxy"),
            ],
            issuer,
            max_lifetime: Duration::minutes(5),
            skew_seconds: 60,
            require_dpop: false,
            dpop_nonce: false,
            dpop_nonce_secret,
            revocation_poll: StdDuration::from_millis(500),
        }
    }

    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth2/token", self.issuer)
    }
}

/// How a presented access token arrived at a resource.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    pub token: &'a str,
    /// `Authorization: DPoP …` (true) or `Bearer …` (false).
    pub dpop_scheme: bool,
    /// The `DPoP` header, if any.
    pub proof: Option<&'a str>,
    pub method: &'a str,
    /// The request's full URL as clients address it.
    pub url: &'a str,
    /// The resource's identifier the token's `aud` must name.
    pub audience: &'a str,
}

/// The token service of one replica.
#[derive(Debug)]
pub struct TokenService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    policies: PolicyAdmin,
    ledger: Ledger,
    config: TokenConfig,
    ring: ArcSwap<KeyRing>,
    dpop: DpopVerifier,
    revoked: RevocationList,
    spiffe: TrustBundles,
    federation: Option<Federation>,
    enterprise: Option<EnterpriseIdps>,
    /// The last read of the published keys prompted by a token naming a key this
    /// replica had not seen; one such read at a time
    /// ([`TokenService::verify_with_new_keys`]).
    key_reread: tokio::sync::Mutex<Option<KeyReread>>,
    verified: VerifiedTokens,
    client_keys: ClientKeyCache,
    /// When the revocation list was last read in full from the store (the instant the
    /// read began), in milliseconds since `epoch`; see [`TokenService::fresh_revocations`].
    caught_up: AtomicU64,
    epoch: Instant,
    /// One catch-up at a time on the request path.
    catching_up: tokio::sync::Mutex<()>,
}

/// The shortest time between two reads of the published keys prompted by tokens that
/// name a key this replica has not seen.
const KEY_REREAD_SPACING: StdDuration = StdDuration::from_millis(100);

/// When a read of the published keys began, and whether it succeeded.
#[derive(Debug, Clone, Copy)]
struct KeyReread {
    began: Instant,
    ok: bool,
}

/// The `typ` of assertions Mandate signs for other services' authorization servers.
const OUTBOUND_ASSERTION_TYP: &str = "JWT";

/// A store failure, as the OAuth client sees it.
pub(crate) fn unavailable(e: impl std::fmt::Display) -> TokenError {
    tracing::warn!(error = %e, "token service dependency failed");
    TokenError::Unavailable(
        "the token service cannot complete the request now; nothing was issued".into(),
    )
}

impl TokenService {
    /// Publishes `signer`'s public key and builds the service. Run
    /// [`TokenService::follow_revocations`] beside it.
    pub async fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        policies: PolicyAdmin,
        ledger: Ledger,
        config: TokenConfig,
        signer: SigningKey,
    ) -> Result<TokenService, TokenError> {
        let now = clock.now();
        store
            .publish_token_key(&TokenKey {
                kid: signer.kid().to_owned(),
                jwk: signer.public_jwk().to_public_json().to_string(),
                created_at: now,
                retire_at: None,
            })
            .await
            .map_err(unavailable)?;
        let signer = Arc::new(signer);
        let published = published_keys(&*store, now).await?;
        let mut dpop = DpopConfig::new(config.dpop_nonce_secret);
        dpop.require_nonce = config.dpop_nonce;
        let keep = config.max_lifetime + Duration::seconds(config.skew_seconds.max(0) * 2);
        let service = TokenService {
            ring: ArcSwap::from_pointee(KeyRing::new(signer, &published)),
            dpop: DpopVerifier::new(dpop),
            revoked: RevocationList::new(keep),
            spiffe: TrustBundles::new(),
            federation: None,
            enterprise: None,
            key_reread: tokio::sync::Mutex::new(None),
            verified: VerifiedTokens::default(),
            client_keys: ClientKeyCache::default(),
            caught_up: AtomicU64::new(0),
            epoch: Instant::now(),
            catching_up: tokio::sync::Mutex::new(()),
            store,
            clock,
            policies,
            ledger,
            config,
        };
        service.catch_up_revocations().await?;
        Ok(service)
    }

    /// Trusts JWT-SVIDs from these SPIFFE trust bundles.
    pub fn with_spiffe(mut self, bundles: TrustBundles) -> Self {
        self.spiffe = bundles;
        self
    }

    /// Trusts ID tokens from these federated issuers.
    pub fn with_federation(mut self, federation: Federation) -> Self {
        self.federation = Some(federation);
        self
    }

    /// Accepts ID-JAGs (jwt-bearer grants) from these enterprise identity providers.
    pub fn with_enterprise_idps(mut self, idps: EnterpriseIdps) -> Self {
        self.enterprise = Some(idps).filter(|i| !i.is_empty());
        self
    }

    /// Whether ID-JAGs are accepted (RFC 8414 metadata lists the grant type then).
    pub fn accepts_id_jag(&self) -> bool {
        self.enterprise.is_some()
    }

    pub fn config(&self) -> &TokenConfig {
        &self.config
    }

    /// The JWK Set to publish.
    pub fn jwks(&self) -> serde_json::Value {
        self.ring.load().jwks()
    }

    /// A fresh DPoP nonce (for `DPoP-Nonce` response headers).
    pub fn dpop_nonce(&self) -> String {
        self.dpop.nonce(self.clock.now().timestamp())
    }

    pub fn dpop_algs(&self) -> Vec<&'static str> {
        self.dpop.config().algs.iter().map(|a| a.as_str()).collect()
    }

    /// Starts signing with `next`: its public key is published first; the current
    /// key stays trusted for the longest token lifetime (plus skew), then retires.
    pub async fn rotate(&self, next: SigningKey) -> Result<(), TokenError> {
        let now = self.clock.now();
        self.store
            .publish_token_key(&TokenKey {
                kid: next.kid().to_owned(),
                jwk: next.public_jwk().to_public_json().to_string(),
                created_at: now,
                retire_at: None,
            })
            .await
            .map_err(unavailable)?;
        let old = self.ring.load().signer().kid().to_owned();
        let overlap =
            self.config.max_lifetime + Duration::seconds(self.config.skew_seconds.max(0) * 2);
        self.store
            .retire_token_key(&old, now + overlap)
            .await
            .map_err(unavailable)?;
        let published = published_keys(&*self.store, now).await?;
        self.ring
            .store(Arc::new(KeyRing::new(Arc::new(next), &published)));
        tracing::info!(retired = %old, "token signing key rotated");
        Ok(())
    }

    /// Re-reads the published keys (another replica's new key, retirements).
    pub async fn refresh_keys(&self) -> Result<(), TokenError> {
        let now = self.clock.now();
        let published = published_keys(&*self.store, now).await?;
        // Compare-and-swap on the ring: a rotation stored by another thread after this
        // one took the signer is kept, never undone (a plain load-then-store put the old
        // signing key back).
        self.ring
            .rcu(|ring| KeyRing::new(ring.signer_arc(), &published));
        Ok(())
    }

    /// Verifies `token` again after reading the published keys, for a token naming a
    /// key this replica had not seen, received at `arrived`. Its key was published
    /// before it was signed, so any read that began after `arrived` knows it: a read
    /// made since answers every token that waited for it, and a new one starts no
    /// sooner than [`KEY_REREAD_SPACING`] after the previous one. A legitimate token
    /// therefore waits for at most one spacing and one read and is never refused for
    /// arriving while a read was under way; tokens naming made-up keys cost the store
    /// at most one read per spacing.
    async fn verify_with_new_keys(
        &self,
        token: &str,
        typ: &str,
        arrived: Instant,
    ) -> Result<mandate_token::Claims, TokenError> {
        let mut last = self.key_reread.lock().await;
        let fresh = last.is_some_and(|read| read.began >= arrived);
        if !fresh {
            // Another token's read may already have brought this key in.
            match self.ring.load().verify(token, typ) {
                Err(KeyError::UnknownKid) => {}
                known => return known.map_err(refused),
            }
            if let Some(read) = *last {
                let wait = KEY_REREAD_SPACING.saturating_sub(read.began.elapsed());
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            let began = Instant::now();
            let read = self.refresh_keys().await;
            *last = Some(KeyReread {
                began,
                ok: read.is_ok(),
            });
            read?;
        } else if last.is_some_and(|read| !read.ok) {
            return Err(unavailable("the published token keys could not be read"));
        }
        self.ring.load().verify(token, typ).map_err(refused)
    }

    /// Verifies one of our tokens' signature, reading the published keys again when it
    /// names a key we have not seen (another replica's, or a rotation).
    pub(crate) async fn verify_signature(
        &self,
        token: &str,
    ) -> Result<mandate_token::Claims, TokenError> {
        self.verify_typed(token, ACCESS_TOKEN_TYP).await
    }

    /// Signs `claims` with this replica's key as a JWS of type `typ`, which any replica
    /// verifies ([`TokenService::verify_typed`]). For state a client carries back to
    /// whichever replica it reaches (an MCP session); never an access token's `typ`.
    pub fn seal(&self, typ: &str, claims: &Map<String, Value>) -> Result<String, TokenError> {
        if typ == ACCESS_TOKEN_TYP {
            return Err(TokenError::InvalidRequest(
                "sealed state is never an access token".into(),
            ));
        }
        self.ring.load().sign(typ, claims)
    }

    /// Signs an assertion Mandate presents to another service's authorization server
    /// (outbound token exchange, `calls/exchange.rs`): `typ` `JWT`, never verified by
    /// Mandate itself, and never one of its own access tokens.
    pub fn sign_assertion(&self, claims: &Map<String, Value>) -> Result<String, TokenError> {
        self.ring.load().sign(OUTBOUND_ASSERTION_TYP, claims)
    }

    /// Verifies a JWS of type `typ` signed by any replica's published key (the
    /// algorithm pinned by that key); no claim is checked here.
    pub(crate) async fn verify_typed(
        &self,
        token: &str,
        typ: &str,
    ) -> Result<mandate_token::Claims, TokenError> {
        match self.ring.load().verify(token, typ) {
            Err(KeyError::UnknownKid) => {
                self.verify_with_new_keys(token, typ, Instant::now()).await
            }
            verified => verified.map_err(refused),
        }
    }

    /// Verifies an access token presented to a resource: signature (algorithm pinned
    /// by our key), `typ`, issuer, audience, expiry, not revoked; a DPoP-bound token
    /// must come with `Authorization: DPoP` and a proof by its key over this request
    /// (with `ath`). Everything is in memory.
    pub async fn verify_access(
        &self,
        presented: &Presented<'_>,
    ) -> Result<Arc<TaskToken>, TokenError> {
        let now = self.clock.now().timestamp();
        let token = match self.verified.get(presented, now) {
            Some(token) => token,
            None => {
                let claims = self.verify_signature(presented.token).await?;
                let token = Arc::new(TaskToken::from_claims(
                    &claims,
                    &Expect {
                        issuer: &self.config.issuer,
                        audience: Some(&[presented.audience]),
                        now,
                        skew: self.config.skew_seconds,
                    },
                )?);
                self.verified.put(presented.token, token.clone());
                token
            }
        };
        own_token_live(&token, now)?;
        self.fresh_revocations().await?;
        if self.revoked.is_revoked(&token.jti) {
            return Err(TokenError::InvalidToken(
                "the token has been revoked".into(),
            ));
        }
        match (&token.cnf_jkt, presented.dpop_scheme) {
            (Some(jkt), true) => {
                let proof = presented.proof.ok_or_else(|| {
                    TokenError::InvalidDpopProof("a DPoP-bound token needs a DPoP proof".into())
                })?;
                let proof = self.dpop.check(
                    proof,
                    &DpopRequest {
                        method: presented.method,
                        url: presented.url,
                        access_token: Some(presented.token),
                        now,
                    },
                )?;
                self.dpop.check_bound(&proof, jkt)?;
            }
            (Some(_), false) => {
                return Err(TokenError::InvalidToken(
                    "a DPoP-bound token must be presented with the DPoP scheme".into(),
                ));
            }
            (None, true) => {
                return Err(TokenError::InvalidToken(
                    "the token is not DPoP-bound; present it as a Bearer token".into(),
                ));
            }
            (None, false) => {}
        }
        Ok(token)
    }

    /// Whether `jti` is on this replica's revocation list.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked.is_revoked(jti)
    }

    /// How old the revocation list may be when a token is checked against it: twice
    /// the poll interval, at least a second. The poller keeps it younger; older means
    /// this replica could not read the store for a while (an outage, a cut connection,
    /// a stalled poller), and revocations acknowledged elsewhere meanwhile are not in
    /// it yet.
    fn revocations_bound(&self) -> StdDuration {
        (self.config.revocation_poll * 2).max(StdDuration::from_secs(1))
    }

    fn revocations_age(&self) -> StdDuration {
        let read_at = StdDuration::from_millis(self.caught_up.load(Ordering::Acquire));
        self.epoch.elapsed().saturating_sub(read_at)
    }

    /// Makes sure the revocation list is no older than its bound before a token is
    /// checked against it: a stale list is read again first (one read at a time; the
    /// requests waiting meanwhile use its result), and a store that cannot be read
    /// refuses the token ([`TokenError::Unavailable`]) rather than trust a list that
    /// may miss a revocation. In steady state it is one atomic load.
    async fn fresh_revocations(&self) -> Result<(), TokenError> {
        if self.revocations_age() <= self.revocations_bound() {
            return Ok(());
        }
        let _one = self.catching_up.lock().await;
        if self.revocations_age() <= self.revocations_bound() {
            return Ok(());
        }
        self.catch_up_revocations().await.map(|_| ())
    }

    /// Reads revocations from the store since the list's watermark (less a margin for
    /// transactions that committed out of timestamp order).
    pub async fn catch_up_revocations(&self) -> Result<usize, TokenError> {
        // Every revocation acknowledged before this instant is committed, so the read
        // below sees it: the list is current as of here once the read succeeds.
        let began = self.epoch.elapsed();
        let now = self.clock.now();
        let window =
            self.config.max_lifetime + Duration::seconds(self.config.skew_seconds.max(0) * 2);
        let mut since = match self.revoked.watermark() {
            Some(w) => w - Duration::seconds(10),
            None => now - window,
        };
        let mut total = 0;
        loop {
            let batch = self
                .store
                .revoked_since(since, 5_000)
                .await
                .map_err(unavailable)?;
            let n = batch.len();
            total += n;
            self.revoked
                .add(batch.iter().map(|(j, at)| (j.as_str(), *at)));
            match batch.last() {
                Some((_, at)) if n == 5_000 && *at > since => since = *at,
                _ => break,
            }
        }
        self.revoked.purge(now);
        let began = u64::try_from(began.as_millis()).unwrap_or(u64::MAX);
        self.caught_up.fetch_max(began, Ordering::AcqRel);
        Ok(total)
    }

    /// Keeps the revocation list current until the process ends: wakes on the
    /// store's notifications (PostgreSQL LISTEN/NOTIFY) and polls as a fallback.
    /// Also re-reads the published signing keys every 10 s, so `/oauth2/jwks` lists
    /// keys other replicas published (and drops retired ones) without waiting for a
    /// token signed by one of them.
    pub async fn follow_revocations(self: Arc<Self>) {
        let mut feed = None;
        let mut keys_read = Instant::now();
        loop {
            if keys_read.elapsed() >= StdDuration::from_secs(10) {
                keys_read = Instant::now();
                if let Err(e) = self.refresh_keys().await {
                    tracing::warn!(error = %e, "re-reading the published token keys failed; will retry");
                }
            }
            if feed.is_none() {
                feed = match self.store.revocation_feed().await {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for revocations; polling");
                        None
                    }
                };
            }
            let poll = tokio::time::sleep(self.config.revocation_poll);
            match feed.as_mut() {
                Some(f) => {
                    tokio::select! {
                        r = f.next() => if let Err(e) = r {
                            tracing::warn!(error = %e, "revocation channel broke; reconnecting");
                            feed = None;
                        },
                        () = poll => {},
                    }
                }
                None => poll.await,
            }
            if let Err(e) = self.catch_up_revocations().await {
                tracing::warn!(error = %e, "revocation catch-up failed; will retry");
            }
        }
    }
}

/// Why a token signed (or not) by none of our published keys is refused.
fn refused(e: KeyError) -> TokenError {
    match e {
        KeyError::UnknownKid => {
            TokenError::InvalidToken("the token was not signed by a key of this issuer".into())
        }
        KeyError::Rejected(m) => TokenError::InvalidToken(format!("the token is invalid: {m}")),
    }
}

/// Our own tokens expire on time: the skew the claim checks allow is for clocks we do
/// not share (other issuers, other replicas' `iat`), never past an `exp` we set.
pub(crate) fn own_token_live(token: &TaskToken, now: i64) -> Result<(), TokenError> {
    if now >= token.expires_at {
        return Err(TokenError::InvalidToken("the token has expired".into()));
    }
    Ok(())
}

async fn published_keys(
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<Vec<serde_json::Value>, TokenError> {
    let keys = store.token_keys(now).await.map_err(unavailable)?;
    Ok(keys
        .iter()
        .filter_map(|k| serde_json::from_str(&k.jwk).ok())
        .collect())
}
