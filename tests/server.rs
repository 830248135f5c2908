//! The gateway binary as a client sees it, against the real stack.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn healthz_and_readyz_with_every_backend_up() {
    // Its own read alias, made by setup: Elasticsearch's check looks at it.
    let w = common::world::World::new();
    let gw = w.gateway(&[]).await;
    let c = client();
    let r = c.get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));

    // The stream turns healthy at its lag watcher's first look after assignment.
    eventually(Duration::from_secs(15), "readyz ready", || async {
        json_of::<serde_json::Value>(c.get(gw.url("/readyz"))).await["status"] == "ready"
    })
    .await;
    let (_, body) = expect_json(c.get(gw.url("/readyz")), 200).await;
    assert_eq!(body["status"], "ready", "{body}");
    for b in ["elasticsearch", "clickhouse", "kafka", "schema_registry"] {
        assert_eq!(body["checks"][b]["status"], "up", "{b}: {body}");
    }
}

#[tokio::test]
async fn unknown_route_is_404_and_wrong_method_405_as_problem_json() {
    let gw = Gateway::start(&[]).await;
    let c = client();
    let (headers, body) = expect_problem(c.get(gw.url("/v0/nothing-here")).header("x-request-id", "it-404"), 404).await;
    assert_eq!(headers["x-request-id"], "it-404");
    assert_eq!(body["status"], 404);
    assert_eq!(body["instance"], "/v0/nothing-here");
    assert_eq!(body["request_id"], "it-404");

    let (headers, body) = expect_problem(c.delete(gw.url("/healthz")), 405).await;
    assert_eq!(headers["allow"], "GET, HEAD");
    assert!(body["detail"].as_str().unwrap().contains("DELETE"), "{body}");
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served_on_the_same_port() {
    let gw = Gateway::start(&[]).await;
    let c = reqwest::Client::builder().tls_built_in_root_certs(false).http2_prior_knowledge().build().unwrap();
    let r = c.get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
}

/// `server.protocols` with one protocol serves it alone: the other's clients
/// get their connection closed, not an answer in the wrong protocol.
#[tokio::test]
async fn one_protocol_alone_is_served_when_configured() {
    let h1 = client();
    let h2 = reqwest::Client::builder().tls_built_in_root_certs(false).http2_prior_knowledge().build().unwrap();
    for (protocols, serves_h1) in [("[\"http1\"]", true), ("[\"h2c\"]", false)] {
        let gw = Gateway::start(&[("ORDER_GATEWAY__SERVER__PROTOCOLS", protocols)]).await;
        let (ok, refused) = if serves_h1 { (&h1, &h2) } else { (&h2, &h1) };
        let r = ok.get(gw.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{protocols}");
        assert_eq!(r.version() == reqwest::Version::HTTP_2, !serves_h1, "{protocols}");
        assert!(refused.get(gw.url("/healthz")).send().await.is_err(), "{protocols}: the other protocol is refused");
        // The listener goes on serving after the refused connection.
        assert_eq!(ok.get(gw.url("/healthz")).send().await.unwrap().status(), 200, "{protocols}");
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let gw = Gateway::start(&[]).await;
    let c = client();
    c.get(gw.url("/healthz")).send().await.unwrap();
    c.get(gw.url("/no/such/path/123")).send().await.unwrap();
    let text = c.get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains(r#"http_requests_total{route="/healthz",method="GET",status="200"}"#), "{text}");
    // Raw paths never become label values (unbounded series).
    assert!(!text.contains("/no/such/path/123"), "{text}");
    assert!(text.contains("http_request_duration_seconds_bucket"), "{text}");
    // What the binary is, and the process's own figures.
    let build = text.lines().find(|l| l.starts_with("build_info{")).unwrap_or_else(|| panic!("no build_info: {text}"));
    assert!(build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))) && build.ends_with(" 1"), "{build}");
    let revision = build.split("revision=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or_default();
    assert!(revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()), "a git revision: {build}");
    for (name, kind) in [
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_threads", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ] {
        assert!(text.contains(&format!("# TYPE {name} {kind}\n{name} ")), "{name}: {text}");
    }
}

#[tokio::test]
async fn a_protocol_listed_twice_or_none_is_refused() {
    for (value, shown) in [("[\"http1\", \"http1\"]", "[http1, http1]"), ("[]", "[]")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_order-gateway"))
            .arg("check-config")
            .env("ORDER_GATEWAY__SERVER__PROTOCOLS", value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("server.protocols") && err.contains(shown), "{value}: {err}");
    }
}

#[tokio::test]
async fn bad_config_value_is_refused_naming_key_and_value() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_order-gateway"))
        .arg("serve")
        .env("ORDER_GATEWAY__SERVER__LISTEN", "127.0.0.1:notaport")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.listen"), "{err}");
    assert!(err.contains("127.0.0.1:notaport"), "{err}");
    assert!(err.contains("ORDER_GATEWAY__SERVER__LISTEN"), "{err}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_order-gateway"))
        .arg("check-config")
        .env("ORDER_GATEWAY__SERVER__SHUTDOWN_GRACE", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.shutdown_grace") && err.contains("soon"), "{err}");
}

#[tokio::test]
async fn check_config_masks_secrets() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_order-gateway"))
        .arg("check-config")
        .env("ORDER_GATEWAY__CLICKHOUSE__PASSWORD", "s3cret-value")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("s3cret-value"), "{text}");
    assert!(text.contains("[clickhouse]"), "{text}");
}

#[tokio::test]
async fn openapi_document_and_swagger_ui_are_served() {
    let gw = Gateway::start(&[]).await;
    let c = client();
    let doc: serde_json::Value = json_of(c.get(gw.url("/openapi.json"))).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/v1/orders/{order_id}"]["get"].is_object());
    let r = c.get(gw.url("/docs/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let init = c.get(gw.url("/docs/swagger-initializer.js")).send().await.unwrap().text().await.unwrap();
    assert!(init.contains("/openapi.json"), "the UI loads our document: {init}");
}
