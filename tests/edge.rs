//! The edge, as clients see it: credentials and scopes, PII redaction, JWTs,
//! mesh identities, rate limits, load shedding, size limits, slow clients,
//! hot reload and the admin surface. Against the real stack.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::world::*;
use common::*;
use serde_json::Value;

fn key_entry(name: &str, key: &str, scopes: &[&str], tier: &str) -> String {
    let scopes = scopes.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(",");
    format!(
        "{{name=\"{name}\",hash=\"{}\",scopes=[{scopes}],tier=\"{tier}\"}}",
        order_gateway::edge::auth::hash_key(key)
    )
}

fn with_key(key: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("x-api-key", key.parse().unwrap());
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(15))
        .default_headers(h)
        .build()
        .unwrap()
}

const READER: &str = "ogw_test_reader_orders_read_only";
const PII: &str = "ogw_test_pii_reader_with_orders_pii";

/// A 1024-bit RSA public key: below the 2048 bits a JWT key must have.
const RSA_1024_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCgKBUvNQ85kkw7300+tG+0kScN
KZXMxuLSxrA3xRxqBkcdKTmSHZmZmauKh8O1uHb7E2a+z6O6VA7JggZvfv+kY0WX
HEY6M2n7MKhpXpPBoficGQuh0tcZbde7FTaSZkZywe6bj1Guvm+gKbsb+wgRzCpQ
7ZTxQJLcg5WzPdjhGwIDAQAB
-----END PUBLIC KEY-----
";

#[tokio::test]
async fn credentials_scopes_and_open_probes() {
    let keys = keys_env(&[key_entry("reader", READER, &["orders:read"], "")]);
    let gw = Gateway::start(&[("ORDER_GATEWAY__AUTH__KEYS", &keys)]).await;
    let bare = bare_client();

    // Probes, metrics and the API document stay open.
    for path in ["/healthz", "/metrics", "/openapi.json"] {
        assert_eq!(bare.get(gw.url(path)).send().await.unwrap().status(), 200, "{path}");
    }
    // No credential: 401 with a challenge.
    let (headers, p) = expect_problem(bare.get(gw.url("/v1/orders/o-1")), 401).await;
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"order-gateway\"");
    assert!(p["detail"].as_str().unwrap().contains("orders:read"), "{p}");
    assert_eq!(p["type"], "urn:order-gateway:problem:unauthorized");
    // A wrong key is refused, never downgraded to anonymous.
    let (headers, p) =
        expect_problem(with_key("ogw_not_a_key_anyone_has_0000").get(gw.url("/openapi.json")), 401).await;
    assert!(headers["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    assert!(p["detail"].as_str().unwrap().contains("not known"));
    let r = bare.get(gw.url("/v1/orders/o-1")).header("authorization", "Basic dTpw").send().await.unwrap();
    assert_eq!(r.status(), 401);
    // A valid key without the scope: 403 naming the scope.
    let reader = with_key(READER);
    for path in ["/v1/analytics/kpis?from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z", "/admin/config"] {
        let (_, p) = expect_problem(reader.get(gw.url(path)), 403).await;
        assert!(p["detail"].as_str().unwrap().contains("key:reader"), "{p}");
    }
    // Authenticated, authorised: rate-limit headers on the answer.
    let r = reader.get(gw.url("/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("ratelimit-remaining"));
}

#[tokio::test]
async fn personal_data_only_with_the_pii_scope() {
    let w = World::new();
    let keys = keys_env(&[
        key_entry("reader", READER, &["orders:read"], ""),
        key_entry("pii", PII, &["orders:read", "orders:pii"], ""),
    ]);
    let gw = w.gateway(&[("ORDER_GATEWAY__AUTH__KEYS", &keys)]).await;
    let id = format!("pii-{}", uuid::Uuid::new_v4().simple());
    let mut o = order(&id, 2);
    o.phone = Some("+49 30 1234567".into());
    w.index_order(o).await;

    let (full, body) = expect_json(with_key(PII).get(gw.url(&format!("/v1/orders/{id}"))), 200).await;
    assert_eq!(body["order"]["email"], "someone@example.com");
    assert_eq!(body["order"]["phone"], "+49 30 1234567");

    let (headers, body) = expect_json(with_key(READER).get(gw.url(&format!("/v1/orders/{id}"))), 200).await;
    assert_ne!(headers["etag"], full["etag"], "each representation has its own ETag");
    assert!(body["order"].get("email").is_none() && body["order"].get("phone").is_none(), "{body}");
    assert_eq!(body["order"]["total"], 1190, "the rest of the order is there");

    // Lists and searches redact too, and text search cannot probe personal fields.
    let r: Value = json_of(with_key(READER).get(gw.url("/v1/customers/cust-rp/orders"))).await;
    assert!(!r.to_string().contains("someone@example.com"), "{r}");
    assert!(r["orders"].as_array().is_some_and(|a| !a.is_empty()), "{r}");
    let q = "/v1/orders?q=someone%40example.com";
    let r: Value = json_of(with_key(READER).get(gw.url(q))).await;
    assert_eq!(r["orders"].as_array().map(Vec::len), Some(0), "{r}");
    let r: Value = json_of(with_key(PII).get(gw.url(q))).await;
    assert!(r["orders"].as_array().is_some_and(|a| !a.is_empty()), "{r}");
    let r: Value =
        json_of(with_key(READER).post(gw.url("/v1/orders:batchGet")).json(&serde_json::json!({ "ids": [id] }))).await;
    assert!(!r.to_string().contains("someone@example.com") && r["orders"][0]["order_id"] == id.as_str(), "{r}");
}

#[tokio::test]
async fn jwt_bearer_tokens_hs256_and_rs256() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let secret = "integration-test-secret-of-at-least-32-bytes";
    let now = jsonwebtoken::get_current_timestamp();
    let gw = Gateway::start(&[
        ("ORDER_GATEWAY__AUTH__JWT__ALGORITHM", "HS256"),
        ("ORDER_GATEWAY__AUTH__JWT__SECRET", secret),
        ("ORDER_GATEWAY__AUTH__JWT__AUDIENCE", "order-gateway"),
    ])
    .await;
    let hs = |claims: Value| {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    };
    let c = bare_client();
    let get = |token: String| c.get(gw.url("/admin/config")).bearer_auth(token).send();

    let ok = hs(serde_json::json!({"sub": "ops-bot", "aud": "order-gateway", "exp": now + 300, "scope": "admin"}));
    assert_eq!(get(ok).await.unwrap().status(), 200);
    let no_scope =
        hs(serde_json::json!({"sub": "ops-bot", "aud": "order-gateway", "exp": now + 300, "scope": "orders:read"}));
    assert_eq!(get(no_scope).await.unwrap().status(), 403);
    for (claims, why) in [
        (serde_json::json!({"sub": "a", "aud": "order-gateway", "exp": now - 120, "scope": "admin"}), "expired"),
        (serde_json::json!({"sub": "a", "aud": "someone-else", "exp": now + 300, "scope": "admin"}), "audience"),
    ] {
        let r = get(hs(claims)).await.unwrap();
        assert_eq!(r.status(), 401, "{why}");
        assert!(problem_of(r).await["detail"].as_str().unwrap().contains(why));
    }
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &serde_json::json!({"sub": "a", "aud": "order-gateway", "exp": now + 300, "scope": "admin"}),
        &EncodingKey::from_secret(b"not-the-secret-but-also-32-bytes-long!"),
    )
    .unwrap();
    assert_eq!(get(forged).await.unwrap().status(), 401);
    drop(gw);

    let public = repo_root().join("tests/fixtures/jwt-rs256-public.pem");
    let gw = Gateway::start(&[
        ("ORDER_GATEWAY__AUTH__JWT__ALGORITHM", "RS256"),
        ("ORDER_GATEWAY__AUTH__JWT__PUBLIC_KEY_FILE", public.to_str().unwrap()),
        ("ORDER_GATEWAY__AUTH__JWT__ISSUER", "https://idp.test"),
    ])
    .await;
    let private = std::fs::read(repo_root().join("tests/fixtures/jwt-rs256-private.pem")).unwrap();
    let rs = |claims: Value| {
        encode(&Header::new(Algorithm::RS256), &claims, &EncodingKey::from_rsa_pem(&private).unwrap()).unwrap()
    };
    let ok = rs(serde_json::json!({"sub": "svc", "iss": "https://idp.test", "exp": now + 300, "scp": ["admin"]}));
    let r = c.get(gw.url("/admin/config")).bearer_auth(ok).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let bad_iss = rs(serde_json::json!({"sub": "svc", "iss": "https://evil.test", "exp": now + 300, "scp": ["admin"]}));
    assert_eq!(c.get(gw.url("/admin/config")).bearer_auth(bad_iss).send().await.unwrap().status(), 401);
    // An HS256 token cannot pass where RS256 is configured (no algorithm confusion).
    let hs_here = hs(serde_json::json!({"sub": "a", "iss": "https://idp.test", "exp": now + 300, "scope": "admin"}));
    assert_eq!(c.get(gw.url("/admin/config")).bearer_auth(hs_here).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn required_jwt_claims_are_enforced_and_each_refusal_says_why() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let secret = "integration-test-secret-of-at-least-32-bytes";
    let gw = Gateway::start(&[
        ("ORDER_GATEWAY__AUTH__JWT__ALGORITHM", "HS256"),
        ("ORDER_GATEWAY__AUTH__JWT__SECRET", secret),
        ("ORDER_GATEWAY__AUTH__JWT__AUDIENCE", "crm"),
        ("ORDER_GATEWAY__AUTH__JWT__ISSUER", "https://idp.test"),
    ])
    .await;
    let hs = |claims: &Value| {
        encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    };
    let c = bare_client();
    let admin_config = |token: &str| c.get(gw.url("/admin/config")).bearer_auth(token);
    let now = jsonwebtoken::get_current_timestamp();
    let iss = "https://idp.test";
    const DAY: u64 = 86_400;

    let ok =
        serde_json::json!({"sub": "ops", "aud": "crm", "iss": iss, "iat": now, "exp": now + 300, "scope": "admin"});
    expect_json(admin_config(&hs(&ok)), 200).await;
    let missing =
        |claim: &str, what: &str| format!("the `{claim}` ({what}) claim, which this gateway requires, is missing");
    for (claims, reasons) in [
        // Only `sub`, `exp` and `scope`: passed before audience and issuer were required.
        (
            serde_json::json!({"sub": "ops", "exp": now + 300, "scope": "admin"}),
            vec![missing("aud", "audience"), missing("iss", "issuer")],
        ),
        (
            serde_json::json!({"sub": "ops", "iss": iss, "exp": now + 300, "scope": "admin"}),
            vec![missing("aud", "audience")],
        ),
        (
            serde_json::json!({"sub": "ops", "aud": "crm", "exp": now + 300, "scope": "admin"}),
            vec![missing("iss", "issuer")],
        ),
        (
            serde_json::json!({"sub": "ops", "aud": 7, "iss": iss, "exp": now + 300, "scope": "admin"}),
            vec!["`aud` (audience) claim, which this gateway requires, is malformed".into()],
        ),
        // Longer than auth.jwt.max_lifetime (24h by default), though not expired.
        (
            serde_json::json!({"sub": "ops", "aud": "crm", "iss": iss, "iat": now, "exp": now + 7 * DAY, "scope": "admin"}),
            vec!["the token's lifetime, 7days from `iat` to `exp`, is longer than the 1day".into()],
        ),
        (
            serde_json::json!({"sub": "ops", "aud": "crm", "iss": iss, "exp": now + 30 * DAY, "scope": "admin"}),
            vec!["longer than the 1day lifetime this gateway accepts (auth.jwt.max_lifetime)".into()],
        ),
    ] {
        let token = hs(&claims);
        let (headers, p) = expect_problem(admin_config(&token), 401).await;
        let detail = p["detail"].as_str().unwrap();
        assert!(reasons.iter().all(|r| detail.contains(r.as_str())), "{claims}: {p}");
        assert!(headers["www-authenticate"].to_str().unwrap().contains("invalid_token"), "{claims}");
        for part in token.split('.') {
            assert!(!p.to_string().contains(part), "the token is never echoed: {p}");
        }
    }
}

#[tokio::test]
async fn weak_jwt_keys_are_refused_at_start_and_on_reload() {
    let dir = std::env::temp_dir().join(unique("weak-keys"));
    std::fs::create_dir_all(&dir).unwrap();
    let small_key = dir.join("rsa-1024.pem");
    std::fs::write(&small_key, RSA_1024_PUBLIC).unwrap();
    let small_key = small_key.to_str().unwrap().to_string();

    // At start: the gateway does not serve, and says which key and how big.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_order-gateway"))
        .arg("serve")
        .env("ORDER_GATEWAY__SERVER__LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("ORDER_GATEWAY__AUTH__JWT__ALGORITHM", "RS256")
        .env("ORDER_GATEWAY__AUTH__JWT__PUBLIC_KEY_FILE", &small_key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the gateway started with a 1024-bit RS256 key");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains(&small_key) && stderr.contains("1024 bits") && stderr.contains("2048"), "{stderr}");

    // On reload: refused with 422, and the keys in effect stay.
    let file = dir.join("gateway.toml");
    let good_secret = "integration-test-secret-of-at-least-32-bytes";
    let write = |jwt: &str| std::fs::write(&file, format!("[auth.jwt]\n{jwt}\n")).unwrap();
    write(&format!("algorithm = \"HS256\"\nsecret = \"{good_secret}\""));
    let gw = Gateway::start(&[("ORDER_GATEWAY_CONFIG", file.to_str().unwrap())]).await;
    let now = jsonwebtoken::get_current_timestamp();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "ops", "exp": now + 300, "scope": "admin"}),
        &jsonwebtoken::EncodingKey::from_secret(good_secret.as_bytes()),
    )
    .unwrap();
    let with_token = || bare_client().get(gw.url("/admin/config")).bearer_auth(&token);
    expect_json(with_token(), 200).await;

    write(&format!("algorithm = \"RS256\"\npublic_key_file = \"{small_key}\""));
    let (_, p) = expect_problem(client().post(gw.url("/admin/reload")), 422).await;
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains(&small_key) && detail.contains("1024 bits"), "{p}");
    write("algorithm = \"HS256\"\nsecret = \"only-20-bytes-secret\"");
    let (_, p) = expect_problem(client().post(gw.url("/admin/reload")), 422).await;
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("auth.jwt.secret") && detail.contains("32 bytes") && detail.contains("20"), "{p}");
    assert!(!detail.contains("only-20-bytes-secret"), "the secret is not shown: {p}");
    expect_json(with_token(), 200).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn mesh_identity_is_believed_only_from_trusted_peers_and_client_state_stays_bounded() {
    let gw = Gateway::start(&[
        ("ORDER_GATEWAY__AUTH__MESH__IDENTITY_HEADER", "x-client-id"),
        ("ORDER_GATEWAY__AUTH__MESH__TRUSTED_PEERS", "[\"127.0.0.2/32\"]"),
        ("ORDER_GATEWAY__AUTH__MESH__SCOPES", "[\"admin\"]"),
        ("ORDER_GATEWAY__RATE_LIMIT__MAX_CLIENTS", "50"),
    ])
    .await;
    let from = |ip: &str| {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap()
    };
    let (sidecar, stranger) = (from("127.0.0.2"), from("127.0.0.1"));
    let r = sidecar.get(gw.url("/admin/cache")).header("x-client-id", "crm-ui").send().await.unwrap();
    assert_eq!(r.status(), 200, "a trusted peer's identity header is believed");
    let r = stranger.get(gw.url("/admin/cache")).header("x-client-id", "crm-ui").send().await.unwrap();
    assert_eq!(r.status(), 401, "anyone else's is ignored");

    // A flood of distinct identities: keyed state stays at max_clients.
    for i in 0..600 {
        let _ = sidecar.get(gw.url("/admin/stream")).header("x-client-id", format!("flood-{i}")).send().await.unwrap();
    }
    let stats: Value = json_of(client().get(gw.url("/admin/cache"))).await;
    let clients = stats["rate_limit_clients"].as_u64().unwrap();
    // 50 in the mesh's tier plus its shared overflow bucket, plus the stranger's
    // address in the anonymous tier (max_clients holds per tier).
    assert!(clients <= 52, "bounded by max_clients: {clients}");
    let metrics = bare_client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("rate_limit_overflow_total"), "overflow is counted");
    assert!(metrics.contains("auth_untrusted_identity_headers_total"));
}

#[tokio::test]
async fn xfcc_identity_is_the_sidecars_last_element_with_quotes_and_header_lines_honoured() {
    const AGENT_UI: &str = "spiffe://prod/ns/crm/sa/agent-ui";
    let mesh = [
        ("ORDER_GATEWAY__AUTH__MESH__IDENTITY_HEADER", "x-forwarded-client-cert"),
        ("ORDER_GATEWAY__AUTH__MESH__TRUSTED_PEERS", "[\"127.0.0.2/32\"]"),
        ("ORDER_GATEWAY__AUTH__MESH__SCOPES", "[\"orders:read\"]"),
        ("ORDER_GATEWAY__AUTH__MESH__IDENTITIES", "[{id=\"spiffe://prod/ns/crm/sa/agent-ui\",scopes=[\"admin\"]}]"),
    ];
    let gw = Gateway::start(&mesh).await;
    let from = |ip: &str| {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap()
    };
    let (sidecar, stranger) = (from("127.0.0.2"), from("127.0.0.1"));
    let admin_config = |client: &reqwest::Client, lines: &[&str]| {
        let mut r = client.get(gw.url("/admin/config"));
        for l in lines {
            r = r.header("x-forwarded-client-cert", *l);
        }
        r
    };

    expect_json(admin_config(&sidecar, &[&format!("Hash=a;URI={AGENT_UI}")]), 200).await;
    expect_json(admin_config(&sidecar, &[&format!("Hash=a;Subject=\"CN=agent\";URI=\"{AGENT_UI}\"")]), 200).await;
    // The agent UI's id inside a quoted Subject, or in an element or a line
    // before the sidecar's, is not the caller's identity.
    for lines in [
        vec![r#"Hash=a;Subject="CN=x,URI=spiffe://prod/ns/crm/sa/agent-ui";URI=spiffe://prod/ns/evil/sa/x"#],
        vec![r#"Hash=a;Subject="CN=x;URI=spiffe://prod/ns/crm/sa/agent-ui";URI=spiffe://prod/ns/evil/sa/x"#],
        vec![r#"Subject="CN=\"x,URI=spiffe://prod/ns/crm/sa/agent-ui\"";URI=spiffe://prod/ns/evil/sa/x"#],
        vec!["URI=spiffe://prod/ns/crm/sa/agent-ui,Hash=b;URI=spiffe://prod/ns/evil/sa/x"],
        vec!["URI=spiffe://prod/ns/crm/sa/agent-ui", "Hash=b;URI=spiffe://prod/ns/evil/sa/x"],
    ] {
        let (_, p) = expect_problem(admin_config(&sidecar, &lines), 403).await;
        assert!(p["detail"].as_str().unwrap().contains("mesh:spiffe://prod/ns/evil/sa/x"), "{lines:?}: {p}");
    }
    // A malformed header from the sidecar is refused, not believed.
    let (headers, p) =
        expect_problem(admin_config(&sidecar, &[r#"Hash=a;Subject="CN=x;URI=spiffe://prod/ns/crm/sa/agent-ui"#]), 401)
            .await;
    assert!(p["detail"].as_str().unwrap().contains("x-forwarded-client-cert"), "{p}");
    assert!(headers["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    // Anyone else's header is ignored.
    expect_problem(admin_config(&stranger, &[&format!("URI={AGENT_UI}")]), 401).await;
    drop(gw);

    // A dual-stack listener sees the sidecar as ::ffff:127.0.0.2; it is still the sidecar.
    let admin_addr = format!("[::]:{}", free_port());
    let mut env = mesh.to_vec();
    env.push(("ORDER_GATEWAY__ADMIN__LISTEN", &admin_addr));
    let _gw = Gateway::start(&env).await;
    let url = format!("http://127.0.0.1:{}/admin/config", admin_addr.rsplit(':').next().unwrap());
    let r = sidecar.get(&url).header("x-forwarded-client-cert", format!("URI={AGENT_UI}"));
    expect_json(r, 200).await;
    let r = stranger.get(&url).header("x-forwarded-client-cert", format!("URI={AGENT_UI}"));
    expect_problem(r, 401).await;
}

#[tokio::test]
async fn a_burst_is_refused_with_429_and_headers_then_recovers() {
    let keys = keys_env(&[key_entry("bursty", READER, &["orders:read"], "tiny")]);
    let gw = Gateway::start(&[
        ("ORDER_GATEWAY__AUTH__KEYS", &keys),
        ("ORDER_GATEWAY__RATE_LIMIT__TIERS__TINY__RATE", "2"),
        ("ORDER_GATEWAY__RATE_LIMIT__TIERS__TINY__BURST", "10"),
    ])
    .await;
    let c = with_key(READER);
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..15 {
        let r = c.get(gw.url("/openapi.json")).send().await.unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 && refused.is_none() {
            refused = Some(r);
        }
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 10, "the burst passes: {statuses:?}");
    let r = refused.expect("a 429 after the burst");
    assert_eq!(r.headers()["ratelimit-limit"], "10");
    assert_eq!(r.headers()["ratelimit-remaining"], "0");
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    assert!(r.headers().contains_key("ratelimit-reset"));
    let p = problem_of(r).await;
    assert_eq!(p["type"], "urn:order-gateway:problem:rate-limited");
    // Another client is not affected.
    assert_eq!(client().get(gw.url("/openapi.json")).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(c.get(gw.url("/openapi.json")).send().await.unwrap().status(), 200, "recovered after Retry-After");
}

#[tokio::test]
async fn a_concurrency_flood_is_shed_fast_while_healthz_answers() {
    let w = World::new();
    let gw = w
        .gateway(&[
            ("ORDER_GATEWAY__SERVER__MAX_IN_FLIGHT", "2"),
            ("ORDER_GATEWAY__CACHE__READ_YOUR_WRITES_WAIT", "3s"),
        ])
        .await;
    let id = format!("shed-{}", uuid::Uuid::new_v4().simple());
    w.index_order(order(&id, 1)).await;
    let c = client();
    // Each waits up to 3 s for a version that never comes, holding its slot.
    let slow = format!("/v1/orders/{id}?min_version=999");
    let holders: Vec<_> = (0..2).map(|_| tokio::spawn(c.get(gw.url(&slow)).send())).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let r = c.get(gw.url(&format!("/v1/orders/{id}"))).send().await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(500), "shed at once, took {:?}", started.elapsed());
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(problem_of(r).await["type"], "urn:order-gateway:problem:overloaded");
    assert_eq!(c.get(gw.url("/healthz")).send().await.unwrap().status(), 200, "probes are never shed");
    assert_eq!(c.get(gw.url("/metrics")).send().await.unwrap().status(), 200);
    for h in holders {
        let _ = h.await;
    }
    assert_eq!(c.get(gw.url(&format!("/v1/orders/{id}"))).send().await.unwrap().status(), 200, "served again");
}

#[tokio::test]
async fn oversized_bodies_and_headers_get_413_and_431() {
    let gw = Gateway::start(&[("ORDER_GATEWAY__SERVER__MAX_BODY_BYTES", "2048")]).await;
    let c = client();
    let ids: Vec<String> = (0..200).map(|i| format!("order-{i:04}")).collect();
    let (_, p) =
        expect_problem(c.post(gw.url("/v1/orders:batchGet")).json(&serde_json::json!({ "ids": ids })), 413).await;
    assert!(p["detail"].as_str().unwrap().contains("2048"));
    let (_, p) = expect_problem(c.get(gw.url("/healthz")).header("x-padding", "a".repeat(20_000)), 431).await;
    assert!(p["detail"].as_str().unwrap().contains("server.max_header_bytes"));
}

#[tokio::test]
async fn a_client_too_slow_to_send_its_headers_is_cut_off() {
    let gw = Gateway::start(&[("ORDER_GATEWAY__SERVER__HEADER_READ_TIMEOUT", "1s")]).await;
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    // The server closes the connection (EOF) instead of waiting for the rest.
    let n = s.read_to_end(&mut buf);
    let took = started.elapsed();
    assert!(n.is_ok(), "closed, not timed out on our side: {n:?}");
    assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(4), "cut off after about 1 s: {took:?}");
    // A prompt client on another connection is unaffected.
    assert_eq!(client().get(gw.url("/healthz")).send().await.unwrap().status(), 200);
}

/// Reads one HTTP/1.1 response (headers and a Content-Length body) from `s`.
fn read_response(s: &mut std::net::TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).expect("a response head"), 1, "closed before a response: {got:?}");
        got.push(byte[0]);
    }
    let head = String::from_utf8(got).unwrap();
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

/// How long until the server closes `s` (EOF or reset), within `wait`.
fn closed_within(s: &mut std::net::TcpStream, wait: Duration) -> Option<Duration> {
    let started = Instant::now();
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return None,
            Err(_) => return Some(started.elapsed()),
        }
    }
}

// A proxy or pooled client reuses a keep-alive connection whenever it likes;
// one the server closes after a short pause races the next request on the
// wire, and that request fails with a reset. So an idle HTTP/1.1 connection
// stays open server.idle_timeout, while a next head, once begun, still has
// only server.header_read_timeout.
#[tokio::test]
async fn an_idle_keep_alive_connection_stays_open_for_idle_timeout_not_header_read_timeout() {
    let gw = Gateway::start(&[
        ("ORDER_GATEWAY__SERVER__HEADER_READ_TIMEOUT", "1s"),
        ("ORDER_GATEWAY__SERVER__IDLE_TIMEOUT", "3s"),
    ])
    .await;
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n";
    s.write_all(request).unwrap();
    assert!(read_response(&mut s).starts_with("HTTP/1.1 200"));
    // Twice header_read_timeout without a byte: the same connection answers.
    std::thread::sleep(Duration::from_secs(2));
    s.write_all(request).unwrap();
    assert!(read_response(&mut s).starts_with("HTTP/1.1 200"), "reused after 2 s idle");
    // And is closed once idle_timeout has passed.
    let took = closed_within(&mut s, Duration::from_secs(10)).expect("closed once idle_timeout passed");
    println!("idle keep-alive connection closed {took:?} after its last response");
    assert!(
        took >= Duration::from_millis(2500) && took <= Duration::from_secs(5),
        "closed after {took:?}, idle_timeout is 3 s"
    );
}

#[tokio::test]
async fn a_next_head_begun_on_a_keep_alive_connection_has_header_read_timeout() {
    let gw = Gateway::start(&[
        ("ORDER_GATEWAY__SERVER__HEADER_READ_TIMEOUT", "1s"),
        ("ORDER_GATEWAY__SERVER__IDLE_TIMEOUT", "60s"),
    ])
    .await;
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n").unwrap();
    assert!(read_response(&mut s).starts_with("HTTP/1.1 200"));
    std::thread::sleep(Duration::from_millis(1500));
    // Half of the next head, then nothing: cut off, not held for idle_timeout.
    s.write_all(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
    let took = closed_within(&mut s, Duration::from_secs(10)).expect("a stalled head is cut off");
    println!("a stalled second head was cut off after {took:?}");
    assert!(
        took >= Duration::from_millis(800) && took <= Duration::from_secs(3),
        "cut off after {took:?}, header_read_timeout is 1 s"
    );
}

#[tokio::test]
async fn reload_changes_a_limit_without_restart_and_a_bad_one_changes_nothing() {
    let dir = std::env::temp_dir().join(unique("reload"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.toml");
    let write = |burst: u32, extra: &str| {
        std::fs::write(
            &file,
            format!(
                "[rate_limit]\ncosts = {{ lookup = 1, batch_get = 1, search = 1, analytics = 1, admin = 1, docs = 1 }}\n{extra}\n[rate_limit.tiers.standard]\nrate = 1\nburst = {burst}\n"
            ),
        )
        .unwrap()
    };
    write(3, "");
    let keys = keys_env(&[key_entry("std", READER, &["orders:read"], "")]);
    let gw =
        Gateway::start(&[("ORDER_GATEWAY_CONFIG", file.to_str().unwrap()), ("ORDER_GATEWAY__AUTH__KEYS", &keys)]).await;
    let std_client = with_key(READER);
    let limit = || async {
        let r = std_client.get(gw.url("/openapi.json")).send().await.unwrap();
        r.headers().get("ratelimit-limit").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
    };
    assert_eq!(limit().await, "3");

    write(50, "");
    let (_, report) = expect_json(client().post(gw.url("/admin/reload")), 200).await;
    assert!(report["applied"].as_array().unwrap().iter().any(|k| k == "rate_limit.tiers.standard.burst"), "{report}");
    assert_eq!(limit().await, "50", "the new limit is in effect without a restart");

    write(7, "default_tier = \"gold\"");
    let (_, p) = expect_problem(client().post(gw.url("/admin/reload")), 422).await;
    assert!(p["detail"].as_str().unwrap().contains("gold"), "{p}");
    assert_eq!(limit().await, "50", "a refused reload changes nothing");

    // SIGHUP does the same.
    write(9, "");
    let ok = std::process::Command::new("kill").args(["-HUP", &gw.child.id().to_string()]).status().unwrap().success();
    assert!(ok);
    eventually(Duration::from_secs(5), "the SIGHUP reload", || async { limit().await == "9" }).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn admin_endpoints_and_their_own_listener() {
    let admin_port = free_port();
    let admin_addr = format!("127.0.0.1:{admin_port}");
    let gw = Gateway::start(&[
        ("ORDER_GATEWAY__ADMIN__LISTEN", &admin_addr),
        ("ORDER_GATEWAY__CLICKHOUSE__PASSWORD", "do-not-show-me"),
    ])
    .await;
    let c = client();
    let admin = |path: &str| format!("http://{admin_addr}{path}");
    assert_eq!(c.get(gw.url("/admin/config")).send().await.unwrap().status(), 404, "not on the main listener");
    let config: Value = json_of(c.get(admin("/admin/config"))).await;
    assert_eq!(config["clickhouse"]["password"], "********");
    assert!(!config.to_string().contains("do-not-show-me"));
    let stats: Value = json_of(c.get(admin("/admin/cache"))).await;
    assert!(stats["entries"].is_u64() && stats["max_bytes"].is_u64(), "{stats}");
    let stream: Value = json_of(c.get(admin("/admin/stream"))).await;
    assert_eq!(stream["enabled"], false, "{stream}");
    assert_eq!(expect_json(c.delete(admin("/admin/cache/orders/o-123")), 200).await.1["was_cached"], false);
    assert_eq!(bare_client().get(admin("/admin/cache")).send().await.unwrap().status(), 401);
    assert_eq!(
        c.get(admin("/v1/orders/o-1")).send().await.unwrap().status(),
        404,
        "the API is not on the admin listener"
    );
    assert_eq!(c.get(admin("/healthz")).send().await.unwrap().status(), 200);
}
