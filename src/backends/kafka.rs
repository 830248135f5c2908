//! The Kafka client: a shared producer whose connection also answers metadata.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;

use super::{timed_unguarded, Backend, BackendError};
use crate::config::KafkaConfig;

/// Shared Kafka handle.
#[derive(Clone)]
pub struct KafkaClient {
    producer: Arc<FutureProducer>,
    timeout: Duration,
    brokers: String,
}

impl KafkaClient {
    /// Creates the producer; librdkafka connects lazily in the background.
    pub fn new(cfg: &KafkaConfig) -> anyhow::Result<Self> {
        let producer: FutureProducer = base_config(cfg)
            .set("message.timeout.ms", cfg.timeout.as_millis().to_string())
            .create()
            .map_err(|e| anyhow::anyhow!("kafka producer for {}: {e}", cfg.brokers))?;
        Ok(KafkaClient { producer: Arc::new(producer), timeout: cfg.timeout, brokers: cfg.brokers.clone() })
    }

    /// The shared producer.
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Cluster metadata: usable when at least one broker answers.
    pub async fn ping(&self) -> Result<String, BackendError> {
        let producer = self.producer.clone();
        let timeout = self.timeout;
        // librdkafka's metadata call blocks its thread; keep it off the runtime.
        let brokers = timed_unguarded(Backend::Kafka, "metadata", timeout + Duration::from_millis(500), async move {
            tokio::task::spawn_blocking(move || {
                use rdkafka::producer::Producer;
                producer.client().fetch_metadata(None, timeout).map(|m| m.brokers().len()).map_err(anyhow::Error::from)
            })
            .await
            .map_err(anyhow::Error::from)?
        })
        .await?;
        if brokers == 0 {
            return Err(BackendError::failed(Backend::Kafka, format!("no broker listed by {}", self.brokers)));
        }
        Ok(format!("{brokers} broker(s)"))
    }
}

/// Settings every gateway client shares.
pub fn base_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", &cfg.client_id)
        .set("socket.timeout.ms", cfg.timeout.as_millis().max(10).to_string())
        // Quiet reconnect storms while a broker is away; readiness reports it.
        .set("reconnect.backoff.max.ms", "2000");
    c
}
