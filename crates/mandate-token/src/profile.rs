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
use serde_json::{Map, Value, json};

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

    /// The claims set to sign.
    pub fn to_claims(&self) -> Map<String, Value> {
        let mut c = Map::new();
        c.insert("iss".into(), json!(self.issuer));
        c.insert("sub".into(), json!(self.subject));
        c.insert("aud".into(), json!(self.audience));
        c.insert("iat".into(), json!(self.issued_at));
        c.insert("exp".into(), json!(self.expires_at));
        c.insert("jti".into(), json!(self.jti));
        c.insert("tenant".into(), json!(self.tenant.to_string()));
        if let Some(first) = self.actors.first() {
            c.insert("client_id".into(), json!(first.to_string()));
        }
        if let Some(act) = nest_actors(&self.actors) {
            c.insert("act".into(), act);
        }
        c.insert("scope".into(), json!(self.scope.join(" ")));
        if let Some(m) = self.mandate {
            c.insert("mandate".into(), json!(m.to_string()));
        }
        if let Some(d) = &self.authorization_details {
            c.insert("authorization_details".into(), d.clone());
        }
        if let Some(jkt) = &self.cnf_jkt {
            c.insert("cnf".into(), json!({ "jkt": jkt }));
        }
        c
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

fn nest_actors(actors: &[AgentId]) -> Option<Value> {
    let mut nested: Option<Value> = None;
    for agent in actors.iter().rev() {
        let mut obj = Map::new();
        obj.insert("sub".into(), json!(agent.to_string()));
        if let Some(inner) = nested.take() {
            obj.insert("act".into(), inner);
        }
        nested = Some(Value::Object(obj));
    }
    nested
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
