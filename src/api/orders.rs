//! The operational order API: lookups by id, number and batch, and searches.
//! Each handler parses, calls the read-through (`cache::read_through`: cache,
//! then Elasticsearch, then ClickHouse, never older than what this replica
//! has seen) or the search, and renders.

use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;

use super::params;
use super::search::{self, Filters};
use super::{json_bytes, ApiError, HttpResponse};
use crate::app::AppState;
use crate::backends::Backend;
use crate::cache::{CachedView, Lookup, Outcome, Reason};
use crate::telemetry::context::RequestContext;

/// `X-Cache`, made at compile time (a name built from a `&str` is parsed per request).
pub(crate) const X_CACHE: http::HeaderName = http::HeaderName::from_static("x-cache");

/// How a view was answered, for `X-Cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
    Stale,
}

impl CacheStatus {
    fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Stale => "STALE",
        }
    }
}

/// `GET /v1/orders/{order_id}`.
pub async fn get_order(
    state: &AppState,
    raw_id: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    ctx: &RequestContext,
    pii: bool,
) -> Result<HttpResponse, ApiError> {
    let id = params::id("order_id", raw_id)?;
    let q = params::query(query, &["min_version"])?;
    let min_version = q.get("min_version").map(|v| params::int_in("min_version", v, 1, i64::MAX as u64)).transpose()?;
    let outcome = match min_version {
        Some(min) => {
            let wait = state.live().config.cache.read_your_writes_wait;
            // Boxed: its wait and second fill would make every lookup's
            // future (moved on each request, hits included) larger.
            Box::pin(state.orders.get_at_least(id, min, wait, &ctx.trace)).await
        }
        None => state.orders.get(id, &ctx.trace).await,
    };
    render(outcome, id, "id", headers, pii)
}

/// `GET /v1/orders/by-number/{order_number}`.
pub async fn get_by_number(
    state: &AppState,
    raw_number: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    ctx: &RequestContext,
    pii: bool,
) -> Result<HttpResponse, ApiError> {
    let number = params::id("order_number", raw_number)?;
    params::query(query, &[])?;
    let outcome = state.orders.get_by_number(number, &ctx.trace).await;
    render(outcome, number, "number", headers, pii)
}

/// A lookup's outcome as HTTP: the view, or the problem naming why there is none.
fn render(
    outcome: Outcome,
    key: &str,
    key_name: &str,
    headers: &HeaderMap,
    pii: bool,
) -> Result<HttpResponse, ApiError> {
    let (entry, status) = served_view(outcome, key, key_name)?;
    Ok(view_response(&entry, status, headers, pii))
}

/// The view a lookup's outcome serves and how it was answered, or the
/// problem naming why there is none (also the first view of a live stream).
pub(super) fn served_view(
    outcome: Outcome,
    key: &str,
    key_name: &str,
) -> Result<(std::sync::Arc<CachedView>, CacheStatus), ApiError> {
    if let Some(why) = outcome.view().and_then(|e| e.withheld) {
        return Err(ApiError::NotFound(format!("the order with {key_name} {key} {why}")));
    }
    Ok(match outcome {
        Outcome::Hit(entry) => (entry, CacheStatus::Hit),
        Outcome::Miss(entry) => (entry, CacheStatus::Miss),
        Outcome::Stale(entry) => (entry, CacheStatus::Stale),
        Outcome::NotFound => return Err(ApiError::NotFound(format!("no order with {key_name} {key}"))),
        Outcome::Unavailable { backend, reason } => {
            return Err(match reason {
                Reason::Failed(e) => ApiError::Backend(e),
                Reason::Behind { seen, got } => ApiError::Unavailable(format!(
                    "order {key}: the stream delivered version {seen}, {} still has {got}; retry shortly",
                    backend_title(backend)
                )),
                Reason::NotYetVisible { min, current: Some(current) } => ApiError::Unavailable(format!(
                    "order {key}: version {min} is not visible yet (current version {current}); retry shortly"
                )),
                Reason::NotYetVisible { min, current: None } => {
                    ApiError::Unavailable(format!("order {key}: version {min} is not visible yet; retry shortly"))
                }
            })
        }
    })
}

fn backend_title(b: Backend) -> &'static str {
    match b {
        Backend::Elasticsearch => "Elasticsearch",
        Backend::ClickHouse => "ClickHouse",
        Backend::Kafka => "Kafka",
        Backend::SchemaRegistry => "the schema registry",
    }
}

/// `POST /v1/orders:batchGet` with `{"ids": [...]}`: cache first, one
/// Elasticsearch request for the rest, then ClickHouse; results in request order.
///
/// The body arrives read in full: the HTTP layer bounds it by size and time
/// (`server.max_body_bytes`, `server.body_read_timeout`).
pub async fn batch_get(
    state: &AppState,
    req: &hyper::Request<http_body_util::Full<Bytes>>,
    ctx: &RequestContext,
    pii: bool,
) -> Result<HttpResponse, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        ids: Vec<String>,
    }
    params::query(req.uri().query(), &[])?;
    let max = state.config.api.max_batch_ids;
    // A clone of a whole body shares its bytes.
    let bytes = match req.body().clone().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let body: Body = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_param("body", format!("expected {{\"ids\": [\"...\"]}}: {e}")))?;
    if body.ids.is_empty() || body.ids.len() > max {
        return Err(ApiError::bad_param(
            "ids",
            format!("ids must hold between 1 and {max} ids, got {}", body.ids.len()),
        ));
    }
    let mut ids = Vec::with_capacity(body.ids.len());
    for (i, raw) in body.ids.iter().enumerate() {
        ids.push(params::id(&format!("ids[{i}]"), raw)?.to_owned());
    }

    let distinct: Vec<&str> = ids.iter().map(String::as_str).collect();
    let found = state.orders.get_many(&distinct, &ctx.trace).await?;

    let mut out = BytesMut::with_capacity(found.values().map(|e| e.json_len() + 1).sum::<usize>() + 64);
    out.put_slice(b"{\"orders\":[");
    let mut missing = Vec::new();
    let mut first = true;
    for id in &ids {
        match found.get(id) {
            Some(e) => {
                if !first {
                    out.put_u8(b',');
                }
                first = false;
                e.write_body(pii, &mut out);
            }
            None => missing.push(id.as_str()),
        }
    }
    out.put_slice(b"],\"missing\":");
    out.put_slice(&serde_json::to_vec(&missing).expect("strings serialise"));
    out.put_u8(b'}');
    Ok(personal(json_bytes(StatusCode::OK, out.freeze())))
}

/// `GET /v1/orders?customer_id=&status=&channel=&from=&to=&q=&limit=&cursor=`.
pub async fn search(
    state: &AppState,
    query: Option<&str>,
    ctx: &RequestContext,
    pii: bool,
) -> Result<HttpResponse, ApiError> {
    let q = params::query(query, &["customer_id", "status", "channel", "from", "to", "q", "limit", "cursor"])?;
    let mut f = Filters {
        customer_id: q.get("customer_id").map(|v| params::id("customer_id", v).map(str::to_owned)).transpose()?,
        status: q.get("status").map(|v| params::one_of("status", v)).transpose()?,
        channel: q.get("channel").map(|v| params::one_of("channel", v)).transpose()?,
        from: q.get("from").map(|v| params::time("from", v)).transpose()?,
        to: q.get("to").map(|v| params::time("to", v)).transpose()?,
        q: None,
        pii,
    };
    if let Some(text) = q.get("q") {
        let text = text.trim();
        if text.is_empty() || text.chars().count() > 200 {
            return Err(ApiError::bad_param("q", "q must hold 1 to 200 characters"));
        }
        f.q = Some(text.to_owned());
    }
    if let (Some(from), Some(to)) = (f.from, f.to) {
        if from >= to {
            return Err(ApiError::bad_param("from", format!("from ({from}) must be before to ({to})")));
        }
        let max = state.config.api.max_search_range;
        if (to.millis() - from.millis()) as u128 > max.as_millis() {
            return Err(ApiError::bad_param(
                "to",
                format!("the range from..to may span at most {}", humantime::format_duration(max)),
            ));
        }
    }
    run_search(state, f, &q, ctx, pii).await
}

/// `GET /v1/customers/{customer_id}/orders?limit=&cursor=`, newest first.
pub async fn customer_orders(
    state: &AppState,
    raw_customer: &str,
    query: Option<&str>,
    ctx: &RequestContext,
    pii: bool,
) -> Result<HttpResponse, ApiError> {
    let customer_id = params::id("customer_id", raw_customer)?;
    let q = params::query(query, &["limit", "cursor"])?;
    run_search(state, Filters { customer_id: Some(customer_id.to_owned()), pii, ..Default::default() }, &q, ctx, pii)
        .await
}

async fn run_search(
    state: &AppState,
    f: Filters,
    q: &std::collections::BTreeMap<String, String>,
    ctx: &RequestContext,
    pii: bool,
) -> Result<HttpResponse, ApiError> {
    let api = &state.config.api;
    let limit = match q.get("limit") {
        Some(v) => params::int_in("limit", v, 1, api.max_limit as u64)? as usize,
        None => api.default_limit,
    };
    let query_hash = f.hash();
    let now = crate::model::Timestamp::now().millis() / 1000;
    let after = match q.get("cursor") {
        Some(c) => Some(
            state.cursors.decode(c, query_hash, now).map_err(|e| ApiError::bad_param("cursor", e.to_string()))?.after,
        ),
        None => None,
    };
    let body = search::query(&f, limit, after.as_ref());
    let mut hits = state
        .backends
        .elasticsearch
        .search_orders(&state.config.elasticsearch.read_alias, "search", body, Some(&ctx.trace))
        .await?;
    let more = hits.len() > limit;
    hits.truncate(limit);
    let next = if more {
        hits.last().and_then(|h| search::position_of(&h.sort)).map(|after| {
            state.cursors.encode(&crate::model::cursor::Position { after, query: query_hash, issued: now })
        })
    } else {
        None
    };
    // A cached view newer than the hit replaces it: the index may lag the stream.
    let mut out = BytesMut::with_capacity(hits.len() * 1500 + 64);
    out.put_slice(b"{\"orders\":[");
    for (i, h) in hits.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        match state.cache.lookup(&h.view.order_id) {
            Lookup::Hit(e) | Lookup::Stale(e) if e.complete && e.versions.dominates(&h.view) => {
                e.write_body(pii, &mut out)
            }
            _ if pii => out.put_slice(&serde_json::to_vec(&h.view).expect("views serialise")),
            _ => out.put_slice(&serde_json::to_vec(&h.view.without_pii()).expect("views serialise")),
        }
    }
    out.put_slice(b"],\"next_cursor\":");
    out.put_slice(&serde_json::to_vec(&next).expect("strings serialise"));
    out.put_u8(b'}');
    Ok(personal(json_bytes(StatusCode::OK, out.freeze())))
}

/// Order answers depend on who asks: the credential decides whether they
/// hold personal data.
const VARY_CREDENTIAL: &str = "authorization, x-api-key";

/// Headers of an answer that lists orders (batch, search): personal data for
/// PII readers, so no cache may keep it, and it varies by credential.
fn personal(mut resp: HttpResponse) -> HttpResponse {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    h.insert(header::VARY, HeaderValue::from_static(VARY_CREDENTIAL));
    resp
}

/// The cached bytes with ETag, X-Cache and (when stale) Age; 304 when the
/// client's `If-None-Match` matches.
fn view_response(e: &CachedView, status: CacheStatus, req_headers: &HeaderMap, pii: bool) -> HttpResponse {
    let etag = e.etag_for(pii);
    let tag = etag.to_str().expect("etags are ASCII");
    let not_modified = req_headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == tag
        });
    let mut resp = if not_modified {
        let mut r = http::Response::new(http_body_util::Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        json_bytes(StatusCode::OK, e.body(pii))
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(X_CACHE, HeaderValue::from_static(status.as_str()));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    h.insert(header::VARY, HeaderValue::from_static(VARY_CREDENTIAL));
    if status == CacheStatus::Stale {
        h.insert(header::AGE, HeaderValue::from(e.age_secs()));
        h.insert(header::WARNING, HeaderValue::from_static("110 - \"Response is Stale\""));
    }
    resp
}
