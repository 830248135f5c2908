//! Freshness: the time from producing an order event to seeing it through the
//! API, for a running gateway (`loadtest/run.sh` runs it; a k6 script cannot
//! produce to Kafka).
//!
//! For each of FRESHNESS_N orders: read the current view, produce the same
//! order with the next version to the orders topic (Avro through the registry
//! or JSON, as `topics.orders_format` says; the configuration comes from the
//! usual `ORDER_GATEWAY__*` variables), and poll the API until that version is
//! visible. Prints p50/p99/max of produce→visible and exits non-zero when p99
//! misses the target.
//!
//! Without FRESHNESS_BASE_URL it returns at once, so `cargo test --benches`
//! and `cargo bench` do not need a stack.
//!
//! | variable | default | |
//! | --- | --- | --- |
//! | FRESHNESS_BASE_URL | (unset: do nothing) | the gateway, e.g. `http://127.0.0.1:18090` |
//! | FRESHNESS_API_KEY | "" | a key with `orders:read` and `orders:pii` (the update is built from the full view) |
//! | FRESHNESS_IDS | `ids.json` | JSON array of order ids to update, used in turn |
//! | FRESHNESS_N | 200 | updates |
//! | FRESHNESS_GAP_MS | 20 | pause between updates (they are sequential) |
//! | FRESHNESS_MODE | `poll` | `poll`: plain GETs every millisecond; `min_version`: GETs with `?min_version=V`, which wait in the gateway |
//! | FRESHNESS_P99_MS | 50 | target for p99 |
//! | FRESHNESS_OUT | (none) | write the summary row as JSON here (for run.sh's table) |
//!
//! Run: `FRESHNESS_BASE_URL=... cargo bench --bench freshness`.

use std::time::{Duration, Instant};

use order_gateway::backends::schema_registry::RegistryClient;
use order_gateway::config::{Config, WireFormat};
use order_gateway::events::{encode_avro, encode_json, SchemaIds};
use order_gateway::model::{Component, Envelope, Event, OrderView, Timestamp};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Longest wait for one update to become visible before it counts as an error.
const VISIBLE_WITHIN: Duration = Duration::from_secs(5);
/// Updates made before measuring: the producer's first send waits for
/// metadata and a connection to the partition leader, which is not freshness.
const WARMUP: usize = 5;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
}

fn env_num(name: &str, default: u64) -> anyhow::Result<u64> {
    let v = env_or(name, &default.to_string());
    v.parse().map_err(|_| anyhow::anyhow!("{name}={v:?}: expected a whole number"))
}

struct Settings {
    base: String,
    key: String,
    ids: Vec<String>,
    n: usize,
    gap: Duration,
    min_version: bool,
    p99_target_ms: f64,
    out: Option<String>,
}

fn main() {
    let Ok(base) = std::env::var("FRESHNESS_BASE_URL") else {
        eprintln!("freshness: FRESHNESS_BASE_URL is not set, nothing to do (loadtest/run.sh sets it)");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    match rt.block_on(run(base)) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("freshness: {e:#}");
            std::process::exit(2);
        }
    }
}

/// True when the target was met.
async fn run(base: String) -> anyhow::Result<bool> {
    let ids_path = env_or("FRESHNESS_IDS", "ids.json");
    let ids: Vec<String> = serde_json::from_slice(
        &std::fs::read(&ids_path).map_err(|e| anyhow::anyhow!("FRESHNESS_IDS {ids_path}: {e}"))?,
    )?;
    anyhow::ensure!(!ids.is_empty(), "FRESHNESS_IDS {ids_path} holds no ids");
    let mode = env_or("FRESHNESS_MODE", "poll");
    anyhow::ensure!(mode == "poll" || mode == "min_version", "FRESHNESS_MODE={mode:?}: expected poll or min_version");
    let s = Settings {
        base: base.trim_end_matches('/').to_owned(),
        key: env_or("FRESHNESS_API_KEY", ""),
        ids,
        n: env_num("FRESHNESS_N", 200)? as usize,
        gap: Duration::from_millis(env_num("FRESHNESS_GAP_MS", 20)?),
        min_version: mode == "min_version",
        p99_target_ms: env_num("FRESHNESS_P99_MS", 50)? as f64,
        out: std::env::var("FRESHNESS_OUT").ok(),
    };

    let config = Config::load(None)?;
    let topic = config.topics.orders.clone();
    let schema_ids = match config.topics.orders_format {
        WireFormat::Avro => {
            let registry = RegistryClient::new(&config.schema_registry)?;
            let t = &config.topics;
            Some(
                SchemaIds::register(&registry, &format!("{}-value", t.orders), &format!("{}-value", t.fulfillments))
                    .await?,
            )
        }
        WireFormat::Json => None,
    };
    // As an OMS service would produce: acknowledged by every in-sync replica,
    // sent at once rather than batched.
    let producer: FutureProducer = order_gateway::backends::kafka::base_config(&config.kafka)
        .expect("kafka settings")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .create()?;
    let http = reqwest::Client::builder().tls_built_in_root_certs(false).timeout(Duration::from_secs(10)).build()?;

    let mut visible_ms = Vec::with_capacity(s.n);
    let mut acked_ms = Vec::with_capacity(s.n);
    let mut errors = 0u64;
    let mut started = Instant::now();
    for i in 0..WARMUP + s.n {
        let id = &s.ids[i % s.ids.len()];
        let outcome = one_update(&s, &http, &producer, &topic, schema_ids, config.topics.orders_format, id).await;
        if i < WARMUP {
            outcome?;
            started = Instant::now();
            continue;
        }
        match outcome {
            Ok((visible, acked)) => {
                visible_ms.push(visible.as_secs_f64() * 1000.0);
                acked_ms.push(acked.as_secs_f64() * 1000.0);
            }
            Err(e) => {
                errors += 1;
                eprintln!("freshness: order {id}: {e:#}");
            }
        }
        tokio::time::sleep(s.gap).await;
    }
    let elapsed = started.elapsed().as_secs_f64();

    visible_ms.sort_by(f64::total_cmp);
    acked_ms.sort_by(f64::total_cmp);
    let q = |v: &[f64], p: f64| -> Option<f64> {
        // Nearest rank.
        (!v.is_empty()).then(|| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1])
    };
    let p99 = q(&visible_ms, 0.99);
    let met = errors == 0 && p99.is_some_and(|p| p < s.p99_target_ms);
    let failed: Vec<String> =
        if met { vec![] } else { vec![format!("produce->visible: p(99)<{} ms and no update lost", s.p99_target_ms)] };
    let note = format!(
        "{} updates, {} polling; max {:.1} ms; produce acked p50 {:.1} ms",
        visible_ms.len(),
        if s.min_version { "min_version" } else { "1 ms" },
        visible_ms.last().copied().unwrap_or(0.0),
        q(&acked_ms, 0.5).unwrap_or(0.0)
    );
    let row = serde_json::json!({
        "scenario": "freshness: produce -> visible",
        "target_rps": null,
        "achieved_rps": (s.n as f64 / elapsed).round() as u64,
        "requests": s.n,
        "p50_ms": q(&visible_ms, 0.5),
        "p99_ms": p99,
        "p999_ms": q(&visible_ms, 0.999),
        "errors": errors,
        "dropped": null,
        "failed": failed,
        "note": note,
    });
    println!(
        "[freshness] {} updates in {elapsed:.1} s, produce->visible p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, {errors} errors; {note}",
        s.n,
        q(&visible_ms, 0.5).unwrap_or(f64::NAN),
        p99.unwrap_or(f64::NAN),
        q(&visible_ms, 0.999).unwrap_or(f64::NAN),
    );
    if !met {
        println!("  THRESHOLD MISSED: {}", failed.join("; "));
    }
    if let Some(path) = &s.out {
        std::fs::write(path, serde_json::to_vec_pretty(&[row])?)
            .map_err(|e| anyhow::anyhow!("FRESHNESS_OUT {path}: {e}"))?;
    }
    Ok(met)
}

/// Produces the next version of `id` and waits until the API shows it:
/// (produce→visible, produce→acknowledged).
async fn one_update(
    s: &Settings,
    http: &reqwest::Client,
    producer: &FutureProducer,
    topic: &str,
    schema_ids: Option<SchemaIds>,
    format: WireFormat,
    id: &str,
) -> anyhow::Result<(Duration, Duration)> {
    let url = format!("{}/v1/orders/{id}", s.base);
    let current: OrderView = {
        let r = http.get(&url).bearer_auth(&s.key).send().await?;
        anyhow::ensure!(r.status().is_success(), "GET {url}: {}", r.status());
        r.json().await?
    };
    let mut order = current.order.ok_or_else(|| anyhow::anyhow!("the view has no order header yet"))?;
    let version = order.version + 1;
    let now = Timestamp::now();
    order.version = version;
    order.updated_at = now;
    let event = Event {
        envelope: Envelope {
            event_id: uuid::Uuid::new_v4().to_string(),
            event_type: "order.updated".into(),
            source: "freshness-bench".into(),
            occurred_at: now,
            schema_version: 1,
        },
        component: Component::Order(order),
    };
    let payload = match (format, schema_ids) {
        (WireFormat::Avro, Some(ids)) => encode_avro(&event, ids.for_event(&event)),
        _ => encode_json(&event),
    };

    let t0 = Instant::now();
    let send = {
        let (producer, topic, key) = (producer.clone(), topic.to_owned(), id.to_owned());
        tokio::spawn(async move {
            producer
                .send(FutureRecord::to(&topic).key(&key).payload(&payload), Duration::from_secs(10))
                .await
                .map(|_| t0.elapsed())
                .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))
        })
    };
    let poll_url = if s.min_version { format!("{url}?min_version={version}") } else { url };
    let visible = loop {
        let r = http.get(&poll_url).bearer_auth(&s.key).send().await?;
        if r.status().is_success() {
            let v: OrderView = r.json().await?;
            if v.order.as_ref().is_some_and(|o| o.version >= version) {
                break t0.elapsed();
            }
        } else if !(s.min_version && r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE) {
            anyhow::bail!("GET {poll_url}: {}", r.status());
        }
        anyhow::ensure!(t0.elapsed() < VISIBLE_WITHIN, "version {version} not visible within {VISIBLE_WITHIN:?}");
        if !s.min_version {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let acked = send.await??;
    Ok((visible, acked))
}
