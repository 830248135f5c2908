//! What every request handler shares.

use std::sync::atomic::AtomicBool;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::api::health::Readiness;
use crate::backends::Backends;
use crate::config::Config;

/// Shared state of a running gateway.
pub struct AppState {
    pub config: Config,
    pub backends: Backends,
    pub readiness: Readiness,
    /// Renders `/metrics`; None in tests that install no recorder.
    pub metrics: Option<PrometheusHandle>,
    /// Set once SIGTERM arrives; `/readyz` then answers 503 "draining".
    pub draining: AtomicBool,
}

impl AppState {
    /// Builds the state from a validated configuration.
    pub fn new(config: Config, metrics: Option<PrometheusHandle>) -> anyhow::Result<Self> {
        let backends = Backends::from_config(&config)?;
        let readiness = Readiness::new(config.readiness.clone());
        Ok(AppState { config, backends, readiness, metrics, draining: AtomicBool::new(false) })
    }
}
