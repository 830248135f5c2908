//! The ClickHouse client (analytical store and orders older than the hot window).

use std::time::Duration;

use super::{timed, Backend, BackendError};
use crate::config::ClickHouseConfig;

/// Shared ClickHouse client with the configured deadline.
#[derive(Clone)]
pub struct ChClient {
    client: clickhouse::Client,
    timeout: Duration,
}

impl ChClient {
    /// Builds the client; no query is sent.
    pub fn new(cfg: &ClickHouseConfig) -> Self {
        let mut client = clickhouse::Client::default()
            .with_url(cfg.url.as_str().trim_end_matches('/'))
            .with_database(&cfg.database)
            .with_user(&cfg.user);
        if cfg.password.is_set() {
            client = client.with_password(cfg.password.expose());
        }
        ChClient { client, timeout: cfg.timeout }
    }

    /// The underlying client, for the modules that query.
    pub fn client(&self) -> &clickhouse::Client {
        &self.client
    }

    /// The per-query deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `SELECT version()`: usable when the server answers a query.
    pub async fn ping(&self) -> Result<String, BackendError> {
        let version: String = timed(Backend::ClickHouse, "ping", self.timeout, async {
            self.client.query("SELECT version()").fetch_one::<String>().await
        })
        .await?;
        Ok(format!("version {version}"))
    }
}
