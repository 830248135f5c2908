//! Debezium change events of the legacy `orders` and `order_lines` tables
//! (PostgreSQL connector, JSON converter), mapped to partial `Order`
//! snapshots by the column mapping in `[cdc]`.
//!
//! Each change carries only the row it touched: a header change is an order
//! without lines, a line change an order holding that line and a blank header.
//! Both carry the row's log position (`source.lsn`), and the view merges them
//! row by row (`model::view::rows`), whatever order the two topics deliver
//! them in. A delete (`op: d`) marks its row deleted at the delete's position;
//! the Kafka tombstone after it (an empty value) is skipped. Snapshot reads
//! (`op: r`) load like inserts.
//!
//! Both shapes the JSON converter writes are accepted: with `schemas.enable`
//! (`{"schema": ..., "payload": {...}}`) and without; the schema, when there,
//! tells how a column is encoded (the scale of a `precise` decimal, the unit
//! of a timestamp), else the value's own shape does.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::DecodeError;
use crate::config::{CdcAmounts, CdcConfig};
use crate::model::{
    Component, Envelope, Event, LineStatus, Order, OrderLine, OrderStatus, RowPosition, SourceRows, Timestamp,
};

/// Which legacy table a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Orders,
    Lines,
}

/// One change event, its row and what the schema says of its columns.
struct Change<'a> {
    op: &'a str,
    lsn: u64,
    ts_ms: i64,
    row: &'a Map<String, Value>,
    /// Column name -> its schema (`name`, `parameters`), when schemas are on.
    columns: BTreeMap<&'a str, &'a Value>,
}

/// Decodes one change event; `Ok(None)` for a tombstone.
pub fn decode(table: Table, payload: &[u8], map: &CdcConfig) -> Result<Option<Event>, DecodeError> {
    if payload.is_empty() {
        return Ok(None);
    }
    let root: Value = serde_json::from_slice(payload).map_err(|e| {
        DecodeError::Malformed(format!("debezium json: {:?} error at column {}", e.classify(), e.column()))
    })?;
    let (env, schema) = match (root.get("schema"), root.get("payload")) {
        (Some(s), Some(p)) => (p, Some(s)),
        _ => (&root, None),
    };
    if env.is_null() {
        return Ok(None);
    }
    let op = env.get("op").and_then(Value::as_str).ok_or_else(|| field("op", "missing"))?;
    let side = match op {
        "c" | "u" | "r" => "after",
        "d" => "before",
        other => return Err(field("op", &format!("unknown operation {other:?}"))),
    };
    let source = env.get("source");
    let lsn = source
        .and_then(|s| s.get("lsn"))
        .and_then(Value::as_u64)
        .filter(|l| *l > 0)
        .ok_or_else(|| field("source.lsn", "missing (only PostgreSQL change events carry a log position)"))?;
    let ts_ms = source
        .and_then(|s| s.get("ts_ms"))
        .and_then(Value::as_i64)
        .or_else(|| env.get("ts_ms").and_then(Value::as_i64))
        .ok_or_else(|| field("source.ts_ms", "missing"))?;
    let row = env
        .get(side)
        .and_then(Value::as_object)
        .ok_or_else(|| field(side, "missing row (is the table's REPLICA IDENTITY full?)"))?;
    let columns = schema.map(|s| columns_of(s, side)).unwrap_or_default();
    let change = Change { op, lsn, ts_ms, row, columns };
    let order = match table {
        Table::Orders => header(&change, map)?,
        Table::Lines => line(&change, map)?,
    };
    let order_id = order.order_id.clone();
    let event = Event {
        envelope: Envelope {
            event_id: format!(
                "cdc:{}:{order_id}:{}:{op}",
                match table {
                    Table::Orders => "orders",
                    Table::Lines => "order_lines",
                },
                lsn
            ),
            event_type: format!(
                "order.cdc.{}",
                match op {
                    "c" => "create",
                    "u" => "update",
                    "r" => "read",
                    _ => "delete",
                }
            ),
            source: "cdc.legacy".into(),
            occurred_at: Timestamp(ts_ms),
            schema_version: 1,
        },
        component: Component::Order(order),
    };
    super::validate(&event)?;
    Ok(Some(event))
}

/// The `orders` row as an order header (no lines).
fn header(c: &Change, map: &CdcConfig) -> Result<Order, DecodeError> {
    let deleted = c.op == "d";
    let status_text = text(c, &map.status, "status")?;
    let status = lookup(&map.statuses, &status_text)
        .or_else(|| status_text.to_ascii_lowercase().parse::<OrderStatus>().ok())
        .ok_or_else(|| field("status", &format!("{status_text:?} is neither in cdc.statuses nor an order status")))?;
    let total = amount(c, &map.total, "total", map.amounts)?;
    Ok(Order {
        order_id: text(c, &map.order_id, "order_id")?,
        order_number: text(c, &map.order_number, "order_number")?,
        customer_id: text(c, &map.customer_id, "customer_id")?,
        channel: map.default_channel,
        status,
        currency: text(c, &map.currency, "currency")?.trim().to_ascii_uppercase(),
        // The legacy table keeps only the total; it is the whole amount.
        subtotal: total,
        tax: 0,
        shipping: 0,
        discount: 0,
        total,
        lines: Vec::new(),
        shipping_address: None,
        email: None,
        phone: None,
        promised_delivery_at: None,
        created_at: time(c, &map.created_at, "created_at")?,
        updated_at: time(c, &map.updated_at, "updated_at")?,
        version: c.lsn,
        deleted,
        cdc: Some(SourceRows { header: c.lsn, lines: BTreeMap::new() }),
    })
}

/// An `order_lines` row as an order holding that line and a blank header
/// (header position 0: any change of the `orders` row outranks it).
fn line(c: &Change, map: &CdcConfig) -> Result<Order, DecodeError> {
    let m = &map.lines;
    let deleted = c.op == "d";
    let order_id = text(c, &m.order_id, "order_id")?;
    let line_id = text(c, &m.line_id, "line_id")?;
    let status_text = text(c, &m.status, "line_status")?;
    let status = lookup(&m.statuses, &status_text)
        .or_else(|| status_text.to_ascii_lowercase().parse::<LineStatus>().ok())
        .ok_or_else(|| {
            field("line_status", &format!("{status_text:?} is neither in cdc.lines.statuses nor a line status"))
        })?;
    let quantity = integer(c, &m.quantity, "quantity")?;
    let line = OrderLine {
        line_id: line_id.clone(),
        sku: text(c, &m.sku, "sku")?,
        name: text(c, &m.name, "name")?,
        quantity: u32::try_from(quantity).map_err(|_| field("quantity", &format!("{quantity} is out of range")))?,
        unit_price: amount(c, &m.unit_price, "unit_price", map.amounts)?,
        status,
    };
    let rows = SourceRows { header: 0, lines: BTreeMap::from([(line_id, RowPosition { lsn: c.lsn, deleted })]) };
    Ok(Order {
        order_id,
        order_number: String::new(),
        customer_id: String::new(),
        channel: map.default_channel,
        status: OrderStatus::Created,
        // ISO 4217's code for "no currency": the header brings the real one.
        currency: "XXX".into(),
        subtotal: 0,
        tax: 0,
        shipping: 0,
        discount: 0,
        total: 0,
        lines: if deleted { Vec::new() } else { vec![line] },
        shipping_address: None,
        email: None,
        phone: None,
        promised_delivery_at: None,
        created_at: Timestamp(c.ts_ms),
        updated_at: Timestamp(c.ts_ms),
        version: rows.version(),
        deleted: false,
        cdc: Some(rows),
    })
}

fn lookup<T: Copy>(map: &BTreeMap<String, T>, text: &str) -> Option<T> {
    map.iter().find(|(k, _)| k.eq_ignore_ascii_case(text.trim())).map(|(_, v)| *v)
}

/// The schemas of the row's columns: `schema.fields[name = side].fields`.
fn columns_of<'a>(schema: &'a Value, side: &str) -> BTreeMap<&'a str, &'a Value> {
    schema
        .get("fields")
        .and_then(Value::as_array)
        .and_then(|fs| fs.iter().find(|f| f.get("field").and_then(Value::as_str) == Some(side)))
        .and_then(|f| f.get("fields"))
        .and_then(Value::as_array)
        .map(|cols| cols.iter().filter_map(|c| Some((c.get("field")?.as_str()?, c))).collect())
        .unwrap_or_default()
}

fn field(name: &str, detail: &str) -> DecodeError {
    // Field names reach metrics and dead-letter headers: a bounded set of
    // static labels, never a column name from the mapping.
    let field: &'static str = match name {
        "op" => "op",
        "source.lsn" => "source.lsn",
        "source.ts_ms" => "source.ts_ms",
        "before" => "before",
        "after" => "after",
        "order_id" => "order_id",
        "order_number" => "order_number",
        "customer_id" => "customer_id",
        "status" => "status",
        "currency" => "currency",
        "total" => "total",
        "created_at" => "created_at",
        "updated_at" => "updated_at",
        "line_id" => "line_id",
        "line_status" => "line_status",
        "sku" => "sku",
        "name" => "name",
        "quantity" => "quantity",
        "unit_price" => "unit_price",
        _ => "cdc",
    };
    DecodeError::InvalidField { field, detail: detail.to_string() }
}

fn column<'a>(c: &'a Change, col: &str, what: &str) -> Result<&'a Value, DecodeError> {
    c.row.get(col).filter(|v| !v.is_null()).ok_or_else(|| field(what, &format!("column {col:?} is missing or null")))
}

fn text(c: &Change, col: &str, what: &str) -> Result<String, DecodeError> {
    match column(c, col, what)? {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(field(what, &format!("column {col:?} is not text"))),
    }
}

fn integer(c: &Change, col: &str, what: &str) -> Result<i64, DecodeError> {
    match column(c, col, what)? {
        Value::Number(n) => n.as_i64().ok_or_else(|| field(what, &format!("column {col:?} is not an integer"))),
        Value::String(s) => s.parse().map_err(|_| field(what, &format!("column {col:?} is not an integer"))),
        _ => Err(field(what, &format!("column {col:?} is not an integer"))),
    }
}

/// A money column in minor units (two decimal places).
fn amount(c: &Change, col: &str, what: &str, mode: CdcAmounts) -> Result<i64, DecodeError> {
    if mode == CdcAmounts::Minor {
        return integer(c, col, what);
    }
    let v = column(c, col, what)?;
    let schema = c.columns.get(col);
    let minor = match v {
        // decimal.handling.mode = string: "129.99".
        Value::String(s) if schema.is_none_or(|s| s.get("type").and_then(Value::as_str) == Some("string")) => {
            decimal_text(s)
        }
        // decimal.handling.mode = precise: the unscaled value's big-endian
        // two's complement bytes in base64, the scale in the schema.
        Value::String(s) => {
            let scale = schema
                .and_then(|s| s.get("parameters"))
                .and_then(|p| p.get("scale"))
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<u32>().ok())
                .ok_or_else(|| field(what, &format!("column {col:?}: a precise decimal without a scale")))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| field(what, &format!("column {col:?} is neither a decimal nor base64")))?;
            precise(&bytes, scale)
        }
        // decimal.handling.mode = double: exact only when it has no more than two decimals.
        Value::Number(n) => n.as_f64().and_then(|f| {
            let m = (f * 100.0).round();
            ((m / 100.0 - f).abs() < 1e-9 && m.abs() < 9e15).then_some(m as i64)
        }),
        _ => None,
    };
    minor.ok_or_else(|| field(what, &format!("column {col:?} is not an amount with at most two decimals")))
}

/// "129.99" -> 12999; `None` past two decimals or out of range.
pub fn decimal_text(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > 2 {
        return None;
    }
    let cents: i64 = format!("{frac:0<2}").parse().ok()?;
    let whole: i64 = int.parse().ok()?;
    let v = whole.checked_mul(100)?.checked_add(cents)?;
    Some(if neg { -v } else { v })
}

/// Unscaled big-endian two's complement at `scale` -> minor units (scale 2).
pub fn precise(bytes: &[u8], scale: u32) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > 16 {
        return None;
    }
    let mut v: i128 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
    for b in bytes {
        v = (v << 8) | i128::from(*b);
    }
    let v = if scale <= 2 {
        v.checked_mul(10i128.checked_pow(2 - scale)?)?
    } else {
        let div = 10i128.checked_pow(scale - 2)?;
        if v % div != 0 {
            return None;
        }
        v / div
    };
    i64::try_from(v).ok()
}

/// A timestamp column. With schemas, the semantic type says the unit
/// (`io.debezium.time.Timestamp` ms, `MicroTimestamp` µs, `NanoTimestamp` ns,
/// `ZonedTimestamp` an ISO 8601 string); without, integers past 1e14 are
/// taken as microseconds (a millisecond count passes 1e14 only in 5138).
fn time(c: &Change, col: &str, what: &str) -> Result<Timestamp, DecodeError> {
    let semantic = c.columns.get(col).and_then(|s| s.get("name")).and_then(Value::as_str);
    match column(c, col, what)? {
        Value::Number(n) => {
            let v = n.as_i64().ok_or_else(|| field(what, &format!("column {col:?} is not an integer")))?;
            Ok(Timestamp(match semantic {
                Some("io.debezium.time.MicroTimestamp") => v.div_euclid(1000),
                Some("io.debezium.time.NanoTimestamp") => v.div_euclid(1_000_000),
                Some(_) => v,
                None if v.abs() >= 100_000_000_000_000 => v.div_euclid(1000),
                None => v,
            }))
        }
        Value::String(s) => Timestamp::parse(s).map_err(|e| field(what, &e)),
        _ => Err(field(what, &format!("column {col:?} is not a timestamp"))),
    }
}

#[cfg(test)]
mod tests;
