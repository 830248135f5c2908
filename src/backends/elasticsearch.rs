//! The Elasticsearch client (operational store).

use std::sync::Arc;
use std::time::Duration;

use elasticsearch::auth::Credentials;
use elasticsearch::cluster::ClusterHealthParts;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::Elasticsearch;

use super::{timed, timed_unguarded, Backend, BackendError, Breaker, Refused};
use crate::config::ElasticsearchConfig;

/// Shared Elasticsearch client with the configured deadline.
#[derive(Clone)]
pub struct EsClient {
    client: Elasticsearch,
    timeout: Duration,
    breaker: Arc<Breaker>,
}

impl EsClient {
    /// Builds the client; no request is made. Its searches go through `breaker`.
    pub fn new(cfg: &ElasticsearchConfig, breaker: Arc<Breaker>) -> anyhow::Result<Self> {
        let pool = SingleNodeConnectionPool::new(cfg.url.clone());
        let mut builder = TransportBuilder::new(pool).timeout(cfg.timeout);
        if !cfg.username.is_empty() {
            builder = builder.auth(Credentials::Basic(cfg.username.clone(), cfg.password.expose().to_string()));
        }
        let transport = builder.build().map_err(|e| anyhow::anyhow!("elasticsearch client for {}: {e}", cfg.url))?;
        Ok(EsClient { client: Elasticsearch::new(transport), timeout: cfg.timeout, breaker })
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
        let body: serde_json::Value = timed_unguarded(Backend::Elasticsearch, "cluster_health", self.timeout, async {
            let resp = self.client.cluster().health(ClusterHealthParts::None).send().await?.error_for_status_code()?;
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

/// One search hit: the view and its sort values (for `search_after`).
#[derive(Debug, Clone)]
pub struct Hit {
    pub view: crate::model::OrderView,
    pub sort: Vec<serde_json::Value>,
}

impl EsClient {
    /// Views of `ids` through the read alias (one search, any number of
    /// indices behind the alias). Ids that are not found are simply absent.
    pub async fn get_orders(
        &self,
        alias: &str,
        ids: &[&str],
        traceparent: Option<&str>,
    ) -> Result<Vec<crate::model::OrderView>, BackendError> {
        let body = serde_json::json!({ "size": ids.len(), "query": { "ids": { "values": ids } } });
        let call = if ids.len() == 1 { "get_order" } else { "get_orders" };
        Ok(self.search_orders(alias, call, body, traceparent).await?.into_iter().map(|h| h.view).collect())
    }

    /// Runs a search whose hits are order views.
    pub async fn search_orders(
        &self,
        alias: &str,
        call: &'static str,
        body: serde_json::Value,
        traceparent: Option<&str>,
    ) -> Result<Vec<Hit>, BackendError> {
        let value: serde_json::Value = timed(&self.breaker, call, self.timeout, async {
            let indices = [alias];
            let mut req = self.client.search(elasticsearch::SearchParts::Index(&indices)).body(body);
            if let Some(tp) = traceparent {
                req = req.header(
                    elasticsearch::http::headers::HeaderName::from_static("traceparent"),
                    elasticsearch::http::headers::HeaderValue::from_str(tp)?,
                );
            }
            let resp = req.send().await?;
            let status = resp.status_code();
            let v: serde_json::Value = resp.json().await?;
            if !status.is_success() {
                let why = format!("status {status}: {}", v["error"]["reason"].as_str().unwrap_or("no reason"));
                // 4xx refuses this search; 408 and 429 say the cluster is struggling.
                if (400..500).contains(&status.as_u16()) && !matches!(status.as_u16(), 408 | 429) {
                    return Err(Refused(why).into());
                }
                anyhow::bail!(why);
            }
            Ok::<_, anyhow::Error>(v)
        })
        .await?;
        value["hits"]["hits"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| {
                let view = serde_json::from_value(h["_source"].clone()).map_err(|e| {
                    BackendError::failed(
                        Backend::Elasticsearch,
                        format!("document {} is not an order view: {e}", h["_id"]),
                    )
                })?;
                Ok(Hit { view, sort: h["sort"].as_array().cloned().unwrap_or_default() })
            })
            .collect()
    }
}
