//! Approval notifications: a POST of the approval (without its arguments) to a
//! configured URL, signed with HMAC-SHA256 over `{timestamp}.{body}` in the
//! `Mandate-Signature: t=…,v1=…` header, so receivers can check origin and freshness.

use mandate_domain::Approval;
use mandate_types::Secret;
use ring::hmac;
use serde_json::json;

use crate::Gateway;

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

impl Gateway {
    /// Fires the approval webhook in the background (a slow receiver never holds a call).
    pub(crate) fn notify_approval(&self, approval: &Approval) {
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
            "url": format!("{}/ui/approvals/{}", self.config.public_url, approval.id),
        }));
    }

    /// POSTs `body`, signed, to the webhook (if one is configured), in the background.
    pub(crate) fn notify(&self, body: serde_json::Value) {
        let Some(hook) = self.config.webhook.clone() else {
            return;
        };
        let body = body.to_string();
        let client = self.http.clone();
        let timestamp = self.service.clock().now().timestamp();
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
