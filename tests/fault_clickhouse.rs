//! Fault tests: stop, pause and resume the real ClickHouse of the local stack.
//! It lives in its own test binary so no other test runs while ClickHouse is down.

mod common;

use std::time::Duration;

use common::*;

/// The tests here take turns: each one disturbs ClickHouse for everybody.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// ClickHouse down: by default the replica stays in rotation, "degraded"
/// (the other backends and the cache still answer); with
/// `readiness.require_clickhouse` it turns unready. Both come back without a
/// restart.
#[tokio::test]
async fn readiness_follows_clickhouse_down_and_back_without_restart() {
    let _serial = SERIAL.lock().await;
    let lenient = Gateway::start(&[("ORDER_GATEWAY__READINESS__CACHE_FOR", "100ms")]).await;
    let strict = Gateway::start(&[
        ("ORDER_GATEWAY__READINESS__CACHE_FOR", "100ms"),
        ("ORDER_GATEWAY__READINESS__REQUIRE_CLICKHOUSE", "true"),
    ])
    .await;
    let c = client();
    let ready = |gw: &Gateway, expect: u16| {
        let c = c.clone();
        let url = gw.url("/readyz");
        async move {
            match c.get(url).send().await {
                Ok(r) => r.status().as_u16() == expect,
                Err(_) => false,
            }
        }
    };
    eventually(Duration::from_secs(10), "readyz 200 before the fault", || ready(&strict, 200)).await;

    stack("stop", "clickhouse");
    let result = std::panic::AssertUnwindSafe(async {
        eventually(Duration::from_secs(10), "readyz 503 with ClickHouse stopped and required", || ready(&strict, 503))
            .await;
        let body: serde_json::Value = json_of(c.get(strict.url("/readyz"))).await;
        assert_eq!(body["status"], "not_ready", "{body}");
        assert_eq!(body["checks"]["clickhouse"]["status"], "down", "{body}");
        assert_eq!(body["checks"]["clickhouse"]["required"], true, "{body}");
        let (_, body) = expect_json(c.get(lenient.url("/readyz")), 200).await;
        assert_eq!(body["status"], "degraded", "not required by default: {body}");
        assert_eq!(body["checks"]["clickhouse"]["status"], "down", "{body}");
        // Liveness is not readiness: the process is fine.
        assert_eq!(c.get(strict.url("/healthz")).send().await.unwrap().status(), 200);
    });
    let outcome = futures_util::FutureExt::catch_unwind(result).await;
    // Whatever happened, the stack is left as it was found.
    stack("start", "clickhouse");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    eventually(Duration::from_secs(20), "readyz 200 after ClickHouse restarted", || ready(&strict, 200)).await;
}

#[tokio::test]
async fn in_flight_request_completes_across_sigterm() {
    // A readiness probe waiting on a paused ClickHouse (SIGSTOP: the socket
    // accepts, nothing answers) is a real in-flight request of known length:
    // it ends when the configured 2 s query deadline fires.
    let _serial = SERIAL.lock().await;
    let mut gw = Gateway::start(&[
        ("ORDER_GATEWAY__CLICKHOUSE__TIMEOUT", "2s"),
        ("ORDER_GATEWAY__READINESS__CACHE_FOR", "1ms"),
        ("ORDER_GATEWAY__SERVER__SHUTDOWN_DELAY", "0s"),
    ])
    .await;
    stack_signal("clickhouse", "STOP");
    let url = gw.url("/readyz");
    let in_flight = tokio::spawn(async move { client().get(url).send().await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.terminate();
    let answered = in_flight.await.unwrap();
    stack_signal("clickhouse", "CONT");
    let resp = answered.expect("the in-flight request is answered, not cut");
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["checks"]["clickhouse"]["status"], "down", "{body}");
    assert_eq!(gw.wait_exit(Duration::from_secs(10)).await, Some(0), "clean exit after draining");
}

#[tokio::test]
async fn analytics_answer_503_while_clickhouse_is_down_and_recover() {
    let _serial = SERIAL.lock().await;
    let w = common::world::World::new();
    let mut env: Vec<(&str, &str)> = w.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("ORDER_GATEWAY__CLICKHOUSE__TIMEOUT", "1s"));
    let gw = Gateway::start(&env).await;
    let c = client();
    // A range ending in the past, not asked before (so not cached).
    let path =
        format!("/v1/analytics/kpis?from=2020-01-01T00:00:00Z&to=2020-0{}-01T00:00:00Z", 2 + (std::process::id() % 7));
    stack("stop", "clickhouse");
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
        let started = std::time::Instant::now();
        let (_, p) = expect_json(c.get(gw.url(&path)), 503).await;
        assert!(started.elapsed() < Duration::from_secs(3), "within the timeout: {:?}", started.elapsed());
        assert_eq!(p["backend"], "clickhouse", "{p}");
    }))
    .await;
    stack("start", "clickhouse");
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
    eventually(Duration::from_secs(20), "analytics answered again", || async {
        matches!(c.get(gw.url(&path)).send().await, Ok(r) if r.status() == 200)
    })
    .await;
}
