//! A string that never shows itself in logs, debug output or `check-config`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret value (password, key); empty means "not set".
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether a value was configured.
    pub fn is_set(&self) -> bool {
        !self.0.is_empty()
    }
}

const MASK: &str = "********";

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_set() { MASK } else { "" })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.is_set() { MASK } else { "" })
    }
}

impl<'de> Deserialize<'de> for Secret {
    /// A string, or a number or boolean taken as its text: a password of
    /// digits set in the environment (`..._PASSWORD=987654321`) arrives as a
    /// number, and refusing it would print it in the type error.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Secret;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
        }
        d.deserialize_any(Text)
    }
}

/// Whether a configuration key holds a secret by its name: its value is never
/// printed, not even in an error about it.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    // `password_file` names where a secret is, not the secret.
    if key.ends_with("_file") || key.ends_with(".location") {
        return false;
    }
    ["password", "secret", "token", "private", "credential", "api_key", "otlp_headers"].iter().any(|s| key.contains(s))
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}
