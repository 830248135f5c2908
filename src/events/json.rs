//! JSON events: the envelope's fields beside `order` or `fulfillment`, the
//! same names as the Avro schemas.

use serde::{Deserialize, Serialize};

use super::{validate, DecodeError, Stream};
use crate::model::{Component, Envelope, Event, Fulfillment, Order};

#[derive(Serialize, Deserialize)]
struct OrderEventJson {
    #[serde(flatten)]
    envelope: Envelope,
    order: Order,
}

#[derive(Serialize, Deserialize)]
struct FulfillmentEventJson {
    #[serde(flatten)]
    envelope: Envelope,
    fulfillment: Fulfillment,
}

/// Encodes an event as JSON.
pub fn encode_json(event: &Event) -> Vec<u8> {
    let out = match &event.component {
        Component::Order(o) => {
            serde_json::to_vec(&OrderEventJson { envelope: event.envelope.clone(), order: o.clone() })
        }
        Component::Fulfillment(f) => {
            serde_json::to_vec(&FulfillmentEventJson { envelope: event.envelope.clone(), fulfillment: f.clone() })
        }
    };
    out.expect("model types always serialise")
}

/// Decodes a JSON event of the given stream.
pub fn decode_json(stream: Stream, payload: &[u8]) -> Result<Event, DecodeError> {
    let event = match stream {
        Stream::Orders => {
            let e: OrderEventJson = serde_json::from_slice(payload).map_err(|e| DecodeError::Malformed(strip(e)))?;
            // Row positions come from the CDC topics alone: an order service
            // claiming them would merge as a legacy order.
            if e.order.cdc.is_some() {
                return Err(DecodeError::InvalidField {
                    field: "cdc",
                    detail: "set only by change data capture".into(),
                });
            }
            Event { envelope: e.envelope, component: Component::Order(e.order) }
        }
        Stream::Fulfillments => {
            let e: FulfillmentEventJson =
                serde_json::from_slice(payload).map_err(|e| DecodeError::Malformed(strip(e)))?;
            Event { envelope: e.envelope, component: Component::Fulfillment(e.fulfillment) }
        }
    };
    validate(&event)?;
    Ok(event)
}

/// serde_json errors may quote input (an e-mail address, say); keep only the
/// category and position so logs and dead-letter headers carry no PII.
fn strip(e: serde_json::Error) -> String {
    format!("{:?} error at line {} column {}", e.classify(), e.line(), e.column())
}
