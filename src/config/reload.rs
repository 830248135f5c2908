//! What a reload may change at run time, and what changed.
//!
//! Hot keys are those read per request through `AppState::live`: credentials,
//! rate limits, the log level and the cache's freshness TTLs. Everything else
//! (listen addresses, backend URLs, cache size) is wired into long-lived
//! objects at start-up, so a reload reports it as needing a restart instead of
//! half-applying it.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Config;

/// Keys (or key prefixes ending in '.') that a reload applies.
pub const HOT_KEYS: &[&str] = &[
    "auth.",
    "rate_limit.",
    "log.level",
    "log.access_sample",
    "cache.degraded_ttl",
    "cache.negative_ttl",
    "cache.read_your_writes_wait",
];

/// Whether a dotted key is hot.
pub fn is_hot(key: &str) -> bool {
    HOT_KEYS.iter().any(|h| if h.ends_with('.') { key.starts_with(h) } else { key == *h })
}

/// `current` with the hot keys of `source`.
pub fn with_hot_keys(current: &Config, source: &Config) -> Config {
    let mut c = current.clone();
    c.auth = source.auth.clone();
    c.rate_limit = source.rate_limit.clone();
    c.log.level = source.log.level.clone();
    c.log.access_sample = source.log.access_sample;
    c.cache.degraded_ttl = source.cache.degraded_ttl;
    c.cache.negative_ttl = source.cache.negative_ttl;
    c.cache.read_your_writes_wait = source.cache.read_your_writes_wait;
    c
}

/// Dotted keys that differ between `current` and `source`, split into those a
/// reload applies and those that need a restart. Secrets are compared masked,
/// so a changed secret is applied but not listed.
pub fn changes(current: &Config, source: &Config) -> (Vec<String>, Vec<String>) {
    let (a, b) = (flatten(current), flatten(source));
    let mut hot = Vec::new();
    let mut cold = Vec::new();
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        if a.get(k) != b.get(k) {
            if is_hot(k) {
                hot.push(k.clone());
            } else {
                cold.push(k.clone());
            }
        }
    }
    // Arrays (keys, identities, trusted peers) are leaves of `flatten`: a
    // changed array is named once, as a whole.
    (hot, cold)
}

fn flatten(c: &Config) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let v = serde_json::to_value(c).unwrap_or(Value::Null);
    walk("", &v, &mut out);
    out
}

fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                walk(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn hot_and_cold_changes_are_told_apart() {
        let a = Config::defaults();
        let mut b = a.clone();
        b.rate_limit.tiers.get_mut("standard").unwrap().rate = 7;
        b.log.level = "debug".into();
        b.cache.negative_ttl = Duration::from_secs(1);
        b.server.max_connections = 3;
        b.elasticsearch.timeout = Duration::from_secs(9);
        let (hot, cold) = changes(&a, &b);
        assert_eq!(hot, vec!["cache.negative_ttl", "log.level", "rate_limit.tiers.standard.rate"]);
        assert_eq!(cold, vec!["elasticsearch.timeout", "server.max_connections"]);
        let next = with_hot_keys(&a, &b);
        assert_eq!(next.log.level, "debug");
        assert_eq!(next.rate_limit.tiers["standard"].rate, 7);
        assert_eq!(next.server.max_connections, a.server.max_connections, "cold keys keep their value");
        assert_eq!(next.elasticsearch.timeout, a.elasticsearch.timeout);
    }

    #[test]
    fn no_change_no_report() {
        let a = Config::defaults();
        assert_eq!(changes(&a, &a.clone()), (vec![], vec![]));
        assert!(is_hot("auth.keys") && is_hot("log.level") && !is_hot("log.format") && !is_hot("cache.max_ttl"));
    }
}
