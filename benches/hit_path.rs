//! The cache-hit request path in process, for one order view of about 1.3 kB.
//! No socket: what the gateway adds per request.
//!
//! `handle_*` drive `http::handle` as the server does: request identity,
//! routing, the edge (credentials, rate limit, scope), the cache lookup, the
//! 200 response with ETag, X-Cache and RateLimit-* headers, metrics (no
//! recorder installed, so the macros reach the no-op one) and the access log
//! (no subscriber). The request carries no x-request-id or traceparent, as
//! from k6, so the gateway makes both. Requests are built outside the timing
//! (`iter_batched`); responses are dropped outside it.
//! - `handle_with_key`: `Authorization: Bearer <key>`, one of one configured
//!   keys, scopes orders:read and orders:pii, tier "standard".
//! - `handle_with_key_redacted`: a key with orders:read only (PII redacted).
//! - `handle_auth_disabled`: no credential, `auth.mode = "disabled"`; the
//!   rate limit still runs (keyed by peer address, default tier).
//! - `handle_no_edge`: as `handle_auth_disabled` with `rate_limit.enabled = false`.
//!
//! `route_context_lookup_respond` and below are the pieces, without the edge.
//! Before criterion runs, each benchmark prints its allocations per call.
//! Run: `cargo bench --bench hit_path`.

#[path = "common/alloc.rs"]
mod alloc_count;
#[path = "common/gateway.rs"]
mod gateway;

use std::hint::black_box;
use std::net::SocketAddr;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use http::{HeaderMap, Method, Request};
use http_body_util::Full;
use order_gateway::app::AppState;
use order_gateway::config::{AuthMode, CacheCompression, Config};
use order_gateway::http::router::{Matched, Router};
use order_gateway::http::{handle, Surface};
use order_gateway::model::Component;
use order_gateway::telemetry::context::RequestContext;

use gateway::{keyed_config, KEY, KEY_NO_PII};

const PATH: &str = "/v1/orders/0b9f3c1e-2f4e-4b8e-9a57-3c1d2e4f5a6b";

/// Allocation counts: calls per benchmark.
const N: u64 = 2_000;

fn state_from(config: Config) -> AppState {
    let state = gateway::serving_state(config, None);
    state.cache.apply_event(Component::Order(gateway::order()));
    state
}

fn state() -> AppState {
    state_from(Config::load(None).expect("defaults"))
}

fn disabled_config(rate_limit: bool) -> Config {
    let mut c = keyed_config();
    c.auth.mode = AuthMode::Disabled;
    c.auth.keys.clear();
    c.rate_limit.enabled = rate_limit;
    c
}

/// A request as hyper hands it to the service (origin-form URI, a few headers).
fn request(key: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(Method::GET)
        .uri(PATH)
        .header("host", "127.0.0.1:8080")
        .header("accept", "application/json")
        .header("user-agent", "k6/1.1.0 (https://k6.io/)");
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    b.body(Full::new(Bytes::new())).expect("request")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    let router = Router::new();

    // The whole path through `http::handle`, with and without the edge.
    let uncompressed = {
        let mut c = keyed_config();
        c.cache.compression = CacheCompression::None;
        c
    };
    let cases: [(&str, Config, Option<&str>); 5] = [
        ("handle_with_key", keyed_config(), Some(KEY)),
        ("handle_with_key_uncompressed", uncompressed, Some(KEY)),
        ("handle_with_key_redacted", keyed_config(), Some(KEY_NO_PII)),
        ("handle_auth_disabled", disabled_config(true), None),
        ("handle_no_edge", disabled_config(false), None),
    ];
    let states: Vec<(&str, AppState, Option<&str>)> =
        cases.into_iter().map(|(name, config, key)| (name, rt.block_on(async { state_from(config) }), key)).collect();
    // What hyper's connection task holds and moves per request.
    let (_, first, key) = &states[0];
    let size = std::mem::size_of_val(&handle(first, &router, Surface::Main, peer, request(*key)));
    println!("hit_path/handle_future_bytes: {size}");
    for (name, state, key) in &states {
        let run = |req| rt.block_on(handle(state, &router, Surface::Main, peer, req));
        let resp = run(request(*key));
        assert_eq!(resp.status(), http::StatusCode::OK, "{name}: {resp:?}");
        assert_eq!(resp.headers()["x-cache"], "HIT", "{name}");
        alloc_count::report_batched(&format!("hit_path/{name}"), N, || request(*key), run);
    }

    let state = rt.block_on(async { state() });
    let mut headers = HeaderMap::new();
    headers.insert("x-request-id", "bench-1".parse().unwrap());
    let route_context_lookup_respond = || {
        rt.block_on(async {
            let Matched::Found { params, .. } = router.route(&Method::GET, PATH) else { panic!("no route") };
            let ctx = RequestContext::from_headers(&headers);
            let resp =
                order_gateway::api::orders::get_order(&state, params.get("order_id"), None, &headers, &ctx, true)
                    .await
                    .unwrap();
            black_box(resp)
        })
    };
    alloc_count::report("hit_path/route_context_lookup_respond", N, route_context_lookup_respond);
    alloc_count::report("hit_path/router_only", N, || router.route(&Method::GET, black_box(PATH)));
    alloc_count::report("hit_path/request_context_only", N, || RequestContext::from_headers(&headers));
    alloc_count::report("hit_path/request_context_generated", N, || RequestContext::from_headers(&HeaderMap::new()));
    alloc_count::report("hit_path/build_request (not in handle_*)", N, || request(Some(KEY)));

    let mut g = c.benchmark_group("hit_path");
    g.throughput(Throughput::Elements(1));
    for (name, state, key) in &states {
        g.bench_function(*name, |b| {
            b.iter_batched(
                || request(*key),
                |req| rt.block_on(handle(state, &router, Surface::Main, peer, req)),
                BatchSize::SmallInput,
            )
        });
    }
    g.bench_function("route_context_lookup_respond", |b| b.iter(route_context_lookup_respond));
    g.bench_function("router_only", |b| b.iter(|| black_box(router.route(&Method::GET, black_box(PATH)))));
    g.bench_function("request_context_only", |b| b.iter(|| black_box(RequestContext::from_headers(&headers))));
    g.bench_function("request_context_generated", |b| {
        let empty = HeaderMap::new();
        b.iter(|| black_box(RequestContext::from_headers(&empty)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
