//! `mandate review`: the access review (`GET /v1/reviews`) as a table, JSON or CSV;
//! `mandate review mark` and `mandate review revoke` act on it.

use anyhow::anyhow;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::Client;
use crate::table;

/// The access review of the agents you may review (admin: all; a person: those they
/// own or sponsor).
#[derive(Debug, Args)]
pub struct ReviewArgs {
    #[command(subcommand)]
    action: Option<ReviewAction>,
    /// The window: the last N days (1 to 365; default 30).
    #[arg(long)]
    days: Option<u32>,
    /// `table` (the default; `--json` alike is `json`), `json` or `csv` (one row per
    /// finding).
    #[arg(long, value_parser = ["table", "json", "csv"])]
    format: Option<String>,
    /// Only this agent.
    #[arg(long)]
    agent: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ReviewAction {
    /// Mark a finding (its `fnd_…` id): it stays marked in later reviews; recorded in
    /// the ledger.
    Mark {
        finding: String,
        /// `acknowledged`, `accepted_risk` or `remediated`.
        #[arg(long, value_parser = ["acknowledged", "accepted_risk", "remediated"])]
        status: String,
        #[arg(long)]
        comment: Option<String>,
        /// The window of the review the finding is in (default 30).
        #[arg(long)]
        days: Option<u32>,
    },
    /// Revoke from the review: one mandate of the agent (`--mandate`), or every active
    /// one you may revoke; `--disable` also disables the agent (admin).
    Revoke {
        agent: String,
        #[arg(long)]
        mandate: Option<String>,
        #[arg(long)]
        disable: bool,
        #[arg(long)]
        reason: Option<String>,
    },
}

impl ReviewArgs {
    pub async fn run(self, client: &Client, json: bool) -> anyhow::Result<()> {
        match self.action {
            Some(ReviewAction::Mark {
                finding,
                status,
                comment,
                days,
            }) => {
                let mark = client
                    .post(
                        &format!("/v1/reviews/findings/{}", segment(&finding)?),
                        &json!({"status": status, "comment": comment, "days": days}),
                    )
                    .await?;
                print(json, &mark, |m| {
                    format!(
                        "{finding} marked {} by {}\n",
                        text(m, "status"),
                        text(m, "marked_by")
                    )
                })
            }
            Some(ReviewAction::Revoke {
                agent,
                mandate,
                disable,
                reason,
            }) => {
                let done = client
                    .post(
                        &format!("/v1/reviews/agents/{}/revoke", segment(&agent)?),
                        &json!({"mandate_id": mandate, "disable_agent": disable, "reason": reason}),
                    )
                    .await?;
                print(json, &done, revocation)
            }
            None => {
                let mut query = Vec::new();
                if let Some(days) = self.days {
                    query.push(("days", days.to_string()));
                }
                if let Some(agent) = self.agent {
                    query.push(("agent", agent));
                }
                let format = match (self.format.as_deref(), json) {
                    (Some(f), _) => f,
                    (None, true) => "json",
                    (None, false) => "table",
                };
                if format == "csv" {
                    query.push(("format", "csv".to_owned()));
                    let csv = client.get_text("/v1/reviews", &query).await?;
                    return Ok(table::emit(&csv)?);
                }
                let report = client.get("/v1/reviews", &query).await?;
                print(format == "json", &report, report_table)
            }
        }
    }
}

/// A path segment: ids and finding ids are plain tokens.
fn segment(id: &str) -> anyhow::Result<&str> {
    if !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(id)
    } else {
        Err(anyhow!("`{id}` is not an id"))
    }
}

fn print(json: bool, value: &Value, render: impl FnOnce(&Value) -> String) -> anyhow::Result<()> {
    let text = if json {
        format!("{}\n", serde_json::to_string_pretty(value)?)
    } else {
        render(value)
    };
    Ok(table::emit(&text)?)
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn list<'v>(v: &'v Value, key: &str) -> &'v [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn person(v: &Value) -> String {
    v.get("name")
        .and_then(Value::as_str)
        .map_or_else(|| text(v, "id"), str::to_owned)
}

/// One line per agent, then its findings.
fn report_table(r: &Value) -> String {
    let agents = list(r, "agents");
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            let active = list(a, "mandates")
                .iter()
                .filter(|m| m.get("status").and_then(Value::as_str) == Some("active"))
                .count();
            let approvals = a.get("approvals").cloned().unwrap_or(Value::Null);
            vec![
                text(a, "name"),
                text(a, "status"),
                a.get("owner").map(person).unwrap_or_default(),
                format!("{active}/{}", list(a, "mandates").len()),
                list(a, "scope").len().to_string(),
                list(a, "unused_scope").len().to_string(),
                a.pointer("/denied/count")
                    .map_or("0".into(), Value::to_string),
                a.pointer("/drift_alerts/count")
                    .map_or("0".into(), Value::to_string),
                format!(
                    "{}/{}",
                    text(&approvals, "asked"),
                    text(&approvals, "given")
                ),
                list(a, "credentials").len().to_string(),
            ]
        })
        .collect();
    let mut out = format!(
        "access review of the last {} days (since {})\n",
        text(r, "days"),
        text(r, "since")
    );
    out.push_str(&table::render(
        &[
            "agent",
            "status",
            "owner",
            "mandates",
            "scope",
            "unused",
            "denied",
            "drift",
            "approvals",
            "credentials",
        ],
        &rows,
    ));
    let findings: Vec<Vec<String>> = agents
        .iter()
        .flat_map(|a| {
            list(a, "findings").iter().map(move |f| {
                vec![
                    text(a, "name"),
                    text(f, "id"),
                    text(f, "kind"),
                    text(f, "subject"),
                    f.pointer("/mark/status")
                        .and_then(Value::as_str)
                        .unwrap_or("-")
                        .to_owned(),
                ]
            })
        })
        .collect();
    if !findings.is_empty() {
        out.push_str("\nfindings:\n");
        out.push_str(&table::render(
            &["agent", "finding", "kind", "subject", "mark"],
            &findings,
        ));
    }
    out
}

fn revocation(v: &Value) -> String {
    let mut out = String::new();
    for id in list(v, "revoked") {
        out.push_str(&format!("revoked {}\n", id.as_str().unwrap_or_default()));
    }
    for s in list(v, "skipped") {
        out.push_str(&format!(
            "skipped {}: {}\n",
            text(s, "mandate_id"),
            text(s, "reason")
        ));
    }
    if v.get("agent_disabled").and_then(Value::as_bool) == Some(true) {
        out.push_str(&format!("agent {} disabled\n", text(v, "agent_id")));
    }
    if out.is_empty() {
        out.push_str("nothing to revoke\n");
    }
    out
}
