//! Every metric the gateway emits: its name, labels and help text, in one place.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Access log lines dropped because the writer's queue (`log.access_queue`)
/// was full: stdout did not keep up.
pub const LOG_LINES_DROPPED: &str = "log_lines_dropped_total";
/// Spans by outcome: exported, failed (the receiver refused or could not be
/// reached; the batch is dropped), dropped (the export queue was full).
pub const TRACE_SPANS: &str = "trace_spans_total";
/// What `/readyz` last answered: 0 ready, 1 degraded, 2 not ready, 3 draining.
pub const READINESS_STATE: &str = "readiness_state";
/// Changes of that answer, by the state changed to.
pub const READINESS_CHANGES: &str = "readiness_changes_total";
/// Always 1, labelled with the version and source revision of the binary.
pub const BUILD_INFO: &str = "build_info";
/// Gauge: live-update streams open.
pub const LIVE_SUBSCRIBERS: &str = "live_subscribers";
/// Counter by `event`: Server-Sent Events written.
pub const LIVE_EVENTS: &str = "live_events_total";
/// The `event` label values of [`LIVE_EVENTS`].
pub const LIVE_EVENT_NAMES: &[&str] = &["order", "deleted", "degraded", "recovered", "lagged", "idle", "shutdown"];
/// Counter: order versions coalesced (replaced before being sent).
pub const LIVE_COALESCED: &str = "live_coalesced_total";
/// Counter: subscribers ended as lagged.
pub const LIVE_LAGGED: &str = "live_lagged_total";
/// Requests answered, by `route` (the route template, never the raw path),
/// `method` and `status`.
pub const HTTP_REQUESTS: &str = "http_requests_total";
/// Time from request head to response head, by `route` and `method`.
pub const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";
/// Connections currently open.
pub const HTTP_CONNECTIONS_OPEN: &str = "http_connections_open";
/// Backend health as seen by the last readiness probe (1 up, 0 down), by `backend`.
pub const BACKEND_UP: &str = "backend_up";
/// Duration of backend calls, by `backend` and `call`.
pub const BACKEND_CALL_DURATION: &str = "backend_call_duration_seconds";
/// Backend calls that failed, by `backend`, `call` and `reason` (timeout, error).
pub const BACKEND_CALL_ERRORS: &str = "backend_call_errors_total";
/// Circuit breaker position, by `backend` (and `circuit` for ClickHouse,
/// which has one per kind of call): 0 closed, 1 half-open, 2 open.
pub const BACKEND_CIRCUIT_STATE: &str = "backend_circuit_state";
/// Circuit breaker transitions, by `backend` (and `circuit` for ClickHouse)
/// and `to` (closed, half_open, open).
pub const BACKEND_CIRCUIT_TRANSITIONS: &str = "backend_circuit_transitions_total";
/// Calls failed by an open (or half-open and busy) circuit without reaching
/// the backend, by `backend` and `call`.
pub const BACKEND_CIRCUIT_REJECTED: &str = "backend_circuit_rejected_total";
/// Calls sent again to another node of the backend's cluster after the node
/// they went to failed below HTTP, by `backend` and `call`.
pub const BACKEND_FAILOVERS: &str = "backend_failovers_total";
/// Whether a node of the backend's cluster is in the round (1) or marked dead
/// after a failure (0), by `backend` and `node` (host:port); only for a
/// backend configured with several nodes.
pub const BACKEND_NODE_UP: &str = "backend_node_up";

/// Requests refused by authentication or authorisation, by `reason`
/// (invalid_credential, missing_credential, missing_scope).
pub const AUTH_FAILURES: &str = "auth_failures_total";
/// Identity headers ignored because the peer is not in `auth.mesh.trusted_peers`.
pub const AUTH_UNTRUSTED_IDENTITY: &str = "auth_untrusted_identity_headers_total";
/// Requests refused with 429, by `scope` (client, global).
pub const RATE_LIMITED: &str = "rate_limited_total";
/// Clients holding a rate-limit bucket of their own (after the last prune).
pub const RATE_LIMIT_CLIENTS: &str = "rate_limit_clients";
/// Checks of clients beyond `rate_limit.max_clients`, served by the shared overflow bucket.
pub const RATE_LIMIT_OVERFLOW: &str = "rate_limit_overflow_total";
/// Requests being handled now (those counted against `server.max_in_flight`).
pub const HTTP_IN_FLIGHT: &str = "http_requests_in_flight";
/// Requests shed with 503 because `server.max_in_flight` were being handled.
pub const HTTP_SHED: &str = "http_requests_shed_total";
/// Configuration reloads, by `outcome` (applied, refused).
pub const CONFIG_RELOADS: &str = "config_reloads_total";

/// Histogram buckets for latencies: fine below a millisecond, where cache hits live.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Histogram buckets for events per ingest batch (`ingest.batch_size` is
/// 2,000 by default; a batch closes early when the stream runs dry).
pub const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0];

/// Counters that alerts and dashboards take `increase` or `rate` of, made at
/// zero when the process starts (with every label value they can take): a
/// series that first appears at 1 shows no increase, so the first shed
/// request or refused credential would go unseen, and a panel of a series
/// that does not exist yet is empty rather than 0.
pub fn init_serve_series() {
    metrics::counter!(HTTP_SHED).absolute(0);
    metrics::gauge!(LIVE_SUBSCRIBERS).set(0.0);
    metrics::counter!(LIVE_COALESCED).absolute(0);
    metrics::counter!(LIVE_LAGGED).absolute(0);
    metrics::counter!(STREAM_RECONNECTS).absolute(0);
    for event in LIVE_EVENT_NAMES {
        metrics::counter!(LIVE_EVENTS, "event" => *event).absolute(0);
    }
    for scope in ["client", "global"] {
        metrics::counter!(RATE_LIMITED, "scope" => scope).absolute(0);
    }
    for reason in ["invalid_credential", "missing_credential", "missing_scope"] {
        metrics::counter!(AUTH_FAILURES, "reason" => reason).absolute(0);
    }
    for cause in ["size", "expired"] {
        metrics::counter!(CACHE_EVICTIONS, "cause" => cause).absolute(0);
    }
    init_common_series();
}

/// As [`init_serve_series`], for `ingest`: every dead-letter reason
/// (`reasons`) and every backend a batch can be retried for.
pub fn init_ingest_series(reasons: &[&'static str], backends: &[&'static str]) {
    for &reason in reasons {
        metrics::counter!(INGEST_DEAD_LETTERS, "reason" => reason).absolute(0);
    }
    for &backend in backends {
        metrics::counter!(INGEST_RETRIES, "backend" => backend).absolute(0);
    }
    init_common_series();
}

fn init_common_series() {
    for outcome in ["exported", "failed", "dropped"] {
        metrics::counter!(TRACE_SPANS, "outcome" => outcome).absolute(0);
    }
    for to in ["ready", "degraded", "not_ready", "draining"] {
        metrics::counter!(READINESS_CHANGES, "to" => to).absolute(0);
    }
}

/// Registers help texts so `/metrics` explains itself.
pub fn describe() {
    describe_gauge!(LIVE_SUBSCRIBERS, "Live-update streams (Server-Sent Events) open on this replica");
    describe_counter!(LIVE_EVENTS, "Server-Sent Events written to subscribers, by event name");
    describe_counter!(LIVE_COALESCED, "Order versions replaced by a newer one before a subscriber was sent them");
    describe_counter!(LIVE_LAGGED, "Subscribers that fell too far behind and were ended with `lagged`");
    describe_gauge!(BUILD_INFO, "Always 1; the labels name the binary's version and source revision");
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by route template, method and status");
    describe_histogram!(HTTP_REQUEST_DURATION, Unit::Seconds, "HTTP request latency by route template");
    describe_gauge!(HTTP_CONNECTIONS_OPEN, "HTTP connections currently open");
    describe_gauge!(BACKEND_UP, "1 when the last readiness probe reached the backend, else 0");
    describe_histogram!(BACKEND_CALL_DURATION, Unit::Seconds, "Backend call latency by backend and call");
    describe_counter!(BACKEND_CALL_ERRORS, "Failed backend calls by backend, call and reason");
    describe_counter!(AUTH_FAILURES, "Requests refused with 401 or 403, by reason");
    describe_counter!(AUTH_UNTRUSTED_IDENTITY, "Mesh identity headers ignored: the peer is not trusted");
    describe_counter!(RATE_LIMITED, "Requests refused with 429, by scope (client or global)");
    describe_gauge!(RATE_LIMIT_CLIENTS, "Clients with a rate-limit bucket of their own");
    describe_counter!(RATE_LIMIT_OVERFLOW, "Rate-limit checks of clients past max_clients (shared bucket)");
    describe_gauge!(HTTP_IN_FLIGHT, "Requests being handled (counted against server.max_in_flight)");
    describe_counter!(HTTP_SHED, "Requests shed with 503: server.max_in_flight reached");
    describe_counter!(LOG_LINES_DROPPED, "Access log lines dropped: stdout did not keep up (log.access_queue full)");
    describe_gauge!(READINESS_STATE, "What /readyz last answered: 0 ready, 1 degraded, 2 not ready, 3 draining");
    describe_counter!(READINESS_CHANGES, "Changes of the /readyz answer, by the state changed to");
    describe_counter!(
        TRACE_SPANS,
        "Spans by outcome: exported, failed (refused or unreachable receiver), dropped (tracing.max_queue full)"
    );
    describe_counter!(CONFIG_RELOADS, "Configuration reloads by outcome: applied or refused");
    describe_gauge!(
        BACKEND_CIRCUIT_STATE,
        "Circuit breaker position by backend (and circuit): 0 closed, 1 half-open, 2 open"
    );
    describe_counter!(
        BACKEND_CIRCUIT_TRANSITIONS,
        "Circuit breaker transitions by backend (and circuit) and new position (to)"
    );
    describe_counter!(BACKEND_CIRCUIT_REJECTED, "Backend calls failed at once by an open circuit, by backend and call");
    describe_counter!(
        BACKEND_FAILOVERS,
        "Backend calls sent again to another node after a node failed, by backend and call"
    );
    describe_gauge!(BACKEND_NODE_UP, "1 while a node of a multi-node backend is in the round, 0 while marked dead");
}

/// Messages ingest handled, by `topic` and `outcome` (written, duplicate, dead_lettered, skipped).
pub const INGEST_MESSAGES: &str = "ingest_messages_total";
/// Messages sent to the dead-letter topic, by `reason`.
pub const INGEST_DEAD_LETTERS: &str = "ingest_dead_letters_total";
/// Time to write one batch to both stores and commit it.
pub const INGEST_BATCH_DURATION: &str = "ingest_batch_duration_seconds";
/// Events per batch.
pub const INGEST_BATCH_EVENTS: &str = "ingest_batch_events";
/// Orders written to Elasticsearch per outcome (indexed, created, deleted, unchanged, conflict_retry, cold).
pub const INGEST_ES_DOCS: &str = "ingest_elasticsearch_docs_total";
/// Rows inserted into ClickHouse, by `table`.
pub const INGEST_CH_ROWS: &str = "ingest_clickhouse_rows_total";
/// Consumer lag in messages (high watermark minus committed position), by `topic` and `partition`.
pub const INGEST_LAG: &str = "ingest_consumer_lag_messages";
/// Retries of a batch after a backend failure, by `backend`.
pub const INGEST_RETRIES: &str = "ingest_batch_retries_total";

/// Registers help texts of the ingest metrics.
pub fn describe_ingest() {
    describe_counter!(INGEST_MESSAGES, "Messages handled by ingest, by topic and outcome");
    describe_counter!(INGEST_DEAD_LETTERS, "Messages sent to the dead-letter topic, by reason");
    describe_histogram!(INGEST_BATCH_DURATION, Unit::Seconds, "Time to write and commit one batch");
    describe_histogram!(INGEST_BATCH_EVENTS, "Events per ingest batch");
    describe_counter!(INGEST_ES_DOCS, "Order documents handled in Elasticsearch, by outcome");
    describe_counter!(INGEST_CH_ROWS, "Rows inserted into ClickHouse, by table");
    describe_gauge!(INGEST_LAG, "Consumer lag in messages (high watermark minus committed offset)");
    describe_counter!(INGEST_RETRIES, "Batch retries after a backend failure, by backend");
}

/// Order lookups answered from the cache, by `result` (hit, miss, stale, negative).
pub const CACHE_LOOKUPS: &str = "cache_lookups_total";
/// Requests that waited on another request's backend fill instead of sending their own.
pub const CACHE_COALESCED: &str = "cache_coalesced_waits_total";
/// Entries evicted, by `cause` (size, expired).
pub const CACHE_EVICTIONS: &str = "cache_evictions_total";
/// Entries in the cache.
pub const CACHE_ENTRIES: &str = "cache_entries";
/// Weighted size of the cache in bytes.
pub const CACHE_BYTES: &str = "cache_bytes";
/// Events applied to the cache, by `topic`, and dropped, by `reason`.
pub const STREAM_EVENTS: &str = "stream_events_total";
/// Messages between the stream's position and the high watermark, summed over partitions.
pub const STREAM_LAG_MESSAGES: &str = "stream_lag_messages";
/// Seconds since the stream was last caught up (0 while it is).
pub const STREAM_LAG_SECONDS: &str = "stream_lag_seconds";
/// 1 while the stream is healthy.
pub const STREAM_HEALTHY: &str = "stream_healthy";
/// The stream's Kafka client replaced after the brokers did not answer it
/// for `stream.reconnect_after`.
pub const STREAM_RECONNECTS: &str = "stream_reconnects_total";
/// From the event's Kafka timestamp to its application in the cache.
pub const STREAM_EVENT_TO_CACHE: &str = "stream_event_to_cache_seconds";

/// Analytics answers served from the answer cache or computed, by `result`.
pub const ANALYTICS_CACHE: &str = "analytics_cache_total";

/// Registers help texts of the cache and stream metrics.
pub fn describe_cache() {
    describe_counter!(CACHE_LOOKUPS, "Order lookups by cache result: hit, miss, stale, negative");
    describe_counter!(CACHE_COALESCED, "Requests that shared another request's backend fill");
    describe_counter!(CACHE_EVICTIONS, "Cache entries evicted, by cause");
    describe_gauge!(CACHE_ENTRIES, "Orders in the cache");
    describe_gauge!(CACHE_BYTES, "Weighted size of the cache in bytes");
    describe_counter!(STREAM_EVENTS, "Events applied to the cache by topic, or dropped by reason");
    describe_gauge!(STREAM_LAG_MESSAGES, "Unconsumed messages over all partitions of the order topics");
    describe_gauge!(STREAM_LAG_SECONDS, "Seconds since the stream was last caught up");
    describe_gauge!(STREAM_HEALTHY, "1 while the stream is connected and within max_staleness");
    describe_counter!(STREAM_RECONNECTS, "Stream Kafka clients replaced after stream.reconnect_after unanswered");
    describe_histogram!(STREAM_EVENT_TO_CACHE, Unit::Seconds, "Event timestamp to applied in the cache");
    describe_counter!(ANALYTICS_CACHE, "Analytics answers by result: hit (cached) or miss (computed)");
}
