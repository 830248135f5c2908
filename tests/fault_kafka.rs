//! Fault test: Kafka stopped and started again under a running gateway.

mod common;

use std::time::Duration;

use common::sse::{stream_client, Sse};
use common::world::*;
use common::*;
use rdkafka::producer::FutureRecord;

/// How long a live subscriber waits for each event (a broker's restart included).
const LIVE_WAIT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn reads_go_on_without_kafka_and_the_cache_catches_up_after() {
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

    stack("stop", "kafka");
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
        eventually(Duration::from_secs(20), "readyz degraded", || async {
            let v: serde_json::Value = json_of(c.get(gw.url("/readyz"))).await;
            v["status"] == "degraded" && v["checks"]["stream"]["status"] == "down"
        })
        .await;
        let r = c.get(gw.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 200, "degraded is still ready");
        let r = c.get(gw.url(&format!("/v1/orders/{id}"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "reads go on");
    }))
    .await;
    stack("start", "kafka");
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
    live.expect("degraded", LIVE_WAIT).await;
    // An event written as soon as the broker is back, before the gateway has
    // reconnected, still reaches the cache: the stream resumes where it
    // stood instead of jumping to a new end.
    producer()
        .send(FutureRecord::to(&w.orders_topic).key(&id).payload(&event(order(&id, 5))), Duration::from_secs(10))
        .await
        .unwrap();
    let ready = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(eventually(
        Duration::from_secs(60),
        "readyz ready again",
        || async {
            let v: serde_json::Value = json_of(c.get(gw.url("/readyz"))).await;
            v["status"] == "ready"
        },
    )))
    .await;
    if let Err(p) = ready {
        // Which check stayed down, and where the stream stood in each partition.
        let readyz = c.get(gw.url("/readyz")).send().await.unwrap().text().await.unwrap();
        let stream = c.get(gw.url("/admin/stream")).send().await.unwrap().text().await.unwrap();
        eprintln!("not ready again: /readyz {readyz}\n/admin/stream {stream}");
        std::panic::resume_unwind(p);
    }
    // On failure, say where the stream stood in each partition.
    let seen = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(eventually(
        Duration::from_secs(20),
        "the version written on reconnect through the stream",
        || async {
            let r = c.get(gw.url(&format!("/v1/orders/{id}"))).send().await.unwrap();
            r.status() == 200 && version_of(&r.json().await.unwrap()) == 5
        },
    )))
    .await;
    if let Err(p) = seen {
        let stream = c.get(gw.url("/admin/stream")).send().await.unwrap().text().await.unwrap();
        eprintln!("stream state when the event did not arrive: {stream}");
        std::panic::resume_unwind(p);
    }
    // The version written on reconnect and the all-clear, in whichever
    // order: events flow before the lag watcher sees the stream caught up.
    let mut two = [live.next(LIVE_WAIT).await.unwrap(), live.next(LIVE_WAIT).await.unwrap()];
    two.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!((two[0].name.as_str(), two[1].name.as_str()), ("order", "recovered"), "{two:?}");
    assert_eq!(version_of(&two[0].json()), 5);
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
