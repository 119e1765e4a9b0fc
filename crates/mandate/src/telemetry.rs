//! OpenTelemetry through its SDK: the spans of `[tracing]` (when on) and the ledger's
//! log export (`mandate audit export --otlp`), both over OTLP/HTTP protobuf.
//!
//! The exporters send with the workspace's reqwest client ([`Http`]); the SDK's
//! batch processor exports from a thread of its own, so each request is run on the
//! Tokio runtime that was current when the client was made.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_http::{Bytes, HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::config::TracingSettings;

/// The most a collector's answer may hold.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads a collector's successful answer: why it still refused (rejected records).
pub type Rejected = fn(&[u8]) -> Option<String>;

/// The OTLP exporters' HTTP client: reqwest, run on our Tokio runtime.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    /// What a 2xx answer must also say: nothing of the batch was rejected
    /// (an OTLP partial success). `None`: not checked (spans).
    rejected: Option<Rejected>,
}

impl Http {
    /// Must be called inside the Tokio runtime that will carry the requests.
    pub fn new(rejected: Option<Rejected>) -> anyhow::Result<Http> {
        let client = reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot build the OTLP exporter's HTTP client")?;
        let runtime = tokio::runtime::Handle::try_current()
            .context("the OTLP exporter needs a Tokio runtime")?;
        Ok(Http {
            client,
            runtime,
            rejected,
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for Http {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let rejected = self.rejected;
        let request = reqwest::Request::try_from(request)?;
        let work = async move {
            let mut response = client.execute(request).await?;
            let mut answer = http::Response::builder().status(response.status());
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err::<_, HttpError>("the collector's answer is too large".into());
                }
                body.extend_from_slice(&chunk);
            }
            if response.status().is_success()
                && let Some(why) = rejected.and_then(|check| check(&body))
            {
                return Err(why.into());
            }
            if let Some(headers) = answer.headers_mut() {
                headers.extend(response.headers().clone());
            }
            Ok(answer.body(Bytes::from(body))?)
        };
        self.runtime.spawn(work).await?
    }
}

fn resource(service_name: &str) -> Resource {
    Resource::builder_empty()
        .with_service_name(service_name.to_owned())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

/// Headers as the exporter takes them (their values are never logged).
fn header_map(headers: &[(String, mandate_types::Secret<String>)]) -> HashMap<String, String> {
    headers
        .iter()
        .map(|(name, value)| (name.clone(), value.expose().clone()))
        .collect()
}

/// The tracer provider of `[tracing]`, exporting in batches.
pub fn tracer_provider(settings: &TracingSettings) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Http::new(None)?)
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(settings.endpoint.clone())
        .with_headers(header_map(&settings.headers))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| anyhow::anyhow!("tracing.endpoint: cannot set up the OTLP exporter: {e}"))?;
    Ok(SdkTracerProvider::builder()
        .with_sampler(Sampler::TraceIdRatioBased(settings.sampling_ratio.get()))
        .with_batch_exporter(exporter)
        .with_resource(resource(&settings.service_name))
        .build())
}

/// A `tracing` layer exporting the spans of [`mandate_core::trace::TARGET`] only.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer as _;
    let targets = tracing_subscriber::filter::Targets::new()
        .with_target(mandate_core::trace::TARGET, tracing::Level::TRACE);
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("mandate"))
        .with_filter(targets)
}

/// What the request paths ask of the OpenTelemetry layer ([`mandate_core::trace`]).
#[derive(Debug)]
pub struct OtelTracer;

impl mandate_core::trace::Tracer for OtelTracer {
    fn set_parent(&self, span: &tracing::Span, parent: &mandate_core::trace::TraceParent) {
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id),
            SpanId::from_bytes(parent.span_id),
            TraceFlags::new(parent.flags),
            true,
            TraceState::default(),
        );
        // Fails only for a span already started or disabled: it then starts a trace.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }

    fn context_of(&self, span: &tracing::Span) -> Option<mandate_core::trace::TraceParent> {
        let context = span.context();
        let span_ref = context.span();
        let ids = span_ref.span_context();
        ids.is_valid().then(|| mandate_core::trace::TraceParent {
            trace_id: ids.trace_id().to_bytes(),
            span_id: ids.span_id().to_bytes(),
            flags: ids.trace_flags().to_u8(),
        })
    }
}

/// Ends the provider: what is queued is exported (bounded by the exporter's timeout).
pub async fn shutdown(provider: SdkTracerProvider) {
    let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    if let Ok(Err(e)) = done {
        tracing::warn!("tracing: the last spans could not be exported: {e}");
    }
}

pub(crate) fn audit_resource() -> Resource {
    resource("mandate")
}
