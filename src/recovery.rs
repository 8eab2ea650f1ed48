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

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

use crate::checkpoint::{Manifest, ResetMarker};
use crate::error::{Error, IoContext, Result};
use crate::format::{
    self, FRAME_ALIGN, HeaderProblem, OpView, RecordView, SEGMENT_HEADER_LEN, SegmentHeader,
    check_frame, frame_seed,
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
}

/// Identity of the last record of a lane's valid prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastRecord {
    pub epoch: u64,
    pub timestamp_ns: i64,
    pub sequence: u64,
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
}

impl LaneScan {
    /// The error `mode` makes of this scan, if any.
    pub fn check(&self, dir: &Path, mode: RecoveryMode) -> Result<()> {
        let refuse = match (self.verdict, mode) {
            (Verdict::Clean, _) | (_, RecoveryMode::PointInTime) => false,
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
    header: std::result::Result<SegmentHeader, HeaderProblem>,
    prefix_end: usize,
    prefix: PrefixEnd,
    last: Option<LastRecord>,
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

/// Finds the greatest durable mark among valid frames in `map[from..]`,
/// stepping over garbage one frame alignment at a time.
fn search_after<M: MappedFile>(map: &M, from: usize, seed: u32, behind: &mut Behind) -> (u64, u64) {
    let bytes: &[u8] = map;
    let mut off = from.next_multiple_of(FRAME_ALIGN);
    let (mut count, mut max_mark) = (0u64, 0u64);
    while off + FRAME_ALIGN <= bytes.len() {
        behind.advance(map, off);
        // Zeros are the common case (a preallocated tail): skip runs fast.
        if bytes[off..off + FRAME_ALIGN].iter().all(|&b| b == 0) {
            off += FRAME_ALIGN;
            while bytes
                .get(off..off + 64)
                .is_some_and(|run| run.iter().all(|&b| b == 0))
            {
                off += 64;
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
                off += frame.frame_len;
            }
            None => off += FRAME_ALIGN,
        }
    }
    (count, max_mark)
}

fn scan_segment<M: MappedFile>(map: &M, core_id: u32, index: u64, all_after: bool) -> SegmentScan {
    let bytes: &[u8] = map;
    let mut behind = Behind::default();
    let seed = frame_seed(core_id, index);
    let header = SegmentHeader::decode(bytes);
    let header_ok = matches!(header, Ok(h) if h.core_id == core_id && h.segment_index == index);
    if all_after || !header_ok {
        let (frames_after, max_mark_after) =
            search_after(map, SEGMENT_HEADER_LEN, seed, &mut behind);
        return SegmentScan {
            header,
            prefix_end: SEGMENT_HEADER_LEN,
            prefix: PrefixEnd::Damage,
            last: None,
            frames_after,
            max_mark_after,
        };
    }
    let mut off = SEGMENT_HEADER_LEN;
    let mut last_frame = None;
    let prefix = loop {
        let Some(head) = bytes.get(off..off + format::FRAME_HEADER_LEN) else {
            break PrefixEnd::EndOfFile;
        };
        match check_frame(&bytes[off..], seed, READ_LIMIT) {
            Some(frame) => {
                last_frame = Some((off, frame.payload));
                off += frame.frame_len;
                behind.advance(map, off);
            }
            None if head.iter().all(|&b| b == 0) => break PrefixEnd::Zeros,
            None => break PrefixEnd::Damage,
        }
    };
    // Only the last record is decoded here (the iterator validates every
    // record as it yields it); it gives the sequence and clock to resume from.
    let mut last = None;
    let mut prefix = prefix;
    if let Some((frame_off, payload)) = last_frame {
        match format::decode(payload) {
            Some(r) => {
                last = Some(LastRecord {
                    epoch: r.epoch,
                    timestamp_ns: r.timestamp_ns,
                    sequence: r.sequence,
                })
            }
            None => {
                off = frame_off;
                prefix = PrefixEnd::Damage;
            }
        }
    }
    let (frames_after, max_mark_after) =
        search_after(map, off + format::FRAME_HEADER_LEN, seed, &mut behind);
    SegmentScan {
        header,
        prefix_end: off,
        prefix,
        last,
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

/// Scans lane `core_id` whose segment indexes (sorted) are `indexes`.
pub fn scan_lane<I: Io>(io: &I, dir: &Path, core_id: u32, indexes: &[u64]) -> Result<LaneScan> {
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
    };
    for (i, &index) in indexes.iter().enumerate() {
        let map = map_segment(io, dir, core_id, index)?;
        if scan.stop.is_some() {
            let seg = scan_segment(&map, core_id, index, true);
            scan.beyond.push(index);
            scan.frames_after_stop += seg.frames_after;
            scan.max_mark_after_stop = scan.max_mark_after_stop.max(seg.max_mark_after);
            continue;
        }
        let seg = scan_segment(&map, core_id, index, false);
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
        let refused = match seg.header {
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
        if let Some(stop) = refused {
            // Frames in a refused segment are judged like any other frames
            // after the stop.
            let seg = scan_segment(&map, core_id, index, true);
            scan.beyond.push(index);
            scan.frames_after_stop += seg.frames_after;
            scan.max_mark_after_stop = scan.max_mark_after_stop.max(seg.max_mark_after);
            scan.stop = Some(stop);
            continue;
        }
        let header = seg.header.expect("checked above");
        if i == 0 {
            scan.start_position = header.base_position;
            scan.end_position = header.base_position;
        }
        scan.end_position = header.base_position + (seg.prefix_end - SEGMENT_HEADER_LEN) as u64;
        scan.last = seg.last.or(scan.last);
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
    }
    scan.verdict = judge(
        scan.stop.as_ref(),
        scan.frames_after_stop,
        scan.max_mark_after_stop,
    );
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
    let (per_lane, _) = list_segments(io, dir, lanes)?;
    per_lane
        .iter()
        .enumerate()
        .map(|(core, indexes)| scan_lane(io, dir, core as u32, indexes))
        .collect()
}

/// Like [`scan_dir`], but each lane's segments wholly before its start in
/// `starts` (0 for a lane beyond it) are left out (only their successors'
/// headers are read).
pub fn scan_dir_from<I: Io>(
    io: &I,
    dir: &Path,
    lanes: u32,
    starts: &[u64],
) -> Result<Vec<LaneScan>> {
    let (per_lane, _) = list_segments(io, dir, lanes)?;
    per_lane
        .iter()
        .enumerate()
        .map(|(core, indexes)| {
            let start = starts.get(core).copied().unwrap_or(0);
            let core = core as u32;
            let mut first = 0;
            while first + 1 < indexes.len()
                && start > 0
                && header_base(io, dir, core, indexes[first + 1])?.is_some_and(|base| base <= start)
            {
                first += 1;
            }
            scan_lane(io, dir, core, &indexes[first..])
        })
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
    segments: Vec<KeptSegment>,
    next_segment: usize,
    map: Option<I::Map>,
    base_position: u64,
    end: usize,
    /// Offset of the head frame in `map`.
    off: usize,
    head_len: usize,
    head: Option<Head>,
    behind: Behind,
    expected_sequence: Option<u64>,
    /// Replay starts here (a checkpoint's lane start; 0 otherwise).
    start: u64,
    /// Records of this epoch or earlier are covered by the checkpoint.
    covered_epoch: Option<u64>,
}

impl<I: Io> LaneCursor<I> {
    fn segment_index(&self) -> u64 {
        self.segments[self.next_segment - 1].index
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
    /// current one is done) into `self.head` and returns its order key;
    /// `None` at the end of the lane. Checksums were verified by the scan
    /// that found this range; the record is still validated before use.
    fn settle(&mut self, io: &I, dir: &Path, max_epoch: u64) -> Result<Option<OrderKey>> {
        self.head = None;
        loop {
            if let Some(map) = self.map.as_ref().filter(|_| self.off < self.end) {
                let bytes: &[u8] = map;
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
                if let Some(expected) = self.expected_sequence
                    && record.sequence != expected
                {
                    return Err(self.corrupt(
                        dir,
                        format!("sequence {} where {expected} was expected", record.sequence),
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
                self.head = Some(Head {
                    epoch: record.epoch,
                    timestamp_ns: record.timestamp_ns,
                    sequence: record.sequence,
                    position: self.base_position + (self.off - SEGMENT_HEADER_LEN) as u64,
                    op,
                });
                self.head_len = frame_end - self.off;
                return Ok(Some(order_key(&record)));
            }
            let Some(segment) = self.segments.get(self.next_segment).copied() else {
                self.map = None;
                return Ok(None);
            };
            self.next_segment += 1;
            self.map = None;
            // Segments wholly before the start are never opened.
            if self
                .segments
                .get(self.next_segment)
                .is_some_and(|next| next.base_position <= self.start)
            {
                continue;
            }
            let map = map_segment(io, dir, self.core_id, segment.index)?;
            self.end = (segment.end_offset as usize).min(map.len());
            self.map = Some(map);
            self.base_position = segment.base_position;
            self.off =
                SEGMENT_HEADER_LEN + self.start.saturating_sub(segment.base_position) as usize;
            self.behind = Behind::default();
        }
    }

    /// The head record `settle` found; `None` only if the mapped bytes no
    /// longer decode.
    fn head(&self) -> Option<Entry<'_>> {
        let map: &[u8] = self.map.as_ref()?;
        let head = self.head?;
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

    fn step(&mut self) {
        self.off += self.head_len;
        if let Some(map) = &self.map {
            self.behind.advance(map, self.off);
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
    lanes: Vec<LaneCursor<I>>,
    /// Lanes by their head's order key. After the first call the top is the
    /// lane whose head was yielded last: it moves on at the next call, so the
    /// yielded entry stays valid until then.
    heap: BinaryHeap<Reverse<(OrderKey, usize)>>,
    started: bool,
    scans: Vec<LaneScan>,
    checkpoint: Option<Manifest>,
}

impl<I: Io> Recovery<I> {
    /// Opens an iterator over `scans` (from [`scan_dir`]), reading each
    /// lane's valid prefix. Fails if a scan is refused by `opts.mode`.
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
            scans: Vec::new(),
            checkpoint: None,
        };
        for scan in &scans {
            if !wanted(scan.core_id) {
                continue;
            }
            let mut cursor = LaneCursor {
                core_id: scan.core_id,
                segments: scan.kept.clone(),
                next_segment: 0,
                map: None,
                base_position: 0,
                end: 0,
                off: 0,
                head_len: 0,
                head: None,
                behind: Behind::default(),
                expected_sequence: None,
                start: starts.get(scan.core_id as usize).copied().unwrap_or(0),
                covered_epoch: checkpoint.as_ref().map(|c| c.epoch),
            };
            if let Some(key) = cursor.settle(&recovery.io, &recovery.dir, opts.max_epoch)? {
                recovery.heap.push(Reverse((key, recovery.lanes.len())));
            }
            recovery.lanes.push(cursor);
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
        let scans = scan_dir_from(&io, dir, meta.num_cores, &starts)?;
        Recovery::starting_at(io, dir, scans, opts, checkpoint, &starts)
    }

    /// The checkpoint this iterator starts from, if any.
    pub fn checkpoint(&self) -> Option<&Manifest> {
        self.checkpoint.as_ref()
    }

    /// The next record in global order, or `None` when every lane is done.
    /// The entry borrows mapped bytes and lives until the next call.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Entry<'_>>> {
        if self.started
            && let Some(mut top) = self.heap.peek_mut()
        {
            let lane = top.0.1;
            let cursor = &mut self.lanes[lane];
            cursor.step();
            match cursor.settle(&self.io, &self.dir, self.max_epoch)? {
                // Replacing the top sifts it down once instead of a pop and a push.
                Some(key) => top.0 = (key, lane),
                None => {
                    std::collections::binary_heap::PeekMut::pop(top);
                }
            }
        }
        self.started = true;
        let Some(&Reverse((_, lane))) = self.heap.peek() else {
            return Ok(None);
        };
        let cursor = &self.lanes[lane];
        match cursor.head() {
            Some(entry) => Ok(Some(entry)),
            None => Err(cursor.corrupt(&self.dir, "record changed while reading".into())),
        }
    }

    /// What the scan found for each lane, in lane order.
    pub fn scans(&self) -> &[LaneScan] {
        &self.scans
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
