//! `mandate policy validate DIR` and `mandate policy test FILE`: offline, for a policy
//! repository's CI. Both compile the set exactly as the server does (Mandate's schema
//! and built-ins plus the directory's files). `mandate policy replay` (in
//! [`crate::replay`]) decides recorded decisions again under a candidate set.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use clap::Subcommand;
use mandate_policy::{CompiledSet, PolicySource, parse_evaluation};
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Compile a policy directory (`*.cedar`, `*.cedarschema`, `entities.json`) against
    /// Mandate's schema; print every problem with file, line and column.
    Validate { dir: PathBuf },
    /// Run decision tests: a JSON file `{"policies": "DIR", "cases": [{"name",
    /// "request": <AuthZEN evaluation request>, "decision": true|false,
    /// "policies": ["id", …]}]}`. `policies` defaults to the file's directory; a
    /// case's `policies`, when given, must all be among the determining ones.
    /// Exits non-zero on any mismatch.
    Test { file: PathBuf },
    /// Decide every recorded decision since TIME again under the candidate set in DIR
    /// (offline, from the store: --data or --database-url) and list each whose answer
    /// would change. Exits 0 (a report), 2 on bad input.
    Replay(crate::replay::ReplayArgs),
}

impl PolicyCommand {
    pub async fn run(self, json: bool) -> anyhow::Result<()> {
        match self {
            PolicyCommand::Validate { dir } => {
                let set = compile(&dir)?;
                println!(
                    "ok: {} operator policies, {} in all ({})",
                    set.operator_policy_count(),
                    set.policies().len(),
                    set.digest()
                );
                Ok(())
            }
            PolicyCommand::Test { file } => test(&file),
            PolicyCommand::Replay(args) => crate::replay::run(args, json).await,
        }
    }
}

pub(crate) fn compile(dir: &Path) -> anyhow::Result<CompiledSet> {
    let source = PolicySource::from_dir(dir).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
    CompiledSet::compile(source).map_err(|e| {
        for problem in &e.problems {
            eprintln!("{problem}");
        }
        anyhow!(
            "{}: the policy set does not compile ({} problem(s))",
            dir.display(),
            e.problems.len()
        )
    })
}

fn test(file: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let spec: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let base = file.parent().unwrap_or(Path::new("."));
    let dir = match spec.get("policies") {
        None => base.to_owned(),
        Some(Value::String(d)) => base.join(d),
        Some(_) => bail!("{}: `policies` must be a directory path", file.display()),
    };
    let set = compile(&dir)?;
    let Some(cases) = spec.get("cases").and_then(Value::as_array) else {
        bail!("{}: `cases` must be an array", file.display());
    };
    let (mut passed, mut failed) = (0usize, 0usize);
    for (i, case) in cases.iter().enumerate() {
        let name = case
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("case {}", i + 1));
        let outcome = run_case(&set, case);
        match outcome {
            Ok(()) => {
                passed += 1;
                println!("ok    {name}");
            }
            Err(why) => {
                failed += 1;
                println!("FAIL  {name}: {why}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} policy test(s) failed");
    }
    Ok(())
}

fn run_case(set: &CompiledSet, case: &Value) -> Result<(), String> {
    let request = case.get("request").ok_or("no `request`")?;
    let request = parse_evaluation(request).map_err(|e| format!("bad request: {e}"))?;
    let want = case
        .get("decision")
        .and_then(Value::as_bool)
        .ok_or("`decision` must be true or false")?;
    let got = set.decide_access(&request);
    let verdict = |allowed: bool| if allowed { "allow" } else { "deny" };
    if got.allowed != want {
        return Err(format!(
            "expected {}, got {} ({}; policies: {})",
            verdict(want),
            verdict(got.allowed),
            got.reason,
            got.policies.join(", ")
        ));
    }
    if let Some(expected) = case.get("policies").and_then(Value::as_array) {
        for id in expected.iter().filter_map(Value::as_str) {
            if !got.policies.iter().any(|p| p == id) {
                return Err(format!(
                    "{} as expected, but not by `{id}` (determining: {})",
                    verdict(got.allowed),
                    got.policies.join(", ")
                ));
            }
        }
    }
    Ok(())
}
