//! The gateway as the in-process benchmarks build it: the API keys they
//! authenticate with, a state whose cache serves hits, the order they fill it
//! with.
//!
//! Included with `#[path = "common/gateway.rs"] mod gateway;`.

#![allow(dead_code)]

use std::sync::atomic::Ordering;

use metrics_exporter_prometheus::PrometheusHandle;
use order_gateway::app::AppState;
use order_gateway::config::{ApiKeyConfig, AuthMode, Config, Scope, TierConfig};
use order_gateway::edge::auth::hash_key;
use order_gateway::model::Order;

/// Sees every order field (`orders:read`, `orders:pii`).
pub const KEY: &str = "bench-key-0123456789abcdef";
/// `orders:read` only: address, e-mail and phone are redacted.
pub const KEY_NO_PII: &str = "bench-key-no-pii-0123456789";

/// Defaults with auth required and both keys in tier "standard", whose rate
/// never refuses during a run (a million units a second) with the premium
/// tier's bucket of 10,000 units: the limiter runs, as in production, without
/// shaping the measurement. The bucket allows 10 ms of early arrivals; at
/// 10^8 units a second it allowed 100 µs, and a few requests in half a million
/// were refused (most likely the two cores' clock readings disagreeing).
pub fn keyed_config() -> Config {
    let mut c = Config::defaults();
    c.auth.mode = AuthMode::Required;
    for (name, key, scopes) in [
        ("bench", KEY, vec![Scope::OrdersRead, Scope::OrdersPii]),
        ("bench-no-pii", KEY_NO_PII, vec![Scope::OrdersRead]),
    ] {
        c.auth.keys.push(ApiKeyConfig { name: name.into(), hash: hash_key(key), scopes, tier: "standard".into() });
    }
    c.rate_limit.tiers.insert("standard".into(), TierConfig { rate: 1_000_000, burst: 10_000 });
    c
}

/// The state of a gateway whose event stream counts as live and healthy, so a
/// complete cached entry is a hit; the cache starts empty.
pub fn serving_state(config: Config, metrics: Option<PrometheusHandle>) -> AppState {
    let state = AppState::new(config, metrics).expect("state");
    state.cache.stream.enabled.store(true, Ordering::Relaxed);
    state.cache.stream.healthy.store(true, Ordering::Relaxed);
    state
}

/// The order of `benches/order.json` (a 1.3 kB view, version 1: a brand-new
/// order, so its entry is complete).
pub fn order() -> Order {
    serde_json::from_str(include_str!("../order.json")).expect("order.json")
}
