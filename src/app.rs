//! What every request handler shares: the parts, built from configuration
//! and put together here, and the reload that swaps the hot ones. Nothing
//! here answers a request.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use crate::backends::readiness::Readiness;
use crate::backends::Backends;
use crate::cache::{Answers, BackendStore, OrderCache, ReadThrough, StreamState};
use crate::config::{reload, Config};
use crate::edge::Edge;
use crate::events::Decoder;
use crate::model::cursor::CursorCodec;

/// What a reload can change, swapped as one value: a request sees either
/// the old keys, tiers and TTLs or the new ones, never a mix.
pub struct Live {
    /// The configuration in effect: the start-up one with the hot keys of
    /// the last applied reload (keys that need a restart keep their old value).
    pub config: Config,
    pub edge: Edge,
}

/// What a reload did.
#[derive(Debug, Serialize)]
pub struct ReloadReport {
    /// Keys whose new value is now in effect (secrets are applied but not listed).
    pub applied: Vec<String>,
    /// Keys that changed in the source but take effect only after a restart.
    pub restart_required: Vec<String>,
}

/// Shared state of a running gateway.
pub struct AppState {
    /// The start-up configuration; hot keys are read from [`AppState::live`].
    pub config: Config,
    /// Keys, tiers, TTLs: swapped by a reload.
    pub live: ArcSwap<Live>,
    /// The file given with `--config`, re-read by a reload.
    pub config_path: Option<PathBuf>,
    /// Requests counted against `server.max_in_flight`.
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// One reload at a time (SIGHUP and the admin endpoint may race).
    reload_lock: std::sync::Mutex<()>,
    pub backends: Backends,
    pub readiness: Readiness,
    /// Renders `/metrics`; None in tests that install no recorder.
    pub metrics: Option<PrometheusHandle>,
    /// Set once SIGTERM arrives; `/readyz` then answers 503 "draining".
    pub draining: AtomicBool,
    /// Order views, kept current by the stream.
    pub cache: Arc<OrderCache>,
    /// The cache with the backends behind it: what order lookups call.
    pub orders: Arc<ReadThrough<BackendStore>>,
    /// The subscribers of live order updates, fed by the stream.
    pub hub: Arc<crate::live::Hub>,
    /// Signs and checks search cursors.
    pub cursors: CursorCodec,
    /// Avro decoder with its schema cache, shared with the stream.
    pub decoder: Arc<Decoder>,
    /// Analytics answers, and their coalesced computation.
    pub analytics: Answers,
}

impl AppState {
    /// Builds the state from a validated configuration.
    pub fn new(config: Config, metrics: Option<PrometheusHandle>) -> anyhow::Result<Self> {
        let edge = Edge::new(&config, None).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        let backends = Backends::from_config(&config)?;
        let readiness = Readiness::new(config.readiness.clone());
        let cache = Arc::new(OrderCache::new(&config.cache, Arc::new(StreamState::default())));
        let cursors = CursorCodec::new(config.api.cursor_secret.expose(), config.api.cursor_ttl);
        let decoder = Arc::new(Decoder::for_serve(&config, backends.schema_registry.clone()));
        let store = BackendStore {
            elasticsearch: backends.elasticsearch.clone(),
            clickhouse: backends.clickhouse.clone(),
            read_alias: config.elasticsearch.read_alias.clone(),
        };
        let orders = Arc::new(ReadThrough::new(cache.clone(), store, config.cache.max_ttl));
        let s = &config.subscribe;
        let hub = crate::live::Hub::new(crate::live::Limits {
            // Each HTTP/1.1 stream holds a connection that is never shed:
            // streams alone must not take every slot from lookups and probes.
            max_streams: s.max_streams.min(config.server.max_connections / 4 * 3),
            max_streams_per_client: s.max_streams_per_client,
            queue: s.queue,
            max_lag: s.max_lag,
            heartbeat: s.heartbeat,
        });
        let analytics = Answers::new(
            config.analytics.settled_cache_ttl.max(config.analytics.cache_ttl),
            config.analytics.cache_max_bytes,
        );
        Ok(AppState {
            live: ArcSwap::from_pointee(Live { config: config.clone(), edge }),
            config_path: None,
            in_flight: Arc::new(tokio::sync::Semaphore::new(config.server.max_in_flight)),
            reload_lock: std::sync::Mutex::new(()),
            config,
            backends,
            readiness,
            metrics,
            draining: AtomicBool::new(false),
            cache,
            orders,
            hub,
            cursors,
            decoder,
            analytics,
        })
    }
}

impl AppState {
    /// Keys, tiers and TTLs in effect now.
    pub fn live(&self) -> arc_swap::Guard<Arc<Live>> {
        self.live.load()
    }

    /// Re-reads the configuration (defaults, `--config` file, environment) and
    /// applies its hot keys atomically. An invalid configuration changes
    /// nothing; the error says what is wrong.
    pub fn reload(&self) -> Result<ReloadReport, String> {
        let _one_at_a_time = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let outcome = self.try_reload();
        let label = if outcome.is_ok() { "applied" } else { "refused" };
        metrics::counter!(crate::telemetry::names::CONFIG_RELOADS, "outcome" => label).increment(1);
        match &outcome {
            Ok(r) => {
                tracing::info!(applied = ?r.applied, restart_required = ?r.restart_required, "configuration reloaded")
            }
            Err(e) => {
                tracing::warn!(error = %e, "configuration reload refused; the previous configuration stays in effect")
            }
        }
        outcome
    }

    fn try_reload(&self) -> Result<ReloadReport, String> {
        let source = Config::load(self.config_path.as_deref()).map_err(|e| e.to_string())?;
        let current = self.live.load_full();
        let next = reload::with_hot_keys(&current.config, &source);
        let (applied, restart_required) = reload::changes(&current.config, &source);
        let edge = Edge::new(&next, Some(&current.edge)).map_err(|e| format!("invalid configuration: {e}"))?;
        crate::telemetry::set_log_level(&next.log.level)?;
        crate::telemetry::set_access_sample(next.log.access_sample);
        self.cache.set_ttls(next.cache.degraded_ttl, next.cache.negative_ttl);
        self.live.store(Arc::new(Live { config: next, edge }));
        Ok(ReloadReport { applied, restart_required })
    }
}
