//! Pure hot paths of the event side: merging events into a view, Avro
//! decoding of an event, JSON serialisation of a view (as filled into the
//! cache, with PII and redacted), and Debezium change events of the legacy
//! database with the row-by-row merge. Before criterion runs, each benchmark
//! prints its allocations per call.
//! Run: `cargo bench --bench model`.

#[path = "common/alloc.rs"]
mod alloc_count;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use order_gateway::events::{avro, encode_avro, Stream};
use order_gateway::model::*;

fn order(version: u64, lines: usize) -> Order {
    Order {
        order_id: "0b9f3c1e-2f4e-4b8e-9a57-3c1d2e4f5a6b".into(),
        order_number: "ON-00001234".into(),
        customer_id: "cust-000042".into(),
        channel: Channel::Web,
        status: OrderStatus::Shipped,
        currency: "EUR".into(),
        subtotal: 4998,
        tax: 950,
        shipping: 499,
        discount: 0,
        total: 6447,
        lines: (0..lines)
            .map(|i| OrderLine {
                line_id: format!("l{i}"),
                sku: format!("SKU-{:05}", i * 37),
                name: "Stoneware mug, 350 ml, speckled white".into(),
                quantity: 1 + (i as u32 % 2),
                unit_price: 1299,
                status: LineStatus::Shipped,
            })
            .collect(),
        shipping_address: Some(Address {
            name: "Alex Example".into(),
            line1: "Hauptstrasse 12".into(),
            line2: None,
            city: "Berlin".into(),
            region: Some("BE".into()),
            postal_code: "10115".into(),
            country: "DE".into(),
        }),
        email: Some("alex@example.com".into()),
        phone: Some("+49 30 1234567".into()),
        promised_delivery_at: Some(Timestamp(1_700_300_000_000)),
        created_at: Timestamp(1_700_000_000_000),
        updated_at: Timestamp(1_700_000_500_000),
        version,
        deleted: false,
        cdc: None,
    }
}

fn fulfillment(id: u32, version: u64) -> Fulfillment {
    Fulfillment {
        fulfillment_id: format!("f-{id}"),
        order_id: "0b9f3c1e-2f4e-4b8e-9a57-3c1d2e4f5a6b".into(),
        kind: FulfillmentType::Ship,
        status: FulfillmentStatus::Shipped,
        carrier: Some("DHL".into()),
        tracking_number: Some("JJD0003900071234".into()),
        line_ids: vec!["l0".into(), "l1".into()],
        shipped_at: Some(Timestamp(1_700_100_000_000)),
        delivered_at: None,
        version,
    }
}

fn view() -> OrderView {
    let mut v = OrderView::from_component(Component::Order(order(5, 3)));
    v.apply(Component::Fulfillment(fulfillment(1, 3)));
    v.apply(Component::Fulfillment(fulfillment(2, 2)));
    v
}

/// Allocation counts: calls per benchmark.
const N: u64 = 1_000;

fn bench_apply(c: &mut Criterion) {
    let base = view();
    // The component is made beforehand, as in the timed runs: only the merge (and drops) count.
    alloc_count::report_batched(
        "apply/newer_order_header",
        N,
        || (base.clone(), Component::Order(order(6, 3))),
        |(mut v, c)| v.apply(c),
    );
    alloc_count::report_batched(
        "apply/stale_order_header",
        N,
        || (base.clone(), Component::Order(order(4, 3))),
        |(mut v, c)| v.apply(c),
    );
    alloc_count::report_batched(
        "apply/newer_fulfillment",
        N,
        || (base.clone(), Component::Fulfillment(fulfillment(2, 3))),
        |(mut v, c)| v.apply(c),
    );
    alloc_count::report("apply/etag", N, || base.etag());

    let mut g = c.benchmark_group("apply");
    g.throughput(Throughput::Elements(1));
    g.bench_function("newer_order_header", |b| {
        b.iter_batched(
            || (base.clone(), Component::Order(order(6, 3))),
            |(mut v, c)| black_box(v.apply(c)),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("stale_order_header", |b| {
        b.iter_batched(
            || (base.clone(), Component::Order(order(4, 3))),
            |(mut v, c)| black_box(v.apply(c)),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("newer_fulfillment", |b| {
        b.iter_batched(
            || (base.clone(), Component::Fulfillment(fulfillment(2, 3))),
            |(mut v, c)| black_box(v.apply(c)),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("etag", |b| b.iter(|| black_box(base.etag())));
    g.finish();
}

fn bench_codec(c: &mut Criterion) {
    let event = Event {
        envelope: Envelope {
            event_id: "5e0c4c4e-8d0a-4f7e-9d1b-2b3c4d5e6f70".into(),
            event_type: "order.shipped".into(),
            source: "digital".into(),
            occurred_at: Timestamp(1_700_000_500_000),
            schema_version: 1,
        },
        component: Component::Order(order(5, 3)),
    };
    let bytes = encode_avro(&event, 1);
    let schema = apache_avro::Schema::parse_str(avro::ORDER_EVENT_AVSC).unwrap();
    let writer = avro::WriterSchema::new(schema.clone());
    let v = view();
    let json = serde_json::to_vec(&v).unwrap();
    assert!(v.has_pii(), "the redacted benchmark needs a view with PII");
    alloc_count::report("codec/avro_decode_order_event", N, || {
        avro::decode_body(Stream::Orders, &writer, &bytes[5..]).unwrap()
    });
    alloc_count::report("codec/avro_decode_order_event_resolved", N, || {
        avro::decode_resolved(Stream::Orders, &schema, &bytes[5..]).unwrap()
    });
    alloc_count::report("codec/avro_encode_order_event", N, || encode_avro(&event, 1));
    alloc_count::report("codec/json_serialize_view", N, || serde_json::to_vec(&v).unwrap());
    alloc_count::report("codec/json_serialize_view_redacted", N, || serde_json::to_vec(&v.without_pii()).unwrap());
    alloc_count::report("codec/json_deserialize_view", N, || serde_json::from_slice::<OrderView>(&json).unwrap());

    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("avro_decode_order_event", |b| {
        b.iter(|| black_box(avro::decode_body(Stream::Orders, &writer, &bytes[5..]).unwrap()))
    });
    // The path for any other writer schema (a producer on a newer contract).
    g.bench_function("avro_decode_order_event_resolved", |b| {
        b.iter(|| black_box(avro::decode_resolved(Stream::Orders, &schema, &bytes[5..]).unwrap()))
    });
    g.bench_function("avro_encode_order_event", |b| b.iter(|| black_box(encode_avro(&event, 1))));
    g.throughput(Throughput::Bytes(json.len() as u64));
    g.bench_function("json_serialize_view", |b| b.iter(|| black_box(serde_json::to_vec(&v).unwrap())));
    // What a reader without orders:pii costs on first use of a cache entry (CachedView::body).
    g.throughput(Throughput::Bytes(serde_json::to_vec(&v.without_pii()).unwrap().len() as u64));
    g.bench_function("json_serialize_view_redacted", |b| {
        b.iter(|| black_box(serde_json::to_vec(&black_box(&v).without_pii()).unwrap()))
    });
    g.throughput(Throughput::Bytes(json.len() as u64));
    g.bench_function("json_deserialize_view", |b| {
        b.iter(|| black_box(serde_json::from_slice::<OrderView>(&json).unwrap()))
    });
    g.finish();
}

/// A change event Debezium wrote (tests/fixtures/debezium/), decoded, and
/// the row-by-row merge of a legacy order's line into its header.
fn bench_cdc(c: &mut Criterion) {
    use order_gateway::events::debezium::{decode, Table};
    let map = order_gateway::config::Config::load(None).unwrap().cdc;
    let read =
        |name: &str| std::fs::read(format!("{}/tests/fixtures/debezium/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let (header_json, line_json) = (read("orders-u.json"), read("lines-u.json"));
    let order_of = |e: Event| match e.component {
        Component::Order(o) => o,
        Component::Fulfillment(_) => unreachable!(),
    };
    let header = order_of(decode(Table::Orders, &header_json, &map).unwrap().unwrap());
    let line = order_of(decode(Table::Lines, &line_json, &map).unwrap().unwrap());
    let base = OrderView::from_component(Component::Order(header));
    alloc_count::report("cdc/debezium_decode_order_row", N, || decode(Table::Orders, &header_json, &map).unwrap());
    alloc_count::report("cdc/debezium_decode_line_row", N, || decode(Table::Lines, &line_json, &map).unwrap());
    let mut g = c.benchmark_group("cdc");
    g.throughput(Throughput::Bytes(header_json.len() as u64));
    g.bench_function("debezium_decode_order_row", |b| {
        b.iter(|| black_box(decode(Table::Orders, &header_json, &map).unwrap()))
    });
    g.throughput(Throughput::Bytes(line_json.len() as u64));
    g.bench_function("debezium_decode_line_row", |b| {
        b.iter(|| black_box(decode(Table::Lines, &line_json, &map).unwrap()))
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("merge_line_into_header", |b| {
        b.iter_batched(
            || (base.clone(), Component::Order(line.clone())),
            |(mut v, c)| black_box(v.apply(c)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_apply, bench_codec, bench_cdc);
criterion_main!(benches);
