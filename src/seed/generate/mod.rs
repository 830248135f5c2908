//! Deterministic generation of realistic order lifecycles. Pure: the same
//! (orders, seed, now) always gives the same events, on every platform
//! (ChaCha8 is a fixed algorithm; nothing reads the clock or the OS).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::*;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// How far back `created_at` reaches: three years, so about a third of the
/// orders lie outside a two-year hot window.
pub const SPAN: i64 = 3 * 365 * DAY;

const ADJECTIVES: &[&str] = &[
    "Classic",
    "Organic",
    "Compact",
    "Deluxe",
    "Everyday",
    "Vintage",
    "Wireless",
    "Recycled",
    "Ceramic",
    "Linen",
    "Stainless",
    "Bamboo",
    "Merino",
    "Ultralight",
    "Handmade",
    "Smart",
];
const NOUNS: &[&str] = &[
    "Mug",
    "Backpack",
    "Desk Lamp",
    "Water Bottle",
    "Headphones",
    "Notebook",
    "T-Shirt",
    "Sneakers",
    "Throw Blanket",
    "Chef Knife",
    "Phone Case",
    "Yoga Mat",
    "Candle",
    "Coffee Grinder",
    "Wall Clock",
    "Gift Card",
];
const FIRST: &[&str] =
    &["Alex", "Sam", "Maria", "Jonas", "Aiko", "Liam", "Sofia", "Noah", "Emma", "Yuki", "Lucas", "Chloe"];
const LAST: &[&str] =
    &["Smith", "Müller", "Rossi", "Dubois", "Tanaka", "García", "Jansen", "Brown", "Schmidt", "Martin"];

/// A market: currency, countries, tax rate (basis points), carriers, price factor.
struct Market {
    currency: &'static str,
    countries: &'static [(&'static str, &'static str)],
    tax_bp: i64,
    carriers: &'static [&'static str],
    /// Minor units of this currency per US cent, times 100.
    fx: i64,
    shipping_fee: i64,
}

const MARKETS: &[(u32, Market)] = &[
    (
        45,
        Market {
            currency: "USD",
            countries: &[("US", "Austin"), ("US", "Seattle"), ("US", "Chicago")],
            tax_bp: 800,
            carriers: &["UPS", "FedEx", "USPS"],
            fx: 100,
            shipping_fee: 599,
        },
    ),
    (
        30,
        Market {
            currency: "EUR",
            countries: &[("DE", "Berlin"), ("FR", "Lyon"), ("NL", "Utrecht"), ("ES", "Valencia")],
            tax_bp: 2000,
            carriers: &["DHL", "DPD", "GLS", "La Poste"],
            fx: 92,
            shipping_fee: 495,
        },
    ),
    (
        20,
        Market {
            currency: "GBP",
            countries: &[("GB", "Leeds"), ("GB", "Bristol")],
            tax_bp: 2000,
            carriers: &["Royal Mail", "DPD", "UPS"],
            fx: 79,
            shipping_fee: 399,
        },
    ),
    // JPY has no minor unit: one "minor unit" is one yen (about 1.5 per US cent).
    (
        5,
        Market {
            currency: "JPY",
            countries: &[("JP", "Osaka"), ("JP", "Tokyo")],
            tax_bp: 1000,
            carriers: &["Yamato", "Sagawa"],
            fx: 150,
            shipping_fee: 700,
        },
    ),
];

const CHANNELS: &[(u32, Channel)] = &[
    (45, Channel::Web),
    (25, Channel::App),
    (12, Channel::Store),
    (8, Channel::CallCenter),
    (10, Channel::Marketplace),
];

fn pick<'a, T>(rng: &mut ChaCha8Rng, weighted: &'a [(u32, T)]) -> &'a T {
    let total: u32 = weighted.iter().map(|(w, _)| w).sum();
    let mut x = rng.random_range(0..total);
    for (w, v) in weighted {
        if x < *w {
            return v;
        }
        x -= w;
    }
    &weighted[weighted.len() - 1].1
}

fn one<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// The catalogue: SKU number -> (name, price in US cents, digital?).
fn product(seed: u64, sku: u32) -> (String, i64, bool) {
    let mut r = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_0000_0000 ^ u64::from(sku));
    let noun = one(&mut r, NOUNS);
    let name = format!("{} {}", one(&mut r, ADJECTIVES), noun);
    // Log-uniform between $2.99 and $199.99: many cheap items, few expensive ones.
    let price = (299.0f64 * (19999.0f64 / 299.0).powf(r.random::<f64>())).round() as i64;
    (name, price, *noun == "Gift Card")
}

/// Zipf-like popularity (P(k) ~ 1/k) over `n` items.
fn zipf(rng: &mut ChaCha8Rng, n: u32) -> u32 {
    let k = ((n as f64 + 1.0).powf(rng.random::<f64>()) - 1.0).floor() as u32;
    k.min(n - 1)
}

fn uuid(rng: &mut ChaCha8Rng) -> String {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid().to_string()
}

/// Number of distinct SKUs in the catalogue.
pub const CATALOGUE: u32 = 2_000;

/// Every event of `orders` orders, in time order (ties in generation order).
pub fn generate(orders: u64, seed: u64, now: Timestamp) -> Vec<Event> {
    let customers = (orders / 3).max(1);
    let mut all: Vec<Event> = Vec::with_capacity(orders as usize * 9);
    for i in 0..orders {
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(i));
        all.extend(lifecycle(&mut rng, seed, i, customers, now));
    }
    all.sort_by_key(|e| e.envelope.occurred_at);
    all
}

/// The final view of every order, sorted by order id.
pub fn truth(events: &[Event]) -> Vec<OrderView> {
    let mut views: std::collections::BTreeMap<&str, OrderView> = std::collections::BTreeMap::new();
    for e in events {
        views.entry(e.order_id()).or_insert_with(|| OrderView::new(e.order_id())).apply(e.component.clone());
    }
    views.into_values().collect()
}

struct Emitter<'a> {
    rng: &'a mut ChaCha8Rng,
    now: Timestamp,
    out: Vec<Event>,
}

impl Emitter<'_> {
    /// Records a snapshot at `at`; returns false (and records nothing) when
    /// `at` lies in the future: the lifecycle has not got there yet.
    fn emit(&mut self, at: i64, event_type: &str, component: Component) -> bool {
        if at > self.now.millis() {
            return false;
        }
        let source = match component {
            Component::Order(_) => "digital",
            Component::Fulfillment(_) => "fulfillment-order",
        };
        self.out.push(Event {
            envelope: Envelope {
                event_id: uuid(self.rng),
                event_type: event_type.into(),
                source: source.into(),
                occurred_at: Timestamp(at),
                schema_version: 1,
            },
            component,
        });
        true
    }
}

fn lifecycle(rng: &mut ChaCha8Rng, seed: u64, i: u64, customers: u64, now: Timestamp) -> Vec<Event> {
    let market = pick(rng, MARKETS);
    let channel = *pick(rng, CHANNELS);
    let created = now.millis() - rng.random_range(1..SPAN);
    let (country, city) = *one(rng, market.countries);

    let n_lines = *pick(rng, &[(40, 1usize), (25, 2), (15, 3), (10, 4), (6, 5), (4, 6)]);
    let mut lines = Vec::with_capacity(n_lines);
    let mut digital = Vec::with_capacity(n_lines);
    for l in 0..n_lines {
        let sku = zipf(rng, CATALOGUE);
        let (name, usd_cents, is_digital) = product(seed, sku);
        lines.push(OrderLine {
            line_id: format!("L{}", l + 1),
            sku: format!("SKU-{sku:05}"),
            name,
            quantity: *pick(rng, &[(80, 1u32), (15, 2), (5, 3)]),
            unit_price: (usd_cents * market.fx / 100).max(1),
            status: LineStatus::Open,
        });
        digital.push(is_digital);
    }
    let subtotal: i64 = lines.iter().map(|l| l.unit_price * i64::from(l.quantity)).sum();
    let discount = if rng.random_bool(0.15) { subtotal / 10 } else { 0 };
    let physical = digital.iter().any(|d| !d);
    let pickup = physical && channel == Channel::Store && rng.random_bool(0.6);
    let shipping = if physical && !pickup && subtotal < 50 * 100 * market.fx / 100 { market.shipping_fee } else { 0 };
    let tax = (subtotal - discount) * market.tax_bp / 10_000;
    let first = one(rng, FIRST);
    let last = one(rng, LAST);
    let customer = rng.random_range(0..customers);
    let mut order = Order {
        order_id: uuid(rng),
        order_number: format!("ON-{:08}", i + 1),
        customer_id: format!("cust-{customer:06}"),
        channel,
        status: OrderStatus::Created,
        currency: market.currency.into(),
        subtotal,
        tax,
        shipping,
        discount,
        total: subtotal + tax + shipping - discount,
        lines,
        shipping_address: physical.then(|| Address {
            name: format!("{first} {last}"),
            line1: format!("{} Market Street", rng.random_range(1..400)),
            line2: rng.random_bool(0.2).then(|| format!("Apt {}", rng.random_range(1..60))),
            city: city.into(),
            region: None,
            postal_code: format!("{:05}", rng.random_range(1000..99999)),
            country: country.into(),
        }),
        email: Some(format!("{}.{}{}@example.com", first.to_lowercase(), customer, rng.random_range(0..100))),
        phone: rng
            .random_bool(0.7)
            .then(|| format!("+{} {}", rng.random_range(1..99), rng.random_range(1_000_000..9_999_999))),
        promised_delivery_at: Some(Timestamp(created + rng.random_range(2..8) * DAY)),
        created_at: Timestamp(created),
        updated_at: Timestamp(created),
        version: 1,
        deleted: false,
        cdc: None,
    };
    let cancel = rng.random_bool(0.08);
    let late = rng.random_bool(0.15);
    let returned = !cancel && rng.random_bool(0.05);
    let carrier = *one(rng, market.carriers);

    let mut em = Emitter { rng, now, out: Vec::new() };
    let snap = |em: &mut Emitter, order: &mut Order, at: i64, status: OrderStatus, kind: &str| -> bool {
        if at > em.now.millis() {
            return false;
        }
        order.status = status;
        order.updated_at = Timestamp(at);
        let ok = em.emit(at, kind, Component::Order(order.clone()));
        order.version += 1;
        ok
    };
    if !snap(&mut em, &mut order, created, OrderStatus::Created, "order.created") {
        return em.out;
    }
    let mut t = created + em.rng.random_range(1..30) * MINUTE;
    if !snap(&mut em, &mut order, t, OrderStatus::Confirmed, "order.confirmed") {
        return em.out;
    }
    if cancel {
        t += em.rng.random_range(10..48 * 60) * MINUTE;
        for l in &mut order.lines {
            l.status = LineStatus::Cancelled;
        }
        snap(&mut em, &mut order, t, OrderStatus::Cancelled, "order.cancelled");
        return em.out;
    }
    t += em.rng.random_range(10..6 * 60) * MINUTE;
    for l in &mut order.lines {
        l.status = LineStatus::Allocated;
    }
    if !snap(&mut em, &mut order, t, OrderStatus::Allocated, "order.allocated") {
        return em.out;
    }

    // Split the lines into one to three fulfilments.
    let n_ful = em.rng.random_range(1..=3usize).min(order.lines.len());
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); n_ful];
    for (idx, _) in order.lines.iter().enumerate() {
        let g = if idx < n_ful { idx } else { em.rng.random_range(0..n_ful) };
        groups[g].push(idx);
    }
    let promised = order.promised_delivery_at.map_or(created, |p| p.millis());
    let mut fuls: Vec<(Fulfillment, Vec<usize>)> = Vec::with_capacity(n_ful);
    for (g, idxs) in groups.into_iter().enumerate() {
        let all_digital = idxs.iter().all(|&i| digital[i]);
        let kind = if all_digital {
            FulfillmentType::Digital
        } else if pickup {
            FulfillmentType::Pickup
        } else {
            FulfillmentType::Ship
        };
        let f = Fulfillment {
            fulfillment_id: format!("{}-F{}", order.order_id, g + 1),
            order_id: order.order_id.clone(),
            kind,
            status: FulfillmentStatus::Pending,
            carrier: (kind == FulfillmentType::Ship).then(|| carrier.to_string()),
            tracking_number: None,
            line_ids: idxs.iter().map(|&i| order.lines[i].line_id.clone()).collect(),
            shipped_at: None,
            delivered_at: None,
            version: 1,
        };
        fuls.push((f, idxs));
    }
    // Each fulfilment: created, shipped (or ready for pickup), delivered.
    let mut shipped = 0;
    let mut delivered = 0;
    let mut timeline: Vec<(i64, usize, u8)> = Vec::new();
    for (k, (f, _)) in fuls.iter().enumerate() {
        let start = t + em.rng.random_range(0..120) * MINUTE;
        let ship = start
            + if f.kind == FulfillmentType::Digital { MINUTE } else { em.rng.random_range(2 * 60..48 * 60) * MINUTE };
        let deliver = match f.kind {
            FulfillmentType::Digital => ship,
            _ if late => promised + em.rng.random_range(1..72) * HOUR,
            _ => (ship + em.rng.random_range(12..96) * HOUR)
                .min(promised - em.rng.random_range(0..12) * HOUR)
                .max(ship + HOUR),
        };
        timeline.push((start, k, 0));
        timeline.push((ship, k, 1));
        timeline.push((deliver.max(ship), k, 2));
    }
    timeline.sort();
    let n = fuls.len();
    let mut last_t = t;
    for (at, k, step) in timeline {
        if at > now.millis() {
            break;
        }
        last_t = at;
        let (f, idxs) = &mut fuls[k];
        match step {
            0 => {
                em.emit(at, "fulfillment.created", Component::Fulfillment(f.clone()));
            }
            1 => {
                f.version += 1;
                if f.kind == FulfillmentType::Pickup {
                    f.status = FulfillmentStatus::ReadyForPickup;
                } else {
                    f.status = FulfillmentStatus::Shipped;
                    f.shipped_at = Some(Timestamp(at));
                    if f.kind == FulfillmentType::Ship {
                        f.tracking_number = Some(tracking(em.rng, f.carrier.as_deref().unwrap_or("")));
                    }
                }
                let ev = if f.kind == FulfillmentType::Pickup {
                    "fulfillment.ready_for_pickup"
                } else {
                    "fulfillment.shipped"
                };
                em.emit(at, ev, Component::Fulfillment(f.clone()));
                for &i in idxs.iter() {
                    order.lines[i].status = LineStatus::Shipped;
                }
                shipped += 1;
                let (status, kind) = if shipped == n {
                    (OrderStatus::Shipped, "order.shipped")
                } else {
                    (OrderStatus::PartiallyShipped, "order.partially_shipped")
                };
                snap(&mut em, &mut order, at, status, kind);
            }
            _ => {
                f.version += 1;
                f.status = FulfillmentStatus::Delivered;
                f.delivered_at = Some(Timestamp(at));
                if f.shipped_at.is_none() {
                    f.shipped_at = Some(Timestamp(at));
                }
                em.emit(at, "fulfillment.delivered", Component::Fulfillment(f.clone()));
                for &i in idxs.iter() {
                    order.lines[i].status = LineStatus::Delivered;
                }
                delivered += 1;
                if delivered == n {
                    snap(&mut em, &mut order, at, OrderStatus::Delivered, "order.delivered");
                }
            }
        }
    }
    if returned && delivered == n {
        let at = last_t + em.rng.random_range(3..20) * DAY;
        if at <= now.millis() {
            for (f, _) in &mut fuls {
                f.version += 1;
                f.status = FulfillmentStatus::Returned;
                em.emit(at, "fulfillment.returned", Component::Fulfillment(f.clone()));
            }
            for l in &mut order.lines {
                l.status = LineStatus::Returned;
            }
            snap(&mut em, &mut order, at, OrderStatus::Returned, "order.returned");
        }
    }
    em.out
}

/// A tracking number shaped like the carrier's own.
fn tracking(rng: &mut ChaCha8Rng, carrier: &str) -> String {
    let digits = |rng: &mut ChaCha8Rng, n: usize| {
        (0..n).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect::<String>()
    };
    match carrier {
        "UPS" => format!("1Z{}", digits(rng, 16)),
        "FedEx" => digits(rng, 12),
        "USPS" => format!("9400{}", digits(rng, 18)),
        "DHL" => format!("JJD{}", digits(rng, 18)),
        "Royal Mail" | "La Poste" => format!("{}{}GB", (b'A' + rng.random_range(0..26u8)) as char, digits(rng, 9)),
        _ => digits(rng, 14),
    }
}

#[cfg(test)]
mod tests;
