//! What a client, a probe or an operator's terminal can learn that it should
//! not: backend internals in problems and `/readyz`, personal data kept by
//! shared caches, whether an order holds personal data, secrets echoed by
//! configuration errors, and a listener that hands every scope to everyone.

mod common;

use common::world::*;
use common::*;
use serde_json::Value;

const READER: &str = "ogw_disclosure_reader_key";

fn reader() -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("x-api-key", READER.parse().unwrap());
    reqwest::Client::builder().tls_built_in_root_certs(false).default_headers(h).build().unwrap()
}

fn reader_keys() -> String {
    keys_env(&[format!(
        "{{name=\"reader\",hash=\"{}\",scopes=[\"orders:read\"],tier=\"\"}}",
        order_gateway::edge::auth::hash_key(READER)
    )])
}

#[tokio::test]
async fn backend_failures_reach_clients_as_backend_and_reason_only() {
    // An Elasticsearch nobody listens on: every lookup fails with "connection refused".
    let es = format!("http://127.0.0.1:{}", free_port());
    let gw = Gateway::start(&[("ORDER_GATEWAY__ELASTICSEARCH__URL", &es)]).await;
    let (_, p) = expect_problem(client().get(gw.url("/v1/orders/nowhere-1")), 503).await;
    assert_eq!((p["backend"].as_str(), p["reason"].as_str()), (Some("elasticsearch"), Some("unavailable")), "{p}");
    let text = p.to_string();
    for leak in [es.as_str(), "127.0.0.1", "error sending request", "connection refused", "_search"] {
        assert!(!text.contains(leak), "{leak:?} reached the client: {p}");
    }
    assert!(p["request_id"].as_str().is_some_and(|r| !r.is_empty()), "the id to quote to an operator: {p}");

    // /readyz: the status of each check for anyone, why only for an admin.
    let public: Value = json_of(bare_client().get(gw.url("/readyz"))).await;
    assert_eq!(public["checks"]["elasticsearch"]["status"], "down", "{public}");
    for check in public["checks"].as_object().unwrap().values() {
        let keys: Vec<&str> = check.as_object().unwrap().keys().map(String::as_str).collect();
        assert!(keys.iter().all(|k| ["status", "required"].contains(k)), "public details: {public}");
    }
    assert!(!public.to_string().contains("127.0.0.1"), "{public}");
    let admin: Value = json_of(client().get(gw.url("/readyz"))).await;
    assert!(admin["checks"]["elasticsearch"]["detail"].as_str().is_some_and(|d| !d.is_empty()), "{admin}");
}

#[tokio::test]
async fn order_answers_are_private_per_credential_and_etags_tell_nothing_about_pii() {
    let w = World::new();
    let keys = reader_keys();
    let gw = w.gateway(&[("ORDER_GATEWAY__AUTH__KEYS", &keys)]).await;
    let with_pii = format!("dp-{}", uuid::Uuid::new_v4().simple());
    let without = format!("dn-{}", uuid::Uuid::new_v4().simple());
    w.index_order(order(&with_pii, 2)).await;
    let mut o = order(&without, 2);
    (o.email, o.phone, o.shipping_address) = (None, None, None);
    w.index_order(o).await;

    for id in [&with_pii, &without] {
        let (pii, _) = expect_json(client().get(gw.url(&format!("/v1/orders/{id}"))), 200).await;
        let (red, _) = expect_json(reader().get(gw.url(&format!("/v1/orders/{id}"))), 200).await;
        assert_ne!(pii["etag"], red["etag"], "{id}: each audience has its own ETag, personal data or not");
        let tag = red["etag"].to_str().unwrap();
        assert!(tag.len() == 18 && tag.starts_with('"') && tag.ends_with('"'), "{id}: one opaque form: {tag}");
        assert!(red["vary"].to_str().unwrap().contains("authorization"), "{red:?}");
    }

    // Lists of orders hold personal data for PII readers: no cache may keep them.
    let search = client().get(gw.url("/v1/customers/cust-rp/orders")).send().await.unwrap();
    assert_eq!(search.status(), 200);
    assert_eq!(search.headers()["cache-control"], "private, no-store");
    assert!(search.headers()["vary"].to_str().unwrap().contains("x-api-key"));
    let batch = client()
        .post(gw.url("/v1/orders:batchGet"))
        .json(&serde_json::json!({ "ids": [with_pii] }))
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), 200);
    assert_eq!(batch.headers()["cache-control"], "private, no-store");
}

fn check_config(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_order-gateway"))
        .arg("check-config")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

#[tokio::test]
async fn configuration_never_echoes_a_secret_and_refuses_open_unauthenticated_listeners() {
    let (code, text) = check_config(&[("ORDER_GATEWAY__CLICKHOUSE__PASSWORD", "987654321")]);
    assert_eq!(code, Some(0), "a password of digits is valid: {text}");
    assert!(!text.contains("987654321"), "{text}");
    let (code, text) = check_config(&[("ORDER_GATEWAY__SCHEMA_REGISTRY__PASSWORD", "[1,987654321]")]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("schema_registry.password") && !text.contains("987654321"), "{text}");

    let (code, text) =
        check_config(&[("ORDER_GATEWAY__AUTH__MODE", "disabled"), ("ORDER_GATEWAY__SERVER__LISTEN", "0.0.0.0:8080")]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("server.listen") && text.contains("loopback"), "{text}");
    let (code, text) = check_config(&[("ORDER_GATEWAY__AUTH__MODE", "disabled")]);
    assert_eq!(code, Some(0), "a loopback development stack may: {text}");
}
