//! Hit ratio of the order cache under LRU and under TinyLFU admission, for two
//! workloads, with the cache holding a fifth of the orders. Not a criterion
//! benchmark: a simulation whose ratios are printed.
//!
//!   cargo bench --bench admission            (ADMISSION_ORDERS, default 10,000)
//!
//! - zipf: lookups over a fixed set of orders with Zipf(1.0) popularity;
//!   misses fill from "the backend".
//! - crm: orders keep being created (an event puts each new order in the
//!   cache, as the stream does), and 80 % of lookups go to the newest 2 % of
//!   orders (a customer calls about the order they just placed), the rest
//!   Zipf over all.
//!
//! TinyLFU can refuse a brand-new order when the cache is full, because its
//! frequency sketch has never seen it; the crm workload shows what that costs.

use std::sync::Arc;
use std::time::Duration;

use order_gateway::cache::{Lookup, OrderCache, Source, StreamState};
use order_gateway::config::{Config, EvictionPolicy};
use order_gateway::model::{Component, OrderView, Timestamp};
use order_gateway::seed::generate;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn views(n: usize) -> Vec<OrderView> {
    let base = generate::truth(&generate::generate(2_000.min(n as u64), 11, Timestamp::now()));
    (0..n)
        .map(|i| {
            let mut v = base[i % base.len()].clone();
            let id = format!("{i:08}");
            v.order_id = id.clone();
            if let Some(o) = &mut v.order {
                o.order_id = id.clone();
                // Events of a new order carry version 1: the cache takes it as complete.
                o.version = 1;
            }
            v.fulfillments.clear();
            v
        })
        .collect()
}

/// Zipf(1.0) ranks by inverse transform over a precomputed CDF.
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                acc += 1.0 / k as f64;
                acc
            })
            .collect();
        let total = acc;
        cdf.iter_mut().for_each(|c| *c /= total);
        Zipf(cdf)
    }
    fn sample(&self, rng: &mut ChaCha8Rng) -> usize {
        let u: f64 = rng.random();
        self.0.partition_point(|c| *c < u).min(self.0.len() - 1)
    }
}

fn cache(policy: EvictionPolicy, max_bytes: u64) -> OrderCache {
    let mut cfg = Config::defaults().cache;
    cfg.eviction = policy;
    cfg.max_bytes = max_bytes;
    cfg.max_ttl = Duration::from_secs(3600);
    let stream = Arc::new(StreamState::default());
    stream.enabled.store(true, std::sync::atomic::Ordering::Relaxed);
    stream.healthy.store(true, std::sync::atomic::Ordering::Relaxed);
    OrderCache::new(&cfg, stream)
}

fn lookup_or_fill(c: &OrderCache, v: &OrderView) -> bool {
    match c.lookup(&v.order_id) {
        Lookup::Hit(_) => true,
        _ => {
            c.fill(&v.order_id, Some(v.clone()), Source::Elasticsearch);
            false
        }
    }
}

fn zipf_run(policy: EvictionPolicy, all: &[OrderView], capacity: u64, lookups: usize) -> f64 {
    let c = cache(policy, capacity);
    let z = Zipf::new(all.len());
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // A random permutation, so popularity is not tied to the id order.
    let mut perm: Vec<usize> = (0..all.len()).collect();
    for i in (1..perm.len()).rev() {
        perm.swap(i, rng.random_range(0..=i));
    }
    let mut hits = 0usize;
    for i in 0..lookups {
        let hit = lookup_or_fill(&c, &all[perm[z.sample(&mut rng)]]);
        if i >= lookups / 5 {
            hits += usize::from(hit);
        }
    }
    hits as f64 / (lookups - lookups / 5) as f64
}

fn crm_run(policy: EvictionPolicy, all: &[OrderView], capacity: u64, lookups_per_order: usize) -> f64 {
    let c = cache(policy, capacity);
    let z = Zipf::new(all.len());
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (mut hits, mut total) = (0usize, 0usize);
    for created in 0..all.len() {
        c.apply_event(Component::Order(all[created].order.clone().expect("generated orders have a header")));
        for _ in 0..lookups_per_order {
            let recent = (created / 50).max(1);
            let idx = if rng.random_bool(0.8) {
                created - rng.random_range(0..recent.min(created + 1))
            } else {
                z.sample(&mut rng) % (created + 1)
            };
            let hit = lookup_or_fill(&c, &all[idx]);
            if created >= all.len() / 5 {
                hits += usize::from(hit);
                total += 1;
            }
        }
    }
    hits as f64 / total.max(1) as f64
}

fn main() {
    let n: usize = std::env::var("ADMISSION_ORDERS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let all = views(n);
    let json: u64 = all.iter().map(|v| serde_json::to_vec(v).map_or(0, |b| b.len() as u64) + 8 + 1400).sum();
    let capacity = json / 5;
    println!("admission: {n} orders, cache holds about a fifth of them ({} MiB)", capacity >> 20);
    for (name, policy) in [("lru", EvictionPolicy::Lru), ("tinylfu", EvictionPolicy::TinyLfu)] {
        let zipf = zipf_run(policy, &all, capacity, n * 10);
        let crm = crm_run(policy, &all, capacity, 4);
        println!("admission {name:8} zipf hit ratio {:.3}   crm (recency-skewed) hit ratio {:.3}", zipf, crm);
    }
}
