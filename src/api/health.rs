//! `/healthz` (the process is alive) and `/readyz` (it can serve: backends reachable).

use std::sync::atomic::Ordering;

use http::StatusCode;

use super::{json, json_bytes, HttpResponse};
use crate::app::AppState;
use crate::backends::readiness::ReadyStatus;
use crate::telemetry::names;

/// `GET /healthz`: answers while the process runs, whatever the backends do.
pub fn healthz() -> HttpResponse {
    json_bytes(StatusCode::OK, &b"{\"status\":\"ok\"}"[..])
}

/// `GET /readyz`: 200 when ready or degraded, 503 when a required backend is
/// down or the process is draining. Anyone sees the status of each check;
/// why a check failed (backend errors, versions, lag) only a caller with the
/// `admin` scope (`details`), as it names hosts and versions.
pub async fn readyz(state: &AppState, details: bool) -> HttpResponse {
    let mut report = (*state.readiness.report(&state.backends).await).clone();
    // The event stream: not required (reads go on without it), but while it
    // is unhealthy the cache leans on Elasticsearch and the gateway is degraded.
    let stream = &state.cache.stream;
    if stream.enabled.load(Ordering::Relaxed) {
        let healthy = stream.is_healthy();
        let lag = stream.lag_messages.load(Ordering::Relaxed);
        let lag_ms = stream.lag_ms.load(Ordering::Relaxed);
        report.checks.insert(
            "stream".into(),
            serde_json::json!({
                "status": if healthy { "up" } else { "down" },
                "required": false,
                "assigned": stream.assigned.load(Ordering::Relaxed),
                "lag_messages": lag,
                "lag_seconds": lag_ms as f64 / 1000.0,
                "detail": if healthy { "caught up within stream.max_staleness".to_string() }
                          else if lag < 0 {
                              stream.last_error().map_or_else(|| "brokers not answering".to_string(), |e| format!("brokers not answering: {e}"))
                          }
                          else { format!("{lag} message(s) behind for {:.1}s", lag_ms as f64 / 1000.0) },
            }),
        );
        if !healthy && report.status == ReadyStatus::Ready {
            report.status = ReadyStatus::Degraded;
        }
    }
    if state.draining.load(Ordering::Relaxed) {
        report.status = ReadyStatus::Draining;
    }
    record_state(report.status);
    let status = match report.status {
        ReadyStatus::Ready | ReadyStatus::Degraded => StatusCode::OK,
        ReadyStatus::NotReady | ReadyStatus::Draining => StatusCode::SERVICE_UNAVAILABLE,
    };
    if !details {
        for check in report.checks.values_mut() {
            if let Some(c) = check.as_object_mut() {
                c.retain(|k, _| k == "status" || k == "required");
            }
        }
    }
    let mut resp = json(status, &report);
    resp.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    resp
}

/// The state `/readyz` last answered, as `readiness_state` (0 ready, 1
/// degraded, 2 not ready, 3 draining), and each change of it in
/// `readiness_changes_total{to}`: a gauge scraped every 15 s misses a replica
/// that flips between two scrapes, the counter does not.
fn record_state(status: ReadyStatus) {
    use std::sync::atomic::AtomicU8;
    static LAST: AtomicU8 = AtomicU8::new(u8::MAX);
    let (code, name) = match status {
        ReadyStatus::Ready => (0, "ready"),
        ReadyStatus::Degraded => (1, "degraded"),
        ReadyStatus::NotReady => (2, "not_ready"),
        ReadyStatus::Draining => (3, "draining"),
    };
    metrics::gauge!(names::READINESS_STATE).set(f64::from(code));
    let last = LAST.swap(code, Ordering::Relaxed);
    if last != code && last != u8::MAX {
        metrics::counter!(names::READINESS_CHANGES, "to" => name).increment(1);
    }
}
