//! The event contract read field by field, once, for both sources of fields:
//! the Avro bytes in schema order ([`super::direct`]) and a resolved value
//! tree taken by name ([`super::Rec`]). The builders below read every field in
//! the order of `schemas/avro/*.avsc`, which the byte reader needs and the
//! value tree does not mind.

use super::{invalid, R};
use crate::events::Stream;
use crate::model::*;

/// One source of an event's fields. Each call names the field it reads, so
/// errors can name it too.
pub(super) trait Fields: Sized {
    fn string(&mut self, field: &'static str) -> R<String>;
    fn opt_string(&mut self, field: &'static str) -> R<Option<String>>;
    fn long(&mut self, field: &'static str) -> R<i64>;
    fn int(&mut self, field: &'static str) -> R<i32>;
    fn ts(&mut self, field: &'static str) -> R<Timestamp>;
    fn opt_ts(&mut self, field: &'static str) -> R<Option<Timestamp>>;
    fn boolean(&mut self, field: &'static str) -> R<bool>;
    /// A nested record.
    fn record<T>(&mut self, field: &'static str, read: impl FnOnce(&mut Self) -> R<T>) -> R<T>;
    /// A `["null", record]` union.
    fn opt_record<T>(&mut self, field: &'static str, read: impl FnOnce(&mut Self) -> R<T>) -> R<Option<T>>;
    /// An array; `item` reads one element (a scalar element is read as a
    /// field named like the array).
    fn array<T>(&mut self, field: &'static str, item: impl FnMut(&mut Self) -> R<T>) -> R<Vec<T>>;

    fn version(&mut self, field: &'static str) -> R<u64> {
        let n = self.long(field)?;
        u64::try_from(n).map_err(|_| invalid(field, format!("{n} is negative")))
    }

    fn parse<T: std::str::FromStr<Err = String>>(&mut self, field: &'static str) -> R<T> {
        self.string(field)?.parse().map_err(|e: String| invalid(field, e))
    }
}

/// An event of `stream`: the envelope, then the order or the fulfilment.
pub(super) fn event<F: Fields>(stream: Stream, f: &mut F) -> R<Event> {
    let envelope = Envelope {
        event_id: f.string("event_id")?,
        event_type: f.string("event_type")?,
        source: f.string("source")?,
        occurred_at: f.ts("occurred_at")?,
        schema_version: f.int("schema_version")?,
    };
    let component = match stream {
        Stream::Orders => Component::Order(f.record("order", order)?),
        Stream::Fulfillments => Component::Fulfillment(f.record("fulfillment", fulfillment)?),
    };
    Ok(Event { envelope, component })
}

fn order<F: Fields>(f: &mut F) -> R<Order> {
    Ok(Order {
        order_id: f.string("order_id")?,
        order_number: f.string("order_number")?,
        customer_id: f.string("customer_id")?,
        channel: f.parse("channel")?,
        status: f.parse("status")?,
        currency: f.string("currency")?,
        subtotal: f.long("subtotal")?,
        tax: f.long("tax")?,
        shipping: f.long("shipping")?,
        discount: f.long("discount")?,
        total: f.long("total")?,
        lines: f.array("lines", |l| {
            l.record("lines", |l| {
                Ok(OrderLine {
                    line_id: l.string("line_id")?,
                    sku: l.string("sku")?,
                    name: l.string("name")?,
                    quantity: {
                        let q = l.int("quantity")?;
                        u32::try_from(q).map_err(|_| invalid("quantity", format!("{q} out of range")))?
                    },
                    unit_price: l.long("unit_price")?,
                    status: l.parse("status")?,
                })
            })
        })?,
        shipping_address: f.opt_record("shipping_address", |a| {
            Ok(Address {
                name: a.string("name")?,
                line1: a.string("line1")?,
                line2: a.opt_string("line2")?,
                city: a.string("city")?,
                region: a.opt_string("region")?,
                postal_code: a.string("postal_code")?,
                country: a.string("country")?,
            })
        })?,
        email: f.opt_string("email")?,
        phone: f.opt_string("phone")?,
        promised_delivery_at: f.opt_ts("promised_delivery_at")?,
        created_at: f.ts("created_at")?,
        updated_at: f.ts("updated_at")?,
        version: f.version("version")?,
        deleted: f.boolean("deleted")?,
        cdc: None,
    })
}

fn fulfillment<F: Fields>(f: &mut F) -> R<Fulfillment> {
    Ok(Fulfillment {
        fulfillment_id: f.string("fulfillment_id")?,
        order_id: f.string("order_id")?,
        kind: f.parse("type")?,
        status: f.parse("status")?,
        carrier: f.opt_string("carrier")?,
        tracking_number: f.opt_string("tracking_number")?,
        line_ids: f.array("line_ids", |i| i.string("line_ids"))?,
        shipped_at: f.opt_ts("shipped_at")?,
        delivered_at: f.opt_ts("delivered_at")?,
        version: f.version("version")?,
    })
}
