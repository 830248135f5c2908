//! Events on the wire: Avro (Confluent framing, schemas from the registry),
//! JSON with the same field names, and Debezium change events of the legacy
//! `orders` table, all decoded into [`crate::model::Event`].

pub mod avro;
pub mod debezium;
mod json;
pub mod stream;

use crate::model::{Component, Event};

pub use avro::{encode_avro, Decoder, SchemaIds};
pub use json::{decode_json, encode_json};

/// Which stream a message came from; decides the expected event shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Orders,
    Fulfillments,
}

impl Stream {
    /// The stream an event belongs on.
    pub fn of(event: &Event) -> Stream {
        match event.component {
            Component::Order(_) => Stream::Orders,
            Component::Fulfillment(_) => Stream::Fulfillments,
        }
    }
}

/// Why a message could not be used. The reason is a metric label and travels
/// with the message to the dead-letter topic; the detail never holds PII.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DecodeError {
    #[error("undecodable: {0}")]
    Malformed(String),
    /// Larger than `max_message_bytes`: refused unread.
    #[error("{bytes} bytes, limit {limit}")]
    Oversized { bytes: usize, limit: usize },
    /// Well framed, but it would cost more to decode than its size allows
    /// (see [`Limits`]).
    #[error("over a decoding limit: {0}")]
    OverLimit(String),
    #[error("unknown schema id {0}")]
    UnknownSchema(u32),
    /// The writer schema is registered, but not under the topic's subject.
    #[error("schema id {id} is not registered under subject {subject}")]
    ForeignSchema { id: u32, subject: String },
    #[error("schema registry unavailable: {0}")]
    RegistryUnavailable(String),
    #[error("invalid field {field}: {detail}")]
    InvalidField { field: &'static str, detail: String },
}

impl DecodeError {
    /// Bounded label for metrics and the dead-letter header.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Malformed(_) => "undecodable",
            DecodeError::Oversized { .. } => "oversized",
            DecodeError::OverLimit(_) => "over_limit",
            DecodeError::UnknownSchema(_) => "unknown_schema",
            DecodeError::ForeignSchema { .. } => "foreign_schema",
            DecodeError::RegistryUnavailable(_) => "registry_unavailable",
            DecodeError::InvalidField { .. } => "invalid_field",
        }
    }

    /// Whether retrying later may succeed (the registry was down), as opposed
    /// to a message that will never decode.
    pub fn is_transient(&self) -> bool {
        matches!(self, DecodeError::RegistryUnavailable(_))
    }
}

/// What one message may cost to decode. A message is refused unread when it
/// is larger than `max_message_bytes`; the Avro decoding of a body builds at
/// most one value per byte of it plus `max_zero_byte_values` (the values an
/// encoding spends no byte on: nulls, empty records, a record around its
/// fields), so a few bytes can never claim millions of items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_zero_byte_values: usize,
}

impl Default for Limits {
    /// The defaults of `config/default.toml`.
    fn default() -> Self {
        Limits { max_message_bytes: 1024 * 1024, max_zero_byte_values: 65_536 }
    }
}

impl Limits {
    /// The limits of `serve`'s stream.
    pub fn of_stream(c: &crate::config::StreamConfig) -> Limits {
        Limits { max_message_bytes: c.max_message_bytes, max_zero_byte_values: c.max_zero_byte_values }
    }

    /// The limits of `ingest`.
    pub fn of_ingest(c: &crate::config::IngestConfig) -> Limits {
        Limits { max_message_bytes: c.max_message_bytes, max_zero_byte_values: c.max_zero_byte_values }
    }

    /// Refuses a payload larger than `max_message_bytes`, before anything reads it.
    pub fn check_size(&self, payload: &[u8]) -> Result<(), DecodeError> {
        if payload.len() > self.max_message_bytes {
            return Err(DecodeError::Oversized { bytes: payload.len(), limit: self.max_message_bytes });
        }
        Ok(())
    }
}

/// Checks what serde cannot: the snapshot's own rules.
pub fn validate(event: &Event) -> Result<(), DecodeError> {
    let bad = |field: &'static str, detail: String| Err(DecodeError::InvalidField { field, detail });
    match &event.component {
        Component::Order(o) => {
            if o.order_id.is_empty() || o.order_id.len() > 128 {
                return bad("order_id", format!("length {} outside 1..=128", o.order_id.len()));
            }
            if !crate::model::valid_currency(&o.currency) {
                return bad("currency", format!("{:?} is not an ISO 4217 code", o.currency));
            }
            if o.version == 0 {
                return bad("version", "must be at least 1".into());
            }
        }
        Component::Fulfillment(f) => {
            if f.order_id.is_empty() || f.order_id.len() > 128 {
                return bad("order_id", format!("length {} outside 1..=128", f.order_id.len()));
            }
            if f.fulfillment_id.is_empty() {
                return bad("fulfillment_id", "must not be empty".into());
            }
            if f.version == 0 {
                return bad("version", "must be at least 1".into());
            }
        }
    }
    Ok(())
}
