//! What every request passes before its protocol is looked at: the DNS-rebinding
//! checks (`Origin`, `Host`) and the task token, which names the caller.

use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::Response;
use mandate_core::Presented;
use mandate_core::calls::Caller;

use crate::error::{error_response, unauthorized};
use crate::{Gateway, GatewayError};

/// DNS-rebinding defence: an `Origin` must be the public URL's, loopback, or listed.
pub(crate) fn origin_allowed(gateway: &Gateway, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    if origin == gateway.config.public_url
        || gateway.config.allowed_origins.iter().any(|o| o == origin)
    {
        return true;
    }
    let Ok(url) = reqwest::Url::parse(origin) else {
        return false;
    };
    url.host_str()
        .is_some_and(mandate_types::net::is_loopback_host)
}

/// DNS-rebinding defence: `Host` must name the public URL's host or loopback.
pub(crate) fn host_allowed(gateway: &Gateway, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return true;
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    mandate_types::net::is_loopback_host(name) || gateway.public_host.as_deref() == Some(name)
}

/// The server of a `/mcp/{server}` request, when its name is plain (letters, digits,
/// `.`, `_`, `-`): it goes into a header.
fn mcp_server(uri: &Uri) -> Option<&str> {
    let server = uri.path().strip_prefix("/mcp/")?;
    let plain = !server.is_empty()
        && !server.starts_with('.')
        && server
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    plain.then_some(server)
}

/// The token, as the request presents it.
pub(crate) async fn caller(
    gateway: &Gateway,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    audience: &str,
) -> Result<Caller, Response> {
    let metadata_url = if audience.ends_with("/proxy") {
        format!(
            "{}/.well-known/oauth-protected-resource/proxy",
            gateway.config.public_url
        )
    } else if let Some(server) = mcp_server(uri) {
        // RFC 9728 §3.3: the metadata a challenge names describes exactly the URL that
        // was requested, `{public}/mcp/{server}` here — the document its well-known path
        // gives too, so a client finds one resource whichever way it looks.
        format!(
            "{}/.well-known/oauth-protected-resource/mcp/{server}",
            gateway.config.public_url
        )
    } else {
        gateway.config.resource_metadata_url()
    };
    let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(unauthorized(&gateway.config, &metadata_url, None));
    };
    let (scheme, token) = auth.split_once(' ').unwrap_or((auth, ""));
    let dpop_scheme = scheme.eq_ignore_ascii_case("dpop");
    if !(dpop_scheme || scheme.eq_ignore_ascii_case("bearer")) || token.trim().is_empty() {
        return Err(unauthorized(
            &gateway.config,
            &metadata_url,
            Some("use the Bearer or DPoP scheme"),
        ));
    }
    let url = format!(
        "{}{}",
        gateway.config.public_url,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let presented = Presented {
        token: token.trim(),
        dpop_scheme,
        proof: headers.get("dpop").and_then(|v| v.to_str().ok()),
        method: method.as_str(),
        url: &url,
        audience,
    };
    match gateway
        .calls
        .authenticate(&presented)
        .await
        .map_err(GatewayError::from)
    {
        Ok(caller) => Ok(caller),
        Err(GatewayError::Unauthenticated { description }) => Err(unauthorized(
            &gateway.config,
            &metadata_url,
            Some(description.as_deref().unwrap_or("invalid token")),
        )),
        Err(e) => Err(error_response(&e)),
    }
}
