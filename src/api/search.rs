//! Order searches: the Elasticsearch query for a set of filters (pure), and
//! the hash that ties a cursor to its query.

use serde_json::{json, Value};

use crate::model::{Channel, OrderStatus, Timestamp};

/// Filters of `GET /v1/orders` (and a customer's orders).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Filters {
    pub customer_id: Option<String>,
    pub status: Option<OrderStatus>,
    pub channel: Option<Channel>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub q: Option<String>,
    /// Whether `q` may match personal data (e-mail, address): only for
    /// callers with `orders:pii`, or a search would be an oracle for it.
    pub pii: bool,
}

impl Filters {
    /// A stable hash of the filters (FNV over their canonical form).
    pub fn hash(&self) -> u64 {
        let canon = format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}",
            self.customer_id,
            self.status.map(|s| s.as_str()),
            self.channel.map(|c| c.as_str()),
            self.from.map(|t| t.millis()),
            self.to.map(|t| t.millis()),
            self.q,
            self.pii
        );
        canon.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
    }
}

/// The search body: newest first, `order_id` as the tie-breaker, one hit more
/// than the page so the caller knows whether another page exists.
pub fn query(f: &Filters, limit: usize, after: Option<&(i64, String)>) -> Value {
    let mut filter = vec![json!({ "exists": { "field": "order.order_id" } })];
    if let Some(c) = &f.customer_id {
        filter.push(json!({ "term": { "order.customer_id": c } }));
    }
    if let Some(s) = f.status {
        filter.push(json!({ "term": { "order.status": s.as_str() } }));
    }
    if let Some(c) = f.channel {
        filter.push(json!({ "term": { "order.channel": c.as_str() } }));
    }
    if f.from.is_some() || f.to.is_some() {
        let mut range = serde_json::Map::new();
        if let Some(t) = f.from {
            range.insert("gte".into(), json!(t.millis()));
        }
        if let Some(t) = f.to {
            range.insert("lt".into(), json!(t.millis()));
        }
        range.insert("format".into(), json!("epoch_millis"));
        filter.push(json!({ "range": { "order.created_at": range } }));
    }
    let mut must = Vec::new();
    if let Some(q) = &f.q {
        if f.pii {
            must.push(json!({ "match": { "all_text": { "query": q, "operator": "and" } } }));
        } else {
            // all_text also holds the e-mail, the addressee and the city:
            // the same search over the fields that hold no personal data.
            must.push(json!({ "bool": { "minimum_should_match": 1, "should": [
                { "multi_match": { "query": q, "operator": "and", "fields": ["order.order_number", "order.customer_id"] } },
                { "nested": { "path": "order.lines", "query": {
                    "multi_match": { "query": q, "operator": "and", "fields": ["order.lines.sku", "order.lines.name"] } } } },
                { "nested": { "path": "fulfillments", "query": { "term": { "fulfillments.tracking_number": q } } } },
            ] } }));
        }
    }
    let mut body = json!({
        "size": limit + 1,
        "track_total_hits": false,
        "query": { "bool": { "filter": filter, "must": must } },
        "sort": [ { "order.created_at": "desc" }, { "order_id": "asc" } ]
    });
    if let Some((ms, id)) = after {
        body["search_after"] = json!([ms, id]);
    }
    body
}

/// The cursor position of a hit from its sort values.
pub fn position_of(sort: &[Value]) -> Option<(i64, String)> {
    Some((sort.first()?.as_i64()?, sort.get(1)?.as_str()?.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_terms_and_ranges() {
        let f = Filters {
            customer_id: Some("c-1".into()),
            status: Some(OrderStatus::Shipped),
            from: Some(Timestamp(10)),
            q: Some("mug".into()),
            pii: true,
            ..Default::default()
        };
        let q = query(&f, 20, Some(&(5, "o-9".into())));
        assert_eq!(q["size"], 21);
        let filters = q["query"]["bool"]["filter"].as_array().unwrap();
        assert!(filters.iter().any(|x| x["term"]["order.customer_id"] == "c-1"));
        assert!(filters.iter().any(|x| x["term"]["order.status"] == "shipped"));
        assert!(filters.iter().any(|x| x["range"]["order.created_at"]["gte"] == 10));
        assert_eq!(q["search_after"], json!([5, "o-9"]));
        assert_eq!(q["query"]["bool"]["must"][0]["match"]["all_text"]["query"], "mug");
    }

    #[test]
    fn text_search_without_pii_scope_never_touches_personal_fields() {
        let f = Filters { q: Some("jane@example.com".into()), pii: false, ..Default::default() };
        let q = query(&f, 20, None);
        let text = q["query"]["bool"]["must"].to_string();
        assert!(!text.contains("all_text") && !text.contains("email") && !text.contains("shipping_address"), "{text}");
        assert!(text.contains("order.order_number") && text.contains("order.lines.sku"), "{text}");
        assert_ne!(f.hash(), Filters { pii: true, ..f.clone() }.hash(), "cursors are tied to the audience");
    }

    #[test]
    fn the_hash_tells_queries_apart() {
        let a = Filters { status: Some(OrderStatus::Shipped), ..Default::default() };
        let b = Filters { status: Some(OrderStatus::Delivered), ..Default::default() };
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash(), a.clone().hash());
    }
}
