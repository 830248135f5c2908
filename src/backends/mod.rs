//! Clients of the four backends, built once from configuration and shared.
//!
//! Every call goes through [`timed`], which first asks the backend's circuit
//! breaker ([`breaker`]), then applies the backend's deadline, records its
//! latency and failures under one set of metric names, and turns the outcome
//! into a [`BackendError`] that says which backend failed and how. Readiness
//! pings and the pipeline tools (`ingest`, `setup`) use [`timed_unguarded`],
//! the same without the breaker.

pub mod analytics;
pub mod breaker;
pub mod clickhouse;
pub mod elasticsearch;
pub mod es_nodes;
pub mod kafka;
pub mod readiness;
pub mod schema_registry;
pub mod tls;

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use breaker::{Breaker, Breakers, ClickHouseBreakers};

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

/// A failed backend call: which backend, what kind of failure, and why.
/// `Display` is the whole story (cause chains, URLs) for logs; clients get
/// [`BackendError::reason`] and [`BackendError::public_detail`] only.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("{backend} did not answer within {timeout:?}")]
    Timeout { backend: Backend, timeout: Duration },
    #[error("{backend} failed: {detail}")]
    Failed { backend: Backend, detail: String },
    /// The backend refused the request itself (a parameter it does not
    /// accept): its health is not in question.
    #[error("{backend} refused the request: {detail}")]
    Refused { backend: Backend, detail: String },
    /// The call was not made: the backend's circuit is open (or half-open
    /// with its probes out).
    #[error("{backend} failed: {detail}")]
    CircuitOpen { backend: Backend, detail: String, retry_in: Option<Duration> },
}

impl BackendError {
    /// The backend at fault.
    pub fn backend(&self) -> Backend {
        match self {
            BackendError::Timeout { backend, .. }
            | BackendError::Failed { backend, .. }
            | BackendError::Refused { backend, .. }
            | BackendError::CircuitOpen { backend, .. } => *backend,
        }
    }

    /// A stable name of the kind of failure, for clients and metrics:
    /// `timeout`, `unavailable`, `refused` or `circuit_open`.
    pub fn reason(&self) -> &'static str {
        match self {
            BackendError::Timeout { .. } => "timeout",
            BackendError::Failed { .. } => "unavailable",
            BackendError::Refused { .. } => "refused",
            BackendError::CircuitOpen { .. } => "circuit_open",
        }
    }

    /// What a client may read: the backend and the kind of failure, never
    /// the backend's own error text (hosts, URLs, exception chains).
    pub fn public_detail(&self) -> String {
        let b = self.backend();
        match self {
            BackendError::Timeout { timeout, .. } => {
                format!("{b} did not answer within {} (timeout)", humantime::format_duration(*timeout))
            }
            BackendError::Failed { .. } => format!("{b} is unavailable (unavailable)"),
            BackendError::Refused { .. } => format!("{b} refused the request (refused)"),
            BackendError::CircuitOpen { retry_in: Some(r), .. } => format!(
                "{b} is unavailable after repeated failures; calls are paused for {:.1}s more (circuit_open)",
                r.as_secs_f64().max(0.1)
            ),
            BackendError::CircuitOpen { retry_in: None, .. } => {
                format!("{b} is recovering; calls are paused until its probe calls succeed (circuit_open)")
            }
        }
    }

    /// The same failure, saying where: `endpoint` is host:port (no path, no
    /// credentials). For pings and tools, whose errors an operator reads.
    pub fn at(self, endpoint: &str) -> Self {
        match self {
            BackendError::Failed { backend, detail } => {
                BackendError::Failed { backend, detail: format!("{endpoint}: {detail}") }
            }
            other => other,
        }
    }

    /// Builds a failure from any displayable error.
    pub fn failed(backend: Backend, err: impl std::fmt::Display) -> Self {
        BackendError::Failed { backend, detail: err.to_string() }
    }
}

/// An error the backend answered with because of the request itself (a
/// parameter it refuses): the backend is healthy, so its breaker counts the
/// call as a success. Otherwise anyone could open a breaker for everybody by
/// sending a few bad requests.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Deadline of `setup`'s administrative calls (index templates, index creation,
/// rollover, retention, ClickHouse DDL). Much longer than a read's: they run
/// once per deploy, where waiting costs nothing and failing stops a rollout;
/// creating or rolling over an index waits for shard allocation, and a busy
/// single node takes seconds for that. Above Elasticsearch's own 30 s master
/// and acknowledgement timeouts, so its answer, which says what it waited for,
/// arrives before our deadline does.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs one backend call through the backend's breaker, under its deadline,
/// and records it in metrics. While the circuit is open the call is not made
/// and the error says so.
pub async fn timed<T, E, F>(breaker: &Breaker, call: &'static str, timeout: Duration, fut: F) -> Result<T, BackendError>
where
    F: Future<Output = Result<T, E>>,
    E: Into<anyhow::Error>,
{
    let permit = breaker.admit(call)?;
    let result = measured(breaker.backend(), call, timeout, fut).await;
    match &result {
        Err(BackendError::Timeout { timeout, .. }) => {
            permit.record(Err(&format!("no answer within {}", humantime::format_duration(*timeout))))
        }
        Err(BackendError::Failed { detail, .. }) => permit.record(Err(detail)),
        // The backend answered, refusing this request: it is healthy.
        Ok(_) | Err(BackendError::Refused { .. }) | Err(BackendError::CircuitOpen { .. }) => permit.record(Ok(())),
    }
    result
}

/// [`timed`] without the breaker, for readiness pings. A ping must see the
/// backend as it is: blocked by an open circuit it would report "down" for as
/// long as the circuit stays open, whatever the backend does.
///
/// Nor does a ping's outcome feed the breaker. A ping checks a cheaper path
/// than the calls the breaker guards (cluster health, `SELECT version()`,
/// metadata), so its success does not show that those calls work again: an
/// overloaded Elasticsearch answers cluster health at once while its searches
/// time out, exactly the case the breaker is there for, and closing the
/// circuit on every /readyz would let the full load through again each time.
/// A half-open probe, a real call, is the evidence that decides. Counting a
/// ping's failure would make the circuit depend on how often an orchestrator
/// probes rather than on the calls themselves.
///
/// The pipeline tools use it too. `ingest` retries a failed batch with its own
/// backoff, so a breaker would add nothing but its `open_for` to the recovery
/// time; `setup` stops at its first failure. Both run in processes of their
/// own, so their calls never shared a breaker with the gateway's reads anyway.
pub async fn timed_unguarded<T, E, F>(
    backend: Backend,
    call: &'static str,
    timeout: Duration,
    fut: F,
) -> Result<T, BackendError>
where
    F: Future<Output = Result<T, E>>,
    E: Into<anyhow::Error>,
{
    measured(backend, call, timeout, fut).await
}

/// The call under its deadline, with its metrics. An error that is the
/// request's fault ([`Refused`]) becomes [`BackendError::Refused`].
async fn measured<T, E, F>(backend: Backend, call: &'static str, timeout: Duration, fut: F) -> Result<T, BackendError>
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
        Ok(Err(e)) => {
            let e = e.into();
            // `{:#}` keeps the cause chain ("error sending request: connection refused");
            // a refused certificate is said in words first.
            let detail = tls::annotate(format!("{e:#}"), e.as_ref());
            if e.downcast_ref::<Refused>().is_some() {
                Err(BackendError::Refused { backend, detail })
            } else {
                Err(BackendError::Failed { backend, detail })
            }
        }
        Err(_) => Err(BackendError::Timeout { backend, timeout }),
    };
    if let Err(e) = &result {
        // The metric's label values predate the public reasons; kept so
        // dashboards and alerts keep working.
        let reason = match e {
            BackendError::Timeout { .. } => "timeout",
            _ => "error",
        };
        metrics::counter!(names::BACKEND_CALL_ERRORS, "backend" => backend.name(), "call" => call, "reason" => reason)
            .increment(1);
    }
    result
}

/// host:port of a backend URL, for error messages: never its path or the
/// credentials a URL may carry.
pub(crate) fn endpoint(url: &url::Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => url.scheme().to_string(),
    }
}

/// What building the clients would check, without building them (no
/// connection is opened): the TLS files and keys of each https backend, and
/// the Kafka settings librdkafka must accept. For `check-config`.
pub fn check_config(cfg: &Config) -> anyhow::Result<()> {
    for (backend, url, tls) in [
        // Every Elasticsearch node has the same scheme.
        (Backend::Elasticsearch, &cfg.elasticsearch.nodes()[0], &cfg.elasticsearch.tls),
        (Backend::ClickHouse, &cfg.clickhouse.url, &cfg.clickhouse.tls),
        (Backend::SchemaRegistry, &cfg.schema_registry.url, &cfg.schema_registry.tls),
    ] {
        if url.scheme() == "https" {
            tls::client_config(backend, tls)?;
        }
    }
    kafka::base_config(&cfg.kafka).map(|_| ())
}

/// All backend clients, cheap to clone.
#[derive(Clone)]
pub struct Backends {
    pub elasticsearch: elasticsearch::EsClient,
    pub clickhouse: clickhouse::ChClient,
    pub kafka: kafka::KafkaClient,
    pub schema_registry: schema_registry::RegistryClient,
    /// One breaker per backend (per kind of call for ClickHouse), shared by
    /// every clone (and by the clients above, whose calls consult them).
    pub breakers: Breakers,
}

impl Backends {
    /// Builds every client; nothing is contacted yet, so a backend that is
    /// down at start-up shows in `/readyz` instead of stopping the process.
    pub fn from_config(cfg: &Config) -> anyhow::Result<Self> {
        let breakers = Breakers::new(&cfg.breaker);
        Ok(Backends {
            elasticsearch: elasticsearch::EsClient::new(&cfg.elasticsearch, breakers.elasticsearch.clone())?,
            clickhouse: clickhouse::ChClient::new(&cfg.clickhouse, breakers.clickhouse.clone())?,
            kafka: kafka::KafkaClient::new(&cfg.kafka)?,
            schema_registry: schema_registry::RegistryClient::new(&cfg.schema_registry)?,
            breakers,
        })
    }

    /// Probes one backend: Ok with a short description when it is usable.
    /// Never blocked by the backend's breaker, and never moves it (see
    /// [`timed_unguarded`] for why).
    pub async fn ping(&self, backend: Backend) -> Result<String, BackendError> {
        match backend {
            Backend::Elasticsearch => self.elasticsearch.ping().await,
            Backend::ClickHouse => self.clickhouse.ping().await,
            Backend::Kafka => self.kafka.ping().await,
            Backend::SchemaRegistry => self.schema_registry.ping().await,
        }
    }
}
