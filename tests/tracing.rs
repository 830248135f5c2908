//! Traces exported over OTLP to a real receiver: Jaeger v2 of the native
//! stack (scripts/stack/components/jaeger.sh), read back through its query API.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::world::*;
use common::*;
use serde_json::Value;

fn otlp_endpoint() -> String {
    env_or("STACK_OTLP_ENDPOINT", "http://127.0.0.1:4318")
}

fn jaeger_url() -> String {
    env_or("STACK_JAEGER_URL", "http://127.0.0.1:16686")
}

/// A trace as Jaeger's query API returns it, once it holds at least `spans` spans.
async fn trace_of(trace_id: &str, spans: usize) -> Value {
    let c = client();
    let url = format!("{}/api/traces/{trace_id}", jaeger_url());
    let mut last = Value::Null;
    for _ in 0..200 {
        if let Ok(r) = c.get(&url).send().await {
            if r.status() == 200 {
                last = r.json().await.unwrap_or_default();
                if last["data"][0]["spans"].as_array().is_some_and(|s| s.len() >= spans) {
                    return last["data"][0].clone();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("trace {trace_id} did not reach Jaeger with {spans} spans within 20 s; last answer: {last}")
}

/// The spans of a Jaeger trace by operation name.
fn spans_by_name(trace: &Value) -> HashMap<String, Value> {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["operationName"].as_str().unwrap().to_owned(), s.clone()))
        .collect()
}

fn tag<'a>(span: &'a Value, key: &str) -> &'a Value {
    span["tags"].as_array().unwrap().iter().find(|t| t["key"] == key).map_or(&Value::Null, |t| &t["value"])
}

fn parent_of(span: &Value) -> Option<String> {
    span["references"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["refType"] == "CHILD_OF"))
        .map(|r| r["spanID"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_miss_is_one_trace_of_the_request_and_its_elasticsearch_call_under_the_callers_span() {
    let w = World::new();
    let service = unique("gw-traces");
    let gw = w
        .gateway(&[
            ("ORDER_GATEWAY__TRACING__OTLP_ENDPOINT", &otlp_endpoint()),
            // Only callers' sampled traces: none starts at the gateway.
            ("ORDER_GATEWAY__TRACING__SAMPLE_RATIO", "0"),
            ("ORDER_GATEWAY__TRACING__SERVICE_NAME", &service),
            ("ORDER_GATEWAY__TRACING__EXPORT_INTERVAL", "200ms"),
        ])
        .await;
    let id = format!("tr-{}", uuid::Uuid::new_v4().simple());
    w.index_order(order(&id, 1)).await;
    let c = client();
    let trace_id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let caller_span = "00f067aa0ba902b7";

    let order = gw.url(&format!("/v1/orders/{id}"));
    let traced = |traceparent: String| c.get(&order).header("traceparent", traceparent);
    // A miss: the view comes from Elasticsearch.
    let r = traced(format!("00-{trace_id}-{caller_span}-01")).header("tracestate", "congo=t61rcWkgMzE");
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "MISS");
    // A caller that did not sample: nothing of its trace is exported.
    let unsampled = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    assert_eq!(traced(format!("00-{unsampled}-{caller_span}-00")).send().await.unwrap().status(), 200);
    // No traceparent, and a sample ratio of 0: not traced either.
    assert_eq!(c.get(&order).send().await.unwrap().status(), 200);
    // A hit in a sampled trace: the request's span alone.
    let hit_trace = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let r = traced(format!("00-{hit_trace}-{caller_span}-01")).send().await.unwrap();
    assert_eq!(r.headers()["x-cache"], "HIT");

    let trace = trace_of(&trace_id, 2).await;
    let spans = spans_by_name(&trace);
    let request = &spans["GET /v1/orders/{order_id}"];
    let es = &spans["elasticsearch get_order"];
    assert_eq!(parent_of(request).as_deref(), Some(caller_span), "the request's span continues the caller's");
    assert_eq!(parent_of(es), request["spanID"].as_str().map(str::to_owned), "the backend call is under the request");
    assert_eq!(tag(request, "http.response.status_code"), 200);
    assert_eq!(tag(request, "http.route"), "/v1/orders/{order_id}");
    assert_eq!(tag(request, "order_gateway.cache"), "MISS");
    assert_eq!(tag(request, "order_gateway.client"), "key:tests");
    assert_eq!(tag(request, "span.kind"), "server");
    assert_eq!(tag(es, "span.kind"), "client");
    assert_eq!(tag(es, "db.system.name"), "elasticsearch");
    let process = &trace["processes"][request["processID"].as_str().unwrap()];
    assert_eq!(process["serviceName"], service.as_str());
    // Nothing of the path itself (it may name a customer), and no credential.
    let all = trace.to_string();
    assert!(!all.contains(&id), "the order id is not in the trace: {all}");

    // Analytics: each ClickHouse query a client span of the request.
    let kpi_trace = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let r = c
        .get(gw.url("/v1/analytics/kpis?from=2025-01-01T00:00:00Z&to=2025-02-01T00:00:00Z"))
        .header("traceparent", format!("00-{kpi_trace}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let kpis = trace_of(&kpi_trace, 3).await;
    let spans = spans_by_name(&kpis);
    let request = &spans["GET /v1/analytics/kpis"];
    for call in ["clickhouse kpis", "clickhouse revenue"] {
        let span = spans.get(call).unwrap_or_else(|| panic!("{call} in {kpis}"));
        assert_eq!(parent_of(span), request["spanID"].as_str().map(str::to_owned), "{call} is under the request");
        assert_eq!(tag(span, "db.system.name"), "clickhouse");
    }

    let hit = trace_of(&hit_trace, 1).await;
    let spans = spans_by_name(&hit);
    assert_eq!(spans.len(), 1, "a hit calls no backend: {hit}");
    assert_eq!(tag(&spans["GET /v1/orders/{order_id}"], "order_gateway.cache"), "HIT");

    // Spans leave in the order they end: once the hit's trace is there, an
    // exported unsampled request would be too.
    let traces: Value =
        json_of(c.get(format!("{}/api/traces?service={service}&limit=100&lookback=1h", jaeger_url()))).await;
    let ids: Vec<&str> = traces["data"].as_array().unwrap().iter().map(|t| t["traceID"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "only the three sampled traces: {ids:?}");
    assert!(!ids.contains(&unsampled.as_str()));

    let metrics = c.get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let exported = metrics
        .lines()
        .find(|l| l.starts_with("trace_spans_total{outcome=\"exported\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(exported >= 3.0, "trace_spans_total counts the exported spans: {exported}");
}

#[tokio::test]
async fn an_unreachable_receiver_costs_no_request_and_its_spans_are_counted_as_failed() {
    let w = World::new();
    // Nothing listens there: exports fail, requests do not notice.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gw = w
        .gateway(&[
            ("ORDER_GATEWAY__TRACING__OTLP_ENDPOINT", &dead),
            ("ORDER_GATEWAY__TRACING__SAMPLE_RATIO", "1"),
            ("ORDER_GATEWAY__TRACING__EXPORT_INTERVAL", "100ms"),
            ("ORDER_GATEWAY__TRACING__MAX_QUEUE", "16"),
            ("ORDER_GATEWAY__TRACING__BATCH_SIZE", "16"),
        ])
        .await;
    let id = format!("tr-{}", uuid::Uuid::new_v4().simple());
    w.index_order(order(&id, 1)).await;
    let c = client();
    for _ in 0..300 {
        let r = c.get(gw.url(&format!("/v1/orders/{id}"))).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let metric = |text: &str, outcome: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("trace_spans_total{{outcome=\"{outcome}\"}}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    eventually(Duration::from_secs(20), "failed and dropped spans counted", || async {
        let text = c.get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
        // 300 requests and more (the /metrics reads) against a queue of 16.
        metric(&text, "failed") >= 1.0 && metric(&text, "failed") + metric(&text, "dropped") >= 300.0
    })
    .await;
}

#[tokio::test]
async fn ingest_continues_the_trace_that_seed_started_in_a_kafka_header() {
    // Avro: ingest asks the registry for each schema id it has not seen.
    let mut p = common::pipeline::Pipeline::new("avro");
    let service = unique("pipe-traces");
    let otlp = otlp_endpoint();
    for (k, v) in [
        ("ORDER_GATEWAY__TRACING__OTLP_ENDPOINT", otlp.as_str()),
        ("ORDER_GATEWAY__TRACING__SAMPLE_RATIO", "1"),
        ("ORDER_GATEWAY__TRACING__EXPORT_INTERVAL", "200ms"),
    ] {
        p.env.push((k.to_string(), v.to_string()));
    }
    p.run(&["setup"]);
    let seed_service = format!("{service}-seed");
    let ingest_service = format!("{service}-ingest");
    let orders = 5u32;
    let truth_file = p.truth_file();
    p.run_with(
        &["seed", "--orders", &orders.to_string(), "--seed", "11", "--truth", truth_file.to_str().unwrap()],
        &[("ORDER_GATEWAY__TRACING__SERVICE_NAME", &seed_service)],
    );
    let _ = std::fs::remove_file(&truth_file);
    p.run_with(&["ingest", "--exit-when-idle", "3s"], &[("ORDER_GATEWAY__TRACING__SERVICE_NAME", &ingest_service)]);

    let c = client();
    let url = format!("{}/api/traces?service={ingest_service}&limit=1000&lookback=1h", jaeger_url());
    let mut traces = Vec::new();
    for _ in 0..100 {
        let v: Value = json_of(c.get(&url)).await;
        traces = v["data"].as_array().cloned().unwrap_or_default();
        // Every event is its own trace; the seed's spans and ingest's must both be in each.
        if !traces.is_empty() && traces.iter().all(|t| t["spans"].as_array().is_some_and(|s| s.len() >= 2)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!traces.is_empty(), "ingest exported no span to {otlp}");
    for t in &traces {
        let spans = t["spans"].as_array().unwrap();
        let send = spans.iter().find(|s| s["operationName"].as_str().is_some_and(|n| n.starts_with("send ")));
        let process = spans.iter().find(|s| s["operationName"].as_str().is_some_and(|n| n.starts_with("process ")));
        let (Some(send), Some(process)) = (send, process) else { panic!("a send and a process span in {t}") };
        assert_eq!(parent_of(process).as_deref(), send["spanID"].as_str(), "ingest's span is under the producer's");
        assert_eq!(tag(process, "span.kind"), "consumer");
        assert_eq!(tag(send, "span.kind"), "producer");
        assert_eq!(t["processes"][send["processID"].as_str().unwrap()]["serviceName"], seed_service.as_str());
    }
    // The registry calls of decoding (the first message of each schema) are
    // client spans under that message's processing span.
    let mut registry_calls = 0;
    for t in &traces {
        let spans = t["spans"].as_array().unwrap();
        let process = spans.iter().find(|s| s["operationName"].as_str().is_some_and(|n| n.starts_with("process ")));
        for call in
            spans.iter().filter(|s| s["operationName"].as_str().is_some_and(|n| n.starts_with("schema_registry ")))
        {
            registry_calls += 1;
            assert_eq!(tag(call, "span.kind"), "client");
            assert_eq!(parent_of(call).as_deref(), process.and_then(|p| p["spanID"].as_str()), "{t}");
        }
    }
    assert!(registry_calls >= 1, "no schema_registry span in ingest's traces");
}

/// What an export request carries, read off the socket: the path, the JSON
/// content type and `tracing.otlp_headers` (a managed collector's credential).
#[tokio::test]
async fn exports_carry_the_configured_headers_to_the_traces_path() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}", listener.local_addr().unwrap());
    let gw = Gateway::start(&[
        ("ORDER_GATEWAY__TRACING__OTLP_ENDPOINT", &receiver),
        ("ORDER_GATEWAY__TRACING__SAMPLE_RATIO", "1"),
        ("ORDER_GATEWAY__TRACING__EXPORT_INTERVAL", "100ms"),
        ("ORDER_GATEWAY__TRACING__OTLP_HEADERS", "authorization=Basic b3RscDpzZWNyZXQ=,x-scope-orgid=tenant-1"),
    ])
    .await;
    assert_eq!(client().get(gw.url("/healthz")).send().await.unwrap().status(), 200);
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await.unwrap().unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "the exporter closed before its headers");
        head.extend_from_slice(&buf[..n]);
    }
    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await;
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("post /v1/traces http/1.1\r\n"), "{head}");
    assert!(head.contains("\r\ncontent-type: application/json\r\n"), "{head}");
    assert!(head.contains("\r\nauthorization: basic b3rscdpzzwnyzxq=\r\n"), "{head}");
    assert!(head.contains("\r\nx-scope-orgid: tenant-1\r\n"), "{head}");
}
