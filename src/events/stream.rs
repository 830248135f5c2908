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
use crate::config::{Config, KafkaConfig, WireFormat};
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
    let kafka = config.kafka.clone();
    // The consumer in use; the lag watcher replaces it when the brokers have
    // not answered it for `stream.reconnect_after` (see below), and the
    // consume loop moves to the new one.
    let (current, mut replaced) = tokio::sync::watch::channel(Arc::new(consumer(&kafka)?));
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
    let reconnect_after = config.stream.reconnect_after;
    let limits = Limits::of_stream(&config.stream);

    // Assignment (retried until the brokers answer) and the lag watcher.
    {
        let cache = cache.clone();
        let hub = hub.clone();
        let state = state.clone();
        let names_only: Vec<String> = topics.iter().map(|t| t.0.clone()).collect();
        tokio::spawn(async move {
            let mut caught_up_at = Instant::now();
            // When the positions were last read (what `reached` compares with).
            let mut previous_check = Instant::now();
            let mut starts = Arc::new(Vec::new());
            // Partitions with events waiting and none consumed, since when.
            let mut stalled_since: std::collections::HashMap<(String, i32), Instant> = Default::default();
            // Since when the brokers have not answered the consumer, and why.
            let mut unanswered_since: Option<Instant> = None;
            loop {
                let consumer = current.borrow().clone();
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
                    match positions(&consumer, starts.clone()).await {
                        Ok(p) => {
                            unanswered_since = None;
                            state.set_last_error(None);
                            Some(p)
                        }
                        Err(why) => {
                            let since = *unanswered_since.get_or_insert_with(Instant::now);
                            tracing::debug!(error = %why, "stream: positions unknown");
                            // A client the brokers have not answered for this
                            // long is replaced by a new one, assigned where the
                            // old one stood: seen after a broker restart, this
                            // client's calls kept failing for over a minute
                            // while the readiness check's own client reached
                            // the broker, and nothing recovered it. During a
                            // real outage this only renews a client that
                            // cannot connect either, once per interval.
                            if since.elapsed() >= reconnect_after {
                                let resume =
                                    resume_points(&state.partitions.lock().unwrap_or_else(|e| e.into_inner()), &starts);
                                match replace_consumer(&kafka, &resume) {
                                    Ok(fresh) => {
                                        tracing::warn!(
                                            error = %why, unanswered_s = since.elapsed().as_secs(), partitions = resume.len(),
                                            "stream: the brokers have not answered the consumer for stream.reconnect_after; replaced it with a new one, resuming where it stood"
                                        );
                                        metrics::counter!(names::STREAM_RECONNECTS).increment(1);
                                        starts = Arc::new(resume);
                                        retire(current.send_replace(fresh));
                                    }
                                    Err(e) => tracing::warn!(error = %e, "stream: cannot replace the consumer"),
                                }
                                unanswered_since = Some(Instant::now());
                            }
                            state.set_last_error(Some(why));
                            None
                        }
                    }
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
            let consumer = replaced.borrow_and_update().clone();
            let received = tokio::select! {
                r = consumer.recv() => r,
                // Replaced: the old one is closed by `retire`.
                _ = replaced.changed() => continue,
            };
            let msg = match received {
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
                starts.push(Start { topic: t.clone(), partition: p, offset: high });
            }
        }
        assign_at(&consumer, &starts)?;
        Ok(starts)
    })
    .await?
}

/// The stream's consumer: assigned partitions only, no group, no commits.
fn consumer(kafka: &KafkaConfig) -> anyhow::Result<StreamConsumer<KafkaContext>> {
    crate::backends::kafka::base_config(kafka)?
        // librdkafka wants a group id even though assign() never joins a group.
        .set("group.id", format!("{}-serve-{}", kafka.client_id, uuid::Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.min.bytes", "1")
        .create_with_context(KafkaContext::default())
        .map_err(|e| anyhow::anyhow!("kafka stream consumer for {}: {e}", kafka.brokers))
}

/// A new consumer assigned at `resume` (concrete offsets: no broker needs
/// to answer for this).
fn replace_consumer(kafka: &KafkaConfig, resume: &[Start]) -> anyhow::Result<Arc<StreamConsumer<KafkaContext>>> {
    let fresh = consumer(kafka)?;
    assign_at(&fresh, resume)?;
    Ok(Arc::new(fresh))
}

/// Assigns each partition of `starts` at its offset, as a concrete offset
/// (see the module comment).
fn assign_at(consumer: &StreamConsumer<KafkaContext>, starts: &[Start]) -> anyhow::Result<()> {
    let mut tpl = TopicPartitionList::new();
    for s in starts {
        tpl.add_partition_offset(&s.topic, s.partition, Offset::Offset(s.offset))?;
    }
    consumer.assign(&tpl)?;
    Ok(())
}

/// Closes a replaced consumer once the consume loop has let go of it (within
/// one message), on a blocking thread: closing waits for its threads.
fn retire(old: Arc<StreamConsumer<KafkaContext>>) {
    tokio::spawn(async move {
        while Arc::strong_count(&old) > 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = tokio::task::spawn_blocking(move || drop(old)).await;
    });
}

/// Where a new consumer resumes each partition: the next offset the stream
/// stood at as of the last check, else where it started. An event applied
/// since the last check is read again and merges as once; none is skipped.
fn resume_points(last: &[PartitionPosition], starts: &[Start]) -> Vec<Start> {
    let mut out: Vec<Start> = last
        .iter()
        .map(|p| Start { topic: p.topic.clone(), partition: p.partition, offset: p.next_offset() })
        .collect();
    for s in starts {
        if !out.iter().any(|o| o.topic == s.topic && o.partition == s.partition) {
            out.push(Start { topic: s.topic.clone(), partition: s.partition, offset: s.offset });
        }
    }
    out
}

/// Position, high watermark and lag (messages between them) of every
/// assigned partition, or which call the brokers did not answer.
async fn positions(
    consumer: &Arc<StreamConsumer<KafkaContext>>,
    starts: Arc<Vec<Start>>,
) -> Result<Vec<PartitionPosition>, String> {
    let consumer = consumer.clone();
    tokio::task::spawn_blocking(move || {
        let positions = consumer.position().map_err(|e| format!("positions: {e}"))?;
        let mut out = Vec::with_capacity(positions.count());
        // Who leads each partition (librdkafka answers from its metadata;
        // -1 while a partition has no leader).
        let elements = positions.elements();
        let topics: std::collections::BTreeSet<&str> = elements.iter().map(|e| e.topic()).collect();
        let mut leaders = std::collections::HashMap::new();
        for topic in topics {
            let md = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(1))
                .map_err(|e| format!("metadata of {topic}: {e}"))?;
            for t in md.topics() {
                leaders.extend(t.partitions().iter().map(|p| ((t.name().to_string(), p.id()), p.leader())));
            }
        }
        for e in elements {
            let (_, high) = consumer
                .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(1))
                .map_err(|x| format!("high watermark of {}/{}: {x}", e.topic(), e.partition()))?;
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
        Ok(out)
    })
    .await
    .map_err(|e| format!("positions task: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(topic: &str, partition: i32, high: i64, lag: i64) -> PartitionPosition {
        PartitionPosition {
            topic: topic.into(),
            partition,
            position: Some(high - lag),
            high_watermark: high,
            lag,
            leader: Some(1),
            leader_changes: 0,
        }
    }

    #[test]
    fn a_new_consumer_resumes_where_the_last_check_saw_the_stream_and_elsewhere_where_it_started() {
        let last = [at("orders", 0, 10, 3), at("orders", 1, 4, 0)];
        let starts = [
            Start { topic: "orders".into(), partition: 0, offset: 2 },
            Start { topic: "orders".into(), partition: 1, offset: 1 },
            Start { topic: "fulfillments".into(), partition: 0, offset: 5 },
        ];
        let got: Vec<(String, i32, i64)> =
            resume_points(&last, &starts).into_iter().map(|s| (s.topic, s.partition, s.offset)).collect();
        assert_eq!(
            got,
            vec![("orders".into(), 0, 7), ("orders".into(), 1, 4), ("fulfillments".into(), 0, 5)],
            "the unconsumed events of a partition are read, never skipped"
        );
    }
}
