//! The suite's scale (short or full) and its table rows.

use std::io::Write;
use std::time::Duration;

/// `CHAOS=full`: the rates and durations of the issue; otherwise the short
/// form that fits in `make test`.
pub fn full() -> bool {
    std::env::var("CHAOS").is_ok_and(|v| v == "full")
}

/// `full` in the full run, `short` otherwise.
pub fn scale<T>(full_value: T, short_value: T) -> T {
    if full() {
        full_value
    } else {
        short_value
    }
}

/// One row of the reliability table.
#[derive(Debug, Default)]
pub struct Row {
    pub fault: String,
    pub load: String,
    /// Requests per second offered (open model).
    pub offered: f64,
    pub answered: usize,
    /// Failures by cause (`0` when none).
    pub failed: String,
    /// p99 of what was in flight while the fault lasted.
    pub p99_fault: Option<Duration>,
    /// From the fault's end (the component healthy again) to the invariant holding again.
    pub recovery: Option<Duration>,
    /// What must hold, and what was seen.
    pub invariant: String,
    pub held: bool,
}

impl Row {
    pub fn markdown(&self) -> String {
        let d = |d: Option<Duration>| d.map(super::common::load::ms).unwrap_or_else(|| "–".into());
        let recovery = self.recovery.map(|r| format!("{:.1} s", r.as_secs_f64())).unwrap_or_else(|| "–".into());
        format!(
            "| {} | {} | {:.0}/s | {} | {} | {} | {} | {} | {} |",
            self.fault,
            self.load,
            self.offered,
            self.answered,
            self.failed,
            d(self.p99_fault),
            recovery,
            self.invariant,
            if self.held { "held" } else { "**VIOLATED**" }
        )
    }

    /// Prints the row, appends it to `CHAOS_REPORT` when set, then fails the
    /// scenario unless the invariant held (after writing, so a violation is
    /// in the table too).
    pub fn emit(self) {
        let line = self.markdown();
        println!("{line}");
        eprintln!("[chaos] {line}");
        if let Ok(path) = std::env::var("CHAOS_REPORT") {
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
            writeln!(f, "{line}").unwrap();
        }
        assert!(self.held, "{}: {}", self.fault, self.invariant);
    }
}
