//! `mandate audit …`: read, trace, verify and export the ledger; and `load`, which
//! appends synthetic events through the real writer for crash tests and benchmarks.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, anyhow};
use clap::{Args, Subcommand};
use mandate_audit::{EventKind, NewEvent};
use mandate_core::{Ledger, LedgerConfig, Service, Verification};
use mandate_types::{AgentId, MandateId, SystemClock, TenantId};
use serde_json::Value;

use crate::client::Client;
use crate::config::{Config, Overrides, ProcessEnv};
use crate::{serve, table};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit events, oldest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Events per page (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// The sequence number printed as `more: --after N`.
        #[arg(long)]
        after: Option<u64>,
    },
    /// Print a mandate's story as a tree: consent, tokens, delegation, decisions, calls,
    /// outcomes, the end.
    Trace { mandate: String },
    /// Verify the hash chain and the signed checkpoints. Through the API by default; with
    /// --data or --database-url, offline against the store itself (every tenant).
    Verify {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write events as JSON Lines to stdout, or with --otlp send them to an
    /// OpenTelemetry collector as logs (OTLP/HTTP protobuf, batches of 500).
    Export {
        #[command(flatten)]
        filter: FilterArgs,
        /// The collector's logs endpoint, e.g. `http://127.0.0.1:4318/v1/logs`.
        #[arg(long)]
        otlp: Option<String>,
    },
    /// Append synthetic events through the group-commit writer, printing `tenant seq` for
    /// each acknowledged (durable) event. For crash tests and benchmarks.
    #[command(hide = true)]
    Load {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Concurrent appenders.
        #[arg(long, default_value_t = 64)]
        concurrency: u64,
        #[arg(long, default_value_t = 1)]
        tenants: usize,
        /// Do not print acknowledgements (benchmarks).
        #[arg(long)]
        quiet: bool,
        /// Do not keep the lookup index up to date while appending.
        #[arg(long)]
        no_index: bool,
    },
}

#[derive(Debug, Args)]
pub struct FilterArgs {
    #[arg(long)]
    mandate: Option<String>,
    #[arg(long)]
    agent: Option<String>,
    #[arg(long)]
    human: Option<String>,
    /// An event type, e.g. `consent.granted`.
    #[arg(long = "type")]
    kind: Option<String>,
    /// RFC 3339 time: events at or after it.
    #[arg(long)]
    since: Option<String>,
    /// RFC 3339 time: events before it.
    #[arg(long)]
    until: Option<String>,
}

impl FilterArgs {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        for (key, value) in [
            ("mandate", &self.mandate),
            ("agent", &self.agent),
            ("human", &self.human),
            ("type", &self.kind),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if let Some(v) = value {
                q.push((key, v.clone()));
            }
        }
        q
    }
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The data directory of an embedded store (offline).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// A PostgreSQL store (offline).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

impl StoreArgs {
    pub(crate) fn offline(&self) -> bool {
        self.data.is_some() || self.database_url.is_some()
    }

    pub(crate) fn data_dir(&self) -> Option<&std::path::Path> {
        self.data.as_deref()
    }

    pub(crate) fn config(&self) -> anyhow::Result<Config> {
        let overrides = Overrides {
            data_dir: self.data.clone(),
            database_url: self.database_url.clone(),
            ..Overrides::default()
        };
        Ok(Config::load(&overrides, &ProcessEnv)?)
    }
}

impl AuditCommand {
    pub async fn run(self, client: &Client, json: bool) -> anyhow::Result<()> {
        match self {
            AuditCommand::List {
                filter,
                limit,
                after,
            } => {
                let mut q = filter.query();
                q.push(("limit", limit.to_string()));
                if let Some(after) = after {
                    q.push(("after", after.to_string()));
                }
                let page = client.get("/v1/audit", &q).await?;
                if json {
                    return emit_json(&page);
                }
                let rows: Vec<Vec<String>> = items(&page).iter().map(event_row).collect();
                let mut out = table::render(&["seq", "at", "type", "mandate", "actor"], &rows);
                if let Some(next) = page.get("next").and_then(Value::as_u64) {
                    out.push_str(&format!("\nmore: --after {next}\n"));
                }
                Ok(table::emit(&out)?)
            }
            AuditCommand::Trace { mandate } => {
                let events = all_events(client, vec![("mandate", mandate.clone())]).await?;
                if json {
                    return emit_json(&Value::Array(events));
                }
                Ok(table::emit(&trace(&mandate, &events))?)
            }
            AuditCommand::Export { filter, otlp } => {
                let mut stdout = std::io::stdout().lock();
                let exporter = otlp
                    .as_deref()
                    .map(crate::otlp::Exporter::new)
                    .transpose()?;
                let mut after: Option<u64> = None;
                let mut sent = 0usize;
                loop {
                    let mut q = filter.query();
                    q.push(("limit", "500".to_owned()));
                    if let Some(a) = after {
                        q.push(("after", a.to_string()));
                    }
                    let page = client.get("/v1/audit", &q).await?;
                    let events = items(&page);
                    match &exporter {
                        Some(exporter) => {
                            exporter.send(&events).await?;
                            sent += events.len();
                        }
                        None => {
                            for event in &events {
                                writeln!(stdout, "{}", serde_json::to_string(event)?)?;
                            }
                        }
                    }
                    match page.get("next").and_then(Value::as_u64) {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                }
                if let Some(url) = &otlp {
                    eprintln!("exported {sent} events to {url}");
                }
                Ok(stdout.flush()?)
            }
            AuditCommand::Verify { store } => {
                let results = if store.offline() {
                    verify_offline(&store).await?
                } else {
                    let v = client.get("/v1/audit/verify", &[]).await?;
                    vec![(
                        None,
                        serde_json::from_value::<Verification>(v.clone())
                            .map_err(|_| anyhow!("unexpected answer: {v}"))?,
                    )]
                };
                let mut broken = false;
                let mut out = String::new();
                for (tenant, result) in &results {
                    let who = tenant.map(|t| format!("tenant {t}: ")).unwrap_or_default();
                    match result {
                        Verification::Intact(ok) => out.push_str(&format!(
                            "{who}intact: {} events, {} signed checkpoints, head seq {} {}\n",
                            ok.events, ok.checkpoints, ok.head.seq, ok.head.hash
                        )),
                        Verification::Broken(b) => {
                            broken = true;
                            out.push_str(&format!("{who}BROKEN at seq {}: {}\n", b.seq, b.reason));
                        }
                    }
                }
                if results.is_empty() {
                    out.push_str("no audit events yet\n");
                }
                if json {
                    emit_json(&serde_json::to_value(
                        results
                            .iter()
                            .map(|(t, r)| serde_json::json!({"tenant": t, "verification": r}))
                            .collect::<Vec<_>>(),
                    )?)?;
                } else {
                    table::emit(&out)?;
                }
                if broken {
                    return Err(anyhow!("the audit ledger does not verify"));
                }
                Ok(())
            }
            AuditCommand::Load {
                store,
                events,
                concurrency,
                tenants,
                quiet,
                no_index,
            } => load(&store, events, concurrency, tenants, quiet, !no_index).await,
        }
    }
}

fn emit_json(value: &Value) -> anyhow::Result<()> {
    Ok(table::emit(&format!(
        "{}\n",
        serde_json::to_string_pretty(value)?
    ))?)
}

fn items(page: &Value) -> Vec<Value> {
    page.get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn field(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_owned(),
        Some(other) => other.to_string(),
    }
}

fn actor(v: &Value) -> String {
    v.get("actor")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" → ")
        })
        .unwrap_or_default()
}

fn event_row(v: &Value) -> Vec<String> {
    vec![
        field(v, "seq"),
        field(v, "at"),
        field(v, "kind"),
        field(v, "mandate_id"),
        actor(v),
    ]
}

async fn all_events(
    client: &Client,
    base: Vec<(&'static str, String)>,
) -> anyhow::Result<Vec<Value>> {
    let mut events = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let mut q = base.clone();
        q.push(("limit", "1000".to_owned()));
        if let Some(a) = after {
            q.push(("after", a.to_string()));
        }
        let page = client.get("/v1/audit", &q).await?;
        events.extend(items(&page));
        match page.get("next").and_then(Value::as_u64) {
            Some(next) => after = Some(next),
            None => return Ok(events),
        }
    }
}

/// How deep an event sits in a mandate's story.
fn depth(kind: &str) -> usize {
    match kind {
        "token.issued" | "token.renewed" | "token.revoked" | "approval.requested"
        | "approval.granted" | "approval.denied" | "proposal.recorded" | "proposal.executed"
        | "policy.changed" | "drift.alert" => 1,
        "token.exchanged" | "decision" | "approval.used" => 2,
        "tool.called" | "secret.used" => 3,
        _ => 0,
    }
}

/// The mandate's events as an indented tree, in the order they happened.
fn trace(mandate: &str, events: &[Value]) -> String {
    let mut out = format!("mandate {mandate}\n");
    if events.is_empty() {
        out.push_str("  (no events you may see)\n");
    }
    for e in events {
        let kind = field(e, "kind");
        let indent = "   ".repeat(depth(&kind));
        let mut details: Vec<String> = Vec::new();
        if let Some(data) = e.get("data").and_then(Value::as_object) {
            for key in ["status", "reason", "channel", "tool", "decision", "outcome"] {
                if let Some(v) = data.get(key) {
                    details.push(format!(
                        "{key}={}",
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                    ));
                }
            }
        }
        out.push_str(&format!(
            "{indent}└─ #{} {} {} by {}{}\n",
            field(e, "seq"),
            field(e, "at"),
            kind,
            actor(e),
            if details.is_empty() {
                String::new()
            } else {
                format!(" ({})", details.join(", "))
            }
        ));
    }
    out
}

async fn verify_offline(
    store: &StoreArgs,
) -> anyhow::Result<Vec<(Option<TenantId>, Verification)>> {
    let config = store.config()?;
    let store = serve::open_store(&config).await?;
    let service = Service::new(store.clone(), Arc::new(SystemClock));
    let mut results = Vec::new();
    for (tenant, _) in store.audit_heads().await? {
        results.push((Some(tenant), service.verify_audit(tenant, None).await?));
    }
    Ok(results)
}

const ARGUMENTS_HASH: &str =
    "sha256:9f2c4e0b1d7a6c5e3f8a2b4d6e8f0a1c3e5b7d9f1a3c5e7b9d1f3a5c7e9b1d3f";

async fn load(
    store: &StoreArgs,
    events: u64,
    concurrency: u64,
    tenants: usize,
    quiet: bool,
    index: bool,
) -> anyhow::Result<()> {
    if !store.offline() {
        return Err(anyhow!(
            "`audit load` writes to a store directly: give --data or --database-url"
        ));
    }
    let config = store.config()?;
    let store = serve::open_store(&config).await?;
    let signer = Arc::new(serve::signing_key(&config.data_dir)?);
    mandate_core::store_key(&*store, &signer).await?;
    let ledger_config = LedgerConfig {
        index,
        ..LedgerConfig::default()
    };
    let indexer = Arc::clone(&store);
    let ledger = Ledger::start(store, Arc::new(SystemClock), signer, ledger_config);
    let tenants: Vec<TenantId> = (0..tenants.max(1)).map(|_| TenantId::generate()).collect();
    let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel::<(TenantId, u64)>();
    let printer = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut n = 0u64;
        while let Some((tenant, seq)) = acked.blocking_recv() {
            n += 1;
            if !quiet {
                writeln!(out, "{tenant} {seq}")?;
                if n.is_multiple_of(64) {
                    out.flush()?;
                }
            }
        }
        out.flush()?;
        Ok(n)
    });
    let started = Instant::now();
    let concurrency = concurrency.clamp(1, 10_000);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let ledger = ledger.clone();
        let acks = acks.clone();
        let tenants = tenants.clone();
        let share = events / concurrency + u64::from(worker < events % concurrency);
        let (mandate, agent) = (MandateId::generate(), AgentId::generate());
        tasks.push(tokio::spawn(async move {
            for i in 0..share {
                let tenant = tenants
                    .get(usize::try_from(i).unwrap_or(0) % tenants.len())
                    .copied()
                    .unwrap_or_else(TenantId::generate);
                // Shaped like a real decision: a mandate, an agent, the tool, the
                // policies that decided, the hash of the arguments.
                let event = NewEvent::new(tenant, EventKind::Decision, format!("agent:{agent}"))
                    .mandate(mandate)
                    .agent(agent)
                    .with("tool", "bank.transfer")
                    .with("decision", "allow")
                    .with("policies", vec!["mandate.scope", "mandate.budget"])
                    .with("arguments_hash", ARGUMENTS_HASH)
                    .with("i", i);
                let recorded = ledger.append(event).await.context("append")?;
                let _ = acks.send((recorded.tenant_id, recorded.seq));
            }
            anyhow::Ok(())
        }));
    }
    drop(acks);
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    let n = printer.await??;
    let rate = |d: std::time::Duration| n as f64 / d.as_secs_f64().max(1e-9);
    eprintln!(
        "appended {n} durable events in {:.3} s: {:.0} events/s ({} concurrent appenders)",
        elapsed.as_secs_f64(),
        rate(elapsed),
        concurrency
    );
    if index {
        // The index was kept up behind the appenders; what it has not reached yet is
        // indexed now and counted, so the figure is events both recorded and indexed.
        while indexer.index_audit(50_000).await.context("index")? > 0 {}
        let indexed = started.elapsed();
        eprintln!(
            "indexed up to the head at {:.3} s: {:.0} events/s appended and indexed",
            indexed.as_secs_f64(),
            rate(indexed)
        );
    }
    Ok(())
}
