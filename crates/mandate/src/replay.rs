//! `mandate policy replay`: decides recorded decisions again under a candidate policy
//! set and lists each one whose answer would change. Offline, against the store itself
//! (`--data DIR` or `--database-url URL`), like `mandate audit verify`. The replay
//! itself — how each request is rebuilt, what is skipped and why — is
//! `mandate_core::replay`, shared with the console's replay form; this file is the
//! command line and the output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use mandate_core::PolicyAdmin;
use mandate_core::replay::{ReplayReport as Report, Replayed, Sets, replay_tenant};
use mandate_policy::CompiledSet;
use serde_json::json;

use crate::audit_cli::StoreArgs;
use crate::{serve, table};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// RFC 3339 time: replay the decisions recorded at or after it.
    #[arg(long, value_name = "TIME")]
    since: String,
    /// The candidate policy directory (compiled with Mandate's schema and built-ins).
    #[arg(long, value_name = "DIR")]
    policies: PathBuf,
    /// The directory the server runs its policies from, when it was started with
    /// `--policies`; by default the store's newest set (the built-ins alone if none).
    #[arg(long, value_name = "DIR")]
    current: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

/// Input the command cannot work with: exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

pub async fn run(args: ReplayArgs, json: bool) -> anyhow::Result<()> {
    let since = DateTime::parse_from_rfc3339(&args.since)
        .map_err(|e| {
            BadInput(format!(
                "--since `{}`: not an RFC 3339 time: {e}",
                args.since
            ))
        })?
        .with_timezone(&Utc);
    if !args.store.offline() {
        return Err(BadInput(
            "`policy replay` reads the store directly: give --data DIR or --database-url URL"
                .into(),
        )
        .into());
    }
    if let Some(dir) = args.store.data_dir()
        && !dir.is_dir()
    {
        return Err(BadInput(format!("--data {}: no such directory", dir.display())).into());
    }
    let candidate = compile(&args.policies)?;
    let current = args.current.as_deref().map(compile).transpose()?;
    let config = args.store.config()?;
    let store = serve::open_store(&config).await?;
    let current = match current {
        Some(set) => Arc::new(set),
        None => PolicyAdmin::from_store(store.clone())
            .await?
            .pdp()
            .current(),
    };
    let sets = Sets {
        candidate: &candidate,
        current: &current,
    };
    let mut report = Report::default();
    for (tenant, _) in store.audit_heads().await? {
        replay_tenant(store.clone(), tenant, since, None, sets, &mut report).await?;
    }
    if json {
        print_json(&report)
    } else {
        print_table(&report)
    }
}

/// A policy directory that must compile; its problems are printed and it is bad input.
fn compile(dir: &Path) -> anyhow::Result<CompiledSet> {
    crate::policy_cli::compile(dir).map_err(|e| BadInput(format!("{e:#}")).into())
}

fn verdict(allowed: bool) -> &'static str {
    if allowed { "allow" } else { "deny" }
}

fn summary(report: &Report) -> String {
    let to_deny = report.changed.iter().filter(|r| r.recorded).count();
    let to_allow = report.changed.len() - to_deny;
    let skipped: usize = report.skipped.values().sum();
    let why: Vec<String> = report
        .skipped
        .iter()
        .map(|(skip, n)| format!("{n} {}", skip.as_str()))
        .collect();
    let mut line = format!(
        "replayed {} decisions: {} would change ({to_deny} allow→deny, {to_allow} deny→allow), {skipped} skipped",
        report.replayed,
        report.changed.len(),
    );
    if !why.is_empty() {
        line.push_str(&format!(" ({})", why.join(", ")));
    }
    line
}

fn reason(r: &Replayed) -> String {
    let mut out = r.candidate.reason.clone();
    if !r.candidate.policies.is_empty() {
        out.push_str(&format!(" [{}]", r.candidate.policies.join(", ")));
    }
    for note in &r.notes {
        out.push_str(&format!("; {note}"));
    }
    out
}

fn print_table(report: &Report) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = report
        .changed
        .iter()
        .map(|r| {
            vec![
                r.seq.to_string(),
                r.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                r.mandate.to_string(),
                r.agent.to_string(),
                r.tool.clone(),
                format!("{} → {}", verdict(r.recorded), verdict(r.candidate.allowed)),
                verdict(r.current.allowed).to_owned(),
                reason(r),
            ]
        })
        .collect();
    let mut out = String::new();
    if !rows.is_empty() {
        out = table::render(
            &[
                "seq",
                "time",
                "mandate",
                "agent",
                "tool",
                "recorded → candidate",
                "current",
                "reason",
            ],
            &rows,
        );
    }
    out.push_str(&summary(report));
    out.push('\n');
    if report.unreproduced > 0 {
        out.push_str(&format!(
            "note: the current policy set answers {} replayed decision(s) differently from the record: policies changed since, or those requests cannot be rebuilt exactly\n",
            report.unreproduced
        ));
    }
    Ok(table::emit(&out)?)
}

fn print_json(report: &Report) -> anyhow::Result<()> {
    let mut out = String::new();
    for r in &report.changed {
        let line = json!({
            "tenant": r.tenant,
            "seq": r.seq,
            "at": r.at,
            "mandate": r.mandate,
            "agent": r.agent,
            "tool": r.tool,
            "action": r.action.as_str(),
            "recorded": verdict(r.recorded),
            "candidate": verdict(r.candidate.allowed),
            "current": verdict(r.current.allowed),
            "policies": r.candidate.policies,
            "reason": r.candidate.reason,
            "notes": r.notes,
        });
        out.push_str(&serde_json::to_string(&line)?);
        out.push('\n');
    }
    let to_deny = report.changed.iter().filter(|r| r.recorded).count();
    let skipped: BTreeMap<&str, usize> = report
        .skipped
        .iter()
        .map(|(skip, n)| (skip.as_str(), *n))
        .collect();
    let summary = json!({"summary": {
        "replayed": report.replayed,
        "changed": report.changed.len(),
        "allow_to_deny": to_deny,
        "deny_to_allow": report.changed.len() - to_deny,
        "skipped": skipped,
        "current_differs": report.unreproduced,
    }});
    out.push_str(&serde_json::to_string(&summary)?);
    out.push('\n');
    Ok(table::emit(&out)?)
}
