//! The analytical API against the real stack: seeded orders, ingested into
//! ClickHouse, and every figure recomputed in Rust from the truth file.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::*;
use order_gateway::api::params;
use order_gateway::model::{OrderStatus, OrderView, Timestamp};
use serde_json::Value;

fn run(env: &[(String, String)], args: &[&str]) {
    let _one_at_a_time = (args.first() == Some(&"setup")).then(one_setup_at_a_time);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_order-gateway"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// ClickHouse's quantileExact: the element at index floor(level * n) of the sorted values.
fn quantile_exact(mut v: Vec<i64>, level: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let i = ((level * v.len() as f64) as usize).min(v.len() - 1);
    Some(v[i] as f64 / 1000.0)
}

fn close(a: &Value, b: Option<f64>, what: &str) {
    match (a.as_f64(), b) {
        (None, None) => {}
        (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-9 * y.abs().max(1.0), "{what}: got {x}, expected {y}"),
        _ => panic!("{what}: got {a}, expected {b:?}"),
    }
}

#[tokio::test]
async fn kpis_funnel_top_skus_and_series_match_the_truth() {
    let id = unique("an");
    let env = isolated_env(&id, false);
    run(&env, &["setup"]);
    let truth_file = std::env::temp_dir().join(format!("{id}.truth.jsonl"));
    run(&env, &["seed", "--orders", "1500", "--seed", "5", "--truth", truth_file.to_str().unwrap()]);
    run(&env, &["ingest", "--exit-when-idle", "3s"]);
    let views: Vec<OrderView> =
        std::fs::read_to_string(&truth_file).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let _ = std::fs::remove_file(&truth_file);

    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let gw = Gateway::start(&env_ref).await;
    let now = Timestamp::now().millis();
    let from = Timestamp(now - 3 * 365 * 86_400_000 - 86_400_000);
    let to = Timestamp(now + 86_400_000);
    let range = format!("from={}&to={}", from.to_rfc3339(), to.to_rfc3339());
    let c = client();
    let get = |path: String| {
        let request = c.get(gw.url(&path));
        async move { expect_json(request, 200).await.1 }
    };

    // ---- expected, from the truth ----
    let orders: Vec<_> = views.iter().filter_map(|v| v.order.as_ref().map(|o| (o, v))).collect();
    let is = |o: &order_gateway::model::Order, s: OrderStatus| o.status == s;
    let n = orders.len() as u64;
    let cancelled = orders.iter().filter(|(o, _)| is(o, OrderStatus::Cancelled)).count() as u64;
    let returned = orders.iter().filter(|(o, _)| is(o, OrderStatus::Returned)).count() as u64;
    let done = |o: &order_gateway::model::Order| is(o, OrderStatus::Delivered) || is(o, OrderStatus::Returned);
    let delivered_or_returned = orders.iter().filter(|(o, _)| done(o)).count() as u64;
    let live: Vec<_> = orders.iter().filter(|(o, _)| !is(o, OrderStatus::Cancelled)).collect();
    let units: u64 = live.iter().map(|(o, _)| o.lines.iter().map(|l| u64::from(l.quantity)).sum::<u64>()).sum();
    let mut ship = Vec::new();
    let mut deliver = Vec::new();
    let (mut on_time, mut eligible) = (0u64, 0u64);
    for (o, v) in &orders {
        if let Some(first) = v.fulfillments.iter().filter_map(|f| f.shipped_at).min() {
            ship.push(first.millis() - o.created_at.millis());
        }
        let last = v.fulfillments.iter().filter_map(|f| f.delivered_at).max();
        if let (true, Some(last)) = (done(o), last) {
            deliver.push(last.millis() - o.created_at.millis());
            if let Some(p) = o.promised_delivery_at {
                eligible += 1;
                on_time += u64::from(last <= p);
            }
        }
    }
    let mut money: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for (o, _) in &orders {
        if !is(o, OrderStatus::Cancelled) && !is(o, OrderStatus::Returned) {
            let e = money.entry(o.currency.clone()).or_default();
            e.0 += 1;
            e.1 += o.total;
        }
    }

    // ---- KPIs ----
    let k = get(format!("/v1/analytics/kpis?{range}")).await;
    assert_eq!(k["orders"], n);
    close(&k["cancellation_rate"], Some(cancelled as f64 / n as f64), "cancellation_rate");
    close(&k["return_rate"], Some(returned as f64 / delivered_or_returned as f64), "return_rate");
    close(&k["units_per_order"], Some(units as f64 / live.len() as f64), "units_per_order");
    close(&k["on_time_delivery_rate"], Some(on_time as f64 / eligible as f64), "on_time_delivery_rate");
    close(&k["lead_time_to_ship_seconds"]["p50"], quantile_exact(ship.clone(), 0.5), "ship p50");
    close(&k["lead_time_to_ship_seconds"]["p90"], quantile_exact(ship, 0.9), "ship p90");
    close(&k["lead_time_to_deliver_seconds"]["p50"], quantile_exact(deliver.clone(), 0.5), "deliver p50");
    close(&k["lead_time_to_deliver_seconds"]["p90"], quantile_exact(deliver, 0.9), "deliver p90");
    let lines = k["revenue"].as_array().unwrap();
    assert_eq!(lines.len(), money.len(), "one revenue line per currency");
    for line in lines {
        let (count, sum) = money[line["currency"].as_str().unwrap()];
        assert_eq!(line["orders"], count);
        assert_eq!(line["revenue"], sum, "revenue is exact, in minor units");
        close(&line["average_order_value"], Some(sum as f64 / count as f64), "aov");
    }
    // One channel and one currency narrow the same figures.
    let web_eur: Vec<_> = orders.iter().filter(|(o, _)| o.channel.as_str() == "web" && o.currency == "EUR").collect();
    let k = get(format!("/v1/analytics/kpis?{range}&channel=web&currency=EUR")).await;
    assert_eq!(k["orders"], web_eur.len());

    // ---- funnel ----
    let counts: HashMap<OrderStatus, u64> = orders.iter().fold(HashMap::new(), |mut m, (o, _)| {
        *m.entry(o.status).or_default() += 1;
        m
    });
    let want = order_gateway::api::analytics::funnel(|s| counts.get(&s).copied().unwrap_or(0));
    let got = get(format!("/v1/analytics/status-funnel?{range}")).await;
    assert_eq!(got, want);

    // ---- top SKUs by units ----
    let mut by_sku: BTreeMap<String, u64> = BTreeMap::new();
    for (o, _) in &live {
        for l in &o.lines {
            *by_sku.entry(l.sku.clone()).or_default() += u64::from(l.quantity);
        }
    }
    let mut ranked: Vec<(String, u64)> = by_sku.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let got = get(format!("/v1/analytics/top-skus?{range}&limit=5")).await;
    let got: Vec<(String, u64)> = got["skus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["sku"].as_str().unwrap().to_owned(), s["units"].as_u64().unwrap()))
        .collect();
    assert_eq!(got, ranked[..5].to_vec());

    // ---- orders per month (UTC) ----
    let mut per_month: BTreeMap<String, u64> = BTreeMap::new();
    for (o, _) in &orders {
        let ts = o.created_at.to_rfc3339();
        *per_month.entry(format!("{}-01T00:00:00.000Z", &ts[..7])).or_default() += 1;
    }
    let got = get(format!("/v1/analytics/timeseries?{range}&metric=orders&interval=month&tz=UTC")).await;
    let got: BTreeMap<String, u64> = got["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["start"].as_str().unwrap().to_owned(), p["value"].as_u64().unwrap()))
        .collect();
    assert_eq!(got, per_month);

    // ---- dates: the start of the day in tz, on every route ----
    // New York is behind UTC: a date read as UTC midnight there would count
    // the evening before and miss the last evening of the range.
    let tz = "America/New_York";
    let zone = jiff::tz::TimeZone::get(tz).unwrap();
    let today = jiff::Timestamp::from_millisecond(now).unwrap().to_zoned(zone.clone()).date();
    let (from_day, to_day) = (today - jiff::Span::new().days(400), today - jiff::Span::new().days(30));
    let midnight = |d: jiff::civil::Date| Timestamp(d.to_zoned(zone.clone()).unwrap().timestamp().as_millisecond());
    let (start, end) = (midnight(from_day), midnight(to_day));
    let by_dates = format!("from={from_day}&to={to_day}&tz={tz}");
    let by_instants = format!("from={}&to={}", start.to_rfc3339(), end.to_rfc3339());
    let within = orders.iter().filter(|(o, _)| start <= o.created_at && o.created_at < end).count();
    assert!(within > 100 && within < orders.len(), "the range cuts the data: {within} of {}", orders.len());
    let k = get(format!("/v1/analytics/kpis?{by_dates}")).await;
    assert_eq!(k["orders"], within, "{by_dates}: {k}");
    assert_eq!(
        (k["from"].as_str(), k["to"].as_str()),
        (Some(start.to_rfc3339().as_str()), Some(end.to_rfc3339().as_str()))
    );
    assert_eq!(k, get(format!("/v1/analytics/kpis?{by_instants}")).await, "a date range is its RFC 3339 range");
    for route in ["status-funnel", "top-skus"] {
        let dated = get(format!("/v1/analytics/{route}?{by_dates}")).await;
        assert_eq!(dated, get(format!("/v1/analytics/{route}?{by_instants}")).await, "{route}");
    }
    // The daily series over the same dates adds up to the KPIs' count.
    let series = get(format!("/v1/analytics/timeseries?{by_dates}&interval=day")).await;
    assert_eq!(series, get(format!("/v1/analytics/timeseries?{by_instants}&interval=day&tz={tz}")).await);
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.iter().map(|p| p["value"].as_u64().unwrap()).sum::<u64>(), within as u64);
    assert!(points.iter().all(|p| p["start"].as_str() >= Some(start.to_rfc3339().as_str())), "no day before from");
    // Without tz a date is midnight UTC.
    let utc = get(format!("/v1/analytics/kpis?from={from_day}&to={to_day}")).await;
    assert_eq!(utc["from"].as_str(), Some(format!("{from_day}T00:00:00.000Z").as_str()));
    assert_eq!(utc, get(format!("/v1/analytics/kpis?from={from_day}T00:00:00Z&to={to_day}T00:00:00Z")).await);

    // A second identical query is answered from the answer cache.
    get(format!("/v1/analytics/kpis?{range}")).await;
    let metrics = c.get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("analytics_cache_total{result=\"hit\"}"), "{metrics}");
}

#[tokio::test]
async fn bad_analytics_parameters_are_named() {
    // A database with the tables, so a bad time zone is the only thing wrong.
    let w = common::world::World::new();
    let mut env: Vec<(&str, &str)> = w.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // One failure would open ClickHouse's analytics circuit. No bad parameter
    // reaches ClickHouse (an unknown time zone such as Not/AZone is refused
    // from the list the gateway ships), so none can count; the gauge at the
    // end shows none did.
    env.push(("ORDER_GATEWAY__BREAKER__FAILURE_THRESHOLD", "1"));
    let gw = Gateway::start(&env).await;
    let c = client();
    let r = "from=2025-01-01T00:00:00Z&to=2025-02-01T00:00:00Z";
    for (path, param) in [
        ("/v1/analytics/kpis?to=2025-02-01T00:00:00Z".to_string(), "from"),
        ("/v1/analytics/kpis?from=2025-02-30&to=2025-03-01".to_string(), "from"),
        ("/v1/analytics/kpis?from=2025-02-01&to=2025-1-31".to_string(), "to"),
        ("/v1/analytics/kpis?from=2025-02-01&to=2025-02-01".to_string(), "from"),
        ("/v1/analytics/kpis?from=2025-01-01&to=2025-02-01&tz=Not/AZone".to_string(), "tz"),
        ("/v1/analytics/kpis?from=2025-02-01T00:00:00Z&to=2025-01-01T00:00:00Z".to_string(), "from"),
        ("/v1/analytics/kpis?from=2000-01-01T00:00:00Z&to=2025-01-01T00:00:00Z".to_string(), "to"),
        (format!("/v1/analytics/kpis?{r}&channel=fax"), "channel"),
        (format!("/v1/analytics/kpis?{r}&currency=euro"), "currency"),
        (format!("/v1/analytics/kpis?{r}&region=eu"), "region"),
        (format!("/v1/analytics/top-skus?{r}&limit=1001"), "limit"),
        (format!("/v1/analytics/top-skus?{r}&by=margin"), "by"),
        (format!("/v1/analytics/top-skus?{r}&by=revenue"), "currency"),
        (format!("/v1/analytics/timeseries?{r}&metric=profit"), "metric"),
        (format!("/v1/analytics/timeseries?{r}&metric=revenue"), "metric"),
        (format!("/v1/analytics/timeseries?{r}&interval=year"), "interval"),
        (format!("/v1/analytics/timeseries?{r}&group_by=sku"), "group_by"),
        (format!("/v1/analytics/timeseries?{r}&tz=Not/AZone"), "tz"),
        (format!("/v1/analytics/timeseries?{r}&tz=bad%20zone"), "tz"),
    ] {
        let (_, p) = expect_problem(c.get(gw.url(&path)), 400).await;
        assert_eq!(p["invalid_params"][0]["name"], param, "{path}: {p}");
    }
    // A malformed bound names the parameter, the value and both forms.
    for (path, param, value) in [
        ("/v1/analytics/kpis?from=2025-02-30&to=2025-03-01", "from", "2025-02-30"),
        ("/v1/analytics/timeseries?from=2025-01-01&to=01/02/2025", "to", "01/02/2025"),
        ("/v1/analytics/top-skus?from=2025-01-01T00:00&to=2025-02-01", "from", "2025-01-01T00:00"),
    ] {
        let (_, p) = expect_problem(c.get(gw.url(path)), 400).await;
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.starts_with(&format!("{param} must be")), "{path}: {detail}");
        assert!(detail.contains(&format!("{value:?}")), "{path}: the value is named: {detail}");
        assert!(detail.contains("RFC 3339") && detail.contains("2025-01-31T00:00:00Z"), "{path}: {detail}");
        assert!(detail.contains("a date such as 2025-01-31"), "{path}: {detail}");
    }
    let (_, p) =
        expect_problem(c.get(gw.url("/v1/analytics/kpis?from=2025-02-01&to=2025-02-01&tz=Europe/Berlin")), 400).await;
    assert_eq!(
        p["detail"],
        "from (2025-02-01 in Europe/Berlin, 2025-01-31T23:00:00.000Z) must be before to \
         (2025-02-01 in Europe/Berlin, 2025-01-31T23:00:00.000Z)"
    );
    let metrics = c.get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("backend_circuit_state{backend=\"clickhouse\",circuit=\"analytics\"} 0\n"), "{metrics}");
    let _ = Duration::from_secs(0);
}

/// The value of a series in the gateway's /metrics (0 when it is absent).
async fn series(gw: &Gateway, name: &str) -> f64 {
    let text = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn requests_a_few_milliseconds_apart_share_one_cached_answer() {
    let w = common::world::World::new();
    let env: Vec<(&str, &str)> = w.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let gw = Gateway::start(&env).await;
    let c = client();
    let (hit, miss) = (r#"analytics_cache_total{result="hit"}"#, r#"analytics_cache_total{result="miss"}"#);
    let pairs = [
        // KPIs: widened to whole minutes.
        (
            "/v1/analytics/kpis?from=2024-03-01T10:00:30.001Z&to=2024-03-02T00:00:00.000Z",
            "/v1/analytics/kpis?from=2024-03-01T10:00:30.004Z&to=2024-03-01T23:59:59.998Z",
        ),
        // A series in UTC: widened to whole days.
        (
            "/v1/analytics/timeseries?from=2024-03-01T10:00:30.001Z&to=2024-03-08T00:00:00Z&interval=day",
            "/v1/analytics/timeseries?from=2024-03-01T10:00:30.007Z&to=2024-03-07T13:00:00Z&interval=day",
        ),
        // In another zone: whole minutes here, whole buckets in ClickHouse.
        (
            "/v1/analytics/timeseries?from=2024-03-01T10:00:30.001Z&to=2024-03-08T00:00:00Z&interval=day&tz=Europe/Berlin",
            "/v1/analytics/timeseries?from=2024-03-01T10:00:30.002Z&to=2024-03-08T00:00:00Z&interval=day&tz=Europe/Berlin",
        ),
    ];
    for (first, second) in pairs {
        let (hits, misses) = (series(&gw, hit).await, series(&gw, miss).await);
        let (_, a) = expect_json(c.get(gw.url(first)), 200).await;
        let (_, b) = expect_json(c.get(gw.url(second)), 200).await;
        assert_eq!(a, b, "{second}");
        assert_eq!(series(&gw, miss).await, misses + 1.0, "{first} computed once");
        assert_eq!(series(&gw, hit).await, hits + 1.0, "{second} answered from the cache");
    }
    let (_, k) = expect_json(c.get(gw.url(pairs[0].0)), 200).await;
    assert_eq!(
        (k["from"].as_str(), k["to"].as_str()),
        (Some("2024-03-01T10:00:00.000Z"), Some("2024-03-02T00:00:00.000Z"))
    );
    let (_, admin) = expect_json(c.get(gw.url("/admin/cache")), 200).await;
    assert_eq!(admin["analytics_answers"], 3, "{admin}");
}

/// The time zones the gateway accepts without asking ClickHouse are those
/// the stack's ClickHouse knows (the list is shipped in the repository).
#[tokio::test]
async fn the_shipped_time_zones_are_those_clickhouse_knows() {
    let shipped: Vec<&str> = include_str!("../schemas/clickhouse/time_zones.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let known: Vec<String> = clickhouse::Client::default()
        .with_url(clickhouse_url())
        .query("SELECT time_zone FROM system.time_zones ORDER BY time_zone")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(shipped, known, "regenerate schemas/clickhouse/time_zones.txt");
}

/// Zones whose rules changed after the IANA release ClickHouse 26.7 bundles
/// (2025a; `SELECT value FROM system.build_options WHERE name =
/// 'TZDATA_VERSION'`), from the day given on: the gateway's database (jiff,
/// 2026f) places their midnights by the newer rules, ClickHouse's buckets by
/// the old ones, an hour apart. Drop a zone when ClickHouse catches up.
const CLICKHOUSE_TZDATA_BEHIND: &[(&str, &str)] = &[
    ("Africa/Casablanca", "2026-09-21"),
    ("Africa/El_Aaiun", "2026-09-21"),
    ("America/Edmonton", "2026-11-02"),
    ("America/Havana", "2026-11-02"),
    ("America/Inuvik", "2026-11-02"),
    ("America/Rainy_River", "2026-11-02"),
    ("America/Vancouver", "2026-11-02"),
    ("America/Winnipeg", "2026-11-02"),
    ("America/Yellowknife", "2026-11-02"),
    ("Canada/Central", "2026-11-02"),
    ("Canada/Mountain", "2026-11-02"),
    ("Canada/Pacific", "2026-11-02"),
    ("Cuba", "2026-11-02"),
];

/// A date in `tz` starts where ClickHouse starts that day, so a series'
/// first bucket is the day asked for: the start of every day of 2023 to 2026
/// in every shipped zone (transitions at midnight included), from the
/// gateway's bundled database and from ClickHouse's, save where ClickHouse's
/// is known to be behind.
#[tokio::test]
async fn a_date_starts_where_clickhouse_starts_the_day() {
    let zones: Vec<&str> = include_str!("../schemas/clickhouse/time_zones.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let ch = clickhouse::Client::default().with_url(clickhouse_url());
    let (mut checked, mut differ) = (0usize, Vec::new());
    // A zone is a constant of toDateTime: one SELECT per zone, 50 at a time.
    for chunk in zones.chunks(50) {
        let sql = chunk
            .iter()
            .map(|tz| {
                format!(
                    "SELECT '{tz}' AS tz, toString(d) AS day, toInt64(toUnixTimestamp(toDateTime(d, '{tz}'))) AS start \
                     FROM (SELECT toDate('2023-01-01') + number AS d FROM numbers(1461))"
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let rows: Vec<(String, String, i64)> = ch.query(&sql).fetch_all().await.unwrap();
        for (tz, day, start) in rows {
            let zone = jiff::tz::TimeZone::get(&tz).unwrap();
            let ours = params::time_or_date("from", &day).unwrap().start_in("from", &zone, &tz).unwrap();
            checked += 1;
            let behind = CLICKHOUSE_TZDATA_BEHIND.iter().any(|(z, since)| *z == tz && day.as_str() >= *since);
            if ours.millis() != start * 1000 && !behind {
                differ.push(format!("{tz} {day}: gateway {ours}, ClickHouse {}", Timestamp(start * 1000)));
            }
        }
    }
    assert_eq!(checked, zones.len() * 1461);
    assert!(differ.is_empty(), "{} of {checked} days start elsewhere:\n{}", differ.len(), differ.join("\n"));
}
