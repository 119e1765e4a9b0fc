//! Tool definitions and typed arguments: untrusted JSON becomes a typed value once, here.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::mcp_server::{ToolAnnotations, ToolDef, ToolResult};

const MAX_PATH: usize = 1024;
const MAX_PATHS: usize = 1000;
const MAX_MEMO: usize = 140;
const MAX_SUBJECT: usize = 200;
const MAX_BODY: usize = 100_000;
const MAX_ADDRESS: usize = 254;
const MAX_ACCOUNT: usize = 64;
/// One million dollars: far above any seeded balance, and far from `i64` overflow.
const MAX_AMOUNT_CENTS: i64 = 100_000_000;

/// Parses `arguments` for tool `name`; a failure is the `isError` result to return.
pub(super) fn parse<T: DeserializeOwned>(name: &str, arguments: Value) -> Result<T, ToolResult> {
    serde_json::from_value(arguments)
        .map_err(|error| ToolResult::error(format!("invalid arguments for `{name}`: {error}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GetBalance {
    pub(super) account: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Transfer {
    pub(super) from: String,
    pub(super) to: String,
    pub(super) amount_cents: i64,
    #[serde(default)]
    pub(super) memo: Option<String>,
}

impl Transfer {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.from.len() > MAX_ACCOUNT || self.to.len() > MAX_ACCOUNT {
            return Err(format!("account names are at most {MAX_ACCOUNT} bytes"));
        }
        if self.amount_cents <= 0 {
            return Err(format!(
                "`amount_cents` must be positive, got {}",
                self.amount_cents
            ));
        }
        if self.amount_cents > MAX_AMOUNT_CENTS {
            return Err(format!("`amount_cents` is at most {MAX_AMOUNT_CENTS}"));
        }
        if self.from == self.to {
            return Err("`from` and `to` must be different accounts".into());
        }
        if self
            .memo
            .as_ref()
            .is_some_and(|memo| memo.chars().count() > MAX_MEMO)
        {
            return Err(format!("`memo` is at most {MAX_MEMO} characters"));
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListFiles {
    #[serde(default)]
    dir: Option<String>,
}

impl ListFiles {
    /// The directory, without a trailing slash (`/` for the root).
    pub(super) fn dir(&self) -> Result<String, String> {
        let dir = self.dir.as_deref().unwrap_or("/");
        check_path(dir)?;
        let trimmed = dir.trim_end_matches('/');
        Ok(if trimmed.is_empty() {
            "/".into()
        } else {
            trimmed.into()
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadFile {
    pub(super) path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeleteFiles {
    pub(super) paths: Vec<String>,
}

impl DeleteFiles {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.paths.is_empty() {
            return Err("`paths` must name at least one file".into());
        }
        if self.paths.len() > MAX_PATHS {
            return Err(format!("`paths` holds at most {MAX_PATHS} entries"));
        }
        self.paths.iter().try_for_each(|path| check_path(path))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SendEmail {
    pub(super) to: String,
    pub(super) subject: String,
    pub(super) body: String,
}

impl SendEmail {
    pub(super) fn check(&self) -> Result<(), String> {
        if !is_address(&self.to) {
            return Err(format!("`to` is not an email address: `{}`", self.to));
        }
        if self.subject.chars().count() > MAX_SUBJECT {
            return Err(format!("`subject` is at most {MAX_SUBJECT} characters"));
        }
        if self.subject.chars().any(char::is_control) {
            return Err("`subject` must not contain control characters".into());
        }
        if self.body.len() > MAX_BODY {
            return Err(format!("`body` is at most {MAX_BODY} bytes"));
        }
        Ok(())
    }
}

/// An absolute path without `.`/`..` segments, empty segments or control characters.
pub(super) fn check_path(path: &str) -> Result<(), String> {
    let well_formed = path.starts_with('/')
        && path.len() <= MAX_PATH
        && !path.chars().any(char::is_control)
        && path
            .trim_end_matches('/')
            .split('/')
            .skip(1)
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..");
    if well_formed || path == "/" {
        Ok(())
    } else {
        Err(format!("not an absolute, normalized path: `{path}`"))
    }
}

/// `local@domain.tld`, one `@`, no whitespace or control characters (no header injection).
fn is_address(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    address.len() <= MAX_ADDRESS
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !address.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub(super) fn definitions() -> Vec<ToolDef> {
    let read_only = ToolAnnotations {
        read_only_hint: true,
        destructive_hint: false,
        idempotent_hint: true,
        open_world_hint: false,
    };
    let path_schema = json!({ "type": "string", "description": "An absolute path, e.g. /home/alice/todo.txt", "maxLength": MAX_PATH });
    vec![
        ToolDef {
            name: "get_balance".into(),
            title: Some("Get account balance".into()),
            description: "Returns the balance of one bank account, in cents.".into(),
            input_schema: json!({
                "type": "object",
                "properties": { "account": { "type": "string", "description": "The account id, e.g. alice-checking", "maxLength": MAX_ACCOUNT } },
                "required": ["account"],
                "additionalProperties": false,
            }),
            annotations: read_only,
        },
        ToolDef {
            name: "transfer".into(),
            title: Some("Transfer money".into()),
            description: "Moves money between two accounts of this bank. Refuses overdrafts. Financial: moves money.".into(),
            input_schema: json!({
                "type": "object",
                "properties": {
                    "from": { "type": "string", "description": "The account to debit", "maxLength": MAX_ACCOUNT },
                    "to": { "type": "string", "description": "The account to credit", "maxLength": MAX_ACCOUNT },
                    "amount_cents": { "type": "integer", "minimum": 1, "maximum": MAX_AMOUNT_CENTS, "description": "The amount, in cents" },
                    "memo": { "type": "string", "maxLength": MAX_MEMO },
                },
                "required": ["from", "to", "amount_cents"],
                "additionalProperties": false,
            }),
            annotations: ToolAnnotations {
                read_only_hint: false,
                destructive_hint: true,
                idempotent_hint: false,
                open_world_hint: false,
            },
        },
        ToolDef {
            name: "list_files".into(),
            title: Some("List files".into()),
            description: "Lists the files under a directory (all files when `dir` is omitted).".into(),
            input_schema: json!({
                "type": "object",
                "properties": { "dir": path_schema },
                "additionalProperties": false,
            }),
            annotations: read_only,
        },
        ToolDef {
            name: "read_file".into(),
            title: Some("Read a file".into()),
            description: "Returns the content of one file.".into(),
            input_schema: json!({
                "type": "object",
                "properties": { "path": path_schema },
                "required": ["path"],
                "additionalProperties": false,
            }),
            annotations: read_only,
        },
        ToolDef {
            name: "delete_files".into(),
            title: Some("Delete files".into()),
            description: "Deletes every listed file at once (mass deletion). Reports progress per file.".into(),
            input_schema: json!({
                "type": "object",
                "properties": {
                    "paths": { "type": "array", "items": path_schema, "minItems": 1, "maxItems": MAX_PATHS },
                },
                "required": ["paths"],
                "additionalProperties": false,
            }),
            annotations: ToolAnnotations {
                read_only_hint: false,
                destructive_hint: true,
                idempotent_hint: true,
                open_world_hint: false,
            },
        },
        ToolDef {
            name: "send_email".into(),
            title: Some("Send an email".into()),
            description: "Sends an email to any address (external transfer of data). The demo only records it in an outbox.".into(),
            input_schema: json!({
                "type": "object",
                "properties": {
                    "to": { "type": "string", "format": "email", "maxLength": MAX_ADDRESS },
                    "subject": { "type": "string", "maxLength": MAX_SUBJECT },
                    "body": { "type": "string", "maxLength": MAX_BODY },
                },
                "required": ["to", "subject", "body"],
                "additionalProperties": false,
            }),
            annotations: ToolAnnotations {
                read_only_hint: false,
                destructive_hint: false,
                idempotent_hint: false,
                open_world_hint: true,
            },
        },
    ]
}
