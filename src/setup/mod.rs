//! `order-gateway setup`: the Kafka topics, the event schemas in the registry,
//! the Elasticsearch index template, first index and aliases, and the
//! ClickHouse tables. Idempotent: a second run finds everything in place,
//! changes nothing and says so, one line per object.

use serde_json::{json, Value};

use crate::backends::Backends;
use crate::config::Config;
use crate::events::avro::{FULFILLMENT_EVENT_AVSC, ORDER_EVENT_AVSC};
use crate::model::Timestamp;

/// The index template as shipped; `setup` fills in pattern, shards, replicas.
pub const ORDERS_TEMPLATE: &str = include_str!("../../schemas/elasticsearch/orders-template.json");
/// The ClickHouse DDL as shipped.
pub const CLICKHOUSE_DDL: &str = include_str!("../../schemas/clickhouse/001_tables.sql");

/// Options of `setup`.
#[derive(Debug, Clone, clap::Args)]
pub struct SetupArgs {
    /// Roll the write alias over when the configured conditions are met, and
    /// delete indices wholly older than the hot window.
    #[arg(long)]
    pub rollover: bool,
    /// Run only these parts, comma separated or repeated: topics, schemas,
    /// elasticsearch, clickhouse (default: all of them).
    #[arg(long, value_name = "PART[,PART...]", value_delimiter = ',')]
    pub only: Vec<Part>,
}

/// One part of `setup`, as `--only` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Topics,
    Schemas,
    Elasticsearch,
    Clickhouse,
}

impl Part {
    /// Every part, in the order `setup` runs them.
    pub const ALL: [Part; 4] = [Part::Topics, Part::Schemas, Part::Elasticsearch, Part::Clickhouse];

    pub fn name(self) -> &'static str {
        match self {
            Part::Topics => "topics",
            Part::Schemas => "schemas",
            Part::Elasticsearch => "elasticsearch",
            Part::Clickhouse => "clickhouse",
        }
    }
}

impl std::str::FromStr for Part {
    type Err = String;

    fn from_str(s: &str) -> Result<Part, String> {
        Part::ALL.into_iter().find(|p| p.name() == s.trim()).ok_or_else(|| {
            let names: Vec<&str> = Part::ALL.iter().map(|p| p.name()).collect();
            format!("unknown setup part {s:?}; expected one of: {}", names.join(", "))
        })
    }
}

impl SetupArgs {
    /// Whether `part` runs: every part when `--only` is not given.
    pub fn runs(&self, part: Part) -> bool {
        self.only.is_empty() || self.only.contains(&part)
    }
}

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Unchanged,
    Updated,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Created => "created",
            Outcome::Unchanged => "exists, unchanged",
            Outcome::Updated => "updated",
        })
    }
}

fn say(what: &str, outcome: Outcome, extra: &str) {
    println!("{what}: {outcome}{extra}");
}

/// Runs `setup`; stops at the first failure, naming the object and backend.
pub async fn run(config: &Config, args: &SetupArgs) -> anyhow::Result<()> {
    let backends = Backends::from_config(config)?;
    if args.runs(Part::Topics) {
        topics(config, &backends).await?;
    }
    if args.runs(Part::Schemas) {
        schemas(config, &backends).await?;
    }
    if args.runs(Part::Elasticsearch) {
        elasticsearch(config, &backends).await?;
    }
    if args.runs(Part::Clickhouse) {
        clickhouse(&backends).await?;
    }
    // An explicit request: runs whatever `--only` says (it needs the write alias
    // that the elasticsearch part creates).
    if args.rollover {
        rollover(config, &backends).await?;
    }
    Ok(())
}

// ---- Kafka ------------------------------------------------------------------

async fn topics(config: &Config, backends: &Backends) -> anyhow::Result<()> {
    let t = &config.topics;
    let kafka = &backends.kafka;
    let existing = kafka.topics().await?;
    let mut wanted = vec![t.orders.as_str(), t.fulfillments.as_str(), t.dead_letter.as_str()];
    for cdc in [&t.cdc, &t.cdc_lines] {
        if !cdc.is_empty() {
            wanted.push(cdc.as_str());
        }
    }
    for name in wanted {
        let what = format!("kafka topic {name}");
        if let Some((_, partitions)) = existing.iter().find(|(n, _)| n == name) {
            let note = if *partitions as i32 != t.partitions {
                format!(" ({partitions} partitions; topics.partitions says {}, not changed)", t.partitions)
            } else {
                format!(" ({partitions} partitions)")
            };
            say(&what, Outcome::Unchanged, &note);
            continue;
        }
        if kafka.create_topic(name, t.partitions, t.replication_factor).await? {
            say(&what, Outcome::Created, &format!(" ({} partitions)", t.partitions));
        } else {
            say(&what, Outcome::Unchanged, "");
        }
    }
    Ok(())
}

// ---- schema registry -------------------------------------------------------

async fn schemas(config: &Config, backends: &Backends) -> anyhow::Result<()> {
    let registry = &backends.schema_registry;
    for (topic, schema) in
        [(&config.topics.orders, ORDER_EVENT_AVSC), (&config.topics.fulfillments, FULFILLMENT_EVENT_AVSC)]
    {
        let subject = format!("{topic}-value");
        let what = format!("schema registry subject {subject}");
        match registry.lookup(&subject, schema).await? {
            Some(id) => say(&what, Outcome::Unchanged, &format!(" (schema id {id})")),
            None => {
                let id = registry.register(&subject, schema).await?;
                say(&what, Outcome::Created, &format!(" (schema id {id})"));
            }
        }
    }
    Ok(())
}

// ---- Elasticsearch -----------------------------------------------------------

/// Names derived from the read alias: template, index pattern, first index.
pub fn index_names(read_alias: &str) -> (String, String, String) {
    (read_alias.to_owned(), format!("{read_alias}-*"), format!("{read_alias}-000001"))
}

/// The template body to PUT, with a hash of itself in `_meta` so a later run
/// can tell "unchanged" without comparing Elasticsearch's normalised echo.
///
/// Every index the template creates (the first, and each rollover) joins the
/// read alias, so reads cover all of them.
pub fn template_body(read_alias: &str, pattern: &str, shards: u32, replicas: u32) -> Value {
    let mut t: Value = serde_json::from_str(ORDERS_TEMPLATE).expect("orders-template.json is valid JSON");
    let obj = t.as_object_mut().expect("template is an object");
    obj.remove("_comment");
    obj.insert("index_patterns".into(), json!([pattern]));
    t["template"]["settings"]["number_of_shards"] = json!(shards);
    t["template"]["settings"]["number_of_replicas"] = json!(replicas);
    t["template"]["aliases"] = json!({ read_alias: {} });
    let hash = fnv(t.to_string().as_bytes());
    t["_meta"] = json!({ "managed_by": "order-gateway setup", "content_hash": format!("{hash:016x}") });
    t
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

async fn elasticsearch(config: &Config, backends: &Backends) -> anyhow::Result<()> {
    let es = &config.elasticsearch;
    let client = &backends.elasticsearch;
    let (name, pattern, first) = index_names(&es.read_alias);
    let body = template_body(&es.read_alias, &pattern, config.setup.index_shards, config.setup.index_replicas);
    let what = format!("elasticsearch index template {name} ({pattern})");
    let outcome = match client.index_template_meta(&name).await? {
        Some(meta) if meta["content_hash"] == body["_meta"]["content_hash"] => Outcome::Unchanged,
        Some(_) => Outcome::Updated,
        None => Outcome::Created,
    };
    let mappings = body["template"]["mappings"].clone();
    if outcome != Outcome::Unchanged {
        client.put_index_template(&name, body).await?;
    }
    say(&what, outcome, "");

    let indices = client.alias_indices(&es.write_alias).await?;
    if outcome == Outcome::Updated && !indices.is_empty() {
        // Fields added since the indices were made (a strict mapping refuses
        // a document with a field it lacks); a changed field type is refused
        // here, and needs a new index (`setup --rollover`).
        client.put_mapping(&es.read_alias, json!({ "properties": mappings["properties"] })).await?;
        say(&format!("elasticsearch mapping of the indices behind {}", es.read_alias), Outcome::Updated, "");
    }
    if !indices.is_empty() {
        let write_index = indices.iter().find(|(_, is_write)| *is_write).map(|(i, _)| i.as_str()).unwrap_or_default();
        say(
            &format!("elasticsearch write alias {}", es.write_alias),
            Outcome::Unchanged,
            &format!(" (-> {write_index})"),
        );
        return Ok(());
    }
    let aliases =
        json!({ "aliases": { es.write_alias.clone(): { "is_write_index": true }, es.read_alias.clone(): {} } });
    if client.create_index(&first, aliases).await? {
        say(
            &format!("elasticsearch index {first} with aliases {} and {}", es.write_alias, es.read_alias),
            Outcome::Created,
            "",
        );
    } else {
        // The first index exists without the aliases (created by hand): add them.
        client
            .update_aliases(json!([
                { "add": { "index": first, "alias": es.write_alias, "is_write_index": true } },
                { "add": { "index": first, "alias": es.read_alias } }
            ]))
            .await?;
        say(
            &format!("elasticsearch aliases {} and {} on {first}", es.write_alias, es.read_alias),
            Outcome::Updated,
            "",
        );
    }
    Ok(())
}

// ---- ClickHouse --------------------------------------------------------------

/// Splits the DDL into statements: `;` ends one, `--` comments are dropped.
pub fn split_sql(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in sql.lines() {
        let line = match line.find("--") {
            Some(i) if !line[..i].contains('\'') => &line[..i],
            _ => line,
        };
        for (i, part) in line.split(';').enumerate() {
            if i > 0 {
                let stmt = cur.trim().to_owned();
                if !stmt.is_empty() {
                    out.push(stmt);
                }
                cur.clear();
            }
            cur.push_str(part);
        }
        cur.push('\n');
    }
    let stmt = cur.trim().to_owned();
    if !stmt.is_empty() {
        out.push(stmt);
    }
    out
}

/// Column names of a `CREATE TABLE` statement (empty for views).
pub fn ddl_columns(stmt: &str) -> Vec<String> {
    if !stmt.starts_with("CREATE TABLE") {
        return Vec::new();
    }
    let (Some(open), Some(engine)) = (stmt.find('('), stmt.find("ENGINE")) else { return Vec::new() };
    stmt[open + 1..engine]
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
        .map(str::to_owned)
        .collect()
}

/// The object a `CREATE ... IF NOT EXISTS name` statement creates.
pub fn created_name(stmt: &str) -> Option<&str> {
    let i = stmt.find("IF NOT EXISTS")?;
    if !stmt[..i].contains("CREATE") {
        return None;
    }
    stmt[i + "IF NOT EXISTS".len()..].split_whitespace().next()
}

/// The table and column of an `ALTER TABLE t ADD COLUMN IF NOT EXISTS c ...`
/// statement: a column added after the table was first released.
pub fn added_column(stmt: &str) -> Option<(&str, &str)> {
    let rest = stmt.trim_start().strip_prefix("ALTER TABLE ")?;
    let (table, rest) = rest.split_once(char::is_whitespace)?;
    let rest = rest.trim_start().strip_prefix("ADD COLUMN IF NOT EXISTS ")?;
    Some((table, rest.split_whitespace().next()?))
}

/// The comment of a `CREATE TABLE` statement (its `COMMENT '...'` after the engine).
pub fn ddl_table_comment(stmt: &str) -> Option<&str> {
    let after_engine = &stmt[stmt.find("ENGINE")?..];
    let comment = &after_engine[after_engine.find("COMMENT '")? + "COMMENT '".len()..];
    comment.split('\'').next()
}

/// The table of order numbers, and the materialized view that fills it from
/// every insert into `orders`.
const NUMBERS_TABLE: &str = "order_numbers";
const NUMBERS_VIEW: &str = "order_numbers_mv";
/// The comment `order_numbers` carries from just before its view is created
/// until the orders that were there before the view have been copied: a run
/// cut short anywhere in between finds it and copies them again.
pub const NUMBERS_PENDING: &str = "Order number to order id: copy of the existing orders pending (order-gateway setup)";

async fn clickhouse(backends: &Backends) -> anyhow::Result<()> {
    let ch = &backends.clickhouse;
    let db = ch.database();
    ch.create_database().await?;
    let existing = ch.tables().await?;
    let mut numbers_comment = None;
    let statements = split_sql(CLICKHOUSE_DDL);
    // Columns added since a table was first released: (table, column, statement).
    let additions: Vec<(&str, &str, &String)> =
        statements.iter().filter_map(|s| added_column(s).map(|(t, c)| (t, c, s))).collect();
    for stmt in &statements {
        let Some(name) = created_name(stmt).map(str::to_owned) else { continue };
        if name == NUMBERS_TABLE {
            numbers_comment = ddl_table_comment(stmt).map(str::to_owned);
        }
        let kind = if stmt.contains("CREATE MATERIALIZED VIEW") {
            "materialized view"
        } else if stmt.contains("CREATE VIEW") {
            "view"
        } else {
            "table"
        };
        let what = format!("clickhouse {kind} {db}.{name}");
        if existing.contains(&name) {
            let want = ddl_columns(stmt);
            let mut added = Vec::new();
            if !want.is_empty() {
                let have = ch.columns(&name).await?;
                let mut missing: Vec<&str> = want.iter().filter(|c| !have.contains(c)).map(String::as_str).collect();
                // A table of an earlier release: add what was added since.
                for (table, column, alter) in &additions {
                    if *table == name && missing.contains(column) {
                        ch.execute_ddl(&format!("adding the column {column} to {db}.{name}"), alter).await?;
                        missing.retain(|m| m != column);
                        added.push(*column);
                    }
                }
                if !missing.is_empty() {
                    anyhow::bail!(
                        "clickhouse: {kind} {db}.{name} exists but lacks the columns {missing:?}; \
                         it is not ours: drop it or set clickhouse.database to another database"
                    );
                }
            }
            if added.is_empty() {
                say(&what, Outcome::Unchanged, "");
            } else {
                say(&what, Outcome::Updated, &format!(" (columns {} added)", added.join(", ")));
            }
            continue;
        }
        if name == NUMBERS_VIEW {
            // From here on every insert reaches the table; what `orders` holds
            // already must be copied, and the comment says so until it is.
            ch.set_table_comment(NUMBERS_TABLE, NUMBERS_PENDING).await?;
        }
        ch.execute_ddl(&format!("creating {kind} {db}.{name}"), stmt).await?;
        say(&what, Outcome::Created, "");
    }
    if ch.table_comment(NUMBERS_TABLE).await?.as_deref() == Some(NUMBERS_PENDING) {
        let partitions = ch.backfill_order_numbers().await?;
        let done = numbers_comment.as_deref().unwrap_or_default();
        ch.set_table_comment(NUMBERS_TABLE, done).await?;
        say(
            &format!("clickhouse table {db}.{NUMBERS_TABLE}"),
            Outcome::Updated,
            &format!(" (numbers of the orders already in {db}.orders copied, {partitions} partition(s))"),
        );
    }
    Ok(())
}

// ---- rollover and retention ---------------------------------------------------

/// Indices to delete: every document older than `cutoff` (by its newest
/// `order.created_at`), never the write index; an empty index has no newest
/// document and is kept.
pub fn expired_indices(newest: &[(String, Option<i64>)], write_index: &str, cutoff: Timestamp) -> Vec<String> {
    newest
        .iter()
        .filter(|(index, max)| index != write_index && max.is_some_and(|m| m < cutoff.millis()))
        .map(|(index, _)| index.clone())
        .collect()
}

async fn rollover(config: &Config, backends: &Backends) -> anyhow::Result<()> {
    let es = &config.elasticsearch;
    let client = &backends.elasticsearch;
    let max_age = format!("{}s", config.setup.rollover_max_age.as_secs().max(1));
    let r = client
        .rollover(&es.write_alias, json!({ "max_age": max_age, "max_docs": config.setup.rollover_max_docs }))
        .await?;
    let write_index = if r.rolled_over {
        println!("elasticsearch rollover of {}: rolled over {} -> {}", es.write_alias, r.old_index, r.new_index);
        r.new_index
    } else {
        println!(
            "elasticsearch rollover of {}: not needed (max_age {max_age}, max_docs {})",
            es.write_alias, config.setup.rollover_max_docs
        );
        r.old_index
    };

    let newest = client.newest_per_index(&es.read_alias, "order.created_at").await?;
    let cutoff = Timestamp(Timestamp::now().millis() - config.ingest.hot_window.as_millis() as i64);
    let expired = expired_indices(&newest, &write_index, cutoff);
    if expired.is_empty() {
        println!("elasticsearch retention: no index wholly older than {}", cutoff);
    }
    for index in expired {
        client.delete_index(&index).await?;
        println!("elasticsearch retention: deleted {index} (every order created before {cutoff})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_splits_into_its_statements() {
        let stmts = split_sql(CLICKHOUSE_DDL);
        let names: Vec<&str> = stmts.iter().filter_map(|s| created_name(s)).collect();
        assert_eq!(
            names,
            [
                "orders",
                "order_lines",
                "fulfillments",
                "orders_latest",
                "fulfillments_latest",
                "order_lines_latest",
                NUMBERS_TABLE,
                NUMBERS_VIEW
            ]
        );
        let numbers = stmts.iter().find(|s| created_name(s) == Some(NUMBERS_TABLE)).unwrap();
        assert_eq!(ddl_columns(numbers), ["order_number", "order_id"]);
        let comment = ddl_table_comment(numbers).expect("order_numbers has a comment");
        assert!(comment.starts_with("Order number to order id") && comment != NUMBERS_PENDING, "{comment}");
        assert_eq!(ddl_table_comment(&stmts[0]), None, "orders has column comments only");
        assert!(stmts.iter().all(|s| !s.contains("--") && !s.ends_with(';')));
        assert_eq!(split_sql("SELECT 1; -- c\n\nSELECT 2;"), ["SELECT 1", "SELECT 2"]);
        let cols = ddl_columns(&stmts[0]);
        assert_eq!(cols.first().map(String::as_str), Some("order_id"));
        assert!(cols.contains(&"is_deleted".to_string()) && cols.contains(&"ingested_at".to_string()), "{cols:?}");
        assert!(ddl_columns(&stmts[3]).is_empty(), "views have no column list");
        let alters: Vec<_> = stmts.iter().filter_map(|s| added_column(s)).collect();
        assert_eq!(alters, [("orders", "cdc")]);
    }

    #[test]
    fn template_is_stable_and_reflects_settings() {
        let a = template_body("orders", "orders-*", 1, 0);
        assert_eq!(a, template_body("orders", "orders-*", 1, 0));
        assert_ne!(a["_meta"]["content_hash"], template_body("orders", "orders-*", 2, 0)["_meta"]["content_hash"]);
        assert_eq!(a["index_patterns"][0], "orders-*");
        assert_eq!(a["template"]["mappings"]["dynamic"], "strict");
        assert!(a.get("_comment").is_none());
    }

    #[test]
    fn template_maps_every_field_of_a_view() {
        // Every leaf of a view's JSON must be mapped, or a strict index refuses it.
        let v = crate::model::OrderView {
            order_id: "o".into(),
            order: Some(crate::model::fixtures::order(1)),
            fulfillments: vec![],
        };
        let doc = serde_json::to_value(&v).unwrap();
        let mapping = &template_body("x", "x-*", 1, 0)["template"]["mappings"];
        fn check(doc: &Value, mapping: &Value, path: &str) {
            if let Value::Object(fields) = doc {
                for (k, v) in fields {
                    let m = &mapping["properties"][k];
                    assert!(!m.is_null(), "{path}.{k} is not mapped");
                    if m["enabled"] == false {
                        continue; // stored, not indexed
                    }
                    match v {
                        Value::Array(items) => items.iter().for_each(|i| check(i, m, &format!("{path}.{k}"))),
                        _ => check(v, m, &format!("{path}.{k}")),
                    }
                }
            }
        }
        check(&doc, mapping, "");
    }

    #[test]
    fn only_wholly_old_indices_expire() {
        let cutoff = Timestamp(1_000);
        let newest = vec![
            ("o-1".to_string(), Some(500)),
            ("o-2".to_string(), Some(1_500)),
            ("o-3".to_string(), None),
            ("o-4".to_string(), Some(10)),
        ];
        assert_eq!(expired_indices(&newest, "o-4", cutoff), ["o-1"]);
    }

    #[test]
    fn only_parses_part_names_and_names_a_bad_one() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            setup: SetupArgs,
        }
        let parse =
            |args: &[&str]| Cli::try_parse_from(std::iter::once("setup").chain(args.iter().copied())).map(|c| c.setup);

        let all = parse(&[]).unwrap();
        assert!(all.only.is_empty() && !all.rollover);
        assert!(Part::ALL.iter().all(|p| all.runs(*p)));

        let one = parse(&["--only", "schemas"]).unwrap();
        assert_eq!(one.only, [Part::Schemas]);
        assert!(one.runs(Part::Schemas) && !one.runs(Part::Topics) && !one.runs(Part::Elasticsearch));

        let two = parse(&["--only=elasticsearch,clickhouse", "--rollover"]).unwrap();
        assert_eq!(two.only, [Part::Elasticsearch, Part::Clickhouse]);
        assert!(two.rollover && !two.runs(Part::Schemas));
        assert_eq!(parse(&["--only", "topics", "--only", "schemas"]).unwrap().only, [Part::Topics, Part::Schemas]);

        let err = parse(&["--only", "schemas,indices"]).unwrap_err().to_string();
        assert!(err.contains("\"indices\"") && err.contains("--only"), "{err}");
        assert!(err.contains("topics, schemas, elasticsearch, clickhouse"), "{err}");
        assert!(parse(&["--only", ""]).is_err(), "an empty part is refused");
        assert_eq!("clickhouse".parse::<Part>(), Ok(Part::Clickhouse));
    }

    #[test]
    fn names_follow_the_read_alias() {
        assert_eq!(index_names("orders"), ("orders".into(), "orders-*".into(), "orders-000001".into()));
    }
}
