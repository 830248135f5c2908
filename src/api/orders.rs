//! The operational order API: lookups by id, number and batch, and searches.
//! Reads go cache -> Elasticsearch -> ClickHouse (orders older than the hot
//! window), never older than what this replica has seen.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;

use super::params;
use super::search::{self, Filters};
use super::{json_bytes, ApiError, HttpResponse};
use crate::app::AppState;
use crate::cache::{CachedView, Filled, Lookup, Source};
use crate::http::context::RequestContext;

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
    let (mut entry, mut status) = resolve(state, id, ctx).await?;
    if let Some(min) = min_version {
        if entry.order_version() < min {
            (entry, status) = wait_for_version(state, id, min, ctx).await?;
        }
    }
    Ok(view_response(&entry, status, headers, pii))
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
    let id = match state.numbers.get(number) {
        Some(id) => id,
        // Boxed: the search and the ClickHouse fallback are large futures, and
        // a lookup's future is moved on every request, hits included.
        None => Box::pin(find_number(state, number.to_owned(), ctx)).await?,
    };
    let (entry, status) = resolve(state, &id, ctx).await?;
    Ok(view_response(&entry, status, headers, pii))
}

/// The id of an order number the cache does not know: Elasticsearch, then ClickHouse.
async fn find_number(state: &AppState, number: String, ctx: &RequestContext) -> Result<String, ApiError> {
    let body = serde_json::json!({ "size": 1, "query": { "term": { "order.order_number": number } } });
    let hits = state
        .backends
        .elasticsearch
        .search_orders(&state.config.elasticsearch.read_alias, "get_by_number", body, Some(&ctx.trace.child_header()))
        .await?;
    let id = match hits.into_iter().next() {
        Some(hit) => {
            let id = hit.view.order_id.clone();
            state.cache.fill(&id, Some(hit.view), Source::Elasticsearch);
            Some(id)
        }
        None => state.backends.clickhouse.find_by_number(&number).await?,
    };
    let id = id.ok_or_else(|| ApiError::NotFound(format!("no order with number {number}")))?;
    // Order numbers never change: the mapping can be kept as long as the cache keeps anything.
    state.numbers.insert(number, id.clone());
    Ok(id)
}

/// `POST /v1/orders:batchGet` with `{"ids": [...]}`: cache first, one
/// Elasticsearch request for the rest, then ClickHouse; results in request order.
pub async fn batch_get<B>(
    state: &AppState,
    req: hyper::Request<B>,
    ctx: &RequestContext,
    pii: bool,
) -> Result<HttpResponse, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        ids: Vec<String>,
    }
    params::query(req.uri().query(), &[])?;
    let max = state.config.api.max_batch_ids;
    let bytes = read_body(req, state.config.server.max_body_bytes).await?;
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

    let mut found: std::collections::HashMap<String, Arc<CachedView>> = std::collections::HashMap::new();
    let mut misses: Vec<&str> = Vec::new();
    let mut stale: std::collections::HashMap<String, Arc<CachedView>> = std::collections::HashMap::new();
    for id in &ids {
        match state.cache.lookup(id) {
            Lookup::Hit(e) => {
                count("hit");
                found.insert(id.clone(), e);
            }
            Lookup::NotFound => count("negative"),
            Lookup::Stale(e) => {
                count("stale");
                stale.insert(id.clone(), e);
                misses.push(id);
            }
            Lookup::Miss => {
                count("miss");
                misses.push(id);
            }
        }
    }
    misses.sort_unstable();
    misses.dedup();
    if !misses.is_empty() {
        let alias = &state.config.elasticsearch.read_alias;
        let fetched =
            match state.backends.elasticsearch.get_orders(alias, &misses, Some(&ctx.trace.child_header())).await {
                Ok(v) => Some(v),
                Err(e) if misses.iter().all(|m| stale.get(*m).is_some_and(|s| s.complete)) => {
                    tracing::warn!(error = %e, "batchGet: serving cached views after a backend failure");
                    None
                }
                Err(e) => return Err(e.into()),
            };
        match fetched {
            Some(views) => {
                let mut rest: Vec<&str> = misses.clone();
                for v in views {
                    rest.retain(|m| *m != v.order_id);
                    let id = v.order_id.clone();
                    if let Some(Filled::Ok(e)) = state.cache.fill(&id, Some(v), Source::Elasticsearch) {
                        found.insert(id, e);
                    }
                }
                if !rest.is_empty() {
                    let views = state.backends.clickhouse.get_orders(&rest).await?;
                    for v in views {
                        let id = v.order_id.clone();
                        rest.retain(|m| *m != id);
                        if let Some(Filled::Ok(e)) = state.cache.fill(&id, Some(v), Source::ClickHouse) {
                            found.insert(id, e);
                        }
                    }
                    for m in rest {
                        state.cache.fill(m, None, Source::ClickHouse);
                    }
                }
            }
            None => found.extend(stale),
        }
    }

    let mut out = BytesMut::with_capacity(found.values().map(|e| e.json.len() + 1).sum::<usize>() + 64);
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
                out.put_slice(e.body(pii));
            }
            None => missing.push(id.as_str()),
        }
    }
    out.put_slice(b"],\"missing\":");
    out.put_slice(&serde_json::to_vec(&missing).expect("strings serialise"));
    out.put_u8(b'}');
    Ok(json_bytes(StatusCode::OK, out.freeze()))
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
        .search_orders(&state.config.elasticsearch.read_alias, "search", body, Some(&ctx.trace.child_header()))
        .await?;
    let more = hits.len() > limit;
    hits.truncate(limit);
    let next = if more {
        hits.last()
            .and_then(|h| search::position_of(&h.sort))
            .map(|after| state.cursors.encode(&super::cursor::Position { after, query: query_hash, issued: now }))
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
                out.put_slice(e.body(pii))
            }
            _ if pii => out.put_slice(&serde_json::to_vec(&h.view).expect("views serialise")),
            _ => out.put_slice(&serde_json::to_vec(&h.view.without_pii()).expect("views serialise")),
        }
    }
    out.put_slice(b"],\"next_cursor\":");
    out.put_slice(&serde_json::to_vec(&next).expect("strings serialise"));
    out.put_u8(b'}');
    Ok(json_bytes(StatusCode::OK, out.freeze()))
}

// ---- the read-through path ------------------------------------------------

fn count(result: &'static str) {
    crate::telemetry::hot::cache_lookup(result);
}

/// The view of `id`: from the cache when current, else filled (coalesced)
/// from the backends; a cached view is served stale when they fail.
async fn resolve(state: &AppState, id: &str, ctx: &RequestContext) -> Result<(Arc<CachedView>, CacheStatus), ApiError> {
    let stale = match state.cache.lookup(id) {
        Lookup::Hit(e) => {
            count("hit");
            return Ok((e, CacheStatus::Hit));
        }
        Lookup::NotFound => {
            count("negative");
            return Err(not_found(id));
        }
        Lookup::Stale(e) => {
            count("stale");
            Some(e)
        }
        Lookup::Miss => {
            count("miss");
            None
        }
    };
    // The backend may trail the stream by its refresh interval: retry briefly.
    let deadline = Instant::now() + Duration::from_millis(1500);
    loop {
        match fill(state, id, ctx, true).await {
            Ok(Some(Filled::Ok(e))) => return Ok((e, CacheStatus::Miss)),
            Ok(None) => return Err(not_found(id)),
            Ok(Some(Filled::Behind { seen, got })) => {
                if let Lookup::Hit(e) = state.cache.lookup(id) {
                    return Ok((e, CacheStatus::Hit));
                }
                if Instant::now() >= deadline {
                    return Err(ApiError::Unavailable(format!(
                        "order {id}: the stream delivered version {seen}, Elasticsearch still has {got}; retry shortly"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                return match stale {
                    Some(s) if s.complete => {
                        tracing::warn!(error = %e, "serving a cached view after a backend failure");
                        Ok((s, CacheStatus::Stale))
                    }
                    _ => Err(e.into()),
                };
            }
        }
    }
}

/// One backend read for `id`, shared by every concurrent caller, merged into
/// the cache inside the shared flight: when the flight ends the cache already
/// holds its answer, so a caller that missed just before cannot start a second
/// backend read for the same order.
///
/// `reuse_hit`: a current entry found inside the flight is the answer (a
/// miss); read-your-writes passes false, as it asks the backend for a newer
/// version than the cache holds.
async fn fill(
    state: &AppState,
    id: &str,
    ctx: &RequestContext,
    reuse_hit: bool,
) -> Result<Option<Filled>, crate::backends::BackendError> {
    let es = state.backends.elasticsearch.clone();
    let ch = state.backends.clickhouse.clone();
    let cache = state.cache.clone();
    let alias = state.config.elasticsearch.read_alias.clone();
    let key = id.to_owned();
    let traceparent = ctx.trace.child_header();
    state
        .cache
        .fills
        .run(id, move || async move {
            // A flight that just ended may have filled the entry after this caller's lookup.
            if reuse_hit {
                if let Lookup::Hit(e) = cache.lookup(&key) {
                    return Ok(Some(Filled::Ok(e)));
                }
            }
            let mut views = es.get_orders(&alias, &[&key], Some(&traceparent)).await?;
            if let Some(v) = views.pop() {
                return Ok(cache.fill(&key, Some(v), Source::Elasticsearch));
            }
            // Not in the hot store: older orders live in ClickHouse only.
            Ok(match ch.get_orders(&[&key]).await?.pop() {
                Some(v) => cache.fill(&key, Some(v), Source::ClickHouse),
                None => cache.fill(&key, None, Source::Elasticsearch),
            })
        })
        .await
}

/// Read-your-writes: wait for the stream, then ask Elasticsearch directly.
async fn wait_for_version(
    state: &AppState,
    id: &str,
    min: u64,
    ctx: &RequestContext,
) -> Result<(Arc<CachedView>, CacheStatus), ApiError> {
    let deadline = tokio::time::Instant::now() + state.live().config.cache.read_your_writes_wait;
    loop {
        // Registered before the check, so an event applied in between still wakes us.
        let applied = state.cache.applied.notified();
        if let Lookup::Hit(e) = state.cache.lookup(id) {
            if e.order_version() >= min {
                return Ok((e, CacheStatus::Hit));
            }
        }
        if tokio::time::timeout_at(deadline, applied).await.is_err() {
            break;
        }
    }
    if let Ok(Some(Filled::Ok(e))) = fill(state, id, ctx, false).await {
        if e.order_version() >= min {
            return Ok((e, CacheStatus::Miss));
        }
        return Err(ApiError::Unavailable(format!(
            "order {id}: version {min} is not visible yet (current version {}); retry shortly",
            e.order_version()
        )));
    }
    Err(ApiError::Unavailable(format!("order {id}: version {min} is not visible yet; retry shortly")))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no order with id {id}"))
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
        json_bytes(StatusCode::OK, e.body(pii).clone())
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(http::HeaderName::from_static("x-cache"), HeaderValue::from_static(status.as_str()));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    if status == CacheStatus::Stale {
        h.insert(header::AGE, HeaderValue::from(e.age_secs()));
        h.insert(header::WARNING, HeaderValue::from_static("110 - \"Response is Stale\""));
    }
    resp
}

async fn read_body<B>(req: hyper::Request<B>, limit: usize) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limited = http_body_util::Limited::new(req.into_body(), limit);
    match limited.collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge(format!("the request body exceeds {limit} bytes (server.max_body_bytes)")))
        }
        Err(e) => Err(ApiError::bad_param("body", format!("cannot read the request body: {e}"))),
    }
}
