//! The Elasticsearch client (operational store).
//!
//! One client per node of `elasticsearch.urls` (or `url`), every call sent
//! through [`Nodes`]: round the nodes, away from one that does not answer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use elasticsearch::auth::{ClientCertificate, Credentials};
use elasticsearch::cert::CertificateValidation;
use elasticsearch::cluster::ClusterHealthParts;
use elasticsearch::http::headers::{HeaderMap, HeaderValue, AUTHORIZATION};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::Elasticsearch;

use crate::telemetry::context::TraceParent;
use crate::telemetry::trace::{self, Propagation};

use elasticsearch::http::request::JsonBody;
use elasticsearch::http::Method;
use elasticsearch::indices::IndicesRefreshParts;
use elasticsearch::params::Refresh;
use elasticsearch::{BulkParts, SearchParts};
use serde_json::{json, Value};
use url::Url;

use super::es_nodes::{Nodes, Retry};
use super::{timed, timed_unguarded, Backend, BackendError, Breaker, Refused, ADMIN_TIMEOUT};
use crate::config::ElasticsearchConfig;
use crate::model::OrderView;

/// Shared Elasticsearch client with the configured deadline.
#[derive(Clone)]
pub struct EsClient {
    nodes: Arc<Nodes>,
    timeout: Duration,
    breaker: Arc<Breaker>,
    /// host:port of every node, for errors that must say where.
    endpoint: String,
    /// What `ping` checks: the indices lookups read.
    read_alias: String,
}

/// Whether a call goes through the backend's breaker.
#[derive(Clone, Copy)]
enum Guard {
    /// The gateway's reads.
    Breaker,
    /// Pings and the tools' calls (see [`timed_unguarded`]).
    None,
}

/// The `Authorization` header of basic auth or an API key, if configured.
fn authorization(cfg: &ElasticsearchConfig) -> Option<String> {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    if cfg.api_key.is_set() {
        let key = cfg.api_key.expose();
        // "id:api_key" as created, or the `encoded` form (base64 has no ':').
        return Some(format!("ApiKey {}", if key.contains(':') { b64(key) } else { key.to_string() }));
    }
    (!cfg.username.is_empty()).then(|| format!("Basic {}", b64(&format!("{}:{}", cfg.username, cfg.password.expose()))))
}

/// What every node's client is built with: credentials, TLS and deadline.
struct Shared {
    timeout: Duration,
    headers: HeaderMap,
    /// PEM of the CAs of `tls.ca_file`.
    ca: Option<Vec<u8>>,
    /// PEM of the client key and certificate chain (mutual TLS).
    identity: Option<Vec<u8>>,
}

impl Shared {
    fn new(cfg: &ElasticsearchConfig) -> anyhow::Result<Self> {
        let mut shared = Shared { timeout: cfg.timeout, headers: HeaderMap::new(), ca: None, identity: None };
        // The client takes one `Credentials`, and a client certificate is one:
        // basic auth and API keys go in a header so they combine with mutual TLS.
        if let Some(value) = authorization(cfg) {
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| anyhow::anyhow!("elasticsearch credentials contain characters not allowed in a header"))?;
            value.set_sensitive(true);
            shared.headers.insert(AUTHORIZATION, value);
        }
        // Every node has the same scheme (checked with the configuration).
        if cfg.nodes()[0].scheme() == "https" {
            // Checks the files and key as the other backends do, with the same
            // words; the client reads the system roots itself.
            super::tls::check_files(Backend::Elasticsearch, &cfg.tls)?;
            if let Some(ca) = cfg.tls.ca() {
                let pem = std::fs::read(ca)?;
                elasticsearch::cert::Certificate::from_pem(&pem)
                    .map_err(|e| anyhow::anyhow!("elasticsearch.tls.ca_file = {:?}: {e}", ca.display()))?;
                shared.ca = Some(pem);
            }
            if let Some((cert, key)) = cfg.tls.client_identity() {
                let mut pem = std::fs::read(key)?;
                pem.push(b'\n');
                pem.extend(std::fs::read(cert)?);
                shared.identity = Some(pem);
            }
        }
        Ok(shared)
    }

    /// The client of the node at `url`.
    fn client(&self, url: &Url) -> anyhow::Result<Elasticsearch> {
        let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(url.clone()))
            .timeout(self.timeout)
            .headers(self.headers.clone());
        if let Some(pem) = &self.ca {
            let chain = elasticsearch::cert::Certificate::from_pem(pem).map_err(|e| anyhow::anyhow!("{e}"))?;
            builder = builder.cert_validation(CertificateValidation::Full(chain));
        }
        if let Some(pem) = &self.identity {
            builder = builder.auth(Credentials::Certificate(ClientCertificate::Pem(pem.clone())));
        }
        let transport =
            builder.build().map_err(|e| anyhow::anyhow!("elasticsearch client for {}: {e}", super::endpoint(url)))?;
        Ok(Elasticsearch::new(transport))
    }
}

impl EsClient {
    /// Builds a client per node; no request is made. Its searches go through `breaker`.
    pub fn new(cfg: &ElasticsearchConfig, breaker: Arc<Breaker>) -> anyhow::Result<Self> {
        let shared = Shared::new(cfg)?;
        let clients =
            cfg.nodes().iter().map(|url| Ok((url.clone(), shared.client(url)?))).collect::<anyhow::Result<_>>()?;
        let nodes = Arc::new(Nodes::new(clients));
        Ok(EsClient {
            endpoint: nodes.endpoints(),
            nodes,
            timeout: cfg.timeout,
            breaker,
            read_alias: cfg.read_alias.clone(),
        })
    }

    /// One call under `timeout`, sent to a node by [`Nodes::send`] (which
    /// moves it to another node when `retry` allows) and measured as one call.
    async fn call<'c, T, F, Fut>(
        &'c self,
        guard: Guard,
        call: &'static str,
        timeout: Duration,
        retry: Retry,
        attempt: F,
    ) -> Result<T, BackendError>
    where
        F: Fn(&'c Elasticsearch) -> Fut,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        // Taken before `timed` starts its own clock for the same deadline, so
        // an attempt that is still running when that fires knows it ran out.
        let deadline = tokio::time::Instant::now() + timeout;
        let sent = self.nodes.send(call, retry, deadline, attempt);
        match guard {
            Guard::Breaker => timed(&self.breaker, call, timeout, sent).await,
            Guard::None => timed_unguarded(Backend::Elasticsearch, call, timeout, sent).await,
        }
    }

    /// Health of the indices behind the read alias (not the whole cluster: a
    /// red index the gateway never reads does not make it unusable): usable
    /// when yellow or green.
    pub async fn ping(&self) -> Result<String, BackendError> {
        let alias = [self.read_alias.as_str()];
        let alias = &alias;
        // Errors name the node that failed (see `Nodes::send`).
        let body: serde_json::Value = self
            .call(Guard::None, "cluster_health", self.timeout, Retry::Safe, |es| async move {
                // No waiting: a red or missing index answers 408 at once, with the body.
                let resp = es.cluster().health(ClusterHealthParts::Index(alias)).timeout("0s").send().await?;
                let status = resp.status_code().as_u16();
                if !matches!(status, 200 | 408) {
                    anyhow::bail!("cluster health of {}: status {status}", self.read_alias);
                }
                resp.json::<serde_json::Value>().await.map_err(anyhow::Error::from)
            })
            .await?;
        let status = body.get("status").and_then(|s| s.as_str()).unwrap_or("unknown").to_string();
        let alias = &self.read_alias;
        // A node left out is worth a line in /readyz even while the others serve.
        let dead = self.nodes.marked_dead();
        let dead = if dead.is_empty() { String::new() } else { format!(" (node marked dead: {})", dead.join(", ")) };
        match status.as_str() {
            "green" | "yellow" => Ok(format!("read alias {alias}: {status}{dead}")),
            "red" if body["active_primary_shards"] == 0 && body["unassigned_primary_shards"] == 0 => {
                Err(BackendError::failed(
                    Backend::Elasticsearch,
                    format!("{}: read alias {alias} names no index (run `order-gateway setup`)", self.endpoint),
                ))
            }
            _ => Err(BackendError::failed(
                Backend::Elasticsearch,
                format!("{}: read alias {alias} is {status}", self.endpoint),
            )),
        }
    }
}

/// One search hit: the view and its sort values (for `search_after`).
#[derive(Debug, Clone)]
pub struct Hit {
    pub view: crate::model::OrderView,
    pub sort: Vec<serde_json::Value>,
}

impl EsClient {
    /// Views of `ids` through the read alias (one search, any number of
    /// indices behind the alias). Ids that are not found are simply absent.
    pub async fn get_orders(
        &self,
        alias: &str,
        ids: &[&str],
        trace: Option<&TraceParent>,
    ) -> Result<Vec<crate::model::OrderView>, BackendError> {
        let body = serde_json::json!({ "size": ids.len(), "query": { "ids": { "values": ids } } });
        let call = if ids.len() == 1 { "get_order" } else { "get_orders" };
        Ok(self.search_orders(alias, call, body, trace).await?.into_iter().map(|h| h.view).collect())
    }

    /// Runs a search whose hits are order views; with `trace`, as a span of
    /// that request's trace, whose `traceparent` and `tracestate` go with it.
    pub async fn search_orders(
        &self,
        alias: &str,
        call: &'static str,
        body: serde_json::Value,
        trace: Option<&TraceParent>,
    ) -> Result<Vec<Hit>, BackendError> {
        trace::call(trace, "elasticsearch", call, |p| self.search_orders_as(alias, call, body, p)).await
    }

    async fn search_orders_as(
        &self,
        alias: &str,
        call: &'static str,
        body: serde_json::Value,
        propagation: Option<Propagation>,
    ) -> Result<Vec<Hit>, BackendError> {
        let body = &body;
        let traceparent = propagation.as_ref().map(|p| p.traceparent.as_str());
        let tracestate = propagation.as_ref().and_then(|p| p.tracestate.as_ref());
        let value: serde_json::Value = self
            .call(Guard::Breaker, call, self.timeout, Retry::Safe, |es| async move {
                let indices = [alias];
                let mut req = es.search(elasticsearch::SearchParts::Index(&indices)).body(body.clone());
                if let Some(tp) = traceparent {
                    req = req.header(
                        elasticsearch::http::headers::HeaderName::from_static("traceparent"),
                        elasticsearch::http::headers::HeaderValue::from_str(tp)?,
                    );
                }
                if let Some(ts) = tracestate {
                    req = req.header(
                        elasticsearch::http::headers::HeaderName::from_static("tracestate"),
                        elasticsearch::http::headers::HeaderValue::from_bytes(ts.as_bytes())?,
                    );
                }
                let resp = req.send().await?;
                let status = resp.status_code();
                let v: serde_json::Value = resp.json().await?;
                if !status.is_success() {
                    let why = format!("status {status}: {}", v["error"]["reason"].as_str().unwrap_or("no reason"));
                    // 4xx refuses this search; 408 and 429 say the cluster is struggling.
                    if (400..500).contains(&status.as_u16()) && !matches!(status.as_u16(), 408 | 429) {
                        return Err(Refused(why).into());
                    }
                    anyhow::bail!(why);
                }
                Ok::<_, anyhow::Error>(v)
            })
            .await?;
        value["hits"]["hits"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| {
                let view = serde_json::from_value(h["_source"].clone()).map_err(|e| {
                    BackendError::failed(
                        Backend::Elasticsearch,
                        format!("document {} is not an order view: {e}", h["_id"]),
                    )
                })?;
                Ok(Hit { view, sort: h["sort"].as_array().cloned().unwrap_or_default() })
            })
            .collect()
    }
}

// ---- ingest: versioned reads and bulk writes ------------------------------------
//
// Ingest's calls take the configured deadline, as every request of this
// client's transport always did, and no breaker (see [`timed_unguarded`]).

/// Where a document stands: its index and the sequence number and primary
/// term a conditional write must quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocVersion {
    pub index: String,
    pub seq_no: i64,
    pub primary_term: i64,
}

/// One write of a bulk request.
#[derive(Debug, Clone, Copy)]
pub enum BulkOp<'a> {
    /// Replaces the document in `index`, if it is still at `seq_no` and `primary_term`.
    Replace { id: &'a str, index: &'a str, seq_no: i64, primary_term: i64, view: &'a OrderView },
    /// Creates the document in `index` (an alias is fine); a conflict if it exists.
    Create { id: &'a str, index: &'a str, view: &'a OrderView },
    /// Deletes the document from `index`, if it is still at `seq_no` and `primary_term`.
    Delete { id: &'a str, index: &'a str, seq_no: i64, primary_term: i64 },
}

/// What became of one [`BulkOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkItem {
    /// Done; the document's version after the write (a delete's too).
    Done(Option<DocVersion>),
    /// A delete found no document: it was already gone.
    NotFound,
    /// The document changed since it was read (sequence number mismatch, or
    /// created meanwhile).
    Conflict,
    /// Refused for good (a mapping error and the like), with the reason.
    Refused(String),
}

impl EsClient {
    /// Current documents of `ids` through `alias`, each with its version.
    pub async fn get_versioned(&self, alias: &str, ids: &[&str]) -> Result<Vec<(DocVersion, OrderView)>, BackendError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let body: Value = self
            .call(Guard::None, "get_versioned", self.timeout, Retry::Safe, |es| async move {
                let resp = es
                    .search(SearchParts::Index(&[alias]))
                    .seq_no_primary_term(true)
                    .size(ids.len() as i64)
                    .body(json!({ "query": { "ids": { "values": ids } } }))
                    .send()
                    .await?;
                let status = resp.status_code();
                let body: Value = resp.json().await?;
                if !status.is_success() {
                    anyhow::bail!("reading orders through alias {alias}: {status} {}", error_reason(&body));
                }
                Ok::<_, anyhow::Error>(body)
            })
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for hit in body["hits"]["hits"].as_array().into_iter().flatten() {
            let (Some(index), Some(seq_no), Some(primary_term)) =
                (hit["_index"].as_str(), hit["_seq_no"].as_i64(), hit["_primary_term"].as_i64())
            else {
                continue;
            };
            let view: OrderView = serde_json::from_value(hit["_source"].clone()).map_err(|e| {
                BackendError::failed(
                    Backend::Elasticsearch,
                    format!("document {} in {index} is not an order view: {e}", hit["_id"]),
                )
            })?;
            out.push((DocVersion { index: index.to_owned(), seq_no, primary_term }, view));
        }
        Ok(out)
    }

    /// Makes recent writes behind `alias` visible to searches.
    pub async fn refresh(&self, alias: &str) -> Result<(), BackendError> {
        self.call(Guard::None, "refresh", self.timeout, Retry::Safe, |es| async move {
            let resp = es.indices().refresh(IndicesRefreshParts::Index(&[alias])).send().await?;
            if !resp.status_code().is_success() {
                anyhow::bail!("refresh of {alias}: {}", resp.status_code());
            }
            Ok::<_, anyhow::Error>(())
        })
        .await
    }

    /// Sends `ops` in one bulk request; one [`BulkItem`] per op, in order.
    ///
    /// Items the cluster could not take now (429, 5xx) fail the whole call:
    /// the caller retries every op, which the sequence-number conditions make
    /// safe, and the failure counts as the backend's in the call metrics.
    /// Sent to a second node only when the first was never reached: a bulk
    /// sent again after it was applied would answer conflicts, not what it did.
    pub async fn bulk(&self, ops: &[BulkOp<'_>]) -> Result<Vec<BulkItem>, BackendError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        self.call(Guard::None, "bulk", self.timeout, Retry::IfNotSent, |es| async move {
            let mut body: Vec<JsonBody<Value>> = Vec::with_capacity(ops.len() * 2);
            for op in ops {
                match *op {
                    BulkOp::Replace { id, index, seq_no, primary_term, view } => {
                        body.push(json!({"index": {"_index": index, "_id": id, "if_seq_no": seq_no, "if_primary_term": primary_term}}).into());
                        body.push(serde_json::to_value(view)?.into());
                    }
                    BulkOp::Create { id, index, view } => {
                        body.push(json!({"create": {"_index": index, "_id": id}}).into());
                        body.push(serde_json::to_value(view)?.into());
                    }
                    BulkOp::Delete { id, index, seq_no, primary_term } => {
                        body.push(json!({"delete": {"_index": index, "_id": id, "if_seq_no": seq_no, "if_primary_term": primary_term}}).into());
                    }
                }
            }
            let resp = es.bulk(BulkParts::None).refresh(Refresh::False).body(body).send().await?;
            let status = resp.status_code();
            let answer: Value = resp.json().await?;
            if !status.is_success() {
                anyhow::bail!("bulk write: {status} {}", error_reason(&answer));
            }
            bulk_items(&answer, ops.len())
        })
        .await
    }
}

/// The items of a bulk answer, or why the call failed as a whole.
fn bulk_items(answer: &Value, expected: usize) -> anyhow::Result<Vec<BulkItem>> {
    let items = answer["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    if items.len() != expected {
        anyhow::bail!("bulk answered {} items for {expected} actions", items.len());
    }
    let mut out = Vec::with_capacity(items.len());
    let mut transient = None;
    for item in items {
        // Each item is `{"<action>": {...}}`.
        let (action, result) =
            item.as_object().and_then(|o| o.iter().next()).map_or(("", &Value::Null), |(k, v)| (k.as_str(), v));
        let code = result["status"].as_u64().unwrap_or(0);
        out.push(match code {
            200..=299 => BulkItem::Done(
                match (result["_index"].as_str(), result["_seq_no"].as_i64(), result["_primary_term"].as_i64()) {
                    (Some(index), Some(seq_no), Some(primary_term)) => {
                        Some(DocVersion { index: index.to_owned(), seq_no, primary_term })
                    }
                    _ => None,
                },
            ),
            404 if action == "delete" => BulkItem::NotFound,
            409 => BulkItem::Conflict,
            429 | 500..=599 | 0 => {
                transient = Some(format!("{code} {}", error_reason(result)));
                continue;
            }
            _ => BulkItem::Refused(format!("{code} {}", error_reason(result))),
        });
    }
    if let Some(why) = transient {
        // Some items may be written; retrying them all is safe (see `bulk`).
        anyhow::bail!("bulk item failed: {why}");
    }
    Ok(out)
}

/// `type: reason` of an error answer.
fn error_reason(v: &Value) -> String {
    let e = &v["error"];
    match (e["type"].as_str(), e["reason"].as_str()) {
        (Some(t), Some(r)) => format!("{t}: {r}"),
        _ => e.as_str().map(str::to_owned).unwrap_or_else(|| "no reason given".into()),
    }
}

// ---- setup: index template, indices, aliases, rollover, retention ----------------
//
// Under [`ADMIN_TIMEOUT`] and no breaker (see [`timed_unguarded`]).

/// Outcome of a rollover request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollover {
    pub rolled_over: bool,
    pub old_index: String,
    pub new_index: String,
}

impl EsClient {
    /// One administrative request; its answer when `accept` takes its status
    /// and body, else an error naming `what` was being done. `retry` says
    /// whether it may go to a second node after the first failed (see [`Retry`]).
    #[allow(clippy::too_many_arguments)]
    async fn admin(
        &self,
        call: &'static str,
        what: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        retry: Retry,
        accept: impl Fn(u16, &Value) -> bool,
    ) -> Result<(u16, Value), BackendError> {
        let (body, accept) = (&body, &accept);
        self.call(Guard::None, call, ADMIN_TIMEOUT, retry, |es| async move {
            let body = body.clone().map(JsonBody::new);
            // A moment past our own deadline, so that ours fires and the error says "timeout".
            let transport_timeout = ADMIN_TIMEOUT + Duration::from_secs(1);
            let resp =
                es.send(method, path, HeaderMap::new(), Option::<&()>::None, body, Some(transport_timeout)).await?;
            let status = resp.status_code().as_u16();
            let v = resp.json::<Value>().await.unwrap_or(Value::Null);
            if !accept(status, &v) {
                anyhow::bail!("{what}: status {status} {v}");
            }
            Ok::<_, anyhow::Error>((status, v))
        })
        .await
    }

    /// The `_meta` of index template `name`, or None when there is no such template.
    pub async fn index_template_meta(&self, name: &str) -> Result<Option<Value>, BackendError> {
        let what = format!("reading index template {name}");
        let path = format!("/_index_template/{name}");
        let (status, v) = self
            .admin("get_index_template", &what, Method::Get, &path, None, Retry::Safe, |s, _| s == 200 || s == 404)
            .await?;
        Ok((status == 200).then(|| v["index_templates"][0]["index_template"]["_meta"].clone()))
    }

    /// Creates or replaces index template `name`.
    pub async fn put_index_template(&self, name: &str, body: Value) -> Result<(), BackendError> {
        let what = format!("writing index template {name}");
        let path = format!("/_index_template/{name}");
        self.admin("put_index_template", &what, Method::Put, &path, Some(body), Retry::IfNotSent, |s, _| s == 200)
            .await
            .map(drop)
    }

    /// Adds fields to the mapping of every index behind `target`.
    pub async fn put_mapping(&self, target: &str, body: Value) -> Result<(), BackendError> {
        let what = format!("updating the mapping of {target}");
        let path = format!("/{target}/_mapping");
        self.admin("put_mapping", &what, Method::Put, &path, Some(body), Retry::IfNotSent, |s, _| s == 200)
            .await
            .map(drop)
    }

    /// The indices behind `alias` and whether each is its write index (an
    /// index of an alias with one index is its write index unless it says
    /// otherwise); empty when the alias does not exist.
    pub async fn alias_indices(&self, alias: &str) -> Result<Vec<(String, bool)>, BackendError> {
        let what = format!("reading alias {alias}");
        let path = format!("/_alias/{alias}");
        let (status, v) =
            self.admin("get_alias", &what, Method::Get, &path, None, Retry::Safe, |s, _| s == 200 || s == 404).await?;
        if status == 404 {
            return Ok(Vec::new());
        }
        Ok(v.as_object()
            .into_iter()
            .flatten()
            .map(|(index, a)| (index.clone(), a["aliases"][alias]["is_write_index"].as_bool() != Some(false)))
            .collect())
    }

    /// Creates `index` with `body` (settings, aliases); false when it already existed.
    pub async fn create_index(&self, index: &str, body: Value) -> Result<bool, BackendError> {
        let what = format!("creating index {index}");
        let exists = |s: u16, v: &Value| s == 400 && v["error"]["type"] == "resource_already_exists_exception";
        let (status, _) = self
            .admin("create_index", &what, Method::Put, &format!("/{index}"), Some(body), Retry::IfNotSent, |s, v| {
                s == 200 || exists(s, v)
            })
            .await?;
        Ok(status == 200)
    }

    /// Applies alias `actions` atomically (`POST /_aliases`).
    pub async fn update_aliases(&self, actions: Value) -> Result<(), BackendError> {
        let body = json!({ "actions": actions });
        self.admin(
            "update_aliases",
            "updating aliases",
            Method::Post,
            "/_aliases",
            Some(body),
            Retry::IfNotSent,
            |s, _| s == 200,
        )
        .await
        .map(drop)
    }

    /// Rolls `alias` over to a new index when one of `conditions` is met.
    pub async fn rollover(&self, alias: &str, conditions: Value) -> Result<Rollover, BackendError> {
        let what = format!("rolling over {alias}");
        let path = format!("/{alias}/_rollover");
        let body = json!({ "conditions": conditions });
        let (_, v) =
            self.admin("rollover", &what, Method::Post, &path, Some(body), Retry::IfNotSent, |s, _| s == 200).await?;
        Ok(Rollover {
            rolled_over: v["rolled_over"] == true,
            old_index: v["old_index"].as_str().unwrap_or_default().to_owned(),
            new_index: v["new_index"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// Per index behind `alias`, the largest value of the date `field` (None
    /// for an index without documents that have it).
    pub async fn newest_per_index(&self, alias: &str, field: &str) -> Result<Vec<(String, Option<i64>)>, BackendError> {
        let what = format!("newest {field} per index of {alias}");
        let body = json!({ "size": 0, "aggs": { "by_index": {
            "terms": { "field": "_index", "size": 10000 },
            "aggs": { "newest": { "max": { "field": field } } }
        }}});
        let path = format!("/{alias}/_search");
        let (_, v) = self
            .admin("newest_per_index", &what, Method::Post, &path, Some(body), Retry::Safe, |s, _| s == 200)
            .await?;
        Ok(v["aggregations"]["by_index"]["buckets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| Some((b["key"].as_str()?.to_owned(), b["newest"]["value"].as_f64().map(|x| x as i64))))
            .collect())
    }

    /// Deletes `index`.
    pub async fn delete_index(&self, index: &str) -> Result<(), BackendError> {
        let what = format!("deleting index {index}");
        self.admin("delete_index", &what, Method::Delete, &format!("/{index}"), None, Retry::IfNotSent, |s, _| s == 200)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_items_sort_each_answer_and_fail_the_call_on_a_transient_one() {
        let answer = json!({ "items": [
            { "index": { "_index": "o-1", "_id": "a", "_seq_no": 7, "_primary_term": 1, "result": "updated", "status": 200 } },
            { "delete": { "_index": "o-1", "_id": "b", "_seq_no": 8, "_primary_term": 1, "result": "deleted", "status": 200 } },
            { "delete": { "_index": "o-1", "_id": "c", "status": 404 } },
            { "create": { "_index": "o-1", "_id": "d", "status": 409, "error": { "type": "version_conflict_engine_exception", "reason": "exists" } } },
            { "create": { "_index": "o-1", "_id": "e", "status": 400, "error": { "type": "document_parsing_exception", "reason": "strict" } } }
        ]});
        assert_eq!(
            bulk_items(&answer, 5).unwrap(),
            [
                BulkItem::Done(Some(DocVersion { index: "o-1".into(), seq_no: 7, primary_term: 1 })),
                BulkItem::Done(Some(DocVersion { index: "o-1".into(), seq_no: 8, primary_term: 1 })),
                BulkItem::NotFound,
                BulkItem::Conflict,
                BulkItem::Refused("400 document_parsing_exception: strict".into()),
            ]
        );
        assert!(bulk_items(&answer, 6).is_err(), "an answer with fewer items than actions is a failure");
        let busy = json!({ "items": [
            { "index": { "_index": "o-1", "_id": "a", "_seq_no": 7, "_primary_term": 1, "status": 201 } },
            { "index": { "_index": "o-1", "_id": "b", "status": 429, "error": { "type": "es_rejected_execution_exception", "reason": "queue full" } } }
        ]});
        let err = bulk_items(&busy, 2).unwrap_err().to_string();
        assert!(err.contains("429 es_rejected_execution_exception"), "{err}");
    }
}
