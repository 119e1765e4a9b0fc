//! A small client for the admin API, used by the CLI.

use anyhow::{Context as _, anyhow};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Talks to a running Mandate at `MANDATE_URL` with `MANDATE_TOKEN`.
#[derive(Debug)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(anyhow!(
                "MANDATE_URL must start with http:// or https://, got `{base}`"
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Self { base, token, http })
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.send(Method::GET, path, query, None).await
    }

    /// A GET whose answer is text (CSV), not JSON.
    pub async fn get_text(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<String> {
        let (status, text) = self.exchange(Method::GET, path, query, None).await?;
        if status.is_success() {
            return Ok(text);
        }
        Err(self.failure(status, &text))
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(Method::POST, path, &[], Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(Method::PUT, path, &[], Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(Method::PATCH, path, &[], Some(body)).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let (status, text) = self.exchange(method, path, query, body).await?;
        if status == StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        if status.is_success() {
            return serde_json::from_str(&text).context("the response is not JSON");
        }
        Err(self.failure(status, &text))
    }

    /// One request: its status and its body as text.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, String)> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).query(query);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.with_context(|| {
            format!(
                "cannot reach Mandate at {} (is `mandate serve` running? set MANDATE_URL)",
                self.base
            )
        })?;
        let status = response.status();
        let text = response.text().await.context("cannot read the response")?;
        Ok((status, text))
    }

    /// A refused request as an error: the problem's `detail`, or the body.
    fn failure(&self, status: StatusCode, text: &str) -> anyhow::Error {
        let problem: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let detail = problem
            .get("detail")
            .and_then(Value::as_str)
            .unwrap_or(text);
        let hint = if status == StatusCode::UNAUTHORIZED && self.token.is_none() {
            " (set MANDATE_TOKEN, e.g. `export MANDATE_TOKEN=$(cat mandate-data/admin-token)`)"
        } else {
            ""
        };
        anyhow!(
            "{} {}: {detail}{hint}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("error")
        )
    }
}
