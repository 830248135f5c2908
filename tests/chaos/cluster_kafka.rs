//! On the stack's cluster variant (`STACK_KAFKA_BROKERS=3`, topics at
//! replication factor 3 with `min.insync.replicas=2`): the broker leading a
//! partition of the orders topic is killed with SIGKILL while `seed`
//! produces (acks=all, idempotent), `ingest` writes and `serve` answers.
//! Nothing acknowledged is lost: both stores end equal to `seed --truth`;
//! ingest and the gateway's stream move to the new leader without a
//! restart, and `/admin/stream` shows the move.

use std::process::Stdio;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use order_gateway::model::{Component, OrderView};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use crate::cluster_elasticsearch::kill_node;
use crate::common::load::*;
use crate::common::pipeline::*;
use crate::common::world::{order, version_of, World};
use crate::common::*;
use crate::report::{scale, Row};

/// The broker leading `partition` of `topic`, and how many replicas it has.
fn leader_of(topic: &str, partition: i32) -> (i32, usize) {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", kafka_brokers()).create().unwrap();
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).unwrap();
    let p = &md.topics()[0].partitions()[partition as usize];
    (p.leader(), p.replicas().len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_kafka_partition_leader_killed() {
    if std::env::var("STACK_KAFKA_BROKERS").ok().as_deref() != Some("3") {
        eprintln!("skipped: needs the cluster variant (STACK_KAFKA_BROKERS=3; make chaos starts it)");
        return;
    }
    let _one = crate::serial().await;
    let orders = scale(20_000u64, 2_000);
    let seed_arg = 4242;
    let p = Pipeline::new("avro");
    p.run(&["setup"]); // topics at the stack's replication factor (3)
    let (first_leader, replicas) = leader_of(&p.orders, 0);
    assert_eq!(replicas, 3, "setup made the topic with replication factor 3");

    let mut env: Vec<(&str, &str)> = p.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.extend([("ORDER_GATEWAY__STREAM__ENABLED", "true"), ("ORDER_GATEWAY__READINESS__CACHE_FOR", "100ms")]);
    let gw = Gateway::start(&env).await;
    let ingest = Killed(p.spawn_ingest(500));

    // Seed paced to last about 40 s, so the kill lands in the middle of it.
    let events = order_gateway::seed::generate::generate(orders, seed_arg, order_gateway::model::Timestamp::now());
    let rate = (events.len() as u64 / 40).max(1);
    let truth_file = p.truth_file();
    let seed = tokio::process::Command::from(p.cmd(&[
        "seed",
        "--orders",
        &orders.to_string(),
        "--seed",
        &seed_arg.to_string(),
        "--rate",
        &rate.to_string(),
        "--truth",
        truth_file.to_str().unwrap(),
    ]))
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .kill_on_drop(true)
    .spawn()
    .expect("spawn seed");
    let seed = tokio::spawn(seed.wait_with_output());

    // Lookups of orders of its own, indexed first: the gateway keeps
    // answering while the brokers fail over (the seeded orders are checked
    // through the gateway at the end).
    let world = World { env: p.env.clone(), orders_topic: p.orders.clone(), alias: p.alias.clone() };
    let ids: Vec<String> = (0..200).map(|i| format!("ckl-{i}-{}", p.db)).collect();
    let views: Vec<OrderView> =
        ids.iter().map(|id| OrderView::from_component(Component::Order(order(id, 1)))).collect();
    world.index_many(&views).await;
    let stop = Arc::new(AtomicBool::new(false));
    let lookup_rate = scale(500.0, 200.0);
    let start = Instant::now();
    let lookup_ids = Arc::new(ids);
    let load = tokio::spawn({
        let (lc, base, stop, ids) =
            (load_client(Duration::from_secs(10)), gw.base.clone(), stop.clone(), lookup_ids.clone());
        open_model_until(lookup_rate, Duration::from_secs(600), 5000, stop, move |i| {
            let (c, url) = (lc.clone(), format!("{base}/v1/orders/{}", ids[i as usize % ids.len()]));
            async move { ("lookup", outcome_noted("lookup", c.get(url).send().await).await) }
        })
    });

    tokio::time::sleep(Duration::from_secs(12)).await;
    let (leader, _) = leader_of(&p.orders, 0);
    let node = if leader == 1 { "kafka".to_string() } else { format!("kafka-{leader}") };
    let killed_at = start.elapsed();
    kill_node(&node);
    // The gateway's stream sees partition 0 led by another broker.
    let c = client();
    let mut moved = None;
    while moved.is_none() && start.elapsed() < killed_at + Duration::from_secs(60) {
        let s: serde_json::Value = json_of(c.get(gw.url("/admin/stream"))).await;
        let p0 = s["partitions"]
            .as_array()
            .and_then(|ps| ps.iter().find(|x| x["topic"] == p.orders.as_str() && x["partition"] == 0).cloned());
        if p0.is_some_and(|x| x["leader"].as_i64().is_some_and(|l| l != leader as i64)) {
            moved = Some(start.elapsed() - killed_at);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seed_out = seed.await.unwrap().expect("seed ran");
    let seeded = start.elapsed();
    let truth = read_truth(&truth_file);
    let _ = std::fs::remove_file(&truth_file);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let shots = load.await.unwrap();
    // The lookup orders out of the alias, so the stores hold the seed's alone
    // (by id: the stack's Elasticsearch has no delete-by-query module).
    let deletes: String = lookup_ids.iter().map(|id| format!("{{\"delete\":{{\"_id\":\"{id}\"}}}}\n")).collect();
    let deleted = bare_client()
        .post(format!("{}/{}-write/_bulk?refresh=true", es_url(), p.alias))
        .header("content-type", "application/x-ndjson")
        .body(deletes)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.text().await.unwrap());
    let (diff, equal_at) = settle(&p, &truth, Duration::from_secs(240)).await;
    let settled = equal_at.duration_since(start);
    // The seeded orders through the gateway: 200 hot ones at their final version.
    let hot_orders = hot(&truth);
    let mut wrong = 0;
    for (id, want) in hot_orders.iter().take(200) {
        let v: serde_json::Value = json_of(c.get(gw.url(&format!("/v1/orders/{id}")))).await;
        let want = want.order.as_ref().map_or(0, |o| o.version);
        wrong += usize::from(version_of(&v) != want);
    }
    let stream: serde_json::Value = json_of(c.get(gw.url("/admin/stream"))).await;
    let mut ingest = ingest;
    let ingest_alive = ingest.0.try_wait().unwrap().is_none();
    // The killed broker back, for whatever runs next (how long it took is reported).
    let restarting = Instant::now();
    let rejoined = std::process::Command::new(repo_root().join("scripts/stack/start"))
        .arg(&node)
        .status()
        .is_ok_and(|s| s.success());
    let rejoin = if rejoined {
        format!("node {leader} rejoined {:.0} s after its restart", restarting.elapsed().as_secs_f64())
    } else {
        format!("node {leader} had not rejoined {:.0} s after its restart", restarting.elapsed().as_secs_f64())
    };

    let failed: Vec<&Shot> = shots.iter().filter(|s| !s.ok()).collect();
    let all = Summary::of(&shots);
    let equal = diff.as_ref().is_ok_and(|d| d.equal());
    let changes: u64 = stream["partitions"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|x| x["leader_changes"].as_u64()).sum())
        .unwrap_or(0);
    let lag = stream["lag_messages"].as_i64().unwrap_or(-1);
    let held = seed_out.status.success()
        && equal
        && ingest_alive
        && moved.is_some()
        && failed.is_empty()
        && lag == 0
        && wrong == 0;
    Row {
        fault: format!(
            "cluster: the broker leading orders/0 (node {leader}, first leader {first_leader}) of 3 killed (SIGKILL) {:.0} s into seed",
            killed_at.as_secs_f64()
        ),
        load: format!("seed {orders} orders ({rate} events/s, acks=all) + ingest + cached lookups {lookup_rate:.0}/s"),
        offered: lookup_rate,
        answered: all.ok,
        failed: if failed.is_empty() { "0".into() } else { Summary::of(failed.iter().copied()).failed_text() },
        p99_fault: Some(Summary::of(shots.iter().filter(|s| s.during(killed_at, killed_at + Duration::from_secs(10)))).p99),
        recovery: moved,
        invariant: format!(
            "seed {}; stores equal to the truth ({} orders): {} ({:.0} s after seed ended); ingest never restarted: {ingest_alive}; \
             the stream saw the new leader {} and shows {changes} leader change(s), lag {lag}; \
             {wrong} of {} seeded orders read through the gateway not at their final version; {rejoin}",
            if seed_out.status.success() { "acknowledged every event" } else { "FAILED" },
            truth.len(),
            match &diff {
                Ok(d) if d.equal() => "yes".to_string(),
                Ok(d) => format!("no: {}", d.first.clone().unwrap_or_default()),
                Err(e) => format!("no: {e}"),
            },
            settled.saturating_sub(seeded).as_secs_f64(),
            moved.map_or("never".into(), |m| format!("{:.1} s after the kill", m.as_secs_f64())),
            hot_orders.len().min(200),
        ),
        held,
    }
    .emit();
    if !seed_out.status.success() {
        eprintln!("seed: {}", String::from_utf8_lossy(&seed_out.stderr));
    }
}
