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
