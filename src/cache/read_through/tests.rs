//! The read-through's rules, against a scripted store on a paused clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::*;
use crate::cache::StreamState;
use crate::config::CacheConfig;
use crate::model::{Component, Order};

/// A store whose contents, delay and failures a test sets.
#[derive(Default)]
struct Script {
    hot: Mutex<HashMap<String, OrderView>>,
    cold: Mutex<HashMap<String, OrderView>>,
    hot_calls: AtomicUsize,
    cold_calls: AtomicUsize,
    failing: AtomicBool,
    /// How long each hot read takes, in milliseconds.
    hot_delay_ms: AtomicUsize,
    /// Lookups by number in the store of older orders, and how long each takes.
    cold_number_calls: AtomicUsize,
    cold_number_delay_ms: AtomicUsize,
}

impl Script {
    fn hot_calls(&self) -> usize {
        self.hot_calls.load(Ordering::SeqCst)
    }
}

impl OrderStore for Arc<Script> {
    async fn hot(&self, ids: &[&str], _trace: &TraceParent) -> Result<Vec<OrderView>, BackendError> {
        self.hot_calls.fetch_add(1, Ordering::SeqCst);
        // Whether the call fails is decided when it is made, as a stalled
        // backend's timeout is.
        let failing = self.failing.load(Ordering::SeqCst);
        let delay = self.hot_delay_ms.load(Ordering::SeqCst) as u64;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        if failing {
            return Err(BackendError::Timeout { backend: Backend::Elasticsearch, timeout: Duration::from_secs(2) });
        }
        let hot = self.hot.lock().unwrap();
        Ok(ids.iter().filter_map(|id| hot.get(*id).cloned()).collect())
    }

    async fn cold(&self, ids: &[&str], _trace: &TraceParent) -> Result<Vec<OrderView>, BackendError> {
        self.cold_calls.fetch_add(1, Ordering::SeqCst);
        let cold = self.cold.lock().unwrap();
        Ok(ids.iter().filter_map(|id| cold.get(*id).cloned()).collect())
    }

    async fn hot_by_number(&self, number: &str, _trace: &TraceParent) -> Result<Option<OrderView>, BackendError> {
        let hot = self.hot.lock().unwrap();
        Ok(hot.values().find(|v| v.order.as_ref().is_some_and(|o| o.order_number == number)).cloned())
    }

    async fn cold_by_number(&self, number: &str, _trace: &TraceParent) -> Result<Option<String>, BackendError> {
        self.cold_number_calls.fetch_add(1, Ordering::SeqCst);
        let delay = self.cold_number_delay_ms.load(Ordering::SeqCst) as u64;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let cold = self.cold.lock().unwrap();
        Ok(cold
            .values()
            .find(|v| v.order.as_ref().is_some_and(|o| o.order_number == number))
            .map(|v| v.order_id.clone()))
    }
}

/// The fixture order, as order `id` with a number of its own.
fn order(id: &str, version: u64) -> Order {
    let mut o = crate::model::fixtures::order(version);
    o.order_id = id.into();
    o.order_number = format!("N-{id}");
    o
}

fn view(id: &str, version: u64) -> OrderView {
    OrderView::from_component(Component::Order(order(id, version)))
}

/// A read-through over an empty cache; `healthy`: whether the stream is.
fn setup(healthy: bool) -> (ReadThrough<Arc<Script>>, Arc<Script>) {
    let cfg = CacheConfig {
        max_bytes: 16 * 1024 * 1024,
        eviction: crate::config::EvictionPolicy::Lru,
        compression: crate::config::CacheCompression::Lz4,
        max_ttl: Duration::from_secs(600),
        // Entries are stale at once while the stream is unhealthy.
        degraded_ttl: Duration::ZERO,
        negative_ttl: Duration::from_secs(5),
        seen_versions_max: 1000,
        seen_versions_ttl: Duration::from_secs(600),
        read_your_writes_wait: Duration::from_millis(100),
    };
    let stream = Arc::new(StreamState::default());
    stream.enabled.store(true, Ordering::Relaxed);
    stream.healthy.store(healthy, Ordering::Relaxed);
    let script = Arc::new(Script::default());
    let rt = ReadThrough::new(Arc::new(OrderCache::new(&cfg, stream)), script.clone(), Duration::from_secs(600));
    (rt, script)
}

fn tp() -> TraceParent {
    TraceParent::new_root()
}

fn version(o: &Outcome) -> u64 {
    o.view().expect("a view").order_version()
}

#[tokio::test(start_paused = true)]
async fn a_miss_is_filled_from_the_hot_store_and_then_hits() {
    let (rt, s) = setup(true);
    s.hot.lock().unwrap().insert("o-1".into(), view("o-1", 3));
    assert!(matches!(rt.get("o-1", &tp()).await, Outcome::Miss(e) if e.order_version() == 3));
    assert!(matches!(rt.get("o-1", &tp()).await, Outcome::Hit(_)));
    assert_eq!(s.hot_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_order_outside_the_hot_window_comes_from_the_cold_store() {
    let (rt, s) = setup(true);
    s.cold.lock().unwrap().insert("old".into(), view("old", 9));
    let got = rt.get("old", &tp()).await;
    assert!(matches!(got, Outcome::Miss(_)));
    assert_eq!(version(&got), 9);
    assert_eq!((s.hot_calls(), s.cold_calls.load(Ordering::SeqCst)), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn an_unknown_order_is_remembered_as_absent() {
    let (rt, s) = setup(true);
    assert!(matches!(rt.get("none", &tp()).await, Outcome::NotFound));
    assert!(matches!(rt.get("none", &tp()).await, Outcome::NotFound));
    assert_eq!(s.hot_calls(), 1, "the second lookup is answered by the negative cache");
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_share_one_backend_read() {
    let (rt, s) = setup(true);
    s.hot.lock().unwrap().insert("o-1".into(), view("o-1", 1));
    s.hot_delay_ms.store(200, Ordering::SeqCst);
    let rt = Arc::new(rt);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let rt = rt.clone();
            tokio::spawn(async move { version(&rt.get("o-1", &tp()).await) })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap(), 1);
    }
    assert_eq!(s.hot_calls(), 1);
}

/// The bug this module was moved for: a leader cancelled while the backend
/// stalls left its finished result in place, and every later miss for that
/// order got it without reaching the backend again.
#[tokio::test(start_paused = true)]
async fn a_cancelled_caller_does_not_freeze_the_order() {
    let (rt, s) = setup(true);
    s.hot.lock().unwrap().insert("o-1".into(), view("o-1", 1));
    s.failing.store(true, Ordering::SeqCst);
    s.hot_delay_ms.store(5_000, Ordering::SeqCst);
    // The client gives up after 2 s while the backend stalls.
    assert!(tokio::time::timeout(Duration::from_secs(2), rt.get("o-1", &tp())).await.is_err());
    // The backend comes back; the abandoned read ends (with its error).
    s.failing.store(false, Ordering::SeqCst);
    s.hot_delay_ms.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(rt.fills_in_flight(), 0, "the finished read left no entry behind");
    let got = rt.get("o-1", &tp()).await;
    assert!(matches!(got, Outcome::Miss(_)), "the next miss reaches the backend: {got:?}");
    assert_eq!(s.hot_calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failing_backend_is_covered_by_a_complete_cached_view() {
    let (rt, s) = setup(false);
    s.hot.lock().unwrap().insert("o-1".into(), view("o-1", 2));
    assert!(matches!(rt.get("o-1", &tp()).await, Outcome::Miss(_)));
    s.failing.store(true, Ordering::SeqCst);
    // The stream is unhealthy, so the entry is stale: refreshed, and served when that fails.
    assert!(matches!(rt.get("o-1", &tp()).await, Outcome::Stale(e) if e.order_version() == 2));
    // Nothing cached: the failure is the answer, naming the backend.
    match rt.get("o-2", &tp()).await {
        Outcome::Unavailable {
            backend: Backend::Elasticsearch,
            reason: Reason::Failed(BackendError::Timeout { .. }),
        } => {}
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_backend_behind_the_stream_is_retried_and_never_served() {
    let (rt, s) = setup(true);
    // The stream delivered version 5, and the entry was evicted since (its
    // versions are remembered); the hot store still has 4.
    rt.cache().apply_event(Component::Order(order("o-1", 5)));
    rt.cache().evict("o-1");
    s.hot.lock().unwrap().insert("o-1".into(), view("o-1", 4));
    let started = tokio::time::Instant::now();
    match rt.get("o-1", &tp()).await {
        Outcome::Unavailable { backend: Backend::Elasticsearch, reason: Reason::Behind { seen: 5, got: 4 } } => {}
        other => panic!("expected behind, got {other:?}"),
    }
    assert!(started.elapsed() >= BEHIND_RETRY, "retried for the whole window");
    assert!(s.hot_calls() > 1);

    // The store catches up during the retries: the lookup is served.
    let s2 = s.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s2.hot.lock().unwrap().insert("o-1".into(), view("o-1", 5));
    });
    assert_eq!(version(&rt.get("o-1", &tp()).await), 5);
}

#[tokio::test(start_paused = true)]
async fn read_your_writes_waits_for_the_stream() {
    let (rt, s) = setup(true);
    s.hot.lock().unwrap().insert("o-1".into(), view("o-1", 1));
    let rt = Arc::new(rt);
    let cache = rt.cache().clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cache.apply_event(Component::Order(order("o-1", 2)));
    });
    let got = rt.get_at_least("o-1", 2, Duration::from_millis(500), &tp()).await;
    assert!(matches!(&got, Outcome::Hit(e) if e.order_version() == 2), "{got:?}");

    // A version that never comes: unavailable, saying which one is current.
    match rt.get_at_least("o-1", 7, Duration::from_millis(100), &tp()).await {
        Outcome::Unavailable { reason: Reason::NotYetVisible { min: 7, current: Some(1 | 2) }, .. } => {}
        other => panic!("expected not yet visible, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn an_order_number_is_resolved_once() {
    let (rt, s) = setup(true);
    s.hot.lock().unwrap().insert("o-1".into(), view("o-1", 1));
    s.cold.lock().unwrap().insert("old".into(), view("old", 4));
    assert_eq!(version(&rt.get_by_number("N-o-1", &tp()).await), 1);
    assert_eq!(version(&rt.get_by_number("N-old", &tp()).await), 4);
    assert!(matches!(rt.get_by_number("N-none", &tp()).await, Outcome::NotFound));
    assert_eq!(rt.numbers_cached(), 2);
    assert!(matches!(rt.get_by_number("N-o-1", &tp()).await, Outcome::Hit(_)));
}

#[tokio::test(start_paused = true)]
async fn an_unknown_number_is_remembered_as_absent_for_cache_negative_ttl() {
    let (rt, s) = setup(true);
    assert!(matches!(rt.get_by_number("N-none", &tp()).await, Outcome::NotFound));
    assert!(matches!(rt.get_by_number("N-none", &tp()).await, Outcome::NotFound));
    assert_eq!(s.cold_number_calls.load(Ordering::SeqCst), 1, "the second lookup is answered by the negative cache");
    // The entry lives for cache.negative_ttl, read at each lookup (reloadable,
    // as for ids): once it is 0, the stores are asked again.
    rt.cache().set_ttls(Duration::ZERO, Duration::ZERO);
    assert!(matches!(rt.get_by_number("N-none", &tp()).await, Outcome::NotFound));
    assert_eq!(s.cold_number_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn an_event_for_an_order_with_an_absent_number_clears_it() {
    let (rt, s) = setup(true);
    assert!(matches!(rt.get_by_number("N-o-1", &tp()).await, Outcome::NotFound));
    // The order is created: the stream brings it, the hot store has it.
    s.hot.lock().unwrap().insert("o-1".into(), view("o-1", 1));
    rt.cache().apply_event(Component::Order(order("o-1", 1)));
    assert_eq!(version(&rt.get_by_number("N-o-1", &tp()).await), 1, "found at once, not after the negative TTL");
}

#[tokio::test(start_paused = true)]
async fn concurrent_lookups_of_one_unknown_number_share_one_backend_read() {
    let (rt, s) = setup(true);
    s.cold_number_delay_ms.store(200, Ordering::SeqCst);
    let rt = Arc::new(rt);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let rt = rt.clone();
            tokio::spawn(async move { rt.get_by_number("N-none", &tp()).await })
        })
        .collect();
    for c in calls {
        assert!(matches!(c.await.unwrap(), Outcome::NotFound));
    }
    assert_eq!(s.cold_number_calls.load(Ordering::SeqCst), 1);
    assert_eq!(rt.fills_in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_number_lookup_whose_callers_left_still_stores_its_answer() {
    let (rt, s) = setup(true);
    s.cold.lock().unwrap().insert("old".into(), view("old", 4));
    s.cold_number_delay_ms.store(2_000, Ordering::SeqCst);
    assert!(tokio::time::timeout(Duration::from_millis(10), rt.get_by_number("N-old", &tp())).await.is_err());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(version(&rt.get_by_number("N-old", &tp()).await), 4);
    assert_eq!(s.cold_number_calls.load(Ordering::SeqCst), 1, "the abandoned lookup's answer was kept");
}

#[tokio::test(start_paused = true)]
async fn a_batch_reads_each_store_once() {
    let (rt, s) = setup(true);
    s.hot.lock().unwrap().insert("a".into(), view("a", 1));
    s.hot.lock().unwrap().insert("b".into(), view("b", 1));
    s.cold.lock().unwrap().insert("c".into(), view("c", 1));
    rt.get("a", &tp()).await;
    let found = rt.get_many(&["a", "b", "c", "d"], &tp()).await.unwrap();
    let mut ids: Vec<_> = found.keys().cloned().collect();
    ids.sort();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!((s.hot_calls(), s.cold_calls.load(Ordering::SeqCst)), (2, 1), "one read each for the batch");
    assert!(matches!(rt.get("d", &tp()).await, Outcome::NotFound), "the absent one is remembered");
}
