//! The gateway's own HTTP server (`http::serve`) over a real socket, with the
//! cache filled in process and no backend: what the edge and hyper cost per
//! request on a socket, apart from the stack's other threads (the Kafka
//! consumer, Elasticsearch and ClickHouse clients), to profile and to set
//! beside `bare_server` without starting the stack.
//!
//! `HIT_SERVER_LISTEN=127.0.0.1:18195 HIT_SERVER_ORDERS=6666 HIT_SERVER_DUMP=orders.tsv
//! cargo bench --bench hit_server` serves until killed: production settings
//! (release, API key with SHA-256 check, rate limiter on with a bucket that
//! never refuses, Prometheus recorder, the shipped log settings), key `bench-key-0123456789abcdef`
//! (`benches/common/gateway.rs`).
//! `HIT_SERVER_DUMP` writes the ids and bodies in `bare_server`'s format, so
//! both answer the same bytes. `HIT_SERVER_COMPRESSION=none` keeps the cached
//! JSON uncompressed (`cache.compression`; the shipped default otherwise).
//! `HIT_SERVER_OTLP=<endpoint>` exports traces there (`tracing.otlp_endpoint`)
//! at `HIT_SERVER_SAMPLE_RATIO` (default 0.01, the shipped ratio).
//! Without `HIT_SERVER_LISTEN` it returns at once.

use std::sync::Arc;

use order_gateway::config::LogConfig;
use order_gateway::model::Component;

#[path = "common/gateway.rs"]
mod gateway;

/// The binary's allocator, so that what is measured is what ships.
#[global_allocator]
static ALLOCATOR: order_gateway::Allocator = order_gateway::Allocator;

fn main() {
    let Ok(listen) = std::env::var("HIT_SERVER_LISTEN") else {
        eprintln!("hit_server: HIT_SERVER_LISTEN is not set; nothing to serve");
        return;
    };
    let orders: usize = std::env::var("HIT_SERVER_ORDERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let mut c = gateway::keyed_config();
    c.cache.max_bytes = 1 << 30;
    match std::env::var("HIT_SERVER_COMPRESSION").as_deref() {
        Ok("none") => c.cache.compression = order_gateway::config::CacheCompression::None,
        Ok("lz4") | Err(_) => {}
        Ok(other) => panic!("HIT_SERVER_COMPRESSION must be lz4 or none, not {other:?}"),
    }

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        // The shipped log settings unless HIT_SERVER_LOG_LEVEL or
        // HIT_SERVER_ACCESS_SAMPLE say otherwise (to measure the log's cost).
        let shipped = order_gateway::config::Config::defaults().log;
        let _log = order_gateway::telemetry::init_logging(&LogConfig {
            level: std::env::var("HIT_SERVER_LOG_LEVEL").unwrap_or(shipped.level),
            access_sample: std::env::var("HIT_SERVER_ACCESS_SAMPLE")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(shipped.access_sample),
            ..shipped
        });
        let metrics = order_gateway::telemetry::init_metrics().expect("recorder");
        let _spans = std::env::var("HIT_SERVER_OTLP").ok().map(|endpoint| {
            let mut t = order_gateway::config::Config::defaults().tracing;
            t.otlp_endpoint = endpoint;
            if let Some(r) = std::env::var("HIT_SERVER_SAMPLE_RATIO").ok().and_then(|v| v.parse().ok()) {
                t.sample_ratio = r;
            }
            order_gateway::telemetry::trace::install(&t, "hit_server").expect("tracing")
        });
        let state = gateway::serving_state(c, Some(metrics));
        let template = gateway::order();
        let mut dump = String::new();
        for i in 0..orders {
            let mut o = template.clone();
            o.order_id = format!("{i:08x}-2f4e-4b8e-9a57-3c1d2e4f5a6b");
            o.order_number = format!("ORD-{i:08}");
            let id = o.order_id.clone();
            state.cache.apply_event(Component::Order(o));
            if let order_gateway::cache::Lookup::Hit(e) = state.cache.lookup(&id) {
                dump.push_str(&id);
                dump.push('\t');
                dump.push_str(std::str::from_utf8(&e.body(true)).expect("JSON is UTF-8"));
                dump.push('\n');
            }
        }
        if let Ok(path) = std::env::var("HIT_SERVER_DUMP") {
            std::fs::write(&path, dump).unwrap_or_else(|e| panic!("HIT_SERVER_DUMP={path}: {e}"));
        }
        let listener = tokio::net::TcpListener::bind(&listen).await.unwrap_or_else(|e| panic!("bind {listen}: {e}"));
        eprintln!("hit_server: {orders} orders, listening on {listen}");
        order_gateway::http::serve(
            listener,
            Arc::new(state),
            order_gateway::http::Surface::Main,
            std::future::pending(),
        )
        .await
        .expect("serve");
    });
}
