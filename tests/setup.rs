//! `order-gateway setup` against the real stack: idempotent, and rollover.

mod common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};

struct Names {
    env: Vec<(String, String)>,
    alias: String,
    db: String,
    topics: Vec<String>,
}

fn names() -> Names {
    let id = unique("itsetup");
    let alias = alias_of(&id);
    let topics = vec![
        format!("{id}.orders"),
        format!("{id}.fulfillments"),
        format!("{id}.dlq"),
        format!("{id}.legacy.orders"),
        format!("{id}.legacy.order_lines"),
    ];
    let env = isolated_env(&id, true);
    Names { env, alias, db: id, topics }
}

fn setup(n: &Names, extra: &[&str], env: &[(&str, &str)]) -> String {
    let _one_at_a_time = one_setup_at_a_time();
    let out = Command::new(env!("CARGO_BIN_EXE_order-gateway"))
        .arg("setup")
        .args(extra)
        .envs(n.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "setup failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// Everything setup manages, as observed on the backends.
async fn observe(n: &Names) -> Value {
    let http = client();
    let get = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().json::<Value>().await.unwrap_or(Value::Null) }
    };
    let template = get(format!("{}/_index_template/{}", es_url(), n.alias)).await;
    let indices = get(format!("{}/_alias/{}", es_url(), n.alias)).await;
    let mut subjects = Vec::new();
    for t in &n.topics[..2] {
        subjects.push(get(format!("{}/subjects/{t}-value/versions/latest", registry_url())).await["id"].clone());
    }
    let tables: Vec<String> = clickhouse::Client::default()
        .with_url(clickhouse_url())
        .query("SELECT name FROM system.tables WHERE database = ? ORDER BY name")
        .bind(&n.db)
        .fetch_all()
        .await
        .unwrap();
    let consumer: rdkafka::consumer::BaseConsumer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", kafka_brokers()).create().unwrap();
    let md = rdkafka::consumer::Consumer::fetch_metadata(&consumer, None, std::time::Duration::from_secs(5)).unwrap();
    let topics: Vec<(String, usize)> = n
        .topics
        .iter()
        .map(|t| (t.clone(), md.topics().iter().find(|x| x.name() == t).map_or(0, |x| x.partitions().len())))
        .collect();
    json!({ "template": template, "indices": indices, "subjects": subjects, "tables": tables, "topics": topics })
}

#[tokio::test]
async fn setup_twice_changes_nothing_the_second_time() {
    let n = names();
    let first = setup(&n, &[], &[]);
    assert!(first.contains("created"), "{first}");
    let after_first = observe(&n).await;
    assert_eq!(after_first["tables"].as_array().unwrap().len(), 8, "{after_first}");
    assert!(after_first["topics"].as_array().unwrap().iter().all(|t| t[1] == 3), "{after_first}");
    assert!(after_first["subjects"].as_array().unwrap().iter().all(Value::is_number), "{after_first}");
    assert!(after_first["indices"].get(format!("{}-000001", n.alias)).is_some(), "{after_first}");

    let second = setup(&n, &[], &[]);
    assert!(!second.contains(": created") && !second.contains(": updated"), "second run changed something:\n{second}");
    assert_eq!(observe(&n).await, after_first, "state after the second run differs");
}

#[tokio::test]
async fn rollover_moves_the_write_alias_when_the_index_is_full() {
    let n = names();
    setup(&n, &[], &[]);
    let http = client();
    for id in ["a", "b"] {
        let doc = json!({"order_id": id, "order": null, "fulfillments": []});
        let r =
            http.put(format!("{}/{}-write/_doc/{id}?refresh=true", es_url(), n.alias)).json(&doc).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
    let out = setup(&n, &["--rollover"], &[("ORDER_GATEWAY__SETUP__ROLLOVER_MAX_DOCS", "1")]);
    assert!(out.contains("rolled over"), "{out}");
    let aliases: Value = json_of(http.get(format!("{}/_alias/{}-write", es_url(), n.alias))).await;
    let new_index = format!("{}-000002", n.alias);
    assert_eq!(aliases[&new_index]["aliases"][format!("{}-write", n.alias)]["is_write_index"], true, "{aliases}");
    let read: Value = json_of(http.get(format!("{}/_alias/{}", es_url(), n.alias))).await;
    assert!(read.get(format!("{}-000001", n.alias)).is_some() && read.get(&new_index).is_some(), "{read}");
    // Nothing to roll over the second time: the new index is empty.
    let again = setup(&n, &["--rollover"], &[("ORDER_GATEWAY__SETUP__ROLLOVER_MAX_DOCS", "1")]);
    assert!(again.contains("not needed"), "{again}");
}

/// An existing deployment (tables made before `order_numbers`, orders in
/// them): setup adds the table and its view and copies the numbers already
/// there; new inserts reach it through the view; a second run changes nothing.
#[tokio::test]
async fn setup_adds_order_numbers_to_an_existing_deployment() {
    use order_gateway::model::Component;
    use order_gateway::setup::{created_name, split_sql, CLICKHOUSE_DDL};

    let n = names();
    let mut cfg = order_gateway::config::Config::load(None).expect("configuration from the environment");
    cfg.clickhouse.database = n.db.clone();
    let ch = order_gateway::backends::Backends::from_config(&cfg).unwrap().clickhouse;
    ch.create_database().await.unwrap();
    for stmt in split_sql(CLICKHOUSE_DDL) {
        // An older release: no order numbers, and `orders` without the `cdc` column.
        if created_name(&stmt).is_some_and(|n| !n.starts_with("order_numbers")) {
            let stmt: String =
                stmt.lines().filter(|l| !l.trim_start().starts_with("cdc ")).collect::<Vec<_>>().join("\n");
            ch.execute_ddl("the tables of an older release", &stmt).await.unwrap();
        }
    }
    let mut old = common::world::order("old-1", 1);
    // Another month, so another partition: the copy goes partition by partition.
    old.created_at = order_gateway::model::Timestamp(old.created_at.millis() - 40 * 86_400_000);
    // Written as that release wrote them (its `orders` has no `cdc` column).
    for o in [old, common::world::order("old-2", 3)] {
        let insert = format!(
            "INSERT INTO orders (order_id, order_number, customer_id, channel, status, currency, subtotal, tax, \
             shipping, discount, total, units, line_count, country, created_at, updated_at, version, is_deleted) \
             VALUES ('{}', '{}', '{}', 'web', 'created', 'EUR', 1, 0, 0, 0, 1, 1, 1, '', \
             fromUnixTimestamp64Milli({}), fromUnixTimestamp64Milli({}), {}, 0)",
            o.order_id,
            o.order_number,
            o.customer_id,
            o.created_at.millis(),
            o.updated_at.millis(),
            o.version
        );
        ch.execute_ddl("rows of an older release", &insert).await.unwrap();
    }

    let first = setup(&n, &["--only", "clickhouse"], &[]);
    let db = &n.db;
    for line in [
        format!("clickhouse table {db}.orders: updated (columns cdc added)"),
        format!("clickhouse table {db}.order_numbers: created"),
        format!("clickhouse materialized view {db}.order_numbers_mv: created"),
        format!("clickhouse table {db}.order_numbers: updated (numbers of the orders already in {db}.orders copied, 2 partition(s))"),
    ] {
        assert!(first.lines().any(|l| l == line), "no line {line:?} in\n{first}");
    }
    ch.insert(&[&Component::Order(common::world::order("new-1", 1))]).await.unwrap();
    let sql = clickhouse::Client::default().with_url(clickhouse_url()).with_database(db);
    let rows: Vec<(String, String)> = sql
        .query("SELECT order_number, order_id FROM order_numbers FINAL ORDER BY order_id")
        .fetch_all()
        .await
        .unwrap();
    let want = [("ON-new-1", "new-1"), ("ON-old-1", "old-1"), ("ON-old-2", "old-2")].map(|(a, b)| (a.into(), b.into()));
    assert_eq!(rows, want);
    assert_eq!(ch.find_by_number("ON-old-1", None).await.unwrap().as_deref(), Some("old-1"));
    assert_eq!(ch.find_by_number("ON-none", None).await.unwrap(), None);
    let comment = ch.table_comment("order_numbers").await.unwrap().unwrap();
    assert!(comment != order_gateway::setup::NUMBERS_PENDING, "the copy is marked done: {comment}");

    let second = setup(&n, &["--only", "clickhouse"], &[]);
    assert!(!second.contains(": created") && !second.contains(": updated"), "second run changed something:\n{second}");
    ch.execute_ddl("drop", &format!("DROP DATABASE `{db}`")).await.unwrap();
}
