//! Fault test: Elasticsearch stopped and started again under a running gateway.
//! Its own test binary: nothing else runs while Elasticsearch is down. One
//! test, so Elasticsearch is stopped once per run: the stale cache, the fast
//! 503, the circuit breaker opening and closing again are checked in turn.

mod common;

use std::time::{Duration, Instant};

use common::world::*;
use common::*;

/// The value of one series in the gateway's /metrics, e.g.
/// `backend_circuit_state{backend="elasticsearch"}`.
async fn metric(c: &reqwest::Client, gw: &Gateway, series: &str) -> Option<f64> {
    let text = c.get(gw.url("/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

const ES_CIRCUIT: &str = r#"backend_circuit_state{backend="elasticsearch"}"#;

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
        // Three failed calls open the circuit; it stays open long enough to
        // look at it, short enough for the test to see it close again.
        ("ORDER_GATEWAY__BREAKER__FAILURE_THRESHOLD", "3"),
        ("ORDER_GATEWAY__BREAKER__OPEN_FOR", "2s"),
    ]);
    let gw = Gateway::start(&env).await;
    let cached = format!("fe-{}", uuid::Uuid::new_v4().simple());
    let uncached = format!("fe-{}", uuid::Uuid::new_v4().simple());
    for id in [&cached, &uncached] {
        w.index_order(order(id, 2)).await;
    }
    let c = client();
    let r = c.get(gw.url(&format!("/v1/orders/{cached}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(metric(&c, &gw, ES_CIRCUIT).await, Some(0.0), "closed while Elasticsearch answers");
    tokio::time::sleep(Duration::from_millis(1100)).await;

    stack("stop", "elasticsearch");
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
        let (headers, body) = expect_json(c.get(gw.url(&format!("/v1/orders/{cached}"))), 200).await;
        assert_eq!(headers["x-cache"], "STALE");
        let age: u64 = headers["age"].to_str().unwrap().parse().unwrap();
        assert!(age >= 1, "age {age}");
        assert_eq!(version_of(&body), 2);

        let started = Instant::now();
        let (_, p) = expect_problem(c.get(gw.url(&format!("/v1/orders/{uncached}"))), 503).await;
        assert!(started.elapsed() < Duration::from_secs(3), "503 within the timeout, took {:?}", started.elapsed());
        assert_eq!(p["backend"], "elasticsearch", "{p}");
        assert_ne!(p["reason"], "circuit_open", "2 failures of 3: still closed: {p}");
        // Not required by default: this replica still serves (stale, above).
        let (_, ready) = expect_json(c.get(gw.url("/readyz")), 200).await;
        assert_eq!(ready["status"], "degraded", "{ready}");

        // Circuit breaker. The stale read above asked Elasticsearch first
        // (failure 1), the uncached lookup failed (2); readiness pings do not
        // count. The next uncached lookup is failure 3 and opens the circuit.
        let (_, p) = expect_json(c.get(gw.url(&format!("/v1/orders/{uncached}"))), 503).await;
        assert_ne!(p["reason"], "circuit_open", "failure 3 still reached Elasticsearch: {p}");
        assert_eq!(metric(&c, &gw, ES_CIRCUIT).await, Some(2.0), "open after 3 consecutive failures");
        // Open: the lookup fails at once without reaching Elasticsearch, and says so.
        let (_, p) = expect_problem(c.get(gw.url(&format!("/v1/orders/{uncached}"))), 503).await;
        assert_eq!(p["backend"], "elasticsearch", "{p}");
        assert_eq!(p["type"], "urn:order-gateway:problem:backend-unavailable", "{p}");
        assert_eq!(p["reason"], "circuit_open", "{p}");
        let detail = p["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("elasticsearch is unavailable after repeated failures; calls are paused for "),
            "{p}"
        );
        assert!(!detail.contains("9200") && !detail.contains("last:"), "no backend internals reach the client: {p}");
        let rejected =
            metric(&c, &gw, r#"backend_circuit_rejected_total{backend="elasticsearch",call="get_order"}"#).await;
        assert_eq!(rejected, Some(1.0), "the rejected lookup is counted");
        // /readyz still probes Elasticsearch itself (and finds it down), circuit or not.
        let ready: serde_json::Value = json_of(c.get(gw.url("/readyz"))).await;
        assert!(!ready["checks"]["elasticsearch"]["detail"].as_str().unwrap().contains("circuit"), "{ready}");
    }))
    .await;
    stack("start", "elasticsearch");
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
    // Once open_for has passed, the next lookup is the half-open probe; its
    // success closes the circuit (a probe failing while Elasticsearch is still
    // recovering opens it for another 2s, hence eventually).
    eventually(Duration::from_secs(30), "the uncached order served again", || async {
        matches!(c.get(gw.url(&format!("/v1/orders/{uncached}"))).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    assert_eq!(metric(&c, &gw, ES_CIRCUIT).await, Some(0.0), "closed again after a probe succeeded");
    for to in ["open", "half_open", "closed"] {
        let series = format!(r#"backend_circuit_transitions_total{{backend="elasticsearch",to="{to}"}}"#);
        assert!(metric(&c, &gw, &series).await.is_some_and(|n| n >= 1.0), "a transition to {to}");
    }
    let r = c.get(gw.url(&format!("/v1/orders/{cached}"))).send().await.unwrap();
    assert_ne!(r.headers()["x-cache"], "STALE", "fresh again after recovery");
}
