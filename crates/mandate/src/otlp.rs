//! Audit events as OpenTelemetry logs, sent with the SDK's OTLP/HTTP (protobuf) log
//! exporter: one log record per event, its kind as the body and event name, every field
//! as an attribute (`data` as a JSON string), so a collector can route and search them.
//! The event's own hash and `prev_hash` travel along, so exported copies stay checkable
//! against the ledger.
//!
//! Each batch is exported directly (no background processor), so a collector that
//! refuses a batch — an error status, or a success that reports rejected records —
//! fails the export with a clear error: nothing is dropped silently.

use std::str::FromStr as _;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use mandate_audit::EventKind;
use opentelemetry::InstrumentationScope;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::logs::{
    LogBatch, LogExporter as _, SdkLogRecord, SdkLogger, SdkLoggerProvider,
};
use serde_json::Value;

use crate::telemetry::{Http, audit_resource};

const SCOPE: &str = "mandate.audit";

/// A collector's logs endpoint and what records are made with.
#[derive(Debug)]
pub struct Exporter {
    url: String,
    exporter: opentelemetry_otlp::LogExporter,
    scope: InstrumentationScope,
    logger: SdkLogger,
    /// Keeps the logger's provider alive (it has no processor: records only).
    _provider: SdkLoggerProvider,
}

impl Exporter {
    /// An exporter to `url` (e.g. `http://127.0.0.1:4318/v1/logs`). Inside a Tokio
    /// runtime.
    pub fn new(url: &str) -> anyhow::Result<Exporter> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!("--otlp must be an http:// or https:// URL");
        }
        let mut exporter = opentelemetry_otlp::LogExporter::builder()
            .with_http()
            .with_http_client(Http::new(Some(rejected_records))?)
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(Duration::from_secs(30))
            .build()
            .with_context(|| format!("cannot set up the OTLP exporter for {url}"))?;
        exporter.set_resource(&audit_resource());
        let scope = InstrumentationScope::builder(SCOPE)
            .with_version("1")
            .build();
        let provider = SdkLoggerProvider::builder().build();
        let logger = provider.logger_with_scope(scope.clone());
        Ok(Exporter {
            url: url.to_owned(),
            exporter,
            scope,
            logger,
            _provider: provider,
        })
    }

    /// Sends one batch; an error unless the collector took all of it.
    pub async fn send(&self, events: &[Value]) -> anyhow::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let records: Vec<SdkLogRecord> = events.iter().map(|e| record(&self.logger, e)).collect();
        let pairs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
            records.iter().map(|r| (r, &self.scope)).collect();
        self.exporter
            .export(LogBatch::new(&pairs))
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "the OTLP collector at {} refused the batch of {} events: {e}",
                    self.url,
                    events.len()
                )
            })
    }
}

/// An OTLP partial success that rejected records, as an error message.
fn rejected_records(body: &[u8]) -> Option<String> {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
    use prost::Message as _;
    let partial = ExportLogsServiceResponse::decode(body)
        .ok()?
        .partial_success?;
    (partial.rejected_log_records > 0).then(|| {
        format!(
            "{} log records rejected: {}",
            partial.rejected_log_records,
            partial.error_message.chars().take(300).collect::<String>()
        )
    })
}

fn time(at: &str) -> SystemTime {
    chrono::DateTime::parse_from_rfc3339(at)
        .ok()
        .map(SystemTime::from)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn text(value: &str) -> AnyValue {
    AnyValue::String(value.to_owned().into())
}

fn record(logger: &SdkLogger, event: &Value) -> SdkLogRecord {
    let mut record = logger.create_log_record();
    let kind = event
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    record.add_attribute("mandate.event.kind", text(kind));
    if let Some(seq) = event
        .get("seq")
        .and_then(Value::as_u64)
        .and_then(|s| i64::try_from(s).ok())
    {
        record.add_attribute("mandate.event.seq", AnyValue::Int(seq));
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
            record.add_attribute(key, text(v));
        }
    }
    if let Some(actor) = event.get("actor").and_then(Value::as_array) {
        let values: Vec<AnyValue> = actor.iter().filter_map(Value::as_str).map(text).collect();
        record.add_attribute("mandate.actor", AnyValue::ListAny(Box::new(values)));
    }
    if let Some(data) = event.get("data") {
        record.add_attribute("mandate.event.data", text(&data.to_string()));
    }
    let denied = kind == "decision"
        && event.pointer("/data/allowed").and_then(Value::as_bool) == Some(false);
    let (severity, severity_text) = match kind {
        "drift.alert" => (Severity::Warn, "WARN"),
        _ if denied => (Severity::Warn, "WARN"),
        _ => (Severity::Info, "INFO"),
    };
    record.set_severity_number(severity);
    record.set_severity_text(severity_text);
    if let Ok(known) = EventKind::from_str(kind) {
        record.set_event_name(known.as_str());
    }
    record.set_body(text(kind));
    let at = event
        .get("at")
        .and_then(Value::as_str)
        .map(time)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    record.set_timestamp(at);
    record.set_observed_timestamp(at);
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_become_log_records_with_every_field() {
        let provider = SdkLoggerProvider::builder().build();
        let logger = provider.logger("test");
        let event = json!({
            "seq": 7, "at": "2026-11-23T10:00:00.000001Z", "kind": "decision",
            "tenant_id": "ten_1", "mandate_id": "mnd_1", "actor": ["agent:agt_1"],
            "data": {"allowed": false, "tool": "bank.transfer"},
            "hash": "sha256:aa", "prev_hash": "sha256:bb",
        });
        let record = record(&logger, &event);
        let nanos = record
            .timestamp()
            .unwrap()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        assert_eq!(nanos, 1_795_428_000_000_001_000);
        assert_eq!(
            record.severity_text(),
            Some("WARN"),
            "a denial is a warning"
        );
        assert_eq!(record.event_name(), Some("decision"));
        assert_eq!(record.body(), Some(&text("decision")));
        let find = |k: &str| {
            record
                .attributes_iter()
                .find(|(key, _)| key.as_str() == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(find("mandate.event.seq"), AnyValue::Int(7));
        assert_eq!(find("mandate.event.hash"), text("sha256:aa"));
        assert_eq!(find("mandate.event.prev_hash"), text("sha256:bb"));
        let AnyValue::String(data) = find("mandate.event.data") else {
            panic!("data is a string")
        };
        assert!(data.as_str().contains("bank.transfer"));
    }

    #[test]
    fn a_partial_success_that_rejected_records_is_an_error() {
        use opentelemetry_proto::tonic::collector::logs::v1::{
            ExportLogsPartialSuccess, ExportLogsServiceResponse,
        };
        use prost::Message as _;
        let refused = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: 2,
                error_message: "quota".into(),
            }),
        }
        .encode_to_vec();
        assert!(
            rejected_records(&refused)
                .unwrap()
                .contains("2 log records")
        );
        let ok = ExportLogsServiceResponse::default().encode_to_vec();
        assert_eq!(rejected_records(&ok), None);
        assert_eq!(rejected_records(b""), None);
    }
}
