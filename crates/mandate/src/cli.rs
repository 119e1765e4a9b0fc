//! The CLI over the admin API: `mandate human …`, `mandate agent …`, `mandate mandate …`.
//! Every command prints a readable table, or the API's JSON with `--json`.

use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use chrono::{Duration, Utc};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use crate::client::Client;
use crate::table;

/// Where the API is and who is calling. Shared by every client command.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The Mandate server.
    #[arg(
        long,
        global = true,
        env = "MANDATE_URL",
        default_value = "http://127.0.0.1:8731"
    )]
    url: String,
    /// The bearer token (an `mdt_…` API token).
    #[arg(long, global = true, env = "MANDATE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

impl Connection {
    /// The server's URL (`--url`, `MANDATE_URL`).
    pub fn url(&self) -> &str {
        &self.url
    }
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// People: grantors, data owners, approvers.
    #[command(subcommand)]
    Human(HumanCommand),
    /// Agents: workload identities acting for people.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Mandates: request, consent, complete, revoke.
    #[command(subcommand)]
    Mandate(MandateCommand),
    /// Calls held for a person's approval: list them (`--status`, `--mandate`).
    Approvals {
        /// `pending` (the default), `approved`, `denied`, `used`, `expired`.
        #[arg(long, default_value = "pending")]
        status: String,
        #[arg(long)]
        mandate: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Approve a held call: the agent's identical retry then runs, once.
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Deny a held call: the agent's retry stays refused.
    Deny {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Undo what an agent did under a mandate: the recorded compensations run newest
    /// first through the gateway, on your authority. A failed step stops it (exit 1);
    /// running it again continues and never repeats a step that is done.
    Rollback {
        /// The mandate.
        mandate: String,
        /// Only this call (its `tool.called` event's sequence number, `mandate audit`).
        #[arg(long)]
        call: Option<u64>,
    },
    /// Access reviews: per agent, its mandates, scope against use, denied attempts,
    /// drift alerts, approvals, credentials and the people whose data it touched;
    /// `review mark` marks a finding, `review revoke` revokes from the review.
    Review(crate::review_cli::ReviewArgs),
    /// The audit ledger: list, trace, verify, export.
    #[command(subcommand)]
    Audit(crate::audit_cli::AuditCommand),
    /// Policies as code, offline: validate a directory, run decision tests, replay
    /// recorded decisions under a candidate set.
    #[command(subcommand)]
    Policy(crate::policy_cli::PolicyCommand),
}

#[derive(Debug, Subcommand)]
pub enum HumanCommand {
    /// Add a person (admin).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
        /// A group the person belongs to (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// List people (admin).
    List {
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        group: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one person.
    Get { id: String },
    /// Issue an API token for a person (admin). Shown once.
    Token {
        id: String,
        #[arg(long, default_value = "cli")]
        label: String,
    },
    /// Set a person's console password (admin, or the person). The password is read
    /// from standard input (its first line), never from the command line.
    Password { id: String },
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Register an agent (admin).
    Create {
        /// `a-z 0-9 . _ -`, unique in the tenant.
        #[arg(long)]
        name: String,
        /// The accountable human's id.
        #[arg(long)]
        owner: String,
        /// Another person answerable for the agent (repeatable): sees it in reviews.
        #[arg(long = "sponsor")]
        sponsors: Vec<String>,
        /// A SPIFFE ID whose JWT-SVIDs authenticate the agent.
        #[arg(long)]
        spiffe_id: Option<String>,
        /// A JSON file holding the agent's public JWK or JWK Set.
        #[arg(long, value_name = "FILE")]
        jwks: Option<PathBuf>,
        /// A label `key=value` (repeatable).
        #[arg(long = "label", value_parser = key_value)]
        labels: Vec<(String, String)>,
    },
    /// List agents.
    List {
        #[arg(long)]
        owner: Option<String>,
        /// `active` or `disabled`.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one agent.
    Get { id: String },
    /// Stop an agent from authenticating (admin).
    Disable { id: String },
    /// Set an agent's sponsors (admin): the people named replace the earlier ones;
    /// none removes them all.
    Sponsors {
        id: String,
        #[arg(long = "sponsor")]
        sponsors: Vec<String>,
    },
    /// Let a disabled agent authenticate again (admin).
    Enable { id: String },
    /// Issue an API token for an agent (admin). Shown once.
    Token {
        id: String,
        #[arg(long, default_value = "cli")]
        label: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MandateCommand {
    /// Request a mandate (an agent for itself, a human in their own name, or admin).
    Request(Box<RequestArgs>),
    /// List mandates you may see.
    List {
        /// requested, active, completed, revoked, expired or denied.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        agent: Option<String>,
        /// The grantor.
        #[arg(long)]
        human: Option<String>,
        /// The grantor or a named owner: someone who must consent.
        #[arg(long)]
        consenter: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show a mandate, its consents and who has yet to answer.
    Get { id: String },
    /// Consent to a mandate as its grantor or a named owner (or refuse with --deny).
    Consent {
        id: String,
        /// Refuse instead of granting.
        #[arg(long)]
        deny: bool,
        #[arg(long)]
        comment: Option<String>,
        /// The terms hash you reviewed; defaults to the one shown by `mandate get`, which
        /// this command prints before answering.
        #[arg(long)]
        terms_hash: Option<String>,
    },
    /// Mark an active mandate's task as done.
    Complete {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Revoke an active mandate.
    Revoke {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The terms as a JSON file (the API's body); the flags below are ignored when given.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["agent", "human", "intent", "tools"])]
    file: Option<PathBuf>,
    /// The agent (grantee).
    #[arg(long, required_unless_present = "file")]
    agent: Option<String>,
    /// The human (grantor).
    #[arg(long, required_unless_present = "file")]
    human: Option<String>,
    /// The task, in the human's words.
    #[arg(long, required_unless_present = "file")]
    intent: Option<String>,
    /// A tool name or pattern in scope (repeatable), e.g. `flights.search`, `calendar.*`.
    #[arg(long = "tool", required_unless_present = "file")]
    tools: Vec<String>,
    #[arg(long)]
    purpose: Option<String>,
    /// public, internal, confidential or restricted.
    #[arg(long, default_value = "internal")]
    data_ceiling: String,
    /// execute or recommend.
    #[arg(long, default_value = "execute")]
    mode: String,
    /// Another person whose data the task affects; must consent too (repeatable).
    #[arg(long = "owner")]
    owners: Vec<String>,
    /// How long the mandate lives: e.g. `90s`, `30m`, `8h`, `7d`.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    expires_in: Duration,
    #[arg(long)]
    max_calls: Option<u64>,
    /// In minor units (cents) of --currency.
    #[arg(long, requires = "currency")]
    max_amount: Option<u64>,
    #[arg(long)]
    currency: Option<String>,
    /// A risk tier whose calls each need approval (repeatable): read, write, high_impact.
    #[arg(long = "approve-tier")]
    approve_tiers: Vec<String>,
    #[arg(long, default_value_t = 0)]
    max_delegation_depth: u8,
}

#[derive(Debug, Args)]
pub struct PageArgs {
    /// Items per page (1 to 500).
    #[arg(long)]
    limit: Option<u32>,
    /// The `next` cursor printed by the previous page.
    #[arg(long)]
    after: Option<String>,
}

impl PageArgs {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        push(&mut q, "limit", self.limit.map(|l| l.to_string()));
        push(&mut q, "after", self.after.clone());
        q
    }
}

fn push(q: &mut Vec<(&'static str, String)>, key: &'static str, value: Option<String>) {
    if let Some(v) = value {
        q.push((key, v));
    }
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not key=value"))
}

/// `90s`, `30m`, `8h`, `7d` → a duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.len().saturating_sub(1);
    let (number, unit) = (s.get(..split).unwrap_or(""), s.get(split..).unwrap_or(""));
    let n: i64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 90s, 30m, 8h or 7d"))?;
    if n <= 0 {
        return Err(format!("`{s}`: the duration must be positive"));
    }
    let d = match unit {
        "s" => Duration::try_seconds(n),
        "m" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        _ => None,
    };
    d.ok_or_else(|| format!("`{s}` is not a duration like 90s, 30m, 8h or 7d"))
}

impl ClientCommand {
    pub async fn run(self, conn: Connection) -> anyhow::Result<()> {
        if let ClientCommand::Policy(command) = self {
            return command.run(conn.json).await;
        }
        let client = Client::new(&conn.url, conn.token.clone())?;
        let out = Output { json: conn.json };
        match self {
            ClientCommand::Human(c) => human(c, &client, out).await,
            ClientCommand::Agent(c) => agent(c, &client, out).await,
            ClientCommand::Mandate(c) => mandate(c, &client, out).await,
            ClientCommand::Approvals {
                status,
                mandate,
                page,
            } => {
                let mut q = page.query();
                push(&mut q, "status", Some(status));
                push(&mut q, "mandate", mandate);
                let page = client.get("/v1/approvals", &q).await?;
                out.list(&page, &APPROVAL_HEADERS, approval_row)
            }
            ClientCommand::Approve { id, comment } => {
                decide(&client, out, &id, "approve", comment).await
            }
            ClientCommand::Deny { id, comment } => decide(&client, out, &id, "deny", comment).await,
            ClientCommand::Rollback { mandate, call } => {
                let report = client
                    .post(
                        &format!("/v1/mandates/{}/rollback", seg(&mandate)?),
                        &json!({"call": call}),
                    )
                    .await?;
                out.show(&report, rollback_report)?;
                if report.get("complete").and_then(Value::as_bool) != Some(true) {
                    return Err(anyhow!(
                        "the rollback stopped before its end; run it again to continue"
                    ));
                }
                Ok(())
            }
            ClientCommand::Review(c) => c.run(&client, out.json).await,
            ClientCommand::Audit(c) => c.run(&client, out.json).await,
            ClientCommand::Policy(c) => c.run(out.json).await,
        }
    }
}

/// A rollback's steps, newest call first, and what could not be undone.
fn rollback_report(r: &Value) -> String {
    let steps: Vec<Vec<String>> = items_at(r, "steps")
        .iter()
        .map(|s| {
            ["call_seq", "tool", "compensation", "status", "detail"]
                .iter()
                .map(|k| text(s, k))
                .collect()
        })
        .collect();
    let mut out = table::render(&["call", "tool", "undone by", "status", "detail"], &steps);
    let irreversible: Vec<Vec<String>> = items_at(r, "irreversible")
        .iter()
        .map(|s| {
            ["call_seq", "tool", "reason"]
                .iter()
                .map(|k| text(s, k))
                .collect()
        })
        .collect();
    if !irreversible.is_empty() {
        out.push_str("\nnot undone (irreversible):\n");
        out.push_str(&table::render(&["call", "tool", "reason"], &irreversible));
    }
    let complete = r.get("complete").and_then(Value::as_bool) == Some(true);
    out.push_str(if complete {
        "\nrollback complete\n"
    } else {
        "\nrollback stopped: run it again to continue\n"
    });
    out
}

fn items_at<'v>(v: &'v Value, key: &str) -> &'v [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

const APPROVAL_HEADERS: [&str; 6] = ["id", "tool", "tier", "status", "mandate", "expires"];

fn approval_row(a: &Value) -> Vec<String> {
    [
        "id",
        "tool",
        "risk_tier",
        "status",
        "mandate_id",
        "expires_at",
    ]
    .iter()
    .map(|k| text(a, k))
    .collect()
}

fn approval_detail(a: &Value) -> String {
    let mut out = fields(
        a,
        &[
            "id",
            "status",
            "tool",
            "risk_tier",
            "mandate_id",
            "agent_id",
            "reason",
            "decided_by",
            "decided_at",
            "comment",
            "expires_at",
        ],
    );
    let arguments = a.get("arguments").cloned().unwrap_or(Value::Null);
    out.push_str(&format!(
        "arguments ({}):\n{}\n",
        text(a, "arguments_hash"),
        serde_json::to_string_pretty(&arguments).unwrap_or_default()
    ));
    out
}

/// `mandate approve|deny ID`: the API's decision, then the approval as it now stands.
async fn decide(
    client: &Client,
    out: Output,
    id: &str,
    verb: &str,
    comment: Option<String>,
) -> anyhow::Result<()> {
    let v = client
        .post(
            &format!("/v1/approvals/{}/{verb}", seg(id)?),
            &json!({"comment": comment}),
        )
        .await?;
    out.show(&v, approval_detail)
}

#[derive(Debug, Clone, Copy)]
struct Output {
    json: bool,
}

impl Output {
    /// Prints `value` as JSON, or as a table built by `render`.
    fn show(self, value: &Value, render: impl FnOnce(&Value) -> String) -> anyhow::Result<()> {
        let text = if self.json {
            format!("{}\n", serde_json::to_string_pretty(value)?)
        } else {
            render(value)
        };
        Ok(table::emit(&text)?)
    }

    fn list(
        self,
        page: &Value,
        headers: &[&str],
        row: fn(&Value) -> Vec<String>,
    ) -> anyhow::Result<()> {
        self.show(page, |page| {
            let rows: Vec<Vec<String>> = items(page).iter().map(row).collect();
            let mut out = table::render(headers, &rows);
            if let Some(next) = page.get("next").and_then(Value::as_str) {
                out.push_str(&format!("\nmore: --after {next}\n"));
            }
            out
        })
    }
}

fn items(page: &Value) -> Vec<Value> {
    page.get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// A field as display text: strings bare, null as `-`, anything else as JSON.
fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn joined(v: &Value, key: &str) -> String {
    match v.get(key).and_then(Value::as_array) {
        Some(list) if !list.is_empty() => list
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        _ => "-".to_owned(),
    }
}

fn fields(v: &Value, keys: &[&str]) -> String {
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| vec![(*k).to_owned(), text(v, k)])
        .collect();
    table::render(&["field", "value"], &rows)
}

fn token_issued(v: &Value) -> String {
    format!(
        "token {} ({}) — keep it now, it is never shown again:\n{}\n",
        text(v, "id"),
        text(v, "label"),
        text(v, "token")
    )
}

async fn human(command: HumanCommand, client: &Client, out: Output) -> anyhow::Result<()> {
    let row = |v: &Value| {
        vec![
            text(v, "id"),
            text(v, "display_name"),
            text(v, "email"),
            joined(v, "groups"),
        ]
    };
    let one = |v: &Value| table::render(&["id", "name", "email", "groups"], &[row(v)]);
    match command {
        HumanCommand::Create {
            name,
            email,
            groups,
        } => {
            let body = json!({"display_name": name, "email": email, "groups": groups});
            out.show(&client.post("/v1/humans", &body).await?, one)
        }
        HumanCommand::List { email, group, page } => {
            let mut q = page.query();
            push(&mut q, "email", email);
            push(&mut q, "group", group);
            let page = client.get("/v1/humans", &q).await?;
            out.list(&page, &["id", "name", "email", "groups"], |v| {
                vec![
                    text(v, "id"),
                    text(v, "display_name"),
                    text(v, "email"),
                    joined(v, "groups"),
                ]
            })
        }
        HumanCommand::Get { id } => out.show(
            &client
                .get(&format!("/v1/humans/{}", seg(&id)?), &[])
                .await?,
            one,
        ),
        HumanCommand::Token { id, label } => {
            let v = client
                .post(
                    &format!("/v1/humans/{}/tokens", seg(&id)?),
                    &json!({"label": label}),
                )
                .await?;
            out.show(&v, token_issued)
        }
        HumanCommand::Password { id } => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                return Err(anyhow!(
                    "no password on standard input (e.g. `mandate human password ID < file`)"
                ));
            }
            client
                .put(
                    &format!("/v1/humans/{}/password", seg(&id)?),
                    &json!({"password": password}),
                )
                .await?;
            println!("password set; the person's console sessions were ended");
            Ok(())
        }
    }
}

async fn agent(command: AgentCommand, client: &Client, out: Output) -> anyhow::Result<()> {
    let one = |v: &Value| {
        fields(
            v,
            &[
                "id",
                "name",
                "owner",
                "sponsors",
                "status",
                "credentials",
                "labels",
                "created_at",
            ],
        )
    };
    match command {
        AgentCommand::Create {
            name,
            owner,
            sponsors,
            spiffe_id,
            jwks,
            labels,
        } => {
            let mut credentials = Map::new();
            if let Some(id) = spiffe_id {
                credentials.insert("spiffe_id".into(), Value::String(id));
            }
            if let Some(path) = jwks {
                credentials.insert("jwks".into(), Value::Array(read_jwks(&path)?));
            }
            let labels: Map<String, Value> = labels
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            let body = json!({
                "name": name,
                "owner": owner,
                "sponsors": sponsors,
                "credentials": credentials,
                "labels": labels,
            });
            out.show(&client.post("/v1/agents", &body).await?, one)
        }
        AgentCommand::List {
            owner,
            status,
            page,
        } => {
            let mut q = page.query();
            push(&mut q, "owner", owner);
            push(&mut q, "status", status);
            let page = client.get("/v1/agents", &q).await?;
            out.list(&page, &["id", "name", "owner", "status"], |v| {
                vec![
                    text(v, "id"),
                    text(v, "name"),
                    text(v, "owner"),
                    text(v, "status"),
                ]
            })
        }
        AgentCommand::Get { id } => out.show(
            &client
                .get(&format!("/v1/agents/{}", seg(&id)?), &[])
                .await?,
            one,
        ),
        AgentCommand::Disable { id } => {
            let v = client
                .patch(
                    &format!("/v1/agents/{}", seg(&id)?),
                    &json!({"status": "disabled"}),
                )
                .await?;
            out.show(&v, one)
        }
        AgentCommand::Sponsors { id, sponsors } => {
            let v = client
                .patch(
                    &format!("/v1/agents/{}", seg(&id)?),
                    &json!({"sponsors": sponsors}),
                )
                .await?;
            out.show(&v, one)
        }
        AgentCommand::Enable { id } => {
            let v = client
                .patch(
                    &format!("/v1/agents/{}", seg(&id)?),
                    &json!({"status": "active"}),
                )
                .await?;
            out.show(&v, one)
        }
        AgentCommand::Token { id, label } => {
            let v = client
                .post(
                    &format!("/v1/agents/{}/tokens", seg(&id)?),
                    &json!({"label": label}),
                )
                .await?;
            out.show(&v, token_issued)
        }
    }
}

/// A JWK or a JWK Set from a file, as a list of JWKs.
fn read_jwks(path: &PathBuf) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    match value {
        Value::Object(ref o) if o.contains_key("keys") => match o.get("keys") {
            Some(Value::Array(keys)) => Ok(keys.clone()),
            _ => Err(anyhow!("{}: `keys` must be a list of JWKs", path.display())),
        },
        Value::Object(_) => Ok(vec![value]),
        _ => Err(anyhow!("{}: expected a JWK or a JWK Set", path.display())),
    }
}

/// An id as a path segment: ids are `prefix_` + base32/hex, so anything else is refused
/// before it can alter the URL.
fn seg(id: &str) -> anyhow::Result<&str> {
    if !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(id)
    } else {
        Err(anyhow!("`{id}` is not an id"))
    }
}

fn mandate_row(v: &Value) -> Vec<String> {
    let terms = v.get("terms").cloned().unwrap_or(Value::Null);
    vec![
        text(v, "id"),
        text(v, "status"),
        text(&terms, "agent_id"),
        text(&terms, "human_id"),
        text(&terms, "expires_at"),
        text(&terms, "intent"),
    ]
}

const MANDATE_HEADERS: [&str; 6] = ["id", "status", "agent", "human", "expires", "intent"];

fn mandate_detail(v: &Value) -> String {
    let terms = v.get("terms").cloned().unwrap_or(Value::Null);
    let tools: Vec<String> = terms
        .pointer("/scope/tools")
        .and_then(Value::as_array)
        .map(|ts| ts.iter().map(|t| text(t, "tool")).collect())
        .unwrap_or_default();
    let rows = vec![
        vec!["id".to_owned(), text(v, "id")],
        vec!["status".to_owned(), text(v, "status")],
        vec!["intent".to_owned(), text(&terms, "intent")],
        vec!["agent".to_owned(), text(&terms, "agent_id")],
        vec!["grantor".to_owned(), text(&terms, "human_id")],
        vec!["owners".to_owned(), joined(&terms, "owners")],
        vec!["tools".to_owned(), tools.join(",")],
        vec!["data ceiling".to_owned(), text(&terms, "data_ceiling")],
        vec!["mode".to_owned(), text(&terms, "mode")],
        vec!["budgets".to_owned(), text(&terms, "budgets")],
        vec!["approval".to_owned(), text(&terms, "approval")],
        vec!["expires".to_owned(), text(&terms, "expires_at")],
        vec!["terms hash".to_owned(), text(v, "terms_hash")],
        vec!["usage".to_owned(), text(v, "usage")],
        vec!["awaiting".to_owned(), joined(v, "awaiting")],
        vec![
            "ended".to_owned(),
            format!("{} {}", text(v, "ended_at"), text(v, "end_reason")),
        ],
    ];
    let mut out = table::render(&["field", "value"], &rows);
    let consents: Vec<Vec<String>> = v
        .get("consents")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    vec![
                        text(c, "human_id"),
                        text(c, "decision"),
                        text(c, "channel"),
                        text(c, "decided_at"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    if !consents.is_empty() {
        out.push('\n');
        out.push_str(&table::render(
            &["consenter", "decision", "channel", "at"],
            &consents,
        ));
    }
    out
}

async fn mandate(command: MandateCommand, client: &Client, out: Output) -> anyhow::Result<()> {
    match command {
        MandateCommand::Request(args) => {
            let body = (*args).terms()?;
            out.show(&client.post("/v1/mandates", &body).await?, mandate_detail)
        }
        MandateCommand::List {
            status,
            agent,
            human,
            consenter,
            page,
        } => {
            let mut q = page.query();
            push(&mut q, "status", status);
            push(&mut q, "agent", agent);
            push(&mut q, "human", human);
            push(&mut q, "consenter", consenter);
            let page = client.get("/v1/mandates", &q).await?;
            out.list(&page, &MANDATE_HEADERS, mandate_row)
        }
        MandateCommand::Get { id } => out.show(
            &client
                .get(&format!("/v1/mandates/{}", seg(&id)?), &[])
                .await?,
            mandate_detail,
        ),
        MandateCommand::Consent {
            id,
            deny,
            comment,
            terms_hash,
        } => {
            let path = format!("/v1/mandates/{}", seg(&id)?);
            let terms_hash = match terms_hash {
                Some(h) => h,
                None => {
                    let current = client.get(&path, &[]).await?;
                    if !out.json {
                        table::emit(&format!(
                            "You are answering these terms:\n{}\n",
                            mandate_detail(&current)
                        ))?;
                    }
                    text(&current, "terms_hash")
                }
            };
            let decision = if deny { "denied" } else { "granted" };
            let body = json!({"decision": decision, "terms_hash": terms_hash, "comment": comment});
            out.show(
                &client.post(&format!("{path}/consent"), &body).await?,
                mandate_detail,
            )
        }
        MandateCommand::Complete { id, reason } => {
            let v = client
                .post(
                    &format!("/v1/mandates/{}/complete", seg(&id)?),
                    &json!({"reason": reason}),
                )
                .await?;
            out.show(&v, mandate_detail)
        }
        MandateCommand::Revoke { id, reason } => {
            let v = client
                .post(
                    &format!("/v1/mandates/{}/revoke", seg(&id)?),
                    &json!({"reason": reason}),
                )
                .await?;
            out.show(&v, mandate_detail)
        }
    }
}

impl RequestArgs {
    /// The request body: the file as given, or terms built from the flags.
    fn terms(self) -> anyhow::Result<Value> {
        if let Some(path) = self.file {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            return serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()));
        }
        let expires_at = Utc::now()
            .checked_add_signed(self.expires_in)
            .ok_or_else(|| anyhow!("--expires-in is too far in the future"))?;
        let tools: Vec<Value> = self.tools.iter().map(|t| json!({"tool": t})).collect();
        let mut budgets = Map::new();
        if let Some(n) = self.max_calls {
            budgets.insert("max_calls".into(), json!(n));
        }
        if let Some(n) = self.max_amount {
            budgets.insert("max_amount".into(), json!(n));
        }
        if let Some(c) = self.currency {
            budgets.insert("currency".into(), json!(c));
        }
        let mut terms = json!({
            "agent_id": self.agent,
            "human_id": self.human,
            "intent": self.intent,
            "scope": {"tools": tools},
            "data_ceiling": self.data_ceiling,
            "mode": self.mode,
            "budgets": budgets,
            "approval": {"tiers": self.approve_tiers},
            "owners": self.owners,
            "expires_at": expires_at.to_rfc3339(),
            "max_delegation_depth": self.max_delegation_depth,
        });
        if let (Some(purpose), Some(obj)) = (self.purpose, terms.as_object_mut()) {
            obj.insert("purpose".into(), Value::String(purpose));
        }
        Ok(terms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::seconds(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::minutes(30)));
        assert_eq!(parse_duration("8h"), Ok(Duration::hours(8)));
        assert_eq!(parse_duration("7d"), Ok(Duration::days(7)));
        for bad in [
            "",
            "h",
            "0h",
            "-1h",
            "1y",
            "1.5h",
            "99999999999999999d",
            "é",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_cannot_alter_the_url() {
        assert!(seg("mnd_0193a1b2c3d4").is_ok());
        for bad in ["", "../admin", "a/b", "a?b", "a#b", "a b", "%2e%2e"] {
            assert!(seg(bad).is_err(), "{bad}");
        }
    }
}
