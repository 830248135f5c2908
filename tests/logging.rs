//! The log writers' bound: a stdout that nobody reads (a stalled collector,
//! a full pipe) must not stall requests. Access lines past `log.access_queue`
//! are dropped and counted; the gateway goes on answering.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[tokio::test]
async fn a_stdout_nobody_reads_stalls_no_request() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    // stdout is a pipe this test never reads: it fills after about 64 KiB,
    // a few hundred lines; a blocking writer would then hold every worker.
    let mut child = Command::new(gateway_bin())
        .arg("serve")
        .env("ORDER_GATEWAY__SERVER__LISTEN", &addr)
        .env("ORDER_GATEWAY__KAFKA__BROKERS", kafka_brokers())
        .env("ORDER_GATEWAY__ELASTICSEARCH__URL", es_url())
        .env("ORDER_GATEWAY__CLICKHOUSE__URL", clickhouse_url())
        .env("ORDER_GATEWAY__SCHEMA_REGISTRY__URL", registry_url())
        .env("ORDER_GATEWAY__STREAM__ENABLED", "false")
        .env("ORDER_GATEWAY__AUTH__KEYS", keys_env(&[]))
        .env("ORDER_GATEWAY__LOG__ACCESS_SAMPLE", "1")
        .env("ORDER_GATEWAY__LOG__ACCESS_QUEUE", "64")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn order-gateway");
    let _stdout = child.stdout.take(); // kept open, never read
    let base = format!("http://{addr}");
    let c = client();
    let started = Instant::now();
    while c.get(format!("{base}/healthz")).send().await.map_or(true, |r| r.status() != 200) {
        assert!(started.elapsed() < Duration::from_secs(20), "the gateway did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Each request writes an access line (4xx are always logged): far more
    // than the pipe and the queue hold.
    let started = Instant::now();
    for i in 0..4000 {
        let r = c.get(format!("{base}/v1/nowhere/{i}")).send().await.expect("answered");
        assert_eq!(r.status(), 404);
    }
    let took = started.elapsed();
    let metrics = c.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let dropped: f64 = metrics
        .lines()
        .find(|l| l.starts_with("log_lines_dropped_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .expect("log_lines_dropped_total is exported");
    assert!(dropped > 1000.0, "{dropped} lines dropped of 4000 that could not be written");
    println!("4000 requests with a blocked stdout in {took:?}; {dropped} access lines dropped");
    let _ = child.kill();
    let _ = child.wait();
}
