//! Kafka stopped under lookups while orders keep changing (the producer
//! retries until the broker is back): no lookup fails, `/readyz` goes
//! degraded and back to ready, and every update the producer had
//! acknowledged is visible through the gateway afterwards.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use order_gateway::model::{Component, OrderView};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::common::load::*;
use crate::common::world::*;
use crate::common::*;
use crate::report::{full, scale, Row};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_stopped_while_orders_change() {
    let _one = crate::serial().await;
    let w = World::new();
    let (lookups, updates) = (scale(2000.0, 300.0), scale(200.0, 50.0));
    let outage = scale(Duration::from_secs(20), Duration::from_secs(6));
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let ids: Arc<Vec<String>> = Arc::new((0..200).map(|i| format!("kf-{i}-{tag}")).collect());
    let views: Vec<OrderView> =
        ids.iter().map(|id| OrderView::from_component(Component::Order(order(id, 1)))).collect();
    w.index_many(&views).await;
    let gw = w.gateway(&[("ORDER_GATEWAY__READINESS__CACHE_FOR", "100ms")]).await;
    let c = client();
    for id in ids.iter() {
        assert_eq!(c.get(gw.url(&format!("/v1/orders/{id}"))).send().await.unwrap().status(), 200);
    }
    // As the order services produce: every write acknowledged by all in-sync
    // replicas, retried (idempotently) for as long as the broker is away.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "180000")
        .create()
        .unwrap();
    let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();

    let stop = Arc::new(AtomicBool::new(false));
    let longest = Duration::from_secs(180);
    let start = Instant::now();
    let lookup_load = tokio::spawn({
        let (lc, base, stop, ids) = (load_client(Duration::from_secs(10)), gw.base.clone(), stop.clone(), ids.clone());
        open_model_until(lookups, longest, 5000, stop, move |i| {
            let (c, url) = (lc.clone(), format!("{base}/v1/orders/{}", ids[i as usize % ids.len()]));
            async move { ("lookup", outcome_of(&c.get(url).send().await)) }
        })
    });
    let update_load = tokio::spawn({
        let (stop, ids, acked, topic) = (stop.clone(), ids.clone(), acked.clone(), w.orders_topic.clone());
        open_model_until(updates, longest, 100_000, stop, move |i| {
            let id = ids[i as usize % ids.len()].clone();
            let version = 2 + i / ids.len() as u64;
            let (producer, acked, topic) = (producer.clone(), acked.clone(), topic.clone());
            async move {
                let payload = event(order(&id, version));
                let sent =
                    producer.send(FutureRecord::to(&topic).key(&id).payload(&payload), Duration::from_secs(180)).await;
                if sent.is_err() {
                    return ("update", Outcome::Error("produce"));
                }
                let mut acked = acked.lock().unwrap();
                let v = acked.entry(id).or_default();
                *v = (*v).max(version);
                ("update", Outcome::Status(200))
            }
        })
    });
    // Readiness as a balancer sees it, every 200 ms: the distinct states in order.
    let watching = Arc::new(AtomicBool::new(false));
    let readiness = tokio::spawn({
        let (c, url, stop) = (client(), gw.url("/readyz"), watching.clone());
        async move {
            let mut seen: Vec<String> = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(r) = c.get(&url).send().await {
                    let v: serde_json::Value = r.json().await.unwrap_or_default();
                    let s = v["status"].as_str().unwrap_or("?").to_string();
                    if seen.last() != Some(&s) {
                        seen.push(s);
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            seen
        }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stopped_at = start.elapsed();
    stack("stop", "kafka");
    tokio::time::sleep(outage).await;
    let restart = start.elapsed();
    stack("start", "kafka");
    let healthy = start.elapsed();
    tokio::time::sleep(scale(Duration::from_secs(10), Duration::from_secs(5))).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (lookup_shots, update_shots) = (lookup_load.await.unwrap(), update_load.await.unwrap());

    // Every acknowledged update visible: the gateway's version of each order
    // reaches the highest one acknowledged.
    let acked = acked.lock().unwrap().clone();
    let mut missing = acked.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    while missing > 0 && Instant::now() < deadline {
        missing = 0;
        for (id, want) in &acked {
            let r = c.get(gw.url(&format!("/v1/orders/{id}"))).send().await.unwrap();
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            if version_of(&v) < *want {
                missing += 1;
            }
        }
        if missing > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let visible = start.elapsed();
    // Readiness is watched until it says ready again (or 30 s more).
    let ready_by = Instant::now() + Duration::from_secs(30);
    while Instant::now() < ready_by {
        let v: serde_json::Value = json_of(c.get(gw.url("/readyz"))).await;
        if v["status"] == "ready" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // one more look by the watcher
    watching.store(true, std::sync::atomic::Ordering::Relaxed);
    let states = readiness.await.unwrap();
    let lookup_all = Summary::of(&lookup_shots);
    let update_all = Summary::of(&update_shots);
    let went_degraded = states.iter().any(|s| s == "degraded");
    let ready_again = states.last().is_some_and(|s| s == "ready");
    let recovery = visible.saturating_sub(healthy);
    let mut held =
        lookup_all.failures() == 0 && missing == 0 && update_all.failures() == 0 && went_degraded && ready_again;
    if full() {
        held &= recovery <= Duration::from_secs(10);
    }
    Row {
        fault: format!(
            "Kafka stopped, started again {} s later, healthy after {:.0} s more",
            outage.as_secs(),
            (healthy - restart).as_secs_f64()
        ),
        load: format!("cached lookups + {updates:.0} updates/s produced (acks=all, retried)"),
        offered: lookups,
        answered: lookup_all.ok,
        failed: lookup_all.failed_text(),
        p99_fault: Some(Summary::of(lookup_shots.iter().filter(|s| s.during(stopped_at, healthy))).p99),
        recovery: Some(recovery),
        invariant: format!(
            "lookups: {} failed; {} of {} updates acknowledged, {} of {} orders short of their last acknowledged version \
             {:.1} s after Kafka was healthy; /readyz went {}",
            lookup_all.failures(),
            update_all.ok,
            update_all.sent,
            missing,
            acked.len(),
            recovery.as_secs_f64(),
            states.join(" → ")
        ),
        held,
    }
    .emit();
}
