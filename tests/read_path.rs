//! The operational read path against the real stack: coherence under a
//! concurrent writer, coalesced misses, ETags, searches and bad parameters.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::world::*;
use common::*;
use order_gateway::model::{OrderView, Timestamp};
use rdkafka::producer::FutureRecord;
use serde_json::{json, Value};

#[tokio::test]
async fn readers_never_go_back_in_time_and_see_the_final_version_within_a_second() {
    let w = World::new();
    let gw = Arc::new(w.gateway(&[]).await);
    let ids: Vec<String> = (0..5).map(|i| format!("rp-{}-{i}", uuid::Uuid::new_v4().simple())).collect();
    let final_version = 40u64;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let mut readers = Vec::new();
    for r in 0..4 {
        let (gw, ids, stop) = (gw.clone(), ids.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let c = client();
            let mut last: HashMap<String, u64> = HashMap::new();
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for id in &ids {
                    let resp = c.get(gw.url(&format!("/v1/orders/{id}"))).send().await.unwrap();
                    if resp.status() == 404 {
                        assert!(!last.contains_key(id), "reader {r}: {id} vanished after being seen");
                        continue;
                    }
                    assert_eq!(resp.status(), 200);
                    let v = version_of(&resp.json().await.unwrap());
                    let prev = last.insert(id.clone(), v).unwrap_or(0);
                    assert!(v >= prev, "reader {r}: {id} went back from version {prev} to {v}");
                    reads += 1;
                }
            }
            reads
        }));
    }
    let p = producer();
    for version in 1..=final_version {
        for id in &ids {
            p.send(
                FutureRecord::to(&w.orders_topic).key(id).payload(&event(order(id, version))),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopped_writing = Instant::now();
    let c = client();
    for id in &ids {
        loop {
            let resp = c.get(gw.url(&format!("/v1/orders/{id}"))).send().await.unwrap();
            if resp.status() == 200 && version_of(&resp.json().await.unwrap()) == final_version {
                break;
            }
            assert!(
                stopped_writing.elapsed() < Duration::from_secs(1),
                "{id} not at version {final_version} within 1s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for r in readers {
        total += r.await.unwrap();
    }
    assert!(total > 100, "readers read concurrently ({total} reads)");
}

#[tokio::test]
async fn concurrent_misses_for_one_id_make_one_elasticsearch_request() {
    let w = World::new();
    let gw = Arc::new(w.gateway(&[]).await);
    let id = format!("rp-{}", uuid::Uuid::new_v4().simple());
    w.index_order(order(&id, 3)).await;
    let before = w.es_search_count().await;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (gw, id) = (gw.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let r = client().get(gw.url(&format!("/v1/orders/{id}"))).send().await.unwrap();
            (r.status().as_u16(), r.headers()["x-cache"].to_str().unwrap().to_owned())
        }));
    }
    let mut misses = 0;
    for t in tasks {
        let (status, cache) = t.await.unwrap();
        assert_eq!(status, 200);
        misses += usize::from(cache == "MISS");
    }
    let after = w.es_search_count().await;
    assert_eq!(after - before, 1, "Elasticsearch saw {} searches for 200 concurrent misses", after - before);
    assert!(misses >= 1);
    let metrics = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("cache_coalesced_waits_total"), "{metrics}");
}

#[tokio::test]
async fn etag_revalidation_and_cache_headers() {
    let w = World::new();
    let gw = w.gateway(&[]).await;
    let id = format!("rp-{}", uuid::Uuid::new_v4().simple());
    let view = w.index_order(order(&id, 2)).await;
    let c = client();
    let first = c.get(gw.url(&format!("/v1/orders/{id}"))).send().await.unwrap();
    assert_eq!(first.headers()["x-cache"], "MISS");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let body: OrderView = first.json().await.unwrap();
    assert_eq!(body, view, "the API returns the view as stored");
    let second = c.get(gw.url(&format!("/v1/orders/{id}"))).send().await.unwrap();
    assert_eq!(second.headers()["x-cache"], "HIT");
    let revalidated = c.get(gw.url(&format!("/v1/orders/{id}"))).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(revalidated.status(), 304);
    assert!(revalidated.bytes().await.unwrap().is_empty());
    let changed = c.get(gw.url(&format!("/v1/orders/{id}"))).header("if-none-match", "\"other\"").send().await.unwrap();
    assert_eq!(changed.status(), 200);

    // min_version beyond anything that exists: waits, then 503 with Retry-After.
    let r = c.get(gw.url(&format!("/v1/orders/{id}?min_version=9"))).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    // ...and is answered as soon as the stream brings it.
    let p = producer();
    p.send(FutureRecord::to(&w.orders_topic).key(&id).payload(&event(order(&id, 9))), Duration::from_secs(5))
        .await
        .unwrap();
    let (_, body) = expect_json(c.get(gw.url(&format!("/v1/orders/{id}?min_version=9"))), 200).await;
    assert_eq!(version_of(&body), 9);
}

#[tokio::test]
async fn batch_get_search_and_cursors() {
    let w = World::new();
    let gw = w.gateway(&[]).await;
    let c = client();
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = format!("rp-{}-{i}", uuid::Uuid::new_v4().simple());
        let mut o = order(&id, 1);
        o.created_at = Timestamp(Timestamp::now().millis() - i * 1000);
        w.index_order(o).await;
        ids.push(id);
    }
    let body = json!({"ids": [ids[2], "rp-missing", ids[0]]});
    let r: Value = json_of(c.post(gw.url("/v1/orders:batchGet")).json(&body)).await;
    assert_eq!(r["orders"][0]["order_id"], ids[2]);
    assert_eq!(r["orders"][1]["order_id"], ids[0]);
    assert_eq!(r["missing"], json!(["rp-missing"]));

    let page1: Value = json_of(c.get(gw.url("/v1/customers/cust-rp/orders?limit=3"))).await;
    let got: Vec<&str> = page1["orders"].as_array().unwrap().iter().map(|o| o["order_id"].as_str().unwrap()).collect();
    assert_eq!(got, [ids[0].as_str(), ids[1].as_str(), ids[2].as_str()], "newest first");
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2: Value = json_of(c.get(gw.url(&format!("/v1/customers/cust-rp/orders?limit=3&cursor={cursor}")))).await;
    assert_eq!(page2["orders"].as_array().unwrap().len(), 2);
    assert!(page2["next_cursor"].is_null());

    let forged = format!("{}x", &cursor[..cursor.len() - 1]);
    for bad in [
        format!("/v1/customers/cust-rp/orders?cursor={forged}"),
        format!("/v1/orders?status=shipped&cursor={cursor}"),
        "/v1/orders?limit=1000".to_string(),
        "/v1/orders?from=2025-13-01".to_string(),
        "/v1/orders?from=2025-02-01T00:00:00Z&to=2025-01-01T00:00:00Z".to_string(),
        "/v1/orders?channel=fax".to_string(),
        "/v1/orders?sort=asc".to_string(),
        format!("/v1/orders/{}", "x".repeat(129)),
    ] {
        let (_, p) = expect_problem(c.get(gw.url(&bad)), 400).await;
        assert!(p["invalid_params"][0]["name"].is_string(), "{bad}: {p}");
    }
    let r = c.post(gw.url("/v1/orders:batchGet")).json(&json!({"ids": []})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let too_many: Vec<String> = (0..101).map(|i| format!("id-{i}")).collect();
    let r = c.post(gw.url("/v1/orders:batchGet")).json(&json!({ "ids": too_many })).send().await.unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn lookup_by_order_number_finds_fills_and_remembers() {
    let w = World::new();
    let gw = w.gateway(&[]).await;
    let id = format!("rp-{}", uuid::Uuid::new_v4().simple());
    let view = w.index_order(order(&id, 3)).await;
    let number = view.order.as_ref().unwrap().order_number.clone();
    let c = client();
    let (_, body) = expect_json(c.get(gw.url(&format!("/v1/orders/by-number/{number}"))), 200).await;
    assert_eq!(serde_json::from_value::<OrderView>(body).unwrap(), view);
    // The search filled the cache: by number and by id, the answer is now a hit.
    let again = c.get(gw.url(&format!("/v1/orders/by-number/{number}"))).send().await.unwrap();
    assert_eq!(again.headers()["x-cache"], "HIT");
    let by_id = c.get(gw.url(&format!("/v1/orders/{id}"))).send().await.unwrap();
    assert_eq!(by_id.headers()["x-cache"], "HIT");

    let unknown = format!("ON-missing-{}", uuid::Uuid::new_v4().simple());
    let (_, p) = expect_problem(c.get(gw.url(&format!("/v1/orders/by-number/{unknown}"))), 404).await;
    assert!(p["detail"].as_str().unwrap().contains(&unknown), "{p}");
}
