//! The schema registry client (Confluent-compatible API).

use std::time::Duration;

use url::Url;

use super::{timed_unguarded, Backend, BackendError};
use crate::config::SchemaRegistryConfig;

/// Shared HTTP client for the registry.
#[derive(Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    base: Url,
    timeout: Duration,
    auth: Option<(String, String)>,
    /// host:port, for errors that must say where.
    endpoint: String,
}

impl RegistryClient {
    /// Builds the client; no request is made.
    pub fn new(cfg: &SchemaRegistryConfig) -> anyhow::Result<Self> {
        let mut http = reqwest::Client::builder().timeout(cfg.timeout);
        if cfg.url.scheme() == "https" {
            http = http.use_preconfigured_tls(super::tls::client_config(Backend::SchemaRegistry, &cfg.tls)?);
        }
        let http = http.build().map_err(|e| anyhow::anyhow!("schema registry client: {e}"))?;
        let mut base = cfg.url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let auth = (!cfg.username.is_empty()).then(|| (cfg.username.clone(), cfg.password.expose().to_string()));
        Ok(RegistryClient { http, base, timeout: cfg.timeout, auth, endpoint: super::endpoint(&cfg.url) })
    }

    /// A GET request to `path` under the registry's base URL.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let url = self.base.join(path).expect("registry paths are relative and valid");
        let req = self.http.get(url).header("accept", "application/vnd.schemaregistry.v1+json");
        match &self.auth {
            Some((u, p)) => req.basic_auth(u, Some(p)),
            None => req,
        }
    }

    /// Registers an Avro schema under `subject` and returns its id; registering
    /// an identical schema again returns the same id (the registry dedupes).
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, BackendError> {
        self.post_schema("register_schema", &format!("subjects/{subject}/versions"), schema, "registering", subject)
            .await?
            .ok_or_else(|| {
                BackendError::failed(Backend::SchemaRegistry, format!("registering {subject}: subject not found"))
            })
    }

    /// The id of `schema` under `subject` if it is registered there.
    pub async fn lookup(&self, subject: &str, schema: &str) -> Result<Option<u32>, BackendError> {
        self.post_schema("lookup_schema", &format!("subjects/{subject}"), schema, "looking up", subject).await
    }

    /// POSTs an Avro schema to `path`; the answer's `id`, or None on 404.
    /// Registering and looking up are idempotent, so a failure is retried;
    /// each attempt is one call under the deadline, without a breaker (its
    /// callers are `setup`, `seed` and tests, see [`timed_unguarded`]).
    async fn post_schema(
        &self,
        call: &'static str,
        path: &str,
        schema: &str,
        what: &str,
        subject: &str,
    ) -> Result<Option<u32>, BackendError> {
        let mut attempt = 0;
        loop {
            let once = self.post_schema_once(path, schema, what, subject);
            match timed_unguarded(Backend::SchemaRegistry, call, self.timeout, once).await {
                Err(e) if attempt < 3 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "schema registry request failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(250 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    async fn post_schema_once(
        &self,
        path: &str,
        schema: &str,
        what: &str,
        subject: &str,
    ) -> anyhow::Result<Option<u32>> {
        let url = self.base.join(path)?;
        let mut req = self
            .http
            .post(url)
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .json(&serde_json::json!({ "schema": schema, "schemaType": "AVRO" }));
        if let Some((u, p)) = &self.auth {
            req = req.basic_auth(u, Some(p));
        }
        let resp = req.send().await.map_err(|e| anyhow::anyhow!("{what} {subject}: {e}"))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!("{what} {subject}: {status} {body}");
        }
        let v: serde_json::Value = serde_json::from_str(&body)?;
        let id = v.get("id").and_then(|i| i.as_u64()).and_then(|i| u32::try_from(i).ok());
        id.map(Some).ok_or_else(|| anyhow::anyhow!("{what} {subject}: no id in {body}"))
    }

    /// `GET /subjects`: usable when it answers 200.
    pub async fn ping(&self) -> Result<String, BackendError> {
        let subjects: Vec<String> = timed_unguarded(Backend::SchemaRegistry, "list_subjects", self.timeout, async {
            self.get("subjects").send().await?.error_for_status()?.json::<Vec<String>>().await
        })
        .await
        .map_err(|e| e.at(&self.endpoint))?;
        Ok(format!("{} subject(s)", subjects.len()))
    }
}
