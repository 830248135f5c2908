//! Configuration: typed, layered, validated before anything starts.
//!
//! The structs below are the reference; `config/default.toml` carries a comment
//! on every key and is compiled in as the base layer, so a key that exists in
//! code but not in the file (or the other way round) fails the unit tests.

mod connect;
mod edge;
pub mod reload;
mod secret;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use url::Url;

pub use connect::{
    is_loopback_host, KafkaOptions, KafkaSecurity, SaslMechanism, TlsConfig, UrlList, KAFKA_OWNED_PROPERTIES,
};
pub use edge::*;
pub use secret::{is_secret_key, Secret};

/// The defaults, documented key by key.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");
/// Prefix of environment variables; `__` separates section and key.
pub const ENV_PREFIX: &str = "ORDER_GATEWAY__";

/// The whole configuration of the gateway.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub tracing: TracingConfig,
    pub readiness: ReadinessConfig,
    pub elasticsearch: ElasticsearchConfig,
    pub clickhouse: ClickHouseConfig,
    pub kafka: KafkaConfig,
    pub schema_registry: SchemaRegistryConfig,
    pub breaker: BreakerConfig,
    pub topics: TopicsConfig,
    pub ingest: IngestConfig,
    pub setup: SetupConfig,
    pub cdc: CdcConfig,
    pub cache: CacheConfig,
    pub stream: StreamConfig,
    pub api: ApiConfig,
    pub analytics: AnalyticsConfig,
    pub subscribe: SubscribeConfig,
    pub auth: AuthConfig,
    pub rate_limit: RateLimitConfig,
    pub admin: AdminConfig,
}

/// Spans exported over OTLP (HTTP, JSON encoding).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// The collector's base URL (`/v1/traces` is appended unless the path
    /// already ends with it); empty turns tracing off.
    pub otlp_endpoint: String,
    /// Headers sent with every export (`key=value,key2=value2`, as
    /// OTEL_EXPORTER_OTLP_HEADERS has them): a managed collector's credential.
    pub otlp_headers: Secret,
    pub otlp_headers_file: String,
    /// Of the requests that arrive without a sampling decision, the share
    /// traced (0 to 1). A caller's `traceparent` decides for its own trace.
    pub sample_ratio: f64,
    pub service_name: String,
    /// Finished spans waiting for export; past it they are dropped and counted.
    pub max_queue: usize,
    /// Spans per export request.
    pub batch_size: usize,
    #[serde(with = "humantime_serde")]
    pub export_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub export_timeout: Duration,
}

impl TracingConfig {
    /// `otlp_headers` as (name, value) pairs; an error names the bad pair by
    /// its position and header name, never its value.
    pub fn headers(&self) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, String> {
        let raw = self.otlp_headers.expose().trim();
        if raw.is_empty() {
            return Ok(Vec::new());
        }
        raw.split(',')
            .enumerate()
            .map(|(i, pair)| {
                let (name, value) = pair.split_once('=').ok_or_else(|| format!("pair {} is not key=value", i + 1))?;
                let name = http::HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| format!("pair {}: {:?} is not a header name", i + 1, name.trim()))?;
                let mut value = http::HeaderValue::from_str(value.trim())
                    .map_err(|_| format!("pair {} ({name}): the value is not a header value", i + 1))?;
                value.set_sensitive(true);
                Ok((name, value))
            })
            .collect()
    }
}

/// The HTTP listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// What the listeners speak: HTTP/1.1, h2c, or both on one port.
    pub protocols: Vec<Protocol>,
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub shutdown_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    pub max_connections: usize,
    pub max_in_flight: usize,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
}

/// A protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 (and 1.0).
    Http1,
    /// HTTP/2 over cleartext TCP with prior knowledge, as meshes speak it.
    H2c,
}

impl Protocol {
    /// The name the configuration gives it.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::H2c => "h2c",
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
    /// One access line per this many answered requests below 500 (1: every
    /// one); every 5xx is logged at warn whatever this says.
    pub access_sample: u32,
    /// Access lines waiting for the writer thread; past it they are dropped
    /// and counted (`log_lines_dropped_total`).
    pub access_queue: usize,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

/// What `/readyz` demands.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReadinessConfig {
    #[serde(with = "humantime_serde")]
    pub cache_for: Duration,
    pub require_elasticsearch: bool,
    pub require_clickhouse: bool,
    pub require_kafka: bool,
    pub require_schema_registry: bool,
}

/// The operational store.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    pub url: Url,
    /// Every node of the cluster, when there are several: calls go round
    /// them and move to another when one does not answer. Empty: `url` alone.
    pub urls: UrlList,
    pub read_alias: String,
    pub write_alias: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub username: String,
    pub password: Secret,
    pub password_file: String,
    /// `id:key` as Elasticsearch creates it, or its base64 `encoded` form.
    pub api_key: Secret,
    pub api_key_file: String,
    pub tls: TlsConfig,
}

impl ElasticsearchConfig {
    /// The nodes the client sends to: `urls`, or `url` alone when `urls` is empty.
    pub fn nodes(&self) -> &[Url] {
        if self.urls.0.is_empty() {
            std::slice::from_ref(&self.url)
        } else {
            &self.urls.0
        }
    }

    /// The key that sets [`ElasticsearchConfig::nodes`], for messages.
    pub fn nodes_key(&self) -> &'static str {
        if self.urls.0.is_empty() {
            "elasticsearch.url"
        } else {
            "elasticsearch.urls"
        }
    }
}

/// The analytical store.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseConfig {
    pub url: Url,
    pub database: String,
    pub user: String,
    pub password: Secret,
    pub password_file: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub tls: TlsConfig,
}

/// The event bus.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub brokers: String,
    pub client_id: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub security_protocol: KafkaSecurity,
    pub sasl_mechanism: SaslMechanism,
    pub sasl_username: String,
    pub sasl_password: Secret,
    pub sasl_password_file: String,
    pub tls: TlsConfig,
    pub options: KafkaOptions,
}

/// The Confluent-compatible schema registry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    pub url: Url,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub username: String,
    pub password: Secret,
    pub password_file: String,
    pub tls: TlsConfig,
    /// Accept a writer schema id registered under any subject, not only the
    /// topic's own `<topic>-value`.
    pub allow_any_subject: bool,
    /// How long an id the registry does not know, or knows under another
    /// subject only, is refused without asking it again.
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
}

/// The circuit breaker in front of each backend (one per backend, same settings).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    pub enabled: bool,
    pub failure_threshold: u32,
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
    pub half_open_probes: u32,
}

/// Kafka topics and their formats.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    pub orders: String,
    pub fulfillments: String,
    pub dead_letter: String,
    pub cdc: String,
    pub cdc_lines: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub orders_format: WireFormat,
    pub fulfillments_format: WireFormat,
}

/// How the messages of a topic are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WireFormat {
    Avro,
    Json,
}

/// The `ingest` projector.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    pub group_id: String,
    pub batch_size: usize,
    #[serde(with = "humantime_serde")]
    pub batch_linger: Duration,
    #[serde(with = "humantime_serde")]
    pub hot_window: Duration,
    pub max_message_bytes: usize,
    pub max_zero_byte_values: usize,
    pub metrics_listen: SocketAddr,
}

/// The `setup` command.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SetupConfig {
    #[serde(with = "humantime_serde")]
    pub rollover_max_age: Duration,
    pub rollover_max_docs: u64,
    pub index_shards: u32,
    pub index_replicas: u32,
}

/// Column mapping of the legacy `orders` and `order_lines` tables (Debezium
/// change events). Versions come from each change's log position (LSN).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CdcConfig {
    pub order_id: String,
    pub order_number: String,
    pub customer_id: String,
    pub status: String,
    pub currency: String,
    pub total: String,
    pub created_at: String,
    pub updated_at: String,
    pub default_channel: crate::model::Channel,
    /// How amount columns arrive: Debezium's decimal (major units) or integer minor units.
    pub amounts: CdcAmounts,
    /// Legacy status texts (as written, case-insensitive) to order statuses;
    /// a text not listed is read as a status name itself.
    #[serde(default)]
    pub statuses: std::collections::BTreeMap<String, crate::model::OrderStatus>,
    pub lines: CdcLineColumns,
}

/// Column mapping of the legacy `order_lines` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CdcLineColumns {
    pub order_id: String,
    pub line_id: String,
    pub sku: String,
    pub name: String,
    pub quantity: String,
    pub unit_price: String,
    pub status: String,
    #[serde(default)]
    pub statuses: std::collections::BTreeMap<String, crate::model::LineStatus>,
}

/// The encoding of the legacy tables' money columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CdcAmounts {
    /// `numeric` columns in major units as Debezium writes them: a string with
    /// `decimal.handling.mode = string`, scaled bytes with `precise` (the
    /// default mode; needs the converter's schemas). Two decimal places at most.
    Decimal,
    /// Integer columns holding minor units already.
    Minor,
}

/// The order cache.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    pub max_bytes: u64,
    pub eviction: EvictionPolicy,
    pub compression: CacheCompression,
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub degraded_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    pub seen_versions_max: u64,
    #[serde(with = "humantime_serde")]
    pub seen_versions_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub read_your_writes_wait: Duration,
}

/// Which orders the full cache gives up first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EvictionPolicy {
    /// Least recently used; every new order is admitted.
    Lru,
    /// Window TinyLFU: admits a new order only if it is likely to be used more
    /// often than the one it would evict.
    TinyLfu,
}

/// How a cache entry keeps its order's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheCompression {
    /// LZ4 blocks: about 0.57 of the JSON's bytes, decompressed on each hit
    /// (a few hundred nanoseconds for a 1.3 kB order).
    Lz4,
    /// The JSON as served: no work on a hit, the most memory per order.
    None,
}

/// The event stream that keeps the cache current.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub max_staleness: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_after: Duration,
    pub max_message_bytes: usize,
    pub max_zero_byte_values: usize,
}

/// Limits and keys of the operational API.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub max_batch_ids: usize,
    pub default_limit: usize,
    pub max_limit: usize,
    pub cursor_secret: Secret,
    pub cursor_secret_file: String,
    #[serde(with = "humantime_serde")]
    pub cursor_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub max_search_range: Duration,
}

/// The analytical API.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsConfig {
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub settled_cache_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub max_range: Duration,
    pub max_points: u64,
    pub cache_max_bytes: u64,
}

/// Live order updates (Server-Sent Events): `crate::live`, `api::events`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeConfig {
    pub max_streams: usize,
    pub max_streams_per_client: usize,
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    #[serde(with = "humantime_serde")]
    pub max_idle: Duration,
    pub queue: usize,
    #[serde(with = "humantime_serde")]
    pub max_lag: Duration,
    #[serde(with = "humantime_serde")]
    pub retry: Duration,
}

/// A configuration that could not be loaded; the message names the key, the
/// value and where it came from.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Loads defaults, then `file` if given, then `ORDER_GATEWAY__*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError(format!("config file {} does not exist or is not a file", path.display())));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
        let mut config: Config = figment.extract().map_err(|e| ConfigError(describe(&figment, e)))?;
        config.read_secret_files()?;
        config.validate()?;
        Ok(config)
    }

    /// The built-in defaults alone (no file, no environment): for tests and
    /// benchmarks that must not see the caller's variables.
    pub fn defaults() -> Config {
        Figment::from(Toml::string(DEFAULT_TOML)).extract().expect("config/default.toml is valid")
    }

    /// Fills each secret whose `*_file` key is set from that file.
    fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        use connect::read_secret_file as read;
        let es = &mut self.elasticsearch;
        read("elasticsearch.password", &mut es.password, &es.password_file)?;
        read("elasticsearch.api_key", &mut es.api_key, &es.api_key_file)?;
        read("clickhouse.password", &mut self.clickhouse.password, &self.clickhouse.password_file)?;
        read("schema_registry.password", &mut self.schema_registry.password, &self.schema_registry.password_file)?;
        read("kafka.sasl_password", &mut self.kafka.sasl_password, &self.kafka.sasl_password_file)?;
        read("api.cursor_secret", &mut self.api.cursor_secret, &self.api.cursor_secret_file)?;
        read("tracing.otlp_headers", &mut self.tracing.otlp_headers, &self.tracing.otlp_headers_file)?;
        read("auth.jwt.secret", &mut self.auth.jwt.secret, &self.auth.jwt.secret_file)
    }

    /// What is allowed but probably wrong outside a laptop; `check-config`
    /// prints these and `serve` logs them at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let es = &self.elasticsearch;
        let es_nodes = es.nodes().iter().map(|u| (es.nodes_key(), u));
        for (key, url) in es_nodes
            .chain([("clickhouse.url", &self.clickhouse.url), ("schema_registry.url", &self.schema_registry.url)])
        {
            if url.scheme() == "http" && url.host().is_some_and(|h| !is_loopback_host(&h)) {
                let url = connect::masked_url(url);
                out.push(format!(
                    "{key} = \"{url}\": plain http to another host sends queries, order data and credentials unencrypted; use https"
                ));
            }
        }
        if !self.kafka.security_protocol.uses_tls() {
            let remote = self.kafka.brokers.split(',').map(str::trim).filter(|b| !b.is_empty()).find(|b| {
                let host = b.rsplit_once(':').map_or(*b, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
                url::Host::parse(host).is_ok_and(|h| !is_loopback_host(&h))
            });
            if let Some(b) = remote {
                out.push(format!(
                    "kafka.security_protocol = \"{}\" with broker {b}: order events travel unencrypted; use ssl or sasl_ssl",
                    self.kafka.security_protocol.as_librdkafka()
                ));
            }
        }
        if !self.api.cursor_secret.is_set() && !self.server.listen.ip().is_loopback() {
            out.push(format!(
                "api.cursor_secret is not set and server.listen = {} is reachable from other hosts: each replica makes its own random secret, so a page cursor from one replica is refused by the others; set one secret for all replicas",
                self.server.listen
            ));
        }
        out
    }

    /// Rules serde cannot express.
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, value: &dyn std::fmt::Display, why: &str| {
            Err(ConfigError(format!("{key} = {value:?}: {why}", value = value.to_string())))
        };
        for (key, url) in [
            ("elasticsearch.url", &self.elasticsearch.url),
            ("clickhouse.url", &self.clickhouse.url),
            ("schema_registry.url", &self.schema_registry.url),
        ]
        .into_iter()
        .chain(self.elasticsearch.urls.0.iter().map(|u| ("elasticsearch.urls", u)))
        {
            if !matches!(url.scheme(), "http" | "https") {
                return bad(key, url, "must be an http or https URL");
            }
        }
        self.validate_es_nodes()?;
        self.validate_tracing()?;
        for (key, d) in [
            ("server.header_read_timeout", self.server.header_read_timeout),
            ("server.idle_timeout", self.server.idle_timeout),
            ("server.body_read_timeout", self.server.body_read_timeout),
            ("elasticsearch.timeout", self.elasticsearch.timeout),
            ("clickhouse.timeout", self.clickhouse.timeout),
            ("kafka.timeout", self.kafka.timeout),
            ("schema_registry.timeout", self.schema_registry.timeout),
            ("breaker.open_for", self.breaker.open_for),
            ("subscribe.heartbeat", self.subscribe.heartbeat),
            ("subscribe.max_idle", self.subscribe.max_idle),
            ("subscribe.max_lag", self.subscribe.max_lag),
        ] {
            if d.is_zero() {
                return bad(key, &humantime::format_duration(d), "must be greater than zero");
            }
        }
        for (key, v) in [
            ("subscribe.max_streams_per_client", self.subscribe.max_streams_per_client),
            ("subscribe.queue", self.subscribe.queue),
        ] {
            if v < 1 {
                return bad(key, &v, "must be at least 1");
            }
        }
        if self.breaker.failure_threshold < 1 {
            return bad("breaker.failure_threshold", &self.breaker.failure_threshold, "must be at least 1");
        }
        if self.breaker.half_open_probes < 1 {
            return bad("breaker.half_open_probes", &self.breaker.half_open_probes, "must be at least 1");
        }
        if self.topics.partitions < 1 {
            return bad("topics.partitions", &self.topics.partitions, "must be at least 1");
        }
        if self.topics.replication_factor < 1 {
            return bad("topics.replication_factor", &self.topics.replication_factor, "must be at least 1");
        }
        if self.ingest.batch_size == 0 {
            return bad("ingest.batch_size", &0, "must be at least 1");
        }
        if self.stream.reconnect_after < Duration::from_secs(1) {
            return bad(
                "stream.reconnect_after",
                &humantime::format_duration(self.stream.reconnect_after),
                "must be at least 1s",
            );
        }
        if self.ingest.hot_window.is_zero() {
            return bad("ingest.hot_window", &"0s", "must be greater than zero");
        }
        for (key, v) in [
            ("stream.max_message_bytes", self.stream.max_message_bytes),
            ("ingest.max_message_bytes", self.ingest.max_message_bytes),
        ] {
            if !(1024..=1 << 30).contains(&v) {
                return bad(key, &v, "must be between 1024 and 1073741824 (1 GiB)");
            }
        }
        for (key, name) in [
            ("topics.orders", &self.topics.orders),
            ("topics.fulfillments", &self.topics.fulfillments),
            ("topics.dead_letter", &self.topics.dead_letter),
            ("ingest.group_id", &self.ingest.group_id),
        ] {
            if name.is_empty() {
                return bad(key, name, "must not be empty");
            }
        }
        if self.cache.max_bytes < 1024 * 1024 {
            return bad("cache.max_bytes", &self.cache.max_bytes, "must be at least 1048576 (1 MiB)");
        }
        if self.analytics.cache_max_bytes < 1024 * 1024 {
            return bad(
                "analytics.cache_max_bytes",
                &self.analytics.cache_max_bytes,
                "must be at least 1048576 (1 MiB)",
            );
        }
        if self.api.default_limit == 0 || self.api.default_limit > self.api.max_limit {
            return bad("api.default_limit", &self.api.default_limit, "must be between 1 and api.max_limit");
        }
        if self.api.max_batch_ids == 0 || self.api.max_batch_ids > 1000 {
            return bad("api.max_batch_ids", &self.api.max_batch_ids, "must be between 1 and 1000");
        }
        let protocols = &self.server.protocols;
        if protocols.is_empty() || (1..protocols.len()).any(|i| protocols[..i].contains(&protocols[i])) {
            return bad(
                "server.protocols",
                &format!("[{}]", protocols.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")),
                "must list \"http1\", \"h2c\" or both, each once",
            );
        }
        if self.server.max_connections == 0 {
            return bad("server.max_connections", &0, "must be at least 1");
        }
        if self.kafka.brokers.trim().is_empty() {
            return bad("kafka.brokers", &self.kafka.brokers, "must name at least one broker");
        }
        if self.elasticsearch.read_alias.is_empty() {
            return bad("elasticsearch.read_alias", &"", "must not be empty");
        }
        for (key, v, min) in [
            ("server.max_in_flight", self.server.max_in_flight, 1),
            ("server.max_body_bytes", self.server.max_body_bytes, 1024),
            ("server.max_header_bytes", self.server.max_header_bytes, 1024),
        ] {
            if v < min {
                return bad(key, &v, &format!("must be at least {min}"));
            }
        }
        if !self.admin.listen.is_empty() && self.admin.listen.parse::<SocketAddr>().is_err() {
            return bad("admin.listen", &self.admin.listen, "must be \"\" or an address such as \"127.0.0.1:9091\"");
        }
        // Without authentication everyone holds every scope, `admin` and
        // `orders:pii` included: only a listener nobody else can reach may run so.
        if self.auth.mode == AuthMode::Disabled {
            let admin = self.admin.listen.parse::<SocketAddr>().ok();
            for (key, addr) in [("server.listen", Some(self.server.listen)), ("admin.listen", admin)] {
                if let Some(a) = addr.filter(|a| !a.ip().is_loopback()) {
                    return bad(
                        key,
                        &a,
                        "auth.mode = \"disabled\" grants every scope to every caller: it is allowed only on a loopback listener (127.0.0.1 or ::1)",
                    );
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, k) in self.auth.keys.iter().enumerate() {
            if k.name.is_empty() || !names.insert(k.name.as_str()) {
                return bad(&format!("auth.keys[{i}].name"), &k.name, "must be non-empty and unique");
            }
            if k.scopes.is_empty() {
                return bad(&format!("auth.keys[{i}].scopes"), &k.name, "must list at least one scope");
            }
        }
        self.validate_connections()?;
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return bad(
                "log.level",
                &self.log.level,
                "is not a valid level filter (e.g. \"info\" or \"info,order_gateway=debug\")",
            );
        }
        Ok(())
    }

    /// `elasticsearch.urls` against itself and `url`: one scheme for every
    /// node (the TLS and credentials settings are the same for all), no node
    /// twice, and no `url` that `urls` would silently replace.
    fn validate_tracing(&self) -> Result<(), ConfigError> {
        let t = &self.tracing;
        let bad = |key: &str, value: String, why: &str| Err(ConfigError(format!("tracing.{key} = {value:?}: {why}")));
        if !t.otlp_endpoint.is_empty() {
            match Url::parse(&t.otlp_endpoint) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                Ok(_) => return bad("otlp_endpoint", t.otlp_endpoint.clone(), "must be an http or https URL"),
                Err(e) => return bad("otlp_endpoint", t.otlp_endpoint.clone(), &format!("not a URL: {e}")),
            }
        }
        if let Err(why) = t.headers() {
            // The value is a credential: only where it is wrong is said.
            return Err(ConfigError(format!("tracing.otlp_headers: {why}")));
        }
        if !(0.0..=1.0).contains(&t.sample_ratio) {
            return bad("sample_ratio", t.sample_ratio.to_string(), "must be between 0 and 1");
        }
        if t.service_name.trim().is_empty() {
            return bad("service_name", t.service_name.clone(), "must not be empty");
        }
        if !(1..=1_000_000).contains(&t.max_queue) {
            return bad("max_queue", t.max_queue.to_string(), "must be between 1 and 1000000");
        }
        if !(1..=t.max_queue.min(10_000)).contains(&t.batch_size) {
            return bad("batch_size", t.batch_size.to_string(), "must be between 1 and max_queue (at most 10000)");
        }
        for (key, d) in [("export_interval", t.export_interval), ("export_timeout", t.export_timeout)] {
            if d.is_zero() {
                return bad(key, humantime::format_duration(d).to_string(), "must be greater than zero");
            }
        }
        Ok(())
    }

    fn validate_es_nodes(&self) -> Result<(), ConfigError> {
        let es = &self.elasticsearch;
        let urls = &es.urls.0;
        let Some(first) = urls.first() else { return Ok(()) };
        if let Some(other) = urls.iter().find(|u| u.scheme() != first.scheme()) {
            return Err(ConfigError(format!(
                "elasticsearch.urls = \"{}\": every node must use the same scheme (the tls settings are shared), but \"{}\" is {} and \"{}\" is {}",
                urls.iter().map(connect::masked_url).collect::<Vec<_>>().join(","),
                connect::masked_url(first),
                first.scheme(),
                connect::masked_url(other),
                other.scheme(),
            )));
        }
        for (i, u) in urls.iter().enumerate() {
            if urls[..i].contains(u) {
                return Err(ConfigError(format!("elasticsearch.urls names \"{}\" twice", connect::masked_url(u))));
            }
        }
        // `url` keeps its default when only `urls` is set; any other value not
        // among `urls` is a node the operator expects to be used and is not.
        if !urls.contains(&es.url) && es.url != Config::defaults().elasticsearch.url {
            return Err(ConfigError(format!(
                "elasticsearch.url = \"{}\" is not one of elasticsearch.urls: urls, when set, lists every node; set one of the two",
                connect::masked_url(&es.url)
            )));
        }
        Ok(())
    }

    /// TLS files, credentials and Kafka's security settings.
    fn validate_connections(&self) -> Result<(), ConfigError> {
        let bad = |msg: String| Err(ConfigError(msg));
        let es = &self.elasticsearch;
        for (section, key, tls, url) in [
            // Every node has the same scheme (see `validate_es_nodes`).
            ("elasticsearch", es.nodes_key(), &es.tls, es.nodes().first()),
            ("clickhouse", "clickhouse.url", &self.clickhouse.tls, Some(&self.clickhouse.url)),
            ("schema_registry", "schema_registry.url", &self.schema_registry.tls, Some(&self.schema_registry.url)),
            ("kafka", "", &self.kafka.tls, None),
        ] {
            tls.check(section)?;
            if let Some(url) = url.filter(|u| u.scheme() == "http" && tls.is_set()) {
                let url = connect::masked_url(url);
                return bad(format!("{section}.tls is set but {key} = \"{url}\" is plain http: use https"));
            }
        }
        if es.api_key.is_set() && !es.username.is_empty() {
            return bad(
                "elasticsearch.api_key and elasticsearch.username are both set: use one way to authenticate".into()
            );
        }
        if es.password.is_set() && es.username.is_empty() {
            return bad("elasticsearch.password is set but elasticsearch.username is empty".into());
        }
        if self.schema_registry.password.is_set() && self.schema_registry.username.is_empty() {
            return bad("schema_registry.password is set but schema_registry.username is empty".into());
        }
        let k = &self.kafka;
        let protocol = k.security_protocol.as_librdkafka();
        if k.security_protocol.uses_sasl() {
            if k.sasl_username.is_empty() || !k.sasl_password.is_set() {
                return bad(format!(
                    "kafka.security_protocol = \"{protocol}\" needs kafka.sasl_username and kafka.sasl_password (or kafka.sasl_password_file)"
                ));
            }
        } else if !k.sasl_username.is_empty() || k.sasl_password.is_set() {
            return bad(format!(
                "kafka.sasl_username or kafka.sasl_password is set but kafka.security_protocol = \"{protocol}\" does not use SASL: use sasl_ssl (or sasl_plaintext)"
            ));
        }
        if k.tls.is_set() && !k.security_protocol.uses_tls() {
            return bad(format!(
                "kafka.tls is set but kafka.security_protocol = \"{protocol}\" does not use TLS: use ssl or sasl_ssl"
            ));
        }
        k.options.check()
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_masked_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// One line per problem, naming the key, the value as given and where it came
/// from (the file, or the environment variable as the user spelled it).
fn describe(figment: &Figment, err: figment::Error) -> String {
    err.into_iter()
        .map(|e| {
            if e.path.is_empty() {
                return e.kind.to_string();
            }
            let key = e.path.join(".");
            let secret = is_secret_key(&key);
            let value = figment
                .find_value(&key)
                .ok()
                .map(|v| match v {
                    _ if secret => " = ********".to_string(),
                    figment::value::Value::String(_, s) => format!(" = {s:?}"),
                    other => format!(" = {}", toml::Value::try_from(&other).map(|t| t.to_string()).unwrap_or_default()),
                })
                .unwrap_or_default();
            let source = match &e.metadata {
                Some(m) if m.name.contains("environment") => {
                    format!(" (from environment variable {ENV_PREFIX}{})", e.path.join("__").to_ascii_uppercase())
                }
                Some(m) => match &m.source {
                    Some(src) => format!(" (from {src})"),
                    None => format!(" (from {})", m.name),
                },
                None => String::new(),
            };
            let why = match &e.kind {
                // serde's wording quotes the value it found: not for a secret.
                figment::error::Kind::InvalidType(_, expected) | figment::error::Kind::InvalidValue(_, expected)
                    if secret =>
                {
                    format!("invalid value: expected {expected}")
                }
                kind => kind.to_string(),
            };
            format!("{key}{value}{source}: {why}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests;
