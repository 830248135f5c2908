//! A flood of lookups of unknown order numbers against the real stack. A
//! binary of its own: it loads a million ClickHouse rows and sends hundreds
//! of concurrent requests, which starved the latency-sensitive tests of
//! tests/read_path.rs when they ran beside it.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::world::*;
use common::*;
use order_gateway::model::Timestamp;

/// The value of a series in the gateway's /metrics (0 when it is absent).
async fn series(gw: &Gateway, name: &str) -> f64 {
    let text = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
}

/// Issue 12. A flood of lookups of unknown order numbers used to scan
/// `orders_latest FINAL` once per request, time out, and open the one
/// ClickHouse circuit, so lookups of old orders and analytics answered 503 as
/// well. Here `orders` holds a million rows, so a scan is slow; the numbers
/// are looked up 300 times, 100 at a time. Every lookup answers 404, an order
/// that only ClickHouse holds and a KPI query still answer 200, ClickHouse
/// saw one lookup per number, and a second burst of the same numbers does
/// not reach it at all.
#[tokio::test]
async fn a_flood_of_unknown_numbers_leaves_old_orders_and_analytics_answering() {
    use order_gateway::model::Component;

    let w = World::new();
    let db = w.env.iter().find(|(k, _)| k == "ORDER_GATEWAY__CLICKHOUSE__DATABASE").unwrap().1.clone();
    let sql = clickhouse::Client::default().with_url(clickhouse_url()).with_database(&db);
    sql.query(
        "INSERT INTO orders (order_id, order_number, customer_id, channel, status, currency, subtotal, tax, shipping, \
         discount, total, units, line_count, country, promised_delivery_at, created_at, updated_at, version, is_deleted) \
         SELECT concat('bulk-', toString(number)), concat('BULK-', toString(number)), 'cust-bulk', 'web', 'delivered', \
         'EUR', 1000, 0, 0, 0, 1000, 1, 1, 'DE', NULL, \
         toDateTime64('2005-01-01 00:00:00', 3, 'UTC') + toIntervalSecond(number * 30), \
         toDateTime64('2005-01-01 00:00:00', 3, 'UTC'), 1, 0 FROM numbers(1000000)",
    )
    .execute()
    .await
    .unwrap();
    // An order older than the hot window: in ClickHouse only, written as ingest writes it.
    let mut cfg = order_gateway::config::Config::load(None).unwrap();
    cfg.clickhouse.database = db.clone();
    let ch = order_gateway::backends::Backends::from_config(&cfg).unwrap().clickhouse;
    let old_id = format!("rp-old-{}", uuid::Uuid::new_v4().simple());
    let mut old = order(&old_id, 4);
    old.created_at = Timestamp(Timestamp::now().millis() - 3 * 365 * 86_400_000);
    ch.insert(&[&Component::Order(old)]).await.unwrap();

    // Long enough that no remembered miss expires while the test runs.
    let gw = Arc::new(w.gateway(&[("ORDER_GATEWAY__CACHE__NEGATIVE_TTL", "10m")]).await);
    let numbers: Vec<String> = (0..30).map(|i| format!("NOPE-{}-{i}", uuid::Uuid::new_v4().simple())).collect();
    let lookups = "backend_call_duration_seconds_count{backend=\"clickhouse\",call=\"find_by_number\"}";
    let burst = |gw: Arc<Gateway>, numbers: Vec<String>| async move {
        let mut statuses: HashMap<u16, usize> = HashMap::new();
        for wave in 0..3 {
            let tasks: Vec<_> = (0..100)
                .map(|i| {
                    let (gw, number) = (gw.clone(), numbers[(wave * 100 + i) % numbers.len()].clone());
                    tokio::spawn(async move {
                        let url = gw.url(&format!("/v1/orders/by-number/{number}"));
                        client().get(url).send().await.unwrap().status().as_u16()
                    })
                })
                .collect();
            for t in tasks {
                *statuses.entry(t.await.unwrap()).or_default() += 1;
            }
        }
        statuses
    };

    let statuses = burst(gw.clone(), numbers.clone()).await;
    assert_eq!(statuses, HashMap::from([(404, 300)]), "every lookup of an unknown number is a 404");
    let c = client();
    let (headers, body) = expect_json(c.get(gw.url(&format!("/v1/orders/{old_id}"))), 200).await;
    assert_eq!((headers["x-cache"].to_str().unwrap(), version_of(&body)), ("MISS", 4), "read from ClickHouse");
    let now = Timestamp::now();
    let kpis = format!("/v1/analytics/kpis?from=2020-01-01T00:00:00Z&to={}", now.to_rfc3339());
    let (_, k) = expect_json(c.get(gw.url(&kpis)), 200).await;
    assert_eq!(k["orders"], 1, "the old order, and none of the bulk rows of 2005: {k}");
    let after_first = series(&gw, lookups).await;
    assert_eq!(after_first, numbers.len() as f64, "one ClickHouse lookup per number, however many asked for it");

    let statuses = burst(gw.clone(), numbers.clone()).await;
    assert_eq!(statuses, HashMap::from([(404, 300)]));
    assert_eq!(series(&gw, lookups).await, after_first, "the second burst is answered by the negative cache");
    sql.query(&format!("DROP DATABASE `{db}`")).execute().await.unwrap();
}
