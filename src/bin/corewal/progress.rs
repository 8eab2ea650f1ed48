//! Progress on stderr, shown only when stderr is a terminal, so that logs
//! and pipes stay clean: a one-line status for the bench, and a bar for the
//! WAL tools' long reads.
//!
//! Written here rather than taken from a crate (indicatif): the tool needs
//! one line redrawn a few times a second, and Cargo has no binary-only
//! dependencies, so a crate would be built into every build of the library
//! as well.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    on: bool,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
        }
    }

    /// Replaces the status line with `msg`.
    pub fn say(&self, msg: &str) {
        if self.on {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K{msg}");
            let _ = err.flush();
        }
    }

    /// Erases the status line.
    pub fn clear(&self) {
        self.say("");
    }
}

/// Work below this many bytes is quick: no bar.
pub const BAR_MIN_BYTES: u64 = 64 << 20;

/// Time between two redraws of a bar.
const REDRAW: Duration = Duration::from_millis(100);
/// Work that ends sooner shows no bar at all.
const QUIET_START: Duration = Duration::from_millis(250);

/// A progress bar of bytes done out of a known total, with the rate:
/// `verify: reading [########------------]  41%  1.2 GiB / 2.9 GiB  850 MiB/s`.
/// It stays silent unless stderr is a terminal and the total is large
/// enough to take a while.
pub struct Bar {
    on: bool,
    label: String,
    total: u64,
    /// When the bar was made, and when the current phase started.
    created: Instant,
    start: Instant,
    last_draw: Option<Instant>,
}

impl Bar {
    /// A bar for `total` bytes; `allowed` lets a caller keep it off (for
    /// example when its own output goes to the same terminal).
    pub fn new(label: impl Into<String>, total: u64, allowed: bool) -> Bar {
        Bar {
            on: allowed && total >= BAR_MIN_BYTES && std::io::stderr().is_terminal(),
            label: label.into(),
            total,
            created: Instant::now(),
            start: Instant::now(),
            last_draw: None,
        }
    }

    /// Starts a new phase on the same line with its own label and total.
    pub fn phase(&mut self, label: impl Into<String>, total: u64) {
        self.label = label.into();
        self.total = total;
        self.start = Instant::now();
        self.last_draw = None;
    }

    /// Reports `done` bytes; redraws at most every [`REDRAW`].
    pub fn set(&mut self, done: u64) {
        if !self.on {
            return;
        }
        let now = Instant::now();
        if now - self.created < QUIET_START || self.last_draw.is_some_and(|t| now - t < REDRAW) {
            return;
        }
        self.last_draw = Some(now);
        let line = render(&self.label, done, self.total, now - self.start);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{line}");
        let _ = err.flush();
    }

    /// Erases the bar.
    pub fn finish(&mut self) {
        if self.on && self.last_draw.is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
        self.last_draw = None;
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.finish();
    }
}

const WIDTH: u64 = 24;

fn render(label: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let done = done.min(total);
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        format!("  {}/s", bytes(done as f64 / secs))
    } else {
        String::new()
    };
    format!(
        "{label} [{}{}] {percent:>3}%  {} / {}{rate}",
        "#".repeat(filled as usize),
        "-".repeat((WIDTH - filled) as usize),
        bytes(done as f64),
        bytes(total as f64),
    )
}

/// `1536.0` → `"1.5 KiB"`.
pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut n = n;
    let mut unit = 0;
    while n >= 1024.0 && unit + 1 < UNITS.len() {
        n /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n:.0} B")
    } else {
        format!("{n:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_render_fraction_and_rate() {
        let line = render("reading", 1 << 30, 4 << 30, Duration::from_secs(2));
        assert_eq!(
            line,
            "reading [######------------------]  25%  1.0 GiB / 4.0 GiB  512.0 MiB/s"
        );
        let empty = render("x", 0, 0, Duration::ZERO);
        assert!(empty.contains("100%"), "{empty}");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
    }

    #[test]
    fn small_work_shows_no_bar() {
        assert!(!Bar::new("x", BAR_MIN_BYTES - 1, true).on);
        assert!(!Bar::new("x", u64::MAX, false).on);
    }
}
