//! Clients of the four backends, built once from configuration and shared.
//!
//! Every call goes through [`timed`], which applies the backend's deadline,
//! records its latency and failures under one set of metric names, and turns
//! the outcome into a [`BackendError`] that says which backend failed and how.

pub mod analytics;
pub mod breaker;
pub mod clickhouse;
pub mod elasticsearch;
pub mod kafka;
pub mod schema_registry;

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Config;
use crate::telemetry::names;

/// The backends the gateway talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Elasticsearch,
    ClickHouse,
    Kafka,
    SchemaRegistry,
}

impl Backend {
    /// Every backend, in the order `/readyz` lists them.
    pub const ALL: [Backend; 4] =
        [Backend::Elasticsearch, Backend::ClickHouse, Backend::Kafka, Backend::SchemaRegistry];

    /// Stable name used in metrics, logs and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Elasticsearch => "elasticsearch",
            Backend::ClickHouse => "clickhouse",
            Backend::Kafka => "kafka",
            Backend::SchemaRegistry => "schema_registry",
        }
    }
}

impl Serialize for Backend {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed backend call: which backend, whether it timed out, and why.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("{backend} did not answer within {timeout:?}")]
    Timeout { backend: Backend, timeout: Duration },
    #[error("{backend} failed: {detail}")]
    Failed { backend: Backend, detail: String },
}

impl BackendError {
    /// The backend at fault.
    pub fn backend(&self) -> Backend {
        match self {
            BackendError::Timeout { backend, .. } | BackendError::Failed { backend, .. } => *backend,
        }
    }

    /// Builds a failure from any displayable error.
    pub fn failed(backend: Backend, err: impl std::fmt::Display) -> Self {
        BackendError::Failed { backend, detail: err.to_string() }
    }
}

/// Runs one backend call under its deadline and records it in metrics.
pub async fn timed<T, E, F>(
    backend: Backend,
    call: &'static str,
    timeout: Duration,
    fut: F,
) -> Result<T, BackendError>
where
    F: Future<Output = Result<T, E>>,
    E: Into<anyhow::Error>,
{
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout, fut).await;
    metrics::histogram!(names::BACKEND_CALL_DURATION, "backend" => backend.name(), "call" => call)
        .record(started.elapsed().as_secs_f64());
    let result = match outcome {
        Ok(Ok(v)) => Ok(v),
        // `{:#}` keeps the cause chain ("error sending request: connection refused").
        Ok(Err(e)) => Err(BackendError::failed(backend, format!("{:#}", e.into()))),
        Err(_) => Err(BackendError::Timeout { backend, timeout }),
    };
    if let Err(e) = &result {
        let reason = match e {
            BackendError::Timeout { .. } => "timeout",
            BackendError::Failed { .. } => "error",
        };
        metrics::counter!(names::BACKEND_CALL_ERRORS, "backend" => backend.name(), "call" => call, "reason" => reason)
            .increment(1);
    }
    result
}

/// All backend clients, cheap to clone.
#[derive(Clone)]
pub struct Backends {
    pub elasticsearch: elasticsearch::EsClient,
    pub clickhouse: clickhouse::ChClient,
    pub kafka: kafka::KafkaClient,
    pub schema_registry: schema_registry::RegistryClient,
}

impl Backends {
    /// Builds every client; nothing is contacted yet, so a backend that is
    /// down at start-up shows in `/readyz` instead of stopping the process.
    pub fn from_config(cfg: &Config) -> anyhow::Result<Self> {
        Ok(Backends {
            elasticsearch: elasticsearch::EsClient::new(&cfg.elasticsearch)?,
            clickhouse: clickhouse::ChClient::new(&cfg.clickhouse),
            kafka: kafka::KafkaClient::new(&cfg.kafka)?,
            schema_registry: schema_registry::RegistryClient::new(&cfg.schema_registry)?,
        })
    }

    /// Probes one backend: Ok with a short description when it is usable.
    pub async fn ping(&self, backend: Backend) -> Result<String, BackendError> {
        match backend {
            Backend::Elasticsearch => self.elasticsearch.ping().await,
            Backend::ClickHouse => self.clickhouse.ping().await,
            Backend::Kafka => self.kafka.ping().await,
            Backend::SchemaRegistry => self.schema_registry.ping().await,
        }
    }
}
