//! order-gateway: the read layer of the Order Management System.
//!
//! A request travels `http` (accept, route, request ids, metrics) -> `api`
//! (one handler per resource, errors as problem+json) -> `backends`
//! (Elasticsearch, ClickHouse, Kafka, schema registry). Nothing reaches back up.

pub mod api;
pub mod app;
pub mod backends;
pub mod config;
pub mod http;
pub mod telemetry;
