use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// An identifier that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind} id (expected `{prefix}_` followed by 32 hex digits)")]
pub struct IdError {
    pub kind: &'static str,
    pub prefix: &'static str,
    pub value: String,
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$meta])*
        ///
        /// Printed as
        #[doc = concat!("`", $prefix, "_`")]
        /// followed by the 32 lowercase hex digits of a UUIDv7, so ids sort by creation time.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn uuid(&self) -> Uuid {
                self.0
            }
        }

        const _: () = assert!($prefix.len() <= MAX_PREFIX, "an id prefix longer than IdText holds");

        impl $name {
            /// The printed form, written into a buffer on the stack (ids are printed on
            /// every hot path: events, SQL parameters, policy entities).
            pub fn encode(&self) -> IdText {
                IdText::new($prefix, self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.encode().as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_prefixed(s, $prefix)
                    .map(Self)
                    .ok_or_else(|| IdError { kind: $kind, prefix: $prefix, value: truncate_for_message(s) })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.encode().as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some(concat!("^", $prefix, "_[0-9a-f]{32}$")))
                    .description(Some(concat!("A ", $kind, " id.")))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

/// The longest prefix an id type may have (checked where each type is defined).
const MAX_PREFIX: usize = 8;

/// An id's printed form (`prefix_` + 32 lowercase hex digits), held on the stack.
#[derive(Clone, Copy, Debug)]
pub struct IdText {
    bytes: [u8; MAX_PREFIX + 1 + 32],
    len: usize,
}

impl IdText {
    fn new(prefix: &str, uuid: Uuid) -> Self {
        let mut bytes = [0u8; MAX_PREFIX + 1 + 32];
        let mut len = 0;
        for (slot, b) in bytes.iter_mut().zip(prefix.bytes().chain(*b"_")) {
            *slot = b;
            len += 1;
        }
        if let Some(rest) = bytes.get_mut(len..len + 32) {
            uuid.simple().encode_lower(rest);
            len += 32;
        }
        IdText { bytes, len }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written: the prefixes, `_` and hex digits.
        self.bytes
            .get(..self.len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }
}

impl std::ops::Deref for IdText {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

fn parse_prefixed(s: &str, prefix: &str) -> Option<Uuid> {
    let hex = s.strip_prefix(prefix)?.strip_prefix('_')?;
    // INVARIANT: only the canonical form is accepted, so one id has one spelling.
    if hex.len() != 32 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    Uuid::try_parse(hex).ok()
}

/// Ids appear in error messages; an attacker-sized string must not.
fn truncate_for_message(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", s.get(..cut).unwrap_or_default()),
        None => s.to_owned(),
    }
}

id_type!(
    /// An isolation boundary; every other object belongs to exactly one tenant.
    TenantId, "ten", "tenant"
);
id_type!(
    /// A person.
    HumanId, "hum", "human"
);
id_type!(
    /// A workload identity acting for people. Never a human.
    AgentId, "agt", "agent"
);
id_type!(
    /// An upstream the gateway fronts.
    ToolServerId, "srv", "tool server"
);
id_type!(
    /// One action on a tool server.
    ToolId, "tool", "tool"
);
id_type!(
    /// A human's consent bound to one task: the root of an agent's authority.
    MandateId, "mnd", "mandate"
);
id_type!(
    /// One consenter's recorded answer to a mandate's terms.
    ConsentId, "cns", "consent"
);
id_type!(
    /// A bearer credential for the admin API (only its hash is stored).
    ApiTokenId, "tok", "API token"
);
id_type!(
    /// A held tool call waiting for (or carrying) a human's approval of its exact arguments.
    ApprovalId, "apr", "approval"
);
id_type!(
    /// A tool call a recommend-only mandate turned into a proposal for a human to execute.
    ProposalId, "prp", "proposal"
);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn the_stack_encoding_is_the_prefix_and_the_simple_uuid(raw in any::<u128>()) {
            let uuid = Uuid::from_u128(raw);
            let expected = |prefix: &str| format!("{prefix}_{}", uuid.simple());
            prop_assert_eq!(MandateId::from_uuid(uuid).to_string(), expected("mnd"));
            prop_assert_eq!(ToolId::from_uuid(uuid).to_string(), expected("tool"));
            let tenant = TenantId::from_uuid(uuid).encode();
            prop_assert_eq!(tenant.as_str(), expected("ten"));
            prop_assert_eq!(
                serde_json::to_string(&AgentId::from_uuid(uuid)).unwrap(),
                format!("\"{}\"", expected("agt"))
            );
        }
    }

    #[test]
    fn ids_round_trip() {
        let id = MandateId::generate();
        let text = id.to_string();
        assert!(text.starts_with("mnd_"));
        assert_eq!(text.len(), 4 + 32);
        assert_eq!(text.parse::<MandateId>(), Ok(id));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<MandateId>(&json).unwrap(), id);
    }

    #[test]
    fn wrong_kind_and_hostile_ids_are_rejected() {
        let agent = AgentId::generate().to_string();
        assert!(
            agent.parse::<HumanId>().is_err(),
            "an agent id is not a human id"
        );
        for bad in [
            "",
            "mnd_",
            "mnd",
            "mnd_0190",
            "MND_0190e5d1c1a27c7a8b4d11b4d2a0c0de",
            "mnd_0190E5D1C1A27C7A8B4D11B4D2A0C0DE",
            "mnd_0190e5d1-c1a2-7c7a-8b4d-11b4d2a0c0de",
            "mnd_0190e5d1c1a27c7a8b4d11b4d2a0c0de ",
            "mnd_0190e5d1c1a27c7a8b4d11b4d2a0c0dé",
            "../../etc/passwd",
        ] {
            assert!(
                bad.parse::<MandateId>().is_err(),
                "{bad:?} must be rejected"
            );
        }
        let long = "x".repeat(100_000);
        let err = long.parse::<MandateId>().unwrap_err();
        assert!(err.to_string().len() < 300, "messages stay bounded");
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in ".*") {
            let _ = s.parse::<AgentId>();
        }

        #[test]
        fn every_uuid_round_trips(bytes in any::<[u8; 16]>()) {
            let id = ToolId::from_uuid(Uuid::from_bytes(bytes));
            prop_assert_eq!(id.to_string().parse::<ToolId>(), Ok(id));
        }
    }
}
