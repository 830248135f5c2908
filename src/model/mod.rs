//! The data model, one source of truth: orders, fulfilments, the denormalised
//! `OrderView`, and the pure merge that keeps a view current.
//!
//! Money is in integer minor units of the order's ISO 4217 currency; times are
//! [`Timestamp`]s (milliseconds since the Unix epoch, RFC 3339 in JSON).

pub mod cursor;
mod timestamp;
mod view;

#[cfg(test)]
pub mod fixtures;

use serde::{Deserialize, Serialize};

pub use timestamp::Timestamp;
pub use view::{line_order, ranked_version, unranked, Component, OrderView, RowPosition, SourceRows};

/// Where an order was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Web,
    App,
    Store,
    CallCenter,
    Marketplace,
}

/// The order's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Created,
    Confirmed,
    Allocated,
    PartiallyShipped,
    Shipped,
    Delivered,
    Cancelled,
    Returned,
}

/// A line's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LineStatus {
    Open,
    Allocated,
    Shipped,
    Delivered,
    Cancelled,
    Returned,
}

/// How a fulfilment reaches the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FulfillmentType {
    Ship,
    Pickup,
    Digital,
}

/// A fulfilment's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FulfillmentStatus {
    Pending,
    Shipped,
    ReadyForPickup,
    Delivered,
    Cancelled,
    Returned,
}

macro_rules! str_enum {
    ($t:ty { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $t {
            /// Every value, in declaration order.
            pub const ALL: &'static [$t] = &[$(<$t>::$v),+];
            /// The wire and API spelling.
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),+ }
            }
        }
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok(<$t>::$v),)+
                    other => Err(format!(
                        "unknown value {other:?}; expected one of {}",
                        [$($s),+].join(", ")
                    )),
                }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

str_enum!(Channel { Web => "web", App => "app", Store => "store", CallCenter => "call_center", Marketplace => "marketplace" });
str_enum!(OrderStatus {
    Created => "created", Confirmed => "confirmed", Allocated => "allocated",
    PartiallyShipped => "partially_shipped", Shipped => "shipped", Delivered => "delivered",
    Cancelled => "cancelled", Returned => "returned",
});
str_enum!(LineStatus {
    Open => "open", Allocated => "allocated", Shipped => "shipped", Delivered => "delivered",
    Cancelled => "cancelled", Returned => "returned",
});
str_enum!(FulfillmentType { Ship => "ship", Pickup => "pickup", Digital => "digital" });
str_enum!(FulfillmentStatus {
    Pending => "pending", Shipped => "shipped", ReadyForPickup => "ready_for_pickup",
    Delivered => "delivered", Cancelled => "cancelled", Returned => "returned",
});

/// A postal address (PII).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub name: String,
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    pub line_id: String,
    pub sku: String,
    pub name: String,
    pub quantity: u32,
    /// Minor units of the order's currency.
    pub unit_price: i64,
    pub status: LineStatus,
}

/// The order snapshot published by the Digital service (or mapped from CDC).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Order {
    pub order_id: String,
    pub order_number: String,
    pub customer_id: String,
    pub channel: Channel,
    pub status: OrderStatus,
    /// ISO 4217 code, upper case.
    pub currency: String,
    pub subtotal: i64,
    pub tax: i64,
    pub shipping: i64,
    pub discount: i64,
    pub total: i64,
    pub lines: Vec<OrderLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promised_delivery_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Monotonic per order; the merge keeps the higher one.
    pub version: u64,
    /// Set by a deletion (CDC `op: d`): the order is gone from the source.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// Legacy orders only (CDC): the source position of each of the order's
    /// rows, by which their changes merge (see `view/rows.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdc: Option<SourceRows>,
}

/// A fulfilment snapshot published by the FulfillmentOrder service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Fulfillment {
    pub fulfillment_id: String,
    pub order_id: String,
    #[serde(rename = "type")]
    pub kind: FulfillmentType,
    pub status: FulfillmentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    pub line_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipped_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Timestamp>,
    /// Monotonic per fulfilment; the merge keeps the higher one.
    pub version: u64,
}

/// The envelope every event carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub event_id: String,
    /// e.g. `order.created`, `order.confirmed`, `fulfillment.shipped`.
    pub event_type: String,
    /// The producing service, e.g. `digital`, `fulfillment-order`, `cdc.legacy`.
    pub source: String,
    pub occurred_at: Timestamp,
    pub schema_version: i32,
}

/// A decoded event: an envelope and the snapshot it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub envelope: Envelope,
    pub component: Component,
}

impl Event {
    /// The order the event belongs to (the Kafka key).
    pub fn order_id(&self) -> &str {
        self.component.order_id()
    }
}

/// Checks a currency code's shape (three upper-case ASCII letters).
pub fn valid_currency(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}
