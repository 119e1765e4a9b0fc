//! Approval notifications: a POST of the approval (without its arguments) to a
//! configured URL, signed with HMAC-SHA256 over `{timestamp}.{body}` in the
//! `Mandate-Signature: t=…,v1=…` header, so receivers can check origin and freshness.

use std::sync::Arc;

use mandate_core::calls::Notifier;
use mandate_domain::Approval;
use mandate_types::{Clock, Secret};
use ring::hmac;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    pub secret: Secret<String>,
}

/// The signature header's value for `body` sent at `timestamp` (seconds).
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// Where the core's notices go: the webhook, when one is configured.
#[derive(Debug)]
pub(crate) struct Notices {
    pub(crate) webhook: Option<Webhook>,
    pub(crate) public_url: String,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) http: reqwest::Client,
}

impl Notifier for Notices {
    /// Fires the approval webhook in the background (a slow receiver never holds a call).
    fn approval_requested(&self, approval: &Approval) {
        self.notify(json!({
            "type": "approval.requested",
            "approval_id": approval.id,
            "tenant_id": approval.call.tenant_id,
            "mandate_id": approval.call.mandate_id,
            "agent_id": approval.call.agent_id,
            "human_id": approval.call.human_id,
            "tool": approval.call.tool,
            "risk_tier": approval.call.risk_tier,
            "arguments_hash": approval.call.arguments_hash,
            "expires_at": approval.expires_at,
            "url": format!("{}/ui/approvals/{}", self.public_url, approval.id),
        }));
    }

    fn drift_alert(&self, body: Value) {
        self.notify(body);
    }
}

impl Notices {
    /// POSTs `body`, signed, to the webhook (if one is configured), in the background.
    fn notify(&self, body: Value) {
        let Some(hook) = self.webhook.clone() else {
            return;
        };
        let body = body.to_string();
        let client = self.http.clone();
        let timestamp = self.clock.now().timestamp();
        tokio::spawn(async move {
            let sig = signature(hook.secret.expose(), timestamp, body.as_bytes());
            let sent = client
                .post(&hook.url)
                .header("content-type", "application/json")
                .header("mandate-signature", sig)
                .timeout(std::time::Duration::from_secs(10))
                .body(body)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => tracing::warn!(status = r.status().as_u16(), "webhook refused"),
                Err(e) => tracing::warn!(error = %e.without_url(), "webhook failed"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_time_and_body() {
        let a = signature("s3cret", 1_700_000_000, b"{}");
        assert!(a.starts_with("t=1700000000,v1="));
        assert_eq!(a.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(a, signature("s3cret", 1_700_000_001, b"{}"));
        assert_ne!(a, signature("s3cret", 1_700_000_000, b"{ }"));
        assert_ne!(a, signature("other", 1_700_000_000, b"{}"));
    }
}
