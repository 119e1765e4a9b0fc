//! Commands for supervisors and orchestrators: `mandate migrate` (bring the store's
//! schema up to date, then exit: a Kubernetes init container or a pre-start step) and
//! `mandate health` (probe a running server: a container's health check, where there
//! is no curl).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow};

use crate::config;

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// A TOML config file (the same as `mandate serve`'s).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory of the embedded store [env: MANDATE_DATA] [default: ./mandate-data].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Migrate this PostgreSQL database instead of the embedded store [env: MANDATE_DATABASE_URL].
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

/// Opens the store the way `mandate serve` would, which runs the pending migrations
/// (on PostgreSQL under the advisory lock every replica takes, so a migration running
/// here and a replica starting elsewhere never both apply one), and exits.
pub async fn migrate(flags: MigrateArgs) -> anyhow::Result<()> {
    let overrides = config::Overrides {
        config: flags.config,
        listen: None,
        data_dir: flags.data,
        database_url: flags.database_url,
        policies: None,
    };
    let config = config::Config::load(&overrides, &config::ProcessEnv)?;
    let store = crate::serve::open_store(&config)
        .await
        .context("cannot open the store to migrate it")?;
    eprintln!(
        "mandate: the {} store's schema is up to date",
        store.backend()
    );
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// Ask `/readyz` (the store answers) instead of `/healthz` (the process serves).
    #[arg(long)]
    ready: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    timeout: u64,
}

/// GETs `{url}/healthz` (or `/readyz`): succeeds on a 2xx answer, fails otherwise.
pub async fn health(url: &str, flags: HealthArgs) -> anyhow::Result<()> {
    let base = url.trim_end_matches('/');
    let path = if flags.ready { "/readyz" } else { "/healthz" };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(flags.timeout.clamp(1, 300)))
        .build()?;
    let response = http
        .get(format!("{base}{path}"))
        .send()
        .await
        .with_context(|| format!("cannot reach Mandate at {base}"))?;
    let status = response.status();
    if status.is_success() {
        println!("{path}: {}", status.as_u16());
        Ok(())
    } else {
        Err(anyhow!("{base}{path} answered {status}"))
    }
}
