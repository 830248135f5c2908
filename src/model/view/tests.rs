use proptest::prelude::*;

use super::*;
use crate::model::fixtures::{fulfillment, order, view, view_of, ORDER_ID};
use crate::model::*;

/// The fixture order at `version`; `variant` makes equal versions with
/// different content possible, the case a buggy producer creates.
fn order_variant(version: u64, variant: u8) -> Order {
    let mut o = order(version);
    o.status = OrderStatus::ALL[(version as usize + variant as usize) % OrderStatus::ALL.len()];
    o.discount += i64::from(variant);
    o.total -= i64::from(variant);
    o
}

/// Fulfilment `f-{id}` of the fixture order at `version`, with `variant` as
/// in [`order_variant`].
fn fulfillment_variant(id: u8, version: u64, variant: u8) -> Fulfillment {
    let mut f = fulfillment(version);
    f.fulfillment_id = format!("f-{id}");
    f.status = FulfillmentStatus::ALL[(version as usize) % FulfillmentStatus::ALL.len()];
    f.tracking_number = Some(format!("T{variant}"));
    f
}

/// A legacy order's header row at log position `lsn` (CDC).
fn legacy_header(lsn: u64, variant: u8) -> Order {
    let mut o = order_variant(lsn, variant);
    o.lines.clear();
    o.version = lsn;
    o.deleted = variant == 2;
    o.cdc = Some(SourceRows { header: lsn, lines: Default::default() });
    o
}

/// A change of legacy line `line` at log position `lsn`: the line, or its deletion.
fn legacy_line(line: u8, lsn: u64, deleted: bool) -> Order {
    let mut o = order(1);
    o.lines = if deleted {
        Vec::new()
    } else {
        let mut l = order(1).lines[0].clone();
        l.line_id = line.to_string();
        l.quantity = lsn as u32;
        vec![l]
    };
    o.cdc =
        Some(SourceRows { header: 0, lines: [(line.to_string(), RowPosition { lsn, deleted })].into_iter().collect() });
    o.version = lsn;
    o
}

/// Components of one order: service snapshots, fulfilments, and legacy rows.
fn component() -> impl Strategy<Value = Component> {
    prop_oneof![
        (1u64..6, 0u8..2).prop_map(|(v, x)| Component::Order(order_variant(v, x))),
        (0u8..3, 1u64..6, 0u8..2).prop_map(|(id, v, x)| Component::Fulfillment(fulfillment_variant(id, v, x))),
        (1u64..6, 0u8..3).prop_map(|(lsn, x)| Component::Order(legacy_header(lsn, x))),
        (1u8..4, 1u64..6, any::<bool>()).prop_map(|(l, lsn, d)| Component::Order(legacy_line(l, lsn, d))),
    ]
}

fn fold(events: &[Component]) -> OrderView {
    view_of(events.iter().cloned())
}

proptest! {
    #[test]
    fn apply_is_order_independent(events in prop::collection::vec(component(), 0..24), seed in any::<u64>()) {
        let mut shuffled = events.clone();
        // A deterministic shuffle from the seed (Fisher-Yates with an LCG).
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        prop_assert_eq!(fold(&events), fold(&shuffled));
    }

    #[test]
    fn apply_is_idempotent(events in prop::collection::vec(component(), 0..16)) {
        let once = fold(&events);
        let mut twice = once.clone();
        for e in &events {
            prop_assert!(!twice.apply(e.clone()), "re-applying changed the view");
        }
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn merge_is_associative_and_commutative(
        a in prop::collection::vec(component(), 0..8),
        b in prop::collection::vec(component(), 0..8),
        c in prop::collection::vec(component(), 0..8),
    ) {
        let (va, vb, vc) = (fold(&a), fold(&b), fold(&c));
        let mut ab = va.clone(); ab.merge(vb.clone());
        let mut ab_c = ab.clone(); ab_c.merge(vc.clone());
        let mut bc = vb.clone(); bc.merge(vc.clone());
        let mut a_bc = va.clone(); a_bc.merge(bc);
        prop_assert_eq!(&ab_c, &a_bc);
        let mut ba = vb.clone(); ba.merge(va.clone());
        prop_assert_eq!(ab, ba);
    }

    #[test]
    fn no_sequence_lowers_a_component_version(events in prop::collection::vec(component(), 0..32)) {
        let mut v = OrderView::new(ORDER_ID);
        for e in events {
            let before = v.clone();
            v.apply(e);
            prop_assert!(v.dominates(&before), "a component went backwards");
            let rank = |v: &OrderView| v.order.as_ref().map_or(0, ranked_version);
            prop_assert!(rank(&v) >= rank(&before));
        }
    }

    #[test]
    fn etag_changes_exactly_with_versions(a in prop::collection::vec(component(), 0..12), b in prop::collection::vec(component(), 0..12)) {
        let (va, vb) = (fold(&a), fold(&b));
        // A legacy order's version counts log positions, a service's its
        // snapshots: equal numbers of the two are not the same version.
        let legacy = |v: &OrderView| v.order.as_ref().map(|o| o.cdc.is_some());
        prop_assert_eq!(va.versions() == vb.versions() && legacy(&va) == legacy(&vb), va.etag() == vb.etag());
    }
}

#[test]
fn components_of_other_orders_are_ignored() {
    let mut v = OrderView::new("o-2");
    assert!(!v.apply(Component::Order(order(3))));
    assert_eq!(v, OrderView::new("o-2"));
}

#[test]
fn json_shape_round_trips() {
    let v = view(2, Some(1));
    let json = serde_json::to_string(&v).unwrap();
    assert!(json.contains("\"type\":\"ship\""), "{json}");
    let back: OrderView = serde_json::from_str(&json).unwrap();
    assert_eq!(back, v);
}
