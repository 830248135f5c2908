//! Hostile events against the real stack (issue 12): array bombs (a few bytes
//! claiming 5×10⁸ or 10⁹ items of null, empty records, records, map entries,
//! nested arrays), a list nested 100 000 deep, a string claiming 5×10⁸ bytes,
//! a 5 MB message, an id registered only under an unrelated subject and an
//! unknown id, produced to a real orders topic, then one normal order event.
//!
//! `serve` and `ingest` run as the binary under an address-space cap
//! ([`ADDRESS_SPACE_KIB`]), so an allocation anywhere near what a bomb claims
//! fails and aborts them. Both must keep running: `serve` answers /healthz,
//! drops every bomb with its reason and serves the normal order from its
//! stream; `ingest` dead-letters every bomb with its reason, writes the
//! normal order to Elasticsearch and commits past them all.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::world::{order, order_event};
use common::*;
use order_gateway::backends::schema_registry::RegistryClient;
use order_gateway::events::avro::ORDER_EVENT_AVSC;
use order_gateway::model::{LineStatus, OrderLine};
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

/// The address space `serve` and `ingest` get (`ulimit -v`, in KiB): 2 GiB.
/// An idle debug `serve` or `ingest` maps about 700 MB on a 2-core machine
/// (tokio and librdkafka threads, each with its stack and malloc arena), so
/// they start and work under it; a bomb's allocation (28 GB for 5×10⁸ nulls
/// on today's code) cannot be had, and the process aborts.
const ADDRESS_SPACE_KIB: u64 = 2 * 1024 * 1024;

/// Largest message the test's orders topic and producer take (the 5 MB one must get in).
const TOPIC_MAX_MESSAGE_BYTES: &str = "8388608";

/// A zig-zag varint, as Avro writes longs, counts and lengths.
fn zz(n: i64) -> Vec<u8> {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    let mut out = Vec::new();
    while z > 0x7f {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
    out
}

/// A Confluent frame: magic byte, schema id, body.
fn frame(id: u32, body: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    for part in body {
        out.extend_from_slice(part);
    }
    out
}

/// A record named `name` with one field `a` of `field_type` (JSON).
fn record_of(name: &str, field_type: &str) -> String {
    format!(r#"{{"type":"record","name":"{name}","fields":[{{"name":"a","type":{field_type}}}]}}"#)
}

/// `order-gateway <args>` under the address-space cap, with `env`.
fn capped(args: &[&str], env: &[(String, String)]) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_order-gateway"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    c
}

/// A child process killed when the test ends, failed or not.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `check` until it holds, for at most `within`; fails at once, with
/// its exit status, if `process` (named `name`) exits meanwhile.
async fn while_running<F, Fut>(process: &mut Child, name: &str, within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = process.try_wait().unwrap() {
            panic!("{name} exited ({status}) while waiting for {what}");
        }
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Peak and current virtual size and peak resident size of a process, from /proc.
fn memory_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| {
            s.lines()
                .filter(|l| ["VmPeak", "VmSize", "VmHWM"].iter().any(|k| l.starts_with(k)))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|e| format!("gone ({e})"))
}

/// The dead letters of `topic`: (reason, dlq.omitted, payload length) by
/// the original's offset (they are sent concurrently, to several partitions).
fn dead_letters(topic: &str) -> BTreeMap<i64, (String, String, usize)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", unique("he-dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let header = |m: &rdkafka::message::BorrowedMessage<'_>, key: &str| {
        m.headers()
            .and_then(|h| h.iter().find(|x| x.key == key).and_then(|x| x.value))
            .map(|v| String::from_utf8_lossy(v).to_string())
            .unwrap_or_default()
    };
    let mut out = BTreeMap::new();
    let mut idle = 0;
    while idle < 4 {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                idle = 0;
                let offset = header(&m, "dlq.offset").parse().expect("dlq.offset");
                let letter = (header(&m, "dlq.reason"), header(&m, "dlq.omitted"), m.payload().map_or(0, <[u8]>::len));
                assert!(out.insert(offset, letter).is_none(), "offset {offset} dead-lettered twice");
            }
            _ => idle += 1,
        }
    }
    out
}

/// `stream_events_total` of a `/metrics` text, by outcome and reason.
fn stream_events(metrics: &str) -> BTreeMap<String, u64> {
    metrics
        .lines()
        .filter(|l| l.starts_with("stream_events_total{"))
        .filter_map(|l| {
            let (labels, n) = l.rsplit_once(' ')?;
            let labels: Vec<&str> =
                labels.split(['{', '}', ',']).filter(|x| x.starts_with("outcome") || x.starts_with("reason")).collect();
            Some((labels.join(",").replace('"', ""), n.parse::<f64>().ok()? as u64))
        })
        .collect()
}

#[tokio::test]
async fn bombs_neither_crash_serve_nor_stop_ingest() {
    let id = unique("he");
    let env = isolated_env(&id, false);
    let orders = format!("{id}.orders");
    let dlq = format!("{id}.dlq");
    let alias = alias_of(&id);
    {
        let _one = one_setup_at_a_time();
        let out = Command::new(env!("CARGO_BIN_EXE_order-gateway"))
            .arg("setup")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        assert!(out.status.success(), "setup: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Let the 5 MB message into the topic at all (the broker's default is 1 MiB).
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", kafka_brokers()).create().unwrap();
    let alter = AlterConfig::new(ResourceSpecifier::Topic(&orders)).set("max.message.bytes", TOPIC_MAX_MESSAGE_BYTES);
    for r in admin.alter_configs([&alter], &AdminOptions::new()).await.unwrap() {
        r.unwrap_or_else(|e| panic!("raising max.message.bytes of {orders}: {e:?}"));
    }

    // Schemas: the contract (setup registered it under the topic's subject),
    // the bomb shapes under the topic's subject too (a producer allowed to
    // register there), and one more under an unrelated subject only.
    let registry = RegistryClient::new(&order_gateway::config::Config::load(None).unwrap().schema_registry).unwrap();
    let subject = format!("{orders}-value");
    let contract = registry.lookup(&subject, ORDER_EVENT_AVSC).await.unwrap().expect("setup registered the contract");
    let foreign = registry
        .register(
            &format!("{}-value", unique("he_unrelated")),
            &record_of("Foreign", r#"{"type":"array","items":"null"}"#),
        )
        .await
        .unwrap();
    let mut own = BTreeMap::new();
    for (shape, schema) in [
        ("nulls", record_of("Nulls", r#"{"type":"array","items":"null"}"#)),
        ("empty records", record_of("Empties", r#"{"type":"array","items":{"type":"record","name":"E","fields":[]}}"#)),
        (
            "records",
            record_of(
                "Records",
                r#"{"type":"array","items":{"type":"record","name":"I","fields":[{"name":"i","type":"int"}]}}"#,
            ),
        ),
        ("map", record_of("Map", r#"{"type":"map","values":"null"}"#)),
        ("nested", record_of("Nested", r#"{"type":"array","items":{"type":"array","items":"null"}}"#)),
        ("string", record_of("Str", r#""string""#)),
        ("list", r#"{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}"#.to_string()),
    ] {
        own.insert(shape, registry.register(&subject, &schema).await.unwrap());
    }
    println!("schema ids: contract {contract}, foreign {foreign}, own {own:?}");

    // What each message is, its bytes, and the reason ingest must give.
    let mut hostile: Vec<(String, Vec<u8>, &str)> = vec![(
        "the 10-byte bomb, its schema under an unrelated subject".into(),
        frame(foreign, &[&zz(500_000_000)]),
        "foreign_schema",
    )];
    for n in [500_000_000i64, 1_000_000_000] {
        hostile.extend([
            (format!("{n} nulls"), frame(own["nulls"], &[&zz(n), &[0]]), "over_limit"),
            (format!("{n} empty records"), frame(own["empty records"], &[&zz(n), &[0]]), "over_limit"),
            (format!("{n} records of an int"), frame(own["records"], &[&zz(n), &zz(7), &[0]]), "undecodable"),
            (format!("{n} map entries of null"), frame(own["map"], &[&zz(n), &zz(1), b"k", &[0]]), "undecodable"),
            (
                format!("an array of {n} nulls in an array"),
                frame(own["nested"], &[&zz(1), &zz(n), &[0, 0]]),
                "over_limit",
            ),
            (format!("{n} empty arrays in an array"), frame(own["nested"], &[&zz(n), &[0, 0]]), "undecodable"),
            (format!("a string of {n} bytes"), frame(own["string"], &[&zz(n)]), "undecodable"),
        ]);
    }
    hostile.push(("a list 100000 deep".into(), frame(own["list"], &[&[2; 100_000], &[0]]), "over_limit"));
    hostile.push(("an unknown schema id".into(), frame(2_000_000_000, &[&[0]]), "unknown_schema"));
    let mut huge = order("he-huge", 1);
    huge.lines.push(OrderLine {
        line_id: "L1".into(),
        sku: "SKU-1".into(),
        name: "x".repeat(5_000_000),
        quantity: 1,
        unit_price: 1000,
        status: LineStatus::Open,
    });
    hostile.push((
        "a 5 MB order".into(),
        order_gateway::events::encode_avro(&order_event(huge), contract),
        "oversized",
    ));

    // `serve` and `ingest`, capped.
    let port = free_port();
    let mut serve_env = env.clone();
    serve_env.extend(
        [
            ("ORDER_GATEWAY__SERVER__LISTEN", format!("127.0.0.1:{port}")),
            ("ORDER_GATEWAY__STREAM__ENABLED", "true".into()),
            ("ORDER_GATEWAY__AUTH__KEYS", keys_env(&[])),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    let child = capped(&["serve"], &serve_env).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap();
    let mut gw =
        Gateway { child, addr: format!("127.0.0.1:{port}").parse().unwrap(), base: format!("http://127.0.0.1:{port}") };
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let c = client();
    let ready = "serve under the cap answering /readyz with the stream assigned";
    while_running(&mut gw.child, "serve", Duration::from_secs(30), ready, || async {
        match c.get(url("/readyz")).send().await {
            Ok(r) => r.json::<Value>().await.is_ok_and(|v| v["checks"]["stream"]["assigned"] == true),
            Err(_) => false,
        }
    })
    .await;
    let ingest_log = std::env::temp_dir().join(format!("{id}.ingest.log"));
    let mut ingest = Killed(
        capped(&["ingest"], &env)
            .env("ORDER_GATEWAY__LOG__FORMAT", "text")
            .stdout(std::fs::File::create(&ingest_log).unwrap())
            .stderr(std::fs::OpenOptions::new().append(true).open(&ingest_log).unwrap())
            .spawn()
            .unwrap(),
    );
    let metrics_listen = &env.iter().find(|(k, _)| k == "ORDER_GATEWAY__INGEST__METRICS_LISTEN").unwrap().1;
    let ingest_health = format!("http://{metrics_listen}/healthz");
    while_running(
        &mut ingest.0,
        "ingest",
        Duration::from_secs(30),
        "ingest under the cap answering /healthz",
        || async { c.get(&ingest_health).send().await.is_ok_and(|r| r.status() == 200) },
    )
    .await;
    println!(
        "under `ulimit -v {ADDRESS_SPACE_KIB}`: serve {}; ingest {}",
        memory_of(gw.child.id()),
        memory_of(ingest.0.id())
    );

    // Everything on partition 0, the normal order last: seeing it means
    // having read past every bomb.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("message.max.bytes", TOPIC_MAX_MESSAGE_BYTES)
        .create()
        .unwrap();
    for (i, (what, payload, _)) in hostile.iter().enumerate() {
        let key = format!("he-bomb-{i}");
        let rec = FutureRecord::to(&orders).partition(0).key(&key).payload(payload);
        producer.send(rec, Duration::from_secs(10)).await.unwrap_or_else(|(e, _)| panic!("producing {what}: {e}"));
    }
    let normal = order(&format!("he-normal-{}", uuid::Uuid::new_v4().simple()), 1);
    let payload = order_gateway::events::encode_avro(&order_event(normal.clone()), contract);
    producer
        .send(FutureRecord::to(&orders).partition(0).key(&normal.order_id).payload(&payload), Duration::from_secs(10))
        .await
        .unwrap();
    let produced_at = Instant::now();

    // serve: alive, the normal order served from its stream, every bomb dropped with its reason.
    let mut want_dropped = BTreeMap::new();
    for (_, _, reason) in &hostile {
        *want_dropped.entry(format!("outcome=dropped,reason={reason}")).or_insert(0u64) += 1;
    }
    let dropped = std::cell::RefCell::new(BTreeMap::new());
    let applied = "serve applying the normal order after the bombs";
    while_running(&mut gw.child, "serve", Duration::from_secs(30), applied, || async {
        let Ok(r) = c.get(url("/metrics")).send().await else { return false };
        let events = stream_events(&r.text().await.unwrap_or_default());
        *dropped.borrow_mut() =
            events.iter().filter(|(k, _)| k.starts_with("outcome=dropped")).map(|(k, v)| (k.clone(), *v)).collect();
        events.iter().any(|(k, v)| k.starts_with("outcome=applied") && *v >= 1)
    })
    .await;
    let dropped = dropped.into_inner();
    println!("serve dropped {dropped:?} in {:?}", produced_at.elapsed());
    assert_eq!(dropped, want_dropped, "serve drops every bomb with its reason");
    let (headers, view) = expect_json(c.get(gw.url(&format!("/v1/orders/{}", normal.order_id))), 200).await;
    assert_eq!(headers["x-cache"], "HIT", "served from the stream: {view}");
    assert_eq!(view["order"]["order_id"], normal.order_id.as_str());
    assert_eq!(c.get(gw.url("/healthz")).send().await.unwrap().status(), 200);

    // ingest: every bomb dead-lettered with its reason, the normal order in Elasticsearch.
    let doc_url = format!("{}/{alias}/_doc/{}", es_url(), normal.order_id);
    let written = "ingest writing the normal order after the bombs";
    while_running(&mut ingest.0, "ingest", Duration::from_secs(90), written, || async {
        let search = serde_json::json!({"query": {"ids": {"values": [normal.order_id]}}});
        let Ok(r) = c.post(format!("{}/{alias}/_search", es_url())).json(&search).send().await else { return false };
        r.json::<Value>().await.is_ok_and(|v| v["hits"]["total"]["value"] == 1)
    })
    .await;
    println!("ingest wrote {doc_url} in {:?}", produced_at.elapsed());
    let letters = dead_letters(&dlq);
    assert_eq!(letters.keys().copied().collect::<Vec<_>>(), (0..hostile.len() as i64).collect::<Vec<_>>());
    let reasons: Vec<&str> = letters.values().map(|(r, _, _)| r.as_str()).collect();
    let want: Vec<&str> = hostile.iter().map(|(_, _, r)| *r).collect();
    for ((what, _, _), (reason, omitted, len)) in hostile.iter().zip(letters.values()) {
        println!(
            "dead letter: {what}: {reason} ({len} bytes{})",
            if omitted.is_empty() { String::new() } else { format!(", omitted: {omitted}") }
        );
    }
    assert_eq!(reasons, want, "ingest dead-letters every bomb, in order, with its reason");
    let (_, (_, omitted, len)) = letters.last_key_value().unwrap();
    let huge_len = hostile.last().unwrap().1.len();
    assert_eq!(
        (omitted.clone(), *len),
        (format!("payload of {huge_len} bytes"), 0),
        "the 5 MB copy is left out, and said so"
    );

    // ingest committed past them all.
    let group: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", format!("{id}-ingest"))
        .create()
        .unwrap();
    let (_, high) = group.fetch_watermarks(&orders, 0, Duration::from_secs(5)).unwrap();
    assert_eq!(high, hostile.len() as i64 + 1);
    eventually(Duration::from_secs(30), "ingest's commit reaching the end of partition 0", || async {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&orders, 0);
        let committed = group.committed_offsets(tpl, Duration::from_secs(5)).unwrap();
        committed.find_partition(&orders, 0).is_some_and(|p| p.offset() == Offset::Offset(high))
    })
    .await;

    // Both still running, within the cap.
    println!("after: serve {}; ingest {}", memory_of(gw.child.id()), memory_of(ingest.0.id()));
    assert!(gw.child.try_wait().unwrap().is_none(), "serve exited");
    let ingest_exit = ingest.0.try_wait().unwrap();
    drop(ingest);
    let log = std::fs::read_to_string(&ingest_log).unwrap_or_default();
    let _ = std::fs::remove_file(&ingest_log);
    assert!(
        ingest_exit.is_none(),
        "ingest exited ({ingest_exit:?}):\n{}",
        log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
    assert!(!log.contains("memory allocation"), "{log}");
}
