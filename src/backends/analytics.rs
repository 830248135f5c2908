//! Analytical queries on ClickHouse. Every query reads the latest state of
//! each order (`FINAL`, deleted orders excluded) and carries only server-side
//! bound parameters. Definitions are in docs/analytics.md.
//!
//! Also the pure rules of a query's shape that the API applies before any
//! query runs: how a range is aligned (so requests a few milliseconds apart
//! share one cached answer), how many buckets a series can have, and which
//! time zones exist.

use serde::Deserialize;
use time::{Date, Month, OffsetDateTime};

use super::clickhouse::ChClient;
use super::{timed, BackendError};
use crate::telemetry::context::TraceParent;
use crate::telemetry::trace;

/// The common filter: `from <= created_at < to` (milliseconds), optional channel and currency.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub from_ms: i64,
    pub to_ms: i64,
    pub channel: String,
    pub currency: String,
}

/// The filters of the scope other than its range.
const FILTERS: &str = "({channel:String} = '' OR o.channel = {channel:String}) \
    AND ({currency:String} = '' OR o.currency = {currency:String})";

/// The whole scope: `from <= created_at < to` and the filters.
fn scope_where() -> String {
    format!(
        "o.created_at >= fromUnixTimestamp64Milli({{from:Int64}}) \
         AND o.created_at < fromUnixTimestamp64Milli({{to:Int64}}) AND {FILTERS}"
    )
}

// ---- the shape of a query: range alignment, buckets, time zones -------------

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// 1970-01-01 was a Thursday: the first Monday (weeks start on Monday, as
/// ClickHouse's `toStartOfWeek(t, 1)`) was four days later.
const FIRST_MONDAY_MS: i64 = 4 * DAY_MS;

/// The buckets of a time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interval {
    Hour,
    Day,
    Week,
    Month,
}

impl Interval {
    /// Every interval, as the API names them.
    pub const ALL: [Interval; 4] = [Interval::Hour, Interval::Day, Interval::Week, Interval::Month];

    /// The name in the API and in cache keys.
    pub fn name(self) -> &'static str {
        match self {
            Interval::Hour => "hour",
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
        }
    }

    /// The interval named `name`.
    pub fn parse(name: &str) -> Option<Interval> {
        Interval::ALL.into_iter().find(|i| i.name() == name)
    }

    /// The shortest a bucket can be in any time zone: a day around a change
    /// to or from summer time has 23 hours, a month at least 28 days.
    fn shortest_ms(self) -> i64 {
        match self {
            Interval::Hour => HOUR_MS,
            Interval::Day => DAY_MS - HOUR_MS,
            Interval::Week => 7 * DAY_MS - HOUR_MS,
            Interval::Month => 28 * DAY_MS - HOUR_MS,
        }
    }

    /// SQL: the start of the bucket holding `t` (a DateTime64 expression), in `{tz:String}`.
    fn start_sql(self, t: &str) -> String {
        match self {
            Interval::Hour => format!("toStartOfHour({t}, {{tz:String}})"),
            Interval::Day => format!("toStartOfDay({t}, {{tz:String}})"),
            Interval::Week => format!("toDateTime(toStartOfWeek({t}, 1, {{tz:String}}), {{tz:String}})"),
            Interval::Month => format!("toDateTime(toStartOfMonth({t}, {{tz:String}}), {{tz:String}})"),
        }
    }

    /// SQL: the start of the bucket after the one holding `t`. Days and
    /// months are added on the calendar of `{tz:String}`, so a day of 23 or
    /// 25 hours ends where it does.
    fn end_sql(self, t: &str) -> String {
        match self {
            Interval::Hour => format!("toStartOfHour({t}, {{tz:String}}) + INTERVAL 1 HOUR"),
            Interval::Day => format!("toStartOfDay({t}, {{tz:String}}) + INTERVAL 1 DAY"),
            Interval::Week => format!("toDateTime(toStartOfWeek({t}, 1, {{tz:String}}) + 7, {{tz:String}})"),
            Interval::Month => {
                format!("toDateTime(addMonths(toStartOfMonth({t}, {{tz:String}}), 1), {{tz:String}})")
            }
        }
    }
}

/// A range widened to whole minutes: `from` rounded down, `to` rounded up.
/// What KPIs, the funnel and top SKUs count, and what their answers are
/// cached under: requests that differ by milliseconds (a dashboard's "now")
/// share one answer, and no order of the requested range is left out.
pub fn align_to_minutes(from_ms: i64, to_ms: i64) -> (i64, i64) {
    (floor(from_ms, MINUTE_MS, 0), ceil(to_ms, MINUTE_MS, 0))
}

/// A range widened to whole buckets in UTC: `from` rounded down to the start
/// of its bucket, `to` up to the end of its bucket (weeks start on Monday).
/// A series in UTC is cached under this range, so requests whose ranges
/// touch the same buckets share one answer.
pub fn align_to_buckets_utc(from_ms: i64, to_ms: i64, interval: Interval) -> (i64, i64) {
    match interval {
        Interval::Hour => (floor(from_ms, HOUR_MS, 0), ceil(to_ms, HOUR_MS, 0)),
        Interval::Day => (floor(from_ms, DAY_MS, 0), ceil(to_ms, DAY_MS, 0)),
        Interval::Week => (floor(from_ms, 7 * DAY_MS, FIRST_MONDAY_MS), ceil(to_ms, 7 * DAY_MS, FIRST_MONDAY_MS)),
        Interval::Month => (month_start(from_ms, false), month_start(to_ms, true)),
    }
}

/// How many buckets a series over `from..to` has at most. `aligned`: the
/// range is whole buckets in UTC already ([`align_to_buckets_utc`]), so the
/// count is exact. Otherwise the buckets are in a time zone whose offsets
/// this side does not know, and ClickHouse widens the range to whole buckets
/// there: every bucket is counted at its shortest, plus one for the partial
/// bucket at each end.
pub fn buckets(from_ms: i64, to_ms: i64, interval: Interval, aligned: bool) -> u64 {
    let span = (to_ms - from_ms).max(0) as u64;
    match (aligned, interval) {
        (true, Interval::Month) => months_between(from_ms, to_ms).max(0) as u64,
        (true, Interval::Hour) => span / HOUR_MS as u64,
        (true, Interval::Day) => span / DAY_MS as u64,
        (true, Interval::Week) => span / (7 * DAY_MS) as u64,
        (false, _) => span.div_ceil(interval.shortest_ms() as u64) + 1,
    }
}

/// The IANA time zones ClickHouse knows, one per line (`#` lines are comments).
const TIME_ZONES: &str = include_str!("../../schemas/clickhouse/time_zones.txt");

/// Whether `tz` names a time zone ClickHouse knows, spelt as it spells it
/// (`Europe/Berlin`, not `europe/berlin`). Answered from the list shipped
/// with the gateway, so an unknown zone is refused without asking ClickHouse.
pub fn known_time_zone(tz: &str) -> bool {
    !tz.is_empty() && !tz.starts_with('#') && TIME_ZONES.lines().any(|line| line == tz)
}

/// `t` rounded down to a multiple of `step` counted from `origin`.
fn floor(t: i64, step: i64, origin: i64) -> i64 {
    t - (t - origin).rem_euclid(step)
}

/// `t` rounded up to a multiple of `step` counted from `origin`.
fn ceil(t: i64, step: i64, origin: i64) -> i64 {
    let down = floor(t, step, origin);
    if down == t {
        t
    } else {
        down + step
    }
}

fn utc(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

fn ms_of(date: Date) -> i64 {
    (date.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// The first day of `t`'s month at midnight UTC; with `up`, the first of the
/// next month unless `t` is that instant already. Out of the calendar's
/// range, `t` itself.
fn month_start(t: i64, up: bool) -> i64 {
    let Some(at) = utc(t) else { return t };
    let Ok(first) = Date::from_calendar_date(at.year(), at.month(), 1) else { return t };
    if !up || ms_of(first) == t {
        return ms_of(first);
    }
    let (year, month) = match at.month() {
        Month::December => (at.year() + 1, Month::January),
        m => (at.year(), m.next()),
    };
    Date::from_calendar_date(year, month, 1).map_or(t, ms_of)
}

/// Whole months from `from` to `to`, both the start of a month in UTC.
fn months_between(from: i64, to: i64) -> i64 {
    match (utc(from), utc(to)) {
        (Some(a), Some(b)) => {
            i64::from(b.year() - a.year()) * 12 + i64::from(u8::from(b.month())) - i64::from(u8::from(a.month()))
        }
        _ => 0,
    }
}

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
    pub async fn kpis(&self, s: &Scope, trace: Option<&TraceParent>) -> Result<(Kpis, Vec<Revenue>), BackendError> {
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
             WHERE {scope} SETTINGS join_use_nulls = 1",
            scope = scope_where()
        );
        let kpis = trace::call(trace, "clickhouse", "kpis", |p| async move {
            let client = self.traced(p);
            timed(&self.breakers().analytics, "kpis", self.timeout(), async {
                bind(client.query(&sql), s).fetch_one::<Kpis>().await
            })
            .await
        })
        .await?;
        let sql = format!(
            "SELECT o.currency AS currency, countIf(o.status NOT IN ('cancelled', 'returned')) AS revenue_orders, \
             sumIf(o.total, o.status NOT IN ('cancelled', 'returned')) AS revenue \
             FROM orders AS o FINAL WHERE {scope} GROUP BY currency ORDER BY currency",
            scope = scope_where()
        );
        let revenue = trace::call(trace, "clickhouse", "revenue", |p| async move {
            let client = self.traced(p);
            timed(&self.breakers().analytics, "revenue", self.timeout(), async {
                bind(client.query(&sql), s).fetch_all::<Revenue>().await
            })
            .await
        })
        .await?;
        Ok((kpis, revenue))
    }

    /// Orders per latest status.
    pub async fn status_counts(
        &self,
        s: &Scope,
        trace: Option<&TraceParent>,
    ) -> Result<Vec<StatusCount>, BackendError> {
        let sql = format!(
            "SELECT toString(o.status) AS status, count() AS orders FROM orders AS o FINAL WHERE {scope} GROUP BY status",
            scope = scope_where()
        );
        trace::call(trace, "clickhouse", "status_counts", |p| async move {
            let client = self.traced(p);
            timed(&self.breakers().analytics, "status_counts", self.timeout(), async {
                bind(client.query(&sql), s).fetch_all::<StatusCount>().await
            })
            .await
        })
        .await
    }

    /// Best-selling SKUs of live (not cancelled) orders, by units or revenue.
    pub async fn top_skus(
        &self,
        s: &Scope,
        by_revenue: bool,
        limit: u64,
        trace: Option<&TraceParent>,
    ) -> Result<Vec<SkuSales>, BackendError> {
        let order = if by_revenue { "revenue DESC, sku" } else { "units DESC, sku" };
        let sql = format!(
            "SELECT l.sku AS sku, any(l.name) AS name, toUInt64(sum(l.quantity)) AS units, \
             sum(toInt64(l.quantity) * l.unit_price) AS revenue \
             FROM order_lines AS l FINAL \
             INNER JOIN (SELECT o.order_id AS order_id, o.version AS version FROM orders AS o FINAL \
                         WHERE {scope} AND o.status != 'cancelled') AS live \
             ON l.order_id = live.order_id AND l.version = live.version \
             GROUP BY sku ORDER BY {order} LIMIT {{limit:UInt64}}",
            scope = scope_where()
        );
        trace::call(trace, "clickhouse", "top_skus", |p| async move {
            let client = self.traced(p);
            timed(&self.breakers().analytics, "top_skus", self.timeout(), async {
                bind(client.query(&sql), s).param("limit", limit).fetch_all::<SkuSales>().await
            })
            .await
        })
        .await
    }

    /// Counts and sums per time bucket (in `tz`, a zone [`known_time_zone`]
    /// accepts) and group. The range is widened to whole buckets in `tz`:
    /// every point counts its whole bucket, the first and the last included.
    pub async fn timeseries(
        &self,
        s: &Scope,
        interval: Interval,
        group_by: &str,
        tz: &str,
        trace: Option<&TraceParent>,
    ) -> Result<Vec<Point>, BackendError> {
        // Both come from closed sets chosen by the caller, never from the request text.
        let bucket = interval.start_sql("o.created_at");
        let group = match group_by {
            "channel" => "toString(o.channel)",
            "status" => "toString(o.status)",
            "currency" => "toString(o.currency)",
            "country" => "toString(o.country)",
            _ => "''",
        };
        let from = interval.start_sql("fromUnixTimestamp64Milli({from:Int64})");
        let to = interval.end_sql("fromUnixTimestamp64Milli({to:Int64} - 1)");
        let sql = format!(
            "SELECT toUnixTimestamp64Milli(toDateTime64({bucket}, 3)) AS bucket_ms, {group} AS group, count() AS orders, \
             countIf(o.status = 'cancelled') AS cancelled, countIf(o.status = 'returned') AS returned, \
             sumIf(o.total, o.status NOT IN ('cancelled', 'returned')) AS revenue, \
             toUInt64(sumIf(o.units, o.status != 'cancelled')) AS units \
             FROM orders AS o FINAL WHERE o.created_at >= {from} AND o.created_at < {to} AND {FILTERS} \
             GROUP BY bucket_ms, group ORDER BY bucket_ms, group"
        );
        trace::call(trace, "clickhouse", "timeseries", |p| async move {
            let client = self.traced(p);
            timed(&self.breakers().analytics, "timeseries", self.timeout(), async {
                bind(client.query(&sql), s).param("tz", tz).fetch_all::<Point>().await
            })
            .await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::macros::datetime;

    use super::*;

    fn ms(t: OffsetDateTime) -> i64 {
        (t.unix_timestamp_nanos() / 1_000_000) as i64
    }

    #[test]
    fn kpi_ranges_widen_to_whole_minutes() {
        let from = ms(datetime!(2024-03-13 10:17:05.123 UTC));
        let to = ms(datetime!(2024-03-13 18:00:00.001 UTC));
        let want = (ms(datetime!(2024-03-13 10:17 UTC)), ms(datetime!(2024-03-13 18:01 UTC)));
        assert_eq!(align_to_minutes(from, to), want);
        assert_eq!(align_to_minutes(from + 3, to + 7), want, "a few milliseconds later: the same range");
        let whole = (ms(datetime!(2024-03-13 10:17 UTC)), ms(datetime!(2024-03-13 18:00 UTC)));
        assert_eq!(align_to_minutes(whole.0, whole.1), whole, "whole minutes stay as they are");
        assert_eq!(align_to_minutes(-1, 1), (-MINUTE_MS, MINUTE_MS), "before 1970 too");
    }

    #[test]
    fn series_ranges_widen_to_whole_buckets_in_utc() {
        // A Wednesday.
        let from = ms(datetime!(2024-03-13 10:17:05.123 UTC));
        let to = ms(datetime!(2024-12-31 23:59:59.999 UTC));
        let cases = [
            (Interval::Hour, datetime!(2024-03-13 10:00 UTC), datetime!(2025-01-01 00:00 UTC)),
            (Interval::Day, datetime!(2024-03-13 00:00 UTC), datetime!(2025-01-01 00:00 UTC)),
            (Interval::Week, datetime!(2024-03-11 00:00 UTC), datetime!(2025-01-06 00:00 UTC)),
            (Interval::Month, datetime!(2024-03-01 00:00 UTC), datetime!(2025-01-01 00:00 UTC)),
        ];
        for (interval, want_from, want_to) in cases {
            assert_eq!(align_to_buckets_utc(from, to, interval), (ms(want_from), ms(want_to)), "{interval:?}");
            assert_eq!(
                align_to_buckets_utc(from + 4, to - 2, interval),
                (ms(want_from), ms(want_to)),
                "{interval:?}: a few milliseconds apart, the same buckets"
            );
        }
        let april = ms(datetime!(2024-04-01 00:00 UTC));
        assert_eq!(align_to_buckets_utc(april, april, Interval::Month), (april, april), "a month's start stays");
    }

    #[test]
    fn buckets_are_exact_when_aligned_and_an_upper_bound_otherwise() {
        let jan = ms(datetime!(2024-01-01 00:00 UTC));
        let next_jan = ms(datetime!(2025-01-01 00:00 UTC));
        assert_eq!(buckets(jan, next_jan, Interval::Month, true), 12);
        assert_eq!(buckets(jan, next_jan, Interval::Day, true), 366);
        assert_eq!(buckets(jan, next_jan, Interval::Hour, true), 366 * 24);
        assert_eq!(buckets(jan, jan + 14 * DAY_MS, Interval::Week, true), 2);
        // In another zone: 36 hours can touch three days (two partial), and a
        // day can be 23 hours long.
        assert_eq!(buckets(jan, jan + 36 * HOUR_MS, Interval::Day, false), 3);
        assert_eq!(buckets(jan, jan + 46 * HOUR_MS, Interval::Day, false), 3);
        assert_eq!(buckets(jan, next_jan, Interval::Month, false), 15, "at most a bucket per 28 days, plus one");
    }

    #[test]
    fn time_zones_are_those_clickhouse_knows_spelt_as_it_spells_them() {
        for tz in ["UTC", "Etc/UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Asia/Kolkata"] {
            assert!(known_time_zone(tz), "{tz}");
        }
        for tz in ["", "utc", "europe/berlin", "Not/AZone", "Europe/Berlin ", "# The IANA time zones"] {
            assert!(!known_time_zone(tz), "{tz:?}");
        }
    }

    proptest! {
        /// Aligned ranges hold the requested one, start and end on a bucket
        /// boundary, and are the same for every range within the same buckets.
        #[test]
        fn aligned_ranges_cover_and_are_stable(
            from in -2_000_000_000_000i64..4_000_000_000_000,
            len in 0i64..400 * DAY_MS,
            shift in 0i64..1000,
            i in 0usize..4,
        ) {
            let (to, interval) = (from + len, Interval::ALL[i]);
            let (a, b) = align_to_buckets_utc(from, to, interval);
            prop_assert!(a <= from && to <= b);
            prop_assert_eq!(align_to_buckets_utc(a, b, interval), (a, b));
            let (a2, b2) = align_to_buckets_utc(a + shift.min(from - a), to, interval);
            prop_assert_eq!((a2, b2), (a, b), "a shift of from within its bucket changes nothing");
            prop_assert!(buckets(a, b, interval, true) <= buckets(from, to, interval, false));
            let (m, n) = align_to_minutes(from, to);
            prop_assert!(m <= from && from - m < MINUTE_MS && to <= n && n - to < MINUTE_MS);
        }
    }
}
