//! `order-gateway seed`: realistic order lifecycles produced to Kafka, as the
//! Digital and FulfillmentOrder services would publish them.

pub mod generate;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::backends::kafka::KafkaContext;
use crate::backends::schema_registry::RegistryClient;
use crate::config::{Config, WireFormat};
use crate::events::{encode_avro, encode_json, SchemaIds, Stream};
use crate::model::{Event, Timestamp};

/// Options of `seed`.
#[derive(Debug, Clone, clap::Args)]
pub struct SeedArgs {
    /// How many orders to generate (1 to 10,000,000).
    #[arg(long)]
    pub orders: u64,
    /// Seed of the generator: the same seed gives the same orders and events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Events per second at most (0: as fast as Kafka takes them).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Write the final OrderView of every order as JSON lines to this file.
    #[arg(long)]
    pub truth: Option<PathBuf>,
}

/// Most sends awaiting Kafka's acknowledgement at once.
const IN_FLIGHT: usize = 10_000;

/// Runs `seed`.
pub async fn run(config: &Config, args: &SeedArgs) -> anyhow::Result<()> {
    if args.orders == 0 || args.orders > 10_000_000 {
        anyhow::bail!("--orders {}: must be between 1 and 10,000,000", args.orders);
    }
    // Open the truth file first: a bad path fails before anything is produced.
    let truth_file = match &args.truth {
        Some(p) => {
            Some(std::fs::File::create(p).map_err(|e| anyhow::anyhow!("--truth {}: cannot create: {e}", p.display()))?)
        }
        None => None,
    };
    let now = Timestamp::now();
    let events = generate::generate(args.orders, args.seed, now);
    let spans = crate::telemetry::trace::install(&config.tracing, &crate::telemetry::trace::instance_id())?;

    let t = &config.topics;
    let ids = if t.orders_format == WireFormat::Avro || t.fulfillments_format == WireFormat::Avro {
        let registry = RegistryClient::new(&config.schema_registry)?;
        Some(
            SchemaIds::register(&registry, &format!("{}-value", t.orders), &format!("{}-value", t.fulfillments))
                .await?,
        )
    } else {
        None
    };
    let context = KafkaContext::default();
    let producer: FutureProducer<KafkaContext> = crate::backends::kafka::base_config(&config.kafka)?
        .set("linger.ms", "5")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("queue.buffering.max.messages", "200000")
        .set("message.timeout.ms", "30000")
        .create_with_context(context.clone())
        .map_err(|e| anyhow::anyhow!("kafka producer for {}: {e}", config.kafka.brokers))?;
    // Ask the brokers first: a refused password or certificate would
    // otherwise show only when the first record times out (30 s).
    let (probe, topic, wait) = (producer.clone(), t.orders.clone(), config.kafka.timeout.max(Duration::from_secs(5)));
    tokio::task::spawn_blocking(move || {
        use rdkafka::producer::Producer;
        probe.client().fetch_metadata(Some(&topic), wait).map(|_| ())
    })
    .await?
    .map_err(|e| context.explain(format!("kafka: no answer from {}: {e}", config.kafka.brokers)))?;

    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(events.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let started = Instant::now();
    let (mut to_orders, mut to_fulfillments) = (0u64, 0u64);
    let mut pending = FuturesUnordered::new();
    // One send acknowledged (or its error passed on), counted on the bar.
    let acked = |r: anyhow::Result<()>| -> anyhow::Result<()> {
        r?;
        if let Some(b) = &bar {
            b.inc(1);
        }
        Ok(())
    };
    for (n, event) in events.iter().enumerate() {
        let (topic, format) = match Stream::of(event) {
            Stream::Orders => {
                to_orders += 1;
                (&t.orders, t.orders_format)
            }
            Stream::Fulfillments => {
                to_fulfillments += 1;
                (&t.fulfillments, t.fulfillments_format)
            }
        };
        let payload = encode(event, format, ids);
        let key = event.order_id().to_owned();
        let (producer, context) = (producer.clone(), context.clone());
        let topic = topic.clone();
        // With tracing on, each event starts a trace (sampled at
        // tracing.sample_ratio) whose traceparent travels as a Kafka header:
        // ingest continues it.
        let trace = crate::telemetry::trace::enabled().then(crate::telemetry::context::TraceParent::new_root);
        pending.push(async move {
            let started = crate::telemetry::trace::unix_nanos();
            let mut record = FutureRecord::to(&topic).key(&key).payload(&payload);
            if let Some(t) = &trace {
                let header = t.header_for(t.span_id);
                record = record.headers(rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
                    key: crate::telemetry::context::TRACEPARENT,
                    value: Some(header.as_bytes()),
                }));
            }
            let sent = producer.send(record, Duration::from_secs(30)).await.map(|_| ());
            if let Some(t) = trace.filter(|t| t.sampled()) {
                producer_span(&t, &topic, started, sent.as_ref().err().map(|(e, _)| e.to_string()));
            }
            sent.map_err(|(e, _)| context.explain(format!("kafka: producing to {topic}: {e}")))
        });
        while pending.len() >= IN_FLIGHT {
            if let Some(r) = pending.next().await {
                acked(r)?;
            }
        }
        if args.rate > 0 {
            // Pace against the schedule, not per message, so bursts catch up.
            // The sends are futures: they reach librdkafka only when polled, so
            // keep polling them while waiting, or nothing leaves until
            // IN_FLIGHT of them have piled up.
            let due =
                tokio::time::sleep_until((started + Duration::from_secs_f64((n + 1) as f64 / args.rate as f64)).into());
            tokio::pin!(due);
            loop {
                tokio::select! {
                    _ = &mut due => break,
                    Some(r) = pending.next(), if !pending.is_empty() => acked(r)?,
                }
            }
        }
    }
    while let Some(r) = pending.next().await {
        acked(r)?;
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let secs = started.elapsed().as_secs_f64();
    if let Some(spans) = spans {
        spans.flush().await;
    }

    if let (Some(mut file), Some(path)) = (truth_file, &args.truth) {
        let mut w = std::io::BufWriter::new(&mut file);
        for view in generate::truth(&events) {
            serde_json::to_writer(&mut w, &view)?;
            w.write_all(b"\n")?;
        }
        w.flush().map_err(|e| anyhow::anyhow!("--truth {}: {e}", path.display()))?;
    }
    println!(
        "seeded {} orders: {} events ({to_orders} to {}, {to_fulfillments} to {}) in {secs:.1} s, {:.0} events/s",
        args.orders,
        events.len(),
        t.orders,
        t.fulfillments,
        events.len() as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// The span of one produced event: from the send to the broker's ack.
fn producer_span(t: &crate::telemetry::context::TraceParent, topic: &str, start: u64, error: Option<String>) {
    use crate::telemetry::trace::{self, Attr, Kind, SpanRecord};
    trace::record(SpanRecord {
        trace_id: t.trace_id.0,
        span_id: t.span_id,
        parent_id: 0,
        name: format!("send {topic}").into(),
        kind: Kind::Producer,
        start_unix_nanos: start,
        end_unix_nanos: trace::unix_nanos(),
        attributes: vec![
            ("messaging.system", Attr::from("kafka")),
            ("messaging.operation.type", Attr::from("send")),
            ("messaging.destination.name", Attr::from(topic.to_owned())),
        ],
        error,
    });
}

fn encode(event: &Event, format: WireFormat, ids: Option<SchemaIds>) -> Vec<u8> {
    match (format, ids) {
        (WireFormat::Avro, Some(ids)) => encode_avro(event, ids.for_event(event)),
        _ => encode_json(event),
    }
}
