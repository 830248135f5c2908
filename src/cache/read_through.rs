//! The read-through: an order from the cache when it is current, else from
//! the backends (Elasticsearch, then ClickHouse for orders older than the hot
//! window), merged into the cache, never older than what this replica has seen.
//!
//! The rules, each tested in `read_through/tests.rs` on a paused clock against
//! a scripted [`OrderStore`]:
//!
//! - Concurrent misses for one order share one backend read ([`SingleFlight`]),
//!   which merges its answer into the cache inside the flight; a caller that
//!   goes away (client reset, timeout, shutdown) cancels neither the read nor
//!   later misses.
//! - A backend that answers with an older version than the stream delivered
//!   is retried for [`BEHIND_RETRY`], then the lookup is unavailable: an older
//!   view is never served.
//! - An order the backends do not have is remembered (negative cache), and so
//!   is an order number they do not know; concurrent lookups of one number
//!   share one backend read, as misses by id do.
//! - When the backends fail, a complete cached view is served stale.
//! - Read-your-writes (`min_version`) waits for the stream, then asks the
//!   backend directly.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{CachedView, Filled, Lookup, OrderCache, SingleFlight, Source};
use crate::backends::clickhouse::ChClient;
use crate::backends::elasticsearch::EsClient;
use crate::backends::{Backend, BackendError};
use crate::model::OrderView;
use crate::telemetry::context::TraceParent;

/// How long a fill that is behind the stream is retried: the hot store may
/// trail the stream by its refresh interval.
pub const BEHIND_RETRY: Duration = Duration::from_millis(1500);
/// The pause between those retries.
const BEHIND_PAUSE: Duration = Duration::from_millis(100);

/// Where orders are read from on a miss. The gateway's is [`BackendStore`];
/// tests script their own.
pub trait OrderStore: Send + Sync + 'static {
    /// Views of `ids` from the hot store; ids it does not hold are absent.
    /// `trace`: the request's, each call a span under it.
    fn hot(
        &self,
        ids: &[&str],
        trace: &TraceParent,
    ) -> impl Future<Output = Result<Vec<OrderView>, BackendError>> + Send;
    /// Views of `ids` from the store of older orders.
    fn cold(
        &self,
        ids: &[&str],
        trace: &TraceParent,
    ) -> impl Future<Output = Result<Vec<OrderView>, BackendError>> + Send;
    /// The view of the order with this number in the hot store.
    fn hot_by_number(
        &self,
        number: &str,
        trace: &TraceParent,
    ) -> impl Future<Output = Result<Option<OrderView>, BackendError>> + Send;
    /// The id of the order with this number in the store of older orders.
    fn cold_by_number(
        &self,
        number: &str,
        trace: &TraceParent,
    ) -> impl Future<Output = Result<Option<String>, BackendError>> + Send;
}

/// Elasticsearch (through the read alias) and ClickHouse.
pub struct BackendStore {
    pub elasticsearch: EsClient,
    pub clickhouse: ChClient,
    pub read_alias: String,
}

impl OrderStore for BackendStore {
    async fn hot(&self, ids: &[&str], trace: &TraceParent) -> Result<Vec<OrderView>, BackendError> {
        self.elasticsearch.get_orders(&self.read_alias, ids, Some(trace)).await
    }

    async fn cold(&self, ids: &[&str], trace: &TraceParent) -> Result<Vec<OrderView>, BackendError> {
        self.clickhouse.get_orders(ids, Some(trace)).await
    }

    async fn hot_by_number(&self, number: &str, trace: &TraceParent) -> Result<Option<OrderView>, BackendError> {
        let body = serde_json::json!({ "size": 1, "query": { "term": { "order.order_number": number } } });
        let hits = self.elasticsearch.search_orders(&self.read_alias, "get_by_number", body, Some(trace)).await?;
        Ok(hits.into_iter().next().map(|h| h.view))
    }

    async fn cold_by_number(&self, number: &str, trace: &TraceParent) -> Result<Option<String>, BackendError> {
        self.clickhouse.find_by_number(number, Some(trace)).await
    }
}

/// What a lookup found.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Current in the cache.
    Hit(Arc<CachedView>),
    /// Read from a backend (and now cached).
    Miss(Arc<CachedView>),
    /// The backends failed; the cached view may be out of date.
    Stale(Arc<CachedView>),
    /// No such order.
    NotFound,
    /// No view can be served now.
    Unavailable { backend: Backend, reason: Reason },
}

/// Why a lookup is unavailable.
#[derive(Debug, Clone)]
pub enum Reason {
    /// The backend failed or timed out, and nothing cached could stand in.
    Failed(BackendError),
    /// The backend still holds an older version than the stream delivered.
    Behind { seen: u64, got: u64 },
    /// Read-your-writes: the version asked for is not visible yet.
    NotYetVisible { min: u64, current: Option<u64> },
}

impl Outcome {
    /// The view to serve, if there is one.
    pub fn view(&self) -> Option<&Arc<CachedView>> {
        match self {
            Outcome::Hit(e) | Outcome::Miss(e) | Outcome::Stale(e) => Some(e),
            Outcome::NotFound | Outcome::Unavailable { .. } => None,
        }
    }

    fn failed(e: BackendError) -> Self {
        Outcome::Unavailable { backend: e.backend(), reason: Reason::Failed(e) }
    }
}

fn backend_of(source: Source) -> Backend {
    match source {
        Source::ClickHouse => Backend::ClickHouse,
        Source::Elasticsearch | Source::Stream => Backend::Elasticsearch,
    }
}

fn count(result: &'static str) {
    crate::telemetry::hot::cache_lookup(result);
}

/// One backend read's result, shared by every caller of the flight.
type FillResult = Result<(Option<Filled>, Source), BackendError>;

/// One lookup of an order number's id, shared by every caller of the flight.
type NumberResult = Result<Option<String>, BackendError>;

/// The order cache with the backends behind it.
pub struct ReadThrough<S: OrderStore> {
    cache: Arc<OrderCache>,
    store: Arc<S>,
    /// Order number -> order id (numbers never change).
    numbers: moka::sync::Cache<String, String>,
    /// Backend reads in flight, by order id.
    fills: SingleFlight<FillResult>,
    /// Number lookups in flight, by order number.
    number_fills: SingleFlight<NumberResult>,
}

impl<S: OrderStore> ReadThrough<S> {
    /// A read-through over `cache`; the number map keeps an entry while it is
    /// used within `numbers_idle`.
    pub fn new(cache: Arc<OrderCache>, store: S, numbers_idle: Duration) -> Self {
        ReadThrough {
            cache,
            store: Arc::new(store),
            numbers: moka::sync::Cache::builder().max_capacity(1_000_000).time_to_idle(numbers_idle).build(),
            fills: SingleFlight::default(),
            number_fills: SingleFlight::default(),
        }
    }

    /// The cache behind it (events, admin and search read it directly).
    pub fn cache(&self) -> &Arc<OrderCache> {
        &self.cache
    }

    /// Order numbers remembered.
    pub fn numbers_cached(&self) -> u64 {
        self.numbers.run_pending_tasks();
        self.numbers.entry_count()
    }

    /// Backend reads in flight now (by id and by number).
    pub fn fills_in_flight(&self) -> usize {
        self.fills.in_flight() + self.number_fills.in_flight()
    }

    /// The cache's answer for `id`, counted in `cache_lookups_total`.
    fn lookup(&self, id: &str) -> Lookup {
        let found = self.cache.lookup(id);
        count(match &found {
            Lookup::Hit(_) => "hit",
            Lookup::NotFound => "negative",
            Lookup::Stale(_) => "stale",
            Lookup::Miss => "miss",
        });
        found
    }

    /// The view of order `id`: from the cache when current, else filled
    /// (coalesced) from the backends; a cached view is served stale when
    /// they fail.
    pub async fn get(&self, id: &str, trace: &TraceParent) -> Outcome {
        let stale = match self.lookup(id) {
            Lookup::Hit(e) => return Outcome::Hit(e),
            Lookup::NotFound => return Outcome::NotFound,
            Lookup::Stale(e) => Some(e),
            Lookup::Miss => None,
        };
        // Boxed: the backend reads make a large future, and a lookup's future
        // is moved on every request, hits included.
        Box::pin(self.fill_retrying(id, trace, stale)).await
    }

    /// Misses, and stale entries, go to the backends; a fill that is behind the
    /// stream is retried for [`BEHIND_RETRY`].
    async fn fill_retrying(&self, id: &str, trace: &TraceParent, stale: Option<Arc<CachedView>>) -> Outcome {
        let deadline = tokio::time::Instant::now() + BEHIND_RETRY;
        loop {
            match self.fill(id, trace, true).await {
                Ok((Some(Filled::Ok(e)), _)) => return Outcome::Miss(e),
                Ok((None, _)) => return Outcome::NotFound,
                Ok((Some(Filled::Behind { seen, got }), source)) => {
                    if let Lookup::Hit(e) = self.cache.lookup(id) {
                        return Outcome::Hit(e);
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Outcome::Unavailable {
                            backend: backend_of(source),
                            reason: Reason::Behind { seen, got },
                        };
                    }
                    tokio::time::sleep(BEHIND_PAUSE).await;
                }
                Err(e) => {
                    return match stale {
                        Some(s) if s.complete => {
                            tracing::warn!(error = %e, "serving a cached view after a backend failure");
                            Outcome::Stale(s)
                        }
                        _ => Outcome::failed(e),
                    };
                }
            }
        }
    }

    /// Read-your-writes: the view of `id` at order version `min` or later,
    /// waiting up to `wait` for the stream to deliver it, then asking the
    /// backend directly.
    pub async fn get_at_least(&self, id: &str, min: u64, wait: Duration, trace: &TraceParent) -> Outcome {
        let first = self.get(id, trace).await;
        match first.view() {
            Some(e) if e.order_version() >= min => return first,
            Some(_) => {}
            None => return first,
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the check, so an event applied in between still wakes us.
            let applied = self.cache.applied.notified();
            if let Lookup::Hit(e) = self.cache.lookup(id) {
                if e.order_version() >= min {
                    return Outcome::Hit(e);
                }
            }
            if tokio::time::timeout_at(deadline, applied).await.is_err() {
                break;
            }
        }
        let (current, source) = match self.fill(id, trace, false).await {
            Ok((Some(Filled::Ok(e)), _)) if e.order_version() >= min => return Outcome::Miss(e),
            Ok((Some(Filled::Ok(e)), source)) => (Some(e.order_version()), source),
            Ok((_, source)) => (None, source),
            Err(e) => return Outcome::failed(e),
        };
        Outcome::Unavailable { backend: backend_of(source), reason: Reason::NotYetVisible { min, current } }
    }

    /// The view of the order with number `number`.
    pub async fn get_by_number(&self, number: &str, trace: &TraceParent) -> Outcome {
        let id = match self.numbers.get(number) {
            Some(id) => id,
            None if self.cache.number_absent(number) => {
                count("negative");
                return Outcome::NotFound;
            }
            // Boxed: the search and the ClickHouse fallback are large futures, and
            // a lookup's future is moved on every request, hits included.
            None => match Box::pin(self.find_number(number, trace)).await {
                Ok(Some(id)) => id,
                Ok(None) => return Outcome::NotFound,
                Err(e) => return Outcome::failed(e),
            },
        };
        self.get(&id, trace).await
    }

    /// The id of an order number the cache does not know: Elasticsearch, then
    /// ClickHouse. One lookup per number, shared by every concurrent caller;
    /// its answer (an id, or "no such number") is stored inside the flight, so
    /// a caller arriving after it ends finds the answer instead of asking again.
    async fn find_number(&self, number: &str, trace: &TraceParent) -> NumberResult {
        let (store, cache, numbers) = (self.store.clone(), self.cache.clone(), self.numbers.clone());
        let (key, trace) = (number.to_owned(), trace.clone());
        self.number_fills
            .run(number, move || async move {
                // A flight that just ended may have answered after this caller looked.
                if let Some(id) = numbers.get(&key) {
                    return Ok(Some(id));
                }
                if cache.number_absent(&key) {
                    return Ok(None);
                }
                let id = match store.hot_by_number(&key, &trace).await? {
                    Some(view) => {
                        let id = view.order_id.clone();
                        cache.fill(&id, Some(view), Source::Elasticsearch);
                        id
                    }
                    None => match store.cold_by_number(&key, &trace).await? {
                        Some(id) => id,
                        None => {
                            cache.remember_absent_number(&key);
                            return Ok(None);
                        }
                    },
                };
                // Order numbers never change: the mapping can be kept as long as the cache keeps anything.
                numbers.insert(key, id.clone());
                Ok(Some(id))
            })
            .await
    }

    /// Views of `ids` (distinct, in any order): the cache first, one hot-store
    /// read for the rest, then the store of older orders. Ids absent from the
    /// map do not exist. When the hot store fails and every id asked of it has
    /// a complete cached view, those are served.
    pub async fn get_many(
        &self,
        ids: &[&str],
        trace: &TraceParent,
    ) -> Result<std::collections::HashMap<String, Arc<CachedView>>, BackendError> {
        use std::collections::HashMap;
        let mut found: HashMap<String, Arc<CachedView>> = HashMap::new();
        let mut stale: HashMap<&str, Arc<CachedView>> = HashMap::new();
        let mut misses: Vec<&str> = Vec::new();
        for &id in ids {
            match self.lookup(id) {
                Lookup::Hit(e) => {
                    found.insert(id.to_owned(), e);
                }
                Lookup::NotFound => {}
                Lookup::Stale(e) => {
                    stale.insert(id, e);
                    misses.push(id);
                }
                Lookup::Miss => misses.push(id),
            }
        }
        misses.sort_unstable();
        misses.dedup();
        if misses.is_empty() {
            return Ok(found);
        }
        let views = match self.store.hot(&misses, trace).await {
            Ok(v) => v,
            Err(e) if misses.iter().all(|m| stale.get(m).is_some_and(|s| s.complete)) => {
                tracing::warn!(error = %e, "serving cached views after a backend failure");
                found.extend(stale.into_iter().map(|(id, e)| (id.to_owned(), e)));
                return Ok(found);
            }
            Err(e) => return Err(e),
        };
        let mut rest = misses;
        for v in views {
            rest.retain(|m| *m != v.order_id);
            let id = v.order_id.clone();
            if let Some(Filled::Ok(e)) = self.cache.fill(&id, Some(v), Source::Elasticsearch) {
                found.insert(id, e);
            }
        }
        if rest.is_empty() {
            return Ok(found);
        }
        for v in self.store.cold(&rest, trace).await? {
            let id = v.order_id.clone();
            rest.retain(|m| *m != id);
            if let Some(Filled::Ok(e)) = self.cache.fill(&id, Some(v), Source::ClickHouse) {
                found.insert(id, e);
            }
        }
        for m in rest {
            self.cache.fill(m, None, Source::ClickHouse);
        }
        Ok(found)
    }

    /// One backend read for `id`, shared by every concurrent caller, merged into
    /// the cache inside the shared flight: when the flight ends the cache already
    /// holds its answer, so a caller that missed just before cannot start a second
    /// backend read for the same order.
    ///
    /// `reuse_hit`: a current entry found inside the flight is the answer (a
    /// miss); read-your-writes passes false, as it asks the backend for a newer
    /// version than the cache holds.
    async fn fill(&self, id: &str, trace: &TraceParent, reuse_hit: bool) -> FillResult {
        let store = self.store.clone();
        let cache = self.cache.clone();
        let key = id.to_owned();
        let trace = trace.clone();
        self.fills
            .run(id, move || async move {
                // A flight that just ended may have filled the entry after this caller's lookup.
                if reuse_hit {
                    if let Lookup::Hit(e) = cache.lookup(&key) {
                        return Ok((Some(Filled::Ok(e)), Source::Stream));
                    }
                }
                if let Some(v) = store.hot(&[&key], &trace).await?.pop() {
                    return Ok((cache.fill(&key, Some(v), Source::Elasticsearch), Source::Elasticsearch));
                }
                // Not in the hot store: older orders live in the store of older orders only.
                Ok(match store.cold(&[&key], &trace).await?.pop() {
                    Some(v) => (cache.fill(&key, Some(v), Source::ClickHouse), Source::ClickHouse),
                    None => (cache.fill(&key, None, Source::Elasticsearch), Source::Elasticsearch),
                })
            })
            .await
    }
}

#[cfg(test)]
mod tests;
