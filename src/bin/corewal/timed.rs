//! W1-latency: W1's appends again, each one timed, to show the latency of
//! the appends that move the lane to a new segment against all the others.
//! A separate run, so that W1's throughput stays free of the clock reads.

use std::path::Path;
use std::time::Instant;

use corewal::format::SEGMENT_HEADER_LEN;
use corewal::{Backend, Options};

use crate::bench::Result;
use crate::engine;
use crate::raw::{Frames, RawLog};
use crate::report::{Latency, Rotation, Side};

/// Mean cost of one `Instant::now()` in nanoseconds, over `calls` calls.
pub fn clock_overhead_ns(calls: u32) -> f64 {
    let start = Instant::now();
    let mut last = start;
    for _ in 0..calls {
        last = std::hint::black_box(Instant::now());
    }
    (last - start).as_nanos() as f64 / f64::from(calls.max(1))
}

/// Follows a lane's segments from the positions appends return, the way
/// the writer decides to rotate: a frame that does not fit after the
/// segment header and the frames before it starts the next segment.
#[derive(Debug, Clone, Copy)]
pub struct SegmentTracker {
    segment_bytes: u64,
    /// Lane position of the active segment's first frame.
    base: u64,
}

impl SegmentTracker {
    pub fn new(segment_bytes: u64) -> SegmentTracker {
        SegmentTracker {
            segment_bytes,
            base: 0,
        }
    }

    /// Whether the append whose frame went from `position` to `end` started
    /// a new segment.
    pub fn rotated(&mut self, position: u64, end: u64) -> bool {
        let used = SEGMENT_HEADER_LEN as u64 + (position - self.base);
        if used + (end - position) > self.segment_bytes {
            self.base = position;
            true
        } else {
            false
        }
    }
}

/// What W1-latency measured: both sides (with per-append latency) and the
/// rotations.
pub struct Timed {
    pub corewal: Side,
    pub raw: Side,
    pub rotation: Rotation,
    /// The backend corewal used.
    pub backend: Backend,
    /// Segment files found after the run, minus the prepared next one:
    /// must be one more than the rotations seen.
    pub segments_used: usize,
}

/// Appends `records` records to a fresh WAL in `root` on `backend`, then
/// syncs, timing every append; then the same for the raw baseline.
pub fn run(root: &Path, records: u64, backend: Backend) -> Result<Timed> {
    let clock_ns = clock_overhead_ns(1_000_000);

    let frames = Frames::encode(0, records);
    let raw_path = root.join("w1lat-raw-0.log");
    let mut log = RawLog::create(&raw_path, frames.byte_len())?;
    let mut nanos = Vec::with_capacity(records as usize);
    let start = Instant::now();
    for frame in frames.iter() {
        let t = Instant::now();
        log.append(frame)?;
        nanos.push(t.elapsed().as_nanos() as u64);
    }
    log.sync()?;
    let mut raw = Side::new(records, frames.byte_len(), start.elapsed().as_secs_f64());
    raw.latency = Latency::from_nanos(nanos);
    drop(log);
    std::fs::remove_file(&raw_path)?;
    drop(frames);

    let dir = root.join("w1lat-corewal");
    let manager = engine::open(&dir, 1, backend)?;
    let in_use = manager.backend().backend;
    let writer = manager.writer(0)?;
    let mut tracker = SegmentTracker::new(Options::default().segment_bytes);
    let mut nanos = Vec::with_capacity(records as usize);
    let mut rotating = Vec::new();
    let start = Instant::now();
    for i in 0..records {
        let t = Instant::now();
        let position = engine::append(writer, 0, i)?;
        let ns = t.elapsed().as_nanos() as u64;
        nanos.push(ns);
        if tracker.rotated(position, writer.position()) {
            rotating.push(i as usize);
        }
    }
    writer.sync()?;
    let secs = start.elapsed().as_secs_f64();
    let bytes = writer.position();
    manager.close()?;
    let segments_used = segment_files(&dir)?.saturating_sub(1);
    std::fs::remove_dir_all(&dir)?;

    let rotating_us = rotating.iter().map(|&i| nanos[i] as f64 / 1e3).collect();
    let mut max_other = 0;
    let mut next_rotating = rotating.iter().peekable();
    for (i, &ns) in nanos.iter().enumerate() {
        if next_rotating.peek() == Some(&&i) {
            next_rotating.next();
        } else {
            max_other = max_other.max(ns);
        }
    }
    let mut corewal = Side::new(records, bytes, secs);
    corewal.latency = Latency::from_nanos(nanos);
    Ok(Timed {
        corewal,
        raw,
        rotation: Rotation {
            rotating_us,
            max_other_us: max_other as f64 / 1e3,
            clock_ns,
        },
        backend: in_use,
        segments_used,
    })
}

/// Segment files in `dir`.
fn segment_files(dir: &Path) -> Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if corewal::segment::parse_segment_name(&name.to_string_lossy()).is_some() {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracker_rotates_where_the_writer_does() {
        // A real WAL with small segments: the tracker must see exactly the
        // segments the writer made.
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            num_cores: 1,
            segment_bytes: 8192,
            preallocate: false,
            backend: Backend::Sync,
            ..Options::default()
        };
        let wal = dir.path().join("wal");
        let manager = corewal::Manager::open(&wal, &options).unwrap();
        let writer = manager.writer(0).unwrap();
        let mut tracker = SegmentTracker::new(options.segment_bytes);
        let mut rotations = 0;
        for i in 0..1000 {
            let position = engine::append(writer, 0, i).unwrap();
            rotations += usize::from(tracker.rotated(position, writer.position()));
        }
        manager.close().unwrap();
        assert!(rotations > 10, "{rotations}");
        // Segments 0..=rotations, and the prepared next one.
        assert_eq!(segment_files(&wal).unwrap(), rotations + 2);
    }

    #[test]
    fn the_tracker_counts_the_segment_header() {
        let header = SEGMENT_HEADER_LEN as u64;
        let mut t = SegmentTracker::new(header + 400);
        assert!(!t.rotated(0, 200));
        assert!(!t.rotated(200, 400), "exactly full");
        assert!(t.rotated(400, 600), "over by the whole frame");
        assert!(!t.rotated(600, 800), "the new segment is full again");
        assert!(t.rotated(800, 801), "one byte over");
        assert!(!t.rotated(801, 1200));
        assert!(t.rotated(1200, 1201));
    }

    #[test]
    fn the_clock_costs_something_finite() {
        let ns = clock_overhead_ns(1000);
        assert!(ns > 0.0 && ns < 100_000.0, "{ns}");
    }
}
