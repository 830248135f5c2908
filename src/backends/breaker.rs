//! A circuit breaker per backend: after `failure_threshold` consecutive failed
//! calls the backend is left alone for `open_for`, and calls fail at once with
//! a 503 instead of each waiting out its deadline against a backend that is
//! down (which would hold connections, workers and the client's patience).
//!
//! [`Circuit`] is the state machine, pure and driven by the `Instant` it is
//! given, so the tests control time. [`Breaker`] wraps it in a mutex, reads
//! the clock and reports transitions in metrics and logs; [`Breakers`] holds
//! one per backend, and ClickHouse one per kind of call
//! ([`ClickHouseBreakers`]), shared by every clone of `Backends`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Backend, BackendError};
use crate::config::BreakerConfig;
use crate::telemetry::names;

/// Where the circuit stands, as `backend_circuit_state` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Calls go through; consecutive failures are counted.
    Closed,
    /// `open_for` has passed: a few probe calls go through to test the backend.
    HalfOpen,
    /// Calls fail at once without reaching the backend.
    Open,
}

impl Position {
    /// The gauge value: 0 closed, 1 half-open, 2 open (higher is worse).
    pub fn gauge(self) -> f64 {
        match self {
            Position::Closed => 0.0,
            Position::HalfOpen => 1.0,
            Position::Open => 2.0,
        }
    }

    /// The `to` label of the transition counter.
    pub fn name(self) -> &'static str {
        match self {
            Position::Closed => "closed",
            Position::HalfOpen => "half_open",
            Position::Open => "open",
        }
    }
}

/// The thresholds of the state machine (the `[breaker]` section without `enabled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub failure_threshold: u32,
    pub open_for: Duration,
    pub half_open_probes: u32,
}

impl From<&BreakerConfig> for Policy {
    fn from(c: &BreakerConfig) -> Self {
        Policy { failure_threshold: c.failure_threshold, open_for: c.open_for, half_open_probes: c.half_open_probes }
    }
}

/// What a call was let through as; its result is recorded under the same kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An ordinary call, admitted while closed.
    Call,
    /// One of the few calls admitted while half-open to test the backend, in
    /// the given half-open round: a probe that outlives its round (another
    /// probe failed, the circuit opened and is half-open again) must neither
    /// decide nor free a slot of the next round.
    Probe { round: u64 },
}

/// Why a call was not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Open: `retry_in` until probes are let through.
    Open { failures: u32, last_error: String, retry_in: Duration },
    /// Half-open, and every probe slot is taken by a call still running.
    ProbesBusy { failures: u32, last_error: String, in_flight: u32 },
}

impl Rejection {
    /// The `detail` of the 503: what happened, what the last failure was, and when it ends.
    pub fn detail(&self) -> String {
        match self {
            Rejection::Open { failures, last_error, retry_in } => format!(
                "circuit open after {failures} consecutive failures (last: {last_error}); retrying in {:.1}s",
                // Never "0.0s": the circuit is still open, so it is at least a moment.
                retry_in.as_secs_f64().max(0.1)
            ),
            Rejection::ProbesBusy { failures, last_error, in_flight } => format!(
                "circuit half-open after {failures} consecutive failures (last: {last_error}); \
                 {in_flight} probe call(s) in flight decide whether it closes, other calls fail until then"
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { round: u64, probes_in_flight: u32 },
}

/// The pure state machine of one backend's breaker.
#[derive(Debug, Clone)]
pub struct Circuit {
    policy: Policy,
    state: State,
    /// Consecutive failures of admitted calls. Kept while open and half-open
    /// (a failed probe adds one) so a rejection can say how many there were.
    failures: u32,
    /// The last failure, quoted in rejections so a 503 still says what is wrong.
    last_error: String,
    /// Half-open rounds so far (see [`Kind::Probe`]).
    rounds: u64,
}

impl Circuit {
    /// A closed circuit.
    pub fn new(policy: Policy) -> Self {
        Circuit { policy, state: State::Closed, failures: 0, last_error: String::new(), rounds: 0 }
    }

    /// Where the circuit stands. An open circuit whose `open_for` has passed
    /// still reads as open until the next call moves it to half-open.
    pub fn position(&self) -> Position {
        match self.state {
            State::Closed => Position::Closed,
            State::Open { .. } => Position::Open,
            State::HalfOpen { .. } => Position::HalfOpen,
        }
    }

    /// Consecutive failures counted so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Decides whether a call may reach the backend at `now`.
    pub fn admit(&mut self, now: Instant) -> Result<Kind, Rejection> {
        if let State::Open { until } = self.state {
            if now < until {
                return Err(Rejection::Open {
                    failures: self.failures,
                    last_error: self.last_error.clone(),
                    retry_in: until - now,
                });
            }
            self.rounds += 1;
            self.state = State::HalfOpen { round: self.rounds, probes_in_flight: 0 };
        }
        match &mut self.state {
            State::Closed => Ok(Kind::Call),
            State::HalfOpen { round, probes_in_flight } if *probes_in_flight < self.policy.half_open_probes => {
                *probes_in_flight += 1;
                Ok(Kind::Probe { round: *round })
            }
            State::HalfOpen { probes_in_flight, .. } => Err(Rejection::ProbesBusy {
                failures: self.failures,
                last_error: self.last_error.clone(),
                in_flight: *probes_in_flight,
            }),
            State::Open { .. } => unreachable!("an open circuit was handled above"),
        }
    }

    /// Records the outcome of a call admitted as `kind`: `Err` carries the
    /// failure's description.
    pub fn record(&mut self, kind: Kind, outcome: Result<(), &str>, now: Instant) {
        match (self.state, kind) {
            // A probe decides: one success shows the backend answers again, one
            // failure shows it does not, and it is left alone for another `open_for`.
            (State::HalfOpen { round, .. }, Kind::Probe { round: probe_round }) if round == probe_round => {
                match outcome {
                    Ok(()) => self.close(),
                    Err(e) => {
                        self.note_failure(e);
                        self.state = State::Open { until: now + self.policy.open_for };
                    }
                }
            }
            // Closed, whether the call was admitted as a call or as a probe whose
            // sibling already closed the circuit: count it like any call.
            (State::Closed, _) => match outcome {
                Ok(()) => self.failures = 0,
                Err(e) => {
                    self.note_failure(e);
                    if self.failures >= self.policy.failure_threshold {
                        self.state = State::Open { until: now + self.policy.open_for };
                    }
                }
            },
            // Calls admitted before the circuit opened, ending late, and probes
            // whose sibling already failed: they say nothing about the backend
            // since, and must not extend or shorten the open period.
            (State::Open { .. } | State::HalfOpen { .. }, _) => {}
        }
    }

    /// A probe that ended without an outcome (its caller went away): its slot
    /// is free for the next call, or half-open would wait forever.
    pub fn release(&mut self, kind: Kind) {
        if let (State::HalfOpen { round, probes_in_flight }, Kind::Probe { round: probe_round }) =
            (&mut self.state, kind)
        {
            if *round == probe_round {
                *probes_in_flight = probes_in_flight.saturating_sub(1);
            }
        }
    }

    fn note_failure(&mut self, e: &str) {
        self.failures = self.failures.saturating_add(1);
        e.clone_into(&mut self.last_error);
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.failures = 0;
        self.last_error.clear();
    }
}

/// One backend's breaker: the circuit behind a mutex, with metrics.
///
/// The mutex guards a few words and is held for a comparison or two, never
/// across an await; on the success path that is two uncontended locks per
/// backend call, small next to the network round trip the call makes.
#[derive(Debug)]
pub struct Breaker {
    backend: Backend,
    /// Which of the backend's circuits this is, when it has more than one
    /// (the `circuit` label of the metrics and the log field).
    name: Option<&'static str>,
    enabled: bool,
    open_for: Duration,
    circuit: Mutex<Circuit>,
}

impl Breaker {
    /// A closed breaker for `backend`; reports its position at once so the
    /// gauge exists before the first failure.
    pub fn new(backend: Backend, cfg: &BreakerConfig) -> Self {
        Self::build(backend, None, cfg)
    }

    /// A closed breaker for one kind of call to `backend`, named `circuit`
    /// in metrics and logs.
    pub fn for_calls(backend: Backend, circuit: &'static str, cfg: &BreakerConfig) -> Self {
        Self::build(backend, Some(circuit), cfg)
    }

    fn build(backend: Backend, circuit: Option<&'static str>, cfg: &BreakerConfig) -> Self {
        let breaker = Breaker {
            backend,
            name: circuit,
            enabled: cfg.enabled,
            open_for: cfg.open_for,
            circuit: Mutex::new(Circuit::new(Policy::from(cfg))),
        };
        metrics::gauge!(names::BACKEND_CIRCUIT_STATE, breaker.labels()).set(Position::Closed.gauge());
        breaker
    }

    /// The backend this breaker guards.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The name of its circuit, for a backend with one per kind of call.
    pub fn circuit(&self) -> Option<&'static str> {
        self.name
    }

    /// `backend`, and `circuit` where the backend has several: the series of
    /// a backend with one circuit keep the labels they always had.
    fn labels(&self) -> Vec<metrics::Label> {
        let mut labels = vec![metrics::Label::new("backend", self.backend.name())];
        if let Some(circuit) = self.name {
            labels.push(metrics::Label::new("circuit", circuit));
        }
        labels
    }

    /// Where the circuit stands now.
    pub fn position(&self) -> Position {
        self.lock().position()
    }

    /// Lets a call through, or fails it at once naming the backend and why.
    pub fn admit(&self, call: &'static str) -> Result<Permit<'_>, BackendError> {
        if !self.enabled {
            return Ok(Permit { breaker: self, kind: None });
        }
        let admitted = self.with_circuit(|c| c.admit(Instant::now()));
        match admitted {
            Ok(kind) => Ok(Permit { breaker: self, kind: Some(kind) }),
            Err(rejection) => {
                metrics::counter!(names::BACKEND_CIRCUIT_REJECTED, "backend" => self.backend.name(), "call" => call)
                    .increment(1);
                let retry_in = match &rejection {
                    Rejection::Open { retry_in, .. } => Some(*retry_in),
                    Rejection::ProbesBusy { .. } => None,
                };
                Err(BackendError::CircuitOpen { backend: self.backend, detail: rejection.detail(), retry_in })
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Circuit> {
        // The circuit is left consistent by every method (none can panic
        // half-way), so a poisoned lock still holds a usable state.
        self.circuit.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the circuit and reports a change of position.
    fn with_circuit<R>(&self, f: impl FnOnce(&mut Circuit) -> R) -> R {
        let (out, before, after, failures) = {
            let mut c = self.lock();
            let before = c.position();
            let out = f(&mut c);
            (out, before, c.position(), c.failures())
        };
        if before != after {
            self.report(after, failures);
        }
        out
    }

    fn report(&self, to: Position, failures: u32) {
        let (backend, circuit) = (self.backend.name(), self.name);
        metrics::gauge!(names::BACKEND_CIRCUIT_STATE, self.labels()).set(to.gauge());
        let mut labels = self.labels();
        labels.push(metrics::Label::new("to", to.name()));
        metrics::counter!(names::BACKEND_CIRCUIT_TRANSITIONS, labels).increment(1);
        match to {
            Position::Open => tracing::warn!(
                backend,
                circuit,
                failures,
                "circuit opened: calls fail at once for {}",
                humantime::format_duration(self.open_for)
            ),
            Position::HalfOpen => tracing::info!(backend, circuit, "circuit half-open: letting probe calls through"),
            Position::Closed => tracing::info!(backend, circuit, "circuit closed: a probe call succeeded"),
        }
    }
}

/// A call let through by a breaker. Record its outcome with [`Permit::record`];
/// dropped unrecorded (the caller went away), it frees its probe slot.
#[must_use = "a permit's outcome must be recorded, or the call counts for nothing"]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    /// None when the breaker is disabled.
    kind: Option<Kind>,
}

impl Permit<'_> {
    /// Records the call's outcome: `Err` with the failure's description.
    pub fn record(mut self, outcome: Result<(), &str>) {
        if let Some(kind) = self.kind.take() {
            self.breaker.with_circuit(|c| c.record(kind, outcome, Instant::now()));
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(kind) = self.kind.take() {
            self.breaker.with_circuit(|c| c.release(kind));
        }
    }
}

/// One breaker per backend, and per kind of call for ClickHouse; shared by
/// every clone.
#[derive(Debug, Clone)]
pub struct Breakers {
    pub elasticsearch: Arc<Breaker>,
    pub clickhouse: ClickHouseBreakers,
    pub kafka: Arc<Breaker>,
    pub schema_registry: Arc<Breaker>,
}

impl Breakers {
    /// Closed breakers for every backend.
    pub fn new(cfg: &BreakerConfig) -> Self {
        Breakers {
            elasticsearch: Arc::new(Breaker::new(Backend::Elasticsearch, cfg)),
            clickhouse: ClickHouseBreakers::new(cfg),
            kafka: Arc::new(Breaker::new(Backend::Kafka, cfg)),
            schema_registry: Arc::new(Breaker::new(Backend::SchemaRegistry, cfg)),
        }
    }
}

/// ClickHouse's breakers, one per kind of call. Its calls differ in cost and
/// in who sends them: a flood of lookups of unknown order numbers, or an
/// analytics query that times out, must not fail the lookups of old orders
/// (nor the other way round), as one shared circuit did.
#[derive(Debug, Clone)]
pub struct ClickHouseBreakers {
    /// Views of orders older than the hot window, by id (`get_orders`).
    pub orders: Arc<Breaker>,
    /// Order number to order id (`find_by_number`).
    pub numbers: Arc<Breaker>,
    /// The analytical queries: KPIs, revenue, time series, top SKUs, funnel.
    pub analytics: Arc<Breaker>,
}

impl ClickHouseBreakers {
    /// Closed breakers, with the same settings, labelled `circuit` = `orders`,
    /// `numbers` and `analytics`.
    pub fn new(cfg: &BreakerConfig) -> Self {
        let breaker = |circuit| Arc::new(Breaker::for_calls(Backend::ClickHouse, circuit, cfg));
        ClickHouseBreakers { orders: breaker("orders"), numbers: breaker("numbers"), analytics: breaker("analytics") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OPEN_FOR: Duration = Duration::from_secs(5);
    /// A probe of the first and of the second half-open round.
    const PROBE_1: Kind = Kind::Probe { round: 1 };
    const PROBE_2: Kind = Kind::Probe { round: 2 };

    fn policy(threshold: u32, probes: u32) -> Policy {
        Policy { failure_threshold: threshold, open_for: OPEN_FOR, half_open_probes: probes }
    }

    /// Admits and fails calls until the circuit opens.
    fn open(c: &mut Circuit, now: Instant) {
        while c.position() == Position::Closed {
            let kind = c.admit(now).expect("closed admits");
            c.record(kind, Err("connection refused"), now);
        }
    }

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let t = Instant::now();
        let mut c = Circuit::new(policy(3, 1));
        for _ in 0..2 {
            assert_eq!(c.admit(t), Ok(Kind::Call));
            c.record(Kind::Call, Err("timeout"), t);
            assert_eq!(c.position(), Position::Closed);
        }
        c.record(Kind::Call, Err("connection refused"), t);
        assert_eq!(c.position(), Position::Open);
        let Err(r) = c.admit(t + Duration::from_secs(1)) else { panic!("open admits nothing") };
        assert_eq!(
            r,
            Rejection::Open { failures: 3, last_error: "connection refused".into(), retry_in: Duration::from_secs(4) }
        );
        assert_eq!(
            r.detail(),
            "circuit open after 3 consecutive failures (last: connection refused); retrying in 4.0s"
        );
    }

    #[test]
    fn a_success_resets_the_count() {
        let t = Instant::now();
        let mut c = Circuit::new(policy(3, 1));
        for _ in 0..10 {
            c.record(Kind::Call, Err("timeout"), t);
            c.record(Kind::Call, Err("timeout"), t);
            c.record(Kind::Call, Ok(()), t);
        }
        assert_eq!(c.position(), Position::Closed);
        assert_eq!(c.failures(), 0);
    }

    #[test]
    fn threshold_of_one_opens_on_the_first_failure() {
        let t = Instant::now();
        let mut c = Circuit::new(policy(1, 1));
        c.record(Kind::Call, Err("timeout"), t);
        assert_eq!(c.position(), Position::Open);
    }

    #[test]
    fn half_open_after_open_for_then_a_probe_success_closes() {
        let t = Instant::now();
        let mut c = Circuit::new(policy(2, 1));
        open(&mut c, t);
        assert!(c.admit(t + OPEN_FOR - Duration::from_millis(1)).is_err());
        assert_eq!(c.admit(t + OPEN_FOR), Ok(PROBE_1));
        assert_eq!(c.position(), Position::HalfOpen);
        // The single probe slot is taken: others fail fast, saying why.
        let Err(busy) = c.admit(t + OPEN_FOR) else { panic!("one probe at a time") };
        assert!(busy.detail().contains("1 probe call(s) in flight"), "{}", busy.detail());
        c.record(PROBE_1, Ok(()), t + OPEN_FOR);
        assert_eq!(c.position(), Position::Closed);
        assert_eq!(c.failures(), 0);
        assert_eq!(c.admit(t + OPEN_FOR), Ok(Kind::Call));
    }

    #[test]
    fn a_probe_failure_opens_again_for_open_for() {
        let t = Instant::now();
        let mut c = Circuit::new(policy(2, 1));
        open(&mut c, t);
        let t2 = t + OPEN_FOR + Duration::from_secs(1);
        assert_eq!(c.admit(t2), Ok(PROBE_1));
        c.record(PROBE_1, Err("still refused"), t2);
        assert_eq!(c.position(), Position::Open);
        let Err(Rejection::Open { failures, last_error, retry_in }) = c.admit(t2) else { panic!("open again") };
        assert_eq!((failures, last_error.as_str(), retry_in), (3, "still refused", OPEN_FOR));
        assert_eq!(c.admit(t2 + OPEN_FOR), Ok(PROBE_2));
    }

    #[test]
    fn several_probes_when_configured() {
        let t = Instant::now();
        let mut c = Circuit::new(policy(1, 3));
        open(&mut c, t);
        let t2 = t + OPEN_FOR;
        for _ in 0..3 {
            assert_eq!(c.admit(t2), Ok(PROBE_1));
        }
        assert!(c.admit(t2).is_err());
        // One probe fails: open again; the others, ending later, change nothing.
        c.record(PROBE_1, Err("timeout"), t2);
        c.record(PROBE_1, Ok(()), t2);
        c.record(PROBE_1, Ok(()), t2);
        assert_eq!(c.position(), Position::Open);
    }

    #[test]
    fn a_cancelled_probe_frees_its_slot() {
        let t = Instant::now();
        let mut c = Circuit::new(policy(1, 1));
        open(&mut c, t);
        assert_eq!(c.admit(t + OPEN_FOR), Ok(PROBE_1));
        c.release(PROBE_1);
        assert_eq!(c.admit(t + OPEN_FOR), Ok(PROBE_1));
    }

    #[test]
    fn a_probe_of_an_earlier_round_neither_decides_nor_frees_a_slot() {
        let t = Instant::now();
        let mut c = Circuit::new(policy(1, 2));
        open(&mut c, t);
        let t2 = t + OPEN_FOR;
        assert_eq!(c.admit(t2), Ok(PROBE_1));
        assert_eq!(c.admit(t2), Ok(PROBE_1));
        c.record(PROBE_1, Err("timeout"), t2);
        // The second probe of round 1 is still running when round 2 starts.
        let t3 = t2 + OPEN_FOR;
        assert_eq!(c.admit(t3), Ok(PROBE_2));
        assert_eq!(c.admit(t3), Ok(PROBE_2));
        c.release(PROBE_1);
        assert!(c.admit(t3).is_err(), "round 2 still has both its probes out");
        c.record(PROBE_1, Ok(()), t3);
        assert_eq!(c.position(), Position::HalfOpen, "only a probe of this round decides");
        c.record(PROBE_2, Ok(()), t3);
        assert_eq!(c.position(), Position::Closed);
    }

    #[test]
    fn late_results_of_calls_from_before_the_opening_are_ignored() {
        let t = Instant::now();
        let mut c = Circuit::new(policy(2, 1));
        open(&mut c, t);
        // A slow call admitted while closed succeeds now: it does not close the
        // circuit (only a probe decides) nor does a late failure extend it.
        c.record(Kind::Call, Ok(()), t + Duration::from_secs(1));
        c.record(Kind::Call, Err("timeout"), t + Duration::from_secs(4));
        assert_eq!(c.position(), Position::Open);
        assert_eq!(c.admit(t + OPEN_FOR), Ok(PROBE_1));
        c.record(Kind::Call, Ok(()), t + OPEN_FOR);
        assert_eq!(c.position(), Position::HalfOpen, "a stale call is no probe");
    }

    #[test]
    fn disabled_breaker_admits_everything() {
        let cfg = BreakerConfig { enabled: false, failure_threshold: 1, open_for: OPEN_FOR, half_open_probes: 1 };
        let b = Breaker::new(Backend::Elasticsearch, &cfg);
        for _ in 0..5 {
            b.admit("get_order").expect("disabled").record(Err("timeout"));
        }
        assert_eq!(b.position(), Position::Closed);
    }

    #[test]
    fn breaker_rejects_with_a_backend_error_and_a_dropped_probe_frees_its_slot() {
        let cfg = BreakerConfig {
            enabled: true,
            failure_threshold: 2,
            open_for: Duration::from_millis(20),
            half_open_probes: 1,
        };
        let b = Breaker::new(Backend::ClickHouse, &cfg);
        b.admit("get_orders").unwrap().record(Err("timeout"));
        b.admit("get_orders").unwrap().record(Err("connection refused"));
        let err = b.admit("get_orders").err().expect("open");
        assert_eq!(err.backend(), Backend::ClickHouse);
        let text = err.to_string();
        assert!(
            text.starts_with(
                "clickhouse failed: circuit open after 2 consecutive failures (last: connection refused); retrying in "
            ),
            "{text}"
        );
        std::thread::sleep(Duration::from_millis(25));
        drop(b.admit("get_orders").expect("a probe"));
        assert_eq!(b.position(), Position::HalfOpen);
        b.admit("get_orders").expect("the dropped probe's slot is free").record(Ok(()));
        assert_eq!(b.position(), Position::Closed);
    }

    #[test]
    fn clickhouse_calls_of_one_kind_open_only_their_own_circuit() {
        let cfg = BreakerConfig { enabled: true, failure_threshold: 5, open_for: OPEN_FOR, half_open_probes: 1 };
        let ch = Breakers::new(&cfg).clickhouse;
        // The flood of issue 12: lookups of unknown numbers time out.
        for _ in 0..5 {
            ch.numbers.admit("find_by_number").unwrap().record(Err("no answer within 5s"));
        }
        assert_eq!(ch.numbers.position(), Position::Open);
        assert!(ch.numbers.admit("find_by_number").is_err());
        // Old orders by id and analytics still reach ClickHouse.
        ch.orders.admit("get_orders").expect("orders has a circuit of its own").record(Ok(()));
        ch.analytics.admit("kpis").expect("analytics has a circuit of its own").record(Ok(()));
        assert_eq!((ch.orders.position(), ch.analytics.position()), (Position::Closed, Position::Closed));
        let names = [&ch.orders, &ch.numbers, &ch.analytics].map(|b| (b.backend(), b.circuit()));
        assert_eq!(
            names,
            [
                (Backend::ClickHouse, Some("orders")),
                (Backend::ClickHouse, Some("numbers")),
                (Backend::ClickHouse, Some("analytics"))
            ]
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Admit,
        Succeed,
        Fail,
        Cancel,
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Admit),
            2 => Just(Op::Succeed),
            3 => Just(Op::Fail),
            1 => Just(Op::Cancel),
            1 => (0u64..8_000).prop_map(Op::Wait),
        ]
    }

    proptest! {
        /// Whatever happens: probes never exceed the limit, a closed circuit
        /// admits everything, an open one nothing before `open_for` has passed,
        /// and an open circuit is always preceded by `failure_threshold`
        /// consecutive failures.
        #[test]
        fn invariants_hold(threshold in 1u32..5, probes in 1u32..4, ops in proptest::collection::vec(op(), 0..200)) {
            let start = Instant::now();
            let mut now = start;
            let mut c = Circuit::new(policy(threshold, probes));
            let mut in_flight: Vec<Kind> = Vec::new();
            let mut opened_at: Option<Instant> = None;
            for op in ops {
                let was = c.position();
                match op {
                    Op::Admit => match c.admit(now) {
                        Ok(kind) => {
                            prop_assert!(opened_at.is_none_or(|at| now >= at + OPEN_FOR));
                            in_flight.push(kind);
                        }
                        Err(r) => {
                            prop_assert_ne!(was, Position::Closed, "closed rejected a call");
                            if let Rejection::Open { retry_in, .. } = r {
                                prop_assert!(retry_in > Duration::ZERO && retry_in <= OPEN_FOR);
                            }
                        }
                    },
                    Op::Succeed | Op::Fail | Op::Cancel => {
                        let Some(kind) = in_flight.pop() else { continue };
                        match op {
                            Op::Succeed => c.record(kind, Ok(()), now),
                            Op::Fail => c.record(kind, Err("timeout"), now),
                            _ => c.release(kind),
                        }
                    }
                    Op::Wait(ms) => now += Duration::from_millis(ms),
                }
                let pos = c.position();
                if pos == Position::Open && was != Position::Open {
                    opened_at = Some(now);
                    prop_assert!(c.failures() >= threshold, "opened after {} failures", c.failures());
                }
                if pos == Position::Closed {
                    opened_at = None;
                    prop_assert!(c.failures() < threshold);
                }
                if let State::HalfOpen { round, probes_in_flight } = c.state {
                    prop_assert!(probes_in_flight <= probes);
                    let outstanding = in_flight.iter().filter(|k| **k == Kind::Probe { round }).count() as u32;
                    prop_assert!(probes_in_flight <= outstanding, "{probes_in_flight} slots taken, {outstanding} probes out");
                }
            }
        }
    }
}
