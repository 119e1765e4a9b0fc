//! How a secret reaches an upstream: as a header of its own, a bearer token or basic
//! credentials. The header value is marked sensitive, so HTTP/2 never indexes it
//! (HPACK) and `http`'s `Debug` prints `Sensitive`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use mandate_types::Secret;
use serde::{Deserialize, Serialize};

/// How a tool server's credential is presented upstream (part of its config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Injection {
    /// `<name>: <secret>` (e.g. `X-Api-Key`).
    Header { name: CredentialHeader },
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// `Authorization: Basic base64(<username>:<secret>)` (RFC 7617).
    Basic { username: BasicUsername },
}

/// Why a credential could not be made into a header. Never carries the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectionError {
    #[error("the secret contains a control character (CR, LF, NUL, …), refused in a header")]
    ControlCharacter,
    #[error("the secret is empty")]
    Empty,
}

impl Injection {
    /// The header to set on the upstream request, its value marked sensitive.
    pub fn header(
        &self,
        secret: &Secret<String>,
    ) -> Result<(HeaderName, HeaderValue), InjectionError> {
        let secret = secret.expose();
        if secret.is_empty() {
            return Err(InjectionError::Empty);
        }
        if secret.bytes().any(is_control) {
            return Err(InjectionError::ControlCharacter);
        }
        let (name, value) = match self {
            Self::Header { name } => (name.0.clone(), Secret::new(secret.clone())),
            Self::Bearer => (AUTHORIZATION, Secret::new(format!("Bearer {secret}"))),
            Self::Basic { username } => {
                let pair = Secret::new(format!("{}:{secret}", username.0));
                let encoded = STANDARD.encode(pair.expose());
                (AUTHORIZATION, Secret::new(format!("Basic {encoded}")))
            }
        };
        // Control characters were refused above; everything else is a legal value.
        let mut value = HeaderValue::from_bytes(value.expose().as_bytes())
            .map_err(|_| InjectionError::ControlCharacter)?;
        value.set_sensitive(true);
        Ok((name, value))
    }
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// Why a header name or username was refused in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectionConfigError {
    #[error("`{0}` is not a valid HTTP header name")]
    InvalidHeaderName(String),
    #[error("`{0}` cannot carry a credential: it is hop-by-hop or describes the message itself")]
    ReservedHeaderName(String),
    #[error("a basic-auth username must be non-empty, without `:` or control characters")]
    InvalidUsername,
}

/// Headers a credential may not be injected as: hop-by-hop headers (RFC 9110 §7.6.1),
/// those describing the message or its routing, and those a proxy rewrites.
const RESERVED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "expect",
    "forwarded",
    "via",
];

/// A header name a credential may be injected as: a valid name, not reserved.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialHeader(HeaderName);

impl CredentialHeader {
    pub fn name(&self) -> &HeaderName {
        &self.0
    }
}

impl fmt::Debug for CredentialHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl TryFrom<String> for CredentialHeader {
    type Error = InjectionConfigError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        let shown = || name.chars().take(64).collect::<String>();
        let parsed = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| InjectionConfigError::InvalidHeaderName(shown()))?;
        if RESERVED.contains(&parsed.as_str()) {
            return Err(InjectionConfigError::ReservedHeaderName(shown()));
        }
        Ok(Self(parsed))
    }
}

impl From<CredentialHeader> for String {
    fn from(h: CredentialHeader) -> Self {
        h.0.as_str().to_owned()
    }
}

impl Serialize for CredentialHeader {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for CredentialHeader {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::try_from(name).map_err(serde::de::Error::custom)
    }
}

/// A basic-auth user id: non-empty, no `:` (RFC 7617 §2), no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct BasicUsername(String);

impl BasicUsername {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BasicUsername {
    type Error = InjectionConfigError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        if name.is_empty() || name.contains(':') || name.bytes().any(is_control) {
            return Err(InjectionConfigError::InvalidUsername);
        }
        Ok(Self(name))
    }
}

impl<'de> Deserialize<'de> for BasicUsername {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::try_from(name).map_err(serde::de::Error::custom)
    }
}
