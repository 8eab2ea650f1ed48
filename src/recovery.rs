//! Reading lanes back: the scan that finds where each lane ends and decides
//! whether damage is a torn tail or corruption, and the iterator that merges
//! every lane's records into one deterministic order.
//!
//! ## Where a lane ends
//!
//! A lane is read segment by segment from its first frame. The valid prefix
//! stops at the first place that is not a valid continuation: a frame that
//! fails its checksum, zeros, a missing segment index, a segment header that
//! is damaged, unused or names another lane, or a base position that does not
//! continue the previous segment. Everything after that stop (in the rest of
//! the segment and in later segments) is searched for frames that still
//! validate; the greatest durable mark among them decides:
//!
//! | after the stop                         | stop is zeros / end | stop is damage |
//! |----------------------------------------|---------------------|----------------|
//! | no valid frame                         | clean end           | torn tail      |
//! | valid frames, every mark <= stop       | torn tail           | torn tail      |
//! | a valid frame with mark > stop         | corruption          | corruption     |
//!
//! A durable mark above the stop means a sync that covered the stop's bytes
//! had completed before that frame was written: the damaged bytes were
//! acknowledged, so losing them is corruption, not a torn write.
//!
//! ## Skipping damage ([`RecoveryMode::SkipCorrupt`])
//!
//! The search after the stop steps over garbage one frame alignment at a
//! time and finds every frame that still validates. A stale frame never
//! validates in the wrong place, because each frame's checksum is seeded
//! with its lane and segment index, and repair zeroes whatever follows a
//! lane's end. So, when asked to, the scan also records where readable
//! frames resume: a lane becomes a list of *runs* of consecutive valid
//! frames (each inside one segment), and the gaps between runs are
//! *damaged ranges*, reported as (segment index, file offset, length):
//!
//! - bytes between two runs of one segment: from the end of the first run to
//!   the start of the next;
//! - the end of a segment after its last run, when the bytes there are
//!   damage (not zeros), up to the last such bytes; or when the next
//!   segment's base position says lane bytes are missing, that many bytes;
//! - a whole segment whose header is damaged, all zeros (unused) or short,
//!   names another lane or segment, or has a base position before data
//!   already read: its frames' positions cannot be trusted, so none is
//!   read (offset 0, the file's length);
//! - missing segment files: one range with the first missing index,
//!   offset 0 and length 0 for each run of missing indexes.
//!
//! Damage after the last run has no valid frame after it: it is the lane's
//! torn tail, not a damaged range. Only a scan asked for runs collects
//! them, and only frames found past the valid prefix cost anything more:
//! a clean lane scans as fast in every mode.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::checkpoint::{Manifest, ResetMarker};
use crate::error::{Error, IoContext, Result};
use crate::format::{
    self, FRAME_ALIGN, HeaderProblem, OpView, RecordView, SEGMENT_HEADER_LEN, SegmentHeader,
    check_frame, check_frame_pair, frame_seed,
};
use crate::io::{Io, IoFile, MappedFile, OpenMode};
use crate::segment::{list_segments, segment_path};

/// How damage found while opening is treated (`cw_recovery_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Cut a torn tail; refuse corruption (acknowledged data damaged).
    #[default]
    TolerateTornTail,
    /// Any damage, torn tail included, is an error.
    Absolute,
    /// Stop each lane at its first damage, whatever follows.
    PointInTime,
    /// Read every valid frame, skipping the damaged ranges between them
    /// (reported in [`LaneStats::damaged`]); damage after a lane's last
    /// valid frame is a torn tail. Sequences must still increase.
    SkipCorrupt,
}

/// Identity of the last record of a lane's valid prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastRecord {
    pub epoch: u64,
    pub timestamp_ns: i64,
    pub sequence: u64,
}

impl LastRecord {
    fn of(r: &RecordView<'_>) -> LastRecord {
        LastRecord {
            epoch: r.epoch,
            timestamp_ns: r.timestamp_ns,
            sequence: r.sequence,
        }
    }
}

/// A segment inside a lane's valid prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptSegment {
    pub index: u64,
    pub base_position: u64,
    /// File offset just past the last valid frame.
    pub end_offset: u64,
}

/// Where a lane's valid prefix stops, when it stops short of a clean end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub segment_index: u64,
    pub offset: u64,
    pub position: u64,
    pub reason: String,
    /// The stop is plain zeros or the end of the file, not damage.
    pub clean: bool,
}

/// What scanning decided about a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    TornTail,
    Corrupt,
}

/// What a reader gets from a lane, counted by the scan from the lane
/// position reading starts at (a checkpoint's lane start, or the lane's
/// first frame).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadCount {
    /// Valid frames (records) at or after the start.
    pub records: u64,
    /// Their frame bytes.
    pub bytes: u64,
    /// Epoch of the first of them.
    pub first_epoch: Option<u64>,
}

impl ReadCount {
    fn add(&mut self, other: ReadCount) {
        self.records += other.records;
        self.bytes += other.bytes;
        self.first_epoch = self.first_epoch.or(other.first_epoch);
    }
}

/// Why a range was skipped by [`RecoveryMode::SkipCorrupt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// Bytes where frames should be that do not validate (damaged frames,
    /// or zeros followed by valid frames).
    Frames,
    /// The segment header cannot be used; the whole segment is skipped.
    Header(HeaderProblem),
    /// The header names another lane or segment.
    Misplaced { core_id: u32, segment_index: u64 },
    /// The header's base position lies before data already read.
    Overlap { base_position: u64 },
    /// Segment files are missing from this index on.
    Missing,
}

impl std::fmt::Display for DamageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DamageKind::Frames => f.write_str("frames fail their checksum"),
            DamageKind::Header(problem) => problem.fmt(f),
            DamageKind::Misplaced {
                core_id,
                segment_index,
            } => write!(f, "header names lane {core_id} segment {segment_index}"),
            DamageKind::Overlap { base_position } => write!(
                f,
                "base position {base_position} lies before data already read"
            ),
            DamageKind::Missing => f.write_str("segment file missing"),
        }
    }
}

/// A range of a lane that [`RecoveryMode::SkipCorrupt`] skips: `length`
/// bytes of segment `segment_index` from file `offset` (see the module
/// docs for how each kind is bounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DamagedRange {
    pub segment_index: u64,
    pub offset: u64,
    pub length: u64,
    pub kind: DamageKind,
}

/// Consecutive valid frames inside one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub index: u64,
    pub base_position: u64,
    /// File offsets of the first frame and just past the last one.
    pub start_offset: u64,
    pub end_offset: u64,
    /// Damage lies between this run and the one before it, so its first
    /// sequence need not continue the previous run's (it must still be
    /// greater).
    pub after_damage: bool,
}

impl Run {
    /// Lane position of the run's first frame.
    pub fn start_position(&self) -> u64 {
        self.base_position + (self.start_offset - SEGMENT_HEADER_LEN as u64)
    }

    /// Lane position just past the run's last frame.
    pub fn end_position(&self) -> u64 {
        self.base_position + (self.end_offset - SEGMENT_HEADER_LEN as u64)
    }
}

/// What a scan that collects runs found in a lane.
#[derive(Debug, Clone, Default)]
pub struct SkipScan {
    /// Every run, in lane order; the valid prefix's segments come first
    /// (each one a run, even when empty).
    pub runs: Vec<Run>,
    /// The damaged ranges between runs, in lane order.
    pub damaged: Vec<DamagedRange>,
    /// The last record of the last run.
    pub last: Option<LastRecord>,
    /// Where the last run ends, when damage follows it (its torn tail).
    pub tail: Option<Stop>,
    /// Records of every run from the scan's start position.
    pub read: ReadCount,
}

/// The result of scanning one lane.
#[derive(Debug, Clone)]
pub struct LaneScan {
    pub core_id: u32,
    pub kept: Vec<KeptSegment>,
    /// Segments past the valid prefix (unused, torn or damaged).
    pub beyond: Vec<u64>,
    pub start_position: u64,
    pub end_position: u64,
    pub last: Option<LastRecord>,
    pub stop: Option<Stop>,
    /// Valid frames found after the stop, and the greatest durable mark among them.
    pub frames_after_stop: u64,
    pub max_mark_after_stop: u64,
    pub verdict: Verdict,
    /// Records of the valid prefix from the scan's start position.
    pub read: ReadCount,
    /// Runs and damaged ranges, when the scan collected them
    /// ([`ScanOptions::runs`]).
    pub skip: Option<SkipScan>,
}

/// What a recovery iterator reads from one lane (`cw_lane_stats`), known
/// as soon as it is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneStats {
    pub core_id: u32,
    /// Segment files holding the range read.
    pub segments: u64,
    /// Records in the range read: from the lane's checkpoint start when the
    /// iterator starts from a checkpoint, else from its first record, to
    /// where the mode stops reading. `max_epoch` is not applied.
    pub records: u64,
    /// Their frame bytes (damaged ranges excluded).
    pub bytes: u64,
    pub first_epoch: Option<u64>,
    pub last_epoch: Option<u64>,
    /// Where the lane's data ends in damage that is cut off rather than at
    /// a clean end: a torn tail (under `PointInTime`, the first damage).
    pub torn_tail: Option<Stop>,
    /// Ranges skipped between valid frames (`SkipCorrupt` only).
    pub damaged: Vec<DamagedRange>,
}

impl LaneScan {
    /// The error `mode` makes of this scan, if any.
    pub fn check(&self, dir: &Path, mode: RecoveryMode) -> Result<()> {
        let refuse = match (self.verdict, mode) {
            (Verdict::Clean, _)
            | (_, RecoveryMode::PointInTime)
            | (_, RecoveryMode::SkipCorrupt) => false,
            (Verdict::Corrupt, _) => true,
            (Verdict::TornTail, RecoveryMode::Absolute) => true,
            (Verdict::TornTail, RecoveryMode::TolerateTornTail) => false,
        };
        if !refuse {
            return Ok(());
        }
        let stop = self.stop.as_ref().expect("damage has a stop");
        let reason = match self.verdict {
            Verdict::Corrupt => format!(
                "{} at lane position {}, below durable mark {} found in a later frame \
                 (acknowledged data is damaged)",
                stop.reason, stop.position, self.max_mark_after_stop
            ),
            _ => format!(
                "{} at lane position {} (torn tail)",
                stop.reason, stop.position
            ),
        };
        Err(Error::Corrupt {
            lane: self.core_id,
            segment: segment_path(dir, self.core_id, stop.segment_index),
            offset: stop.offset,
            reason,
        })
    }

    /// The runs of valid frames `mode` reads, in order: every run for
    /// `SkipCorrupt`, the valid prefix's segments otherwise.
    fn runs(&self, mode: RecoveryMode) -> Result<Vec<Run>> {
        if mode != RecoveryMode::SkipCorrupt {
            return Ok(self
                .kept
                .iter()
                .map(|k| Run {
                    index: k.index,
                    base_position: k.base_position,
                    start_offset: SEGMENT_HEADER_LEN as u64,
                    end_offset: k.end_offset,
                    after_damage: false,
                })
                .collect());
        }
        self.skip_scan().map(|s| s.runs.clone())
    }

    fn skip_scan(&self) -> Result<&SkipScan> {
        self.skip.as_ref().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "lane {} was scanned without runs; SkipCorrupt needs ScanOptions::runs",
                self.core_id
            ))
        })
    }

    /// What an iterator in `mode` reads from this lane.
    pub fn stats(&self, mode: RecoveryMode) -> Result<LaneStats> {
        if mode == RecoveryMode::SkipCorrupt {
            let skip = self.skip_scan()?;
            let mut segments = skip.runs.iter().map(|r| r.index).collect::<Vec<_>>();
            segments.dedup();
            return Ok(LaneStats {
                core_id: self.core_id,
                segments: segments.len() as u64,
                records: skip.read.records,
                bytes: skip.read.bytes,
                first_epoch: skip.read.first_epoch,
                last_epoch: skip.last.filter(|_| skip.read.records > 0).map(|l| l.epoch),
                torn_tail: skip.tail.clone(),
                damaged: skip.damaged.clone(),
            });
        }
        Ok(LaneStats {
            core_id: self.core_id,
            segments: self.kept.len() as u64,
            records: self.read.records,
            bytes: self.read.bytes,
            first_epoch: self.read.first_epoch,
            last_epoch: self.last.filter(|_| self.read.records > 0).map(|l| l.epoch),
            // A scan a mode refuses never reaches a reader; one it accepts
            // with damage is read up to its stop.
            torn_tail: self.stop.clone().filter(|_| self.verdict != Verdict::Clean),
            damaged: Vec::new(),
        })
    }

    /// Where a writer resumes this lane after a repair in `mode`: the end
    /// of the valid prefix, or under `SkipCorrupt` the end of the last run.
    pub(crate) fn resume_point(&self, mode: RecoveryMode) -> Result<ResumePoint> {
        let scanned = || {
            let mut all: Vec<u64> = self.kept.iter().map(|k| k.index).collect();
            all.extend_from_slice(&self.beyond);
            all
        };
        if mode == RecoveryMode::SkipCorrupt {
            let skip = self.skip_scan()?;
            let Some(last) = skip.runs.last() else {
                return Ok(ResumePoint {
                    end: None,
                    last: None,
                    cut: skip.tail.is_some(),
                    keep: Vec::new(),
                    beyond: scanned(),
                });
            };
            let mut keep: Vec<u64> = skip.runs.iter().map(|r| r.index).collect();
            keep.dedup();
            return Ok(ResumePoint {
                end: Some(KeptSegment {
                    index: last.index,
                    base_position: last.base_position,
                    end_offset: last.end_offset,
                }),
                last: skip.last,
                cut: skip.tail.is_some(),
                keep,
                beyond: scanned().into_iter().filter(|&i| i > last.index).collect(),
            });
        }
        Ok(ResumePoint {
            end: self.kept.last().copied(),
            last: self.last,
            cut: self.verdict != Verdict::Clean,
            keep: self.kept.iter().map(|k| k.index).collect(),
            beyond: self.beyond.clone(),
        })
    }
}

/// How a lane is repaired and resumed (see [`LaneScan::resume_point`]).
#[derive(Debug, Clone)]
pub(crate) struct ResumePoint {
    /// The segment the lane resumes in and the offset it resumes at; `None`
    /// when nothing is readable.
    pub end: Option<KeptSegment>,
    /// The record the writer continues from.
    pub last: Option<LastRecord>,
    /// Damage follows `end`: zero it.
    pub cut: bool,
    /// Segments holding readable data.
    pub keep: Vec<u64>,
    /// Segments after `end`, which hold no readable frame.
    pub beyond: Vec<u64>,
}

impl ResumePoint {
    /// The lane position the writer resumes at.
    pub fn position(&self) -> u64 {
        self.end.map_or(0, |k| {
            k.base_position + (k.end_offset - SEGMENT_HEADER_LEN as u64)
        })
    }
}

/// How the valid prefix of one segment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PrefixEnd {
    /// No room left for another frame header.
    EndOfFile,
    /// An all-zero frame header.
    Zeros,
    /// A frame that fails its checks.
    Damage,
}

struct SegmentScan {
    prefix_end: usize,
    prefix: PrefixEnd,
    last: Option<LastRecord>,
    /// Records of the prefix from the scan's start position.
    read: ReadCount,
    frames_after: u64,
    max_mark_after: u64,
}

/// Releases a mapping's pages behind a reader, a step at a time, so reading
/// a segment never holds more than a few MiB of it resident.
#[derive(Default)]
struct Behind {
    released: usize,
}

/// Pages released behind a reader at a time.
const RELEASE_STEP: usize = 4 << 20;

impl Behind {
    fn advance<M: MappedFile>(&mut self, map: &M, offset: usize) {
        let floor = offset & !4095;
        if floor >= self.released + RELEASE_STEP {
            map.release(self.released, floor - self.released);
            self.released = floor;
        }
    }
}

/// Asks for the cache lines a reader is about to reach. A frame's length is
/// read from the frame itself, so a reader walking frames makes a chain of
/// dependent loads that the hardware prefetcher does not run far enough
/// ahead of; without this, the merge spent most of its time waiting on the
/// first load of each frame.
#[derive(Debug, Default)]
struct Prefetch {
    /// Lines before this offset have been asked for.
    requested: usize,
}

/// How far ahead of the reader lines are asked for: about ten frames of the
/// usual size, close enough that they are still cached when reached.
const PREFETCH_AHEAD: usize = 2048;
const CACHE_LINE: usize = 64;

impl Prefetch {
    /// The reader is at `offset` of `bytes`.
    #[inline]
    fn advance(&mut self, bytes: &[u8], offset: usize) {
        let until = offset.saturating_add(PREFETCH_AHEAD).min(bytes.len());
        let mut line = self.requested.max(offset);
        while line < until {
            prefetch_line(&bytes[line]);
            line += CACHE_LINE;
        }
        self.requested = line;
    }
}

#[inline]
fn prefetch_line(byte: &u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint to the cache: it never faults and
    // changes nothing a program can observe, and the address is a byte
    // the reference makes readable anyway.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(byte).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = byte;
}

/// Zeros are checked this many bytes at a time (a power of two).
const ZERO_BLOCK: usize = 4096;

/// Whether `bytes` are all zero. An OR-fold with no early exit, which the
/// compiler turns into wide vector operations: many times faster than a
/// short-circuiting loop over the megabytes of a preallocated tail.
fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |acc, &b| acc | b) == 0
}

/// The segment a run-collecting scan is placing frames in.
#[derive(Debug, Clone, Copy)]
struct Placing {
    index: u64,
    base_position: u64,
    len: u64,
    /// Where bytes not yet accounted for begin: the end of the segment's
    /// last run, or its header.
    tail_from: u64,
    /// The bytes at `tail_from` are damage, not zeros, up to `garbage_end`.
    tail_dirty: bool,
    garbage_end: u64,
}

/// Collects runs and damaged ranges while a lane is scanned
/// ([`ScanOptions::runs`]). Fed segment by segment, in order.
struct RunCollector {
    core_id: u32,
    from: u64,
    out: SkipScan,
    /// Damage since the last run: committed as damaged ranges when another
    /// run follows, else the torn tail. `true` marks what ends a lane
    /// cleanly (an unused segment).
    pending: Vec<(DamagedRange, bool)>,
    placing: Option<Placing>,
    /// The previous segment, whose tail is judged once the next header is
    /// known.
    open_tail: Option<Placing>,
    last_index: Option<u64>,
    /// Lane position just past the last run.
    end_position: Option<u64>,
}

impl RunCollector {
    fn new(core_id: u32, from: u64) -> RunCollector {
        RunCollector {
            core_id,
            from,
            out: SkipScan::default(),
            pending: Vec::new(),
            placing: None,
            open_tail: None,
            last_index: None,
            end_position: None,
        }
    }

    /// Starts segment `index` (`len` bytes); returns whether its frames
    /// can be placed in the lane.
    fn begin_segment(
        &mut self,
        index: u64,
        header: &std::result::Result<SegmentHeader, HeaderProblem>,
        len: u64,
    ) -> bool {
        let follows = self.last_index.is_some_and(|last| index == last + 1);
        let usable = match header {
            Ok(h) if h.core_id != self.core_id || h.segment_index != index => {
                Err(DamageKind::Misplaced {
                    core_id: h.core_id,
                    segment_index: h.segment_index,
                })
            }
            Ok(h) if self.end_position.is_some_and(|end| h.base_position < end) => {
                Err(DamageKind::Overlap {
                    base_position: h.base_position,
                })
            }
            Ok(h) => Ok(*h),
            Err(problem) => Err(DamageKind::Header(*problem)),
        };
        let next_base = usable.ok().filter(|_| follows).map(|h| h.base_position);
        self.close_tail(next_base);
        if let Some(last) = self.last_index
            && index > last + 1
        {
            self.pending.push((
                DamagedRange {
                    segment_index: last + 1,
                    offset: 0,
                    length: 0,
                    kind: DamageKind::Missing,
                },
                false,
            ));
        }
        self.last_index = Some(index);
        match usable {
            Ok(h) => {
                let header_end = SEGMENT_HEADER_LEN as u64;
                self.placing = Some(Placing {
                    index,
                    base_position: h.base_position,
                    len,
                    tail_from: header_end,
                    tail_dirty: false,
                    garbage_end: header_end,
                });
                true
            }
            Err(kind) => {
                let clean = matches!(
                    kind,
                    DamageKind::Header(HeaderProblem::Unused | HeaderProblem::Short)
                );
                let range = DamagedRange {
                    segment_index: index,
                    offset: 0,
                    length: len,
                    kind,
                };
                self.pending.push((range, clean));
                self.placing = None;
                false
            }
        }
    }

    fn end_segment(&mut self) {
        self.open_tail = self.placing.take();
    }

    /// Judges the unaccounted end of the previous segment, now that the
    /// base position of the segment that follows it (if usable) is known.
    fn close_tail(&mut self, next_base: Option<u64>) {
        let Some(t) = self.open_tail.take() else {
            return;
        };
        let at = t.base_position + (t.tail_from - SEGMENT_HEADER_LEN as u64);
        // Lane bytes the next segment's base says were written here.
        let lost_end = next_base.map_or(t.tail_from, |next| {
            t.tail_from.saturating_add(next.saturating_sub(at))
        });
        let dirty_end = if t.tail_dirty {
            t.garbage_end
        } else {
            t.tail_from
        };
        let end = lost_end.max(dirty_end).min(t.len);
        if end > t.tail_from {
            let range = DamagedRange {
                segment_index: t.index,
                offset: t.tail_from,
                length: end - t.tail_from,
                kind: DamageKind::Frames,
            };
            self.pending.push((range, false));
        }
    }

    /// Adds a run, committing the damage before it.
    fn start_run(&mut self, p: &Placing, start_offset: u64, end_offset: u64) {
        let after_damage = !self.pending.is_empty();
        self.out
            .damaged
            .extend(self.pending.drain(..).map(|(range, _)| range));
        self.out.runs.push(Run {
            index: p.index,
            base_position: p.base_position,
            start_offset,
            end_offset,
            after_damage,
        });
    }

    /// The valid prefix of the segment being placed ends at `end`.
    fn prefix(&mut self, end: u64, read: ReadCount, last: Option<LastRecord>) {
        let Some(mut p) = self.placing else {
            return;
        };
        self.start_run(&p, SEGMENT_HEADER_LEN as u64, end);
        p.tail_from = end;
        p.garbage_end = end;
        self.placing = Some(p);
        self.end_position = Some(p.base_position + (end - SEGMENT_HEADER_LEN as u64));
        self.out.last = last.or(self.out.last);
        self.out.read.add(read);
    }

    /// A valid frame of `len` bytes at `off`, found after the prefix.
    fn frame(&mut self, off: u64, len: u64, record: &RecordView<'_>) {
        let Some(mut p) = self.placing else {
            return;
        };
        let continues = off == p.tail_from
            && self
                .out
                .runs
                .last()
                .is_some_and(|r| r.index == p.index && r.end_offset == off);
        if continues {
            self.out.runs.last_mut().expect("checked").end_offset += len;
        } else {
            if off > p.tail_from {
                self.pending.push((
                    DamagedRange {
                        segment_index: p.index,
                        offset: p.tail_from,
                        length: off - p.tail_from,
                        kind: DamageKind::Frames,
                    },
                    false,
                ));
            }
            self.start_run(&p, off, off + len);
        }
        p.tail_from = off + len;
        p.tail_dirty = false;
        p.garbage_end = p.tail_from;
        self.placing = Some(p);
        let position = p.base_position + (off - SEGMENT_HEADER_LEN as u64);
        self.end_position = Some(position + len);
        self.out.last = Some(LastRecord::of(record));
        if position >= self.from {
            self.out.read.add(ReadCount {
                records: 1,
                bytes: len,
                first_epoch: Some(record.epoch),
            });
        }
    }

    /// Bytes `[at, end)` are neither zeros nor a valid frame.
    fn garbage(&mut self, at: u64, end: u64) {
        if let Some(p) = self.placing.as_mut() {
            p.tail_dirty |= at == p.tail_from;
            if p.tail_dirty {
                p.garbage_end = p.garbage_end.max(end);
            }
        }
    }

    fn finish(mut self, start_position: u64) -> SkipScan {
        self.close_tail(None);
        if let Some((first, _)) = self.pending.iter().find(|(_, clean)| !clean) {
            let (segment_index, offset, position) = match self.out.runs.last() {
                Some(r) => (r.index, r.end_offset, r.end_position()),
                None => (first.segment_index, first.offset, start_position),
            };
            self.out.tail = Some(Stop {
                segment_index,
                offset,
                position,
                reason: first.kind.to_string(),
                clean: false,
            });
        }
        self.out
    }
}

/// Finds the greatest durable mark among valid frames in `map[from..]`,
/// stepping over garbage one frame alignment at a time; hands every frame
/// and every piece of garbage to `runs` when it collects them.
fn search_after<M: MappedFile>(
    map: &M,
    from: usize,
    seed: u32,
    behind: &mut Behind,
    mut runs: Option<&mut RunCollector>,
) -> (u64, u64) {
    let bytes: &[u8] = map;
    let mut off = from.next_multiple_of(FRAME_ALIGN);
    let (mut count, mut max_mark) = (0u64, 0u64);
    while off + FRAME_ALIGN <= bytes.len() {
        behind.advance(map, off);
        // Zeros are the common case (a preallocated tail, a prepared
        // segment): skip them a block at a time.
        if is_zero(&bytes[off..off + FRAME_ALIGN]) {
            off += FRAME_ALIGN;
            while off < bytes.len() {
                let block_end = (off + ZERO_BLOCK) & !(ZERO_BLOCK - 1);
                let block = &bytes[off..block_end.min(bytes.len())];
                if !is_zero(block) {
                    // Resume frame by frame inside the block that has data.
                    while bytes.get(off..off + FRAME_ALIGN).is_some_and(is_zero) {
                        off += FRAME_ALIGN;
                    }
                    break;
                }
                off += block.len();
                behind.advance(map, off);
            }
            continue;
        }
        match check_frame(&bytes[off..], seed, READ_LIMIT)
            .and_then(|f| Some((f, format::decode(f.payload)?)))
        {
            Some((frame, record)) => {
                count += 1;
                max_mark = max_mark.max(record.durable_mark);
                if let Some(runs) = runs.as_deref_mut() {
                    runs.frame(off as u64, frame.frame_len as u64, &record);
                }
                off += frame.frame_len;
            }
            None => {
                if let Some(runs) = runs.as_deref_mut() {
                    runs.garbage(off as u64, (off + FRAME_ALIGN) as u64);
                }
                off += FRAME_ALIGN
            }
        }
    }
    (count, max_mark)
}

/// Valid frames walked from an offset.
struct Walk<'a> {
    end: usize,
    frames: u64,
    /// Offset and payload of the last frame.
    last: Option<(usize, &'a [u8])>,
    stop: PrefixEnd,
}

/// Walks consecutive valid frames from `off` that end at or before `limit`.
fn walk<'a, M: MappedFile>(
    map: &'a M,
    mut off: usize,
    limit: usize,
    seed: u32,
    behind: &mut Behind,
) -> Walk<'a> {
    let bytes: &'a [u8] = map;
    let bytes = &bytes[..limit.min(bytes.len())];
    let mut frames = 0u64;
    let mut last = None;
    let mut ahead = Prefetch::default();
    let stop = loop {
        ahead.advance(bytes, off);
        let Some(head) = bytes.get(off..off + format::FRAME_HEADER_LEN) else {
            break PrefixEnd::EndOfFile;
        };
        // Frames are checked two at a time; a bad second one is met again,
        // alone, as the first of the next pair.
        let (first, second) = check_frame_pair(&bytes[off..], seed, READ_LIMIT);
        let Some(first) = first else {
            break if head.iter().all(|&b| b == 0) {
                PrefixEnd::Zeros
            } else {
                PrefixEnd::Damage
            };
        };
        for frame in std::iter::once(first).chain(second) {
            frames += 1;
            last = Some((off, frame.payload));
            off += frame.frame_len;
        }
        behind.advance(map, off);
    };
    Walk {
        end: off,
        frames,
        last,
        stop,
    }
}

/// Scans one segment whose header is `header`: its valid prefix (unless
/// `all_after`, or the header is not this segment's), then every valid
/// frame after it. Records before lane position `from` are not counted.
fn scan_segment<M: MappedFile>(
    map: &M,
    core_id: u32,
    index: u64,
    header: std::result::Result<SegmentHeader, HeaderProblem>,
    all_after: bool,
    from: u64,
    mut runs: Option<&mut RunCollector>,
) -> SegmentScan {
    let bytes: &[u8] = map;
    let mut behind = Behind::default();
    let seed = frame_seed(core_id, index);
    let header = header
        .ok()
        .filter(|h| h.core_id == core_id && h.segment_index == index);
    let Some(header) = header.filter(|_| !all_after) else {
        let (frames_after, max_mark_after) =
            search_after(map, SEGMENT_HEADER_LEN, seed, &mut behind, runs);
        return SegmentScan {
            prefix_end: SEGMENT_HEADER_LEN,
            prefix: PrefixEnd::Damage,
            last: None,
            read: ReadCount::default(),
            frames_after,
            max_mark_after,
        };
    };
    // Frames before the start are walked apart, to be left out of the count.
    let start = usize::try_from(from.saturating_sub(header.base_position))
        .unwrap_or(usize::MAX)
        .saturating_add(SEGMENT_HEADER_LEN)
        .min(bytes.len());
    let mut before = Walk {
        end: SEGMENT_HEADER_LEN,
        frames: 0,
        last: None,
        stop: PrefixEnd::EndOfFile,
    };
    if start > SEGMENT_HEADER_LEN {
        before = walk(map, SEGMENT_HEADER_LEN, start, seed, &mut behind);
    }
    let after = walk(map, before.end, bytes.len(), seed, &mut behind);
    let mut off = after.end;
    let mut prefix = after.stop;
    let mut frames = after.frames;
    // Only the last record is decoded here (the iterator validates every
    // record as it yields it); it gives the sequence and clock to resume from.
    let mut last = None;
    if let Some((frame_off, payload)) = after.last.or(before.last) {
        match format::decode(payload) {
            Some(r) => last = Some(LastRecord::of(&r)),
            None => {
                off = frame_off;
                prefix = PrefixEnd::Damage;
                if after.last.is_some() {
                    frames -= 1;
                }
            }
        }
    }
    // The first record at or after the start gives the first epoch.
    let first_off = before.end.min(off);
    let first_epoch = (frames > 0)
        .then(|| check_frame(&bytes[first_off..], seed, READ_LIMIT))
        .flatten()
        .and_then(|f| format::decode(f.payload))
        .map(|r| r.epoch);
    let read = ReadCount {
        records: frames,
        bytes: (off - first_off) as u64,
        first_epoch,
    };
    if let Some(runs) = runs.as_deref_mut() {
        runs.prefix(off as u64, read, last);
        if prefix == PrefixEnd::Damage {
            runs.garbage(off as u64, (off + FRAME_ALIGN) as u64);
        }
    }
    let (frames_after, max_mark_after) =
        search_after(map, off + format::FRAME_HEADER_LEN, seed, &mut behind, runs);
    SegmentScan {
        prefix_end: off,
        prefix,
        last,
        read,
        frames_after,
        max_mark_after,
    }
}

fn map_segment<I: Io>(io: &I, dir: &Path, core_id: u32, index: u64) -> Result<I::Map> {
    let path = segment_path(dir, core_id, index);
    let what = || format!("reading {}", path.display());
    let file = io.open(&path, OpenMode::Existing).context(what)?;
    let len = file.size().context(what)?;
    let len = usize::try_from(len)
        .map_err(|_| Error::io(what(), std::io::ErrorKind::FileTooLarge.into()))?;
    io.map(&file, len).context(what)
}

/// What a lane scan counts and collects beyond where the lane ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// Lane position reading starts at (a checkpoint's lane start): records
    /// before it are not counted in [`LaneScan::read`] and [`SkipScan::read`].
    pub from: u64,
    /// Collect every run of valid frames and the damaged ranges between
    /// them ([`LaneScan::skip`]), as [`RecoveryMode::SkipCorrupt`] needs.
    pub runs: bool,
}

impl ScanOptions {
    /// What reading in `mode` from lane position `from` needs.
    pub fn for_mode(mode: RecoveryMode, from: u64) -> ScanOptions {
        ScanOptions {
            from,
            runs: mode == RecoveryMode::SkipCorrupt,
        }
    }
}

/// Scans lane `core_id` whose segment indexes (sorted) are `indexes`.
pub fn scan_lane<I: Io>(io: &I, dir: &Path, core_id: u32, indexes: &[u64]) -> Result<LaneScan> {
    scan_lane_with(io, dir, core_id, indexes, ScanOptions::default())
}

/// [`scan_lane`] with options: a start position to count from, and runs.
pub fn scan_lane_with<I: Io>(
    io: &I,
    dir: &Path,
    core_id: u32,
    indexes: &[u64],
    opts: ScanOptions,
) -> Result<LaneScan> {
    let mut scan = LaneScan {
        core_id,
        kept: Vec::new(),
        beyond: Vec::new(),
        start_position: 0,
        end_position: 0,
        last: None,
        stop: None,
        frames_after_stop: 0,
        max_mark_after_stop: 0,
        verdict: Verdict::Clean,
        read: ReadCount::default(),
        skip: None,
    };
    let mut runs = opts.runs.then(|| RunCollector::new(core_id, opts.from));
    for (i, &index) in indexes.iter().enumerate() {
        let map = map_segment(io, dir, core_id, index)?;
        let header = SegmentHeader::decode(&map);
        let placed = runs
            .as_mut()
            .is_some_and(|r| r.begin_segment(index, &header, map.len() as u64));
        let placing = runs.as_mut().filter(|_| placed);
        // The stop when this segment cannot continue the lane: at the end of
        // the previous segment, or at the start of a lane's first segment.
        let stop_here = |reason: String, clean: bool| match scan.kept.last() {
            Some(prev) => Stop {
                segment_index: prev.index,
                offset: prev.end_offset,
                position: scan.end_position,
                reason,
                clean,
            },
            None => Stop {
                segment_index: index,
                offset: 0,
                position: scan.end_position,
                reason,
                clean,
            },
        };
        let expected = scan.kept.last().map(|k| k.index + 1);
        let refused = match header {
            _ if scan.stop.is_some() => None,
            _ if expected.is_some_and(|e| e != index) => Some(stop_here(
                format!("segment {} is missing", expected.unwrap_or(0)),
                false,
            )),
            Err(HeaderProblem::Unused) | Err(HeaderProblem::Short) => {
                Some(stop_here("lane ends before an unused segment".into(), true))
            }
            Err(problem) => Some(stop_here(problem.to_string(), false)),
            Ok(h) if h.core_id != core_id || h.segment_index != index => Some(stop_here(
                format!(
                    "header names lane {} segment {}",
                    h.core_id, h.segment_index
                ),
                false,
            )),
            Ok(h) if i > 0 && h.base_position != scan.end_position => Some(stop_here(
                format!(
                    "base position {} does not continue the lane",
                    h.base_position
                ),
                false,
            )),
            Ok(_) => None,
        };
        if scan.stop.is_some() || refused.is_some() {
            // Frames after the stop, and in a refused segment, are judged
            // like any other frames after the stop.
            let seg = scan_segment(&map, core_id, index, header, true, opts.from, placing);
            scan.beyond.push(index);
            scan.frames_after_stop += seg.frames_after;
            scan.max_mark_after_stop = scan.max_mark_after_stop.max(seg.max_mark_after);
            if refused.is_some() {
                scan.stop = refused;
            }
            if let Some(runs) = runs.as_mut() {
                runs.end_segment();
            }
            continue;
        }
        let header = header.expect("checked above");
        let seg = scan_segment(&map, core_id, index, Ok(header), false, opts.from, placing);
        if i == 0 {
            scan.start_position = header.base_position;
            scan.end_position = header.base_position;
        }
        scan.end_position = header.base_position + (seg.prefix_end - SEGMENT_HEADER_LEN) as u64;
        scan.last = seg.last.or(scan.last);
        scan.read.add(seg.read);
        scan.kept.push(KeptSegment {
            index,
            base_position: header.base_position,
            end_offset: seg.prefix_end as u64,
        });
        scan.frames_after_stop += seg.frames_after;
        scan.max_mark_after_stop = scan.max_mark_after_stop.max(seg.max_mark_after);
        if seg.prefix == PrefixEnd::Damage || seg.frames_after > 0 {
            scan.stop = Some(Stop {
                segment_index: index,
                offset: seg.prefix_end as u64,
                position: scan.end_position,
                reason: if seg.prefix == PrefixEnd::Damage {
                    "frame fails its checksum".into()
                } else {
                    "zeros followed by valid frames".into()
                },
                clean: false,
            });
        }
        if let Some(runs) = runs.as_mut() {
            runs.end_segment();
        }
    }
    scan.verdict = judge(
        scan.stop.as_ref(),
        scan.frames_after_stop,
        scan.max_mark_after_stop,
    );
    scan.skip = runs.map(|r| r.finish(scan.start_position));
    Ok(scan)
}

/// The table at the top of this module.
fn judge(stop: Option<&Stop>, frames_after: u64, max_mark_after: u64) -> Verdict {
    match stop {
        None => Verdict::Clean,
        Some(stop) if frames_after > 0 && max_mark_after > stop.position => Verdict::Corrupt,
        Some(stop) if frames_after > 0 || !stop.clean => Verdict::TornTail,
        Some(_) => Verdict::Clean,
    }
}

/// Scans every lane of `dir`, for lanes `0..lanes`.
pub fn scan_dir<I: Io>(io: &I, dir: &Path, lanes: u32) -> Result<Vec<LaneScan>> {
    scan_dir_from(io, dir, lanes, &[], RecoveryMode::TolerateTornTail)
}

/// Like [`scan_dir`], but each lane's segments wholly before its start in
/// `starts` (0 for a lane beyond it) are left out (only their successors'
/// headers are read), and the scan collects what reading in `mode` needs.
/// Lanes are scanned on as many threads as the machine has cores: they are
/// independent, and the scan is CPU-bound when the log is in the page cache.
pub fn scan_dir_from<I: Io>(
    io: &I,
    dir: &Path,
    lanes: u32,
    starts: &[u64],
    mode: RecoveryMode,
) -> Result<Vec<LaneScan>> {
    let (per_lane, _) = list_segments(io, dir, lanes)?;
    let scan_one = |core: usize| -> Result<LaneScan> {
        let core_id = core as u32;
        let indexes = &per_lane[core];
        let start = starts.get(core).copied().unwrap_or(0);
        let mut first = 0;
        while first + 1 < indexes.len()
            && start > 0
            && header_base(io, dir, core_id, indexes[first + 1])?.is_some_and(|base| base <= start)
        {
            first += 1;
        }
        let opts = ScanOptions::for_mode(mode, start);
        scan_lane_with(io, dir, core_id, &indexes[first..], opts)
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(per_lane.len());
    if threads <= 1 {
        return (0..per_lane.len()).map(scan_one).collect();
    }
    // Lane `i` goes to worker `i % threads`; results come back in lane order.
    let mut results: Vec<Option<Result<LaneScan>>> = (0..per_lane.len()).map(|_| None).collect();
    let lane_count = per_lane.len();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                let scan_one = &scan_one;
                scope.spawn(move || {
                    (worker..lane_count)
                        .step_by(threads)
                        .map(|core| (core, scan_one(core)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for worker in workers {
            match worker.join() {
                Ok(scans) => {
                    for (core, scan) in scans {
                        results[core] = Some(scan);
                    }
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    results
        .into_iter()
        .map(|r| r.expect("every lane scanned"))
        .collect()
}

/// Where replay of `dir` starts: the checkpoint to start from (`checkpoint`,
/// when one is wanted) and each lane's start. A reset that a crash cut short
/// (its marker is still there) hides every lane's records before the
/// marker's positions, checkpoint or not; there is no checkpoint then, as
/// the reset was removing it.
pub fn replay_from<I: Io>(
    io: &I,
    dir: &Path,
    checkpoint: Option<Manifest>,
) -> Result<(Option<Manifest>, Vec<u64>)> {
    if let Some(marker) = ResetMarker::read(io, dir)? {
        return Ok((None, marker.lane_starts));
    }
    let starts = checkpoint
        .as_ref()
        .map_or_else(Vec::new, |c| c.lane_starts.clone());
    Ok((checkpoint, starts))
}

/// The base position in segment `index`'s header, if the header is valid.
pub(crate) fn header_base<I: Io>(io: &I, dir: &Path, core: u32, index: u64) -> Result<Option<u64>> {
    let path = segment_path(dir, core, index);
    let what = || format!("reading {}", path.display());
    let file = io.open(&path, OpenMode::Existing).context(what)?;
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    let n = file.read_at(&mut header, 0).context(what)?;
    Ok(SegmentHeader::decode(&header[..n])
        .ok()
        .filter(|h| h.core_id == core && h.segment_index == index)
        .map(|h| h.base_position))
}

/// Options of a recovery iterator (`cw_recovery_options`).
#[derive(Debug, Clone)]
pub struct RecoveryOptions {
    pub mode: RecoveryMode,
    /// Start from the latest checkpoint when there is one.
    pub from_checkpoint: bool,
    /// Records of later epochs are not yielded.
    pub max_epoch: u64,
    /// Lanes to read; `None` reads every lane.
    pub lanes: Option<Vec<u32>>,
}

impl Default for RecoveryOptions {
    fn default() -> Self {
        RecoveryOptions {
            mode: RecoveryMode::TolerateTornTail,
            from_checkpoint: true,
            max_epoch: u64::MAX,
            lanes: None,
        }
    }
}

/// One record yielded by [`Recovery::next`], borrowing the mapped segment.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub epoch: u64,
    pub timestamp_ns: i64,
    pub sequence: u64,
    /// Lane position of the record's frame.
    pub position: u64,
    pub core_id: u32,
    pub op: OpView<'a>,
}

/// Frames are read whatever the current `max_record_bytes`: a smaller limit
/// at reopen must not turn existing records into damage. Lengths are still
/// checked against the bytes that exist.
const READ_LIMIT: usize = u32::MAX as usize;

/// The global replay order of SPEC §1.
type OrderKey = (u64, i64, u32, u64);

fn order_key(r: &RecordView<'_>) -> OrderKey {
    (r.epoch, r.timestamp_ns, r.core_id, r.sequence)
}

/// A byte range inside a lane's current mapping.
type Span = (usize, usize);

/// The decoded head record of a lane, kept as offsets into the mapping so
/// that it is validated once and yielded without decoding again.
#[derive(Debug, Clone, Copy)]
struct Head {
    epoch: u64,
    timestamp_ns: i64,
    sequence: u64,
    position: u64,
    op: HeadOp,
}

#[derive(Debug, Clone, Copy)]
enum HeadOp {
    Put {
        key: Span,
        value: Span,
    },
    Delete {
        key: Span,
    },
    /// COMMIT offsets stay archived: the payload is decoded again to yield them.
    Commit {
        payload: Span,
    },
    Checkpoint {
        checkpoint_id: u64,
    },
    EpochBarrier,
}

fn span_of(map: &[u8], part: &[u8]) -> Span {
    (part.as_ptr() as usize - map.as_ptr() as usize, part.len())
}

struct LaneCursor<I: Io> {
    core_id: u32,
    /// The runs of valid frames read, in order (one per segment, unless
    /// damage is skipped).
    runs: Vec<Run>,
    next_run: usize,
    map: Option<Arc<I::Map>>,
    /// Segment index of `map`.
    mapped: u64,
    base_position: u64,
    end: usize,
    /// Offset of the next frame in `map`.
    off: usize,
    ahead: Prefetch,
    expected_sequence: Option<u64>,
    /// After skipped damage, sequences resume anywhere above this.
    sequence_floor: u64,
    /// Replay starts here (a checkpoint's lane start; 0 otherwise).
    start: u64,
    /// Records of this epoch or earlier are covered by the checkpoint.
    covered_epoch: Option<u64>,
}

impl<I: Io> LaneCursor<I> {
    fn segment_index(&self) -> u64 {
        self.runs[self.next_run - 1].index
    }

    fn corrupt(&self, dir: &Path, reason: String) -> Error {
        Error::Corrupt {
            lane: self.core_id,
            segment: segment_path(dir, self.core_id, self.segment_index()),
            offset: self.off as u64,
            reason,
        }
    }

    /// Decodes the frame at `self.off` (opening the next segment when the
    /// current one is done) and returns its order key, the record and the
    /// frame's length; `None` at the end of the lane. Checksums were
    /// verified by the scan that found this range; the record is still
    /// validated before use.
    fn settle(
        &mut self,
        io: &I,
        dir: &Path,
        max_epoch: u64,
    ) -> Result<Option<(OrderKey, Head, usize)>> {
        loop {
            if let Some(map) = self.map.as_ref().filter(|_| self.off < self.end) {
                let bytes: &[u8] = map;
                self.ahead.advance(&bytes[..self.end], self.off);
                let payload_len = bytes
                    .get(self.off..self.off + 4)
                    .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
                    .unwrap_or(0);
                let frame_end = self.off + format::frame_len(payload_len);
                let payload_start = self.off + format::FRAME_HEADER_LEN;
                let record = (payload_len > 0 && frame_end <= self.end)
                    .then(|| format::decode(&bytes[payload_start..payload_start + payload_len]))
                    .flatten()
                    .ok_or_else(|| self.corrupt(dir, "record changed or does not decode".into()))?;
                if record.core_id != self.core_id {
                    return Err(self.corrupt(dir, format!("record claims lane {}", record.core_id)));
                }
                if let Some(expected) = self.expected_sequence {
                    if record.sequence != expected {
                        return Err(self.corrupt(
                            dir,
                            format!("sequence {} where {expected} was expected", record.sequence),
                        ));
                    }
                } else if record.sequence < self.sequence_floor {
                    return Err(self.corrupt(
                        dir,
                        format!(
                            "sequence {} after skipped damage, where at least {} was expected \
                             (sequences never decrease)",
                            record.sequence, self.sequence_floor
                        ),
                    ));
                }
                self.expected_sequence = Some(record.sequence.wrapping_add(1));
                if self
                    .covered_epoch
                    .is_some_and(|covered| record.epoch <= covered)
                {
                    self.off = frame_end;
                    continue;
                }
                if record.epoch > max_epoch {
                    // Epochs never decrease within a lane: the rest is later still.
                    self.map = None;
                    return Ok(None);
                }
                let op = match record.op {
                    OpView::Put { key, value } => HeadOp::Put {
                        key: span_of(bytes, key),
                        value: span_of(bytes, value),
                    },
                    OpView::Delete { key } => HeadOp::Delete {
                        key: span_of(bytes, key),
                    },
                    OpView::Commit { .. } => HeadOp::Commit {
                        payload: (payload_start, payload_len),
                    },
                    OpView::Checkpoint { checkpoint_id } => HeadOp::Checkpoint { checkpoint_id },
                    OpView::EpochBarrier => HeadOp::EpochBarrier,
                };
                let head = Head {
                    epoch: record.epoch,
                    timestamp_ns: record.timestamp_ns,
                    sequence: record.sequence,
                    position: self.base_position + (self.off - SEGMENT_HEADER_LEN) as u64,
                    op,
                };
                return Ok(Some((order_key(&record), head, frame_end - self.off)));
            }
            let Some(run) = self.runs.get(self.next_run).copied() else {
                self.map = None;
                return Ok(None);
            };
            self.next_run += 1;
            // Runs of one segment share its mapping.
            if self.mapped != run.index {
                self.map = None;
            }
            if run.after_damage {
                self.sequence_floor = self.expected_sequence.unwrap_or(self.sequence_floor);
                self.expected_sequence = None;
            }
            // Runs (segments) wholly before the start are never opened.
            if self
                .runs
                .get(self.next_run)
                .is_some_and(|next| next.start_position() <= self.start)
            {
                continue;
            }
            if self.map.is_none() {
                self.map = Some(Arc::new(map_segment(io, dir, self.core_id, run.index)?));
                self.mapped = run.index;
                self.ahead = Prefetch::default();
            }
            let map = self.map.as_ref().expect("mapped above");
            self.end = (run.end_offset as usize).min(map.len());
            self.base_position = run.base_position;
            self.off = (run.start_offset as usize)
                .max(SEGMENT_HEADER_LEN + self.start.saturating_sub(run.base_position) as usize);
        }
    }

    /// Settles heads into `batch` until it holds [`BATCH`] records or the
    /// lane ends (then `batch.end` says how).
    fn fill(&mut self, io: &I, dir: &Path, max_epoch: u64, batch: &mut Batch<I::Map>) {
        while batch.items.len() < BATCH {
            match self.settle(io, dir, max_epoch) {
                Ok(Some((key, head, frame_len))) => {
                    let map = self.map.as_ref().expect("a settled record has its mapping");
                    if !batch.maps.last().is_some_and(|m| Arc::ptr_eq(m, map)) {
                        batch.maps.push(Arc::clone(map));
                    }
                    batch.items.push(Item {
                        key,
                        head,
                        map: batch.maps.len() - 1,
                        segment: self.segment_index(),
                        offset: self.off,
                    });
                    self.off += frame_len;
                }
                Ok(None) => {
                    batch.end = Some(Ok(()));
                    return;
                }
                Err(e) => {
                    batch.end = Some(Err(e));
                    return;
                }
            }
        }
    }
}

/// Records a lane decodes and validates at a time, ahead of the merge: the
/// merge's own loop then only orders them, and a batch stays in cache.
const BATCH: usize = 256;

/// One settled record, as offsets into one of its batch's mappings.
#[derive(Clone, Copy)]
struct Item {
    key: OrderKey,
    head: Head,
    map: usize,
    /// Segment index and file offset of the frame, for error messages.
    segment: u64,
    offset: usize,
}

/// A run of a lane's records in order, with the mappings they point into.
struct Batch<M> {
    maps: Vec<Arc<M>>,
    items: Vec<Item>,
    /// Set in a lane's last batch: it ended (`Ok`) or failed.
    end: Option<Result<()>>,
}

impl<M> Batch<M> {
    fn new() -> Batch<M> {
        Batch {
            maps: Vec::new(),
            items: Vec::with_capacity(BATCH),
            end: None,
        }
    }
}

/// The merge's view of one lane: the batch being read and the cursor that
/// decodes the next.
struct Feed<I: Io> {
    core_id: u32,
    batch: Batch<I::Map>,
    /// Index in `batch.items` of the lane's head record.
    next: usize,
    cursor: LaneCursor<I>,
    /// Pages behind the head are released from the mapping being read.
    behind: Behind,
    behind_map: Option<Arc<I::Map>>,
}

impl<I: Io> Feed<I> {
    /// Moves to the lane's next record (the first on the first call) and
    /// returns its key; `None` at the end of the lane.
    fn advance(
        &mut self,
        io: &I,
        dir: &Path,
        max_epoch: u64,
        first: bool,
    ) -> Result<Option<OrderKey>> {
        if !first {
            self.next += 1;
        }
        loop {
            if let Some(item) = self.batch.items.get(self.next) {
                let map = &self.batch.maps[item.map];
                if !self
                    .behind_map
                    .as_ref()
                    .is_some_and(|m| Arc::ptr_eq(m, map))
                {
                    self.behind = Behind::default();
                    self.behind_map = Some(Arc::clone(map));
                }
                let start = match item.head.op {
                    HeadOp::Put { key, .. } | HeadOp::Delete { key } => key.0,
                    HeadOp::Commit { payload } => payload.0,
                    HeadOp::Checkpoint { .. } | HeadOp::EpochBarrier => 0,
                };
                self.behind.advance(&**map, start);
                return Ok(Some(item.key));
            }
            if let Some(end) = self.batch.end.take() {
                self.batch.items.clear();
                self.batch.maps.clear();
                self.behind_map = None;
                // Later calls see an ended lane: the error is reported once.
                self.batch.end = Some(Ok(()));
                return end.map(|()| None);
            }
            self.next = 0;
            self.batch.items.clear();
            self.batch.maps.clear();
            self.cursor.fill(io, dir, max_epoch, &mut self.batch);
        }
    }

    /// The head record; `None` only if the mapped bytes no longer decode.
    fn head(&self) -> Option<Entry<'_>> {
        let item = self.batch.items.get(self.next)?;
        let map: &[u8] = &self.batch.maps[item.map];
        let head = item.head;
        let at = |(start, len): Span| map.get(start..start + len);
        let op = match head.op {
            HeadOp::Put { key, value } => OpView::Put {
                key: at(key)?,
                value: at(value)?,
            },
            HeadOp::Delete { key } => OpView::Delete { key: at(key)? },
            HeadOp::Commit { payload } => format::decode(at(payload)?)?.op,
            HeadOp::Checkpoint { checkpoint_id } => OpView::Checkpoint { checkpoint_id },
            HeadOp::EpochBarrier => OpView::EpochBarrier,
        };
        Some(Entry {
            epoch: head.epoch,
            timestamp_ns: head.timestamp_ns,
            sequence: head.sequence,
            position: head.position,
            core_id: self.core_id,
            op,
        })
    }

    /// An error about the head record.
    fn corrupt(&self, dir: &Path, reason: String) -> Error {
        let (segment, offset) = self
            .batch
            .items
            .get(self.next)
            .map_or((0, 0), |item| (item.segment, item.offset as u64));
        Error::Corrupt {
            lane: self.core_id,
            segment: segment_path(dir, self.core_id, segment),
            offset,
            reason,
        }
    }
}

/// A streaming k-way merge over lanes, yielding records in
/// `(epoch, timestamp_ns, core_id, sequence)` order. Memory is bounded by
/// the number of lanes: one mapped segment per lane, released as it is read.
pub struct Recovery<I: Io> {
    io: I,
    dir: PathBuf,
    max_epoch: u64,
    lanes: Vec<Feed<I>>,
    /// Lanes by their head's order key. After the first call the top is the
    /// lane whose head was yielded last: it moves on at the next call, so the
    /// yielded entry stays valid until then.
    heap: BinaryHeap<Reverse<(OrderKey, usize)>>,
    started: bool,
    /// The error that stopped the iterator: every later call reports it.
    /// Set through `&self`, so the entry being built can keep its borrow.
    failed: std::cell::OnceCell<Error>,
    scans: Vec<LaneScan>,
    stats: Vec<LaneStats>,
    checkpoint: Option<Manifest>,
}

impl<I: Io> Recovery<I> {
    /// Opens an iterator over `scans` (from [`scan_dir`]), reading each
    /// lane's valid prefix, or under `SkipCorrupt` every run (which the
    /// scans must have collected: [`ScanOptions::runs`]). Fails if a scan is
    /// refused by `opts.mode`.
    ///
    /// Each lane is decoded and validated a batch of records at a time,
    /// ahead of the merge; memory stays bounded by the number of lanes.
    pub fn new(
        io: I,
        dir: &Path,
        scans: Vec<LaneScan>,
        opts: &RecoveryOptions,
        checkpoint: Option<Manifest>,
    ) -> Result<Recovery<I>> {
        let starts = checkpoint
            .as_ref()
            .map_or_else(Vec::new, |c| c.lane_starts.clone());
        Recovery::starting_at(io, dir, scans, opts, checkpoint, &starts)
    }

    /// Like [`Recovery::new`], with each lane's replay starting at its
    /// entry of `starts` (0 beyond it), as [`replay_from`] finds them.
    pub fn starting_at(
        io: I,
        dir: &Path,
        scans: Vec<LaneScan>,
        opts: &RecoveryOptions,
        checkpoint: Option<Manifest>,
        starts: &[u64],
    ) -> Result<Recovery<I>> {
        let lane_count = scans.len() as u32;
        if let Some(lanes) = &opts.lanes
            && let Some(bad) = lanes.iter().find(|&&l| l >= lane_count)
        {
            return Err(Error::InvalidArgument(format!(
                "lane filter names lane {bad}, but the WAL has {lane_count} lanes"
            )));
        }
        let wanted = |core: u32| opts.lanes.as_ref().is_none_or(|l| l.contains(&core));
        // Damage in a lane that is not read does not stop the others.
        for scan in scans.iter().filter(|s| wanted(s.core_id)) {
            scan.check(dir, opts.mode)?;
        }
        let mut recovery = Recovery {
            io,
            dir: dir.to_owned(),
            max_epoch: opts.max_epoch,
            lanes: Vec::new(),
            heap: BinaryHeap::new(),
            started: false,
            failed: std::cell::OnceCell::new(),
            scans: Vec::new(),
            stats: Vec::new(),
            checkpoint: None,
        };
        for scan in scans.iter().filter(|s| wanted(s.core_id)) {
            recovery.stats.push(scan.stats(opts.mode)?);
            let cursor = LaneCursor {
                core_id: scan.core_id,
                runs: scan.runs(opts.mode)?,
                next_run: 0,
                map: None,
                mapped: u64::MAX,
                base_position: 0,
                end: 0,
                off: 0,
                ahead: Prefetch::default(),
                expected_sequence: None,
                sequence_floor: 0,
                start: starts.get(scan.core_id as usize).copied().unwrap_or(0),
                covered_epoch: checkpoint.as_ref().map(|c| c.epoch),
            };
            recovery.lanes.push(Feed {
                core_id: scan.core_id,
                batch: Batch::new(),
                next: 0,
                cursor,
                behind: Behind::default(),
                behind_map: None,
            });
        }
        for (lane, feed) in recovery.lanes.iter_mut().enumerate() {
            if let Some(key) = feed.advance(&recovery.io, &recovery.dir, opts.max_epoch, true)? {
                recovery.heap.push(Reverse((key, lane)));
            }
        }
        recovery.scans = scans;
        recovery.checkpoint = checkpoint;
        Ok(recovery)
    }

    /// Opens a read-only iterator over the WAL in `dir`. Never modifies the
    /// directory and takes no lock, so it works beside an open manager.
    /// With `opts.from_checkpoint` and a checkpoint in `dir`, each lane is
    /// read from its checkpoint start: segments wholly before it are neither
    /// scanned nor mapped, and only records of later epochs are yielded.
    /// Records a crash-interrupted reset discarded are never yielded (see
    /// [`replay_from`]).
    pub fn open(io: I, dir: &Path, opts: &RecoveryOptions) -> Result<Recovery<I>> {
        let meta = crate::meta::Meta::read(&io, dir)?
            .ok_or_else(|| Error::NotFound(format!("no WAL in {}", dir.display())))?;
        let checkpoint = if opts.from_checkpoint {
            Manifest::read(&io, dir)?
        } else {
            None
        };
        let (checkpoint, starts) = replay_from(&io, dir, checkpoint)?;
        let scans = scan_dir_from(&io, dir, meta.num_cores, &starts, opts.mode)?;
        Recovery::starting_at(io, dir, scans, opts, checkpoint, &starts)
    }

    /// The checkpoint this iterator starts from, if any.
    pub fn checkpoint(&self) -> Option<&Manifest> {
        self.checkpoint.as_ref()
    }

    /// The next record in global order, or `None` when every lane is done.
    /// The entry borrows mapped bytes and lives until the next call.
    /// After an error, every later call fails with the same error.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Entry<'_>>> {
        if let Some(failed) = self.failed.get() {
            return Err(failed.duplicate());
        }
        if self.started
            && let Some(mut top) = self.heap.peek_mut()
        {
            let lane = top.0.1;
            match self.lanes[lane].advance(&self.io, &self.dir, self.max_epoch, false) {
                // Replacing the top sifts it down once instead of a pop and a push.
                Ok(Some(key)) => top.0 = (key, lane),
                Ok(None) => {
                    std::collections::binary_heap::PeekMut::pop(top);
                }
                Err(e) => {
                    let _ = self.failed.set(e.duplicate());
                    return Err(e);
                }
            }
        }
        self.started = true;
        let Some(&Reverse((_, lane))) = self.heap.peek() else {
            return Ok(None);
        };
        let feed = &self.lanes[lane];
        feed.head().map(Some).ok_or_else(|| {
            let e = feed.corrupt(&self.dir, "record changed while reading".into());
            let _ = self.failed.set(e.duplicate());
            e
        })
    }

    /// What the scan found for each lane, in lane order.
    pub fn scans(&self) -> &[LaneScan] {
        &self.scans
    }

    /// What the iterator reads from each lane it reads, in lane order
    /// (`cw_recovery_stats`): known at open, before any record is read.
    pub fn stats(&self) -> &[LaneStats] {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stop(clean: bool) -> Stop {
        Stop {
            segment_index: 0,
            offset: 64,
            position: 100,
            reason: "test".into(),
            clean,
        }
    }

    fn scan_with(stop: Option<Stop>, after: u64, mark: u64) -> LaneScan {
        let verdict = judge(stop.as_ref(), after, mark);
        LaneScan {
            core_id: 0,
            kept: vec![],
            beyond: vec![],
            start_position: 0,
            end_position: 100,
            last: None,
            stop,
            frames_after_stop: after,
            max_mark_after_stop: mark,
            verdict,
            read: ReadCount::default(),
            skip: None,
        }
    }

    #[test]
    fn modes_refuse_what_they_should() {
        let dir = Path::new("/wal");
        let torn = scan_with(Some(stop(false)), 0, 0);
        let corrupt = scan_with(Some(stop(false)), 2, 101);
        let clean = scan_with(Some(stop(true)), 0, 0);
        assert!(torn.check(dir, RecoveryMode::TolerateTornTail).is_ok());
        assert!(torn.check(dir, RecoveryMode::Absolute).is_err());
        assert!(torn.check(dir, RecoveryMode::PointInTime).is_ok());
        assert!(corrupt.check(dir, RecoveryMode::TolerateTornTail).is_err());
        assert!(corrupt.check(dir, RecoveryMode::Absolute).is_err());
        assert!(corrupt.check(dir, RecoveryMode::PointInTime).is_ok());
        for mode in [
            RecoveryMode::TolerateTornTail,
            RecoveryMode::Absolute,
            RecoveryMode::PointInTime,
        ] {
            assert!(clean.check(dir, mode).is_ok());
        }
        let msg = corrupt
            .check(dir, RecoveryMode::TolerateTornTail)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("lane 0")
                && msg.contains("wal-00000-0000000000.log")
                && msg.contains("offset 64"),
            "{msg}"
        );
    }

    /// A frame with durable mark `mark`, sealed for `seed`.
    fn frame(seed: u32, mark: u64) -> Vec<u8> {
        let record = format::RecordRef {
            epoch: 1,
            timestamp_ns: 1,
            sequence: 9,
            durable_mark: mark,
            core_id: 0,
            op: format::OpRef::Put {
                key: b"k",
                value: b"v",
            },
        };
        let mut encoder = format::Encoder::default();
        let (padded, len) = encoder.encode(&record);
        let mut out = format::seal_frame(seed, len, padded).to_vec();
        out.extend_from_slice(padded);
        out
    }

    #[test]
    fn the_search_after_a_stop_finds_frames_anywhere_in_long_zero_runs() {
        use crate::io::{MemIo, OpenMode};
        let seed = frame_seed(0, 0);
        // Frames just inside a zero block, at a block's last aligned slot,
        // and deep in a later block; zeros everywhere else.
        let spots = [
            (8usize, 5u64),
            (2 * ZERO_BLOCK - FRAME_ALIGN * 8, 7),
            (9 * ZERO_BLOCK + 24, 3),
        ];
        let mut bytes = vec![0u8; 12 * ZERO_BLOCK];
        for &(at, mark) in &spots {
            let f = frame(seed, mark);
            bytes[at..at + f.len()].copy_from_slice(&f);
        }
        let io = MemIo::new();
        io.create_dir(Path::new("/wal")).unwrap();
        let path = Path::new("/wal/seg");
        let file = io.open(path, OpenMode::Create).unwrap();
        file.write_at(&bytes, 0).unwrap();
        let map = io.map(&file, bytes.len()).unwrap();
        let (count, max_mark) = search_after(&map, 0, seed, &mut Behind::default(), None);
        assert_eq!((count, max_mark), (3, 7));
        let (count, _) = search_after(&map, 16, seed, &mut Behind::default(), None);
        assert_eq!(count, 2, "a search starting past a frame does not count it");
    }

    #[test]
    fn is_zero_sees_one_set_bit_anywhere() {
        let mut bytes = vec![0u8; 4099];
        assert!(is_zero(&bytes));
        for at in [0, 7, 8, 4095, 4098] {
            bytes[at] = 0x10;
            assert!(!is_zero(&bytes), "bit at {at}");
            bytes[at] = 0;
        }
    }

    #[test]
    fn mark_equal_to_the_stop_is_a_torn_tail() {
        assert_eq!(
            scan_with(Some(stop(false)), 1, 100).verdict,
            Verdict::TornTail
        );
        assert_eq!(
            scan_with(Some(stop(true)), 1, 100).verdict,
            Verdict::TornTail
        );
        assert_eq!(
            scan_with(Some(stop(true)), 1, 101).verdict,
            Verdict::Corrupt
        );
    }
}
