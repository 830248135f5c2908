//! `GET /v1/orders/{order_id}/events` and
//! `GET /v1/customers/{customer_id}/orders/events`: live order updates as
//! Server-Sent Events (the hub and its limits: [`crate::live`]).
//!
//! An order stream starts with the current view (unless `Last-Event-ID`
//! already names it or something newer), then sends each change this
//! replica's cache applies, never a view older than one already sent: the
//! same monotonic rule as lookups, kept per order. A customer stream sends
//! the changes to any order of the customer, new ones included, from the
//! moment it opens (a screen reads the list first, then follows it).
//!
//! Events: `order` (a view, `id` = its resume token), `deleted` (the order
//! stream ends), `degraded` / `recovered` (the event stream behind the cache
//! fell behind, or caught up), `lagged` (the subscriber could not keep up:
//! reconnect with `Last-Event-ID`), `idle` (nothing changed for
//! `subscribe.max_idle`), `shutdown` (the replica stops). A comment line
//! every `subscribe.heartbeat` keeps proxies from closing a quiet stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use tokio::sync::watch;

use super::{params, ApiError, HttpResponse};
use crate::app::AppState;
use crate::cache::{BackendStore, CachedView, ComponentVersions, Filled, OrderCache, Outcome, ReadThrough, Source};
use crate::live::{sse, token, Hub, LiveBody, Refused, Subscription, Topic, Update};
use crate::telemetry::context::TraceParent;
use crate::telemetry::names;

/// What each subscriber's body needs besides its subscription.
struct Feed {
    hub: Arc<Hub>,
    cache: Arc<OrderCache>,
    orders: Arc<ReadThrough<BackendStore>>,
    trace: TraceParent,
    pii: bool,
    heartbeat: Duration,
    max_idle: Duration,
    /// When the stream ends on its own.
    end: End,
}

/// `GET /v1/orders/{order_id}/events`.
pub async fn order_events(
    state: &AppState,
    raw_id: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    trace: &TraceParent,
    pii: bool,
    client: Arc<str>,
) -> Result<HttpResponse, ApiError> {
    let id = params::id("order_id", raw_id)?;
    params::query(query, &[])?;
    let resume = last_event_id(headers)?;
    // Registered before the lookup: a change landing in between is waiting
    // when the body starts, and the monotonic rule drops it if the lookup
    // already had it.
    let subscription = subscribe(state, Topic::Order(id.into()), client)?;
    let outcome = state.orders.get(id, trace).await;
    // A client resuming after the order was deleted missed its `deleted`
    // event (it was reconnecting, or on another replica): it is sent that,
    // and the stream ends. A new subscriber of a deleted order is answered
    // 404, as a lookup is.
    if let Some(gone) = outcome.view().filter(|e| resume.is_some() && is_deleted(e)) {
        count("deleted");
        let last = order_event(id, gone, pii, true);
        return Ok(respond(state, subscription, vec![last], Seen::default(), trace, pii, End::AfterFirst));
    }
    let entry = super::orders::served_view(outcome, id, "id")?.0;
    let mut sent = HashMap::new();
    let mut first = Vec::new();
    match resume {
        // The client has this view or a newer one (from another replica, say).
        Some(had) if !newer(&entry.versions, &had) => {
            sent.insert(Box::<str>::from(id), had);
        }
        _ => {
            first.push(order_event(id, &entry, pii, false));
            count("order");
            sent.insert(id.into(), entry.versions.clone());
        }
    }
    let bases = HashMap::from([(Box::<str>::from(id), entry)]);
    Ok(respond(state, subscription, first, Seen { sent, bases }, trace, pii, End::OnDelete))
}

/// `GET /v1/customers/{customer_id}/orders/events`.
pub async fn customer_events(
    state: &AppState,
    raw_id: &str,
    query: Option<&str>,
    trace: &TraceParent,
    pii: bool,
    client: Arc<str>,
) -> Result<HttpResponse, ApiError> {
    let id = params::id("customer_id", raw_id)?;
    params::query(query, &[])?;
    // `Last-Event-ID` is not read: a customer stream has no replay (a
    // reconnecting screen reads the list again), and a browser's
    // EventSource sends it on every reconnect, so refusing it would break them.
    let subscription = subscribe(state, Topic::Customer(id.into()), client)?;
    Ok(respond(state, subscription, Vec::new(), Seen::default(), trace, pii, End::Never))
}

/// Whether `current` is newer than `had`: at least every version of it, and not the same.
fn newer(current: &ComponentVersions, had: &ComponentVersions) -> bool {
    current.covers(had) && !had.covers(current)
}

fn last_event_id(headers: &HeaderMap) -> Result<Option<ComponentVersions>, ApiError> {
    let Some(v) = headers.get("last-event-id") else { return Ok(None) };
    let text = v.to_str().map_err(|_| ApiError::bad_param("Last-Event-ID", "is not ASCII"))?;
    if text.is_empty() {
        return Ok(None);
    }
    token::parse(text).map(Some).map_err(|why| {
        ApiError::bad_param(
            "Last-Event-ID",
            format!("{why}; send back the id of an `order` event of this stream, or none to start afresh"),
        )
    })
}

fn subscribe(state: &AppState, topic: Topic, client: Arc<str>) -> Result<Subscription, ApiError> {
    state.hub.subscribe(topic, client).map_err(|r| match r {
        Refused::Replica(n) => ApiError::Unavailable(format!(
            "this replica already serves {n} live streams (subscribe.max_streams); retry shortly or on another replica"
        )),
        Refused::Client(n) => ApiError::TooManyStreams(format!(
            "this client already has {n} live streams open on this replica (subscribe.max_streams_per_client); close one first"
        )),
    })
}

/// What a subscriber has been sent, per order.
#[derive(Default)]
struct Seen {
    /// The versions last sent (the monotonic rule).
    sent: HashMap<Box<str>, ComponentVersions>,
    /// The last whole view sent, to complete a partial entry with (at most
    /// [`MAX_BASES`] orders).
    bases: HashMap<Box<str>, Arc<CachedView>>,
}

/// Most orders whose last view one subscriber keeps: an order stream has
/// one; a customer's, the orders that changed while it was open.
const MAX_BASES: usize = 1024;

/// How often, and how far apart, a subscriber tries again to complete a
/// partial entry whose backends could not.
const COMPLETE_ATTEMPTS: u8 = 5;
const COMPLETE_AGAIN_AFTER: Duration = Duration::from_secs(1);

/// The stream's answer: the `retry:` field, then `first`, then the body's events.
fn respond(
    state: &AppState,
    subscription: Subscription,
    first: Vec<Bytes>,
    seen: Seen,
    trace: &TraceParent,
    pii: bool,
    end: End,
) -> HttpResponse {
    let cfg = &state.config.subscribe;
    let feed = Feed {
        hub: state.hub.clone(),
        cache: state.cache.clone(),
        orders: state.orders.clone(),
        trace: trace.clone(),
        pii,
        heartbeat: cfg.heartbeat,
        max_idle: cfg.max_idle,
        end,
    };
    let first = std::iter::once(sse::retry(cfg.retry.as_millis())).chain(first).collect();
    let subscriber = subscription.subscriber.clone();
    let frames = futures_util::stream::unfold(Body::new(feed, subscription, first, seen), |mut body| async move {
        body.next().await.map(|b| (b, body))
    });
    let mut r = http::Response::new(http_body_util::Full::new(Bytes::new()));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // nginx (and proxies that follow it) would buffer the stream otherwise.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    *r.status_mut() = StatusCode::OK;
    LiveBody::new(frames, subscriber).attach_to(&mut r);
    r
}

/// When a subscriber's stream ends on its own (besides idling, lagging and shutdown).
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// A customer's stream: its orders come and go.
    Never,
    /// An order's stream: when the order is deleted.
    OnDelete,
    /// After the frames it starts with (the `deleted` of a resumed stream).
    AfterFirst,
}

/// What woke a body up.
enum Wake {
    Ending,
    Rung,
    Health,
    Heartbeat,
    Idle,
    Retry,
}

/// One subscriber's stream of frames.
struct Body {
    feed: Feed,
    subscription: Subscription,
    out: std::collections::VecDeque<Bytes>,
    seen: Seen,
    /// Updates whose partial entry could not be completed yet, with the
    /// attempts made, and when to try again.
    retry: Vec<(Arc<Update>, u8)>,
    retry_at: Option<tokio::time::Instant>,
    health: watch::Receiver<bool>,
    ending: watch::Receiver<bool>,
    heartbeat: tokio::time::Interval,
    idle_until: tokio::time::Instant,
    done: bool,
}

impl Body {
    fn new(feed: Feed, subscription: Subscription, first: Vec<Bytes>, seen: Seen) -> Self {
        let mut health = feed.hub.stream_health();
        let mut out: std::collections::VecDeque<Bytes> = first.into();
        if !*health.borrow_and_update() {
            out.push_back(degraded());
        }
        // A stream that only carries what it starts with is done once that is written.
        let done = feed.end == End::AfterFirst;
        let start = tokio::time::Instant::now();
        let mut heartbeat = tokio::time::interval_at(start + feed.heartbeat, feed.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Body {
            ending: feed.hub.ending(),
            idle_until: start + feed.max_idle,
            feed,
            subscription,
            out,
            seen,
            retry: Vec::new(),
            retry_at: None,
            health,
            heartbeat,
            done,
        }
    }

    /// The next frame, or None once the stream is over.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(frame) = self.out.pop_front() {
                self.subscription.subscriber.wrote();
                return Some(frame);
            }
            if self.done {
                self.subscription.subscriber.ended();
                return None;
            }
            let subscriber = self.subscription.subscriber.clone();
            let wake = tokio::select! {
                biased;
                _ = self.ending.wait_for(|e| *e) => Wake::Ending,
                // Before updates: a burst of them (a catch-up after an
                // outage) must not hold back `recovered`.
                _ = self.health.changed() => Wake::Health,
                () = subscriber.rung() => Wake::Rung,
                _ = self.heartbeat.tick() => Wake::Heartbeat,
                () = tokio::time::sleep_until(self.idle_until) => Wake::Idle,
                () = sleep_until_some(self.retry_at) => Wake::Retry,
            };
            match wake {
                Wake::Ending => self.finish(json_event(
                    "shutdown",
                    &serde_json::json!({
                        "detail": "this replica is shutting down; reconnect (with Last-Event-ID) to be served by another"
                    }),
                )),
                Wake::Rung => {
                    let updates = subscriber.take().into_iter().map(|u| (u, 0)).collect();
                    self.deliver(updates).await
                }
                Wake::Retry => {
                    self.retry_at = None;
                    let again = std::mem::take(&mut self.retry);
                    self.deliver(again).await
                }
                Wake::Health => {
                    let healthy = *self.health.borrow_and_update();
                    self.out.push_back(if healthy { recovered() } else { degraded() });
                }
                Wake::Heartbeat => self.out.push_back(Bytes::from_static(sse::HEARTBEAT)),
                Wake::Idle => self.finish(json_event(
                    "idle",
                    &serde_json::json!({
                        "detail": "no change for subscribe.max_idle; reconnect (with Last-Event-ID) to go on"
                    }),
                )),
            }
        }
    }

    fn finish(&mut self, last: Bytes) {
        self.out.push_back(last);
        self.done = true;
    }

    /// Writes `updates` (with the attempts made at each), in the order they arrived.
    async fn deliver(&mut self, updates: Vec<(Arc<Update>, u8)>) {
        let subscriber = self.subscription.subscriber.clone();
        if subscriber.is_lagged() {
            self.finish(json_event(
                "lagged",
                &serde_json::json!({
                    "detail": "updates arrived faster than this client read them; reconnect (with Last-Event-ID) for the current view"
                }),
            ));
            return;
        }
        let pii = self.feed.pii;
        for (update, attempts) in updates {
            let id = &update.order_id;
            let mut entry = update.entry.clone();
            // An event for an order not cached (evicted, expired) makes a
            // partial entry, which is completed before it is sent.
            let completed = !entry.complete;
            if completed {
                match self.complete(id, &entry).await {
                    Some(e) => entry = e,
                    None if attempts + 1 < COMPLETE_ATTEMPTS => {
                        self.retry.push((update.clone(), attempts + 1));
                        self.retry_at = Some(tokio::time::Instant::now() + COMPLETE_AGAIN_AFTER);
                        continue;
                    }
                    None => {
                        tracing::warn!(order_id = %id, "live update not sent: its order could not be read whole");
                        continue;
                    }
                }
            }
            if let Some(had) = self.seen.sent.get(id) {
                if !newer(&entry.versions, had) {
                    continue;
                }
            }
            let deleted = is_deleted(&entry);
            if entry.withheld.is_some() && !deleted {
                continue;
            }
            self.seen.sent.insert(id.clone(), entry.versions.clone());
            if self.seen.bases.len() < MAX_BASES || self.seen.bases.contains_key(id) {
                self.seen.bases.insert(id.clone(), entry.clone());
            }
            self.idle_until = tokio::time::Instant::now() + self.feed.max_idle;
            // The shared update's bytes, made once for all its subscribers;
            // a view completed here is this subscriber's own.
            let frame = if completed {
                order_event(id, &entry, pii, deleted)
            } else {
                update.frame(pii, |e| order_event(id, e, pii, deleted))
            };
            self.out.push_back(frame);
            count(if deleted { "deleted" } else { "order" });
            if deleted && self.feed.end == End::OnDelete {
                self.done = true;
                return;
            }
        }
    }

    /// A whole view for a partial entry: the last whole view this subscriber
    /// was sent with the entry's newer components merged in (and cached, so
    /// lookups have it too), else the read-through's.
    async fn complete(&self, id: &str, partial: &CachedView) -> Option<Arc<CachedView>> {
        if let Some(base) = self.seen.bases.get(id) {
            let mut view = base.view();
            view.merge(partial.view());
            if let Some(Filled::Ok(e)) = self.feed.cache.fill(id, Some(view), Source::Stream) {
                return Some(e);
            }
        }
        match self.feed.orders.get(id, &self.feed.trace).await {
            Outcome::Hit(e) | Outcome::Miss(e) | Outcome::Stale(e) if e.complete => Some(e),
            _ => None,
        }
    }
}

/// Resolves at `at`, or never.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn is_deleted(entry: &CachedView) -> bool {
    entry.withheld == Some(crate::cache::DELETED)
}

/// An `order` event (the view as a lookup with the same scopes serves it),
/// or a `deleted` one, with the view's resume token as its id.
fn order_event(id: &str, entry: &CachedView, pii: bool, deleted: bool) -> Bytes {
    let token = token::of(&entry.versions);
    if deleted {
        let data = serde_json::json!({ "order_id": id, "version": entry.order_version() });
        return sse::event("deleted", Some(&token), &serde_json::to_vec(&data).expect("JSON values serialise"));
    }
    sse::event("order", Some(&token), &entry.body(pii))
}

/// An event with JSON data, counted by name.
fn json_event(name: &'static str, data: &serde_json::Value) -> Bytes {
    count(name);
    sse::json_event(name, data)
}

fn count(event: &'static str) {
    metrics::counter!(names::LIVE_EVENTS, "event" => event).increment(1);
}

fn degraded() -> Bytes {
    json_event(
        "degraded",
        &serde_json::json!({
            "detail": "the event stream behind this replica's cache is behind or down: updates may arrive late until `recovered`"
        }),
    )
}

fn recovered() -> Bytes {
    json_event("recovered", &serde_json::json!({ "detail": "the event stream has caught up" }))
}
