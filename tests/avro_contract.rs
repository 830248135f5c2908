//! The Avro contract against the real stack (issue 11): a producer whose
//! writer schema differs from `schemas/avro` only in a logical type
//! (`timestamp-micros` where the contract has `timestamp-millis`) registers it
//! in the schema registry and writes Confluent-framed events with it; the
//! gateway's stream must read their instants in milliseconds, as it reads the
//! same order written with the contract.

mod common;

use std::time::Duration;

use apache_avro::types::Value;
use apache_avro::Schema;
use common::world::*;
use common::*;
use order_gateway::backends::schema_registry::RegistryClient;
use order_gateway::events::avro::ORDER_EVENT_AVSC;
use order_gateway::model::{Event, OrderView, Timestamp};
use rdkafka::producer::FutureRecord;

/// `value` with every `timestamp-millis` replaced by `retime` of its milliseconds.
fn retimed(value: Value, retime: &impl Fn(i64) -> Value) -> Value {
    match value {
        Value::TimestampMillis(ms) => retime(ms),
        Value::Union(i, v) => Value::Union(i, Box::new(retimed(*v, retime))),
        Value::Record(fields) => Value::Record(fields.into_iter().map(|(k, v)| (k, retimed(v, retime))).collect()),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| retimed(v, retime)).collect()),
        other => other,
    }
}

/// `event` as a producer on `writer` (the contract with microsecond instants)
/// frames it: the same instants, in microseconds plus a sub-millisecond part.
fn framed_in_micros(event: &Event, writer: &Schema, schema_id: u32) -> Vec<u8> {
    let contract = Schema::parse_str(ORDER_EVENT_AVSC).unwrap();
    let in_millis = order_gateway::events::encode_avro(event, 0);
    let value = apache_avro::from_avro_datum(&contract, &mut &in_millis[5..], None).unwrap();
    let value = retimed(value, &|ms| Value::TimestampMicros(ms * 1_000 + 456));
    let mut out = vec![0];
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(&apache_avro::to_avro_datum(writer, value).unwrap());
    out
}

#[tokio::test]
async fn an_order_written_with_timestamp_micros_is_served_with_its_millisecond_timestamps() {
    // World's setup registers the contract under `<orders topic>-value`; its
    // topics are JSON, the gateway below reads them as Avro (the later variable wins).
    let w = World::new();
    let gw = w.gateway(&[("ORDER_GATEWAY__TOPICS__ORDERS_FORMAT", "avro")]).await;
    let registry = RegistryClient::new(&order_gateway::config::Config::load(None).unwrap().schema_registry).unwrap();
    let subject = format!("{}-value", w.orders_topic);

    // The producer's schema: the contract, every instant in microseconds.
    let micros_avsc = ORDER_EVENT_AVSC.replace("\"timestamp-millis\"", "\"timestamp-micros\"");
    assert_ne!(micros_avsc, ORDER_EVENT_AVSC);
    let micros_schema = Schema::parse_str(&micros_avsc).unwrap();
    let contract_id =
        registry.lookup(&subject, ORDER_EVENT_AVSC).await.unwrap().expect("setup registered the contract");
    let micros_id = registry.register(&subject, &micros_avsc).await.unwrap();
    assert_ne!(micros_id, contract_id, "the registry tells the micros variant from the contract");
    // What the gateway fetches by id still says micros.
    let fetched: serde_json::Value =
        registry.get(&format!("schemas/ids/{micros_id}")).send().await.unwrap().json().await.unwrap();
    let fetched = Schema::parse_str(fetched["schema"].as_str().unwrap()).unwrap();
    assert_eq!(fetched.canonical_form(), micros_schema.canonical_form());
    assert!(serde_json::to_string(&fetched).unwrap().contains("timestamp-micros"));

    // Two orders with the same instants: one written with the contract, one
    // with the micros variant (whose Parsing Canonical Form is the contract's).
    let created = Timestamp(Timestamp::now().millis() - 60_000);
    let make = |tag: &str| {
        // Version 1: a brand-new order, complete from its first event (the
        // cache then answers it without asking Elasticsearch).
        let mut o = order(&format!("ac-{tag}-{}", uuid::Uuid::new_v4().simple()), 1);
        o.created_at = created;
        o.updated_at = Timestamp(created.millis() + 1_234);
        o.promised_delivery_at = Some(Timestamp(created.millis() + 3 * 86_400_000));
        o
    };
    let (via_contract, via_micros) = (make("millis"), make("micros"));
    let p = producer();
    for (o, payload) in [
        (&via_contract, order_gateway::events::encode_avro(&order_event(via_contract.clone()), contract_id)),
        (&via_micros, framed_in_micros(&order_event(via_micros.clone()), &micros_schema, micros_id)),
    ] {
        p.send(FutureRecord::to(&w.orders_topic).key(&o.order_id).payload(&payload), Duration::from_secs(10))
            .await
            .unwrap();
    }

    let c = client();
    for want in [&via_contract, &via_micros] {
        let url = gw.url(&format!("/v1/orders/{}", want.order_id));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let got = loop {
            let r = c.get(&url).send().await.unwrap();
            if r.status() == 200 {
                break r.json::<OrderView>().await.unwrap().order.expect("an order");
            }
            if std::time::Instant::now() >= deadline {
                let (status, body) = (r.status(), r.text().await.unwrap());
                let metrics = c.get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
                let stream: Vec<&str> =
                    metrics.lines().filter(|l| l.contains("stream") || l.contains("decode")).collect();
                panic!(
                    "{} not served from the stream within 20s: {status} {body}\n{}",
                    want.order_id,
                    stream.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        println!(
            "{}: created_at {} updated_at {} promised_delivery_at {:?}",
            got.order_id,
            got.created_at.to_rfc3339(),
            got.updated_at.to_rfc3339(),
            got.promised_delivery_at.map(|t| t.to_rfc3339())
        );
        assert_eq!(got.created_at, created, "{}", want.order_id);
        assert_eq!(got.updated_at, want.updated_at, "{}", want.order_id);
        assert_eq!(got.promised_delivery_at, want.promised_delivery_at, "{}", want.order_id);
        assert_eq!(&got, want);
    }
}
