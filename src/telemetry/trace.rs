//! OpenTelemetry spans, exported over OTLP/HTTP with the JSON encoding.
//!
//! A request is a server span; each call it makes to a backend is a client
//! span under it, and the `traceparent` sent with that call names the client
//! span, so the backend's own spans (if it traces) hang below it. Spans are
//! recorded only when the trace is sampled and an exporter is installed
//! (`tracing.otlp_endpoint`): while tracing is off a request pays one atomic
//! load.
//!
//! Why not the OpenTelemetry SDK: what the gateway needs is a bounded queue
//! and one HTTP request per batch; the SDK brings its own runtime glue,
//! protobuf and gRPC stacks (a large share of a 2-core build) and an API
//! that changes with most releases. OTLP/HTTP with JSON is a stable part of
//! the protocol, and every collector and Jaeger accepts it.
//!
//! Finished spans go through a bounded channel to one task that batches them
//! (`tracing.batch_size`, `tracing.export_interval`); a full queue drops the
//! span and counts it rather than wait, so a slow or absent collector never
//! slows a request.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::context::{new_span_id, TraceParent};
use super::names;
use crate::config::TracingConfig;

/// What a span measured: a request served, or a call made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server,
    Client,
    Producer,
    Consumer,
}

impl Kind {
    /// OTLP's `SpanKind` number.
    fn otlp(self) -> u8 {
        match self {
            Kind::Server => 2,
            Kind::Client => 3,
            Kind::Producer => 4,
            Kind::Consumer => 5,
        }
    }
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Str(Cow<'static, str>),
    Int(i64),
}

impl From<&'static str> for Attr {
    fn from(s: &'static str) -> Self {
        Attr::Str(Cow::Borrowed(s))
    }
}

impl From<String> for Attr {
    fn from(s: String) -> Self {
        Attr::Str(Cow::Owned(s))
    }
}

impl From<i64> for Attr {
    fn from(n: i64) -> Self {
        Attr::Int(n)
    }
}

/// A finished span.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub trace_id: u128,
    pub span_id: u64,
    /// 0: the trace's root.
    pub parent_id: u64,
    pub name: Cow<'static, str>,
    pub kind: Kind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Vec<(&'static str, Attr)>,
    /// Set when the operation failed: the span's status is then an error with this message.
    pub error: Option<String>,
}

/// The installed exporter's sending side.
struct Exporter {
    spans: mpsc::Sender<SpanRecord>,
}

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

/// Whether spans are recorded at all (an exporter is installed).
pub fn enabled() -> bool {
    EXPORTER.get().is_some()
}

/// Whether spans of this trace are recorded.
pub fn recording(trace: &TraceParent) -> bool {
    trace.sampled() && enabled()
}

/// Queues a finished span for export; drops it (counted) when the queue is
/// full. A no-op while tracing is off.
pub fn record(span: SpanRecord) {
    let Some(e) = EXPORTER.get() else { return };
    if e.spans.try_send(span).is_err() {
        metrics::counter!(names::TRACE_SPANS, "outcome" => "dropped").increment(1);
    }
}

/// Now, in nanoseconds since the Unix epoch.
pub fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// A call in progress to a backend, on behalf of a request.
#[derive(Debug)]
pub struct ClientSpan {
    trace_id: u128,
    parent_id: u64,
    span_id: u64,
    flags: u8,
    state: Option<HeaderValue>,
    backend: &'static str,
    operation: &'static str,
    /// Set only when the span is recorded.
    start_unix_nanos: Option<u64>,
    attributes: Vec<(&'static str, Attr)>,
}

impl ClientSpan {
    /// Starts the span of a call to `backend` (`operation`: what it does).
    pub fn start(trace: &TraceParent, backend: &'static str, operation: &'static str) -> Self {
        ClientSpan {
            trace_id: trace.trace_id.0,
            parent_id: trace.span_id,
            span_id: new_span_id(),
            flags: trace.flags,
            state: trace.state.clone(),
            backend,
            operation,
            start_unix_nanos: recording(trace).then(unix_nanos),
            attributes: Vec::new(),
        }
    }

    /// The `traceparent` header value of the call: this span as its parent.
    pub fn traceparent(&self) -> String {
        super::context::traceparent_header(super::context::TraceId(self.trace_id), self.span_id, self.flags)
    }

    /// The caller's `tracestate`, passed on with it.
    pub fn tracestate(&self) -> Option<&HeaderValue> {
        self.state.as_ref()
    }

    /// Adds an attribute (kept only when the span is recorded).
    pub fn set(&mut self, key: &'static str, value: impl Into<Attr>) {
        if self.start_unix_nanos.is_some() {
            self.attributes.push((key, value.into()));
        }
    }

    /// Ends the span: recorded, with the error if the call failed.
    pub fn end(self, error: Option<&dyn std::fmt::Display>) {
        let Some(start) = self.start_unix_nanos else { return };
        let mut attributes = self.attributes;
        attributes.push(("order_gateway.backend", Attr::from(self.backend)));
        attributes.push(("db.operation.name", Attr::from(self.operation)));
        if matches!(self.backend, "elasticsearch" | "clickhouse") {
            attributes.push(("db.system.name", Attr::from(self.backend)));
        }
        record(SpanRecord {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_id: self.parent_id,
            name: Cow::Owned(format!("{} {}", self.backend, self.operation)),
            kind: Kind::Client,
            start_unix_nanos: start,
            end_unix_nanos: unix_nanos(),
            attributes,
            error: error.map(|e| e.to_string()),
        });
    }
}

/// The trace context a call carries to its backend.
#[derive(Debug, Clone)]
pub struct Propagation {
    pub traceparent: String,
    pub tracestate: Option<HeaderValue>,
}

impl ClientSpan {
    /// What the call sends: this span as the backend's parent.
    pub fn propagation(&self) -> Propagation {
        Propagation { traceparent: self.traceparent(), tracestate: self.state.clone() }
    }
}

/// Runs a call to `backend` as a client span of `trace` (when given): `call`
/// gets the headers to send, the span ends with the call's outcome.
pub async fn call<T, E, Fut>(
    trace: Option<&TraceParent>,
    backend: &'static str,
    operation: &'static str,
    call: impl FnOnce(Option<Propagation>) -> Fut,
) -> Result<T, E>
where
    E: std::fmt::Display,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let span = trace.map(|t| ClientSpan::start(t, backend, operation));
    let result = call(span.as_ref().map(ClientSpan::propagation)).await;
    if let Some(span) = span {
        span.end(result.as_ref().err().map(|e| e as &dyn std::fmt::Display));
    }
    result
}

/// Flushes what is queued when the process stops.
pub struct Flusher {
    flush: mpsc::Sender<oneshot::Sender<()>>,
    timeout: Duration,
}

impl Flusher {
    /// Exports every span queued so far, waiting at most `tracing.export_timeout`.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.flush.send(done).await.is_ok() {
            let _ = tokio::time::timeout(self.timeout, wait).await;
        }
    }
}

/// Installs the exporter (once per process) when `tracing.otlp_endpoint` is
/// set, and starts its task on the current runtime. `None` while tracing is
/// off, or when an exporter was installed before.
pub fn install(cfg: &TracingConfig, instance: &str) -> anyhow::Result<Option<Flusher>> {
    if cfg.otlp_endpoint.is_empty() {
        return Ok(None);
    }
    let url = traces_url(&cfg.otlp_endpoint)?;
    let headers: http::HeaderMap =
        cfg.headers().map_err(|e| anyhow::anyhow!("tracing.otlp_headers: {e}"))?.into_iter().collect();
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(cfg.export_timeout)
        .connect_timeout(cfg.export_timeout)
        .build()
        .map_err(|e| anyhow::anyhow!("tracing: HTTP client: {e}"))?;
    let (spans, rx) = mpsc::channel(cfg.max_queue);
    let (flush, flushes) = mpsc::channel(4);
    if EXPORTER.set(Exporter { spans }).is_err() {
        return Ok(None);
    }
    super::context::sample_roots(cfg.sample_ratio);
    let resource = resource(&cfg.service_name, instance);
    tokio::spawn(export_loop(rx, flushes, client, url, resource, cfg.batch_size, cfg.export_interval));
    tracing::info!(endpoint = %cfg.otlp_endpoint, sample_ratio = cfg.sample_ratio, "exporting traces over OTLP/HTTP");
    Ok(Some(Flusher { flush, timeout: cfg.export_timeout }))
}

/// This process among the service's replicas: the host name (a pod's name
/// under Kubernetes) and the process id.
pub fn instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

/// `/v1/traces` under the configured base, unless it is already there.
pub fn traces_url(endpoint: &str) -> anyhow::Result<url::Url> {
    let mut url = url::Url::parse(endpoint).map_err(|e| anyhow::anyhow!("tracing.otlp_endpoint {endpoint:?}: {e}"))?;
    if !url.path().trim_end_matches('/').ends_with("/v1/traces") {
        let path = format!("{}/v1/traces", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    Ok(url)
}

async fn export_loop(
    mut spans: mpsc::Receiver<SpanRecord>,
    mut flushes: mpsc::Receiver<oneshot::Sender<()>>,
    client: reqwest::Client,
    url: url::Url,
    resource: Value,
    batch_size: usize,
    interval: Duration,
) {
    let mut batch = Vec::with_capacity(batch_size);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut flushed = None;
        let room = (batch_size - batch.len()).max(1);
        tokio::select! {
            n = spans.recv_many(&mut batch, room) => {
                if n == 0 {
                    break;
                }
                if batch.len() < batch_size {
                    continue;
                }
            }
            _ = tick.tick() => {}
            Some(done) = flushes.recv() => {
                while let Ok(s) = spans.try_recv() {
                    batch.push(s);
                }
                flushed = Some(done);
            }
        }
        while !batch.is_empty() {
            let take = batch.len().min(batch_size);
            let rest = batch.split_off(take);
            export(&client, &url, &resource, std::mem::replace(&mut batch, rest)).await;
        }
        if let Some(done) = flushed {
            let _ = done.send(());
        }
    }
}

/// Sends one batch: a refusal the receiver calls temporary (429, 502, 503,
/// 504) or an unreachable receiver is tried again twice, after 0.5 s and 1 s
/// (the OTLP specification's advice, kept short: spans queue meanwhile and
/// the queue's bound decides what is dropped); anything else fails the batch.
async fn export(client: &reqwest::Client, url: &url::Url, resource: &Value, batch: Vec<SpanRecord>) {
    let n = batch.len() as u64;
    let body = serde_json::to_vec(&encode(resource, &batch)).expect("JSON values serialise");
    let mut outcome = "failed";
    let mut why = String::new();
    for pause in [None, Some(500), Some(1000)] {
        if let Some(ms) = pause {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let sent = client
            .post(url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        let retry = match sent {
            Ok(r) if r.status().is_success() => {
                outcome = "exported";
                break;
            }
            Ok(r) => {
                why = format!("the receiver answered {}", r.status());
                matches!(r.status().as_u16(), 429 | 502 | 503 | 504)
            }
            Err(e) => {
                why = e.to_string();
                e.is_connect() || e.is_timeout()
            }
        };
        if !retry {
            break;
        }
    }
    if outcome == "failed" {
        // One line per batch given up on, not per attempt.
        tracing::warn!(error = %why, spans = n, "exporting spans failed; the batch is dropped");
    }
    metrics::counter!(names::TRACE_SPANS, "outcome" => outcome).increment(n);
}

/// The resource every span of this process belongs to.
fn resource(service: &str, instance: &str) -> Value {
    json!({ "attributes": [
        kv("service.name", &Attr::Str(Cow::Owned(service.to_owned()))),
        kv("service.version", &Attr::from(env!("CARGO_PKG_VERSION"))),
        kv("service.instance.id", &Attr::Str(Cow::Owned(instance.to_owned()))),
    ]})
}

/// One OTLP/JSON `ExportTraceServiceRequest`: ids as hex, 64-bit numbers as
/// strings (protobuf's JSON mapping), enums as numbers.
pub fn encode(resource: &Value, spans: &[SpanRecord]) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut span = json!({
                "traceId": format!("{:032x}", s.trace_id),
                "spanId": format!("{:016x}", s.span_id),
                "name": s.name,
                "kind": s.kind.otlp(),
                "startTimeUnixNano": s.start_unix_nanos.to_string(),
                "endTimeUnixNano": s.end_unix_nanos.max(s.start_unix_nanos).to_string(),
                "attributes": s.attributes.iter().map(|(k, v)| kv(k, v)).collect::<Vec<_>>(),
                "status": match &s.error {
                    // STATUS_CODE_ERROR
                    Some(m) => json!({ "code": 2, "message": m }),
                    None => json!({}),
                },
            });
            if s.parent_id != 0 {
                span["parentSpanId"] = json!(format!("{:016x}", s.parent_id));
            }
            span
        })
        .collect();
    json!({ "resourceSpans": [{
        "resource": resource,
        "scopeSpans": [{ "scope": { "name": "order-gateway", "version": env!("CARGO_PKG_VERSION") }, "spans": spans }],
    }]})
}

fn kv(key: &str, value: &Attr) -> Value {
    match value {
        Attr::Str(s) => json!({ "key": key, "value": { "stringValue": s } }),
        Attr::Int(n) => json!({ "key": key, "value": { "intValue": n.to_string() } }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_once() {
        for (given, want) in [
            ("http://otel:4318", "http://otel:4318/v1/traces"),
            ("http://otel:4318/", "http://otel:4318/v1/traces"),
            ("https://gw.example/otlp", "https://gw.example/otlp/v1/traces"),
            ("http://otel:4318/v1/traces", "http://otel:4318/v1/traces"),
        ] {
            assert_eq!(traces_url(given).unwrap().as_str(), want, "{given}");
        }
        assert!(traces_url("not a url").is_err());
    }

    #[test]
    fn spans_encode_as_otlp_json() {
        let span = SpanRecord {
            trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
            span_id: 0x42,
            parent_id: 0x00f067aa0ba902b7,
            name: "GET /v1/orders/{order_id}".into(),
            kind: Kind::Server,
            start_unix_nanos: 1_700_000_000_000_000_000,
            end_unix_nanos: 1_700_000_000_000_500_000,
            attributes: vec![
                ("http.response.status_code", Attr::Int(200)),
                ("http.route", "/v1/orders/{order_id}".into()),
            ],
            error: None,
        };
        let root = SpanRecord { parent_id: 0, error: Some("timed out".into()), kind: Kind::Client, ..span.clone() };
        let v = encode(&resource("order-gateway", "host-1"), &[span, root]);
        let spans = &v["resourceSpans"][0]["scopeSpans"][0]["spans"];
        assert_eq!(spans[0]["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(spans[0]["spanId"], "0000000000000042");
        assert_eq!(spans[0]["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(spans[0]["kind"], 2);
        assert_eq!(spans[0]["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(
            spans[0]["attributes"][0],
            json!({"key": "http.response.status_code", "value": {"intValue": "200"}})
        );
        assert_eq!(spans[0]["status"], json!({}));
        assert!(spans[1].get("parentSpanId").is_none(), "a root has no parent");
        assert_eq!(spans[1]["status"], json!({"code": 2, "message": "timed out"}));
        assert_eq!(spans[1]["kind"], 3);
        let res = &v["resourceSpans"][0]["resource"]["attributes"];
        assert_eq!(res[0], json!({"key": "service.name", "value": {"stringValue": "order-gateway"}}));
    }

    #[test]
    fn a_client_span_names_itself_in_the_traceparent_it_sends() {
        let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let span = ClientSpan::start(&parent, "elasticsearch", "get_order");
        let sent = TraceParent::parse(&span.traceparent()).unwrap();
        assert_eq!(sent.trace_id, parent.trace_id);
        assert_eq!(sent.parent_id, span.span_id, "the backend's parent is the client span");
        assert_eq!(span.parent_id, parent.span_id, "whose parent is the request's span");
        assert_eq!(sent.flags, 1);
    }
}
