//! Coalescing of concurrent backend requests for one key: the first caller
//! runs the request, every other caller awaits the same result.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use futures_util::future::{BoxFuture, FutureExt, Shared};

use crate::telemetry::names;

/// In-flight requests by key.
pub struct SingleFlight<T: Clone + Send + Sync + 'static> {
    inflight: Mutex<HashMap<String, Shared<BoxFuture<'static, T>>>>,
}

impl<T: Clone + Send + Sync + 'static> Default for SingleFlight<T> {
    fn default() -> Self {
        SingleFlight { inflight: Mutex::new(HashMap::new()) }
    }
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    /// Runs `make()` unless a request for `key` is already in flight, in which
    /// case its result is shared. The request runs as its own task, so a
    /// caller that goes away does not cancel it for the others.
    pub async fn run<F, Fut>(&self, key: &str, make: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let (fut, leader) = {
            let mut map = self.inflight.lock().expect("single-flight lock");
            match map.get(key) {
                Some(f) => (f.clone(), false),
                None => {
                    let task = tokio::spawn(make());
                    let f = async move { task.await.expect("fill task panicked") }.boxed().shared();
                    map.insert(key.to_owned(), f.clone());
                    (f, true)
                }
            }
        };
        if !leader {
            metrics::counter!(names::CACHE_COALESCED).increment(1);
        }
        let out = fut.await;
        if leader {
            self.inflight.lock().expect("single-flight lock").remove(key);
        }
        out
    }
}
