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

#[tokio::test]
async fn every_backend_answers_its_probe() {
    let b = backends();
    for backend in order_gateway::backends::Backend::ALL {
        let detail = b.ping(backend).await.unwrap_or_else(|e| panic!("{backend}: {e}"));
        assert!(!detail.is_empty());
    }
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
    let delivered = b
        .kafka
        .producer()
        .send(FutureRecord::to(&topic).key("order-1").payload("hello"), Duration::from_secs(10))
        .await;
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
async fn elasticsearch_index_then_get() {
    use elasticsearch::indices::IndicesDeleteParts;
    use elasticsearch::params::Refresh;
    use elasticsearch::{GetParts, IndexParts};

    let index = unique("it-es").to_lowercase();
    let b = backends();
    let es = b.elasticsearch.client();
    let doc = serde_json::json!({"order_id": "o-1", "total": 1234, "status": "created"});
    let resp =
        es.index(IndexParts::IndexId(&index, "o-1")).refresh(Refresh::True).body(doc.clone()).send().await.unwrap();
    assert!(resp.status_code().is_success(), "index: {}", resp.text().await.unwrap());
    let got: serde_json::Value = es.get(GetParts::IndexId(&index, "o-1")).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["found"], true);
    assert_eq!(got["_source"], doc);
    es.indices().delete(IndicesDeleteParts::Index(&[&index])).send().await.unwrap();
}

#[tokio::test]
async fn clickhouse_insert_then_select_latest() {
    use serde::{Deserialize, Serialize};

    #[derive(clickhouse::Row, Serialize, Deserialize, Debug, PartialEq)]
    struct Row {
        order_id: String,
        status: String,
        version: u64,
    }

    let table = unique("it_ch");
    let b = backends();
    let ch = b.clickhouse.client();
    ch.query(&format!(
        "CREATE TABLE {table} (order_id String, status String, version UInt64) \
         ENGINE = ReplacingMergeTree(version) ORDER BY order_id"
    ))
    .execute()
    .await
    .unwrap();
    let mut insert = ch.insert::<Row>(&table).await.unwrap();
    for (status, version) in [("created", 1), ("shipped", 3), ("confirmed", 2)] {
        insert.write(&Row { order_id: "o-1".into(), status: status.into(), version }).await.unwrap();
    }
    insert.end().await.unwrap();
    let latest: Row = ch
        .query(&format!("SELECT ?fields FROM {table} FINAL WHERE order_id = ?"))
        .bind("o-1")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(latest, Row { order_id: "o-1".into(), status: "shipped".into(), version: 3 });
    ch.query(&format!("DROP TABLE {table}")).execute().await.unwrap();
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
