#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly"
)]

use super::*;

const ISS: &str = "https://as.example";

fn meta(extra: &str) -> Vec<u8> {
    format!(
        r#"{{"issuer":"{ISS}","authorization_endpoint":"https://as.example/auth","token_endpoint":"https://as.example/token"{extra}}}"#
    )
    .into_bytes()
}

#[test]
fn metadata_is_parsed_and_checked() {
    let m = Metadata::parse(&meta(r#","revocation_endpoint":"https://as.example/revoke","code_challenge_methods_supported":["plain","S256"]"#), ISS, false).unwrap();
    assert_eq!(m.token_endpoint.as_str(), "https://as.example/token");
    assert_eq!(
        m.revocation_endpoint.unwrap().as_str(),
        "https://as.example/revoke"
    );
    assert!(
        Metadata::parse(&meta(""), ISS, false)
            .unwrap()
            .revocation_endpoint
            .is_none()
    );
}

#[test]
fn hostile_metadata_is_refused() {
    let cases: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        b"[]".to_vec(),
        b"{}".to_vec(),
        // Another issuer, or none.
        meta("").replace_issuer("https://evil.example"),
        br#"{"authorization_endpoint":"https://as.example/a","token_endpoint":"https://as.example/t"}"#.to_vec(),
        // An endpoint missing, not https, with userinfo, not a string.
        format!(r#"{{"issuer":"{ISS}","authorization_endpoint":"https://as.example/a"}}"#).into_bytes(),
        format!(r#"{{"issuer":"{ISS}","authorization_endpoint":"http://as.example/a","token_endpoint":"https://as.example/t"}}"#).into_bytes(),
        format!(r#"{{"issuer":"{ISS}","authorization_endpoint":"https://u:p@as.example/a","token_endpoint":"https://as.example/t"}}"#).into_bytes(),
        format!(r#"{{"issuer":"{ISS}","authorization_endpoint":5,"token_endpoint":"https://as.example/t"}}"#).into_bytes(),
        meta(r#","revocation_endpoint":"javascript:alert(1)""#),
        // PKCE listed without S256.
        meta(r#","code_challenge_methods_supported":["plain"]"#),
        meta(r#","code_challenge_methods_supported":"S256""#),
        // Duplicate keys (strict JSON).
        format!(r#"{{"issuer":"{ISS}","issuer":"{ISS}","authorization_endpoint":"https://as.example/a","token_endpoint":"https://as.example/t"}}"#).into_bytes(),
    ];
    for case in cases {
        assert!(
            Metadata::parse(&case, ISS, false).is_err(),
            "accepted {}",
            String::from_utf8_lossy(&case)
        );
    }
    // http on loopback only with the test switch.
    let local = br#"{"issuer":"https://as.example","authorization_endpoint":"http://127.0.0.1:9/a","token_endpoint":"http://127.0.0.1:9/t"}"#;
    assert!(Metadata::parse(local, ISS, false).is_err());
    assert!(Metadata::parse(local, ISS, true).is_ok());
    let named = br#"{"issuer":"https://as.example","authorization_endpoint":"http://localhost:9/a","token_endpoint":"http://127.0.0.1:9/t"}"#;
    assert!(Metadata::parse(named, ISS, true).is_err());
}

trait ReplaceIssuer {
    fn replace_issuer(self, with: &str) -> Vec<u8>;
}

impl ReplaceIssuer for Vec<u8> {
    fn replace_issuer(self, with: &str) -> Vec<u8> {
        String::from_utf8(self)
            .unwrap()
            .replace(ISS, with)
            .into_bytes()
    }
}

#[test]
fn token_responses_are_parsed() {
    let t = TokenSet::parse(
        200,
        br#"{"access_token":"at-1","token_type":"bearer","expires_in":60,"refresh_token":"rt-1","scope":"a b"}"#,
    )
    .unwrap();
    assert_eq!(t.access_token.expose(), "at-1");
    assert_eq!(t.refresh_token.as_ref().unwrap().expose(), "rt-1");
    assert_eq!((t.expires_in, t.scope.as_deref()), (Some(60), Some("a b")));
    // Debug never shows a token.
    let shown = format!("{t:?}");
    assert!(
        !shown.contains("at-1") && !shown.contains("rt-1"),
        "{shown}"
    );
    let bare = TokenSet::parse(200, br#"{"access_token":"x","token_type":"Bearer"}"#).unwrap();
    assert!(bare.refresh_token.is_none() && bare.expires_in.is_none());
}

#[test]
fn hostile_token_responses_are_refused() {
    let cases: &[(u16, &[u8])] = &[
        (200, b"not json"),
        (200, b"[]"),
        (200, br#"{"token_type":"bearer"}"#),
        (200, br#"{"access_token":"","token_type":"bearer"}"#),
        (200, br#"{"access_token":"a b","token_type":"bearer"}"#),
        (
            200,
            b"{\"access_token\":\"a\\r\\nX-Evil: 1\",\"token_type\":\"bearer\"}",
        ),
        (200, br#"{"access_token":7,"token_type":"bearer"}"#),
        (200, br#"{"access_token":"a"}"#),
        (200, br#"{"access_token":"a","token_type":"DPoP"}"#),
        (
            200,
            br#"{"access_token":"a","token_type":"bearer","expires_in":-1}"#,
        ),
        (
            200,
            br#"{"access_token":"a","token_type":"bearer","expires_in":0}"#,
        ),
        (
            200,
            br#"{"access_token":"a","token_type":"bearer","expires_in":"60"}"#,
        ),
        (
            200,
            br#"{"access_token":"a","token_type":"bearer","expires_in":1e30}"#,
        ),
        (
            200,
            br#"{"access_token":"a","token_type":"bearer","refresh_token":""}"#,
        ),
        (
            200,
            br#"{"access_token":"a","token_type":"bearer","scope":5}"#,
        ),
        (
            200,
            br#"{"access_token":"a","access_token":"b","token_type":"bearer"}"#,
        ),
        (400, br#"{"error":"invalid_grant"}"#),
        (200, b""),
    ];
    for (status, body) in cases {
        assert!(
            TokenSet::parse(*status, body).is_err(),
            "accepted {status} {}",
            String::from_utf8_lossy(body)
        );
    }
    let long = format!(
        r#"{{"access_token":"{}","token_type":"bearer"}}"#,
        "a".repeat(MAX_TOKEN + 1)
    );
    assert!(TokenSet::parse(200, long.as_bytes()).is_err());
    // The provider's error is quoted, shortened, never a token.
    let e = TokenSet::parse(
        400,
        br#"{"error":"invalid_grant","refresh_token":"rt-secret"}"#,
    )
    .err()
    .unwrap();
    assert!(
        e.contains("invalid_grant") && !e.contains("rt-secret"),
        "{e}"
    );
}

#[test]
fn the_well_known_url_follows_rfc_8414() {
    assert_eq!(
        ProviderConfig::well_known("https://as.example").unwrap(),
        "https://as.example/.well-known/oauth-authorization-server"
    );
    assert_eq!(
        ProviderConfig::well_known("https://as.example/tenant/1/").unwrap(),
        "https://as.example/.well-known/oauth-authorization-server/tenant/1"
    );
    assert!(ProviderConfig::well_known("not a url").is_err());
}

#[test]
fn configurations_are_checked() {
    let good = ProviderConfig {
        issuer: ISS.into(),
        metadata_url: format!("{ISS}/.well-known/oauth-authorization-server"),
        client_id: "mandate".into(),
        scopes: vec!["calendar.read".into()],
        dangerous_allow_insecure_loopback: false,
    };
    let timeout = Duration::from_secs(5);
    assert!(Provider::new(good.clone(), timeout).is_ok());
    for bad in [
        ProviderConfig {
            issuer: "http://as.example".into(),
            ..good.clone()
        },
        ProviderConfig {
            client_id: String::new(),
            ..good.clone()
        },
        ProviderConfig {
            scopes: vec!["a b".into()],
            ..good.clone()
        },
        ProviderConfig {
            metadata_url: "http://127.0.0.1:1/m".into(),
            ..good.clone()
        },
    ] {
        assert!(Provider::new(bad, timeout).is_err());
    }
}

#[test]
fn pkce_pairs_are_fresh_and_s256() {
    let (v1, c1) = pkce_pair().unwrap();
    let (v2, _) = pkce_pair().unwrap();
    assert_ne!(v1.expose(), v2.expose());
    assert!(v1.expose().len() >= 43);
    assert_eq!(c1, crate::oidc::pkce_challenge(v1.expose()));
}
