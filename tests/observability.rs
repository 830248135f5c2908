//! What ships in deploy/observability/: the alerting rules pass promtool
//! (built from the Go module proxy by scripts/stack/components/promtool.sh)
//! and their unit tests, and every metric a rule or a dashboard panel uses is
//! in a real scrape of the gateway or of ingest.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use common::world::*;
use common::*;
use rdkafka::producer::FutureRecord;
use serde_json::Value;

fn observability_dir() -> PathBuf {
    repo_root().join("deploy/observability")
}

fn promtool() -> PathBuf {
    std::env::var_os("PROMTOOL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".stack/dist/promtool-v0.316.0/promtool"))
}

fn run_promtool(args: &[&str]) -> String {
    let out = std::process::Command::new(promtool())
        .args(args)
        .current_dir(observability_dir())
        .output()
        .unwrap_or_else(|e| panic!("{} (scripts/stack/start promtool installs it): {e}", promtool().display()));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn the_alerting_rules_pass_promtool_and_their_unit_tests() {
    let checked = run_promtool(&["check", "rules", "alerts.yml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = run_promtool(&["test", "rules", "alerts.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// PromQL words that are not metric names.
const PROMQL: &[&str] = &[
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "rate",
    "increase",
    "deriv",
    "histogram_quantile",
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "label_values",
];

/// The metric names in a PromQL expression: identifiers that are not
/// functions, keywords, label names or label values.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let b = expr.as_bytes();
    let mut i = 0;
    let skip_to = |i: &mut usize, close: u8| {
        while *i < b.len() && b[*i] != close {
            *i += 1;
        }
        *i += 1;
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b'{' => skip_to(&mut i, b'}'),
            b'[' => skip_to(&mut i, b']'),
            b'"' => {
                i += 1;
                skip_to(&mut i, b'"');
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                    i += 1;
                }
                let word = &expr[start..i];
                let rest = expr[i..].trim_start();
                if matches!(word, "by" | "without" | "on" | "ignoring") && rest.starts_with('(') {
                    // Label names follow.
                    i += expr[i..].find(')').map_or(expr.len() - i, |p| p + 1);
                } else if !rest.starts_with('(') && !PROMQL.contains(&word) {
                    names.insert(word.to_owned());
                }
            }
            b'$' => {
                // Grafana's variables ($__rate_interval, $job).
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Every PromQL expression of the alerting rules and of the dashboard.
fn shipped_expressions() -> Vec<(String, String)> {
    let mut exprs = Vec::new();
    let rules = std::fs::read_to_string(observability_dir().join("alerts.yml")).unwrap();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else { continue };
        let mut expr = rest.trim().trim_start_matches('|').to_owned();
        let indent = line.len() - line.trim_start().len();
        // A block scalar: the lines indented deeper than `expr:`.
        while let Some(next) = lines.peek() {
            if next.trim().is_empty() || next.len() - next.trim_start().len() <= indent {
                break;
            }
            expr.push(' ');
            expr.push_str(next.trim());
            lines.next();
        }
        exprs.push(("alerts.yml".to_owned(), expr));
    }
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(observability_dir().join("dashboard.json")).unwrap()).unwrap();
    let mut stack = vec![&dashboard];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(e)) = m.get("expr") {
                    let title = m.get("legendFormat").and_then(Value::as_str).unwrap_or("");
                    exprs.push((format!("dashboard.json ({title})"), e.clone()));
                }
                stack.extend(m.values());
            }
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
    exprs
}

#[test]
fn metric_names_are_read_out_of_promql() {
    let names = metric_names(
        r#"sum by (job, instance) (rate(cache_lookups_total{result="hit"}[5m])) / sum by (job) (rate(cache_lookups_total[$__rate_interval])) < 0.33 and max(stream_lag_seconds) > 5"#,
    );
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["cache_lookups_total", "stream_lag_seconds"]);
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (route, le) (rate(http_request_duration_seconds_bucket{job=~"$job"}[5m])))"#,
    );
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["http_request_duration_seconds_bucket"]);
}

fn has_series(scrape: &str, name: &str) -> bool {
    scrape.lines().any(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
}

#[tokio::test]
async fn every_metric_a_rule_or_panel_uses_is_in_a_real_scrape_of_the_gateway_or_ingest() {
    // The gateway: tracing on, and ClickHouse out of reach so that a lookup
    // of an order Elasticsearch does not hold fails at ClickHouse (a backend error).
    let w = World::new();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let otlp = env_or("STACK_OTLP_ENDPOINT", "http://127.0.0.1:4318");
    let gw = w
        .gateway(&[
            ("ORDER_GATEWAY__TRACING__OTLP_ENDPOINT", &otlp),
            ("ORDER_GATEWAY__TRACING__SAMPLE_RATIO", "1"),
            ("ORDER_GATEWAY__TRACING__EXPORT_INTERVAL", "100ms"),
            ("ORDER_GATEWAY__CLICKHOUSE__URL", &dead),
            ("ORDER_GATEWAY__CLICKHOUSE__TIMEOUT", "1s"),
        ])
        .await;
    let c = client();
    // An event through the stream: a cached order, hits.
    let id = format!("obs-{}", uuid::Uuid::new_v4().simple());
    producer()
        .send(FutureRecord::to(&w.orders_topic).key(&id).payload(&event(order(&id, 1))), Duration::from_secs(5))
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "the event reached the cache", || async {
        c.get(gw.url(&format!("/v1/orders/{id}"))).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    // A miss that Elasticsearch answers, one it does not (ClickHouse fails), a bad key, readiness.
    let indexed = format!("obs-{}", uuid::Uuid::new_v4().simple());
    w.index_order(order(&indexed, 1)).await;
    assert_eq!(c.get(gw.url(&format!("/v1/orders/{indexed}"))).send().await.unwrap().status(), 200);
    let absent = c.get(gw.url("/v1/orders/obs-nowhere")).send().await.unwrap();
    assert!(absent.status().is_server_error(), "ClickHouse is out of reach: {}", absent.status());
    let refused = bare_client().get(gw.url("/v1/orders/x")).bearer_auth("not-a-key").send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let _ = c.get(gw.url("/readyz")).send().await.unwrap();
    let mut gateway_scrape = String::new();
    for _ in 0..100 {
        gateway_scrape = c.get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
        if gateway_scrape
            .lines()
            .any(|l| l.starts_with("trace_spans_total{outcome=\"exported\"}") && !l.ends_with(" 0"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Ingest: a few orders and one message it must dead-letter.
    let p = common::pipeline::Pipeline::new("json");
    p.run(&["setup"]);
    p.seed(3, 5);
    p.producer()
        .send(FutureRecord::to(&p.orders).key("obs-bad").payload("{not json"), Duration::from_secs(5))
        .await
        .unwrap();
    let mut ingest = p.spawn_ingest(100);
    let metrics_url = p.ingest_metrics_url();
    let mut ingest_scrape = String::new();
    for _ in 0..150 {
        if let Ok(r) = c.get(&metrics_url).send().await {
            ingest_scrape = r.text().await.unwrap_or_default();
            if has_series(&ingest_scrape, "ingest_consumer_lag_messages")
                && ingest_scrape.lines().any(|l| l.starts_with("ingest_dead_letters_total") && l.ends_with(" 1"))
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = ingest.kill();
    let _ = ingest.wait();

    let mut missing = Vec::new();
    let mut checked = BTreeSet::new();
    for (source, expr) in shipped_expressions() {
        for name in metric_names(&expr) {
            if !has_series(&gateway_scrape, &name) && !has_series(&ingest_scrape, &name) {
                missing.push(format!("{name} (in {source}: {expr})"));
            }
            checked.insert(name);
        }
    }
    assert!(checked.len() >= 30, "the expressions were read: {checked:?}");
    assert!(
        missing.is_empty(),
        "metrics used by deploy/observability/ but in neither scrape:\n{}\n\ngateway:\n{gateway_scrape}\n\ningest:\n{ingest_scrape}",
        missing.join("\n")
    );
}
