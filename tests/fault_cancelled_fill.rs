//! Fault test: a client resets its h2 stream while the lookup it started
//! waits on a stalled Elasticsearch. The backend read it started must not
//! outlive its answer: once Elasticsearch is back, the next miss for that
//! order reaches Elasticsearch again. (A cancelled first caller used to keep
//! the coalesced read's finished result, a 503, in place for the life of the
//! process.) Its own test binary: Elasticsearch is paused while it runs.

mod common;

use std::time::Duration;

use common::world::*;
use common::*;

#[tokio::test]
async fn a_reset_h2_stream_during_a_stalled_fill_does_not_freeze_the_order() {
    let w = World::new();
    let mut env: Vec<(&str, &str)> = w.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // The client gives up (1 s) before the gateway's Elasticsearch deadline (2 s),
    // which is what a mesh timeout shorter than the backend's does.
    env.extend([("ORDER_GATEWAY__ELASTICSEARCH__TIMEOUT", "2s"), ("ORDER_GATEWAY__BREAKER__FAILURE_THRESHOLD", "10")]);
    let gw = Gateway::start(&env).await;
    let id = format!("cf-{}", uuid::Uuid::new_v4().simple());
    w.index_order(order(&id, 3)).await;

    let h2 = {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {TEST_KEY}").parse().unwrap());
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .http2_prior_knowledge()
            .default_headers(headers)
            .build()
            .unwrap()
    };
    let probe = h2.get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(probe.version(), reqwest::Version::HTTP_2, "the lookup below goes over h2c");

    stack_signal("elasticsearch", "STOP");
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
        let lookup = h2.get(gw.url(&format!("/v1/orders/{id}"))).send();
        // Dropping the request future resets the h2 stream (RST_STREAM).
        assert!(tokio::time::timeout(Duration::from_secs(1), lookup).await.is_err(), "Elasticsearch is paused");
        // Past the gateway's deadline: the abandoned read has failed by now.
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }))
    .await;
    stack_signal("elasticsearch", "CONT");
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }

    // Let Elasticsearch work off what reached it while paused, so the count
    // below sees only the new lookup.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = client();
    let evicted = c.delete(gw.url(&format!("/admin/cache/orders/{id}"))).send().await.unwrap();
    assert_eq!(evicted.status(), 200);
    let searches_before = w.es_search_count().await;
    let (headers, body) = expect_json(h2.get(gw.url(&format!("/v1/orders/{id}"))), 200).await;
    assert_eq!(headers["x-cache"], "MISS", "answered by a new read");
    assert_eq!(version_of(&body), 3);
    let searches_after = w.es_search_count().await;
    assert!(searches_after > searches_before, "the miss reached Elasticsearch ({searches_before} -> {searches_after})");
    let (_, cache) = expect_json(c.get(gw.url("/admin/cache")), 200).await;
    assert_eq!(cache["fills_in_flight"], 0, "the failed read left no in-flight entry: {cache}");
}
