//! `ingest` killed with SIGKILL at random moments while `seed` produces:
//! no commit, no flush, each time, and each time a new `ingest` takes over
//! from the last committed offsets. Once seed is done and the last one has
//! caught up, Elasticsearch and ClickHouse hold exactly the final views
//! `seed --truth` wrote: every order, line and fulfillment, nothing more.

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::{Rng, SeedableRng};

use crate::common::pipeline::*;
use crate::common::*;
use crate::report::{scale, Row};

/// Events ingest writes per batch: small enough that a kill lands between
/// commits, not only before the first.
const BATCH: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_killed_while_seed_produces() {
    let _one = crate::serial().await;
    let (orders, kills) = (scale(20_000u64, 2_000), scale(5usize, 2));
    // Random moments, from a seed printed so that a run can be repeated.
    let rng_seed = std::env::var("CHAOS_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64);
    eprintln!("[chaos] ingest kills: CHAOS_KILL_SEED={rng_seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(rng_seed);
    let seed_arg = rng.random_range(1..1_000_000u64);

    let p = Pipeline::new("avro");
    p.run(&["setup"]);

    // Seed is paced to outlast the kills: each one waits for the running
    // ingest to have written (a restarted one first waits about 10 s for the
    // group to drop the killed member: its session timeout), then 0.5–4 s.
    let events =
        order_gateway::seed::generate::generate(orders, seed_arg, order_gateway::model::Timestamp::now()).len();
    let seed_for = Duration::from_secs(10 + 15 * kills as u64);
    let rate = ((events as f64 / seed_for.as_secs_f64()).ceil() as u64).max(1);
    let truth_file = p.truth_file();
    let mut ingest = Killed(p.spawn_ingest(BATCH));
    let mut seed = tokio::process::Command::from(p.cmd(&[
        "seed",
        "--orders",
        &orders.to_string(),
        "--seed",
        &seed_arg.to_string(),
        "--rate",
        &rate.to_string(),
        "--truth",
        truth_file.to_str().unwrap(),
    ]));
    let seed = seed.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true).spawn().expect("spawn seed");
    let seed = tokio::spawn(async move {
        let started = Instant::now();
        let out = seed.wait_with_output().await.expect("seed's output");
        (out, started.elapsed(), Instant::now())
    });

    let metrics = p.ingest_metrics_url();
    let http = bare_client();
    let (mut killed_while_seeding, mut last_restart) = (0, Instant::now());
    for k in 1..=kills {
        let working = wrote_something(&http, &metrics, Duration::from_secs(90)).await;
        let delay = Duration::from_millis(rng.random_range(500..=4000));
        tokio::time::sleep(delay).await;
        let seeding = !seed.is_finished();
        ingest.0.kill().unwrap(); // SIGKILL
        ingest.0.wait().unwrap();
        killed_while_seeding += usize::from(seeding);
        ingest = Killed(p.spawn_ingest(BATCH));
        let wrote =
            working.map_or("nothing written in 90 s".to_string(), |w| format!("first write {:.1} s", w.as_secs_f64()));
        eprintln!(
            "[chaos] kill {k}/{kills}: {:.1} s after ingest started ({wrote}, then {:.1} s); seed {}",
            last_restart.elapsed().as_secs_f64(),
            delay.as_secs_f64(),
            if seeding { "producing" } else { "done" }
        );
        last_restart = Instant::now();
    }

    let (out, seed_took, seed_ended) = seed.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "seed failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let truth = read_truth(&truth_file);
    let _ = std::fs::remove_file(&truth_file);
    assert_eq!(truth.len() as u64, orders);
    // Seed's own producing time ("... in 41.9 s, ..."), else its whole run.
    let producing = stdout
        .rsplit_once(" in ")
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(seed_took.as_secs_f64());

    let (result, at) = settle(&p, &truth, scale(Duration::from_secs(900), Duration::from_secs(240))).await;
    let (held, answered, failed, recovery, invariant) = match &result {
        Ok(d) => {
            let (f, e) = (d.found, d.expected);
            let mut text = format!(
                "final state = `seed --truth`: Elasticsearch {} of {} hot orders, ClickHouse {} of {} orders, {} of {} \
                 lines, {} of {} fulfillments; {} of {} orders equal in every store",
                f.es, e.es, f.orders, e.orders, f.lines, e.lines, f.fulfillments, e.fulfillments, d.matching, d.orders
            );
            if d.equal() {
                text.push_str(&format!(
                    " (seed ended {:.1} s after the last restart, the stores equal {:.1} s after that)",
                    seed_ended.saturating_duration_since(last_restart).as_secs_f64(),
                    at.saturating_duration_since(seed_ended).as_secs_f64()
                ));
            }
            if let Some(first) = &d.first {
                text.push_str(&format!("; first difference: {}", first.lines().next().unwrap_or_default()));
            }
            (d.equal(), d.matching, d.text(), d.equal().then(|| at - last_restart), text)
        }
        Err(e) => (false, 0, "query failed".to_string(), None, format!("the stores could not be read: {e}")),
    };
    if let Ok(d) = &result {
        if let Some(first) = &d.first {
            eprintln!("[chaos] ingest kills: {first}");
        }
    }
    let mut fault =
        format!("ingest killed with SIGKILL {kills} times while seed produced {} orders", thousands(orders));
    if killed_while_seeding < kills {
        fault.push_str(&format!(" ({killed_while_seeding} of the kills while seed was producing)"));
    }
    Row {
        fault,
        load: "seed + ingest".into(),
        offered: orders as f64 / producing.max(1e-9),
        answered,
        failed,
        p99_fault: None,
        recovery,
        invariant,
        held,
    }
    .emit();
    assert_eq!(
        killed_while_seeding, kills,
        "seed finished before the kills did: its rate ({rate} events/s) is too high for them"
    );
}

/// Waits until the running ingest has written a batch to ClickHouse (its
/// `ingest_clickhouse_rows_total`); how long that took, or `None` if not within `within`.
async fn wrote_something(http: &reqwest::Client, metrics: &str, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Ok(r) = http.get(metrics).send().await {
            let body = r.text().await.unwrap_or_default();
            let rows: f64 = body
                .lines()
                .filter(|l| l.starts_with("ingest_clickhouse_rows_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            if rows > 0.0 {
                return Some(start.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// `20000` as `20,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
