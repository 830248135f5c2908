//! The HTTP edge: accept connections (HTTP/1.1 and h2c on one port), give each
//! request its identity, route it, record it, and drain on shutdown.

mod conn;
pub mod router;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use http::{header, HeaderValue, Method, Request, StatusCode};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::api::{self, ApiError, HttpResponse};
use crate::app::AppState;
use crate::config::Protocol;
use crate::edge::Admitted;
use crate::telemetry::context::{RequestContext, REQUEST_ID_HEADER};
use crate::telemetry::names;
use router::{Matched, Route, Router};

/// A response body as the server writes it: whole (every handler's answer),
/// or a live-update stream (`api::events`), which a handler's response
/// carries out in an extension ([`crate::live::LiveBody::take_from`]).
pub type Body = http_body_util::Either<http_body_util::Full<bytes::Bytes>, crate::live::LiveBody>;

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `server.listen`: every route, `/admin/*` included unless `admin.listen` is set.
    Main,
    /// `admin.listen`: `/admin/*` and the probes.
    Admin,
}

/// Serves `listener` until `shutdown` resolves, then stops accepting and lets
/// in-flight requests finish for at most `server.shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    surface: Surface,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let cfg = &state.config.server;
    let builder = Builder::new(cfg);
    let router = Arc::new(Router::new());
    let slots = conn::Slots::new(cfg.max_connections);
    let deadlines = conn::Deadlines { header_read: cfg.header_read_timeout, idle: cfg.idle_timeout };
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);

    loop {
        // Accept first, then find a slot (conn::Slots::acquire): a listener
        // that stopped accepting while silent sockets held its slots would
        // leave probes and clients queued in the backlog behind them.
        let (stream, peer) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            slot = slots.acquire() => slot,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let router = router.clone();
        let tracker = slot.tracker();
        let service = service_fn(move |req| {
            let state = state.clone();
            let router = router.clone();
            let in_progress = tracker.request_started(req.version() == hyper::Version::HTTP_2);
            async move {
                let mut resp = handle(&state, &router, surface, peer, req).await;
                match resp.body_mut() {
                    // A live stream keeps its connection busy while it is
                    // open (never shed or closed as idle), and can cut it.
                    http_body_util::Either::Right(live) => {
                        let cut = in_progress.cutter();
                        live.hold(Box::new(in_progress), Box::new(cut))
                    }
                    http_body_util::Either::Left(_) => drop(in_progress),
                }
                Ok::<_, Infallible>(resp)
            }
        });
        let io = TokioIo::new(conn::Watched::new(stream, slot.tracker()));
        let drain = drain_rx.clone();
        metrics::gauge!(names::HTTP_CONNECTIONS_OPEN).increment(1.0);
        match &builder {
            Builder::Both(b) => {
                spawn_connection(b.serve_connection(io, service).into_owned(), slot, peer, deadlines, drain)
            }
            Builder::Http1(b) => spawn_connection(b.serve_connection(io, service), slot, peer, deadlines, drain),
            Builder::H2c(b) => spawn_connection(b.serve_connection(io, service), slot, peer, deadlines, drain),
        }
    }

    drop(listener);
    state.draining.store(true, Ordering::Relaxed);
    // Live streams end now (each with a `shutdown` event): the drain would
    // otherwise wait the whole grace for them.
    state.hub.end_all();
    let _ = drain_tx.send(true);
    let grace = cfg.shutdown_grace;
    tracing::info!(grace_secs = grace.as_secs_f64(), "shutting down: draining in-flight requests");
    tokio::select! {
        _ = slots.all_closed() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!("shutdown grace elapsed; closing remaining connections"),
    }
    Ok(())
}

/// The connection builder for `server.protocols`: with both, hyper-util's
/// `auto` builder reads the first bytes of each connection to tell HTTP/1.1
/// from h2c; with one, hyper's own builder for it serves the connection as
/// it comes.
enum Builder {
    Both(auto::Builder<TokioExecutor>),
    Http1(http1::Builder),
    H2c(http2::Builder<TokioExecutor>),
}

/// The HTTP/1.1 settings, on hyper's builder or on the `auto` builder's half
/// (two types with the same methods).
macro_rules! http1_settings {
    ($builder:expr, $cfg:expr, $max_header_bytes:expr) => {
        $builder
            .timer(TokioTimer::new())
            // Off: conn::drive keeps server.header_read_timeout per request
            // head, from its first byte, and lets keep-alive idle for
            // server.idle_timeout (hyper's would close it header_read_timeout
            // after each response).
            .header_read_timeout(None)
            .max_buf_size($max_header_bytes)
            .keep_alive(true)
    };
}

/// The HTTP/2 settings, likewise.
macro_rules! http2_settings {
    ($builder:expr, $cfg:expr, $max_header_bytes:expr) => {
        $builder
            .timer(TokioTimer::new())
            .max_header_list_size($max_header_bytes as u32)
            // Pings find a vanished peer; answering them does not keep an
            // idle connection open (server.idle_timeout, conn::drive).
            .keep_alive_interval(Some($cfg.header_read_timeout))
            .keep_alive_timeout($cfg.header_read_timeout)
    };
}

impl Builder {
    fn new(cfg: &crate::config::ServerConfig) -> Self {
        // hyper's own ceilings sit above server.max_header_bytes, so that the
        // precise 431 problem answers first; they only stop abuse.
        let max_header_bytes = (cfg.max_header_bytes * 4).max(64 * 1024);
        match cfg.protocols.as_slice() {
            [Protocol::Http1] => {
                let mut b = http1::Builder::new();
                http1_settings!(b, cfg, max_header_bytes);
                Builder::Http1(b)
            }
            [Protocol::H2c] => {
                let mut b = http2::Builder::new(TokioExecutor::new());
                http2_settings!(b, cfg, max_header_bytes);
                Builder::H2c(b)
            }
            _ => {
                let mut b = auto::Builder::new(TokioExecutor::new());
                http1_settings!(b.http1(), cfg, max_header_bytes);
                http2_settings!(b.http2(), cfg, max_header_bytes);
                Builder::Both(b)
            }
        }
    }
}

/// Drives one connection on a task of its own, holding its slot until it ends.
fn spawn_connection<C>(
    conn: C,
    slot: conn::Slot,
    peer: SocketAddr,
    deadlines: conn::Deadlines,
    drain: tokio::sync::watch::Receiver<bool>,
) where
    C: hyper_util::server::graceful::GracefulConnection + Send + 'static,
    C::Error: std::fmt::Display + Send,
{
    tokio::spawn(async move {
        match conn::drive(conn, &slot.tracker(), deadlines, drain).await {
            Ok(conn::Ending::Finished) => {}
            Ok(ending) => tracing::debug!(?ending, %peer, "connection closed by the gateway"),
            Err(e) => tracing::debug!(error = %e, %peer, "connection ended with an error"),
        }
        metrics::gauge!(names::HTTP_CONNECTIONS_OPEN).decrement(1.0);
        drop(slot);
    });
}

/// One request: identity, routing, edge checks (size, load, credentials,
/// rate, scope), the handler, the response headers every answer carries,
/// metrics and the access log line. Public so benchmarks can drive the whole
/// path in process.
pub async fn handle<B>(
    state: &AppState,
    router: &Router,
    surface: Surface,
    peer: SocketAddr,
    req: Request<B>,
) -> http::Response<Body>
where
    B: hyper::body::Body<Data = bytes::Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let ctx = RequestContext::from_headers(req.headers());
    let method = req.method().clone();
    let version = req.version();
    // A clone of the URI shares its bytes: the path outlives the request,
    // which the handler consumes, without a copy of its own.
    let uri = req.uri().clone();
    let path = uri.path();
    let separate_admin = !state.config.admin.listen.is_empty();
    let matched = match router.route(&method, path) {
        // Each surface serves only its own routes (the probes are on both).
        Matched::Found { route, .. } | Matched::MethodNotAllowed { route, .. }
            if (surface == Surface::Admin && !route.is_admin() && !route.is_probe())
                || (surface == Surface::Main && separate_admin && route.is_admin()) =>
        {
            Matched::NotFound
        }
        m => m,
    };
    let route_label = match &matched {
        Matched::Found { route, .. } | Matched::MethodNotAllowed { route, .. } => route.template(),
        Matched::NotFound => "unmatched",
    };
    // A span per request costs more than the rest of the log (its fields are
    // formatted when it opens): only at debug does every line of a request
    // carry its ids. The access and 5xx lines below name them themselves.
    let span = if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::info_span!(
            "request",
            request_id = ctx.request_id(),
            trace_id = %ctx.trace.trace_id,
            span_id = %SpanId(ctx.trace.span_id),
            method = %method,
            route = route_label,
        )
    } else {
        tracing::Span::none()
    };
    let mut rate = None;
    // The request's span is recorded only for a sampled trace with an exporter.
    let traced = crate::telemetry::trace::recording(&ctx.trace);
    let mut client = None;
    let mut resp = async {
        let result = match matched {
            Matched::Found { route, params } => match admit(state, route, peer, &req) {
                Ok((admitted, slot)) => {
                    rate = admitted.rate;
                    if traced {
                        client = admitted.principal.as_ref().map(|p| p.client.clone());
                    }
                    match with_body(state, started, req, slot).await {
                        // `_slot` holds the in-flight permit until the handler is done.
                        Ok((req, _slot)) => dispatch(state, route, &params, &ctx, &admitted, peer, &req).await,
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            },
            Matched::MethodNotAllowed { allow, .. } => {
                Err(ApiError::MethodNotAllowed { method: method.clone(), allow })
            }
            Matched::NotFound => Err(ApiError::NotFound(format!("no route for {path}"))),
        };
        let resp = result.unwrap_or_else(|e| e.into_response(path, ctx.request_id()));
        let status = resp.status();
        // Called inside the macros, so the clock is read only when a line is written.
        let elapsed_ms = || started.elapsed().as_secs_f64() * 1000.0;
        if status.is_server_error() {
            tracing::warn!(
                request_id = ctx.request_id(),
                trace_id = %ctx.trace.trace_id,
                span_id = %SpanId(ctx.trace.span_id),
                method = %method,
                route = route_label,
                status = status.as_u16(),
                elapsed_ms = elapsed_ms(),
                %peer,
                "request failed"
            );
        } else if status.is_client_error() || crate::telemetry::sample_access() {
            // Every refusal; of the answers, one in `log.access_sample`.
            tracing::info!(
                target: crate::telemetry::ACCESS,
                request_id = ctx.request_id(),
                trace_id = %ctx.trace.trace_id,
                span_id = %SpanId(ctx.trace.span_id),
                method = %method,
                route = route_label,
                status = status.as_u16(),
                elapsed_ms = elapsed_ms(),
                "request"
            );
        }
        resp
    }
    .instrument(span)
    .await;

    if method == Method::HEAD {
        *resp.body_mut() = Default::default();
    }
    if resp.status() == StatusCode::REQUEST_TIMEOUT && version < http::Version::HTTP_2 {
        // The rest of the body may still be on its way: this connection is done.
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if traced {
        server_span(&ctx, &method, route_label, version, &resp, client, started);
    }
    // Moved, not cloned: the context is done with.
    resp.headers_mut().insert(REQUEST_ID_HEADER, ctx.into_request_id_header());
    if let Some(info) = &rate {
        api::problem::rate_limit_headers(resp.headers_mut(), info);
    }
    crate::telemetry::hot::request(
        route_label,
        method_label(&method),
        status_label(resp.status()),
        started.elapsed().as_secs_f64(),
    );
    // A HEAD request's stream is dropped with the rest of its body.
    match crate::live::LiveBody::take_from(&mut resp).filter(|_| method != Method::HEAD) {
        Some(live) => resp.map(|_| http_body_util::Either::Right(live)),
        None => resp.map(http_body_util::Either::Left),
    }
}

/// A span id as logged: 16 lowercase hex digits, as in `traceparent`.
struct SpanId(u64);

impl std::fmt::Display for SpanId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Records the request's server span: `<method> <route template>`, its
/// status, the client's name (never a credential) and the cache's answer.
/// The path itself is left out: it can name a customer.
fn server_span(
    ctx: &RequestContext,
    method: &Method,
    route: &'static str,
    version: http::Version,
    resp: &HttpResponse,
    client: Option<std::sync::Arc<str>>,
    started: Instant,
) {
    use crate::telemetry::trace::{self, Attr, Kind, SpanRecord};
    let end = trace::unix_nanos();
    let status = resp.status();
    let mut attributes = vec![
        ("http.request.method", Attr::from(method_label(method))),
        ("http.route", Attr::from(route)),
        ("http.response.status_code", Attr::Int(i64::from(status.as_u16()))),
        ("network.protocol.version", Attr::from(if version >= http::Version::HTTP_2 { "2" } else { "1.1" })),
        ("request.id", Attr::from(ctx.request_id().to_owned())),
    ];
    if let Some(c) = client {
        attributes.push(("order_gateway.client", Attr::from(c.to_string())));
    }
    if let Some(cache) = resp.headers().get(&api::orders::X_CACHE).and_then(|v| v.to_str().ok()) {
        attributes.push(("order_gateway.cache", Attr::from(cache.to_owned())));
    }
    trace::record(SpanRecord {
        trace_id: ctx.trace.trace_id.0,
        span_id: ctx.trace.span_id,
        parent_id: ctx.trace.parent_id,
        name: if route == "unmatched" {
            std::borrow::Cow::Borrowed(method_label(method))
        } else {
            std::borrow::Cow::Owned(format!("{} {route}", method_label(method)))
        },
        kind: Kind::Server,
        start_unix_nanos: end.saturating_sub(started.elapsed().as_nanos() as u64),
        end_unix_nanos: end,
        attributes,
        // OpenTelemetry's HTTP conventions: a server span fails on 5xx only.
        error: status.is_server_error().then(|| status.to_string()),
    });
}

/// The checks before a handler runs, cheapest first: sizes, load, then the
/// edge (credentials, rate, scope). Returns the in-flight permit to hold.
fn admit<B>(
    state: &AppState,
    route: Route,
    peer: SocketAddr,
    req: &Request<B>,
) -> Result<(Admitted, Option<tokio::sync::OwnedSemaphorePermit>), ApiError> {
    let limits = &state.config.server;
    let header_bytes: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>()
        + req.uri().path_and_query().map(|p| p.as_str().len()).unwrap_or(0);
    if header_bytes > limits.max_header_bytes {
        return Err(ApiError::HeadersTooLarge(format!(
            "the request line and headers hold {header_bytes} bytes; at most {} are accepted (server.max_header_bytes)",
            limits.max_header_bytes
        )));
    }
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > limits.max_body_bytes as u64) {
        return Err(ApiError::PayloadTooLarge(format!(
            "the request body holds {n} bytes; at most {} are accepted (server.max_body_bytes)",
            limits.max_body_bytes
        )));
    }
    // Probes are never shed: an orchestrator must see the process alive under load.
    let slot = if route.is_probe() { None } else { Some(in_flight_slot(state)?) };
    let admitted = state.live().edge.admit(route, req.headers(), peer.ip())?;
    Ok((admitted, slot))
}

/// A permit of `server.max_in_flight`, or the 503 that sheds the request.
fn in_flight_slot(state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    state.in_flight.clone().try_acquire_owned().map_err(|_| {
        metrics::counter!(names::HTTP_SHED).increment(1);
        ApiError::Overloaded(format!(
            "the gateway is handling {} requests, its limit (server.max_in_flight); retry shortly",
            state.config.server.max_in_flight
        ))
    })
}

type InFlight = Option<tokio::sync::OwnedSemaphorePermit>;

/// The request with its whole body in hand, read within
/// `server.body_read_timeout` of the head (else 408) and at most
/// `server.max_body_bytes` long (else 413), so no handler waits on a client.
///
/// While the body is on its way the request is not counted against
/// `server.max_in_flight`: it gives its permit back and takes one again once
/// the body is here (shed then if none is left). Slow senders, who may hold a
/// request open for the whole timeout, thus cannot shed the requests that are
/// ready. A request without a body (every GET) keeps its permit and passes
/// through untouched.
async fn with_body<B>(
    state: &AppState,
    started: Instant,
    req: Request<B>,
    slot: InFlight,
) -> Result<(Request<http_body_util::Full<bytes::Bytes>>, InFlight), ApiError>
where
    B: hyper::body::Body<Data = bytes::Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    if body.is_end_stream() {
        return Ok((Request::from_parts(parts, Default::default()), slot));
    }
    let counted = slot.is_some();
    drop(slot);
    // Boxed: the timed read is a large future, and every request's future
    // (moved on each request) would carry it, bodiless lookups included.
    let body = Box::pin(read_body(state, started, body)).await?;
    let slot = if counted { Some(in_flight_slot(state)?) } else { None };
    Ok((Request::from_parts(parts, http_body_util::Full::new(body)), slot))
}

/// The body, read within `server.body_read_timeout` of the head and at most
/// `server.max_body_bytes` long.
async fn read_body<B>(state: &AppState, started: Instant, body: B) -> Result<bytes::Bytes, ApiError>
where
    B: hyper::body::Body<Data = bytes::Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limits = &state.config.server;
    let deadline = tokio::time::Instant::from_std(started) + limits.body_read_timeout;
    let read = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limits.max_body_bytes));
    match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(ApiError::PayloadTooLarge(
            format!("the request body exceeds {} bytes (server.max_body_bytes)", limits.max_body_bytes),
        )),
        Ok(Err(e)) => Err(ApiError::bad_param("body", format!("cannot read the request body: {e}"))),
        Err(_) => Err(ApiError::RequestTimeout(format!(
            "the request body did not arrive in full within {} (server.body_read_timeout)",
            humantime::format_duration(limits.body_read_timeout)
        ))),
    }
}

async fn dispatch(
    state: &AppState,
    route: Route,
    params: &router::Params<'_>,
    ctx: &RequestContext,
    admitted: &Admitted,
    peer: SocketAddr,
    // By reference: a request held by value is kept twice in the future
    // (argument and local), which every request moves.
    req: &Request<http_body_util::Full<bytes::Bytes>>,
) -> Result<HttpResponse, ApiError> {
    let param = |name: &str| params.get(name);
    let query = req.uri().query();
    let pii = admitted.sees_pii();
    // A future is as large as the largest one it may await, and each request's
    // future is moved a few times on its way into hyper's connection task.
    // Lookups by id or number are the hot path and are awaited in place; every
    // other handler is boxed, so the request future stays small (it was 9 KB,
    // most of it batch, search, readiness and analytics state).
    match route {
        Route::Healthz => Ok(api::health::healthz()),
        Route::Readyz => Ok(Box::pin(api::health::readyz(state, admitted.is_admin())).await),
        Route::Metrics => Ok(metrics_text(state)),
        Route::Order => {
            api::orders::get_order(state, &decode(param("order_id"))?, query, req.headers(), ctx, pii).await
        }
        Route::OrderByNumber => {
            api::orders::get_by_number(state, &decode(param("order_number"))?, query, req.headers(), ctx, pii).await
        }
        Route::OrdersBatchGet => Box::pin(api::orders::batch_get(state, req, ctx, pii)).await,
        Route::Orders => Box::pin(api::orders::search(state, query, ctx, pii)).await,
        Route::CustomerOrders => {
            Box::pin(api::orders::customer_orders(state, &decode(param("customer_id"))?, query, ctx, pii)).await
        }
        Route::OrderEvents => {
            let id = decode(param("order_id"))?;
            let client = subscriber_name(admitted, peer);
            Box::pin(api::events::order_events(state, &id, query, req.headers(), &ctx.trace, pii, client)).await
        }
        Route::CustomerOrderEvents => {
            let id = decode(param("customer_id"))?;
            let client = subscriber_name(admitted, peer);
            Box::pin(api::events::customer_events(state, &id, query, &ctx.trace, pii, client)).await
        }
        Route::Redoc | Route::RedocFile => {
            let (body, content_type) = api::openapi::redoc_file(param("file"))
                .ok_or_else(|| ApiError::NotFound(format!("no such documentation file {}", param("file"))))?;
            let mut r = http::Response::new(http_body_util::Full::new(body));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            // The script changes only with the binary: a day in the browser's cache.
            if !param("file").is_empty() {
                r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
            }
            Ok(r)
        }
        Route::OpenApi => Ok(api::json_bytes(StatusCode::OK, api::openapi::json())),
        Route::Kpis => Box::pin(api::analytics::kpis(state, query, &ctx.trace)).await,
        Route::Timeseries => Box::pin(api::analytics::timeseries(state, query, &ctx.trace)).await,
        Route::TopSkus => Box::pin(api::analytics::top_skus(state, query, &ctx.trace)).await,
        Route::StatusFunnel => Box::pin(api::analytics::status_funnel(state, query, &ctx.trace)).await,
        Route::AdminCache => Ok(api::admin::cache(state)),
        Route::AdminCacheOrder => api::admin::evict(state, &decode(param("order_id"))?),
        Route::AdminStream => Ok(api::admin::stream(state)),
        Route::AdminConfig => Ok(api::admin::config(state)),
        Route::AdminReload => api::admin::reload(state),
        Route::DocsRoot => {
            let mut r = http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
            *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
            r.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/docs/"));
            Ok(r)
        }
        Route::Docs | Route::DocsIndex => {
            let (body, content_type) = api::openapi::swagger_file(param("file"))
                .ok_or_else(|| ApiError::NotFound(format!("no such documentation file {}", param("file"))))?;
            let mut r = http::Response::new(http_body_util::Full::new(body));
            if let Ok(v) = HeaderValue::from_str(&content_type) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            Ok(r)
        }
    }
}

/// Whose live streams a subscription counts against
/// (`subscribe.max_streams_per_client`): the credential's client name, or the
/// address of an anonymous caller.
fn subscriber_name(admitted: &Admitted, peer: SocketAddr) -> Arc<str> {
    match &admitted.principal {
        Some(p) => p.client.clone(),
        None => Arc::from(peer.ip().to_string()),
    }
}

/// Percent-decodes a path segment; ids are then checked by the handler.
fn decode(segment: &str) -> Result<std::borrow::Cow<'_, str>, ApiError> {
    // Ids are plain ASCII almost always: no copy then. A byte search, not a
    // char pattern: this runs on every lookup, and both are ASCII.
    if memchr::memchr2(b'%', b'+', segment.as_bytes()).is_none() {
        return Ok(std::borrow::Cow::Borrowed(segment));
    }
    url::form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| std::borrow::Cow::Owned(v.into_owned()))
        .ok_or_else(|| ApiError::bad_param("path", "malformed path segment"))
}

fn metrics_text(state: &AppState) -> HttpResponse {
    // Derived from the semaphore when scraped, rather than counted per request.
    let in_flight = state.config.server.max_in_flight - state.in_flight.available_permits();
    metrics::gauge!(names::HTTP_IN_FLIGHT).set(in_flight as f64);
    crate::telemetry::export_log_drops();
    let body = state.metrics.as_ref().map(crate::telemetry::render_metrics).unwrap_or_default();
    let mut resp = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    resp
}

/// Methods as bounded label values (an unknown method must not mint new series).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_label(s: StatusCode) -> &'static str {
    // Static strings for the common codes keep the hot path free of allocation.
    match s.as_u16() {
        200 => "200",
        204 => "204",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        422 => "422",
        431 => "431",
        429 => "429",
        500 => "500",
        503 => "503",
        504 => "504",
        c if c < 300 => "2xx",
        c if c < 400 => "3xx",
        c if c < 500 => "4xx",
        _ => "5xx",
    }
}
