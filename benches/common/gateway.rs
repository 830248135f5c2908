//! The API keys the in-process benchmarks authenticate with.
//!
//! Included with `#[path = "common/keys.rs"] mod keys;`.

#![allow(dead_code)]

use order_gateway::config::{ApiKeyConfig, AuthMode, Config, Scope, TierConfig};
use order_gateway::edge::auth::hash_key;

/// Sees every order field (`orders:read`, `orders:pii`).
pub const KEY: &str = "bench-key-0123456789abcdef";
/// `orders:read` only: address, e-mail and phone are redacted.
pub const KEY_NO_PII: &str = "bench-key-no-pii-0123456789";

/// Defaults with auth required and both keys in tier "standard", whose rate
/// never refuses during a run (10 ns per unit, a burst of 10^8 units): the
/// limiter runs, as in production, without shaping the measurement.
pub fn keyed_config() -> Config {
    let mut c = Config::defaults();
    c.auth.mode = AuthMode::Required;
    for (name, key, scopes) in [
        ("bench", KEY, vec![Scope::OrdersRead, Scope::OrdersPii]),
        ("bench-no-pii", KEY_NO_PII, vec![Scope::OrdersRead]),
    ] {
        c.auth.keys.push(ApiKeyConfig { name: name.into(), hash: hash_key(key), scopes, tier: "standard".into() });
    }
    c.rate_limit.tiers.insert("standard".into(), TierConfig { rate: 100_000_000, burst: 100_000_000 });
    c
}
