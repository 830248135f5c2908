//! Logs and metrics. Metric names live in [`names`] and nowhere else.

pub mod context;
pub mod hot;
pub mod names;
pub mod process;
pub mod trace;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

use std::sync::atomic::{AtomicU32, Ordering};

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::{fmt, prelude::*, reload, EnvFilter, Registry};

use crate::config::{LogConfig, LogFormat};

/// The target of access lines (one per answered request below 500).
pub const ACCESS: &str = "access";

/// Holds the threads that write log lines; dropping it flushes what they hold.
#[must_use = "dropping the guard stops the log writers"]
pub struct LogGuard {
    _writers: [WorkerGuard; 2],
}

/// Installs the global tracing subscriber. Logs go to stdout, one JSON object a
/// line by default; they never carry request bodies, order contents or secrets.
///
/// Lines are formatted where they happen and written by two threads of their
/// own, so a slow stdout (a full pipe, a stalled collector) never stalls a
/// request: access lines through a queue that drops and counts when full
/// (`log_lines_dropped_total`), everything else (warnings and errors, every
/// 5xx) through one that waits rather than lose a line.
pub fn init_logging(cfg: &LogConfig) -> LogGuard {
    set_access_sample(cfg.access_sample);
    let filter = EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Behind a reload layer, so a configuration reload can change the level.
    let (filter, handle) = reload::Layer::new(filter);
    let _ = LOG_LEVEL.set(handle);
    let queue = cfg.access_queue.max(1);
    let (events, events_guard) = stdout_writer("log-writer", false, queue);
    let (access, access_guard) = stdout_writer("access-log-writer", true, queue);
    let _ = ACCESS_DROPPED.set(access.error_counter());
    let not_access = filter_fn(|m| m.target() != ACCESS);
    let only_access = filter_fn(|m| m.target() == ACCESS);
    let registry = tracing_subscriber::registry().with(filter);
    match cfg.format {
        LogFormat::Json => registry
            .with(json_lines(events).with_filter(not_access))
            .with(json_lines(access).with_filter(only_access))
            .init(),
        LogFormat::Text => registry
            .with(fmt::layer().with_target(false).with_writer(events).with_filter(not_access))
            .with(fmt::layer().with_target(false).with_writer(access).with_filter(only_access))
            .init(),
    }
    LogGuard { _writers: [events_guard, access_guard] }
}

/// A thread writing lines to stdout from a queue of `queue` lines; `lossy`
/// drops (and counts) a line when the queue is full, else the caller waits.
fn stdout_writer(thread: &str, lossy: bool, queue: usize) -> (NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default().lossy(lossy).buffered_lines_limit(queue).thread_name(thread).finish(std::io::stdout())
}

/// One JSON object a line, the event's fields at the top, its span's beside them.
fn json_lines<S, W>(writer: W) -> fmt::Layer<S, fmt::format::JsonFields, fmt::format::Format<fmt::format::Json>, W>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> fmt::MakeWriter<'w> + 'static,
{
    fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_writer(writer)
}

static ACCESS_DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Copies the count of dropped access lines into `log_lines_dropped_total`
/// (called before `/metrics` renders).
pub fn export_log_drops() {
    if let Some(c) = ACCESS_DROPPED.get() {
        metrics::counter!(names::LOG_LINES_DROPPED).absolute(c.dropped_lines() as u64);
    }
}

/// One access line per `log.access_sample` requests below 400; 0: none.
static ACCESS_SAMPLE: AtomicU32 = AtomicU32::new(1);

/// Applies a (reloaded) `log.access_sample`.
pub fn set_access_sample(every: u32) {
    ACCESS_SAMPLE.store(every, Ordering::Relaxed);
}

thread_local! {
    static SINCE_LAST_ACCESS_LINE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether this answered request (below 500) gets an access line: one in
/// `log.access_sample`, counted per worker thread (no shared counter to
/// contend on).
pub fn sample_access() -> bool {
    let every = ACCESS_SAMPLE.load(Ordering::Relaxed);
    if every == 0 {
        // The access log is off; refusals and failures are logged regardless.
        return false;
    }
    SINCE_LAST_ACCESS_LINE.with(|n| {
        let (next, log) = sample_step(n.get(), every);
        n.set(next);
        log
    })
}

/// One request counted: the counter's next value, and whether this request
/// gets its line (every `every`-th; `every` may shrink between calls).
fn sample_step(since: u32, every: u32) -> (u32, bool) {
    let next = since.saturating_add(1);
    if next >= every {
        (0, true)
    } else {
        (next, false)
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
        // A count is no latency: without buckets of its own it was exported as a summary.
        .set_buckets_for_metric(Matcher::Full(names::INGEST_BATCH_EVENTS.to_string()), names::BATCH_SIZE_BUCKETS)?
        .install_recorder()?;
    names::describe();
    metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "revision" => REVISION).set(1.0);
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

/// The source revision the binary was built from (build.rs: git, or the
/// image build's REVISION argument; "unknown" without either).
pub const REVISION: &str = env!("ORDER_GATEWAY_REVISION");

/// The `/metrics` text: the recorder's metrics, then the process's own
/// figures (CPU, memory, file descriptors, threads; [`process`]).
pub fn render_metrics(handle: &PrometheusHandle) -> String {
    let mut text = handle.render();
    process::render(&process::read(), &mut text);
    text
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
                        "/metrics" => (200, render_metrics(&handle)),
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

#[cfg(test)]
mod sample_tests {
    #[test]
    fn one_line_in_every_n_and_every_request_at_one() {
        let lines = |every, n| {
            let mut since = 0;
            (0..n)
                .filter(|_| {
                    let (next, log) = super::sample_step(since, every);
                    since = next;
                    log
                })
                .count()
        };
        assert_eq!(lines(100, 1000), 10);
        assert_eq!(lines(1, 7), 7);
        assert_eq!(lines(3, 10), 3);
        // A reload to a smaller sample takes effect at the next request.
        assert_eq!(super::sample_step(50, 10), (0, true));
    }

    #[test]
    fn zero_turns_the_access_log_off() {
        super::set_access_sample(0);
        assert!((0..1000).all(|_| !super::sample_access()));
        super::set_access_sample(1);
        assert!(super::sample_access());
    }
}
