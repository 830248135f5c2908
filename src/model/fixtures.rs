//! The orders, fulfilments, events and views of the unit tests, one set for
//! every module: a fully populated order [`ORDER_ID`] and its fulfilment
//! [`FULFILLMENT_ID`]. A test changes the fields it is about on the value a
//! builder returns (`let mut o = order(2); o.deleted = true;`).

use super::{
    Address, Channel, Component, Envelope, Event, Fulfillment, FulfillmentStatus, FulfillmentType, LineStatus, Order,
    OrderLine, OrderStatus, OrderView, Timestamp,
};

/// The order every fixture belongs to.
pub const ORDER_ID: &str = "o-1";

/// The fixture fulfilment's id.
pub const FULFILLMENT_ID: &str = "f-1";

/// An order with every part filled in: one line, a shipping address, an
/// e-mail address (no phone) and a promised delivery date, partially shipped.
pub fn order(version: u64) -> Order {
    Order {
        order_id: ORDER_ID.into(),
        order_number: "ON-00001234".into(),
        customer_id: "cust-42".into(),
        channel: Channel::CallCenter,
        status: OrderStatus::PartiallyShipped,
        currency: "EUR".into(),
        subtotal: 4998,
        tax: 950,
        shipping: 499,
        discount: 500,
        total: 5947,
        lines: vec![OrderLine {
            line_id: "l1".into(),
            sku: "SKU-1".into(),
            name: "Mug".into(),
            quantity: 2,
            unit_price: 2499,
            status: LineStatus::Shipped,
        }],
        shipping_address: Some(Address {
            name: "A. Person".into(),
            line1: "Main St 1".into(),
            line2: None,
            city: "Berlin".into(),
            region: Some("BE".into()),
            postal_code: "10115".into(),
            country: "DE".into(),
        }),
        email: Some("a@example.com".into()),
        phone: None,
        promised_delivery_at: Some(Timestamp(1_700_100_000_000)),
        created_at: Timestamp(1_700_000_000_000),
        updated_at: Timestamp(1_700_000_500_000),
        version,
        deleted: false,
        cdc: None,
    }
}

/// The shipment of the [`order`]'s line: carrier, tracking number and
/// shipping time set, not delivered yet.
pub fn fulfillment(version: u64) -> Fulfillment {
    Fulfillment {
        fulfillment_id: FULFILLMENT_ID.into(),
        order_id: ORDER_ID.into(),
        kind: FulfillmentType::Ship,
        status: FulfillmentStatus::Shipped,
        carrier: Some("DHL".into()),
        tracking_number: Some("JJD000390007".into()),
        line_ids: vec!["l1".into()],
        shipped_at: Some(Timestamp(1_700_000_600_000)),
        delivered_at: None,
        version,
    }
}

/// The event that carries `component`, with an envelope of its kind: the
/// order confirmed by the shop, the fulfilment shipped by the warehouse.
pub fn event(component: Component) -> Event {
    let envelope = match &component {
        Component::Order(_) => Envelope {
            event_id: "e-1".into(),
            event_type: "order.confirmed".into(),
            source: "digital".into(),
            occurred_at: Timestamp(1_700_000_500_000),
            schema_version: 1,
        },
        Component::Fulfillment(_) => Envelope {
            event_id: "e-2".into(),
            event_type: "fulfillment.shipped".into(),
            source: "fulfillment-order".into(),
            occurred_at: Timestamp(1_700_000_600_000),
            schema_version: 1,
        },
    };
    Event { envelope, component }
}

/// The event of [`order`] at `version`.
pub fn order_event(version: u64) -> Event {
    event(Component::Order(order(version)))
}

/// The event of [`fulfillment`] at version 2 (the one after its creation).
pub fn fulfillment_event() -> Event {
    event(Component::Fulfillment(fulfillment(2)))
}

/// The view of [`order`] at `order_version` and, when given a version, of
/// [`fulfillment`] at that version.
pub fn view(order_version: u64, fulfillment_version: Option<u64>) -> OrderView {
    let order = Component::Order(order(order_version));
    view_of([order].into_iter().chain(fulfillment_version.map(|v| Component::Fulfillment(fulfillment(v)))))
}

/// The view of [`ORDER_ID`] that `components` make, applied in turn.
pub fn view_of(components: impl IntoIterator<Item = Component>) -> OrderView {
    let mut view = OrderView::new(ORDER_ID);
    for c in components {
        view.apply(c);
    }
    view
}
