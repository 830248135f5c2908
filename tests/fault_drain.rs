//! Rolling a replica out from behind a load balancer loses no request: two
//! gateways behind a real haproxy that health-checks `/readyz`, steady load,
//! SIGTERM to one. The replica fails readiness at once and keeps serving for
//! `server.shutdown_delay`, so haproxy stops sending to it before it stops
//! listening. Its own binary: it needs the machine quiet enough for haproxy's
//! checks to run on time.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::haproxy::Haproxy;
use common::world::*;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_behind_haproxy_loses_no_request() {
    let w = World::new();
    let id = format!("drain-{}", uuid::Uuid::new_v4().simple());
    w.index_order(order(&id, 1)).await;
    let delay = [("ORDER_GATEWAY__SERVER__SHUTDOWN_DELAY", "4s")];
    let mut leaving = w.gateway(&delay).await;
    let staying = w.gateway(&delay).await;
    let port = free_port();
    let _haproxy = Haproxy::start(port, &[&leaving, &staying]);
    let url = format!("http://127.0.0.1:{port}/v1/orders/{id}");
    eventually(Duration::from_secs(15), "haproxy sees both replicas", || {
        let (c, url) = (client(), url.clone());
        async move { matches!(c.get(url).send().await, Ok(r) if r.status() == 200) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // both checks passed twice (rise 2)

    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stop_at = Instant::now() + Duration::from_secs(9);
    let load: Vec<_> = (0..8)
        .map(|_| {
            let (ok, failed, url) = (ok.clone(), failed.clone(), url.clone());
            tokio::spawn(async move {
                let c = client();
                let mut first_failure = None;
                while Instant::now() < stop_at {
                    match c.get(&url).send().await {
                        Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            first_failure.get_or_insert_with(|| format!("{:?}", other.map(|r| r.status())));
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
                first_failure
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    leaving.terminate();
    let terminated = Instant::now();
    // Readiness fails as soon as the signal is handled, while the replica still serves.
    eventually(Duration::from_secs(2), "readyz 503 draining after SIGTERM", || {
        let url = leaving.url("/readyz");
        async move {
            match client().get(url).send().await {
                Ok(r) if r.status() == 503 => {
                    r.json::<serde_json::Value>().await.is_ok_and(|b| b["status"] == "draining")
                }
                _ => false,
            }
        }
    })
    .await;
    assert_eq!(client().get(leaving.url("/healthz")).send().await.unwrap().status(), 200, "still serving");
    let mut failures = Vec::new();
    for t in load {
        failures.extend(t.await.unwrap());
    }
    assert_eq!(leaving.wait_exit(Duration::from_secs(15)).await, Some(0), "clean exit");
    assert!(terminated.elapsed() >= Duration::from_secs(4), "it served through the delay");
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} of {} requests failed across the SIGTERM; first: {failures:?}", ok + failed);
    assert!(ok > 100, "steady load: {ok} requests");
    assert_eq!(client().get(staying.url("/readyz")).send().await.unwrap().status(), 200);
}
