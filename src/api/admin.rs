//! The admin surface (scope `admin`): cache statistics and eviction, stream
//! positions, the effective configuration, and reload.

use std::sync::atomic::Ordering;

use http::StatusCode;
use serde_json::json;

use super::{json, params, ApiError, HttpResponse};
use crate::app::AppState;

/// `GET /admin/cache`.
pub fn cache(state: &AppState) -> HttpResponse {
    let (entries, weighted_bytes) = state.cache.stats();
    let (negative_entries, seen_versions) = state.cache.side_stats();
    let live = state.live();
    json(
        StatusCode::OK,
        &json!({
            "entries": entries,
            "weighted_bytes": weighted_bytes,
            "max_bytes": state.config.cache.max_bytes,
            "negative_entries": negative_entries,
            "seen_versions": seen_versions,
            "order_numbers": state.orders.numbers_cached(),
            "fills_in_flight": state.orders.fills_in_flight(),
            "analytics_answers": state.analytics.len(),
            "rate_limit_clients": live.edge.limits.clients(),
            "ttl": {
                "max": humantime::format_duration(state.config.cache.max_ttl).to_string(),
                "degraded": humantime::format_duration(live.config.cache.degraded_ttl).to_string(),
                "negative": humantime::format_duration(live.config.cache.negative_ttl).to_string(),
            },
        }),
    )
}

/// `DELETE /admin/cache/orders/{order_id}`: the next read goes to the backends.
pub fn evict(state: &AppState, raw_id: &str) -> Result<HttpResponse, ApiError> {
    let id = params::id("order_id", raw_id)?;
    let was_cached = state.cache.contains(id);
    state.cache.evict(id);
    Ok(json(StatusCode::OK, &json!({ "order_id": id, "was_cached": was_cached })))
}

/// `GET /admin/stream`: the event stream's health and per-partition positions.
pub fn stream(state: &AppState) -> HttpResponse {
    let s = &state.cache.stream;
    let partitions = s.partitions.lock().unwrap_or_else(|e| e.into_inner()).clone();
    json(
        StatusCode::OK,
        &json!({
            "enabled": s.enabled.load(Ordering::Relaxed),
            "assigned": s.assigned.load(Ordering::Relaxed),
            "healthy": s.is_healthy(),
            "lag_messages": s.lag_messages.load(Ordering::Relaxed),
            "lag_ms": s.lag_ms.load(Ordering::Relaxed),
            "last_error": s.last_error(),
            "partitions": partitions,
        }),
    )
}

/// `GET /admin/config`: the configuration in effect, secrets masked.
pub fn config(state: &AppState) -> HttpResponse {
    json(StatusCode::OK, &state.live().config)
}

/// `POST /admin/reload`: 200 with what changed, or 422 and nothing changed.
pub fn reload(state: &AppState) -> Result<HttpResponse, ApiError> {
    state.reload().map(|r| json(StatusCode::OK, &r)).map_err(ApiError::ConfigRefused)
}
