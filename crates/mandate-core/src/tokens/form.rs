//! The body of `/oauth2/token`, `/oauth2/introspect` and `/oauth2/revoke`:
//! `application/x-www-form-urlencoded`, every parameter at most once but `resource` and
//! `audience` (RFC 6749 §3.2, RFC 8707, RFC 8693), and the `DPoP` header beside it.

use http::{HeaderMap, header};
use mandate_token::TokenError;

use super::TokenRequest;

/// Parsed form parameters: each name once, but for the repeatable ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenForm {
    single: Vec<(String, String)>,
    resource: Vec<String>,
    audience: Vec<String>,
}

impl TokenForm {
    /// Reads a form body sent with `headers` (its `Content-Type` must be
    /// `application/x-www-form-urlencoded`). Empty parameters count as absent; a
    /// parameter other than `resource` and `audience` sent twice is `invalid_request`.
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<TokenForm, TokenError> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(TokenError::InvalidRequest(
                "the body must be application/x-www-form-urlencoded".into(),
            ));
        }
        let mut form = TokenForm {
            single: Vec::new(),
            resource: Vec::new(),
            audience: Vec::new(),
        };
        for (name, value) in form_urlencoded::parse(body) {
            let (name, value) = (name.into_owned(), value.into_owned());
            match name.as_str() {
                "resource" => form.resource.push(value),
                "audience" => form.audience.push(value),
                _ if value.is_empty() => {}
                _ => {
                    if form.single.iter().any(|(n, _)| n == &name) {
                        return Err(TokenError::InvalidRequest(format!(
                            "parameter {} appears more than once",
                            mandate_token::untrusted(&name)
                        )));
                    }
                    form.single.push((name, value));
                }
            }
        }
        Ok(form)
    }

    /// The value of a parameter that appears at most once.
    pub fn get(&self, name: &str) -> Option<String> {
        self.single
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    /// The token request the form and the `DPoP` header (at most one) make.
    pub fn token_request(&self, headers: &HeaderMap) -> Result<TokenRequest, TokenError> {
        let mut proofs = headers.get_all("dpop").iter();
        let dpop = match (proofs.next(), proofs.next()) {
            (None, _) => None,
            (Some(v), None) => Some(
                v.to_str()
                    .map_err(|_| {
                        TokenError::InvalidDpopProof("the DPoP header is not ASCII".into())
                    })?
                    .to_owned(),
            ),
            (Some(_), Some(_)) => {
                return Err(TokenError::InvalidDpopProof(
                    "send exactly one DPoP header".into(),
                ));
            }
        };
        Ok(TokenRequest {
            grant_type: self.get("grant_type").unwrap_or_default(),
            client_id: self.get("client_id"),
            client_assertion_type: self.get("client_assertion_type"),
            client_assertion: self.get("client_assertion"),
            scope: self.get("scope"),
            authorization_details: self.get("authorization_details"),
            resource: self.resource.clone(),
            audience: self.audience.clone(),
            subject_token: self.get("subject_token"),
            subject_token_type: self.get("subject_token_type"),
            actor_token: self.get("actor_token"),
            actor_token_type: self.get("actor_token_type"),
            requested_token_type: self.get("requested_token_type"),
            code: self.get("code"),
            code_verifier: self.get("code_verifier"),
            redirect_uri: self.get("redirect_uri"),
            refresh_token: self.get("refresh_token"),
            assertion: self.get("assertion"),
            dpop,
        })
    }
}
