//! SIGTERM of one of two replicas behind haproxy under open-model load of
//! cached lookups: `/readyz` turns 503 first, haproxy drains the replica
//! during `server.shutdown_delay` (the shipped default), in-flight requests
//! finish, and no request fails.

use std::time::{Duration, Instant};

use crate::common::haproxy::Haproxy;
use crate::common::load::*;
use crate::common::world::*;
use crate::common::*;
use crate::report::{scale, Row};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_a_replica_behind_a_balancer() {
    let _one = crate::serial().await;
    let w = World::new();
    let ids: Vec<String> = (0..200).map(|i| format!("drain-{i}-{}", uuid::Uuid::new_v4().simple())).collect();
    for id in &ids {
        w.index_order(order(id, 1)).await;
    }
    // The shipped shutdown_delay (5 s): what a deployment gets.
    let mut leaving = w.gateway(&[]).await;
    let staying = w.gateway(&[]).await;
    let port = free_port();
    let _haproxy = Haproxy::start(port, &[&leaving, &staying]);
    let base = format!("http://127.0.0.1:{port}");
    eventually(Duration::from_secs(15), "haproxy sees both replicas", || {
        let (c, url) = (client(), format!("{base}/v1/orders/{}", ids[0]));
        async move { matches!(c.get(url).send().await, Ok(r) if r.status() == 200) }
    })
    .await;
    // Every order cached in both replicas, and both checks passed twice (rise 2).
    let c = client();
    for id in &ids {
        for g in [&leaving, &staying] {
            assert_eq!(c.get(g.url(&format!("/v1/orders/{id}"))).send().await.unwrap().status(), 200);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let rate = scale(2000.0, 400.0);
    let before = Duration::from_secs(2);
    let run = Duration::from_secs(12);
    let load_client = load_client(Duration::from_secs(10));
    let ids = std::sync::Arc::new(ids);
    let start = Instant::now();
    let load = tokio::spawn({
        let (base, ids) = (base.clone(), ids.clone());
        open_model(rate, run, 5000, move |i| {
            let (c, url) = (load_client.clone(), format!("{base}/v1/orders/{}", ids[i as usize % ids.len()]));
            async move { ("cached", outcome_of(&c.get(url).send().await)) }
        })
    });
    tokio::time::sleep(before).await;
    leaving.terminate();
    let term = start.elapsed();
    let exit = leaving.wait_exit(Duration::from_secs(30)).await;
    let gone = start.elapsed();
    let shots = load.await.unwrap();
    let all = Summary::of(&shots);
    let fault = Summary::of(shots.iter().filter(|s| s.during(term, gone)));
    let held = all.failures() == 0 && exit == Some(0) && gone - term >= Duration::from_secs(5);
    Row {
        fault: "SIGTERM of one of two replicas behind haproxy (checks /readyz)".into(),
        load: "cached lookups".into(),
        offered: rate,
        answered: all.ok,
        failed: all.failed_text(),
        p99_fault: Some(fault.p99),
        recovery: None,
        invariant: format!(
            "0 failed requests; exit {} after {:.1} s of draining (shutdown_delay 5 s)",
            exit.map_or("by a signal".to_string(), |c| c.to_string()),
            (gone - term).as_secs_f64()
        ),
        held,
    }
    .emit();
}
