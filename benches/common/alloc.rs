//! Allocations per call, for the bench binaries: a counting global allocator
//! around `System`, and `report`, which runs a routine a number of times and
//! prints `allocs/call <name>: <n>` before criterion times anything.
//!
//! Included with `#[path = "common/alloc.rs"] mod alloc_count;`.
//!
//! The count is per thread: the routines run on the calling thread (benches
//! use a current-thread runtime), while other threads of the process (for
//! instance librdkafka's, behind the Kafka producer in `AppState`) must not
//! add to it. Every `alloc`, `alloc_zeroed` and `realloc` counts as one.
//! The counter costs a thread-local add per allocation, also while criterion
//! times; that is a few nanoseconds per allocation, the same for every run.

#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

thread_local! {
    // Const-initialised and without a destructor: usable from inside the allocator.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

/// `System`, counting.
pub struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made so far on this thread.
pub fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

/// Allocations per call of `f`: one call first (lazy initialisation is not a
/// per-call cost), then `n` counted calls. What `f` returns is dropped inside
/// the count (freeing is not counted).
pub fn per_call<R>(n: u64, mut f: impl FnMut() -> R) -> f64 {
    black_box(f());
    let before = allocs();
    for _ in 0..n {
        black_box(f());
    }
    (allocs() - before) as f64 / n as f64
}

/// Like [`per_call`], with an input per call made by `setup` beforehand and
/// not counted (as in criterion's `iter_batched`).
pub fn per_call_batched<I, R>(n: u64, mut setup: impl FnMut() -> I, mut f: impl FnMut(I) -> R) -> f64 {
    black_box(f(setup()));
    let inputs: Vec<I> = (0..n).map(|_| setup()).collect();
    let before = allocs();
    for i in inputs {
        black_box(f(i));
    }
    (allocs() - before) as f64 / n as f64
}

/// Prints `allocs/call <name>: <n>`.
pub fn report<R>(name: &str, n: u64, f: impl FnMut() -> R) {
    print(name, per_call(n, f));
}

/// Prints `allocs/call <name>: <n>`, inputs made beforehand.
pub fn report_batched<I, R>(name: &str, n: u64, setup: impl FnMut() -> I, f: impl FnMut(I) -> R) {
    print(name, per_call_batched(n, setup, f));
}

/// One decimal; more when a rare allocation (amortised growth) would round to 0.0.
pub fn print(name: &str, per_call: f64) {
    if per_call == 0.0 || per_call >= 0.1 {
        println!("allocs/call {name}: {per_call:.1}");
    } else {
        println!("allocs/call {name}: {per_call:.4}");
    }
}
