//! `mandate demo`: Mandate on a throwaway embedded store, in front of the demo bank (an
//! in-memory MCP server in this process), with a scripted operator, human and agents
//! that show what a mandate does, over plain HTTP, as a readable timeline.
//!
//! ```text
//!  script (operator, Alice, assistant, sub-agent)
//!     │  admin API · OAuth token endpoint · MCP JSON-RPC        (reqwest)
//!     ▼
//!  mandate (serve::start, 127.0.0.1:0, SQLite in a temp dir) ──► demo bank (127.0.0.1:0/mcp)
//! ```
//!
//! The exit code is 0 only when every step behaved as the script expects.

mod client;
mod script;
mod timeline;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use mandate_demo::bank::Bank;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::{Config, Overrides};
use crate::serve::{self, Announce};
use timeline::Timeline;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the demo's data directory (its store and audit ledger) and say where it is.
    #[arg(long)]
    keep: bool,
    /// Print nothing but the result (and what deviated, if anything did).
    #[arg(long)]
    quiet: bool,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("mandate-demo-")
        .tempdir()
        .context("cannot create a temporary data directory")?;
    let mut timeline = Timeline::new(args.quiet);
    timeline.text(
        "Mandate demo: a throwaway server, a fake bank, a scripted human and two scripted agents.\n\
         Nothing here is real: no money moves, no mail is sent. Secrets (tokens, keys) are never printed.",
    );

    let bank = Arc::new(Bank::new());
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen for the demo bank")?;
    let bank_url = format!("http://{}/mcp", listener.local_addr()?);
    let (stop_bank, bank_stopped) = oneshot::channel::<()>();
    let bank_task = tokio::spawn(mandate_demo::serve(listener, bank.clone(), async move {
        let _ = bank_stopped.await;
    }));

    let config = demo_config(dir.path().to_path_buf())?;
    let server = serve::start(config, Announce::Silent).await?;
    let admin = std::fs::read_to_string(dir.path().join("admin-token"))
        .context("the bootstrap admin token was not written")?
        .trim()
        .to_owned();

    timeline.section("Setting the stage");
    timeline.step(
        timeline::Actor::Demo,
        format!("starts the demo bank, an MCP server with six tools, at {bank_url}"),
        "listening (in-memory accounts, files and an outbox)",
    );
    timeline.step(
        timeline::Actor::Demo,
        format!(
            "starts Mandate at {} on an embedded SQLite store in {}",
            server.public_url,
            dir.path().display()
        ),
        "listening; the bootstrap admin token was written to the data directory",
    );

    let outcome = script::Script::new(&server.public_url, admin, bank, bank_url, &mut timeline)?
        .run()
        .await;

    let stopped = server.stop().await;
    let _ = stop_bank.send(());
    let _ = bank_task.await;
    let kept = if args.keep {
        Some(dir.keep())
    } else {
        dir.close()
            .context("cannot remove the demo's data directory")?;
        None
    };
    outcome?;
    stopped?;
    timeline.text("");
    match kept {
        Some(path) => timeline.text(&format!(
            "The demo's data directory is kept at {} (store, audit ledger, admin token);\n\
             `mandate serve --data {}` serves it again.",
            path.display(),
            path.display()
        )),
        None => timeline.text("The demo's data directory was removed (--keep keeps it)."),
    }
    println!("demo passed: every step behaved as expected");
    Ok(())
}

/// `mandate serve`'s defaults, on any free local port, in `data_dir`, ignoring the
/// environment: the demo never touches a configured database or policy directory.
fn demo_config(data_dir: PathBuf) -> anyhow::Result<Config> {
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".to_owned()),
        data_dir: Some(data_dir),
        ..Overrides::default()
    };
    Ok(Config::load(&overrides, &BTreeMap::new())?)
}
