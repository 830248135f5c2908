//! Configuration of the edge: who gets in, how fast, and the admin surface.
//! Every key here can change at run time (SIGHUP or `POST /admin/reload`),
//! except `admin.listen`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Secret;

/// A permission a credential carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
pub enum Scope {
    /// Order lookups and searches (PII redacted).
    #[serde(rename = "orders:read")]
    OrdersRead,
    /// Addresses, e-mail and phone in order responses.
    #[serde(rename = "orders:pii")]
    OrdersPii,
    /// The analytics endpoints.
    #[serde(rename = "analytics:read")]
    AnalyticsRead,
    /// `/admin/*`, and health and metrics when those are not public.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::OrdersRead, Scope::OrdersPii, Scope::AnalyticsRead, Scope::Admin];

    /// The scope as written in configuration and JWT `scope` claims.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::OrdersRead => "orders:read",
            Scope::OrdersPii => "orders:pii",
            Scope::AnalyticsRead => "analytics:read",
            Scope::Admin => "admin",
        }
    }

    /// Parses a scope name; None for names the gateway does not know (a JWT
    /// may carry scopes of other services).
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// Whether requests must carry a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Every non-public endpoint needs a key, a token or a trusted mesh identity.
    Required,
    /// Everyone holds every scope. Only for a loopback development stack.
    Disabled,
}

/// Authentication and authorisation.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub public_health: bool,
    pub public_metrics: bool,
    pub public_docs: bool,
    pub keys: Vec<ApiKeyConfig>,
    pub jwt: JwtConfig,
    pub mesh: MeshConfig,
}

/// One API key, stored as a hash only.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who holds the key: logs, metrics and rate limits use this name, never the key.
    pub name: String,
    /// `sha256:<64 hex digits>`, as printed by `order-gateway hash-key`.
    pub hash: String,
    pub scopes: Vec<Scope>,
    /// Rate-limit tier; "" means `rate_limit.default_tier`.
    #[serde(default)]
    pub tier: String,
}

/// Signature algorithms accepted for JWT bearer tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum JwtAlgorithm {
    #[serde(rename = "")]
    Off,
    HS256,
    RS256,
}

/// JWT bearer tokens.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    pub algorithm: JwtAlgorithm,
    /// HS256 shared secret.
    pub secret: Secret,
    /// HS256: where to read `secret` from instead.
    pub secret_file: String,
    /// RS256: PEM file of the issuer's public key.
    pub public_key_file: String,
    /// `aud` every token must carry (empty: none required, none checked).
    pub audience: String,
    /// `iss` every token must carry (empty: none required, none checked).
    pub issuer: String,
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// Longest a token may be valid for: `exp - iat`, and `exp - now` (plus
    /// `leeway`); a token issued for longer is refused even while unexpired.
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// Rate-limit tier of token holders; "" means `rate_limit.default_tier`.
    pub tier: String,
}

/// Identities asserted by a service mesh's sidecar.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MeshConfig {
    /// Header carrying the caller's identity; "" disables mesh identities.
    /// `x-forwarded-client-cert` is read by Envoy's grammar: the `spiffe://`
    /// `URI=` of its last element (the one the sidecar appended).
    pub identity_header: String,
    /// Peer addresses (CIDR) whose identity header is believed. From any other
    /// peer the header is ignored. An IPv4-mapped IPv6 peer matches as IPv4.
    pub trusted_peers: Vec<String>,
    /// Scopes of a trusted identity not listed in `identities`.
    pub scopes: Vec<Scope>,
    pub tier: String,
    /// Scopes and tier per identity.
    pub identities: Vec<MeshIdentityConfig>,
}

/// One mesh identity with its own scopes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MeshIdentityConfig {
    pub id: String,
    pub scopes: Vec<Scope>,
    #[serde(default)]
    pub tier: String,
}

/// Rate limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// All clients together, in cost units per second; 0: no global limit.
    pub global_rate: u32,
    pub global_burst: u32,
    /// Tier of a credential that names none.
    pub default_tier: String,
    /// Tier of requests without a credential, keyed by IPv4 address or IPv6 /64.
    pub anonymous_tier: String,
    /// Most clients with state of their own; beyond it new clients share one
    /// bucket per tier until pruning frees room.
    pub max_clients: usize,
    #[serde(with = "humantime_serde")]
    pub prune_interval: Duration,
    pub tiers: BTreeMap<String, TierConfig>,
    pub costs: CostConfig,
}

/// Rate and burst of one tier.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// Cost units per second; 0: unlimited.
    pub rate: u32,
    /// Cost units a client may spend at once.
    pub burst: u32,
}

/// Cost units per request, by kind of route.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CostConfig {
    pub lookup: u32,
    pub batch_get: u32,
    pub search: u32,
    pub analytics: u32,
    pub admin: u32,
    pub docs: u32,
}

/// The admin surface.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Own listener for `/admin/*` (e.g. "127.0.0.1:9091"); "" serves them on
    /// `server.listen`. Needs a restart to change.
    pub listen: String,
}
