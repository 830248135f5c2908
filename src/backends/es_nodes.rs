//! The nodes of the Elasticsearch cluster, and which of them a call goes to.
//!
//! The client knows every node of `elasticsearch.urls`, each through an
//! `Elasticsearch` client of its own with the same credentials, TLS and
//! deadline. A call goes to the next node round the ring that is not marked
//! dead. A node that fails below HTTP (connection refused or reset, no answer
//! before the call's deadline) is marked dead for a backoff, 1 s doubling to
//! 30 s while it stays down, as the official clients do; an HTTP error status
//! comes from a live node and marks nothing. The failed call is sent once
//! more, to another node, when that is safe ([`Retry`]). When every node is
//! marked dead the one whose backoff ends first is tried all the same: a call
//! is never refused without being sent.
//!
//! The crate's own `MultiNodeConnectionPool` goes round the nodes but never
//! leaves a dead one out, so a node that is down would fail every call that
//! comes to its turn.
//!
//! [`Selector`] is the choice, pure and driven by the `Instant` it is given,
//! so the tests control time. [`Nodes`] holds the clients and the selector
//! behind a mutex, sends, tells a node's failure from an answer, and reports
//! in metrics and logs. With one node nothing is ever marked: there is no
//! other to go to, and the backend's circuit breaker already speaks for it.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use elasticsearch::Elasticsearch;
use url::Url;

use super::{endpoint, Backend};
use crate::telemetry::names;

/// How long a node that failed is left out: `first`, doubling with each
/// further failure, up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

/// The official clients' backoff: 1 s, doubling to 30 s.
pub const BACKOFF: Backoff = Backoff { first: Duration::from_secs(1), max: Duration::from_secs(30) };

impl Backoff {
    /// The time left out after `failures` consecutive failures (at least one).
    pub fn after(self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

/// Where one node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Alive,
    /// Failed `failures` times in a row: left out until `until`.
    Dead {
        until: Instant,
        failures: u32,
    },
    /// Its backoff is over and one call went to it to see whether it is back.
    /// The others leave it out until `until`, in case that call never ends.
    Trial {
        until: Instant,
        failures: u32,
    },
}

/// What recording an outcome changed, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    /// Marked dead, from alive (`failures` = 1) or again after a trial that
    /// failed; left out for `backoff`.
    Dead {
        failures: u32,
        backoff: Duration,
    },
    /// Answered while marked dead: back in the round.
    Alive,
}

/// The pure choice of a node: health per node and the round-robin position.
#[derive(Debug, Clone)]
pub struct Selector {
    health: Vec<Health>,
    next: usize,
    backoff: Backoff,
}

impl Selector {
    /// `nodes` (at least one) alive nodes; the first call goes to the first.
    pub fn new(nodes: usize, backoff: Backoff) -> Self {
        assert!(nodes > 0, "a cluster has at least one node");
        Selector { health: vec![Health::Alive; nodes], next: 0, backoff }
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.health.len()
    }

    /// Never true: a selector has at least one node.
    pub fn is_empty(&self) -> bool {
        self.health.is_empty()
    }

    /// Whether a call at `now` may go to `node` in its turn: alive, or its
    /// backoff is over (it then gets one trial call).
    pub fn usable(&self, node: usize, now: Instant) -> bool {
        match self.health[node] {
            Health::Alive => true,
            Health::Dead { until, .. } | Health::Trial { until, .. } => until <= now,
        }
    }

    /// Whether `node` is marked dead (a trial that has not answered yet included).
    pub fn is_dead(&self, node: usize) -> bool {
        self.health[node] != Health::Alive
    }

    /// The node a call at `now` goes to, any but `except` (the node a retry
    /// moves away from): the next usable one round the ring, else the one
    /// whose backoff ends first. None only when `except` is the only node.
    pub fn choose(&mut self, now: Instant, except: Option<usize>) -> Option<usize> {
        let n = self.len();
        let candidates = (0..n).map(|k| (self.next + k) % n).filter(|&i| Some(i) != except);
        if let Some(i) = candidates.clone().find(|&i| self.usable(i, now)) {
            self.next = (i + 1) % n;
            if let Health::Dead { failures, .. } | Health::Trial { failures, .. } = self.health[i] {
                self.health[i] = Health::Trial { until: now + self.backoff.after(failures), failures };
            }
            return Some(i);
        }
        // Every other node is marked dead: their marks may be stale, and a
        // call refused untried would be a failure of our own making.
        candidates.min_by_key(|&i| match self.health[i] {
            Health::Dead { until, .. } | Health::Trial { until, .. } => Some(until),
            Health::Alive => None,
        })
    }

    /// Records that a call to `node` failed below HTTP at `now`.
    pub fn failed(&mut self, node: usize, now: Instant) -> Change {
        if self.len() < 2 {
            return Change::None;
        }
        let failures = match self.health[node] {
            Health::Alive => 1,
            Health::Trial { failures, .. } => failures.saturating_add(1),
            // Calls sent before it was marked, ending late, and calls sent
            // while every node was marked: the mark stands, and must not
            // grow with the number of calls that were under way.
            Health::Dead { .. } => return Change::None,
        };
        let backoff = self.backoff.after(failures);
        self.health[node] = Health::Dead { until: now + backoff, failures };
        Change::Dead { failures, backoff }
    }

    /// Records that `node` answered (with any HTTP status).
    pub fn answered(&mut self, node: usize) -> Change {
        if self.health[node] == Health::Alive {
            return Change::None;
        }
        self.health[node] = Health::Alive;
        Change::Alive
    }
}

/// When a call that failed on one node may be sent to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// It changes nothing (a read, a refresh): after any failure of the node.
    Safe,
    /// It writes: only when it never left, so it cannot have been applied.
    /// Ingest's bulk writes are conditional (sequence numbers, `create`), and
    /// the same bulk sent again after it was applied would answer conflicts
    /// instead of what it did; ingest reads again and re-plans a failed
    /// batch itself.
    IfNotSent,
}

/// How a node failed a call below HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeFailure {
    /// No connection was made (refused, unreachable, TLS handshake): the
    /// request never left.
    NotSent,
    /// The connection broke, or no answer came, after the request left.
    Sent,
}

impl Retry {
    fn allows(self, failure: NodeFailure) -> bool {
        self == Retry::Safe || failure == NodeFailure::NotSent
    }
}

/// How `err` failed, if the node failed it: None when the node answered,
/// whatever it said (an error status, a body that is not the JSON expected).
pub fn node_failure(err: &anyhow::Error) -> Option<NodeFailure> {
    let http = err.chain().find_map(|e| e.downcast_ref::<reqwest::Error>())?;
    if http.is_connect() {
        return Some(NodeFailure::NotSent);
    }
    // A body that is not JSON was answered; one that broke off was not.
    let answered_badly = err.chain().any(|e| e.is::<serde_json::Error>());
    let broken = http.is_request() || http.is_body() || http.is_timeout() || http.is_decode();
    (broken && !answered_badly && !http.is_status()).then_some(NodeFailure::Sent)
}

/// One node: its client, and how logs and messages name it.
struct Node {
    client: Elasticsearch,
    /// host:port, for errors and metric labels.
    endpoint: String,
    /// Its URL without credentials, for logs.
    shown: String,
}

/// The clients of every node and the choice between them.
pub struct Nodes {
    nodes: Vec<Node>,
    selector: Mutex<Selector>,
}

/// `url` without the credentials a URL may carry.
fn without_credentials(url: &Url) -> String {
    let mut shown = url.clone();
    // Fails only for URLs that cannot carry credentials, which then have none.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

impl Nodes {
    /// The nodes of `clients` (at least one), all alive.
    pub fn new(clients: Vec<(Url, Elasticsearch)>) -> Self {
        let nodes: Vec<Node> = clients
            .into_iter()
            .map(|(url, client)| Node { client, endpoint: endpoint(&url), shown: without_credentials(&url) })
            .collect();
        let selector = Mutex::new(Selector::new(nodes.len(), BACKOFF));
        let this = Nodes { nodes, selector };
        for i in 0..this.nodes.len() {
            this.report_up(i, true);
        }
        this
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never true: there is at least one node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// host:port of every node, comma separated: the cluster in messages.
    pub fn endpoints(&self) -> String {
        self.nodes.iter().map(|n| n.endpoint.as_str()).collect::<Vec<_>>().join(",")
    }

    /// host:port of the nodes marked dead now.
    pub fn marked_dead(&self) -> Vec<&str> {
        let selector = self.lock();
        self.nodes.iter().enumerate().filter(|(i, _)| selector.is_dead(*i)).map(|(_, n)| n.endpoint.as_str()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Selector> {
        // The selector is consistent after every method (none panics half-way).
        self.selector.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now() -> Instant {
        tokio::time::Instant::now().into_std()
    }

    /// Runs `attempt` on a node, and once more on another when the first
    /// failed below HTTP and `retry` allows it. `deadline` is the call's (see
    /// [`Pending`]). An error names the node it came from.
    pub async fn send<'c, T, F, Fut>(
        &'c self,
        call: &'static str,
        retry: Retry,
        deadline: tokio::time::Instant,
        attempt: F,
    ) -> anyhow::Result<T>
    where
        F: Fn(&'c Elasticsearch) -> Fut,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        let first = self.lock().choose(Self::now(), None).expect("a first attempt always has a node");
        let (err, failure) = match self.attempt(first, Some(deadline), &attempt).await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !failure.is_some_and(|f| retry.allows(f)) {
            return Err(err);
        }
        let Some(second) = self.lock().choose(Self::now(), Some(first)) else { return Err(err) };
        metrics::counter!(names::BACKEND_FAILOVERS, "backend" => Backend::Elasticsearch.name(), "call" => call)
            .increment(1);
        tracing::debug!(
            backend = Backend::Elasticsearch.name(),
            call,
            from = %self.nodes[first].shown,
            to = %self.nodes[second].shown,
            error = %format!("{err:#}"),
            "elasticsearch call sent again to another node"
        );
        // The second attempt starts late: running out of the call's time says
        // nothing about its node, so it marks nothing.
        self.attempt(second, None, &attempt).await.map_err(|(e, _)| e)
    }

    /// One attempt on `node`, its outcome recorded.
    async fn attempt<'c, T, F, Fut>(
        &'c self,
        node: usize,
        deadline: Option<tokio::time::Instant>,
        attempt: &F,
    ) -> Result<T, (anyhow::Error, Option<NodeFailure>)>
    where
        F: Fn(&'c Elasticsearch) -> Fut,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        let mut pending = Pending { nodes: self, node, deadline };
        let result = attempt(&self.nodes[node].client).await;
        pending.deadline = None;
        match result {
            Ok(v) => {
                self.answered(node);
                Ok(v)
            }
            Err(e) => {
                let failure = node_failure(&e);
                match failure {
                    Some(_) => self.failed(node, &format!("{e:#}")),
                    None => self.answered(node),
                }
                Err((e.context(self.nodes[node].endpoint.clone()), failure))
            }
        }
    }

    fn answered(&self, node: usize) {
        if self.lock().answered(node) == Change::Alive {
            let n = &self.nodes[node];
            tracing::info!(backend = Backend::Elasticsearch.name(), node = %n.shown, "elasticsearch node answers again");
            self.report_up(node, true);
        }
    }

    fn failed(&self, node: usize, error: &str) {
        let change = self.lock().failed(node, Self::now());
        let Change::Dead { failures, backoff } = change else { return };
        let (n, backend) = (&self.nodes[node], Backend::Elasticsearch.name());
        let backoff = humantime::format_duration(backoff);
        if failures == 1 {
            tracing::warn!(backend, node = %n.shown, error, "elasticsearch node marked dead: calls go to the other nodes for {backoff}");
            self.report_up(node, false);
        } else {
            tracing::debug!(backend, node = %n.shown, failures, error, "elasticsearch node still dead: tried again in {backoff}");
        }
    }

    /// The node's gauge; only with several nodes, where a mark means something.
    fn report_up(&self, node: usize, up: bool) {
        if self.len() > 1 {
            let node = self.nodes[node].endpoint.clone();
            metrics::gauge!(names::BACKEND_NODE_UP, "backend" => Backend::Elasticsearch.name(), "node" => node)
                .set(if up { 1.0 } else { 0.0 });
        }
    }
}

/// An attempt under way. Dropped before it ends, the call was cancelled: by
/// its caller, which says nothing about the node, or by the call's deadline,
/// which says the node did not answer in time (a connection that hangs, a
/// node that stopped answering). Only the first attempt of a call has the
/// whole deadline and is judged by it.
struct Pending<'a> {
    nodes: &'a Nodes,
    node: usize,
    deadline: Option<tokio::time::Instant>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            self.nodes.failed(self.node, "no answer within the deadline");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Duration = Duration::from_secs(1);

    fn two() -> (Selector, Instant) {
        (Selector::new(2, BACKOFF), Instant::now())
    }

    #[test]
    fn backoff_doubles_from_one_second_to_thirty() {
        let secs: Vec<u64> = (1..=8).map(|f| BACKOFF.after(f).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(BACKOFF.after(u32::MAX), 30 * S, "no overflow");
    }

    #[test]
    fn calls_go_round_the_live_nodes() {
        let mut s = Selector::new(3, BACKOFF);
        let now = Instant::now();
        let picks: Vec<_> = (0..6).map(|_| s.choose(now, None).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        s.failed(1, now);
        let picks: Vec<_> = (0..4).map(|_| s.choose(now, None).unwrap()).collect();
        assert_eq!(picks, [0, 2, 0, 2], "the dead node is left out");
    }

    #[test]
    fn a_dead_node_gets_one_trial_after_its_backoff_and_doubles_it_when_that_fails() {
        let (mut s, t0) = two();
        assert_eq!(s.failed(0, t0), Change::Dead { failures: 1, backoff: S });
        assert_eq!(s.choose(t0 + S / 2, None), Some(1));
        assert_eq!(s.choose(t0 + S / 2, None), Some(1));
        // Its backoff is over: one call tries it, the others keep away meanwhile.
        let t1 = t0 + S;
        let picks: Vec<_> = (0..3).map(|_| s.choose(t1, None).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 1, "one trial: {picks:?}");
        assert_eq!(s.failed(0, t1), Change::Dead { failures: 2, backoff: 2 * S });
        assert!(!s.usable(0, t1 + S) && s.usable(0, t1 + 2 * S));
        // The next trial answers: alive again, and back in the round.
        let t2 = t1 + 2 * S;
        assert_eq!(s.choose(t2, None), Some(0));
        assert_eq!(s.answered(0), Change::Alive);
        assert_eq!(s.answered(0), Change::None);
        let picks: Vec<_> = (0..4).map(|_| s.choose(t2, None).unwrap()).collect();
        assert_eq!(picks, [1, 0, 1, 0]);
        // A later failure starts from one second again.
        assert_eq!(s.failed(1, t2), Change::Dead { failures: 1, backoff: S });
    }

    #[test]
    fn failures_of_calls_already_under_way_do_not_extend_the_backoff() {
        let (mut s, t0) = two();
        s.failed(0, t0);
        for _ in 0..10 {
            assert_eq!(s.failed(0, t0 + S / 2), Change::None);
        }
        assert!(s.usable(0, t0 + S));
    }

    #[test]
    fn a_trial_that_never_ends_lets_another_through_after_the_backoff() {
        let (mut s, t0) = two();
        s.failed(0, t0);
        let t1 = t0 + S;
        assert_eq!(s.choose(t1, Some(1)), Some(0), "the trial");
        assert!(!s.usable(0, t1 + S / 2), "one trial at a time");
        assert!(s.usable(0, t1 + S), "the trial's caller went away; another may try");
    }

    #[test]
    fn with_every_node_dead_the_one_back_first_is_still_tried() {
        let mut s = Selector::new(3, BACKOFF);
        let t0 = Instant::now();
        s.failed(1, t0);
        s.failed(2, t0 + S / 4);
        s.failed(0, t0 + S / 2);
        for _ in 0..3 {
            assert_eq!(s.choose(t0 + S / 2, None), Some(1), "its backoff ends first");
        }
        assert_eq!(s.choose(t0 + S / 2, Some(1)), Some(2), "a retry goes to the next one back");
    }

    #[test]
    fn a_retry_goes_to_another_node_and_a_single_node_is_never_marked() {
        let (mut s, t0) = two();
        assert_eq!(s.choose(t0, Some(0)), Some(1));
        assert_eq!(s.choose(t0, Some(1)), Some(0));
        let mut one = Selector::new(1, BACKOFF);
        assert_eq!(one.failed(0, t0), Change::None, "no other node to go to");
        assert!(!one.is_dead(0));
        assert_eq!(one.choose(t0, None), Some(0));
        assert_eq!(one.choose(t0, Some(0)), None, "nowhere to retry");
    }

    #[test]
    fn a_refused_connection_is_a_failure_before_sending_and_a_status_is_an_answer() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
            let http = reqwest::Client::builder().tls_built_in_root_certs(false).build().unwrap();
            let err = http.get(format!("http://{closed}/")).send().await.unwrap_err();
            let err = anyhow::Error::from(err).context("searching");
            assert_eq!(node_failure(&err), Some(NodeFailure::NotSent));
            assert!(Retry::IfNotSent.allows(NodeFailure::NotSent) && !Retry::IfNotSent.allows(NodeFailure::Sent));
            assert_eq!(node_failure(&anyhow::anyhow!("search: status 503")), None);
            let bad_json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
            assert_eq!(node_failure(&anyhow::Error::from(bad_json)), None);
        });
    }

    fn client_of(url: &str) -> (Url, Elasticsearch) {
        use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
        let url: Url = url.parse().unwrap();
        let transport = TransportBuilder::new(SingleNodeConnectionPool::new(url.clone())).build().unwrap();
        (url, Elasticsearch::new(transport))
    }

    /// A node that reads each request and hangs up without answering.
    async fn hanging_up() -> String {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.read(&mut [0u8; 4096]).await;
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_write_that_may_have_arrived_is_not_sent_again_and_a_read_is() {
        let (a, b) = (hanging_up().await, hanging_up().await);
        let nodes = Nodes::new(vec![client_of(&a), client_of(&b)]);
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let send = |retry| {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            nodes.send("test", retry, deadline, |es| {
                attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async move { es.ping().send().await.map(drop).map_err(anyhow::Error::from) }
            })
        };
        let err = send(Retry::IfNotSent).await.expect_err("nobody answers");
        assert_eq!(attempts.swap(0, std::sync::atomic::Ordering::Relaxed), 1, "{err:#}");
        send(Retry::Safe).await.expect_err("nobody answers");
        assert_eq!(attempts.load(std::sync::atomic::Ordering::Relaxed), 2, "a read goes to the other node");
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_silent_until_the_deadline_is_marked_dead_and_a_caller_going_away_marks_nothing() {
        let nodes = Nodes::new(vec![client_of("http://127.0.0.1:1"), client_of("http://127.0.0.1:2")]);
        let silent = |within: Duration| {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            let call = nodes.send("test", Retry::Safe, deadline, |_| std::future::pending::<anyhow::Result<()>>());
            tokio::time::timeout(within, call)
        };
        assert!(silent(Duration::from_secs(2)).await.is_err(), "cut by the deadline");
        assert_eq!(nodes.marked_dead(), ["127.0.0.1:1"]);
        // The next call goes to the other node; its caller leaves early.
        assert!(silent(Duration::from_millis(500)).await.is_err());
        assert_eq!(nodes.marked_dead(), ["127.0.0.1:1"], "a cancelled call says nothing about its node");
    }

    #[test]
    fn credentials_never_show_in_a_node_s_name() {
        let url: Url = "https://gateway:hunter2@es-1.internal:9200/".parse().unwrap();
        assert_eq!(without_credentials(&url), "https://es-1.internal:9200/");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Choose { except: Option<usize> },
        Failed(usize),
        Answered(usize),
        Wait(u64),
    }

    fn ops(n: usize) -> impl Strategy<Value = Vec<Op>> {
        let op = prop_oneof![
            3 => proptest::option::of(0..n).prop_map(|except| Op::Choose { except }),
            2 => (0..n).prop_map(Op::Failed),
            1 => (0..n).prop_map(Op::Answered),
            2 => (0u64..40_000).prop_map(Op::Wait),
        ];
        proptest::collection::vec(op, 1..200)
    }

    proptest! {
        /// Whatever happened before: a call always gets a node; a usable node
        /// is preferred to one marked dead, else the one back first is taken;
        /// a retry never goes back to the node it left; a node is left out
        /// for between one and thirty seconds.
        #[test]
        fn the_choice_keeps_its_promises((n, ops) in (1usize..5).prop_flat_map(|n| (Just(n), ops(n)))) {
            let mut s = Selector::new(n, BACKOFF);
            let mut now = Instant::now();
            for op in ops {
                match op {
                    Op::Wait(ms) => now += Duration::from_millis(ms),
                    Op::Answered(i) => {
                        s.answered(i);
                        prop_assert!(s.usable(i, now));
                    }
                    Op::Failed(i) => {
                        let was_alive = !s.is_dead(i);
                        match s.failed(i, now) {
                            Change::Dead { failures, backoff } => {
                                prop_assert!(n > 1 && failures >= 1);
                                prop_assert!((BACKOFF.first..=BACKOFF.max).contains(&backoff));
                                prop_assert!(!s.usable(i, now + backoff - Duration::from_millis(1)));
                                prop_assert!(s.usable(i, now + backoff));
                                prop_assert!(failures > 1 || was_alive);
                            }
                            Change::Alive => prop_assert!(false, "a failure revived a node"),
                            Change::None => prop_assert!(n == 1 || !was_alive),
                        }
                    }
                    Op::Choose { except } => {
                        let before = s.clone();
                        let others: Vec<usize> = (0..n).filter(|&i| Some(i) != except).collect();
                        let chosen = s.choose(now, except);
                        if others.is_empty() {
                            prop_assert_eq!(chosen, None);
                            continue;
                        }
                        let i = chosen.expect("a node whenever there is another");
                        prop_assert!(others.contains(&i));
                        if others.iter().any(|&o| before.usable(o, now)) {
                            prop_assert!(before.usable(i, now), "a usable node exists, yet {} was chosen", i);
                        } else {
                            let until = |s: &Selector, j: usize| match s.health[j] {
                                Health::Dead { until, .. } | Health::Trial { until, .. } => until,
                                Health::Alive => now,
                            };
                            prop_assert!(others.iter().all(|&o| until(&before, i) <= until(&before, o)));
                        }
                    }
                }
            }
        }

        /// With every node alive, any `n` calls in a row reach every node once.
        #[test]
        fn live_nodes_share_the_calls(n in 1usize..6, skip in 0usize..10) {
            let mut s = Selector::new(n, BACKOFF);
            let now = Instant::now();
            for _ in 0..skip {
                s.choose(now, None);
            }
            let mut seen: Vec<usize> = (0..n).map(|_| s.choose(now, None).unwrap()).collect();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
    }
}
