// figment's Jail closures return figment::Error, whose size is figment's choice.
#![allow(clippy::result_large_err)]

use super::*;
use figment::Jail;

fn load_in(jail: &Jail, file: Option<&str>) -> Result<Config, ConfigError> {
    let path = file.map(|f| jail.directory().join(f));
    Config::load(path.as_deref())
}

#[test]
fn defaults_load_and_validate() {
    Jail::expect_with(|jail| {
        let c = load_in(jail, None).expect("defaults are valid");
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.server.shutdown_grace, Duration::from_secs(30));
        assert_eq!(c.log.format, LogFormat::Json);
        Ok(())
    });
}

#[test]
fn file_then_env_override_in_order() {
    Jail::expect_with(|jail| {
        jail.create_file("gw.toml", "[server]\nlisten = \"127.0.0.1:9999\"\nmax_connections = 5\n")?;
        jail.set_env("ORDER_GATEWAY__SERVER__LISTEN", "0.0.0.0:8088");
        jail.set_env("ORDER_GATEWAY__ELASTICSEARCH__TIMEOUT", "750ms");
        let c = load_in(jail, Some("gw.toml")).expect("valid");
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:8088");
        assert_eq!(c.server.max_connections, 5);
        assert_eq!(c.elasticsearch.timeout, Duration::from_millis(750));
        Ok(())
    });
}

#[test]
fn unknown_key_is_refused_with_its_name() {
    Jail::expect_with(|jail| {
        jail.create_file("gw.toml", "[server]\nlisten_adress = \"127.0.0.1:1\"\n")?;
        let err = load_in(jail, Some("gw.toml")).unwrap_err().to_string();
        assert!(err.contains("listen_adress"), "{err}");
        Ok(())
    });
}

#[test]
fn bad_env_value_names_variable_and_value() {
    Jail::expect_with(|jail| {
        jail.set_env("ORDER_GATEWAY__SERVER__LISTEN", "not-an-address");
        let err = load_in(jail, None).unwrap_err().to_string();
        assert!(err.contains("server.listen"), "{err}");
        assert!(err.contains("not-an-address"), "{err}");
        assert!(err.contains("ORDER_GATEWAY__SERVER__LISTEN"), "{err}");
        Ok(())
    });
}

#[test]
fn semantic_rules_name_key_and_value() {
    Jail::expect_with(|jail| {
        jail.set_env("ORDER_GATEWAY__CLICKHOUSE__URL", "ftp://x");
        let err = load_in(jail, None).unwrap_err().to_string();
        assert!(err.contains("clickhouse.url") && err.contains("ftp://x"), "{err}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("ORDER_GATEWAY__KAFKA__TIMEOUT", "0s");
        let err = load_in(jail, None).unwrap_err().to_string();
        assert!(err.contains("kafka.timeout"), "{err}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("ORDER_GATEWAY__LOG__LEVEL", "loud[");
        let err = load_in(jail, None).unwrap_err().to_string();
        assert!(err.contains("log.level") && err.contains("loud["), "{err}");
        Ok(())
    });
}

#[test]
fn missing_file_is_named() {
    Jail::expect_with(|jail| {
        let err = load_in(jail, Some("nope.toml")).unwrap_err().to_string();
        assert!(err.contains("nope.toml"), "{err}");
        Ok(())
    });
}

#[test]
fn secrets_are_masked_in_rendered_config() {
    Jail::expect_with(|jail| {
        jail.set_env("ORDER_GATEWAY__CLICKHOUSE__PASSWORD", "hunter2");
        let c = load_in(jail, None).expect("valid");
        let rendered = c.to_masked_toml();
        assert!(!rendered.contains("hunter2"));
        assert!(rendered.contains("********"));
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.clickhouse.password.expose(), "hunter2");
        Ok(())
    });
}

#[test]
fn every_default_key_is_documented_by_a_comment() {
    // Each `key = value` line in default.toml is preceded by a comment line or
    // another documented key of the same group, so users always find the why.
    let mut last_was_comment_or_key = false;
    for line in DEFAULT_TOML.lines().map(str::trim) {
        if line.starts_with('#') {
            last_was_comment_or_key = true;
        } else if line.is_empty() || line.starts_with('[') {
            last_was_comment_or_key = false;
        } else {
            assert!(last_was_comment_or_key, "undocumented key in default.toml: {line}");
        }
    }
}

#[test]
fn breaker_defaults_and_rules() {
    Jail::expect_with(|jail| {
        let c = load_in(jail, None).expect("valid");
        assert!(c.breaker.enabled);
        assert_eq!(c.breaker.failure_threshold, 5);
        assert_eq!(c.breaker.open_for, Duration::from_secs(5));
        assert_eq!(c.breaker.half_open_probes, 1);
        Ok(())
    });
    for (var, value, key) in [
        ("ORDER_GATEWAY__BREAKER__FAILURE_THRESHOLD", "0", "breaker.failure_threshold"),
        ("ORDER_GATEWAY__BREAKER__HALF_OPEN_PROBES", "0", "breaker.half_open_probes"),
        ("ORDER_GATEWAY__BREAKER__OPEN_FOR", "0s", "breaker.open_for"),
    ] {
        Jail::expect_with(|jail| {
            jail.set_env(var, value);
            let err = load_in(jail, None).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
            Ok(())
        });
    }
}

#[test]
fn a_password_of_digits_is_taken_and_never_printed() {
    Jail::expect_with(|jail| {
        jail.set_env("ORDER_GATEWAY__CLICKHOUSE__PASSWORD", "987654321");
        let c = load_in(jail, None).expect("a password of digits is a password");
        assert_eq!(c.clickhouse.password.expose(), "987654321");
        assert!(!c.to_masked_toml().contains("987654321"), "masked in the effective configuration");
        Ok(())
    });
}

#[test]
fn a_secret_of_the_wrong_type_is_refused_without_its_value() {
    Jail::expect_with(|jail| {
        jail.create_file("gw.toml", "[clickhouse]\npassword = [\"hunter2-987654321\"]\n")?;
        let err = load_in(jail, Some("gw.toml")).expect_err("a list is not a password").to_string();
        assert!(err.contains("clickhouse.password"), "{err}");
        assert!(!err.contains("hunter2") && !err.contains("987654321"), "the value leaked: {err}");
        Ok(())
    });
}

#[test]
fn disabled_auth_is_refused_on_a_listener_others_can_reach() {
    Jail::expect_with(|jail| {
        jail.set_env("ORDER_GATEWAY__AUTH__MODE", "disabled");
        load_in(jail, None).expect("loopback: a development stack");
        jail.set_env("ORDER_GATEWAY__SERVER__LISTEN", "0.0.0.0:8080");
        let err = load_in(jail, None).expect_err("every scope for everyone on every interface").to_string();
        assert!(err.contains("server.listen") && err.contains("loopback"), "{err}");
        jail.set_env("ORDER_GATEWAY__SERVER__LISTEN", "127.0.0.1:8080");
        jail.set_env("ORDER_GATEWAY__ADMIN__LISTEN", "[::]:9091");
        let err = load_in(jail, None).expect_err("the admin listener too").to_string();
        assert!(err.contains("admin.listen"), "{err}");
        Ok(())
    });
}

#[test]
fn a_secret_file_fills_its_secret_and_both_at_once_is_refused() {
    Jail::expect_with(|jail| {
        jail.create_file("es-password", "s3cret\n")?;
        let path = jail.directory().join("es-password");
        jail.set_env("ORDER_GATEWAY__ELASTICSEARCH__USERNAME", "gateway");
        jail.set_env("ORDER_GATEWAY__ELASTICSEARCH__PASSWORD_FILE", path.display());
        let c = load_in(jail, None).expect("valid");
        assert_eq!(c.elasticsearch.password.expose(), "s3cret", "one trailing newline is dropped");
        assert!(!c.to_masked_toml().contains("s3cret"));
        assert!(c.to_masked_toml().contains("es-password"), "a file's path is not a secret");

        jail.set_env("ORDER_GATEWAY__ELASTICSEARCH__PASSWORD", "other");
        let err = load_in(jail, None).unwrap_err().to_string();
        assert!(err.contains("elasticsearch.password and elasticsearch.password_file"), "{err}");
        assert!(!err.contains("other") && !err.contains("s3cret"), "{err}");

        jail.set_env("ORDER_GATEWAY__ELASTICSEARCH__PASSWORD", "");
        jail.create_file("cursor", "shared-by-every-replica\n")?;
        jail.set_env("ORDER_GATEWAY__API__CURSOR_SECRET_FILE", jail.directory().join("cursor").display());
        let c = load_in(jail, None).expect("valid");
        assert_eq!(c.api.cursor_secret.expose(), "shared-by-every-replica");
        jail.set_env("ORDER_GATEWAY__ELASTICSEARCH__PASSWORD_FILE", "/nonexistent/secret");
        let err = load_in(jail, None).unwrap_err().to_string();
        assert!(err.contains("elasticsearch.password_file") && err.contains("/nonexistent/secret"), "{err}");
        Ok(())
    });
}

#[test]
fn kafka_security_settings_must_agree() {
    Jail::expect_with(|jail| {
        let refused = |jail: &Jail, file: &str, words: &str| {
            jail.create_file("gw.toml", file).unwrap();
            let err = load_in(jail, Some("gw.toml")).unwrap_err().to_string();
            assert!(err.contains(words), "{file}: {err}");
            assert!(!err.contains("pw-1"), "a password in an error: {err}");
        };
        refused(
            jail,
            "[kafka]\nsecurity_protocol = \"sasl_ssl\"\n",
            "needs kafka.sasl_username and kafka.sasl_password",
        );
        refused(jail, "[kafka]\nsasl_username = \"u\"\nsasl_password = \"pw-1\"\n", "does not use SASL");
        jail.create_file("ca.pem", "x")?;
        refused(jail, "[kafka.tls]\nca_file = \"ca.pem\"\n", "does not use TLS");
        refused(
            jail,
            "[kafka.options]\n\"sasl.password\" = \"pw-1\"\n",
            "kafka.options.\"sasl.password\": set kafka.sasl_password",
        );
        refused(jail, "[kafka.options]\n\"enable.ssl.certificate.verification\" = \"false\"\n", "cannot be turned off");
        refused(jail, "[kafka]\nsecurity_protocol = \"tls\"\n", "security_protocol");
        refused(jail, "[kafka]\nsecurity_protocol = \"sasl_ssl\"\nsasl_mechanism = \"GSSAPI\"\n", "sasl_mechanism");

        jail.create_file("gw.toml", "[kafka]\nsecurity_protocol = \"SASL_SSL\"\nsasl_username = \"u\"\nsasl_password = \"pw-1\"\n[kafka.options]\n\"ssl.key.password\" = \"pw-1\"\n\"fetch.max.bytes\" = 1048576\n")?;
        let c = load_in(jail, Some("gw.toml")).expect("valid");
        assert_eq!(c.kafka.security_protocol, KafkaSecurity::SaslSsl);
        assert_eq!(c.kafka.options.0["fetch.max.bytes"], "1048576", "a number is taken as its text");
        let shown = format!("{}{:?}", c.to_masked_toml(), c.kafka);
        assert!(!shown.contains("pw-1"), "{shown}");
        Ok(())
    });
}

#[test]
fn tls_files_are_checked_when_loaded() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "gw.toml",
            "[clickhouse]\nurl = \"https://ch.example:8443\"\n[clickhouse.tls]\nclient_cert_file = \"gw.toml\"\n",
        )?;
        let err = load_in(jail, Some("gw.toml")).unwrap_err().to_string();
        assert!(
            err.contains("clickhouse.tls.client_cert_file is set but clickhouse.tls.client_key_file is not"),
            "{err}"
        );
        jail.create_file(
            "gw.toml",
            "[elasticsearch]\nurl = \"https://es.example\"\n[elasticsearch.tls]\nca_file = \"missing.pem\"\n",
        )?;
        let err = load_in(jail, Some("gw.toml")).unwrap_err().to_string();
        assert!(err.contains("elasticsearch.tls.ca_file = \"missing.pem\""), "{err}");
        jail.create_file("ca.pem", "x")?;
        jail.create_file("gw.toml", "[elasticsearch.tls]\nca_file = \"ca.pem\"\n")?;
        let err = load_in(jail, Some("gw.toml")).unwrap_err().to_string();
        assert!(err.contains("plain http: use https"), "{err}");
        Ok(())
    });
}

#[test]
fn warnings_name_plain_text_to_other_hosts_and_a_missing_cursor_secret() {
    let mut c = Config::defaults();
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    c.elasticsearch.url = "http://es.internal:9200".parse().unwrap();
    c.clickhouse.url = "https://ch.internal:8443".parse().unwrap();
    c.kafka.brokers = "localhost:9092,kafka-1.internal:9092".into();
    c.server.listen = "0.0.0.0:8080".parse().unwrap();
    let w = c.warnings().join("\n");
    assert!(w.contains("elasticsearch.url") && !w.contains("clickhouse.url"), "{w}");
    assert!(w.contains("kafka-1.internal:9092"), "{w}");
    assert!(w.contains("api.cursor_secret"), "{w}");
    c.api.cursor_secret = Secret::from("shared");
    c.kafka.brokers = "[::1]:9092".into();
    assert!(!c.warnings().join("\n").contains("cursor_secret") && !c.warnings().join("\n").contains("kafka"));
}

/// The environment the tests run in may name an Elasticsearch url of its own
/// (a stack on other ports), which these tests' `urls` would then have to
/// include: removed inside the jail, put back when it ends.
fn unset_es_url(jail: &mut Jail) {
    const URL: &str = "ORDER_GATEWAY__ELASTICSEARCH__URL";
    jail.set_env(URL, "saved by the jail, removed below");
    std::env::remove_var(URL);
}

#[test]
fn elasticsearch_nodes_come_from_urls_as_a_list_or_comma_separated() {
    Jail::expect_with(|jail| {
        unset_es_url(jail);
        let c = load_in(jail, None).expect("valid");
        assert_eq!(c.elasticsearch.nodes(), std::slice::from_ref(&c.elasticsearch.url), "url alone by default");
        assert_eq!(c.elasticsearch.nodes_key(), "elasticsearch.url");

        jail.set_env("ORDER_GATEWAY__ELASTICSEARCH__URLS", "http://127.0.0.1:9200, http://127.0.0.1:9201");
        let c = load_in(jail, None).expect("valid");
        let nodes: Vec<String> = c.elasticsearch.nodes().iter().map(|u| u.to_string()).collect();
        assert_eq!(nodes, ["http://127.0.0.1:9200/", "http://127.0.0.1:9201/"]);
        assert_eq!(c.elasticsearch.nodes_key(), "elasticsearch.urls");

        jail.set_env("ORDER_GATEWAY__ELASTICSEARCH__URLS", "[\"http://127.0.0.1:9201\"]");
        let c = load_in(jail, None).expect("figment's array syntax too");
        assert_eq!(c.elasticsearch.nodes()[0].as_str(), "http://127.0.0.1:9201/");

        Ok(())
    });
    Jail::expect_with(|jail| {
        unset_es_url(jail);
        jail.create_file(
            "gw.toml",
            "[elasticsearch]\nurl = \"https://es-1:9200\"\nurls = [\"https://es-1:9200\", \"https://u:pw-1@es-2:9200\"]\n",
        )?;
        let c = load_in(jail, Some("gw.toml")).expect("url may be one of urls");
        assert_eq!(c.elasticsearch.nodes().len(), 2);
        let shown = c.to_masked_toml();
        assert!(shown.contains("https://u:********@es-2:9200/") && !shown.contains("pw-1"), "{shown}");
        Ok(())
    });
}

#[test]
fn bad_elasticsearch_urls_are_refused_naming_the_value() {
    let refused = |file: &str, words: &[&str]| {
        Jail::expect_with(|jail| {
            unset_es_url(jail);
            jail.create_file("gw.toml", file)?;
            let err = load_in(jail, Some("gw.toml")).unwrap_err().to_string();
            for w in words {
                assert!(err.contains(w), "{file}: {err}");
            }
            assert!(!err.contains("pw-1"), "a password in an error: {err}");
            Ok(())
        });
    };
    refused(
        "[elasticsearch]\nurls = \"http://a:9200,//b:9200\"\n",
        &["elasticsearch.urls", "\"//b:9200\" is not a URL"],
    );
    refused(
        "[elasticsearch]\nurls = [\"http://a:9200\", \"nonsense\"]\n",
        &["elasticsearch.urls", "\"nonsense\" is not a URL"],
    );
    refused("[elasticsearch]\nurls = [\"ftp://a:9200\"]\n", &["elasticsearch.urls", "ftp://a:9200", "http or https"]);
    refused(
        "[elasticsearch]\nurls = [\"https://a:9200\", \"http://u:pw-1@b:9200\"]\n",
        &["elasticsearch.urls", "same scheme", "\"http://u:********@b:9200/\" is http"],
    );
    refused(
        "[elasticsearch]\nurls = \"http://a:9200,http://a:9200/\"\n",
        &["elasticsearch.urls", "http://a:9200/", "twice"],
    );
    refused(
        "[elasticsearch]\nurl = \"http://lb:9200\"\nurls = \"http://a:9200,http://b:9200\"\n",
        &["elasticsearch.url = \"http://lb:9200/\" is not one of elasticsearch.urls"],
    );
    Jail::expect_with(|jail| {
        unset_es_url(jail);
        jail.create_file("ca.pem", "x")?;
        jail.create_file(
            "gw.toml",
            "[elasticsearch]\nurls = \"http://a:9200,http://b:9200\"\n[elasticsearch.tls]\nca_file = \"ca.pem\"\n",
        )?;
        let err = load_in(jail, Some("gw.toml")).unwrap_err().to_string();
        assert!(err.contains("elasticsearch.urls = \"http://a:9200/\" is plain http"), "{err}");
        jail.set_env("ORDER_GATEWAY__ELASTICSEARCH__URLS", "http://127.0.0.1:9200,not a url");
        let err = load_in(jail, None).unwrap_err().to_string();
        assert!(
            err.contains("ORDER_GATEWAY__ELASTICSEARCH__URLS") && err.contains("\"not a url\" is not a URL"),
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn warnings_name_each_elasticsearch_node_reached_in_plain_text() {
    let mut c = Config::defaults();
    c.elasticsearch.urls = UrlList::parse("http://127.0.0.1:9200,http://es-2.internal:9200").unwrap();
    let w = c.warnings().join("\n");
    assert!(w.contains("elasticsearch.urls = \"http://es-2.internal:9200/\"") && !w.contains("127.0.0.1"), "{w}");
}

#[test]
fn tracing_settings_are_checked_and_named() {
    for (var, value, key) in [
        ("ORDER_GATEWAY__TRACING__OTLP_ENDPOINT", "collector:4318", "tracing.otlp_endpoint"),
        ("ORDER_GATEWAY__TRACING__OTLP_ENDPOINT", "ftp://collector:4318", "tracing.otlp_endpoint"),
        ("ORDER_GATEWAY__TRACING__SAMPLE_RATIO", "1.5", "tracing.sample_ratio"),
        ("ORDER_GATEWAY__TRACING__SAMPLE_RATIO", "-0.1", "tracing.sample_ratio"),
        ("ORDER_GATEWAY__TRACING__MAX_QUEUE", "0", "tracing.max_queue"),
        ("ORDER_GATEWAY__TRACING__BATCH_SIZE", "0", "tracing.batch_size"),
        ("ORDER_GATEWAY__TRACING__EXPORT_INTERVAL", "0s", "tracing.export_interval"),
        ("ORDER_GATEWAY__TRACING__SERVICE_NAME", " ", "tracing.service_name"),
        ("ORDER_GATEWAY__TRACING__OTLP_HEADERS", "authorization", "tracing.otlp_headers"),
        ("ORDER_GATEWAY__TRACING__OTLP_HEADERS", "bad name=x", "tracing.otlp_headers"),
    ] {
        Jail::expect_with(|jail| {
            jail.set_env(var, value);
            let err = load_in(jail, None).unwrap_err().to_string();
            assert!(err.contains(key), "{var}={value}: {err}");
            Ok(())
        });
    }
    Jail::expect_with(|jail| {
        jail.set_env("ORDER_GATEWAY__TRACING__OTLP_ENDPOINT", "http://otel-collector:4318");
        jail.set_env("ORDER_GATEWAY__TRACING__SAMPLE_RATIO", "1");
        jail.set_env("ORDER_GATEWAY__TRACING__OTLP_HEADERS", "authorization=Basic c2VjcmV0, x-scope-orgid = tenant-1");
        let c = load_in(jail, None).expect("valid");
        assert_eq!(c.tracing.sample_ratio, 1.0);
        let h = c.tracing.headers().unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!((h[1].0.as_str(), h[1].1.to_str().unwrap()), ("x-scope-orgid", "tenant-1"));
        assert!(h[0].1.is_sensitive());
        Ok(())
    });
    // A bad value is named by position and header name, never printed.
    Jail::expect_with(|jail| {
        jail.set_env("ORDER_GATEWAY__TRACING__OTLP_HEADERS", "authorization=Basic s3cr\x7ft");
        let err = load_in(jail, None).unwrap_err().to_string();
        assert!(!err.contains("s3cr"), "{err}");
        Ok(())
    });
}
