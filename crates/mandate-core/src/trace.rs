//! W3C Trace Context (`traceparent`, `tracestate`) for requests that reach us and
//! requests we send on, and the seam to the OpenTelemetry layer the binary may install.
//!
//! Everything a client sends here is untrusted: a `traceparent` is accepted only in the
//! exact version-00 form (55 characters, lowercase hex, neither id all zeros), a
//! `tracestate` only when every member is well formed (at most 32, at most 512
//! characters in all). Anything else is ignored as if it had not been sent, and what we
//! send on is always written from the parsed parts, never copied from the input.
//!
//! Spans meant for the trace use the target [`TARGET`]; with tracing off no layer is
//! interested in it, so those spans cost a callsite check and nothing else.

use std::fmt;
use std::sync::OnceLock;

use http::{HeaderMap, HeaderValue};

/// The `tracing` target of the spans exported as OpenTelemetry traces.
pub const TARGET: &str = "mandate_trace";

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// The longest `tracestate` accepted (W3C: at least 512 must be propagated).
const MAX_TRACESTATE: usize = 512;
/// The most list members a `tracestate` may have.
const MAX_MEMBERS: usize = 32;

/// A valid version-00 `traceparent`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` value; `None` unless it is exactly the version-00 form.
    pub fn parse(text: &str) -> Option<TraceParent> {
        if text.len() != 55 {
            return None;
        }
        let mut parts = text.split('-');
        let (Some("00"), Some(trace), Some(span), Some(flags), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let (trace, span, flags) = (trace.as_bytes(), span.as_bytes(), flags.as_bytes());
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        let mut flag = [0u8; 1];
        decode(trace, &mut trace_id)?;
        decode(span, &mut span_id)?;
        decode(flags, &mut flag)?;
        let [flags] = flag;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            span_id,
            flags,
        })
    }

    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The trace id as 32 lowercase hex digits (the form the ledger records).
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

/// The header form, written from the parsed parts.
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.span_id),
            self.flags
        )
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

/// Lowercase hex digits into bytes; `None` on anything else (uppercase included).
fn decode(digits: &[u8], out: &mut [u8]) -> Option<()> {
    if digits.len() != out.len() * 2 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let [high, low] = pair else { return None };
        *byte = (nibble(*high)? << 4) | nibble(*low)?;
    }
    Some(())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for n in [b >> 4, b & 0xf] {
            if let Some(d) = DIGITS.get(usize::from(n)) {
                out.push(char::from(*d));
            }
        }
    }
    out
}

/// A `tracestate` value, checked member by member; `None` if any member is malformed,
/// a key repeats, or it is too long or has too many members.
pub fn parse_tracestate(text: &str) -> Option<String> {
    if text.len() > MAX_TRACESTATE {
        return None;
    }
    let mut keys: Vec<&str> = Vec::new();
    for member in text.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        let (key, value) = member.split_once('=')?;
        if !valid_key(key) || !valid_value(value) || keys.contains(&key) {
            return None;
        }
        keys.push(key);
        if keys.len() > MAX_MEMBERS {
            return None;
        }
    }
    if keys.is_empty() {
        return None;
    }
    Some(keys_and_values(text))
}

/// The members again, without the optional white space around them.
fn keys_and_values(text: &str) -> String {
    text.split(',')
        .map(|m| m.trim_matches([' ', '\t']))
        .filter(|m| !m.is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

fn key_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'*' | b'/')
}

fn valid_key(key: &str) -> bool {
    let simple = |k: &[u8], max: usize, digit_first: bool| {
        !k.is_empty()
            && k.len() <= max
            && k.first()
                .is_some_and(|c| c.is_ascii_lowercase() || (digit_first && c.is_ascii_digit()))
            && k.iter().all(|c| key_char(*c))
    };
    match key.split_once('@') {
        None => simple(key.as_bytes(), 256, false),
        Some((tenant, system)) => {
            simple(tenant.as_bytes(), 241, true) && simple(system.as_bytes(), 14, false)
        }
    }
}

fn valid_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 256
        && bytes
            .iter()
            .all(|c| (0x20..=0x7e).contains(c) && *c != b',' && *c != b'=')
        && bytes.last().is_some_and(|c| *c != b' ')
}

/// A request's trace context: the parent it continues and the vendors' state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub parent: TraceParent,
    pub state: Option<String>,
}

impl TraceContext {
    /// From the two values, the `tracestate` kept only beside a valid `traceparent`.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<TraceContext> {
        let parent = TraceParent::parse(traceparent)?;
        Some(TraceContext {
            parent,
            state: tracestate.and_then(parse_tracestate),
        })
    }

    /// From HTTP headers: one `traceparent` header (repeated: ignored), and
    /// `tracestate` (its repeated headers form one list).
    pub fn from_headers(headers: &HeaderMap) -> Option<TraceContext> {
        let mut values = headers.get_all(TRACEPARENT).iter();
        let traceparent = values.next()?;
        if values.next().is_some() {
            return None;
        }
        let parent = TraceParent::parse(traceparent.to_str().ok()?)?;
        let mut states = headers.get_all(TRACESTATE).iter();
        let state = match (states.next(), states.next()) {
            (None, _) => None,
            (Some(one), None) => one.to_str().ok().and_then(parse_tracestate),
            (Some(first), Some(_)) => {
                let mut joined = first.to_str().ok().map(str::to_owned);
                for more in headers.get_all(TRACESTATE).iter().skip(1) {
                    joined = match (joined, more.to_str().ok()) {
                        (Some(j), Some(m)) if j.len() + m.len() < MAX_TRACESTATE => {
                            Some(format!("{j},{m}"))
                        }
                        _ => None,
                    };
                }
                joined.as_deref().and_then(parse_tracestate)
            }
        };
        Some(TraceContext { parent, state })
    }

    /// From an MCP request's `params._meta` (SEP-414: the keys `traceparent` and
    /// `tracestate`, W3C formats).
    pub fn from_meta(params: Option<&serde_json::Value>) -> Option<TraceContext> {
        let meta = params?.get("_meta")?;
        let traceparent = meta.get(TRACEPARENT)?.as_str()?;
        let tracestate = meta.get(TRACESTATE).and_then(serde_json::Value::as_str);
        TraceContext::parse(traceparent, tracestate)
    }

    /// Sets both headers on a request we send.
    pub fn insert_into(&self, headers: &mut HeaderMap) {
        if let Ok(value) = HeaderValue::from_str(&self.parent.to_string()) {
            headers.insert(TRACEPARENT, value);
        }
        headers.remove(TRACESTATE);
        if let Some(value) = self
            .state
            .as_deref()
            .and_then(|s| HeaderValue::from_str(s).ok())
        {
            headers.insert(TRACESTATE, value);
        }
    }

    /// Replaces whatever trace context an MCP request's `params._meta` carried with
    /// this one (`None`: removes it), so a client's value is never passed on as sent.
    pub fn replace_in_meta(context: Option<&TraceContext>, params: &mut serde_json::Value) {
        let Some(meta) = params
            .get_mut("_meta")
            .and_then(serde_json::Value::as_object_mut)
        else {
            if let (Some(context), Some(params)) = (context, params.as_object_mut()) {
                let mut meta = serde_json::Map::new();
                context.write_meta(&mut meta);
                params.insert("_meta".to_owned(), serde_json::Value::Object(meta));
            }
            return;
        };
        meta.remove(TRACEPARENT);
        meta.remove(TRACESTATE);
        if let Some(context) = context {
            context.write_meta(meta);
        }
    }

    fn write_meta(&self, meta: &mut serde_json::Map<String, serde_json::Value>) {
        meta.insert(TRACEPARENT.to_owned(), self.parent.to_string().into());
        if let Some(state) = &self.state {
            meta.insert(TRACESTATE.to_owned(), state.clone().into());
        }
    }
}

/// What the OpenTelemetry layer does for us; installed once by the binary when
/// tracing is on. Without it the client's context passes through unchanged.
pub trait Tracer: Send + Sync + fmt::Debug {
    /// Makes `span` (just created, not yet entered) continue `parent`.
    fn set_parent(&self, span: &tracing::Span, parent: &TraceParent);
    /// `span`'s own ids, as a `traceparent` would carry them.
    fn context_of(&self, span: &tracing::Span) -> Option<TraceParent>;
}

static TRACER: OnceLock<Box<dyn Tracer>> = OnceLock::new();

/// Installs the tracer; `false` if one was installed before.
pub fn install(tracer: Box<dyn Tracer>) -> bool {
    TRACER.set(tracer).is_ok()
}

/// Whether spans are exported (a tracer is installed).
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// Starts a request's trace on `span`, its root: the span continues `incoming` (when
/// valid). Returns the context the request records (its trace id goes into the
/// ledger) and passes on: ours with tracing on, the client's as it came with it off.
pub fn begin(span: &tracing::Span, incoming: Option<TraceContext>) -> Option<TraceContext> {
    let Some(tracer) = TRACER.get() else {
        return incoming;
    };
    if let Some(incoming) = &incoming {
        tracer.set_parent(span, &incoming.parent);
    }
    let parent = tracer.context_of(span)?;
    Some(TraceContext {
        parent,
        state: incoming.and_then(|c| c.state),
    })
}

/// The context a request sent from inside `span` carries: `span`'s ids with tracing
/// on; the request's own context (the client's) with it off.
pub fn outgoing(span: &tracing::Span, request: Option<&TraceContext>) -> Option<TraceContext> {
    match TRACER.get() {
        None => request.cloned(),
        Some(tracer) => tracer.context_of(span).map(|parent| TraceContext {
            parent,
            state: request.and_then(|c| c.state.clone()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_round_trips() {
        let p = TraceParent::parse(GOOD).unwrap();
        assert_eq!(p.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(p.sampled());
        assert_eq!(p.to_string(), GOOD);
        let unsampled = TraceParent::parse(&GOOD.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled());
    }

    #[test]
    fn hostile_traceparents_are_ignored() {
        let long = format!("{GOOD}{}", "0".repeat(10_000));
        let cases = [
            "",
            "00",
            &long,
            // wrong case
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
            // versions other than 00, ff among them
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // a version-00 value with more after it
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz",
            // all-zero ids
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // wrong separators and lengths at the right total length
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47360-0f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b701-",
            // injection: CR/LF, a header after it, quotes, spaces, non-ASCII
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7\r\nx",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\n",
            "00-4bf92f3577b34da6a3ce929d0e0e473\"-00f067aa0ba902b7-01",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
            "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
            "00-gbf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ];
        for case in cases {
            assert_eq!(TraceParent::parse(case), None, "{case:?}");
            assert_eq!(TraceContext::parse(case, Some("a=b")), None, "{case:?}");
        }
    }

    #[test]
    fn tracestate_is_bounded_and_checked_member_by_member() {
        assert_eq!(
            parse_tracestate("congo=t61rcWkgMzE, rojo=00f067aa0ba902b7").as_deref(),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        );
        assert!(parse_tracestate("tenant1@vendor=x").is_some());
        let thirty_two: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        assert!(parse_tracestate(&thirty_two.join(",")).is_some());
        let thirty_three: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        let too_long = format!("a={}", "x".repeat(600));
        for hostile in [
            thirty_three.join(",").as_str(),
            too_long.as_str(),
            "",
            ",,,",
            "a=b,a=c",
            "A=b",
            "a=b\r\nx-injected: 1",
            "a=b\nc=d",
            "a=b,c",
            "a=,b=c",
            "a=b=c",
            "a=b\tc",
            "1a=b",
            "a@=b",
            "a@systemnamethatistoolong=b",
            "a=\u{7f}",
            "a=é",
        ] {
            assert_eq!(parse_tracestate(hostile), None, "{hostile:?}");
        }
    }

    #[test]
    fn headers_are_read_strictly_and_written_from_parsed_parts() {
        let mut headers = HeaderMap::new();
        assert_eq!(TraceContext::from_headers(&headers), None);
        headers.insert(TRACEPARENT, HeaderValue::from_static(GOOD));
        headers.insert(TRACESTATE, HeaderValue::from_static("a=1"));
        let context = TraceContext::from_headers(&headers).unwrap();
        assert_eq!(context.state.as_deref(), Some("a=1"));
        headers.append(TRACESTATE, HeaderValue::from_static("b=2"));
        let context = TraceContext::from_headers(&headers).unwrap();
        assert_eq!(context.state.as_deref(), Some("a=1,b=2"));
        // Two traceparent headers: neither is trusted.
        headers.append(TRACEPARENT, HeaderValue::from_static(GOOD));
        assert_eq!(TraceContext::from_headers(&headers), None);
        // A bad value is never written on.
        let mut bad = HeaderMap::new();
        bad.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"),
        );
        assert_eq!(TraceContext::from_headers(&bad), None);
        let mut out = HeaderMap::new();
        out.insert(TRACESTATE, HeaderValue::from_static("stale=1"));
        context.insert_into(&mut out);
        assert_eq!(out.get(TRACEPARENT).unwrap(), GOOD);
        assert_eq!(out.get(TRACESTATE).unwrap(), "a=1,b=2");
    }

    #[test]
    fn meta_is_read_strictly_and_replaced_not_echoed() {
        let params = serde_json::json!({"name": "t", "_meta": {
            "traceparent": GOOD, "tracestate": "a=1", "progressToken": 7}});
        let context = TraceContext::from_meta(Some(&params)).unwrap();
        assert_eq!(context.parent.to_string(), GOOD);
        for hostile in [
            serde_json::json!({"_meta": {"traceparent": format!("{GOOD}\r\nx: y")}}),
            serde_json::json!({"_meta": {"traceparent": GOOD.to_uppercase()}}),
            serde_json::json!({"_meta": {"traceparent": 7}}),
            serde_json::json!({"_meta": "00"}),
        ] {
            assert_eq!(TraceContext::from_meta(Some(&hostile)), None, "{hostile}");
        }
        // A hostile value is removed, not forwarded.
        let mut forwarded =
            serde_json::json!({"_meta": {"traceparent": "evil\r\n", "progressToken": 7}});
        TraceContext::replace_in_meta(None, &mut forwarded);
        assert_eq!(
            forwarded,
            serde_json::json!({"_meta": {"progressToken": 7}})
        );
        TraceContext::replace_in_meta(Some(&context), &mut forwarded);
        assert_eq!(forwarded["_meta"]["traceparent"], GOOD);
        assert_eq!(forwarded["_meta"]["tracestate"], "a=1");
        let mut bare = serde_json::json!({"name": "t"});
        TraceContext::replace_in_meta(Some(&context), &mut bare);
        assert_eq!(bare["_meta"]["traceparent"], GOOD);
    }

    #[test]
    fn without_a_tracer_the_clients_context_passes_through() {
        let context = TraceContext::parse(GOOD, None);
        let span = tracing::Span::none();
        assert_eq!(begin(&span, context.clone()), context);
        assert_eq!(outgoing(&span, context.as_ref()), context);
        assert_eq!(begin(&span, None), None);
    }
}
