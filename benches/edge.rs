//! The edge's pure parts, per request: who is calling (`Authenticator`) and
//! whether its rate limit lets the request through (`RateLimits::check`).
//! Before criterion runs, each benchmark prints its allocations per call.
//! Run: `cargo bench --bench edge`.

#[path = "common/alloc.rs"]
mod alloc_count;

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::HeaderMap;
use order_gateway::config::{ApiKeyConfig, AuthConfig, Config, JwtAlgorithm, RateLimitConfig, Scope, TierConfig};
use order_gateway::edge::auth::hash_key;
use order_gateway::edge::{Authenticator, Decision, RateLimits};

/// Allocation counts: calls per benchmark.
const N: u64 = 2_000;

const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
const JWT_SECRET: &str = "bench-secret-0123456789abcdef-0123456789";
/// Distinct clients in the `new_client` runs: the default `rate_limit.max_clients`.
const MAX_CLIENTS: usize = 100_000;

fn headers(name: &'static str, value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(name, value.parse().expect("header value"));
    h
}

/// Ten API keys (tier "standard") and HS256 tokens with audience and issuer checked.
fn auth_config() -> AuthConfig {
    let mut c = Config::defaults().auth;
    c.keys = (0..10)
        .map(|i| ApiKeyConfig {
            name: format!("client-{i}"),
            hash: hash_key(&format!("key-{i}-0123456789abcdef")),
            scopes: vec![Scope::OrdersRead, Scope::OrdersPii],
            tier: "standard".into(),
        })
        .collect();
    c.jwt.algorithm = JwtAlgorithm::HS256;
    c.jwt.secret = JWT_SECRET.into();
    c.jwt.audience = "order-gateway".into();
    c.jwt.issuer = "https://idp.example".into();
    c
}

fn jwt() -> String {
    let claims = serde_json::json!({
        "sub": "agent-7",
        "aud": "order-gateway",
        "iss": "https://idp.example",
        "exp": jsonwebtoken::get_current_timestamp() + 86_400,
        "scope": "orders:read orders:pii",
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("token")
}

fn bench_auth(c: &mut Criterion) {
    let auth = Authenticator::new(&auth_config()).expect("auth config");
    let key = headers("authorization", "Bearer key-7-0123456789abcdef");
    let unknown = headers("authorization", "Bearer key-x-0123456789abcdef");
    let token = headers("authorization", &format!("Bearer {}", jwt()));
    let none = HeaderMap::new();
    assert_eq!(&*auth.authenticate(&key, PEER).unwrap().client, "key:client-7");
    assert!(auth.authenticate(&unknown, PEER).is_err());
    assert_eq!(&*auth.authenticate(&token, PEER).unwrap().client, "jwt:agent-7");

    let cases =
        [("api_key_of_10", &key), ("api_key_unknown", &unknown), ("jwt_hs256", &token), ("no_credential", &none)];
    for (name, h) in cases {
        alloc_count::report(&format!("auth/{name}"), N, || auth.authenticate(h, PEER));
    }
    let mut g = c.benchmark_group("auth");
    g.throughput(Throughput::Elements(1));
    for (name, h) in cases {
        g.bench_function(name, |b| b.iter(|| black_box(auth.authenticate(black_box(h), PEER))));
    }
    g.finish();
}

/// Defaults, with the "standard" tier fast enough never to refuse during a
/// run (10 ns per unit, a burst of 10^8 units).
fn limits_config(max_clients: usize) -> RateLimitConfig {
    let mut c = Config::defaults().rate_limit;
    c.tiers.insert("standard".into(), TierConfig { rate: 100_000_000, burst: 100_000_000 });
    c.max_clients = max_clients;
    c
}

fn allowed(d: Decision) -> Decision {
    assert!(matches!(d, Decision::Allowed(_)), "{d:?}");
    d
}

fn bench_rate_limit(c: &mut Criterion) {
    let cfg = limits_config(MAX_CLIENTS);
    let clients: Vec<Arc<str>> = (0..MAX_CLIENTS).map(|i| Arc::from(format!("key:client-{i}"))).collect();

    // One client, its bucket made by an earlier request.
    let limits = RateLimits::new(&cfg).expect("limits");
    let known: Arc<str> = "key:bench".into();
    allowed(limits.check(&known, "standard", 1));
    alloc_count::report("rate_limit/existing_client", N, || allowed(limits.check(&known, "standard", 1)));
    // A tier with rate 0: no bucket at all.
    alloc_count::report("rate_limit/unlimited_tier", N, || allowed(limits.check(&known, "unlimited", 1)));
    // Every call a client never seen, until the store holds max_clients of them
    // (counted over the whole fill: the map's growth is part of the cost).
    {
        let fresh = RateLimits::new(&cfg).expect("limits");
        let before = alloc_count::allocs();
        for k in &clients {
            black_box(allowed(fresh.check(k, "standard", 1)));
        }
        alloc_count::print("rate_limit/new_client", (alloc_count::allocs() - before) as f64 / clients.len() as f64);
        assert_eq!(fresh.clients(), MAX_CLIENTS, "every client has a bucket of its own");
    }
    // The store is full: new clients share the tier's overflow bucket.
    let full = RateLimits::new(&limits_config(1_000)).expect("limits");
    for k in &clients[..1_000] {
        allowed(full.check(k, "standard", 1));
    }
    let newcomers = &clients[1_000..];
    let mut i = 0;
    alloc_count::report("rate_limit/new_client_store_full", N, || {
        i = (i + 1) % newcomers.len();
        allowed(full.check(&newcomers[i], "standard", 1))
    });

    let mut g = c.benchmark_group("rate_limit");
    g.throughput(Throughput::Elements(1));
    g.bench_function("existing_client", |b| b.iter(|| black_box(limits.check(black_box(&known), "standard", 1))));
    g.bench_function("unlimited_tier", |b| b.iter(|| black_box(limits.check(black_box(&known), "unlimited", 1))));
    // A fresh store is made (untimed) each time max_clients new clients have
    // filled the last one, so every timed call adds a bucket to a store
    // holding between 0 and max_clients.
    let mut store = (RateLimits::new(&cfg).expect("limits"), 0usize);
    g.bench_function("new_client", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                if store.1 == clients.len() {
                    store = (RateLimits::new(&cfg).expect("limits"), 0);
                }
                let (limits, next) = &mut store;
                let batch = &clients[*next..(*next + left).min(clients.len())];
                let start = Instant::now();
                for k in batch {
                    black_box(limits.check(k, "standard", 1));
                }
                timed += start.elapsed();
                *next += batch.len();
                left -= batch.len();
            }
            timed
        })
    });
    let mut i = 0;
    g.bench_function("new_client_store_full", |b| {
        b.iter(|| {
            i = (i + 1) % newcomers.len();
            black_box(full.check(&newcomers[i], "standard", 1))
        })
    });
    g.finish();
}

criterion_group!(benches, bench_auth, bench_rate_limit);
criterion_main!(benches);
