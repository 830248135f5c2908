//! Logs and metrics. Metric names live in [`names`] and nowhere else.

pub mod context;
pub mod hot;
pub mod names;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

use tracing_subscriber::{fmt, prelude::*, reload, EnvFilter, Registry};

use crate::config::{LogConfig, LogFormat};

/// Installs the global tracing subscriber. Logs go to stdout, one JSON object a
/// line by default; they never carry request bodies, order contents or secrets.
pub fn init_logging(cfg: &LogConfig) {
    let filter = EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Behind a reload layer, so a configuration reload can change the level.
    let (filter, handle) = reload::Layer::new(filter);
    let _ = LOG_LEVEL.set(handle);
    let registry = tracing_subscriber::registry().with(filter);
    match cfg.format {
        LogFormat::Json => registry
            .with(
                fmt::layer().json().flatten_event(true).with_current_span(true).with_span_list(false).with_target(true),
            )
            .init(),
        LogFormat::Text => registry.with(fmt::layer().with_target(false)).init(),
    }
}

static LOG_LEVEL: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Switches the log level filter of the running process (a no-op before
/// `init_logging`, as in unit tests).
pub fn set_log_level(level: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(level).map_err(|e| format!("log.level = {level:?}: {e}"))?;
    match LOG_LEVEL.get() {
        Some(h) => h.reload(filter).map_err(|e| format!("cannot switch the log level: {e}")),
        None => Ok(()),
    }
}

/// Installs the Prometheus recorder and returns the handle `/metrics` renders.
pub fn init_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), names::LATENCY_BUCKETS)?
        .install_recorder()?;
    names::describe();
    // Histograms are kept in per-thread buffers until upkeep folds them in.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Deadline of a metrics connection's request head (and of an idle keep-alive
/// connection's next one): a scraper sends its request at once.
pub const METRICS_HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Most metrics connections served at once; further ones wait in the backlog.
pub const METRICS_MAX_CONNECTIONS: usize = 64;

/// Serves `/metrics` (and `/healthz`) on `listen` for processes without the
/// API server, such as `ingest`, and returns the address it listens on.
pub async fn serve_metrics(
    listen: std::net::SocketAddr,
    handle: PrometheusHandle,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} (ingest.metrics_listen): {e}"))?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve_metrics_on(listener, handle, METRICS_HEADER_READ_TIMEOUT, METRICS_MAX_CONNECTIONS));
    Ok(addr)
}

/// The metrics listener's loop: HTTP/1.1 only, at most `max_connections` at
/// once, each closed when its request head is not complete within
/// `header_read_timeout` (hyper starts that clock as soon as it waits for a
/// head, on a new connection and between keep-alive requests alike).
pub async fn serve_metrics_on(
    listener: tokio::net::TcpListener,
    handle: PrometheusHandle,
    header_read_timeout: std::time::Duration,
    max_connections: usize,
) {
    use http_body_util::Full;
    use hyper::{body::Incoming, service::service_fn, Request, Response};
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(max_connections));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_read_timeout);
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let handle = handle.clone();
        let conn = builder.serve_connection(
            hyper_util::rt::TokioIo::new(stream),
            service_fn(move |req: Request<Incoming>| {
                let handle = handle.clone();
                async move {
                    let (status, body) = match req.uri().path() {
                        "/metrics" => (200, handle.render()),
                        "/healthz" => (200, "{\"status\":\"ok\"}".to_string()),
                        _ => (404, String::new()),
                    };
                    let mut resp = Response::new(Full::new(bytes::Bytes::from(body)));
                    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
                    Ok::<_, std::convert::Infallible>(resp)
                }
            }),
        );
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
}
