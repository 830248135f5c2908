//! The ClickHouse client (analytical store and orders older than the hot window).

use std::time::Duration;

use time::OffsetDateTime;

use super::breaker::ClickHouseBreakers;
use super::{endpoint, timed, timed_unguarded, Backend, BackendError, ADMIN_TIMEOUT};
use crate::config::ClickHouseConfig;
use crate::model::{Component, Fulfillment, Order, Timestamp};
use crate::telemetry::context::TraceParent;
use crate::telemetry::trace::{self, Propagation};

/// Shared ClickHouse client with the configured deadline.
#[derive(Clone)]
pub struct ChClient {
    client: clickhouse::Client,
    database: String,
    timeout: Duration,
    breakers: ClickHouseBreakers,
    /// host:port, for errors that must say where.
    endpoint: String,
}

/// A connector over rustls with the configured roots and client certificate
/// (TCP keep-alive 60 s, as the crate's own).
fn https_connector(
    tls: &crate::config::TlsConfig,
) -> anyhow::Result<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>> {
    use hyper_util::client::legacy::connect::HttpConnector;
    let config = super::tls::client_config(Backend::ClickHouse, tls)?;
    let mut http = HttpConnector::new();
    http.set_keepalive(Some(Duration::from_secs(60)));
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Ok(https)
}

impl ChClient {
    /// Builds the client; no query is sent. Its queries go through the
    /// breaker of their kind in `breakers`.
    pub fn new(cfg: &ClickHouseConfig, breakers: ClickHouseBreakers) -> anyhow::Result<Self> {
        let client = if cfg.url.scheme() == "https" {
            // Pooled like the crate's own client: idle connections kept 2 s.
            let pool = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(2))
                .build(https_connector(&cfg.tls)?);
            clickhouse::Client::with_http_client(pool)
        } else {
            clickhouse::Client::default()
        };
        let mut client =
            client.with_url(cfg.url.as_str().trim_end_matches('/')).with_database(&cfg.database).with_user(&cfg.user);
        if cfg.password.is_set() {
            client = client.with_password(cfg.password.expose());
        }
        // The server stops a query when the gateway would stop waiting for it:
        // abandoned queries must not pile up and starve the ones still wanted.
        client = client.with_setting("max_execution_time", cfg.timeout.as_secs_f64().ceil().max(1.0).to_string());
        Ok(ChClient {
            client,
            database: cfg.database.clone(),
            timeout: cfg.timeout,
            breakers,
            endpoint: endpoint(&cfg.url),
        })
    }

    /// The client for one call (the query modules of `backends` too): with the trace context when the call has
    /// one (a copy of the client's settings, on a path that waits for
    /// ClickHouse anyway), else the shared client.
    pub(super) fn traced(&self, p: Option<Propagation>) -> std::borrow::Cow<'_, clickhouse::Client> {
        let Some(p) = p else { return std::borrow::Cow::Borrowed(&self.client) };
        let mut client = self.client.clone().with_header("traceparent", p.traceparent);
        if let Some(state) = p.tracestate.as_ref().and_then(|s| s.to_str().ok()) {
            client = client.with_header("tracestate", state);
        }
        std::borrow::Cow::Owned(client)
    }

    /// The per-query deadline.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The breakers of its queries, one per kind of call.
    pub(super) fn breakers(&self) -> &ClickHouseBreakers {
        &self.breakers
    }

    /// `SELECT version()`: usable when the server answers a query.
    pub async fn ping(&self) -> Result<String, BackendError> {
        let version: String = timed_unguarded(Backend::ClickHouse, "ping", self.timeout, async {
            self.client.query("SELECT version()").fetch_one::<String>().await
        })
        .await
        .map_err(|e| e.at(&self.endpoint))?;
        Ok(format!("version {version}"))
    }
}

// ---- rows --------------------------------------------------------------------
//
// One row type per table where reading and writing share a shape, two where
// they do not. `fulfillments` is read whole, so [`FulfillmentRow`] serves both
// directions. `orders` and `order_lines` are not: an insert must give every
// column, including what only BI reads (`units`, `line_count`, the line's
// `currency` and `created_at`, the `is_deleted` tombstone), while a cold lookup
// reads only what a view holds, with FINAL having already dropped tombstones.
// One type for both would have every lookup fetch and decode columns it throws
// away. The write rows are checked against the DDL by a unit test below, so
// they cannot drift from the tables; the read rows name their columns in
// their queries.

/// What a cold lookup reads of `orders`, times in milliseconds.
#[derive(clickhouse::Row, serde::Deserialize)]
struct OrderViewRow {
    order_id: String,
    order_number: String,
    customer_id: String,
    channel: String,
    status: String,
    currency: String,
    subtotal: i64,
    tax: i64,
    shipping: i64,
    discount: i64,
    total: i64,
    promised_ms: Option<i64>,
    created_ms: i64,
    updated_ms: i64,
    version: u64,
    cdc: String,
}

/// What a cold lookup reads of `order_lines`.
#[derive(clickhouse::Row, serde::Deserialize)]
struct LineViewRow {
    order_id: String,
    line_id: String,
    sku: String,
    name: String,
    quantity: u32,
    unit_price: i64,
    status: String,
    version: u64,
}

/// A row of `orders`, as ingest inserts it: every column but `ingested_at`
/// (the server's default).
#[derive(clickhouse::Row, serde::Serialize)]
struct OrderRow {
    order_id: String,
    order_number: String,
    customer_id: String,
    channel: &'static str,
    status: &'static str,
    currency: String,
    subtotal: i64,
    tax: i64,
    shipping: i64,
    discount: i64,
    total: i64,
    units: u32,
    line_count: u16,
    country: String,
    #[serde(with = "clickhouse::serde::time::datetime64::millis::option")]
    promised_delivery_at: Option<OffsetDateTime>,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    created_at: OffsetDateTime,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    updated_at: OffsetDateTime,
    version: u64,
    is_deleted: u8,
    cdc: String,
}

/// A row of `order_lines`, as ingest inserts it.
#[derive(clickhouse::Row, serde::Serialize)]
struct LineRow {
    order_id: String,
    line_id: String,
    sku: String,
    name: String,
    quantity: u32,
    unit_price: i64,
    currency: String,
    status: &'static str,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    created_at: OffsetDateTime,
    version: u64,
    is_deleted: u8,
}

/// A row of `fulfillments`, read and written whole.
#[derive(clickhouse::Row, serde::Serialize, serde::Deserialize)]
struct FulfillmentRow {
    fulfillment_id: String,
    order_id: String,
    #[serde(rename = "type")]
    kind: String,
    status: String,
    carrier: String,
    tracking_number: String,
    line_ids: Vec<String>,
    #[serde(with = "clickhouse::serde::time::datetime64::millis::option")]
    shipped_at: Option<OffsetDateTime>,
    #[serde(with = "clickhouse::serde::time::datetime64::millis::option")]
    delivered_at: Option<OffsetDateTime>,
    version: u64,
}

fn dt(t: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.millis()) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn ts(t: OffsetDateTime) -> Timestamp {
    Timestamp((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

impl OrderRow {
    fn of(o: &Order) -> Self {
        OrderRow {
            order_id: o.order_id.clone(),
            order_number: o.order_number.clone(),
            customer_id: o.customer_id.clone(),
            channel: o.channel.as_str(),
            status: o.status.as_str(),
            currency: o.currency.clone(),
            subtotal: o.subtotal,
            tax: o.tax,
            shipping: o.shipping,
            discount: o.discount,
            total: o.total,
            units: o.lines.iter().map(|l| l.quantity).sum(),
            line_count: o.lines.len().min(u16::MAX as usize) as u16,
            country: o.shipping_address.as_ref().map(|a| a.country.clone()).unwrap_or_default(),
            promised_delivery_at: o.promised_delivery_at.map(dt),
            created_at: dt(o.created_at),
            updated_at: dt(o.updated_at),
            version: crate::model::ranked_version(o),
            is_deleted: u8::from(o.deleted),
            cdc: o.cdc.as_ref().and_then(|r| serde_json::to_string(r).ok()).unwrap_or_default(),
        }
    }
}

impl LineRow {
    fn of(o: &Order) -> impl Iterator<Item = LineRow> + '_ {
        o.lines.iter().map(move |l| LineRow {
            order_id: o.order_id.clone(),
            line_id: l.line_id.clone(),
            sku: l.sku.clone(),
            name: l.name.clone(),
            quantity: l.quantity,
            unit_price: l.unit_price,
            currency: o.currency.clone(),
            status: l.status.as_str(),
            created_at: dt(o.created_at),
            version: crate::model::ranked_version(o),
            is_deleted: u8::from(o.deleted),
        })
    }
}

impl FulfillmentRow {
    fn of(f: &Fulfillment) -> Self {
        FulfillmentRow {
            fulfillment_id: f.fulfillment_id.clone(),
            order_id: f.order_id.clone(),
            kind: f.kind.as_str().to_owned(),
            status: f.status.as_str().to_owned(),
            carrier: f.carrier.clone().unwrap_or_default(),
            tracking_number: f.tracking_number.clone().unwrap_or_default(),
            line_ids: f.line_ids.clone(),
            shipped_at: f.shipped_at.map(dt),
            delivered_at: f.delivered_at.map(dt),
            version: f.version,
        }
    }

    fn into_model(self) -> Result<Fulfillment, BackendError> {
        Ok(Fulfillment {
            kind: parse("type", &self.kind)?,
            status: parse("fulfillment status", &self.status)?,
            fulfillment_id: self.fulfillment_id,
            order_id: self.order_id,
            carrier: (!self.carrier.is_empty()).then_some(self.carrier),
            tracking_number: (!self.tracking_number.is_empty()).then_some(self.tracking_number),
            line_ids: self.line_ids,
            shipped_at: self.shipped_at.map(ts),
            delivered_at: self.delivered_at.map(ts),
            version: self.version,
        })
    }
}

fn parse<T: std::str::FromStr<Err = String>>(field: &str, v: &str) -> Result<T, BackendError> {
    v.parse().map_err(|e| BackendError::failed(Backend::ClickHouse, format!("{field}: {e}")))
}

impl ChClient {
    /// Latest views of `ids` from the analytical tables (orders older than the
    /// hot window live only here). ClickHouse keeps no PII, so these views
    /// carry no e-mail, phone or street address; the shipping country is kept.
    pub async fn get_orders(
        &self,
        ids: &[&str],
        trace: Option<&TraceParent>,
    ) -> Result<Vec<crate::model::OrderView>, BackendError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        trace::call(trace, "clickhouse", "get_orders", |p| self.get_orders_as(ids, p)).await
    }

    async fn get_orders_as(
        &self,
        ids: &[&str],
        p: Option<Propagation>,
    ) -> Result<Vec<crate::model::OrderView>, BackendError> {
        use crate::model::*;
        let client = self.traced(p);
        let ids: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
        let (orders, lines, fuls) = timed(&self.breakers.orders, "get_orders", self.timeout, async {
            let orders: Vec<OrderViewRow> = client
                .query(
                    "SELECT order_id, order_number, customer_id, channel, status, currency, subtotal, tax, shipping, \
                     discount, total, toUnixTimestamp64Milli(promised_delivery_at) AS promised_ms, \
                     toUnixTimestamp64Milli(created_at) AS created_ms, toUnixTimestamp64Milli(updated_at) AS updated_ms, \
                     version, cdc FROM orders FINAL WHERE order_id IN ?",
                )
                .bind(&ids)
                .fetch_all()
                .await?;
            let lines: Vec<LineViewRow> = client
                // Point reads on the base tables use the primary key (order_id);
                // the `*_latest` views scan. Lines of older versions are dropped below.
                .query("SELECT order_id, line_id, sku, name, quantity, unit_price, status, version FROM order_lines FINAL WHERE order_id IN ? ORDER BY order_id, line_id")
                .bind(&ids)
                .fetch_all()
                .await?;
            let fuls: Vec<FulfillmentRow> = client
                .query("SELECT ?fields FROM fulfillments FINAL WHERE order_id IN ?")
                .bind(&ids)
                .fetch_all()
                .await?;
            Ok::<_, clickhouse::error::Error>((orders, lines, fuls))
        })
        .await?;
        let fuls = fuls.into_iter().map(FulfillmentRow::into_model).collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(orders.len());
        for o in orders {
            let mut view = OrderView::new(&o.order_id);
            let order_lines = lines
                .iter()
                .filter(|l| l.order_id == o.order_id && l.version == o.version)
                .map(|l| {
                    Ok(OrderLine {
                        line_id: l.line_id.clone(),
                        sku: l.sku.clone(),
                        name: l.name.clone(),
                        quantity: l.quantity,
                        unit_price: l.unit_price,
                        status: parse("line status", &l.status)?,
                    })
                })
                .collect::<Result<Vec<_>, BackendError>>()?;
            let mut order_lines = order_lines;
            if !o.cdc.is_empty() {
                order_lines.sort_by(crate::model::line_order);
            }
            view.apply(Component::Order(Order {
                order_id: o.order_id.clone(),
                order_number: o.order_number,
                customer_id: o.customer_id,
                channel: parse("channel", &o.channel)?,
                status: parse("status", &o.status)?,
                currency: o.currency,
                subtotal: o.subtotal,
                tax: o.tax,
                shipping: o.shipping,
                discount: o.discount,
                total: o.total,
                lines: order_lines,
                shipping_address: None,
                email: None,
                phone: None,
                promised_delivery_at: o.promised_ms.map(Timestamp),
                created_at: Timestamp(o.created_ms),
                updated_at: Timestamp(o.updated_ms),
                version: crate::model::unranked(o.version),
                deleted: false,
                // Written by this gateway: unreadable only if edited by hand.
                cdc: if o.cdc.is_empty() { None } else { serde_json::from_str(&o.cdc).ok() },
            }));
            for f in fuls.iter().filter(|f| f.order_id == o.order_id) {
                view.apply(Component::Fulfillment(f.clone()));
            }
            out.push(view);
        }
        Ok(out)
    }

    /// The id of the order with this number, if ClickHouse has it: a read of
    /// `order_numbers` by its primary key, never a scan of `orders` (ordered
    /// by id). A deleted order's number still names it; the lookup by id that
    /// follows finds it gone.
    pub async fn find_by_number(
        &self,
        number: &str,
        trace: Option<&TraceParent>,
    ) -> Result<Option<String>, BackendError> {
        trace::call(trace, "clickhouse", "find_by_number", |p| async move {
            let client = self.traced(p);
            timed(&self.breakers.numbers, "find_by_number", self.timeout, async {
                client
                    .query("SELECT order_id FROM order_numbers WHERE order_number = ? LIMIT 1")
                    .bind(number)
                    .fetch_optional::<String>()
                    .await
            })
            .await
        })
        .await
    }
}

// ---- ingest: inserts and what ClickHouse already knows ------------------------
//
// Under the configured deadline (inserts are a batch's few thousand rows) and
// no breaker (see [`timed_unguarded`]). A timed-out insert is dropped before
// `end`, which aborts it: nothing of it is committed, and the retry inserts it
// again whole.

/// Rows inserted, per table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    pub orders: u64,
    pub lines: u64,
    pub fulfillments: u64,
}

/// What ClickHouse holds of one order, over all its versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownOrder {
    pub order_id: String,
    /// The earliest creation time of any version.
    pub created_at: Timestamp,
    pub max_version: u64,
    /// Whether the newest version is a deletion.
    pub deleted: bool,
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct KnownRow {
    order_id: String,
    created_ms: i64,
    max_version: u64,
    last_deleted: u8,
}

impl ChClient {
    /// Inserts the components: orders with their lines, and fulfilments. Each
    /// table's insert is atomic; a replay inserts rows that the version merge
    /// (ReplacingMergeTree) folds away.
    pub async fn insert(&self, components: &[&Component]) -> Result<Inserted, BackendError> {
        let (mut orders, mut fuls): (Vec<&Order>, Vec<&Fulfillment>) = (Vec::new(), Vec::new());
        for c in components {
            match c {
                Component::Order(o) => orders.push(o),
                Component::Fulfillment(f) => fuls.push(f),
            }
        }
        Ok(Inserted {
            orders: self.insert_rows("insert_orders", "orders", orders.iter().map(|o| OrderRow::of(o))).await?,
            lines: self
                .insert_rows("insert_order_lines", "order_lines", orders.iter().flat_map(|o| LineRow::of(o)))
                .await?,
            fulfillments: self
                .insert_rows("insert_fulfillments", "fulfillments", fuls.iter().map(|f| FulfillmentRow::of(f)))
                .await?,
        })
    }

    /// One insert of `rows` into `table`; none is sent when there are no rows.
    async fn insert_rows<T>(
        &self,
        call: &'static str,
        table: &str,
        rows: impl Iterator<Item = T>,
    ) -> Result<u64, BackendError>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite,
    {
        let mut rows = rows.peekable();
        if rows.peek().is_none() {
            return Ok(0);
        }
        timed_unguarded(Backend::ClickHouse, call, self.timeout, async {
            let mut ins = self.client.insert::<T>(table).await?;
            let mut n = 0;
            for row in rows {
                ins.write(&row).await?;
                n += 1;
            }
            ins.end().await.map_err(|e| anyhow::anyhow!("insert into {table}: {e}"))?;
            Ok::<_, anyhow::Error>(n)
        })
        .await
    }

    /// What ClickHouse holds of `ids`; orders it has never seen are absent.
    pub async fn known_orders(&self, ids: &[&str]) -> Result<Vec<KnownOrder>, BackendError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<KnownRow> = timed_unguarded(Backend::ClickHouse, "known_orders", self.timeout, async {
            self.client
                .query(
                    "SELECT order_id, toUnixTimestamp64Milli(min(created_at)) AS created_ms, max(version) AS max_version, \
                     argMax(is_deleted, version) AS last_deleted FROM orders WHERE order_id IN ? GROUP BY order_id",
                )
                .bind(ids)
                .fetch_all()
                .await
        })
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| KnownOrder {
                order_id: r.order_id,
                created_at: Timestamp(r.created_ms),
                max_version: r.max_version,
                deleted: r.last_deleted != 0,
            })
            .collect())
    }
}

// ---- setup: database, tables, DDL --------------------------------------------
//
// Under [`ADMIN_TIMEOUT`] and no breaker (see [`timed_unguarded`]). The
// client's `max_execution_time` is the read deadline, so DDL raises it to match.

impl ChClient {
    /// The configured database.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Creates the configured database if it does not exist. Asked of
    /// `default`, as the configured one may not exist yet.
    pub async fn create_database(&self) -> Result<(), BackendError> {
        if self.database == "default" {
            return Ok(());
        }
        let sql = format!("CREATE DATABASE IF NOT EXISTS `{}`", self.database.replace('`', ""));
        let client = self.client.clone().with_database("default");
        timed_unguarded(Backend::ClickHouse, "create_database", ADMIN_TIMEOUT, async {
            admin_query(&client, &sql)
                .execute()
                .await
                .map_err(|e| anyhow::anyhow!("creating database {}: {e}", self.database))
        })
        .await
    }

    /// Names of the tables and views of the configured database.
    pub async fn tables(&self) -> Result<Vec<String>, BackendError> {
        timed_unguarded(Backend::ClickHouse, "list_tables", ADMIN_TIMEOUT, async {
            admin_query(&self.client, "SELECT name FROM system.tables WHERE database = ?")
                .bind(&self.database)
                .fetch_all::<String>()
                .await
                .map_err(|e| anyhow::anyhow!("listing tables of {}: {e}", self.database))
        })
        .await
    }

    /// Column names of `table` in the configured database.
    pub async fn columns(&self, table: &str) -> Result<Vec<String>, BackendError> {
        timed_unguarded(Backend::ClickHouse, "list_columns", ADMIN_TIMEOUT, async {
            admin_query(&self.client, "SELECT name FROM system.columns WHERE database = ? AND table = ?")
                .bind(&self.database)
                .bind(table)
                .fetch_all::<String>()
                .await
                .map_err(|e| anyhow::anyhow!("columns of {}.{table}: {e}", self.database))
        })
        .await
    }

    /// The comment of `table` in the configured database (None when there is
    /// no such table).
    pub async fn table_comment(&self, table: &str) -> Result<Option<String>, BackendError> {
        timed_unguarded(Backend::ClickHouse, "table_comment", ADMIN_TIMEOUT, async {
            admin_query(&self.client, "SELECT comment FROM system.tables WHERE database = ? AND name = ?")
                .bind(&self.database)
                .bind(table)
                .fetch_optional::<String>()
                .await
                .map_err(|e| anyhow::anyhow!("comment of {}.{table}: {e}", self.database))
        })
        .await
    }

    /// Sets the comment of `table` in the configured database.
    pub async fn set_table_comment(&self, table: &str, comment: &str) -> Result<(), BackendError> {
        let sql = format!("ALTER TABLE `{}` MODIFY COMMENT ?", table.replace('`', ""));
        timed_unguarded(Backend::ClickHouse, "ddl", ADMIN_TIMEOUT, async {
            admin_query(&self.client, &sql)
                .bind(comment)
                .execute()
                .await
                .map_err(|e| anyhow::anyhow!("setting the comment of {}.{table}: {e}", self.database))
        })
        .await
    }

    /// Copies the number of every order in `orders` into `order_numbers`:
    /// one statement per partition of `orders`, each under [`ADMIN_TIMEOUT`],
    /// so a production-sized table is copied in bounded steps. Copying again
    /// is harmless (the table keeps one row per number and order). Returns
    /// the partitions copied.
    pub async fn backfill_order_numbers(&self) -> Result<usize, BackendError> {
        let partitions: Vec<String> = timed_unguarded(Backend::ClickHouse, "list_partitions", ADMIN_TIMEOUT, async {
            admin_query(
                &self.client,
                "SELECT DISTINCT partition_id FROM system.parts \
                 WHERE database = ? AND table = 'orders' AND active ORDER BY partition_id",
            )
            .bind(&self.database)
            .fetch_all::<String>()
            .await
            .map_err(|e| anyhow::anyhow!("partitions of {}.orders: {e}", self.database))
        })
        .await?;
        for partition in &partitions {
            timed_unguarded(Backend::ClickHouse, "backfill_order_numbers", ADMIN_TIMEOUT, async {
                admin_query(
                    &self.client,
                    "INSERT INTO order_numbers (order_number, order_id) \
                     SELECT DISTINCT order_number, order_id FROM orders WHERE _partition_id = ?",
                )
                .bind(partition)
                .execute()
                .await
                .map_err(|e| {
                    anyhow::anyhow!("copying order numbers of {}.orders partition {partition}: {e}", self.database)
                })
            })
            .await?;
        }
        Ok(partitions.len())
    }

    /// Runs one DDL statement in the configured database; `what` names it in
    /// the error.
    pub async fn execute_ddl(&self, what: &str, stmt: &str) -> Result<(), BackendError> {
        timed_unguarded(Backend::ClickHouse, "ddl", ADMIN_TIMEOUT, async {
            admin_query(&self.client, stmt).execute().await.map_err(|e| anyhow::anyhow!("{what}: {e}"))
        })
        .await
    }
}

/// A query with the server's time limit raised to [`ADMIN_TIMEOUT`].
fn admin_query(client: &clickhouse::Client, sql: &str) -> clickhouse::query::Query {
    client.query(sql).with_setting("max_execution_time", ADMIN_TIMEOUT.as_secs().to_string())
}

#[cfg(test)]
mod tests {
    use clickhouse::Row;

    use super::*;
    use crate::setup::{created_name, ddl_columns, split_sql, CLICKHOUSE_DDL};

    /// The columns of `table` an insert gives: all but those with a default.
    fn insert_columns(table: &str) -> Vec<String> {
        let stmt = split_sql(CLICKHOUSE_DDL).into_iter().find(|s| created_name(s) == Some(table)).unwrap();
        let defaulted: Vec<&str> =
            stmt.lines().filter(|l| l.contains(" DEFAULT ")).filter_map(|l| l.split_whitespace().next()).collect();
        ddl_columns(&stmt).into_iter().filter(|c| !defaulted.contains(&c.as_str())).collect()
    }

    #[test]
    fn write_rows_are_the_tables_columns_in_order() {
        assert_eq!(OrderRow::COLUMN_NAMES, insert_columns("orders"));
        assert_eq!(LineRow::COLUMN_NAMES, insert_columns("order_lines"));
        assert_eq!(FulfillmentRow::COLUMN_NAMES, insert_columns("fulfillments"));
        assert!(!OrderRow::COLUMN_NAMES.contains(&"ingested_at"), "the server fills ingested_at");
    }

    #[test]
    fn a_fulfilment_row_gives_back_the_fulfilment_it_was_made_of() {
        let f = Fulfillment {
            fulfillment_id: "F1".into(),
            order_id: "o".into(),
            kind: "ship".parse().unwrap(),
            status: "delivered".parse().unwrap(),
            carrier: Some("DHL".into()),
            tracking_number: None,
            line_ids: vec!["L1".into()],
            shipped_at: Some(Timestamp(1_700_000_000_123)),
            delivered_at: None,
            version: 3,
        };
        assert_eq!(FulfillmentRow::of(&f).into_model().unwrap(), f);
    }
}
