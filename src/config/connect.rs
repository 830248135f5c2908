//! How the gateway reaches a backend outside the loopback: TLS, credentials
//! read from files, and Kafka's security settings.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{is_secret_key, ConfigError, Secret};

/// TLS to one backend. Empty paths mean "not set".
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of CA certificates trusted in addition to the system roots.
    pub ca_file: String,
    /// PEM certificate chain presented to the server (mutual TLS).
    pub client_cert_file: String,
    /// PEM private key of `client_cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub client_key_file: String,
}

impl TlsConfig {
    /// The CA file, if one is configured.
    pub fn ca(&self) -> Option<&Path> {
        path(&self.ca_file)
    }

    /// The client certificate and its key, if configured (both or neither,
    /// see [`TlsConfig::check`]).
    pub fn client_identity(&self) -> Option<(&Path, &Path)> {
        Some((path(&self.client_cert_file)?, path(&self.client_key_file)?))
    }

    /// Whether any file is configured.
    pub fn is_set(&self) -> bool {
        self.ca().is_some() || path(&self.client_cert_file).is_some() || path(&self.client_key_file).is_some()
    }

    /// A client certificate needs its key and the other way round; every file
    /// named must be readable now, not at the first call.
    pub(super) fn check(&self, section: &str) -> Result<(), ConfigError> {
        let (cert, key) = (path(&self.client_cert_file), path(&self.client_key_file));
        if cert.is_some() != key.is_some() {
            let (set, missing) = if cert.is_some() {
                ("client_cert_file", "client_key_file")
            } else {
                ("client_key_file", "client_cert_file")
            };
            return Err(ConfigError(format!(
                "{section}.tls.{set} is set but {section}.tls.{missing} is not: mutual TLS needs both"
            )));
        }
        for (key, p) in [("ca_file", self.ca()), ("client_cert_file", cert), ("client_key_file", key)] {
            if let Some(p) = p {
                std::fs::metadata(p)
                    .and_then(|m| if m.is_file() { Ok(()) } else { Err(std::io::Error::other("not a regular file")) })
                    .map_err(|e| {
                        ConfigError(format!("{section}.tls.{key} = {:?}: cannot read it: {e}", p.display()))
                    })?;
            }
        }
        Ok(())
    }
}

fn path(s: &str) -> Option<&Path> {
    (!s.trim().is_empty()).then(|| Path::new(s))
}

/// Reads a secret from `file` into `secret` when `file` is set (a mounted
/// Kubernetes secret, for instance). One trailing line break is dropped: the
/// usual `echo ... > file` adds it and no password ends with one.
pub(super) fn read_secret_file(key: &str, secret: &mut Secret, file: &str) -> Result<(), ConfigError> {
    let Some(p) = path(file) else { return Ok(()) };
    if secret.is_set() {
        return Err(ConfigError(format!("{key} and {key}_file are both set: set one of them")));
    }
    let text = std::fs::read_to_string(p)
        .map_err(|e| ConfigError(format!("{key}_file = {:?}: cannot read it: {e}", p.display())))?;
    let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    if text.is_empty() {
        return Err(ConfigError(format!("{key}_file = {:?}: the file is empty", p.display())));
    }
    *secret = Secret::from(text);
    Ok(())
}

/// Base URLs of a cluster's nodes: a TOML array, or one string of URLs
/// separated by commas (as `kafka.brokers`), which is what an environment
/// variable holds (`..._URLS="http://a:9200,http://b:9200"`). Empty: none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlList(pub Vec<url::Url>);

impl UrlList {
    /// The URLs of `text`, separated by commas; blanks around them are ignored.
    pub fn parse(text: &str) -> Result<UrlList, String> {
        text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(parse_url).collect::<Result<_, _>>().map(UrlList)
    }
}

fn parse_url(s: &str) -> Result<url::Url, String> {
    url::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))
}

/// `url` as shown in `check-config` and compared by a reload: a password in it masked.
pub(super) fn masked_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        // Only fails for URLs that cannot carry credentials, which these did.
        let _ = shown.set_password(Some("********"));
    }
    shown.to_string()
}

impl Serialize for UrlList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(masked_url))
    }
}

impl<'de> Deserialize<'de> for UrlList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Urls;
        impl<'de> serde::de::Visitor<'de> for Urls {
            type Value = UrlList;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of URLs, or URLs separated by commas")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<UrlList, E> {
                UrlList::parse(v).map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UrlList, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(parse_url(s.trim()).map_err(serde::de::Error::custom)?);
                }
                Ok(UrlList(out))
            }
        }
        d.deserialize_any(Urls)
    }
}

/// `security.protocol` of every Kafka client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaSecurity {
    #[serde(alias = "PLAINTEXT")]
    Plaintext,
    #[serde(alias = "SSL")]
    Ssl,
    #[serde(alias = "SASL_PLAINTEXT")]
    SaslPlaintext,
    #[serde(alias = "SASL_SSL")]
    SaslSsl,
}

impl KafkaSecurity {
    /// librdkafka's spelling.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            KafkaSecurity::Plaintext => "plaintext",
            KafkaSecurity::Ssl => "ssl",
            KafkaSecurity::SaslPlaintext => "sasl_plaintext",
            KafkaSecurity::SaslSsl => "sasl_ssl",
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, KafkaSecurity::Ssl | KafkaSecurity::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, KafkaSecurity::SaslPlaintext | KafkaSecurity::SaslSsl)
    }
}

/// The SASL mechanisms this build of librdkafka offers without system
/// services (GSSAPI needs Kerberos; OAUTHBEARER's OIDC flow needs libcurl).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// Further librdkafka properties, passed to every Kafka client after the
/// gateway's defaults. Values of secret-looking keys (`ssl.key.password`)
/// never show in debug output or `check-config`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaOptions(pub BTreeMap<String, String>);

/// Properties the typed `[kafka]` keys own: setting them twice would leave
/// the reader guessing which one wins.
pub const KAFKA_OWNED_PROPERTIES: [(&str, &str); 12] = [
    ("bootstrap.servers", "kafka.brokers"),
    ("metadata.broker.list", "kafka.brokers"),
    ("client.id", "kafka.client_id"),
    ("security.protocol", "kafka.security_protocol"),
    ("sasl.mechanism", "kafka.sasl_mechanism"),
    ("sasl.mechanisms", "kafka.sasl_mechanism"),
    ("sasl.username", "kafka.sasl_username"),
    ("sasl.password", "kafka.sasl_password"),
    ("ssl.ca.location", "kafka.tls.ca_file"),
    ("ssl.certificate.location", "kafka.tls.client_cert_file"),
    ("ssl.key.location", "kafka.tls.client_key_file"),
    ("enable.ssl.certificate.verification", "(always on)"),
];

impl KafkaOptions {
    /// Refuses a property a typed key owns; the names of properties
    /// librdkafka does not know are checked where the clients are built.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        for key in self.0.keys() {
            if let Some((_, owner)) = KAFKA_OWNED_PROPERTIES.iter().find(|(p, _)| p == key) {
                let why = if *owner == "(always on)" {
                    "certificate verification cannot be turned off".to_string()
                } else {
                    format!("set {owner} instead")
                };
                return Err(ConfigError(format!("kafka.options.\"{key}\": {why}")));
            }
        }
        Ok(())
    }
}

fn masked(key: &str, value: &str) -> String {
    if is_secret_key(key) && !value.is_empty() {
        "********".to_string()
    } else {
        value.to_string()
    }
}

impl std::fmt::Debug for KafkaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.0.iter().map(|(k, v)| (k, masked(k, v)))).finish()
    }
}

impl Serialize for KafkaOptions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, &masked(k, v))?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for KafkaOptions {
    /// A table of scalars: `"fetch.max.bytes" = 1048576` is as good as the
    /// quoted number librdkafka wants.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, Secret>::deserialize(d)?;
        Ok(KafkaOptions(raw.into_iter().map(|(k, v)| (k, v.expose().to_string())).collect()))
    }
}

/// Whether `host` is this machine: plain text to it never leaves it.
pub fn is_loopback_host<S: AsRef<str>>(host: &url::Host<S>) -> bool {
    match host {
        url::Host::Domain(d) => {
            let d = d.as_ref().to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}
