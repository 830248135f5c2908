//! Allocations per call, for the bench binaries: a counting global allocator
//! around the binary's own (`order_gateway::Allocator`), and `report`, which runs a routine a number of times and
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

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::hint::black_box;

thread_local! {
    // Const-initialised and without a destructor: usable from inside the allocator.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    /// Whether allocations print where they come from ([`trace_sites`]),
    /// and whether one is being printed (the printing allocates too).
    static SITES: Cell<bool> = const { Cell::new(false) };
    static IN_SITE: Cell<bool> = const { Cell::new(false) };
}

fn bump() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
    if SITES.try_with(Cell::get).unwrap_or(false) && !IN_SITE.try_with(Cell::get).unwrap_or(true) {
        IN_SITE.with(|c| c.set(true));
        print_site();
        IN_SITE.with(|c| c.set(false));
    }
}

/// Frames of the allocator and of the standard library's containers, which
/// say nothing about who allocated (line-tables-only debug information names
/// functions without their module).
const GENERIC: &[&str] = &[
    "__rust_",
    "alloc",
    "try_allocate_in",
    "box_new",
    "with_capacity",
    "try_with_capacity",
    "grow",
    "finish_grow",
    "reserve",
    "do_reserve",
    "to_vec",
    "clone",
    "new_uninit",
    "std::",
    "core::",
];

/// The frames of the current backtrace that belong to the request path's
/// crates, innermost first, on one line.
fn print_site() {
    let trace = std::backtrace::Backtrace::force_capture().to_string();
    // Frames read "N: path::to::function" (then "at file:line"): keep the
    // functions after the allocator's own, skipping the standard library's.
    let frames: Vec<&str> = trace
        .lines()
        .map(str::trim)
        .filter_map(|l| l.split_once(": ").filter(|(n, _)| n.chars().all(|c| c.is_ascii_digit())).map(|(_, f)| f))
        .skip_while(|f| !f.contains("__rust_alloc") && !f.contains("__rust_realloc"))
        .skip(1)
        .filter(|f| !GENERIC.iter().any(|g| f.starts_with(g)))
        .take(6)
        .collect();
    eprintln!("alloc site: {}", frames.join(" <- "));
}

/// Runs `f` once with every allocation's call site printed to stderr: what
/// `ALLOC_SITES=1 cargo bench --bench hit_path` shows, to find what a count
/// is made of.
pub fn trace_sites<R>(f: impl FnOnce() -> R) -> R {
    SITES.with(|c| c.set(true));
    let r = f();
    SITES.with(|c| c.set(false));
    r
}

/// The binary's allocator, counting.
pub struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { Inner.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { Inner.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        unsafe { Inner.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { Inner.dealloc(ptr, layout) }
    }
}

use order_gateway::Allocator as Inner;

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
pub fn report_batched<I, R>(name: &str, n: u64, mut setup: impl FnMut() -> I, mut f: impl FnMut(I) -> R) {
    if std::env::var_os("ALLOC_SITES").is_some() {
        black_box(f(setup()));
        let input = setup();
        eprintln!("allocation sites of one call of {name}:");
        black_box(trace_sites(|| f(input)));
    }
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
