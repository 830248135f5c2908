//! ClickHouse stopped under analytics and lookups: lookups of hot orders do
//! not notice, analytics answer 503 naming clickhouse (fast once the circuit
//! opens), and answer again once ClickHouse is back.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use order_gateway::model::{Component, OrderView};

use crate::common::load::*;
use crate::common::world::*;
use crate::common::*;
use crate::report::{full, scale, Row};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_stopped_and_restarted() {
    let _one = crate::serial().await;
    let w = World::new();
    let (lookups, analytics) = (scale(500.0, 150.0), scale(50.0, 20.0));
    let outage = scale(Duration::from_secs(20), Duration::from_secs(6));
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let ids: Vec<String> = (0..300).map(|i| format!("chc-{i}-{tag}")).collect();
    let views: Vec<OrderView> =
        ids.iter().map(|id| OrderView::from_component(Component::Order(order(id, 1)))).collect();
    w.index_many(&views).await;
    let gw = w.gateway(&[]).await;
    let c = client();
    for id in &ids {
        assert_eq!(c.get(gw.url(&format!("/v1/orders/{id}"))).send().await.unwrap().status(), 200);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let longest = Duration::from_secs(180);
    let lc = load_client(Duration::from_secs(10));
    let start = Instant::now();
    let lookup_load = tokio::spawn({
        let (lc, base, stop, ids) = (lc.clone(), gw.base.clone(), stop.clone(), Arc::new(ids));
        open_model_until(lookups, longest, 5000, stop, move |i| {
            let (c, url) = (lc.clone(), format!("{base}/v1/orders/{}", ids[i as usize % ids.len()]));
            async move { ("lookup", outcome_of(&c.get(url).send().await)) }
        })
    });
    let analytics_load = tokio::spawn({
        let (lc, base, stop) = (lc.clone(), gw.base.clone(), stop.clone());
        open_model_until(analytics, longest, 5000, stop, move |i| {
            // A range never asked before, so never answered from a cache.
            // 2020-01-01T00:00:00Z plus i seconds.
            let from = order_gateway::model::Timestamp((1_577_836_800 + i as i64) * 1000);
            let url = format!("{base}/v1/analytics/kpis?from={from}&to=2021-01-01T00:00:00Z");
            let c = lc.clone();
            async move {
                let r = c.get(url).send().await;
                let outcome = outcome_of(&r);
                if outcome == Outcome::Status(503) {
                    let body: serde_json::Value = r.unwrap().json().await.unwrap_or_default();
                    if body["backend"] != "clickhouse" {
                        return ("analytics", Outcome::Error("503 not naming clickhouse"));
                    }
                }
                ("analytics", outcome)
            }
        })
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stopped_at = start.elapsed();
    stack("stop", "clickhouse");
    tokio::time::sleep(outage).await;
    let restart = start.elapsed();
    stack("start", "clickhouse");
    let healthy = start.elapsed();
    tokio::time::sleep(scale(Duration::from_secs(15), Duration::from_secs(8))).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (lookup_shots, analytic_shots) = (lookup_load.await.unwrap(), analytics_load.await.unwrap());

    let lookup_all = Summary::of(&lookup_shots);
    let down = |s: &&Shot| s.during(stopped_at, healthy);
    let analytics_down = Summary::of(analytic_shots.iter().filter(down));
    let odd = analytic_shots.iter().filter(|s| !s.ok() && s.outcome != Outcome::Status(503)).count();
    let last_failure = analytic_shots.iter().filter(|s| !s.ok()).map(Shot::done).max().unwrap_or_default();
    let recovery = last_failure.saturating_sub(healthy);
    let answered = lookup_all.ok + analytic_shots.iter().filter(|s| s.ok()).count();
    let mut held = lookup_all.failures() == 0 && odd == 0 && last_failure < start.elapsed();
    if full() {
        held &= recovery <= Duration::from_secs(10);
    }
    let mut failed = Summary::of(lookup_shots.iter().chain(&analytic_shots)).failed_text();
    failed.push_str(" (analytics)");
    if lookup_all.failures() > 0 {
        failed = format!("lookups {}, {failed}", lookup_all.failed_text());
    }
    Row {
        fault: format!(
            "ClickHouse stopped, started again {} s later, healthy after {:.0} s more",
            outage.as_secs(),
            (healthy - restart).as_secs_f64()
        ),
        load: format!("cached lookups {lookups:.0}/s + analytics {analytics:.0}/s"),
        offered: lookups + analytics,
        answered,
        failed,
        p99_fault: Some(Summary::of(lookup_shots.iter().filter(down)).p99),
        recovery: Some(recovery),
        invariant: format!(
            "lookups: {} failed of {}; analytics while down: {} answered 503 naming clickhouse (p50 {}, p99 {}), \
             {odd} other failures; analytics recovered {:.1} s after healthy",
            lookup_all.failures(),
            lookup_all.sent,
            analytics_down.failures(),
            ms(analytics_down.p50),
            ms(analytics_down.p99),
            recovery.as_secs_f64()
        ),
        held,
    }
    .emit();
}
