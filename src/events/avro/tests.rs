use super::*;

use crate::model::fixtures::{fulfillment_event, order_event};

#[test]
fn avro_round_trip_through_the_wire_format() {
    for event in [order_event(3), fulfillment_event()] {
        let bytes = encode_avro(&event, 77);
        let (id, body) = split_frame(&bytes).unwrap();
        assert_eq!(id, 77);
        let stream = Stream::of(&event);
        let back = decode_body(stream, &WriterSchema::contract(stream), body).unwrap();
        assert_eq!(back, event);
        assert_eq!(decode_resolved(stream, reader_schema(stream), body).unwrap(), event);
    }
}

#[test]
fn json_round_trip() {
    for event in [order_event(3), fulfillment_event()] {
        let bytes = crate::events::encode_json(&event);
        assert_eq!(crate::events::decode_json(Stream::of(&event), &bytes).unwrap(), event);
    }
}

#[test]
fn a_newer_writer_schema_with_an_extra_field_still_decodes() {
    // A producer on a later contract adds a field with a default: the gateway
    // resolves the body against its own schema and ignores the new field.
    let mut writer: serde_json::Value = serde_json::from_str(ORDER_EVENT_AVSC).unwrap();
    writer["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "trace_id", "type": "string", "default": ""}));
    let writer = WriterSchema::new(Schema::parse_str(&writer.to_string()).unwrap());
    assert!(!writer.is_contract_of(Stream::Orders));
    let mut value = to_value(&order_event(5));
    if let Value::Record(f) = &mut value {
        f.push(("trace_id".into(), Value::String("abc".into())));
    }
    let body = apache_avro::to_avro_datum(&writer.schema, value).unwrap();
    let back = decode_body(Stream::Orders, &writer, &body).unwrap();
    assert_eq!(back, order_event(5));
}

#[test]
fn broken_frames_and_bodies_are_malformed() {
    assert_eq!(split_frame(&[]).unwrap_err().reason(), "undecodable");
    assert_eq!(split_frame(&[1, 0, 0, 0, 1, 2]).unwrap_err().reason(), "undecodable");
    assert_eq!(split_frame(&[0, 0, 0]).unwrap_err().reason(), "undecodable");
    let orders = WriterSchema::contract(Stream::Orders);
    let err = decode_body(Stream::Orders, &orders, &[0xff, 0xff, 0xff]).unwrap_err();
    assert_eq!(err.reason(), "undecodable");
    // A fulfilment body on the orders stream does not resolve.
    let bytes = encode_avro(&fulfillment_event(), 1);
    let err = decode_body(Stream::Orders, &WriterSchema::contract(Stream::Fulfillments), &bytes[5..]).unwrap_err();
    assert_eq!(err.reason(), "undecodable", "{err}");
}

#[test]
fn invalid_values_name_the_field() {
    let mut e = order_event(1);
    if let Component::Order(o) = &mut e.component {
        o.currency = "euro".into();
    }
    let bytes = encode_avro(&e, 1);
    for err in [
        decode_body(Stream::Orders, &WriterSchema::contract(Stream::Orders), &bytes[5..]).unwrap_err(),
        decode_resolved(Stream::Orders, order_schema(), &bytes[5..]).unwrap_err(),
    ] {
        assert!(matches!(err, DecodeError::InvalidField { field: "currency", .. }), "{err}");
    }
    let bad_status = String::from_utf8(crate::events::encode_json(&order_event(1)))
        .unwrap()
        .replace("\"partially_shipped\"", "\"lost\"");
    let err = crate::events::decode_json(Stream::Orders, bad_status.as_bytes()).unwrap_err();
    assert_eq!(err.reason(), "undecodable");
    assert!(!err.to_string().contains("a@example.com"), "no PII in errors: {err}");
}

#[test]
fn the_contract_schemas_are_recognised_and_told_apart() {
    assert!(WriterSchema::contract(Stream::Orders).is_contract_of(Stream::Orders));
    assert!(!WriterSchema::contract(Stream::Orders).is_contract_of(Stream::Fulfillments));
    assert!(WriterSchema::contract(Stream::Fulfillments).is_contract_of(Stream::Fulfillments));
    // Docs and defaults are not part of the layout: a copy without them is still the contract.
    let mut bare: serde_json::Value = serde_json::from_str(ORDER_EVENT_AVSC).unwrap();
    bare.as_object_mut().unwrap().remove("doc");
    assert!(WriterSchema::new(Schema::parse_str(&bare.to_string()).unwrap()).is_contract_of(Stream::Orders));
}

#[test]
fn every_truncation_of_a_body_is_an_error_on_both_paths() {
    for event in [order_event(3), fulfillment_event()] {
        let stream = Stream::of(&event);
        let bytes = encode_avro(&event, 1);
        let body = &bytes[5..];
        let writer = WriterSchema::contract(stream);
        for cut in 0..body.len() {
            let direct = decode_body(stream, &writer, &body[..cut]);
            assert!(direct.is_err(), "direct decode accepted {cut} of {} bytes", body.len());
            assert_eq!(direct.unwrap_err().reason(), "undecodable");
            assert!(decode_resolved(stream, reader_schema(stream), &body[..cut]).is_err());
        }
        // And a byte too many.
        let mut long = body.to_vec();
        long.push(0);
        assert!(decode_body(stream, &writer, &long).is_err());
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(16))]
    /// The direct reader and the resolving one agree on every generated event.
    #[test]
    fn direct_and_resolved_decoding_agree(seed in proptest::prelude::any::<u64>()) {
        let now = Timestamp(1_790_000_000_000);
        for event in crate::seed::generate::generate(30, seed, now) {
            let stream = Stream::of(&event);
            let bytes = encode_avro(&event, 1);
            let direct = decode_body(stream, &WriterSchema::contract(stream), &bytes[5..]).unwrap();
            let resolved = decode_resolved(stream, reader_schema(stream), &bytes[5..]).unwrap();
            proptest::prop_assert_eq!(&direct, &resolved);
            proptest::prop_assert_eq!(&direct, &event);
        }
    }
}

/// The contract of `stream` with every `timestamp-millis` replaced by `logical_type`.
fn contract_with_timestamps_as(stream: Stream, logical_type: &str) -> WriterSchema {
    let avsc = match stream {
        Stream::Orders => ORDER_EVENT_AVSC,
        Stream::Fulfillments => FULFILLMENT_EVENT_AVSC,
    };
    assert!(avsc.contains("\"timestamp-millis\""));
    let text = avsc.replace("\"timestamp-millis\"", &format!("\"{logical_type}\""));
    WriterSchema::new(Schema::parse_str(&text).unwrap())
}

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

#[test]
fn a_writer_with_finer_timestamps_is_not_the_contract_and_reads_in_milliseconds() {
    // The issue: the Parsing Canonical Form drops `logicalType`, so a
    // producer's `timestamp-micros` looked like the contract and the direct
    // reader took the microseconds for milliseconds (1000x, no error).
    type Retime = fn(i64) -> Value;
    let cases: [(&str, Retime); 2] = [
        // Sub-millisecond parts round down to the contract's millisecond.
        ("timestamp-micros", |ms| Value::TimestampMicros(ms * 1_000 + 999)),
        ("timestamp-nanos", |ms| Value::TimestampNanos(ms * 1_000_000 + 999_999)),
    ];
    for (logical_type, retime) in cases {
        for event in [order_event(5), fulfillment_event()] {
            let stream = Stream::of(&event);
            let writer = contract_with_timestamps_as(stream, logical_type);
            assert_eq!(writer.schema.canonical_form(), reader_schema(stream).canonical_form(), "same PCF");
            assert!(!writer.is_contract_of(stream), "{logical_type} is not the contract of {stream:?}");
            assert!(!writer.is_contract_of(Stream::Orders) && !writer.is_contract_of(Stream::Fulfillments));

            let body = apache_avro::to_avro_datum(&writer.schema, retimed(to_value(&event), &retime)).unwrap();
            let from_finer = decode_body(stream, &writer, &body).unwrap();
            let framed = encode_avro(&event, 1);
            let from_contract = decode_body(stream, &WriterSchema::contract(stream), &framed[5..]).unwrap();
            assert_eq!(from_finer, from_contract, "{logical_type} body of {stream:?}");
            assert_eq!(from_finer, event, "{logical_type} body of {stream:?}");
        }
    }
    // The contract itself still takes the fast path.
    for stream in [Stream::Orders, Stream::Fulfillments] {
        assert!(WriterSchema::contract(stream).is_contract_of(stream));
        assert!(contract_with_timestamps_as(stream, "timestamp-millis").is_contract_of(stream));
    }
}

#[test]
fn instants_before_1970_round_down_to_their_millisecond() {
    let writer = contract_with_timestamps_as(Stream::Orders, "timestamp-micros");
    let mut event = order_event(2);
    event.envelope.occurred_at = Timestamp(-1_500);
    let value = retimed(to_value(&event), &|ms| Value::TimestampMicros(ms * 1_000 + 1));
    let body = apache_avro::to_avro_datum(&writer.schema, value).unwrap();
    // -1_499_999 µs lies in the millisecond that starts at -1_500 ms.
    assert_eq!(decode_body(Stream::Orders, &writer, &body).unwrap(), event);
}

#[test]
fn a_writer_with_local_timestamps_is_refused_not_misread() {
    // A local timestamp has no time zone: it is not the contract's instant,
    // and there is no right conversion, so the event is refused.
    for logical_type in ["local-timestamp-millis", "local-timestamp-micros"] {
        let writer = contract_with_timestamps_as(Stream::Orders, logical_type);
        assert!(!writer.is_contract_of(Stream::Orders), "{logical_type}");
        let retime = |ms: i64| match logical_type {
            "local-timestamp-millis" => Value::LocalTimestampMillis(ms),
            _ => Value::LocalTimestampMicros(ms * 1_000),
        };
        let body = apache_avro::to_avro_datum(&writer.schema, retimed(to_value(&order_event(2)), &retime)).unwrap();
        let err = decode_body(Stream::Orders, &writer, &body).unwrap_err();
        assert_eq!(err.reason(), "undecodable", "{logical_type}: {err}");
    }
}

// ---- Hostile bodies (issue 12) -------------------------------------------

/// The largest single allocation a closure makes on its own thread: every
/// allocation of this test binary goes through here, and is noted only while
/// [`largest_allocation`] runs on that thread.
mod allocations {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static LARGEST: Cell<Option<usize>> = const { Cell::new(None) };
    }

    fn note(size: usize) {
        let _ = LARGEST.try_with(|l| {
            if let Some(m) = l.get() {
                l.set(Some(m.max(size)));
            }
        });
    }

    struct Noting;

    unsafe impl GlobalAlloc for Noting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            System.alloc(layout)
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            System.alloc_zeroed(layout)
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size);
            System.realloc(ptr, layout, new_size)
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout)
        }
    }

    #[global_allocator]
    static NOTING: Noting = Noting;

    /// `f`'s result and the size of the largest allocation it made.
    pub fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
        LARGEST.with(|l| l.set(Some(0)));
        let out = f();
        (out, LARGEST.with(|l| l.replace(None)).unwrap_or(0))
    }
}

use allocations::largest_allocation;

/// A zig-zag varint, as Avro writes longs, counts and lengths.
fn zz(n: i64) -> Vec<u8> {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    let mut out = Vec::new();
    while z > 0x7f {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A record `X` with one field `a` of type `field_type` (JSON).
fn record_of(field_type: &str) -> Schema {
    Schema::parse_str(&format!(r#"{{"type":"record","name":"X","fields":[{{"name":"a","type":{field_type}}}]}}"#))
        .unwrap()
}

const NULLS: &str = r#"{"type":"array","items":"null"}"#;
const EMPTY_RECORDS: &str = r#"{"type":"array","items":{"type":"record","name":"E","fields":[]}}"#;
const INT_RECORDS: &str =
    r#"{"type":"array","items":{"type":"record","name":"I","fields":[{"name":"i","type":"int"}]}}"#;
const NULL_MAP: &str = r#"{"type":"map","values":"null"}"#;
const NESTED_NULLS: &str = r#"{"type":"array","items":{"type":"array","items":"null"}}"#;

/// Every bomb shape: (what, writer schema, body). Each body is a few bytes
/// that claim hundreds of millions of items, or a nesting no stack survives.
fn bombs() -> Vec<(String, Schema, Vec<u8>)> {
    let mut out = Vec::new();
    for n in [500_000_000i64, 1_000_000_000] {
        out.push((format!("{n} nulls"), record_of(NULLS), cat(&[&zz(n), &[0]])));
        // A negative count: the block's size in bytes follows.
        out.push((format!("{n} nulls in a sized block"), record_of(NULLS), cat(&[&zz(-n), &zz(0), &[0]])));
        out.push((format!("{n} empty records"), record_of(EMPTY_RECORDS), cat(&[&zz(n), &[0]])));
        out.push((format!("{n} records of an int"), record_of(INT_RECORDS), cat(&[&zz(n), &zz(7), &[0]])));
        out.push((format!("{n} map entries of null"), record_of(NULL_MAP), cat(&[&zz(n), &zz(1), b"k", &[0]])));
        out.push((
            format!("an array of {n} nulls in an array"),
            record_of(NESTED_NULLS),
            cat(&[&zz(1), &zz(n), &[0, 0]]),
        ));
        out.push((format!("{n} empty arrays of nulls"), record_of(NESTED_NULLS), cat(&[&zz(n), &[0, 0]])));
        out.push((format!("a string of {n} bytes"), record_of(r#""string""#), zz(n)));
    }
    // A record that takes one byte and decodes into 201 values, 1000 times.
    let wide: Vec<String> = (0..200).map(|i| format!(r#"{{"name":"n{i}","type":"null"}}"#)).collect();
    let wide = format!(
        r#"{{"type":"array","items":{{"type":"record","name":"W","fields":[{},{{"name":"i","type":"int"}}]}}}}"#,
        wide.join(",")
    );
    out.push(("1000 records of 200 nulls and an int".into(), record_of(&wide), cat(&[&zz(1000), &[0; 1000], &[0]])));
    // A linked list 100 000 deep: one byte a level.
    let list =
        Schema::parse_str(r#"{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}"#).unwrap();
    out.push(("a list 100000 deep".into(), list, cat(&[&[2; 100_000], &[0]])));
    out
}

#[test]
fn every_bomb_is_refused_without_a_large_allocation() {
    for (what, writer, body) in bombs() {
        let started = std::time::Instant::now();
        let (result, largest) = largest_allocation(|| decode_resolved(Stream::Orders, &writer, &body));
        let err = result.expect_err(&what);
        println!("{what}: {} in {:?}, largest allocation {largest} bytes: {err}", err.reason(), started.elapsed());
        assert!(matches!(err.reason(), "undecodable" | "over_limit"), "{what}: {err}");
        // Far below what the counts claim (gigabytes); the schema's own
        // parse tables are the largest thing built.
        assert!(largest < 64 * 1024, "{what}: an allocation of {largest} bytes for a {}-byte body", body.len());
    }
}

#[test]
fn the_refusals_say_what_was_over() {
    let err = decode_resolved(Stream::Orders, &record_of(NULLS), &cat(&[&zz(500_000_000), &[0]])).unwrap_err();
    assert_eq!(err.reason(), "over_limit");
    assert!(err.to_string().contains("max_zero_byte_values 65536"), "{err}");
    let err =
        decode_resolved(Stream::Orders, &record_of(INT_RECORDS), &cat(&[&zz(500_000_000), &zz(7), &[0]])).unwrap_err();
    assert_eq!(err.reason(), "undecodable");
    assert!(err.to_string().contains("a block of 500000000 items with 2 bytes left"), "{err}");
    let list =
        Schema::parse_str(r#"{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}"#).unwrap();
    let err = decode_resolved(Stream::Orders, &list, &cat(&[&[2; 100], &[0]])).unwrap_err();
    assert_eq!(err.to_string(), format!("over a decoding limit: avro: values nested deeper than {MAX_DEPTH}"));
}

/// The contract with one more field, `pad`, of `field_type`: a writer the
/// gateway resolves (and whose extra field it ignores).
fn contract_with_pad(field_type: &str) -> WriterSchema {
    let mut writer: serde_json::Value = serde_json::from_str(ORDER_EVENT_AVSC).unwrap();
    let pad: serde_json::Value = serde_json::from_str(field_type).unwrap();
    writer["fields"].as_array_mut().unwrap().push(serde_json::json!({"name": "pad", "type": pad}));
    WriterSchema::new(Schema::parse_str(&writer.to_string()).unwrap())
}

#[test]
fn zero_byte_values_are_bounded_by_max_zero_byte_values_alone() {
    // An order event whose writer adds an array of nulls: `n` nulls cost
    // the count's few bytes, so only max_zero_byte_values bounds them.
    let writer = contract_with_pad(NULLS);
    let event = order_event(3);
    let with_nulls = |n: i64| {
        let framed = encode_avro(&event, 1);
        cat(&[&framed[5..], &zz(n), &[0]])
    };
    let limits = Limits::default();
    assert_eq!(decode_body_with(Stream::Orders, &writer, &with_nulls(1_000), &limits).unwrap(), event);
    let err = decode_body_with(Stream::Orders, &writer, &with_nulls(100_000), &limits).unwrap_err();
    assert_eq!(err.reason(), "over_limit", "{err}");
    let roomy = Limits { max_zero_byte_values: 200_000, ..limits };
    assert_eq!(decode_body_with(Stream::Orders, &writer, &with_nulls(100_000), &roomy).unwrap(), event);
}

#[test]
fn a_writer_with_many_small_items_still_decodes() {
    // The budget is one value per byte plus the allowance: 50 000 records of
    // one int (two values in one byte each) fit in it.
    let writer = contract_with_pad(INT_RECORDS);
    let event = order_event(3);
    let framed = encode_avro(&event, 1);
    let body = cat(&[&framed[5..], &zz(50_000), &[2; 50_000], &[0]]);
    assert_eq!(decode_body(Stream::Orders, &writer, &body).unwrap(), event);
}

/// An order body whose `lines` count says `count` (the direct path's bomb).
fn order_body_with_line_count(count: i64) -> Vec<u8> {
    let mut none = order_event(3);
    let mut one = order_event(3);
    match (&mut none.component, &mut one.component) {
        (Component::Order(a), Component::Order(b)) => {
            a.lines.clear();
            b.lines.truncate(1);
            assert_eq!(b.lines.len(), 1);
        }
        _ => unreachable!(),
    }
    let (none, one) = (encode_avro(&none, 1), encode_avro(&one, 1));
    // The bodies part where the count of lines is: 0 for none, 1 for one.
    let at = none.iter().zip(&one).position(|(a, b)| a != b).unwrap();
    assert_eq!((none[at], one[at]), (0, 2));
    cat(&[&none[5..at], &zz(count), &none[at + 1..]])
}

#[test]
fn the_direct_path_refuses_counts_the_body_cannot_hold() {
    let contract = WriterSchema::contract(Stream::Orders);
    let read = decode_body(Stream::Orders, &contract, &order_body_with_line_count(0)).unwrap();
    assert_eq!(read.order_id(), order_event(3).order_id(), "the count is where the test thinks it is");
    for count in [500_000_000, 1_000_000_000, -500_000_000, 40] {
        let body = order_body_with_line_count(count);
        let (result, largest) = largest_allocation(|| decode_body(Stream::Orders, &contract, &body));
        let err = result.unwrap_err();
        assert_eq!(err.reason(), "undecodable", "{count}: {err}");
        assert!(largest < 64 * 1024, "{count} lines: an allocation of {largest} bytes");
    }
    // A count the body could hold (a megabyte follows it) is not room to
    // make: an item takes a byte at least, and tens of bytes in memory.
    let mut body = order_body_with_line_count(1_000_000);
    body.extend(std::iter::repeat_n(0, 1_000_000));
    let (result, largest) = largest_allocation(|| decode_body(Stream::Orders, &contract, &body));
    assert!(result.is_err());
    assert!(largest < 64 * 1024, "1000000 lines before a megabyte: an allocation of {largest} bytes");
}

#[test]
fn oversized_messages_are_refused_unread() {
    let limits = Limits { max_message_bytes: 1024, ..Limits::default() };
    assert!(limits.check_size(&[0; 1024]).is_ok());
    let err = limits.check_size(&[0; 1025]).unwrap_err();
    assert_eq!((err.reason(), err.to_string().as_str()), ("oversized", "1025 bytes, limit 1024"));
}

/// A stand-in schema registry: answers `routes` by path (404 otherwise) and
/// counts the requests for each path.
struct FakeRegistry {
    url: String,
    asked: Arc<std::sync::Mutex<HashMap<String, usize>>>,
}

impl FakeRegistry {
    async fn start(routes: Vec<(String, serde_json::Value)>) -> FakeRegistry {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/apis/ccompat/v7", listener.local_addr().unwrap());
        let asked = Arc::new(std::sync::Mutex::new(HashMap::<String, usize>::new()));
        let counts = asked.clone();
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request).lines().next().unwrap_or_default().to_owned();
                let path =
                    line.split(' ').nth(1).unwrap_or_default().trim_start_matches("/apis/ccompat/v7/").to_owned();
                *counts.lock().unwrap().entry(path.clone()).or_default() += 1;
                let (status, body) = match routes.iter().find(|(p, _)| *p == path) {
                    Some((_, body)) => ("200 OK", body.to_string()),
                    None => ("404 Not Found", r#"{"error_code":40403,"message":"not found"}"#.to_owned()),
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            }
        });
        FakeRegistry { url, asked }
    }

    fn asked(&self, path: &str) -> usize {
        self.asked.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    fn decoder(&self, allow_any_subject: bool, negative_ttl: std::time::Duration) -> Decoder {
        let mut config = crate::config::Config::defaults();
        config.topics.orders = "t.orders".into();
        config.topics.fulfillments = "t.fulfillments".into();
        config.schema_registry.url = self.url.parse().unwrap();
        config.schema_registry.allow_any_subject = allow_any_subject;
        config.schema_registry.negative_ttl = negative_ttl;
        let registry = RegistryClient::new(&config.schema_registry).unwrap();
        Decoder::for_serve(&config, registry)
    }
}

fn frame(id: u32, body: &[u8]) -> Vec<u8> {
    cat(&[&[0], &id.to_be_bytes(), body])
}

/// The registry of the tests below: id 7 is the contract under the orders
/// topic's subject, id 8 the array-of-nulls bomb schema under another one.
async fn registry_with_a_foreign_bomb() -> FakeRegistry {
    let bomb_schema = r#"{"type":"record","name":"X","fields":[{"name":"a","type":{"type":"array","items":"null"}}]}"#;
    FakeRegistry::start(vec![
        ("schemas/ids/7/versions".into(), serde_json::json!([{"subject": "t.orders-value", "version": 1}])),
        ("schemas/ids/7".into(), serde_json::json!({ "schema": ORDER_EVENT_AVSC })),
        ("schemas/ids/8/versions".into(), serde_json::json!([{"subject": "unrelated-value", "version": 1}])),
        ("schemas/ids/8".into(), serde_json::json!({ "schema": bomb_schema })),
    ])
    .await
}

#[tokio::test]
async fn only_ids_under_the_topics_subject_are_used_and_refusals_are_remembered() {
    let registry = registry_with_a_foreign_bomb().await;
    let decoder = registry.decoder(false, std::time::Duration::from_secs(30));
    let event = order_event(3);

    // The contract under the topic's subject: fetched once, then cached.
    for _ in 0..3 {
        assert_eq!(decoder.decode(Stream::Orders, &encode_avro(&event, 7)).await.unwrap(), event);
    }
    assert_eq!((registry.asked("schemas/ids/7/versions"), registry.asked("schemas/ids/7")), (1, 1));
    // The same id on the fulfilments topic is not under that topic's subject.
    let err = decoder.decode(Stream::Fulfillments, &encode_avro(&fulfillment_event(), 7)).await.unwrap_err();
    assert_eq!(err.reason(), "foreign_schema", "{err}");

    // The 10-byte bomb, its schema under an unrelated subject: refused, its
    // schema never fetched, and the refusal remembered.
    let bomb = frame(8, &zz(500_000_000));
    for _ in 0..3 {
        let err = decoder.decode(Stream::Orders, &bomb).await.unwrap_err();
        assert_eq!(err.to_string(), "schema id 8 is not registered under subject t.orders-value");
        assert_eq!(err.reason(), "foreign_schema");
    }
    assert_eq!((registry.asked("schemas/ids/8/versions"), registry.asked("schemas/ids/8")), (1, 0));

    // An id the registry does not know: asked once, then refused from memory.
    for _ in 0..3 {
        let err = decoder.decode(Stream::Orders, &frame(9, &[0])).await.unwrap_err();
        assert_eq!(err.reason(), "unknown_schema", "{err}");
    }
    assert_eq!(registry.asked("schemas/ids/9/versions"), 1);

    // Larger than the limit: refused before the registry is asked.
    let big = frame(10, &vec![0; 1024 * 1024]);
    assert_eq!(decoder.decode(Stream::Orders, &big).await.unwrap_err().reason(), "oversized");
    assert_eq!(registry.asked("schemas/ids/10/versions"), 0);
}

#[tokio::test]
async fn with_any_subject_allowed_the_bomb_meets_the_bounds_check() {
    let registry = registry_with_a_foreign_bomb().await;
    let decoder = registry.decoder(true, std::time::Duration::from_secs(30));
    let err = decoder.decode(Stream::Orders, &frame(8, &cat(&[&zz(500_000_000), &[0]]))).await.unwrap_err();
    assert_eq!(err.reason(), "over_limit", "{err}");
    assert_eq!((registry.asked("schemas/ids/8/versions"), registry.asked("schemas/ids/8")), (0, 1));
    let event = order_event(2);
    assert_eq!(decoder.decode(Stream::Orders, &encode_avro(&event, 7)).await.unwrap(), event);
}

#[tokio::test]
async fn a_refusal_is_asked_again_after_negative_ttl() {
    let registry = registry_with_a_foreign_bomb().await;
    let decoder = registry.decoder(false, std::time::Duration::from_millis(200));
    assert_eq!(decoder.decode(Stream::Orders, &frame(9, &[0])).await.unwrap_err().reason(), "unknown_schema");
    assert_eq!(decoder.decode(Stream::Orders, &frame(9, &[0])).await.unwrap_err().reason(), "unknown_schema");
    assert_eq!(registry.asked("schemas/ids/9/versions"), 1);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(decoder.decode(Stream::Orders, &frame(9, &[0])).await.unwrap_err().reason(), "unknown_schema");
    assert_eq!(registry.asked("schemas/ids/9/versions"), 2);
    // Zero: no memory at all.
    let decoder = registry.decoder(false, std::time::Duration::ZERO);
    for _ in 0..2 {
        decoder.decode(Stream::Orders, &frame(11, &[0])).await.unwrap_err();
    }
    assert_eq!(registry.asked("schemas/ids/11/versions"), 2);
}
