//! The ClickHouse client (analytical store and orders older than the hot window).

use std::sync::Arc;
use std::time::Duration;

use super::{timed, timed_unguarded, Backend, BackendError, Breaker};
use crate::config::ClickHouseConfig;

/// Shared ClickHouse client with the configured deadline.
#[derive(Clone)]
pub struct ChClient {
    client: clickhouse::Client,
    timeout: Duration,
    breaker: Arc<Breaker>,
}

impl ChClient {
    /// Builds the client; no query is sent. Its queries go through `breaker`.
    pub fn new(cfg: &ClickHouseConfig, breaker: Arc<Breaker>) -> Self {
        let mut client = clickhouse::Client::default()
            .with_url(cfg.url.as_str().trim_end_matches('/'))
            .with_database(&cfg.database)
            .with_user(&cfg.user);
        if cfg.password.is_set() {
            client = client.with_password(cfg.password.expose());
        }
        // The server stops a query when the gateway would stop waiting for it:
        // abandoned queries must not pile up and starve the ones still wanted.
        client = client.with_setting("max_execution_time", cfg.timeout.as_secs_f64().ceil().max(1.0).to_string());
        ChClient { client, timeout: cfg.timeout, breaker }
    }

    /// The underlying client, for the modules that query.
    pub fn client(&self) -> &clickhouse::Client {
        &self.client
    }

    /// The per-query deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The breaker every query goes through.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// `SELECT version()`: usable when the server answers a query.
    pub async fn ping(&self) -> Result<String, BackendError> {
        let version: String = timed_unguarded(Backend::ClickHouse, "ping", self.timeout, async {
            self.client.query("SELECT version()").fetch_one::<String>().await
        })
        .await?;
        Ok(format!("version {version}"))
    }
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct OrderRow {
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
    country: String,
    promised_ms: Option<i64>,
    created_ms: i64,
    updated_ms: i64,
    version: u64,
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct LineRow {
    order_id: String,
    line_id: String,
    sku: String,
    name: String,
    quantity: u32,
    unit_price: i64,
    status: String,
    version: u64,
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct FulfillmentRow {
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

fn parse<T: std::str::FromStr<Err = String>>(field: &str, v: &str) -> Result<T, BackendError> {
    v.parse().map_err(|e| BackendError::failed(Backend::ClickHouse, format!("{field}: {e}")))
}

impl ChClient {
    /// Latest views of `ids` from the analytical tables (orders older than the
    /// hot window live only here). ClickHouse keeps no PII, so these views
    /// carry no e-mail, phone or street address; the shipping country is kept.
    pub async fn get_orders(&self, ids: &[&str]) -> Result<Vec<crate::model::OrderView>, BackendError> {
        use crate::model::*;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
        let (orders, lines, fuls) = timed(&self.breaker, "get_orders", self.timeout, async {
            let orders: Vec<OrderRow> = self
                .client
                .query(
                    "SELECT order_id, order_number, customer_id, channel, status, currency, subtotal, tax, shipping, \
                     discount, total, country, toUnixTimestamp64Milli(promised_delivery_at) AS promised_ms, \
                     toUnixTimestamp64Milli(created_at) AS created_ms, toUnixTimestamp64Milli(updated_at) AS updated_ms, \
                     version FROM orders FINAL WHERE order_id IN ?",
                )
                .bind(&ids)
                .fetch_all()
                .await?;
            let lines: Vec<LineRow> = self
                .client
                // Point reads on the base tables use the primary key (order_id);
                // the `*_latest` views scan. Lines of older versions are dropped below.
                .query("SELECT order_id, line_id, sku, name, quantity, unit_price, status, version FROM order_lines FINAL WHERE order_id IN ? ORDER BY order_id, line_id")
                .bind(&ids)
                .fetch_all()
                .await?;
            let fuls: Vec<FulfillmentRow> = self
                .client
                .query(
                    "SELECT order_id, fulfillment_id, type AS kind, status, carrier, tracking_number, line_ids, \
                     toUnixTimestamp64Milli(shipped_at) AS shipped_ms, toUnixTimestamp64Milli(delivered_at) AS delivered_ms, \
                     version FROM fulfillments FINAL WHERE order_id IN ?",
                )
                .bind(&ids)
                .fetch_all()
                .await?;
            Ok::<_, clickhouse::error::Error>((orders, lines, fuls))
        })
        .await?;
        let mut out = Vec::with_capacity(orders.len());
        for o in orders {
            let mut view = OrderView::new(&o.order_id);
            let order_lines = lines
                .iter()
                .filter(|l| l.order_id == o.order_id && l.version == o.version)
                .map(|l| {
                    Ok(OrderLine {
                        line_id: l.line_id.clone(),
                        sku: l.sku.clone(),
                        name: l.name.clone(),
                        quantity: l.quantity,
                        unit_price: l.unit_price,
                        status: parse("line status", &l.status)?,
                    })
                })
                .collect::<Result<Vec<_>, BackendError>>()?;
            view.apply(Component::Order(Order {
                order_id: o.order_id.clone(),
                order_number: o.order_number,
                customer_id: o.customer_id,
                channel: parse("channel", &o.channel)?,
                status: parse("status", &o.status)?,
                currency: o.currency,
                subtotal: o.subtotal,
                tax: o.tax,
                shipping: o.shipping,
                discount: o.discount,
                total: o.total,
                lines: order_lines,
                shipping_address: None,
                email: None,
                phone: None,
                promised_delivery_at: o.promised_ms.map(Timestamp),
                created_at: Timestamp(o.created_ms),
                updated_at: Timestamp(o.updated_ms),
                version: o.version,
                deleted: false,
            }));
            let _ = o.country;
            for f in fuls.iter().filter(|f| f.order_id == o.order_id) {
                view.apply(Component::Fulfillment(Fulfillment {
                    fulfillment_id: f.fulfillment_id.clone(),
                    order_id: f.order_id.clone(),
                    kind: parse("type", &f.kind)?,
                    status: parse("fulfillment status", &f.status)?,
                    carrier: (!f.carrier.is_empty()).then(|| f.carrier.clone()),
                    tracking_number: (!f.tracking_number.is_empty()).then(|| f.tracking_number.clone()),
                    line_ids: f.line_ids.clone(),
                    shipped_at: f.shipped_ms.map(Timestamp),
                    delivered_at: f.delivered_ms.map(Timestamp),
                    version: f.version,
                }));
            }
            out.push(view);
        }
        Ok(out)
    }

    /// The id of the order with this number, if ClickHouse has it.
    pub async fn find_by_number(&self, number: &str) -> Result<Option<String>, BackendError> {
        timed(&self.breaker, "find_by_number", self.timeout, async {
            self.client
                .query("SELECT order_id FROM orders_latest WHERE order_number = ? LIMIT 1")
                .bind(number)
                .fetch_optional::<String>()
                .await
        })
        .await
    }
}
