//! Resident memory of the order cache per cached order, against the orders'
//! JSON size. Not a criterion benchmark: one measurement, printed.
//!
//!   MEMORY_ORDERS=1000000 cargo bench --bench memory
//!
//! Views come from the seed generator (realistic lifecycles, addresses,
//! lines, fulfilments); 10,000 distinct ones are cloned under new ids up to
//! MEMORY_ORDERS. Without the variable it runs 2,000 orders as a smoke test.
//! `MEMORY_COMPRESSION=none` keeps the JSON uncompressed (`cache.compression`;
//! the default is the shipped one).

use std::sync::Arc;

use order_gateway::cache::{OrderCache, Source, StreamState};
use order_gateway::config::Config;
use order_gateway::model::Timestamp;
use order_gateway::seed::generate;

/// The binary's allocator, so that what is measured is what ships, counting
/// the bytes asked for and not yet freed: resident memory beyond them is the
/// allocator's (size classes, free space in its pages).
struct Live;

static LIVE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

unsafe impl std::alloc::GlobalAlloc for Live {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, std::sync::atomic::Ordering::Relaxed);
        unsafe { order_gateway::Allocator.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size() as i64, std::sync::atomic::Ordering::Relaxed);
        unsafe { order_gateway::Allocator.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, std::sync::atomic::Ordering::Relaxed);
        unsafe { order_gateway::Allocator.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Live = Live;

fn live_bytes() -> i64 {
    LIVE.load(std::sync::atomic::Ordering::Relaxed)
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    let n: u64 = std::env::var("MEMORY_ORDERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let base = generate::truth(&generate::generate(10_000.min(n), 7, Timestamp::now()));
    let mut config = Config::defaults().cache;
    // Large enough that nothing is evicted: the measurement is of holding them all.
    config.max_bytes = 64 << 30;
    config.max_ttl = std::time::Duration::from_secs(3600);
    if let Ok(v) = std::env::var("MEMORY_COMPRESSION") {
        config.compression = match v.as_str() {
            "none" => order_gateway::config::CacheCompression::None,
            "lz4" => order_gateway::config::CacheCompression::Lz4,
            other => panic!("MEMORY_COMPRESSION must be lz4 or none, not {other:?}"),
        };
    }
    let cache = OrderCache::new(&config, Arc::new(StreamState::default()));
    let before = rss_bytes();
    let live_before = live_bytes();
    let mut json_bytes = 0u64;
    for i in 0..n {
        let mut v = base[(i % base.len() as u64) as usize].clone();
        let id = format!("{i:08}-{}", &v.order_id[..v.order_id.len().min(27)]);
        v.order_id = id.clone();
        if let Some(o) = &mut v.order {
            o.order_id = id.clone();
        }
        for f in &mut v.fulfillments {
            f.order_id = id.clone();
        }
        json_bytes += serde_json::to_vec(&v).map(|b| b.len() as u64).unwrap_or(0);
        cache.fill(&id, Some(v), Source::Elasticsearch);
    }
    let (entries, weighted) = cache.stats();
    let grown = rss_bytes().saturating_sub(before);
    let asked = (live_bytes() - live_before).max(0) as u64;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "memory: {entries} orders cached ({:?}); their JSON {:.0} MiB ({:.0} B/order); resident memory grew {:.0} MiB ({:.0} B/order) = {:.2}x the JSON; cache weigher {:.0} MiB",
        config.compression,
        mib(json_bytes),
        json_bytes as f64 / n as f64,
        mib(grown),
        grown as f64 / n as f64,
        grown as f64 / json_bytes.max(1) as f64,
        mib(weighted),
    );
    println!(
        "memory: of which asked of the allocator {:.0} B/order ({:.0} B beyond the JSON); size classes and free space {:.0} B/order; an entry (CachedView) is {} B",
        asked as f64 / n as f64,
        (asked as f64 - json_bytes as f64) / n as f64,
        (grown as f64 - asked as f64) / n as f64,
        std::mem::size_of::<order_gateway::cache::CachedView>(),
    );
    assert_eq!(entries, n, "every order stays cached");
}
