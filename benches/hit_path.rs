//! The cache-hit request path in process: route matching, request identity,
//! the cache lookup, and the response with its headers (ETag, X-Cache), for
//! one order view of about 1.3 kB. No socket: what the gateway adds per request.
//! Run: `cargo bench --bench hit_path`.

use std::hint::black_box;
use std::sync::atomic::Ordering;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::{HeaderMap, Method};
use order_gateway::app::AppState;
use order_gateway::config::Config;
use order_gateway::http::context::RequestContext;
use order_gateway::http::router::{Matched, Router};
use order_gateway::model::{Component, Order};

fn state() -> AppState {
    let config = Config::load(None).expect("defaults");
    let state = AppState::new(config, None).expect("state");
    state.cache.stream.enabled.store(true, Ordering::Relaxed);
    state.cache.stream.healthy.store(true, Ordering::Relaxed);
    let order: Order = serde_json::from_str(include_str!("order.json")).expect("order.json");
    state.cache.apply_event(Component::Order(order));
    state
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let state = rt.block_on(async { state() });
    let router = Router::new();
    let path = "/v1/orders/0b9f3c1e-2f4e-4b8e-9a57-3c1d2e4f5a6b";
    let mut headers = HeaderMap::new();
    headers.insert("x-request-id", "bench-1".parse().unwrap());
    let mut g = c.benchmark_group("hit_path");
    g.throughput(Throughput::Elements(1));
    g.bench_function("route_context_lookup_respond", |b| {
        b.iter(|| {
            rt.block_on(async {
                let Matched::Found { params, .. } = router.route(&Method::GET, path) else { panic!("no route") };
                let ctx = RequestContext::from_headers(&headers);
                let resp = order_gateway::api::orders::get_order(&state, params[0].1, None, &headers, &ctx, true).await.unwrap();
                black_box(resp)
            })
        })
    });
    g.bench_function("router_only", |b| b.iter(|| black_box(router.route(&Method::GET, black_box(path)))));
    g.bench_function("request_context_only", |b| b.iter(|| black_box(RequestContext::from_headers(&headers))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
