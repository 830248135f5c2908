use super::*;

fn limits(queue: usize, max_lag_ms: u64) -> Limits {
    Limits {
        max_streams: 3,
        max_streams_per_client: 2,
        queue,
        max_lag: Duration::from_millis(max_lag_ms),
        heartbeat: Duration::from_secs(1),
    }
}

fn view(id: &str, version: u64) -> Arc<CachedView> {
    let mut o = crate::model::fixtures::order(version);
    o.order_id = id.into();
    let mut v = crate::model::OrderView::new(id);
    v.apply(crate::model::Component::Order(o));
    Arc::new(CachedView::for_tests(&v))
}

fn up(id: &str, version: u64) -> Arc<Update> {
    Arc::new(Update::new(id, view(id, version)))
}

#[test]
fn a_newer_version_replaces_the_waiting_one_and_a_full_queue_lags() {
    let l = limits(2, 60_000);
    let t0 = Instant::now();
    let mut p = Pending::default();
    assert_eq!(p.offer(up("a", 1), t0, &l), Offered::Queued);
    assert_eq!(p.offer(up("a", 2), t0, &l), Offered::Coalesced);
    assert_eq!(p.offer(up("b", 1), t0, &l), Offered::Queued);
    assert_eq!(p.offer(up("c", 1), t0, &l), Offered::Lagged, "a third order with a queue of 2");
    let taken = p.take();
    assert_eq!(taken.iter().map(|u| (&*u.order_id, u.entry.order_version())).collect::<Vec<_>>(), [("a", 2), ("b", 1)]);
    assert_eq!(p.coalesced, 1);
    assert_eq!(p.offer(up("c", 1), t0, &l), Offered::Queued, "room again once taken");
}

#[test]
fn an_update_waiting_longer_than_max_lag_lags_the_subscriber() {
    let l = limits(8, 100);
    let t0 = Instant::now();
    let mut p = Pending::default();
    p.offer(up("a", 1), t0, &l);
    assert_eq!(p.offer(up("a", 2), t0 + Duration::from_millis(50), &l), Offered::Coalesced);
    assert_eq!(p.offer(up("a", 3), t0 + Duration::from_millis(150), &l), Offered::Lagged);
    p.take();
    assert_eq!(p.offer(up("a", 4), t0 + Duration::from_secs(10), &l), Offered::Queued, "taken: caught up");
}

#[test]
fn limits_per_replica_and_per_client_and_a_dropped_subscription_frees_its_place() {
    let hub = Hub::new(limits(8, 60_000));
    let (alice, bob): (Arc<str>, Arc<str>) = ("alice".into(), "bob".into());
    let a1 = hub.subscribe(Topic::Order("o1".into()), alice.clone()).unwrap();
    let _a2 = hub.subscribe(Topic::Order("o1".into()), alice.clone()).unwrap();
    assert_eq!(hub.subscribe(Topic::Order("o2".into()), alice.clone()).err(), Some(Refused::Client(2)));
    let _b1 = hub.subscribe(Topic::Customer("c1".into()), bob.clone()).unwrap();
    assert_eq!(hub.subscribe(Topic::Order("o3".into()), bob.clone()).err(), Some(Refused::Replica(3)));
    drop(a1);
    assert_eq!(hub.open(), 2);
    assert!(hub.subscribe(Topic::Order("o3".into()), bob).is_ok());
}

#[test]
fn an_update_reaches_the_order_and_customer_subscribers_only() {
    let hub = Hub::new(limits(8, 60_000));
    let client: Arc<str> = "c".into();
    let order = hub.subscribe(Topic::Order("o1".into()), client.clone()).unwrap();
    let customer = hub.subscribe(Topic::Customer("cust-1".into()), client.clone()).unwrap();
    let other = hub.subscribe(Topic::Order("o2".into()), "d".into()).unwrap();
    hub.publish("o1", Some("cust-1"), &view("o1", 3));
    let (a, b) = (order.subscriber.take(), customer.subscriber.take());
    assert_eq!((a.len(), b.len()), (1, 1));
    assert!(Arc::ptr_eq(&a[0], &b[0]), "one update shared by every subscriber");
    let made = std::sync::atomic::AtomicUsize::new(0);
    let render = |_: &CachedView| {
        made.fetch_add(1, Ordering::Relaxed);
        bytes::Bytes::from_static(b"x")
    };
    a[0].frame(false, render);
    b[0].frame(false, render);
    assert_eq!(made.load(Ordering::Relaxed), 1, "its event is made once per kind of reader");
    assert!(other.subscriber.take().is_empty());
    hub.publish("o9", Some("cust-1"), &view("o9", 1));
    assert!(order.subscriber.take().is_empty());
    assert_eq!(&*customer.subscriber.take()[0].order_id, "o9", "a new order of the customer");
}

#[test]
fn a_lagged_subscriber_gets_nothing_more() {
    let hub = Hub::new(limits(1, 60_000));
    let s = hub.subscribe(Topic::Customer("cust".into()), "c".into()).unwrap();
    hub.publish("o1", Some("cust"), &view("o1", 1));
    hub.publish("o2", Some("cust"), &view("o2", 1));
    assert!(s.subscriber.is_lagged());
    assert!(s.subscriber.take().is_empty(), "what waited is dropped");
    hub.publish("o1", Some("cust"), &view("o1", 2));
    assert!(s.subscriber.take().is_empty());
}

#[test]
fn a_subscriber_whose_body_writes_nothing_is_found_stalled_and_its_place_given_back() {
    let hub = Hub::new(limits(8, 2_000));
    let s = hub.subscribe(Topic::Order("o1".into()), "c".into()).unwrap();
    let t0 = Instant::now();
    assert!(!s.subscriber.stalled(t0 + Duration::from_secs(2), &hub.limits), "within heartbeat + max_lag");
    s.subscriber.wrote();
    assert!(s.subscriber.stalled(t0 + Duration::from_secs(4), &hub.limits), "no frame for 3 s + (1 s + 2 s)");
    hub.sweep(t0 + Duration::from_secs(4));
    assert!(s.subscriber.is_lagged());
    assert_eq!(hub.open(), 0, "released at once, before its body is dropped");
    let _other = hub.subscribe(Topic::Order("o2".into()), "c".into()).unwrap();
    drop(s);
    assert_eq!(hub.open(), 1, "dropping the lagged one does not release twice");
}

#[test]
fn an_update_waiting_past_max_lag_is_found_by_the_sweep_without_a_new_one() {
    let hub = Hub::new(limits(8, 100));
    let s = hub.subscribe(Topic::Order("o1".into()), "c".into()).unwrap();
    hub.publish("o1", None, &view("o1", 2));
    let now = Instant::now();
    hub.sweep(now);
    assert!(!s.subscriber.is_lagged());
    hub.sweep(now + Duration::from_millis(300));
    assert!(s.subscriber.is_lagged());
}

#[test]
fn an_event_without_its_customer_reaches_the_customer_once_the_order_was_seen_with_it() {
    let hub = Hub::new(limits(8, 60_000));
    let customer = hub.subscribe(Topic::Customer("cust-1".into()), "c".into()).unwrap();
    hub.publish("o1", None, &view("o1", 1));
    assert!(customer.subscriber.take().is_empty(), "not known yet");
    hub.publish("o1", Some("cust-1"), &view("o1", 2));
    customer.subscriber.take();
    // A fulfilment of o1 after o1 left the cache: the event names no customer.
    hub.publish("o1", None, &view("o1", 3));
    assert_eq!(customer.subscriber.take().len(), 1);
}
