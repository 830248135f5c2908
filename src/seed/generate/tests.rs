use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

const NOW: Timestamp = Timestamp(1_790_000_000_000);

#[test]
fn same_seed_same_events_other_seed_other_events() {
    let a = generate(200, 7, NOW);
    assert_eq!(a, generate(200, 7, NOW));
    assert_ne!(a, generate(200, 8, NOW));
    assert_eq!(truth(&a).len(), 200);
}

#[test]
fn the_mix_looks_like_a_shop() {
    let events = generate(3000, 1, NOW);
    let views = truth(&events);
    let count = |s: OrderStatus| views.iter().filter(|v| v.order.as_ref().unwrap().status == s).count();
    let cancelled = count(OrderStatus::Cancelled);
    let returned = count(OrderStatus::Returned);
    assert!((150..=350).contains(&cancelled), "about 8% cancelled: {cancelled}");
    assert!((40..=250).contains(&returned), "about 5% returned: {returned}");
    assert!(count(OrderStatus::Delivered) > 1500);
    let hot_since = NOW.millis() - 730 * DAY;
    let cold = views.iter().filter(|v| v.order.as_ref().unwrap().created_at.millis() < hot_since).count();
    assert!((800..=1200).contains(&cold), "a third outside the hot window: {cold}");
    let currencies: std::collections::BTreeSet<_> =
        views.iter().map(|v| v.order.as_ref().unwrap().currency.clone()).collect();
    assert_eq!(currencies.len(), 4);
    let multi = views.iter().filter(|v| v.fulfillments.len() > 1).count();
    assert!(multi > 300, "split shipments exist: {multi}");
    // Skewed popularity: the top SKU sells far more than the median one.
    let mut sold: HashMap<&str, u32> = HashMap::new();
    for v in &views {
        for l in &v.order.as_ref().unwrap().lines {
            *sold.entry(&l.sku).or_default() += l.quantity;
        }
    }
    let mut counts: Vec<u32> = sold.values().copied().collect();
    counts.sort_unstable();
    assert!(counts[counts.len() - 1] > 10 * counts[counts.len() / 2], "zipf-like SKU popularity");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn every_order_is_consistent(seed in any::<u64>()) {
        let events = generate(40, seed, NOW);
        let mut last: HashMap<(String, Option<String>), u64> = HashMap::new();
        for e in &events {
            prop_assert!(e.envelope.occurred_at <= NOW);
            let key = match &e.component {
                Component::Order(o) => (o.order_id.clone(), None),
                Component::Fulfillment(f) => (f.order_id.clone(), Some(f.fulfillment_id.clone())),
            };
            let v = e.component.version();
            prop_assert!(last.get(&key).is_none_or(|&prev| v == prev + 1), "versions rise by one in event order");
            last.insert(key, v);
        }
        for view in truth(&events) {
            let o = view.order.as_ref().expect("every order has a header");
            prop_assert!(valid_currency(&o.currency));
            let subtotal: i64 = o.lines.iter().map(|l| l.unit_price * i64::from(l.quantity)).sum();
            prop_assert_eq!(o.subtotal, subtotal);
            prop_assert_eq!(o.total, o.subtotal + o.tax + o.shipping - o.discount);
            prop_assert!(o.created_at <= o.updated_at && o.updated_at <= NOW);
            prop_assert!(!o.lines.is_empty() && o.lines.len() <= 6);
            let line_ids: Vec<&str> = o.lines.iter().map(|l| l.line_id.as_str()).collect();
            for f in &view.fulfillments {
                prop_assert!(f.line_ids.iter().all(|l| line_ids.contains(&l.as_str())));
                if f.kind == FulfillmentType::Ship && f.status == FulfillmentStatus::Shipped {
                    prop_assert!(f.carrier.is_some() && f.tracking_number.is_some());
                }
            }
            match o.status {
                OrderStatus::Cancelled => prop_assert!(view.fulfillments.is_empty()),
                OrderStatus::Delivered => prop_assert!(view.fulfillments.iter().all(|f| f.status == FulfillmentStatus::Delivered)),
                OrderStatus::Shipped => prop_assert!(view.fulfillments.iter().all(|f| f.status != FulfillmentStatus::Pending)),
                _ => {}
            }
        }
    }
}
