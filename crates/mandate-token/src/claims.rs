//! JWT claims sets (RFC 7519): strict parsing and the checks every token kind shares.
//!
//! A [`Claims`] is only ever built from the payload of a JWS that has already been
//! verified; nothing here looks at an unverified token.

use serde_json::{Map, Value};

/// Why a claims set was refused. The caller decides which OAuth error it becomes
/// (`invalid_client` for an assertion, `invalid_token` at a resource, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ClaimError(pub String);

fn err(msg: impl Into<String>) -> ClaimError {
    ClaimError(msg.into())
}

/// A verified token's claims: a JSON object without duplicate members.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims(Map<String, Value>);

impl Claims {
    /// Parses a JWS payload. Duplicate members at any depth are refused.
    pub fn from_payload(payload: &[u8]) -> Result<Claims, ClaimError> {
        match mandate_jose::parse_json_strict(payload) {
            Ok(Value::Object(map)) => Ok(Claims(map)),
            Ok(_) => Err(err("the claims set is not a JSON object")),
            Err(e) => Err(err(format!("the claims set is {e}"))),
        }
    }

    /// Wraps an object (tests, and tokens we build ourselves).
    pub fn from_map(map: Map<String, Value>) -> Claims {
        Claims(map)
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// A string claim; present with another type is an error.
    pub fn str(&self, name: &str) -> Result<Option<&str>, ClaimError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(err(format!("claim `{name}` is not a string"))),
        }
    }

    /// A string claim that must be present and non-empty.
    pub fn required_str(&self, name: &str) -> Result<&str, ClaimError> {
        match self.str(name)? {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => Err(err(format!("claim `{name}` is empty"))),
            None => Err(err(format!("claim `{name}` is missing"))),
        }
    }

    /// A NumericDate claim in whole seconds. Fractions are truncated toward the past
    /// for `nbf`/`iat` checks' benefit of the doubt only within the skew; values that
    /// are not finite numbers, negative, or beyond year 9999 are refused.
    pub fn time(&self, name: &str) -> Result<Option<i64>, ClaimError> {
        const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
        let Some(v) = self.0.get(name) else {
            return Ok(None);
        };
        let secs = match v {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    i
                } else if let Some(f) = n.as_f64() {
                    if !f.is_finite() || f < 0.0 || f > MAX as f64 {
                        return Err(err(format!("claim `{name}` is out of range")));
                    }
                    f.floor() as i64
                } else {
                    return Err(err(format!("claim `{name}` is out of range")));
                }
            }
            _ => return Err(err(format!("claim `{name}` is not a NumericDate"))),
        };
        if !(0..=MAX).contains(&secs) {
            return Err(err(format!("claim `{name}` is out of range")));
        }
        Ok(Some(secs))
    }

    /// `aud` as a list: a string is one audience, an array must hold only strings.
    pub fn audiences(&self) -> Result<Vec<&str>, ClaimError> {
        match self.0.get("aud") {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.as_str()]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| err("claim `aud` holds a non-string"))
                })
                .collect(),
            Some(_) => Err(err("claim `aud` is neither a string nor an array")),
        }
    }

    /// Checks `iss` equals `expected` exactly.
    pub fn expect_issuer(&self, expected: &str) -> Result<(), ClaimError> {
        let iss = self.required_str("iss")?;
        if iss != expected {
            return Err(err(format!(
                "claim `iss` is {}, not the expected issuer",
                crate::error::untrusted(iss)
            )));
        }
        Ok(())
    }

    /// Checks that `aud` names at least one of `accepted` (exact string match).
    pub fn expect_audience(&self, accepted: &[&str]) -> Result<(), ClaimError> {
        let auds = self.audiences()?;
        if auds.is_empty() {
            return Err(err("claim `aud` is missing"));
        }
        if auds.iter().any(|a| accepted.contains(a)) {
            Ok(())
        } else {
            Err(err("claim `aud` does not name this server"))
        }
    }

    /// Checks `exp`, `nbf` and `iat` against `rules`.
    pub fn check_times(&self, rules: &TimeRules) -> Result<(), ClaimError> {
        let now = rules.now;
        let skew = rules.skew;
        let exp = self.time("exp")?;
        let nbf = self.time("nbf")?;
        let iat = self.time("iat")?;
        match exp {
            Some(exp) if now >= exp.saturating_add(skew) => {
                return Err(err("the token has expired"));
            }
            Some(exp) => {
                if let Some(max) = rules.max_lifetime
                    && exp > now.saturating_add(max).saturating_add(skew)
                {
                    return Err(err("claim `exp` is too far in the future"));
                }
            }
            None if rules.require_exp => return Err(err("claim `exp` is missing")),
            None => {}
        }
        if let Some(nbf) = nbf
            && nbf > now.saturating_add(skew)
        {
            return Err(err("the token is not valid yet (`nbf`)"));
        }
        match iat {
            Some(iat) => {
                if iat > now.saturating_add(skew) {
                    return Err(err("claim `iat` is in the future"));
                }
                if let Some(max_age) = rules.max_age
                    && now.saturating_sub(iat) > max_age.saturating_add(skew)
                {
                    return Err(err("the token is too old (`iat`)"));
                }
                if let Some(exp) = exp
                    && exp < iat
                {
                    return Err(err("claim `exp` is before `iat`"));
                }
            }
            None if rules.require_iat => return Err(err("claim `iat` is missing")),
            None => {}
        }
        Ok(())
    }
}

/// Time checks for a claims set. Times are Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRules {
    pub now: i64,
    /// Allowed clock difference, in seconds, applied in the token's favour once.
    pub skew: i64,
    pub require_exp: bool,
    pub require_iat: bool,
    /// `exp` may lie at most this many seconds after `now` (assertions are short-lived).
    pub max_lifetime: Option<i64>,
    /// `iat` may lie at most this many seconds before `now`.
    pub max_age: Option<i64>,
}

impl TimeRules {
    /// `exp` required, 60 s skew, nothing else.
    pub fn at(now: i64) -> TimeRules {
        TimeRules {
            now,
            skew: 60,
            require_exp: true,
            require_iat: false,
            max_lifetime: None,
            max_age: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        match v {
            Value::Object(m) => Claims::from_map(m),
            _ => Claims::from_map(Map::new()),
        }
    }

    #[test]
    fn duplicates_and_non_objects_are_refused() {
        assert!(Claims::from_payload(br#"{"sub":"a","sub":"b"}"#).is_err());
        assert!(Claims::from_payload(br#"{"a":{"x":1,"x":2}}"#).is_err());
        assert!(Claims::from_payload(b"[1]").is_err());
        assert!(Claims::from_payload(b"{} x").is_err());
        assert!(Claims::from_payload(br#"{"sub":"a"}"#).is_ok());
    }

    #[test]
    fn expiry_boundaries_with_skew() {
        let c = claims(json!({"exp": 1000}));
        let mut r = TimeRules::at(0);
        r.skew = 0;
        r.now = 999;
        assert!(c.check_times(&r).is_ok());
        r.now = 1000;
        assert!(c.check_times(&r).is_err(), "exp is exclusive");
        r.skew = 30;
        r.now = 1029;
        assert!(c.check_times(&r).is_ok());
        r.now = 1030;
        assert!(c.check_times(&r).is_err());
    }

    #[test]
    fn nbf_iat_and_lifetime() {
        let mut r = TimeRules::at(1000);
        r.skew = 5;
        assert!(
            claims(json!({"exp": 2000, "nbf": 1005}))
                .check_times(&r)
                .is_ok()
        );
        assert!(
            claims(json!({"exp": 2000, "nbf": 1006}))
                .check_times(&r)
                .is_err()
        );
        assert!(
            claims(json!({"exp": 2000, "iat": 1006}))
                .check_times(&r)
                .is_err()
        );
        assert!(
            claims(json!({"exp": 900, "iat": 950}))
                .check_times(&r)
                .is_err()
        );
        assert!(
            claims(json!({"exp": 1100, "iat": 1200}))
                .check_times(&r)
                .is_err()
        );
        r.max_lifetime = Some(300);
        assert!(claims(json!({"exp": 1305})).check_times(&r).is_ok());
        assert!(claims(json!({"exp": 1306})).check_times(&r).is_err());
        r.max_age = Some(60);
        assert!(
            claims(json!({"exp": 1100, "iat": 935}))
                .check_times(&r)
                .is_ok()
        );
        assert!(
            claims(json!({"exp": 1100, "iat": 934}))
                .check_times(&r)
                .is_err()
        );
        r.require_iat = true;
        assert!(claims(json!({"exp": 1100})).check_times(&r).is_err());
        assert!(
            claims(json!({"iat": 1000})).check_times(&r).is_err(),
            "exp required"
        );
    }

    #[test]
    fn hostile_time_values() {
        let r = TimeRules::at(1000);
        for bad in [
            json!({"exp": "2000"}),
            json!({"exp": -1}),
            json!({"exp": 1e300}),
            json!({"exp": 99999999999999i64}),
            json!({"exp": null}),
            json!({"exp": [2000]}),
            json!({"exp": 2000, "nbf": true}),
        ] {
            assert!(claims(bad.clone()).check_times(&r).is_err(), "{bad}");
        }
        assert!(claims(json!({"exp": 2000.7})).check_times(&r).is_ok());
    }

    #[test]
    fn issuer_and_audience() {
        let c = claims(json!({"iss": "https://as", "aud": ["x", "https://as/oauth2/token"]}));
        assert!(c.expect_issuer("https://as").is_ok());
        assert!(c.expect_issuer("https://as/").is_err());
        assert!(c.expect_audience(&["https://as/oauth2/token"]).is_ok());
        assert!(c.expect_audience(&["https://other"]).is_err());
        assert!(claims(json!({"aud": [1]})).expect_audience(&["1"]).is_err());
        assert!(claims(json!({})).expect_audience(&["a"]).is_err());
        assert!(claims(json!({"iss": 5})).expect_issuer("5").is_err());
    }
}
