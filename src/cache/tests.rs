use super::*;
use crate::model::fixtures::{fulfillment, order, view};
use crate::model::*;

fn cfg() -> CacheConfig {
    CacheConfig {
        max_bytes: 16 * 1024 * 1024,
        eviction: crate::config::EvictionPolicy::Lru,
        compression: crate::config::CacheCompression::Lz4,
        max_ttl: Duration::from_secs(600),
        degraded_ttl: Duration::from_millis(50),
        negative_ttl: Duration::from_secs(5),
        seen_versions_max: 1000,
        seen_versions_ttl: Duration::from_secs(600),
        read_your_writes_wait: Duration::from_millis(100),
    }
}

fn cache(healthy: bool) -> OrderCache {
    let s = Arc::new(StreamState::default());
    s.enabled.store(true, Ordering::Relaxed);
    s.healthy.store(healthy, Ordering::Relaxed);
    OrderCache::new(&cfg(), s)
}

#[test]
fn an_event_for_an_uncached_order_makes_a_partial_entry_that_a_read_fills() {
    let c = cache(true);
    c.apply_event(Component::Fulfillment(fulfillment(2)));
    assert!(matches!(c.lookup("o-1"), Lookup::Stale(e) if !e.complete));
    // The fill merges: the newer fulfilment from the stream survives an older backend copy.
    match c.fill("o-1", Some(view(3, Some(1))), Source::Elasticsearch) {
        Some(Filled::Ok(e)) => {
            assert!(e.complete);
            assert_eq!(e.view().versions(), (3, vec![("f-1", 2)]));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(c.lookup("o-1"), Lookup::Hit(_)));
}

#[test]
fn a_created_event_makes_a_complete_entry() {
    let c = cache(true);
    c.apply_event(Component::Order(order(1)));
    assert!(matches!(c.lookup("o-1"), Lookup::Hit(_)));
}

#[test]
fn a_backend_behind_the_stream_is_detected_after_eviction() {
    let c = cache(true);
    c.apply_event(Component::Order(order(5)));
    c.evict("o-1");
    match c.fill("o-1", Some(view(4, None)), Source::Elasticsearch) {
        Some(Filled::Behind { seen: 5, got: 4 }) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(c.fill("o-1", None, Source::Elasticsearch), Some(Filled::Behind { .. })),
        "not-found is behind too"
    );
    assert!(matches!(c.fill("o-1", Some(view(5, None)), Source::Elasticsearch), Some(Filled::Ok(_))));
}

#[test]
fn not_found_is_remembered_until_an_event_arrives() {
    let c = cache(true);
    assert!(c.fill("o-1", None, Source::Elasticsearch).is_none());
    assert!(matches!(c.lookup("o-1"), Lookup::NotFound));
    c.apply_event(Component::Order(order(1)));
    assert!(matches!(c.lookup("o-1"), Lookup::Hit(_)));
}

#[test]
fn unhealthy_stream_makes_entries_stale_after_the_degraded_ttl() {
    let c = cache(false);
    c.fill("o-1", Some(view(1, None)), Source::Elasticsearch);
    assert!(matches!(c.lookup("o-1"), Lookup::Hit(_)), "just refreshed");
    std::thread::sleep(Duration::from_millis(60));
    assert!(matches!(c.lookup("o-1"), Lookup::Stale(_)));
    c.stream.healthy.store(true, Ordering::Relaxed);
    assert!(matches!(c.lookup("o-1"), Lookup::Hit(_)), "a healthy stream keeps entries current");
}

#[test]
fn events_never_lower_a_cached_version() {
    let c = cache(true);
    c.fill("o-1", Some(view(4, Some(3))), Source::Elasticsearch);
    c.apply_event(Component::Order(order(2)));
    c.apply_event(Component::Fulfillment(fulfillment(1)));
    let Lookup::Hit(e) = c.lookup("o-1") else { panic!() };
    assert_eq!(e.view().versions(), (4, vec![("f-1", 3)]));
    assert_eq!(e.order_version(), 4);
    assert!(e.versions.dominates(&view(4, Some(3))) && !e.versions.dominates(&view(5, Some(3))));
}

#[tokio::test]
async fn concurrent_fills_for_one_key_run_once() {
    let flight: SingleFlight<u32> = SingleFlight::default();
    let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut tasks = Vec::new();
    let flight = Arc::new(flight);
    for _ in 0..50 {
        let (flight, runs) = (flight.clone(), runs.clone());
        tasks.push(tokio::spawn(async move {
            flight
                .run("k", move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    7
                })
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 7);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

fn position(partition: i32, leader: Option<i32>) -> PartitionPosition {
    PartitionPosition {
        topic: "orders".into(),
        partition,
        position: Some(1),
        high_watermark: 1,
        lag: 0,
        leader,
        leader_changes: 0,
    }
}

#[test]
fn a_partition_leader_that_dies_and_is_replaced_counts_one_change() {
    // Broker 2 leads, dies (no leader for a while), broker 1 is elected.
    let mut seen = vec![position(0, Some(2)), position(1, Some(1))];
    let mut steps = Vec::new();
    for leaders in [[None, Some(1)], [None, Some(1)], [Some(1), Some(1)], [Some(1), Some(1)]] {
        let mut next: Vec<_> = leaders.iter().enumerate().map(|(p, l)| position(p as i32, *l)).collect();
        steps.push(next.iter_mut().map(|x| x.follow_leader(&seen)).collect::<Vec<_>>());
        seen = next;
    }
    assert_eq!(steps[2], vec![Some(2), None], "the move is reported once, from the dead leader");
    assert!(steps.iter().enumerate().all(|(i, s)| i == 2 || s == &vec![None, None]));
    assert_eq!(seen[0].leader, Some(1));
    assert_eq!(seen[0].leader_changes, 1);
    assert_eq!(seen[1].leader_changes, 0, "partition 1 never moved");
}

#[test]
fn while_leaderless_the_last_known_leader_stays() {
    let mut p = position(0, None);
    assert_eq!(p.follow_leader(&[position(0, Some(3))]), None);
    assert_eq!(p.leader, Some(3));
    // A partition seen for the first time starts counting from zero.
    let mut fresh = position(5, Some(1));
    assert_eq!(fresh.follow_leader(&[position(0, Some(3))]), None);
    assert_eq!(fresh.leader_changes, 0);
}

#[test]
fn a_partition_behind_by_what_arrived_since_the_last_check_has_reached_it() {
    let before = PartitionPosition { high_watermark: 100, lag: 4, ..position(0, Some(1)) };
    // 30 more arrived since; 3 of them not consumed yet: everything of the
    // last check is consumed.
    let now = PartitionPosition { high_watermark: 130, lag: 3, ..position(0, Some(1)) };
    assert!(now.reached(std::slice::from_ref(&before)));
    // Stuck: it has not even consumed what was there a check ago.
    let stuck = PartitionPosition { high_watermark: 130, lag: 31, ..position(0, Some(1)) };
    assert!(!stuck.reached(std::slice::from_ref(&before)));
    // A partition not seen before has reached nothing yet.
    assert!(!now.reached(&[]));
}

/// A cache whose entries keep their JSON as `compression` says.
fn cache_keeping(compression: crate::config::CacheCompression) -> OrderCache {
    let s = Arc::new(StreamState::default());
    s.enabled.store(true, Ordering::Relaxed);
    s.healthy.store(true, Ordering::Relaxed);
    OrderCache::new(&CacheConfig { compression, ..cfg() }, s)
}

#[test]
fn a_compressed_entry_serves_the_same_bytes_as_a_plain_one_in_less_memory() {
    use crate::config::CacheCompression::{Lz4, None as Plain};
    let v = view(3, Some(2));
    assert!(v.has_pii(), "the fixture holds personal data, so both bodies are exercised");
    let (packed, plain) = (cache_keeping(Lz4), cache_keeping(Plain));
    packed.fill("o-1", Some(v.clone()), Source::Elasticsearch);
    plain.fill("o-1", Some(v.clone()), Source::Elasticsearch);
    let (Lookup::Hit(p), Lookup::Hit(q)) = (packed.lookup("o-1"), plain.lookup("o-1")) else { panic!("both filled") };
    assert_eq!(p.view(), q.view());
    assert_eq!(p.view(), v);
    for pii in [true, false] {
        let body = p.body(pii);
        assert_eq!(body, q.body(pii));
        assert_eq!(p.etag_for(pii), q.etag_for(pii));
        // A list writes the same bytes behind what it already holds.
        let mut out = bytes::BytesMut::from(&b"{\"orders\":["[..]);
        p.write_body(pii, &mut out);
        assert_eq!(&out[11..], &body[..]);
    }
    assert_eq!(p.body(true), serde_json::to_vec(&v).unwrap());
    assert_eq!(p.json_len(), q.json_len());
    assert!(p.kept_len() < q.kept_len(), "{} compressed against {} plain", p.kept_len(), q.kept_len());
}

#[test]
fn an_event_merged_into_a_compressed_entry_is_served() {
    let c = cache_keeping(crate::config::CacheCompression::Lz4);
    c.fill("o-1", Some(view(1, None)), Source::Elasticsearch);
    c.apply_event(Component::Order(order(2)));
    let Lookup::Hit(e) = c.lookup("o-1") else { panic!("cached") };
    assert_eq!(e.order_version(), 2);
    let served: OrderView = serde_json::from_slice(&e.body(true)).unwrap();
    assert_eq!(served.order.unwrap().version, 2);
}

proptest::proptest! {
    /// Any bytes come back as they went in, with their length, whichever way
    /// they are kept.
    #[test]
    fn kept_bytes_come_back_unchanged(json in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
        let kept = keep(&json, true);
        let (len, block) = packed_len(&kept);
        proptest::prop_assert_eq!(len, json.len());
        proptest::prop_assert_eq!(lz4_flex::block::decompress(block, len).unwrap(), json.clone());
        proptest::prop_assert_eq!(&keep(&json, false)[..], &json[..]);
    }
}

#[test]
fn a_partition_with_events_waiting_and_no_progress_is_stalled() {
    let at = |next: i64, high: i64| PartitionPosition {
        topic: "t".into(),
        partition: 0,
        position: Some(next),
        high_watermark: high,
        lag: high - next,
        leader: Some(1),
        leader_changes: 0,
    };
    assert!(at(10, 11).stalled(&[at(10, 11)]), "one waiting, none consumed");
    assert!(at(10, 12).stalled(&[at(10, 11)]), "more arrived, none consumed");
    assert!(!at(11, 12).stalled(&[at(10, 11)]), "progress");
    assert!(!at(11, 11).stalled(&[at(11, 11)]), "caught up");
    assert!(!at(10, 11).stalled(&[at(10, 10)]), "the first event just arrived");
    assert!(!at(10, 11).stalled(&[]), "no earlier check");
}

#[test]
fn fulfilment_keys_are_fnv_1a_whatever_the_toolchain() {
    // Resume tokens carry these keys between replicas and releases.
    assert_eq!(fulfillment_key(""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fulfillment_key("a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fulfillment_key("foobar"), 0x8594_4171_f739_67e8);
}
