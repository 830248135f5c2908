//! Connection slots and connection deadlines: what keeps a client that opens
//! sockets and says nothing (or half of something) from holding the listener.
//!
//! Every accepted connection takes one of `server.max_connections` slots and
//! is watched by [`drive`]:
//! - until its first request head is complete it has `server.header_read_timeout`,
//!   counted from accept, so the HTTP/1-or-h2 sniffing and the h2 handshake
//!   are inside the deadline too (hyper's own header timeout starts only once
//!   HTTP/1 has been chosen, and h2 has none);
//! - once it has served a request, it is shut down gracefully (HTTP/1 closes,
//!   h2 sends GOAWAY) after `server.idle_timeout` without a request in
//!   progress, and closed if it is still there `header_read_timeout` later.
//!   h2 keep-alive pings alone do not keep it open;
//! - on an HTTP/1.1 keep-alive connection, the next request head has
//!   `header_read_timeout` from its first byte ([`Watched`] notes when that
//!   arrives). hyper's own header timeout is off: it starts as soon as a
//!   response is written, which would close every keep-alive connection
//!   idle for `header_read_timeout` (10 s) instead of `idle_timeout`, and a
//!   proxy or pooled client reusing it just then gets a reset instead of an
//!   answer (the idle close and the next request cross on the wire).
//!
//! When every slot is taken, a new connection is not left in the kernel's
//! backlog behind the ones holding the slots: the connection that has gone
//! longest without a request in progress is closed to make room (see
//! [`Slots::acquire`]). A client that holds sockets open without using them
//! then only ever holds the oldest slots, and a probe or a real client, whose
//! connection is new and soon busy, is served.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How often a full listener looks again for a connection to close, when
/// every connection was busy with a request the last time it looked.
const RECHECK_WHEN_ALL_BUSY: Duration = Duration::from_millis(50);

/// The deadlines of a connection (`server.header_read_timeout`, `server.idle_timeout`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadlines {
    pub header_read: Duration,
    pub idle: Duration,
}

/// Why [`drive`] ended a connection, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// The connection ended on its own (the client closed it, or a graceful shutdown finished).
    Finished,
    /// No complete request head within `server.header_read_timeout` of accept.
    NoRequest,
    /// Still open `server.header_read_timeout` after an idle shutdown began.
    Idle,
    /// An HTTP/1.1 keep-alive connection's next request head was begun and
    /// not complete within `server.header_read_timeout` of its first byte.
    SlowHead,
    /// Closed to make room for a new connection while every slot was taken.
    Shed,
    /// Cut by its request (a live-update subscriber that lagged without reading).
    Cut,
}

/// The connection slots of one listener, and the connections holding them.
pub(super) struct Slots {
    permits: Arc<Semaphore>,
    max: usize,
    /// How many idle connections one look for room closes: a flood of new
    /// connections then costs one scan of the table per batch, not per accept.
    shed_batch: usize,
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Tracker>>>,
    /// Told when a connection becomes one that may be shed (it was polled).
    sheddable: Arc<Notify>,
}

/// One connection's slot: gives the slot back when dropped.
pub(super) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    tracker: Arc<Tracker>,
    _permit: OwnedSemaphorePermit,
}

/// What the slots and the watchdog know about one connection.
pub(super) struct Tracker {
    epoch: Instant,
    sheddable: Arc<Notify>,
    /// Requests whose handler is running.
    active: AtomicU32,
    /// Whether any request head has been complete.
    served: AtomicBool,
    /// Whether the connection has been polled once, reading what had already
    /// arrived: until then it cannot be told from a silent one, so it is not shed.
    polled: AtomicBool,
    /// Milliseconds after `epoch` when `active` last fell to 0 (or accept).
    idle_since_ms: AtomicU64,
    /// Whether its requests are h2 (known from the first): bytes arriving
    /// while an h2 connection is idle are pings and settings, not a head.
    h2: AtomicBool,
    /// Milliseconds after `epoch` when the first byte arrived with no request
    /// in progress, or [`NO_HEAD`]: the start of the next request head.
    head_since_ms: AtomicU64,
    /// Set by [`Slots::acquire`] when it picked this connection to close.
    shed: AtomicBool,
    shed_now: Notify,
    /// Told to close the connection at once, busy or not ([`Tracker::cut`]).
    cut_now: Notify,
}

/// Held while a request is being handled on a connection.
pub(super) struct InProgress(Arc<Tracker>);

impl Slots {
    pub(super) fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            permits: Arc::new(Semaphore::new(max)),
            max,
            shed_batch: (max / 64).clamp(1, 64),
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            sheddable: Arc::new(Notify::new()),
        })
    }

    /// A slot for a connection just accepted: a free one, else one freed by
    /// closing the connections that have gone longest without a request in
    /// progress. Those are the ones that cost a client nothing to hold (a
    /// silent socket, half a request line, a stalled h2 preface, a forgotten
    /// keep-alive), and an idle HTTP client expects to be closed at any time.
    /// A connection not yet polled is spared (see [`drive`]). Only when every
    /// connection is busy with a request does the new one wait, and the
    /// backlog with it.
    pub(super) async fn acquire(self: &Arc<Self>) -> Slot {
        loop {
            if let Ok(permit) = self.permits.clone().try_acquire_owned() {
                return self.register(permit);
            }
            self.shed_idle();
            tokio::select! {
                permit = self.permits.clone().acquire_owned() => {
                    return self.register(permit.expect("the semaphore is never closed"));
                }
                // Under a burst every slot may hold a connection not yet polled.
                _ = self.sheddable.notified() => {}
                _ = tokio::time::sleep(RECHECK_WHEN_ALL_BUSY) => {}
            }
        }
    }

    /// Resolves once every slot is free again: every connection has ended.
    pub(super) async fn all_closed(&self) {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        let _ = self.permits.acquire_many(all).await;
    }

    fn register(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tracker = Arc::new(Tracker {
            epoch: self.epoch,
            sheddable: self.sheddable.clone(),
            active: AtomicU32::new(0),
            served: AtomicBool::new(false),
            polled: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(millis_since(self.epoch, Instant::now())),
            h2: AtomicBool::new(false),
            head_since_ms: AtomicU64::new(NO_HEAD),
            shed: AtomicBool::new(false),
            shed_now: Notify::new(),
            cut_now: Notify::new(),
        });
        self.open.lock().unwrap_or_else(|p| p.into_inner()).insert(id, tracker.clone());
        Slot { slots: self.clone(), id, tracker, _permit: permit }
    }

    /// Tells the `shed_batch` connections idle the longest to close, unless
    /// connections told before have not closed yet (their slots are coming).
    fn shed_idle(&self) {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.values().any(|t| t.shed.load(Ordering::Acquire)) {
            return;
        }
        let mut idle: Vec<(u64, &Arc<Tracker>)> = open
            .values()
            .filter(|t| t.polled.load(Ordering::Acquire) && t.active.load(Ordering::Acquire) == 0)
            .map(|t| (t.idle_since_ms.load(Ordering::Acquire), t))
            .collect();
        let n = self.shed_batch.min(idle.len());
        if n == 0 {
            return;
        }
        if n < idle.len() {
            idle.select_nth_unstable_by_key(n - 1, |(since, _)| *since);
        }
        for (_, t) in &idle[..n] {
            t.shed.store(true, Ordering::Release);
            t.shed_now.notify_one();
        }
    }
}

impl Slot {
    /// What the connection's service and watchdog share.
    pub(super) fn tracker(&self) -> Arc<Tracker> {
        self.tracker.clone()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.open.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}

impl Tracker {
    /// Marks a request head complete and its handler running, until the guard drops.
    pub(super) fn request_started(self: &Arc<Self>, h2: bool) -> InProgress {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.head_since_ms.store(NO_HEAD, Ordering::Release);
        if h2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.served.store(true, Ordering::Release);
        InProgress(self.clone())
    }

    /// Closes the connection at once, whatever it is doing.
    pub(super) fn cut(&self) {
        self.cut_now.notify_one();
    }

    /// Bytes arrived: with no request in progress and none begun, they start
    /// the next request head.
    fn bytes_arrived(&self) {
        if self.active.load(Ordering::Acquire) == 0 && self.head_since_ms.load(Ordering::Acquire) == NO_HEAD {
            self.head_since_ms.store(millis_since(self.epoch, Instant::now()), Ordering::Release);
        }
    }

    fn is_idle(&self) -> bool {
        self.active.load(Ordering::Acquire) == 0
    }

    fn snapshot(&self) -> Snapshot {
        let head = self.head_since_ms.load(Ordering::Acquire);
        Snapshot {
            active: self.active.load(Ordering::Acquire),
            served: self.served.load(Ordering::Acquire),
            idle_since: self.epoch + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire)),
            head_since: (head != NO_HEAD && !self.h2.load(Ordering::Relaxed))
                .then(|| self.epoch + Duration::from_millis(head)),
        }
    }
}

impl InProgress {
    /// Closes this request's connection when called (a live stream that
    /// lagged); takes its own reference only then, not on every request.
    pub(super) fn cutter(&self) -> impl Fn() + Send + Sync + 'static {
        let tracker = self.0.clone();
        move || tracker.cut()
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        // The time first, so whoever sees the count at 0 sees when it got there.
        self.0.idle_since_ms.store(millis_since(self.0.epoch, Instant::now()), Ordering::Release);
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `head_since_ms` when no request head has begun since the last one.
const NO_HEAD: u64 = u64::MAX;

/// A connection's socket, noting in its [`Tracker`] when the bytes of a next
/// request head begin to arrive (one clock read per request; writes pass
/// straight through).
pub(super) struct Watched<S> {
    inner: S,
    tracker: Arc<Tracker>,
}

impl<S> Watched<S> {
    pub(super) fn new(inner: S, tracker: Arc<Tracker>) -> Self {
        Watched { inner, tracker }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.tracker.bytes_arrived();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn millis_since(epoch: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
}

/// Runs a connection under its deadlines until it ends, is shed, or the
/// listener drains (`drain` turns true: graceful shutdown, as before).
pub(super) async fn drive<C>(
    conn: C,
    tracker: &Tracker,
    deadlines: Deadlines,
    mut drain: watch::Receiver<bool>,
) -> Result<Ending, C::Error>
where
    C: GracefulConnection,
{
    tokio::pin!(conn);
    let opened = Instant::now();
    // Under a flood of new connections a client's request is usually already
    // here when its connection is first polled: it becomes busy on that poll
    // and is never shed. Only then may a connection be picked to make room.
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(conn.as_mut().poll(cx))).await;
    if let std::task::Poll::Ready(done) = first {
        return done.map(|()| Ending::Finished);
    }
    tracker.polled.store(true, Ordering::Release);
    tracker.sheddable.notify_one();
    let check = tokio::time::sleep_until(opened + deadlines.header_read);
    tokio::pin!(check);
    // When a graceful shutdown was asked of the connection.
    let mut closing: Option<Instant> = None;
    let mut draining = false;
    // When a cut h2 connection closes, whatever is still running on it.
    let mut cut_at: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            done = conn.as_mut() => return done.map(|()| Ending::Finished),
            () = tracker.cut_now.notified() => {
                // An HTTP/1 connection carries only the stream that lagged.
                // An h2 one may carry other clients' requests too (a mesh's
                // proxy multiplexes them): those are not reset with it. The
                // connection sends GOAWAY (no new streams; a client opens
                // another connection) and closes header_read later, with
                // whatever still runs, the stalled stream included.
                if !tracker.h2.load(Ordering::Relaxed) || tracker.active.load(Ordering::Acquire) <= 1 {
                    return Ok(Ending::Cut);
                }
                let now = Instant::now();
                if closing.is_none() {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(now);
                }
                cut_at.get_or_insert(now + deadlines.header_read);
            }
            () = tokio::time::sleep_until(cut_at.unwrap_or(opened)), if cut_at.is_some() => return Ok(Ending::Cut),
            _ = tracker.shed_now.notified() => {
                if tracker.is_idle() {
                    return Ok(Ending::Shed);
                }
                // A request began since it was picked: let it finish, then close.
                tracker.shed.store(false, Ordering::Release);
                if closing.is_none() {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now());
                }
            }
            _ = drain.wait_for(|d| *d), if !draining => {
                draining = true;
                if closing.is_none() {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now());
                }
            }
            () = &mut check => {
                let now = Instant::now();
                match verdict(tracker.snapshot(), opened, now, closing, deadlines) {
                    Verdict::WaitUntil(t) => check.as_mut().reset(t),
                    Verdict::Shutdown => {
                        conn.as_mut().graceful_shutdown();
                        closing = Some(now);
                        check.as_mut().reset(now + deadlines.header_read);
                    }
                    Verdict::Close(ending) => return Ok(ending),
                }
            }
        }
    }
}

/// What the watchdog knows when it wakes.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    active: u32,
    served: bool,
    idle_since: Instant,
    /// When the next HTTP/1.1 request head began, if it has (never for h2).
    head_since: Option<Instant>,
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    WaitUntil(Instant),
    /// Idle too long: graceful shutdown (HTTP/1 closes, h2 sends GOAWAY).
    Shutdown,
    Close(Ending),
}

/// The watchdog's rules, as a plain function of what it knows.
fn verdict(s: Snapshot, opened: Instant, now: Instant, closing: Option<Instant>, d: Deadlines) -> Verdict {
    // The watchdog is not woken when a next head begins, so while a
    // connection is open it looks at least every header_read: a head begun
    // at t is then seen by t + header_read, its deadline.
    let next_look = now + d.header_read;
    if s.active > 0 {
        // A request's own deadlines bound it.
        return Verdict::WaitUntil(next_look);
    }
    if !s.served {
        let due = opened + d.header_read;
        return if now >= due { Verdict::Close(Ending::NoRequest) } else { Verdict::WaitUntil(due) };
    }
    if let Some(began) = s.head_since {
        let due = began + d.header_read;
        if now >= due {
            return Verdict::Close(Ending::SlowHead);
        }
        if closing.is_none() {
            // A request on its way: not idle.
            return Verdict::WaitUntil(due);
        }
    }
    if let Some(since) = closing {
        // Time for the GOAWAY exchange and a last response to be read.
        let due = since.max(s.idle_since) + d.header_read;
        return if now >= due { Verdict::Close(Ending::Idle) } else { Verdict::WaitUntil(due) };
    }
    let due = s.idle_since + d.idle;
    if now >= due {
        Verdict::Shutdown
    } else {
        Verdict::WaitUntil(due.min(next_look))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Deadlines = Deadlines { header_read: Duration::from_secs(10), idle: Duration::from_secs(60) };

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn a_connection_without_a_complete_head_is_closed_at_the_header_deadline() {
        let t0 = Instant::now();
        let silent = Snapshot { active: 0, served: false, idle_since: t0, head_since: None };
        assert_eq!(verdict(silent, t0, secs(t0, 3), None, D), Verdict::WaitUntil(secs(t0, 10)));
        assert_eq!(verdict(silent, t0, secs(t0, 10), None, D), Verdict::Close(Ending::NoRequest));
        // A first request still running at the deadline is not cut.
        let busy = Snapshot { active: 1, served: true, idle_since: t0, head_since: None };
        assert_eq!(verdict(busy, t0, secs(t0, 10), None, D), Verdict::WaitUntil(secs(t0, 20)));
    }

    #[test]
    fn an_idle_connection_is_shut_down_then_closed() {
        let t0 = Instant::now();
        let idle = Snapshot { active: 0, served: true, idle_since: secs(t0, 5), head_since: None };
        // Looked at every header_read, for a next head (see below).
        assert_eq!(verdict(idle, t0, secs(t0, 30), None, D), Verdict::WaitUntil(secs(t0, 40)));
        assert_eq!(verdict(idle, t0, secs(t0, 60), None, D), Verdict::WaitUntil(secs(t0, 65)));
        assert_eq!(verdict(idle, t0, secs(t0, 65), None, D), Verdict::Shutdown);
        // A client that answers pings but sends no request is closed after the GOAWAY grace.
        assert_eq!(verdict(idle, t0, secs(t0, 66), Some(secs(t0, 65)), D), Verdict::WaitUntil(secs(t0, 75)));
        assert_eq!(verdict(idle, t0, secs(t0, 75), Some(secs(t0, 65)), D), Verdict::Close(Ending::Idle));
    }

    #[test]
    fn a_keep_alive_connection_is_idle_for_idle_timeout_but_a_begun_head_has_header_read() {
        let t0 = Instant::now();
        // Idle past header_read with nothing sent: still open (hyper's own
        // header timeout would have closed it at t0 + 15).
        let idle = Snapshot { active: 0, served: true, idle_since: secs(t0, 5), head_since: None };
        assert_eq!(verdict(idle, t0, secs(t0, 20), None, D), Verdict::WaitUntil(secs(t0, 30)));
        // Half a head at t0 + 40: seen at the next look (t0 + 40..50), cut at t0 + 50.
        let begun = Snapshot { head_since: Some(secs(t0, 40)), ..idle };
        assert_eq!(verdict(begun, t0, secs(t0, 45), None, D), Verdict::WaitUntil(secs(t0, 50)));
        assert_eq!(verdict(begun, t0, secs(t0, 50), None, D), Verdict::Close(Ending::SlowHead));
        // A head still arriving when idle_timeout passes is not shut down as idle.
        let late = Snapshot { head_since: Some(secs(t0, 62)), ..idle };
        assert_eq!(verdict(late, t0, secs(t0, 66), None, D), Verdict::WaitUntil(secs(t0, 72)));
        // Once a shutdown began, the shutdown's grace and the head's deadline both hold.
        assert_eq!(verdict(late, t0, secs(t0, 72), Some(secs(t0, 65)), D), Verdict::Close(Ending::SlowHead));
    }

    #[tokio::test]
    async fn a_full_listener_closes_the_connection_idle_longest() {
        let slots = Slots::new(3);
        let old = slots.acquire().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let busy = slots.acquire().await;
        let newer = slots.acquire().await;
        for s in [&old, &busy, &newer] {
            s.tracker.polled.store(true, Ordering::Release);
        }
        let _request = busy.tracker().request_started(false);
        // `busy` is the oldest but has a request in progress; `old` went idle first.
        let shed = old.tracker();
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire().await }
        });
        shed.shed_now.notified().await;
        assert!(shed.shed.load(Ordering::Acquire));
        assert!(!newer.tracker().shed.load(Ordering::Acquire));
        drop(old);
        let fourth = waiting.await.unwrap();
        assert_eq!(slots.open.lock().unwrap().len(), 3);
        drop((busy, newer, fourth));
        slots.all_closed().await;
    }

    #[tokio::test]
    async fn a_connection_not_yet_polled_is_not_shed() {
        let slots = Slots::new(1);
        let fresh = slots.acquire().await;
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire().await }
        });
        tokio::time::sleep(RECHECK_WHEN_ALL_BUSY * 3).await;
        assert!(!fresh.tracker.shed.load(Ordering::Acquire), "its request may be waiting to be read");
        fresh.tracker.polled.store(true, Ordering::Release);
        fresh.tracker.shed_now.notified().await;
        drop(fresh);
        drop(waiting.await.unwrap());
    }
}
