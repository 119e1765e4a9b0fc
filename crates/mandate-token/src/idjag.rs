//! Identity Assertion JWT Authorization Grants (ID-JAG, draft-ietf-oauth-identity-
//! assertion-authz-grant; the MCP "Enterprise-Managed Authorization" extension): an
//! enterprise identity provider asserts that one person lets one client reach us.
//!
//! ```text
//!   assertion ─► unverified `iss` selects the configured IdP (nothing else is read)
//!             ─► its JWKS (the federated issuers' cache, one per IdP) ─► signature with
//!                a pinned algorithm, header `typ` oauth-id-jag+jwt
//!             ─► iss = the IdP, aud = our issuer (a string or a one-element array),
//!                exp / iat required (skew, ≤ 1 h ahead), jti, sub, client_id = the
//!                authenticated client and one the IdP may speak for, resource(s) ours,
//!                scope, no authorization_details
//!             ─► IdJag ─► EnterpriseIdp::person_email (configured mapping)
//! ```
//!
//! What the grant gives is decided by the token service (mandate-core): a task token
//! only under an active mandate of that person for the client's agent; the assertion's
//! `scope` only narrows it. Every error is `invalid_grant` (`invalid_target` for a
//! resource we do not serve, `unauthorized_client` for a client the IdP may not speak
//! for, `temporarily_unavailable` when the IdP's keys cannot be had).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::assertion::MAX_ASSERTION_LIFETIME;
use crate::claims::{ClaimError, Claims, TimeRules};
use crate::error::{TokenError, untrusted};
use crate::federation::{FederatedIssuer, Federation, FederationConfigError, FederationOptions};
use crate::spiffe::unverified_claim_str;

/// The RFC 7523 authorization grant type an ID-JAG is presented with.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The JWS `typ` of an ID-JAG (draft §3.1, RFC 8725 §3.11).
pub const ID_JAG_TYP: &str = "oauth-id-jag+jwt";
/// Longest `jti` we remember.
const MAX_JTI: usize = 256;

/// How an IdP's assertion names a person in our directory: always by the person's
/// email address, found one of three configured ways (never guessed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonMapping {
    /// The assertion's `email` claim.
    EmailClaim,
    /// The assertion's `sub` is the email address (IdPs whose subject is the login).
    SubjectIsEmail,
    /// A table from the IdP's `sub` to an email address; a subject not in it maps to
    /// no one.
    Subjects(BTreeMap<String, String>),
}

/// One enterprise identity provider whose ID-JAGs we accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnterpriseIdp {
    /// Its exact issuer identifier.
    pub issuer: String,
    /// Its JWK Set; `None`: read from its OpenID Connect Discovery document.
    pub jwks_uri: Option<String>,
    /// The tenant (by name) whose people it speaks for.
    pub tenant: String,
    pub person: PersonMapping,
    /// The client ids (our agents' ids or registered OAuth clients) it may speak for.
    pub clients: Vec<String>,
    /// `http://` on a loopback IP literal (tests). Default false.
    pub dangerous_allow_insecure_loopback: bool,
}

impl EnterpriseIdp {
    /// The email address of the person `jag` is about, by this IdP's mapping
    /// (lower-cased; the directory keeps emails so).
    pub fn person_email(&self, jag: &IdJag) -> Result<String, TokenError> {
        let email = match &self.person {
            PersonMapping::EmailClaim => jag.email.clone().ok_or_else(|| {
                TokenError::InvalidGrant(
                    "the ID-JAG has no `email`, which this identity provider's people are mapped by"
                        .into(),
                )
            })?,
            PersonMapping::SubjectIsEmail => jag.subject.clone(),
            PersonMapping::Subjects(table) => {
                table.get(&jag.subject).cloned().ok_or_else(|| {
                    TokenError::InvalidGrant("the ID-JAG's subject maps to no person here".into())
                })?
            }
        };
        let email = email.trim().to_ascii_lowercase();
        if email.is_empty() || email.len() > 254 || !email.contains('@') {
            return Err(TokenError::InvalidGrant(
                "the ID-JAG's subject maps to no person here".into(),
            ));
        }
        Ok(email)
    }
}

/// A verified ID-JAG: only what we use of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdJag {
    pub issuer: String,
    pub subject: String,
    pub client_id: String,
    pub jti: String,
    /// `exp`, Unix seconds: how long the `jti` must be remembered.
    pub expires_at: i64,
    /// `resource`: none, one or several resource identifiers.
    pub resources: Vec<String>,
    /// `scope`, split; `None` when absent (no narrowing by the IdP).
    pub scope: Option<Vec<String>>,
    pub email: Option<String>,
}

/// What a presented ID-JAG must match.
#[derive(Clone, Copy)]
pub struct IdJagExpect<'a> {
    /// Our issuer identifier (RFC 8414): the only accepted `aud`.
    pub audience: &'a str,
    /// The client authenticated by the token request.
    pub client_id: &'a str,
    /// Whether we serve a resource identifier.
    pub serves: &'a (dyn Fn(&str) -> bool + Sync),
    pub now: i64,
    pub skew: i64,
}

impl std::fmt::Debug for IdJagExpect<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdJagExpect")
            .field("audience", &self.audience)
            .field("client_id", &self.client_id)
            .field("now", &self.now)
            .field("skew", &self.skew)
            .finish_non_exhaustive()
    }
}

/// The configured enterprise IdPs, each with its own key cache (the federated issuers'
/// code: discovery, JWKS fetching and caching, URL policy).
#[derive(Debug)]
pub struct EnterpriseIdps {
    idps: Vec<(EnterpriseIdp, Federation)>,
}

impl EnterpriseIdps {
    /// Checks the configuration; nothing is fetched yet. `audience` is our issuer.
    pub fn new(
        idps: Vec<EnterpriseIdp>,
        audience: &str,
    ) -> Result<EnterpriseIdps, FederationConfigError> {
        let mut out: Vec<(EnterpriseIdp, Federation)> = Vec::with_capacity(idps.len());
        for idp in idps {
            let name = untrusted(&idp.issuer);
            if out.iter().any(|(o, _)| o.issuer == idp.issuer) {
                return Err(FederationConfigError::new(format!(
                    "enterprise IdP {name} is configured twice"
                )));
            }
            if idp.clients.is_empty() || idp.clients.iter().any(String::is_empty) {
                return Err(FederationConfigError::new(format!(
                    "enterprise IdP {name}: name the clients it may speak for"
                )));
            }
            if idp.tenant.is_empty() {
                return Err(FederationConfigError::new(format!(
                    "enterprise IdP {name}: the tenant is required"
                )));
            }
            if matches!(&idp.person, PersonMapping::Subjects(t) if t.is_empty()) {
                return Err(FederationConfigError::new(format!(
                    "enterprise IdP {name}: the subjects table is empty"
                )));
            }
            let mut issuer = FederatedIssuer::new(idp.issuer.clone(), vec![audience.to_owned()]);
            issuer.jwks_uri = idp.jwks_uri.clone();
            let federation = Federation::new(
                vec![issuer],
                FederationOptions {
                    dangerous_allow_insecure_loopback: idp.dangerous_allow_insecure_loopback,
                    ..FederationOptions::default()
                },
            )?;
            out.push((idp, federation));
        }
        Ok(EnterpriseIdps { idps: out })
    }

    pub fn is_empty(&self) -> bool {
        self.idps.is_empty()
    }

    /// Verifies an ID-JAG: signature and `typ` first, then every claim rule of the
    /// module. Returns it and the IdP that issued it.
    pub async fn verify(
        &self,
        assertion: &str,
        expect: &IdJagExpect<'_>,
    ) -> Result<(IdJag, &EnterpriseIdp), TokenError> {
        let grant = |e: TokenError| match e {
            TokenError::InvalidClient(m) => TokenError::InvalidGrant(format!("ID-JAG: {m}")),
            other => other,
        };
        // Unverified: read only to choose whose keys to try.
        let claimed = unverified_claim_str(assertion, "iss")
            .map_err(|m| TokenError::InvalidGrant(format!("the ID-JAG {m}")))?
            .ok_or_else(|| TokenError::InvalidGrant("the ID-JAG has no `iss`".into()))?;
        let (idp, federation) = self
            .idps
            .iter()
            .find(|(idp, _)| idp.issuer == claimed)
            .ok_or_else(|| {
                TokenError::InvalidGrant(format!(
                    "the ID-JAG's issuer {} is not a trusted enterprise identity provider",
                    untrusted(&claimed)
                ))
            })?;
        let times = TimeRules {
            now: expect.now,
            skew: expect.skew,
            require_exp: true,
            require_iat: true,
            max_lifetime: Some(MAX_ASSERTION_LIFETIME),
            max_age: None,
        };
        let (issuer, claims) = federation
            .verify_typed(assertion, Some(ID_JAG_TYP), &times)
            .await
            .map_err(grant)?;
        let jag = check_claims(&claims, issuer, expect)?;
        if !idp.clients.iter().any(|c| c == &jag.client_id) {
            return Err(TokenError::UnauthorizedClient(
                "this client may not use grants of this identity provider".into(),
            ));
        }
        Ok((jag, idp))
    }
}

/// The claim rules of an ID-JAG whose signature, `typ`, `iss`, `aud` (one of ours)
/// and times were checked.
pub fn check_claims(
    claims: &Claims,
    issuer: String,
    expect: &IdJagExpect<'_>,
) -> Result<IdJag, TokenError> {
    let bad = |e: ClaimError| TokenError::InvalidGrant(format!("ID-JAG: {e}"));
    let grant = |m: &str| TokenError::InvalidGrant(format!("ID-JAG: {m}"));
    // aud: our issuer, as a string or an array of exactly that one (draft §4.4.1).
    let auds = claims.audiences().map_err(bad)?;
    if auds.as_slice() != [expect.audience] {
        return Err(grant(
            "`aud` must be this authorization server's issuer identifier, alone",
        ));
    }
    let subject = claims.required_str("sub").map_err(bad)?.to_owned();
    let jti = claims.required_str("jti").map_err(bad)?;
    if jti.len() > MAX_JTI {
        return Err(grant("`jti` is too long"));
    }
    let client_id = claims.required_str("client_id").map_err(bad)?;
    if client_id != expect.client_id {
        return Err(grant("`client_id` is not the authenticated client"));
    }
    let resources: Vec<String> = match claims.get("resource") {
        None => Vec::new(),
        Some(Value::String(r)) => vec![r.clone()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| grant("`resource` holds a non-string"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(grant("`resource` is neither a URI nor an array of URIs")),
    };
    if let Some(r) = resources.iter().find(|r| !(expect.serves)(r.as_str())) {
        return Err(TokenError::InvalidTarget(format!(
            "the ID-JAG is for {}, a resource this server does not issue tokens for",
            untrusted(r)
        )));
    }
    let scope = claims.str("scope").map_err(bad)?.map(|s| {
        s.split(' ')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()
    });
    if claims.get("authorization_details").is_some() {
        // We could not honour another party's detail types: refused, never ignored.
        return Err(grant(
            "`authorization_details` is not supported in an ID-JAG",
        ));
    }
    let email = claims.str("email").map_err(bad)?.map(str::to_owned);
    let expires_at = claims.time("exp").map_err(bad)?.unwrap_or(expect.now);
    Ok(IdJag {
        issuer,
        subject,
        client_id: client_id.to_owned(),
        jti: jti.to_owned(),
        expires_at,
        resources,
        scope,
        email,
    })
}

/// What a mandate's `granted` tools leave under an ID-JAG's `scope`: each granted
/// entry the scope covers, and each scope entry a granted one covers (`hotels.book`
/// under `hotels.*`), once each. The assertion only narrows: nothing outside
/// `granted` is ever returned. No scope in the assertion leaves `granted` whole.
pub fn narrow_by_assertion(granted: &[String], asserted: Option<&[String]>) -> Vec<String> {
    let Some(asserted) = asserted else {
        return granted.to_vec();
    };
    let mut out: Vec<String> = Vec::new();
    let within =
        |t: &String, of: &[String]| crate::profile::scope_is_subset(std::slice::from_ref(t), of);
    for t in granted.iter().filter(|t| within(t, asserted)) {
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    for t in asserted.iter().filter(|t| within(t, granted)) {
        if !out.iter().any(|o| within(t, std::slice::from_ref(o))) {
            out.push(t.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
    use super::*;
    use serde_json::json;

    const US: &str = "https://mandate.example";

    fn expect<'a>(serves: &'a (dyn Fn(&str) -> bool + Sync)) -> IdJagExpect<'a> {
        IdJagExpect {
            audience: US,
            client_id: "agt_1",
            serves,
            now: 1000,
            skew: 60,
        }
    }

    fn claims(v: Value) -> Claims {
        let Value::Object(m) = v else { unreachable!() };
        Claims::from_map(m)
    }

    fn good() -> Value {
        json!({"iss": "https://idp", "sub": "u1", "aud": US, "client_id": "agt_1",
            "jti": "j", "exp": 1100, "iat": 1000, "resource": "https://mandate.example/mcp",
            "scope": "bank.read openid", "email": "A@Example.com"})
    }

    #[test]
    fn claim_rules() {
        let serves = |r: &str| r.starts_with("https://mandate.example/mcp");
        let e = expect(&serves);
        let jag = check_claims(&claims(good()), "https://idp".into(), &e).unwrap();
        assert_eq!(jag.scope.unwrap(), ["bank.read", "openid"]);
        assert_eq!(jag.resources, ["https://mandate.example/mcp"]);
        let cases = [
            ("aud", json!("https://other")),
            ("aud", json!([US, "https://other"])),
            ("client_id", json!("agt_2")),
            ("resource", json!("https://other/mcp")),
            (
                "resource",
                json!(["https://mandate.example/mcp", "https://x"]),
            ),
            ("resource", json!([])),
            ("authorization_details", json!([])),
            ("sub", json!("")),
            ("jti", json!(5)),
            ("scope", json!(["a"])),
        ];
        for (name, value) in cases {
            let mut c = good();
            c[name] = value;
            assert!(
                check_claims(&claims(c), "https://idp".into(), &e).is_err(),
                "{name}"
            );
        }
        let mut c = good();
        c["aud"] = json!([US]);
        assert!(check_claims(&claims(c), "https://idp".into(), &e).is_ok());
        for missing in ["sub", "jti", "client_id"] {
            let mut c = good();
            c.as_object_mut().unwrap().remove(missing);
            assert!(
                check_claims(&claims(c), "https://idp".into(), &e).is_err(),
                "{missing}"
            );
        }
    }

    #[test]
    fn configuration_is_checked() {
        let idp = |clients: &[&str]| EnterpriseIdp {
            issuer: "https://idp.example".into(),
            jwks_uri: None,
            tenant: "default".into(),
            person: PersonMapping::EmailClaim,
            clients: clients.iter().map(|c| (*c).to_owned()).collect(),
            dangerous_allow_insecure_loopback: false,
        };
        assert!(EnterpriseIdps::new(vec![idp(&["mcl_1"])], US).is_ok());
        assert!(
            EnterpriseIdps::new(vec![idp(&[])], US).is_err(),
            "no clients"
        );
        assert!(
            EnterpriseIdps::new(vec![idp(&[""])], US).is_err(),
            "empty client"
        );
        let twice = vec![idp(&["mcl_1"]), idp(&["mcl_2"])];
        assert!(EnterpriseIdps::new(twice, US).is_err(), "twice");
        let mut http = idp(&["mcl_1"]);
        http.issuer = "http://127.0.0.1:9".into();
        assert!(EnterpriseIdps::new(vec![http.clone()], US).is_err(), "http");
        http.dangerous_allow_insecure_loopback = true;
        assert!(
            EnterpriseIdps::new(vec![http], US).is_ok(),
            "http on loopback, tests"
        );
        let mut table = idp(&["mcl_1"]);
        table.person = PersonMapping::Subjects(BTreeMap::new());
        assert!(EnterpriseIdps::new(vec![table], US).is_err(), "empty table");
    }

    #[test]
    fn the_assertion_only_narrows() {
        let v = |x: &[&str]| x.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let granted = v(&["flights.search", "hotels.*"]);
        assert_eq!(narrow_by_assertion(&granted, None), granted);
        assert_eq!(
            narrow_by_assertion(
                &granted,
                Some(&v(&["flights.search", "payments.send", "openid"]))
            ),
            v(&["flights.search"])
        );
        assert_eq!(
            narrow_by_assertion(&granted, Some(&v(&["hotels.book", "flights.*"]))),
            v(&["flights.search", "hotels.book"])
        );
        assert_eq!(narrow_by_assertion(&granted, Some(&v(&["*"]))), granted);
        assert!(narrow_by_assertion(&granted, Some(&v(&["payments.send"]))).is_empty());
    }

    #[test]
    fn people_are_mapped_as_configured() {
        let serves = |_: &str| true;
        let jag = check_claims(&claims(good()), "https://idp".into(), &expect(&serves)).unwrap();
        let mut idp = EnterpriseIdp {
            issuer: "https://idp".into(),
            jwks_uri: None,
            tenant: "default".into(),
            person: PersonMapping::EmailClaim,
            clients: vec!["agt_1".into()],
            dangerous_allow_insecure_loopback: false,
        };
        assert_eq!(idp.person_email(&jag).unwrap(), "a@example.com");
        idp.person = PersonMapping::SubjectIsEmail;
        assert!(idp.person_email(&jag).is_err(), "u1 is no email");
        idp.person = PersonMapping::Subjects(BTreeMap::from([(
            "u1".to_owned(),
            "bob@example.com".to_owned(),
        )]));
        assert_eq!(idp.person_email(&jag).unwrap(), "bob@example.com");
        idp.person = PersonMapping::Subjects(BTreeMap::from([(
            "u2".to_owned(),
            "bob@example.com".to_owned(),
        )]));
        assert!(idp.person_email(&jag).is_err());
    }
}
