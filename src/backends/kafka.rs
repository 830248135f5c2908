//! The Kafka client: a shared producer whose connection also answers metadata.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::ToBytes;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use super::{timed_unguarded, Backend, BackendError, ADMIN_TIMEOUT};
use crate::config::KafkaConfig;

/// Longest a record waits for room in the producer's queue.
const QUEUE_WAIT: Duration = Duration::from_secs(10);

/// Shared Kafka handle.
#[derive(Clone)]
pub struct KafkaClient {
    producer: Arc<Producer>,
    timeout: Duration,
    brokers: String,
    /// For the admin client `setup` makes when it creates topics.
    base: ClientConfig,
    /// The producer's context: what its brokers last reported.
    context: KafkaContext,
}

type Producer = FutureProducer<KafkaContext>;

impl KafkaClient {
    /// Creates the producer; librdkafka connects lazily in the background.
    pub fn new(cfg: &KafkaConfig) -> anyhow::Result<Self> {
        let base = base_config(cfg)?;
        let context = KafkaContext::default();
        let producer: Producer = base
            .clone()
            .set("message.timeout.ms", cfg.timeout.as_millis().to_string())
            .create_with_context(context.clone())
            .map_err(|e| anyhow::anyhow!("kafka producer for {}: {e}", cfg.brokers))?;
        Ok(KafkaClient {
            producer: Arc::new(producer),
            timeout: cfg.timeout,
            brokers: cfg.brokers.clone(),
            base,
            context,
        })
    }

    /// Produces `record` and waits until Kafka has it; its partition and offset.
    /// No breaker (its only caller is `ingest`, see [`timed_unguarded`]).
    pub async fn send<K, P>(
        &self,
        call: &'static str,
        record: FutureRecord<'_, K, P>,
    ) -> Result<(i32, i64), BackendError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        // Once queued, librdkafka gives up on a record after `message.timeout.ms`
        // (our timeout); before that it may wait QUEUE_WAIT for room in its
        // queue. The deadline lies past both, so librdkafka's own error, which
        // says what went wrong, normally comes first.
        let deadline = QUEUE_WAIT + self.timeout + Duration::from_secs(1);
        let topic = record.topic.to_owned();
        timed_unguarded(Backend::Kafka, call, deadline, async {
            match self.producer.send(record, QUEUE_WAIT).await {
                Ok(d) => Ok((d.partition, d.offset)),
                Err((e, _)) => Err(self.context.explain(format!("producing to {topic}: {e}"))),
            }
        })
        .await
    }

    /// Cluster metadata: usable when at least one broker answers.
    pub async fn ping(&self) -> Result<String, BackendError> {
        let (producer, context) = (self.producer.clone(), self.context.clone());
        let timeout = self.timeout;
        // librdkafka's metadata call blocks its thread; keep it off the runtime.
        let brokers = timed_unguarded(Backend::Kafka, "metadata", timeout + Duration::from_millis(500), async move {
            tokio::task::spawn_blocking(move || {
                use rdkafka::producer::Producer;
                producer
                    .client()
                    .fetch_metadata(None, timeout)
                    .map(|m| m.brokers().len())
                    .map_err(|e| context.explain(format!("metadata: {e}")))
            })
            .await
            .map_err(anyhow::Error::from)?
        })
        .await
        .map_err(|e| e.at(&self.brokers))?;
        if brokers == 0 {
            return Err(BackendError::failed(Backend::Kafka, format!("no broker listed by {}", self.brokers)));
        }
        Ok(format!("{brokers} broker(s)"))
    }
}

// ---- setup: topics ---------------------------------------------------------------
//
// No breaker (see [`timed_unguarded`]). Listing keeps a short deadline: with
// no broker up, librdkafka waits all of it before saying so. Creating a topic
// runs under [`ADMIN_TIMEOUT`], as a broker may take a while to place it.

/// How long a broker may take to list or create topics before librdkafka
/// gives up (at least 5 s, however short the configured timeout).
fn admin_wait(timeout: Duration) -> Duration {
    timeout.max(Duration::from_secs(5))
}

impl KafkaClient {
    /// Every topic and its number of partitions.
    pub async fn topics(&self) -> Result<Vec<(String, usize)>, BackendError> {
        let (producer, context) = (self.producer.clone(), self.context.clone());
        let (wait, brokers) = (admin_wait(self.timeout), self.brokers.clone());
        // librdkafka's metadata call blocks its thread; keep it off the runtime.
        timed_unguarded(Backend::Kafka, "list_topics", wait + Duration::from_millis(500), async move {
            tokio::task::spawn_blocking(move || {
                use rdkafka::producer::Producer;
                let md = producer
                    .client()
                    .fetch_metadata(None, wait)
                    .map_err(|e| context.explain(format!("listing topics on {brokers}: {e}")))?;
                Ok::<_, anyhow::Error>(
                    md.topics().iter().map(|t| (t.name().to_owned(), t.partitions().len())).collect(),
                )
            })
            .await
            .map_err(anyhow::Error::from)?
        })
        .await
    }

    /// Creates topic `name`; false when it already existed.
    pub async fn create_topic(&self, name: &str, partitions: i32, replication: i32) -> Result<bool, BackendError> {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        use rdkafka::types::RDKafkaErrorCode;

        let wait = admin_wait(self.timeout);
        timed_unguarded(Backend::Kafka, "create_topic", ADMIN_TIMEOUT, async {
            let admin: AdminClient<DefaultClientContext> =
                self.base.create().map_err(|e| anyhow::anyhow!("admin client for {}: {e}", self.brokers))?;
            let res = admin
                .create_topics(
                    &[NewTopic::new(name, partitions, TopicReplication::Fixed(replication))],
                    &AdminOptions::new().operation_timeout(Some(wait)),
                )
                .await
                .map_err(|e| self.context.explain(format!("creating topic {name}: {e}")))?;
            match res.first() {
                Some(Ok(_)) => Ok(true),
                Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
                Some(Err((_, code))) => Err(anyhow::anyhow!("creating topic {name}: {code}")),
                None => Err(anyhow::anyhow!("creating topic {name}: no result")),
            }
        })
        .await
    }
}

/// Settings every gateway client shares: addresses, deadlines, security and
/// `kafka.options`. Checked by librdkafka here, so an unknown property or a
/// bad value stops the command with its name (never its value: it may be a
/// password).
pub fn base_config(cfg: &KafkaConfig) -> anyhow::Result<ClientConfig> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", &cfg.client_id)
        .set("socket.timeout.ms", cfg.timeout.as_millis().max(10).to_string())
        // Quiet reconnect storms while a broker is away; readiness reports it.
        .set("reconnect.backoff.max.ms", "2000")
        .set("security.protocol", cfg.security_protocol.as_librdkafka());
    if cfg.security_protocol.uses_sasl() {
        c.set("sasl.mechanism", cfg.sasl_mechanism.as_librdkafka())
            .set("sasl.username", &cfg.sasl_username)
            .set("sasl.password", cfg.sasl_password.expose());
    }
    if cfg.security_protocol.uses_tls() {
        // Without a CA file, find the system's bundle: the OpenSSL linked in
        // was built with its own default paths, not this system's.
        let ca = cfg.tls.ca().map_or_else(|| "probe".to_string(), |p| p.display().to_string());
        c.set("ssl.ca.location", ca).set("ssl.endpoint.identification.algorithm", "https");
        if let Some((cert, key)) = cfg.tls.client_identity() {
            c.set("ssl.certificate.location", cert.display().to_string())
                .set("ssl.key.location", key.display().to_string());
        }
    }
    for (k, v) in &cfg.options.0 {
        c.set(k, v);
    }
    if let Err(e) = c.create_native_config() {
        return Err(match e {
            rdkafka::error::KafkaError::ClientConfig(_, why, key, _value) if cfg.options.0.contains_key(&key) => {
                anyhow::anyhow!("kafka.options.\"{key}\": {why}")
            }
            rdkafka::error::KafkaError::ClientConfig(_, why, key, _value) => anyhow::anyhow!("kafka: {key}: {why}"),
            other => anyhow::anyhow!("kafka: {other}"),
        });
    }
    Ok(c)
}

/// The context of every gateway Kafka client: librdkafka's errors go to the
/// log (never with credentials: librdkafka does not print them), and the last
/// one is kept, so a call that gives up can say why the brokers did not
/// answer (a refused password or certificate reaches only this callback).
#[derive(Clone, Default)]
pub struct KafkaContext {
    /// Shared by the clones a caller keeps to explain its errors.
    last_error: Arc<std::sync::Mutex<Option<String>>>,
}

impl KafkaContext {
    /// The last error the brokers' connections reported, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `err`, with what the brokers last reported added when there is one.
    pub fn explain(&self, err: impl std::fmt::Display) -> anyhow::Error {
        match self.last_error() {
            Some(last) => anyhow::anyhow!("{err} (last broker error: {last})"),
            None => anyhow::anyhow!("{err}"),
        }
    }
}

impl rdkafka::ClientContext for KafkaContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(error = %error, reason, "kafka client error");
        let text = if reason.is_empty() { error.to_string() } else { reason.to_string() };
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        // "1/1 brokers are down" follows the error that says why: keep that one.
        let generic = error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown);
        if !(generic && last.is_some()) {
            *last = Some(text);
        }
    }
}

impl rdkafka::consumer::ConsumerContext for KafkaContext {}
