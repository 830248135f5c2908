//! One isolated ingest pipeline (`setup`, `seed`, `ingest` run as the binary,
//! with topics, aliases, a ClickHouse database and a consumer group of its
//! own) and the comparison of both stores with the truth `seed --truth`
//! writes: for tests/ingest.rs and the reliability suite.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use order_gateway::model::{Order, OrderView, Timestamp};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;
use serde_json::{json, Value};

use super::*;

/// The hot window ingest keeps in Elasticsearch (`ingest.hot_window`'s default).
pub const HOT_WINDOW_MS: i64 = 730 * 86_400_000;

/// A dead-lettered message: (reason header, key, payload).
pub type DeadLetter = (String, Option<Vec<u8>>, Option<Vec<u8>>);

/// One isolated pipeline: every name is unique to the test.
pub struct Pipeline {
    pub env: Vec<(String, String)>,
    pub orders: String,
    pub fulfillments: String,
    pub dlq: String,
    pub cdc: String,
    pub cdc_lines: String,
    pub alias: String,
    pub db: String,
}

impl Pipeline {
    /// A new pipeline whose topics carry `format` (`avro` or `json`).
    pub fn new(format: &str) -> Pipeline {
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
            cdc: format!("{id}.legacy.orders"),
            cdc_lines: format!("{id}.legacy.order_lines"),
            alias: alias_of(id),
            db: id.to_string(),
            env: Vec::new(),
        }
    }

    /// `order-gateway <args>` ([`gateway_bin`]) in the pipeline's environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(gateway_bin());
        c.args(args).envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    pub fn run(&self, args: &[&str]) -> String {
        self.run_with(args, &[])
    }

    /// As `run`, with `env` set on top of the pipeline's own variables.
    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> String {
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

    /// Where this pipeline's `seed --truth` goes.
    pub fn truth_file(&self) -> PathBuf {
        std::env::temp_dir().join(format!("{}.truth.jsonl", self.db))
    }

    /// `seed` of `orders` orders with a fixed seed; the final view of each, by id.
    pub fn seed(&self, orders: u32, seed: u64) -> BTreeMap<String, OrderView> {
        let truth_file = self.truth_file();
        let (orders, seed) = (orders.to_string(), seed.to_string());
        self.run(&["seed", "--orders", &orders, "--seed", &seed, "--truth", truth_file.to_str().unwrap()]);
        let truth = read_truth(&truth_file);
        let _ = std::fs::remove_file(&truth_file);
        truth
    }

    pub fn spawn_ingest(&self, batch_size: usize) -> Child {
        self.cmd(&["ingest"])
            .env("ORDER_GATEWAY__INGEST__BATCH_SIZE", batch_size.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ingest")
    }

    /// Where `ingest` serves its metrics (`ingest.metrics_listen`).
    pub fn ingest_metrics_url(&self) -> String {
        let listen = self.env.iter().find(|(k, _)| k == "ORDER_GATEWAY__INGEST__METRICS_LISTEN").map(|(_, v)| v);
        format!("http://{}/metrics", listen.expect("isolated_env sets ingest.metrics_listen"))
    }

    pub fn ch(&self) -> clickhouse::Client {
        clickhouse::Client::default().with_url(clickhouse_url()).with_database(&self.db)
    }

    /// Every document behind the pipeline's alias, by order id (scrolled, so
    /// more than Elasticsearch's 10,000 hits a search).
    pub async fn es_docs(&self) -> BTreeMap<String, OrderView> {
        let http = bare_client();
        let _ = http.post(format!("{}/{}/_refresh", es_url(), self.alias)).send().await;
        let search = json!({"size": 5000, "sort": ["_doc"], "query": {"match_all": {}}});
        let mut body: Value =
            json_of(http.post(format!("{}/{}/_search?scroll=1m", es_url(), self.alias)).json(&search)).await;
        let mut docs = BTreeMap::new();
        loop {
            let hits = body["hits"]["hits"].as_array().cloned().unwrap_or_default();
            if hits.is_empty() {
                break;
            }
            for h in hits {
                let v: OrderView = serde_json::from_value(h["_source"].clone()).expect("doc is an OrderView");
                docs.insert(v.order_id.clone(), v);
            }
            let Some(scroll_id) = body["_scroll_id"].as_str().map(str::to_owned) else { break };
            let next = json!({"scroll": "1m", "scroll_id": scroll_id});
            body = json_of(http.post(format!("{}/_search/scroll", es_url())).json(&next)).await;
        }
        if let Some(scroll_id) = body["_scroll_id"].as_str() {
            let _ =
                http.delete(format!("{}/_search/scroll", es_url())).json(&json!({"scroll_id": scroll_id})).send().await;
        }
        docs
    }

    pub fn producer(&self) -> FutureProducer {
        ClientConfig::new().set("bootstrap.servers", kafka_brokers()).create().unwrap()
    }

    /// Every message of the dead-letter topic.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
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

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The final views `seed --truth` wrote, by order id.
pub fn read_truth(path: &Path) -> BTreeMap<String, OrderView> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: OrderView = serde_json::from_str(l).unwrap();
            (v.order_id.clone(), v)
        })
        .collect()
}

/// The orders of `truth` created within the hot window: those Elasticsearch keeps.
pub fn hot(truth: &BTreeMap<String, OrderView>) -> BTreeMap<String, OrderView> {
    let since = Timestamp::now().millis() - HOT_WINDOW_MS;
    truth
        .iter()
        .filter(|(_, v)| v.order.as_ref().is_some_and(|o| o.created_at.millis() >= since))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// ClickHouse's latest state, rebuilt as the fields it keeps (no PII).
#[derive(Debug, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct ChOrder {
    pub order_id: String,
    pub order_number: String,
    pub customer_id: String,
    pub channel: String,
    pub status: String,
    pub currency: String,
    pub subtotal: i64,
    pub tax: i64,
    pub shipping: i64,
    pub discount: i64,
    pub total: i64,
    pub units: u32,
    pub line_count: u16,
    pub country: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The order's own version (ClickHouse ranks an order service's above
    /// every legacy order's: see `model::ranked_version`).
    #[serde(rename = "unranked_version")]
    pub version: u64,
}

/// The `orders_latest` row an order should have.
pub fn expected_ch(o: &Order) -> ChOrder {
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

/// `orders_latest`, by order id (empty while the database is not there).
pub async fn ch_orders(p: &Pipeline) -> BTreeMap<String, ChOrder> {
    let rows: Vec<ChOrder> = p
        .ch()
        .query(
            "SELECT order_id, order_number, customer_id, channel, status, currency, subtotal, tax, shipping, \
             discount, total, units, line_count, country, toUnixTimestamp64Milli(created_at) AS created_ms, \
             toUnixTimestamp64Milli(updated_at) AS updated_ms, bitAnd(version, 4611686018427387903) AS unranked_version FROM orders_latest",
        )
        .fetch_all()
        .await
        .unwrap_or_default();
    rows.into_iter().map(|r| (r.order_id.clone(), r)).collect()
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, clickhouse::Row, serde::Deserialize)]
pub struct ChLine {
    pub order_id: String,
    pub line_id: String,
    pub sku: String,
    pub name: String,
    pub quantity: u32,
    pub unit_price: i64,
    pub status: String,
}

/// `order_lines_latest`: the lines of each live order's latest version.
pub async fn ch_lines(p: &Pipeline) -> Result<Vec<ChLine>, String> {
    p.ch()
        .query("SELECT order_id, line_id, sku, name, quantity, unit_price, status FROM order_lines_latest")
        .fetch_all()
        .await
        .map_err(|e| e.to_string())
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, clickhouse::Row, serde::Deserialize)]
pub struct ChFulfillment {
    pub order_id: String,
    pub fulfillment_id: String,
    pub kind: String,
    pub status: String,
    pub carrier: String,
    pub tracking_number: String,
    pub line_ids: Vec<String>,
    pub shipped_ms: Option<i64>,
    pub delivered_ms: Option<i64>,
    pub version: u64,
}

/// Rows of each store: what was found, or what the truth calls for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Order documents in Elasticsearch (the hot orders).
    pub es: usize,
    /// Rows of ClickHouse's `orders_latest`, `order_lines_latest`, `fulfillments_latest`.
    pub orders: usize,
    pub lines: usize,
    pub fulfillments: usize,
}

/// How both stores differ from a truth, order by order.
#[derive(Debug, Default)]
pub struct Diff {
    /// Orders in the truth.
    pub orders: usize,
    /// Orders of the truth equal to it in every store.
    pub matching: usize,
    /// Order ids whose document, row, lines or fulfillments differ in each
    /// store: missing, different, or there when they should not be.
    pub es: usize,
    pub ch_orders: usize,
    pub ch_lines: usize,
    pub ch_fulfillments: usize,
    pub found: Counts,
    pub expected: Counts,
    /// The first difference, described; `None` when both stores equal the truth.
    pub first: Option<String>,
}

impl Diff {
    pub fn equal(&self) -> bool {
        self.first.is_none()
    }

    /// Differences by store: `0`, or e.g. `elasticsearch×3 order_lines×1`.
    pub fn text(&self) -> String {
        let parts: Vec<String> = [
            ("elasticsearch", self.es),
            ("orders", self.ch_orders),
            ("order_lines", self.ch_lines),
            ("fulfillments", self.ch_fulfillments),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{what}×{n}"))
        .collect();
        if parts.is_empty() {
            "0".to_string()
        } else {
            parts.join(" ")
        }
    }
}

/// Keys whose values differ between `got` and `want` (either side missing counts).
fn differing<'a, T: PartialEq>(got: &'a BTreeMap<String, T>, want: &'a BTreeMap<String, T>) -> BTreeSet<&'a String> {
    got.keys().chain(want.keys()).filter(|k| got.get(*k) != want.get(*k)).collect()
}

/// Rows by order id, each order's rows sorted.
fn by_order<T: Ord>(rows: Vec<T>, order_id: impl Fn(&T) -> &str) -> BTreeMap<String, Vec<T>> {
    let mut out: BTreeMap<String, Vec<T>> = BTreeMap::new();
    for r in rows {
        out.entry(order_id(&r).to_string()).or_default().push(r);
    }
    for rows in out.values_mut() {
        rows.sort();
    }
    out
}

/// Compares both stores with the truth, order by order. An error is a
/// ClickHouse query that failed.
pub async fn diff(p: &Pipeline, truth: &BTreeMap<String, OrderView>) -> Result<Diff, String> {
    let mut first: Option<String> = None;
    let mut note = |what: String| {
        first.get_or_insert(what);
    };

    let es = p.es_docs().await;
    let want_hot = hot(truth);
    let es_bad = differing(&es, &want_hot);
    if es.len() != want_hot.len() {
        note(format!("elasticsearch holds {} orders, {} hot orders expected", es.len(), want_hot.len()));
    }
    if let Some(id) = es_bad.first() {
        note(match (es.get(*id), want_hot.get(*id)) {
            (Some(got), Some(want)) => format!("elasticsearch differs for {id}:\n got  {got:?}\n want {want:?}"),
            (None, _) => format!("elasticsearch lacks hot order {id}"),
            (Some(_), None) => format!("elasticsearch holds {id}, which is not a hot order of the truth"),
        });
    }

    let ch = ch_orders(p).await;
    let want: BTreeMap<String, ChOrder> =
        truth.values().filter_map(|v| v.order.as_ref()).map(|o| (o.order_id.clone(), expected_ch(o))).collect();
    let orders_bad = differing(&ch, &want);
    if ch.len() != want.len() {
        note(format!("clickhouse holds {} orders, {} expected", ch.len(), want.len()));
    }
    if let Some(id) = orders_bad.first() {
        note(format!("clickhouse differs for {id}:\n got  {:?}\n want {:?}", ch.get(*id), want.get(*id)));
    }

    let lines = ch_lines(p).await?;
    let want_lines: Vec<ChLine> = truth
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
    let (n_lines, n_want_lines) = (lines.len(), want_lines.len());
    let (lines, want_lines) = (by_order(lines, |l| &l.order_id), by_order(want_lines, |l| &l.order_id));
    let lines_bad = differing(&lines, &want_lines);
    if let Some(id) = lines_bad.first() {
        note(format!(
            "clickhouse order_lines differ: {n_lines} rows, {n_want_lines} expected; first for {id}:\n got  {:?}\n want {:?}",
            lines.get(*id),
            want_lines.get(*id)
        ));
    }

    let fuls: Vec<ChFulfillment> = p
        .ch()
        .query(
            "SELECT order_id, fulfillment_id, type AS kind, status, carrier, tracking_number, line_ids, \
             toUnixTimestamp64Milli(shipped_at) AS shipped_ms, toUnixTimestamp64Milli(delivered_at) AS delivered_ms, \
             version FROM fulfillments_latest",
        )
        .fetch_all()
        .await
        .map_err(|e| e.to_string())?;
    let want_fuls: Vec<ChFulfillment> = truth
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
    let (n_fuls, n_want_fuls) = (fuls.len(), want_fuls.len());
    let (fuls, want_fuls) = (by_order(fuls, |f| &f.order_id), by_order(want_fuls, |f| &f.order_id));
    let fuls_bad = differing(&fuls, &want_fuls);
    if let Some(id) = fuls_bad.first() {
        note(format!(
            "clickhouse fulfillments differ: {n_fuls} rows, {n_want_fuls} expected; first for {id}:\n got  {:?}\n want {:?}",
            fuls.get(*id),
            want_fuls.get(*id)
        ));
    }

    let bad: BTreeSet<&String> = es_bad.iter().chain(&orders_bad).chain(&lines_bad).chain(&fuls_bad).copied().collect();
    Ok(Diff {
        orders: truth.len(),
        matching: truth.keys().filter(|id| !bad.contains(id)).count(),
        es: es_bad.len(),
        ch_orders: orders_bad.len(),
        ch_lines: lines_bad.len(),
        ch_fulfillments: fuls_bad.len(),
        found: Counts { es: es.len(), orders: ch.len(), lines: n_lines, fulfillments: n_fuls },
        expected: Counts { es: want_hot.len(), orders: want.len(), lines: n_want_lines, fulfillments: n_want_fuls },
        first,
    })
}

/// Compares both stores with the truth; returns the first difference found.
pub async fn compare(p: &Pipeline, truth: &BTreeMap<String, OrderView>) -> Result<(), String> {
    match diff(p, truth).await?.first {
        None => Ok(()),
        Some(first) => Err(first),
    }
}

/// Compares both stores with the truth every 500 ms until they are equal or
/// `within` has passed; returns the last comparison and when it was made.
pub async fn settle(
    p: &Pipeline,
    truth: &BTreeMap<String, OrderView>,
    within: Duration,
) -> (Result<Diff, String>, Instant) {
    let deadline = Instant::now() + within;
    loop {
        let d = diff(p, truth).await;
        let at = Instant::now();
        if d.as_ref().is_ok_and(Diff::equal) || at > deadline {
            return (d, at);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits for both stores to equal the truth; fails the test, showing the
/// first difference, if they do not within `within`.
pub async fn wait_for_truth(p: &Pipeline, truth: &BTreeMap<String, OrderView>, within: Duration) {
    match settle(p, truth, within).await.0 {
        Ok(d) if d.equal() => {}
        Ok(d) => panic!("stores never matched the truth: {}", d.first.unwrap_or_default()),
        Err(e) => panic!("stores never matched the truth: {e}"),
    }
}
