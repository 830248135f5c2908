//! The order cache: views kept current by the event stream, filled from the
//! backends on a miss, never older than what this replica has seen.
//!
//! - Events and fills merge into an entry with `OrderView::apply`, atomically
//!   per key (`and_compute_with`), so their order never regresses a component.
//! - An entry keeps the view's JSON bytes, so a hit is not serialised again.
//! - `seen` remembers component versions after an entry is evicted: a fill
//!   from a backend that is behind them is refused (monotonic reads).
//! - Misses go to the backends through the read-through ([`read_through`]);
//!   concurrent ones for one id share one backend request ([`SingleFlight`]).

pub mod answers;
pub mod read_through;
mod single_flight;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::ops::compute::Op;

use crate::config::CacheConfig;
use crate::model::{Component, OrderView};
use crate::telemetry::names;
pub use answers::Answers;
pub use read_through::{BackendStore, OrderStore, Outcome, ReadThrough, Reason};
pub use single_flight::SingleFlight;

/// Where an entry's content last came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Stream,
    Elasticsearch,
    ClickHouse,
}

/// One cached order. It keeps the view's JSON, not the parsed view: the bytes
/// are what a hit serves, and a parsed copy beside them would about double the
/// memory per order. Merges (events, fills) parse the JSON again; they are
/// rare next to reads. The JSON is kept LZ4-compressed unless
/// `cache.compression = "none"`: a hit then decompresses it (one allocation of
/// the JSON's size, a few hundred nanoseconds) and the cache holds about a
/// third more orders in the same bytes.
#[derive(Debug)]
pub struct CachedView {
    /// The view's JSON as kept: an LZ4 block behind its length when `packed`,
    /// else the bytes as served.
    stored: Bytes,
    /// The ETag of the full JSON, kept as the header value it is sent as.
    pub etag: http::HeaderValue,
    /// Component versions, for monotonicity checks without parsing.
    pub versions: ComponentVersions,
    /// Whether `stored` (and `redacted`) are LZ4 blocks.
    packed: bool,
    /// Whether the JSON holds personal data (address, e-mail, phone).
    has_pii: bool,
    /// When the content was last known current (a fill, or an event).
    pub refreshed_at: Instant,
    /// Whether the entry holds the whole order. An event for an order that
    /// is not cached creates a partial entry (only the components seen since
    /// start); it still guards monotonicity, but a read fills it first.
    pub complete: bool,
    pub source: Source,
    /// Why the order is not served although the entry exists: deleted at
    /// its legacy source, or (CDC) only line rows known so far.
    pub withheld: Option<&'static str>,
    /// The ETag of the representation without personal data.
    redacted_etag: http::HeaderValue,
    /// The JSON without personal data (kept as `stored` is), made on first
    /// use: most deployments have either PII readers or others, so most
    /// entries never pay for it.
    redacted: std::sync::OnceLock<Bytes>,
}

/// Why a deleted order is withheld (`CachedView::withheld`).
pub const DELETED: &str = "was deleted at its source";

/// The order header's version (0 when absent) and each fulfilment's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentVersions {
    /// As the merge ranks it ([`crate::model::ranked_version`]): what the
    /// monotonic-read checks compare.
    pub order: u64,
    /// The header's own `version` (what a writer's `min_version` names).
    pub order_raw: u64,
    /// Each fulfilment's version, by [`fulfillment_key`] of its id: what is
    /// compared is only which fulfilment a version belongs to, and a key takes
    /// 8 bytes where the id took an allocation of its own (most of a cached
    /// order's bytes beyond its JSON are per-entry costs like this one).
    pub fulfillments: Box<[(u64, u64)]>,
}

/// A fulfilment id as a 64-bit key: FNV-1a of its UTF-8 bytes. Fixed by
/// this definition, not by the toolchain (the standard library's hasher may
/// change between Rust releases): live-update resume tokens carry these keys
/// from one replica, and one release, to another. Two fulfilments of one
/// order sharing a key, the only case in which their versions would be
/// confused, has odds of about 2^-64 (ids come from the order service, not
/// from clients).
pub fn fulfillment_key(id: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    id.bytes().fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

impl ComponentVersions {
    fn of(view: &OrderView) -> Self {
        let (order_raw, fs) = view.versions();
        ComponentVersions {
            order: view.order.as_ref().map_or(0, crate::model::ranked_version),
            order_raw,
            fulfillments: fs.into_iter().map(|(id, v)| (fulfillment_key(id), v)).collect(),
        }
    }

    /// Whether these versions are at least those of every component of `other`.
    pub fn dominates(&self, other: &OrderView) -> bool {
        self.at_least(
            other.order.as_ref().map_or(0, crate::model::ranked_version),
            other.fulfillments.iter().map(|f| (fulfillment_key(&f.fulfillment_id), f.version)),
        )
    }

    /// Whether these versions are at least every one of `other`'s.
    pub fn covers(&self, other: &ComponentVersions) -> bool {
        self.at_least(other.order, other.fulfillments.iter().copied())
    }

    /// Whether the order header is at `order` or later and every fulfilment
    /// listed is held at its version or later.
    fn at_least(&self, order: u64, mut fulfillments: impl Iterator<Item = (u64, u64)>) -> bool {
        self.order >= order
            && fulfillments.all(|(key, v)| self.fulfillments.iter().any(|(have, hv)| *have == key && *hv >= v))
    }
}

impl CachedView {
    fn new(view: &OrderView, complete: bool, source: Source, packed: bool) -> Self {
        CachedView {
            stored: keep(&serde_json::to_vec(view).expect("views always serialise"), packed),
            packed,
            etag: http::HeaderValue::from_str(&view.etag()).expect("etags are ASCII"),
            redacted_etag: http::HeaderValue::from_str(&view.redacted_etag()).expect("etags are ASCII"),
            versions: ComponentVersions::of(view),
            withheld: match &view.order {
                Some(o) if o.deleted => Some(DELETED),
                Some(o) if o.cdc.as_ref().is_some_and(|r| r.header == 0) => {
                    Some("is not known yet: only some of its lines have arrived from the legacy database")
                }
                _ => None,
            },
            has_pii: view.has_pii(),
            refreshed_at: Instant::now(),
            complete,
            source,
            redacted: Default::default(),
        }
    }

    /// A complete entry of `view`, as the stream would make it.
    #[cfg(test)]
    pub(crate) fn for_tests(view: &OrderView) -> Self {
        Self::new(view, true, Source::Stream, true)
    }

    /// The parsed view (a copy made from the cached JSON).
    pub fn view(&self) -> OrderView {
        serde_json::from_slice(&self.unpack(&self.stored)).expect("the cache holds JSON it serialised itself")
    }

    /// The order header's version; 0 while only fulfilments are known.
    pub fn order_version(&self) -> u64 {
        self.versions.order_raw
    }

    /// The JSON as served to a caller with (`pii`) or without `orders:pii`.
    pub fn body(&self, pii: bool) -> Bytes {
        self.unpack(self.kept_body(pii))
    }

    /// Appends that JSON to `out` (a list of orders), decompressing straight
    /// into it.
    pub fn write_body(&self, pii: bool, out: &mut bytes::BytesMut) {
        let kept = self.kept_body(pii);
        if !self.packed {
            return out.extend_from_slice(kept);
        }
        let (len, block) = packed_len(kept);
        let at = out.len();
        out.resize(at + len, 0);
        let n = lz4_flex::block::decompress_into(block, &mut out[at..])
            .expect("the cache decompresses only its own blocks");
        debug_assert_eq!(n, len);
    }

    /// The length of the full JSON in bytes (what a list of orders reserves).
    pub fn json_len(&self) -> usize {
        if self.packed {
            packed_len(&self.stored).0
        } else {
            self.stored.len()
        }
    }

    /// The bytes the entry keeps for its JSON (what the cache's weigher counts).
    pub fn kept_len(&self) -> usize {
        self.stored.len()
    }

    /// The body for that audience, as kept.
    fn kept_body(&self, pii: bool) -> &Bytes {
        if pii || !self.has_pii {
            return &self.stored;
        }
        self.redacted.get_or_init(|| {
            // `view()` is already a copy: strip it rather than copy it again.
            let mut view = self.view();
            view.strip_pii();
            keep(&serde_json::to_vec(&view).expect("views always serialise"), self.packed)
        })
    }

    fn unpack(&self, kept: &Bytes) -> Bytes {
        if !self.packed {
            return kept.clone();
        }
        // Only blocks `keep` made reach here, so a failure is a bug, not input.
        Bytes::from(
            lz4_flex::block::decompress_size_prepended(kept).expect("the cache decompresses only its own blocks"),
        )
    }

    /// The ETag of that representation. The two audiences always get
    /// different ETags, whether the order holds personal data or not: a
    /// shared cache never answers one audience with the other's bytes, and
    /// the ETag's form tells a reader without `orders:pii` nothing.
    pub fn etag_for(&self, pii: bool) -> http::HeaderValue {
        if pii {
            self.etag.clone()
        } else {
            self.redacted_etag.clone()
        }
    }

    /// Age of the content in whole seconds, for the `Age` header.
    pub fn age_secs(&self) -> u64 {
        self.refreshed_at.elapsed().as_secs()
    }
}

/// The JSON as an entry keeps it, in an allocation of its own size: an LZ4
/// block behind its length (little-endian `u32`) when `packed`, else a copy.
/// Not the serialiser's `Vec`: it grows by doubling, and `Bytes::from(Vec)`
/// keeps its whole allocation, so a 1,300-byte view would hold 2,048 bytes for
/// as long as it is cached; shrinking it does not help under every allocator
/// (mimalloc, measured, keeps a block in place when at least half of it is
/// used).
fn keep(json: &[u8], packed: bool) -> Bytes {
    if packed {
        Bytes::copy_from_slice(&lz4_flex::block::compress_prepend_size(json))
    } else {
        Bytes::copy_from_slice(json)
    }
}

/// The JSON's length and the block of a packed body.
fn packed_len(kept: &[u8]) -> (usize, &[u8]) {
    let (len, block) = kept.split_at(4);
    (u32::from_le_bytes(len.try_into().expect("four bytes")) as usize, block)
}

/// What a lookup found.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Current: serve it.
    Hit(Arc<CachedView>),
    /// Present but possibly out of date (or partial): refresh it, and serve
    /// it only if the backend fails (stale-if-error) and it is complete.
    Stale(Arc<CachedView>),
    /// Known not to exist (negative cache).
    NotFound,
    Miss,
}

/// Health of the event stream, shared with the consumer and `/readyz`.
#[derive(Debug, Default)]
pub struct StreamState {
    pub enabled: AtomicBool,
    pub healthy: AtomicBool,
    pub assigned: AtomicBool,
    pub lag_messages: AtomicI64,
    pub lag_ms: AtomicI64,
    /// Position and high watermark of every assigned partition, as of the
    /// last lag check (for `/admin/stream`).
    pub partitions: std::sync::Mutex<Vec<PartitionPosition>>,
    /// Why the brokers did not answer the last lag check (which call, and
    /// librdkafka's error), None once they answer.
    last_error: std::sync::Mutex<Option<String>>,
}

impl StreamState {
    pub fn set_last_error(&self, why: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Where the stream stands in one partition.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionPosition {
    pub topic: String,
    pub partition: i32,
    /// Next offset to consume; None before the first message is consumed.
    pub position: Option<i64>,
    pub high_watermark: i64,
    pub lag: i64,
    /// The broker leading the partition, as last known (a partition whose
    /// leader just died keeps the dead one here until a new one is elected).
    pub leader: Option<i32>,
    /// Times the leader was seen to change since the stream started: a
    /// broker lost or restarted in a cluster shows here.
    pub leader_changes: u64,
}

impl PartitionPosition {
    /// The next offset the stream will consume.
    pub fn next_offset(&self) -> i64 {
        self.high_watermark - self.lag
    }

    /// Whether events wait in this partition and the stream consumed none of
    /// them since the previous check (`before`).
    pub fn stalled(&self, before: &[PartitionPosition]) -> bool {
        self.lag > 0
            && before
                .iter()
                .find(|o| o.topic == self.topic && o.partition == self.partition)
                .is_some_and(|o| o.lag > 0 && o.next_offset() == self.next_offset())
    }

    /// Whether the stream has consumed everything the partition held at the
    /// previous check (`before`): under a steady flow of events a partition
    /// is never at lag 0 when looked at, yet is current to within one check.
    pub fn reached(&self, before: &[PartitionPosition]) -> bool {
        before
            .iter()
            .find(|o| o.topic == self.topic && o.partition == self.partition)
            .is_some_and(|o| self.high_watermark - self.lag >= o.high_watermark)
    }

    /// Carries the last known leader and `leader_changes` over from the
    /// previous check of the same partition, counting one more when the
    /// leader became another. Returns the old leader when it did.
    pub fn follow_leader(&mut self, before: &[PartitionPosition]) -> Option<i32> {
        let old = before.iter().find(|o| o.topic == self.topic && o.partition == self.partition)?;
        self.leader_changes = old.leader_changes;
        match (old.leader, self.leader) {
            (Some(a), Some(b)) if a != b => {
                self.leader_changes += 1;
                Some(a)
            }
            (known, None) => {
                self.leader = known;
                None
            }
            _ => None,
        }
    }
}

impl StreamState {
    /// Whether cached entries can be trusted to be current.
    pub fn is_healthy(&self) -> bool {
        self.enabled.load(Ordering::Relaxed) && self.healthy.load(Ordering::Relaxed)
    }
}

/// Versions of one order's components, remembered past eviction.
/// The order header's ranked version, and each fulfilment's by its key.
type Versions = Arc<(u64, Vec<(u64, u64)>)>;

/// Outcome of merging a backend's answer into the cache.
#[derive(Debug, Clone)]
pub enum Filled {
    Ok(Arc<CachedView>),
    /// The backend's view is older than what the stream already delivered.
    Behind {
        seen: u64,
        got: u64,
    },
}

/// An event that changed the cache: the order's new entry, and its customer
/// when the view knows it (for the subscribers of `live`).
pub struct Applied {
    pub order_id: String,
    pub customer_id: Option<String>,
    pub entry: Arc<CachedView>,
}

/// The cache itself.
pub struct OrderCache {
    views: moka::sync::Cache<String, Arc<CachedView>>,
    seen: moka::sync::Cache<String, Versions>,
    /// Orders known not to exist, with when that was learnt.
    negative: moka::sync::Cache<String, Instant>,
    /// Order numbers known to name no order, with when that was learnt: the
    /// same rules as `negative` (its TTL, cleared by an event for an order
    /// with that number).
    negative_numbers: moka::sync::Cache<String, Instant>,
    pub stream: Arc<StreamState>,
    /// Woken after every event the stream applies: read-your-writes waiters
    /// re-check at once instead of polling.
    pub applied: tokio::sync::Notify,
    /// `cache.degraded_ttl` and `cache.negative_ttl` in milliseconds: atomics,
    /// so a configuration reload changes them under running lookups.
    degraded_ttl_ms: AtomicU64,
    negative_ttl_ms: AtomicU64,
    /// `cache.compression = "lz4"`: entries keep LZ4 blocks. Fixed at start
    /// (a reload changing it would leave entries of both kinds: harmless,
    /// since each entry knows its own, but not what the setting says).
    packed: bool,
}

/// Bytes an entry costs beyond its JSON and key: the entry struct, its ETags
/// and versions, moka's own bookkeeping and allocator slack. Measured with
/// benches/memory.rs (1M orders: 2,041 resident bytes per order of 1,325 JSON
/// bytes, 2026-11-30; rounded up), so that `cache.max_bytes` bounds resident memory, not
/// just JSON.
const ENTRY_OVERHEAD: u32 = 800;

impl OrderCache {
    /// An empty cache sized by `cfg`.
    pub fn new(cfg: &CacheConfig, stream: Arc<StreamState>) -> Self {
        let views = moka::sync::Cache::builder()
            .max_capacity(cfg.max_bytes)
            .weigher(|k: &String, v: &Arc<CachedView>| {
                (k.len() as u32).saturating_add(v.kept_len() as u32).saturating_add(ENTRY_OVERHEAD)
            })
            .time_to_live(cfg.max_ttl)
            .eviction_policy(match cfg.eviction {
                crate::config::EvictionPolicy::Lru => moka::policy::EvictionPolicy::lru(),
                crate::config::EvictionPolicy::TinyLfu => moka::policy::EvictionPolicy::tiny_lfu(),
            })
            .eviction_listener(|_k, _v, cause| {
                if cause.was_evicted() {
                    metrics::counter!(names::CACHE_EVICTIONS, "cause" => format!("{cause:?}").to_lowercase())
                        .increment(1);
                }
            })
            .build();
        OrderCache {
            views,
            seen: moka::sync::Cache::builder()
                .max_capacity(cfg.seen_versions_max)
                .time_to_live(cfg.seen_versions_ttl)
                .build(),
            // Expiry is checked against the (reloadable) negative_ttl on lookup;
            // moka's own TTL only bounds how long a dead entry takes memory.
            negative: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cfg.negative_ttl.max(cfg.max_ttl))
                .build(),
            negative_numbers: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cfg.negative_ttl.max(cfg.max_ttl))
                .build(),
            stream,
            applied: tokio::sync::Notify::new(),
            degraded_ttl_ms: AtomicU64::new(cfg.degraded_ttl.as_millis() as u64),
            negative_ttl_ms: AtomicU64::new(cfg.negative_ttl.as_millis() as u64),
            packed: cfg.compression == crate::config::CacheCompression::Lz4,
        }
    }

    /// Looks an order up. Fresh means: complete, and either the stream is
    /// healthy (every event for it has been applied) or it was refreshed
    /// within `cache.degraded_ttl`.
    pub fn lookup(&self, id: &str) -> Lookup {
        if let Some(e) = self.views.get(id) {
            let fresh =
                e.complete && (self.stream.is_healthy() || e.refreshed_at.elapsed() < self.ttl(&self.degraded_ttl_ms));
            return if fresh { Lookup::Hit(e) } else { Lookup::Stale(e) };
        }
        match self.negative.get(id) {
            Some(at) if at.elapsed() < self.ttl(&self.negative_ttl_ms) => Lookup::NotFound,
            _ => Lookup::Miss,
        }
    }

    /// Whether `number` is remembered as naming no order (within `cache.negative_ttl`).
    pub fn number_absent(&self, number: &str) -> bool {
        self.negative_numbers.get(number).is_some_and(|at| at.elapsed() < self.ttl(&self.negative_ttl_ms))
    }

    /// Remembers that no order has `number`. An event for an order with it
    /// clears that at once; one that lands while the backends were being
    /// asked does not, and the number reads as unknown for up to
    /// `cache.negative_ttl`.
    pub fn remember_absent_number(&self, number: &str) {
        self.negative_numbers.insert(number.to_owned(), Instant::now());
    }

    fn ttl(&self, ms: &AtomicU64) -> Duration {
        Duration::from_millis(ms.load(Ordering::Relaxed))
    }

    /// Applies reloaded `cache.degraded_ttl` and `cache.negative_ttl`. A
    /// negative TTL longer than `cache.max_ttl` is capped by it until restart.
    pub fn set_ttls(&self, degraded: Duration, negative: Duration) {
        self.degraded_ttl_ms.store(degraded.as_millis() as u64, Ordering::Relaxed);
        self.negative_ttl_ms.store(negative.as_millis() as u64, Ordering::Relaxed);
    }

    /// Applies one event: updates the entry if cached, creates one otherwise
    /// (complete only for a brand-new order), clears a negative entry (of
    /// its id, and of its number). Returns the new entry when it changed.
    pub fn apply_event(&self, c: Component) -> Option<Applied> {
        let id = c.order_id().to_owned();
        self.negative.invalidate(&id);
        if let Component::Order(o) = &c {
            self.negative_numbers.invalidate(&o.order_number);
        }
        self.remember(&c);
        let brand_new = matches!(&c, Component::Order(o) if o.version == 1);
        let mut customer_id = None;
        let result = self.views.entry(id.clone()).and_compute_with(|current| {
            let (mut view, complete) = match &current {
                Some(e) => (e.value().view(), e.value().complete),
                None => (OrderView::new(&id), brand_new),
            };
            if view.apply(c) || current.is_none() {
                customer_id = view.order.as_ref().map(|o| o.customer_id.clone());
                Op::Put(Arc::new(CachedView::new(&view, complete, Source::Stream, self.packed)))
            } else {
                Op::Nop
            }
        });
        match result {
            moka::ops::compute::CompResult::Inserted(e) | moka::ops::compute::CompResult::ReplacedWith(e) => {
                self.applied.notify_waiters();
                Some(Applied { order_id: id, customer_id, entry: e.into_value() })
            }
            _ => None,
        }
    }

    /// Merges a backend's answer for `id` into the cache. `None` means the
    /// backend has no such order: remembered briefly, unless the stream has
    /// shown it exists (then the backend is behind).
    pub fn fill(&self, id: &str, from: Option<OrderView>, source: Source) -> Option<Filled> {
        let seen = self.seen.get(id);
        let Some(fetched) = from else {
            if let Some(s) = seen {
                return Some(Filled::Behind { seen: crate::model::unranked(s.0), got: 0 });
            }
            // A partial entry (events only) is no proof of absence either.
            if self.views.contains_key(id) {
                return None;
            }
            self.negative.insert(id.to_owned(), Instant::now());
            return None;
        };
        let got = fetched.versions().0;
        let mut behind = false;
        let result = self.views.entry(id.to_owned()).and_compute_with(|current| {
            let mut view = fetched.clone();
            if let Some(e) = &current {
                view.merge(e.value().view());
            }
            let merged = CachedView::new(&view, true, source, self.packed);
            // An answer older than what the stream delivered is not stored: a
            // lookup right after would serve it as current.
            if let Some(s) = &seen {
                if !merged.versions.at_least(s.0, s.1.iter().copied()) {
                    behind = true;
                    return Op::Nop;
                }
            }
            Op::Put(Arc::new(merged))
        });
        if behind {
            let seen = seen.map_or(0, |s| crate::model::unranked(s.0));
            return Some(Filled::Behind { seen, got });
        }
        let entry = match result {
            moka::ops::compute::CompResult::Inserted(e) | moka::ops::compute::CompResult::ReplacedWith(e) => {
                e.into_value()
            }
            _ => return None,
        };
        Some(Filled::Ok(entry))
    }

    /// Whether an entry (complete or partial) is cached for `id`.
    pub fn contains(&self, id: &str) -> bool {
        self.views.contains_key(id)
    }

    /// Drops one order (admin eviction); its seen versions stay.
    pub fn evict(&self, id: &str) {
        self.views.invalidate(id);
        self.negative.invalidate(id);
    }

    fn remember(&self, c: &Component) {
        let id = c.order_id().to_owned();
        let cur = self.seen.get(&id);
        let (mut order_v, mut fs) = cur.map(|v| (v.0, v.1.clone())).unwrap_or_default();
        match c {
            Component::Order(o) => order_v = order_v.max(crate::model::ranked_version(o)),
            Component::Fulfillment(f) => {
                let key = fulfillment_key(&f.fulfillment_id);
                match fs.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, v)) => *v = (*v).max(f.version),
                    None => fs.push((key, f.version)),
                }
            }
        }
        self.seen.insert(id, Arc::new((order_v, fs)));
    }

    /// Orders remembered as absent, and orders whose versions are remembered.
    pub fn side_stats(&self) -> (u64, u64) {
        self.negative.run_pending_tasks();
        self.seen.run_pending_tasks();
        (self.negative.entry_count(), self.seen.entry_count())
    }

    /// Entry count and weighted size, for the gauges.
    pub fn stats(&self) -> (u64, u64) {
        self.views.run_pending_tasks();
        (self.views.entry_count(), self.views.weighted_size())
    }
}

#[cfg(test)]
mod tests;
