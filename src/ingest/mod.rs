//! `order-gateway ingest`: projects the order topics into Elasticsearch and
//! ClickHouse, at least once.
//!
//! A batch travels: Kafka (consumer group) -> decode (`events`) -> group by
//! order -> plan (`plan`, pure) -> Elasticsearch bulk with optimistic
//! concurrency -> ClickHouse inserts -> dead letters -> offsets committed.
//! Offsets are committed only after both stores and the dead-letter topic
//! have the batch, so a crash at any point replays, never loses.
//!
//! Why merge-on-write with sequence numbers rather than external versioning:
//! a document holds several independently versioned components (the order
//! header and each fulfilment), so no single external version can order its
//! writes. Each write reads the document (or takes it from a cache of our own
//! last writes), merges with `OrderView::apply`, and writes back only if the
//! document's `_seq_no` is unchanged; a conflict re-reads and re-merges.

pub mod plan;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::backends::kafka::KafkaContext;
use crate::backends::{Backend, BackendError, Backends};
use crate::config::{Config, WireFormat};
use crate::events::{self, Decoder, Stream};
use crate::model::Timestamp;
use crate::telemetry::{self, names};
use plan::{Decoded, EsAction, MsgRef, Stored};

/// A consumed message, owned.
#[derive(Debug, Clone)]
pub struct Msg {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The producer's sampled trace (its `traceparent` header), with this
    /// message's consumer span id, when tracing is on: the registry call of
    /// its decoding and the span of its processing share it.
    pub trace: Option<telemetry::context::TraceParent>,
}

impl Msg {
    fn source(&self) -> MsgRef {
        MsgRef { topic: self.topic.clone(), partition: self.partition, offset: self.offset }
    }
}

/// A message ingest will not use, and why.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub msg: Msg,
    pub reason: &'static str,
    pub detail: String,
}

/// Options of `ingest`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct IngestArgs {
    /// Exit (after committing) once no message has arrived for this long, e.g.
    /// "10s": for backfills and benchmarks. Without it, ingest runs until SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub exit_when_idle: Option<Duration>,
}

/// Runs `ingest` until SIGTERM or SIGINT, then finishes the batch in hand.
pub async fn run(config: &Config, args: &IngestArgs) -> anyhow::Result<()> {
    let handle = telemetry::init_metrics()?;
    names::describe_ingest();
    names::init_ingest_series(DEAD_LETTER_REASONS, &Backend::ALL.map(retry_label));
    telemetry::serve_metrics(config.ingest.metrics_listen, handle).await?;
    let spans = telemetry::trace::install(&config.tracing, &telemetry::trace::instance_id())?;

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::info!("ingest: stop requested; finishing the current batch");
        let _ = stop_tx.send(true);
    });
    let mut ingest = Ingest::new(config)?;
    ingest.exit_when_idle = args.exit_when_idle;
    let result = ingest.run(stop_rx).await;
    if let Some(spans) = spans {
        spans.flush().await;
    }
    result
}

/// A span per message whose producer sampled its trace (a `traceparent`
/// header): from when the batch was taken to when its offsets were
/// committed, under the producer's span, so a trace shows an event's way from
/// the producer into Elasticsearch and ClickHouse.
fn consumer_spans(batch: &[Msg], taken_unix_nanos: u64) {
    use telemetry::trace::{self, Attr, Kind, SpanRecord};
    if !trace::enabled() {
        return;
    }
    let end = trace::unix_nanos();
    for msg in batch {
        let Some(parent) = &msg.trace else { continue };
        trace::record(SpanRecord {
            trace_id: parent.trace_id.0,
            span_id: parent.span_id,
            parent_id: parent.parent_id,
            name: format!("process {}", msg.topic).into(),
            kind: Kind::Consumer,
            start_unix_nanos: taken_unix_nanos,
            end_unix_nanos: end,
            attributes: vec![
                ("messaging.system", Attr::from("kafka")),
                ("messaging.operation.type", Attr::from("process")),
                ("messaging.destination.name", Attr::from(msg.topic.clone())),
                ("messaging.destination.partition.id", Attr::from(msg.partition.to_string())),
                ("messaging.kafka.offset", Attr::Int(msg.offset)),
                ("messaging.batch.message_count", Attr::Int(batch.len() as i64)),
            ],
            error: None,
        });
    }
}

/// The projector's state.
pub struct Ingest {
    config: Config,
    backends: Backends,
    decoder: Decoder,
    consumer: Arc<StreamConsumer<KafkaContext>>,
    /// Our own last writes: order id -> document state. Saves a read per
    /// order on the hot path; a stale entry only costs a conflict and a re-read.
    written: moka::sync::Cache<String, Stored>,
    /// See [`IngestArgs::exit_when_idle`].
    pub exit_when_idle: Option<Duration>,
}

impl Ingest {
    /// Connects the consumer group and subscribes to the configured topics.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let backends = Backends::from_config(config)?;
        let consumer: StreamConsumer<KafkaContext> = crate::backends::kafka::base_config(&config.kafka)?
            .set("group.id", &config.ingest.group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "50")
            .set("session.timeout.ms", "10000")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .create_with_context(KafkaContext::default())
            .map_err(|e| anyhow::anyhow!("kafka consumer for {}: {e}", config.kafka.brokers))?;
        let mut topics = vec![config.topics.orders.as_str(), config.topics.fulfillments.as_str()];
        for cdc in [&config.topics.cdc, &config.topics.cdc_lines] {
            if !cdc.is_empty() {
                topics.push(cdc.as_str());
            }
        }
        consumer.subscribe(&topics).map_err(|e| anyhow::anyhow!("kafka: subscribing to {topics:?}: {e}"))?;
        tracing::info!(group = %config.ingest.group_id, ?topics, "ingest subscribed");
        Ok(Ingest {
            config: config.clone(),
            decoder: Decoder::for_ingest(config, backends.schema_registry.clone()),
            backends,
            consumer: Arc::new(consumer),
            written: moka::sync::Cache::new(200_000),
            exit_when_idle: None,
        })
    }

    /// The consume, write, commit loop.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let _lag = self.spawn_lag_recorder();
        // Throughput from the first message to the last commit (idle time excluded).
        let (mut total, mut first_at, mut last_commit) = (0u64, None::<Instant>, Instant::now());
        loop {
            let batch = self.collect(&mut stop).await?;
            let idle_exit = batch.is_empty() && self.exit_when_idle.is_some();
            let stopping = *stop.borrow() || idle_exit;
            if !batch.is_empty() {
                let started = Instant::now();
                let taken = telemetry::trace::unix_nanos();
                first_at.get_or_insert(started);
                let n = batch.len();
                self.process_until_done(&batch, &mut stop).await?;
                self.commit(&batch)?;
                consumer_spans(&batch, taken);
                metrics::histogram!(names::INGEST_BATCH_DURATION).record(started.elapsed().as_secs_f64());
                metrics::histogram!(names::INGEST_BATCH_EVENTS).record(n as f64);
                tracing::debug!(messages = n, ms = started.elapsed().as_millis() as u64, "batch committed");
                total += n as u64;
                last_commit = Instant::now();
            }
            if stopping {
                let secs = first_at.map_or(0.0, |f| last_commit.duration_since(f).as_secs_f64());
                let rate = if secs > 0.0 { total as f64 / secs } else { 0.0 };
                tracing::info!(
                    messages = total,
                    seconds = secs,
                    messages_per_second = rate.round(),
                    "ingest stopped; offsets committed"
                );
                return Ok(());
            }
        }
    }

    /// Waits for the first message, then takes more until the batch is full
    /// or `batch_linger` has passed.
    async fn collect(&self, stop: &mut watch::Receiver<bool>) -> anyhow::Result<Vec<Msg>> {
        let max = self.config.ingest.batch_size;
        let mut batch = Vec::new();
        let idle = self.exit_when_idle.unwrap_or(Duration::from_secs(86_400 * 365));
        let mut idle_until = tokio::time::Instant::now() + idle;
        loop {
            let first = tokio::select! {
                m = self.consumer.recv() => m,
                _ = stop.changed() => return Ok(batch),
                _ = tokio::time::sleep_until(idle_until) => {
                    // Idle only counts once the group has given us partitions: joining
                    // a group on a fresh cluster can itself take seconds.
                    if self.consumer.assignment().map(|a| a.count()).unwrap_or(0) == 0 {
                        idle_until = tokio::time::Instant::now() + idle;
                        continue;
                    }
                    tracing::info!(idle_secs = idle.as_secs_f64(), "ingest: idle; exiting as asked");
                    return Ok(batch);
                }
            };
            match first {
                Ok(m) => {
                    batch.push(own(m));
                    break;
                }
                // A missing topic or a broker away is not fatal: the consumer
                // recovers by itself once the topic exists or the broker is back.
                Err(e) => {
                    tracing::warn!(error = %e, "kafka: consume error (does every topic exist? `order-gateway setup` creates them)");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        let deadline = tokio::time::Instant::now() + self.config.ingest.batch_linger;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(m)) => batch.push(own(m)),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "kafka: consume error");
                    break;
                }
                Err(_) => break,
            }
        }
        Ok(batch)
    }

    /// Processes a batch, retrying with backoff while a backend is down; only
    /// a stop request ends the retries (uncommitted: the batch is replayed).
    /// No breaker stands in front of these calls: this backoff is ingest's own
    /// (see `backends::timed_unguarded`).
    async fn process_until_done(&self, batch: &[Msg], stop: &mut watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(250);
        loop {
            match self.process(batch).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.written.invalidate_all();
                    tracing::warn!(backend = %e.backend(), error = %e, retry_in_ms = backoff.as_millis() as u64, "ingest batch failed; retrying");
                    metrics::counter!(names::INGEST_RETRIES, "backend" => retry_label(e.backend())).increment(1);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => anyhow::bail!("stopped while a backend was failing: {e:#}"),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// One attempt at a batch. Every way it can fail is a backend's, and the
    /// error says which.
    pub async fn process(&self, batch: &[Msg]) -> Result<(), BackendError> {
        let mut dead = Vec::new();
        let mut decoded = Vec::with_capacity(batch.len());
        for msg in batch {
            match self.decode(msg).await {
                Ok(Some(event)) => decoded.push(Decoded { component: event.component, source: msg.source() }),
                Ok(None) => count(&msg.topic, "skipped"),
                Err(Verdict::Dead(reason, detail)) => dead.push(DeadLetter { msg: msg.clone(), reason, detail }),
                Err(Verdict::Retry(e)) => return Err(e),
            }
        }
        let by_msg: HashMap<(String, i32, i64), &Msg> =
            batch.iter().map(|m| ((m.topic.clone(), m.partition, m.offset), m)).collect();
        let find = |r: &MsgRef| by_msg.get(&(r.topic.clone(), r.partition, r.offset)).map(|m| (*m).clone());

        let groups = plan::group(decoded);
        let hot_since = Timestamp(Timestamp::now().millis() - self.config.ingest.hot_window.as_millis() as i64);
        let mut pending: Vec<&String> = groups.keys().collect();
        let mut plans: BTreeMap<String, plan::OrderPlan> = BTreeMap::new();
        for attempt in 0..6 {
            if pending.is_empty() {
                break;
            }
            if attempt > 0 {
                self.backends.elasticsearch.refresh(&self.config.elasticsearch.read_alias).await?;
            }
            let stored = self.lookup(&pending).await?;
            let missing: Vec<&str> =
                pending.iter().filter(|id| !stored.contains_key(**id)).map(|s| s.as_str()).collect();
            let cold = store::ch_cold_info(&self.backends.clickhouse, &missing).await?;
            let mut actions = Vec::new();
            for id in &pending {
                let p = plan::plan_order(id, &groups[*id], stored.get(*id), cold.get(*id).copied(), hot_since);
                if let Some(a) = &p.es {
                    actions.push(((*id).clone(), a.clone()));
                } else {
                    metrics::counter!(names::INGEST_ES_DOCS, "outcome" => if p.cold { "cold" } else { "unchanged" })
                        .increment(1);
                }
                plans.insert((*id).clone(), p);
            }
            let out =
                store::es_bulk(&self.backends.elasticsearch, &self.config.elasticsearch.write_alias, &actions).await?;
            for (id, action) in &actions {
                if let Some((index, seq_no, primary_term)) = out.written.get(id) {
                    if let EsAction::Update { view, .. } | EsAction::Create { view } = action {
                        let outcome = if matches!(action, EsAction::Create { .. }) { "created" } else { "updated" };
                        metrics::counter!(names::INGEST_ES_DOCS, "outcome" => outcome).increment(1);
                        self.written.insert(
                            id.clone(),
                            Stored {
                                index: index.clone(),
                                seq_no: *seq_no,
                                primary_term: *primary_term,
                                view: view.clone(),
                            },
                        );
                    }
                }
            }
            for id in &out.deleted {
                metrics::counter!(names::INGEST_ES_DOCS, "outcome" => "deleted").increment(1);
                self.written.invalidate(id);
            }
            for (id, why) in &out.rejected {
                tracing::error!(reason = %why, "elasticsearch refused an order document; its messages go to the dead-letter topic");
                plans.remove(id);
                for d in &groups[id] {
                    if let Some(m) = find(&d.source) {
                        dead.push(DeadLetter { msg: m, reason: "rejected_by_elasticsearch", detail: why.clone() });
                    }
                }
            }
            for id in &out.conflicts {
                metrics::counter!(names::INGEST_ES_DOCS, "outcome" => "conflict_retry").increment(1);
                self.written.invalidate(id);
            }
            pending = groups.keys().filter(|id| out.conflicts.contains(id)).collect();
        }
        if !pending.is_empty() {
            // Writers racing on the same documents: Elasticsearch's contention.
            return Err(BackendError::failed(
                Backend::Elasticsearch,
                format!("{} order(s) still conflicting after 6 attempts", pending.len()),
            ));
        }

        let mut rows = Vec::new();
        for p in plans.values() {
            rows.extend(p.clickhouse.iter());
            for r in &p.stale {
                if let Some(m) = find(r) {
                    dead.push(DeadLetter {
                        msg: m,
                        reason: "stale_version",
                        detail: "version lower than stored".into(),
                    });
                }
            }
        }
        let counts = self.backends.clickhouse.insert(&rows).await?;
        metrics::counter!(names::INGEST_CH_ROWS, "table" => "orders").increment(counts.orders);
        metrics::counter!(names::INGEST_CH_ROWS, "table" => "order_lines").increment(counts.lines);
        metrics::counter!(names::INGEST_CH_ROWS, "table" => "fulfillments").increment(counts.fulfillments);

        self.dead_letter(&dead).await?;
        for g in groups.values() {
            for d in g {
                count(&d.source.topic, "written");
            }
        }
        Ok(())
    }

    /// Documents of `ids`: our own recent writes first, Elasticsearch for the rest.
    async fn lookup(&self, ids: &[&String]) -> Result<HashMap<String, Stored>, BackendError> {
        let mut found = HashMap::with_capacity(ids.len());
        let mut ask = Vec::new();
        for id in ids {
            match self.written.get(*id) {
                Some(s) => {
                    found.insert((*id).clone(), s);
                }
                None => ask.push(id.as_str()),
            }
        }
        let read = store::es_lookup(&self.backends.elasticsearch, &self.config.elasticsearch.read_alias, &ask).await?;
        found.extend(read);
        Ok(found)
    }

    async fn decode(&self, msg: &Msg) -> Result<Option<crate::model::Event>, Verdict> {
        let t = &self.config.topics;
        let Some(payload) = msg.payload.as_deref() else { return Ok(None) };
        if let Err(e) = events::Limits::of_ingest(&self.config.ingest).check_size(payload) {
            return Err(Verdict::Dead(e.reason(), e.to_string()));
        }
        let Some(key) = msg.key.as_deref() else {
            return Err(Verdict::Dead("missing_key", "message has no key; the key must be the order id".into()));
        };
        let result = if msg.topic == t.cdc {
            events::debezium::decode(events::debezium::Table::Orders, payload, &self.config.cdc)
        } else if msg.topic == t.cdc_lines {
            events::debezium::decode(events::debezium::Table::Lines, payload, &self.config.cdc)
        } else {
            let (stream, format) = if msg.topic == t.orders {
                (Stream::Orders, t.orders_format)
            } else {
                (Stream::Fulfillments, t.fulfillments_format)
            };
            match format {
                WireFormat::Avro => self.decoder.decode_traced(stream, payload, msg.trace.as_ref()).await.map(Some),
                WireFormat::Json => events::decode_json(stream, payload).map(Some),
            }
        };
        match result {
            Ok(Some(event)) => {
                if key != event.order_id().as_bytes() {
                    return Err(Verdict::Dead(
                        "key_mismatch",
                        "message key differs from the order id it carries".into(),
                    ));
                }
                Ok(Some(event))
            }
            Ok(None) => Ok(None),
            Err(e) if e.is_transient() => Err(Verdict::Retry(BackendError::failed(Backend::SchemaRegistry, e))),
            Err(e) => Err(Verdict::Dead(e.reason(), e.to_string())),
        }
    }

    /// Sends dead letters with their original key, headers and bytes, the
    /// reason and where they came from, and waits until Kafka has them.
    ///
    /// A copy too large for a Kafka message leaves the original's bytes out
    /// (then its key and headers too) and says so in `dlq.omitted`; the
    /// original stays at `dlq.topic`/`dlq.partition`/`dlq.offset`. Copying it
    /// whole failed the batch on every retry: ingest never got past it.
    async fn dead_letter(&self, dead: &[DeadLetter]) -> Result<(), BackendError> {
        let kafka = &self.backends.kafka;
        let topic = &self.config.topics.dead_letter;
        let sends = dead.iter().map(|d| {
            let key = d.msg.key.as_deref().unwrap_or_default();
            let payload = d.msg.payload.as_deref().unwrap_or_default();
            let headers_len: usize = d.msg.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
            let (copy_payload, copy_rest) = if payload.len() + key.len() + headers_len <= DEAD_LETTER_COPY_MAX {
                (true, true)
            } else {
                (false, key.len() + headers_len <= DEAD_LETTER_COPY_MAX)
            };
            let omitted = match (copy_payload, copy_rest) {
                (true, _) => None,
                (false, true) => Some(format!("payload of {} bytes", payload.len())),
                (false, false) => Some(format!(
                    "payload of {} bytes, key of {} bytes, headers of {headers_len} bytes",
                    payload.len(),
                    key.len()
                )),
            };
            let mut headers = OwnedHeaders::new();
            if copy_rest {
                for (k, v) in &d.msg.headers {
                    headers = headers.insert(Header { key: k, value: Some(v) });
                }
            }
            let partition = d.msg.partition.to_string();
            let offset = d.msg.offset.to_string();
            headers = headers
                .insert(Header { key: "dlq.reason", value: Some(d.reason) })
                .insert(Header { key: "dlq.detail", value: Some(&d.detail) })
                .insert(Header { key: "dlq.topic", value: Some(&d.msg.topic) })
                .insert(Header { key: "dlq.partition", value: Some(&partition) })
                .insert(Header { key: "dlq.offset", value: Some(&offset) });
            if let Some(what) = &omitted {
                headers = headers.insert(Header { key: "dlq.omitted", value: Some(what) });
            }
            let mut rec = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
            if let Some(k) = d.msg.key.as_deref().filter(|_| copy_rest) {
                rec = rec.key(k);
            }
            if let Some(p) = d.msg.payload.as_deref().filter(|_| copy_payload) {
                rec = rec.payload(p);
            }
            kafka.send("dead_letter", rec)
        });
        for (d, r) in dead.iter().zip(futures_util::future::join_all(sends).await) {
            r?;
            tracing::warn!(reason = d.reason, detail = %d.detail, topic = %d.msg.topic, partition = d.msg.partition, offset = d.msg.offset, "message dead-lettered");
            metrics::counter!(names::INGEST_DEAD_LETTERS, "reason" => d.reason).increment(1);
            count(&d.msg.topic, "dead_lettered");
        }
        Ok(())
    }

    fn commit(&self, batch: &[Msg]) -> anyhow::Result<()> {
        let mut next: HashMap<(&str, i32), i64> = HashMap::new();
        for m in batch {
            let e = next.entry((m.topic.as_str(), m.partition)).or_insert(0);
            *e = (*e).max(m.offset + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Sync) {
            // After a rebalance the partition's new owner replays from the last
            // commit; the writes above are idempotent, so this loses nothing.
            tracing::warn!(error = %e, "kafka: offset commit failed; messages will be replayed");
        }
        Ok(())
    }

    /// Publishes the consumer lag every 5 s on a task of its own, not after
    /// each batch: while ingest waits for messages, or retries a batch
    /// against a backend that is down, the lag must still move (that is when
    /// it grows). Ends with the returned guard.
    fn spawn_lag_recorder(&self) -> AbortOnDrop {
        let consumer = self.consumer.clone();
        AbortOnDrop(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                record_lag(consumer.clone()).await;
            }
        }))
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Consumer lag per assigned partition: the high watermark minus the
/// position (librdkafka's calls block, so on the blocking pool).
async fn record_lag(consumer: Arc<StreamConsumer<KafkaContext>>) {
    let _ = tokio::task::spawn_blocking(move || {
        let Ok(positions) = consumer.position() else { return };
        for e in positions.elements() {
            let Offset::Offset(pos) = e.offset() else { continue };
            if let Ok((_, high)) = consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(1)) {
                metrics::gauge!(names::INGEST_LAG, "topic" => e.topic().to_owned(), "partition" => e.partition().to_string())
                    .set((high - pos).max(0) as f64);
            }
        }
    })
    .await;
}

/// Most bytes of an original message (payload, key and headers) a dead
/// letter copies. librdkafka's producer refuses a message over its
/// `message.max.bytes` (1,000,000 by default) and a broker one over its
/// topic's `max.message.bytes` (1 MiB by default); this leaves room for the
/// `dlq.*` headers and the record's framing under both.
const DEAD_LETTER_COPY_MAX: usize = 900_000;

enum Verdict {
    Dead(&'static str, String),
    Retry(BackendError),
}

fn count(topic: &str, outcome: &'static str) {
    metrics::counter!(names::INGEST_MESSAGES, "topic" => topic.to_owned(), "outcome" => outcome).increment(1);
}

/// Every reason a message is dead-lettered for (its `ingest_dead_letters_total`
/// label): decoding's, then ingest's own.
pub const DEAD_LETTER_REASONS: &[&str] = &[
    "undecodable",
    "oversized",
    "over_limit",
    "unknown_schema",
    "foreign_schema",
    "registry_unavailable",
    "invalid_field",
    "missing_key",
    "key_mismatch",
    "rejected_by_elasticsearch",
    "stale_version",
];

/// The `backend` label of the retry counter. Its values predate
/// [`Backend::name`] and dashboards know them: the registry is "schema
/// registry", with a space.
fn retry_label(backend: Backend) -> &'static str {
    match backend {
        Backend::SchemaRegistry => "schema registry",
        other => other.name(),
    }
}

fn own(m: rdkafka::message::BorrowedMessage<'_>) -> Msg {
    let headers: Vec<(String, Vec<u8>)> = m
        .headers()
        .map(|h| h.iter().map(|x| (x.key.to_owned(), x.value.map(<[u8]>::to_vec).unwrap_or_default())).collect())
        .unwrap_or_default();
    let trace = telemetry::trace::enabled().then(|| sampled_trace(&headers)).flatten();
    Msg {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec),
        headers,
        trace,
    }
}

/// The producer's trace from a message's `traceparent` header, if sampled.
fn sampled_trace(headers: &[(String, Vec<u8>)]) -> Option<telemetry::context::TraceParent> {
    headers
        .iter()
        .find(|(k, _)| k == telemetry::context::TRACEPARENT)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .and_then(telemetry::context::TraceParent::parse)
        .filter(|t| t.sampled())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dead_letter_reason_is_listed() {
        use crate::events::DecodeError;
        for e in [
            DecodeError::Malformed(String::new()),
            DecodeError::Oversized { bytes: 2, limit: 1 },
            DecodeError::OverLimit(String::new()),
            DecodeError::UnknownSchema(1),
            DecodeError::ForeignSchema { id: 1, subject: String::new() },
            DecodeError::RegistryUnavailable(String::new()),
            DecodeError::InvalidField { field: "f", detail: String::new() },
        ] {
            assert!(DEAD_LETTER_REASONS.contains(&e.reason()), "{}", e.reason());
        }
    }

    #[test]
    fn retry_labels_keep_their_old_values() {
        let labels: Vec<&str> = Backend::ALL.into_iter().map(retry_label).collect();
        assert_eq!(labels, ["elasticsearch", "clickhouse", "kafka", "schema registry"]);
        let e = BackendError::Timeout { backend: Backend::ClickHouse, timeout: Duration::from_secs(5) };
        assert_eq!(retry_label(e.backend()), "clickhouse");
    }
}
