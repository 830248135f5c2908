//! Soak: the CRM mix at a steady open-model rate with order updates flowing
//! through Kafka (`SOAK=10m` in the full run, 60 s in the short one). Holds:
//! no errors, resident memory flat after warm-up (slope under 1 MB/min), no
//! growth of open file descriptors, no read ever older than one that had
//! already been answered before it was sent, and every order at its last
//! produced version within 1 s of the end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use order_gateway::model::{Component, Order, OrderView};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::common::load::*;
use crate::common::world::*;
use crate::common::*;
use crate::report::{full, scale, Row};

const ORDERS: usize = 2000;
const CUSTOMERS: usize = 200;
/// Load before the measured run, not counted (see its use).
const WARM_UP: Duration = Duration::from_secs(15);

fn soak_order(ids: &[String], i: usize, version: u64) -> Order {
    let mut o = order(&ids[i], version);
    o.customer_id = format!("cust-soak-{}", i % CUSTOMERS);
    o
}

/// `SOAK` as `90s`, `10m` or `1h`.
fn soak_duration() -> Option<Duration> {
    let v = std::env::var("SOAK").ok()?;
    let (n, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok()?;
    Some(Duration::from_secs(match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => panic!("SOAK={v}: a number of s, m or h, as 90s or 10m"),
    }))
}

/// Per order, the versions answered so far, in the order the answers
/// arrived, with the highest one up to each: a read sent after an answer
/// with version v must not answer less than v.
#[derive(Default)]
struct Answers(Mutex<Vec<(Instant, u64)>>);

impl Answers {
    /// Records an answer of a read sent at `sent`; false when it went back in time.
    fn check(&self, sent: Instant, version: u64) -> bool {
        let mut seen = self.0.lock().unwrap();
        let before = seen.partition_point(|(at, _)| *at < sent);
        let floor = if before == 0 { 0 } else { seen[before - 1].1 };
        let high = seen.last().map_or(0, |(_, v)| *v).max(version);
        seen.push((Instant::now(), high));
        version >= floor
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_updates_flowing() {
    let _one = crate::serial().await;
    let w = World::new();
    let run = soak_duration().unwrap_or(scale(Duration::from_secs(600), Duration::from_secs(60)));
    let (rate, updates) = (scale(3000.0, 150.0), scale(200.0, 30.0));
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let ids: Arc<Vec<String>> = Arc::new((0..ORDERS).map(|i| format!("soak-{i}-{tag}")).collect());
    let views: Vec<OrderView> =
        (0..ORDERS).map(|i| OrderView::from_component(Component::Order(soak_order(&ids, i, 1)))).collect();
    w.index_many(&views).await;
    let gw = w.gateway(&[]).await;
    let pid = gw.child.id();
    eventually(Duration::from_secs(10), "the stream's first check", || async {
        let s: serde_json::Value = json_of(client().get(gw.url("/admin/stream"))).await;
        s["healthy"] == true
    })
    .await;
    // An Elasticsearch that has just been restarted (by another scenario)
    // recovers its shards and warms its JVM for a while, answering searches
    // in seconds: the soak measures the gateway at steady state, so it waits
    // for the recovery and sends WARM_UP of the same mix first, not counted.
    let health = format!("{}/_cluster/health?wait_for_no_initializing_shards=true&timeout=120s", es_url());
    let _ = client().get(health).timeout(Duration::from_secs(130)).send().await;
    let warm = load_client(Duration::from_secs(10));
    open_model(rate, WARM_UP, 5000, |n| {
        let i = n as usize % ORDERS;
        let url = match n % 4 {
            0 => gw.url(&format!("/v1/customers/cust-soak-{}/orders?limit=20", i % CUSTOMERS)),
            1 => gw.url(&format!("/v1/orders?q=ON-{}&limit=20", ids[i])),
            _ => gw.url(&format!("/v1/orders/{}", ids[i])),
        };
        let c = warm.clone();
        async move { ("warm-up", outcome_of(&c.get(url).send().await)) }
    })
    .await;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    // The last version produced of each order, and how many were acknowledged.
    let produced: Arc<Mutex<HashMap<usize, u64>>> = Arc::default();
    let answers: Arc<Vec<Answers>> = Arc::new((0..ORDERS).map(|_| Answers::default()).collect());
    let (checked, violations) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let first_violation = Arc::new(AtomicU64::new(0));

    let start = Instant::now();
    let update_load = tokio::spawn({
        let (ids, produced, topic) = (ids.clone(), produced.clone(), w.orders_topic.clone());
        open_model(updates, run, 100_000, move |n| {
            // Versions per order go up in production order: version 2 + round.
            let i = n as usize % ORDERS;
            let version = 2 + n / ORDERS as u64;
            let payload = event(soak_order(&ids, i, version));
            let (producer, produced, key, topic) = (producer.clone(), produced.clone(), ids[i].clone(), topic.clone());
            async move {
                match producer.send(FutureRecord::to(&topic).key(&key).payload(&payload), Duration::from_secs(30)).await
                {
                    Ok(_) => {
                        let mut p = produced.lock().unwrap();
                        let v = p.entry(i).or_default();
                        *v = (*v).max(version);
                        ("update", Outcome::Status(200))
                    }
                    Err(_) => ("update", Outcome::Error("produce")),
                }
            }
        })
    });
    // Resident memory and descriptors every 2 s.
    // Resident memory and descriptors every 2 s, and whether the stream
    // counts as healthy (steady updates must not make it look behind).
    let stream_url = gw.url("/admin/stream");
    let samples = tokio::spawn(async move {
        let (mut points, mut unhealthy) = (Vec::new(), 0usize);
        let c = client();
        while start.elapsed() < run {
            if let Some((rss, fds)) = rss_and_fds(pid) {
                points.push((start.elapsed().as_secs_f64(), rss, fds));
            }
            let s: serde_json::Value = json_of(c.get(&stream_url)).await;
            if s["healthy"] != true {
                unhealthy += 1;
                eprintln!("[chaos] soak: stream unhealthy at {:.1} s: {s}", start.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        (points, unhealthy)
    });
    let mix = open_model(rate, run, 5000, {
        let (lc, base) = (load_client(Duration::from_secs(10)), gw.base.clone());
        let (ids, answers, checked, violations, first) =
            (ids.clone(), answers.clone(), checked.clone(), violations.clone(), first_violation.clone());
        move |n| {
            // Skewed toward a hot set as agents' lookups are: a quarter of the
            // orders get most reads. 80 % by id, 15 % a customer's orders, 5 % search.
            let x = n % 40;
            let i = if n % 3 == 0 { (n / 3) as usize % ORDERS } else { (n as usize * 7919) % (ORDERS / 4) };
            let c = lc.clone();
            let (answers, checked, violations, first) =
                (answers.clone(), checked.clone(), violations.clone(), first.clone());
            let (kind, url) = match x {
                0..=31 => ("by_id", format!("{base}/v1/orders/{}", ids[i])),
                32..=37 => ("customer", format!("{base}/v1/customers/cust-soak-{}/orders?limit=20", i % CUSTOMERS)),
                _ => ("search", format!("{base}/v1/orders?q=ON-{}&limit=20", ids[i])),
            };
            async move {
                let sent = Instant::now();
                let r = c.get(url).send().await;
                let mut outcome = outcome_of(&r);
                if matches!(outcome, Outcome::Status(500..)) {
                    return (kind, outcome_noted(kind, r).await);
                }
                if kind == "by_id" && outcome == Outcome::Status(200) {
                    match r.unwrap().json::<serde_json::Value>().await {
                        Ok(body) => {
                            checked.fetch_add(1, Ordering::Relaxed);
                            if !answers[i].check(sent, version_of(&body)) {
                                violations.fetch_add(1, Ordering::Relaxed);
                                let _ = first.compare_exchange(0, i as u64 + 1, Ordering::Relaxed, Ordering::Relaxed);
                            }
                        }
                        Err(_) => outcome = Outcome::Error("body"),
                    }
                }
                (kind, outcome)
            }
        }
    })
    .await;
    let end = Instant::now();
    let update_shots = update_load.await.unwrap();
    let (points, unhealthy) = samples.await.unwrap();

    // Every order at its last produced version, measured from the end of the
    // load: passes over every order, 64 at a time, until one finds none behind.
    let produced = produced.lock().unwrap().clone();
    let c = client();
    let mut behind = produced.len();
    while behind > 0 && end.elapsed() < Duration::from_secs(30) {
        let limit = Arc::new(tokio::sync::Semaphore::new(64));
        let mut pass = tokio::task::JoinSet::new();
        for (i, want) in &produced {
            let (c, url, want, limit) = (c.clone(), gw.url(&format!("/v1/orders/{}", ids[*i])), *want, limit.clone());
            pass.spawn(async move {
                let _slot = limit.acquire().await.unwrap();
                let v: serde_json::Value = match c.get(url).send().await {
                    Ok(r) => r.json().await.unwrap_or_default(),
                    Err(_) => serde_json::Value::Null,
                };
                version_of(&v) < want
            });
        }
        behind = pass.join_all().await.into_iter().filter(|b| *b).count();
    }
    let converged = end.elapsed();

    let all = Summary::of(&mix);
    let by_kind = |k: &'static str| Summary::of(mix.iter().filter(move |s| s.kind == k));
    let (by_id, customer, search) = (by_kind("by_id"), by_kind("customer"), by_kind("search"));
    let warm = run.as_secs_f64() * 0.2;
    let after_warmup: Vec<(f64, f64)> =
        points.iter().filter(|p| p.0 >= warm).map(|p| (p.0, p.1 as f64 / (1 << 20) as f64)).collect();
    let mb_per_min = slope(&after_warmup) * 60.0;
    let (rss_start, rss_end) = (after_warmup.first().map_or(0.0, |p| p.1), after_warmup.last().map_or(0.0, |p| p.1));
    let fds: Vec<usize> = points.iter().filter(|p| p.0 >= warm).map(|p| p.2).collect();
    let (fds_start, fds_max) = (fds.first().copied().unwrap_or(0), fds.iter().copied().max().unwrap_or(0));
    let (checked, violations) = (checked.load(Ordering::Relaxed), violations.load(Ordering::Relaxed));
    let update_failures = Summary::of(&update_shots).failures();
    // Short runs are too short for a slope to mean much: memory is judged in the full run.
    let mut held = all.failures() == 0 && violations == 0 && behind == 0 && update_failures == 0 && unhealthy == 0;
    if full() {
        held &= mb_per_min < 1.0
            && fds_max <= fds_start + 16
            && converged <= Duration::from_secs(1)
            && checked >= 1_000_000;
    }
    Row {
        fault: format!("soak {} s (after {} s of warm-up), no fault", run.as_secs(), WARM_UP.as_secs()),
        load: format!(
            "CRM mix (80 % by id p99 {}, 15 % customer p99 {}, 5 % search p99 {}) + {updates:.0} updates/s",
            ms(by_id.p99),
            ms(customer.p99),
            ms(search.p99)
        ),
        offered: rate,
        answered: all.ok,
        failed: all.failed_text(),
        p99_fault: Some(all.p99),
        recovery: None,
        invariant: format!(
            "RSS {rss_start:.0}→{rss_end:.0} MB after warm-up, slope {mb_per_min:.2} MB/min (< 1); fds {fds_start}→max {fds_max}; \
             {checked} reads checked, {violations} went back in time; {behind} of {} orders short of their last version, \
             all there {:.2} s after the end; {update_failures} updates failed; stream unhealthy in {unhealthy} of {} samples",
            produced.len(),
            converged.as_secs_f64(),
            points.len()
        ),
        held,
    }
    .emit();
    if violations > 0 {
        let i = first_violation.load(Ordering::Relaxed) - 1;
        eprintln!("first order that went back in time: {}", ids[i as usize]);
    }
}
