//! `mandate serve`: the only place that chooses a store backend.

use std::future::Future;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mandate_audit::SigningKey;
use mandate_core::{
    Bootstrap, Ledger, LedgerConfig, PolicyAdmin, Service, TokenConfig, TokenService,
};
use mandate_server::Metrics;
use mandate_store::Store;
use mandate_store_sql::{PostgresStore, SqliteStore};
use mandate_types::SystemClock;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;

/// `mandate serve`: starts, then stops gracefully on Ctrl-C or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // Listening for SIGTERM before start-up: one that arrives while starting (a
    // supervisor, a quick test) stops the server gracefully once it is up, instead of
    // killing it with the default disposition.
    let signal = shutdown_signal();
    start(config, Announce::Stderr).await?.stop_on(signal).await
}

/// Whether a starting server tells the terminal where it listens and where the first
/// admin token went (`mandate serve`), or keeps quiet (`mandate demo` prints its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    Stderr,
    Silent,
}

/// A server started in this process: where it listens, and how to stop it.
#[derive(Debug)]
pub struct Running {
    /// The URL clients use (`public_url`, with the bound port when asked for `:0`).
    pub public_url: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Finishes in-flight requests, stops the background tasks and seals the ledger
    /// with a last checkpoint.
    pub async fn stop(self) -> anyhow::Result<()> {
        // The receiver is gone only when the server already stopped; `task` says why.
        let _ = self.stop.send(());
        self.task.await.context("the server task failed")?
    }

    /// Runs until `signal` completes (then stops) or the server fails.
    async fn stop_on(mut self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::select! {
            () = signal => self.stop().await,
            done = &mut self.task => done.context("the server task failed")?,
        }
    }
}

/// Opens the store, loads policies and keys, binds `config.listen` and serves in a
/// background task until [`Running::stop`].
pub async fn start(config: Config, announce: Announce) -> anyhow::Result<Running> {
    let mut config = config;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local = listener.local_addr()?;
    // Asked for any free port: announce the one bound, not `:0`.
    if config.public_url == format!("http://{}", config.listen) && config.listen.port() == 0 {
        config.public_url = format!("http://{local}");
    }
    // The hot paths read agents and mandates from this replica's memory; every write
    // goes through the decorator, other replicas' changes arrive by the store's feed.
    let store: Arc<dyn Store> =
        Arc::new(mandate_store::CachedStore::new(open_store(&config).await?));
    let clock: Arc<dyn mandate_types::Clock> = Arc::new(SystemClock);
    let policies = match &config.policies_dir {
        Some(dir) => PolicyAdmin::from_dir(dir).map_err(|e| {
            anyhow::anyhow!(
                "the policy set in {} does not compile; refusing to start without it:\n{e}",
                dir.display()
            )
        })?,
        None => PolicyAdmin::from_store(store.clone()).await.map_err(|e| {
            anyhow::anyhow!(
                "the stored policy set cannot be loaded; refusing to start without it: {e}"
            )
        })?,
    };
    let service = Service::new(store.clone(), clock.clone()).with_policies(policies.clone());
    announce_bootstrap(&service, &config.data_dir, announce).await?;
    let signer = Arc::new(signing_key(&config.data_dir)?);
    mandate_core::store_key(&*store, &signer).await?;
    let ledger = Ledger::start(
        store.clone(),
        clock.clone(),
        signer.clone(),
        LedgerConfig::default(),
    );

    let (tokens, rotation) = start_tokens(&config, &store, &clock, &policies, &ledger).await?;
    let plain = service.clone();
    let documents =
        mandate_token::ClientMetadataFetcher::new(mandate_token::ClientMetadataOptions {
            dangerous_allow_http_loopback: config.tokens.dangerous_allow_http_client_metadata,
            ..mandate_token::ClientMetadataOptions::default()
        })
        .map_err(|e| anyhow::anyhow!(e))?;
    let service = service
        .with_tokens(tokens.clone())
        .with_client_metadata_documents(Arc::new(documents));
    let follower = tokio::spawn(tokens.clone().follow_revocations());

    let gateway = build_gateway(&config, &service, &ledger, &tokens).await?;
    let role_sweeper = gateway.broker().cloned().map(|broker| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let dropped = broker.drop_ended().await;
                if dropped > 0 {
                    tracing::info!(
                        count = dropped,
                        "dropped the PostgreSQL roles of ended mandates"
                    );
                }
            }
        })
    });
    let metrics = Metrics::new(store.backend());
    let oidc = console_oidc(&config)?;
    let app = mandate_server::app_with_console(
        service.clone(),
        metrics,
        &config.public_url,
        Some(gateway.clone()),
        oidc,
    );
    tracing::info!(listen = %local, store = store.backend(), "mandate is serving");
    if announce == Announce::Stderr {
        eprintln!(
            "mandate: listening on http://{local} (store: {})",
            store.backend()
        );
    }

    let sweeper = tokio::spawn(sweep_expired(
        service.clone(),
        Duration::from_secs(config.expiry_sweep_seconds),
    ));
    let set = policies.pdp().current();
    tracing::info!(
        home = %policies.home(),
        digest = set.digest(),
        operator_policies = set.operator_policy_count(),
        "policy set loaded"
    );
    let watcher = tokio::spawn(policies.watch(Duration::from_secs(config.policy_reload_seconds)));
    let (stop, stopped) = oneshot::channel::<()>();
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    let limits = crate::listen::Limits {
        max_connections: config.max_connections,
        header_read_timeout: Duration::from_secs(config.header_read_timeout_seconds),
        trusted_proxies: Arc::new(config.trusted_proxies.clone()),
    };
    let task = tokio::spawn(async move {
        // The client's address (ConnectInfo: the peer, or behind a trusted proxy the
        // address it reported) lets registrations and sign-ins be limited per client.
        let draining = Arc::new(tokio::sync::Notify::new());
        let drain_started = draining.clone();
        let serving = crate::listen::serve(listener, app, limits, async move {
            // A dropped sender stops the server too.
            let _ = stopped.await;
            drain_started.notify_one();
            tracing::info!(
                grace_seconds = grace.as_secs(),
                "shutting down: finishing in-flight requests"
            );
        });
        // Requests still running when the grace period ends are cut (their decisions
        // are durable already: nothing is forwarded before its decision is).
        let served = tokio::select! {
            () = serving => Ok::<(), anyhow::Error>(()),
            () = async {
                draining.notified().await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(
                    grace_seconds = grace.as_secs(),
                    "shutting down: the grace period is over; requests still in flight are cut"
                );
                Ok(())
            }
        };
        sweeper.abort();
        watcher.abort();
        if let Some(s) = role_sweeper {
            s.abort();
        }
        follower.abort();
        rotation.abort();
        // What was appended without waiting (calls' outcomes) is on disk before exit.
        match tokio::time::timeout(Duration::from_secs(10), ledger.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the ledger's last events were not written"),
            Err(_) => tracing::error!("the ledger's last events were not written within 10 s"),
        }
        drop(service);
        drop(tokens);
        drop(ledger);
        // Seal what was written with a last checkpoint.
        if let Err(e) = plain.checkpoint_now(&signer).await {
            tracing::warn!(error = %e, "final audit checkpoint failed");
        }
        tracing::info!("mandate stopped");
        served
    });
    Ok(Running {
        public_url: config.public_url,
        stop,
        task,
    })
}

/// The token service: this replica's signing key (rotated when due), trust in SPIFFE
/// bundles and federated issuers, and the revocation follower.
async fn start_tokens(
    config: &Config,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn mandate_types::Clock>,
    policies: &PolicyAdmin,
    ledger: &Ledger,
) -> anyhow::Result<(Arc<TokenService>, tokio::task::JoinHandle<()>)> {
    let settings = &config.tokens;
    let max_age = chrono::Duration::days(i64::try_from(settings.rotate_days).unwrap_or(30));
    let loaded = crate::token_keys::load_or_rotate(
        &config.data_dir,
        &settings.signing_alg,
        max_age,
        clock.now(),
    )?;
    let mut token_config = TokenConfig::new(
        &config.public_url,
        crate::token_keys::nonce_secret(&config.data_dir)?,
    );
    token_config.max_lifetime = chrono::Duration::seconds(settings.max_lifetime_seconds);
    token_config.require_dpop = settings.require_dpop;
    token_config.dpop_nonce = settings.dpop_nonce;
    let overlap =
        token_config.max_lifetime + chrono::Duration::seconds(token_config.skew_seconds * 2);
    let replaced = loaded.replaced.clone();
    let created_at = loaded.created_at;
    let mut tokens = TokenService::start(
        store.clone(),
        clock.clone(),
        policies.clone(),
        ledger.clone(),
        token_config,
        loaded.key,
    )
    .await
    .map_err(|e| anyhow::anyhow!("the token service cannot start: {e}"))?;
    if let Some(old) = replaced {
        store.retire_token_key(&old, clock.now() + overlap).await?;
    }
    if !settings.spiffe.is_empty() {
        let mut bundles = mandate_token::TrustBundles::new();
        for b in &settings.spiffe {
            let domain = mandate_token::TrustDomain::parse(&b.trust_domain).map_err(|e| {
                anyhow::anyhow!("tokens.spiffe trust_domain `{}`: {e}", b.trust_domain)
            })?;
            let bytes = std::fs::read(&b.bundle)
                .with_context(|| format!("cannot read SPIFFE bundle {}", b.bundle.display()))?;
            let bundle = mandate_token::JwtBundle::from_spiffe_bundle_json(domain.clone(), &bytes)
                .or_else(|_| mandate_token::JwtBundle::from_jwks_json(domain, &bytes))
                .map_err(|e| anyhow::anyhow!("SPIFFE bundle {}: {e}", b.bundle.display()))?;
            bundles.insert(bundle);
        }
        tokens = tokens.with_spiffe(bundles);
    }
    if !settings.federation.is_empty() {
        let issuers = settings
            .federation
            .iter()
            .map(|f| {
                let mut issuer =
                    mandate_token::FederatedIssuer::new(f.issuer.clone(), f.audiences.clone());
                issuer.jwks_uri = f.jwks_uri.clone();
                issuer
            })
            .collect();
        let federation =
            mandate_token::Federation::new(issuers, mandate_token::FederationOptions::default())
                .map_err(|e| anyhow::anyhow!("tokens.federation: {e}"))?;
        tokens = tokens.with_federation(federation);
    }
    if !settings.enterprise_idps.is_empty() {
        let idps = mandate_token::EnterpriseIdps::new(
            settings.enterprise_idps.clone(),
            tokens.config().issuer.as_str(),
        )
        .map_err(|e| anyhow::anyhow!("tokens.enterprise_idp: {e}"))?;
        for idp in &settings.enterprise_idps {
            tracing::info!(issuer = %idp.issuer, tenant = %idp.tenant, "ID-JAGs of an enterprise identity provider are accepted");
        }
        tokens = tokens.with_enterprise_idps(idps);
    }
    let tokens = Arc::new(tokens);
    let rotation = tokio::spawn(crate::token_keys::rotate_when_due(
        tokens.clone(),
        config.data_dir.clone(),
        settings.signing_alg.clone(),
        max_age,
        created_at,
    ));
    Ok((tokens, rotation))
}

/// The console's "Sign in with …", when `[console.oidc]` is configured. Nothing is
/// fetched from the provider until someone signs in.
fn console_oidc(config: &Config) -> anyhow::Result<Option<mandate_console::OidcLogin>> {
    let Some(o) = &config.console_oidc else {
        return Ok(None);
    };
    let relying_party = mandate_token::RelyingParty::new(
        mandate_token::RelyingPartyConfig {
            issuer: o.issuer.clone(),
            client_id: o.client_id.clone(),
            client_secret: o.client_secret.clone(),
            redirect_uri: format!(
                "{}/ui/login/oidc/callback",
                config.public_url.trim_end_matches('/')
            ),
            scopes: o.scopes.clone(),
            client_auth: match o.client_auth {
                crate::config::OidcClientAuth::SecretBasic => {
                    mandate_token::ClientAuth::SecretBasic
                }
                crate::config::OidcClientAuth::SecretPost => mandate_token::ClientAuth::SecretPost,
            },
        },
        mandate_token::FederationOptions {
            dangerous_allow_insecure_loopback: o.dangerous_allow_insecure_loopback,
            ..mandate_token::FederationOptions::default()
        },
    )
    .map_err(|e| anyhow::anyhow!("console.oidc: {e}"))?;
    tracing::info!(issuer = %o.issuer, tenant = %o.tenant, "console sign-in with an external OpenID Provider is on");
    Ok(Some(mandate_console::OidcLogin::new(
        relying_party,
        &o.display_name,
        &o.tenant,
        &o.email_claim,
    )))
}

/// People's connections: the configured upstream providers, their callback on us.
fn connection_settings(
    config: &Config,
    service: &Service,
    ledger: &Ledger,
) -> anyhow::Result<mandate_core::calls::ConnectionSettings> {
    let timeout = Duration::from_secs(10);
    let mut providers = std::collections::BTreeMap::new();
    for p in &config.gateway.connection_providers {
        let provider = mandate_token::upstream::Provider::new(p.provider.clone(), timeout)
            .map_err(|e| anyhow::anyhow!("gateway.connection_provider `{}`: {e}", p.name))?;
        providers.insert(
            p.name.clone(),
            mandate_core::calls::ConnectionProvider {
                provider: Arc::new(provider),
                client_secret: p.client_secret.clone(),
            },
        );
        tracing::info!(provider = %p.name, issuer = %p.provider.issuer, "people may connect their accounts at an upstream provider");
    }
    Ok(mandate_core::calls::ConnectionSettings {
        providers,
        redirect_uri: format!(
            "{}/ui/connections/callback",
            config.public_url.trim_end_matches('/')
        ),
        ledger: ledger.clone(),
        clock: service.clock().clone(),
    })
}

/// Outbound token exchanges: the configured upstream authorization servers.
fn exchange_settings(
    config: &Config,
    service: &Service,
    tokens: &Arc<TokenService>,
) -> anyhow::Result<mandate_core::calls::ExchangeSettings> {
    let mut exchanges = std::collections::BTreeMap::new();
    for x in &config.gateway.token_exchanges {
        let outbound = mandate_token::upstream::outbound::Outbound::new(
            x.outbound.clone(),
            Duration::from_secs(10),
        )
        .map_err(|e| anyhow::anyhow!("gateway.token_exchange `{}`: {e}", x.name))?;
        exchanges.insert(
            x.name.clone(),
            mandate_core::calls::OutboundExchange {
                outbound: Arc::new(outbound),
                client_secret: x.client_secret.clone(),
            },
        );
        tracing::info!(exchange = %x.name, token_endpoint = %x.outbound.token_endpoint, "tool servers may obtain upstream tokens by exchange");
    }
    Ok(mandate_core::calls::ExchangeSettings {
        exchanges,
        tokens: tokens.clone(),
        clock: service.clock().clone(),
    })
}

/// The MCP / HTTP gateway, with the credential broker when a master key is configured.
async fn build_gateway(
    config: &Config,
    service: &Service,
    ledger: &Ledger,
    tokens: &Arc<TokenService>,
) -> anyhow::Result<mandate_gateway::Gateway> {
    let g = &config.gateway;
    let mut settings = mandate_gateway::GatewayConfig::new(&config.public_url);
    settings.approval_ttl = Duration::from_secs(g.approval_ttl_seconds);
    settings.call_timeout = Duration::from_secs(g.call_timeout_seconds);
    settings.max_body_bytes = g.max_body_bytes;
    settings.max_concurrent_per_upstream = g.max_concurrent_per_upstream;
    settings.capture_arguments = g.capture_arguments;
    settings.redact = g.redact.clone();
    settings.allowed_origins = g.allowed_origins.clone();
    settings.drift = mandate_core::calls::DriftPolicy {
        threshold: g.drift_threshold,
        revoke: g.drift_revoke,
    };
    if let (Some(url), Some(file)) = (&g.webhook_url, &g.webhook_secret_file) {
        let secret = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the webhook secret {}", file.display()))?;
        let secret = secret.trim().to_owned();
        if secret.len() < 16 {
            anyhow::bail!(
                "the webhook secret in {} is shorter than 16 characters",
                file.display()
            );
        }
        settings.webhook = Some(mandate_gateway::Webhook {
            url: url.clone(),
            secret: mandate_types::Secret::new(secret),
        });
    }
    let broker = match mandate_broker::MasterKeys::from_env()
        .map_err(|e| anyhow::anyhow!("credential broker: {e}"))?
    {
        Some(keys) => {
            let roles = match &g.postgres_roles_url {
                Some(url) => Some(
                    mandate_broker::postgres_roles::PostgresRoles::connect(
                        url,
                        mandate_broker::postgres_roles::RoleOptions::default(),
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("gateway.postgres_roles_url: {e}"))?,
                ),
                None => None,
            };
            let mut broker = mandate_core::calls::Broker::new(service.store().clone(), keys, roles);
            if !g.connection_providers.is_empty() {
                broker = broker.with_connections(connection_settings(config, service, ledger)?);
            }
            if !g.token_exchanges.is_empty() {
                broker = broker.with_exchanges(exchange_settings(config, service, tokens)?);
            }
            let broker = Arc::new(broker);
            let resealed = broker.reseal_all().await.map_err(|e| {
                anyhow::anyhow!("credential broker: resealing under the newest key: {e}")
            })?;
            if resealed > 0 {
                tracing::info!(
                    count = resealed,
                    "secrets resealed under the newest master key"
                );
            }
            Some(broker)
        }
        None => {
            tracing::info!(
                "no MANDATE_MASTER_KEY / MANDATE_MASTER_KEY_FILE: the credential broker is off; tool servers that name a credential are refused"
            );
            None
        }
    };
    Ok(mandate_gateway::Gateway::new(
        service.clone(),
        ledger.clone(),
        tokens.clone(),
        settings,
        broker,
    )?)
}

pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match &config.database_url {
        Some(url) => Arc::new(PostgresStore::connect(url).await?),
        None => Arc::new(SqliteStore::open(&config.data_dir).await?),
    })
}

/// On the very first start, writes the admin token to `DATA/admin-token` (mode 0600)
/// and says where it is. The token itself is never printed or logged.
async fn announce_bootstrap(
    service: &Service,
    data_dir: &Path,
    announce: Announce,
) -> anyhow::Result<()> {
    match service.bootstrap().await? {
        Bootstrap::Existing { .. } => Ok(()),
        Bootstrap::Created { admin, .. } => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("cannot create {}", data_dir.display()))?;
            let path = data_dir.join("admin-token");
            write_private(&path, format!("{}\n", admin.secret.expose()).as_bytes())?;
            if announce == Announce::Stderr {
                eprintln!(
                    "mandate: first start: an admin token was written to {} (readable by this user only; it is not shown again)",
                    path.display()
                );
            }
            tracing::info!(path = %path.display(), "bootstrap admin token created");
            Ok(())
        }
    }
}

/// The Ed25519 key that signs audit checkpoints: `DATA/audit-signing-key`, a PKCS#8
/// document of mode 0600, created on first start. Each replica has its own; all their
/// public halves are registered in the store.
pub fn signing_key(data_dir: &Path) -> anyhow::Result<SigningKey> {
    let path = data_dir.join("audit-signing-key");
    match std::fs::read(&path) {
        Ok(bytes) => SigningKey::from_pkcs8(&bytes)
            .with_context(|| format!("{} is not a valid signing key", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("cannot create {}", data_dir.display()))?;
            let (key, pkcs8) = SigningKey::generate()?;
            write_private(&path, &pkcs8)?;
            tracing::info!(path = %path.display(), key_id = %key.public_key().key_id, "created the audit checkpoint signing key");
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

pub(crate) fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| {
        format!(
            "cannot create {} (remove a stale one first)",
            path.display()
        )
    })?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

async fn sweep_expired(service: Service, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match service.expire_due(500).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "expired mandates"),
            Err(e) => tracing::warn!(error = %e, "expiry sweep failed; will retry"),
        }
    }
}

/// Ctrl-C or SIGTERM. The SIGTERM handler is installed when this is called, not when
/// the future is first polled.
fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        let term = async move {
            match term {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {},
            () = term => {},
        }
    }
}
