//! Ingest's I/O with the two stores: reading current documents and writing
//! planned changes to Elasticsearch, inserting rows into ClickHouse.

use std::collections::HashMap;

use elasticsearch::http::request::JsonBody;
use elasticsearch::params::Refresh;
use elasticsearch::{BulkParts, SearchParts};
use serde::Serialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::plan::{ColdInfo, EsAction, Stored};
use crate::backends::{clickhouse::ChClient, elasticsearch::EsClient};
use crate::model::{Component, Fulfillment, Order, OrderView, Timestamp};

/// Reads the current documents of `ids` through the read alias.
pub async fn es_lookup(es: &EsClient, read_alias: &str, ids: &[&str]) -> anyhow::Result<HashMap<String, Stored>> {
    let mut out = HashMap::with_capacity(ids.len());
    if ids.is_empty() {
        return Ok(out);
    }
    let resp = es
        .client()
        .search(SearchParts::Index(&[read_alias]))
        .seq_no_primary_term(true)
        .size(ids.len() as i64)
        .body(json!({ "query": { "ids": { "values": ids } } }))
        .send()
        .await?;
    let status = resp.status_code();
    let body: Value = resp.json().await?;
    if !status.is_success() {
        anyhow::bail!("elasticsearch: reading orders through alias {read_alias}: {status} {}", error_reason(&body));
    }
    for hit in body["hits"]["hits"].as_array().into_iter().flatten() {
        let (Some(index), Some(seq_no), Some(primary_term)) =
            (hit["_index"].as_str(), hit["_seq_no"].as_i64(), hit["_primary_term"].as_i64())
        else {
            continue;
        };
        let view: OrderView = serde_json::from_value(hit["_source"].clone()).map_err(|e| {
            anyhow::anyhow!("elasticsearch: document {} in {index} is not an OrderView: {e}", hit["_id"])
        })?;
        out.insert(view.order_id.clone(), Stored { index: index.to_owned(), seq_no, primary_term, view });
    }
    Ok(out)
}

/// Makes recent writes visible to [`es_lookup`] (after a write conflict).
pub async fn es_refresh(es: &EsClient, read_alias: &str) -> anyhow::Result<()> {
    let resp =
        es.client().indices().refresh(elasticsearch::indices::IndicesRefreshParts::Index(&[read_alias])).send().await?;
    if !resp.status_code().is_success() {
        anyhow::bail!("elasticsearch: refresh of {read_alias}: {}", resp.status_code());
    }
    Ok(())
}

/// Outcome of a bulk write, per order.
#[derive(Debug, Default)]
pub struct BulkOutcome {
    /// Orders whose document changed under us: read again and re-plan.
    pub conflicts: Vec<String>,
    /// Orders Elasticsearch refused for good (mapping errors and the like), with the reason.
    pub rejected: Vec<(String, String)>,
    /// Written documents: order id -> (index, seq_no, primary_term).
    pub written: HashMap<String, (String, i64, i64)>,
    pub deleted: Vec<String>,
}

/// Sends the actions in one bulk request.
pub async fn es_bulk(es: &EsClient, write_alias: &str, actions: &[(String, EsAction)]) -> anyhow::Result<BulkOutcome> {
    let mut outcome = BulkOutcome::default();
    if actions.is_empty() {
        return Ok(outcome);
    }
    let mut body: Vec<JsonBody<Value>> = Vec::with_capacity(actions.len() * 2);
    for (id, action) in actions {
        match action {
            EsAction::Update { index, seq_no, primary_term, view } => {
                body.push(json!({"index": {"_index": index, "_id": id, "if_seq_no": seq_no, "if_primary_term": primary_term}}).into());
                body.push(serde_json::to_value(view)?.into());
            }
            EsAction::Create { view } => {
                body.push(json!({"create": {"_index": write_alias, "_id": id}}).into());
                body.push(serde_json::to_value(view)?.into());
            }
            EsAction::Delete { index, seq_no, primary_term } => {
                body.push(json!({"delete": {"_index": index, "_id": id, "if_seq_no": seq_no, "if_primary_term": primary_term}}).into());
            }
        }
    }
    let resp = es.client().bulk(BulkParts::None).refresh(Refresh::False).body(body).send().await?;
    let status = resp.status_code();
    let body: Value = resp.json().await?;
    if !status.is_success() {
        anyhow::bail!("elasticsearch: bulk write: {status} {}", error_reason(&body));
    }
    let items = body["items"].as_array().cloned().unwrap_or_default();
    if items.len() != actions.len() {
        anyhow::bail!("elasticsearch: bulk answered {} items for {} actions", items.len(), actions.len());
    }
    let mut transient = None;
    for ((id, action), item) in actions.iter().zip(items) {
        let (_, result) =
            item.as_object().and_then(|o| o.iter().next()).map(|(k, v)| (k.clone(), v.clone())).unwrap_or_default();
        let code = result["status"].as_u64().unwrap_or(0);
        match code {
            200..=299 => match action {
                EsAction::Delete { .. } => outcome.deleted.push(id.clone()),
                _ => {
                    if let (Some(i), Some(s), Some(p)) =
                        (result["_index"].as_str(), result["_seq_no"].as_i64(), result["_primary_term"].as_i64())
                    {
                        outcome.written.insert(id.clone(), (i.to_owned(), s, p));
                    }
                }
            },
            // A delete of a document that is already gone is done.
            404 if matches!(action, EsAction::Delete { .. }) => outcome.deleted.push(id.clone()),
            409 => outcome.conflicts.push(id.clone()),
            429 | 500..=599 | 0 => transient = Some(format!("{code} {}", error_reason(&result))),
            _ => outcome.rejected.push((id.clone(), format!("{code} {}", error_reason(&result)))),
        }
    }
    if let Some(why) = transient {
        // Some items may be written; the batch is retried whole, which the
        // sequence-number checks and version merges make safe.
        anyhow::bail!("elasticsearch: bulk item failed: {why}");
    }
    Ok(outcome)
}

fn error_reason(v: &Value) -> String {
    let e = &v["error"];
    match (e["type"].as_str(), e["reason"].as_str()) {
        (Some(t), Some(r)) => format!("{t}: {r}"),
        _ => e.as_str().map(str::to_owned).unwrap_or_else(|| "no reason given".into()),
    }
}

// ---- ClickHouse -----------------------------------------------------------

fn dt(t: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.millis()) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A row of `orders`.
#[derive(clickhouse::Row, Serialize)]
pub struct OrderRow {
    order_id: String,
    order_number: String,
    customer_id: String,
    channel: &'static str,
    status: &'static str,
    currency: String,
    subtotal: i64,
    tax: i64,
    shipping: i64,
    discount: i64,
    total: i64,
    units: u32,
    line_count: u16,
    country: String,
    #[serde(with = "clickhouse::serde::time::datetime64::millis::option")]
    promised_delivery_at: Option<OffsetDateTime>,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    created_at: OffsetDateTime,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    updated_at: OffsetDateTime,
    version: u64,
    is_deleted: u8,
}

/// A row of `order_lines`.
#[derive(clickhouse::Row, Serialize)]
pub struct LineRow {
    order_id: String,
    line_id: String,
    sku: String,
    name: String,
    quantity: u32,
    unit_price: i64,
    currency: String,
    status: &'static str,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    created_at: OffsetDateTime,
    version: u64,
    is_deleted: u8,
}

/// A row of `fulfillments`.
#[derive(clickhouse::Row, Serialize)]
pub struct FulfillmentRow {
    fulfillment_id: String,
    order_id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    status: &'static str,
    carrier: String,
    tracking_number: String,
    line_ids: Vec<String>,
    #[serde(with = "clickhouse::serde::time::datetime64::millis::option")]
    shipped_at: Option<OffsetDateTime>,
    #[serde(with = "clickhouse::serde::time::datetime64::millis::option")]
    delivered_at: Option<OffsetDateTime>,
    version: u64,
}

fn order_row(o: &Order) -> OrderRow {
    OrderRow {
        order_id: o.order_id.clone(),
        order_number: o.order_number.clone(),
        customer_id: o.customer_id.clone(),
        channel: o.channel.as_str(),
        status: o.status.as_str(),
        currency: o.currency.clone(),
        subtotal: o.subtotal,
        tax: o.tax,
        shipping: o.shipping,
        discount: o.discount,
        total: o.total,
        units: o.lines.iter().map(|l| l.quantity).sum(),
        line_count: o.lines.len().min(u16::MAX as usize) as u16,
        country: o.shipping_address.as_ref().map(|a| a.country.clone()).unwrap_or_default(),
        promised_delivery_at: o.promised_delivery_at.map(dt),
        created_at: dt(o.created_at),
        updated_at: dt(o.updated_at),
        version: o.version,
        is_deleted: u8::from(o.deleted),
    }
}

fn line_rows(o: &Order) -> impl Iterator<Item = LineRow> + '_ {
    o.lines.iter().map(move |l| LineRow {
        order_id: o.order_id.clone(),
        line_id: l.line_id.clone(),
        sku: l.sku.clone(),
        name: l.name.clone(),
        quantity: l.quantity,
        unit_price: l.unit_price,
        currency: o.currency.clone(),
        status: l.status.as_str(),
        created_at: dt(o.created_at),
        version: o.version,
        is_deleted: u8::from(o.deleted),
    })
}

fn fulfillment_row(f: &Fulfillment) -> FulfillmentRow {
    FulfillmentRow {
        fulfillment_id: f.fulfillment_id.clone(),
        order_id: f.order_id.clone(),
        kind: f.kind.as_str(),
        status: f.status.as_str(),
        carrier: f.carrier.clone().unwrap_or_default(),
        tracking_number: f.tracking_number.clone().unwrap_or_default(),
        line_ids: f.line_ids.clone(),
        shipped_at: f.shipped_at.map(dt),
        delivered_at: f.delivered_at.map(dt),
        version: f.version,
    }
}

/// Row counts inserted, per table.
#[derive(Debug, Default, Clone, Copy)]
pub struct ChCounts {
    pub orders: u64,
    pub lines: u64,
    pub fulfillments: u64,
}

/// Inserts the components into the three tables; each insert is atomic, and a
/// replay inserts rows that the version merge folds away.
pub async fn ch_insert(ch: &ChClient, components: &[&Component]) -> anyhow::Result<ChCounts> {
    let mut counts = ChCounts::default();
    let (mut orders, mut fuls): (Vec<&Order>, Vec<&Fulfillment>) = (Vec::new(), Vec::new());
    for c in components {
        match c {
            Component::Order(o) => orders.push(o),
            Component::Fulfillment(f) => fuls.push(f),
        }
    }
    if !orders.is_empty() {
        let mut ins = ch.client().insert::<OrderRow>("orders").await?;
        for o in &orders {
            ins.write(&order_row(o)).await?;
            counts.orders += 1;
        }
        ins.end().await.map_err(|e| anyhow::anyhow!("clickhouse: insert into orders: {e}"))?;
        let mut ins = ch.client().insert::<LineRow>("order_lines").await?;
        for o in &orders {
            for row in line_rows(o) {
                ins.write(&row).await?;
                counts.lines += 1;
            }
        }
        ins.end().await.map_err(|e| anyhow::anyhow!("clickhouse: insert into order_lines: {e}"))?;
    }
    if !fuls.is_empty() {
        let mut ins = ch.client().insert::<FulfillmentRow>("fulfillments").await?;
        for f in &fuls {
            ins.write(&fulfillment_row(f)).await?;
            counts.fulfillments += 1;
        }
        ins.end().await.map_err(|e| anyhow::anyhow!("clickhouse: insert into fulfillments: {e}"))?;
    }
    Ok(counts)
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct ColdRow {
    order_id: String,
    created_ms: i64,
    max_version: u64,
    last_deleted: u8,
}

/// What ClickHouse knows of orders Elasticsearch does not hold.
pub async fn ch_cold_info(ch: &ChClient, ids: &[&str]) -> anyhow::Result<HashMap<String, ColdInfo>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<ColdRow> = ch
        .client()
        .query(
            "SELECT order_id, toUnixTimestamp64Milli(min(created_at)) AS created_ms, max(version) AS max_version, \
             argMax(is_deleted, version) AS last_deleted FROM orders WHERE order_id IN ? GROUP BY order_id",
        )
        .bind(ids)
        .fetch_all()
        .await
        .map_err(|e| anyhow::anyhow!("clickhouse: reading known orders: {e}"))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.order_id,
                ColdInfo { created_at: Timestamp(r.created_ms), version: r.max_version, deleted: r.last_deleted != 0 },
            )
        })
        .collect())
}
