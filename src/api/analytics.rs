//! The analytical API: KPIs, time series, top SKUs and the status funnel,
//! from ClickHouse, cached per query and coalesced. Money is always reported
//! per currency; a request that would add up different currencies is a 400.
//!
//! Ranges are widened before they are cached or queried: KPIs, the funnel and
//! top SKUs to whole minutes, a time series to whole buckets of its interval
//! (see `backends::analytics`), so requests a few milliseconds apart share
//! one answer and every point of a series counts its whole bucket.
//!
//! `from` and `to` are RFC 3339 timestamps or dates; a date is the start of
//! that day in the request's `tz` (UTC when absent), on every route.

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;

use super::params;
use super::{json_bytes, ApiError, HttpResponse};
use crate::app::AppState;
use crate::backends::analytics::{self as queries, Interval, Scope};
use crate::backends::BackendError;
use crate::model::{Channel, OrderStatus, Timestamp};
use crate::telemetry::context::TraceParent;

/// The scope of a query: its range widened to whole minutes (`max_range`
/// applies to the range as asked), its filters checked, and the request's
/// time zone.
fn scope<'q>(
    state: &AppState,
    q: &'q std::collections::BTreeMap<String, String>,
) -> Result<(Scope, &'q str), ApiError> {
    let tz = time_zone(q)?;
    let (from_asked, to_asked) = (bound(q, "from")?, bound(q, "to")?);
    let from = start(from_asked, "from", tz)?;
    let to = start(to_asked, "to", tz)?;
    if from >= to {
        let shown = |b: params::Bound, t: Timestamp| match b {
            params::Bound::Day(day) => format!("{day} in {tz}, {t}"),
            params::Bound::Instant(_) => t.to_string(),
        };
        return Err(ApiError::bad_param(
            "from",
            format!("from ({}) must be before to ({})", shown(from_asked, from), shown(to_asked, to)),
        ));
    }
    let max = state.config.analytics.max_range;
    if (to.millis() - from.millis()) as u128 > max.as_millis() {
        return Err(ApiError::bad_param(
            "to",
            format!("from..to may span at most {}", humantime::format_duration(max)),
        ));
    }
    let channel = match q.get("channel") {
        Some(c) => params::one_of::<Channel>("channel", c)?.as_str().to_owned(),
        None => String::new(),
    };
    let currency = match q.get("currency") {
        Some(c) if crate::model::valid_currency(c) => c.clone(),
        Some(c) => {
            return Err(ApiError::bad_param(
                "currency",
                format!("currency must be an ISO 4217 code such as EUR, got {c:?}"),
            ))
        }
        None => String::new(),
    };
    let (from_ms, to_ms) = queries::align_to_minutes(from.millis(), to.millis());
    Ok((Scope { from_ms, to_ms, channel, currency }, tz))
}

/// The request's `tz` (default UTC): where a date in `from` or `to` starts,
/// and where a series' buckets start. Checked against the zones ClickHouse
/// knows, as a series passes it to ClickHouse.
fn time_zone(q: &std::collections::BTreeMap<String, String>) -> Result<&str, ApiError> {
    let tz = q.get("tz").map(String::as_str).unwrap_or("UTC");
    if !queries::known_time_zone(tz) {
        return Err(ApiError::bad_param(
            "tz",
            format!("tz must be an IANA time zone such as Europe/Berlin, got {tz:?}"),
        ));
    }
    Ok(tz)
}

/// `from` or `to`, required: an RFC 3339 timestamp or a date.
fn bound(q: &std::collections::BTreeMap<String, String>, param: &str) -> Result<params::Bound, ApiError> {
    let v = q.get(param).ok_or_else(|| {
        ApiError::bad_param(
            param,
            format!(
                "{param} is required: an RFC 3339 timestamp such as 2025-01-31T00:00:00Z or a date such as 2025-01-31"
            ),
        )
    })?;
    params::time_or_date(param, v)
}

/// The instant a bound names. A date is the start of that day in `tz` on
/// every route alike, as a BI user in Berlin means Berlin's January: KPIs
/// over a range of dates then add up to the daily series over the same dates.
fn start(b: params::Bound, param: &str, tz: &str) -> Result<Timestamp, ApiError> {
    match b {
        params::Bound::Instant(t) => Ok(t),
        day => day.start_in(param, &zone(tz)?, tz),
    }
}

/// The rules of a zone ClickHouse knows, from the database bundled into the
/// binary; only a date needs them (ClickHouse itself places a series' buckets).
fn zone(tz: &str) -> Result<jiff::tz::TimeZone, ApiError> {
    if tz == "UTC" {
        return Ok(jiff::tz::TimeZone::UTC);
    }
    jiff::tz::TimeZone::get(tz).map_err(|e| {
        ApiError::bad_param(
            "tz",
            format!("the gateway cannot place a date in {tz} ({e}); give from and to as RFC 3339 timestamps"),
        )
    })
}

/// Upper bounds of the groups of `group_by` that a series can have, for
/// `analytics.max_points`. Channels and statuses are the model's; currencies
/// and countries are open sets, counted as the ISO 4217 currencies in use
/// and the ISO 3166-1 countries plus "none". A filter on the same field
/// leaves one group.
fn groups(group_by: &str, s: &Scope) -> u64 {
    match group_by {
        "channel" if s.channel.is_empty() => Channel::ALL.len() as u64,
        "status" => OrderStatus::ALL.len() as u64,
        "currency" if s.currency.is_empty() => 180,
        "country" => 250,
        _ => 1,
    }
}

/// Runs `compute` once for concurrent identical queries and reuses the answer
/// for the configured TTL (longer once the range lies wholly in the past).
async fn cached<F, Fut>(state: &AppState, key: String, s: &Scope, compute: F) -> Result<HttpResponse, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Bytes, BackendError>> + Send + 'static,
{
    let cfg = &state.config.analytics;
    let settled = s.to_ms < Timestamp::now().millis() - 3_600_000;
    let ttl = if settled { cfg.settled_cache_ttl } else { cfg.cache_ttl };
    let bytes = state.analytics.get_or_compute(key, ttl, compute).await?;
    Ok(json_bytes(StatusCode::OK, bytes))
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

fn secs(ms: Option<i64>) -> Option<f64> {
    ms.map(|m| m as f64 / 1000.0)
}

#[derive(Serialize)]
struct Quantiles {
    p50: Option<f64>,
    p90: Option<f64>,
}

#[derive(Serialize)]
struct MoneyLine {
    currency: String,
    orders: u64,
    revenue: i64,
    average_order_value: Option<f64>,
}

#[derive(Serialize)]
struct KpiBody {
    from: String,
    to: String,
    channel: Option<String>,
    currency: Option<String>,
    orders: u64,
    units_per_order: Option<f64>,
    cancellation_rate: Option<f64>,
    return_rate: Option<f64>,
    on_time_delivery_rate: Option<f64>,
    lead_time_to_ship_seconds: Quantiles,
    lead_time_to_deliver_seconds: Quantiles,
    /// Money never mixes currencies: one line per currency.
    revenue: Vec<MoneyLine>,
}

/// `GET /v1/analytics/kpis?from=&to=&tz=&channel=&currency=`.
pub async fn kpis(state: &AppState, query: Option<&str>, trace: &TraceParent) -> Result<HttpResponse, ApiError> {
    let q = params::query(query, &["from", "to", "tz", "channel", "currency"])?;
    let (s, _) = scope(state, &q)?;
    let key = format!("kpis|{s:?}");
    let ch = state.backends.clickhouse.clone();
    let scope = s.clone();
    let trace = trace.clone();
    cached(state, key, &s, move || async move {
        let (k, revenue) = ch.kpis(&scope, Some(&trace)).await?;
        let body = KpiBody {
            from: Timestamp(scope.from_ms).to_rfc3339(),
            to: Timestamp(scope.to_ms).to_rfc3339(),
            channel: (!scope.channel.is_empty()).then(|| scope.channel.clone()),
            currency: (!scope.currency.is_empty()).then(|| scope.currency.clone()),
            orders: k.orders,
            units_per_order: ratio(k.units, k.live_orders),
            cancellation_rate: ratio(k.cancelled, k.orders),
            return_rate: ratio(k.returned, k.delivered_or_returned),
            on_time_delivery_rate: ratio(k.on_time, k.on_time_eligible),
            lead_time_to_ship_seconds: Quantiles { p50: secs(k.ship_p50_ms), p90: secs(k.ship_p90_ms) },
            lead_time_to_deliver_seconds: Quantiles { p50: secs(k.deliver_p50_ms), p90: secs(k.deliver_p90_ms) },
            revenue: revenue
                .into_iter()
                .map(|r| MoneyLine {
                    average_order_value: (r.revenue_orders > 0).then(|| r.revenue as f64 / r.revenue_orders as f64),
                    currency: r.currency,
                    orders: r.revenue_orders,
                    revenue: r.revenue,
                })
                .collect(),
        };
        Ok(Bytes::from(serde_json::to_vec(&body).expect("serialises")))
    })
    .await
}

/// `GET /v1/analytics/status-funnel?from=&to=&tz=&channel=&currency=`: how many
/// orders reached each stage (cancelled orders count as created only).
pub async fn status_funnel(
    state: &AppState,
    query: Option<&str>,
    trace: &TraceParent,
) -> Result<HttpResponse, ApiError> {
    let q = params::query(query, &["from", "to", "tz", "channel", "currency"])?;
    let (s, _) = scope(state, &q)?;
    let ch = state.backends.clickhouse.clone();
    let scope = s.clone();
    let trace = trace.clone();
    cached(state, format!("funnel|{s:?}"), &s, move || async move {
        let counts = ch.status_counts(&scope, Some(&trace)).await?;
        let n = |st: OrderStatus| counts.iter().find(|c| c.status == st.as_str()).map_or(0, |c| c.orders);
        Ok(Bytes::from(serde_json::to_vec(&funnel(n)).expect("serialises")))
    })
    .await
}

/// Pure: stage counts from counts per latest status.
pub fn funnel(n: impl Fn(OrderStatus) -> u64) -> serde_json::Value {
    use OrderStatus::*;
    let returned = n(Returned);
    let delivered = n(Delivered) + returned;
    let shipped = n(Shipped) + delivered;
    let partially = n(PartiallyShipped) + shipped;
    let allocated = n(Allocated) + partially;
    let confirmed = n(Confirmed) + allocated;
    let cancelled = n(Cancelled);
    let created = n(Created) + confirmed + cancelled;
    serde_json::json!({
        "stages": [
            {"status": "created", "orders": created},
            {"status": "confirmed", "orders": confirmed},
            {"status": "allocated", "orders": allocated},
            {"status": "partially_shipped", "orders": partially},
            {"status": "shipped", "orders": shipped},
            {"status": "delivered", "orders": delivered},
            {"status": "returned", "orders": returned},
        ],
        "cancelled": cancelled,
    })
}

/// `GET /v1/analytics/top-skus?from=&to=&tz=&limit=&by=units|revenue&channel=&currency=`.
pub async fn top_skus(state: &AppState, query: Option<&str>, trace: &TraceParent) -> Result<HttpResponse, ApiError> {
    let q = params::query(query, &["from", "to", "tz", "limit", "by", "channel", "currency"])?;
    let (s, _) = scope(state, &q)?;
    let limit = q.get("limit").map(|v| params::int_in("limit", v, 1, 1000)).transpose()?.unwrap_or(10);
    let by_revenue = match q.get("by").map(String::as_str) {
        None | Some("units") => false,
        Some("revenue") => true,
        Some(other) => return Err(ApiError::bad_param("by", format!("by must be units or revenue, got {other:?}"))),
    };
    if by_revenue && s.currency.is_empty() {
        return Err(ApiError::bad_param(
            "currency",
            "by=revenue needs currency=: revenue in different currencies does not add up",
        ));
    }
    let ch = state.backends.clickhouse.clone();
    let scope = s.clone();
    let trace = trace.clone();
    cached(state, format!("top|{s:?}|{limit}|{by_revenue}"), &s, move || async move {
        let rows = ch.top_skus(&scope, by_revenue, limit, Some(&trace)).await?;
        let items: Vec<serde_json::Value> = rows
            .into_iter()
            .map(|r| {
                let mut v = serde_json::json!({"sku": r.sku, "name": r.name, "units": r.units});
                if !scope.currency.is_empty() {
                    v["revenue"] = serde_json::json!(r.revenue);
                    v["currency"] = serde_json::json!(scope.currency);
                }
                v
            })
            .collect();
        Ok(Bytes::from(
            serde_json::to_vec(
                &serde_json::json!({ "by": if by_revenue { "revenue" } else { "units" }, "skus": items }),
            )
            .expect("serialises"),
        ))
    })
    .await
}

/// `GET /v1/analytics/timeseries?metric=&interval=&from=&to=&group_by=&tz=&channel=&currency=`.
pub async fn timeseries(state: &AppState, query: Option<&str>, trace: &TraceParent) -> Result<HttpResponse, ApiError> {
    let q = params::query(query, &["metric", "interval", "from", "to", "group_by", "tz", "channel", "currency"])?;
    let (s, tz) = scope(state, &q)?;
    const METRICS: &[&str] =
        &["orders", "revenue", "average_order_value", "units_per_order", "cancellation_rate", "return_rate"];
    let metric = q.get("metric").map(String::as_str).unwrap_or("orders");
    if !METRICS.contains(&metric) {
        return Err(ApiError::bad_param(
            "metric",
            format!("metric must be one of {}, got {metric:?}", METRICS.join(", ")),
        ));
    }
    let interval = q.get("interval").map(String::as_str).unwrap_or("day");
    let Some(interval) = Interval::parse(interval) else {
        return Err(ApiError::bad_param(
            "interval",
            format!("interval must be hour, day, week or month, got {interval:?}"),
        ));
    };
    let group_by = q.get("group_by").map(String::as_str).unwrap_or("");
    if !["", "channel", "status", "currency", "country"].contains(&group_by) {
        return Err(ApiError::bad_param(
            "group_by",
            format!("group_by must be channel, status, currency or country, got {group_by:?}"),
        ));
    }
    let money = matches!(metric, "revenue" | "average_order_value");
    if money && s.currency.is_empty() && group_by != "currency" {
        return Err(ApiError::bad_param(
            "metric",
            format!("{metric} needs currency= or group_by=currency: amounts in different currencies do not add up"),
        ));
    }
    // In UTC the buckets are known here, so the range is widened to them at
    // once; in another zone ClickHouse widens it (the key stays in minutes).
    let mut s = s;
    let aligned = tz == "UTC";
    if aligned {
        (s.from_ms, s.to_ms) = queries::align_to_buckets_utc(s.from_ms, s.to_ms, interval);
    }
    check_points(&s, interval, aligned, group_by, state.config.analytics.max_points)?;
    let ch = state.backends.clickhouse.clone();
    let scope = s.clone();
    let trace = trace.clone();
    let (metric, group_by, tz) = (metric.to_owned(), group_by.to_owned(), tz.to_owned());
    let key = format!("ts|{s:?}|{metric}|{}|{group_by}|{tz}", interval.name());
    cached(state, key, &s, move || async move {
        let points = ch.timeseries(&scope, interval, &group_by, &tz, Some(&trace)).await?;
        let values: Vec<serde_json::Value> = points
            .into_iter()
            .map(|p| {
                let live = p.orders - p.cancelled;
                let value = match metric.as_str() {
                    "orders" => serde_json::json!(p.orders),
                    "revenue" => serde_json::json!(p.revenue),
                    "average_order_value" => serde_json::json!(ratio_i(p.revenue, p.orders - p.cancelled - p.returned)),
                    "units_per_order" => serde_json::json!(ratio(p.units, live)),
                    "cancellation_rate" => serde_json::json!(ratio(p.cancelled, p.orders)),
                    _ => serde_json::json!(ratio(p.returned, p.orders)),
                };
                let mut v = serde_json::json!({"start": Timestamp(p.bucket_ms).to_rfc3339(), "value": value});
                if !group_by.is_empty() {
                    v[group_by.as_str()] = serde_json::json!(p.group);
                }
                v
            })
            .collect();
        Ok(Bytes::from(
            serde_json::to_vec(
                &serde_json::json!({"metric": metric, "interval": interval.name(), "tz": tz, "points": values}),
            )
            .expect("serialises"),
        ))
    })
    .await
}

/// `analytics.max_points`: a series has at most that many points, counting
/// one per bucket and group. Names `group_by` when the groups alone make it
/// too many, else `interval`.
fn check_points(s: &Scope, interval: Interval, aligned: bool, group_by: &str, max: u64) -> Result<(), ApiError> {
    let buckets = queries::buckets(s.from_ms, s.to_ms, interval, aligned);
    let groups = groups(group_by, s);
    let points = buckets.saturating_mul(groups);
    if points <= max {
        return Ok(());
    }
    let (param, fix) = if buckets <= max {
        ("group_by", "a shorter range, a coarser interval, or a filter on the grouped field")
    } else {
        ("interval", "a coarser interval or a shorter range")
    };
    let shape = if groups > 1 {
        format!("{buckets} buckets x up to {groups} {group_by} groups")
    } else {
        format!("{buckets} buckets")
    };
    Err(ApiError::bad_param(param, format!("up to {points} points ({shape}), more than {max}: use {fix}")))
}

fn ratio_i(n: i64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(from: &str, to: &str, channel: &str) -> Scope {
        let ms = |t: &str| crate::api::params::time("t", t).unwrap().millis();
        Scope { from_ms: ms(from), to_ms: ms(to), channel: channel.into(), currency: String::new() }
    }

    fn refused(r: Result<(), ApiError>) -> Option<String> {
        match r {
            Ok(()) => None,
            Err(ApiError::BadRequest { param, .. }) => Some(param.to_string()),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn points_are_buckets_times_groups() {
        let two_years = scope("2023-01-01T00:00:00Z", "2025-01-01T00:00:00Z", "");
        let day = Interval::Day;
        assert_eq!(refused(check_points(&two_years, day, true, "", 5000)), None, "731 days");
        assert_eq!(refused(check_points(&two_years, day, true, "channel", 5000)), None, "731 x 5 channels");
        assert_eq!(
            refused(check_points(&two_years, day, true, "status", 5000)).as_deref(),
            Some("group_by"),
            "731 x 8"
        );
        assert_eq!(refused(check_points(&two_years, day, true, "country", 5000)).as_deref(), Some("group_by"));
        assert_eq!(refused(check_points(&two_years, Interval::Month, true, "status", 5000)), None, "24 x 8");
        assert_eq!(refused(check_points(&two_years, day, true, "status", 5848)), None, "exactly 731 x 8");
        // A channel filter leaves one channel group.
        let web = scope("2023-01-01T00:00:00Z", "2025-01-01T00:00:00Z", "web");
        assert_eq!(refused(check_points(&web, day, true, "channel", 731)), None);
        let twenty_years = scope("2005-01-01T00:00:00Z", "2025-01-01T00:00:00Z", "");
        assert_eq!(refused(check_points(&twenty_years, day, true, "", 5000)).as_deref(), Some("interval"));
        // Outside UTC each end may add a partial bucket.
        assert_eq!(refused(check_points(&two_years, day, false, "", 731)).as_deref(), Some("interval"));
    }

    /// A zone passes `tz` when ClickHouse knows it; a date in it must then
    /// have a start here too, or the request would be refused for a zone it may name.
    #[test]
    fn every_zone_clickhouse_knows_can_place_a_date() {
        let unplaced: Vec<&str> = include_str!("../../schemas/clickhouse/time_zones.txt")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter(|tz| {
                let day = params::Bound::Day(jiff::civil::date(2025, 3, 30));
                zone(tz).and_then(|z| day.start_in("from", &z, tz)).is_err()
            })
            .collect();
        assert_eq!(unplaced, Vec::<&str>::new());
    }

    #[test]
    fn a_date_is_midnight_in_tz_on_every_route() {
        let q = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let at = |pairs: &[(&str, &str)], param: &str| {
            let q = q(pairs);
            let tz = time_zone(&q).unwrap();
            start(bound(&q, param).unwrap(), param, tz).unwrap().to_rfc3339()
        };
        assert_eq!(at(&[("from", "2025-01-01")], "from"), "2025-01-01T00:00:00.000Z", "UTC when tz is absent");
        assert_eq!(at(&[("to", "2025-01-01"), ("tz", "Europe/Berlin")], "to"), "2024-12-31T23:00:00.000Z");
        assert_eq!(
            at(&[("to", "2025-01-01T00:00:00Z"), ("tz", "Europe/Berlin")], "to"),
            "2025-01-01T00:00:00.000Z",
            "tz leaves a timestamp alone"
        );
        let missing = bound(&q(&[]), "from").unwrap_err();
        assert!(
            matches!(&missing, ApiError::BadRequest { param, detail, .. }
            if param == "from" && detail.contains("RFC 3339") && detail.contains("date")),
            "{missing:?}"
        );
    }

    #[test]
    fn funnel_counts_every_stage_an_order_passed() {
        let counts = |s: OrderStatus| match s {
            OrderStatus::Delivered => 5,
            OrderStatus::Returned => 1,
            OrderStatus::Cancelled => 2,
            OrderStatus::Created => 3,
            _ => 0,
        };
        let f = funnel(counts);
        assert_eq!(f["stages"][0]["orders"], 11, "everything was created");
        assert_eq!(f["stages"][1]["orders"], 6);
        assert_eq!(f["stages"][5]["orders"], 6, "returned orders were delivered first");
        assert_eq!(f["cancelled"], 2);
    }
}
