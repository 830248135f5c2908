//! Readiness: each backend probed at most once per `readiness.cache_for`,
//! and the overall status from which of them are required.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::Mutex;

use super::{Backend, Backends};
use crate::config::ReadinessConfig;
use crate::telemetry::names;

/// Overall readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    /// Every backend is up.
    Ready,
    /// A backend that is not required is down; the gateway still serves.
    Degraded,
    /// A required backend is down.
    NotReady,
    /// SIGTERM received: still serving for `server.shutdown_delay` so routers
    /// stop sending, then finishing in-flight requests.
    Draining,
}

/// One backend's line in the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub status: &'static str,
    pub required: bool,
    pub latency_ms: u64,
    pub detail: String,
}

/// The `/readyz` body.
#[derive(Debug, Clone, Serialize)]
pub struct ReadyReport {
    pub status: ReadyStatus,
    pub checks: serde_json::Map<String, serde_json::Value>,
}

/// Pure: the overall status from each backend's (required, up) pair.
pub fn overall(checks: &[(bool, bool)]) -> ReadyStatus {
    if checks.iter().any(|&(required, up)| required && !up) {
        ReadyStatus::NotReady
    } else if checks.iter().any(|&(_, up)| !up) {
        ReadyStatus::Degraded
    } else {
        ReadyStatus::Ready
    }
}

fn required(cfg: &ReadinessConfig, b: Backend) -> bool {
    match b {
        Backend::Elasticsearch => cfg.require_elasticsearch,
        Backend::ClickHouse => cfg.require_clickhouse,
        Backend::Kafka => cfg.require_kafka,
        Backend::SchemaRegistry => cfg.require_schema_registry,
    }
}

/// Probes the backends at most once per `cache_for`; concurrent callers share
/// one probe, so a busy prober never multiplies load on the backends.
pub struct Readiness {
    cfg: ReadinessConfig,
    last: Mutex<Option<(Instant, Arc<ReadyReport>)>>,
}

impl Readiness {
    /// A readiness tracker with nothing probed yet.
    pub fn new(cfg: ReadinessConfig) -> Self {
        Readiness { cfg, last: Mutex::new(None) }
    }

    /// The current report, probing when the cached one is older than `cache_for`.
    pub async fn report(&self, backends: &Backends) -> Arc<ReadyReport> {
        let mut last = self.last.lock().await;
        if let Some((at, report)) = last.as_ref() {
            if at.elapsed() < self.cfg.cache_for {
                return report.clone();
            }
        }
        let report = Arc::new(self.probe(backends).await);
        *last = Some((Instant::now(), report.clone()));
        report
    }

    async fn probe(&self, backends: &Backends) -> ReadyReport {
        let results = futures_util::future::join_all(Backend::ALL.iter().map(|&b| async move {
            let started = Instant::now();
            let result = backends.ping(b).await;
            (b, started.elapsed(), result)
        }))
        .await;
        let mut checks = serde_json::Map::new();
        let mut flags = Vec::with_capacity(results.len());
        for (b, took, result) in results {
            let req = required(&self.cfg, b);
            let up = result.is_ok();
            metrics::gauge!(names::BACKEND_UP, "backend" => b.name()).set(if up { 1.0 } else { 0.0 });
            if !up {
                tracing::warn!(backend = b.name(), error = %result.as_ref().err().map(|e| e.to_string()).unwrap_or_default(), "readiness probe failed");
            }
            flags.push((req, up));
            let check = Check {
                status: if up { "up" } else { "down" },
                required: req,
                latency_ms: took.as_millis().min(u64::MAX as u128) as u64,
                detail: match result {
                    Ok(d) => d,
                    Err(e) => e.to_string(),
                },
            };
            checks.insert(b.name().to_string(), serde_json::to_value(check).unwrap_or_default());
        }
        ReadyReport { status: overall(&flags), checks }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overall_status_rules() {
        assert_eq!(overall(&[(true, true), (false, true)]), ReadyStatus::Ready);
        assert_eq!(overall(&[(true, true), (false, false)]), ReadyStatus::Degraded);
        assert_eq!(overall(&[(true, false), (false, true)]), ReadyStatus::NotReady);
        assert_eq!(overall(&[(true, false), (false, false)]), ReadyStatus::NotReady);
        assert_eq!(overall(&[]), ReadyStatus::Ready);
    }
}
