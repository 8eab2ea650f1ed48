//! Discarding a lane's data: truncation (a rollback of the lane's suffix)
//! and emptying a lane for a reset (`Manager::reset`).
//!
//! ## Why a crash during a truncation never leaves a corrupt-looking lane
//!
//! Frames validate on their own (their checksums are seeded with lane and
//! segment), so discarded frames left on disk would come back at recovery
//! as live records. Truncating to position P, in segment S, therefore
//! destroys everything from P on before it returns, in this order:
//!
//! 1. **Drain.** The write buffer goes out and every queued write, submitted
//!    sync and background segment sync is waited for: nothing in flight can
//!    land on the bytes about to be destroyed, and no sync completes for
//!    them afterwards.
//! 2. **Later segments go, highest index first**, the directory synced after
//!    each removal. A crash leaves segments S..j, contiguous and intact: a
//!    prefix of the old lane, which recovery reads to a clean end.
//! 3. **The tail of S is zeroed from its end back to P, in chunks, with an
//!    fdatasync after each.** Chunks are cut at the durable marks above P
//!    that the discarded frames carry (marks never decrease along a lane),
//!    so no frame carries a mark above the start of its chunk. A crash in
//!    the middle of a chunk can leave any mix of zeroed and old sectors in
//!    it; the lane then stops at some X at or after the chunk's start, the
//!    only valid frames after X lie in that chunk (later chunks are durably
//!    zero), and their marks are at most the chunk's start, so at most X.
//!    In the decision table of `recovery` that is a torn tail (or a clean
//!    end), never corruption: recovery keeps the prefix of the old lane up
//!    to X, which holds every record before P. Zeroing the whole tail with a
//!    single fdatasync could not promise that: a torn write could destroy a
//!    synced frame yet leave a later frame whose mark vouches for it.
//! 4. **Only then does the lane move back to P.** Its synced position
//!    becomes min(synced, P), so new frames never carry a durable mark over
//!    bytes the truncation destroyed.
//!
//! So after a crash at any point the lane reads as the old lane cut at or
//! after P (all of its suffix, part of it, or none of it), and once the
//! call returns, as the lane cut at P. (`CW_RECOVER_ABSOLUTE` refuses the
//! torn tail a crash inside step 3 can leave, as it refuses any torn write.)
//!
//! ## Emptying a lane (reset)
//!
//! The lane gets a segment with a fresh index whose header starts at the
//! lane's position and which holds no frame; it is made durable first. Then
//! every older segment goes, lowest index first, the directory synced after
//! each removal, so the lane is always a contiguous run of segments that
//! ends with the empty one. Which of those old records a reader may see is
//! decided by the reset marker (see `Manager::reset`), not by this order.

use std::sync::Arc;

use super::{ActiveSegment, Lane};
use crate::error::{Error, IoContext, Result};
use crate::format::{self, SEGMENT_HEADER_LEN, SegmentHeader, check_frame, frame_seed};
use crate::io::{Io, IoFile, OpenMode, SubmitQueue};
use crate::recovery::header_base;
use crate::segment::{list_segments, remove_segment, segment_path, write_zeros};

/// Frames are read back whatever `max_record_bytes` is now, as recovery
/// reads them.
const READ_LIMIT: usize = u32::MAX as usize;

/// What a truncation will do, found before anything changes.
struct Cut<F> {
    /// The segment holding the position.
    index: u64,
    base: u64,
    /// Its file when it is not the active segment.
    file: Option<F>,
    /// Lane position where the segment's frames end.
    end: u64,
    /// The distinct durable marks above the position carried by the
    /// discarded frames of the segment, ascending.
    marks: Vec<u64>,
    /// Sequence of the first discarded record.
    next_sequence: u64,
    /// Epoch of the last record kept; `None` when none is found on disk.
    last_epoch: Option<u64>,
}

/// Walks the frames of a segment's `bytes` from file offset `from` while
/// they start below `to`, calling `visit` with each frame's offset and
/// payload; returns the offset after the last frame. Fails on a frame that
/// does not validate.
fn walk<'a>(
    bytes: &'a [u8],
    seed: u32,
    from: usize,
    to: usize,
    mut visit: impl FnMut(usize, &'a [u8]) -> std::result::Result<(), String>,
) -> std::result::Result<usize, (usize, String)> {
    let mut off = from;
    while off < to {
        let frame = bytes
            .get(off..)
            .and_then(|rest| check_frame(rest, seed, READ_LIMIT))
            .ok_or((off, "frame does not validate".to_string()))?;
        visit(off, frame.payload).map_err(|why| (off, why))?;
        off += frame.frame_len;
    }
    Ok(off)
}

/// The ranges of lane positions to zero, in the order to zero them (the
/// last first), each followed by an fdatasync: `[from, end)` cut at every
/// mark in `marks` above `from` (see the module docs).
fn zero_order(from: u64, marks: &[u64], end: u64) -> Vec<(u64, u64)> {
    let mut bounds = vec![from];
    for &mark in marks {
        if mark > *bounds.last().expect("not empty") && mark < end {
            bounds.push(mark);
        }
    }
    bounds.push(end);
    bounds.windows(2).rev().map(|w| (w[0], w[1])).collect()
}

impl<I: Io> Lane<I> {
    /// Removes one of this lane's segments and makes the removal durable.
    fn remove_segment_durably(&self, index: u64) -> Result<()> {
        let dir = &self.config.dir;
        remove_segment(&self.io, dir, self.core_id, index)?;
        self.io
            .sync_dir(dir)
            .context(|| format!("syncing {}", dir.display()))
    }

    /// Writes out the buffer and waits for every queued write, submitted
    /// sync and background segment sync, so that nothing in flight refers
    /// to bytes about to change. Finished syncs stay for poll and wait.
    pub(crate) fn drain(&mut self) -> Result<()> {
        self.check_usable()?;
        self.flush()?;
        while self.queue.in_flight() > 0 {
            self.reap(true)?;
        }
        // Every queued fdatasync has completed; this waits for the
        // background syncs of full segments the pending syncs took over.
        self.complete_syncs(true);
        let handles = std::mem::take(&mut self.retiring);
        self.join_retiring(handles);
        self.check_usable()
    }

    /// `cw_writer_truncate`: see [`super::Writer::truncate`] and the module
    /// docs.
    pub(crate) fn truncate(&mut self, position: u64) -> Result<()> {
        self.check_usable()?;
        let core = self.core_id;
        if position == self.position {
            return Ok(());
        }
        if position > self.position {
            return Err(Error::InvalidArgument(format!(
                "position {position} is beyond the end of lane {core} ({})",
                self.position
            )));
        }
        let shared = Arc::clone(&self.shared);
        // Held to the end: no checkpoint commit or purge runs meanwhile.
        let manifest = shared.manifest.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(checkpoint) = manifest.as_ref()
            && position < checkpoint.lane_start(core)
        {
            return Err(Error::InvalidArgument(format!(
                "position {position} is below {}, where checkpoint {} starts lane {core}: \
                 the checkpoint relies on those records",
                checkpoint.lane_start(core),
                checkpoint.checkpoint_id
            )));
        }
        self.drain()?;
        let cut = self.plan_cut(position)?;
        // From here on the lane changes on disk: a failure leaves it as a
        // crash would (see the module docs), and the writer cannot go on.
        self.cut(position, cut).map_err(|e| {
            self.poison(format!(
                "truncating lane {core} to {position} failed part-way ({e}); \
                 reopen the directory to recover what is on disk"
            ))
        })
    }

    fn corrupt(&self, index: u64, offset: usize, reason: String) -> Error {
        Error::Corrupt {
            lane: self.core_id,
            segment: segment_path(&self.config.dir, self.core_id, index),
            offset: offset as u64,
            reason,
        }
    }

    /// Finds the segment holding `position`, checks that a record starts
    /// there and reads what the truncation needs. Reads only.
    fn plan_cut(&self, position: u64) -> Result<Cut<I::File>> {
        let core = self.core_id;
        let dir = &self.config.dir;
        let active = self.segment.index;
        let (mut lanes, _) = list_segments(&self.io, dir, core + 1)?;
        let indexes = lanes.swap_remove(core as usize);
        // Segments are contiguous: walking down from the active one, each
        // segment's frames end where the next one begins. The holder is the
        // last segment whose base is at or below the position.
        let mut end = self.position;
        let mut expected = Some(active);
        let mut holder = None;
        for &index in indexes.iter().rev().filter(|&&i| i <= active) {
            if expected != Some(index) {
                break;
            }
            let base = if index == active {
                self.segment.base_position
            } else {
                header_base(&self.io, dir, core, index)?
                    .ok_or_else(|| self.corrupt(index, 0, "segment header is damaged".into()))?
            };
            if base <= position {
                holder = Some((index, base));
                break;
            }
            end = base;
            expected = index.checked_sub(1);
        }
        let Some((index, base)) = holder else {
            return Err(Error::InvalidArgument(format!(
                "position {position} is below the start of lane {core} ({end})"
            )));
        };
        let path = segment_path(dir, core, index);
        let what = || format!("reading {}", path.display());
        let file = (index != active)
            .then(|| self.io.open(&path, OpenMode::Existing))
            .transpose()
            .context(what)?;
        let map = {
            let f = file.as_ref().unwrap_or(&*self.segment.file);
            let len = f.size().context(what)?;
            self.io.map(f, len as usize).context(what)?
        };
        let bytes: &[u8] = &map;
        let seed = frame_seed(core, index);
        let at = |p: u64| SEGMENT_HEADER_LEN + (p - base) as usize;
        let damaged = |(off, why): (usize, String)| self.corrupt(index, off, why);

        let mut last_kept = None;
        let reached = walk(bytes, seed, SEGMENT_HEADER_LEN, at(position), |off, _| {
            last_kept = Some(off);
            Ok(())
        })
        .map_err(damaged)?;
        if reached != at(position) {
            let inside =
                base + (last_kept.unwrap_or(SEGMENT_HEADER_LEN) - SEGMENT_HEADER_LEN) as u64;
            return Err(Error::InvalidArgument(format!(
                "position {position} is not a record boundary of lane {core}: \
                 it falls inside the record at {inside}"
            )));
        }
        let mut next_sequence = None;
        let mut marks: Vec<u64> = Vec::new();
        let reached = walk(bytes, seed, at(position), at(end), |_, payload| {
            let record = format::decode(payload).ok_or("record does not decode")?;
            next_sequence.get_or_insert(record.sequence);
            if record.durable_mark > position
                && marks.last().is_none_or(|&m| record.durable_mark > m)
            {
                marks.push(record.durable_mark);
            }
            Ok(())
        })
        .map_err(damaged)?;
        if reached != at(end) {
            return Err(self.corrupt(
                index,
                reached,
                format!("frames end past lane position {end}, where the lane goes on"),
            ));
        }
        let next_sequence = next_sequence.expect("the position lies below the segment's end");

        let last_epoch = match last_kept {
            Some(off) => Some(self.epoch_of(bytes, seed, index, off)?),
            // The last record kept ends the previous segment, if it is there.
            None => match index.checked_sub(1).filter(|i| indexes.contains(i)) {
                Some(prev) => self.last_epoch_of(prev, base)?,
                None => None,
            },
        };
        drop(map);
        Ok(Cut {
            index,
            base,
            file,
            end,
            marks,
            next_sequence,
            last_epoch,
        })
    }

    fn epoch_of(&self, bytes: &[u8], seed: u32, index: u64, off: usize) -> Result<u64> {
        bytes
            .get(off..)
            .and_then(|rest| check_frame(rest, seed, READ_LIMIT))
            .and_then(|frame| format::decode(frame.payload))
            .map(|record| record.epoch)
            .ok_or_else(|| self.corrupt(index, off, "record does not decode".into()))
    }

    /// Epoch of the last record of segment `index`, whose frames end at
    /// lane position `end`.
    fn last_epoch_of(&self, index: u64, end: u64) -> Result<Option<u64>> {
        let (core, dir) = (self.core_id, &self.config.dir);
        let Some(base) = header_base(&self.io, dir, core, index)? else {
            return Err(self.corrupt(index, 0, "segment header is damaged".into()));
        };
        let path = segment_path(dir, core, index);
        let what = || format!("reading {}", path.display());
        let file = self.io.open(&path, OpenMode::Existing).context(what)?;
        let len = file.size().context(what)?;
        let map = self.io.map(&file, len as usize).context(what)?;
        let seed = frame_seed(core, index);
        let mut last = None;
        let to = SEGMENT_HEADER_LEN + (end - base) as usize;
        walk(&map, seed, SEGMENT_HEADER_LEN, to, |off, _| {
            last = Some(off);
            Ok(())
        })
        .map_err(|(off, why)| self.corrupt(index, off, why))?;
        last.map(|off| self.epoch_of(&map, seed, index, off))
            .transpose()
    }

    /// Destroys everything from `position` on, as the module docs order
    /// it, and moves the lane back there.
    fn cut(&mut self, position: u64, cut: Cut<I::File>) -> Result<()> {
        let core = self.core_id;
        let dir = self.config.dir.clone();
        let moved = cut.index != self.segment.index;
        if moved {
            // No preparation may publish a segment behind the removals.
            self.stop_preparing();
            let (lanes, _) = list_segments(&self.io, &dir, core + 1)?;
            for &index in lanes[core as usize]
                .iter()
                .rev()
                .filter(|&&i| i > cut.index)
            {
                self.remove_segment_durably(index)?;
            }
        }
        let file = match cut.file {
            Some(file) => Arc::new(file),
            None => Arc::clone(&self.segment.file),
        };
        let path = segment_path(&dir, core, cut.index);
        let what = || format!("zeroing the discarded tail of {}", path.display());
        let offset = |p: u64| SEGMENT_HEADER_LEN as u64 + (p - cut.base);
        for (from, to) in zero_order(position, &cut.marks, cut.end) {
            write_zeros(&*file, offset(from), offset(to)).context(what)?;
            file.sync_data().context(what)?;
        }
        if moved {
            self.segment = ActiveSegment {
                file,
                index: cut.index,
                base_position: cut.base,
                seed: frame_seed(core, cut.index),
            };
        }
        self.buf_offset = offset(position);
        self.position = position;
        self.synced_position = self.synced_position.min(position);
        self.next_sequence = cut.next_sequence;
        self.last_epoch = cut.last_epoch;
        // Timestamps stay as they are: the next one is still at least the
        // latest ever written, so they never go backwards.
        self.sequence_at_submit = self.sequence_at_submit.min(self.next_sequence);
        self.position_at_submit = self.position_at_submit.min(position);
        let resumed = (position <= self.session_start).then_some(cut.last_epoch);
        self.session_start = self.session_start.min(position);
        self.barriers.forget_from(position, resumed);
        if moved {
            self.prepare_next();
        }
        Ok(())
    }

    /// Makes the lane empty at its position (for a reset): a segment with a
    /// fresh index, starting there and holding no frame, made durable; then
    /// every older segment removed, lowest index first. Position, sequence
    /// and timestamps carry on. See the module docs.
    pub(crate) fn empty(&mut self) -> Result<()> {
        self.drain()?;
        let core = self.core_id;
        let dir = self.config.dir.clone();
        if self.position != self.segment.base_position {
            let index = self.segment.index + 1;
            let file = self.take_next_segment()?;
            // Nothing may be left running behind the removals.
            self.stop_preparing();
            let header = SegmentHeader {
                core_id: core,
                segment_index: index,
                base_position: self.position,
            };
            let path = segment_path(&dir, core, index);
            let what = || format!("starting {}", path.display());
            file.write_at(&header.encode(), 0).context(what)?;
            file.sync_data().context(what)?;
            self.segment = ActiveSegment {
                file,
                index,
                base_position: self.position,
                seed: frame_seed(core, index),
            };
            self.buf_offset = SEGMENT_HEADER_LEN as u64;
            self.prepare_next();
        } else {
            // Already empty; its header (flushed by the drain) must be
            // durable before anything before it goes.
            let path = segment_path(&dir, core, self.segment.index);
            self.segment
                .file
                .sync_data()
                .context(|| format!("syncing {}", path.display()))?;
        }
        let (lanes, _) = list_segments(&self.io, &dir, core + 1)?;
        for &index in lanes[core as usize]
            .iter()
            .filter(|&&i| i < self.segment.index)
        {
            self.remove_segment_durably(index)?;
        }
        self.synced_position = self.position;
        self.last_epoch = None;
        self.session_start = self.position;
        self.barriers.forget_from(0, Some(None));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::zero_order;

    #[test]
    fn zero_order_cuts_at_marks_above_the_start_and_goes_backwards() {
        assert_eq!(zero_order(100, &[], 400), vec![(100, 400)]);
        assert_eq!(
            zero_order(100, &[150, 300], 400),
            vec![(300, 400), (150, 300), (100, 150)]
        );
        assert_eq!(
            zero_order(100, &[50, 100, 150, 150, 400, 500], 400),
            vec![(150, 400), (100, 150)],
            "marks at or below the start, repeated, or at or past the end cut nothing"
        );
    }
}
