//! Change data capture through the real chain: SQL on the stack's PostgreSQL,
//! Debezium's PostgreSQL connector in the stack's Kafka Connect worker,
//! `ingest`, and `serve` with its stream. Each test has a database, a
//! connector (and replication slot) and topics of its own; they run one at a
//! time, as one of them restarts the shared Connect worker.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::load::quantile;
use common::pipeline::*;
use common::*;
use order_gateway::model::OrderView;
use rdkafka::producer::FutureRecord;
use serde::Deserialize;
use serde_json::{json, Value};

/// One test at a time on the shared Connect worker.
static CONNECT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The legacy database of one test and its connector.
struct Legacy {
    db: String,
    name: String,
}

impl Legacy {
    /// A database of its own, with the legacy schema (schemas/legacy/).
    fn new(p: &Pipeline) -> Legacy {
        let db = p.db.to_lowercase();
        let l = Legacy { name: format!("{db}-cdc"), db };
        script("scripts/stack/postgres/create-db", &[&l.db], &[]);
        l
    }

    /// The connector's environment for scripts/connector.sh: topics named
    /// `<db>.legacy.<table>`, as the pipeline's (its id is the database name).
    fn connector_env(&self, p: &Pipeline) -> Vec<(&'static str, String)> {
        vec![
            ("CONNECTOR_NAME", self.name.clone()),
            ("POSTGRES_DB", self.db.clone()),
            ("CDC_SLOT", self.db.clone()),
            ("CDC_TOPIC_PREFIX", p.db.clone()),
        ]
    }

    fn connector(&self, p: &Pipeline, action: &str) -> String {
        let env = self.connector_env(p);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        script("scripts/connector.sh", &[action], &env)
    }

    /// Runs SQL as the owner; returns psql's unaligned output.
    fn sql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", &env_or("STACK_POSTGRES_HOST", "127.0.0.1")])
            .args(["-p", &env_or("STACK_POSTGRES_PORT", "5432")])
            .args(["-U", &env_or("STACK_POSTGRES_USER", "legacy")])
            .args(["-d", &self.db, "-c", sql])
            .env("PGPASSWORD", env_or("STACK_POSTGRES_PASSWORD", "legacy-secret"))
            .output()
            .expect("run psql");
        assert!(out.status.success(), "psql failed: {}\n{sql}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// What the database holds, as the gateway should show it.
    fn truth(&self) -> BTreeMap<String, Shown> {
        let rows = self.sql(
            "SELECT coalesce(json_agg(json_build_object(
                'order_id', o.order_id::text, 'order_number', o.order_no, 'customer_id', o.customer_ref,
                'status', o.status, 'currency', o.currency, 'total', o.total_amount::text,
                'created_ms', floor(extract(epoch FROM o.ordered_at) * 1000)::bigint,
                'lines', (SELECT coalesce(json_agg(json_build_object('line_id', l.line_no::text, 'sku', l.sku,
                           'name', l.description, 'quantity', l.quantity, 'unit_price', l.unit_price::text,
                           'status', l.status) ORDER BY l.line_no), '[]'::json)
                          FROM legacy.order_lines l WHERE l.order_id = o.order_id))), '[]'::json)
             FROM legacy.orders o",
        );
        #[derive(Deserialize)]
        struct Row {
            order_id: String,
            order_number: String,
            customer_id: String,
            status: String,
            currency: String,
            total: String,
            created_ms: i64,
            lines: Vec<LineRow>,
        }
        #[derive(Deserialize)]
        struct LineRow {
            line_id: String,
            sku: String,
            name: String,
            quantity: u32,
            unit_price: String,
            status: String,
        }
        let rows: Vec<Row> = serde_json::from_str(&rows).expect("psql's json");
        rows.into_iter()
            .map(|r| {
                let shown = Shown {
                    order_number: r.order_number,
                    customer_id: r.customer_id,
                    status: status_of(&r.status),
                    currency: r.currency,
                    total: cents(&r.total),
                    created_ms: r.created_ms,
                    lines: r
                        .lines
                        .into_iter()
                        .map(|l| (l.line_id, l.sku, l.name, l.quantity, cents(&l.unit_price), l.status.to_lowercase()))
                        .collect(),
                };
                (r.order_id, shown)
            })
            .collect()
    }
}

impl Drop for Legacy {
    fn drop(&mut self) {
        // The connector, its offsets and its replication slot (a slot left
        // behind makes PostgreSQL keep WAL for it forever), then the database.
        let _ = Command::new(repo_root().join("scripts/connector.sh"))
            .arg("delete")
            .envs([("CONNECTOR_NAME", &self.name), ("POSTGRES_DB", &self.db), ("CDC_SLOT", &self.db)])
            .output();
        let _ = Command::new(repo_root().join("scripts/stack/postgres/drop-db")).arg(&self.db).output();
    }
}

fn script(path: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(repo_root().join(path))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("run {path}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{path} {args:?} failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The legacy statuses the tests write, as `[cdc.statuses]` maps them.
fn status_of(legacy: &str) -> String {
    match legacy {
        "NEW" => "created",
        "PAID" => "confirmed",
        "SHIPPED" => "shipped",
        "DELIVERED" => "delivered",
        "CANCELED" => "cancelled",
        other => panic!("the tests write no status {other}"),
    }
    .to_string()
}

fn cents(decimal: &str) -> i64 {
    order_gateway::events::debezium::decimal_text(decimal).expect("two decimals")
}

/// An order as a reader sees it, in the legacy database's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shown {
    order_number: String,
    customer_id: String,
    status: String,
    currency: String,
    total: i64,
    created_ms: i64,
    /// (line id, sku, name, quantity, unit price, status), by line number.
    lines: Vec<(String, String, String, u32, i64, String)>,
}

impl Shown {
    fn of(v: &OrderView) -> Option<Shown> {
        let o = v.order.as_ref()?;
        Some(Shown {
            order_number: o.order_number.clone(),
            customer_id: o.customer_id.clone(),
            status: o.status.as_str().to_string(),
            currency: o.currency.clone(),
            total: o.total,
            created_ms: o.created_at.millis(),
            lines: o
                .lines
                .iter()
                .map(|l| {
                    (
                        l.line_id.clone(),
                        l.sku.clone(),
                        l.name.clone(),
                        l.quantity,
                        l.unit_price,
                        l.status.as_str().into(),
                    )
                })
                .collect(),
        })
    }
}

/// Orders `from..=to`, each with one to three lines, inserted in
/// transactions of ten orders (an older OMS's shape: `numeric` money, a
/// local `timestamp`).
fn insert_orders(l: &Legacy, from: u32, to: u32) {
    let mut ids: Vec<u32> = (from..=to).collect();
    while !ids.is_empty() {
        let chunk: Vec<u32> = ids.drain(..ids.len().min(10)).collect();
        let mut sql = String::from("BEGIN;");
        for id in chunk {
            sql += &format!(
                "INSERT INTO legacy.orders (order_id, order_no, customer_ref, status, currency, total_amount, ordered_at)
                 VALUES ({id}, 'L-{id:06}', 'legacy-cust-{}', 'NEW', '{}', {}.{:02},
                         (now() AT TIME ZONE 'UTC') - interval '{} hours');",
                id % 13,
                ["EUR", "USD", "GBP"][id as usize % 3],
                10 + id * 7 % 300,
                id * 37 % 100,
                id % 500,
            );
            for line in 1..=(1 + id % 3) {
                sql += &format!(
                    "INSERT INTO legacy.order_lines (order_id, line_no, sku, description, quantity, unit_price)
                     VALUES ({id}, {line}, 'SKU-{:04}', 'Legacy item {line}', {}, {}.{:02});",
                    (id * 31 + line) % 200,
                    1 + (id + line) % 4,
                    5 + (id * line) % 90,
                    (id * 13 + line) % 100,
                );
            }
        }
        sql += "COMMIT;";
        l.sql(&sql);
    }
}

/// The gateway's answer for one order id: the view, or its HTTP status.
async fn gateway_view(gw: &Gateway, id: &str) -> Result<OrderView, u16> {
    let r = client().get(gw.url(&format!("/v1/orders/{id}"))).send().await.map_err(|_| 0u16)?;
    match r.status().as_u16() {
        200 => r.json().await.map_err(|_| 0),
        s => Err(s),
    }
}

/// Where every store stands against the truth; `None` when all agree.
async fn mismatch(p: &Pipeline, gw: &Gateway, truth: &BTreeMap<String, Shown>, gone: &[String]) -> Option<String> {
    let es: BTreeMap<String, Shown> =
        p.es_docs().await.iter().filter_map(|(id, v)| Some((id.clone(), Shown::of(v)?))).collect();
    if &es != truth {
        let first = truth.iter().find(|(id, s)| es.get(*id) != Some(s)).map(|(id, _)| id.clone());
        let extra = es.keys().find(|id| !truth.contains_key(*id)).cloned();
        return Some(format!(
            "elasticsearch: {} orders for {}; first differing {first:?} got {:?} want {:?}; extra {extra:?}",
            es.len(),
            truth.len(),
            first.as_ref().and_then(|id| es.get(id)),
            first.as_ref().and_then(|id| truth.get(id))
        ));
    }
    let ch = ch_orders(p).await;
    let lines = ch_lines(p).await.unwrap_or_default();
    let mut ch_lines: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for l in lines {
        ch_lines.entry(l.order_id).or_default().push((l.line_id, l.sku, l.name, l.quantity, l.unit_price, l.status));
    }
    let ch_shown: BTreeMap<String, Shown> = ch
        .iter()
        .map(|(id, o)| {
            let mut lines = ch_lines.remove(id).unwrap_or_default();
            lines.sort_by_key(|l| l.0.parse::<u32>().unwrap_or(u32::MAX));
            let shown = Shown {
                order_number: o.order_number.clone(),
                customer_id: o.customer_id.clone(),
                status: o.status.clone(),
                currency: o.currency.clone(),
                total: o.total,
                created_ms: o.created_ms,
                lines,
            };
            (id.clone(), shown)
        })
        .collect();
    if &ch_shown != truth {
        let first = truth.iter().find(|(id, s)| ch_shown.get(*id) != Some(s)).map(|(id, _)| id.clone());
        return Some(format!(
            "clickhouse: {} orders for {}; first differing {first:?}: {:?}",
            ch_shown.len(),
            truth.len(),
            first.as_ref().and_then(|id| ch_shown.get(id))
        ));
    }
    for (id, want) in truth {
        match gateway_view(gw, id).await {
            Ok(v) if Shown::of(&v).as_ref() == Some(want) => {}
            got => return Some(format!("gateway /v1/orders/{id}: {got:?}, want {want:?}")),
        }
    }
    for id in gone {
        if let Ok(v) = gateway_view(gw, id).await {
            return Some(format!("gateway still shows deleted order {id}: {v:?}"));
        }
    }
    None
}

async fn wait_until_shown(p: &Pipeline, gw: &Gateway, l: &Legacy, gone: &[String], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let truth = l.truth();
        let Some(why) = mismatch(p, gw, &truth, gone).await else { return };
        assert!(Instant::now() < deadline, "the stores never showed what PostgreSQL holds: {why}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A gateway on the pipeline's topics and indices, its stream on.
async fn gateway(p: &Pipeline) -> Gateway {
    let mut env: Vec<(&str, &str)> = p.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("ORDER_GATEWAY__STREAM__ENABLED", "true"));
    Gateway::start(&env).await
}

#[tokio::test]
async fn a_legacy_database_reaches_every_read_path_through_debezium() {
    let _one = CONNECT.lock().await;
    let p = Pipeline::new("json");
    p.run(&["setup"]);
    let legacy = Legacy::new(&p);
    // Rows before the connector exists: its initial snapshot (op r) loads them.
    insert_orders(&legacy, 1, 50);
    legacy.connector(&p, "deploy");
    let _ingest = Killed(p.spawn_ingest(100));
    let gw = gateway(&p).await;
    // Rows after: streamed from the write-ahead log (op c).
    insert_orders(&legacy, 51, 200);

    // Updates of the header, a changed line, a deleted line, a new line,
    // deleted orders (their lines go by ON DELETE CASCADE).
    legacy.sql(
        "BEGIN;
         UPDATE legacy.orders SET status = 'PAID', updated_at = now(), row_version = row_version + 1 WHERE order_id % 3 = 0;
         UPDATE legacy.orders SET status = 'SHIPPED', updated_at = now(), row_version = row_version + 1 WHERE order_id % 5 = 0;
         COMMIT;",
    );
    legacy.sql("UPDATE legacy.order_lines SET quantity = quantity + 10, status = 'ALLOCATED' WHERE line_no = 1 AND order_id % 7 = 0");
    legacy.sql("DELETE FROM legacy.order_lines WHERE line_no = 2 AND order_id % 11 = 0");
    legacy.sql(
        "INSERT INTO legacy.order_lines (order_id, line_no, sku, description, quantity, unit_price)
         SELECT order_id, 9, 'SKU-0999', 'Added later', 1, 0.99 FROM legacy.orders WHERE order_id % 19 = 0",
    );
    legacy.sql("UPDATE legacy.orders SET status = 'CANCELED', total_amount = 0 WHERE order_id = 7");
    legacy.sql("DELETE FROM legacy.orders WHERE order_id % 17 = 0");
    let gone: Vec<String> = (1..=200).filter(|i| i % 17 == 0).map(|i| i.to_string()).collect();
    assert_eq!(legacy.sql("SELECT count(*) FROM legacy.orders"), (200 - gone.len()).to_string());

    wait_until_shown(&p, &gw, &legacy, &gone, Duration::from_secs(120)).await;

    // Every other read path: by number, a customer's orders, search.
    let truth = legacy.truth();
    let (id, want) = truth.iter().nth(42).unwrap();
    let by_number: OrderView =
        json_of(client().get(gw.url(&format!("/v1/orders/by-number/{}", want.order_number)))).await;
    assert_eq!((by_number.order_id.as_str(), Shown::of(&by_number).as_ref()), (id.as_str(), Some(want)));
    let customer = &want.customer_id;
    let theirs: Vec<&String> = truth.iter().filter(|(_, s)| &s.customer_id == customer).map(|(id, _)| id).collect();
    let r: Value = json_of(client().get(gw.url(&format!("/v1/customers/{customer}/orders?limit=100")))).await;
    let mut listed: Vec<String> =
        r["orders"].as_array().unwrap().iter().map(|o| o["order_id"].as_str().unwrap().to_string()).collect();
    listed.sort();
    let mut theirs: Vec<String> = theirs.into_iter().cloned().collect();
    theirs.sort();
    assert_eq!(listed, theirs, "customer {customer}'s orders");
    let r: Value = json_of(client().get(gw.url(&format!("/v1/orders?q={}", want.order_number)))).await;
    assert_eq!(r["orders"][0]["order_id"], id.as_str(), "{r}");
    // And the analytics: the orders ClickHouse counts are the database's.
    let now = order_gateway::model::Timestamp::now().millis();
    let range = format!(
        "from={}&to={}",
        order_gateway::model::Timestamp(now - 30 * 86_400_000).to_rfc3339(),
        order_gateway::model::Timestamp(now + 86_400_000).to_rfc3339()
    );
    let k: Value = json_of(client().get(gw.url(&format!("/v1/analytics/kpis?{range}")))).await;
    assert_eq!(k["orders"].as_u64(), Some(truth.len() as u64), "{k}");

    // A row the mapping cannot use goes to the dead-letter topic, with its reason.
    legacy.sql(
        "INSERT INTO legacy.orders (order_id, order_no, customer_ref, status, currency, total_amount, ordered_at)
         VALUES (9999, 'L-009999', 'legacy-cust-1', 'ON_HOLD', 'EUR', 1.00, now())",
    );
    eventually(Duration::from_secs(60), "the unmappable row in the dead-letter topic", || async {
        p.dead_letters()
            .iter()
            .any(|(reason, key, _)| reason == "invalid_field" && key.as_deref() == Some(&b"9999"[..]))
    })
    .await;
    legacy.sql("DELETE FROM legacy.orders WHERE order_id = 9999");

    // An order service's snapshot of a legacy order outranks every CDC change
    // of it: the service owns the order from then on.
    let mut service = order_gateway::model::Order::clone(&p.es_docs().await["1"].order.clone().unwrap());
    service.cdc = None;
    service.version = 1;
    service.channel = order_gateway::model::Channel::Web;
    service.status = order_gateway::model::OrderStatus::Delivered;
    let event = json!({"event_id": "svc-1", "event_type": "order.updated", "source": "digital",
                       "occurred_at": "2026-01-01T00:00:00Z", "schema_version": 1, "order": service});
    p.producer()
        .send(FutureRecord::to(&p.orders).key("1").payload(&event.to_string()), Duration::from_secs(10))
        .await
        .expect("produce");
    legacy.sql("UPDATE legacy.orders SET status = 'CANCELED' WHERE order_id = 1");
    eventually(Duration::from_secs(60), "the service's snapshot of order 1", || async {
        gateway_view(&gw, "1").await.is_ok_and(|v| v.order.as_ref().is_some_and(|o| o.cdc.is_none() && o.version == 1))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let v = gateway_view(&gw, "1").await.unwrap();
    assert_eq!(v.order.as_ref().map(|o| o.status.as_str()), Some("delivered"), "the CDC change after it lost");
    let es = p.es_docs().await;
    assert_eq!(es["1"].order.as_ref().map(|o| (o.version, o.cdc.is_none())), Some((1, true)));

    // Commit to visible through the gateway: one status change at a time.
    let ids: Vec<String> = legacy.truth().into_keys().filter(|id| id != "1").take(40).collect();
    let mut took = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let status = if i % 2 == 0 { "DELIVERED" } else { "SHIPPED" };
        let want = status_of(status);
        let before = gateway_view(&gw, id).await.ok().and_then(|v| v.order.map(|o| o.status.as_str().to_string()));
        let want = if before.as_deref() == Some(want.as_str()) { status_of("PAID") } else { want };
        let legacy_status = match want.as_str() {
            "delivered" => "DELIVERED",
            "shipped" => "SHIPPED",
            _ => "PAID",
        };
        let t0 = Instant::now();
        legacy.sql(&format!(
            "UPDATE legacy.orders SET status = '{legacy_status}', updated_at = now() WHERE order_id = {id}"
        ));
        loop {
            if gateway_view(&gw, id).await.is_ok_and(|v| v.order.is_some_and(|o| o.status.as_str() == want)) {
                took.push(t0.elapsed());
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "order {id} never showed {want}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    took.sort();
    println!(
        "cdc commit->visible through the gateway, {} sequential updates: p50 {:?}, p99 {:?}, max {:?}",
        took.len(),
        quantile(&took, 0.5),
        quantile(&took, 0.99),
        took.last().unwrap()
    );
}

#[tokio::test]
async fn a_restarted_connect_worker_loses_nothing() {
    let _one = CONNECT.lock().await;
    let p = Pipeline::new("json");
    p.run(&["setup"]);
    let legacy = Legacy::new(&p);
    legacy.connector(&p, "deploy");
    let _ingest = Killed(p.spawn_ingest(100));
    let gw = gateway(&p).await;
    insert_orders(&legacy, 1, 60);
    // The worker stops mid-stream; the database goes on being written.
    stack("stop", "connect");
    insert_orders(&legacy, 61, 120);
    legacy.sql("UPDATE legacy.orders SET status = 'SHIPPED' WHERE order_id % 4 = 0");
    legacy.sql("DELETE FROM legacy.orders WHERE order_id IN (3, 66)");
    stack("start", "connect");
    // The connector resumes from its committed offset (the slot kept the WAL).
    let started = Instant::now();
    while Command::new(repo_root().join("scripts/connector.sh"))
        .arg("status")
        .envs(legacy.connector_env(&p))
        .output()
        .map_or(true, |o| !o.status.success())
    {
        assert!(started.elapsed() < Duration::from_secs(90), "the connector did not run again after the restart");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    insert_orders(&legacy, 121, 150);
    wait_until_shown(&p, &gw, &legacy, &["3".to_string(), "66".to_string()], Duration::from_secs(180)).await;
}
