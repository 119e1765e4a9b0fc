#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]

//! The OpenID AuthZEN conformance fixtures, run over HTTP against a real server on
//! loopback: every certification case, `todo-decisions.json` and
//! `gateway-decisions.json`, each against the Cedar world `examples/authzen/suites.json`
//! assigns it (loaded through `PUT /v1/policies`). Prints `N passed, N failed` per file.
//!
//! Search results are checked as the certification suite checks them: every expected
//! result must be returned (pages followed to the end); extra results are counted and
//! shown, not failed. Cases without an expected response must answer 200 with a
//! boolean decision (their values are the interop decisions, checked from
//! `todo-decisions.json`).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mandate_core::{Bootstrap, Service};
use mandate_server::Metrics;
use mandate_store_sql::SqliteStore;
use mandate_types::SystemClock;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `../shared/conformance/authzen` beside the checkout when present, else the copy.
fn fixtures() -> PathBuf {
    let outside = repo().join("../shared/conformance/authzen");
    if outside.join("certification-cases.json").exists() {
        outside
    } else {
        repo().join("conformance/authzen")
    }
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

struct Server {
    base: String,
    admin: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
        let service = Service::new(store, Arc::new(SystemClock));
        let Bootstrap::Created { admin, .. } = service.bootstrap().await.unwrap() else {
            panic!("a new store bootstraps");
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = mandate_server::app_at(service, Metrics::new("sqlite"), &base);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Server {
            base,
            admin: admin.secret.expose().clone(),
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    async fn load_world(&self, world: &str) {
        let dir = repo().join("examples/authzen").join(world);
        let text = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
        let body = json!({
            "policies": [{ "name": "policies.cedar", "text": text("policies.cedar") }],
            "schemas": [{ "name": "schema.cedarschema", "text": text("schema.cedarschema") }],
            "entities": { "name": "entities.json", "text": text("entities.json") },
        });
        let reply = self
            .http
            .put(format!("{}/v1/policies", self.base))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = reply.status();
        assert_eq!(
            status,
            200,
            "loading world {world}: {}",
            reply.text().await.unwrap()
        );
    }

    async fn post(&self, family: &str, body: &Value) -> (u16, Value) {
        let reply = self
            .http
            .post(format!("{}/access/v1/{family}", self.base))
            .bearer_auth(&self.admin)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = reply.status().as_u16();
        (status, reply.json().await.unwrap_or(Value::Null))
    }
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: Vec<String>,
    notes: Vec<String>,
}

impl Tally {
    fn record(&mut self, name: &str, result: Result<Option<String>, String>) {
        match result {
            Ok(note) => {
                self.passed += 1;
                if let Some(note) = note {
                    self.notes.push(format!("{name}: {note}"));
                }
            }
            Err(why) => self.failed.push(format!("{name}: {why}")),
        }
    }

    fn report(&self, file: &str) {
        println!(
            "{file}: {} passed, {} failed",
            self.passed,
            self.failed.len()
        );
        for failure in &self.failed {
            println!("  FAILED {failure}");
        }
        for note in &self.notes {
            println!("  note {note}");
        }
    }
}

/// Sends one certification case exactly as its fields describe.
async fn run_case(server: &Server, case: &Value) -> Result<Option<String>, String> {
    let family = case["endpoint_family"].as_str().unwrap();
    let url = format!("{}/access/v1/{family}", server.base);
    let method = case["http_method"].as_str().unwrap_or("POST");
    let mut request = server.http.request(method.parse().unwrap(), &url).header(
        "content-type",
        case["content_type"].as_str().unwrap_or("application/json"),
    );
    if case["skipAuthentication"] != json!(true) {
        let token = if case["corruptAuthCredentials"] == json!(true) {
            "mdt_corrupted-credentials".to_owned()
        } else {
            server.admin.clone()
        };
        request = request.bearer_auth(token);
    }
    let request_id = "conformance-request-id-4711";
    if case["includeXRequestIdHeader"] == json!(true) {
        request = request.header("x-request-id", request_id);
    }
    let body = match case["raw_body"].as_str() {
        Some(raw) => raw.to_owned(),
        None => case["payload"].to_string(),
    };
    let reply = request.body(body).send().await.map_err(|e| e.to_string())?;
    let status = reply.status().as_u16();
    let echoed = reply
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let body: Value = reply.json().await.unwrap_or(Value::Null);

    if let Some(allowed) = case["expected_http_status"].as_array() {
        return if allowed
            .iter()
            .any(|s| s.as_u64() == Some(u64::from(status)))
        {
            Ok(None)
        } else {
            Err(format!(
                "status {status}, expected one of {allowed:?}: {body}"
            ))
        };
    }
    if status != 200 {
        return Err(format!("status {status}: {body}"));
    }
    if case["includeXRequestIdHeader"] == json!(true) && echoed.as_deref() != Some(request_id) {
        return Err(format!("X-Request-ID not echoed (got {echoed:?})"));
    }
    let expected = &case["expected_response"];
    match family {
        "evaluation" => match expected.get("decision") {
            Some(want) if body["decision"] == *want => Ok(None),
            Some(want) => Err(format!(
                "decision {}, expected {want}: {body}",
                body["decision"]
            )),
            None if body["decision"].is_boolean() => Ok(None),
            None => Err(format!("no boolean decision: {body}")),
        },
        "evaluations" => match expected.get("evaluations") {
            Some(want) => compare_batch(&body, want),
            None if body["decision"].is_boolean() || body["evaluations"].is_array() => Ok(None),
            None => Err(format!("neither a decision nor evaluations: {body}")),
        },
        _ => {
            // Follow pages to the end, as the certification suite does.
            let mut results = body["results"].as_array().cloned().unwrap_or_default();
            let mut token = body["page"]["next_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let mut pages = 1;
            while !token.is_empty() {
                let mut next = case["payload"].clone();
                next["page"]["token"] = json!(token);
                let (status, page) = server.post(family, &next).await;
                if status != 200 {
                    return Err(format!("page {pages}: status {status}: {page}"));
                }
                results.extend(page["results"].as_array().cloned().unwrap_or_default());
                token = page["page"]["next_token"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                pages += 1;
                if pages > 1_000 {
                    return Err("pagination does not end".into());
                }
            }
            compare_search(
                &results,
                expected["results"].as_array().cloned().unwrap_or_default(),
            )
            .map(|note| note.map(|n| format!("{n} ({pages} page(s))")))
        }
    }
}

fn compare_batch(body: &Value, want: &Value) -> Result<Option<String>, String> {
    let got: Vec<&Value> = body["evaluations"]
        .as_array()
        .map(|items| items.iter().map(|i| &i["decision"]).collect())
        .unwrap_or_default();
    let want: Vec<&Value> = want
        .as_array()
        .map(|items| items.iter().map(|i| &i["decision"]).collect())
        .unwrap_or_default();
    if got == want {
        Ok(None)
    } else {
        Err(format!("decisions {got:?}, expected {want:?}"))
    }
}

fn compare_search(got: &[Value], want: Vec<Value>) -> Result<Option<String>, String> {
    let got_set: HashSet<String> = got.iter().map(Value::to_string).collect();
    let missing: Vec<String> = want
        .iter()
        .map(Value::to_string)
        .filter(|w| !got_set.contains(w))
        .collect();
    if !missing.is_empty() {
        return Err(format!("missing {missing:?}; got {got:?}"));
    }
    if got.len() > want.len() {
        return Ok(Some(format!(
            "{} result(s) beyond the expected {}",
            got.len() - want.len(),
            want.len()
        )));
    }
    Ok(None)
}

/// `{evaluation: [{request, expected: bool}], evaluations: [{request, expected: [..]}]}`.
async fn run_decisions(server: &Server, file: &Value, tally: &mut Tally) {
    for (i, item) in file["evaluation"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let (status, body) = server.post("evaluation", &item["request"]).await;
        let result = if status == 200 && body["decision"] == item["expected"] {
            Ok(None)
        } else {
            Err(format!(
                "status {status}, decision {}, expected {}",
                body["decision"], item["expected"]
            ))
        };
        tally.record(&format!("evaluation[{i}]"), result);
    }
    for (i, item) in file["evaluations"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let (status, body) = server.post("evaluations", &item["request"]).await;
        let result = if status == 200 {
            compare_batch(&body, &item["expected"])
        } else {
            Err(format!("status {status}: {body}"))
        };
        tally.record(&format!("evaluations[{i}]"), result);
    }
}

#[tokio::test]
async fn authzen_conformance_over_http() {
    let dir = fixtures();
    let suites = read_json(&repo().join("examples/authzen/suites.json"));
    let server = Server::start().await;

    // Certification cases, grouped by world (cases needing none run first).
    let cases = read_json(&dir.join("certification-cases.json"));
    let assigned = suites["certification-cases.json"].as_object().unwrap();
    let mut by_world: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for case in cases["cases"].as_array().unwrap() {
        let name = case["testName"].as_str().unwrap();
        let world = match assigned.get(name) {
            Some(Value::String(w)) => w.clone(),
            Some(Value::Null) => String::new(),
            _ => panic!("examples/authzen/suites.json does not assign `{name}`"),
        };
        by_world.entry(world).or_default().push(case);
    }
    let mut certification = Tally::default();
    for (world, cases) in &by_world {
        if !world.is_empty() {
            server.load_world(world).await;
        }
        for case in cases {
            let name = case["testName"].as_str().unwrap();
            certification.record(name, run_case(&server, case).await);
        }
    }
    certification.report("certification-cases.json");

    let mut interop = Vec::new();
    for file in ["todo-decisions.json", "gateway-decisions.json"] {
        let world = suites[file].as_str().unwrap();
        server.load_world(world).await;
        let mut tally = Tally::default();
        run_decisions(&server, &read_json(&dir.join(file)), &mut tally).await;
        tally.report(file);
        interop.push(tally);
    }

    let failed = certification.failed.len() + interop.iter().map(|t| t.failed.len()).sum::<usize>();
    assert_eq!(
        failed, 0,
        "AuthZEN conformance failures (see the report above)"
    );
    assert!(certification.passed >= 369 && interop.iter().all(|t| t.passed > 0));
}

#[test]
fn vendored_fixtures_match_the_source() {
    let outside = repo().join("../shared/conformance/authzen");
    let copy = repo().join("conformance/authzen");
    if !outside.exists() {
        return; // A machine without the outside directory runs the copy.
    }
    for entry in walk(&outside) {
        let relative = entry.strip_prefix(&outside).unwrap();
        let theirs = std::fs::read(&entry).unwrap();
        let ours = std::fs::read(copy.join(relative))
            .unwrap_or_else(|e| panic!("conformance/authzen/{}: {e}", relative.display()));
        assert!(
            theirs == ours,
            "conformance/authzen/{} differs from its source",
            relative.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
