//! The demo tool set: a fake bank, a fake file store and an outbox, in memory.
//!
//! Six tools, one per kind of risk the gateway must tell apart: reads
//! (`get_balance`, `list_files`, `read_file`), a financial write (`transfer`), mass
//! deletion (`delete_files`) and an external transfer (`send_email`, which only records
//! to the outbox). Seed data is fixed, so tests and the demo script can rely on it.

mod args;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::mcp_server::{CallContext, ToolDef, ToolError, ToolResult, ToolSet};

use args::{DeleteFiles, GetBalance, ListFiles, ReadFile, SendEmail, Transfer};

/// How a `transfer` is undone, as an operator declares it in the catalog (the
/// `compensation` of `bank.transfer`): a transfer of the same amount the other way,
/// its memo naming the transfer it reverses (the result's `id`). `send_email` and
/// `delete_files` have none: they are irreversible.
pub fn transfer_compensation() -> Value {
    json!({
        "tool": "bank.transfer",
        "arguments": {
            "from": {"argument": "/to"},
            "to": {"argument": "/from"},
            "amount_cents": {"argument": "/amount_cents"},
            "memo": {"result": "/structuredContent/id"},
        }
    })
}

/// Where the bank reads the time (the outbox stamps messages).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The demo tool set.
pub struct Bank {
    state: Mutex<State>,
    clock: Clock,
}

impl std::fmt::Debug for Bank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bank").finish_non_exhaustive()
    }
}

/// A message `send_email` recorded. Nothing is ever sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Email {
    /// The recipient address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The body text.
    pub body: String,
    /// When it was queued.
    pub queued_at: DateTime<Utc>,
}

/// A transfer `transfer` made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransferRecord {
    /// `tx-0001`, `tx-0002`, …
    pub id: String,
    /// The debited account.
    pub from: String,
    /// The credited account.
    pub to: String,
    /// The amount, in cents.
    pub amount_cents: i64,
    /// The memo, if one was given.
    pub memo: Option<String>,
}

#[derive(Debug)]
struct State {
    balances: BTreeMap<String, i64>,
    files: BTreeMap<String, String>,
    outbox: Vec<Email>,
    transfers: Vec<TransferRecord>,
}

impl Default for Bank {
    fn default() -> Self {
        Self::new()
    }
}

impl Bank {
    /// A bank holding the seed data, stamping with the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(Utc::now))
    }

    /// A bank holding the seed data, stamping with `clock`.
    pub fn with_clock(clock: Clock) -> Self {
        Self {
            state: Mutex::new(State::seed()),
            clock,
        }
    }

    /// Every account's balance, in cents.
    pub fn balances(&self) -> BTreeMap<String, i64> {
        self.lock().balances.clone()
    }

    /// One account's balance, in cents.
    pub fn balance(&self, account: &str) -> Option<i64> {
        self.lock().balances.get(account).copied()
    }

    /// Every file: path → content.
    pub fn files(&self) -> BTreeMap<String, String> {
        self.lock().files.clone()
    }

    /// The messages `send_email` recorded, oldest first.
    pub fn outbox(&self) -> Vec<Email> {
        self.lock().outbox.clone()
    }

    /// The transfers made, oldest first.
    pub fn transfers(&self) -> Vec<TransferRecord> {
        self.lock().transfers.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic: each tool mutates it in one step.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get_balance(&self, args: GetBalance) -> ToolResult {
        match self.balance(&args.account) {
            Some(cents) => ToolResult::text(format!("{}: {}", args.account, dollars(cents)))
                .with_structured(
                    json!({ "account": args.account, "balance_cents": cents, "currency": "USD" }),
                ),
            None => ToolResult::error(format!("unknown account `{}`", args.account)),
        }
    }

    async fn transfer(&self, args: Transfer, ctx: &CallContext) -> ToolResult {
        if let Err(reason) = args.check() {
            return ToolResult::error(reason);
        }
        ctx.progress(1.0, Some(2.0), Some("checking funds")).await;
        let record = {
            let mut state = self.lock();
            let (Some(&from_balance), true) = (
                state.balances.get(&args.from),
                state.balances.contains_key(&args.to),
            ) else {
                let unknown = if state.balances.contains_key(&args.from) {
                    &args.to
                } else {
                    &args.from
                };
                return ToolResult::error(format!("unknown account `{unknown}`"));
            };
            if from_balance < args.amount_cents {
                return ToolResult::error(format!(
                    "insufficient funds: `{}` holds {}, the transfer needs {}",
                    args.from,
                    dollars(from_balance),
                    dollars(args.amount_cents)
                ));
            }
            let State {
                balances,
                transfers,
                ..
            } = &mut *state;
            if let Some(balance) = balances.get_mut(&args.from) {
                *balance -= args.amount_cents;
            }
            if let Some(balance) = balances.get_mut(&args.to) {
                *balance += args.amount_cents;
            }
            let record = TransferRecord {
                id: format!("tx-{:04}", transfers.len() + 1),
                from: args.from,
                to: args.to,
                amount_cents: args.amount_cents,
                memo: args.memo,
            };
            transfers.push(record.clone());
            record
        };
        ctx.progress(2.0, Some(2.0), Some("posted")).await;
        ToolResult::text(format!(
            "{}: moved {} from {} to {}",
            record.id,
            dollars(record.amount_cents),
            record.from,
            record.to
        ))
        .with_structured(json!(record))
    }

    fn list_files(&self, args: ListFiles) -> ToolResult {
        let dir = match args.dir() {
            Ok(dir) => dir,
            Err(reason) => return ToolResult::error(reason),
        };
        let prefix = if dir == "/" {
            "/".to_owned()
        } else {
            format!("{dir}/")
        };
        let state = self.lock();
        let listed: Vec<Value> = state
            .files
            .iter()
            .filter(|(path, _)| path.starts_with(&prefix))
            .map(|(path, content)| json!({ "path": path, "bytes": content.len() }))
            .collect();
        if listed.is_empty() {
            return ToolResult::error(format!("no such directory `{dir}`"));
        }
        let text = listed
            .iter()
            .filter_map(|file| file["path"].as_str())
            .collect::<Vec<_>>()
            .join("\n");
        ToolResult::text(text).with_structured(json!({ "dir": dir, "files": listed }))
    }

    fn read_file(&self, args: ReadFile) -> ToolResult {
        if let Err(reason) = args::check_path(&args.path) {
            return ToolResult::error(reason);
        }
        match self.lock().files.get(&args.path) {
            Some(content) => ToolResult::text(content.clone())
                .with_structured(json!({ "path": args.path, "content": content })),
            None => ToolResult::error(format!("no such file `{}`", args.path)),
        }
    }

    async fn delete_files(&self, args: DeleteFiles, ctx: &CallContext) -> ToolResult {
        if let Err(reason) = args.check() {
            return ToolResult::error(reason);
        }
        let total = args.paths.len();
        let (mut deleted, mut missing) = (Vec::new(), Vec::new());
        for (done, path) in args.paths.into_iter().enumerate() {
            let removed = self.lock().files.remove(&path).is_some();
            if removed {
                deleted.push(path);
            } else {
                missing.push(path);
            }
            let done = u32::try_from(done + 1).unwrap_or(u32::MAX);
            let total = u32::try_from(total).unwrap_or(u32::MAX);
            ctx.progress(f64::from(done), Some(f64::from(total)), None)
                .await;
        }
        let structured = json!({ "deleted": deleted, "missing": missing });
        if deleted.is_empty() {
            return ToolResult::error("none of the paths exist; nothing was deleted")
                .with_structured(structured);
        }
        ToolResult::text(format!(
            "deleted {} file(s); {} not found",
            deleted.len(),
            missing.len()
        ))
        .with_structured(structured)
    }

    fn send_email(&self, args: SendEmail) -> ToolResult {
        if let Err(reason) = args.check() {
            return ToolResult::error(reason);
        }
        let email = Email {
            to: args.to,
            subject: args.subject,
            body: args.body,
            queued_at: (self.clock)(),
        };
        let position = {
            let mut state = self.lock();
            state.outbox.push(email.clone());
            state.outbox.len()
        };
        ToolResult::text(format!(
            "queued message #{position} to {} in the demo outbox (nothing is sent)",
            email.to
        ))
        .with_structured(
            json!({ "outbox_position": position, "to": email.to, "subject": email.subject }),
        )
    }
}

#[async_trait]
impl ToolSet for Bank {
    fn tools(&self) -> Vec<ToolDef> {
        args::definitions()
    }

    async fn call(
        &self,
        name: &str,
        arguments: Value,
        ctx: &CallContext,
    ) -> Result<ToolResult, ToolError> {
        let result = match name {
            "get_balance" => args::parse(name, arguments).map(|args| self.get_balance(args)),
            "transfer" => match args::parse(name, arguments) {
                Ok(args) => Ok(self.transfer(args, ctx).await),
                Err(error) => Err(error),
            },
            "list_files" => args::parse(name, arguments).map(|args| self.list_files(args)),
            "read_file" => args::parse(name, arguments).map(|args| self.read_file(args)),
            "delete_files" => match args::parse(name, arguments) {
                Ok(args) => Ok(self.delete_files(args, ctx).await),
                Err(error) => Err(error),
            },
            "send_email" => args::parse(name, arguments).map(|args| self.send_email(args)),
            other => return Err(ToolError::UnknownTool(other.to_owned())),
        };
        Ok(result.unwrap_or_else(|error| error))
    }
}

impl State {
    fn seed() -> Self {
        let balances = [
            ("alice-checking", 250_000),
            ("alice-savings", 1_000_000),
            ("bob-checking", 42_000),
            ("carol-checking", 500),
        ];
        let files = [
            (
                "/home/alice/todo.txt",
                "pay rent\ncall the bank about the card\n",
            ),
            (
                "/home/alice/reports/q3-expenses.csv",
                "month,category,cents\n2025-07,travel,120000\n2025-08,software,45000\n2025-09,travel,98000\n",
            ),
            (
                "/home/alice/reports/q4-forecast.csv",
                "month,category,cents\n2025-10,travel,100000\n2025-11,software,50000\n",
            ),
            (
                "/shared/handbook.md",
                "# Team handbook\n\nExpenses over $500 need a second approval.\n",
            ),
            (
                "/shared/payroll/salaries.csv",
                "name,annual_cents\nalice,12000000\nbob,9800000\n",
            ),
        ];
        Self {
            balances: balances
                .iter()
                .map(|(account, cents)| ((*account).to_owned(), *cents))
                .collect(),
            files: files
                .iter()
                .map(|(path, content)| ((*path).to_owned(), (*content).to_owned()))
                .collect(),
            outbox: Vec::new(),
            transfers: Vec::new(),
        }
    }
}

fn dollars(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}${}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
mod tests;
