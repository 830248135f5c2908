//! The event stream of `serve`: every replica reads every partition of the
//! order topics from the end (assign, no consumer group, no commits) and
//! applies each event to its cache.
//!
//! "The end" is read once, as each partition's high watermark, and assigned
//! as a concrete offset. Assigning the logical `Offset::End` instead lets
//! librdkafka resolve it later, after a broker restart for instance, and every
//! event written before that resolution is skipped: the cache would keep an
//! older view than the stream holds.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::debezium::Table;
use super::{decode_json, Decoder, Limits, Stream};
use crate::backends::kafka::KafkaContext;
use crate::cache::{OrderCache, PartitionPosition};
use crate::config::{Config, WireFormat};
use crate::live::Hub;
use crate::telemetry::names;

/// Starts the consumer and its lag watcher; returns at once. With
/// `stream.enabled = false` the cache relies on TTLs alone. Each change to
/// the cache goes to the live-update subscribers (`hub`), who are also told
/// when the stream falls behind.
pub fn spawn(config: &Config, cache: Arc<OrderCache>, hub: Arc<Hub>, decoder: Arc<Decoder>) -> anyhow::Result<()> {
    let state = cache.stream.clone();
    state.enabled.store(config.stream.enabled, Ordering::Relaxed);
    if !config.stream.enabled {
        return Ok(());
    }
    let consumer: StreamConsumer<KafkaContext> = crate::backends::kafka::base_config(&config.kafka)?
        // librdkafka wants a group id even though assign() never joins a group.
        .set("group.id", format!("{}-serve-{}", config.kafka.client_id, uuid::Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.min.bytes", "1")
        .create_with_context(KafkaContext::default())
        .map_err(|e| anyhow::anyhow!("kafka stream consumer for {}: {e}", config.kafka.brokers))?;
    let consumer = Arc::new(consumer);
    let mut topics = vec![
        (config.topics.orders.clone(), Source::Service(Stream::Orders, config.topics.orders_format)),
        (config.topics.fulfillments.clone(), Source::Service(Stream::Fulfillments, config.topics.fulfillments_format)),
    ];
    for (topic, table) in [(&config.topics.cdc, Table::Orders), (&config.topics.cdc_lines, Table::Lines)] {
        if !topic.is_empty() {
            topics.push((topic.clone(), Source::Cdc(table)));
        }
    }
    let cdc = Arc::new(config.cdc.clone());
    let max_staleness = config.stream.max_staleness;
    let limits = Limits::of_stream(&config.stream);

    // Assignment (retried until the brokers answer) and the lag watcher.
    {
        let cache = cache.clone();
        let hub = hub.clone();
        let consumer = consumer.clone();
        let state = state.clone();
        let names_only: Vec<String> = topics.iter().map(|t| t.0.clone()).collect();
        tokio::spawn(async move {
            let mut caught_up_at = Instant::now();
            // When the positions were last read (what `reached` compares with).
            let mut previous_check = Instant::now();
            let mut starts = Arc::new(Vec::new());
            // Partitions with events waiting and none consumed, since when.
            let mut stalled_since: std::collections::HashMap<(String, i32), Instant> = Default::default();
            loop {
                if !state.assigned.load(Ordering::Relaxed) {
                    match assign(&consumer, &names_only).await {
                        Ok(s) => {
                            tracing::info!(partitions = s.len(), "stream assigned from the end of every partition");
                            starts = Arc::new(s);
                            state.assigned.store(true, Ordering::Relaxed);
                            caught_up_at = Instant::now();
                        }
                        Err(e) => tracing::warn!(error = %e, "stream: cannot assign partitions yet"),
                    }
                }
                let positions = if state.assigned.load(Ordering::Relaxed) {
                    positions(&consumer, starts.clone()).await
                } else {
                    None
                };
                let lag = positions.as_ref().map(|p| p.iter().map(|x| x.lag).sum::<i64>());
                let checked_at = Instant::now();
                // Everything the partitions held at the previous check consumed:
                // the stream is at most one check behind, though events keep coming.
                let mut reached_previous = false;
                let mut seeks = Vec::new();
                if let Some(mut p) = positions {
                    let mut partitions = state.partitions.lock().unwrap_or_else(|e| e.into_inner());
                    reached_previous = !p.is_empty() && p.iter().all(|x| x.reached(&partitions));
                    // A partition whose events wait unconsumed past
                    // stream.max_staleness while the brokers answer: its
                    // fetcher may not have resumed after a broker came back.
                    // Seeking to where it stands restarts the fetch; nothing
                    // is skipped, and an event read twice merges as once.
                    stalled_since.retain(|k, _| p.iter().any(|x| x.topic == k.0 && x.partition == k.1));
                    for x in &p {
                        let key = (x.topic.clone(), x.partition);
                        if !x.stalled(&partitions) {
                            stalled_since.remove(&key);
                            continue;
                        }
                        let since = *stalled_since.entry(key.clone()).or_insert(checked_at);
                        if since.elapsed() > max_staleness {
                            tracing::warn!(
                                topic = %x.topic, partition = x.partition, offset = x.next_offset(), waiting = x.lag,
                                "stream: no event consumed from a partition with events waiting; fetching it again from where it stands"
                            );
                            seeks.push((key.0.clone(), key.1, x.next_offset()));
                            stalled_since.insert(key, checked_at);
                        }
                    }
                    for x in &mut p {
                        if let Some(from) = x.follow_leader(&partitions) {
                            tracing::info!(
                                topic = %x.topic, partition = x.partition, from, to = x.leader,
                                "stream: partition leader moved to another broker"
                            );
                        }
                    }
                    *partitions = p;
                }
                for (topic, partition, next) in seeks {
                    let consumer = consumer.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        consumer.seek(&topic, partition, Offset::Offset(next), Duration::from_secs(1))
                    })
                    .await;
                }
                let healthy = match lag {
                    Some(0) => {
                        caught_up_at = checked_at;
                        true
                    }
                    Some(_) => {
                        if reached_previous {
                            caught_up_at = caught_up_at.max(previous_check);
                        }
                        caught_up_at.elapsed() <= max_staleness
                    }
                    None => false,
                };
                if lag.is_some() {
                    previous_check = checked_at;
                }
                let lag_ms = if lag == Some(0) { 0 } else { caught_up_at.elapsed().as_millis() as i64 };
                state.lag_messages.store(lag.unwrap_or(-1), Ordering::Relaxed);
                state.lag_ms.store(lag_ms, Ordering::Relaxed);
                let was = state.healthy.swap(healthy, Ordering::Relaxed);
                hub.set_stream_healthy(healthy);
                if was != healthy {
                    if healthy {
                        tracing::info!("stream healthy again: cache entries are current");
                    } else {
                        tracing::warn!(?lag, lag_ms, "stream unhealthy: cache entries fall back to cache.degraded_ttl");
                    }
                }
                metrics::gauge!(names::STREAM_LAG_MESSAGES).set(lag.unwrap_or(-1) as f64);
                metrics::gauge!(names::STREAM_LAG_SECONDS).set(lag_ms as f64 / 1000.0);
                metrics::gauge!(names::STREAM_HEALTHY).set(if healthy { 1.0 } else { 0.0 });
                let (entries, bytes) = cache.stats();
                metrics::gauge!(names::CACHE_ENTRIES).set(entries as f64);
                metrics::gauge!(names::CACHE_BYTES).set(bytes as f64);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }

    // The consume loop.
    tokio::spawn(async move {
        loop {
            let msg = match consumer.recv().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "stream: consume error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let Some((topic, source)) = topics.iter().find(|t| t.0 == msg.topic()) else { continue };
            let Some(payload) = msg.payload() else { continue };
            let decoded = match (limits.check_size(payload), source) {
                (Err(e), _) => Err(e),
                (Ok(()), Source::Service(stream, WireFormat::Avro)) => decoder.decode(*stream, payload).await,
                (Ok(()), Source::Service(stream, WireFormat::Json)) => decode_json(*stream, payload),
                // A tombstone (after a delete) carries nothing to apply.
                (Ok(()), Source::Cdc(table)) => match super::debezium::decode(*table, payload, &cdc) {
                    Ok(Some(event)) => Ok(event),
                    Ok(None) => continue,
                    Err(e) => Err(e),
                },
            };
            match decoded {
                Ok(event) if msg.key() == Some(event.order_id().as_bytes()) => {
                    if let Some(changed) = cache.apply_event(event.component) {
                        hub.publish(&changed.order_id, changed.customer_id.as_deref(), &changed.entry);
                    }
                    metrics::counter!(names::STREAM_EVENTS, "outcome" => "applied", "topic" => topic.clone())
                        .increment(1);
                }
                Ok(_) => {
                    metrics::counter!(names::STREAM_EVENTS, "outcome" => "dropped", "reason" => "key_mismatch")
                        .increment(1);
                    continue;
                }
                // Ingest dead-letters what cannot be decoded; here it is only
                // counted (and logged at debug: a flood of bad messages must
                // not flood the log of every replica).
                Err(e) => {
                    tracing::debug!(reason = e.reason(), error = %e, topic = %topic, partition = msg.partition(), offset = msg.offset(), "stream: message dropped");
                    metrics::counter!(names::STREAM_EVENTS, "outcome" => "dropped", "reason" => e.reason())
                        .increment(1);
                    continue;
                }
            }
            if let Some(ts) = msg.timestamp().to_millis() {
                let now = crate::model::Timestamp::now().millis();
                metrics::histogram!(names::STREAM_EVENT_TO_CACHE).record(((now - ts).max(0) as f64) / 1000.0);
            }
        }
    });
    Ok(())
}

/// What a topic carries and how it is decoded.
enum Source {
    Service(Stream, WireFormat),
    Cdc(Table),
}

/// Where the stream started in one partition: its high watermark at assignment.
struct Start {
    topic: String,
    partition: i32,
    offset: i64,
}

/// Assigns every partition of `topics` at its current high watermark, as a
/// concrete offset (see the module comment); returns where each starts.
async fn assign(consumer: &Arc<StreamConsumer<KafkaContext>>, topics: &[String]) -> anyhow::Result<Vec<Start>> {
    let consumer = consumer.clone();
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut tpl = TopicPartitionList::new();
        let mut starts = Vec::new();
        for t in &topics {
            let md = consumer.fetch_metadata(Some(t), Duration::from_secs(3))?;
            let partitions = md.topics().first().map(|x| x.partitions().len()).unwrap_or(0);
            if partitions == 0 {
                anyhow::bail!("topic {t} has no partitions (does it exist? `order-gateway setup` creates it)");
            }
            for p in 0..partitions as i32 {
                let (_, high) = consumer
                    .fetch_watermarks(t, p, Duration::from_secs(3))
                    .map_err(|e| anyhow::anyhow!("high watermark of {t}/{p}: {e}"))?;
                tpl.add_partition_offset(t, p, Offset::Offset(high))?;
                starts.push(Start { topic: t.clone(), partition: p, offset: high });
            }
        }
        consumer.assign(&tpl)?;
        Ok(starts)
    })
    .await?
}

/// Position, high watermark and lag (messages between them) of every
/// assigned partition; None when the brokers do not answer.
async fn positions(
    consumer: &Arc<StreamConsumer<KafkaContext>>,
    starts: Arc<Vec<Start>>,
) -> Option<Vec<PartitionPosition>> {
    let consumer = consumer.clone();
    tokio::task::spawn_blocking(move || {
        let positions = consumer.position().ok()?;
        let mut out = Vec::with_capacity(positions.count());
        // Who leads each partition (librdkafka answers from its metadata;
        // -1 while a partition has no leader).
        let elements = positions.elements();
        let topics: std::collections::BTreeSet<&str> = elements.iter().map(|e| e.topic()).collect();
        let mut leaders = std::collections::HashMap::new();
        for topic in topics {
            let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(1)).ok()?;
            for t in md.topics() {
                leaders.extend(t.partitions().iter().map(|p| ((t.name().to_string(), p.id()), p.leader())));
            }
        }
        for e in elements {
            let (_, high) = consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(1)).ok()?;
            // Until the first message is consumed librdkafka reports no
            // position; the stream then stands where it was assigned.
            let position = match e.offset() {
                Offset::Offset(pos) => Some(pos),
                _ => None,
            };
            let from = position.or_else(|| {
                starts.iter().find(|s| s.topic == e.topic() && s.partition == e.partition()).map(|s| s.offset)
            });
            out.push(PartitionPosition {
                topic: e.topic().to_string(),
                partition: e.partition(),
                position,
                high_watermark: high,
                lag: from.map(|p| (high - p).max(0)).unwrap_or(0),
                leader: leaders.get(&(e.topic().to_string(), e.partition())).copied().filter(|l| *l >= 0),
                leader_changes: 0,
            });
        }
        Some(out)
    })
    .await
    .ok()
    .flatten()
}
