//! Live order updates: every change the stream applies to the cache, handed
//! to the subscribers of that order or of its customer.
//!
//! An event travels stream → cache ([`crate::cache::OrderCache::apply_event`]
//! returns the new entry) → [`Hub::publish`] → each subscriber's
//! [`Pending`] set → the subscriber's response body (`api::events`), which
//! writes it as a Server-Sent Event.
//!
//! A subscriber never holds more than `subscribe.queue` orders waiting: a
//! newer version of an order already waiting replaces it (the body sends the
//! latest view, never each intermediate one), and a subscriber that has had
//! an update waiting for `subscribe.max_lag`, or more distinct orders than
//! the queue holds, is lagged: it is dropped from the hub, its body ends with
//! a `lagged` event, and its connection is cut if the client is not reading.

mod body;
pub mod sse;
pub mod token;

pub use body::LiveBody;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use crate::cache::CachedView;
use crate::telemetry::names;

/// What a subscription follows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    Order(Box<str>),
    Customer(Box<str>),
}

/// The hub's limits (`[subscribe]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_streams: usize,
    pub max_streams_per_client: usize,
    pub queue: usize,
    pub max_lag: Duration,
    /// A body writes at least this often (a heartbeat if nothing else).
    pub heartbeat: Duration,
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// `subscribe.max_streams` streams are open on this replica.
    Replica(usize),
    /// The client has `subscribe.max_streams_per_client` open.
    Client(usize),
}

/// Every open subscription of this replica, by what it follows.
pub struct Hub {
    limits: Limits,
    by_topic: Mutex<HashMap<Topic, Vec<Arc<Subscriber>>>>,
    per_client: Mutex<HashMap<Arc<str>, usize>>,
    /// Open subscriptions: `publish` costs one atomic load while there are none.
    open: AtomicUsize,
    next_id: AtomicU64,
    /// Whether the event stream is healthy (subscribers are told when not).
    healthy: watch::Sender<bool>,
    /// Turned true when the server stops: every body ends with `shutdown`.
    ending: watch::Sender<bool>,
    /// The customer of each order seen with one while its customer had
    /// subscribers: an event that does not name it (a fulfilment of an order
    /// not cached) still reaches them. At most [`MAX_CUSTOMERS_KNOWN`].
    customer_of: Mutex<HashMap<Box<str>, Box<str>>>,
    /// What subscribers' write times count from.
    epoch: Instant,
    /// Whether the sweeper runs (started with the first subscription).
    sweeping: AtomicBool,
}

/// One subscriber's side of the hub: what waits to be sent, and the bell.
pub struct Subscriber {
    id: u64,
    topic: Topic,
    client: Arc<str>,
    /// Set once its place in the hub is given back (lagged, or ended).
    released: AtomicBool,
    /// Milliseconds after the hub's epoch when its body last wrote a frame.
    wrote_ms: AtomicU64,
    epoch: Instant,
    pending: Mutex<Pending>,
    wake: Notify,
    lagged: AtomicBool,
    /// Set when the body ended: its connection may be serving another request.
    finished: AtomicBool,
    /// Cuts the subscriber's connection (set by the HTTP layer): the way to
    /// reach a client whose body is not being polled because it does not read.
    cut: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

/// One change, as every subscriber of it shares it: the entry, and its
/// event's bytes made once for each kind of reader (with and without PII)
/// rather than once per subscriber.
pub struct Update {
    pub order_id: Box<str>,
    pub entry: Arc<CachedView>,
    frames: [std::sync::OnceLock<bytes::Bytes>; 2],
}

impl Update {
    pub fn new(order_id: &str, entry: Arc<CachedView>) -> Self {
        Update { order_id: order_id.into(), entry, frames: Default::default() }
    }

    /// The event for a reader who may (`pii`) or may not see personal data,
    /// made by `render` the first time it is asked for.
    pub fn frame(&self, pii: bool, render: impl FnOnce(&CachedView) -> bytes::Bytes) -> bytes::Bytes {
        self.frames[usize::from(pii)].get_or_init(|| render(&self.entry)).clone()
    }
}

/// Updates waiting for one subscriber, oldest first, one per order.
#[derive(Default)]
pub struct Pending {
    views: Vec<Arc<Update>>,
    /// When the oldest waiting update arrived.
    since: Option<Instant>,
    /// Versions replaced by a newer one before they were sent.
    pub coalesced: u64,
}

/// What [`Pending::offer`] made of an update.
#[derive(Debug, PartialEq, Eq)]
pub enum Offered {
    Queued,
    /// Replaced a waiting version of the same order.
    Coalesced,
    /// The subscriber has fallen too far behind.
    Lagged,
}

impl Pending {
    /// Adds `view` of `order_id`: replaces a waiting version of that order,
    /// else joins the queue, unless the queue is full or its oldest update
    /// has waited longer than `max_lag`.
    pub fn offer(&mut self, update: Arc<Update>, now: Instant, limits: &Limits) -> Offered {
        if self.since.is_some_and(|s| now.saturating_duration_since(s) > limits.max_lag) {
            return Offered::Lagged;
        }
        if let Some(slot) = self.views.iter_mut().find(|u| u.order_id == update.order_id) {
            *slot = update;
            self.coalesced += 1;
            return Offered::Coalesced;
        }
        if self.views.len() >= limits.queue {
            return Offered::Lagged;
        }
        self.views.push(update);
        self.since.get_or_insert(now);
        Offered::Queued
    }

    /// Everything waiting, oldest first; the queue is empty after.
    pub fn take(&mut self) -> Vec<Arc<Update>> {
        self.since = None;
        std::mem::take(&mut self.views)
    }
}

/// A registered subscription: unregistered when dropped (the body ends, the
/// client goes away), unless a lag released it first.
pub struct Subscription {
    hub: Arc<Hub>,
    pub subscriber: Arc<Subscriber>,
}

impl Hub {
    pub fn new(limits: Limits) -> Arc<Hub> {
        Arc::new(Hub {
            limits,
            by_topic: Mutex::new(HashMap::new()),
            per_client: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            healthy: watch::Sender::new(true),
            ending: watch::Sender::new(false),
            customer_of: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            sweeping: AtomicBool::new(false),
        })
    }

    /// Registers a subscription for `client`, within the replica's and the
    /// client's limits.
    pub fn subscribe(self: &Arc<Self>, topic: Topic, client: Arc<str>) -> Result<Subscription, Refused> {
        {
            let mut per_client = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
            if self.open.load(Ordering::Acquire) >= self.limits.max_streams {
                return Err(Refused::Replica(self.limits.max_streams));
            }
            let n = per_client.entry(client.clone()).or_insert(0);
            if *n >= self.limits.max_streams_per_client {
                return Err(Refused::Client(self.limits.max_streams_per_client));
            }
            *n += 1;
            self.open.fetch_add(1, Ordering::AcqRel);
        }
        let subscriber = Arc::new(Subscriber {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            topic: topic.clone(),
            client,
            released: AtomicBool::new(false),
            wrote_ms: AtomicU64::new(millis_since(self.epoch, Instant::now())),
            epoch: self.epoch,
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            lagged: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            cut: Mutex::new(None),
        });
        self.by_topic.lock().unwrap_or_else(|p| p.into_inner()).entry(topic).or_default().push(subscriber.clone());
        metrics::gauge!(names::LIVE_SUBSCRIBERS).increment(1.0);
        self.start_sweeper();
        Ok(Subscription { hub: self.clone(), subscriber })
    }

    /// Starts the task that finds stalled subscribers, once, if there is a
    /// runtime to run it (unit tests of the hub have none).
    fn start_sweeper(self: &Arc<Self>) {
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let hub = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                tick.tick().await;
                let Some(hub) = hub.upgrade() else { return };
                hub.sweep(Instant::now());
            }
        });
    }

    /// Lags every subscriber that has stalled (see [`Subscriber::stalled`]).
    /// A body that is not polled (its client reads nothing, so its
    /// connection cannot take more) learns of no update and of no timer: it
    /// is found here, not by a new update that may never come.
    pub fn sweep(&self, now: Instant) {
        let stalled: Vec<Arc<Subscriber>> = {
            let topics = self.by_topic.lock().unwrap_or_else(|p| p.into_inner());
            topics.values().flatten().filter(|s| s.stalled(now, &self.limits)).cloned().collect()
        };
        for s in stalled {
            self.lag(&s);
        }
    }

    /// Ends `s` as lagged and gives its place back at once: its body may
    /// never be polled again to drop it.
    fn lag(&self, s: &Arc<Subscriber>) {
        if s.lag() {
            self.release(s);
        }
    }

    /// Hands a changed order to its subscribers and its customer's.
    pub fn publish(&self, order_id: &str, customer_id: Option<&str>, view: &Arc<CachedView>) {
        if self.open.load(Ordering::Acquire) == 0 {
            return;
        }
        let now = Instant::now();
        let mut lagged = Vec::new();
        {
            let topics = self.by_topic.lock().unwrap_or_else(|p| p.into_inner());
            let order = topics.get(&Topic::Order(order_id.into()));
            let customer = match customer_id {
                Some(c) => {
                    let subs = topics.get(&Topic::Customer(c.into()));
                    if subs.is_some() {
                        self.remember_customer(order_id, c);
                    }
                    subs
                }
                None => self.customer_of(order_id).and_then(|c| topics.get(&Topic::Customer(c))),
            };
            let mut update = None;
            for s in order.into_iter().chain(customer).flatten() {
                if s.lagged.load(Ordering::Acquire) {
                    continue;
                }
                let update = update.get_or_insert_with(|| Arc::new(Update::new(order_id, view.clone()))).clone();
                let offered = s.pending.lock().unwrap_or_else(|p| p.into_inner()).offer(update, now, &self.limits);
                match offered {
                    Offered::Queued => s.wake.notify_one(),
                    Offered::Coalesced => {
                        metrics::counter!(names::LIVE_COALESCED).increment(1);
                        s.wake.notify_one();
                    }
                    Offered::Lagged => lagged.push(s.clone()),
                }
            }
        }
        for s in lagged {
            self.lag(&s);
        }
    }

    fn remember_customer(&self, order_id: &str, customer_id: &str) {
        let mut known = self.customer_of.lock().unwrap_or_else(|p| p.into_inner());
        if known.get(order_id).is_some_and(|c| &**c == customer_id) {
            return;
        }
        if known.len() >= MAX_CUSTOMERS_KNOWN {
            // Rare and bounded: forgetting costs only the routing of
            // fulfilment events of orders not cached, until seen again.
            known.clear();
        }
        known.insert(order_id.into(), customer_id.into());
    }

    fn customer_of(&self, order_id: &str) -> Option<Box<str>> {
        self.customer_of.lock().unwrap_or_else(|p| p.into_inner()).get(order_id).cloned()
    }

    /// Records the event stream's health; subscribers are told of a change.
    pub fn set_stream_healthy(&self, healthy: bool) {
        self.healthy.send_if_modified(|h| std::mem::replace(h, healthy) != healthy);
    }

    /// The event stream's health, watched by each body.
    pub fn stream_health(&self) -> watch::Receiver<bool> {
        self.healthy.subscribe()
    }

    /// Ends every subscription (each body sends `shutdown`): the server stops.
    pub fn end_all(&self) {
        self.ending.send_replace(true);
    }

    /// Turns true when the server stops.
    pub fn ending(&self) -> watch::Receiver<bool> {
        self.ending.subscribe()
    }

    /// Subscriptions open on this replica.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Gives `s`'s place back (once, whoever asks first).
    fn release(&self, s: &Subscriber) {
        if s.released.swap(true, Ordering::AcqRel) {
            return;
        }
        {
            let mut topics = self.by_topic.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(subs) = topics.get_mut(&s.topic) {
                subs.retain(|other| other.id != s.id);
                if subs.is_empty() {
                    topics.remove(&s.topic);
                }
            }
        }
        let mut per_client = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_client.get_mut(&s.client) {
            *n -= 1;
            if *n == 0 {
                per_client.remove(&s.client);
            }
        }
        self.open.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(names::LIVE_SUBSCRIBERS).decrement(1.0);
    }
}

impl Subscriber {
    /// Waits until an update, a lag or nothing (a permit left by an earlier
    /// offer counts) has rung.
    pub async fn rung(&self) {
        self.wake.notified().await;
    }

    /// Takes what is waiting.
    pub fn take(&self) -> Vec<Arc<Update>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Whether the subscriber fell too far behind (its body ends with `lagged`).
    pub fn is_lagged(&self) -> bool {
        self.lagged.load(Ordering::Acquire)
    }

    /// How to cut the subscriber's connection when it lags.
    pub fn on_lag(&self, cut: Box<dyn Fn() + Send + Sync>) {
        *self.cut.lock().unwrap_or_else(|p| p.into_inner()) = Some(cut);
    }

    /// Whether it has stalled: an update has waited longer than `max_lag`,
    /// or its body has written nothing (not even a heartbeat) for
    /// `heartbeat + max_lag`.
    pub fn stalled(&self, now: Instant, limits: &Limits) -> bool {
        let waited = self.pending.lock().unwrap_or_else(|p| p.into_inner()).since;
        let silent =
            now.saturating_duration_since(self.epoch + Duration::from_millis(self.wrote_ms.load(Ordering::Acquire)));
        !self.lagged.load(Ordering::Acquire)
            && (waited.is_some_and(|t| now.saturating_duration_since(t) > limits.max_lag)
                || silent > limits.heartbeat + limits.max_lag)
    }

    /// Its body has written a frame.
    pub fn wrote(&self) {
        self.wrote_ms.store(millis_since(self.epoch, Instant::now()), Ordering::Release);
    }

    /// Marks it lagged; false if it already was.
    fn lag(self: &Arc<Self>) -> bool {
        if self.lagged.swap(true, Ordering::AcqRel) {
            return false;
        }
        metrics::counter!(names::LIVE_LAGGED).increment(1);
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.wake.notify_one();
        // The body writes `lagged` if it is polled; a client that reads
        // nothing never polls it, so its connection is cut after a grace
        // that lets a reading client get the `lagged` event first.
        if self.cut.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            let me = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(CUT_AFTER_LAG).await;
                // Under the lock `ended` takes: a body that ends meanwhile
                // cannot have its connection (now serving another request) cut.
                let mut cut = me.cut.lock().unwrap_or_else(|p| p.into_inner());
                if !me.finished.load(Ordering::Acquire) {
                    if let Some(cut) = cut.take() {
                        cut();
                    }
                }
            });
        }
        true
    }

    /// The body ended: its connection is no longer the subscriber's to cut.
    pub fn ended(&self) {
        let mut cut = self.cut.lock().unwrap_or_else(|p| p.into_inner());
        self.finished.store(true, Ordering::Release);
        cut.take();
    }
}

/// How long a lagged subscriber's connection is left for its body to write
/// the `lagged` event before it is cut.
const CUT_AFTER_LAG: Duration = Duration::from_secs(5);

/// Most orders whose customer the hub remembers.
const MAX_CUSTOMERS_KNOWN: usize = 100_000;

/// How often the hub looks for stalled subscribers.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

fn millis_since(epoch: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.subscriber.ended();
        self.hub.release(&self.subscriber);
    }
}

#[cfg(test)]
mod tests;
