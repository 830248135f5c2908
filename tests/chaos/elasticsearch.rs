//! Elasticsearch stopped under load, then started again: cached lookups
//! never fail (the stream keeps them fresh; STALE is allowed), uncached ones
//! answer 503 within `elasticsearch.timeout` and at once while the circuit is
//! open, and recover once Elasticsearch is healthy.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use order_gateway::model::{Component, OrderView};

use crate::common::load::*;
use crate::common::world::*;
use crate::common::*;
use crate::report::{full, scale, Row};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_stopped_and_restarted() {
    let _one = crate::serial().await;
    let w = World::new();
    let rate = scale(2000.0, 300.0);
    let outage = scale(Duration::from_secs(20), Duration::from_secs(6));
    let longest = Duration::from_secs(180);
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let cached: Vec<String> = (0..500).map(|i| format!("esc-{i}-{tag}")).collect();
    // One id per uncached request, each asked once: never in the cache.
    let uncached: Vec<String> =
        (0..(rate * 0.1 * longest.as_secs_f64()) as usize).map(|i| format!("esu-{i}-{tag}")).collect();
    let views: Vec<OrderView> =
        cached.iter().chain(&uncached).map(|id| OrderView::from_component(Component::Order(order(id, 1)))).collect();
    w.index_many(&views).await;
    let gw = w.gateway(&[]).await;
    let c = client();
    for id in &cached {
        assert_eq!(c.get(gw.url(&format!("/v1/orders/{id}"))).send().await.unwrap().status(), 200);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let (cached, uncached) = (Arc::new(cached), Arc::new(uncached));
    let start = Instant::now();
    let load = tokio::spawn({
        let (lc, base, stop) = (load_client(Duration::from_secs(10)), gw.base.clone(), stop.clone());
        open_model_until(rate, longest, 5000, stop, move |i| {
            // Every tenth request asks for an order never asked before.
            let (kind, id) = if i % 10 == 9 {
                ("uncached", uncached[(i / 10) as usize].clone())
            } else {
                ("cached", cached[i as usize % cached.len()].clone())
            };
            let (c, url) = (lc.clone(), format!("{base}/v1/orders/{id}"));
            async move { (kind, outcome_of(&c.get(url).send().await)) }
        })
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stopped_at = start.elapsed();
    stack("stop", "elasticsearch");
    tokio::time::sleep(outage).await;
    let restart = start.elapsed();
    stack("start", "elasticsearch"); // returns once it answers as healthy
    let healthy = start.elapsed();
    tokio::time::sleep(scale(Duration::from_secs(15), Duration::from_secs(8))).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let shots = load.await.unwrap();

    let of = |kind: &'static str| shots.iter().filter(move |s| s.kind == kind);
    let cached_all = Summary::of(of("cached"));
    let down = |s: &&Shot| s.during(stopped_at, healthy);
    let uncached_down = Summary::of(of("uncached").filter(down));
    let bad_uncached = of("uncached").filter(|s| !s.ok() && s.outcome != Outcome::Status(503)).count();
    // Recovered: from healthy to the end of the last failed uncached lookup.
    let last_failure = of("uncached").filter(|s| !s.ok()).map(Shot::done).max().unwrap_or_default();
    let recovery = last_failure.saturating_sub(healthy);
    let all = Summary::of(&shots);
    let fault = Summary::of(shots.iter().filter(down));
    let timeout = Duration::from_secs(2); // elasticsearch.timeout, the shipped default
    let mut held = cached_all.failures() == 0 && bad_uncached == 0 && last_failure < start.elapsed();
    if full() {
        held &= uncached_down.max <= timeout + Duration::from_millis(500) && recovery <= Duration::from_secs(10);
    }
    Row {
        fault: format!(
            "Elasticsearch stopped, started again {} s later, healthy after {:.0} s more",
            outage.as_secs(),
            (healthy - restart).as_secs_f64()
        ),
        load: "90 % cached, 10 % uncached lookups".into(),
        offered: rate,
        answered: all.ok,
        failed: all.failed_text(),
        p99_fault: Some(fault.p99),
        recovery: Some(recovery),
        invariant: format!(
            "cached: {} failed of {}; uncached while down: {} answered 503 (p99 {}, max {}, timeout 2 s), {} other failures; \
             recovered {:.1} s after healthy (target 10 s)",
            cached_all.failures(),
            cached_all.sent,
            uncached_down.failures(),
            ms(uncached_down.p99),
            ms(uncached_down.max),
            bad_uncached,
            recovery.as_secs_f64()
        ),
        held,
    }
    .emit();
}
