//! The ingest pipeline end to end against the real stack: `setup`, `seed` and
//! `ingest` run as the binary, each test with topics, aliases, a ClickHouse
//! database and a consumer group of its own.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use order_gateway::model::{Component, Envelope, Event, Order, OrderView, Timestamp};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

const HOT_WINDOW_MS: i64 = 730 * 86_400_000;

/// One isolated pipeline: every name is unique to the test.
/// A dead-lettered message: (reason header, key, payload).
type DeadLetter = (String, Option<Vec<u8>>, Option<Vec<u8>>);

struct Pipeline {
    env: Vec<(String, String)>,
    orders: String,
    fulfillments: String,
    dlq: String,
    cdc: String,
    alias: String,
    db: String,
}

impl Pipeline {
    fn new(format: &str) -> Pipeline {
        let id = unique("it");
        let mut p = Pipeline::names_of(&id);
        p.env = isolated_env(&id, true);
        for (k, v) in [
            ("ORDER_GATEWAY__TOPICS__ORDERS_FORMAT", format),
            ("ORDER_GATEWAY__TOPICS__FULFILLMENTS_FORMAT", format),
            ("ORDER_GATEWAY__LOG__FORMAT", "text"),
        ] {
            p.env.push((k.to_string(), v.to_string()));
        }
        p
    }

    fn names_of(id: &str) -> Pipeline {
        Pipeline {
            orders: format!("{id}.orders"),
            fulfillments: format!("{id}.fulfillments"),
            dlq: format!("{id}.dlq"),
            cdc: format!("{id}.cdc"),
            alias: alias_of(id),
            db: id.to_string(),
            env: Vec::new(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_order-gateway"));
        c.args(args).envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    fn run(&self, args: &[&str]) -> String {
        self.run_with(args, &[])
    }

    /// As `run`, with `env` set on top of the pipeline's own variables.
    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let _one_at_a_time = (args.first() == Some(&"setup")).then(one_setup_at_a_time);
        let out = self.cmd(args).envs(env.iter().copied()).output().expect("run order-gateway");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "order-gateway {args:?} failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// `seed` of `orders` orders with a fixed seed; the final view of each, by id.
    fn seed(&self, orders: u32, seed: u64) -> BTreeMap<String, OrderView> {
        let truth_file = std::env::temp_dir().join(format!("{}.truth.jsonl", self.db));
        let (orders, seed) = (orders.to_string(), seed.to_string());
        self.run(&["seed", "--orders", &orders, "--seed", &seed, "--truth", truth_file.to_str().unwrap()]);
        let truth = read_truth(&truth_file);
        let _ = std::fs::remove_file(&truth_file);
        truth
    }

    fn spawn_ingest(&self, batch_size: usize) -> Child {
        self.cmd(&["ingest"])
            .env("ORDER_GATEWAY__INGEST__BATCH_SIZE", batch_size.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ingest")
    }

    fn ch(&self) -> clickhouse::Client {
        clickhouse::Client::default().with_url(clickhouse_url()).with_database(&self.db)
    }

    async fn es_docs(&self) -> BTreeMap<String, OrderView> {
        let http = client();
        let _ = http.post(format!("{}/{}/_refresh", es_url(), self.alias)).send().await;
        let search = json!({"size": 10000, "query": {"match_all": {}}});
        let body: Value = json_of(http.post(format!("{}/{}/_search", es_url(), self.alias)).json(&search)).await;
        body["hits"]["hits"]
            .as_array()
            .map(|hits| {
                hits.iter()
                    .map(|h| {
                        let v: OrderView = serde_json::from_value(h["_source"].clone()).expect("doc is an OrderView");
                        (v.order_id.clone(), v)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn producer(&self) -> FutureProducer {
        ClientConfig::new().set("bootstrap.servers", kafka_brokers()).create().unwrap()
    }

    /// Every message of the dead-letter topic.
    fn dead_letters(&self) -> Vec<DeadLetter> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka_brokers())
            .set("group.id", unique("it-dlq-reader"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.subscribe(&[&self.dlq]).unwrap();
        let mut out = Vec::new();
        let mut idle = 0;
        while idle < 6 {
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(m)) => {
                    idle = 0;
                    let reason = m
                        .headers()
                        .and_then(|h| {
                            h.iter()
                                .find(|x| x.key == "dlq.reason")
                                .and_then(|x| x.value.map(|v| String::from_utf8_lossy(v).to_string()))
                        })
                        .unwrap_or_default();
                    out.push((reason, m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec)));
                }
                _ => idle += 1,
            }
        }
        out
    }
}

fn read_truth(path: &std::path::Path) -> BTreeMap<String, OrderView> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: OrderView = serde_json::from_str(l).unwrap();
            (v.order_id.clone(), v)
        })
        .collect()
}

fn hot(truth: &BTreeMap<String, OrderView>) -> BTreeMap<String, OrderView> {
    let since = Timestamp::now().millis() - HOT_WINDOW_MS;
    truth
        .iter()
        .filter(|(_, v)| v.order.as_ref().is_some_and(|o| o.created_at.millis() >= since))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// ClickHouse's latest state, rebuilt as the fields it keeps (no PII).
#[derive(Debug, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
struct ChOrder {
    order_id: String,
    order_number: String,
    customer_id: String,
    channel: String,
    status: String,
    currency: String,
    subtotal: i64,
    tax: i64,
    shipping: i64,
    discount: i64,
    total: i64,
    units: u32,
    line_count: u16,
    country: String,
    created_ms: i64,
    updated_ms: i64,
    version: u64,
}

fn expected_ch(o: &Order) -> ChOrder {
    ChOrder {
        order_id: o.order_id.clone(),
        order_number: o.order_number.clone(),
        customer_id: o.customer_id.clone(),
        channel: o.channel.as_str().into(),
        status: o.status.as_str().into(),
        currency: o.currency.clone(),
        subtotal: o.subtotal,
        tax: o.tax,
        shipping: o.shipping,
        discount: o.discount,
        total: o.total,
        units: o.lines.iter().map(|l| l.quantity).sum(),
        line_count: o.lines.len() as u16,
        country: o.shipping_address.as_ref().map(|a| a.country.clone()).unwrap_or_default(),
        created_ms: o.created_at.millis(),
        updated_ms: o.updated_at.millis(),
        version: o.version,
    }
}

async fn ch_orders(p: &Pipeline) -> BTreeMap<String, ChOrder> {
    let rows: Vec<ChOrder> = p
        .ch()
        .query(
            "SELECT order_id, order_number, customer_id, channel, status, currency, subtotal, tax, shipping, \
             discount, total, units, line_count, country, toUnixTimestamp64Milli(created_at) AS created_ms, \
             toUnixTimestamp64Milli(updated_at) AS updated_ms, version FROM orders_latest",
        )
        .fetch_all()
        .await
        .unwrap_or_default();
    rows.into_iter().map(|r| (r.order_id.clone(), r)).collect()
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, clickhouse::Row, serde::Deserialize)]
struct ChLine {
    order_id: String,
    line_id: String,
    sku: String,
    name: String,
    quantity: u32,
    unit_price: i64,
    status: String,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, clickhouse::Row, serde::Deserialize)]
struct ChFulfillment {
    order_id: String,
    fulfillment_id: String,
    kind: String,
    status: String,
    carrier: String,
    tracking_number: String,
    line_ids: Vec<String>,
    shipped_ms: Option<i64>,
    delivered_ms: Option<i64>,
    version: u64,
}

/// Compares both stores with the truth; returns the first difference found.
async fn compare(p: &Pipeline, truth: &BTreeMap<String, OrderView>) -> Result<(), String> {
    let es = p.es_docs().await;
    let want_hot = hot(truth);
    if es.len() != want_hot.len() {
        return Err(format!("elasticsearch holds {} orders, {} hot orders expected", es.len(), want_hot.len()));
    }
    for (id, want) in &want_hot {
        match es.get(id) {
            Some(got) if got == want => {}
            Some(got) => return Err(format!("elasticsearch differs for {id}:\n got  {got:?}\n want {want:?}")),
            None => return Err(format!("elasticsearch lacks hot order {id}")),
        }
    }
    let ch = ch_orders(p).await;
    let want: BTreeMap<String, ChOrder> =
        truth.values().filter_map(|v| v.order.as_ref()).map(|o| (o.order_id.clone(), expected_ch(o))).collect();
    if ch.len() != want.len() {
        return Err(format!("clickhouse holds {} orders, {} expected", ch.len(), want.len()));
    }
    if let Some((id, w)) = want.iter().find(|(id, w)| ch.get(*id) != Some(w)) {
        return Err(format!("clickhouse differs for {id}:\n got  {:?}\n want {w:?}", ch.get(id)));
    }
    let mut lines: Vec<ChLine> = p
        .ch()
        .query("SELECT order_id, line_id, sku, name, quantity, unit_price, status FROM order_lines_latest")
        .fetch_all()
        .await
        .map_err(|e| e.to_string())?;
    lines.sort();
    let mut want_lines: Vec<ChLine> = truth
        .values()
        .filter_map(|v| v.order.as_ref())
        .flat_map(|o| {
            o.lines.iter().map(|l| ChLine {
                order_id: o.order_id.clone(),
                line_id: l.line_id.clone(),
                sku: l.sku.clone(),
                name: l.name.clone(),
                quantity: l.quantity,
                unit_price: l.unit_price,
                status: l.status.as_str().into(),
            })
        })
        .collect();
    want_lines.sort();
    if lines != want_lines {
        return Err(format!("clickhouse order_lines differ: {} rows, {} expected", lines.len(), want_lines.len()));
    }
    let mut fuls: Vec<ChFulfillment> = p
        .ch()
        .query(
            "SELECT order_id, fulfillment_id, type AS kind, status, carrier, tracking_number, line_ids, \
             toUnixTimestamp64Milli(shipped_at) AS shipped_ms, toUnixTimestamp64Milli(delivered_at) AS delivered_ms, \
             version FROM fulfillments_latest",
        )
        .fetch_all()
        .await
        .map_err(|e| e.to_string())?;
    fuls.sort();
    let mut want_fuls: Vec<ChFulfillment> = truth
        .values()
        .flat_map(|v| v.fulfillments.iter())
        .map(|f| ChFulfillment {
            order_id: f.order_id.clone(),
            fulfillment_id: f.fulfillment_id.clone(),
            kind: f.kind.as_str().into(),
            status: f.status.as_str().into(),
            carrier: f.carrier.clone().unwrap_or_default(),
            tracking_number: f.tracking_number.clone().unwrap_or_default(),
            line_ids: f.line_ids.clone(),
            shipped_ms: f.shipped_at.map(|t| t.millis()),
            delivered_ms: f.delivered_at.map(|t| t.millis()),
            version: f.version,
        })
        .collect();
    want_fuls.sort();
    if fuls != want_fuls {
        let first = fuls.iter().zip(&want_fuls).find(|(a, b)| a != b);
        return Err(format!(
            "clickhouse fulfillments differ: {} rows, {} expected; first: {first:?}",
            fuls.len(),
            want_fuls.len()
        ));
    }
    Ok(())
}

async fn wait_for_truth(p: &Pipeline, truth: &BTreeMap<String, OrderView>, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        match compare(p, truth).await {
            Ok(()) => return,
            Err(e) if std::time::Instant::now() > deadline => panic!("stores never matched the truth: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn seeded_orders_reach_both_stores_exactly() {
    let p = Pipeline::new("avro");
    p.run(&["setup"]);
    let truth = p.seed(2000, 11);
    assert_eq!(truth.len(), 2000);
    let hot_count = hot(&truth).len();
    assert!(hot_count > 1000 && hot_count < 2000, "some orders lie outside the hot window: {hot_count}");
    let _ingest = Killed(p.spawn_ingest(2000));
    wait_for_truth(&p, &truth, Duration::from_secs(180)).await;
    assert!(p.dead_letters().is_empty(), "a clean seed dead-letters nothing");

    // The API finds hot orders in Elasticsearch and older ones in ClickHouse
    // (which keeps no PII: those views come without address, e-mail, phone).
    let env: Vec<(&str, &str)> = p.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let gw = Gateway::start(&env).await;
    let hot_orders = hot(&truth);
    let hot_one = hot_orders.values().next().unwrap();
    let cold_one = truth.values().find(|v| !hot_orders.contains_key(&v.order_id)).unwrap();
    let c = client();
    let got: OrderView = json_of(c.get(gw.url(&format!("/v1/orders/{}", hot_one.order_id)))).await;
    assert_eq!(&got, hot_one);
    let got: OrderView = json_of(c.get(gw.url(&format!("/v1/orders/{}", cold_one.order_id)))).await;
    let mut want = cold_one.clone();
    if let Some(o) = want.order.as_mut() {
        o.shipping_address = None;
        o.email = None;
        o.phone = None;
    }
    assert_eq!(got, want, "a cold order from ClickHouse");
}

#[tokio::test]
async fn kill_9_halfway_and_restart_end_in_the_same_state() {
    let p = Pipeline::new("avro");
    p.run(&["setup"]);
    let truth = p.seed(2000, 23);
    let hot_count = hot(&truth).len();

    let mut first = p.spawn_ingest(100);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let n = p.es_docs().await.len();
        if n >= hot_count / 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "ingest made no progress ({n} docs)");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.kill().unwrap(); // SIGKILL: no chance to commit or flush
    first.wait().unwrap();
    assert!(compare(&p, &truth).await.is_err(), "the kill landed halfway, not after the end");

    let _second = Killed(p.spawn_ingest(100));
    wait_for_truth(&p, &truth, Duration::from_secs(180)).await;
}

/// Elasticsearch is written before ClickHouse, so a crash or a ClickHouse
/// failure between the two leaves Elasticsearch ahead; the batch is replayed
/// and must still reach ClickHouse. Made deterministic here: ingest everything,
/// empty ClickHouse's tables, and replay the topics with a new consumer group.
#[tokio::test]
async fn a_replay_fills_clickhouse_where_elasticsearch_is_already_ahead() {
    let p = Pipeline::new("avro");
    p.run(&["setup"]);
    let truth = p.seed(300, 31);
    p.run(&["ingest", "--exit-when-idle", "3s"]);
    wait_for_truth(&p, &truth, Duration::from_secs(60)).await;

    for table in ["orders", "order_lines", "fulfillments"] {
        p.ch().query(&format!("TRUNCATE TABLE {table}")).execute().await.unwrap();
    }
    assert!(compare(&p, &truth).await.is_err(), "ClickHouse is behind Elasticsearch now");
    let replay_group = format!("{}-replay", p.db);
    p.run_with(&["ingest", "--exit-when-idle", "3s"], &[("ORDER_GATEWAY__INGEST__GROUP_ID", &replay_group)]);
    wait_for_truth(&p, &truth, Duration::from_secs(30)).await;
}

fn order_event(id: &str, version: u64, created: Timestamp) -> Event {
    Event {
        envelope: Envelope {
            event_id: format!("e-{id}-{version}"),
            event_type: "order.created".into(),
            source: "digital".into(),
            occurred_at: created,
            schema_version: 1,
        },
        component: Component::Order(Order {
            order_id: id.into(),
            order_number: format!("ON-{id}"),
            customer_id: "c-1".into(),
            channel: order_gateway::model::Channel::Web,
            status: order_gateway::model::OrderStatus::Created,
            currency: "USD".into(),
            subtotal: 1000,
            tax: 80,
            shipping: 0,
            discount: 0,
            total: 1080,
            lines: vec![],
            shipping_address: None,
            email: None,
            phone: None,
            promised_delivery_at: None,
            created_at: created,
            updated_at: Timestamp(created.millis() + version as i64),
            version,
            deleted: false,
        }),
    }
}

#[tokio::test]
async fn bad_messages_are_dead_lettered_with_their_reason_and_the_rest_ingested() {
    let p = Pipeline::new("avro");
    p.run(&["setup"]);
    let registry = order_gateway::backends::schema_registry::RegistryClient::new(
        &order_gateway::config::Config::load(None).unwrap().schema_registry,
    )
    .unwrap();
    let ids = order_gateway::events::SchemaIds::register(
        &registry,
        &format!("{}-value", p.orders),
        &format!("{}-value", p.fulfillments),
    )
    .await
    .unwrap();
    let producer = p.producer();
    let now = Timestamp::now();
    let send = |key: Option<&str>, payload: Vec<u8>| {
        let producer = producer.clone();
        let topic = p.orders.clone();
        let key = key.map(str::to_owned);
        async move {
            let mut rec = FutureRecord::<str, [u8]>::to(&topic).payload(&payload);
            if let Some(k) = key.as_deref() {
                rec = rec.key(k);
            }
            producer.send(rec, Duration::from_secs(10)).await.expect("produce");
        }
    };
    let good = order_event("good-1", 2, now);
    send(Some("good-1"), order_gateway::events::encode_avro(&good, ids.orders)).await;
    let malformed = vec![0, 0, 0, 0, ids.orders as u8, 0xff, 0xfe, 0xfd];
    send(Some("bad-1"), malformed.clone()).await;
    let unknown = {
        let mut b = order_gateway::events::encode_avro(&order_event("bad-2", 1, now), ids.orders);
        b[1..5].copy_from_slice(&987_654u32.to_be_bytes());
        b
    };
    send(Some("bad-2"), unknown.clone()).await;
    send(None, order_gateway::events::encode_avro(&order_event("bad-3", 1, now), ids.orders)).await;

    let _ingest = Killed(p.spawn_ingest(50));
    eventually(Duration::from_secs(60), "the good order in elasticsearch", || async {
        p.es_docs().await.get("good-1").and_then(|v| v.order.as_ref().map(|o| o.version)) == Some(2)
    })
    .await;
    // Older than what is stored now: a backwards version.
    let backwards = order_gateway::events::encode_avro(&order_event("good-1", 1, now), ids.orders);
    send(Some("good-1"), backwards.clone()).await;

    let mut reasons = Vec::new();
    eventually(Duration::from_secs(60), "four dead letters", || {
        reasons = p
            .dead_letters()
            .into_iter()
            .map(|(r, _, payload)| (r, payload))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        let n = reasons.len();
        async move { n >= 4 }
    })
    .await;
    let letters = p.dead_letters();
    let find = |reason: &str| {
        letters.iter().find(|(r, _, _)| r == reason).unwrap_or_else(|| panic!("no {reason} letter in {reasons:?}"))
    };
    assert_eq!(find("undecodable").2.as_deref(), Some(&malformed[..]), "original bytes kept");
    assert_eq!(find("unknown_schema").2.as_deref(), Some(&unknown[..]));
    assert!(find("missing_key").1.is_none());
    assert_eq!(find("stale_version").2.as_deref(), Some(&backwards[..]));
    // The good order was not regressed by the stale message.
    assert_eq!(p.es_docs().await["good-1"].order.as_ref().unwrap().version, 2);
}

#[tokio::test]
async fn debezium_create_update_delete_of_a_legacy_order() {
    let p = Pipeline::new("json");
    p.run(&["setup"]);
    let producer = p.producer();
    let now = Timestamp::now().millis();
    let row = |version: i64, state: &str| {
        json!({"id": 77001, "order_no": "L-77001", "customer_ref": "legacy-9", "state": state, "currency": "eur",
               "total_cents": 4550, "created_at": now - 86_400_000, "updated_at": now - 86_400_000 + version, "row_version": version})
    };
    let send = |v: Value| {
        let producer = producer.clone();
        let topic = p.cdc.clone();
        async move {
            producer
                .send(FutureRecord::to(&topic).key("77001").payload(&v.to_string()), Duration::from_secs(10))
                .await
                .expect("produce");
        }
    };
    send(json!({"schema": {"type": "struct"}, "payload": {"before": null, "after": row(1, "created"), "op": "c", "source": {"ts_ms": now}}})).await;
    send(json!({"before": row(1, "created"), "after": row(2, "shipped"), "op": "u", "source": {"ts_ms": now + 1}}))
        .await;
    let _ingest = Killed(p.spawn_ingest(50));
    eventually(Duration::from_secs(60), "the legacy order, updated, in elasticsearch", || async {
        p.es_docs().await.get("77001").and_then(|v| v.order.as_ref().map(|o| (o.version, o.status.as_str(), o.total)))
            == Some((2, "shipped", 4550))
    })
    .await;
    send(json!({"before": row(2, "shipped"), "after": null, "op": "d", "source": {"ts_ms": now + 2}})).await;
    eventually(Duration::from_secs(60), "the legacy order removed from elasticsearch", || async {
        !p.es_docs().await.contains_key("77001")
    })
    .await;
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Del {
        last_deleted: u8,
        max_version: u64,
    }
    eventually(Duration::from_secs(30), "the legacy order marked deleted in clickhouse", || async {
        let r: Option<Del> = p
            .ch()
            .query("SELECT argMax(is_deleted, version) AS last_deleted, max(version) AS max_version FROM orders WHERE order_id = '77001'")
            .fetch_optional()
            .await
            .ok()
            .flatten();
        r.is_some_and(|d| d.last_deleted == 1 && d.max_version == 3)
    })
    .await;
    assert!(ch_orders(&p).await.is_empty(), "the deleted order is gone from orders_latest");
}
