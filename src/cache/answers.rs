//! Analytics answers: the JSON of each query, kept for its own TTL, and
//! computed once for concurrent identical queries.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::SingleFlight;
use crate::backends::BackendError;
use crate::telemetry::names;

/// Bytes an answer costs beyond its JSON and key: the entry and its expiry,
/// moka's bookkeeping and allocator slack (an estimate; answers are large
/// next to it, unlike order views).
const ENTRY_OVERHEAD: u32 = 256;

/// Cached answers by canonical query.
pub struct Answers {
    /// The answer and until when it may be served.
    cache: moka::sync::Cache<String, (Bytes, Instant)>,
    fills: SingleFlight<Result<Bytes, BackendError>>,
}

impl Answers {
    /// An empty cache whose entries live at most `max_ttl` and weigh at most
    /// `max_bytes` together. Answers range from a few hundred bytes (KPIs) to
    /// megabytes (a long series by country): a count of entries would bound
    /// nothing.
    pub fn new(max_ttl: Duration, max_bytes: u64) -> Self {
        Answers {
            cache: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|k: &String, v: &(Bytes, Instant)| {
                    let bytes = u32::try_from(k.len() + v.0.len()).unwrap_or(u32::MAX);
                    bytes.saturating_add(ENTRY_OVERHEAD)
                })
                .time_to_live(max_ttl)
                .build(),
            fills: SingleFlight::default(),
        }
    }

    /// The answer to `key`: cached while younger than its TTL, else computed
    /// once for every concurrent caller and kept for `ttl`. The answer is
    /// stored by the computation itself, so it is kept even when every caller
    /// has gone away before it ended; a failure is not kept.
    pub async fn get_or_compute<F, Fut>(&self, key: String, ttl: Duration, compute: F) -> Result<Bytes, BackendError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, BackendError>> + Send + 'static,
    {
        if let Some((bytes, until)) = self.cache.get(&key) {
            if Instant::now() < until {
                metrics::counter!(names::ANALYTICS_CACHE, "result" => "hit").increment(1);
                return Ok(bytes);
            }
        }
        metrics::counter!(names::ANALYTICS_CACHE, "result" => "miss").increment(1);
        let cache = self.cache.clone();
        let stored = key.clone();
        self.fills
            .run(&key, move || {
                let request = compute();
                async move {
                    let bytes = request.await?;
                    cache.insert(stored, (bytes.clone(), Instant::now() + ttl));
                    Ok(bytes)
                }
            })
            .await
    }

    /// Answers cached now.
    pub fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// The weight of the answers cached now, in bytes.
    pub fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::backends::Backend;

    fn answer(
        runs: &Arc<AtomicUsize>,
        delay: Duration,
        ok: bool,
    ) -> impl Future<Output = Result<Bytes, BackendError>> + Send + 'static {
        let runs = runs.clone();
        async move {
            let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(delay).await;
            if ok {
                Ok(Bytes::from(format!("{{\"run\":{n}}}")))
            } else {
                Err(BackendError::Timeout { backend: Backend::ClickHouse, timeout: delay })
            }
        }
    }

    /// The first caller of "q" gives up after 10 ms of a 2 s computation
    /// that succeeds (`ok`) or fails; returns once that computation has ended.
    async fn abandoned(answers: &Answers, runs: &Arc<AtomicUsize>, ok: bool) {
        let ttl = Duration::from_secs(60);
        let first = answers.get_or_compute("q".into(), ttl, || answer(runs, Duration::from_secs(2), ok));
        assert!(tokio::time::timeout(Duration::from_millis(10), first).await.is_err());
        tokio::time::sleep(Duration::from_secs(3)).await;
    }

    #[tokio::test]
    async fn the_cache_is_bounded_by_bytes() {
        let answers = Answers::new(Duration::from_secs(600), 64 * 1024);
        let ttl = Duration::from_secs(60);
        for i in 0..100 {
            let body = Bytes::from(vec![b'x'; 4096]);
            let got = answers.get_or_compute(format!("q{i}"), ttl, || async move { Ok(body) }).await.unwrap();
            assert_eq!(got.len(), 4096, "every answer is served, kept or not");
        }
        let (n, bytes) = (answers.len(), answers.weighted_size());
        assert!(bytes <= 64 * 1024, "{bytes} bytes kept");
        assert!((10..=16).contains(&n), "about 64 KiB of 4 KiB answers kept: {n}");
        // An answer larger than the whole cache is served but not kept.
        let huge = Bytes::from(vec![b'x'; 128 * 1024]);
        answers.get_or_compute("huge".into(), ttl, || async move { Ok(huge) }).await.unwrap();
        assert!(answers.weighted_size() <= 64 * 1024);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_computed_for_a_caller_that_left_is_kept() {
        let answers = Answers::new(Duration::from_secs(600), 1 << 20);
        let runs = Arc::new(AtomicUsize::new(0));
        abandoned(&answers, &runs, true).await;
        let ttl = Duration::from_secs(60);
        let got = answers.get_or_compute("q".into(), ttl, || answer(&runs, Duration::ZERO, true)).await.unwrap();
        assert_eq!(&got[..], b"{\"run\":1}", "the first computation's answer, from the cache");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_whose_caller_left_does_not_stick() {
        let answers = Answers::new(Duration::from_secs(600), 1 << 20);
        let runs = Arc::new(AtomicUsize::new(0));
        abandoned(&answers, &runs, false).await;
        let ttl = Duration::from_secs(60);
        let got = answers.get_or_compute("q".into(), ttl, || answer(&runs, Duration::ZERO, true)).await.unwrap();
        assert_eq!(&got[..], b"{\"run\":2}", "the next caller computes again");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_computation_when_the_first_is_dropped() {
        let answers = Arc::new(Answers::new(Duration::from_secs(600), 1 << 20));
        let runs = Arc::new(AtomicUsize::new(0));
        let ttl = Duration::from_secs(60);
        let call = |answers: Arc<Answers>, runs: Arc<AtomicUsize>| {
            tokio::spawn(async move {
                answers.get_or_compute("q".into(), ttl, || answer(&runs, Duration::from_secs(1), true)).await
            })
        };
        let first = call(answers.clone(), runs.clone());
        tokio::task::yield_now().await;
        let others: Vec<_> = (0..3).map(|_| call(answers.clone(), runs.clone())).collect();
        tokio::task::yield_now().await;
        first.abort();
        for o in others {
            assert_eq!(&o.await.unwrap().unwrap()[..], b"{\"run\":1}");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
