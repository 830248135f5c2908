//! Clients that connect and then say nothing, half of something, or their
//! body one byte a second (issue 12): the gateway closes them on its
//! deadlines and keeps answering everyone else, its probes first.
//!
//! Durations are printed, not asserted: the only bounds below are generous
//! ones that tell "answered" from "starved" and "closed" from "held".

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::world::*;
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a probe or a client that behaves must get its answer within, however
/// many hostile sockets there are (an availability bound, not a performance one).
const ANSWERED_WITHIN: Duration = Duration::from_secs(1);

/// Connects, sends `bytes`, then waits for the server to close the connection
/// (EOF or an error). Returns how long after connecting it was closed, or
/// None if it was still open `give_up` after connecting.
async fn held(addr: std::net::SocketAddr, bytes: &[u8], give_up: Duration) -> Result<Option<Duration>, String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let connected = Instant::now();
    if !bytes.is_empty() {
        s.write_all(bytes).await.map_err(|e| format!("write: {e}"))?;
    }
    let mut buf = [0u8; 1024];
    match tokio::time::timeout_at((connected + give_up).into(), s.read(&mut buf)).await {
        Err(_) => Ok(None),
        Ok(Ok(0)) | Ok(Err(_)) => Ok(Some(connected.elapsed())),
        // A stalled head gets no answer, only the close.
        Ok(Ok(n)) => Err(format!("answered {:?}", String::from_utf8_lossy(&buf[..n]))),
    }
}

/// How each hostile socket ended: its kind, and what [`held`] saw.
type Closures = Arc<Mutex<Vec<(&'static str, Result<Option<Duration>, String>)>>>;

/// One request on a new blocking connection, written at once (as a probe
/// does): how long until the answer was read in full, and the answer.
fn probe(addr: std::net::SocketAddr, request: &str) -> (Duration, Result<String, String>) {
    use std::io::{Read, Write};
    let t = Instant::now();
    let answer = (|| {
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
        s.write_all(request.as_bytes()).map_err(|e| format!("write: {e}"))?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).map_err(|e| format!("read: {e}"))?;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    })();
    (t.elapsed(), answer)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(mut d: Vec<Duration>) -> String {
    d.sort();
    format!(
        "n={} p50={:?} p99={:?} max={:?}",
        d.len(),
        percentile(&d, 0.5),
        percentile(&d, 0.99),
        d.last().copied().unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_silent_or_half_sent_sockets_do_not_starve_probes_or_lookups() {
    let header_read_timeout = Duration::from_secs(2);
    let w = World::new();
    let gw = w
        .gateway(&[
            ("ORDER_GATEWAY__SERVER__MAX_CONNECTIONS", "50"),
            ("ORDER_GATEWAY__SERVER__HEADER_READ_TIMEOUT", "2s"),
        ])
        .await;
    let id = format!("hostile-{}", uuid::Uuid::new_v4().simple());
    w.index_order(order(&id, 1)).await;
    let lookup = gw.url(&format!("/v1/orders/{id}"));
    let c = client();
    assert_eq!(c.get(&lookup).send().await.unwrap().status(), 200);
    assert_eq!(c.get(&lookup).send().await.unwrap().headers()["x-cache"], "HIT");

    // Probes as an orchestrator sends them, from a thread of their own: a new
    // connection each time, the request written as soon as it is connected.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = std::thread::spawn({
        let (done, addr, path) = (done.clone(), gw.addr, format!("/v1/orders/{id}"));
        move || {
            let (mut healthz, mut lookups) = (Vec::new(), Vec::new());
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                healthz.push(probe(addr, "GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"));
                lookups.push(probe(
                    addr,
                    &format!("GET {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {TEST_KEY}\r\nConnection: close\r\n\r\n"),
                ));
                std::thread::sleep(Duration::from_millis(100));
            }
            (healthz, lookups)
        }
    });

    // Two waves, the second when the first's survivors reach their deadline,
    // of 500 silent sockets, 500 with half a request line and one stalled h2
    // preface, each held until the gateway closes it.
    let closed: Closures = Arc::default();
    let mut attackers = Vec::new();
    let kinds: [(&'static str, &'static [u8], usize); 3] = [
        ("silent", b"", 500),
        ("half request line", b"GET /v1/ord", 500),
        ("stalled h2 preface", b"PRI * HTTP/2.0\r\n", 1),
    ];
    for wave in 0..2 {
        if wave > 0 {
            tokio::time::sleep(header_read_timeout).await;
        }
        for (kind, bytes, n) in kinds {
            for _ in 0..n {
                let (closed, addr) = (closed.clone(), gw.addr);
                attackers.push(tokio::spawn(async move {
                    let r = held(addr, bytes, header_read_timeout + Duration::from_secs(5)).await;
                    closed.lock().unwrap().push((kind, r));
                }));
            }
        }
    }
    for a in attackers {
        a.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (healthz, lookups) = prober.join().unwrap();
    for (what, answers) in [("/healthz", &healthz), ("a cached lookup", &lookups)] {
        for (took, answer) in answers {
            let answer = answer.as_ref().unwrap_or_else(|e| panic!("{what} during the flood: {e} after {took:?}"));
            assert!(answer.starts_with("HTTP/1.1 200"), "{what} during the flood: {answer}");
            assert!(*took < ANSWERED_WITHIN, "{what} took {took:?} during the flood");
        }
    }
    assert!(lookups.iter().all(|(_, a)| a.as_ref().unwrap().to_ascii_lowercase().contains("x-cache: hit")));
    let healthz: Vec<Duration> = healthz.iter().map(|(t, _)| *t).collect();
    let lookups: Vec<Duration> = lookups.iter().map(|(t, _)| *t).collect();

    let closed = std::mem::take(&mut *closed.lock().unwrap());
    let bound = header_read_timeout + Duration::from_secs(1);
    let mut by_kind: std::collections::BTreeMap<&str, Vec<Duration>> = Default::default();
    for (kind, r) in &closed {
        let took = match r {
            Ok(Some(took)) => *took,
            Ok(None) => panic!("a {kind} socket was still open {:?} after connecting", bound + Duration::from_secs(4)),
            Err(e) => panic!("a {kind} socket: {e}"),
        };
        assert!(
            took <= bound,
            "a {kind} socket was closed only after {took:?} (header_read_timeout + 1 s = {bound:?})"
        );
        by_kind.entry(kind).or_default().push(took);
    }
    println!("/healthz during the flood: {}", summary(healthz));
    println!("cached lookup during the flood: {}", summary(lookups));
    for (kind, d) in by_kind {
        let shed = d.iter().filter(|t| **t < header_read_timeout / 2).count();
        println!("{kind} sockets, connect to close: {} ({shed} closed early to make room)", summary(d));
    }
}

#[tokio::test]
async fn a_stalled_h2_preface_and_a_silent_socket_are_closed_at_the_header_deadline() {
    let gw = Gateway::start(&[("ORDER_GATEWAY__SERVER__HEADER_READ_TIMEOUT", "2s")]).await;
    let bound = Duration::from_secs(3);
    for (kind, bytes) in [("silent", &b""[..]), ("stalled h2 preface", b"PRI * HTTP/2.0\r\n")] {
        let took = held(gw.addr, bytes, bound + Duration::from_secs(5)).await.unwrap();
        println!("{kind} socket closed after {took:?}");
        assert!(took.is_some_and(|t| t <= bound), "{kind} socket: closed after {took:?}, header_read_timeout is 2 s");
    }
}

/// 2 × max_in_flight clients that send their headers, then a byte a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_get_408_and_ready_requests_are_served_meanwhile() {
    let max_in_flight = 20;
    let body_read_timeout = order_gateway::config::Config::defaults().server.body_read_timeout;
    let w = World::new();
    let gw = w.gateway(&[("ORDER_GATEWAY__SERVER__MAX_IN_FLIGHT", "20")]).await;
    let id = format!("slow-body-{}", uuid::Uuid::new_v4().simple());
    w.index_order(order(&id, 1)).await;
    let c = client();
    let lookup = gw.url(&format!("/v1/orders/{id}"));
    assert_eq!(c.get(&lookup).send().await.unwrap().status(), 200);

    let head = format!(
        "POST /v1/orders:batchGet HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {TEST_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 64\r\n\r\n{{"
    );
    let mut slow = Vec::new();
    for _ in 0..2 * max_in_flight {
        let (addr, head) = (gw.addr, head.clone());
        slow.push(tokio::spawn(async move {
            let s = TcpStream::connect(addr).await.unwrap();
            let (mut rd, mut wr) = s.into_split();
            wr.write_all(head.as_bytes()).await.unwrap();
            let sent = Instant::now();
            let trickle = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if wr.write_all(b" ").await.is_err() {
                        return;
                    }
                }
            });
            let mut answer = Vec::new();
            let read =
                tokio::time::timeout(body_read_timeout + Duration::from_secs(10), rd.read_to_end(&mut answer)).await;
            let took = sent.elapsed();
            trickle.abort();
            assert!(read.is_ok(), "no answer and no close {took:?} after the headers");
            (took, String::from_utf8_lossy(&answer).into_owned())
        }));
    }

    // A client that sends whole requests is served while the slow ones wait.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut ready = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let (_, body) = expect_json(c.post(gw.url("/v1/orders:batchGet")).json(&json!({ "ids": [id] })), 200).await;
        assert_eq!(body["orders"][0]["order_id"], id.as_str(), "{body}");
        let r = c.get(&lookup).send().await.unwrap();
        assert_eq!(r.status(), 200);
        ready.push(t.elapsed());
        assert!(t.elapsed() < ANSWERED_WITHIN * 2, "a batchGet and a lookup took {:?}", t.elapsed());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let mut took_all = Vec::new();
    for s in slow {
        let (took, answer) = s.await.unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        assert!(head.starts_with("HTTP/1.1 408"), "after {took:?}: {answer}");
        let head = head.to_ascii_lowercase();
        assert!(head.contains("content-type: application/problem+json"), "{answer}");
        assert!(head.contains("connection: close"), "{answer}");
        let problem: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
        assert_eq!(problem["status"], 408);
        assert!(problem["detail"].as_str().unwrap().contains("server.body_read_timeout"), "{problem}");
        // read_to_end returned: the gateway closed the connection too.
        assert!(
            took <= body_read_timeout + Duration::from_secs(1),
            "408 after {took:?}, body_read_timeout is {body_read_timeout:?}"
        );
        took_all.push(took);
    }
    println!("slow bodies, headers to 408 and close: {}", summary(took_all));
    println!("batchGet + lookup while they waited: {}", summary(ready));
}

/// An h2 frame: type, flags, stream, payload.
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

async fn read_frame(s: &mut TcpStream) -> std::io::Result<Frame> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await?;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Ok(Frame { kind: head[3], flags: head[4], stream, payload })
}

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;
const END_STREAM: u8 = 0x1;

/// An h2 client that makes one request and then only answers the server's
/// SETTINGS and PINGs, as a pooled client does while it has nothing to ask.
#[tokio::test]
async fn an_idle_h2_connection_is_closed_although_it_answers_pings() {
    let (header_read_timeout, idle_timeout) = (Duration::from_secs(1), Duration::from_secs(2));
    let gw = Gateway::start(&[
        ("ORDER_GATEWAY__SERVER__HEADER_READ_TIMEOUT", "1s"),
        ("ORDER_GATEWAY__SERVER__IDLE_TIMEOUT", "2s"),
    ])
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    // HPACK: :method GET, :scheme http, :path /healthz, :authority gw (literals without indexing).
    let mut block = vec![0x82, 0x86, 0x04, 8];
    block.extend_from_slice(b"/healthz");
    block.extend_from_slice(&[0x01, 2]);
    block.extend_from_slice(b"gw");
    hello.extend(frame(HEADERS, 0x4 | END_STREAM, 1, &block));
    s.write_all(&hello).await.unwrap();

    let (mut answered, mut pings, mut goaway) = (None, 0, false);
    let give_up = Instant::now() + idle_timeout + header_read_timeout * 2 + Duration::from_secs(10);
    let closed = loop {
        let f = match tokio::time::timeout_at(give_up.into(), read_frame(&mut s)).await {
            Err(_) => break None,
            Ok(Err(_)) => break Some(Instant::now()),
            Ok(Ok(f)) => f,
        };
        match f.kind {
            SETTINGS if f.flags & ACK == 0 => s.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap(),
            PING if f.flags & ACK == 0 => {
                pings += 1;
                // A peer that keeps answering: the write fails only once the server is gone.
                let _ = s.write_all(&frame(PING, ACK, 0, &f.payload)).await;
            }
            HEADERS | DATA if f.stream == 1 && f.flags & END_STREAM != 0 => answered = Some(Instant::now()),
            GOAWAY => goaway = true,
            _ => {}
        }
    };
    let answered = answered.expect("GET /healthz over h2 answered");
    let closed = closed.expect("the idle h2 connection was closed");
    let idle_for = closed - answered;
    println!("h2: answered {pings} pings; GOAWAY {goaway}; closed {idle_for:?} after its last response");
    assert!(goaway, "an idle h2 connection is told GOAWAY before it is closed");
    assert!(pings >= 1, "the server pinged the idle connection (server keep-alive)");
    assert!(
        idle_for <= idle_timeout + header_read_timeout + Duration::from_secs(1),
        "closed {idle_for:?} after the last response (idle_timeout 2 s, then 1 s for the GOAWAY)"
    );
}

#[tokio::test]
async fn the_ingest_metrics_listener_closes_stalled_connections_and_caps_them() {
    use order_gateway::telemetry::serve_metrics_on;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder().handle();
    tokio::spawn(serve_metrics_on(listener, handle, Duration::from_secs(1), 4));

    let bound = Duration::from_secs(2);
    for (kind, bytes) in [("silent", &b""[..]), ("half request line", b"GET /metr")] {
        let took = held(addr, bytes, bound + Duration::from_secs(5)).await.unwrap();
        println!("metrics listener: {kind} socket closed after {took:?}");
        assert!(took.is_some_and(|t| t <= bound), "{kind} socket: closed after {took:?}, the deadline is 1 s");
    }
    // Four silent sockets take every slot: a scrape waits for the deadline to free one.
    let hogs: Vec<_> = (0..4).map(|_| tokio::spawn(held(addr, b"", bound + Duration::from_secs(5)))).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    let r = bare_client().get(format!("http://{addr}/healthz")).send().await.unwrap();
    println!("metrics listener: a scrape behind four silent sockets answered after {:?}", t.elapsed());
    assert_eq!(r.status(), 200);
    for h in hogs {
        let took = h.await.unwrap().unwrap();
        assert!(took.is_some_and(|t| t <= bound), "a silent socket was closed after {took:?}");
    }
}

#[tokio::test]
async fn connection_deadlines_must_be_greater_than_zero() {
    for key in ["IDLE_TIMEOUT", "BODY_READ_TIMEOUT", "HEADER_READ_TIMEOUT"] {
        let var = format!("ORDER_GATEWAY__SERVER__{key}");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_order-gateway"))
            .arg("check-config")
            .env(&var, "0s")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}=0s is refused");
        let err = String::from_utf8_lossy(&out.stderr);
        let name = format!("server.{}", key.to_ascii_lowercase());
        assert!(err.contains(&name) && err.contains("greater than zero"), "{err}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_order-gateway")).arg("check-config").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("idle_timeout = \"1m\"") && text.contains("body_read_timeout = \"5s\""), "{text}");
}
