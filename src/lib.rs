//! order-gateway: the read layer of the Order Management System.
//!
//! A request travels `http` (accept, route, request ids, metrics) -> `edge`
//! (authenticate, rate-limit, authorise) -> `api`
//! (one handler per resource, errors as problem+json) -> `backends`
//! (Elasticsearch, ClickHouse, Kafka, schema registry). Nothing reaches back up.
//!
//! An event travels `events` (decode) -> `model` (`OrderView::apply`) ->
//! `ingest` (Elasticsearch and ClickHouse) or the cache. `setup` and `seed`
//! are the pipeline's tools.

pub mod api;
pub mod app;
pub mod backends;
pub mod cache;
pub mod config;
pub mod edge;
pub mod events;
pub mod http;
pub mod ingest;
pub mod model;
pub mod route;
pub mod seed;
pub mod setup;
pub mod telemetry;

/// The allocator the binary runs with (`#[global_allocator]` in main.rs, and
/// in the benches that stand for the binary). mimalloc's per-thread free
/// lists serve a cache hit's short-lived buffers (the response head, header
/// maps, hyper's bookkeeping) faster than glibc's malloc: about 1.15 to 1.25
/// times the hit capacity on one core (BENCHMARKS.md, "The allocator").
pub use mimalloc::MiMalloc as Allocator;
