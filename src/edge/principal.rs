//! Who is calling: the scopes a credential grants, how it was proved, and
//! the principal the rest of the edge works with. Both ways of proving an
//! identity (keys and mesh in [`super::auth`], tokens in [`super::jwt`])
//! produce one.

use std::sync::Arc;

use crate::config::Scope;

/// A set of scopes, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    pub const ALL: Scopes = Scopes(0b1111);

    fn bit(s: Scope) -> u8 {
        1 << (s as u8)
    }

    pub fn contains(self, s: Scope) -> bool {
        self.0 & Self::bit(s) != 0
    }

    pub fn insert(&mut self, s: Scope) {
        self.0 |= Self::bit(s);
    }

    /// The scope names, for logs and the admin API.
    pub fn names(self) -> Vec<&'static str> {
        Scope::ALL.into_iter().filter(|s| self.contains(*s)).map(Scope::as_str).collect()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut s = Scopes::default();
        for x in iter {
            s.insert(x);
        }
        s
    }
}

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    ApiKey,
    Jwt,
    Mesh,
    /// No credential (public endpoints, or `auth.mode = "disabled"`).
    Anonymous,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::ApiKey => "api_key",
            Method::Jwt => "jwt",
            Method::Mesh => "mesh",
            Method::Anonymous => "anonymous",
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Rate-limit key and log name: `key:<name>`, `jwt:<sub>`, `mesh:<id>` or
    /// `peer:<IPv4 address or IPv6 /64>`. Never the secret itself.
    pub client: Arc<str>,
    pub method: Method,
    pub scopes: Scopes,
    /// Rate-limit tier; "" means the default tier.
    pub tier: Arc<str>,
}
