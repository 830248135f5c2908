//! Debezium change events of the legacy `orders` table, mapped to `Order`
//! snapshots by the column mapping in `[cdc]`.
//!
//! Both shapes Debezium's JSON converter writes are accepted: with
//! `schemas.enable` (`{"schema": ..., "payload": {...}}`) and without. A delete
//! (`op: d`) becomes a snapshot of the row before deletion with `deleted: true`
//! and a version one above the deleted row's, so it outranks every earlier
//! change of that order; Kafka's tombstone (an empty value) is skipped.

use serde_json::{Map, Value};

use super::DecodeError;
use crate::config::CdcConfig;
use crate::model::{Component, Envelope, Event, Order, Timestamp};

/// Decodes one change event; `Ok(None)` for a tombstone.
pub fn decode(payload: &[u8], map: &CdcConfig) -> Result<Option<Event>, DecodeError> {
    if payload.is_empty() {
        return Ok(None);
    }
    let root: Value = serde_json::from_slice(payload).map_err(|e| {
        DecodeError::Malformed(format!("debezium json: {:?} error at column {}", e.classify(), e.column()))
    })?;
    let env = match root.get("payload") {
        Some(p) if root.get("schema").is_some() => p,
        _ => &root,
    };
    if env.is_null() {
        return Ok(None);
    }
    let op = env.get("op").and_then(Value::as_str).ok_or_else(|| field("op", "missing"))?;
    let source_ts = env
        .get("source")
        .and_then(|s| s.get("ts_ms"))
        .and_then(Value::as_i64)
        .or_else(|| env.get("ts_ms").and_then(Value::as_i64))
        .ok_or_else(|| field("source.ts_ms", "missing"))?;
    let (row, deleted) = match op {
        "c" | "u" | "r" => (env.get("after"), false),
        "d" => (env.get("before"), true),
        other => return Err(field("op", &format!("unknown operation {other:?}"))),
    };
    let row = row.and_then(Value::as_object).ok_or_else(|| {
        field(if deleted { "before" } else { "after" }, "missing row (is the table's REPLICA IDENTITY full?)")
    })?;

    let order_id = text(row, &map.order_id, "order_id")?;
    let mut version = if map.version.is_empty() {
        u64::try_from(source_ts).map_err(|_| field("source.ts_ms", "negative"))?
    } else {
        let v = integer(row, &map.version, "version")?;
        u64::try_from(v).map_err(|_| field("version", &format!("{v} is negative")))?
    };
    if deleted && !map.version.is_empty() {
        version += 1;
    }
    let total = integer(row, &map.total, "total")?;
    let created_at = time(row, &map.created_at, "created_at")?;
    let updated_at = match time(row, &map.updated_at, "updated_at") {
        Ok(t) => t,
        Err(_) if deleted => Timestamp(source_ts),
        Err(e) => return Err(e),
    };
    let status_text = text(row, &map.status, "status")?;
    let order = Order {
        order_number: text(row, &map.order_number, "order_number")?,
        customer_id: text(row, &map.customer_id, "customer_id")?,
        channel: map.default_channel,
        status: status_text.to_ascii_lowercase().parse().map_err(|e: String| field("status", &e))?,
        currency: text(row, &map.currency, "currency")?.to_ascii_uppercase(),
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
        created_at,
        updated_at: if deleted { Timestamp(source_ts.max(updated_at.millis())) } else { updated_at },
        version,
        deleted,
        order_id: order_id.clone(),
    };
    let event = Event {
        envelope: Envelope {
            event_id: format!("cdc:{order_id}:{version}:{op}"),
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
            occurred_at: Timestamp(source_ts),
            schema_version: 1,
        },
        component: Component::Order(order),
    };
    super::validate(&event)?;
    Ok(Some(event))
}

fn field(name: &str, detail: &str) -> DecodeError {
    // Field names here come from the mapping; leak them as static labels only
    // through the bounded set below.
    let field: &'static str = match name {
        "op" => "op",
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
        "version" => "version",
        _ => "cdc",
    };
    DecodeError::InvalidField { field, detail: detail.to_string() }
}

fn column<'a>(row: &'a Map<String, Value>, col: &str, what: &str) -> Result<&'a Value, DecodeError> {
    row.get(col).filter(|v| !v.is_null()).ok_or_else(|| field(what, &format!("column {col:?} is missing or null")))
}

fn text(row: &Map<String, Value>, col: &str, what: &str) -> Result<String, DecodeError> {
    match column(row, col, what)? {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(field(what, &format!("column {col:?} is not text"))),
    }
}

fn integer(row: &Map<String, Value>, col: &str, what: &str) -> Result<i64, DecodeError> {
    match column(row, col, what)? {
        Value::Number(n) => n.as_i64().ok_or_else(|| field(what, &format!("column {col:?} is not an integer"))),
        Value::String(s) => s.parse().map_err(|_| field(what, &format!("column {col:?} is not an integer"))),
        _ => Err(field(what, &format!("column {col:?} is not an integer"))),
    }
}

/// Debezium writes timestamps as epoch milliseconds (`io.debezium.time.Timestamp`),
/// microseconds (`MicroTimestamp`) or ISO 8601 strings (`ZonedTimestamp`).
fn time(row: &Map<String, Value>, col: &str, what: &str) -> Result<Timestamp, DecodeError> {
    match column(row, col, what)? {
        Value::Number(n) => {
            let v = n.as_i64().ok_or_else(|| field(what, &format!("column {col:?} is not an integer")))?;
            // Microseconds since 1970 pass 1e14 in 1973; milliseconds not before the year 5138.
            Ok(Timestamp(if v.abs() >= 100_000_000_000_000 { v / 1000 } else { v }))
        }
        Value::String(s) => Timestamp::parse(s).map_err(|e| field(what, &e)),
        _ => Err(field(what, &format!("column {col:?} is not a timestamp"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn mapping() -> CdcConfig {
        Config::load(None).unwrap().cdc
    }

    fn row(version: i64, state: &str) -> Value {
        serde_json::json!({
            "id": 9001, "order_no": "L-9001", "customer_ref": "legacy-7", "state": state,
            "currency": "usd", "total_cents": 12999, "created_at": 1_600_000_000_000i64,
            "updated_at": 1_600_000_000_000i64 + version * 1000, "row_version": version
        })
    }

    #[test]
    fn create_update_delete_with_and_without_wrapper() {
        let map = mapping();
        let create = serde_json::json!({"before": null, "after": row(1, "CREATED"), "op": "c", "source": {"ts_ms": 1}});
        let e = decode(create.to_string().as_bytes(), &map).unwrap().unwrap();
        let Component::Order(o) = &e.component else { panic!() };
        assert_eq!((o.order_id.as_str(), o.version, o.total, o.currency.as_str()), ("9001", 1, 12999, "USD"));
        assert!(!o.deleted);

        let update = serde_json::json!({"schema": {}, "payload": {"before": row(1, "CREATED"), "after": row(2, "SHIPPED"), "op": "u", "source": {"ts_ms": 2}}});
        let e = decode(update.to_string().as_bytes(), &map).unwrap().unwrap();
        let Component::Order(o) = &e.component else { panic!() };
        assert_eq!((o.version, o.status), (2, crate::model::OrderStatus::Shipped));

        let delete = serde_json::json!({"before": row(2, "SHIPPED"), "after": null, "op": "d", "source": {"ts_ms": 3}});
        let e = decode(delete.to_string().as_bytes(), &map).unwrap().unwrap();
        let Component::Order(o) = &e.component else { panic!() };
        assert!(o.deleted);
        assert_eq!(o.version, 3, "a delete outranks the row it deletes");

        assert!(decode(b"", &map).unwrap().is_none(), "tombstone");
    }

    #[test]
    fn bad_rows_name_the_problem() {
        let map = mapping();
        let mut r = row(1, "CREATED");
        r["total_cents"] = Value::String("lots".into());
        let ev = serde_json::json!({"after": r, "op": "c", "source": {"ts_ms": 1}});
        let err = decode(ev.to_string().as_bytes(), &map).unwrap_err();
        assert!(matches!(err, DecodeError::InvalidField { field: "total", .. }), "{err}");
        let err = decode(br#"{"op":"x","source":{"ts_ms":1}}"#, &map).unwrap_err();
        assert!(matches!(err, DecodeError::InvalidField { field: "op", .. }), "{err}");
        assert_eq!(decode(b"{not json", &map).unwrap_err().reason(), "undecodable");
    }
}
