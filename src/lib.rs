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
