use super::*;
use crate::config::Config;
use crate::model::OrderView;

fn mapping() -> CdcConfig {
    Config::load(None).unwrap().cdc
}

fn order_row(state: &str) -> Value {
    serde_json::json!({
        "order_id": 9001, "order_no": "L-9001", "customer_ref": "legacy-7", "status": state,
        "currency": "usd", "total_amount": "129.99", "ordered_at": 1_600_000_000_000_000i64,
        "updated_at": "2020-09-13T12:26:40.123456Z", "row_version": 1
    })
}

fn line_row(no: i64, qty: i64) -> Value {
    serde_json::json!({
        "order_id": 9001, "line_no": no, "sku": "SKU-1", "description": "Kettle",
        "quantity": qty, "unit_price": "19.90", "status": "OPEN"
    })
}

fn change(op: &str, before: Value, after: Value, lsn: u64) -> Vec<u8> {
    serde_json::json!({"before": before, "after": after, "op": op, "source": {"ts_ms": 1, "lsn": lsn}})
        .to_string()
        .into_bytes()
}

fn order_of(e: Event) -> Order {
    match e.component {
        Component::Order(o) => o,
        Component::Fulfillment(_) => panic!("not an order"),
    }
}

#[test]
fn header_and_lines_merge_by_row_position_in_any_order() {
    let map = mapping();
    let header =
        order_of(decode(Table::Orders, &change("c", Value::Null, order_row("NEW"), 100), &map).unwrap().unwrap());
    assert_eq!((header.total, header.currency.as_str(), header.status), (12999, "USD", OrderStatus::Created));
    assert_eq!(header.created_at, Timestamp(1_600_000_000_000));
    assert_eq!(header.updated_at, Timestamp(1_600_000_000_123));
    let l1 = order_of(decode(Table::Lines, &change("c", Value::Null, line_row(1, 2), 101), &map).unwrap().unwrap());
    let l2 = order_of(decode(Table::Lines, &change("c", Value::Null, line_row(2, 1), 102), &map).unwrap().unwrap());
    let shipped = order_of(
        decode(Table::Orders, &change("u", order_row("NEW"), order_row("SHIPPED"), 103), &map).unwrap().unwrap(),
    );
    let l1_gone =
        order_of(decode(Table::Lines, &change("d", line_row(1, 2), Value::Null, 104), &map).unwrap().unwrap());
    let all = [header, l1, l2, shipped, l1_gone];
    let fold = |items: &[Order]| {
        let mut v = OrderView::new("9001");
        for o in items {
            v.apply(Component::Order(o.clone()));
        }
        v.order.unwrap()
    };
    let forward = fold(&all);
    let mut reversed = all.clone();
    reversed.reverse();
    assert_eq!(forward, fold(&reversed));
    assert_eq!(forward.status, OrderStatus::Shipped);
    assert_eq!(forward.lines.iter().map(|l| l.line_id.as_str()).collect::<Vec<_>>(), ["2"]);
    assert_eq!(forward.version, 103 + 104 + 102);
    // A late copy of line 1's insert cannot bring it back.
    let mut v = OrderView::new("9001");
    v.apply(Component::Order(forward.clone()));
    assert!(!v.apply(Component::Order(all[1].clone())));
}

#[test]
fn amounts_in_every_decimal_mode() {
    assert_eq!(decimal_text("129.99"), Some(12999));
    assert_eq!(decimal_text("-0.5"), Some(-50));
    assert_eq!(decimal_text("7"), Some(700));
    assert_eq!(decimal_text("1.230"), Some(123));
    assert_eq!(decimal_text("1.234"), None);
    assert_eq!(decimal_text("1e3"), None);
    // 129.99 at scale 2: 12999 = 0x32C7.
    assert_eq!(precise(&[0x32, 0xC7], 2), Some(12999));
    assert_eq!(precise(&[0xCD, 0x39], 2), Some(-12999));
    assert_eq!(precise(&[0x01], 0), Some(100));
    assert_eq!(precise(&[0x04, 0xD2], 3), None, "1.234 has three decimals");
}

#[test]
fn tombstones_skip_and_bad_rows_name_the_problem() {
    let map = mapping();
    assert!(decode(Table::Orders, b"", &map).unwrap().is_none());
    assert!(decode(Table::Orders, br#"{"schema":{},"payload":null}"#, &map).unwrap().is_none());
    let err = decode(Table::Orders, &change("c", Value::Null, order_row("ON_HOLD"), 5), &map).unwrap_err();
    assert!(matches!(err, DecodeError::InvalidField { field: "status", .. }), "{err}");
    let mut r = order_row("NEW");
    r["total_amount"] = Value::String("12.345".into());
    let err = decode(Table::Orders, &change("c", Value::Null, r, 5), &map).unwrap_err();
    assert!(matches!(err, DecodeError::InvalidField { field: "total", .. }), "{err}");
    let no_lsn = serde_json::json!({"after": order_row("NEW"), "op": "c", "source": {"ts_ms": 1}});
    let err = decode(Table::Orders, no_lsn.to_string().as_bytes(), &map).unwrap_err();
    assert!(matches!(err, DecodeError::InvalidField { field: "source.lsn", .. }), "{err}");
    let err = decode(Table::Orders, br#"{"op":"x","source":{"ts_ms":1,"lsn":3}}"#, &map).unwrap_err();
    assert!(matches!(err, DecodeError::InvalidField { field: "op", .. }), "{err}");
    assert_eq!(decode(Table::Lines, b"{not json", &map).unwrap_err().reason(), "undecodable");
}

#[test]
fn an_order_service_snapshot_outranks_cdc() {
    let map = mapping();
    let legacy =
        order_of(decode(Table::Orders, &change("c", Value::Null, order_row("NEW"), 100), &map).unwrap().unwrap());
    let mut service = crate::model::fixtures::order(2);
    service.order_id = "9001".into();
    let mut a = OrderView::new("9001");
    a.apply(Component::Order(legacy.clone()));
    a.apply(Component::Order(service.clone()));
    let mut b = OrderView::new("9001");
    b.apply(Component::Order(service.clone()));
    assert!(!b.apply(Component::Order(legacy)));
    assert_eq!(a, b);
    assert_eq!(a.order.unwrap(), service);
}

/// A record Debezium wrote (tests/fixtures/debezium/, with its README).
fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/debezium/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn records_debezium_wrote_decode_and_merge() {
    let map = mapping();
    let get = |table, name: &str| {
        let e = decode(table, &fixture(&format!("{name}.json")), &map).unwrap().unwrap();
        let key = fixture(&format!("{name}.key"));
        assert_eq!(e.order_id().as_bytes(), &key[..], "{name}: the key is the order id");
        (e.envelope.event_type.clone(), order_of(e))
    };
    let (kind, snap) = get(Table::Orders, "orders-r");
    assert_eq!((kind.as_str(), snap.order_id.as_str()), ("order.cdc.read", "1001"));
    let (_, created) = get(Table::Orders, "orders-c");
    let (_, updated) = get(Table::Orders, "orders-u");
    let (_, deleted) = get(Table::Orders, "orders-d");
    assert!(deleted.deleted && !created.deleted);
    assert_eq!(created.status, OrderStatus::Created, "NEW");
    assert_eq!(updated.status, OrderStatus::Confirmed, "PAID");
    // `numeric(12,2)` arrives as text with decimal.handling.mode = string,
    // `timestamp` as microseconds, `timestamptz` as an ISO string: all read.
    assert!(created.total > 0 && created.created_at.millis() > 1_700_000_000_000, "{created:?}");
    assert!(updated.updated_at >= created.updated_at);
    let rows = |o: &Order| o.cdc.clone().unwrap();
    assert!(rows(&updated).header > rows(&created).header, "log positions grow");
    let (_, line) = get(Table::Lines, "lines-c");
    let (_, line_u) = get(Table::Lines, "lines-u");
    let (_, line_d) = get(Table::Lines, "lines-d");
    assert_eq!(line.lines.len(), 1);
    assert_eq!(line_u.lines[0].status, LineStatus::Shipped);
    assert!(line_d.lines.is_empty() && rows(&line_d).lines.values().all(|r| r.deleted));
    let (_, _) = get(Table::Lines, "lines-r");
    let (_, cascade) = get(Table::Lines, "lines-d-cascade");
    assert!(cascade.lines.is_empty());
    // Order 1002 from its records, whatever order the two topics deliver them in.
    let parts = [created, updated, line, line_u, line_d];
    let fold = |items: &mut dyn Iterator<Item = &Order>| {
        let mut v = OrderView::new("1002");
        for o in items {
            v.apply(Component::Order(o.clone()));
        }
        v
    };
    let forward = fold(&mut parts.iter());
    assert_eq!(forward, fold(&mut parts.iter().rev()));
    let o = forward.order.unwrap();
    assert_eq!(o.status, OrderStatus::Confirmed);
    assert_eq!(
        o.lines.iter().map(|l| (l.line_id.as_str(), l.status)).collect::<Vec<_>>(),
        [("1", LineStatus::Shipped)]
    );
    // Tombstones carry nothing.
    assert!(decode(Table::Orders, b"", &map).unwrap().is_none());
}
