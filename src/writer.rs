//! One lane's writer: encodes records into frames, buffers them, writes them
//! to the lane's segments through the submission queue, rotates segments and
//! makes everything durable on sync.
//!
//! A writer is used by one thread at a time. Its state sits behind an
//! in-use flag: a second thread entering the same writer gets
//! [`Error::Busy`] instead of waiting. Writers share nothing on the append
//! path but a read of the manager's epoch.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::checkpoint::Manifest;
use crate::error::{Error, Result};
use crate::format::{
    Encoder, FRAME_HEADER_LEN, OpRef, RecordRef, SEGMENT_HEADER_LEN, SegmentHeader, frame_seed,
    seal_frame,
};
use crate::io::{Completion, EventFd, Io, IoFile, SubmitQueue};
use crate::segment::{Preparing, create_now};

mod in_use;
mod rollback;
mod segment_sync;

use in_use::{Entered, InUse};
use segment_sync::SegmentSync;

/// Barriers a lane remembers for checkpoints (one per epoch is typical).
const MAX_REMEMBERED_BARRIERS: usize = 64;

/// Bytes gathered before they are handed to the queue as one write.
const WRITE_BUF_BYTES: usize = 256 << 10;

/// Syncs in a row that must have finished before anything was appended
/// after them for the next one to count as alone ([`Flush::SyncAlone`]).
const WAITED_SYNCS: u32 = 2;

/// An upper bound of the frame `op` makes (record fields and rkyv layout take
/// well under 128 bytes besides the variable parts).
fn size_hint(op: &OpRef<'_>) -> usize {
    const FIXED: usize = 128;
    FIXED
        + match op {
            OpRef::Put { key, value } => key.len() + value.len(),
            OpRef::Delete { key } => key.len(),
            OpRef::Commit { offsets, .. } => offsets.iter().map(|o| o.name.len() + 24).sum(),
            OpRef::Checkpoint { .. } | OpRef::EpochBarrier => 0,
        }
}

/// State the manager shares with its writers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub epoch: AtomicU64,
    /// The latest checkpoint. Its lock also serialises checkpoint commits,
    /// purges, truncations and resets: a truncation checks the checkpoint's
    /// lane start under it, and none of the others may run while a lane's
    /// suffix or a whole WAL goes.
    pub manifest: Mutex<Option<Manifest>>,
}

/// Settings a lane needs from the manager's options.
#[derive(Debug, Clone)]
pub(crate) struct LaneConfig {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub max_record_bytes: u64,
    pub preallocate: bool,
    pub sync_every_records: u64,
    pub sync_every_bytes: u64,
    pub sync_interval: Option<Duration>,
}

/// The files a lane starts with and where it resumes.
pub(crate) struct LaneStart<F> {
    /// The segment to append to (`resume.segment_index`).
    pub file: F,
    /// The segment's header still has to be written.
    pub fresh: bool,
    pub resume: Resume,
    /// An already prepared next segment, if one was found.
    pub prepared_next: Option<F>,
}

/// Where a reopened lane resumes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resume {
    pub segment_index: u64,
    pub base_position: u64,
    pub position: u64,
    pub next_sequence: u64,
    pub last_timestamp_ns: i64,
    /// Epoch of the lane's last record; `None` for an empty lane.
    pub last_epoch: Option<u64>,
}

/// The segment frames are currently appended to.
struct ActiveSegment<F> {
    file: Arc<F>,
    index: u64,
    base_position: u64,
    seed: u32,
}

/// Where a lane's epochs begin in this session: its barriers and the first
/// record of each epoch, as (epoch, position, end, is_barrier). Written by
/// the lane when one of those is emitted (rare), read by checkpoints on
/// another thread; never touched on the ordinary append path.
#[derive(Debug, Default)]
pub(crate) struct Barriers {
    state: Mutex<BarrierState>,
}

#[derive(Debug, Default)]
struct BarrierState {
    marks: VecDeque<(u64, u64, u64, bool)>,
    /// Epoch of the lane's last record from before this session.
    resumed_epoch: Option<u64>,
}

impl Barriers {
    fn new(resumed_epoch: Option<u64>) -> Barriers {
        Barriers {
            state: Mutex::new(BarrierState {
                marks: VecDeque::new(),
                resumed_epoch,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, BarrierState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, epoch: u64, position: u64, end: u64, is_barrier: bool) {
        let mut state = self.state();
        let marks = &mut state.marks;
        if marks.len() == MAX_REMEMBERED_BARRIERS {
            marks.pop_front();
        }
        marks.push_back((epoch, position, end, is_barrier));
    }

    /// Forgets what a truncation to `position` discarded, so no checkpoint
    /// trusts a barrier that is gone. `resumed_epoch`: the lane's records
    /// from before this session, when the truncation reached into them.
    fn forget_from(&self, position: u64, resumed_epoch: Option<Option<u64>>) {
        let mut state = self.state();
        state.marks.retain(|&(_, at, _, _)| at < position);
        if let Some(resumed) = resumed_epoch {
            state.resumed_epoch = resumed;
        }
    }

    /// Where replay of the lane starts for a checkpoint covering `epoch`:
    /// its first record of a later epoch, provided a barrier closing `epoch`
    /// lies wholly below `synced`. Records before that position all belong
    /// to `epoch` or earlier.
    fn checkpoint_start(&self, epoch: u64, synced: u64) -> std::result::Result<u64, String> {
        let state = self.state();
        if let Some(resumed) = state.resumed_epoch.filter(|&r| r > epoch) {
            return Err(format!(
                "has records of epoch {resumed} from before it was reopened, later than {epoch}"
            ));
        }
        let durable_barrier = state
            .marks
            .iter()
            .any(|&(e, _, end, is_barrier)| is_barrier && e > epoch && end <= synced);
        if !durable_barrier {
            return Err(format!(
                "has no durable EPOCH_BARRIER closing epoch {epoch}"
            ));
        }
        Ok(state
            .marks
            .iter()
            .find(|&&(e, _, _, _)| e > epoch)
            .map(|&(_, position, _, _)| position)
            .expect("the barrier itself is such a mark"))
    }
}

/// How the write buffer goes to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// Nothing waits for it yet.
    Queued,
    /// A sync is submitted right after it ([`SubmitQueue::write_now`]).
    SyncFollows,
    /// As `SyncFollows`, and that sync is alone: the application waits for
    /// its syncs (`waited_syncs`, [`SubmitQueue::write_alone`]).
    SyncAlone,
    /// The caller waits for it and its sync ([`SubmitQueue::write_waited`]).
    Waited,
}

/// A submitted sync on its way.
struct PendingSync {
    token: u64,
    /// The lane position it makes durable.
    boundary: u64,
    /// Its fdatasync of the active segment has completed.
    queue_done: bool,
    /// Background fdatasyncs of full segments it also waits for.
    retiring: Vec<SegmentSync>,
    /// Handed out by poll/wait (not for group-commit syncs).
    report: bool,
}

/// A finished sync (`cw_completion`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncCompletion {
    pub token: u64,
    /// The boundary this sync made durable; on failure, the last durable one.
    pub synced_position: u64,
    /// Why it failed (the writer is poisoned then).
    pub result: std::result::Result<(), String>,
}

/// Everything a writer mutates; lives behind the writer's mutex.
pub(crate) struct Lane<I: Io> {
    io: I,
    core_id: u32,
    config: LaneConfig,
    shared: Arc<Shared>,
    queue: I::Queue,
    segment: ActiveSegment<I::File>,
    /// fdatasyncs of full segments, running since their rotation; the next
    /// sync submitted takes them over and completes only after them.
    retiring: Vec<SegmentSync>,
    /// Submitted syncs, in token (and so boundary) order.
    pending: VecDeque<PendingSync>,
    /// Finished syncs the caller asked for, not yet handed out by poll/wait.
    finished: VecDeque<SyncCompletion>,
    /// Turns readable when completions are ready.
    event: Arc<EventFd>,
    /// Recent EPOCH_BARRIERs of this session, shared with the writer's
    /// handle so a checkpoint can read them without entering the lane.
    barriers: Arc<Barriers>,
    /// The next segment: found ready at open, or being prepared.
    prepared: Option<Preparing<I::File>>,
    /// Threads of preparations whose segment was taken, finishing in the
    /// background.
    abandoned: Vec<JoinHandle<()>>,
    encoder: Encoder,
    buf: Vec<u8>,
    /// File offset of `buf[0]` in the active segment.
    buf_offset: u64,
    spare: Vec<Vec<u8>>,
    /// A frame on its way to the next segment during rotation.
    spill: Vec<u8>,
    completions: Vec<Completion>,
    position: u64,
    synced_position: u64,
    next_sequence: u64,
    last_timestamp_ns: i64,
    last_epoch: Option<u64>,
    /// Records below this position were written before this session (by
    /// an earlier process).
    session_start: u64,
    /// Sequence and position when the last sync was submitted, for the
    /// group commit triggers.
    sequence_at_submit: u64,
    position_at_submit: u64,
    last_sync: Instant,
    /// How many syncs in a row (up to [`WAITED_SYNCS`]) finished before
    /// anything was appended after them: at that count the application
    /// waits for each sync rather than pipelining them. (One alone is not
    /// enough: a pipeline drained now and then ends with such a sync.)
    waited_syncs: u32,
    next_token: u64,
    poisoned: Option<String>,
}

impl<I: Io> Lane<I> {
    /// A lane of `core_id` starting as `start` says.
    pub(crate) fn new(
        io: I,
        core_id: u32,
        config: LaneConfig,
        shared: Arc<Shared>,
        start: LaneStart<I::File>,
    ) -> Result<Lane<I>> {
        let LaneStart {
            file,
            fresh,
            resume,
            prepared_next,
        } = start;
        let setup = |e| Error::io(format!("setting up the I/O queue of lane {core_id}"), e);
        let mut queue = io.queue().map_err(setup)?;
        let event = Arc::new(EventFd::new().map_err(setup)?);
        queue.attach_event(event.clone()).map_err(setup)?;
        let mut lane = Lane {
            io,
            core_id,
            shared,
            queue,
            segment: ActiveSegment {
                file: Arc::new(file),
                index: resume.segment_index,
                base_position: resume.base_position,
                seed: frame_seed(core_id, resume.segment_index),
            },
            retiring: Vec::new(),
            pending: VecDeque::new(),
            finished: VecDeque::new(),
            event,
            barriers: Arc::new(Barriers::new(resume.last_epoch)),
            prepared: None,
            abandoned: Vec::new(),
            encoder: Encoder::default(),
            buf: Vec::with_capacity(WRITE_BUF_BYTES),
            buf_offset: SEGMENT_HEADER_LEN as u64 + (resume.position - resume.base_position),
            spare: Vec::new(),
            spill: Vec::new(),
            completions: Vec::new(),
            position: resume.position,
            synced_position: resume.position,
            next_sequence: resume.next_sequence,
            last_timestamp_ns: resume.last_timestamp_ns,
            last_epoch: resume.last_epoch,
            session_start: resume.position,
            sequence_at_submit: resume.next_sequence,
            position_at_submit: resume.position,
            last_sync: Instant::now(),
            waited_syncs: WAITED_SYNCS,
            next_token: 1,
            poisoned: None,
            config,
        };
        if fresh {
            lane.start_segment_header();
        }
        match prepared_next {
            Some(file) => lane.prepared = Some(Preparing::ready(file)),
            None => lane.prepare_next(),
        }
        Ok(lane)
    }

    fn start_segment_header(&mut self) {
        debug_assert!(self.buf.is_empty());
        let header = SegmentHeader {
            core_id: self.core_id,
            segment_index: self.segment.index,
            base_position: self.segment.base_position,
        };
        self.buf_offset = 0;
        self.buf.extend_from_slice(&header.encode());
    }

    /// Starts preparing the segment after the active one on its own thread,
    /// so that rotation never waits for a zero-fill.
    fn prepare_next(&mut self) {
        self.prepared = Some(Preparing::start(
            &self.io,
            &self.config.dir,
            self.core_id,
            self.segment.index + 1,
            self.config.segment_bytes,
            self.config.preallocate,
        ));
    }

    /// The next segment (index `segment.index + 1`): the prepared one,
    /// zero-filled or not, or, only if it could not be made, one made here.
    /// The preparation's thread finishes in the background.
    fn take_next_segment(&mut self) -> Result<Arc<I::File>> {
        let (ready, thread) = match self.prepared.take() {
            Some(preparing) => preparing.take(),
            None => (None, None),
        };
        self.abandoned.retain(|thread| !thread.is_finished());
        self.abandoned.extend(thread);
        match ready {
            Some(file) => Ok(file),
            None => Ok(Arc::new(create_now(
                &self.io,
                &self.config.dir,
                self.core_id,
                self.segment.index + 1,
                self.config.segment_bytes,
                self.config.preallocate,
            )?)),
        }
    }

    /// Stops the preparation and waits for every preparation thread, so
    /// none publishes or writes anything afterwards.
    fn stop_preparing(&mut self) {
        if let Some(preparing) = self.prepared.take() {
            preparing.stop();
        }
        for thread in self.abandoned.drain(..) {
            let _ = thread.join();
        }
    }

    pub(crate) fn check_usable(&self) -> Result<()> {
        match &self.poisoned {
            Some(why) => Err(Error::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    pub(crate) fn poison(&mut self, why: String) -> Error {
        self.poisoned.get_or_insert(why);
        Error::Poisoned(self.poisoned.clone().unwrap_or_default())
    }

    /// Wall-clock nanoseconds, never below the lane's last timestamp.
    fn timestamp(&self) -> i64 {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid, writable timespec; CLOCK_REALTIME always
        // exists, so the call cannot fail (it is answered by the vDSO).
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
        #[allow(clippy::unnecessary_cast)] // time_t and c_long are not i64 everywhere
        let nanos = (now.tv_sec as i64)
            .saturating_mul(1_000_000_000)
            .saturating_add(now.tv_nsec as i64);
        nanos.max(self.last_timestamp_ns)
    }

    /// Appends `op` stamped with the manager's current epoch, first closing
    /// the lane's previous epoch with a barrier if the epoch moved on.
    pub(crate) fn append(&mut self, op: OpRef<'_>) -> Result<u64> {
        self.check_usable()?;
        let epoch = self.shared.epoch.load(Ordering::Acquire);
        let needs_barrier = self.last_epoch.is_some_and(|last| epoch > last);
        if needs_barrier {
            // Refuse an oversized record before the barrier goes out, so a
            // refused append writes nothing at all.
            self.check_size(epoch, op)?;
            self.emit(epoch, OpRef::EpochBarrier)?;
        }
        let position = self.emit(epoch, op)?;
        if !self.pending.is_empty() {
            // Syncs in flight (io_uring): pick up finished ones so the synced
            // position stays current. Non-blocking; a peek at the
            // completion queue when nothing finished.
            self.reap(false)?;
        }
        self.sync_if_due()?;
        Ok(position)
    }

    /// Writes an epoch barrier for the current epoch.
    pub(crate) fn epoch_barrier(&mut self) -> Result<u64> {
        self.check_usable()?;
        let epoch = self.shared.epoch.load(Ordering::Acquire);
        let position = self.emit(epoch, OpRef::EpochBarrier)?;
        self.sync_if_due()?;
        Ok(position)
    }

    fn record<'a>(&self, epoch: u64, timestamp_ns: i64, op: OpRef<'a>) -> RecordRef<'a> {
        RecordRef {
            epoch,
            timestamp_ns,
            sequence: self.next_sequence,
            durable_mark: self.synced_position,
            core_id: self.core_id,
            op,
        }
    }

    fn too_large(&self, payload_len: usize) -> Result<()> {
        if payload_len as u64 > self.config.max_record_bytes {
            return Err(Error::TooLarge {
                size: payload_len as u64,
                limit: self.config.max_record_bytes,
            });
        }
        Ok(())
    }

    /// Fails as [`Lane::emit`] would for a record too large, writing nothing.
    fn check_size(&mut self, epoch: u64, op: OpRef<'_>) -> Result<()> {
        let record = self.record(epoch, self.last_timestamp_ns, op);
        let (_, payload_len) = self.encoder.encode(&record);
        self.too_large(payload_len)
    }

    /// Encodes one record straight into the write buffer, frames it and
    /// returns its position.
    fn emit(&mut self, epoch: u64, op: OpRef<'_>) -> Result<u64> {
        // Room first, so the frame is encoded where it will be written and
        // the buffer never grows past its capacity for ordinary records.
        if !self.buf.is_empty() && self.buf.len() + size_hint(&op) > WRITE_BUF_BYTES {
            self.flush()?;
        }
        let timestamp = self.timestamp();
        let record = self.record(epoch, timestamp, op);
        let mut start = self.buf.len();
        self.buf.extend_from_slice(&[0; FRAME_HEADER_LEN]);
        let payload_len = self.encoder.encode_into(&record, &mut self.buf);
        if let Err(e) = self.too_large(payload_len) {
            self.buf.truncate(start);
            return Err(e);
        }
        let frame = self.buf.len() - start;
        let used = SEGMENT_HEADER_LEN as u64 + (self.position - self.segment.base_position);
        if used + frame as u64 > self.config.segment_bytes {
            // Records never span segments: the frame moves, as it is, to the
            // start of the next one.
            self.spill.clear();
            self.spill.extend_from_slice(&self.buf[start..]);
            self.buf.truncate(start);
            self.rotate()?;
            start = self.buf.len();
            self.buf.extend_from_slice(&self.spill);
        }
        let payload = start + FRAME_HEADER_LEN;
        let header = seal_frame(self.segment.seed, payload_len, &self.buf[payload..]);
        self.buf[start..payload].copy_from_slice(&header);
        let position = self.position;
        self.position += frame as u64;
        let is_barrier = matches!(op, OpRef::EpochBarrier);
        if is_barrier || self.last_epoch != Some(epoch) {
            self.barriers
                .remember(epoch, position, self.position, is_barrier);
        }
        self.next_sequence += 1;
        self.last_timestamp_ns = timestamp;
        self.last_epoch = Some(epoch);
        Ok(position)
    }

    /// Hands the buffered bytes to the queue as one write.
    fn flush(&mut self) -> Result<()> {
        self.flush_with(Flush::Queued)
    }

    /// [`Lane::flush`], for a write that `how` says a sync may follow.
    fn flush_with(&mut self, how: Flush) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let fresh = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(WRITE_BUF_BYTES));
        let buf = std::mem::replace(&mut self.buf, fresh);
        let len = buf.len() as u64;
        let file = &self.segment.file;
        match how {
            Flush::Queued => self.queue.write(file, buf, self.buf_offset),
            Flush::SyncFollows => self.queue.write_now(file, buf, self.buf_offset),
            Flush::SyncAlone => self.queue.write_alone(file, buf, self.buf_offset),
            Flush::Waited => self.queue.write_waited(file, buf, self.buf_offset),
        }
        self.buf_offset += len;
        self.reap(false)
    }

    /// Collects finished queue operations and completes the syncs they
    /// finish. A failed operation poisons the writer. With `block`, waits for
    /// at least one queue operation if any is in flight.
    fn reap(&mut self, block: bool) -> Result<()> {
        let mut done = std::mem::take(&mut self.completions);
        self.queue.reap(block, &mut done);
        let mut failure = None;
        let mut out_of_space = None;
        for completion in done.drain(..) {
            match completion {
                Completion::Write {
                    buf,
                    result: Err(e),
                    written,
                } => {
                    if written == 0
                        && e.raw_os_error() == Some(libc::ENOSPC)
                        && out_of_space.is_none()
                    {
                        out_of_space = Some((buf, e));
                    } else {
                        failure
                            .get_or_insert(format!("write to lane {} failed: {e}", self.core_id));
                        self.recycle(buf);
                    }
                }
                Completion::Write { buf, .. } => self.recycle(buf),
                Completion::Sync { token, result } => {
                    if let Err(e) = result {
                        failure.get_or_insert(format!(
                            "fdatasync of lane {} failed: {e}",
                            self.core_id
                        ));
                    }
                    if let Some(p) = self.pending.iter_mut().find(|p| p.token == token) {
                        p.queue_done = true;
                    }
                }
            }
        }
        self.completions = done;
        let clean_error = match out_of_space {
            // Nothing of the write reached the file and no sync waits on it:
            // its bytes go back in front of the buffer, to be written again
            // later, and the writer stays usable.
            Some((mut bytes, e))
                if failure.is_none() && self.pending.is_empty() && self.queue.in_flight() == 0 =>
            {
                self.buf_offset -= bytes.len() as u64;
                bytes.extend_from_slice(&self.buf);
                let rest = std::mem::replace(&mut self.buf, bytes);
                self.recycle(rest);
                Some(Error::io(
                    format!(
                        "writing lane {} (nothing was lost; retry once space is free)",
                        self.core_id
                    ),
                    e,
                ))
            }
            Some((bytes, e)) => {
                failure.get_or_insert(format!("write to lane {} failed: {e}", self.core_id));
                self.recycle(bytes);
                None
            }
            None => None,
        };
        if let Some(why) = failure {
            self.poison(why);
        }
        self.complete_syncs(false);
        self.check_usable()?;
        clean_error.map_or(Ok(()), Err)
    }

    /// Keeps the event fd readable while completions wait for poll, even if
    /// the queue's own signal was consumed along the way.
    fn keep_event_armed(&self) {
        if !self.finished.is_empty() {
            self.event.signal();
        }
    }

    fn recycle(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        self.spare.push(buf);
    }

    /// Completes submitted syncs in token order: a sync is done when its
    /// fdatasync and the background syncs it took over have finished. Only
    /// then does `synced_position` move, to that sync's boundary. With
    /// `block`, waits for the background syncs of the oldest one.
    fn complete_syncs(&mut self, block: bool) {
        while let Some(front) = self.pending.front_mut() {
            if self.poisoned.is_none() {
                let background_done = front.retiring.iter().all(SegmentSync::is_done);
                if !front.queue_done || (!background_done && !block) {
                    break;
                }
                let syncs = std::mem::take(&mut front.retiring);
                self.join_retiring(syncs);
            }
            let front = self.pending.pop_front().expect("checked above");
            self.waited_syncs = if front.boundary == self.position {
                (self.waited_syncs + 1).min(WAITED_SYNCS)
            } else {
                0
            };
            let result = match &self.poisoned {
                Some(why) => Err(why.clone()),
                None => {
                    self.synced_position = self.synced_position.max(front.boundary);
                    Ok(())
                }
            };
            if front.report {
                self.finished.push_back(SyncCompletion {
                    token: front.token,
                    synced_position: if result.is_ok() {
                        front.boundary
                    } else {
                        self.synced_position
                    },
                    result,
                });
            }
        }
    }

    /// Waits for background fdatasyncs of full segments; a failed one
    /// poisons the writer.
    fn join_retiring(&mut self, syncs: Vec<SegmentSync>) {
        for sync in syncs {
            let Err(failed) = sync.join() else {
                continue;
            };
            self.poisoned.get_or_insert(format!(
                "fdatasync of a full segment of lane {} failed: {failed}",
                self.core_id
            ));
        }
    }

    /// Moves to the next segment, prepared in the background, and starts
    /// the fdatasync of the full one on its own thread.
    fn rotate(&mut self) -> Result<()> {
        self.flush()?;
        let next_index = self.segment.index + 1;
        // A failure here leaves the lane as it was; the next append tries
        // again.
        let file = self.take_next_segment()?;
        let old = std::mem::replace(
            &mut self.segment,
            ActiveSegment {
                file,
                index: next_index,
                base_position: self.position,
                seed: frame_seed(self.core_id, next_index),
            },
        );
        // The full segment receives no more writes. Once every write queued
        // to it has completed, its fdatasync can run on its own thread and
        // overlap with appends to the next segment; the next sync submitted
        // waits for it.
        while self.queue.in_flight() > 0 {
            self.reap(true)?;
        }
        let full = old.file;
        self.retiring.push(SegmentSync::start(
            move || full.sync_data(),
            self.event.clone(),
        ));
        self.start_segment_header();
        self.prepare_next();
        Ok(())
    }

    /// Starts making everything appended so far durable and returns its
    /// token at once. `report`: whether the completion is handed out by
    /// poll/wait (syncs submitted by group commit only move the synced
    /// position). `now`: the caller waits for it at once, so the queue may
    /// do it on this thread.
    fn submit_sync(&mut self, report: bool, now: bool) -> Result<u64> {
        self.check_usable()?;
        // The sync waits for this write anyway: done here, it needs no
        // hand-off to the kernel's workers.
        self.flush_with(if now {
            Flush::Waited
        } else {
            self.sync_flush()
        })?;
        let token = self.next_token;
        self.next_token += 1;
        self.pending.push_back(PendingSync {
            token,
            boundary: self.position,
            queue_done: false,
            retiring: std::mem::take(&mut self.retiring),
            report,
        });
        if now {
            self.queue.sync_now(&self.segment.file, token);
        } else {
            self.queue.sync(&self.segment.file, token);
        }
        self.sequence_at_submit = self.next_sequence;
        self.position_at_submit = self.position;
        self.last_sync = Instant::now();
        // A failure found here (a blocking queue syncs at once) belongs to
        // this token's completion; the writer is poisoned for later calls.
        let _ = self.reap(false);
        Ok(token)
    }

    /// How the write before a sync submitted now goes: alone when no sync
    /// is in flight and the application waited for its last syncs.
    fn sync_flush(&self) -> Flush {
        if self.pending.is_empty() && self.waited_syncs == WAITED_SYNCS {
            Flush::SyncAlone
        } else {
            Flush::SyncFollows
        }
    }

    /// `cw_writer_sync_submit`.
    pub(crate) fn sync_submit(&mut self) -> Result<u64> {
        self.submit_sync(true, false)
    }

    /// Hands out up to `max` finished syncs, oldest first, without blocking.
    /// Also submits a sync when group commit says one is due.
    pub(crate) fn poll(&mut self, max: usize, out: &mut Vec<SyncCompletion>) -> Result<()> {
        // Drain before reaping: a completion that lands after this point
        // signals the descriptor again.
        self.event.drain();
        let reaped = self.reap(false);
        if reaped.is_ok() && self.position > self.synced_position && self.pending.is_empty() {
            self.sync_if_due()?;
        }
        let n = max.min(self.finished.len());
        out.extend(self.finished.drain(..n));
        self.keep_event_armed();
        if out.is_empty() {
            // Poisoned and nothing left to report.
            reaped?;
        }
        Ok(())
    }

    /// Blocks until sync `token` has finished and hands out its completion
    /// (earlier ones stay for poll).
    pub(crate) fn wait(&mut self, token: u64) -> Result<SyncCompletion> {
        loop {
            if let Some(i) = self.finished.iter().position(|c| c.token == token) {
                return Ok(self.finished.remove(i).expect("found above"));
            }
            if !self.pending.iter().any(|p| p.token == token) {
                return Err(Error::NotFound(format!(
                    "sync token {token} is not pending on writer {} (never issued, or already reported)",
                    self.core_id
                )));
            }
            if self.queue.in_flight() > 0 {
                let _ = self.reap(true);
            } else {
                // Only background segment syncs are left to wait for.
                self.complete_syncs(true);
            }
        }
    }

    /// Flushes and fdatasyncs everything appended so far (submit + wait).
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.check_usable()?;
        if self.position == self.synced_position
            && self.retiring.is_empty()
            && self.pending.is_empty()
        {
            return Ok(());
        }
        let token = self.submit_sync(true, true)?;
        match self.wait(token)?.result {
            Ok(()) => Ok(()),
            Err(why) => Err(Error::Poisoned(why)),
        }
    }

    fn sync_if_due(&mut self) -> Result<()> {
        let c = &self.config;
        let records = self.next_sequence - self.sequence_at_submit;
        let bytes = self.position - self.position_at_submit;
        let due = (c.sync_every_records > 0 && records >= c.sync_every_records)
            || (c.sync_every_bytes > 0 && bytes >= c.sync_every_bytes)
            || c.sync_interval
                .is_some_and(|every| self.last_sync.elapsed() >= every);
        if due {
            self.submit_sync(false, false).map(drop)
        } else {
            Ok(())
        }
    }

    /// Syncs for the background flusher when there is unsynced data.
    pub(crate) fn flush_idle(&mut self) -> Result<()> {
        if self.poisoned.is_some() {
            return Ok(());
        }
        self.sync()
    }

    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    pub(crate) fn segment_index(&self) -> u64 {
        self.segment.index
    }

    pub(crate) fn synced_position(&self) -> u64 {
        self.synced_position
    }

    pub(crate) fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Stops the preparation and waits for background syncs, so no thread
    /// outlives the lane.
    fn finish_background(&mut self) {
        self.stop_preparing();
        for retired in self.retiring.drain(..) {
            let _ = retired.join();
        }
    }
}

impl<I: Io> Drop for Lane<I> {
    fn drop(&mut self) {
        self.finish_background();
    }
}

/// The handle of lane `core_id` (`cw_writer`).
pub struct Writer<I: Io> {
    core_id: u32,
    position: AtomicU64,
    synced_position: AtomicU64,
    sequence: AtomicU64,
    /// The lane's eventfd number; -1 once the writer is closed (the lane
    /// owns the descriptor and closes it).
    event_fd: AtomicI32,
    /// Index of the segment being appended to.
    segment_index: AtomicU64,
    barriers: Arc<Barriers>,
    lane: InUse<Option<Lane<I>>>,
}

impl<I: Io> Writer<I> {
    pub(crate) fn new(lane: Lane<I>, core_id: u32) -> Writer<I> {
        Writer {
            core_id,
            position: AtomicU64::new(lane.position()),
            synced_position: AtomicU64::new(lane.synced_position()),
            sequence: AtomicU64::new(lane.next_sequence()),
            event_fd: AtomicI32::new(lane.event.raw()),
            segment_index: AtomicU64::new(lane.segment_index()),
            barriers: lane.barriers.clone(),
            lane: InUse::new(Some(lane)),
        }
    }

    /// Enters the writer, or reports that another thread is inside.
    #[inline]
    pub(crate) fn enter(&self) -> Result<Entered<'_, Option<Lane<I>>>> {
        match self.lane.try_enter() {
            Some(entered) if !entered.poisoned() => Ok(entered),
            Some(_) => Err(self.interrupted()),
            None => Err(Error::Busy(format!("writer {}", self.core_id))),
        }
    }

    /// The error for a writer that a panic left behind.
    #[cold]
    fn interrupted(&self) -> Error {
        Error::Poisoned(format!(
            "a panic interrupted an earlier call on writer {}",
            self.core_id
        ))
    }

    /// Runs `f` on the lane and publishes its counters afterwards.
    fn with_lane<T>(&self, f: impl FnOnce(&mut Lane<I>) -> Result<T>) -> Result<T> {
        let mut guard = self.enter()?;
        let lane = guard.as_mut().ok_or(Error::Closed("writer"))?;
        let result = f(lane);
        lane.keep_event_armed();
        self.publish(lane);
        result
    }

    /// Publishes the lane's counters for readers on any thread.
    pub(crate) fn publish(&self, lane: &Lane<I>) {
        self.position.store(lane.position(), Ordering::Release);
        self.synced_position
            .store(lane.synced_position(), Ordering::Release);
        self.sequence.store(lane.next_sequence(), Ordering::Release);
        self.segment_index
            .store(lane.segment_index(), Ordering::Release);
    }

    /// Appends a PUT; returns the record's position.
    pub fn append_put(&self, key: &[u8], value: &[u8]) -> Result<u64> {
        self.with_lane(|lane| lane.append(OpRef::Put { key, value }))
    }

    /// Appends a DELETE; returns the record's position.
    pub fn append_delete(&self, key: &[u8]) -> Result<u64> {
        self.with_lane(|lane| lane.append(OpRef::Delete { key }))
    }

    /// Appends a COMMIT of source offsets and an optional watermark.
    pub fn append_commit(
        &self,
        offsets: &[crate::format::SourceOffsetRef<'_>],
        watermark: Option<i64>,
    ) -> Result<u64> {
        self.with_lane(|lane| lane.append(OpRef::Commit { offsets, watermark }))
    }

    /// Appends a CHECKPOINT marker.
    pub fn append_checkpoint(&self, checkpoint_id: u64) -> Result<u64> {
        self.with_lane(|lane| lane.append(OpRef::Checkpoint { checkpoint_id }))
    }

    /// Writes an EPOCH_BARRIER for the manager's current epoch.
    pub fn epoch_barrier(&self) -> Result<u64> {
        self.with_lane(|lane| lane.epoch_barrier())
    }

    /// Makes everything appended so far durable.
    pub fn sync(&self) -> Result<()> {
        self.with_lane(|lane| lane.sync())
    }

    /// Discards the lane's records from `position` on (a rollback).
    /// `position` is a record's position as an append returned it, or the
    /// lane's position (then nothing happens). Everything discarded is
    /// destroyed durably before this returns: a crash can never bring it
    /// back. Syncs in flight are waited for first. The next record gets the
    /// position and sequence of the first discarded one.
    ///
    /// Fails with [`Error::InvalidArgument`] (nothing changes) for a position
    /// that is not a record boundary, beyond the end, below the lane's start
    /// or below the latest checkpoint's start for this lane.
    pub fn truncate(&self, position: u64) -> Result<()> {
        self.with_lane(|lane| lane.truncate(position))
    }

    /// Runs `f` on the lane, waiting for a thread that is inside the writer
    /// (coordinator operations: checkpoints, purge, sync_all).
    pub(crate) fn with_lane_waiting<T>(
        &self,
        f: impl FnOnce(&mut Lane<I>) -> Result<T>,
    ) -> Result<T> {
        let mut guard = self.lane.enter();
        if guard.poisoned() {
            return Err(self.interrupted());
        }
        let lane = guard.as_mut().ok_or(Error::Closed("writer"))?;
        let result = f(lane);
        lane.keep_event_armed();
        self.publish(lane);
        result
    }

    /// Syncs, waiting for a thread that is inside the writer.
    pub(crate) fn sync_waiting(&self) -> Result<()> {
        self.with_lane_waiting(|lane| lane.sync())
    }

    /// Starts a sync of everything appended so far; returns its token.
    pub fn sync_submit(&self) -> Result<u64> {
        self.with_lane(|lane| lane.sync_submit())
    }

    /// Up to `max` finished syncs, oldest first; never blocks. An empty
    /// result is a normal answer.
    pub fn poll(&self, max: usize) -> Result<Vec<SyncCompletion>> {
        let mut out = Vec::new();
        self.with_lane(|lane| lane.poll(max, &mut out))?;
        Ok(out)
    }

    /// Like [`Writer::poll`], into a caller's buffer (cleared first).
    pub fn poll_into(&self, max: usize, out: &mut Vec<SyncCompletion>) -> Result<()> {
        out.clear();
        self.with_lane(|lane| lane.poll(max, out))
    }

    /// Blocks until sync `token` finishes; returns its completion.
    pub fn wait(&self, token: u64) -> Result<SyncCompletion> {
        self.with_lane(|lane| lane.wait(token))
    }

    /// A descriptor that turns readable when completions are ready for
    /// [`Writer::poll`]; polling drains it.
    pub fn event_fd(&self) -> std::os::fd::RawFd {
        self.event_fd.load(Ordering::Acquire)
    }

    /// Syncs unless another thread is inside the writer (then it is skipped).
    pub(crate) fn flush_if_idle(&self) {
        if let Some(mut guard) = self.lane.try_enter()
            && !guard.poisoned()
            && let Some(lane) = guard.as_mut()
        {
            let _ = lane.flush_idle();
            self.publish(lane);
        }
    }

    /// Syncs and releases the lane; later calls report [`Error::Closed`].
    /// Waits for a thread that is inside the writer.
    pub(crate) fn close(&self) -> Result<()> {
        // A panic inside earlier does not stop the close: the lane syncs
        // what it has and is released.
        let mut guard = self.lane.enter();
        let Some(mut lane) = guard.take() else {
            return Ok(());
        };
        self.event_fd.store(-1, Ordering::Release);
        let result = lane.sync();
        self.publish(&lane);
        result
    }

    /// Where this lane's replay starts for a checkpoint covering `epoch`,
    /// or why it cannot be checkpointed yet. Never enters the lane: safe
    /// while its thread appends.
    pub(crate) fn checkpoint_start(&self, epoch: u64) -> std::result::Result<u64, String> {
        self.barriers
            .checkpoint_start(epoch, self.synced_position())
    }

    /// The segment the lane appends to (published after each call).
    pub(crate) fn segment_index(&self) -> u64 {
        self.segment_index.load(Ordering::Acquire)
    }

    /// Bytes appended to the lane so far (its logical end).
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    /// Bytes of the lane made durable by a completed fdatasync.
    pub fn synced_position(&self) -> u64 {
        self.synced_position.load(Ordering::Acquire)
    }

    /// Sequence number the next record will get.
    pub fn sequence(&self) -> u64 {
        self.sequence.load(Ordering::Acquire)
    }

    pub fn core_id(&self) -> u32 {
        self.core_id
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{Flush, SegmentSync};

    use crate::error::Error;
    use crate::io::{FileIo, Io, MemIo, SubmitQueue};
    use crate::manager::Manager;
    use crate::options::{Backend, Options};

    /// How the write before a sync submitted now would go.
    fn next_sync_flush<I: Io>(w: &super::Writer<I>) -> Flush {
        let lane = w.lane.enter();
        lane.as_ref().unwrap().sync_flush()
    }

    fn syncs_in_flight<I: Io>(w: &super::Writer<I>) -> usize {
        let lane = w.lane.enter();
        lane.as_ref().unwrap().pending.len()
    }

    #[test]
    fn syncs_a_writer_waits_for_count_as_alone() {
        let m = small_segments(MemIo::new(), 1);
        let w = m.writer(0).unwrap();
        assert_eq!(next_sync_flush(w), Flush::SyncAlone);
        for i in 0..3u8 {
            w.append_put(&[i], b"v").unwrap();
            let token = w.sync_submit().unwrap();
            w.wait(token).unwrap();
        }
        assert_eq!(next_sync_flush(w), Flush::SyncAlone);
    }

    #[test]
    fn pipelined_syncs_are_not_alone_on_io_uring() {
        let tmp = tempfile::tempdir().unwrap();
        let io = match FileIo::for_backend(Backend::IoUring, Default::default()) {
            Ok(io) => io,
            Err(why) => return eprintln!("skipping: {why}"),
        };
        let options = Options {
            num_cores: 1,
            ..Options::default()
        };
        let m = Manager::open_with(io, &tmp.path().join("wal"), &options).unwrap();
        let w = m.writer(0).unwrap();
        // A sync still running when more is appended (the usual case, as
        // an fdatasync takes far longer than an append) was not waited for.
        let mut overlapped = 0;
        for i in 0..20u32 {
            w.append_put(&i.to_be_bytes(), b"v").unwrap();
            let token = w.sync_submit().unwrap();
            let running = syncs_in_flight(w) > 0;
            w.append_put(b"more", b"v").unwrap();
            if running {
                overlapped += 1;
                assert_eq!(
                    next_sync_flush(w),
                    Flush::SyncFollows,
                    "a sync is in flight"
                );
            }
            w.wait(token).unwrap();
            if running {
                assert_eq!(
                    next_sync_flush(w),
                    Flush::SyncFollows,
                    "the last sync finished after an append"
                );
            }
        }
        assert!(overlapped > 0, "every sync finished inside its submit");
        // Two waited syncs in a row make the next one alone again.
        for _ in 0..2 {
            w.append_put(b"k", b"v").unwrap();
            let token = w.sync_submit().unwrap();
            w.wait(token).unwrap();
        }
        assert_eq!(next_sync_flush(w), Flush::SyncAlone);
    }

    /// A manager over `io` in `/wal` with `lanes` lanes of 16 KiB segments.
    fn small_segments(io: MemIo, lanes: u32) -> Manager<MemIo> {
        let options = Options {
            num_cores: lanes,
            segment_bytes: 16 << 10,
            ..Options::default()
        };
        Manager::open_with(io, Path::new("/wal"), &options).unwrap()
    }

    #[test]
    fn a_second_thread_entering_a_writer_gets_busy() {
        let m = small_segments(MemIo::new(), 1);
        let w = m.writer(0).unwrap();
        let inside = w.lane.enter();
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(
                    matches!(w.append_put(b"k", b"v"), Err(Error::Busy(what)) if what == "writer 0")
                );
                assert!(matches!(w.sync(), Err(Error::Busy(_))));
                assert!(matches!(w.epoch_barrier(), Err(Error::Busy(_))));
            });
        });
        drop(inside);
        w.append_put(b"k", b"v").expect("free again");
        assert_eq!(w.sequence(), 1);
    }

    #[test]
    fn a_panic_inside_a_writer_poisons_later_calls() {
        let m = small_segments(MemIo::new(), 1);
        let w = m.writer(0).unwrap();
        w.append_put(b"k", b"v").unwrap();
        let panicked = std::thread::scope(|s| {
            s.spawn(|| {
                let _inside = w.lane.enter();
                panic!("a panic while inside the writer");
            })
            .join()
        });
        assert!(panicked.is_err());
        for result in [w.append_put(b"k", b"v").map(|_| ()), w.sync()] {
            assert!(
                matches!(&result, Err(Error::Poisoned(why)) if why.contains("panic")),
                "{result:?}"
            );
        }
        assert_eq!(w.sequence(), 1);
    }

    #[test]
    fn truncate_waits_for_every_sync_in_flight() {
        let m = small_segments(MemIo::new(), 1);
        let w = m.writer(0).unwrap();
        let positions: Vec<u64> = (0..10u32)
            .map(|i| w.append_put(&i.to_be_bytes(), b"v").unwrap())
            .collect();
        // A background segment sync that is still running: the next sync
        // takes it over and cannot complete before it.
        {
            let mut lane = w.lane.enter();
            let lane = lane.as_mut().unwrap();
            let slow = SegmentSync::start(
                || {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    Ok(())
                },
                lane.event.clone(),
            );
            lane.retiring.push(slow);
        }
        let token = w.sync_submit().unwrap();
        assert!(
            !w.lane.enter().as_ref().unwrap().pending.is_empty(),
            "the sync is still in flight"
        );
        w.truncate(positions[4]).unwrap();
        let guard = w.lane.enter();
        let lane = guard.as_ref().unwrap();
        assert!(lane.pending.is_empty() && lane.retiring.is_empty());
        assert_eq!(lane.queue.in_flight(), 0);
        let done: Vec<_> = lane
            .finished
            .iter()
            .map(|c| (c.token, c.result.is_ok()))
            .collect();
        assert_eq!(done, [(token, true)], "its completion stays for poll");
    }

    #[test]
    fn reset_while_another_thread_is_inside_a_writer_is_busy_and_changes_nothing() {
        let io = MemIo::new();
        let m = small_segments(io.clone(), 2);
        for core in 0..2 {
            m.writer(core).unwrap().append_put(b"k", b"v").unwrap();
        }
        m.checkpoint(1, b"").unwrap();
        m.writer(0)
            .unwrap()
            .append_put(b"after", b"checkpoint")
            .unwrap();
        // Files that hold something: not next segments being prepared in
        // the background (zeros until they are used).
        let files = || {
            let mut names: Vec<String> = io
                .list(Path::new("/wal"))
                .unwrap()
                .into_iter()
                .filter(|name| {
                    !name.ends_with(".prep")
                        && io
                            .contents(&Path::new("/wal").join(name))
                            .is_some_and(|bytes| bytes.iter().any(|&b| b != 0))
                })
                .collect();
            names.sort();
            names
        };
        let records = || {
            let opts = crate::recovery::RecoveryOptions {
                from_checkpoint: false,
                ..Default::default()
            };
            let mut r =
                crate::recovery::Recovery::open(io.clone(), Path::new("/wal"), &opts).unwrap();
            let mut n = 0;
            while r.next().unwrap().is_some() {
                n += 1;
            }
            n
        };
        let before = (
            files(),
            records(),
            m.writer(0).unwrap().position(),
            m.latest_checkpoint(),
        );
        let inside = m.writer(1).unwrap().lane.enter();
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(matches!(m.reset(), Err(Error::Busy(what)) if what == "writer 1"));
            });
        });
        drop(inside);
        let after = (
            files(),
            records(),
            m.writer(0).unwrap().position(),
            m.latest_checkpoint(),
        );
        assert_eq!(before, after);
        m.writer(0).unwrap().append_put(b"still", b"there").unwrap();
        m.reset().expect("free again");
        assert_eq!(m.latest_checkpoint(), None);
    }

    #[test]
    fn size_hint_bounds_every_frame() {
        use crate::format::{Encoder, FRAME_HEADER_LEN, OpRef, RecordRef, SourceOffsetRef};
        let offsets = [SourceOffsetRef {
            name: b"a-long-source-name",
            offset: u64::MAX,
        }; 5];
        let big = vec![1u8; 5000];
        let ops = [
            OpRef::Put {
                key: &big[..16],
                value: &big[..100],
            },
            OpRef::Put {
                key: &[],
                value: &[],
            },
            OpRef::Put {
                key: &big,
                value: &big,
            },
            OpRef::Delete { key: &big[..3] },
            OpRef::Commit {
                offsets: &offsets,
                watermark: Some(i64::MIN),
            },
            OpRef::Commit {
                offsets: &[],
                watermark: None,
            },
            OpRef::Checkpoint {
                checkpoint_id: u64::MAX,
            },
            OpRef::EpochBarrier,
        ];
        let mut encoder = Encoder::default();
        for op in ops {
            let record = RecordRef {
                epoch: u64::MAX,
                timestamp_ns: i64::MAX,
                sequence: u64::MAX,
                durable_mark: u64::MAX,
                core_id: u32::MAX,
                op,
            };
            let (padded, _) = encoder.encode(&record);
            assert!(
                FRAME_HEADER_LEN + padded.len() <= super::size_hint(&op),
                "{op:?}"
            );
        }
    }
}
