//! Resident-set measurements from `/proc/self/status`.
//!
//! `VmHWM` (the peak resident set) is process-wide and only ever grows, so
//! after the write workloads it would report their buffers, not the read
//! being measured. Writing `5` to `/proc/self/clear_refs` resets it to the
//! current resident set (Linux ≥ 4.0); a probe does that first and checks
//! that it worked. Where it does not, the peak is the process's lifetime
//! peak and the growth is sampled after against before.
//!
//! Before the reset, free heap memory is handed back to the system
//! (`malloc_trim`): the write workloads before a read free hundreds of
//! megabytes of buffers, frames and samples, and glibc keeps up to tens of
//! megabytes of that resident (its trim threshold rises with the size of
//! the blocks freed), which would count against the read.

use crate::report::Rss;

/// `VmHWM` and `VmRSS` in bytes, read from one snapshot.
fn sample() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// Resets the peak to the current resident set; true if it took effect.
fn reset_peak() -> bool {
    if std::fs::write("/proc/self/clear_refs", "5").is_err() {
        return false;
    }
    // Right after a reset the peak equals the resident set (give or take
    // what the process touched in between).
    matches!(sample(), Some((hwm, rss)) if hwm <= rss + (1 << 20))
}

/// Measures the resident set across one piece of work.
pub struct Probe {
    before: u64,
    peak_reset: bool,
}

/// Returns free heap memory to the system, where the allocator can.
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Probe {
    pub fn start() -> Probe {
        release_free_heap();
        let peak_reset = reset_peak();
        let before = sample().map_or(0, |(_, rss)| rss);
        Probe { before, peak_reset }
    }

    /// The figures since [`Probe::start`]; call it while the work's memory
    /// is still held.
    pub fn finish(&self) -> Rss {
        let (hwm, rss) = sample().unwrap_or((0, 0));
        let growth = if self.peak_reset {
            hwm.saturating_sub(self.before)
        } else {
            rss.saturating_sub(self.before)
        };
        Rss {
            peak_bytes: hwm,
            growth_bytes: growth,
            peak_reset: self.peak_reset,
        }
    }
}
