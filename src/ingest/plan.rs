//! Pure planning of one batch: which components go where, which messages are
//! stale, and what each Elasticsearch document becomes. No I/O here.

use std::collections::BTreeMap;

use crate::model::{Component, OrderView, Timestamp};

/// Where a message came from, to commit past it or dead-letter it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgRef {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A decoded component and the message that carried it.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub component: Component,
    pub source: MsgRef,
}

/// A document's current state in Elasticsearch.
#[derive(Debug, Clone)]
pub struct Stored {
    pub index: String,
    pub seq_no: i64,
    pub primary_term: i64,
    pub view: OrderView,
}

/// What ClickHouse knows of an order that Elasticsearch does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColdInfo {
    pub created_at: Timestamp,
    /// The highest version ClickHouse holds, ranked as the merge ranks it.
    pub version: u64,
    pub deleted: bool,
}

/// One write to Elasticsearch.
#[derive(Debug, Clone, PartialEq)]
pub enum EsAction {
    /// Replace the document in its own index, if nobody changed it since we read it.
    Update { index: String, seq_no: i64, primary_term: i64, view: OrderView },
    /// A new document through the write alias; fails if it appeared meanwhile.
    Create { view: OrderView },
    /// The order was deleted at the source.
    Delete { index: String, seq_no: i64, primary_term: i64 },
}

impl EsAction {
    /// The order the action is for.
    pub fn order_id(&self) -> Option<&str> {
        match self {
            EsAction::Update { view, .. } | EsAction::Create { view } => Some(&view.order_id),
            EsAction::Delete { .. } => None,
        }
    }
}

/// The plan for one order.
#[derive(Debug, Default)]
pub struct OrderPlan {
    pub es: Option<EsAction>,
    /// Components to insert into ClickHouse (the batch's newest per component).
    pub clickhouse: Vec<Component>,
    /// Messages whose component is older than what is stored.
    pub stale: Vec<MsgRef>,
    /// The order lies outside the hot window and is kept in ClickHouse only.
    pub cold: bool,
}

/// Groups a batch's components by order id, keeping every message reference.
pub fn group(decoded: Vec<Decoded>) -> BTreeMap<String, Vec<Decoded>> {
    let mut by_order: BTreeMap<String, Vec<Decoded>> = BTreeMap::new();
    for d in decoded {
        by_order.entry(d.component.order_id().to_owned()).or_default().push(d);
    }
    by_order
}

fn key(c: &Component) -> Option<&str> {
    match c {
        Component::Order(_) => None,
        Component::Fulfillment(f) => Some(&f.fulfillment_id),
    }
}

/// A component's version as the merge ranks it (an order service's order
/// above every legacy one; see `model::ranked_version`), as ClickHouse keeps it.
fn rank(c: &Component) -> u64 {
    match c {
        Component::Order(o) => crate::model::ranked_version(o),
        Component::Fulfillment(f) => f.version,
    }
}

fn stored_version(view: &OrderView, c: &Component) -> Option<u64> {
    match c {
        Component::Order(_) => view.order.as_ref().map(crate::model::ranked_version),
        Component::Fulfillment(f) => {
            view.fulfillments.iter().find(|g| g.fulfillment_id == f.fulfillment_id).map(|g| g.version)
        }
    }
}

/// Plans one order: `stored` is its Elasticsearch document if any, `cold` what
/// ClickHouse knows when Elasticsearch has none, `hot_since` the start of the
/// hot window.
pub fn plan_order(
    order_id: &str,
    events: &[Decoded],
    stored: Option<&Stored>,
    cold: Option<ColdInfo>,
    hot_since: Timestamp,
) -> OrderPlan {
    let mut plan = OrderPlan::default();

    // Newest snapshot per component within the batch: the batch's own merge
    // (for a legacy order, the rows of all its changes in the batch).
    let mut batch = OrderView::new(order_id);
    for d in events {
        batch.apply(d.component.clone());
    }
    let newest: Vec<Component> = batch
        .order
        .into_iter()
        .map(Component::Order)
        .chain(batch.fulfillments.into_iter().map(Component::Fulfillment))
        .collect();

    // A component whose newest message in the batch is below what is stored
    // is stale, with every message of it in the batch; equal versions are
    // replays. An older message that the batch itself supersedes is folded,
    // as it is when nothing is stored: a batch retried after its
    // Elasticsearch write (a timeout, ClickHouse failing next) finds its own
    // newest versions stored and is a replay, not a dead letter for every
    // order that changed twice in it.
    // A legacy order's change carries one row, whose position is no version
    // of the whole order: the merge alone tells whether it is news.
    let floor = |c: &Component| -> Option<u64> {
        match (stored, c) {
            (Some(s), Component::Order(o))
                if o.cdc.is_some() || s.view.order.as_ref().is_some_and(|x| x.cdc.is_some()) =>
            {
                None
            }
            (Some(s), _) => stored_version(&s.view, c),
            (None, Component::Order(_)) => cold.map(|ci| ci.version),
            (None, Component::Fulfillment(_)) => None,
        }
    };
    for d in events {
        if let Some(v) = floor(&d.component) {
            let batch_newest = newest.iter().find(|c| key(c) == key(&d.component)).map_or(0, rank);
            if batch_newest < v {
                plan.stale.push(d.source.clone());
            }
        }
    }
    // ClickHouse gets every newest component that is not stale, replays
    // included: Elasticsearch is written first, so holding a version there does
    // not prove ClickHouse has it (a crash or a ClickHouse failure between the
    // two writes leaves ClickHouse behind, and the batch is then replayed).
    // The version merge folds the duplicate rows a replay inserts.
    let mut current: Vec<Component> = newest.into_iter().filter(|c| floor(c).is_none_or(|v| rank(c) >= v)).collect();
    current.sort_by(|a, b| key(a).cmp(&key(b)));
    // Elasticsearch only needs what is newer than its document.
    let fresh: Vec<Component> = current.iter().filter(|c| floor(c).is_none_or(|v| rank(c) > v)).cloned().collect();
    plan.clickhouse = current;

    match stored {
        Some(s) => {
            let mut view = s.view.clone();
            let mut changed = false;
            for c in fresh {
                changed |= view.apply(c);
            }
            // ClickHouse keeps whole orders: a legacy order's rows merged with
            // the document's (a replay included, see above).
            if let Some(o) = view.order.as_ref().filter(|o| o.cdc.is_some()) {
                for c in &mut plan.clickhouse {
                    if let Component::Order(b) = c {
                        if b.cdc.is_some() {
                            *b = o.clone();
                        }
                    }
                }
            }
            if !changed {
                return plan;
            }
            // A fulfilment can reach the index before its order's header (the two
            // topics are read independently); once the header shows the order
            // lies outside the hot window, the document leaves the hot store.
            // A legacy order stays while it changes: its rows merge in the
            // document, and the index's retention ages it out later.
            let cold_now = view.order.as_ref().is_some_and(|o| o.created_at < hot_since && o.cdc.is_none());
            plan.cold = cold_now;
            plan.es = Some(if view.order.as_ref().is_some_and(|o| o.deleted) || cold_now {
                EsAction::Delete { index: s.index.clone(), seq_no: s.seq_no, primary_term: s.primary_term }
            } else {
                EsAction::Update { index: s.index.clone(), seq_no: s.seq_no, primary_term: s.primary_term, view }
            });
        }
        None => {
            if fresh.is_empty() {
                return plan;
            }
            let mut view = OrderView::new(order_id);
            for c in fresh {
                view.apply(c);
            }
            // Hot or cold: the order's creation time, from the batch or ClickHouse.
            let created = view.order.as_ref().map(|o| o.created_at).or(cold.map(|c| c.created_at));
            let deleted = view.order.as_ref().is_some_and(|o| o.deleted) || cold.is_some_and(|c| c.deleted);
            let legacy = view.order.as_ref().is_some_and(|o| o.cdc.is_some());
            if deleted || (created.is_some_and(|t| t < hot_since) && !legacy) {
                plan.cold = created.is_some_and(|t| t < hot_since);
                return plan;
            }
            plan.es = Some(EsAction::Create { view });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    use crate::model::fixtures::{self, ORDER_ID};

    /// The fixture order at `version`, created at `created` (ms), deleted or not.
    fn order(version: u64, created: i64, deleted: bool) -> Component {
        let mut o = fixtures::order(version);
        (o.created_at, o.updated_at, o.deleted) = (Timestamp(created), Timestamp(created), deleted);
        Component::Order(o)
    }

    fn ful(version: u64) -> Component {
        Component::Fulfillment(fixtures::fulfillment(version))
    }

    fn d(c: Component, offset: i64) -> Decoded {
        Decoded { component: c, source: MsgRef { topic: "t".into(), partition: 0, offset } }
    }

    fn stored(c: Vec<Component>) -> Stored {
        let mut view = OrderView::new(ORDER_ID);
        for x in c {
            view.apply(x);
        }
        Stored { index: "orders-000001".into(), seq_no: 4, primary_term: 1, view }
    }

    #[test]
    fn new_hot_order_is_created_with_the_newest_components() {
        let p = plan_order(
            ORDER_ID,
            &[d(order(2, 100, false), 1), d(order(1, 100, false), 0), d(ful(1), 2)],
            None,
            None,
            Timestamp(0),
        );
        match p.es {
            Some(EsAction::Create { view }) => {
                assert_eq!(view.order.unwrap().version, 2);
                assert_eq!(view.fulfillments.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.clickhouse.len(), 2);
        assert!(p.stale.is_empty());
    }

    #[test]
    fn cold_orders_skip_elasticsearch() {
        let p = plan_order(ORDER_ID, &[d(order(1, 10, false), 0)], None, None, Timestamp(50));
        assert!(p.es.is_none() && p.cold);
        assert_eq!(p.clickhouse.len(), 1);
        // A fulfilment of an order ClickHouse knows to be cold.
        let info = ColdInfo { created_at: Timestamp(10), version: 3, deleted: false };
        let p = plan_order(ORDER_ID, &[d(ful(1), 0)], None, Some(info), Timestamp(50));
        assert!(p.es.is_none() && p.cold);
    }

    #[test]
    fn lower_versions_than_stored_are_stale_and_equal_ones_replays() {
        let s = stored(vec![order(3, 100, false), ful(2)]);
        let p = plan_order(
            ORDER_ID,
            &[d(order(2, 100, false), 7), d(order(3, 100, false), 8), d(ful(1), 9)],
            Some(&s),
            None,
            Timestamp(0),
        );
        assert!(p.es.is_none(), "nothing new");
        // Header 2 is folded into the batch's own header 3 (a replay); the
        // fulfilment's only message is below the stored version 2.
        let stale: Vec<i64> = p.stale.iter().map(|m| m.offset).collect();
        assert_eq!(stale, vec![9]);
        // The replayed header still goes to ClickHouse: Elasticsearch holding
        // version 3 does not prove ClickHouse does. The stale ones do not.
        assert_eq!(p.clickhouse, vec![order(3, 100, false)]);
    }

    #[test]
    fn a_component_whose_batch_stays_below_the_stored_version_is_stale_with_every_message() {
        let s = stored(vec![order(5, 100, false)]);
        let p = plan_order(
            ORDER_ID,
            &[d(order(2, 100, false), 7), d(order(4, 100, false), 8)],
            Some(&s),
            None,
            Timestamp(0),
        );
        let stale: Vec<i64> = p.stale.iter().map(|m| m.offset).collect();
        assert_eq!(stale, vec![7, 8]);
        assert!(p.es.is_none() && p.clickhouse.is_empty());
    }

    /// The batch written to Elasticsearch, then retried (ClickHouse failed, or
    /// the bulk call timed out after Elasticsearch applied it): the second
    /// attempt finds the batch's own newest versions stored. Nothing in it is
    /// stale, ClickHouse still gets the newest, Elasticsearch nothing.
    #[test]
    fn a_batch_retried_after_its_elasticsearch_write_dead_letters_nothing() {
        let batch = [d(order(1, 100, false), 0), d(ful(1), 1), d(order(2, 100, false), 2), d(ful(2), 3)];
        let first = plan_order(ORDER_ID, &batch, None, None, Timestamp(0));
        let Some(EsAction::Create { view }) = first.es else { panic!("{:?}", first.es) };
        let written = Stored { index: "orders-000001".into(), seq_no: 0, primary_term: 1, view };
        let again = plan_order(ORDER_ID, &batch, Some(&written), None, Timestamp(0));
        assert!(again.stale.is_empty(), "{:?}", again.stale);
        assert!(again.es.is_none());
        assert_eq!(again.clickhouse, first.clickhouse);
    }

    #[test]
    fn updates_carry_the_read_sequence_number_and_deletes_delete() {
        let s = stored(vec![order(1, 100, false)]);
        match plan_order(ORDER_ID, &[d(ful(1), 0)], Some(&s), None, Timestamp(0)).es {
            Some(EsAction::Update { seq_no: 4, primary_term: 1, index, view }) => {
                assert_eq!(index, "orders-000001");
                assert_eq!(view.fulfillments.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        match plan_order(ORDER_ID, &[d(order(2, 100, true), 0)], Some(&s), None, Timestamp(0)).es {
            Some(EsAction::Delete { seq_no: 4, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_partial_document_leaves_the_hot_store_when_its_header_shows_it_is_cold() {
        // The fulfilment was indexed first (no header yet); the header says old.
        let s = stored(vec![ful(1)]);
        match plan_order(ORDER_ID, &[d(order(1, 10, false), 0)], Some(&s), None, Timestamp(50)).es {
            Some(EsAction::Delete { seq_no: 4, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_deleted_order_is_not_resurrected_by_late_events() {
        let version = crate::model::ranked_version(&fixtures::order(5));
        let info = ColdInfo { created_at: Timestamp(100), version, deleted: true };
        let p = plan_order(ORDER_ID, &[d(order(4, 100, false), 0), d(ful(1), 1)], None, Some(info), Timestamp(0));
        assert!(p.es.is_none());
        assert_eq!(p.stale.len(), 1, "the header below the delete is stale");
    }

    /// A legacy (CDC) order: its header row at `header`, lines `(id, position)`.
    fn legacy(header: u64, lines: &[(u8, u64)]) -> Order {
        let mut o = fixtures::order(1);
        o.lines = lines
            .iter()
            .map(|(l, _)| {
                let mut line = fixtures::order(1).lines[0].clone();
                line.line_id = l.to_string();
                line
            })
            .collect();
        let rows = SourceRows {
            header,
            lines: lines.iter().map(|(l, lsn)| (l.to_string(), RowPosition { lsn: *lsn, deleted: false })).collect(),
        };
        o.version = rows.version();
        o.cdc = Some(rows);
        o
    }

    #[test]
    fn a_legacy_line_below_the_documents_version_is_still_news() {
        // Header at 100 and line 1 at 101 stored (version 201); line 2 at 102
        // arrives late from the other topic: news, though 102 < 201.
        let s = stored(vec![Component::Order(legacy(100, &[(1, 101)]))]);
        let p = plan_order(ORDER_ID, &[d(Component::Order(legacy(0, &[(2, 102)])), 0)], Some(&s), None, Timestamp(0));
        assert!(p.stale.is_empty());
        let Some(EsAction::Update { view, .. }) = p.es else { panic!("{:?}", p.es) };
        let o = view.order.unwrap();
        assert_eq!((o.lines.len(), o.version), (2, 303));
        // ClickHouse gets the whole merged order, not the one line.
        assert_eq!(p.clickhouse, vec![Component::Order(o)]);
    }

    #[test]
    fn an_old_legacy_order_stays_in_elasticsearch_while_it_changes() {
        let mut o = legacy(100, &[]);
        o.created_at = Timestamp(10);
        let p = plan_order(ORDER_ID, &[d(Component::Order(o), 0)], None, None, Timestamp(50));
        assert!(matches!(p.es, Some(EsAction::Create { .. })) && !p.cold);
    }

    #[test]
    fn an_order_service_snapshot_replaces_a_stored_legacy_order() {
        let s = stored(vec![Component::Order(legacy(100, &[(1, 101)]))]);
        let service = fixtures::order(1);
        let p = plan_order(ORDER_ID, &[d(Component::Order(service.clone()), 0)], Some(&s), None, Timestamp(0));
        assert!(p.stale.is_empty());
        let Some(EsAction::Update { view, .. }) = p.es else { panic!("{:?}", p.es) };
        assert_eq!(view.order, Some(service));
    }
}
