//! The HTTP edge: accept connections (HTTP/1.1 and h2c on one port), give each
//! request its identity, route it, record it, and drain on shutdown.

pub mod context;
pub mod router;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use http::{header, HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::api::{self, ApiError, HttpResponse};
use crate::app::AppState;
use crate::telemetry::names;
use context::{RequestContext, REQUEST_ID};
use router::{Matched, Route, Router};

/// Serves `listener` until `shutdown` resolves, then stops accepting and lets
/// in-flight requests finish for at most `server.shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let cfg = &state.config.server;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());

    let router = Arc::new(Router::new());
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(cfg.max_connections));
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
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
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let router = router.clone();
        let service = service_fn(move |req| {
            let state = state.clone();
            let router = router.clone();
            async move { Ok::<_, Infallible>(handle(&state, &router, peer, req).await) }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned());
        metrics::gauge!(names::HTTP_CONNECTIONS_OPEN).increment(1.0);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            metrics::gauge!(names::HTTP_CONNECTIONS_OPEN).decrement(1.0);
            drop(permit);
        });
    }

    drop(listener);
    state.draining.store(true, Ordering::Relaxed);
    let grace = cfg.shutdown_grace;
    tracing::info!(grace_secs = grace.as_secs_f64(), "shutting down: draining in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!("shutdown grace elapsed; closing remaining connections"),
    }
    Ok(())
}

/// One request: identity, routing, the handler, the response headers every
/// answer carries, metrics and the access log line.
async fn handle(
    state: &AppState,
    router: &Router,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> HttpResponse {
    let started = Instant::now();
    let ctx = RequestContext::from_headers(req.headers());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let matched = router.route(&method, &path);
    let route_label = match &matched {
        Matched::Found { route, .. } | Matched::MethodNotAllowed { route, .. } => route.template(),
        Matched::NotFound => "unmatched",
    };
    let span = tracing::info_span!(
        "request",
        request_id = %ctx.request_id,
        trace_id = %ctx.trace.trace_id,
        method = %method,
        route = route_label,
    );
    let mut resp = async {
        let result = match matched {
            Matched::Found { route, params } => dispatch(state, route, &params, &ctx, req).await,
            Matched::MethodNotAllowed { allow, .. } => {
                Err(ApiError::MethodNotAllowed { method: method.clone(), allow })
            }
            Matched::NotFound => Err(ApiError::NotFound(format!("no route for {path}"))),
        };
        let resp = result.unwrap_or_else(|e| e.into_response(&path, &ctx.request_id));
        let status = resp.status();
        let level_is_error = status.is_server_error();
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        if level_is_error {
            tracing::warn!(status = status.as_u16(), elapsed_ms, %peer, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), elapsed_ms, "request");
        }
        resp
    }
    .instrument(span)
    .await;

    if method == Method::HEAD {
        *resp.body_mut() = Default::default();
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    let status = resp.status();
    metrics::counter!(names::HTTP_REQUESTS, "route" => route_label, "method" => method_label(&method), "status" => status_label(status))
        .increment(1);
    metrics::histogram!(names::HTTP_REQUEST_DURATION, "route" => route_label, "method" => method_label(&method))
        .record(started.elapsed().as_secs_f64());
    resp
}

async fn dispatch(
    state: &AppState,
    route: Route,
    params: &[(&str, &str)],
    ctx: &RequestContext,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v).unwrap_or_default();
    let query = req.uri().query();
    match route {
        Route::Healthz => Ok(api::health::healthz()),
        Route::Readyz => Ok(api::health::readyz(state).await),
        Route::Metrics => Ok(metrics_text(state)),
        Route::Order => api::orders::get_order(state, &decode(param("order_id"))?, query, req.headers(), ctx).await,
        Route::OrderByNumber => {
            api::orders::get_by_number(state, &decode(param("order_number"))?, query, req.headers(), ctx).await
        }
        Route::OrdersBatchGet => api::orders::batch_get(state, req, ctx).await,
        Route::Orders => api::orders::search(state, query, ctx).await,
        Route::CustomerOrders => api::orders::customer_orders(state, &decode(param("customer_id"))?, query, ctx).await,
        Route::OpenApi => Ok(api::json_bytes(StatusCode::OK, api::openapi::json())),
        Route::Kpis => api::analytics::kpis(state, query).await,
        Route::Timeseries => api::analytics::timeseries(state, query).await,
        Route::TopSkus => api::analytics::top_skus(state, query).await,
        Route::StatusFunnel => api::analytics::status_funnel(state, query).await,
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

/// Percent-decodes a path segment; ids are then checked by the handler.
fn decode(segment: &str) -> Result<String, ApiError> {
    url::form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| ApiError::bad_param("path", "malformed path segment"))
}

fn metrics_text(state: &AppState) -> HttpResponse {
    let body = state.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    let mut resp = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
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
        413 => "413",
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
