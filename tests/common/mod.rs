//! Helpers shared by the integration tests: where the real stack listens, how
//! to start the gateway binary against it, and how to stop and start one
//! component of the native stack (scripts/stack) for fault tests.
#![allow(dead_code)]

pub mod haproxy;
pub mod load;
pub mod pipeline;
pub mod sse;
pub mod tls_proxy;
pub mod world;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Address of a backend, from the same variables the gateway reads
/// (`eval "$(scripts/stack/env)"` sets them), else the stack's defaults.
pub fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

pub fn kafka_brokers() -> String {
    env_or("ORDER_GATEWAY__KAFKA__BROKERS", "127.0.0.1:9092")
}
pub fn es_url() -> String {
    env_or("ORDER_GATEWAY__ELASTICSEARCH__URL", "http://127.0.0.1:9200")
}
pub fn clickhouse_url() -> String {
    env_or("ORDER_GATEWAY__CLICKHOUSE__URL", "http://127.0.0.1:8123")
}
pub fn registry_url() -> String {
    env_or("ORDER_GATEWAY__SCHEMA_REGISTRY__URL", "http://127.0.0.1:8081/apis/ccompat/v7")
}

/// A name no other test run uses: tests never collide on topics, indices or tables.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Elasticsearch alias of a test's `id` (aliases are lower case, no `_`).
pub fn alias_of(id: &str) -> String {
    id.to_lowercase().replace('_', "-")
}

/// The environment of a gateway, `setup` or `ingest` whose objects are the
/// test's own: topics, aliases, database and consumer group named after `id`
/// (the CDC topics only with `cdc`), on the stack's backends.
pub fn isolated_env(id: &str, cdc: bool) -> Vec<(String, String)> {
    let alias = alias_of(id);
    [
        ("ORDER_GATEWAY__TOPICS__ORDERS", format!("{id}.orders")),
        ("ORDER_GATEWAY__TOPICS__FULFILLMENTS", format!("{id}.fulfillments")),
        ("ORDER_GATEWAY__TOPICS__DEAD_LETTER", format!("{id}.dlq")),
        // Debezium's names with the test's id as its topic.prefix.
        ("ORDER_GATEWAY__TOPICS__CDC", if cdc { format!("{id}.legacy.orders") } else { String::new() }),
        ("ORDER_GATEWAY__TOPICS__CDC_LINES", if cdc { format!("{id}.legacy.order_lines") } else { String::new() }),
        ("ORDER_GATEWAY__ELASTICSEARCH__READ_ALIAS", alias.clone()),
        ("ORDER_GATEWAY__ELASTICSEARCH__WRITE_ALIAS", format!("{alias}-write")),
        ("ORDER_GATEWAY__CLICKHOUSE__DATABASE", id.to_string()),
        ("ORDER_GATEWAY__INGEST__GROUP_ID", format!("{id}-ingest")),
        ("ORDER_GATEWAY__INGEST__METRICS_LISTEN", format!("127.0.0.1:{}", free_port())),
        ("ORDER_GATEWAY__KAFKA__BROKERS", kafka_brokers()),
        ("ORDER_GATEWAY__ELASTICSEARCH__URL", es_url()),
        ("ORDER_GATEWAY__CLICKHOUSE__URL", clickhouse_url()),
        ("ORDER_GATEWAY__SCHEMA_REGISTRY__URL", registry_url()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A new index of its own behind a new alias, as `setup` makes them, for
/// checks that look through `elasticsearch.read_alias` (the readiness probe).
/// Returns the alias; the index is `<alias>-000001`.
pub async fn es_alias() -> String {
    let alias = alias_of(&unique("it_alias"));
    let es = bare_client();
    let body = serde_json::json!({ "aliases": { alias.clone(): {} }, "settings": { "number_of_replicas": 0 } });
    let created = es.put(format!("{}/{alias}-000001", es_url())).json(&body).send().await.unwrap();
    assert!(created.status().is_success(), "{}", created.text().await.unwrap());
    alias
}

/// Held while a test runs `order-gateway setup`: one at a time per test
/// binary. The stack's registry (Apicurio on in-memory H2) can deadlock on
/// concurrent first registrations until H2's lock timeout, which failed
/// whole test binaries right after the stack started.
pub fn one_setup_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SETUP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SETUP.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `scripts/stack/<action> <component>` and fails the test if it fails.
pub fn stack(action: &str, component: &str) {
    let status = Command::new(repo_root().join("scripts/stack").join(action))
        .arg(component)
        .status()
        .unwrap_or_else(|e| panic!("cannot run scripts/stack/{action}: {e}"));
    assert!(status.success(), "scripts/stack/{action} {component} failed");
}

/// Sends a signal (STOP, CONT) to a component the stack started, by its pid file.
pub fn stack_signal(component: &str, signal: &str) {
    let pid_file = std::env::var("STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".stack"))
        .join("run")
        .join(format!("{component}.pid"));
    let pid = std::fs::read_to_string(&pid_file).unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()));
    let ok = Command::new("kill").args([&format!("-{signal}"), pid.trim()]).status().unwrap().success();
    assert!(ok, "kill -{signal} {component}");
}

/// A free loopback port (bound then released; the gateway binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The API key every test gateway knows, with every scope and no rate limit;
/// [`client`] sends it. Tests of the edge itself use [`bare_client`].
pub const TEST_KEY: &str = "ogw_integration_tests_all_scopes";

/// `auth.keys` holding [`TEST_KEY`] plus `extra` (TOML inline tables).
pub fn keys_env(extra: &[String]) -> String {
    let mut keys = vec![format!(
        "{{name=\"tests\",hash=\"{}\",scopes=[\"orders:read\",\"orders:pii\",\"analytics:read\",\"admin\"],tier=\"unlimited\"}}",
        order_gateway::edge::auth::hash_key(TEST_KEY)
    )];
    keys.extend(extra.iter().cloned());
    format!("[{}]", keys.join(","))
}

/// The binary under test: `ORDER_GATEWAY_BIN` when set (the reliability
/// suite runs the release build), else the one cargo built for the tests.
pub fn gateway_bin() -> PathBuf {
    std::env::var_os("ORDER_GATEWAY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_order-gateway").into())
}

/// Where a test gateway's log lines go: appended to `GATEWAY_LOG` when set
/// (the reliability suite keeps them), else nowhere.
fn gateway_log() -> Stdio {
    match std::env::var_os("GATEWAY_LOG") {
        Some(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map(Stdio::from)
            .unwrap_or_else(|e| panic!("GATEWAY_LOG {}: {e}", PathBuf::from(&path).display())),
        None => Stdio::null(),
    }
}

/// The value of a series in a gateway's /metrics, summed over the lines
/// that start with `prefix`.
pub async fn metric_sum(gw: &Gateway, prefix: &str) -> f64 {
    let text = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

/// The gateway binary running `serve` against the real stack.
pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
    pub base: String,
}

impl Gateway {
    /// Starts `order-gateway serve` with extra environment variables and waits for /healthz.
    pub async fn start(extra_env: &[(&str, &str)]) -> Gateway {
        Gateway::start_with_stdout(extra_env, gateway_log()).await
    }

    /// As [`Gateway::start`], its log (stdout) going to `stdout`.
    pub async fn start_with_stdout(extra_env: &[(&str, &str)], stdout: Stdio) -> Gateway {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut cmd = Command::new(gateway_bin());
        cmd.arg("serve")
            .env("ORDER_GATEWAY__SERVER__LISTEN", addr.to_string())
            .env("ORDER_GATEWAY__KAFKA__BROKERS", kafka_brokers())
            .env("ORDER_GATEWAY__ELASTICSEARCH__URL", es_url())
            .env("ORDER_GATEWAY__CLICKHOUSE__URL", clickhouse_url())
            .env("ORDER_GATEWAY__SCHEMA_REGISTRY__URL", registry_url())
            // Tests of the read path turn the stream on with their own topics.
            .env("ORDER_GATEWAY__STREAM__ENABLED", "false")
            .env("ORDER_GATEWAY__AUTH__KEYS", keys_env(&[]))
            .stdout(stdout)
            .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn order-gateway");
        let gw = Gateway { child, addr, base: format!("http://{addr}") };
        // HTTP/1.1, or h2c for a gateway that speaks only that (server.protocols).
        let clients = [client(), reqwest::Client::builder().http2_prior_knowledge().build().unwrap()];
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for client in &clients {
                if let Ok(r) = client.get(gw.url("/healthz")).send().await {
                    if r.status() == 200 {
                        return gw;
                    }
                }
            }
            assert!(Instant::now() < deadline, "gateway did not answer /healthz within 20s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends SIGTERM, as an orchestrator would.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status().unwrap().success();
        assert!(ok, "kill -TERM {pid}");
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "gateway did not exit within {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client with a deadline, so a hung server fails the test instead of
/// hanging it, sending [`TEST_KEY`]. The gateway under test speaks plain
/// HTTP, so no TLS roots are loaded: loading the system's takes about 25 ms
/// per client in a debug build, and a test that makes 200 clients at once
/// then stalls its own connections past the server's header deadline.
pub fn client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {TEST_KEY}").parse().unwrap());
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(15))
        .default_headers(headers)
        .build()
        .unwrap()
}

/// A client without credentials.
pub fn bare_client() -> reqwest::Client {
    reqwest::Client::builder().tls_built_in_root_certs(false).timeout(Duration::from_secs(15)).build().unwrap()
}

/// Sends `request` and returns the answer's body as JSON, whatever its status.
/// The test fails, naming the request, when nothing answers or the body is
/// not a `T`.
pub async fn json_of<T: DeserializeOwned>(request: RequestBuilder) -> T {
    let (what, response) = send(request).await;
    let body = response.text().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"))
}

/// Sends `request`, fails the test unless the answer has `status` (naming the
/// request and showing the body), and returns its headers and body as JSON.
pub async fn expect_json(request: RequestBuilder, status: u16) -> (HeaderMap, Value) {
    let (what, response) = send(request).await;
    let (got, headers) = (response.status(), response.headers().clone());
    let body = response.text().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(got, status, "{what}: {body}");
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
    (headers, json)
}

/// [`expect_json`] for an error: the answer must also be `application/problem+json`.
pub async fn expect_problem(request: RequestBuilder, status: u16) -> (HeaderMap, Value) {
    let (headers, problem) = expect_json(request, status).await;
    assert_eq!(content_type(&headers), Some("application/problem+json"), "{problem}");
    (headers, problem)
}

/// The problem document of an answer already in hand (its status checked by the caller).
pub async fn problem_of(response: Response) -> Value {
    assert_eq!(content_type(response.headers()), Some("application/problem+json"));
    response.json().await.unwrap()
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok())
}

/// Sends `request`; returns it as "METHOD url" for failure messages, and the answer.
async fn send(request: RequestBuilder) -> (String, Response) {
    let (client, request) = request.build_split();
    let request = request.expect("a well-formed request");
    let what = format!("{} {}", request.method(), request.url());
    let response = client.execute(request).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    (what, response)
}

/// Polls `check` until it returns true or `within` elapses.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
