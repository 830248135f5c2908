//! Ingest's calls to the two stores, in the planner's terms: reading current
//! documents and writing planned changes to Elasticsearch, asking ClickHouse
//! what it knows. Every call goes through the clients of `backends` (deadline,
//! call metrics, a typed [`BackendError`]); this module only translates
//! between their types and the plan's.

use std::collections::HashMap;

use super::plan::{ColdInfo, EsAction, Stored};
use crate::backends::clickhouse::ChClient;
use crate::backends::elasticsearch::{BulkItem, BulkOp, EsClient};
use crate::backends::BackendError;

/// Reads the current documents of `ids` through the read alias.
pub async fn es_lookup(es: &EsClient, read_alias: &str, ids: &[&str]) -> Result<HashMap<String, Stored>, BackendError> {
    Ok(es
        .get_versioned(read_alias, ids)
        .await?
        .into_iter()
        .map(|(v, view)| {
            (view.order_id.clone(), Stored { index: v.index, seq_no: v.seq_no, primary_term: v.primary_term, view })
        })
        .collect())
}

/// Outcome of a bulk write, per order.
#[derive(Debug, Default)]
pub struct BulkOutcome {
    /// Orders whose document changed under us: read again and re-plan.
    pub conflicts: Vec<String>,
    /// Orders Elasticsearch refused for good (mapping errors and the like), with the reason.
    pub rejected: Vec<(String, String)>,
    /// Written documents: order id -> (index, seq_no, primary_term).
    pub written: HashMap<String, (String, i64, i64)>,
    pub deleted: Vec<String>,
}

/// Sends the actions in one bulk request.
pub async fn es_bulk(
    es: &EsClient,
    write_alias: &str,
    actions: &[(String, EsAction)],
) -> Result<BulkOutcome, BackendError> {
    let ops: Vec<BulkOp<'_>> = actions
        .iter()
        .map(|(id, action)| match action {
            EsAction::Update { index, seq_no, primary_term, view } => {
                BulkOp::Replace { id, index, seq_no: *seq_no, primary_term: *primary_term, view }
            }
            EsAction::Create { view } => BulkOp::Create { id, index: write_alias, view },
            EsAction::Delete { index, seq_no, primary_term } => {
                BulkOp::Delete { id, index, seq_no: *seq_no, primary_term: *primary_term }
            }
        })
        .collect();
    let items = es.bulk(&ops).await?;
    let mut outcome = BulkOutcome::default();
    for ((id, action), item) in actions.iter().zip(items) {
        let delete = matches!(action, EsAction::Delete { .. });
        match item {
            // A delete of a document that is already gone is done.
            BulkItem::Done(_) | BulkItem::NotFound if delete => outcome.deleted.push(id.clone()),
            BulkItem::Done(Some(v)) => {
                outcome.written.insert(id.clone(), (v.index, v.seq_no, v.primary_term));
            }
            BulkItem::Done(None) => {}
            BulkItem::NotFound => outcome.rejected.push((id.clone(), "404 document not found".into())),
            BulkItem::Conflict => outcome.conflicts.push(id.clone()),
            BulkItem::Refused(why) => outcome.rejected.push((id.clone(), why)),
        }
    }
    Ok(outcome)
}

/// What ClickHouse knows of orders Elasticsearch does not hold.
pub async fn ch_cold_info(ch: &ChClient, ids: &[&str]) -> Result<HashMap<String, ColdInfo>, BackendError> {
    Ok(ch
        .known_orders(ids)
        .await?
        .into_iter()
        .map(|k| (k.order_id, ColdInfo { created_at: k.created_at, version: k.max_version, deleted: k.deleted }))
        .collect())
}
