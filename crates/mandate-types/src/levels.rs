use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A name that is not one of the allowed values of a closed set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`, expected one of: {expected}")]
pub struct UnknownLevel {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static str,
}

macro_rules! closed_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $kind:literal { $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownLevel;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err(UnknownLevel {
                        kind: $kind,
                        value: s.to_owned(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }
    };
}

closed_enum! {
    /// How sensitive the data a tool touches is. Ordered: `public < internal <
    /// confidential < restricted`; a mandate's ceiling is the highest class it allows.
    DataClass, "data class" {
        Public => "public",
        Internal => "internal",
        Confidential => "confidential",
        Restricted => "restricted",
    }
}

closed_enum! {
    /// How much harm a tool call can do. Ordered: `read < write < high_impact`.
    RiskTier, "risk tier" {
        Read => "read",
        Write => "write",
        HighImpact => "high_impact",
    }
}

closed_enum! {
    /// What an agent may do with a mandate: act, or only propose actions for a human to run.
    MandateMode, "mandate mode" {
        /// Calls are recorded as proposals; a human executes them.
        Recommend => "recommend",
        /// Calls go through (subject to policy and approvals).
        Execute => "execute",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_classes_are_ordered() {
        assert!(DataClass::Public < DataClass::Internal);
        assert!(DataClass::Internal < DataClass::Confidential);
        assert!(DataClass::Confidential < DataClass::Restricted);
        assert!(RiskTier::Read < RiskTier::HighImpact);
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for class in DataClass::ALL {
            assert_eq!(class.as_str().parse::<DataClass>(), Ok(*class));
            let json = serde_json::to_string(class).unwrap();
            assert_eq!(json, format!("\"{class}\""));
        }
        let err = "secret".parse::<DataClass>().unwrap_err();
        assert!(err.to_string().contains("`secret`"), "{err}");
        assert!("HIGH_IMPACT".parse::<RiskTier>().is_err());
    }
}
