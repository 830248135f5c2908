//! What every request handler shares.

use std::sync::atomic::AtomicBool;

use metrics_exporter_prometheus::PrometheusHandle;

use std::sync::Arc;

use crate::api::cursor::CursorCodec;
use crate::api::health::Readiness;
use crate::backends::Backends;
use crate::cache::{OrderCache, StreamState};
use crate::config::Config;
use crate::events::Decoder;

/// Shared state of a running gateway.
pub struct AppState {
    pub config: Config,
    pub backends: Backends,
    pub readiness: Readiness,
    /// Renders `/metrics`; None in tests that install no recorder.
    pub metrics: Option<PrometheusHandle>,
    /// Set once SIGTERM arrives; `/readyz` then answers 503 "draining".
    pub draining: AtomicBool,
    /// Order views, kept current by the stream.
    pub cache: Arc<OrderCache>,
    /// Order number -> order id (numbers never change).
    pub numbers: moka::sync::Cache<String, String>,
    /// Signs and checks search cursors.
    pub cursors: CursorCodec,
    /// Avro decoder with its schema cache, shared with the stream.
    pub decoder: Arc<Decoder>,
    /// Analytics answers, and their coalesced computation.
    pub analytics_cache: crate::api::analytics::AnalyticsCache,
    pub analytics_fills: crate::cache::SingleFlight<Result<bytes::Bytes, crate::backends::BackendError>>,
}

impl AppState {
    /// Builds the state from a validated configuration.
    pub fn new(config: Config, metrics: Option<PrometheusHandle>) -> anyhow::Result<Self> {
        let backends = Backends::from_config(&config)?;
        let readiness = Readiness::new(config.readiness.clone());
        let cache = Arc::new(OrderCache::new(&config.cache, Arc::new(StreamState::default())));
        let cursors = CursorCodec::new(config.api.cursor_secret.expose(), config.api.cursor_ttl);
        let decoder = Arc::new(Decoder::new(backends.schema_registry.clone()));
        let numbers = moka::sync::Cache::builder().max_capacity(1_000_000).time_to_idle(config.cache.max_ttl).build();
        let analytics_cache = crate::api::analytics::new_cache(config.analytics.settled_cache_ttl.max(config.analytics.cache_ttl));
        Ok(AppState {
            config,
            backends,
            readiness,
            metrics,
            draining: AtomicBool::new(false),
            cache,
            numbers,
            cursors,
            decoder,
            analytics_cache,
            analytics_fills: Default::default(),
        })
    }
}
