//! The OpenAPI document, generated from the code: schemas from the model
//! types, one `#[utoipa::path]` per route beside the router's table; and the
//! two pages that render it, Swagger UI (`/docs`) and ReDoc (`/redoc`), both
//! served from the binary.

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

/// Data of a `deleted` event: the order is gone.
#[derive(Serialize, ToSchema)]
pub struct OrderDeleted {
    pub order_id: String,
    /// The order's version that deleted it.
    pub version: u64,
}

/// Data of the `degraded`, `recovered`, `lagged`, `idle` and `shutdown` events.
#[derive(Serialize, ToSchema)]
pub struct StreamNotice {
    /// What happened and what to do, for people.
    pub detail: String,
}

/// `from` and `to` of the analytics routes: an RFC 3339 timestamp or a date
/// (src/api/params.rs, `time_or_date`).
struct TimeOrDate;

impl utoipa::PartialSchema for TimeOrDate {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
        let string =
            |format| ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(format)));
        AnyOfBuilder::new().item(string(KnownFormat::DateTime)).item(string(KnownFormat::Date)).into()
    }
}

impl ToSchema for TimeOrDate {}

// Parameters carry what the handlers accept (src/api/params.rs), so generated
// clients and fuzzers send what a correct client would: ids and order numbers
// are 1 to 128 of [A-Za-z0-9._:-], currencies ISO 4217 codes, time zones what
// the analytics handlers let through to ClickHouse (which then checks the name).

/// An order by id
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

/// Live updates of one order (Server-Sent Events)
///
/// A `text/event-stream`: first `retry: <subscribe.retry in ms>`, then an `order` event with the
/// current view, then one `order` event per change this replica applies. A view is never older
/// than one already sent on the stream (changes may be merged: a client gets the latest view,
/// not every step).
///
/// Each `order` event's `id` is a resume token (opaque). After a disconnect, reconnect with the
/// last one in `Last-Event-ID` (a browser's `EventSource` does so by itself): the current view is
/// then sent only if it is newer than the one the token names, from any replica. If the order
/// was deleted meanwhile, the stream sends `deleted` and ends.
///
/// | event | data | then |
/// |---|---|---|
/// | `order` | the view, as `GET /v1/orders/{order_id}` serves it (schema `OrderView`); `id`: its resume token | |
/// | `deleted` | `{"order_id", "version"}` (schema `OrderDeleted`); `id`: a resume token | the stream ends |
/// | `degraded` | `{"detail"}` (schema `StreamNotice`): the event stream behind this replica's cache is behind or down, updates may come late (also sent first when the stream opens so) | |
/// | `recovered` | `{"detail"}`: caught up again | |
/// | `lagged` | `{"detail"}`: changes came faster than the client read them | the stream ends: reconnect with `Last-Event-ID` |
/// | `idle` | `{"detail"}`: no change for `subscribe.max_idle` (30 min) | the stream ends: reconnect with `Last-Event-ID` |
/// | `shutdown` | `{"detail"}`: this replica stops | the stream ends: reconnect with `Last-Event-ID` |
///
/// A `: keep-alive` comment line every `subscribe.heartbeat` (15 s) keeps proxies from closing a
/// quiet stream.
///
/// Scope `orders:read`; personal data (address, e-mail, phone) only with `orders:pii`, as for
/// lookups. While open, the stream counts against `subscribe.max_streams_per_client` (per
/// credential, or per address when anonymous) and `subscribe.max_streams` (per replica).
// A response's `example` comes last: utoipa-gen 5.5 takes the comma after it
// as its own, and would then find none before the next attribute.
#[utoipa::path(get, path = "/v1/orders/{order_id}/events", tag = "orders",
    params(("order_id" = String, Path, min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9._:-]{1,128}$", description = "1 to 128 of [A-Za-z0-9._:-]"),
           ("Last-Event-ID" = Option<String>, Header, max_length = 1024, description = "The `id` of the last `order` event received; empty or absent: start with the current view")),
    responses((status = 200, description = "The stream: events as in the table above", content_type = "text/event-stream", body = String,
                headers(("Cache-Control" = String, description = "no-store")),
                example = "retry: 2000\n\nevent: order\nid: o1b-2a.3\ndata: {\"order_id\":\"ord-1001\",\"order\":{...},\"fulfillments\":[...]}\n\n: keep-alive\n\nevent: order\nid: o1c-2a.3\ndata: {\"order_id\":\"ord-1001\",\"order\":{...},\"fulfillments\":[...]}\n\n"),
              (status = 400, description = "order_id is malformed, a query parameter was given (none is taken), or Last-Event-ID is not a resume token", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "No such order, or it is deleted (a stream resumed with Last-Event-ID gets `deleted` instead)", body = Problem, content_type = "application/problem+json"),
              (status = 429, description = "Rate limit spent (Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset), or this client already has subscribe.max_streams_per_client streams open on this replica (type urn:order-gateway:problem:too-many-streams: close one first)", body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "This replica already serves subscribe.max_streams streams (retry shortly, or on another replica), a backend failed and the order is not cached, or the gateway is overloaded (server.max_in_flight)", body = Problem, content_type = "application/problem+json",
                headers(("Retry-After" = String, description = "Seconds")))))]
fn order_events() {}

/// An order by its order number
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

/// Orders by id, up to api.max_batch_ids at once
#[utoipa::path(post, path = "/v1/orders:batchGet", tag = "orders", request_body = BatchGetRequest,
    responses((status = 200, body = BatchGetResponse),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 408, description = "The body did not arrive within server.body_read_timeout", body = Problem, content_type = "application/problem+json"),
              (status = 413, description = "The body is larger than server.max_body_bytes", body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "A backend failed", body = Problem, content_type = "application/problem+json")))]
fn batch_get() {}

/// Search orders
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

/// A customer's orders, newest first
#[utoipa::path(get, path = "/v1/customers/{customer_id}/orders", tag = "orders",
    params(("customer_id" = String, Path, min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9._:-]{1,128}$"),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "1 to api.max_limit (default 100)"),
           ("cursor" = Option<String>, Query, min_length = 1, description = "next_cursor of the previous page")),
    responses((status = 200, body = OrderPage),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "Elasticsearch failed", body = Problem, content_type = "application/problem+json")))]
fn customer_orders() {}

/// Live updates of a customer's orders (Server-Sent Events)
///
/// The same stream as `GET /v1/orders/{order_id}/events`, for every order of the customer, new
/// orders included, from the moment the stream opens: `retry:` first, then an `order` event per
/// change this replica applies to any of them (never a view older than one already sent for the
/// same order), each with that order's resume token as `id`.
///
/// A change reaches this stream once this replica knows the order's customer: from an order
/// event, or from the cached view (a fulfilment change to an order this replica has never read
/// goes to that order's own subscribers only).
///
/// There is no initial view and no replay: `Last-Event-ID` is ignored. Read
/// `GET /v1/customers/{customer_id}/orders` after opening the stream, and again after each
/// reconnect. A `deleted` event does not end this stream; `lagged`, `idle` and `shutdown` do.
/// `degraded`, `recovered` and the `: keep-alive` comment are as on an order's stream.
///
/// Scope `orders:read`; personal data only with `orders:pii`. Counts against the same stream
/// limits.
#[utoipa::path(get, path = "/v1/customers/{customer_id}/orders/events", tag = "orders",
    params(("customer_id" = String, Path, min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9._:-]{1,128}$", description = "1 to 128 of [A-Za-z0-9._:-]")),
    responses((status = 200, description = "The stream: `order` and `deleted` events for any order of the customer, and the stream's own events", content_type = "text/event-stream", body = String,
                headers(("Cache-Control" = String, description = "no-store")),
                example = "retry: 2000\n\nevent: order\nid: o7-11.2\ndata: {\"order_id\":\"ord-1002\",\"order\":{...},\"fulfillments\":[...]}\n\nevent: deleted\nid: o9\ndata: {\"order_id\":\"ord-0917\",\"version\":9}\n\n"),
              (status = 400, description = "customer_id is malformed, or a query parameter was given (none is taken)", body = Problem, content_type = "application/problem+json"),
              (status = 429, description = "Rate limit spent (Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset), or this client already has subscribe.max_streams_per_client streams open on this replica (type urn:order-gateway:problem:too-many-streams: close one first)", body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "This replica already serves subscribe.max_streams streams (retry shortly, or on another replica), or the gateway is overloaded (server.max_in_flight)", body = Problem, content_type = "application/problem+json",
                headers(("Retry-After" = String, description = "Seconds")))))]
fn customer_order_events() {}

/// KPIs over a range
#[utoipa::path(get, path = "/v1/analytics/kpis", tag = "analytics",
    params(("from" = inline(TimeOrDate), Query, description = "Inclusive start (order created_at): an RFC 3339 timestamp such as 2025-01-01T00:00:00Z, or a date such as 2025-01-01, meaning the start of that day in tz (UTC when tz is absent)"),
           ("to" = inline(TimeOrDate), Query, description = "Exclusive end: an RFC 3339 timestamp, or a date meaning the start of that day in tz, so to=2025-02-01 stops before February 1 (from=2025-01-01&to=2025-02-01 is all of January); after from, at most analytics.max_range later"),
           ("tz" = Option<String>, Query, pattern = r"^[A-Za-z0-9/_+-]{1,64}$", description = "IANA time zone (as ClickHouse spells it, e.g. Europe/Berlin) in which a date in from and to is read, default UTC; no effect on RFC 3339 timestamps"),
           ("channel" = Option<Channel>, Query), ("currency" = Option<String>, Query, pattern = "^[A-Z]{3}$", description = "ISO 4217")),
    responses((status = 200, description = "Definitions: docs/analytics.md", body = Kpis),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "ClickHouse unavailable", body = Problem, content_type = "application/problem+json")))]
fn kpis() {}

/// A metric per time bucket
#[utoipa::path(get, path = "/v1/analytics/timeseries", tag = "analytics",
    params(("metric" = Option<Metric>, Query, description = "Default orders; revenue and average_order_value need currency or group_by=currency"),
           ("interval" = Option<Interval>, Query, description = "Default day; from and to are widened to whole buckets; at most analytics.max_points points (buckets x groups)"),
           ("from" = inline(TimeOrDate), Query, description = "Inclusive start (order created_at): an RFC 3339 timestamp such as 2025-01-01T00:00:00Z, or a date such as 2025-01-01, meaning the start of that day in tz (UTC when tz is absent)"),
           ("to" = inline(TimeOrDate), Query, description = "Exclusive end: an RFC 3339 timestamp, or a date meaning the start of that day in tz, so to=2025-02-01 stops before February 1 (from=2025-01-01&to=2025-02-01 is all of January); after from, at most analytics.max_range later"),
           ("group_by" = Option<GroupBy>, Query),
           ("tz" = Option<String>, Query, pattern = r"^[A-Za-z0-9/_+-]{1,64}$", description = "IANA time zone (as ClickHouse spells it, e.g. Europe/Berlin) of the bucket boundaries and of a date in from and to, default UTC"),
           ("channel" = Option<Channel>, Query), ("currency" = Option<String>, Query, pattern = "^[A-Z]{3}$")),
    responses((status = 200, body = Timeseries),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "ClickHouse unavailable", body = Problem, content_type = "application/problem+json")))]
fn timeseries() {}

/// Best-selling SKUs
#[utoipa::path(get, path = "/v1/analytics/top-skus", tag = "analytics",
    params(("from" = inline(TimeOrDate), Query, description = "Inclusive start (order created_at): an RFC 3339 timestamp such as 2025-01-01T00:00:00Z, or a date such as 2025-01-01, meaning the start of that day in tz (UTC when tz is absent)"),
           ("to" = inline(TimeOrDate), Query, description = "Exclusive end: an RFC 3339 timestamp, or a date meaning the start of that day in tz, so to=2025-02-01 stops before February 1 (from=2025-01-01&to=2025-02-01 is all of January); after from, at most analytics.max_range later"),
           ("tz" = Option<String>, Query, pattern = r"^[A-Za-z0-9/_+-]{1,64}$", description = "IANA time zone (as ClickHouse spells it, e.g. Europe/Berlin) in which a date in from and to is read, default UTC; no effect on RFC 3339 timestamps"),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 10"),
           ("by" = Option<SkuRanking>, Query, description = "units (default) or revenue (needs currency)"),
           ("channel" = Option<Channel>, Query), ("currency" = Option<String>, Query, pattern = "^[A-Z]{3}$")),
    responses((status = 200, body = TopSkus),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "ClickHouse unavailable", body = Problem, content_type = "application/problem+json")))]
fn top_skus() {}

/// How many orders reached each status
#[utoipa::path(get, path = "/v1/analytics/status-funnel", tag = "analytics",
    params(("from" = inline(TimeOrDate), Query, description = "Inclusive start (order created_at): an RFC 3339 timestamp such as 2025-01-01T00:00:00Z, or a date such as 2025-01-01, meaning the start of that day in tz (UTC when tz is absent)"),
           ("to" = inline(TimeOrDate), Query, description = "Exclusive end: an RFC 3339 timestamp, or a date meaning the start of that day in tz, so to=2025-02-01 stops before February 1 (from=2025-01-01&to=2025-02-01 is all of January); after from, at most analytics.max_range later"),
           ("tz" = Option<String>, Query, pattern = r"^[A-Za-z0-9/_+-]{1,64}$", description = "IANA time zone (as ClickHouse spells it, e.g. Europe/Berlin) in which a date in from and to is read, default UTC; no effect on RFC 3339 timestamps"),
           ("channel" = Option<Channel>, Query), ("currency" = Option<String>, Query, pattern = "^[A-Z]{3}$")),
    responses((status = 200, body = StatusFunnel),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "ClickHouse unavailable", body = Problem, content_type = "application/problem+json")))]
fn status_funnel() {}

/// Liveness
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process is alive")))]
fn healthz() {}

/// Readiness, per backend
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready or degraded, one entry per backend and the stream"),
              (status = 503, description = "not_ready (a required backend is down) or draining")))]
fn readyz() {}

/// Prometheus metrics
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
fn metrics() {}

/// Cache statistics
#[utoipa::path(get, path = "/admin/cache", tag = "admin",
    responses((status = 200, description = "entries, weighted_bytes, max_bytes, negative_entries, seen_versions, order_numbers, fills_in_flight, analytics_answers, rate_limit_clients, ttl")))]
fn admin_cache() {}

/// Evict one order from the cache
#[utoipa::path(delete, path = "/admin/cache/orders/{order_id}", tag = "admin", params(("order_id" = String, Path)),
    responses((status = 200, description = "{order_id, was_cached}: the next read goes to the backends"),
              (status = 400, body = Problem, content_type = "application/problem+json")))]
fn admin_evict() {}

/// Event stream positions and lag
#[utoipa::path(get, path = "/admin/stream", tag = "admin",
    responses((status = 200, description = "enabled, assigned, healthy, lag_messages, lag_ms, partitions: [{topic, partition, position, high_watermark, lag}]")))]
fn admin_stream() {}

/// The configuration in effect
#[utoipa::path(get, path = "/admin/config", tag = "admin",
    responses((status = 200, description = "The configuration in effect, secrets masked")))]
fn admin_config() {}

/// Reload the configuration
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
    // Swagger UI and ReDoc list tags in this order, and a tag's operations
    // in the order of `paths` (Cargo feature utoipa/preserve_path_order):
    // what most readers come for first, the admin surface last.
    tags((name = "orders", description = "Orders by id, by number, in batches, by search and by customer, and their live updates"),
         (name = "analytics", description = "KPIs, time series, top SKUs and the status funnel, from ClickHouse (definitions: docs/analytics.md)"),
         (name = "operations", description = "Liveness, readiness and Prometheus metrics"),
         (name = "admin", description = "The cache, the event stream and the configuration, on the admin surface (admin.listen), scope admin")),
    paths(get_order, order_events, get_by_number, batch_get, search, customer_orders, customer_order_events,
          kpis, timeseries, top_skus, status_funnel,
          healthz, readyz, metrics,
          admin_cache, admin_evict, admin_stream, admin_config, admin_reload),
    components(schemas(OrderView, Order, Fulfillment, OrderLine, Address, Problem, InvalidParam, BatchGetRequest, BatchGetResponse, OrderPage,
                       OrderDeleted, StreamNotice,
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

/// The ReDoc page: the vendored script renders `/openapi.json` into the
/// `<redoc>` element (it reads `spec-url` when it loads, so it comes after).
/// Nothing leaves the gateway's origin: no web fonts (system fonts instead of
/// ReDoc's Montserrat and Roboto), and the Content-Security-Policy keeps the
/// script from fetching anything elsewhere, such as the Redocly logo 2.x puts
/// in its menu from cdn.redoc.ly (scripts, styles and the search worker are
/// left alone: ReDoc injects styles and starts its worker from a blob).
const REDOC_HTML: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="img-src 'self' data:; font-src 'self' data:; connect-src 'self'">
<title>order-gateway API</title>
<style>body { margin: 0; padding: 0; }</style>
</head>
<body>
<noscript>This page needs JavaScript; the document itself is at <a href="/openapi.json">/openapi.json</a>.</noscript>
<redoc spec-url="/openapi.json"
  theme='{"typography": {"fontFamily": "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif", "headings": {"fontFamily": "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif"}, "code": {"fontFamily": "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace"}}}'></redoc>
<script src="/redoc/redoc.standalone.js"></script>
</body>
</html>
"#;

/// ReDoc's standalone bundle (npm `redoc`, MIT), vendored by
/// scripts/vendor-redoc.sh: version in assets/redoc/VERSION, sha256 in
/// assets/redoc/SHA256SUMS.
static REDOC_JS: &[u8] = include_bytes!("../../assets/redoc/redoc.standalone.js");

/// A ReDoc file by the path after `/redoc/` ("" for the page itself), with
/// its content type; None for any other path.
pub fn redoc_file(tail: &str) -> Option<(Bytes, &'static str)> {
    match tail {
        "" => Some((Bytes::from_static(REDOC_HTML.as_bytes()), "text/html; charset=utf-8")),
        "redoc.standalone.js" => Some((Bytes::from_static(REDOC_JS), "text/javascript; charset=utf-8")),
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

    /// The paths of the document as written (a `serde_json::Value` would sort them).
    fn paths_in_order(json: &[u8]) -> Vec<(String, serde_json::Value)> {
        struct Ordered(Vec<(String, serde_json::Value)>);
        impl<'de> serde::Deserialize<'de> for Ordered {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Pairs;
                impl<'de> serde::de::Visitor<'de> for Pairs {
                    type Value = Ordered;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("a map")
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                        let mut out = Vec::new();
                        while let Some(entry) = map.next_entry()? {
                            out.push(entry);
                        }
                        Ok(Ordered(out))
                    }
                }
                d.deserialize_map(Pairs)
            }
        }
        #[derive(serde::Deserialize)]
        struct Doc {
            paths: Ordered,
        }
        serde_json::from_slice::<Doc>(json).unwrap().paths.0
    }

    #[test]
    fn orders_come_first_and_admin_last() {
        let json = super::json();
        let doc: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let tags: Vec<&str> = doc["tags"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(tags, ["orders", "analytics", "operations", "admin"]);
        // Readers see a tag's operations in the order of `paths`: the order
        // routes first, and each tag's paths in one run, in the tags' order.
        let paths = paths_in_order(&json);
        assert_eq!(paths[0].0, "/v1/orders/{order_id}");
        let mut runs: Vec<&str> = paths
            .iter()
            .map(|(_, item)| item.as_object().unwrap().values().next().unwrap()["tags"][0].as_str().unwrap())
            .collect();
        runs.dedup();
        assert_eq!(runs, tags, "paths grouped by tag, in the tags' order");
    }

    #[test]
    fn live_updates_are_documented_as_event_streams() {
        let doc: serde_json::Value = serde_json::from_slice(&super::json()).unwrap();
        for p in ["/v1/orders/{order_id}/events", "/v1/customers/{customer_id}/orders/events"] {
            let op = &doc["paths"][p]["get"];
            assert_eq!(op["tags"][0], "orders", "{p}");
            assert!(
                op["responses"]["200"]["content"]["text/event-stream"].is_object(),
                "{p}: 200 is text/event-stream"
            );
            for status in ["400", "401", "403", "429", "503"] {
                let problem = &op["responses"][status]["content"]["application/problem+json"];
                assert!(problem.is_object(), "{p}: {status} is a problem");
            }
            assert!(op["responses"]["429"]["description"].as_str().unwrap().contains("too-many-streams"), "{p}");
            let text = op["description"].as_str().unwrap();
            for event in ["`order`", "`deleted`", "`degraded`", "`recovered`", "`lagged`", "`idle`", "`shutdown`"] {
                assert!(text.contains(event), "{p}: {event} is described");
            }
        }
        let order = &doc["paths"]["/v1/orders/{order_id}/events"]["get"];
        assert!(order["responses"]["404"].is_object());
        assert_eq!(order["parameters"][1]["name"], "Last-Event-ID");
        assert_eq!(order["parameters"][1]["in"], "header");
        assert!(doc["components"]["schemas"]["OrderDeleted"].is_object());
    }

    #[test]
    fn analytics_ranges_take_a_date_in_tz() {
        let doc: serde_json::Value = serde_json::from_slice(&super::json()).unwrap();
        for p in
            ["/v1/analytics/kpis", "/v1/analytics/timeseries", "/v1/analytics/top-skus", "/v1/analytics/status-funnel"]
        {
            let params = doc["paths"][p]["get"]["parameters"].as_array().unwrap();
            let param = |name: &str| params.iter().find(|x| x["name"] == name).unwrap_or_else(|| panic!("{p}: {name}"));
            let formats: Vec<&str> = param("from")["schema"]["anyOf"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["format"].as_str().unwrap())
                .collect();
            assert_eq!(formats, ["date-time", "date"], "{p}");
            assert!(param("to")["description"].as_str().unwrap().contains("start of that day in tz"), "{p}");
            assert!(param("tz")["description"].as_str().unwrap().contains("date in from and to"), "{p}");
        }
    }

    #[test]
    fn redoc_page_loads_only_from_the_gateway() {
        let (page, ct) = super::redoc_file("").expect("the page");
        assert_eq!(ct, "text/html; charset=utf-8");
        let page = std::str::from_utf8(&page).unwrap();
        assert!(page.contains(r#"<script src="/redoc/redoc.standalone.js">"#), "{page}");
        assert!(page.contains(r#"spec-url="/openapi.json""#), "{page}");
        assert!(!page.contains("http://") && !page.contains("https://"), "no URL elsewhere: {page}");
        assert!(!page.contains("fonts.g"), "no Google fonts");
        // The script finds <redoc> when it runs: it must come after it.
        assert!(page.find("<redoc ").unwrap() < page.find("<script").unwrap());
        let theme = page.split("theme='").nth(1).and_then(|t| t.split('\'').next()).unwrap();
        serde_json::from_str::<serde_json::Value>(theme).expect("ReDoc parses the theme attribute as JSON");

        let (js, ct) = super::redoc_file("redoc.standalone.js").expect("the script");
        assert_eq!(ct, "text/javascript; charset=utf-8");
        assert!(!js.is_empty());
        assert!(super::redoc_file("redoc.standalone.js.map").is_none());
        assert!(super::redoc_file("../openapi.json").is_none());
    }

    /// The bundle is the one scripts/vendor-redoc.sh pinned: an edit by hand
    /// (or a partial update) fails here rather than in a browser.
    #[test]
    fn redoc_bundle_matches_its_pinned_sha256() {
        use sha2::Digest;
        let pinned = include_str!("../../assets/redoc/SHA256SUMS");
        let hex: String = sha2::Sha256::digest(super::REDOC_JS).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(pinned.split_whitespace().next(), Some(hex.as_str()), "run scripts/vendor-redoc.sh");
        let version = include_str!("../../assets/redoc/VERSION").trim();
        let license = include_str!("../../assets/redoc/redoc.standalone.js.LICENSE.txt");
        assert!(license.contains(&format!("Version: \"{version}\"")), "VERSION names the vendored bundle");
    }

    #[test]
    fn swagger_ui_is_served_from_the_binary() {
        let (index, ct) = super::swagger_file("").expect("index.html");
        assert!(ct.starts_with("text/html"));
        assert!(!index.is_empty());
        assert!(super::swagger_file("swagger-ui.css").is_some());
    }
}
