//! Live order updates (Server-Sent Events) against the real stack: events
//! produced to Kafka reach subscribers through the gateway's stream and cache.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::sse::{stream_client, stream_client_builder, Sse};
use common::world::*;
use common::*;
use rdkafka::producer::FutureRecord;

async fn produce(topic: &str, o: order_gateway::model::Order) {
    let key = o.order_id.clone();
    producer().send(FutureRecord::to(topic).key(&key).payload(&event(o)), Duration::from_secs(10)).await.unwrap();
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn an_order_stream_sends_the_view_then_each_version_in_order_and_resumes_from_last_event_id() {
    let w = World::new();
    let gw = w.gateway(&[("ORDER_GATEWAY__SUBSCRIBE__HEARTBEAT", "300ms")]).await;
    let id = format!("live-{}", uuid::Uuid::new_v4().simple());
    w.index_order(order(&id, 1)).await;
    let c = stream_client(false);
    let url = gw.url(&format!("/v1/orders/{id}/events"));

    let mut s = Sse::open(&c, &url, None).await;
    let first = s.expect("order", Duration::from_secs(5)).await;
    assert_eq!(version_of(&first.json()), 1);
    let first_token = first.id.clone().expect("an order event has an id");

    let sent_at = Instant::now();
    produce(&w.orders_topic, order(&id, 2)).await;
    let second = s.expect("order", Duration::from_secs(10)).await;
    println!("produce to pushed: {:?}", sent_at.elapsed());
    assert_eq!(version_of(&second.json()), 2);
    for v in 3..=5 {
        produce(&w.orders_topic, order(&id, v)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut seen = vec![2];
    while *seen.last().unwrap() < 5 {
        let ev = s.expect("order", Duration::from_secs(10)).await;
        seen.push(version_of(&ev.json()));
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "versions only rise: {seen:?}");
    // Nothing more was produced: heartbeats only.
    assert!(s.next(Duration::from_millis(800)).await.is_none(), "no event without a change");
    assert!(s.comments >= 1, "a heartbeat comment within 800 ms (subscribe.heartbeat = 300ms)");
    drop(s);

    // Resuming from the latest version: no view is sent again, the next change is.
    let mut fifth = Sse::open(&c, &url, None).await;
    let token5 = fifth.expect("order", Duration::from_secs(5)).await.id.unwrap();
    drop(fifth);
    let mut resumed = Sse::open(&c, &url, Some(&token5)).await;
    assert!(resumed.next(Duration::from_millis(700)).await.is_none(), "the client already has version 5");
    produce(&w.orders_topic, order(&id, 6)).await;
    assert_eq!(version_of(&resumed.expect("order", Duration::from_secs(10)).await.json()), 6);
    // Resuming from version 1: the current view first.
    let mut behind = Sse::open(&c, &url, Some(&first_token)).await;
    assert_eq!(version_of(&behind.expect("order", Duration::from_secs(5)).await.json()), 6);

    // The order leaves the cache (evicted, or expired); a change after that
    // still reaches its subscribers, whole: the subscriber's last view with
    // the change merged in (Elasticsearch, still at version 1, is behind).
    let evicted = client().delete(gw.url(&format!("/admin/cache/orders/{id}"))).send().await.unwrap();
    assert!(evicted.status().is_success(), "{}", evicted.status());
    produce(&w.orders_topic, order(&id, 7)).await;
    for stream in [&mut resumed, &mut behind] {
        let ev = stream.expect("order", Duration::from_secs(10)).await;
        assert_eq!(version_of(&ev.json()), 7);
        assert_eq!(ev.json()["order"]["email"], "someone@example.com", "the whole view");
    }
    let r = client().get(gw.url(&format!("/v1/orders/{id}"))).send().await.unwrap();
    assert_eq!(r.headers()["x-cache"], "HIT", "the completed view is cached again");

    // A deleted order: `deleted`, then the stream ends.
    let mut gone = order(&id, 8);
    gone.deleted = true;
    produce(&w.orders_topic, gone).await;
    for stream in [&mut resumed, &mut behind] {
        let ev = stream.expect("deleted", Duration::from_secs(10)).await;
        assert_eq!(ev.json()["order_id"], id.as_str());
        assert!(stream.next(Duration::from_secs(5)).await.is_none() && stream.ended, "the stream ends after `deleted`");
    }
    // A client that missed `deleted` (it was reconnecting) and resumes with
    // its last id is told `deleted`, and the stream ends; a new subscriber
    // of the deleted order is answered 404, as a lookup is.
    let mut late = Sse::open(&c, &url, Some(&token5)).await;
    let ev = late.expect("deleted", Duration::from_secs(5)).await;
    assert_eq!(ev.json()["order_id"], id.as_str());
    assert!(late.next(Duration::from_secs(2)).await.is_none() && late.ended, "the resumed stream ends after `deleted`");
    let (_, p) = expect_problem(client().get(&url), 404).await;
    assert!(p["detail"].as_str().unwrap().contains("was deleted"), "{p}");

    // Bad requests are problems, not streams.
    let (_, p) = expect_problem(client().get(&url).header("last-event-id", "zzz"), 400).await;
    assert!(p["detail"].as_str().unwrap().contains("does not start with 'o'"), "{p}");
    assert_eq!(p["invalid_params"][0]["name"], "Last-Event-ID");
    let (_, p) = expect_problem(client().get(gw.url("/v1/orders/no-such-order-live/events")), 404).await;
    assert!(p["detail"].as_str().unwrap().contains("no-such-order-live"), "{p}");
}

const READER: &str = "ogw_live_reader_without_pii";

#[tokio::test]
async fn a_reader_without_pii_scope_never_sees_pii_and_stream_limits_hold_and_sigterm_ends_streams() {
    let w = World::new();
    let keys = keys_env(&[format!(
        "{{name=\"reader\",hash=\"{}\",scopes=[\"orders:read\"],tier=\"unlimited\"}}",
        order_gateway::edge::auth::hash_key(READER)
    )]);
    let gw = w
        .gateway(&[
            ("ORDER_GATEWAY__AUTH__KEYS", &keys),
            ("ORDER_GATEWAY__SUBSCRIBE__MAX_STREAMS_PER_CLIENT", "2"),
            ("ORDER_GATEWAY__SERVER__SHUTDOWN_DELAY", "300ms"),
        ])
        .await;
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("x-api-key", READER.parse().unwrap());
    let reader = reqwest::Client::builder().tls_built_in_root_certs(false).default_headers(h).build().unwrap();
    let customer = format!("cust-{}", uuid::Uuid::new_v4().simple());
    let mut o = order(&format!("live-pii-{}", uuid::Uuid::new_v4().simple()), 1);
    o.customer_id = customer.clone();
    let id = o.order_id.clone();
    w.index_order(o.clone()).await;

    let mut by_order = Sse::open(&reader, &gw.url(&format!("/v1/orders/{id}/events")), None).await;
    let first = by_order.expect("order", Duration::from_secs(5)).await;
    assert!(first.json()["order"].get("email").is_none(), "no e-mail without orders:pii: {}", first.data);
    let mut by_customer = Sse::open(&reader, &gw.url(&format!("/v1/customers/{customer}/orders/events")), None).await;

    // The client's third stream is refused; another client's is not.
    let (_, p) = expect_problem(reader.get(gw.url(&format!("/v1/orders/{id}/events"))), 429).await;
    assert_eq!(p["type"], "urn:order-gateway:problem:too-many-streams");
    assert!(p["detail"].as_str().unwrap().contains("subscribe.max_streams_per_client"), "{p}");
    let mut with_pii = Sse::open(&stream_client(false), &gw.url(&format!("/v1/orders/{id}/events")), None).await;
    assert_eq!(with_pii.expect("order", Duration::from_secs(5)).await.json()["order"]["email"], "someone@example.com");

    // A change, and a new order of the customer.
    let mut o2 = o.clone();
    o2.version = 2;
    produce(&w.orders_topic, o2).await;
    let mut new_order = order(&format!("live-new-{}", uuid::Uuid::new_v4().simple()), 1);
    new_order.customer_id = customer.clone();
    produce(&w.orders_topic, new_order.clone()).await;
    let ev = by_order.expect("order", Duration::from_secs(10)).await;
    assert_eq!(version_of(&ev.json()), 2);
    assert!(!ev.data.contains("someone@example.com"));
    let mut got = Vec::new();
    while got.len() < 2 {
        let ev = by_customer.expect("order", Duration::from_secs(10)).await;
        assert!(!ev.data.contains("someone@example.com"), "{}", ev.data);
        got.push(ev.json()["order"]["order_id"].as_str().unwrap().to_string());
    }
    assert_eq!(got, [id.clone(), new_order.order_id.clone()]);
    assert_eq!(version_of(&with_pii.expect("order", Duration::from_secs(10)).await.json()), 2);

    // SIGTERM: every stream gets `shutdown` and ends; the process exits well within its grace.
    let mut gw = gw;
    let t = Instant::now();
    gw.terminate();
    for s in [&mut by_order, &mut by_customer, &mut with_pii] {
        let ev = s.expect("shutdown", Duration::from_secs(10)).await;
        assert!(ev.json()["detail"].as_str().unwrap().contains("Last-Event-ID"));
        assert!(s.next(Duration::from_secs(5)).await.is_none() && s.ended);
    }
    assert_eq!(gw.wait_exit(Duration::from_secs(20)).await, Some(0));
    println!("SIGTERM to exit with three open streams: {:?}", t.elapsed());
}

/// An HTTP/1.1 subscriber that sends its request and then reads nothing.
fn stalled_subscriber(gw: &Gateway, path: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {TEST_KEY}\r\n\r\n").unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_over_h2c_see_versions_only_rise_and_a_reader_that_stops_is_cut() {
    const ORDERS: usize = 10;
    const PER_ORDER: usize = 100;
    const VERSIONS: u64 = 20;
    let w = World::new();
    let gw = w
        .gateway(&[
            ("ORDER_GATEWAY__SUBSCRIBE__MAX_STREAMS_PER_CLIENT", "2000"),
            ("ORDER_GATEWAY__SUBSCRIBE__MAX_LAG", "5s"),
        ])
        .await;
    let pid = gw.child.id();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let ids: Vec<String> = (0..ORDERS).map(|i| format!("live-k-{run}-{i}")).collect();
    for id in &ids {
        w.index_order(order(id, 1)).await;
    }
    // The stalled reader follows an order with large views (many lines).
    let big_id = format!("live-big-{run}");
    let big = |v: u64| big_order(&big_id, v);
    w.index_order(big(1)).await;
    let rss_before = rss_kib(pid);

    // Ten h2c connections, a hundred streams each.
    let clients: Vec<reqwest::Client> = (0..ORDERS).map(|_| stream_client(true)).collect();
    let mut subscribers = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        for j in 0..PER_ORDER {
            let (c, url) = (c.clone(), gw.url(&format!("/v1/orders/{}/events", ids[(i + j) % ORDERS])));
            subscribers.push(tokio::spawn(async move {
                let mut s = Sse::open(&c, &url, None).await;
                let mut seen = Vec::new();
                while seen.last() != Some(&(VERSIONS + 1)) {
                    let ev = s.expect("order", Duration::from_secs(60)).await;
                    seen.push(version_of(&ev.json()));
                }
                seen
            }));
        }
    }
    eventually(Duration::from_secs(60), "a thousand streams open", || async {
        metric_sum(&gw, "live_subscribers").await >= (ORDERS * PER_ORDER) as f64
    })
    .await;
    let rss_open = rss_kib(pid);
    let mut stalled = stalled_subscriber(&gw, &format!("/v1/orders/{big_id}/events"));

    // Updates flow: every order through VERSIONS more versions, and the
    // stalled reader's order through many large ones.
    let p = producer();
    let started = Instant::now();
    for v in 2..=VERSIONS + 1 {
        for id in &ids {
            let o = order(id, v);
            p.send(FutureRecord::to(&w.orders_topic).key(id).payload(&event(o)), Duration::from_secs(10))
                .await
                .unwrap();
        }
    }
    let mut v = 2;
    while started.elapsed() < Duration::from_secs(4) || metric_sum(&gw, "live_lagged_total").await < 1.0 {
        for _ in 0..50 {
            p.send(FutureRecord::to(&w.orders_topic).key(&big_id).payload(&event(big(v))), Duration::from_secs(10))
                .await
                .unwrap();
            v += 1;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the stalled reader was never found lagging");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("{} large versions produced before the stalled reader lagged", v - 2);

    let mut max_seen = 0;
    for s in subscribers {
        let seen = s.await.unwrap();
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "a version went down: {seen:?}");
        max_seen = max_seen.max(seen.len());
    }
    let rss_after = rss_kib(pid);
    let coalesced = metric_sum(&gw, "live_coalesced_total").await;
    println!(
        "gateway RSS: {rss_before} KiB before, {rss_open} KiB with {} streams open ({:.1} KiB per stream), {rss_after} KiB after the updates; {coalesced} versions coalesced",
        ORDERS * PER_ORDER,
        (rss_open.saturating_sub(rss_before)) as f64 / (ORDERS * PER_ORDER) as f64
    );
    // The stalled reader's waiting version was replaced by each newer one
    // until it had waited subscribe.max_lag.
    assert!(coalesced >= 1.0, "versions were coalesced before the stalled reader lagged");
    assert!(
        rss_open.saturating_sub(rss_before) < 100 * 1024,
        "a thousand streams should take well under 100 MiB: {rss_before} -> {rss_open} KiB"
    );

    // The stalled reader's connection is cut (5 s after it lagged): reading
    // now drains what was buffered and ends.
    stalled.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let t = Instant::now();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0usize;
    loop {
        match stalled.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
        assert!(t.elapsed() < Duration::from_secs(30), "the stalled reader's connection was not cut");
    }
    println!("the stalled reader's connection ended after {total} bytes");
    // The gateway still answers lookups and new subscriptions.
    let mut again = Sse::open(&stream_client(false), &gw.url(&format!("/v1/orders/{}/events", ids[0])), None).await;
    assert_eq!(version_of(&again.expect("order", Duration::from_secs(5)).await.json()), VERSIONS + 1);
}

/// An order with a large view (150 lines, some kilobytes).
fn big_order(id: &str, v: u64) -> order_gateway::model::Order {
    let mut o = order(id, v);
    o.lines = (0..150)
        .map(|i| order_gateway::model::OrderLine {
            line_id: format!("l{i}"),
            sku: format!("SKU-{i:06}"),
            name: "A line long enough to make the view weigh some kilobytes".into(),
            quantity: 1,
            unit_price: 100,
            status: order_gateway::model::LineStatus::Open,
        })
        .collect();
    o
}

/// A stream that lags on an h2 connection does not take the connection's
/// other streams down with it (a mesh's proxy multiplexes many clients on
/// one connection): the connection sends GOAWAY and closes
/// `server.header_read_timeout` later; until then the others are served.
#[tokio::test]
async fn a_stream_lagging_on_h2_leaves_the_connections_other_streams_served_until_it_closes() {
    let w = World::new();
    let gw = w
        .gateway(&[("ORDER_GATEWAY__SUBSCRIBE__MAX_LAG", "2s"), ("ORDER_GATEWAY__SERVER__HEADER_READ_TIMEOUT", "10s")])
        .await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (slow_id, other_id) = (format!("live-h2slow-{run}"), format!("live-h2other-{run}"));
    w.index_order(big_order(&slow_id, 1)).await;
    w.index_order(order(&other_id, 1)).await;
    // One h2 connection carries both streams, with a stream window of 64 KiB
    // (reqwest's default is 2 MiB): the unread stream's window fills after a
    // few large views, and only flow control holds its body back.
    let c = stream_client_builder(true).http2_initial_stream_window_size(65_535).build().unwrap();
    let _slow = Sse::open(&c, &gw.url(&format!("/v1/orders/{slow_id}/events")), None).await; // never read
    let mut other = Sse::open(&c, &gw.url(&format!("/v1/orders/{other_id}/events")), None).await;
    assert_eq!(version_of(&other.expect("order", Duration::from_secs(5)).await.json()), 1);

    // Large versions until the unread stream has filled its window and lagged.
    let p = producer();
    let started = Instant::now();
    let mut v = 2;
    while metric_sum(&gw, "live_lagged_total").await < 1.0 {
        for _ in 0..50 {
            p.send(
                FutureRecord::to(&w.orders_topic).key(&slow_id).payload(&event(big_order(&slow_id, v))),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
            v += 1;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the unread stream was never found lagging");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its connection is cut 5 s after it lagged; the other stream is still
    // served after that.
    tokio::time::sleep(Duration::from_secs(6)).await;
    produce(&w.orders_topic, order(&other_id, 2)).await;
    let ev = other.expect("order", Duration::from_secs(3)).await;
    assert_eq!(version_of(&ev.json()), 2, "the other stream is served after the cut");
    // Then the connection closes, header_read_timeout (10 s) after the cut.
    let t = Instant::now();
    while other.next(Duration::from_secs(25)).await.is_some() {}
    assert!(other.ended, "the cut connection closes, the stalled stream with it");
    assert!(t.elapsed() < Duration::from_secs(25), "{:?}", t.elapsed());
}

/// The last `"version":` of a view's JSON: the order's, for a view without
/// fulfilments. Cheaper than parsing the view: the benchmark's client shares
/// the machine's two cores with the gateway.
fn last_version(data: &str) -> u64 {
    let at = data.rfind("\"version\":").expect("a view has a version") + "\"version\":".len();
    data[at..].bytes().take_while(u8::is_ascii_digit).fold(0, |v, d| v * 10 + u64::from(d - b'0'))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The benchmark of BENCHMARKS.md ("Live updates"): produce → pushed latency
/// with 1 and with 1,000 subscribers of one order, and the gateway's resident
/// memory per open stream. `make bench-live` runs it against the release
/// binary; it asserts nothing about time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: make bench-live"]
async fn live_push_benchmark() {
    let updates: u64 = std::env::var("LIVE_UPDATES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let w = World::new();
    let gw = w.gateway(&[("ORDER_GATEWAY__SUBSCRIBE__MAX_STREAMS_PER_CLIENT", "2000")]).await;
    let pid = gw.child.id();
    let p = producer();
    let run = uuid::Uuid::new_v4().simple().to_string();

    // One subscriber: each update produced, acknowledged, then awaited.
    let one = format!("live-bench-one-{run}");
    w.index_order(order(&one, 1)).await;
    let mut s = Sse::open(&stream_client(false), &gw.url(&format!("/v1/orders/{one}/events")), None).await;
    s.expect("order", Duration::from_secs(5)).await;
    let mut lat = Vec::new();
    for v in 2..updates + 2 {
        let t0 = Instant::now();
        p.send(FutureRecord::to(&w.orders_topic).key(&one).payload(&event(order(&one, v))), Duration::from_secs(10))
            .await
            .unwrap();
        let ev = s.expect("order", Duration::from_secs(10)).await;
        assert_eq!(version_of(&ev.json()), v);
        lat.push(t0.elapsed());
    }
    lat.sort();
    println!(
        "1 subscriber, {updates} updates: produce -> pushed p50 {:?} p99 {:?} max {:?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().unwrap()
    );
    drop(s);

    // A thousand subscribers of one order over ten h2c connections.
    let many = format!("live-bench-many-{run}");
    w.index_order(order(&many, 1)).await;
    let rss_before = rss_kib(pid);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let c = stream_client(true);
        for _ in 0..100 {
            let (c, url, tx) = (c.clone(), gw.url(&format!("/v1/orders/{many}/events")), tx.clone());
            tasks.push(tokio::spawn(async move {
                let mut s = Sse::open(&c, &url, None).await;
                loop {
                    let ev = s.expect("order", Duration::from_secs(60)).await;
                    let v = last_version(&ev.data);
                    let _ = tx.send((v, Instant::now()));
                    if v == updates + 1 {
                        return;
                    }
                }
            }));
        }
    }
    drop(tx);
    eventually(Duration::from_secs(60), "a thousand streams open", || async {
        metric_sum(&gw, "live_subscribers").await >= 1000.0
    })
    .await;
    let rss_open = rss_kib(pid);
    // One update every 50 ms: each reaches every subscriber before the next.
    let mut produced = std::collections::HashMap::new();
    for v in 2..updates + 2 {
        produced.insert(v, Instant::now());
        p.send(FutureRecord::to(&w.orders_topic).key(&many).payload(&event(order(&many, v))), Duration::from_secs(10))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut lat = Vec::new();
    while let Some((v, at)) = rx.recv().await {
        if let Some(t0) = produced.get(&v) {
            lat.push(at.saturating_duration_since(*t0));
        }
    }
    lat.sort();
    println!(
        "1,000 subscribers, {updates} updates: {} deliveries, produce -> pushed p50 {:?} p99 {:?} max {:?}; coalesced {}",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().unwrap(),
        metric_sum(&gw, "live_coalesced_total").await
    );
    println!(
        "gateway RSS {rss_before} KiB -> {rss_open} KiB with 1,000 streams open: {:.1} KiB per stream",
        rss_open.saturating_sub(rss_before) as f64 / 1000.0
    );
}
