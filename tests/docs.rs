//! The documentation pages, served from the binary: ReDoc at /redoc beside
//! Swagger UI at /docs, under the same access rules.

mod common;

use common::*;

#[tokio::test]
async fn redoc_is_served_from_the_binary() {
    let gw = Gateway::start(&[]).await;
    // auth.public_docs is on by default: no credential needed.
    let c = bare_client();
    let page = c.get(gw.url("/redoc")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script src="/redoc/redoc.standalone.js">"#), "{html}");
    assert!(html.contains(r#"spec-url="/openapi.json""#), "{html}");

    let js = c.get(gw.url("/redoc/redoc.standalone.js")).send().await.unwrap();
    assert_eq!(js.status(), 200);
    assert_eq!(js.headers()["content-type"], "text/javascript; charset=utf-8");
    let body = js.bytes().await.unwrap();
    assert!(body[..] == include_bytes!("../assets/redoc/redoc.standalone.js")[..], "the vendored bundle, whole");

    // What the page loads next is there too.
    let doc: serde_json::Value = json_of(c.get(gw.url("/openapi.json"))).await;
    assert_eq!(doc["tags"][0]["name"], "orders");
    expect_problem(c.get(gw.url("/redoc/redoc.standalone.js.map")), 404).await;
}

#[tokio::test]
async fn redoc_needs_what_swagger_ui_needs() {
    let gw = Gateway::start(&[("ORDER_GATEWAY__AUTH__PUBLIC_DOCS", "false")]).await;
    for path in ["/docs/", "/redoc", "/redoc/redoc.standalone.js"] {
        let (_, p) = expect_problem(bare_client().get(gw.url(path)), 401).await;
        assert_eq!(p["type"], "urn:order-gateway:problem:unauthorized", "{path}: {p}");
        let r = client().get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path} with orders:read");
    }
}
