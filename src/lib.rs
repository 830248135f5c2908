//! order-gateway: the read layer of the Order Management System.
//!
//! A request travels `http` (accept, route, request ids, metrics) -> `edge`
//! (authenticate, rate-limit, authorise) -> `api`
//! (one handler per resource, errors as problem+json) -> `backends`
//! (Elasticsearch, ClickHouse, Kafka, schema registry). Nothing reaches back up.
//!
//! An event travels `events` (decode) -> `model` (`OrderView::apply`) ->
//! `ingest` (Elasticsearch and ClickHouse) or the cache, and from the cache
//! to `live` (the subscribers of Server-Sent Events). `setup` and `seed` are
//! the pipeline's tools.

pub mod api;
pub mod app;
pub mod backends;
pub mod cache;
pub mod config;
pub mod edge;
pub mod events;
pub mod http;
pub mod ingest;
pub mod live;
pub mod model;
pub mod route;
pub mod seed;
pub mod setup;
pub mod telemetry;

/// The allocator the binary runs with (`#[global_allocator]` in main.rs, and
/// in the benches that stand for the binary): the system's. mimalloc measured
/// 1.14 to 1.23 times the cache-hit capacity on 2026-11-29 and level with it
/// on 2026-11-30, and the same memory per cached order (BENCHMARKS.md, "The
/// allocator"): not adopted while no gain holds. One name for it, so that
/// trying another is a one-line change.
pub use std::alloc::System as Allocator;
