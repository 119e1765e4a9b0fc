//! Audit events as OpenTelemetry logs (OTLP/HTTP, JSON encoding): one `LogRecord` per
//! event, its kind as the body and event name, every field as an attribute (`data` as
//! a JSON string), so a collector can route and search them. The event's own hash and
//! `prev_hash` travel along, so exported copies stay checkable against the ledger.

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

/// The OTLP resource and scope wrapped around a batch of events.
pub fn request(events: &[Value]) -> Value {
    let records: Vec<Value> = events.iter().map(record).collect();
    json!({
        "resourceLogs": [{
            "resource": {"attributes": [
                attr_str("service.name", "mandate"),
                attr_str("service.version", env!("CARGO_PKG_VERSION")),
            ]},
            "scopeLogs": [{
                "scope": {"name": "mandate.audit", "version": "1"},
                "logRecords": records,
            }],
        }]
    })
}

fn attr_str(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

fn nanos(at: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(at)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .map(|n| n.to_string())
        .unwrap_or_else(|| "0".to_owned())
}

fn record(event: &Value) -> Value {
    let kind = event
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let mut attributes = vec![attr_str("mandate.event.kind", kind)];
    if let Some(seq) = event.get("seq").and_then(Value::as_u64) {
        attributes
            .push(json!({"key": "mandate.event.seq", "value": {"intValue": seq.to_string()}}));
    }
    for (field, key) in [
        ("tenant_id", "mandate.tenant_id"),
        ("mandate_id", "mandate.mandate_id"),
        ("agent_id", "mandate.agent_id"),
        ("human_id", "mandate.human_id"),
        ("hash", "mandate.event.hash"),
        ("prev_hash", "mandate.event.prev_hash"),
    ] {
        if let Some(v) = event.get(field).and_then(Value::as_str) {
            attributes.push(attr_str(key, v));
        }
    }
    if let Some(actor) = event.get("actor").and_then(Value::as_array) {
        let values: Vec<Value> = actor
            .iter()
            .filter_map(Value::as_str)
            .map(|a| json!({"stringValue": a}))
            .collect();
        attributes
            .push(json!({"key": "mandate.actor", "value": {"arrayValue": {"values": values}}}));
    }
    if let Some(data) = event.get("data") {
        attributes.push(attr_str("mandate.event.data", &data.to_string()));
    }
    let denied = kind == "decision"
        && event.pointer("/data/allowed").and_then(Value::as_bool) == Some(false);
    let (severity, text) = match kind {
        "drift.alert" => (13, "WARN"),
        _ if denied => (13, "WARN"),
        _ => (9, "INFO"),
    };
    let time = event
        .get("at")
        .and_then(Value::as_str)
        .map(nanos)
        .unwrap_or_else(|| "0".into());
    json!({
        "timeUnixNano": time,
        "observedTimeUnixNano": time,
        "severityNumber": severity,
        "severityText": text,
        "eventName": kind,
        "body": {"stringValue": kind},
        "attributes": attributes,
    })
}

/// Sends one batch to a collector's `/v1/logs` endpoint.
pub async fn send(http: &reqwest::Client, url: &str, events: &[Value]) -> anyhow::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .json(&request(events))
        .send()
        .await
        .with_context(|| format!("cannot reach the OTLP collector at {url}"))?;
    let status = response.status();
    if !status.is_success() {
        let body: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        bail!(
            "the OTLP collector refused the batch: HTTP {} {body}",
            status.as_u16()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_log_records_with_every_field() {
        let event = json!({
            "seq": 7, "at": "2026-11-23T10:00:00.000001Z", "kind": "decision",
            "tenant_id": "ten_1", "mandate_id": "mnd_1", "actor": ["agent:agt_1"],
            "data": {"allowed": false, "tool": "bank.transfer"},
            "hash": "sha256:aa", "prev_hash": "sha256:bb",
        });
        let body = request(&[event]);
        let record = &body["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(record["timeUnixNano"], "1795428000000001000");
        assert_eq!(record["severityText"], "WARN", "a denial is a warning");
        assert_eq!(record["body"]["stringValue"], "decision");
        let attrs = record["attributes"].as_array().unwrap();
        let find = |k: &str| attrs.iter().find(|a| a["key"] == k).cloned().unwrap();
        assert_eq!(find("mandate.event.seq")["value"]["intValue"], "7");
        assert_eq!(
            find("mandate.event.hash")["value"]["stringValue"],
            "sha256:aa"
        );
        assert!(
            find("mandate.event.data")["value"]["stringValue"]
                .as_str()
                .unwrap()
                .contains("bank.transfer")
        );
    }
}
