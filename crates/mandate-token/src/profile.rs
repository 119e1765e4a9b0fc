//! The task-token profile (RFC 9068 `at+jwt`, PRODUCT.md §5): what a token says and
//! how a presented one is checked.
//!
//! ```json
//! { "iss": "https://mandate.example", "aud": ["https://mandate.example/mcp"],
//!   "sub": "hum_…",                        // the human whose consent it carries
//!   "act": { "sub": "agt_B", "act": { "sub": "agt_A" } },   // current actor first
//!   "client_id": "agt_B", "tenant": "tnt_…", "mandate": "mnd_…",
//!   "scope": "crm.read crm.*", "authorization_details": [{ "type": "mandate", … }],
//!   "cnf": { "jkt": "…" }, "iat": 1700000000, "exp": 1700000300, "jti": "t…" }
//! ```
//!
//! A token without a mandate (`scope: "mandates:request"`, `sub` = the agent, no
//! `act`) can only ask for mandates.

use std::str::FromStr;

use mandate_types::{AgentId, MandateId, TenantId};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::claims::{Claims, TimeRules};
use crate::error::TokenError;

/// The JOSE `typ` of our access tokens.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// The scope of a token that may only request mandates.
pub const REQUEST_MANDATES_SCOPE: &str = "mandates:request";
/// The `authorization_details` type naming a mandate (RFC 9396).
pub const MANDATE_DETAILS_TYPE: &str = "mandate";
/// Longest act chain we issue or accept (the mandate bounds it further).
pub const MAX_CHAIN: usize = 1 + mandate_domain::MAX_DELEGATION_DEPTH as usize;

/// A task token's content: what we sign, and what verification yields.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskToken {
    pub issuer: String,
    pub jti: String,
    pub tenant: TenantId,
    /// The human (or, for a mandate-less token, the agent itself).
    pub subject: String,
    /// The `act` chain, the current actor first and the mandate's grantee last.
    pub actors: Vec<AgentId>,
    pub audience: Vec<String>,
    pub issued_at: i64,
    pub expires_at: i64,
    /// Tool names or patterns (or [`REQUEST_MANDATES_SCOPE`]).
    pub scope: Vec<String>,
    pub mandate: Option<MandateId>,
    pub authorization_details: Option<Value>,
    pub cnf_jkt: Option<String>,
}

impl TaskToken {
    /// The agent presenting the token.
    pub fn actor(&self) -> Option<AgentId> {
        self.actors.first().copied()
    }

    /// The agents above the current actor, the grantee first (what policy calls the
    /// delegation chain); its length is the delegation depth.
    pub fn delegation_chain(&self) -> Vec<AgentId> {
        self.actors.iter().skip(1).rev().copied().collect()
    }

    /// The claims set to sign, as a map (it serialises as [`TaskToken`] does).
    pub fn to_claims(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(claims)) => claims,
            // A map of string keys is all the serialisation below writes.
            _ => Map::new(),
        }
    }

    /// Reads a verified token's claims, checking issuer, audience and times.
    pub fn from_claims(claims: &Claims, expect: &Expect<'_>) -> Result<TaskToken, TokenError> {
        let bad = |m: String| TokenError::InvalidToken(m);
        claims.expect_issuer(expect.issuer).map_err(|e| bad(e.0))?;
        if let Some(accepted) = expect.audience {
            claims.expect_audience(accepted).map_err(|e| bad(e.0))?;
        }
        let mut rules = TimeRules::at(expect.now);
        rules.skew = expect.skew;
        rules.require_iat = true;
        claims.check_times(&rules).map_err(|e| bad(e.0))?;
        let text = |name: &str| claims.required_str(name).map_err(|e| bad(e.0));
        let tenant = TenantId::from_str(text("tenant")?)
            .map_err(|_| bad("claim `tenant` is not a tenant id".into()))?;
        let actors = match claims.get("act") {
            None => Vec::new(),
            Some(act) => flatten_actors(act).map_err(bad)?,
        };
        let mandate = match claims.str("mandate").map_err(|e| bad(e.0))? {
            None => None,
            Some(m) => Some(
                MandateId::from_str(m)
                    .map_err(|_| bad("claim `mandate` is not a mandate id".into()))?,
            ),
        };
        let scope: Vec<String> = claims
            .str("scope")
            .map_err(|e| bad(e.0))?
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let cnf_jkt = match claims.get("cnf") {
            None => None,
            Some(Value::Object(cnf)) => match cnf.get("jkt") {
                Some(Value::String(j)) if !j.is_empty() => Some(j.clone()),
                _ => return Err(bad("claim `cnf` has no usable `jkt`".into())),
            },
            Some(_) => return Err(bad("claim `cnf` is not an object".into())),
        };
        let subject = text("sub")?.to_owned();
        if mandate.is_some() && actors.is_empty() {
            return Err(bad("a mandate token names no actor".into()));
        }
        if let (Some(first), Some(client)) = (
            actors.first(),
            claims.str("client_id").map_err(|e| bad(e.0))?,
        ) && first.to_string() != client
        {
            return Err(bad("claim `client_id` is not the current actor".into()));
        }
        Ok(TaskToken {
            issuer: text("iss")?.to_owned(),
            jti: text("jti")?.to_owned(),
            tenant,
            subject,
            actors,
            audience: claims
                .audiences()
                .map_err(|e| bad(e.0))?
                .into_iter()
                .map(str::to_owned)
                .collect(),
            issued_at: claims
                .time("iat")
                .map_err(|e| bad(e.0))?
                .unwrap_or_default(),
            expires_at: claims
                .time("exp")
                .map_err(|e| bad(e.0))?
                .unwrap_or_default(),
            scope,
            mandate,
            authorization_details: claims.get("authorization_details").cloned(),
            cnf_jkt,
        })
    }
}

/// What a presented token must satisfy.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    pub issuer: &'a str,
    /// `None`: any audience (the token service reading its own tokens back).
    pub audience: Option<&'a [&'a str]>,
    pub now: i64,
    pub skew: i64,
}

/// The claims set to sign, written straight from the token (no map is built on the way
/// to the signature):
/// `iss, sub, aud, iat, exp, jti, tenant, [client_id, act,] scope, [mandate,]
/// [authorization_details,] [cnf]`.
impl Serialize for TaskToken {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut claims = serializer.serialize_map(None)?;
        claims.serialize_entry("iss", &self.issuer)?;
        claims.serialize_entry("sub", &self.subject)?;
        claims.serialize_entry("aud", &self.audience)?;
        claims.serialize_entry("iat", &self.issued_at)?;
        claims.serialize_entry("exp", &self.expires_at)?;
        claims.serialize_entry("jti", &self.jti)?;
        claims.serialize_entry("tenant", &Shown(&self.tenant))?;
        if let Some(first) = self.actors.first() {
            claims.serialize_entry("client_id", &Shown(first))?;
            claims.serialize_entry("act", &Actors(&self.actors))?;
        }
        claims.serialize_entry("scope", &Joined(&self.scope))?;
        if let Some(mandate) = &self.mandate {
            claims.serialize_entry("mandate", &Shown(mandate))?;
        }
        if let Some(details) = &self.authorization_details {
            claims.serialize_entry("authorization_details", details)?;
        }
        if let Some(jkt) = &self.cnf_jkt {
            claims.serialize_entry("cnf", &Confirmation(jkt))?;
        }
        claims.end()
    }
}

/// An id, written as the string it displays as.
struct Shown<'a, T>(&'a T);

impl<T: std::fmt::Display> Serialize for Shown<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self.0)
    }
}

/// Scope values, space-separated (RFC 9068 `scope`).
struct Joined<'a>(&'a [String]);

impl Serialize for Joined<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.join(" "))
    }
}

/// The `act` chain, the first actor outermost (RFC 8693 §4.1):
/// `{"sub": a0, "act": {"sub": a1, …}}`.
struct Actors<'a>(&'a [AgentId]);

impl Serialize for Actors<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut act = serializer.serialize_map(None)?;
        if let Some((first, inner)) = self.0.split_first() {
            act.serialize_entry("sub", &Shown(first))?;
            if !inner.is_empty() {
                act.serialize_entry("act", &Actors(inner))?;
            }
        }
        act.end()
    }
}

/// `cnf` with the DPoP key's thumbprint (RFC 9449 §6).
struct Confirmation<'a>(&'a str);

impl Serialize for Confirmation<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut cnf = serializer.serialize_map(Some(1))?;
        cnf.serialize_entry("jkt", self.0)?;
        cnf.end()
    }
}

fn flatten_actors(act: &Value) -> Result<Vec<AgentId>, String> {
    let mut out = Vec::new();
    let mut current = Some(act);
    while let Some(node) = current {
        if out.len() >= MAX_CHAIN {
            return Err("claim `act` nests too deeply".into());
        }
        let Value::Object(obj) = node else {
            return Err("claim `act` is not an object".into());
        };
        let sub = obj
            .get("sub")
            .and_then(Value::as_str)
            .ok_or("claim `act` has no `sub`")?;
        out.push(
            AgentId::from_str(sub).map_err(|_| "claim `act.sub` is not an agent id".to_owned())?,
        );
        current = obj.get("act");
    }
    Ok(out)
}

/// Whether every entry of `child` is covered by some entry of `parent`: equal, or
/// under a parent pattern `p*` (a child pattern `q*` only when `q` starts with `p`).
pub fn scope_is_subset(child: &[String], parent: &[String]) -> bool {
    child
        .iter()
        .all(|c| parent.iter().any(|p| mandate_domain::scope_covers(p, c)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
    use super::*;
    use serde_json::json;

    fn token() -> TaskToken {
        TaskToken {
            issuer: "https://as".into(),
            jti: "tabc".into(),
            tenant: TenantId::generate(),
            subject: "hum_1".into(),
            actors: vec![
                AgentId::generate(),
                AgentId::generate(),
                AgentId::generate(),
            ],
            audience: vec!["https://as/mcp".into()],
            issued_at: 1000,
            expires_at: 1300,
            scope: vec!["crm.read".into(), "crm.*".into()],
            mandate: Some(MandateId::generate()),
            authorization_details: Some(json!([{"type": "mandate"}])),
            cnf_jkt: Some("jkt".into()),
        }
    }

    fn expect(now: i64) -> Expect<'static> {
        Expect {
            issuer: "https://as",
            audience: Some(&["https://as/mcp"]),
            now,
            skew: 0,
        }
    }

    #[test]
    fn round_trips_with_nested_act() {
        let t = token();
        let claims = Claims::from_map(t.to_claims());
        assert_eq!(
            claims.get("act").unwrap()["act"]["act"]["sub"],
            json!(t.actors[2].to_string())
        );
        let back = TaskToken::from_claims(&claims, &expect(1100)).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.delegation_chain(), vec![t.actors[2], t.actors[1]]);
    }

    /// What is signed, byte for byte: the claims in their order, ids as strings, the
    /// chain nested with the current actor outermost; a token with no actor, mandate,
    /// details or key has none of those claims.
    #[test]
    fn the_signed_claims_are_written_in_one_layout() {
        let t = token();
        let [a0, a1, a2] = [t.actors[0], t.actors[1], t.actors[2]];
        let (tenant, mandate) = (t.tenant, t.mandate.unwrap());
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            format!(
                r#"{{"iss":"https://as","sub":"hum_1","aud":["https://as/mcp"],"iat":1000,"exp":1300,"jti":"tabc","tenant":"{tenant}","client_id":"{a0}","act":{{"sub":"{a0}","act":{{"sub":"{a1}","act":{{"sub":"{a2}"}}}}}},"scope":"crm.read crm.*","mandate":"{mandate}","authorization_details":[{{"type":"mandate"}}],"cnf":{{"jkt":"jkt"}}}}"#
            )
        );
        let bare = TaskToken {
            actors: vec![],
            scope: vec![REQUEST_MANDATES_SCOPE.into()],
            mandate: None,
            authorization_details: None,
            cnf_jkt: None,
            ..t
        };
        assert_eq!(
            serde_json::to_string(&bare).unwrap(),
            format!(
                r#"{{"iss":"https://as","sub":"hum_1","aud":["https://as/mcp"],"iat":1000,"exp":1300,"jti":"tabc","tenant":"{tenant}","scope":"mandates:request"}}"#
            )
        );
        assert_eq!(
            Value::Object(bare.to_claims()),
            serde_json::to_value(&bare).unwrap()
        );
    }

    #[test]
    fn wrong_issuer_audience_time_and_shapes_are_invalid_token() {
        let t = token();
        let claims = Claims::from_map(t.to_claims());
        let mut e = expect(1100);
        e.issuer = "https://other";
        assert!(TaskToken::from_claims(&claims, &e).is_err());
        let mut e = expect(1100);
        e.audience = Some(&["https://elsewhere"]);
        assert!(TaskToken::from_claims(&claims, &e).is_err());
        assert!(TaskToken::from_claims(&claims, &expect(1300)).is_err());
        for (name, value) in [
            ("act", json!("agt")),
            ("act", json!({"sub": "hum_1"})),
            ("cnf", json!({"jkt": 5})),
            ("cnf", json!([])),
            ("tenant", json!("x")),
            ("mandate", json!(7)),
            ("client_id", json!("agt_00000000000000000000000000000000")),
        ] {
            let mut map = t.to_claims();
            map.insert(name.into(), value.clone());
            let r = TaskToken::from_claims(&Claims::from_map(map), &expect(1100));
            assert!(
                matches!(r, Err(TokenError::InvalidToken(_))),
                "{name}: {value}"
            );
        }
        let mut deep = json!({"sub": AgentId::generate().to_string()});
        for _ in 0..MAX_CHAIN {
            deep = json!({"sub": AgentId::generate().to_string(), "act": deep});
        }
        let mut map = t.to_claims();
        map.insert("act".into(), deep);
        assert!(TaskToken::from_claims(&Claims::from_map(map), &expect(1100)).is_err());
    }

    #[test]
    fn scope_subsets() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(scope_is_subset(
            &s(&["crm.read"]),
            &s(&["crm.read", "mail.send"])
        ));
        assert!(scope_is_subset(&s(&["crm.read", "crm.x*"]), &s(&["crm.*"])));
        assert!(!scope_is_subset(&s(&["crm.*"]), &s(&["crm.read"])));
        assert!(!scope_is_subset(&s(&["*"]), &s(&["crm.*"])));
        assert!(!scope_is_subset(&s(&["mail.send"]), &s(&["crm.*"])));
        assert!(scope_is_subset(&s(&[]), &s(&["crm.read"])));
    }
}
