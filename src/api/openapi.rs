//! The OpenAPI document, generated from the code: schemas from the model
//! types, one `#[utoipa::path]` per route beside the router's table.

#![allow(dead_code)] // the annotated functions exist for their documentation only

use std::sync::OnceLock;

use bytes::Bytes;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::model::*;

/// RFC 9457 problem details, as every error is answered.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// `urn:order-gateway:problem:<kind>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong, precisely.
    pub detail: String,
    /// The request path.
    pub instance: String,
    pub request_id: String,
    /// The backend at fault, for 503s.
    pub backend: Option<String>,
    /// The parameters at fault, for 400s.
    pub invalid_params: Option<Vec<InvalidParam>>,
}

/// One bad parameter.
#[derive(Serialize, ToSchema)]
pub struct InvalidParam {
    pub name: String,
    pub reason: String,
}

/// `POST /v1/orders:batchGet` request.
#[derive(Serialize, ToSchema)]
pub struct BatchGetRequest {
    /// 1 to `api.max_batch_ids` order ids.
    pub ids: Vec<String>,
}

/// `POST /v1/orders:batchGet` answer: found views in request order, and the ids not found.
#[derive(Serialize, ToSchema)]
pub struct BatchGetResponse {
    pub orders: Vec<OrderView>,
    pub missing: Vec<String>,
}

/// A page of orders, newest first.
#[derive(Serialize, ToSchema)]
pub struct OrderPage {
    pub orders: Vec<OrderView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/orders/{order_id}", tag = "orders",
    params(("order_id" = String, Path, description = "1 to 128 of [A-Za-z0-9._:-]"),
           ("min_version" = Option<u64>, Query, description = "Read your writes: wait up to cache.read_your_writes_wait for this order version; 503 if it is still not visible"),
           ("If-None-Match" = Option<String>, Header, description = "ETag of a view you hold")),
    responses((status = 200, description = "The view; headers ETag, X-Cache (HIT, MISS, STALE), Age when STALE", body = OrderView),
              (status = 304, description = "Unchanged since the ETag"),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "The backend failed and the order is not cached, or min_version is not visible yet", body = Problem, content_type = "application/problem+json")))]
fn get_order() {}

#[utoipa::path(get, path = "/v1/orders/by-number/{order_number}", tag = "orders",
    params(("order_number" = String, Path)),
    responses((status = 200, body = OrderView), (status = 404, body = Problem, content_type = "application/problem+json")))]
fn get_by_number() {}

#[utoipa::path(post, path = "/v1/orders:batchGet", tag = "orders", request_body = BatchGetRequest,
    responses((status = 200, body = BatchGetResponse), (status = 400, body = Problem, content_type = "application/problem+json")))]
fn batch_get() {}

#[utoipa::path(get, path = "/v1/orders", tag = "orders",
    params(("customer_id" = Option<String>, Query), ("status" = Option<OrderStatus>, Query), ("channel" = Option<Channel>, Query),
           ("from" = Option<String>, Query, description = "RFC 3339, inclusive (order.created_at)"),
           ("to" = Option<String>, Query, description = "RFC 3339, exclusive"),
           ("q" = Option<String>, Query, description = "Free text: order number, customer, e-mail, SKU, product name, city, tracking number"),
           ("limit" = Option<u32>, Query, description = "1 to api.max_limit"),
           ("cursor" = Option<String>, Query, description = "next_cursor of the previous page, for the same filters")),
    responses((status = 200, body = OrderPage), (status = 400, body = Problem, content_type = "application/problem+json")))]
fn search() {}

#[utoipa::path(get, path = "/v1/customers/{customer_id}/orders", tag = "orders",
    params(("customer_id" = String, Path), ("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = OrderPage), (status = 400, body = Problem, content_type = "application/problem+json")))]
fn customer_orders() {}

#[utoipa::path(get, path = "/v1/analytics/kpis", tag = "analytics",
    params(("from" = String, Query, description = "RFC 3339, inclusive (order created_at)"), ("to" = String, Query, description = "RFC 3339, exclusive"),
           ("channel" = Option<Channel>, Query), ("currency" = Option<String>, Query, description = "ISO 4217")),
    responses((status = 200, description = "orders, units_per_order, cancellation_rate, return_rate, on_time_delivery_rate, lead times p50/p90 in seconds, revenue and average order value per currency (definitions: docs/analytics.md)"),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "ClickHouse unavailable", body = Problem, content_type = "application/problem+json")))]
fn kpis() {}

#[utoipa::path(get, path = "/v1/analytics/timeseries", tag = "analytics",
    params(("metric" = Option<String>, Query, description = "orders (default), revenue, average_order_value, units_per_order, cancellation_rate, return_rate"),
           ("interval" = Option<String>, Query, description = "hour, day (default), week, month"),
           ("from" = String, Query), ("to" = String, Query),
           ("group_by" = Option<String>, Query, description = "channel, status, currency, country"),
           ("tz" = Option<String>, Query, description = "IANA time zone of the bucket boundaries, default UTC"),
           ("channel" = Option<Channel>, Query), ("currency" = Option<String>, Query)),
    responses((status = 200, description = "{metric, interval, tz, points: [{start, value, <group>}]}"), (status = 400, body = Problem, content_type = "application/problem+json")))]
fn timeseries() {}

#[utoipa::path(get, path = "/v1/analytics/top-skus", tag = "analytics",
    params(("from" = String, Query), ("to" = String, Query), ("limit" = Option<u32>, Query, description = "1 to 1000, default 10"),
           ("by" = Option<String>, Query, description = "units (default) or revenue (needs currency)"),
           ("channel" = Option<Channel>, Query), ("currency" = Option<String>, Query)),
    responses((status = 200, description = "{by, skus: [{sku, name, units, revenue?, currency?}]}"), (status = 400, body = Problem, content_type = "application/problem+json")))]
fn top_skus() {}

#[utoipa::path(get, path = "/v1/analytics/status-funnel", tag = "analytics",
    params(("from" = String, Query), ("to" = String, Query), ("channel" = Option<Channel>, Query), ("currency" = Option<String>, Query)),
    responses((status = 200, description = "{stages: [{status, orders}], cancelled}"), (status = 400, body = Problem, content_type = "application/problem+json")))]
fn status_funnel() {}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process is alive")))]
fn healthz() {}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready or degraded, one entry per backend and the stream"),
              (status = 503, description = "not_ready (a required backend is down) or draining")))]
fn readyz() {}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
fn metrics() {}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "order-gateway", description = "Read layer of the Order Management System"),
    paths(get_order, get_by_number, batch_get, search, customer_orders, kpis, timeseries, top_skus, status_funnel, healthz, readyz, metrics),
    components(schemas(OrderView, Order, Fulfillment, OrderLine, Address, Problem, InvalidParam, BatchGetRequest, BatchGetResponse, OrderPage))
)]
pub struct ApiDoc;

/// The document as JSON, rendered once.
pub fn json() -> Bytes {
    static DOC: OnceLock<Bytes> = OnceLock::new();
    DOC.get_or_init(|| Bytes::from(ApiDoc::openapi().to_pretty_json().expect("the document serialises"))).clone()
}

/// A Swagger UI asset (vendored into the binary), by the path after `/docs/`.
pub fn swagger_file(tail: &str) -> Option<(Bytes, String)> {
    static CONFIG: OnceLock<std::sync::Arc<utoipa_swagger_ui::Config<'static>>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| std::sync::Arc::new(utoipa_swagger_ui::Config::from("/openapi.json")));
    let tail = if tail.is_empty() { "index.html" } else { tail };
    match utoipa_swagger_ui::serve(tail, config.clone()) {
        Ok(Some(file)) => Some((Bytes::from(file.bytes.into_owned()), file.content_type)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn document_lists_every_route_and_the_view_schema() {
        let doc: serde_json::Value = serde_json::from_slice(&super::json()).unwrap();
        for p in ["/v1/orders/{order_id}", "/v1/orders/by-number/{order_number}", "/v1/orders:batchGet", "/v1/orders", "/v1/customers/{customer_id}/orders", "/readyz", "/v1/analytics/kpis", "/v1/analytics/timeseries"] {
            assert!(doc["paths"][p].is_object(), "{p} missing");
        }
        assert!(doc["components"]["schemas"]["OrderView"].is_object());
        assert_eq!(doc["components"]["schemas"]["Fulfillment"]["properties"]["type"]["$ref"], "#/components/schemas/FulfillmentType");
    }

    #[test]
    fn swagger_ui_is_served_from_the_binary() {
        let (index, ct) = super::swagger_file("").expect("index.html");
        assert!(ct.starts_with("text/html"));
        assert!(!index.is_empty());
        assert!(super::swagger_file("swagger-ui.css").is_some());
    }
}
