//! `[[tokens.enterprise_idp]]`: enterprise identity providers whose Identity Assertion
//! JWT Authorization Grants (ID-JAG) the token endpoint accepts.

use std::collections::BTreeMap;

use mandate_token::{EnterpriseIdp, PersonMapping};
use serde::Deserialize;

use super::ConfigError;

/// One enterprise IdP as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnterpriseIdpSetting {
    /// Its exact issuer identifier (`https`).
    issuer: String,
    /// Its JWK Set; by default read from its OpenID Connect Discovery document.
    jwks_uri: Option<String>,
    /// The tenant (by name) whose people it speaks for (default `default`).
    tenant: Option<String>,
    /// How its assertions name a person (by email address, always): `email` (the
    /// `email` claim), `sub` (the subject is the email address) or `subjects` (the
    /// `subjects` table below).
    person: String,
    /// With `person = "subjects"`: the IdP's `sub` → the person's email address.
    #[serde(default)]
    subjects: BTreeMap<String, String>,
    /// The client ids (agents' ids, registered OAuth clients) it may speak for.
    clients: Vec<String>,
    /// Allow `http://` to a loopback IP literal (tests only). Default false.
    #[serde(default)]
    dangerous_allow_insecure_loopback: bool,
}

impl EnterpriseIdpSetting {
    pub(super) fn settle(self, index: usize) -> Result<EnterpriseIdp, ConfigError> {
        let bad = |key: &str, message: &str| ConfigError::Value {
            origin: format!("config key `tokens.enterprise_idp[{index}].{key}`"),
            message: message.to_owned(),
        };
        if self.person != "subjects" && !self.subjects.is_empty() {
            return Err(bad("subjects", "is only read with person = \"subjects\""));
        }
        let person = match self.person.as_str() {
            "email" => PersonMapping::EmailClaim,
            "sub" => PersonMapping::SubjectIsEmail,
            "subjects" if self.subjects.is_empty() => {
                return Err(bad("subjects", "is required with person = \"subjects\""));
            }
            "subjects" => PersonMapping::Subjects(
                self.subjects
                    .into_iter()
                    .map(|(sub, email)| (sub, email.trim().to_ascii_lowercase()))
                    .collect(),
            ),
            _ => return Err(bad("person", "must be `email`, `sub` or `subjects`")),
        };
        if self.clients.is_empty() || self.clients.iter().any(|c| c.trim().is_empty()) {
            return Err(bad("clients", "name at least one client id"));
        }
        Ok(EnterpriseIdp {
            issuer: self.issuer,
            jwks_uri: self.jwks_uri,
            tenant: self.tenant.unwrap_or_else(|| "default".to_owned()),
            person,
            clients: self.clients,
            dangerous_allow_insecure_loopback: self.dangerous_allow_insecure_loopback,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::Config;
    use super::super::tests::file;
    use mandate_token::PersonMapping;

    fn load(text: &str) -> Result<Config, String> {
        let (_dir, flags) = file(text);
        Config::load(&flags, &BTreeMap::new()).map_err(|e| e.to_string())
    }

    const IDP: &str =
        "[[tokens.enterprise_idp]]\nissuer = \"https://idp.example\"\nclients = [\"mcl_1\"]\n";

    #[test]
    fn enterprise_idps_map_people_only_as_configured() {
        let c = load(&format!("{IDP}person = \"email\"\n")).unwrap();
        let idp = &c.tokens.enterprise_idps[0];
        assert_eq!(idp.person, PersonMapping::EmailClaim);
        assert_eq!(idp.tenant, "default");
        assert!(!idp.dangerous_allow_insecure_loopback);
        let c = load(&format!(
            "{IDP}person = \"subjects\"\ntenant = \"acme\"\n[tokens.enterprise_idp.subjects]\nU1 = \"Alice@Example.com\"\n"
        ))
        .unwrap();
        let idp = &c.tokens.enterprise_idps[0];
        assert_eq!(idp.tenant, "acme");
        let PersonMapping::Subjects(table) = &idp.person else {
            panic!("{:?}", idp.person)
        };
        assert_eq!(table["U1"], "alice@example.com");
        for (text, names) in [
            (IDP.to_owned(), "person"),
            (format!("{IDP}person = \"guess\"\n"), "person"),
            (format!("{IDP}person = \"subjects\"\n"), "subjects"),
            (
                format!("{IDP}person = \"sub\"\n[tokens.enterprise_idp.subjects]\nU1 = \"a@b\"\n"),
                "subjects",
            ),
            (
                "[[tokens.enterprise_idp]]\nissuer = \"https://idp.example\"\nperson = \"email\"\nclients = []\n".to_owned(),
                "clients",
            ),
            (format!("{IDP}person = \"email\"\naudience = \"x\"\n"), "audience"),
        ] {
            let err = load(&text).unwrap_err();
            assert!(err.contains(names), "{text}: {err}");
        }
        assert!(
            load("").unwrap().tokens.enterprise_idps.is_empty(),
            "none unless configured"
        );
    }
}
