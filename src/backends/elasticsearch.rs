//! The Elasticsearch client (operational store).

use std::time::Duration;

use elasticsearch::auth::Credentials;
use elasticsearch::cluster::ClusterHealthParts;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::Elasticsearch;

use super::{timed, Backend, BackendError};
use crate::config::ElasticsearchConfig;

/// Shared Elasticsearch client with the configured deadline.
#[derive(Clone)]
pub struct EsClient {
    client: Elasticsearch,
    timeout: Duration,
}

impl EsClient {
    /// Builds the client; no request is made.
    pub fn new(cfg: &ElasticsearchConfig) -> anyhow::Result<Self> {
        let pool = SingleNodeConnectionPool::new(cfg.url.clone());
        let mut builder = TransportBuilder::new(pool).timeout(cfg.timeout);
        if !cfg.username.is_empty() {
            builder = builder.auth(Credentials::Basic(
                cfg.username.clone(),
                cfg.password.expose().to_string(),
            ));
        }
        let transport = builder
            .build()
            .map_err(|e| anyhow::anyhow!("elasticsearch client for {}: {e}", cfg.url))?;
        Ok(EsClient { client: Elasticsearch::new(transport), timeout: cfg.timeout })
    }

    /// The underlying client, for the modules that issue requests.
    pub fn client(&self) -> &Elasticsearch {
        &self.client
    }

    /// The per-request deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Cluster health: usable when yellow or green.
    pub async fn ping(&self) -> Result<String, BackendError> {
        let body: serde_json::Value = timed(Backend::Elasticsearch, "cluster_health", self.timeout, async {
            let resp = self
                .client
                .cluster()
                .health(ClusterHealthParts::None)
                .send()
                .await?
                .error_for_status_code()?;
            resp.json::<serde_json::Value>().await
        })
        .await?;
        let status = body.get("status").and_then(|s| s.as_str()).unwrap_or("unknown").to_string();
        match status.as_str() {
            "green" | "yellow" => Ok(format!("cluster status {status}")),
            _ => Err(BackendError::failed(Backend::Elasticsearch, format!("cluster status {status}"))),
        }
    }
}
