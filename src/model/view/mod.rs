//! `OrderView`: an order with its fulfilments, and the merge that keeps it current.
//!
//! `apply` keeps, per component (the order header, each fulfilment), the
//! snapshot with the higher version. It is commutative, associative and
//! idempotent, so the projector, the cache and the tests share it and the
//! order in which an event and a backend fill arrive can never regress a view.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Fulfillment, Order};

mod rows;
pub use rows::{line_order, ranked_version, unranked, RowPosition, SourceRows};

/// One versioned part of a view.
// Not boxed: a component is built once per event and moved into its view;
// a box would cost an allocation per event to save stack space in transit.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Component {
    Order(Order),
    Fulfillment(Fulfillment),
}

impl Component {
    /// The order this component belongs to.
    pub fn order_id(&self) -> &str {
        match self {
            Component::Order(o) => &o.order_id,
            Component::Fulfillment(f) => &f.order_id,
        }
    }

    /// The component's own version.
    pub fn version(&self) -> u64 {
        match self {
            Component::Order(o) => o.version,
            Component::Fulfillment(f) => f.version,
        }
    }
}

/// The denormalised order as the API returns it and Elasticsearch stores it.
///
/// `order` is absent while only fulfilment events have been seen (events of
/// the two topics can arrive in any order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderView {
    pub order_id: String,
    #[serde(default)]
    pub order: Option<Order>,
    /// Sorted by `fulfillment_id`.
    #[serde(default)]
    pub fulfillments: Vec<Fulfillment>,
}

impl OrderView {
    /// Whether the view holds personal data (address, e-mail, phone).
    pub fn has_pii(&self) -> bool {
        self.order.as_ref().is_some_and(|o| o.shipping_address.is_some() || o.email.is_some() || o.phone.is_some())
    }

    /// The view without personal data, for callers without `orders:pii`.
    pub fn without_pii(&self) -> OrderView {
        let mut v = self.clone();
        v.strip_pii();
        v
    }

    /// Removes personal data in place.
    pub fn strip_pii(&mut self) {
        if let Some(o) = &mut self.order {
            o.shipping_address = None;
            o.email = None;
            o.phone = None;
        }
    }

    /// An empty view of one order.
    pub fn new(order_id: impl Into<String>) -> Self {
        OrderView { order_id: order_id.into(), order: None, fulfillments: Vec::new() }
    }

    /// A view holding one component.
    pub fn from_component(c: Component) -> Self {
        let mut v = OrderView::new(c.order_id());
        v.apply(c);
        v
    }

    /// Merges one component; returns whether the view changed.
    /// A component of another order is ignored (the caller routes by key).
    pub fn apply(&mut self, c: Component) -> bool {
        if c.order_id() != self.order_id {
            return false;
        }
        match c {
            Component::Order(o) => match &self.order {
                None => {
                    self.order = Some(o);
                    true
                }
                // The order services own an order from their first snapshot
                // of it on: a CDC change of the same order (its legacy row,
                // frozen or deleted by the migration) never replaces it.
                Some(cur) => match (&cur.cdc, &o.cdc) {
                    (None, None) => {
                        let replace = wins(cur.version, cur, o.version, &o);
                        if replace {
                            self.order = Some(o);
                        }
                        replace
                    }
                    (None, Some(_)) => false,
                    (Some(_), None) => {
                        self.order = Some(o);
                        true
                    }
                    (Some(_), Some(_)) => {
                        let merged = rows::merge_rows(cur, &o);
                        let changed = &merged != cur;
                        if changed {
                            self.order = Some(merged);
                        }
                        changed
                    }
                },
            },
            Component::Fulfillment(f) => {
                match self.fulfillments.binary_search_by(|x| x.fulfillment_id.cmp(&f.fulfillment_id)) {
                    Ok(i) => {
                        let cur = &self.fulfillments[i];
                        if wins(cur.version, cur, f.version, &f) {
                            self.fulfillments[i] = f;
                            true
                        } else {
                            false
                        }
                    }
                    Err(i) => {
                        self.fulfillments.insert(i, f);
                        true
                    }
                }
            }
        }
    }

    /// Merges every component of another view of the same order.
    pub fn merge(&mut self, other: OrderView) -> bool {
        let mut changed = false;
        if let Some(o) = other.order {
            changed |= self.apply(Component::Order(o));
        }
        for f in other.fulfillments {
            changed |= self.apply(Component::Fulfillment(f));
        }
        changed
    }

    /// Component versions: the order header's (0 when absent) and each fulfilment's.
    pub fn versions(&self) -> (u64, Vec<(&str, u64)>) {
        (
            self.order.as_ref().map_or(0, |o| o.version),
            self.fulfillments.iter().map(|f| (f.fulfillment_id.as_str(), f.version)).collect(),
        )
    }

    /// Whether `self` holds every component of `other` at an equal or higher version.
    pub fn dominates(&self, other: &OrderView) -> bool {
        let order_ok = match (&self.order, &other.order) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => ranked_version(a) >= ranked_version(b),
        };
        order_ok
            && other.fulfillments.iter().all(|f| {
                self.fulfillments.iter().any(|g| g.fulfillment_id == f.fulfillment_id && g.version >= f.version)
            })
    }

    /// A strong validator derived from the component versions alone: it
    /// changes exactly when a component does.
    pub fn etag(&self) -> String {
        self.etag_of(false)
    }

    /// The ETag of the view as served without personal data. It differs from
    /// [`OrderView::etag`] for every order, with personal data or without, so
    /// that its form tells a reader without `orders:pii` nothing about
    /// whether the order holds any.
    pub fn redacted_etag(&self) -> String {
        self.etag_of(true)
    }

    fn etag_of(&self, redacted: bool) -> String {
        use std::fmt::Write;
        let (ov, fs) = self.versions();
        let mut h = Fnv64::default();
        if redacted {
            h.write(b"redacted\0");
        }
        // A legacy order's version and a service's are different counts.
        if self.order.as_ref().is_some_and(|o| o.cdc.is_some()) {
            h.write(b"cdc\0");
        }
        h.write(self.order_id.as_bytes());
        h.write(&ov.to_le_bytes());
        for (id, v) in fs {
            h.write(id.as_bytes());
            h.write(&v.to_le_bytes());
        }
        let mut s = String::with_capacity(20);
        let _ = write!(s, "\"{:016x}\"", h.0);
        s
    }

    /// Fulfilments keyed by id (for comparisons in tests and tools).
    pub fn fulfillment_map(&self) -> BTreeMap<&str, &Fulfillment> {
        self.fulfillments.iter().map(|f| (f.fulfillment_id.as_str(), f)).collect()
    }
}

/// Whether `new` replaces `cur`: a higher version wins. Equal versions should
/// carry equal snapshots; if a producer breaks that, the larger snapshot by a
/// total order wins, so the merge stays commutative whatever arrives first.
fn wins<T: std::hash::Hash + PartialEq + Serialize>(cur_v: u64, cur: &T, new_v: u64, new: &T) -> bool {
    match new_v.cmp(&cur_v) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => cur != new && serde_json::to_vec(new).ok() > serde_json::to_vec(cur).ok(),
    }
}

/// FNV-1a, 64 bit: stable across builds and platforms, unlike `DefaultHasher`.
struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator so ("ab","c") and ("a","bc") hash apart.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
    }
}

#[cfg(test)]
mod tests;
