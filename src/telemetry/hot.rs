//! The series written on every request, through handles each thread keeps.
//!
//! `metrics::counter!(name, labels…)` builds a key (a label vector) and looks
//! it up in the recorder's registry on every call. The per-request series have
//! a small, closed set of label values (route templates, methods, status
//! codes, cache results, all `&'static str`), and a handle stays valid for the
//! recorder's life, so each worker thread keeps the handles it has used in a
//! map keyed by the label values. The recorder is installed before the server
//! starts; a thread that recorded before that would keep no-op handles, which
//! only unit tests and benchmarks without a recorder do.

use std::cell::RefCell;

use metrics::{Counter, Histogram};

use super::names;

/// Label values by where their bytes are: every value here is a `&'static
/// str` the code names, so its address stands for it. Two copies of one
/// string at two addresses only make two handles to the same series (the
/// recorder finds series by their labels' text); hashing and comparing
/// addresses instead of text was half of a request's metrics cost.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct At(usize, usize);

impl At {
    fn of(s: &'static str) -> At {
        At(s.as_ptr() as usize, s.len())
    }
}

/// A request's series: its count by route, method and status, and its
/// duration by route and method.
type RequestSeries = foldhash::HashMap<(At, At, At), (Counter, Histogram)>;

// Keyed by label values the code names, never by what a client sends: a fast hash.
thread_local! {
    static REQUESTS: RefCell<RequestSeries> = RefCell::default();
    static CACHE_LOOKUPS: RefCell<foldhash::HashMap<At, Counter>> = RefCell::default();
}

/// One answered request: `http_requests_total` by route, method and status,
/// and `http_request_duration_seconds` by route and method.
pub fn request(route: &'static str, method: &'static str, status: &'static str, seconds: f64) {
    REQUESTS.with(|m| {
        let mut m = m.borrow_mut();
        let (count, duration) = m.entry((At::of(route), At::of(method), At::of(status))).or_insert_with(|| {
            (
                metrics::counter!(names::HTTP_REQUESTS, "route" => route, "method" => method, "status" => status),
                metrics::histogram!(names::HTTP_REQUEST_DURATION, "route" => route, "method" => method),
            )
        });
        count.increment(1);
        duration.record(seconds);
    });
}

/// One cache lookup of an order view: `cache_lookups_total` by result.
pub fn cache_lookup(result: &'static str) {
    CACHE_LOOKUPS.with(|m| {
        m.borrow_mut()
            .entry(At::of(result))
            .or_insert_with(|| metrics::counter!(names::CACHE_LOOKUPS, "result" => result))
            .increment(1);
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn handles_count_into_the_recorder_they_were_made_for() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // A fresh thread, so no handle made under another recorder is reused.
        std::thread::scope(|s| {
            s.spawn(|| {
                metrics::with_local_recorder(&recorder, || {
                    for _ in 0..3 {
                        super::request("/v1/orders/{order_id}", "GET", "200", 0.001);
                    }
                    super::request("/v1/orders/{order_id}", "GET", "404", 0.001);
                    super::cache_lookup("hit");
                    super::cache_lookup("hit");
                })
            });
        });
        let text = handle.render();
        let value = |series: &str| {
            text.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()).map(str::to_string)
        };
        let route = r#"route="/v1/orders/{order_id}""#;
        let requests = super::names::HTTP_REQUESTS;
        let ok = format!(r#"{requests}{{{route},method="GET",status="200"}}"#);
        let missing = format!(r#"{requests}{{{route},method="GET",status="404"}}"#);
        assert_eq!(value(&ok).as_deref(), Some("3"), "{text}");
        assert_eq!(value(&missing).as_deref(), Some("1"), "{text}");
        let hits = format!(r#"{}{{result="hit"}}"#, super::names::CACHE_LOOKUPS);
        assert_eq!(value(&hits).as_deref(), Some("2"), "{text}");
    }
}
