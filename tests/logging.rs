//! The log writers' bound: a stdout that nobody reads (a stalled collector,
//! a full pipe) must not stall requests. Access lines past `log.access_queue`
//! are dropped and counted; the gateway goes on answering.

mod common;

use std::process::Stdio;
use std::time::Instant;

use common::*;

#[tokio::test]
async fn a_stdout_nobody_reads_stalls_no_request() {
    // stdout is a pipe this test never reads: it fills after about 64 KiB,
    // a few hundred lines; a blocking writer would then hold every worker.
    let mut gw = Gateway::start_with_stdout(
        &[("ORDER_GATEWAY__LOG__ACCESS_SAMPLE", "1"), ("ORDER_GATEWAY__LOG__ACCESS_QUEUE", "64")],
        Stdio::piped(),
    )
    .await;
    let _stdout = gw.child.stdout.take(); // kept open, never read
    let base = gw.base.clone();
    let c = client();
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
}

/// `log.access_sample = 0` turns the access log off; refusals are still logged.
#[tokio::test]
async fn an_access_log_turned_off_still_logs_every_refusal() {
    let mut gw = Gateway::start_with_stdout(&[("ORDER_GATEWAY__LOG__ACCESS_SAMPLE", "0")], Stdio::piped()).await;
    let stdout = gw.child.stdout.take().expect("piped");
    let c = client();
    for _ in 0..50 {
        assert_eq!(c.get(gw.url("/healthz")).send().await.unwrap().status(), 200);
    }
    assert_eq!(c.get(gw.url("/v1/nowhere/at-all")).send().await.unwrap().status(), 404);
    gw.terminate();
    assert!(gw.wait_exit(std::time::Duration::from_secs(40)).await.is_some(), "the gateway exits on SIGTERM");
    let text = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut std::io::BufReader::new(stdout), &mut out).unwrap();
        out
    })
    .await
    .unwrap();
    let access: Vec<&str> = text.lines().filter(|l| l.contains("\"route\"") && l.contains("\"status\"")).collect();
    assert_eq!(access.len(), 1, "only the refusal, none of the 50 answers: {access:?}");
    assert!(access[0].contains("404"), "{}", access[0]);
}
