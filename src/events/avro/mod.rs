//! Avro in the Confluent wire format: a zero magic byte, the writer schema's
//! registry id (4 bytes, big endian), then the Avro binary body. Writer
//! schemas are fetched from the registry by id once and cached; the body is
//! resolved against the gateway's own schemas (`schemas/avro`), so producers
//! may add fields with defaults without breaking the gateway. A body written
//! with the contract's own schema (logical types included: [`Layout`]) is read
//! straight into the model ([`direct`]); any other writer schema is resolved
//! through `apache_avro`, with instants brought to milliseconds.
//!
//! Hostile messages: a message larger than its [`Limits`] is refused unread;
//! by default a writer schema is used only if it is registered under the
//! topic's own subject (`<topic>-value`), so an id from elsewhere in the
//! registry is refused before its schema is even parsed; the resolved path
//! walks the body once without building anything ([`bounds`]) and refuses it
//! when its counts claim more than its bytes hold; the direct path checks its
//! counts as it reads them.

mod bounds;
mod direct;
mod fields;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock, RwLock};

use apache_avro::schema::SchemaKind;
use apache_avro::types::Value;
use apache_avro::Schema;

use super::{validate, DecodeError, Limits, Stream};
use crate::backends::schema_registry::RegistryClient;
use crate::config::Config;
use crate::model::*;
use crate::telemetry::context::TraceParent;

pub use bounds::MAX_DEPTH;

/// The contract's schemas, as shipped in `schemas/avro`.
pub const ORDER_EVENT_AVSC: &str = include_str!("../../../schemas/avro/OrderEvent.avsc");
pub const FULFILLMENT_EVENT_AVSC: &str = include_str!("../../../schemas/avro/FulfillmentEvent.avsc");

fn order_schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| Schema::parse_str(ORDER_EVENT_AVSC).expect("OrderEvent.avsc is valid"))
}

fn fulfillment_schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| Schema::parse_str(FULFILLMENT_EVENT_AVSC).expect("FulfillmentEvent.avsc is valid"))
}

fn reader_schema(stream: Stream) -> &'static Schema {
    match stream {
        Stream::Orders => order_schema(),
        Stream::Fulfillments => fulfillment_schema(),
    }
}

/// What the fast path is chosen by: a schema's Parsing Canonical Form and the
/// logical type of each of its nodes, in schema order.
///
/// The Parsing Canonical Form alone is not enough: the specification strips
/// `logicalType` from it (it is about parsing the bytes, and a
/// `timestamp-micros` parses as a `long`), while the direct reader takes every
/// timestamp in the contract's unit. A writer with `timestamp-micros` where the contract has
/// `timestamp-millis` has the same form, and read directly its instants came
/// out 1000 times too far in the future, with no error. The parsed
/// [`Schema`] keeps logical types as variants of their own
/// (`Schema::TimestampMicros`, `Schema::TimestampMillis`, ...), so the kinds
/// of its nodes say exactly what the form leaves out; equal forms mean equal
/// trees, so the two walks line up node by node.
///
/// Not `Schema`'s own `==`: it calls a process-wide, replaceable comparator
/// (`apache_avro::schema_equality`) whose default ignores the names of record
/// fields, so a writer that swapped `created_at` and `updated_at` would
/// compare equal. Nor a field-by-field comparison of everything parsed: docs,
/// defaults, aliases and custom attributes (tools add some, e.g.
/// `connect.name`) do not change how the bytes read, and would only send
/// harmless variants of the contract down the slow path.
#[derive(Debug, PartialEq, Eq)]
struct Layout {
    form: String,
    kinds: Vec<SchemaKind>,
}

impl Layout {
    fn of(schema: &Schema) -> Layout {
        fn walk(schema: &Schema, kinds: &mut Vec<SchemaKind>) {
            kinds.push(SchemaKind::from(schema));
            match schema {
                Schema::Array(a) => walk(&a.items, kinds),
                Schema::Map(m) => walk(&m.types, kinds),
                Schema::Union(u) => u.variants().iter().for_each(|v| walk(v, kinds)),
                Schema::Record(r) => r.fields.iter().for_each(|f| walk(&f.schema, kinds)),
                Schema::Decimal(d) => walk(&d.inner, kinds),
                _ => {}
            }
        }
        let mut kinds = Vec::new();
        walk(schema, &mut kinds);
        Layout { form: schema.canonical_form(), kinds }
    }
}

/// The [`Layout`] of each reader schema.
fn reader_layout(stream: Stream) -> &'static Layout {
    static ORDERS: OnceLock<Layout> = OnceLock::new();
    static FULFILLMENTS: OnceLock<Layout> = OnceLock::new();
    match stream {
        Stream::Orders => ORDERS.get_or_init(|| Layout::of(order_schema())),
        Stream::Fulfillments => FULFILLMENTS.get_or_init(|| Layout::of(fulfillment_schema())),
    }
}

/// A writer schema, and the stream whose contract it is, if it is one.
#[derive(Debug)]
pub struct WriterSchema {
    schema: Schema,
    own: Option<Stream>,
}

impl WriterSchema {
    /// Wraps a parsed schema, comparing it once with the contract's: same
    /// names, fields, order, types and logical types ([`Layout`]).
    pub fn new(schema: Schema) -> Self {
        let layout = Layout::of(&schema);
        let own = [Stream::Orders, Stream::Fulfillments].into_iter().find(|s| *reader_layout(*s) == layout);
        WriterSchema { schema, own }
    }

    /// The contract's own schema of `stream`.
    pub fn contract(stream: Stream) -> Self {
        WriterSchema::new(reader_schema(stream).clone())
    }

    /// Whether bodies for `stream` written with this schema are read directly.
    pub fn is_contract_of(&self, stream: Stream) -> bool {
        self.own == Some(stream)
    }
}

/// Registry ids of the two event schemas, for producers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaIds {
    pub orders: u32,
    pub fulfillments: u32,
}

impl SchemaIds {
    /// Registers (or finds: registering an identical schema returns its id)
    /// the event schemas under the given subjects.
    pub async fn register(
        registry: &RegistryClient,
        orders_subject: &str,
        fulfillments_subject: &str,
    ) -> anyhow::Result<SchemaIds> {
        Ok(SchemaIds {
            orders: registry.register(orders_subject, ORDER_EVENT_AVSC).await?,
            fulfillments: registry.register(fulfillments_subject, FULFILLMENT_EVENT_AVSC).await?,
        })
    }

    /// The id for an event's stream.
    pub fn for_event(&self, event: &Event) -> u32 {
        match Stream::of(event) {
            Stream::Orders => self.orders,
            Stream::Fulfillments => self.fulfillments,
        }
    }
}

/// Encodes an event in the Confluent wire format under `schema_id`.
pub fn encode_avro(event: &Event, schema_id: u32) -> Vec<u8> {
    let stream = Stream::of(event);
    let value = to_value(event);
    let body =
        apache_avro::to_avro_datum(reader_schema(stream), value).expect("model values always match the shipped schema");
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes Confluent-framed Avro, fetching unknown writer schemas from the
/// registry: within its [`Limits`], and (unless
/// `schema_registry.allow_any_subject`) only with ids registered under the
/// subject of the message's topic.
pub struct Decoder {
    registry: RegistryClient,
    limits: Limits,
    /// The subject each stream's writer schemas must be registered under;
    /// None with `schema_registry.allow_any_subject`.
    subjects: Option<Subjects>,
    /// Parsed writer schemas by id (an id never changes its schema).
    schemas: RwLock<HashMap<u32, Arc<WriterSchema>>>,
    /// Ids found under the subject of a stream; kept as the schemas are
    /// (a subject's versions are not deleted while producers still use them).
    accepted: RwLock<HashSet<(u32, Stream)>>,
    /// Refusals that asking again would repeat for a while (an unknown id, an
    /// id under another subject, a schema that does not parse), kept for
    /// `schema_registry.negative_ttl`; None when that is zero. Bounded: a
    /// producer naming a new id in every message only evicts older refusals.
    refused: Option<moka::sync::Cache<(u32, Stream), DecodeError>>,
}

/// The `<topic>-value` subject of each stream.
#[derive(Debug, Clone)]
struct Subjects {
    orders: String,
    fulfillments: String,
}

impl Subjects {
    fn of(&self, stream: Stream) -> &str {
        match stream {
            Stream::Orders => &self.orders,
            Stream::Fulfillments => &self.fulfillments,
        }
    }
}

/// Most refusals remembered at once.
const REFUSED_MAX: u64 = 10_000;

/// One row of `GET /schemas/ids/{id}/versions`.
#[derive(serde::Deserialize)]
struct SubjectVersion {
    subject: String,
}

impl Decoder {
    /// The decoder of `serve`'s stream: `stream.*` limits.
    pub fn for_serve(config: &Config, registry: RegistryClient) -> Self {
        Decoder::new(config, Limits::of_stream(&config.stream), registry)
    }

    /// The decoder of `ingest`: `ingest.*` limits.
    pub fn for_ingest(config: &Config, registry: RegistryClient) -> Self {
        Decoder::new(config, Limits::of_ingest(&config.ingest), registry)
    }

    /// A decoder with empty caches, the topics' subjects and the registry
    /// rules of `config`, and `limits`.
    pub fn new(config: &Config, limits: Limits, registry: RegistryClient) -> Self {
        cap_avro_allocations(&limits);
        let subjects = (!config.schema_registry.allow_any_subject).then(|| Subjects {
            orders: format!("{}-value", config.topics.orders),
            fulfillments: format!("{}-value", config.topics.fulfillments),
        });
        let ttl = config.schema_registry.negative_ttl;
        let refused =
            (!ttl.is_zero()).then(|| moka::sync::Cache::builder().max_capacity(REFUSED_MAX).time_to_live(ttl).build());
        Decoder {
            registry,
            limits,
            subjects,
            schemas: RwLock::new(HashMap::new()),
            accepted: RwLock::new(HashSet::new()),
            refused,
        }
    }

    /// Decodes one message of `stream`.
    pub async fn decode(&self, stream: Stream, payload: &[u8]) -> Result<Event, DecodeError> {
        self.decode_traced(stream, payload, None).await
    }

    /// [`Decoder::decode`] for a message whose trace is `trace`: a call to
    /// the registry (a schema id not seen before) is a client span of it.
    pub async fn decode_traced(
        &self,
        stream: Stream,
        payload: &[u8],
        trace: Option<&TraceParent>,
    ) -> Result<Event, DecodeError> {
        self.limits.check_size(payload)?;
        let (id, body) = split_frame(payload)?;
        let writer = self.writer_schema(id, stream, trace).await?;
        decode_body_with(stream, &writer, body, &self.limits)
    }

    /// The writer schema `id`, if a message of `stream` may use it.
    async fn writer_schema(
        &self,
        id: u32,
        stream: Stream,
        trace: Option<&TraceParent>,
    ) -> Result<Arc<WriterSchema>, DecodeError> {
        if let Some(schema) = self.known(id, stream) {
            return Ok(schema);
        }
        if let Some(refusal) = self.refused.as_ref().and_then(|r| r.get(&(id, stream))) {
            return Err(refusal);
        }
        let fetched = self.fetch(id, stream, trace).await;
        if let (Err(e), Some(refused)) = (&fetched, &self.refused) {
            // A registry that is down is asked again next time.
            if !e.is_transient() {
                refused.insert((id, stream), e.clone());
            }
        }
        fetched
    }

    /// From the caches alone.
    fn known(&self, id: u32, stream: Stream) -> Option<Arc<WriterSchema>> {
        let schema = self.schemas.read().expect("schema cache lock").get(&id).cloned()?;
        let accepted =
            self.subjects.is_none() || self.accepted.read().expect("schema cache lock").contains(&(id, stream));
        accepted.then_some(schema)
    }

    /// Asks the registry: the subjects of `id` first (unless any is
    /// allowed), then its schema if not parsed yet.
    async fn fetch(
        &self,
        id: u32,
        stream: Stream,
        trace: Option<&TraceParent>,
    ) -> Result<Arc<WriterSchema>, DecodeError> {
        if let Some(subjects) = &self.subjects {
            let subject = subjects.of(stream);
            let versions: Vec<SubjectVersion> =
                self.registry_json(&format!("schemas/ids/{id}/versions"), id, trace, "schema_versions").await?;
            if !versions.iter().any(|v| v.subject == subject) {
                return Err(DecodeError::ForeignSchema { id, subject: subject.to_owned() });
            }
        }
        let parsed = self.schemas.read().expect("schema cache lock").get(&id).cloned();
        let schema = match parsed {
            Some(s) => s,
            None => {
                let body: serde_json::Value =
                    self.registry_json(&format!("schemas/ids/{id}"), id, trace, "schema").await?;
                let text = body.get("schema").and_then(|s| s.as_str()).ok_or(DecodeError::UnknownSchema(id))?;
                let schema = Schema::parse_str(text)
                    .map_err(|e| DecodeError::Malformed(format!("schema {id} does not parse: {e}")))?;
                let schema = Arc::new(WriterSchema::new(schema));
                self.schemas.write().expect("schema cache lock").insert(id, schema.clone());
                schema
            }
        };
        if self.subjects.is_some() {
            self.accepted.write().expect("schema cache lock").insert((id, stream));
        }
        Ok(schema)
    }

    /// A registry answer as JSON; 404 is an unknown id, any other failure
    /// the registry's (transient).
    async fn registry_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        id: u32,
        trace: Option<&TraceParent>,
        operation: &'static str,
    ) -> Result<T, DecodeError> {
        crate::telemetry::trace::call(trace, "schema_registry", operation, |p| async move {
            let mut request = self.registry.get(path);
            if let Some(p) = p {
                request = request.header(crate::telemetry::context::TRACEPARENT, p.traceparent);
                if let Some(state) = p.tracestate {
                    request = request.header("tracestate", state);
                }
            }
            let resp = request.send().await.map_err(|e| DecodeError::RegistryUnavailable(e.to_string()))?;
            if resp.status() == reqwest::StatusCode::NOT_FOUND {
                return Err(DecodeError::UnknownSchema(id));
            }
            if !resp.status().is_success() {
                return Err(DecodeError::RegistryUnavailable(format!("status {}", resp.status())));
            }
            resp.json().await.map_err(|e| DecodeError::RegistryUnavailable(e.to_string()))
        })
        .await
    }
}

/// Sets `apache_avro`'s cap on one length or count (a process-wide setting
/// that the first call fixes; its default is 512 MiB). The bounds check
/// refuses every count a body cannot hold before `apache_avro` reads it, so
/// this is only the backstop, at the largest count [`Limits`] let through.
fn cap_avro_allocations(limits: &Limits) {
    let want = limits.max_message_bytes.max(limits.max_zero_byte_values);
    let set = apache_avro::util::max_allocation_bytes(want);
    if set != want {
        tracing::debug!(set, want, "apache_avro's allocation cap was set before; it stays");
    }
}

/// Splits the Confluent frame into the schema id and the Avro body.
pub fn split_frame(payload: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    match payload {
        [0, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [] => Err(DecodeError::Malformed("empty message".into())),
        [m, ..] if *m != 0 => Err(DecodeError::Malformed(format!("magic byte {m}, expected 0"))),
        _ => Err(DecodeError::Malformed("message shorter than the 5-byte frame".into())),
    }
}

/// Decodes an Avro body written with `writer` as an event of `stream`:
/// directly when `writer` is the contract's schema of `stream`, else resolved.
/// With the default [`Limits`].
pub fn decode_body(stream: Stream, writer: &WriterSchema, body: &[u8]) -> Result<Event, DecodeError> {
    decode_body_with(stream, writer, body, &Limits::default())
}

/// [`decode_body`] within `limits`.
pub fn decode_body_with(
    stream: Stream,
    writer: &WriterSchema,
    body: &[u8],
    limits: &Limits,
) -> Result<Event, DecodeError> {
    if !writer.is_contract_of(stream) {
        return decode_resolved_with(stream, &writer.schema, body, limits);
    }
    let event = direct::decode(stream, body)?;
    validate(&event)?;
    Ok(event)
}

/// Decodes an Avro body written with `writer`, resolved to our schema for
/// `stream` through `apache_avro`'s value tree: works for any compatible
/// writer. With the default [`Limits`].
pub fn decode_resolved(stream: Stream, writer: &Schema, body: &[u8]) -> Result<Event, DecodeError> {
    decode_resolved_with(stream, writer, body, &Limits::default())
}

/// [`decode_resolved`] within `limits`: the body is checked against them
/// ([`bounds`]) before `apache_avro` builds anything from it.
pub fn decode_resolved_with(
    stream: Stream,
    writer: &Schema,
    body: &[u8],
    limits: &Limits,
) -> Result<Event, DecodeError> {
    bounds::check(writer, body, limits)?;
    let mut reader = body;
    let value = apache_avro::from_avro_datum(writer, &mut reader, None)
        .map_err(|e| DecodeError::Malformed(format!("avro: {e}")))?;
    if !reader.is_empty() {
        return Err(DecodeError::Malformed(format!("{} bytes after the record", reader.len())));
    }
    let value = instants_in_millis(value)
        .resolve(reader_schema(stream))
        .map_err(|e| DecodeError::Malformed(format!("avro: {e}")))?;
    let event = fields::event(stream, &mut Rec::from("event", value)?)?;
    validate(&event)?;
    Ok(event)
}

/// Brings `timestamp-micros` and `timestamp-nanos` values to milliseconds,
/// the unit of the contract's `timestamp-millis` and of [`Timestamp`].
///
/// `apache_avro`'s resolution does not convert units: it refuses a micros
/// value where the reader has `timestamp-millis` (and finds no branch for it in
/// `["null", timestamp-millis]`). Every instant of the contract is in
/// milliseconds, so converting every instant of the writer's value before the
/// resolution is exact for the fields the contract reads (and harmless for
/// fields it ignores). Rounds down (`div_euclid`): the millisecond an instant
/// falls in, before 1970 too. Local timestamps are not instants (no time
/// zone): they are left as they are, and the resolution refuses them.
fn instants_in_millis(value: Value) -> Value {
    match value {
        Value::TimestampMicros(n) => Value::TimestampMillis(n.div_euclid(1_000)),
        Value::TimestampNanos(n) => Value::TimestampMillis(n.div_euclid(1_000_000)),
        Value::Union(i, v) => Value::Union(i, Box::new(instants_in_millis(*v))),
        Value::Record(fields) => Value::Record(fields.into_iter().map(|(k, v)| (k, instants_in_millis(v))).collect()),
        Value::Array(items) => Value::Array(items.into_iter().map(instants_in_millis).collect()),
        Value::Map(entries) => Value::Map(entries.into_iter().map(|(k, v)| (k, instants_in_millis(v))).collect()),
        other => other,
    }
}

// ---- model -> Avro value -------------------------------------------------

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}
fn ts(t: Timestamp) -> Value {
    Value::TimestampMillis(t.millis())
}
fn opt(v: Option<Value>) -> Value {
    match v {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(v)),
    }
}
fn rec(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn to_value(event: &Event) -> Value {
    let e = &event.envelope;
    let mut fields = vec![
        ("event_id", s(&e.event_id)),
        ("event_type", s(&e.event_type)),
        ("source", s(&e.source)),
        ("occurred_at", ts(e.occurred_at)),
        ("schema_version", Value::Int(e.schema_version)),
    ];
    match &event.component {
        Component::Order(o) => fields.push(("order", order_value(o))),
        Component::Fulfillment(f) => fields.push(("fulfillment", fulfillment_value(f))),
    }
    rec(fields)
}

fn order_value(o: &Order) -> Value {
    let lines = o
        .lines
        .iter()
        .map(|l| {
            rec(vec![
                ("line_id", s(&l.line_id)),
                ("sku", s(&l.sku)),
                ("name", s(&l.name)),
                ("quantity", Value::Int(l.quantity as i32)),
                ("unit_price", Value::Long(l.unit_price)),
                ("status", s(l.status.as_str())),
            ])
        })
        .collect();
    let address = o.shipping_address.as_ref().map(|a| {
        rec(vec![
            ("name", s(&a.name)),
            ("line1", s(&a.line1)),
            ("line2", opt(a.line2.as_deref().map(s))),
            ("city", s(&a.city)),
            ("region", opt(a.region.as_deref().map(s))),
            ("postal_code", s(&a.postal_code)),
            ("country", s(&a.country)),
        ])
    });
    rec(vec![
        ("order_id", s(&o.order_id)),
        ("order_number", s(&o.order_number)),
        ("customer_id", s(&o.customer_id)),
        ("channel", s(o.channel.as_str())),
        ("status", s(o.status.as_str())),
        ("currency", s(&o.currency)),
        ("subtotal", Value::Long(o.subtotal)),
        ("tax", Value::Long(o.tax)),
        ("shipping", Value::Long(o.shipping)),
        ("discount", Value::Long(o.discount)),
        ("total", Value::Long(o.total)),
        ("lines", Value::Array(lines)),
        ("shipping_address", opt(address)),
        ("email", opt(o.email.as_deref().map(s))),
        ("phone", opt(o.phone.as_deref().map(s))),
        ("promised_delivery_at", opt(o.promised_delivery_at.map(ts))),
        ("created_at", ts(o.created_at)),
        ("updated_at", ts(o.updated_at)),
        ("version", Value::Long(o.version as i64)),
        ("deleted", Value::Boolean(o.deleted)),
    ])
}

fn fulfillment_value(f: &Fulfillment) -> Value {
    rec(vec![
        ("fulfillment_id", s(&f.fulfillment_id)),
        ("order_id", s(&f.order_id)),
        ("type", s(f.kind.as_str())),
        ("status", s(f.status.as_str())),
        ("carrier", opt(f.carrier.as_deref().map(s))),
        ("tracking_number", opt(f.tracking_number.as_deref().map(s))),
        ("line_ids", Value::Array(f.line_ids.iter().map(|x| s(x)).collect())),
        ("shipped_at", opt(f.shipped_at.map(ts))),
        ("delivered_at", opt(f.delivered_at.map(ts))),
        ("version", Value::Long(f.version as i64)),
    ])
}

// ---- Avro value -> model -------------------------------------------------

/// Field access over a decoded record, with errors that name the field.
struct Rec(Vec<(String, Value)>);

type R<T> = Result<T, DecodeError>;

fn invalid(field: &'static str, detail: impl Into<String>) -> DecodeError {
    DecodeError::InvalidField { field, detail: detail.into() }
}

fn unwrap_union(v: Value) -> Value {
    match v {
        Value::Union(_, inner) => *inner,
        other => other,
    }
}

impl Rec {
    fn from(field: &'static str, v: Value) -> R<Rec> {
        match unwrap_union(v) {
            Value::Record(f) => Ok(Rec(f)),
            other => Err(invalid(field, format!("expected a record, got {}", kind(&other)))),
        }
    }
    fn take(&mut self, field: &'static str) -> R<Value> {
        let i = self.0.iter().position(|(k, _)| k == field).ok_or_else(|| invalid(field, "missing"))?;
        Ok(unwrap_union(std::mem::replace(&mut self.0[i].1, Value::Null)))
    }
}

impl fields::Fields for Rec {
    fn string(&mut self, field: &'static str) -> R<String> {
        match self.take(field)? {
            Value::String(s) => Ok(s),
            other => Err(invalid(field, format!("expected a string, got {}", kind(&other)))),
        }
    }
    fn opt_string(&mut self, field: &'static str) -> R<Option<String>> {
        match self.take(field)? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Err(invalid(field, format!("expected a string or null, got {}", kind(&other)))),
        }
    }
    fn long(&mut self, field: &'static str) -> R<i64> {
        match self.take(field)? {
            Value::Long(n) => Ok(n),
            Value::Int(n) => Ok(i64::from(n)),
            other => Err(invalid(field, format!("expected a long, got {}", kind(&other)))),
        }
    }
    fn int(&mut self, field: &'static str) -> R<i32> {
        let n = self.long(field)?;
        i32::try_from(n).map_err(|_| invalid(field, format!("{n} overflows an int")))
    }
    fn ts(&mut self, field: &'static str) -> R<Timestamp> {
        self.opt_ts(field)?.ok_or_else(|| invalid(field, "expected timestamp-millis, got null"))
    }
    fn opt_ts(&mut self, field: &'static str) -> R<Option<Timestamp>> {
        match self.take(field)? {
            Value::Null => Ok(None),
            Value::TimestampMillis(n) | Value::Long(n) => Ok(Some(Timestamp(n))),
            other => Err(invalid(field, format!("expected timestamp-millis or null, got {}", kind(&other)))),
        }
    }
    fn boolean(&mut self, field: &'static str) -> R<bool> {
        match self.take(field)? {
            Value::Boolean(b) => Ok(b),
            other => Err(invalid(field, format!("expected a boolean, got {}", kind(&other)))),
        }
    }
    fn record<T>(&mut self, field: &'static str, read: impl FnOnce(&mut Self) -> R<T>) -> R<T> {
        read(&mut Rec::from(field, self.take(field)?)?)
    }
    fn opt_record<T>(&mut self, field: &'static str, read: impl FnOnce(&mut Self) -> R<T>) -> R<Option<T>> {
        match self.take(field)? {
            Value::Null => Ok(None),
            v => read(&mut Rec::from(field, v)?).map(Some),
        }
    }
    fn array<T>(&mut self, field: &'static str, mut item: impl FnMut(&mut Self) -> R<T>) -> R<Vec<T>> {
        match self.take(field)? {
            // Each element becomes a one-field record named like the array.
            Value::Array(items) => items.into_iter().map(|v| item(&mut Rec(vec![(field.to_owned(), v)]))).collect(),
            other => Err(invalid(field, format!("expected an array, got {}", kind(&other)))),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Boolean(_) => "boolean",
        Value::Int(_) => "int",
        Value::Long(_) => "long",
        Value::String(_) => "string",
        Value::Record(_) => "record",
        Value::Array(_) => "array",
        _ => "another type",
    }
}

#[cfg(test)]
mod tests;
