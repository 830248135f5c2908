//! Decoding straight from the Avro binary body into the model, for messages
//! whose writer schema is the contract's own (the common case: every producer
//! of this repository writes with `schemas/avro`).
//!
//! The generic path builds an `apache_avro::Value` tree, resolves it against
//! the reader schema and then walks it by field name: about 400 allocations and
//! 20 µs an order event. When the writer's Parsing Canonical Form equals the
//! reader's, the bytes are laid out exactly as the reader schema says (same
//! fields, same order, same types), so they can be read in that order with no
//! tree and no resolution. Any other writer schema takes the generic path.
//!
//! Field order below is the order of `schemas/avro/*.avsc`; the unit tests
//! decode every field of generated events both ways and compare.

use super::{invalid, DecodeError, R};
use crate::events::Stream;
use crate::model::*;

/// Decodes one body written with the reader schema of `stream`.
pub fn decode(stream: Stream, body: &[u8]) -> R<Event> {
    let mut r = Reader { buf: body };
    let envelope = Envelope {
        event_id: r.string("event_id")?,
        event_type: r.string("event_type")?,
        source: r.string("source")?,
        occurred_at: Timestamp(r.long("occurred_at")?),
        schema_version: r.int("schema_version")?,
    };
    let component = match stream {
        Stream::Orders => Component::Order(order(&mut r)?),
        Stream::Fulfillments => Component::Fulfillment(fulfillment(&mut r)?),
    };
    if !r.buf.is_empty() {
        return Err(DecodeError::Malformed(format!("{} bytes after the record", r.buf.len())));
    }
    Ok(Event { envelope, component })
}

fn order(r: &mut Reader<'_>) -> R<Order> {
    let order_id = r.string("order_id")?;
    let order_number = r.string("order_number")?;
    let customer_id = r.string("customer_id")?;
    let channel = r.parse("channel")?;
    let status = r.parse("status")?;
    let currency = r.string("currency")?;
    let subtotal = r.long("subtotal")?;
    let tax = r.long("tax")?;
    let shipping = r.long("shipping")?;
    let discount = r.long("discount")?;
    let total = r.long("total")?;
    let lines = r.array("lines", |r| {
        let line_id = r.string("line_id")?;
        let sku = r.string("sku")?;
        let name = r.string("name")?;
        let quantity = r.int("quantity")?;
        Ok(OrderLine {
            line_id,
            sku,
            name,
            quantity: u32::try_from(quantity).map_err(|_| invalid("quantity", format!("{quantity} out of range")))?,
            unit_price: r.long("unit_price")?,
            status: r.parse("status")?,
        })
    })?;
    let shipping_address = if r.present("shipping_address")? {
        Some(Address {
            name: r.string("name")?,
            line1: r.string("line1")?,
            line2: r.opt_string("line2")?,
            city: r.string("city")?,
            region: r.opt_string("region")?,
            postal_code: r.string("postal_code")?,
            country: r.string("country")?,
        })
    } else {
        None
    };
    Ok(Order {
        order_id,
        order_number,
        customer_id,
        channel,
        status,
        currency,
        subtotal,
        tax,
        shipping,
        discount,
        total,
        lines,
        shipping_address,
        email: r.opt_string("email")?,
        phone: r.opt_string("phone")?,
        promised_delivery_at: r.opt_ts("promised_delivery_at")?,
        created_at: Timestamp(r.long("created_at")?),
        updated_at: Timestamp(r.long("updated_at")?),
        version: r.version("version")?,
        deleted: r.boolean("deleted")?,
    })
}

fn fulfillment(r: &mut Reader<'_>) -> R<Fulfillment> {
    Ok(Fulfillment {
        fulfillment_id: r.string("fulfillment_id")?,
        order_id: r.string("order_id")?,
        kind: r.parse("type")?,
        status: r.parse("status")?,
        carrier: r.opt_string("carrier")?,
        tracking_number: r.opt_string("tracking_number")?,
        line_ids: r.array("line_ids", |r| r.string("line_ids"))?,
        shipped_at: r.opt_ts("shipped_at")?,
        delivered_at: r.opt_ts("delivered_at")?,
        version: r.version("version")?,
    })
}

/// The Avro binary encoding, read front to back. Every read is bounds-checked
/// and names the field it was reading when the bytes run out or are malformed.
struct Reader<'a> {
    buf: &'a [u8],
}

fn truncated(field: &'static str) -> DecodeError {
    DecodeError::Malformed(format!("avro: the message ends inside {field}"))
}

impl Reader<'_> {
    /// A zig-zag variable-length long (at most 10 bytes).
    fn long(&mut self, field: &'static str) -> R<i64> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or_else(|| truncated(field))?;
            self.buf = rest;
            // The tenth byte may carry only the top bit of the 64.
            if i == 9 && b > 1 {
                return Err(DecodeError::Malformed(format!("avro: {field} overflows a long")));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(DecodeError::Malformed(format!("avro: {field} overflows a long")))
    }

    fn int(&mut self, field: &'static str) -> R<i32> {
        let n = self.long(field)?;
        i32::try_from(n).map_err(|_| DecodeError::Malformed(format!("avro: {field} = {n} overflows an int")))
    }

    fn version(&mut self, field: &'static str) -> R<u64> {
        let n = self.long(field)?;
        u64::try_from(n).map_err(|_| invalid(field, format!("{n} is negative")))
    }

    fn boolean(&mut self, field: &'static str) -> R<bool> {
        let (&b, rest) = self.buf.split_first().ok_or_else(|| truncated(field))?;
        self.buf = rest;
        match b {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Malformed(format!("avro: {field} is byte {b}, not a boolean"))),
        }
    }

    fn string(&mut self, field: &'static str) -> R<String> {
        let len = self.long(field)?;
        let len = usize::try_from(len)
            .map_err(|_| DecodeError::Malformed(format!("avro: {field} has a negative length {len}")))?;
        if len > self.buf.len() {
            return Err(truncated(field));
        }
        let (bytes, rest) = self.buf.split_at(len);
        self.buf = rest;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| DecodeError::Malformed(format!("avro: {field} is not valid UTF-8")))
    }

    fn parse<T: std::str::FromStr<Err = String>>(&mut self, field: &'static str) -> R<T> {
        self.string(field)?.parse().map_err(|e: String| invalid(field, e))
    }

    /// The branch of a `["null", T]` union: false for null.
    fn present(&mut self, field: &'static str) -> R<bool> {
        match self.long(field)? {
            0 => Ok(false),
            1 => Ok(true),
            n => Err(DecodeError::Malformed(format!("avro: {field} has union branch {n}, expected 0 or 1"))),
        }
    }

    fn opt_string(&mut self, field: &'static str) -> R<Option<String>> {
        if self.present(field)? {
            self.string(field).map(Some)
        } else {
            Ok(None)
        }
    }

    fn opt_ts(&mut self, field: &'static str) -> R<Option<Timestamp>> {
        if self.present(field)? {
            self.long(field).map(|n| Some(Timestamp(n)))
        } else {
            Ok(None)
        }
    }

    /// An array: blocks of items, each a count (negative when followed by the
    /// block's size in bytes), ended by an empty block.
    fn array<T>(&mut self, field: &'static str, mut item: impl FnMut(&mut Self) -> R<T>) -> R<Vec<T>> {
        let mut out = Vec::new();
        loop {
            let count = self.long(field)?;
            if count == 0 {
                return Ok(out);
            }
            if count < 0 {
                self.long(field)?; // the block's byte size, not needed to read it
            }
            let count = count.unsigned_abs();
            // Every item takes at least one byte: a count beyond what is left is a lie.
            if count > self.buf.len() as u64 {
                return Err(truncated(field));
            }
            out.reserve(count as usize);
            for _ in 0..count {
                out.push(item(self)?);
            }
        }
    }
}
