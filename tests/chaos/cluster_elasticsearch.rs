//! On the stack's cluster variant (`STACK_ES_NODES=2`): one Elasticsearch
//! node killed with SIGKILL under lookups and searches. The gateway knows
//! both nodes (`elasticsearch.urls`), every index has a replica, so no lookup
//! or search fails: requests for the dead node go to the other one.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use order_gateway::model::{Component, OrderView};

use crate::common::load::*;
use crate::common::world::*;
use crate::common::*;
use crate::report::{scale, Row};

/// SIGKILL to a node's whole process group, by the stack's pid file.
pub fn kill_node(node: &str) {
    let pid_file = std::env::var("STACK_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".stack"))
        .join("run")
        .join(format!("{node}.pid"));
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    // SAFETY: a signal to the process group the stack started for this node
    // (start_daemon runs each in a session of its own).
    let rc = unsafe { libc::kill(-pid, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill -KILL -{pid} ({node})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_elasticsearch_node_killed() {
    if std::env::var("STACK_ES_NODES").ok().as_deref() != Some("2") {
        eprintln!("skipped: needs the cluster variant (STACK_ES_NODES=2; make chaos starts it)");
        return;
    }
    let _one = crate::serial().await;
    let urls = std::env::var("STACK_ES_URLS").expect("STACK_ES_URLS (eval \"$(scripts/stack/env)\")");
    let w = World::new(); // setup makes the index with a replica (ORDER_GATEWAY__SETUP__INDEX_REPLICAS=1)
    let rate = scale(600.0, 200.0);
    let longest = Duration::from_secs(120);
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let cached: Vec<String> = (0..200).map(|i| format!("ecc-{i}-{tag}")).collect();
    let uncached: Vec<String> =
        (0..(rate * 0.4 * longest.as_secs_f64()) as usize).map(|i| format!("ecu-{i}-{tag}")).collect();
    let views: Vec<OrderView> =
        cached.iter().chain(&uncached).map(|id| OrderView::from_component(Component::Order(order(id, 1)))).collect();
    w.index_many(&views).await;
    let health = client()
        .get(format!("{}/_cluster/health/{}?wait_for_status=green&timeout=120s", es_url(), w.alias))
        .send()
        .await
        .unwrap();
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health["status"], "green", "every shard has its replica: {health}");
    let gw = w.gateway(&[("ORDER_GATEWAY__ELASTICSEARCH__URLS", urls.as_str())]).await;
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
            // 40 % cached, 40 % never asked before (Elasticsearch), 20 % searches.
            let (kind, path) = match i % 5 {
                0 | 1 => ("cached", format!("/v1/orders/{}", cached[i as usize % cached.len()])),
                2 | 3 => ("uncached", format!("/v1/orders/{}", uncached[(i / 5 * 2 + i % 5 - 2) as usize])),
                _ => ("search", format!("/v1/orders?q=ON-{}&limit=5", cached[(i as usize / 5) % cached.len()])),
            };
            let (c, url) = (lc.clone(), format!("{base}{path}"));
            async move { (kind, outcome_noted(kind, c.get(url).send().await).await) }
        })
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed_at = start.elapsed();
    kill_node("elasticsearch-2");
    tokio::time::sleep(scale(Duration::from_secs(20), Duration::from_secs(8))).await;
    let restart = start.elapsed();
    stack("start", "elasticsearch-2");
    let rejoined = start.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let shots = load.await.unwrap();
    let failovers = metric_sum(&gw, "backend_failovers_total{backend=\"elasticsearch\"").await;

    let all = Summary::of(&shots);
    let of = |k: &'static str| Summary::of(shots.iter().filter(move |s| s.kind == k));
    let (cached_s, uncached_s, search_s) = (of("cached"), of("uncached"), of("search"));
    let fault = Summary::of(shots.iter().filter(|s| s.during(killed_at, rejoined)));
    Row {
        fault: format!(
            "cluster: Elasticsearch node 2 of 2 killed (SIGKILL), restarted {:.0} s later, back in {:.0} s",
            (restart - killed_at).as_secs_f64(),
            (rejoined - restart).as_secs_f64()
        ),
        load: "40 % cached, 40 % uncached lookups, 20 % searches; elasticsearch.urls = both nodes".into(),
        offered: rate,
        answered: all.ok,
        failed: all.failed_text(),
        p99_fault: Some(fault.p99),
        recovery: None,
        invariant: format!(
            "failed: cached {}, uncached {}, searches {} (of {}); {failovers:.0} calls failed over to the other node",
            cached_s.failures(),
            uncached_s.failures(),
            search_s.failures(),
            all.sent
        ),
        held: all.failures() == 0,
    }
    .emit();
}
