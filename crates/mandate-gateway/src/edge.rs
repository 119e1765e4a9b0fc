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

/// The protected resource a request addressed: the audience its token must name and,
/// for a refusal's challenge, its RFC 9728 metadata.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Resource<'a> {
    /// `/mcp`, or `/mcp/{server}` (the name as the path gave it).
    Mcp { server: Option<&'a str> },
    /// `/proxy/{server}/…`.
    Proxy,
}

/// The token, as the request presents it, for `resource`. A refusal's challenge names
/// the metadata of that resource (built only then).
pub(crate) async fn caller(
    gateway: &Gateway,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    resource: Resource<'_>,
) -> Result<Caller, Response> {
    let config = &gateway.config;
    let refuse = |description: Option<&str>| {
        let metadata_url = match resource {
            Resource::Mcp { server } => config.resource_metadata_url(server),
            Resource::Proxy => config.proxy_metadata_url(),
        };
        unauthorized(config, &metadata_url, description)
    };
    let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(refuse(None));
    };
    let (scheme, token) = auth.split_once(' ').unwrap_or((auth, ""));
    let dpop_scheme = scheme.eq_ignore_ascii_case("dpop");
    if !(dpop_scheme || scheme.eq_ignore_ascii_case("bearer")) || token.trim().is_empty() {
        return Err(refuse(Some("use the Bearer or DPoP scheme")));
    }
    let audience = match resource {
        Resource::Mcp { .. } => config.mcp_resource(),
        Resource::Proxy => config.proxy_resource(),
    };
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
        audience: &audience,
    };
    match gateway
        .calls
        .authenticate(&presented)
        .await
        .map_err(GatewayError::from)
    {
        Ok(caller) => Ok(caller),
        Err(GatewayError::Unauthenticated { description }) => Err(refuse(Some(
            description.as_deref().unwrap_or("invalid token"),
        ))),
        Err(e) => Err(error_response(&e)),
    }
}
