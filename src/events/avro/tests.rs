use super::*;

use crate::model::fixtures::{fulfillment_event, order_event};

use crate::model::fixtures::order as sample_order;

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
