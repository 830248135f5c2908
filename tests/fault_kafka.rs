//! Fault test: Kafka stopped and started again under a running gateway.

mod common;

use std::time::Duration;

use common::sse::{stream_client, Sse};
use common::world::*;
use common::*;
use rdkafka::producer::FutureRecord;

/// How long a live subscriber waits for each event (a broker's restart included).
const LIVE_WAIT: Duration = Duration::from_secs(90);

/// One test at a time stops the broker.
static KAFKA: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `f` with the broker stopped, and starts it again even if `f` fails.
async fn with_kafka_stopped(f: impl std::future::Future<Output = ()>) {
    stack("stop", "kafka");
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(f)).await;
    stack("start", "kafka");
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}

/// Awaits `f`; if it fails, first prints which check stayed down and where
/// the stream stood in each partition (and why the brokers did not answer).
async fn showing_the_stream(gw: &Gateway, f: impl std::future::Future<Output = ()>) {
    if let Err(p) = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(f)).await {
        let c = client();
        let readyz = c.get(gw.url("/readyz")).send().await.unwrap().text().await.unwrap();
        let stream = c.get(gw.url("/admin/stream")).send().await.unwrap().text().await.unwrap();
        eprintln!("/readyz {readyz}\n/admin/stream {stream}");
        std::panic::resume_unwind(p);
    }
}

#[tokio::test]
async fn reads_go_on_without_kafka_and_the_cache_catches_up_after() {
    let _kafka = KAFKA.lock().await;
    let w = World::new();
    let gw = w
        .gateway(&[("ORDER_GATEWAY__STREAM__MAX_STALENESS", "2s"), ("ORDER_GATEWAY__READINESS__CACHE_FOR", "100ms")])
        .await;
    let id = format!("fk-{}", uuid::Uuid::new_v4().simple());
    w.index_order(order(&id, 1)).await;
    let c = client();
    assert_eq!(c.get(gw.url(&format!("/v1/orders/{id}"))).send().await.unwrap().status(), 200);
    // A live subscriber of the order: told when the stream goes down and
    // comes back, and sent the version written meanwhile.
    let mut live = Sse::open(&stream_client(false), &gw.url(&format!("/v1/orders/{id}/events")), None).await;
    assert_eq!(version_of(&live.expect("order", LIVE_WAIT).await.json()), 1);

    with_kafka_stopped(async {
        eventually(Duration::from_secs(20), "readyz degraded", || async {
            let v: serde_json::Value = json_of(c.get(gw.url("/readyz"))).await;
            v["status"] == "degraded" && v["checks"]["stream"]["status"] == "down"
        })
        .await;
        let r = c.get(gw.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 200, "degraded is still ready");
        let r = c.get(gw.url(&format!("/v1/orders/{id}"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "reads go on");
    })
    .await;
    live.expect("degraded", LIVE_WAIT).await;
    // An event written as soon as the broker is back, before the gateway has
    // reconnected, still reaches the cache: the stream resumes where it
    // stood instead of jumping to a new end.
    producer()
        .send(FutureRecord::to(&w.orders_topic).key(&id).payload(&event(order(&id, 5))), Duration::from_secs(10))
        .await
        .unwrap();
    showing_the_stream(
        &gw,
        eventually(Duration::from_secs(60), "readyz ready again", || async {
            let v: serde_json::Value = json_of(c.get(gw.url("/readyz"))).await;
            v["status"] == "ready"
        }),
    )
    .await;
    showing_the_stream(
        &gw,
        eventually(Duration::from_secs(20), "the version written on reconnect through the stream", || async {
            let r = c.get(gw.url(&format!("/v1/orders/{id}"))).send().await.unwrap();
            r.status() == 200 && version_of(&r.json().await.unwrap()) == 5
        }),
    )
    .await;
    // The version written on reconnect and the all-clear, in whichever
    // order: events flow before the lag watcher sees the stream caught up.
    // While librdkafka reconnects (its backoff reaches 2 s) the stream may
    // be caught up, then behind again for longer than this test's 2 s
    // max_staleness, then caught up: each such `degraded` must be followed
    // by its `recovered`, and nothing else may come.
    let mut seen = Vec::new();
    let mut order_version = None;
    let mut down = true;
    while order_version.is_none() || down {
        let ev = live.next(LIVE_WAIT).await.unwrap_or_else(|| panic!("the stream ended after {seen:?}"));
        match ev.name.as_str() {
            "order" if order_version.is_none() => order_version = Some(version_of(&ev.json())),
            "degraded" if !down => down = true,
            "recovered" if down => down = false,
            _ => panic!("unexpected event {ev:?} after {seen:?}"),
        }
        seen.push(ev.name);
    }
    assert_eq!(order_version, Some(5), "{seen:?}");
    // And one written once the gateway is ready again.
    producer()
        .send(FutureRecord::to(&w.orders_topic).key(&id).payload(&event(order(&id, 6))), Duration::from_secs(10))
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the next version through the stream", || async {
        let r = c.get(gw.url(&format!("/v1/orders/{id}"))).send().await.unwrap();
        r.status() == 200 && version_of(&r.json().await.unwrap()) == 6
    })
    .await;
}

/// The stream's Kafka client, unanswered by the brokers for
/// `stream.reconnect_after`, is replaced by a new one that resumes where the
/// old one stood: an event written after the outage reaches the cache
/// through it, and why the brokers did not answer is shown meanwhile.
#[tokio::test]
async fn an_unanswered_stream_client_is_replaced_and_resumes_where_it_stood() {
    let _kafka = KAFKA.lock().await;
    let w = World::new();
    let gw = w
        .gateway(&[
            ("ORDER_GATEWAY__STREAM__MAX_STALENESS", "2s"),
            ("ORDER_GATEWAY__STREAM__RECONNECT_AFTER", "2s"),
            ("ORDER_GATEWAY__READINESS__CACHE_FOR", "100ms"),
        ])
        .await;
    let id = format!("fk-{}", uuid::Uuid::new_v4().simple());
    w.index_order(order(&id, 1)).await;
    let c = client();
    assert_eq!(c.get(gw.url(&format!("/v1/orders/{id}"))).send().await.unwrap().status(), 200);
    let metrics = c.get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "stream_reconnects_total 0"), "the series exists from the start");
    let order_url = gw.url(&format!("/v1/orders/{id}"));
    let at_version = |want: u64| {
        let (c, url) = (c.clone(), order_url.clone());
        move || {
            let (c, url) = (c.clone(), url.clone());
            async move {
                let r = c.get(url).send().await.unwrap();
                r.status() == 200 && version_of(&r.json().await.unwrap()) == want
            }
        }
    };
    producer()
        .send(FutureRecord::to(&w.orders_topic).key(&id).payload(&event(order(&id, 2))), Duration::from_secs(10))
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "version 2 through the stream", at_version(2)).await;

    with_kafka_stopped(async {
        eventually(Duration::from_secs(30), "the stream's client replaced", || async {
            metric_sum(&gw, "stream_reconnects_total").await >= 1.0
        })
        .await;
        let s: serde_json::Value = json_of(c.get(gw.url("/admin/stream"))).await;
        assert!(s["last_error"].as_str().is_some_and(|e| !e.is_empty()), "why the brokers did not answer: {s}");
        let r: serde_json::Value = json_of(c.get(gw.url("/readyz"))).await;
        let detail = r["checks"]["stream"]["detail"].as_str().unwrap_or_default().to_string();
        assert!(detail.starts_with("brokers not answering: "), "{r}");
    })
    .await;
    producer()
        .send(FutureRecord::to(&w.orders_topic).key(&id).payload(&event(order(&id, 3))), Duration::from_secs(10))
        .await
        .unwrap();
    showing_the_stream(&gw, eventually(Duration::from_secs(60), "version 3 through the new client", at_version(3)))
        .await;
    eventually(Duration::from_secs(30), "ready again, no error kept", || async {
        let s: serde_json::Value = json_of(c.get(gw.url("/admin/stream"))).await;
        s["healthy"] == true && s["last_error"].is_null()
    })
    .await;
}
