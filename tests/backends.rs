//! Contract tests: the gateway's own backend clients against the real servers
//! of the local stack (scripts/stack). Each test uses names of its own.

mod common;

use std::time::Duration;

use common::*;
use order_gateway::backends::Backends;
use order_gateway::config::Config;

fn backends() -> Backends {
    let cfg = Config::load(None).expect("configuration from the environment");
    Backends::from_config(&cfg).expect("clients")
}

/// Every probe answers. Elasticsearch's looks at the indices behind the read
/// alias only: a missing alias is said, with what to do.
#[tokio::test]
async fn every_backend_answers_its_probe() {
    let alias = es_alias().await;
    let mut cfg = Config::load(None).expect("configuration from the environment");
    cfg.elasticsearch.read_alias = alias.clone();
    let b = Backends::from_config(&cfg).expect("clients");
    for backend in order_gateway::backends::Backend::ALL {
        let detail = b.ping(backend).await.unwrap_or_else(|e| panic!("{backend}: {e}"));
        assert!(!detail.is_empty());
    }

    cfg.elasticsearch.read_alias = alias_of(&unique("it_no_such_alias"));
    let err = Backends::from_config(&cfg).unwrap().ping(order_gateway::backends::Backend::Elasticsearch).await;
    let err = err.expect_err("no index behind the alias").to_string();
    assert!(err.contains("names no index") && err.contains("setup"), "{err}");
    bare_client().delete(format!("{}/{alias}-000001", es_url())).send().await.unwrap();
}

#[tokio::test]
async fn kafka_produce_then_consume() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::producer::FutureRecord;
    use rdkafka::{ClientConfig, TopicPartitionList};

    let topic = unique("it_kafka");
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", kafka_brokers()).create().unwrap();
    let created = admin
        .create_topics(&[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .unwrap();
    assert!(created[0].is_ok(), "create topic: {:?}", created[0]);

    let b = backends();
    let delivered = b.kafka.send("produce", FutureRecord::to(&topic).key("order-1").payload("hello")).await;
    assert!(delivered.is_ok(), "produce: {:?}", delivered.err());

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", unique("it_group"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let msg = tokio::task::spawn_blocking(move || {
        for _ in 0..20 {
            if let Some(m) = consumer.poll(Duration::from_millis(500)) {
                let m = m.expect("consume");
                return Some((m.key().map(|k| k.to_vec()), m.payload().map(|p| p.to_vec())));
            }
        }
        None
    })
    .await
    .unwrap()
    .expect("a message within 10s");
    assert_eq!(msg.0.as_deref(), Some(&b"order-1"[..]));
    assert_eq!(msg.1.as_deref(), Some(&b"hello"[..]));
    let _ = admin.delete_topics(&[&topic], &AdminOptions::new()).await;
}

#[tokio::test]
async fn elasticsearch_conditional_writes_then_versioned_reads() {
    use order_gateway::backends::elasticsearch::{BulkItem, BulkOp};
    use order_gateway::model::{Component, OrderView};

    let index = unique("it-es").to_lowercase();
    let b = backends();
    let es = &b.elasticsearch;
    assert!(es.create_index(&index, serde_json::json!({})).await.unwrap(), "created");
    assert!(!es.create_index(&index, serde_json::json!({})).await.unwrap(), "a second create finds it");
    let view = |version| {
        let mut v = OrderView::new("o-1");
        v.apply(Component::Order(common::world::order("o-1", version)));
        v
    };
    let (v1, v2) = (view(1), view(2));

    let items = es.bulk(&[BulkOp::Create { id: "o-1", index: &index, view: &v1 }]).await.unwrap();
    let BulkItem::Done(Some(written)) = &items[0] else { panic!("create: {items:?}") };
    es.refresh(&index).await.unwrap();
    let got = es.get_versioned(&index, &["o-1", "o-2"]).await.unwrap();
    assert_eq!(got, [(written.clone(), v1.clone())], "o-2 does not exist");

    // A write that quotes an outdated version is a conflict, the current one wins.
    let replace = |seq_no| BulkOp::Replace {
        id: "o-1",
        index: &written.index,
        seq_no,
        primary_term: written.primary_term,
        view: &v2,
    };
    let items = es.bulk(&[replace(written.seq_no + 1)]).await.unwrap();
    assert_eq!(items, [BulkItem::Conflict]);
    let items = es.bulk(&[replace(written.seq_no)]).await.unwrap();
    let BulkItem::Done(Some(now)) = &items[0] else { panic!("replace: {items:?}") };
    let items = es
        .bulk(&[
            BulkOp::Create { id: "o-1", index: &index, view: &v1 },
            BulkOp::Delete { id: "o-1", index: &index, seq_no: now.seq_no, primary_term: now.primary_term },
            BulkOp::Delete { id: "o-9", index: &index, seq_no: 0, primary_term: 1 },
        ])
        .await
        .unwrap();
    // A conditional delete of a document that is not there is a conflict too:
    // the writer reads again and finds nothing to delete.
    assert!(matches!(items[..], [BulkItem::Conflict, BulkItem::Done(_), BulkItem::Conflict]), "{items:?}");
    es.delete_index(&index).await.unwrap();
}

#[tokio::test]
async fn clickhouse_ddl_inserts_then_latest_view() {
    use order_gateway::model::{Component, Fulfillment};

    let mut cfg = Config::load(None).expect("configuration from the environment");
    cfg.clickhouse.database = unique("it_ch");
    let b = Backends::from_config(&cfg).expect("clients");
    let ch = &b.clickhouse;
    ch.create_database().await.unwrap();
    for stmt in order_gateway::setup::split_sql(order_gateway::setup::CLICKHOUSE_DDL) {
        ch.execute_ddl("table", &stmt).await.unwrap();
    }
    assert_eq!(ch.tables().await.unwrap().len(), 8);

    let fulfillment = Fulfillment {
        fulfillment_id: "F1".into(),
        order_id: "o-1".into(),
        kind: "ship".parse().unwrap(),
        status: "shipped".parse().unwrap(),
        carrier: Some("DHL".into()),
        tracking_number: None,
        line_ids: vec![],
        shipped_at: Some(order_gateway::model::Timestamp(1_700_000_000_123)),
        delivered_at: None,
        version: 1,
    };
    for version in [1, 3, 2] {
        let order = Component::Order(common::world::order("o-1", version));
        let inserted = ch.insert(&[&order]).await.unwrap();
        assert_eq!((inserted.orders, inserted.fulfillments), (1, 0));
    }
    ch.insert(&[&Component::Fulfillment(fulfillment.clone())]).await.unwrap();

    let views = ch.get_orders(&["o-1", "o-2"], None).await.unwrap();
    assert_eq!(views.len(), 1, "o-2 was never inserted");
    assert_eq!(views[0].order.as_ref().map(|o| o.version), Some(3), "the latest version");
    assert_eq!(views[0].fulfillments, [fulfillment]);
    let known = ch.known_orders(&["o-1", "o-2"]).await.unwrap();
    // Ranked as the merge ranks it: an order service's version 3.
    let ranked = order_gateway::model::ranked_version(&views[0].order.clone().unwrap());
    assert_eq!(known.iter().map(|k| (k.order_id.as_str(), k.max_version)).collect::<Vec<_>>(), [("o-1", ranked)]);
    ch.execute_ddl("drop", &format!("DROP DATABASE `{}`", ch.database())).await.unwrap();
}

#[tokio::test]
async fn schema_registry_register_then_fetch_by_id() {
    let subject = format!("{}-value", unique("it_subject"));
    let schema = r#"{"type":"record","name":"Ping","namespace":"it","fields":[{"name":"id","type":"string"}]}"#;
    let http = client();
    let resp = http
        .post(format!("{}/subjects/{subject}/versions", registry_url()))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .json(&serde_json::json!({"schema": schema, "schemaType": "AVRO"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "register: {}", resp.text().await.unwrap());
    let id = resp.json::<serde_json::Value>().await.unwrap()["id"].as_i64().expect("an id");

    // Fetched back through the gateway's own client, as the decoder will.
    let b = backends();
    let fetched: serde_json::Value =
        b.schema_registry.get(&format!("schemas/ids/{id}")).send().await.unwrap().json().await.unwrap();
    let got: serde_json::Value = serde_json::from_str(fetched["schema"].as_str().unwrap()).unwrap();
    let want: serde_json::Value = serde_json::from_str(schema).unwrap();
    assert_eq!(got, want);
}
