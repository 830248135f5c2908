//! Fault test: Elasticsearch stopped and started again under a running gateway.
//! Its own test binary: nothing else runs while Elasticsearch is down.

mod common;

use std::time::{Duration, Instant};

use common::world::*;
use common::*;
use order_gateway::model::{Component, OrderView};

#[tokio::test]
async fn cached_orders_are_served_stale_and_uncached_ones_fail_fast_then_recovery() {
    let w = World::new();
    // Without the stream, entries are only trusted for cache.degraded_ttl:
    // after that a read must ask Elasticsearch, which is what this test stops.
    let mut env: Vec<(&str, &str)> = w.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.extend([
        ("ORDER_GATEWAY__CACHE__DEGRADED_TTL", "1s"),
        ("ORDER_GATEWAY__ELASTICSEARCH__TIMEOUT", "1s"),
        ("ORDER_GATEWAY__READINESS__CACHE_FOR", "100ms"),
    ]);
    let gw = Gateway::start(&env).await;
    let cached = format!("fe-{}", uuid::Uuid::new_v4().simple());
    let uncached = format!("fe-{}", uuid::Uuid::new_v4().simple());
    for id in [&cached, &uncached] {
        let mut v = OrderView::new(id.as_str());
        v.apply(Component::Order(order(id, 2)));
        w.index(&v).await;
    }
    let c = client();
    let r = c.get(gw.url(&format!("/v1/orders/{cached}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    stack("stop", "elasticsearch");
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
        let r = c.get(gw.url(&format!("/v1/orders/{cached}"))).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-cache"], "STALE");
        let age: u64 = r.headers()["age"].to_str().unwrap().parse().unwrap();
        assert!(age >= 1, "age {age}");
        assert_eq!(version_of(&r.json().await.unwrap()), 2);

        let started = Instant::now();
        let r = c.get(gw.url(&format!("/v1/orders/{uncached}"))).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert!(started.elapsed() < Duration::from_secs(3), "503 within the timeout, took {:?}", started.elapsed());
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let p: serde_json::Value = r.json().await.unwrap();
        assert_eq!(p["backend"], "elasticsearch", "{p}");
        let ready = c.get(gw.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 503, "Elasticsearch is required");
    }))
    .await;
    stack("start", "elasticsearch");
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
    eventually(Duration::from_secs(30), "the uncached order served again", || async {
        matches!(c.get(gw.url(&format!("/v1/orders/{uncached}"))).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    let r = c.get(gw.url(&format!("/v1/orders/{cached}"))).send().await.unwrap();
    assert_ne!(r.headers()["x-cache"], "STALE", "fresh again after recovery");
}
