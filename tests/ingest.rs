//! The ingest pipeline end to end against the real stack: `setup`, `seed` and
//! `ingest` run as the binary, each test with topics, aliases, a ClickHouse
//! database and a consumer group of its own.

mod common;

use std::time::Duration;

use common::pipeline::*;
use common::*;
use order_gateway::model::{Component, Envelope, Event, Order, OrderView, Timestamp};
use rdkafka::producer::FutureRecord;

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
    let letters = p.dead_letters();
    if !letters.is_empty() {
        // Why: the reasons, and whether ingest retried batches (a retry
        // replays a batch that may already be in Elasticsearch).
        let reasons: std::collections::BTreeSet<&str> = letters.iter().map(|(r, _, _)| r.as_str()).collect();
        let metrics = bare_client().get(p.ingest_metrics_url()).send().await.unwrap().text().await.unwrap();
        let counts: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("ingest_batch_retries_total") || l.starts_with("ingest_dead_letters_total"))
            .collect();
        panic!(
            "a clean seed dead-letters nothing: {} letter(s), reasons {reasons:?}, ingest's {counts:?}",
            letters.len()
        );
    }

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
            cdc: None,
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
