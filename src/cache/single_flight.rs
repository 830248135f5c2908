//! Coalescing of concurrent backend requests for one key: the first caller
//! starts the request, every caller (the first included) awaits the same
//! result.
//!
//! The in-flight entry belongs to the request, not to a caller. The request
//! runs as a task of its own, and that task removes its entry when it ends
//! (completes, panics, or is dropped with the runtime), through a guard that
//! removes the entry only if it is still that request's. Callers may be
//! cancelled at any `.await` (a client reset, a timeout, a shutdown): none of
//! them owns the entry, so none can leave a finished result behind for every
//! later miss to be answered with.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::{BoxFuture, FutureExt, Shared};

use crate::telemetry::names;

type Flight<T> = Shared<BoxFuture<'static, T>>;

/// In-flight requests by key, each tagged with the number of the request
/// that created it.
type Inflight<T> = Mutex<HashMap<String, (u64, Flight<T>)>>;

/// In-flight requests by key.
pub struct SingleFlight<T: Clone + Send + Sync + 'static> {
    inflight: Arc<Inflight<T>>,
    next: AtomicU64,
}

impl<T: Clone + Send + Sync + 'static> Default for SingleFlight<T> {
    fn default() -> Self {
        SingleFlight { inflight: Arc::new(Mutex::new(HashMap::new())), next: AtomicU64::new(0) }
    }
}

/// Removes a request's entry when the request's task ends, however it ends.
struct Release<T: Clone + Send + Sync + 'static> {
    inflight: Arc<Inflight<T>>,
    key: String,
    flight: u64,
}

impl<T: Clone + Send + Sync + 'static> Drop for Release<T> {
    fn drop(&mut self) {
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        // A later request for the key may own the entry by now: leave that one.
        if map.get(&self.key).is_some_and(|(flight, _)| *flight == self.flight) {
            map.remove(&self.key);
        }
    }
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    /// Runs `make()` unless a request for `key` is already in flight, in which
    /// case its result is shared. The request runs as its own task, so a
    /// caller that goes away cancels it neither for the others nor for good:
    /// once it ends, the next call for `key` starts a new one.
    pub async fn run<F, Fut>(&self, key: &str, make: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let (fut, leader) = {
            let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(key) {
                Some((_, f)) => (f.clone(), false),
                None => {
                    let flight = self.next.fetch_add(1, Ordering::Relaxed);
                    let release = Release { inflight: self.inflight.clone(), key: key.to_owned(), flight };
                    let request = make();
                    // The guard lives inside the task: it drops when the request
                    // ends, not when a caller stops waiting. The task cannot remove
                    // the entry before it is inserted: removal takes this lock.
                    let task = tokio::spawn(async move {
                        let _release = release;
                        request.await
                    });
                    let f = async move { task.await.expect("fill task panicked") }.boxed().shared();
                    map.insert(key.to_owned(), (flight, f.clone()));
                    (f, true)
                }
            }
        };
        if !leader {
            metrics::counter!(names::CACHE_COALESCED).increment(1);
        }
        fut.await
    }

    /// Requests in flight now (for tests and the admin view).
    pub fn in_flight(&self) -> usize {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    /// A request that counts its runs and answers `n` after `delay`.
    fn counted(runs: &Arc<AtomicUsize>, delay: Duration) -> impl Future<Output = usize> + Send + 'static {
        let runs = runs.clone();
        async move {
            let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(delay).await;
            n
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_times_out_does_not_keep_its_result_for_later_callers() {
        let sf = SingleFlight::<usize>::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let leader =
            tokio::time::timeout(Duration::from_millis(10), sf.run("k", || counted(&runs, Duration::from_secs(2))));
        assert!(leader.await.is_err(), "the leader gives up before the request ends");
        // The request goes on without the leader, ends, and takes its entry with it.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(sf.in_flight(), 0, "a finished request leaves no entry");
        let second = sf.run("k", || counted(&runs, Duration::from_millis(1))).await;
        assert_eq!(second, 2, "the next miss runs the request again");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn followers_get_the_result_when_the_leader_is_dropped() {
        let sf = Arc::new(SingleFlight::<usize>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let leader = {
            let (sf, runs) = (sf.clone(), runs.clone());
            tokio::spawn(async move { sf.run("k", || counted(&runs, Duration::from_secs(1))).await })
        };
        tokio::task::yield_now().await;
        let followers: Vec<_> = (0..3)
            .map(|_| {
                let (sf, runs) = (sf.clone(), runs.clone());
                tokio::spawn(async move { sf.run("k", || counted(&runs, Duration::from_secs(1))).await })
            })
            .collect();
        tokio::task::yield_now().await;
        leader.abort();
        for f in followers {
            assert_eq!(f.await.unwrap(), 1, "every follower gets the one request's result");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "one request for all of them");
        assert_eq!(sf.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_old_request_never_removes_a_newer_one() {
        let sf = SingleFlight::<usize>::default();
        let runs = Arc::new(AtomicUsize::new(0));
        // First request, abandoned by its only caller.
        let _ =
            tokio::time::timeout(Duration::from_millis(1), sf.run("k", || counted(&runs, Duration::from_millis(50))))
                .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The second request is in flight when a third caller arrives: it must share it.
        let second = sf.run("k", || counted(&runs, Duration::from_millis(50)));
        let third = sf.run("k", || counted(&runs, Duration::from_millis(50)));
        let (a, b) = tokio::join!(second, third);
        assert_eq!((a, b), (2, 2));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_panicking_request_releases_its_key() {
        let sf = Arc::new(SingleFlight::<usize>::default());
        let first = {
            let sf = sf.clone();
            tokio::spawn(async move { sf.run("k", || async { panic!("backend client bug") }).await })
        };
        assert!(first.await.is_err(), "the caller sees the panic");
        assert_eq!(sf.in_flight(), 0);
        assert_eq!(sf.run("k", || async { 7 }).await, 7, "the key is usable again");
    }
}
