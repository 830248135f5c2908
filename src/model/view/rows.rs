//! Orders captured from the legacy database (CDC), merged row by row.
//!
//! A legacy order is several rows: its `orders` row (the header) and one
//! `order_lines` row per line. Each changes on its own, and Debezium writes
//! the two tables to two topics that the gateway reads independently, so a
//! line's change can arrive before or after a header change committed around
//! it. Every change therefore carries only the rows it touched, each with its
//! position in the database's write-ahead log (LSN), and two snapshots of an
//! order merge per row: the header of the higher position, and for each line
//! the row of the higher position (a deleted line keeps its position, so a
//! late copy of an older change cannot bring it back).
//!
//! The order's version is the sum of its rows' positions: a position only
//! grows and a new row adds one, so every change raises it, and two snapshots
//! holding the same rows have the same version, whichever order they were
//! merged in. It never comes from a clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Order, OrderLine};

/// Where each row of a legacy order stands in the source database's log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceRows {
    /// Log position of the latest change of the `orders` row; 0 while only
    /// changes of its lines have been seen.
    pub header: u64,
    /// Per line id, the log position of its row's latest change.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lines: BTreeMap<String, RowPosition>,
}

/// The log position of a row's latest change, and whether it deleted the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RowPosition {
    pub lsn: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl SourceRows {
    /// The order's version: the sum of its rows' positions (see the module comment).
    pub fn version(&self) -> u64 {
        self.lines.values().fold(self.header, |sum, r| sum.saturating_add(r.lsn))
    }
}

/// An order's version as the merge ranks it: every CDC snapshot below every
/// order service's snapshot (which outranks it), each by its own version. It
/// only grows as a view changes, which the cache's monotonic reads and the
/// ETag rely on; the `version` field keeps the source's own number.
pub fn ranked_version(o: &Order) -> u64 {
    match o.cdc {
        Some(_) => o.version.min(SERVICE - 1),
        None => SERVICE.saturating_add(o.version),
    }
}

/// Where ranked service versions start.
const SERVICE: u64 = 1 << 62;

/// The version a [`ranked_version`] stands for, as the order's `version` says it.
pub fn unranked(v: u64) -> u64 {
    if v >= SERVICE {
        v - SERVICE
    } else {
        v
    }
}

/// Line ids are the legacy line numbers: sorted as numbers, not as text.
pub fn line_order(a: &OrderLine, b: &OrderLine) -> std::cmp::Ordering {
    (a.line_id.len(), &a.line_id).cmp(&(b.line_id.len(), &b.line_id))
}

/// Merges two CDC snapshots of one order row by row; both must carry `cdc`.
pub fn merge_rows(a: &Order, b: &Order) -> Order {
    let (ra, rb) = (a.cdc.clone().unwrap_or_default(), b.cdc.clone().unwrap_or_default());
    let b_header = match rb.header.cmp(&ra.header) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        // One position, one row state; should a source break that, the larger
        // by a total order wins, so the merge stays commutative.
        std::cmp::Ordering::Equal => {
            let (ha, hb) = (header_of(a), header_of(b));
            ha != hb && json(&hb) > json(&ha)
        }
    };
    let mut out = if b_header { b.clone() } else { a.clone() };
    let mut rows = BTreeMap::new();
    let mut lines = Vec::new();
    let ids: std::collections::BTreeSet<&String> = ra.lines.keys().chain(rb.lines.keys()).collect();
    for id in ids {
        let line_a = ra.lines.get(id).map(|p| (*p, find(a, id)));
        let line_b = rb.lines.get(id).map(|p| (*p, find(b, id)));
        let (pos, line) = match (line_a, line_b) {
            (Some(x), None) | (None, Some(x)) => x,
            (Some(x), Some(y)) => {
                if row_rank(&y) > row_rank(&x) {
                    y
                } else {
                    x
                }
            }
            (None, None) => unreachable!("the id came from one of the two"),
        };
        rows.insert(id.clone(), pos);
        if let (false, Some(l)) = (pos.deleted, line) {
            lines.push(l.clone());
        }
    }
    lines.sort_by(line_order);
    let rows = SourceRows { header: ra.header.max(rb.header), lines: rows };
    out.version = rows.version();
    out.lines = lines;
    out.cdc = Some(rows);
    out
}

/// A line row's rank in the merge: position, then a deletion over a live row,
/// then the larger row.
fn row_rank(r: &(RowPosition, Option<&OrderLine>)) -> (u64, bool, Option<Vec<u8>>) {
    (r.0.lsn, r.0.deleted, r.1.map(json))
}

fn find<'a>(o: &'a Order, id: &str) -> Option<&'a OrderLine> {
    o.lines.iter().find(|l| l.line_id == id)
}

/// The header's own fields: the order without lines, rows or version.
fn header_of(o: &Order) -> Order {
    let mut h = o.clone();
    h.lines.clear();
    h.cdc = None;
    h.version = 0;
    h
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}
