//! Elasticsearch through several nodes, one of them down: a port nothing
//! listens on, listed before the stack's real node so the first call goes to
//! it. Every lookup, search, write and probe must answer, and the failovers
//! show in the metrics.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::world::*;
use common::*;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use order_gateway::backends::elasticsearch::{BulkItem, BulkOp};
use order_gateway::backends::{Backend, BackendError, Backends};
use order_gateway::config::{Config, UrlList};
use order_gateway::model::{Component, OrderView};
use serde_json::{json, Value};

/// The recorder of this test binary's own metrics (one per process).
fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().expect("the test binary's recorder"))
}

/// The `call` of the test whose nodes are all down, which runs beside the
/// others in this binary and must not count in their failovers.
const ALL_DOWN: &str = "all_down";

/// Elasticsearch failovers counted in `rendered` Prometheus text, all calls
/// but [`ALL_DOWN`] together.
fn failovers(rendered: &str) -> u64 {
    rendered
        .lines()
        .filter(|l| l.starts_with("backend_failovers_total{") && l.contains("backend=\"elasticsearch\""))
        .filter(|l| !l.contains(&format!("call=\"{ALL_DOWN}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A URL where no node answers: the port was free a moment ago.
fn dead_node() -> (String, String) {
    let port = free_port();
    (format!("http://127.0.0.1:{port}"), format!("127.0.0.1:{port}"))
}

fn config(urls: &str, read_alias: &str) -> Config {
    let mut cfg = Config::load(None).expect("configuration from the environment");
    cfg.elasticsearch.urls = UrlList::parse(urls).expect("urls");
    cfg.elasticsearch.read_alias = read_alias.to_owned();
    cfg
}

#[tokio::test]
async fn the_client_answers_every_call_while_one_node_is_down() {
    let handle = metrics();
    let (dead, dead_endpoint) = dead_node();
    let alias = es_alias().await;
    let index = format!("{alias}-000001");
    let b = Backends::from_config(&config(&format!("{dead},{}", es_url()), &alias)).expect("clients");
    let es = &b.elasticsearch;

    // The first call goes to the dead node. A refused connection means the
    // bulk never left, so it is safe to send it to the other node.
    let views: Vec<OrderView> =
        (0..5).map(|i| OrderView::from_component(Component::Order(order(&format!("o-{i}"), 1)))).collect();
    let ops: Vec<BulkOp<'_>> =
        views.iter().map(|v| BulkOp::Create { id: &v.order_id, index: &index, view: v }).collect();
    let items = es.bulk(&ops).await.expect("bulk through the live node");
    assert!(items.iter().all(|i| matches!(i, BulkItem::Done(Some(_)))), "{items:?}");
    let first_failure = Instant::now();
    assert_eq!(failovers(&handle.render()), 1, "the bulk went to the dead node first");
    es.refresh(&alias).await.expect("refresh");

    // Past the first backoff (1 s) and the second (2 s): the dead node's trial
    // calls fail over too, and no call in between goes to it.
    let mut calls = 0u32;
    while first_failure.elapsed() < Duration::from_millis(3500) {
        for v in &views {
            let got = es.get_orders(&alias, &[&v.order_id], None).await.unwrap_or_else(|e| panic!("lookup: {e}"));
            assert_eq!(got.len(), 1, "{}", v.order_id);
        }
        let hits = es.search_orders(&alias, "search", json!({ "query": { "match_all": {} } }), None).await;
        assert_eq!(hits.expect("search").len(), views.len());
        assert_eq!(es.get_versioned(&alias, &["o-0"]).await.expect("versioned read").len(), 1);
        b.ping(Backend::Elasticsearch).await.expect("readiness through the live node");
        calls += 8;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rendered = handle.render();
    let n = failovers(&rendered);
    let bound = 1 + first_failure.elapsed().as_secs();
    assert!(n >= 2, "a trial after the first backoff failed over too ({n} failovers, {calls} calls)");
    assert!(n <= bound, "the dead node is left out between trials: {n} failovers in {bound} s, {calls} calls");
    let down = format!("backend_node_up{{backend=\"elasticsearch\",node=\"{dead_endpoint}\"}} 0");
    assert!(rendered.contains(&down), "{rendered}");

    let detail = b.ping(Backend::Elasticsearch).await.expect("ping");
    assert!(detail.contains(&format!("node marked dead: {dead_endpoint}")), "{detail}");
    es.delete_index(&index).await.expect("delete through the live node");
}

#[tokio::test]
async fn with_every_node_down_calls_are_still_sent_and_say_where_they_failed() {
    let ((a, a_endpoint), (b_url, b_endpoint)) = (dead_node(), dead_node());
    let b = Backends::from_config(&config(&format!("{a},{b_url}"), "orders")).expect("clients");
    for _ in 0..3 {
        let search = b.elasticsearch.search_orders("orders", ALL_DOWN, json!({ "size": 1 }), None).await;
        let err = search.expect_err("nothing answers");
        let BackendError::Failed { detail, .. } = &err else { panic!("{err:?}") };
        // Tried, not refused untried: the error is the connection's, from a node.
        assert!(detail.contains("error sending request"), "{detail}");
        assert!(detail.contains(&a_endpoint) || detail.contains(&b_endpoint), "{detail}");
    }
}

#[tokio::test]
async fn the_gateway_answers_every_lookup_and_search_with_a_node_down() {
    let w = World::new();
    let (dead, dead_endpoint) = dead_node();
    let urls = format!("{dead},{}", es_url());
    let gw = w.gateway(&[("ORDER_GATEWAY__ELASTICSEARCH__URLS", urls.as_str())]).await;
    let prefix = uuid::Uuid::new_v4().simple().to_string();
    let ids: Vec<String> = (0..12).map(|i| format!("nodes-{prefix}-{i}")).collect();
    for id in &ids {
        w.index_order(order(id, 1)).await;
    }

    let c = client();
    let started = Instant::now();
    for id in &ids {
        let (_, view) = expect_json(c.get(gw.url(&format!("/v1/orders/{id}"))), 200).await;
        assert_eq!(version_of(&view), 1, "{view}");
        expect_json(c.get(gw.url("/v1/customers/cust-rp/orders")), 200).await;
        // Spread over the first backoff, so a trial of the dead node is among them.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(started.elapsed() > Duration::from_secs(1));

    let rendered = c.get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(failovers(&rendered) >= 1, "{rendered}");
    let ready: Value = json_of(c.get(gw.url("/readyz"))).await;
    let check = &ready["checks"]["elasticsearch"];
    assert_eq!(check["status"], "up", "{ready}");
    assert!(check["detail"].as_str().unwrap_or_default().contains(&dead_endpoint), "{ready}");
}
