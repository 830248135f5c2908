//! Analytical queries on ClickHouse. Every query reads the latest state of
//! each order (`FINAL`, deleted orders excluded) and carries only server-side
//! bound parameters. Definitions are in docs/analytics.md.

use serde::Deserialize;

use super::clickhouse::ChClient;
use super::{timed, BackendError, Refused};

/// The common filter: `from <= created_at < to` (milliseconds), optional channel and currency.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub from_ms: i64,
    pub to_ms: i64,
    pub channel: String,
    pub currency: String,
}

const SCOPE_WHERE: &str = "o.created_at >= fromUnixTimestamp64Milli({from:Int64}) \
    AND o.created_at < fromUnixTimestamp64Milli({to:Int64}) \
    AND ({channel:String} = '' OR o.channel = {channel:String}) \
    AND ({currency:String} = '' OR o.currency = {currency:String})";

/// Per order: first shipment and last delivery over its fulfilments.
const FULFILMENT_TIMES: &str = "SELECT order_id, \
    toUnixTimestamp64Milli(min(shipped_at)) AS first_shipped_ms, \
    toUnixTimestamp64Milli(max(delivered_at)) AS last_delivered_ms \
    FROM fulfillments FINAL GROUP BY order_id";

fn bind(q: clickhouse::query::Query, s: &Scope) -> clickhouse::query::Query {
    q.param("from", s.from_ms)
        .param("to", s.to_ms)
        .param("channel", s.channel.as_str())
        .param("currency", s.currency.as_str())
}

/// Currency-independent KPIs.
#[derive(Debug, Clone, PartialEq, Deserialize, clickhouse::Row)]
pub struct Kpis {
    pub orders: u64,
    pub cancelled: u64,
    pub returned: u64,
    pub delivered_or_returned: u64,
    pub live_orders: u64,
    pub units: u64,
    pub ship_p50_ms: Option<i64>,
    pub ship_p90_ms: Option<i64>,
    pub deliver_p50_ms: Option<i64>,
    pub deliver_p90_ms: Option<i64>,
    pub on_time: u64,
    pub on_time_eligible: u64,
}

/// Money per currency.
#[derive(Debug, Clone, PartialEq, Deserialize, clickhouse::Row)]
pub struct Revenue {
    pub currency: String,
    pub revenue_orders: u64,
    pub revenue: i64,
}

/// One status and how many orders reached it.
#[derive(Debug, Clone, PartialEq, Deserialize, clickhouse::Row)]
pub struct StatusCount {
    pub status: String,
    pub orders: u64,
}

/// One SKU's sales.
#[derive(Debug, Clone, PartialEq, Deserialize, clickhouse::Row)]
pub struct SkuSales {
    pub sku: String,
    pub name: String,
    pub units: u64,
    pub revenue: i64,
}

/// One point of a time series.
#[derive(Debug, Clone, PartialEq, Deserialize, clickhouse::Row)]
pub struct Point {
    pub bucket_ms: i64,
    pub group: String,
    pub orders: u64,
    pub cancelled: u64,
    pub returned: u64,
    pub revenue: i64,
    pub units: u64,
}

impl ChClient {
    /// KPIs over the scope.
    pub async fn kpis(&self, s: &Scope) -> Result<(Kpis, Vec<Revenue>), BackendError> {
        let sql = format!(
            "SELECT count() AS orders, countIf(o.status = 'cancelled') AS cancelled, \
             countIf(o.status = 'returned') AS returned, \
             countIf(o.status IN ('delivered', 'returned')) AS delivered_or_returned, \
             countIf(o.status != 'cancelled') AS live_orders, \
             toUInt64(sumIf(o.units, o.status != 'cancelled')) AS units, \
             quantileExactIf(0.5)(f.first_shipped_ms - toUnixTimestamp64Milli(o.created_at), f.first_shipped_ms IS NOT NULL) AS ship_p50_ms, \
             quantileExactIf(0.9)(f.first_shipped_ms - toUnixTimestamp64Milli(o.created_at), f.first_shipped_ms IS NOT NULL) AS ship_p90_ms, \
             quantileExactIf(0.5)(f.last_delivered_ms - toUnixTimestamp64Milli(o.created_at), o.status IN ('delivered', 'returned') AND f.last_delivered_ms IS NOT NULL) AS deliver_p50_ms, \
             quantileExactIf(0.9)(f.last_delivered_ms - toUnixTimestamp64Milli(o.created_at), o.status IN ('delivered', 'returned') AND f.last_delivered_ms IS NOT NULL) AS deliver_p90_ms, \
             countIf(o.status IN ('delivered', 'returned') AND f.last_delivered_ms IS NOT NULL AND o.promised_delivery_at IS NOT NULL \
                     AND f.last_delivered_ms <= toUnixTimestamp64Milli(o.promised_delivery_at)) AS on_time, \
             countIf(o.status IN ('delivered', 'returned') AND f.last_delivered_ms IS NOT NULL AND o.promised_delivery_at IS NOT NULL) AS on_time_eligible \
             FROM orders AS o FINAL LEFT JOIN ({FULFILMENT_TIMES}) AS f ON f.order_id = o.order_id \
             WHERE {SCOPE_WHERE} SETTINGS join_use_nulls = 1"
        );
        let kpis = timed(&self.breakers().analytics, "kpis", self.timeout(), async {
            bind(self.client().query(&sql), s).fetch_one::<Kpis>().await
        })
        .await?;
        let sql = format!(
            "SELECT o.currency AS currency, countIf(o.status NOT IN ('cancelled', 'returned')) AS revenue_orders, \
             sumIf(o.total, o.status NOT IN ('cancelled', 'returned')) AS revenue \
             FROM orders AS o FINAL WHERE {SCOPE_WHERE} GROUP BY currency ORDER BY currency"
        );
        let revenue = timed(&self.breakers().analytics, "revenue", self.timeout(), async {
            bind(self.client().query(&sql), s).fetch_all::<Revenue>().await
        })
        .await?;
        Ok((kpis, revenue))
    }

    /// Orders per latest status.
    pub async fn status_counts(&self, s: &Scope) -> Result<Vec<StatusCount>, BackendError> {
        let sql = format!("SELECT toString(o.status) AS status, count() AS orders FROM orders AS o FINAL WHERE {SCOPE_WHERE} GROUP BY status");
        timed(&self.breakers().analytics, "status_counts", self.timeout(), async {
            bind(self.client().query(&sql), s).fetch_all::<StatusCount>().await
        })
        .await
    }

    /// Best-selling SKUs of live (not cancelled) orders, by units or revenue.
    pub async fn top_skus(&self, s: &Scope, by_revenue: bool, limit: u64) -> Result<Vec<SkuSales>, BackendError> {
        let order = if by_revenue { "revenue DESC, sku" } else { "units DESC, sku" };
        let sql = format!(
            "SELECT l.sku AS sku, any(l.name) AS name, toUInt64(sum(l.quantity)) AS units, \
             sum(toInt64(l.quantity) * l.unit_price) AS revenue \
             FROM order_lines AS l FINAL \
             INNER JOIN (SELECT o.order_id AS order_id, o.version AS version FROM orders AS o FINAL \
                         WHERE {SCOPE_WHERE} AND o.status != 'cancelled') AS live \
             ON l.order_id = live.order_id AND l.version = live.version \
             GROUP BY sku ORDER BY {order} LIMIT {{limit:UInt64}}"
        );
        timed(&self.breakers().analytics, "top_skus", self.timeout(), async {
            bind(self.client().query(&sql), s).param("limit", limit).fetch_all::<SkuSales>().await
        })
        .await
    }

    /// Counts and sums per time bucket (in `tz`) and group.
    pub async fn timeseries(
        &self,
        s: &Scope,
        interval: &str,
        group_by: &str,
        tz: &str,
    ) -> Result<Vec<Point>, BackendError> {
        // Both come from closed sets chosen by the caller, never from the request text.
        let bucket = match interval {
            "hour" => "toStartOfHour(o.created_at, {tz:String})",
            "day" => "toStartOfDay(o.created_at, {tz:String})",
            "week" => "toStartOfWeek(o.created_at, 1, {tz:String})",
            _ => "toStartOfMonth(o.created_at, {tz:String})",
        };
        let group = match group_by {
            "channel" => "toString(o.channel)",
            "status" => "toString(o.status)",
            "currency" => "toString(o.currency)",
            "country" => "toString(o.country)",
            _ => "''",
        };
        let sql = format!(
            "SELECT toUnixTimestamp64Milli(toDateTime64(toDateTime({bucket}, {{tz:String}}), 3)) AS bucket_ms, {group} AS group, count() AS orders, \
             countIf(o.status = 'cancelled') AS cancelled, countIf(o.status = 'returned') AS returned, \
             sumIf(o.total, o.status NOT IN ('cancelled', 'returned')) AS revenue, \
             toUInt64(sumIf(o.units, o.status != 'cancelled')) AS units \
             FROM orders AS o FINAL WHERE {SCOPE_WHERE} GROUP BY bucket_ms, group ORDER BY bucket_ms, group"
        );
        timed(&self.breakers().analytics, "timeseries", self.timeout(), async {
            bind(self.client().query(&sql), s).param("tz", tz).fetch_all::<Point>().await.map_err(|e| match &e {
                // An unknown `tz` is the caller's mistake (the API answers 400
                // on the same words), not a sign of a sick ClickHouse.
                clickhouse::error::Error::BadResponse(m) if m.contains("time zone") || m.contains("TIMEZONE") => {
                    anyhow::Error::new(Refused(e.to_string()))
                }
                _ => anyhow::Error::new(e),
            })
        })
        .await
    }
}
