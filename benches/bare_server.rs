//! The floor of this stack for `make bench-compare` (`scripts/bench-compare.sh`):
//! a bare hyper 1 HTTP/1.1 server on a multi-thread tokio runtime that answers
//! `GET /v1/orders/{id}` with the same JSON bytes as the gateway, from a
//! `moka::sync::Cache<String, Bytes>`, and nothing else (no auth, rate limits,
//! metrics, ETags, request ids or logs).
//!
//! `BARE_SERVER_LISTEN=127.0.0.1:18190 BARE_SERVER_DATA=orders.tsv cargo bench --bench bare_server`
//! serves until killed. The data file has one order a line: the id, a tab, and
//! the JSON body (compact JSON never holds a raw tab or newline).
//! Without `BARE_SERVER_LISTEN` it returns at once, so `cargo test --benches`
//! (the smoke test of `make test`) does not hang on it.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use moka::sync::Cache;

fn main() {
    let Ok(listen) = std::env::var("BARE_SERVER_LISTEN") else {
        eprintln!("bare_server: BARE_SERVER_LISTEN is not set; nothing to serve (see scripts/bench-compare.sh)");
        return;
    };
    let listen: SocketAddr = listen.parse().expect("BARE_SERVER_LISTEN: a socket address such as 127.0.0.1:18190");
    let path = std::env::var("BARE_SERVER_DATA").expect("BARE_SERVER_DATA: the file of ids and JSON bodies");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("BARE_SERVER_DATA={path}: {e}"));

    let cache: Cache<String, Bytes> = Cache::new(u64::MAX);
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (id, json) = line.split_once('\t').unwrap_or_else(|| panic!("{path}: a line without a tab"));
        cache.insert(id.to_owned(), Bytes::copy_from_slice(json.as_bytes()));
    }
    cache.run_pending_tasks();
    eprintln!("bare_server: {} orders from {path}, listening on {listen}", cache.entry_count());

    // Worker threads default to the CPUs this process may run on (taskset included).
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.unwrap_or_else(|e| panic!("bind {listen}: {e}"));
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(pair) => pair,
                Err(e) => {
                    eprintln!("bare_server: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let cache = cache.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let answer = respond(&cache, &req);
                    async move { Ok::<_, Infallible>(answer) }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
}

fn respond(cache: &Cache<String, Bytes>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let found = match (req.method(), req.uri().path().strip_prefix("/v1/orders/")) {
        (&Method::GET, Some(id)) => cache.get(id),
        _ => None,
    };
    match found {
        Some(body) => Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .expect("static headers"),
        None => {
            Response::builder().status(StatusCode::NOT_FOUND).body(Full::new(Bytes::new())).expect("static headers")
        }
    }
}
