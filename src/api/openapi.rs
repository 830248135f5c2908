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

/// `POST /v1/orders:batchGet` request; other fields are refused.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchGetRequest {
    #[schema(schema_with = batch_ids)]
    pub ids: Vec<String>,
}

fn batch_ids() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(128))
                .pattern(Some(r"^[A-Za-z0-9._:-]{1,128}$")),
        )
        .min_items(Some(1))
        .max_items(Some(100))
        .description(Some("1 to `api.max_batch_ids` (default 100) order ids, each 1 to 128 of `[A-Za-z0-9._:-]`"))
        .build()
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

/// Lead-time quantiles in seconds; null when no order qualifies.
#[derive(Serialize, ToSchema)]
pub struct LeadTime {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
}

/// Revenue of one currency (minor units).
#[derive(Serialize, ToSchema)]
pub struct CurrencyRevenue {
    pub currency: String,
    pub orders: u64,
    pub revenue: i64,
    pub average_order_value: Option<f64>,
}

/// `GET /v1/analytics/kpis` answer (definitions: docs/analytics.md). Rates are
/// null when their denominator is zero.
#[derive(Serialize, ToSchema)]
pub struct Kpis {
    /// The range as applied, RFC 3339 in UTC.
    pub from: String,
    pub to: String,
    pub channel: Option<String>,
    pub currency: Option<String>,
    pub orders: u64,
    pub units_per_order: Option<f64>,
    pub cancellation_rate: Option<f64>,
    pub return_rate: Option<f64>,
    pub on_time_delivery_rate: Option<f64>,
    pub lead_time_to_ship_seconds: LeadTime,
    pub lead_time_to_deliver_seconds: LeadTime,
    /// One line per currency: money never mixes currencies.
    pub revenue: Vec<CurrencyRevenue>,
}

/// What a time series counts.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Orders,
    Revenue,
    AverageOrderValue,
    UnitsPerOrder,
    CancellationRate,
    ReturnRate,
}

/// Width of a time-series bucket.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Hour,
    Day,
    Week,
    Month,
}

/// What a time series is split by.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Channel,
    Status,
    Currency,
    Country,
}

/// How top SKUs are ranked.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkuRanking {
    Units,
    Revenue,
}

/// One bucket of a time series. With `group_by`, the group's value is under
/// the grouping's name (e.g. `"channel": "web"`), one point per bucket and group.
#[derive(Serialize, ToSchema)]
pub struct TimeseriesPoint {
    /// Start of the bucket, RFC 3339 in UTC.
    pub start: String,
    /// A count, an amount in minor units, or a ratio; null when undefined.
    pub value: Option<f64>,
}

/// `GET /v1/analytics/timeseries` answer.
#[derive(Serialize, ToSchema)]
pub struct Timeseries {
    pub metric: Metric,
    pub interval: Interval,
    pub tz: String,
    pub points: Vec<TimeseriesPoint>,
}

/// One best seller; `revenue` and `currency` only when `currency` was given.
#[derive(Serialize, ToSchema)]
pub struct TopSku {
    pub sku: String,
    pub name: String,
    pub units: u64,
    pub revenue: Option<i64>,
    pub currency: Option<String>,
}

/// `GET /v1/analytics/top-skus` answer.
#[derive(Serialize, ToSchema)]
pub struct TopSkus {
    pub by: SkuRanking,
    pub skus: Vec<TopSku>,
}

/// How many orders reached one status.
#[derive(Serialize, ToSchema)]
pub struct FunnelStage {
    pub status: OrderStatus,
    pub orders: u64,
}

/// `GET /v1/analytics/status-funnel` answer.
#[derive(Serialize, ToSchema)]
pub struct StatusFunnel {
    /// created, confirmed, allocated, partially_shipped, shipped, delivered, returned.
    pub stages: Vec<FunnelStage>,
    /// Cancelled orders (counted as created only).
    pub cancelled: u64,
}

// Parameters carry what the handlers accept (src/api/params.rs), so generated
// clients and fuzzers send what a correct client would: ids and order numbers
// are 1 to 128 of [A-Za-z0-9._:-], currencies ISO 4217 codes, time zones what
// the time-series handler lets through to ClickHouse (which then checks the name).

#[utoipa::path(get, path = "/v1/orders/{order_id}", tag = "orders",
    params(("order_id" = String, Path, min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9._:-]{1,128}$", description = "1 to 128 of [A-Za-z0-9._:-]"),
           ("min_version" = Option<u64>, Query, minimum = 1, description = "Read your writes: wait up to cache.read_your_writes_wait for this order version (at most 2^63-1); 503 if it is still not visible"),
           ("If-None-Match" = Option<String>, Header, description = "ETag of a view you hold")),
    responses((status = 200, description = "The view; Age and Warning when X-Cache is STALE", body = OrderView,
                headers(("ETag" = String, description = "Version of the view, for If-None-Match"),
                        ("X-Cache" = String, description = "HIT, MISS or STALE"))),
              (status = 304, description = "Unchanged since the ETag", headers(("ETag" = String))),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "The backend failed and the order is not cached, or min_version is not visible yet", body = Problem, content_type = "application/problem+json",
                headers(("Retry-After" = String, description = "Seconds")))))]
fn get_order() {}

#[utoipa::path(get, path = "/v1/orders/by-number/{order_number}", tag = "orders",
    params(("order_number" = String, Path, min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9._:-]{1,128}$", description = "1 to 128 of [A-Za-z0-9._:-]"),
           ("If-None-Match" = Option<String>, Header, description = "ETag of a view you hold")),
    responses((status = 200, body = OrderView,
                headers(("ETag" = String, description = "Version of the view, for If-None-Match"),
                        ("X-Cache" = String, description = "HIT, MISS or STALE"))),
              (status = 304, description = "Unchanged since the ETag", headers(("ETag" = String))),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "A backend failed", body = Problem, content_type = "application/problem+json",
                headers(("Retry-After" = String, description = "Seconds")))))]
fn get_by_number() {}

#[utoipa::path(post, path = "/v1/orders:batchGet", tag = "orders", request_body = BatchGetRequest,
    responses((status = 200, body = BatchGetResponse),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 408, description = "The body did not arrive within server.body_read_timeout", body = Problem, content_type = "application/problem+json"),
              (status = 413, description = "The body is larger than server.max_body_bytes", body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "A backend failed", body = Problem, content_type = "application/problem+json")))]
fn batch_get() {}

#[utoipa::path(get, path = "/v1/orders", tag = "orders",
    params(("customer_id" = Option<String>, Query, min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9._:-]{1,128}$"),
           ("status" = Option<OrderStatus>, Query), ("channel" = Option<Channel>, Query),
           ("from" = Option<String>, Query, format = DateTime, description = "RFC 3339, inclusive (order.created_at)"),
           ("to" = Option<String>, Query, format = DateTime, description = "RFC 3339, exclusive; after from, at most api.max_search_range later"),
           ("q" = Option<String>, Query, min_length = 1, max_length = 200, description = "Free text (1 to 200 characters, not only spaces): order number, customer, SKU, product name, tracking number; with scope orders:pii also e-mail, addressee and city"),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "1 to api.max_limit (default 100)"),
           ("cursor" = Option<String>, Query, min_length = 1, description = "next_cursor of the previous page, for the same filters")),
    responses((status = 200, body = OrderPage),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "Elasticsearch failed", body = Problem, content_type = "application/problem+json")))]
fn search() {}

#[utoipa::path(get, path = "/v1/customers/{customer_id}/orders", tag = "orders",
    params(("customer_id" = String, Path, min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9._:-]{1,128}$"),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "1 to api.max_limit (default 100)"),
           ("cursor" = Option<String>, Query, min_length = 1, description = "next_cursor of the previous page")),
    responses((status = 200, body = OrderPage),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "Elasticsearch failed", body = Problem, content_type = "application/problem+json")))]
fn customer_orders() {}

#[utoipa::path(get, path = "/v1/analytics/kpis", tag = "analytics",
    params(("from" = String, Query, format = DateTime, description = "RFC 3339, inclusive (order created_at)"),
           ("to" = String, Query, format = DateTime, description = "RFC 3339, exclusive; after from, at most analytics.max_range later"),
           ("channel" = Option<Channel>, Query), ("currency" = Option<String>, Query, pattern = "^[A-Z]{3}$", description = "ISO 4217")),
    responses((status = 200, description = "Definitions: docs/analytics.md", body = Kpis),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "ClickHouse unavailable", body = Problem, content_type = "application/problem+json")))]
fn kpis() {}

#[utoipa::path(get, path = "/v1/analytics/timeseries", tag = "analytics",
    params(("metric" = Option<Metric>, Query, description = "Default orders; revenue and average_order_value need currency or group_by=currency"),
           ("interval" = Option<Interval>, Query, description = "Default day; from and to are widened to whole buckets; at most analytics.max_points points (buckets x groups)"),
           ("from" = String, Query, format = DateTime), ("to" = String, Query, format = DateTime),
           ("group_by" = Option<GroupBy>, Query),
           ("tz" = Option<String>, Query, pattern = r"^[A-Za-z0-9/_+-]{1,64}$", description = "IANA time zone of the bucket boundaries (as ClickHouse spells it, e.g. Europe/Berlin), default UTC"),
           ("channel" = Option<Channel>, Query), ("currency" = Option<String>, Query, pattern = "^[A-Z]{3}$")),
    responses((status = 200, body = Timeseries),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "ClickHouse unavailable", body = Problem, content_type = "application/problem+json")))]
fn timeseries() {}

#[utoipa::path(get, path = "/v1/analytics/top-skus", tag = "analytics",
    params(("from" = String, Query, format = DateTime), ("to" = String, Query, format = DateTime),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 10"),
           ("by" = Option<SkuRanking>, Query, description = "units (default) or revenue (needs currency)"),
           ("channel" = Option<Channel>, Query), ("currency" = Option<String>, Query, pattern = "^[A-Z]{3}$")),
    responses((status = 200, body = TopSkus),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "ClickHouse unavailable", body = Problem, content_type = "application/problem+json")))]
fn top_skus() {}

#[utoipa::path(get, path = "/v1/analytics/status-funnel", tag = "analytics",
    params(("from" = String, Query, format = DateTime), ("to" = String, Query, format = DateTime),
           ("channel" = Option<Channel>, Query), ("currency" = Option<String>, Query, pattern = "^[A-Z]{3}$")),
    responses((status = 200, body = StatusFunnel),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "ClickHouse unavailable", body = Problem, content_type = "application/problem+json")))]
fn status_funnel() {}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process is alive")))]
fn healthz() {}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready or degraded, one entry per backend and the stream"),
              (status = 503, description = "not_ready (a required backend is down) or draining")))]
fn readyz() {}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
fn metrics() {}

#[utoipa::path(get, path = "/admin/cache", tag = "admin",
    responses((status = 200, description = "entries, weighted_bytes, max_bytes, negative_entries, seen_versions, order_numbers, fills_in_flight, analytics_answers, rate_limit_clients, ttl")))]
fn admin_cache() {}

#[utoipa::path(delete, path = "/admin/cache/orders/{order_id}", tag = "admin", params(("order_id" = String, Path)),
    responses((status = 200, description = "{order_id, was_cached}: the next read goes to the backends"),
              (status = 400, body = Problem, content_type = "application/problem+json")))]
fn admin_evict() {}

#[utoipa::path(get, path = "/admin/stream", tag = "admin",
    responses((status = 200, description = "enabled, assigned, healthy, lag_messages, lag_ms, partitions: [{topic, partition, position, high_watermark, lag}]")))]
fn admin_stream() {}

#[utoipa::path(get, path = "/admin/config", tag = "admin",
    responses((status = 200, description = "The configuration in effect, secrets masked")))]
fn admin_config() {}

#[utoipa::path(post, path = "/admin/reload", tag = "admin",
    responses((status = 200, description = "{applied: [keys], restart_required: [keys]}"),
              (status = 422, description = "The new configuration is invalid; nothing changed", body = Problem, content_type = "application/problem+json")))]
fn admin_reload() {}

/// What the edge adds to every operation: the credentials it accepts, and the
/// answers any route can give (401, 403, 429, 503 shedding, 413, 431).
struct EdgeDocs;

impl utoipa::Modify for EdgeDocs {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))));
        let problem = |description: &str| -> RefOr<utoipa::openapi::Response> {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/problem+json",
                        ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
                    )
                    .build(),
            )
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            let probe = matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics");
            for op in [&mut item.get, &mut item.post, &mut item.delete].into_iter().flatten() {
                let r = &mut op.responses.responses;
                if !probe {
                    op.security = Some(vec![
                        SecurityRequirement::new("bearer", Vec::<String>::new()),
                        SecurityRequirement::new("api_key", Vec::<String>::new()),
                    ]);
                    r.entry("401".into()).or_insert_with(|| {
                        problem("No credential, or one that is not valid (WWW-Authenticate says which)")
                    });
                    r.entry("403".into()).or_insert_with(|| problem("The credential lacks the scope this route needs"));
                    r.entry("429".into()).or_insert_with(|| {
                        problem("Rate limit spent: Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset")
                    });
                    r.entry("503".into()).or_insert_with(|| {
                        problem("Overloaded (server.max_in_flight) or a backend failed; Retry-After")
                    });
                }
                r.entry("413".into()).or_insert_with(|| problem("Request body larger than server.max_body_bytes"));
                r.entry("431".into()).or_insert_with(|| problem("Request headers larger than server.max_header_bytes"));
            }
        }
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "order-gateway", description = "Read layer of the Order Management System"),
    modifiers(&EdgeDocs),
    paths(get_order, get_by_number, batch_get, search, customer_orders, kpis, timeseries, top_skus, status_funnel, healthz, readyz, metrics,
          admin_cache, admin_evict, admin_stream, admin_config, admin_reload),
    components(schemas(OrderView, Order, Fulfillment, OrderLine, Address, Problem, InvalidParam, BatchGetRequest, BatchGetResponse, OrderPage,
                       Kpis, LeadTime, CurrencyRevenue, Timeseries, TimeseriesPoint, Metric, Interval, GroupBy, TopSkus, TopSku, SkuRanking,
                       StatusFunnel, FunnelStage))
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
        for p in [
            "/v1/orders/{order_id}",
            "/v1/orders/by-number/{order_number}",
            "/v1/orders:batchGet",
            "/v1/orders",
            "/v1/customers/{customer_id}/orders",
            "/readyz",
            "/v1/analytics/kpis",
            "/v1/analytics/timeseries",
        ] {
            assert!(doc["paths"][p].is_object(), "{p} missing");
        }
        assert!(doc["components"]["schemas"]["OrderView"].is_object());
        assert_eq!(
            doc["components"]["schemas"]["Fulfillment"]["properties"]["type"]["$ref"],
            "#/components/schemas/FulfillmentType"
        );
    }

    #[test]
    fn document_says_what_the_handlers_accept_and_answer() {
        // Found by scripts/fuzz.sh (schemathesis): statuses the routes answer
        // and constraints the handlers enforce must be in the document.
        let doc: serde_json::Value = serde_json::from_slice(&super::json()).unwrap();
        let by_number = &doc["paths"]["/v1/orders/by-number/{order_number}"]["get"];
        for status in ["200", "304", "400", "404", "503"] {
            assert!(by_number["responses"][status].is_object(), "by-number: {status} missing");
        }
        assert_eq!(by_number["parameters"][0]["schema"]["pattern"], "^[A-Za-z0-9._:-]{1,128}$");
        let batch = &doc["components"]["schemas"]["BatchGetRequest"];
        assert_eq!(batch["additionalProperties"], false, "unknown fields are refused");
        assert_eq!(batch["properties"]["ids"]["maxItems"], 100);
        assert_eq!(batch["properties"]["ids"]["items"]["maxLength"], 128);
        for p in
            ["/v1/analytics/kpis", "/v1/analytics/timeseries", "/v1/analytics/top-skus", "/v1/analytics/status-funnel"]
        {
            let ok = &doc["paths"][p]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
            assert!(ok["$ref"].is_string(), "{p}: the 200 body has no schema");
            assert!(doc["paths"][p]["get"]["responses"]["503"].is_object(), "{p}: 503 missing");
        }
    }

    #[test]
    fn swagger_ui_is_served_from_the_binary() {
        let (index, ct) = super::swagger_file("").expect("index.html");
        assert!(ct.starts_with("text/html"));
        assert!(!index.is_empty());
        assert!(super::swagger_file("swagger-ui.css").is_some());
    }
}
