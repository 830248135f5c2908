//! The search cursor codec: what a page of search results pays to hand out
//! its next cursor (`encode`: JSON, HMAC-SHA256, base64url) and to check the
//! one it was given (`decode`: base64url, HMAC, JSON, query and age checks).
//! Before criterion runs, each benchmark prints its allocations per call.
//! Run: `cargo bench --bench cursor`.

#[path = "common/alloc.rs"]
mod alloc_count;

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use order_gateway::model::cursor::{CursorCodec, Position};

/// Allocation counts: calls per benchmark.
const N: u64 = 2_000;

fn bench(c: &mut Criterion) {
    let codec = CursorCodec::new("bench-cursor-secret-0123456789abcdef", Duration::from_secs(3600));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64;
    let query = 0x9e37_79b9_7f4a_7c15;
    let pos =
        Position { after: (1_764_064_800_000, "0b9f3c1e-2f4e-4b8e-9a57-3c1d2e4f5a6b".into()), query, issued: now };
    let cursor = codec.encode(&pos);
    assert_eq!(codec.decode(&cursor, query, now).expect("valid cursor"), pos);

    alloc_count::report("cursor/encode", N, || codec.encode(&pos));
    alloc_count::report("cursor/decode", N, || codec.decode(&cursor, query, now).unwrap());

    let mut g = c.benchmark_group("cursor");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode", |b| b.iter(|| black_box(codec.encode(black_box(&pos)))));
    g.bench_function("decode", |b| b.iter(|| black_box(codec.decode(black_box(&cursor), query, now).unwrap())));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
