//! The gateway against secured endpoints: Kafka over SASL_SSL with SCRAM, and
//! Elasticsearch, ClickHouse and the schema registry behind real TLS
//! terminators (nginx, tests/common/tls_proxy.rs) with basic auth, an API key
//! and a client certificate. The whole pipeline (setup, seed, ingest, serve)
//! runs through them, and each way a certificate or a password can be wrong is
//! refused with words that name the backend, the host and the reason.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::tls_proxy::{tls_dir, ProxySpec, ServerCert, TlsProxy};
use common::*;
use order_gateway::backends::{Backend, Backends};
use order_gateway::config::{Config, KafkaSecurity, SaslMechanism, Secret};
use order_gateway::model::{OrderView, Timestamp};
use serde_json::Value;

const ES_USER: &str = "gateway";
const ES_PASSWORD: &str = "es-basic-secret";
const ES_API_KEY: &str = "key-id-1:key-secret-1";
const REGISTRY_USER: &str = "registry-user";
const REGISTRY_PASSWORD: &str = "registry-secret";

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn host_port(url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    format!("{}:{}", u.host_str().unwrap(), u.port_or_known_default().unwrap())
}

fn stack_var(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with eval \"$(scripts/stack/env)\""))
}

fn tls_file(name: &str) -> String {
    tls_dir().join(name).display().to_string()
}

/// A file holding `secret`, for the `*_file` keys (as a mounted Kubernetes
/// secret would, with its trailing newline).
fn secret_file(dir: &std::path::Path, name: &str, secret: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("{secret}\n")).unwrap();
    p.display().to_string()
}

/// The three TLS terminators the secured pipeline goes through.
struct Secured {
    es: TlsProxy,
    clickhouse: TlsProxy,
    registry: TlsProxy,
    dir: PathBuf,
}

impl Secured {
    fn start() -> Secured {
        let es = TlsProxy::start(ProxySpec {
            accept_authorization: vec![
                basic(ES_USER, ES_PASSWORD),
                format!("ApiKey {}", base64::engine::general_purpose::STANDARD.encode(ES_API_KEY)),
            ],
            ..ProxySpec::new(host_port(&es_url()))
        });
        // Mutual TLS; the password is ClickHouse's own user's.
        let clickhouse =
            TlsProxy::start(ProxySpec { require_client_cert: true, ..ProxySpec::new(host_port(&clickhouse_url())) });
        let registry = TlsProxy::start(ProxySpec {
            accept_authorization: vec![basic(REGISTRY_USER, REGISTRY_PASSWORD)],
            ..ProxySpec::new(host_port(&registry_url()))
        });
        let dir = std::env::temp_dir().join(unique("secured"));
        std::fs::create_dir_all(&dir).unwrap();
        Secured { es, clickhouse, registry, dir }
    }

    /// The environment of every command: all four backends through their
    /// secured endpoints, secrets from files.
    fn env(&self) -> Vec<(String, String)> {
        let registry_path = url::Url::parse(&registry_url()).unwrap().path().to_string();
        let ca = tls_file("ca.pem");
        [
            ("KAFKA__BROKERS", stack_var("STACK_KAFKA_SASL_BROKERS")),
            ("KAFKA__SECURITY_PROTOCOL", "sasl_ssl".into()),
            ("KAFKA__SASL_MECHANISM", "SCRAM-SHA-512".into()),
            ("KAFKA__SASL_USERNAME", stack_var("STACK_KAFKA_SCRAM_USER")),
            (
                "KAFKA__SASL_PASSWORD_FILE",
                secret_file(&self.dir, "kafka-password", &stack_var("STACK_KAFKA_SCRAM_PASSWORD")),
            ),
            ("KAFKA__TLS__CA_FILE", ca.clone()),
            ("ELASTICSEARCH__URL", self.es.url()),
            ("ELASTICSEARCH__USERNAME", ES_USER.into()),
            ("ELASTICSEARCH__PASSWORD_FILE", secret_file(&self.dir, "es-password", ES_PASSWORD)),
            ("ELASTICSEARCH__TLS__CA_FILE", ca.clone()),
            ("CLICKHOUSE__URL", self.clickhouse.url()),
            ("CLICKHOUSE__USER", stack_var("STACK_CLICKHOUSE_TLS_USER")),
            ("CLICKHOUSE__PASSWORD", stack_var("STACK_CLICKHOUSE_TLS_PASSWORD")),
            ("CLICKHOUSE__TLS__CA_FILE", ca.clone()),
            ("CLICKHOUSE__TLS__CLIENT_CERT_FILE", tls_file("client.pem")),
            ("CLICKHOUSE__TLS__CLIENT_KEY_FILE", tls_file("client.key")),
            ("SCHEMA_REGISTRY__URL", format!("{}{registry_path}", self.registry.url())),
            ("SCHEMA_REGISTRY__USERNAME", REGISTRY_USER.into()),
            ("SCHEMA_REGISTRY__PASSWORD", REGISTRY_PASSWORD.into()),
            ("SCHEMA_REGISTRY__TLS__CA_FILE", ca),
        ]
        .into_iter()
        .map(|(k, v)| (format!("ORDER_GATEWAY__{k}"), v))
        .collect()
    }

    /// The environment's configuration, with every backend secured.
    fn config(&self) -> Config {
        let mut cfg = Config::load(None).expect("configuration from the environment");
        let registry_path = url::Url::parse(&registry_url()).unwrap().path().to_string();
        cfg.kafka.brokers = stack_var("STACK_KAFKA_SASL_BROKERS");
        cfg.kafka.security_protocol = KafkaSecurity::SaslSsl;
        cfg.kafka.sasl_mechanism = SaslMechanism::ScramSha512;
        cfg.kafka.sasl_username = stack_var("STACK_KAFKA_SCRAM_USER");
        cfg.kafka.sasl_password = Secret::from(stack_var("STACK_KAFKA_SCRAM_PASSWORD").as_str());
        cfg.kafka.tls.ca_file = tls_file("ca.pem");
        cfg.elasticsearch.url = self.es.url().parse().unwrap();
        cfg.elasticsearch.api_key = Secret::from(ES_API_KEY);
        cfg.elasticsearch.tls.ca_file = tls_file("ca.pem");
        cfg.clickhouse.url = self.clickhouse.url().parse().unwrap();
        cfg.clickhouse.user = stack_var("STACK_CLICKHOUSE_TLS_USER");
        cfg.clickhouse.password = Secret::from(stack_var("STACK_CLICKHOUSE_TLS_PASSWORD").as_str());
        cfg.clickhouse.tls.ca_file = tls_file("ca.pem");
        cfg.clickhouse.tls.client_cert_file = tls_file("client.pem");
        cfg.clickhouse.tls.client_key_file = tls_file("client.key");
        cfg.schema_registry.url = format!("{}{registry_path}", self.registry.url()).parse().unwrap();
        cfg.schema_registry.username = REGISTRY_USER.into();
        cfg.schema_registry.password = Secret::from(REGISTRY_PASSWORD);
        cfg.schema_registry.tls.ca_file = tls_file("ca.pem");
        cfg
    }
}

impl Drop for Secured {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(env: &[(String, String)], args: &[&str]) -> String {
    let _one_at_a_time = (args.first() == Some(&"setup")).then(one_setup_at_a_time);
    let out = Command::new(env!("CARGO_BIN_EXE_order-gateway"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("ORDER_GATEWAY__LOG__FORMAT", "text")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "order-gateway {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `setup`, `seed`, `ingest` and `serve` with every backend secured: the
/// orders seeded through SASL_SSL are found through the gateway, whose
/// lookups, searches, analytics and schema fetches all pass through TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_pipeline_runs_through_sasl_ssl_and_tls() {
    let secured = Secured::start();
    let id = unique("it_tls");
    let mut env = isolated_env(&id, false);
    env.retain(|(k, _)| !secured.env().iter().any(|(s, _)| s == k));
    env.extend(secured.env());
    env.push(("ORDER_GATEWAY__TOPICS__ORDERS_FORMAT".into(), "avro".into()));
    env.push(("ORDER_GATEWAY__TOPICS__FULFILLMENTS_FORMAT".into(), "avro".into()));

    run(&env, &["setup"]);
    let truth = secured.dir.join("truth.jsonl");
    run(&env, &["seed", "--orders", "30", "--seed", "13", "--truth", truth.to_str().unwrap()]);
    run(&env, &["ingest", "--exit-when-idle", "3s"]);
    let views: Vec<OrderView> =
        std::fs::read_to_string(&truth).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let newest = views.iter().max_by_key(|v| v.order.as_ref().map(|o| o.created_at.millis())).unwrap();
    let order = newest.order.as_ref().unwrap();

    let mut serve_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    serve_env.push(("ORDER_GATEWAY__STREAM__ENABLED", "true"));
    let gw = Gateway::start(&serve_env).await;
    let client = client();

    eventually(Duration::from_secs(30), "every backend ready through TLS", || {
        let (client, url) = (client.clone(), gw.url("/readyz"));
        async move {
            let Ok(r) = client.get(url).send().await else { return false };
            let r: Value = r.json().await.unwrap_or_default();
            ["elasticsearch", "clickhouse", "kafka", "schema_registry", "stream"]
                .iter()
                .all(|b| r["checks"][b]["status"] == "up")
        }
    })
    .await;
    let (_, got) = expect_json(client.get(gw.url(&format!("/v1/orders/{}", newest.order_id))), 200).await;
    assert_eq!(world::version_of(&got), order.version, "{got}");
    let (_, list) = expect_json(client.get(gw.url(&format!("/v1/customers/{}/orders", order.customer_id))), 200).await;
    assert!(list.to_string().contains(&newest.order_id), "{list}");
    let now = Timestamp::now().millis();
    let range = format!(
        "from={}&to={}",
        Timestamp(now - 3 * 365 * 86_400_000).to_rfc3339(),
        Timestamp(now + 86_400_000).to_rfc3339()
    );
    let (_, kpis) = expect_json(client.get(gw.url(&format!("/v1/analytics/kpis?{range}"))), 200).await;
    assert!(kpis.to_string().contains("orders"), "{kpis}");
}

/// Each way a server certificate can be wrong, said in words: a certificate
/// of an unknown CA, one for another host, an expired one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_certificate_names_the_backend_the_host_and_the_reason() {
    let es = host_port(&es_url());
    for (cert, ca, reason) in [
        (ServerCert::Good, "other-ca.pem", "unknown issuer"),
        (ServerCert::WrongName, "ca.pem", "name mismatch"),
        (ServerCert::Expired, "ca.pem", "expired"),
    ] {
        let proxy = TlsProxy::start(ProxySpec { cert, ..ProxySpec::new(es.clone()) });
        let mut cfg = Config::load(None).unwrap();
        cfg.elasticsearch.url = proxy.url().parse().unwrap();
        cfg.elasticsearch.tls.ca_file = tls_file(ca);
        let backends = Backends::from_config(&cfg).unwrap();
        let err = backends.ping(Backend::Elasticsearch).await.expect_err("refused").to_string();
        let host = format!("localhost:{}", proxy.port);
        assert!(err.contains("elasticsearch") && err.contains(&host) && err.contains(reason), "{cert:?}: {err}");
    }
    // The same words from the other HTTP clients (rustls configured by the gateway).
    let proxy =
        TlsProxy::start(ProxySpec { cert: ServerCert::Expired, ..ProxySpec::new(host_port(&clickhouse_url())) });
    let mut cfg = Config::load(None).unwrap();
    cfg.clickhouse.url = proxy.url().parse().unwrap();
    cfg.clickhouse.tls.ca_file = tls_file("ca.pem");
    let registry =
        TlsProxy::start(ProxySpec { cert: ServerCert::WrongName, ..ProxySpec::new(host_port(&registry_url())) });
    cfg.schema_registry.url = format!("{}/apis/ccompat/v7", registry.url()).parse().unwrap();
    cfg.schema_registry.tls.ca_file = tls_file("ca.pem");
    let backends = Backends::from_config(&cfg).unwrap();
    let err = backends.ping(Backend::ClickHouse).await.expect_err("expired").to_string();
    assert!(
        err.contains("clickhouse") && err.contains(&format!("localhost:{}", proxy.port)) && err.contains("expired"),
        "{err}"
    );
    let err = backends.ping(Backend::SchemaRegistry).await.expect_err("name").to_string();
    assert!(err.contains("schema_registry") && err.contains("name mismatch"), "{err}");
}

/// Credentials that are missing or wrong are refused, and the right ones pass:
/// the API key and basic auth in front of Elasticsearch, the client
/// certificate ClickHouse's terminator demands, ClickHouse's own password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_client_certificates_are_sent_and_required() {
    let secured = Secured::start();
    let mut cfg = secured.config();
    // Elasticsearch's probe looks at the indices behind the read alias.
    cfg.elasticsearch.read_alias = es_alias().await;
    let backends = Backends::from_config(&cfg).unwrap();
    for b in [Backend::Elasticsearch, Backend::ClickHouse, Backend::SchemaRegistry, Backend::Kafka] {
        backends.ping(b).await.unwrap_or_else(|e| panic!("{b} through its secured endpoint: {e}"));
    }

    let mut no_cert = cfg.clone();
    no_cert.clickhouse.tls.client_cert_file.clear();
    no_cert.clickhouse.tls.client_key_file.clear();
    let err = Backends::from_config(&no_cert).unwrap().ping(Backend::ClickHouse).await.unwrap_err().to_string();
    assert!(err.contains("No required SSL certificate was sent"), "{err}");

    let mut wrong = cfg.clone();
    wrong.clickhouse.password = Secret::from("not-the-password");
    wrong.elasticsearch.api_key = Secret::from("key-id-1:not-the-key");
    wrong.schema_registry.password = Secret::from("not-the-password");
    let b = Backends::from_config(&wrong).unwrap();
    let err = b.ping(Backend::ClickHouse).await.unwrap_err().to_string();
    assert!(err.contains("gateway_tls") || err.contains("516") || err.contains("password"), "{err}");
    assert!(!err.contains("not-the-password"), "a password in an error: {err}");
    let err = b.ping(Backend::Elasticsearch).await.unwrap_err().to_string();
    assert!(err.contains("401"), "{err}");
    let err = b.ping(Backend::SchemaRegistry).await.unwrap_err().to_string();
    assert!(err.contains("401"), "{err}");

    let mut basic = cfg.clone();
    basic.elasticsearch.api_key = Secret::default();
    basic.elasticsearch.username = ES_USER.into();
    basic.elasticsearch.password = Secret::from(ES_PASSWORD);
    Backends::from_config(&basic).unwrap().ping(Backend::Elasticsearch).await.expect("basic auth");
}

/// A wrong SCRAM password and a broker certificate of an unknown CA fail the
/// first Kafka call within its deadline, saying which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_refusals_are_said_not_waited_on() {
    let secured = Secured::start();
    let cfg = secured.config();
    let mut wrong_password = cfg.clone();
    wrong_password.kafka.sasl_password = Secret::from("not-the-password");
    let mut unknown_ca = cfg.clone();
    unknown_ca.kafka.tls.ca_file = tls_file("other-ca.pem");
    for (cfg, words) in [(wrong_password, "Authentication failed"), (unknown_ca, "certificate verify failed")] {
        let backends = Backends::from_config(&cfg).unwrap();
        let started = Instant::now();
        let err = backends.ping(Backend::Kafka).await.expect_err("refused").to_string();
        assert!(err.contains(words), "{err}");
        assert!(!err.contains("not-the-password"), "a password in an error: {err}");
        assert!(started.elapsed() < cfg.kafka.timeout + Duration::from_secs(5), "took {:?}", started.elapsed());
    }

    // `seed` asks the brokers before producing, so it says so at once too.
    let mut env = secured.env();
    env.retain(|(k, _)| k != "ORDER_GATEWAY__KAFKA__SASL_PASSWORD_FILE");
    env.push(("ORDER_GATEWAY__KAFKA__SASL_PASSWORD".into(), "not-the-password".into()));
    env.push(("ORDER_GATEWAY__TOPICS__ORDERS_FORMAT".into(), "json".into()));
    env.push(("ORDER_GATEWAY__TOPICS__FULFILLMENTS_FORMAT".into(), "json".into()));
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_order-gateway"))
        .args(["seed", "--orders", "5", "--seed", "1"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("Authentication failed"), "{stderr}");
    assert!(!stderr.contains("not-the-password"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
}

/// `check-config` refuses a librdkafka property that does not exist, naming
/// it, and warns about plain text to another host.
#[test]
fn check_config_names_an_unknown_kafka_property_and_warns_about_plain_text() {
    let dir = std::env::temp_dir().join(unique("check"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.toml");
    std::fs::write(&file, "[kafka.options]\n\"fetch.max.bytez\" = \"1048576\"\n\"ssl.key.password\" = \"hunter2\"\n")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_order-gateway"))
        .args(["--config", file.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("kafka.options.\"fetch.max.bytez\"") && !stderr.contains("hunter2"), "{stderr}");

    std::fs::write(&file, "[kafka.options]\n\"fetch.max.bytes\" = 1048576\n\"ssl.key.password\" = \"hunter2\"\n")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_order-gateway"))
        .args(["--config", file.to_str().unwrap(), "check-config"])
        .env("ORDER_GATEWAY__ELASTICSEARCH__URL", "http://es.internal.example:9200")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.contains("hunter2") && stdout.contains("fetch.max.bytes"), "{stdout}");
    assert!(stderr.contains("warning: elasticsearch.url") && stderr.contains("https"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Brokers that authenticate clients by certificate (`ssl`, mutual TLS): the
/// configured client certificate gets in, no certificate is refused in words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_over_mutual_tls_takes_the_client_certificate() {
    let mut cfg = Config::load(None).unwrap();
    cfg.kafka.brokers = stack_var("STACK_KAFKA_SSL_BROKERS");
    cfg.kafka.security_protocol = KafkaSecurity::Ssl;
    cfg.kafka.tls.ca_file = tls_file("ca.pem");
    cfg.kafka.tls.client_cert_file = tls_file("client.pem");
    cfg.kafka.tls.client_key_file = tls_file("client.key");
    let topics = Backends::from_config(&cfg).unwrap().kafka.topics().await.expect("topics over mutual TLS");
    assert!(!topics.is_empty());

    cfg.kafka.tls.client_cert_file.clear();
    cfg.kafka.tls.client_key_file.clear();
    let err = Backends::from_config(&cfg).unwrap().ping(Backend::Kafka).await.expect_err("refused").to_string();
    assert!(err.contains("SSL") || err.contains("certificate"), "{err}");
}
