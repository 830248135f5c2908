//! The reliability suite: each scenario seeds data of its own, drives
//! open-model load against the gateway, injects one fault with the stack's
//! own scripts or a signal, and prints one row of the table in
//! RELIABILITY.md: offered rate, answered, failed by cause, p99 while the
//! fault lasted, time to recover, and the invariant checked.
//!
//! `cargo test --test chaos` runs the short form (each fault once, lower
//! rates, shorter outages), as `make test` does. `make chaos`
//! (scripts/chaos.sh) runs the full one (`CHAOS=full`) against the release
//! binary (`ORDER_GATEWAY_BIN`) and writes the table (`CHAOS_REPORT`).
//!
//! Scenarios stop shared components of the stack, so they run one at a time
//! ([`serial`]) in a binary of their own.

#[path = "../common/mod.rs"]
mod common;

mod clickhouse;
mod cluster_elasticsearch;
mod cluster_kafka;
mod drain;
mod elasticsearch;
mod flood;
mod ingest;
mod kafka;
mod report;
mod soak;

/// Held for the whole of a scenario: one fault at a time, in this process
/// and across processes (an flock on `<stack>/run/chaos.lock`), since a
/// scenario that stops a component fails whatever else runs beside it.
pub struct Serial {
    _in_process: tokio::sync::MutexGuard<'static, ()>,
    _file: std::fs::File,
}

pub async fn serial() -> Serial {
    use std::os::fd::AsRawFd;
    static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let guard = ONE.lock().await;
    let dir =
        std::env::var("STACK_DIR").map(std::path::PathBuf::from).unwrap_or_else(|_| common::repo_root().join(".stack"));
    let path = dir.join("run").join("chaos.lock");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).unwrap();
    let file = tokio::task::spawn_blocking(move || {
        // SAFETY: flock on a descriptor this function owns; released when the file is closed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {}", path.display());
        file
    })
    .await
    .unwrap();
    Serial { _in_process: guard, _file: file }
}

#[test]
fn quantiles_and_slope() {
    use common::load::{quantile, slope};
    use std::time::Duration;
    let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
    assert_eq!(quantile(&v, 0.99), Duration::from_millis(99));
    assert_eq!(quantile(&v, 0.5), Duration::from_millis(50));
    assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    let line: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 3.0 * x as f64 + 1.0)).collect();
    assert!((slope(&line) - 3.0).abs() < 1e-9);
}
