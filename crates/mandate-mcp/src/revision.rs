//! Protocol revisions and the request headers each one requires.

use base64::Engine as _;
use serde_json::Value;

/// Accepted from clients that still send it (Streamable HTTP began here); batches,
/// which it allowed, are not supported.
pub const V2025_03_26: &str = "2025-03-26";
pub const V2025_06_18: &str = "2025-06-18";
pub const V2025_11_25: &str = "2025-11-25";
/// Stateless: no `initialize`, no sessions; metadata on every request.
pub const V2026_07_28: &str = "2026-07-28";

/// What the gateway speaks with clients, newest first.
pub const SUPPORTED: &[&str] = &[V2026_07_28, V2025_11_25, V2025_06_18, V2025_03_26];

/// The newest revision that still has the `initialize` handshake.
pub const LATEST_SESSION: &str = V2025_11_25;

/// The `_meta` key carrying the revision on stateless requests.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// The methods whose complete results are a `CacheableResult` in 2026-07-28
/// (`ttlMs`, `cacheScope` required).
const CACHEABLE: &[&str] = &[
    "server/discover",
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "prompts/list",
    "resources/read",
];

/// A result of `method` as a 2026-07-28 client must receive it (schema/2026-07-28):
/// `resultType` present ("Servers implementing this protocol version MUST include
/// this field"; an upstream of an older revision sends none, which means
/// `"complete"`), and on a complete result of a cacheable method the caching hints,
/// set by the gateway whatever the upstream said: what a caller sees is decided by
/// its mandate, which may end at any moment, so `ttlMs: 0` and `cacheScope: "private"`.
pub fn complete(method: &str, mut result: Value) -> Value {
    if let Value::Object(map) = &mut result {
        let kind = map
            .entry("resultType")
            .or_insert_with(|| Value::from("complete"));
        if kind == "complete" && CACHEABLE.contains(&method) {
            map.insert("ttlMs".into(), Value::from(0));
            map.insert("cacheScope".into(), Value::from("private"));
        }
    }
    result
}

/// The `_meta` keys of a 2026-07-28 request's envelope: what the client says of itself
/// on every request (revision, identity, capabilities, log level).
const ENVELOPE: &[&str] = &[
    META_PROTOCOL_VERSION,
    META_CLIENT_CAPABILITIES,
    "io.modelcontextprotocol/clientInfo",
    "io.modelcontextprotocol/logLevel",
];

/// A request's params as the gateway forwards them upstream: without the 2026-07-28
/// envelope in `_meta`. The gateway speaks to each upstream in a session of its own
/// (its own revision and capabilities, negotiated by `initialize`); the client's
/// envelope describes the client's exchange with the gateway, and an upstream of an
/// older revision may refuse a request that carries it. Every other `_meta` key (a
/// progress token, a related task) goes on; an emptied `_meta` is dropped.
pub fn without_envelope(params: Option<Value>) -> Option<Value> {
    let mut params = params?;
    if let Some(Value::Object(map)) = params.get_mut("_meta") {
        for key in ENVELOPE {
            map.remove(*key);
        }
        if map.is_empty()
            && let Value::Object(p) = &mut params
        {
            p.remove("_meta");
        }
    }
    Some(params)
}

/// The `_meta` key carrying the client's capabilities on stateless requests.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// Whether a stateless request's client declared URL-mode elicitation
/// (`clientCapabilities.elicitation.url`), so that it can show a person a page.
pub fn offers_url_elicitation(params: Option<&Value>) -> bool {
    params
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_CLIENT_CAPABILITIES))
        .and_then(|c| c.pointer("/elicitation/url"))
        .is_some()
}

/// What a stateless request's client declared it can answer when an upstream asks
/// during the call (`clientCapabilities` in its `_meta`): read once per request, by
/// pointer, nothing copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Answerable {
    /// Form-mode elicitation (`elicitation: {}` means form alone).
    pub elicitation_form: bool,
    pub elicitation_url: bool,
    pub sampling: bool,
    pub roots: bool,
}

impl Answerable {
    pub fn declared(params: Option<&Value>) -> Answerable {
        let Some(capabilities) = params
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get(META_CLIENT_CAPABILITIES))
        else {
            return Answerable::default();
        };
        let elicitation = capabilities.get("elicitation");
        let form = elicitation.and_then(|e| e.get("form")).is_some();
        let url = elicitation.and_then(|e| e.get("url")).is_some();
        Answerable {
            elicitation_form: form || (elicitation.is_some() && !url),
            elicitation_url: url,
            sampling: capabilities.get("sampling").is_some(),
            roots: capabilities.get("roots").is_some(),
        }
    }

    /// Whether the client can answer an upstream's request `method` with `params`.
    pub fn answers(self, method: &str, params: Option<&Value>) -> bool {
        match method {
            "elicitation/create" => {
                match params.and_then(|p| p.get("mode")).and_then(Value::as_str) {
                    Some("url") => self.elicitation_url,
                    None | Some("form") => self.elicitation_form,
                    Some(_) => false,
                }
            }
            "sampling/createMessage" => self.sampling,
            "roots/list" => self.roots,
            _ => false,
        }
    }
}

pub fn is_supported(version: &str) -> bool {
    SUPPORTED.contains(&version)
}

pub fn is_stateless(version: &str) -> bool {
    version == V2026_07_28
}

/// The revision to answer an `initialize` with: the client's when we speak it, else our
/// newest session-based one.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    match requested {
        Some(v) if v == V2025_06_18 => V2025_06_18,
        Some(v) if v == V2025_03_26 => V2025_03_26,
        _ => LATEST_SESSION,
    }
}

/// Decodes a header value that may use the `=?base64?…?=` sentinel (2026-07-28).
pub fn decode_header_value(raw: &str) -> Option<String> {
    match raw
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    {
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(raw.to_owned()),
    }
}

/// Why a stateless request's headers were refused (answered with 400 and -32020).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("header mismatch: {0}")]
pub struct HeaderMismatch(pub String);

/// The headers of a stateless (2026-07-28) request, as sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHeaders<'a> {
    pub protocol_version: Option<&'a str>,
    pub method: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// Checks a stateless request: the protocol version header equals the body's `_meta`
/// revision, `Mcp-Method` equals `method`, and `Mcp-Name` equals `params.name` (or
/// `params.uri`) for the methods that name something.
pub fn check_stateless_headers(
    headers: &RequestHeaders<'_>,
    method: &str,
    params: Option<&Value>,
) -> Result<(), HeaderMismatch> {
    let meta_version = params
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_PROTOCOL_VERSION))
        .and_then(Value::as_str);
    if meta_version != headers.protocol_version {
        return Err(HeaderMismatch(format!(
            "MCP-Protocol-Version header {:?} does not match the body's {:?}",
            headers.protocol_version, meta_version
        )));
    }
    match headers.method {
        None => return Err(HeaderMismatch("the Mcp-Method header is missing".into())),
        Some(m) if m != method => {
            return Err(HeaderMismatch(format!(
                "Mcp-Method header `{}` does not match the body's `{}`",
                truncate(m),
                truncate(method)
            )));
        }
        Some(_) => {}
    }
    let named = match method {
        "tools/call" | "prompts/get" => params.and_then(|p| p.get("name")),
        "resources/read" => params.and_then(|p| p.get("uri")),
        _ => return Ok(()),
    }
    .and_then(Value::as_str);
    let Some(raw) = headers.name else {
        return Err(HeaderMismatch("the Mcp-Name header is missing".into()));
    };
    let decoded = decode_header_value(raw)
        .ok_or_else(|| HeaderMismatch("the Mcp-Name header is not valid base64 UTF-8".into()))?;
    if Some(decoded.as_str()) != named {
        return Err(HeaderMismatch(format!(
            "Mcp-Name header `{}` does not match the body",
            truncate(&decoded)
        )));
    }
    Ok(())
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(name: &str) -> Value {
        json!({"name": name, "_meta": {META_PROTOCOL_VERSION: V2026_07_28}})
    }

    #[test]
    fn results_get_the_2026_07_28_envelope() {
        // An older upstream's tool result: complete, not cacheable.
        assert_eq!(
            complete("tools/call", json!({"content": []})),
            json!({"content": [], "resultType": "complete"})
        );
        // A list: caching hints, private and stale whatever was sent.
        assert_eq!(
            complete(
                "tools/list",
                json!({"tools": [], "ttlMs": 60000, "cacheScope": "public"})
            ),
            json!({"tools": [], "resultType": "complete", "ttlMs": 0, "cacheScope": "private"})
        );
        // Asking for input is neither completed nor cached.
        let asking = json!({"resultType": "input_required", "requestState": "s"});
        assert_eq!(complete("resources/read", asking.clone()), asking);
    }

    #[test]
    fn stateless_headers_must_agree_with_the_body() {
        let ok = RequestHeaders {
            protocol_version: Some(V2026_07_28),
            method: Some("tools/call"),
            name: Some("get_weather"),
        };
        check_stateless_headers(&ok, "tools/call", Some(&params("get_weather"))).unwrap();
        let encoded = RequestHeaders {
            name: Some("=?base64?SGVsbG8sIOS4lueVjA==?="),
            ..ok
        };
        check_stateless_headers(&encoded, "tools/call", Some(&params("Hello, 世界"))).unwrap();

        let bad = [
            RequestHeaders {
                name: Some("other"),
                ..ok
            },
            RequestHeaders { name: None, ..ok },
            RequestHeaders {
                method: Some("tools/list"),
                ..ok
            },
            RequestHeaders { method: None, ..ok },
            RequestHeaders {
                protocol_version: Some(V2025_11_25),
                ..ok
            },
            RequestHeaders {
                name: Some("=?base64?!!!?="),
                ..ok
            },
            RequestHeaders {
                name: Some("=?base64?/w==?="),
                ..ok
            },
        ];
        for headers in bad {
            assert!(
                check_stateless_headers(&headers, "tools/call", Some(&params("get_weather")))
                    .is_err(),
                "{headers:?}"
            );
        }
        // `tools/list` names nothing, so no Mcp-Name is needed.
        let list = RequestHeaders {
            method: Some("tools/list"),
            name: None,
            ..ok
        };
        check_stateless_headers(
            &list,
            "tools/list",
            Some(&json!({"_meta": {META_PROTOCOL_VERSION: V2026_07_28}})),
        )
        .unwrap();
    }

    #[test]
    fn what_a_client_can_answer_is_what_it_declared() {
        let declared = |caps: Value| {
            Answerable::declared(Some(&json!({"_meta": {META_CLIENT_CAPABILITIES: caps}})))
        };
        let form = json!({"mode": "form", "message": "m"});
        let url = json!({"mode": "url", "message": "m", "url": "https://x"});
        let implicit = declared(json!({"elicitation": {}}));
        assert!(implicit.answers("elicitation/create", Some(&form)));
        assert!(implicit.answers("elicitation/create", Some(&json!({"message": "m"}))));
        assert!(!implicit.answers("elicitation/create", Some(&url)));
        let url_only = declared(json!({"elicitation": {"url": {}}}));
        assert!(!url_only.answers("elicitation/create", Some(&form)));
        assert!(url_only.answers("elicitation/create", Some(&url)));
        let all =
            declared(json!({"elicitation": {"form": {}, "url": {}}, "sampling": {}, "roots": {}}));
        for method in ["sampling/createMessage", "roots/list"] {
            assert!(all.answers(method, None));
            assert!(!implicit.answers(method, None));
        }
        assert!(!all.answers("tools/call", None));
        assert_eq!(Answerable::declared(None), Answerable::default());
    }

    #[test]
    fn negotiation_prefers_the_clients_session_revision() {
        assert_eq!(negotiate(Some(V2025_06_18)), V2025_06_18);
        assert_eq!(negotiate(Some(V2025_11_25)), V2025_11_25);
        assert_eq!(negotiate(Some("1999-01-01")), V2025_11_25);
        assert_eq!(negotiate(None), V2025_11_25);
        assert!(is_stateless(V2026_07_28));
    }

    #[test]
    fn the_envelope_stays_with_the_gateway() {
        let params = json!({"name": "t", "arguments": {"a": 1}, "_meta": {
            META_PROTOCOL_VERSION: V2026_07_28,
            META_CLIENT_CAPABILITIES: {"elicitation": {"url": {}}},
            "io.modelcontextprotocol/clientInfo": {"name": "c", "version": "1"},
            "io.modelcontextprotocol/logLevel": "info",
            "progressToken": 7,
        }});
        assert_eq!(
            without_envelope(Some(params)),
            Some(json!({"name": "t", "arguments": {"a": 1}, "_meta": {"progressToken": 7}}))
        );
        let only = json!({"name": "t", "_meta": {META_PROTOCOL_VERSION: V2026_07_28}});
        assert_eq!(without_envelope(Some(only)), Some(json!({"name": "t"})));
        assert_eq!(without_envelope(None), None);
        // Not an object: forwarded as it is (the upstream says what it thinks of it).
        let odd = json!({"name": "t", "_meta": 3});
        assert_eq!(without_envelope(Some(odd.clone())), Some(odd));
    }
}
