//! A read-path world: unique topics, aliases and database created by `setup`,
//! and helpers to write orders into it.
#![allow(dead_code)]

use std::time::Duration;

use order_gateway::model::{Channel, Component, Envelope, Event, Order, OrderStatus, OrderView, Timestamp};
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;
use serde_json::Value;

use super::*;

/// Unique topics, aliases and database, created by `setup`, and a gateway reading them.
pub struct World {
    pub env: Vec<(String, String)>,
    pub orders_topic: String,
    pub alias: String,
}

impl World {
    pub fn new() -> World {
        let id = unique("rp");
        let alias = alias_of(&id);
        let mut env = isolated_env(&id, false);
        for k in ["ORDER_GATEWAY__TOPICS__ORDERS_FORMAT", "ORDER_GATEWAY__TOPICS__FULFILLMENTS_FORMAT"] {
            env.push((k.to_string(), "json".to_string()));
        }
        let one_at_a_time = one_setup_at_a_time();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_order-gateway"))
            .arg("setup")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        drop(one_at_a_time);
        assert!(out.status.success(), "setup: {}", String::from_utf8_lossy(&out.stderr));
        World { env, orders_topic: format!("{id}.orders"), alias }
    }

    pub async fn gateway(&self, extra: &[(&str, &str)]) -> Gateway {
        let mut env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.push(("ORDER_GATEWAY__STREAM__ENABLED", "true"));
        env.extend_from_slice(extra);
        let gw = Gateway::start(&env).await;
        // The stream assigns its partitions at the end: wait until it has.
        let c = client();
        eventually(Duration::from_secs(20), "the stream assigned", || async {
            let v: Value = json_of(c.get(gw.url("/readyz"))).await;
            v["checks"]["stream"]["assigned"] == true
        })
        .await;
        gw
    }

    /// Indexes a view straight into Elasticsearch (as ingest would).
    pub async fn index(&self, view: &OrderView) {
        let r = client()
            .put(format!("{}/{}-write/_doc/{}?refresh=true", es_url(), self.alias, view.order_id))
            .json(view)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }

    /// Indexes many views in `_bulk` requests of 2,000, refreshed at the end.
    pub async fn index_many(&self, views: &[OrderView]) {
        for chunk in views.chunks(2000) {
            let mut body = String::new();
            for v in chunk {
                body.push_str(&serde_json::json!({ "index": { "_id": v.order_id } }).to_string());
                body.push('\n');
                body.push_str(&serde_json::to_string(v).unwrap());
                body.push('\n');
            }
            let r = client()
                .post(format!("{}/{}-write/_bulk?refresh=true", es_url(), self.alias))
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let answer: Value = r.json().await.unwrap();
            assert!(status.is_success() && answer["errors"] == false, "bulk: {answer}");
        }
    }

    /// Indexes the view of `order` alone, as [`World::index`] does, and returns it.
    pub async fn index_order(&self, order: Order) -> OrderView {
        let view = OrderView::from_component(Component::Order(order));
        self.index(&view).await;
        view
    }

    pub async fn es_search_count(&self) -> u64 {
        let v: Value = json_of(client().get(format!("{}/{}/_stats/search", es_url(), self.alias))).await;
        v["_all"]["primaries"]["search"]["query_total"].as_u64().unwrap_or(0)
    }
}

pub fn order(id: &str, version: u64) -> Order {
    Order {
        order_id: id.into(),
        order_number: format!("ON-{id}"),
        customer_id: "cust-rp".into(),
        channel: Channel::Web,
        status: if version == 1 { OrderStatus::Created } else { OrderStatus::Confirmed },
        currency: "EUR".into(),
        subtotal: 1000,
        tax: 190,
        shipping: 0,
        discount: 0,
        total: 1190,
        lines: vec![],
        shipping_address: None,
        email: Some("someone@example.com".into()),
        phone: None,
        promised_delivery_at: None,
        created_at: Timestamp::now(),
        updated_at: Timestamp::now(),
        version,
        deleted: false,
        cdc: None,
    }
}

/// The event that carries `o`, as the digital service sends it.
pub fn order_event(o: Order) -> Event {
    Event {
        envelope: Envelope {
            event_id: uuid::Uuid::new_v4().to_string(),
            event_type: "order.updated".into(),
            source: "digital".into(),
            occurred_at: Timestamp::now(),
            schema_version: 1,
        },
        component: Component::Order(o),
    }
}

/// [`order_event`] of `o` in JSON.
pub fn event(o: Order) -> Vec<u8> {
    order_gateway::events::encode_json(&order_event(o))
}

pub fn producer() -> FutureProducer {
    ClientConfig::new().set("bootstrap.servers", kafka_brokers()).set("linger.ms", "0").create().unwrap()
}

pub fn version_of(v: &Value) -> u64 {
    v["order"]["version"].as_u64().unwrap_or(0)
}
