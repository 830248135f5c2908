//! An open-model load generator for the reliability scenarios: requests are
//! sent on a fixed schedule whether or not earlier ones were answered (as
//! k6's `constant-arrival-rate` or `oha --rate`), so a stalled server shows up
//! as latency and failures instead of as a lower offered rate. Latency is
//! measured from the moment a request was due, not from when it was sent, so
//! the generator's own lag is charged to the answer (no coordinated omission).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What became of one request.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Answered with this HTTP status.
    Status(u16),
    /// No answer: the transport's error, in a word (`connect`, `timeout`, `reset`, ...).
    Error(&'static str),
    /// Never sent: more than `max_in_flight` requests were outstanding.
    Dropped,
}

impl Outcome {
    pub fn label(&self) -> String {
        match self {
            Outcome::Status(s) => s.to_string(),
            Outcome::Error(e) => (*e).to_string(),
            Outcome::Dropped => "dropped".to_string(),
        }
    }
}

/// The outcome of a reqwest call, in the words of [`Outcome`].
pub fn outcome_of(r: &Result<reqwest::Response, reqwest::Error>) -> Outcome {
    match r {
        Ok(r) => Outcome::Status(r.status().as_u16()),
        Err(e) if e.is_timeout() => Outcome::Error("timeout"),
        Err(e) if e.is_connect() => Outcome::Error("connect"),
        Err(e) if e.is_body() || e.is_decode() => Outcome::Error("body"),
        // The server closed a kept-alive connection as the request went out on it.
        Err(e) if format!("{e:?}").contains("IncompleteMessage") => Outcome::Error("closed"),
        Err(_) => Outcome::Error("transport"),
    }
}

/// [`outcome_of`], and the first server error of each `kind` is shown on
/// stderr with its problem body (the reason of a 503 is in it).
pub async fn outcome_noted(kind: &'static str, r: Result<reqwest::Response, reqwest::Error>) -> Outcome {
    let outcome = outcome_of(&r);
    if matches!(outcome, Outcome::Status(500..)) {
        static SHOWN: Mutex<Vec<&str>> = Mutex::new(Vec::new());
        let first = {
            let mut shown = SHOWN.lock().unwrap();
            !shown.contains(&kind) && {
                shown.push(kind);
                true
            }
        };
        if first {
            let body = r.unwrap().text().await.unwrap_or_default();
            eprintln!("[chaos] first server error of {kind}: {body}");
        }
    }
    outcome
}

/// One request of a run.
#[derive(Clone, Debug)]
pub struct Shot {
    /// When it was due, from the start of the run.
    pub due: Duration,
    /// From due to answered (or failed).
    pub latency: Duration,
    /// What the request was (`cached`, `uncached`, `analytics`, ...).
    pub kind: &'static str,
    pub outcome: Outcome,
}

impl Shot {
    pub fn ok(&self) -> bool {
        matches!(self.outcome, Outcome::Status(s) if s < 400)
    }
    /// When it ended, from the start of the run.
    pub fn done(&self) -> Duration {
        self.due + self.latency
    }
    /// Answered while `[from, to)` (offsets from the start of the run).
    pub fn during(&self, from: Duration, to: Duration) -> bool {
        let done = self.due + self.latency;
        done >= from && self.due < to
    }
}

/// Sends `rate` requests per second for `duration`: request `i` is `send(i)`,
/// started at `i / rate` whatever became of the earlier ones. A request due
/// while `max_in_flight` are outstanding is not sent and counts as
/// [`Outcome::Dropped`]. Returns every shot once all have ended.
pub async fn open_model<F, Fut>(rate: f64, duration: Duration, max_in_flight: usize, send: F) -> Vec<Shot>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = (&'static str, Outcome)> + Send + 'static,
{
    open_model_until(rate, duration, max_in_flight, Arc::new(AtomicBool::new(false)), send).await
}

/// [`open_model`] that also stops sending once `stop` is set.
pub async fn open_model_until<F, Fut>(
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
    stop: Arc<AtomicBool>,
    send: F,
) -> Vec<Shot>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = (&'static str, Outcome)> + Send + 'static,
{
    assert!(rate > 0.0, "a rate above zero");
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let shots = Arc::new(Mutex::new(Vec::with_capacity(total.min(10_000_000) as usize)));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until((start + due).into()).await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if in_flight.load(Ordering::Relaxed) >= max_in_flight {
            shots.lock().unwrap().push(Shot { due, latency: Duration::ZERO, kind: "", outcome: Outcome::Dropped });
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (fut, shots, in_flight) = (send(i), shots.clone(), in_flight.clone());
        tasks.spawn(async move {
            let (kind, outcome) = fut.await;
            let latency = start.elapsed().saturating_sub(due);
            in_flight.fetch_sub(1, Ordering::Relaxed);
            shots.lock().unwrap().push(Shot { due, latency, kind, outcome });
        });
        // Reap what has finished now and then, so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let mut shots = std::mem::take(&mut *shots.lock().unwrap());
    shots.sort_by_key(|s| s.due);
    shots
}

/// Counts and latency of a set of shots.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub sent: usize,
    pub ok: usize,
    /// Failures by status or error.
    pub failed: BTreeMap<String, usize>,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    pub fn of<'a>(shots: impl IntoIterator<Item = &'a Shot>) -> Summary {
        let mut s = Summary::default();
        let mut latencies = Vec::new();
        for shot in shots {
            s.sent += 1;
            if shot.ok() {
                s.ok += 1;
            } else {
                *s.failed.entry(shot.outcome.label()).or_default() += 1;
            }
            if shot.outcome != Outcome::Dropped {
                latencies.push(shot.latency);
            }
        }
        latencies.sort();
        s.p50 = quantile(&latencies, 0.50);
        s.p99 = quantile(&latencies, 0.99);
        s.max = latencies.last().copied().unwrap_or_default();
        s
    }

    pub fn failures(&self) -> usize {
        self.sent - self.ok
    }

    /// `0`, or failures by cause: `503×12 timeout×1`.
    pub fn failed_text(&self) -> String {
        if self.failed.is_empty() {
            return "0".to_string();
        }
        self.failed.iter().map(|(k, n)| format!("{k}×{n}")).collect::<Vec<_>>().join(" ")
    }
}

/// The `q` quantile of sorted values (nearest rank).
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Milliseconds with one decimal, for tables.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// A client for load: a deadline per request, a pool large enough for the
/// rate, no TLS roots (the gateway under test speaks plain HTTP), and the
/// test key. Idle connections are dropped after 5 s, before the gateway's
/// own keep-alive deadline (`server.header_read_timeout`, 10 s), as a
/// balancer in front of it would be set up: otherwise a request can go out
/// on a connection the server is closing at that moment.
pub fn load_client(timeout: Duration) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {}", super::TEST_KEY).parse().unwrap());
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .timeout(timeout)
        .pool_max_idle_per_host(256)
        .pool_idle_timeout(Duration::from_secs(5))
        .default_headers(headers)
        .build()
        .unwrap()
}

/// Resident memory and open file descriptors of a process, from /proc.
pub fn rss_and_fds(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss_kb * 1024, fds))
}

/// Least-squares slope of `(seconds, value)` points, per second.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + (x - mx) * (y - my), b + (x - mx).powi(2)));
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}
