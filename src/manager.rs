//! The manager: opens or creates a WAL directory, holds its lock, repairs
//! lanes at open, owns the writers and the global epoch.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::checkpoint::{MAX_META_BYTES, Manifest, ResetMarker};
use crate::error::{Error, IoContext, Result};
use crate::format::FORMAT_VERSION;
use crate::io::{BackendInUse, FileIo, Io, IoFile, OpenMode};
use crate::meta::{LOCK_FILE, Meta};
use crate::options::Options;
use crate::recovery::{
    Recovery, RecoveryOptions, ResumePoint, ScanOptions, header_base, replay_from, scan_dir_from,
    scan_lane_with,
};
use crate::segment::{
    PREPARING_SUFFIX, create_now, list_segments, prepare, remove_segment, segment_path, write_zeros,
};
use crate::writer::{Lane, LaneConfig, LaneStart, Resume, Shared, Writer};

/// Keeps each writer on its own cache lines, so two cores appending to two
/// lanes never write to the same line.
#[repr(align(128))]
pub struct Padded<T>(T);

impl<T> Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

struct Flusher {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

/// An open WAL directory (`cw_manager`).
pub struct Manager<I: Io = FileIo> {
    io: I,
    dir: PathBuf,
    shared: Arc<Shared>,
    writers: Arc<[Padded<Writer<I>>]>,
    lock: Mutex<Option<I::Lock>>,
    flusher: Mutex<Option<Flusher>>,
    closed: AtomicBool,
    backend: BackendInUse,
    /// The fallback reason as a C string, for the C ABI, which hands out a
    /// pointer that must live as long as the handle.
    backend_reason_c: Option<std::ffi::CString>,
}

impl Manager<FileIo> {
    /// Opens (or creates) the WAL in `dir` on real files, through the
    /// backend `options.backend` asks for ([`Error::Unsupported`] for
    /// io_uring where no ring can be set up, and for `direct_io` where the
    /// file system refuses direct I/O; `Auto` falls back to the blocking
    /// queue and says why in [`Manager::backend`]).
    pub fn open(dir: &Path, options: &Options) -> Result<Manager<FileIo>> {
        options.validate()?;
        let mut io = FileIo::for_backend(options.backend, options.uring())
            .map_err(|why| Error::Unsupported(format!("io_uring backend: {why}")))?;
        if options.direct_io {
            io = io.with_direct_io(dir).map_err(Error::Unsupported)?;
        } else if options.direct_sync {
            // An optimisation, not a promise: where direct I/O is refused,
            // every sync is an fdatasync.
            io = io.clone().with_direct_sync(dir).unwrap_or(io);
        }
        Manager::open_with(io, dir, options)
    }
}

impl<I: Io> Manager<I> {
    /// Opens (or creates) the WAL in `dir` through `io`: takes the lock,
    /// checks the lane count, repairs torn tails and refuses corruption
    /// according to `options.recovery_mode`.
    pub fn open_with(io: I, dir: &Path, options: &Options) -> Result<Manager<I>> {
        options.validate()?;
        let dir = dir.to_owned();
        if !io
            .exists(&dir)
            .context(|| format!("checking {}", dir.display()))?
        {
            if !options.create_if_missing {
                return Err(Error::NotFound(format!(
                    "no WAL directory at {}",
                    dir.display()
                )));
            }
            if options.num_cores == 0 {
                // Refused before anything is created.
                return Err(Error::InvalidArgument(
                    "num_cores must be above 0 to create a WAL".into(),
                ));
            }
            io.create_dir(&dir)
                .context(|| format!("creating {}", dir.display()))?;
        }
        let lock = match io.lock(&dir.join(LOCK_FILE)) {
            Ok(lock) => lock,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Err(Error::Locked(dir)),
            Err(e) => return Err(Error::io(format!("locking {}", dir.display()), e)),
        };
        let meta = match Meta::read(&io, &dir)? {
            Some(meta) if options.num_cores == 0 || options.num_cores == meta.num_cores => meta,
            Some(meta) if options.num_cores < meta.num_cores => {
                return Err(Error::InvalidArgument(format!(
                    "{} has {} lanes; opening it with {} would drop lanes, which is refused",
                    dir.display(),
                    meta.num_cores,
                    options.num_cores
                )));
            }
            Some(meta) => {
                // More lanes: recorded before any of their files exists, so a
                // crash in between leaves lanes that are simply empty.
                let grown = Meta {
                    num_cores: options.num_cores,
                    ..meta
                };
                grown.write(&io, &dir)?;
                grown
            }
            None if !options.create_if_missing => {
                return Err(Error::NotFound(format!("no WAL in {}", dir.display())));
            }
            None if options.num_cores == 0 => {
                return Err(Error::InvalidArgument(
                    "num_cores must be above 0 to create a WAL".into(),
                ));
            }
            None => {
                let meta = Meta {
                    format_version: FORMAT_VERSION,
                    num_cores: options.num_cores,
                    segment_bytes: options.segment_bytes,
                    max_record_bytes: options.max_record_bytes,
                    preallocate: options.preallocate,
                };
                meta.write(&io, &dir)?;
                meta
            }
        };
        // Segment size and preallocation belong to the directory: they are
        // fixed when it is created, whatever a later open asks for.
        let options = &Options {
            segment_bytes: meta.segment_bytes,
            preallocate: meta.preallocate,
            ..options.clone()
        };
        options.validate()?;
        let io = io.for_segments(options.segment_bytes);
        let num_cores = meta.num_cores;

        // Preparations cut short by a crash leave temporary files behind.
        for name in io
            .list(&dir)
            .context(|| format!("listing {}", dir.display()))?
        {
            if name.ends_with(PREPARING_SUFFIX) {
                let _ = io.remove(&dir.join(name));
            }
        }
        let (per_lane, foreign) = list_segments(&io, &dir, num_cores)?;
        if let Some(name) = foreign.first() {
            return Err(Error::CorruptMeta(format!(
                "{name} belongs to a lane beyond the {num_cores} lanes the metadata records"
            )));
        }
        let scans = per_lane
            .iter()
            .enumerate()
            .map(|(core, indexes)| {
                let opts = ScanOptions::for_mode(options.recovery_mode, 0);
                scan_lane_with(&io, &dir, core as u32, indexes, opts)
            })
            .collect::<Result<Vec<_>>>()?;
        // Every lane is judged before any is repaired, so a refused open
        // leaves the directory untouched.
        for scan in &scans {
            scan.check(&dir, options.recovery_mode)?;
        }
        let mode = options.recovery_mode;
        let resume = scans
            .iter()
            .map(|s| s.resume_point(mode))
            .collect::<Result<Vec<_>>>()?;
        let epoch = resume
            .iter()
            .filter_map(|r| r.last.map(|l| l.epoch))
            .max()
            .unwrap_or(1)
            .max(1);
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(epoch),
            manifest: Mutex::new(Manifest::read(&io, &dir)?),
        });
        let config = LaneConfig {
            dir: dir.clone(),
            segment_bytes: options.segment_bytes,
            max_record_bytes: options.effective_max_record_bytes(),
            preallocate: options.preallocate,
            sync_every_records: options.sync_every_records,
            sync_every_bytes: options.sync_every_bytes,
            sync_interval: (options.sync_interval_us > 0)
                .then(|| Duration::from_micros(options.sync_interval_us)),
        };
        let writers = scans
            .iter()
            .zip(&resume)
            .map(|(scan, resume)| {
                let lane = open_lane(&io, &config, &shared, scan.core_id, resume)?;
                Ok(Padded(Writer::new(lane, scan.core_id)))
            })
            .collect::<Result<Vec<_>>>()?;
        let writers: Arc<[Padded<Writer<I>>]> = writers.into();
        if ResetMarker::read(&io, &dir)?.is_some() {
            // A crash interrupted a reset after its marker was durable:
            // finish it before anyone appends.
            let mut guards = writers
                .iter()
                .map(|w| w.enter())
                .collect::<Result<Vec<_>>>()?;
            let mut lanes: Vec<&mut Lane<I>> =
                guards.iter_mut().filter_map(|g| g.as_mut()).collect();
            let mut manifest = shared.manifest.lock().unwrap_or_else(|e| e.into_inner());
            finish_reset(&io, &dir, &mut lanes, &mut manifest)?;
            for (writer, lane) in writers.iter().zip(&lanes) {
                writer.publish(lane);
            }
        }
        let flusher = (options.flusher_interval_us > 0).then(|| {
            start_flusher(
                writers.clone(),
                Duration::from_micros(options.flusher_interval_us),
            )
        });
        let backend = io.backend_in_use();
        Ok(Manager {
            io,
            dir,
            shared,
            writers,
            lock: Mutex::new(Some(lock)),
            flusher: Mutex::new(flusher),
            closed: AtomicBool::new(false),
            backend_reason_c: backend
                .fallback_reason
                .as_ref()
                .and_then(|r| std::ffi::CString::new(r.replace('\0', " ")).ok()),
            backend,
        })
    }

    /// The backend the writers use, and why `Auto` fell back if it did.
    pub fn backend(&self) -> &BackendInUse {
        &self.backend
    }

    /// [`BackendInUse::fallback_reason`] as a C string.
    pub fn backend_reason_c(&self) -> Option<&std::ffi::CStr> {
        self.backend_reason_c.as_deref()
    }

    /// Whether [`Manager::close`] has run.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed("manager"));
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn num_cores(&self) -> u32 {
        self.writers.len() as u32
    }

    /// The writer of lane `core_id`. Writers live as long as the manager.
    pub fn writer(&self, core_id: u32) -> Result<&Writer<I>> {
        self.check_open()?;
        self.writers
            .get(core_id as usize)
            .map(|w| &**w)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "core id {core_id} is out of range (num_cores is {})",
                    self.writers.len()
                ))
            })
    }

    /// The epoch new records are stamped with.
    pub fn epoch(&self) -> u64 {
        self.shared.epoch.load(Ordering::Acquire)
    }

    /// Starts the next epoch; returns it.
    pub fn advance_epoch(&self) -> Result<u64> {
        self.check_open()?;
        Ok(self.shared.epoch.fetch_add(1, Ordering::AcqRel) + 1)
    }

    /// Syncs every lane, waiting for a writer that is in use.
    pub fn sync_all(&self) -> Result<()> {
        self.check_open()?;
        let mut first_error = None;
        for writer in self.writers.iter() {
            if let Err(e) = writer.sync_waiting() {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// A recovery iterator over what the lanes hold on disk (everything
    /// appended before the last sync or buffer flush). Meant for replay
    /// before appending starts.
    pub fn recover(&self, options: &RecoveryOptions) -> Result<Recovery<I>> {
        self.check_open()?;
        let checkpoint = options
            .from_checkpoint
            .then(|| self.latest_checkpoint())
            .flatten();
        let (checkpoint, starts) = replay_from(&self.io, &self.dir, checkpoint)?;
        let scans = scan_dir_from(&self.io, &self.dir, self.num_cores(), &starts, options.mode)?;
        Recovery::starting_at(
            self.io.clone(),
            &self.dir,
            scans,
            options,
            checkpoint,
            &starts,
        )
    }

    /// Commits checkpoint `checkpoint_id` covering every record of `epoch`
    /// and before (SPEC §5, step 3): checks that every lane has a durable
    /// EPOCH_BARRIER closing `epoch` (written in this session by
    /// [`Writer::epoch_barrier`] or by a first append in a later epoch, then
    /// synced), and atomically replaces the manifest with the id, the epoch,
    /// each lane's barrier position and `meta`.
    pub fn checkpoint_commit(&self, checkpoint_id: u64, epoch: u64, meta: &[u8]) -> Result<()> {
        self.check_open()?;
        if meta.len() > MAX_META_BYTES {
            return Err(Error::InvalidArgument(format!(
                "checkpoint meta of {} bytes is above the limit of {MAX_META_BYTES}",
                meta.len()
            )));
        }
        if epoch >= self.epoch() {
            return Err(Error::InvalidArgument(format!(
                "epoch {epoch} is still open (the current epoch is {}): advance the epoch first",
                self.epoch()
            )));
        }
        let mut latest = self
            .shared
            .manifest
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(m) = latest.as_ref().filter(|m| m.epoch > epoch) {
            return Err(Error::InvalidArgument(format!(
                "checkpoint {} already covers epoch {}, later than {epoch}",
                m.checkpoint_id, m.epoch
            )));
        }
        let mut lane_starts = Vec::with_capacity(self.writers.len());
        for writer in self.writers.iter() {
            let start = writer.checkpoint_start(epoch).map_err(|why| {
                Error::InvalidArgument(format!(
                    "lane {} {why}: write one with cw_writer_epoch_barrier on that core, then sync",
                    writer.core_id()
                ))
            })?;
            lane_starts.push(start);
        }
        let manifest = Manifest {
            checkpoint_id,
            epoch,
            lane_starts,
            meta: meta.to_vec(),
        };
        manifest.write(&self.io, &self.dir)?;
        *latest = Some(manifest);
        Ok(())
    }

    /// The whole checkpoint protocol in one call, for callers that can pause
    /// their writers: advances the epoch, writes a barrier on every lane and
    /// syncs it (waiting for writers in use), then commits.
    pub fn checkpoint(&self, checkpoint_id: u64, meta: &[u8]) -> Result<()> {
        self.check_open()?;
        let covered = self.advance_epoch()? - 1;
        for writer in self.writers.iter() {
            writer.with_lane_waiting(|lane| {
                lane.epoch_barrier()?;
                lane.sync()
            })?;
        }
        self.checkpoint_commit(checkpoint_id, covered, meta)
    }

    /// The latest committed checkpoint, if any.
    pub fn latest_checkpoint(&self) -> Option<Manifest> {
        self.shared
            .manifest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Deletes the segments that lie wholly before the latest checkpoint's
    /// lane starts (the manifest that covers them is already durable).
    /// Returns how many were deleted; 0 without a checkpoint.
    pub fn purge(&self) -> Result<usize> {
        self.check_open()?;
        let latest = self
            .shared
            .manifest
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Some(manifest) = latest.as_ref() else {
            return Ok(0);
        };
        let (per_lane, _) = list_segments(&self.io, &self.dir, self.num_cores())?;
        let mut removed = 0;
        for (core, indexes) in per_lane.iter().enumerate() {
            let writer = &self.writers[core];
            let active = writer.segment_index();
            let start = manifest.lane_start(core as u32);
            // A segment is wholly before `start` when the next one begins at
            // or before it.
            for pair in indexes.windows(2) {
                let (index, next) = (pair[0], pair[1]);
                if index >= active || next != index + 1 {
                    break;
                }
                match header_base(&self.io, &self.dir, core as u32, next)? {
                    Some(base) if base <= start => {
                        remove_segment(&self.io, &self.dir, core as u32, index)?;
                        removed += 1;
                    }
                    _ => break,
                }
            }
        }
        if removed > 0 {
            self.io
                .sync_dir(&self.dir)
                .context(|| format!("syncing {}", self.dir.display()))?;
        }
        Ok(removed)
    }

    /// Empties every lane (`cw_manager_reset`): afterwards recovery yields
    /// nothing and the checkpoint manifest is gone. Every writer must be
    /// idle: if another thread is inside one, this fails with
    /// [`Error::Busy`] and changes nothing (a poisoned writer:
    /// [`Error::Poisoned`], nothing changed either). Positions, sequences
    /// and segment indexes carry on: each lane goes on in a new segment that
    /// starts at its position, so no segment index is ever used twice and
    /// no stale frame can validate. The epoch stays. Writers obtained before
    /// stay valid. (Sequences and the epoch are recovered from records at
    /// open: a lane still empty when the WAL is reopened starts again at
    /// sequence 0, and a WAL without any record at epoch 1.)
    ///
    /// The manifest is removed, not kept: its meta describes a state that
    /// the replay of these lanes no longer leads to, and its lane starts
    /// point into records that are gone.
    ///
    /// Crash safety: every lane is synced, then the reset marker (each
    /// lane's position, see [`ResetMarker`]) is written atomically; that is
    /// the commit point. Before it, nothing has changed. After it, every
    /// reader starts each lane at the marker's position, so no lane's old
    /// records are yielded, whichever lanes the reset had reached, and the
    /// old manifest is ignored; the next open finishes the reset. Then the
    /// manifest is removed, each lane emptied (a new empty segment made
    /// durable, then older segments removed lowest first, each removal
    /// durable, so every lane scans clean at every step), and the marker
    /// removed last. A failure after the commit point poisons every writer
    /// and is reported as [`Error::Poisoned`]: reopening finishes the reset.
    pub fn reset(&self) -> Result<()> {
        self.check_open()?;
        let mut guards = Vec::with_capacity(self.writers.len());
        for writer in self.writers.iter() {
            guards.push(writer.enter()?);
        }
        let mut lanes = guards
            .iter_mut()
            .map(|g| g.as_mut().ok_or(Error::Closed("writer")))
            .collect::<Result<Vec<_>>>()?;
        for lane in &lanes {
            lane.check_usable()?;
        }
        let mut manifest = self
            .shared
            .manifest
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Each lane's end is made durable first, so that the marker's
        // positions are where every lane ends, even after a crash.
        let committed = lanes
            .iter_mut()
            .try_for_each(|lane| {
                lane.drain()?;
                lane.sync()
            })
            .and_then(|()| {
                ResetMarker {
                    lane_starts: lanes.iter().map(|l| l.position()).collect(),
                }
                .write(&self.io, &self.dir)
            });
        let result = committed.and_then(|()| {
            finish_reset(&self.io, &self.dir, &mut lanes, &mut manifest).map_err(|e| {
                let why =
                    format!("a reset failed part-way ({e}); reopen the directory to finish it");
                for lane in lanes.iter_mut() {
                    lane.poison(why.clone());
                }
                Error::Poisoned(why)
            })
        });
        for (writer, lane) in self.writers.iter().zip(&lanes) {
            writer.publish(lane);
        }
        result
    }

    /// Syncs every lane, stops the flusher, releases the lanes and the lock.
    /// Every later call reports [`Error::Closed`]; closing twice is a no-op.
    /// The first sync error is returned, but everything is released anyway.
    pub fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Some(flusher) = self
            .flusher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            drop(flusher.stop);
            let _ = flusher.thread.join();
        }
        let mut first_error = None;
        for writer in self.writers.iter() {
            if let Err(e) = writer.close() {
                first_error.get_or_insert(e);
            }
        }
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
        first_error.map_or(Ok(()), Err)
    }
}

impl<I: Io> Drop for Manager<I> {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

fn start_flusher<I: Io>(writers: Arc<[Padded<Writer<I>>]>, every: Duration) -> Flusher {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
            for writer in writers.iter() {
                writer.flush_if_idle();
            }
        }
    });
    Flusher { stop, thread }
}

/// Repairs lane `core` up to `resume` (from
/// [`crate::recovery::LaneScan::resume_point`]):
/// cuts what follows the point, removes segments beyond it, and opens the
/// writer state there. Under `SkipCorrupt` the point is the end of the last
/// run, and damaged ranges before it stay on disk.
fn open_lane<I: Io>(
    io: &I,
    config: &LaneConfig,
    shared: &Arc<Shared>,
    core: u32,
    resume: &ResumePoint,
) -> Result<Lane<I>> {
    let dir = &config.dir;
    let Some(last) = resume.end else {
        // Nothing usable: start the lane afresh.
        for &index in &resume.beyond {
            remove_segment(io, dir, core, index)?;
        }
        io.sync_dir(dir)
            .context(|| format!("syncing {}", dir.display()))?;
        // Zero-filled if that works; a segment made directly serves as well.
        let (bytes, prealloc) = (config.segment_bytes, config.preallocate);
        let file = prepare(io, dir, core, 0, bytes, prealloc)
            .or_else(|_| create_now(io, dir, core, 0, bytes, prealloc))?;
        let resume = Resume {
            segment_index: 0,
            base_position: 0,
            position: 0,
            next_sequence: 0,
            last_timestamp_ns: 0,
            last_epoch: None,
        };
        return Lane::new(
            io.clone(),
            core,
            config.clone(),
            shared.clone(),
            LaneStart {
                file,
                fresh: true,
                resume,
                prepared_next: None,
            },
        );
    };

    let path = segment_path(dir, core, last.index);
    let what = || format!("repairing {}", path.display());
    let file = io.open(&path, OpenMode::Existing).context(what)?;
    if resume.cut {
        // Cut the torn tail: zero everything after the last kept frame so
        // no stale frame can ever be read as a continuation.
        zero_from(&file, last.end_offset).context(what)?;
    }
    // A prepared, never-started next segment is kept for reuse; anything
    // else beyond the kept prefix goes.
    let mut reusable = None;
    let mut removed = false;
    for &index in &resume.beyond {
        if reusable.is_none() && index == last.index + 1 && !resume.cut {
            let next = io
                .open(&segment_path(dir, core, index), OpenMode::Existing)
                .context(what)?;
            let len = next.size().context(what)?;
            let ready = if config.preallocate {
                len == config.segment_bytes
            } else {
                len == 0
            };
            if ready {
                reusable = Some(next);
                continue;
            }
        }
        remove_segment(io, dir, core, index)?;
        removed = true;
    }
    if removed {
        io.sync_dir(dir).context(what)?;
    }
    // What an earlier process wrote may still sit in the page cache; make it
    // durable before reporting it as synced.
    for &index in &resume.keep {
        let f = io
            .open(&segment_path(dir, core, index), OpenMode::Existing)
            .context(what)?;
        f.sync_data().context(what)?;
    }
    let resume = Resume {
        segment_index: last.index,
        base_position: last.base_position,
        position: resume.position(),
        next_sequence: resume.last.map_or(0, |l| l.sequence + 1),
        last_timestamp_ns: resume.last.map_or(0, |l| l.timestamp_ns),
        last_epoch: resume.last.map(|l| l.epoch),
    };
    Lane::new(
        io.clone(),
        core,
        config.clone(),
        shared.clone(),
        LaneStart {
            file,
            fresh: false,
            resume,
            prepared_next: reusable,
        },
    )
}

/// What a reset does once its marker is durable; also what an open does
/// when it finds the marker of a reset a crash interrupted. Every step can
/// be done again.
fn finish_reset<I: Io>(
    io: &I,
    dir: &Path,
    lanes: &mut [&mut Lane<I>],
    manifest: &mut Option<Manifest>,
) -> Result<()> {
    Manifest::remove(io, dir)?;
    *manifest = None;
    for lane in lanes.iter_mut() {
        lane.empty()?;
    }
    ResetMarker::remove(io, dir)
}

/// Overwrites `file` with zeros from `offset` to its end, durably.
fn zero_from<F: IoFile>(file: &F, offset: u64) -> std::io::Result<()> {
    write_zeros(file, offset, file.size()?)?;
    file.sync_data()
}
