//! Segment files of a lane: names, discovery, and preparing the next file
//! (zero-filled and synced) before the writer needs it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{IoContext, Result};
use crate::io::{Io, IoFile, OpenMode};

/// `wal-<core>-<segment>.log`, zero-padded so that names sort.
pub fn segment_name(core_id: u32, index: u64) -> String {
    format!("wal-{core_id:05}-{index:010}.log")
}

pub fn segment_path(dir: &Path, core_id: u32, index: u64) -> PathBuf {
    dir.join(segment_name(core_id, index))
}

/// Parses a segment file name back into `(core, index)`.
pub fn parse_segment_name(name: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    let (core, index) = rest.split_once('-')?;
    if core.len() != 5 || index.len() != 10 {
        return None;
    }
    if !core
        .bytes()
        .chain(index.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((core.parse().ok()?, index.parse().ok()?))
}

/// The segment indexes of every lane found in `dir`, sorted, for lanes
/// `0..lanes`. Segments of lanes at or beyond `lanes` are returned apart.
pub fn list_segments<I: Io>(
    io: &I,
    dir: &Path,
    lanes: u32,
) -> Result<(Vec<Vec<u64>>, Vec<String>)> {
    let mut per_lane = vec![Vec::new(); lanes as usize];
    let mut foreign = Vec::new();
    for name in io
        .list(dir)
        .context(|| format!("listing {}", dir.display()))?
    {
        if let Some((core, index)) = parse_segment_name(&name) {
            match per_lane.get_mut(core as usize) {
                Some(list) => list.push(index),
                None => foreign.push(name),
            }
        }
    }
    for list in &mut per_lane {
        list.sort_unstable();
    }
    Ok((per_lane, foreign))
}

/// Chunk of zeros written while preallocating. Small on purpose: the page
/// cache keeps a file in folios as large as the writes that filled it, and a
/// later fdatasync writes back each dirty folio whole. Zero-filled in 1 MiB
/// writes, a segment's small appends cost about 4 µs more per fdatasync
/// (here: 33 against 29 µs for a 200-byte append); from 64 KiB down they
/// cost what appends to a never-cached file do.
const ZERO_CHUNK: usize = 64 << 10;

static ZEROS: [u8; ZERO_CHUNK] = [0; ZERO_CHUNK];

/// Suffix of a segment being created under a temporary name.
pub const PREPARING_SUFFIX: &str = ".prep";

/// Makes segment `index` of `core_id` ahead of need: published with its
/// blocks reserved, then (with `preallocate`) zero-filled and synced, so
/// later fdatasyncs never have to record a size change or an extent
/// conversion. See [`publish`] for how it is named. A zero-fill that fails
/// leaves a published segment the writer can still use.
pub fn prepare<I: Io>(
    io: &I,
    dir: &Path,
    core_id: u32,
    index: u64,
    segment_bytes: u64,
    preallocate: bool,
) -> Result<I::File> {
    let file = publish(io, dir, core_id, index, segment_bytes, preallocate)?;
    if preallocate {
        let what = || {
            format!(
                "zero-filling {}",
                segment_path(dir, core_id, index).display()
            )
        };
        write_zeros(&file, 0, segment_bytes).context(what)?;
        file.sync_all().context(what)?;
        io.settle(&file);
    }
    Ok(file)
}

/// Creates segment `index` of `core_id`, not zero-filled yet: without
/// `preallocate` as [`create_now`] does; with it, under a temporary name
/// with its blocks reserved at full size, then published under its segment
/// name by a link that never replaces. If the writer made the segment
/// itself meanwhile ([`create_now`]), the link fails and nothing is left
/// behind. The name is durable on return.
fn publish<I: Io>(
    io: &I,
    dir: &Path,
    core_id: u32,
    index: u64,
    segment_bytes: u64,
    preallocate: bool,
) -> Result<I::File> {
    if !preallocate {
        return create_now(io, dir, core_id, index, segment_bytes, false);
    }
    let path = segment_path(dir, core_id, index);
    let temp = dir.join(format!(
        "{}{PREPARING_SUFFIX}",
        segment_name(core_id, index)
    ));
    let what = || format!("preparing {}", path.display());
    let _ = io.remove(&temp);
    let file = io.open(&temp, OpenMode::CreateNew).context(what)?;
    let linked = file
        .allocate(segment_bytes)
        .and_then(|()| io.link(&temp, &path))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                std::io::Error::new(e.kind(), "cancelled: the writer made the segment itself")
            }
            _ => e,
        });
    let _ = io.remove(&temp);
    linked.context(what)?;
    io.sync_dir(dir).context(what)?;
    Ok(file)
}

/// Overwrites bytes `[from, to)` of `file` with zeros (not synced), in
/// writes of [`ZERO_CHUNK`]: the one way the library writes zeros, so that
/// every zeroed range sits in small page-cache folios.
pub fn write_zeros<F: IoFile + ?Sized>(file: &F, from: u64, to: u64) -> std::io::Result<()> {
    zero_fill(from, to, |zeros, off| Some(file.write_at(zeros, off))).map(drop)
}

/// Writes zeros over `[from, to)`, [`ZERO_CHUNK`] at a time, each chunk
/// through `write`; `write` returning `None` stops the fill early. Returns
/// whether every chunk was written.
fn zero_fill(
    from: u64,
    to: u64,
    mut write: impl FnMut(&[u8], u64) -> Option<std::io::Result<()>>,
) -> std::io::Result<bool> {
    let mut off = from;
    while off < to {
        let n = (to - off).min(ZERO_CHUNK as u64) as usize;
        match write(&ZEROS[..n], off) {
            Some(written) => written?,
            None => return Ok(false),
        }
        off += n as u64;
    }
    Ok(true)
}

/// Lowers the calling thread to `SCHED_IDLE`: it then runs only on CPU time
/// no other thread wants, so a zero-fill never competes with appends.
fn run_when_idle() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid sched_param; pid 0 names the calling
        // thread. Failure only leaves the thread at its normal priority.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    }
}

/// The next segment of a lane, made by [`prepare`]'s steps on a thread of
/// its own (or found ready at open), and handed to the writer whenever it
/// asks, zero-filled or not.
///
/// The segment is published first and zero-filled afterwards, one chunk at
/// a time under the hand-over lock. Taking it takes that lock, and once it
/// is taken the thread writes nothing more: no zero can land on the
/// writer's data, and rotation waits for at most the chunk in progress,
/// never for the whole fill, its sync, or the file system's metadata work.
/// (A segment made on the append path instead cost 10-60 ms of `fallocate`
/// and directory sync whenever the appends outran the zero-fill.) Only a
/// writer that reaches the segment before it is even created waits for
/// that.
pub struct Preparing<F> {
    handover: Arc<Handover<F>>,
    /// `None` for a segment found ready.
    thread: Option<JoinHandle<()>>,
}

struct Handover<F> {
    stage: Mutex<Stage<F>>,
    published: Condvar,
    /// Bytes zero-filled so far (the tests check where a take or a stop
    /// cut the fill).
    filled: AtomicU64,
}

enum Stage<F> {
    /// Being created and published.
    Creating,
    /// Published; the thread zero-fills it while it stays here.
    Published(Arc<F>),
    /// Taken by the writer, or given up: the thread writes nothing more.
    Done,
    /// Could not be made; the writer makes the segment itself.
    Failed,
}

impl<F: IoFile> Preparing<F> {
    /// A segment that is ready already: published and zero-filled.
    pub fn ready(file: F) -> Preparing<F> {
        Preparing {
            handover: Arc::new(Handover {
                stage: Mutex::new(Stage::Published(Arc::new(file))),
                published: Condvar::new(),
                filled: AtomicU64::new(0),
            }),
            thread: None,
        }
    }

    /// Starts preparing segment `index` of `core_id`.
    pub fn start<I: Io<File = F>>(
        io: &I,
        dir: &Path,
        core_id: u32,
        index: u64,
        segment_bytes: u64,
        preallocate: bool,
    ) -> Preparing<F> {
        let handover = Arc::new(Handover {
            stage: Mutex::new(Stage::Creating),
            published: Condvar::new(),
            filled: AtomicU64::new(0),
        });
        let (io, dir, shared) = (io.clone(), dir.to_path_buf(), Arc::clone(&handover));
        let thread = std::thread::spawn(move || {
            // At normal priority: the writer may be waiting for this step.
            let made = publish(&io, &dir, core_id, index, segment_bytes, preallocate);
            {
                let mut stage = shared.lock();
                if matches!(*stage, Stage::Creating) {
                    *stage = match made {
                        Ok(file) => Stage::Published(Arc::new(file)),
                        Err(_) => Stage::Failed,
                    };
                }
                shared.published.notify_all();
            }
            if preallocate {
                run_when_idle();
                if let Some(file) = shared.zero_fill(segment_bytes) {
                    io.settle(&file);
                }
            }
        });
        Preparing {
            handover,
            thread: Some(thread),
        }
    }

    /// The segment, once published (waiting for that if needed), and the
    /// thread, to be joined later: it stops at its next chunk. `None` if
    /// the segment could not be made.
    pub fn take(self) -> (Option<Arc<F>>, Option<JoinHandle<()>>) {
        let mut stage = self.handover.lock();
        loop {
            let running = self.thread.as_ref().is_some_and(|t| !t.is_finished());
            match std::mem::replace(&mut *stage, Stage::Done) {
                Stage::Published(file) => return (Some(file), self.thread),
                Stage::Creating if running => {
                    *stage = Stage::Creating;
                    // With a timeout, in case the thread died before
                    // notifying.
                    stage = self
                        .handover
                        .published
                        .wait_timeout(stage, Duration::from_millis(1))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                _ => return (None, self.thread),
            }
        }
    }

    /// Stops the preparation and waits for its thread. A segment it already
    /// published stays, not fully zero-filled.
    pub fn stop(self) {
        *self.handover.lock() = Stage::Done;
        if let Some(thread) = self.thread {
            let _ = thread.join();
        }
    }
}

impl<F: IoFile> Handover<F> {
    fn lock(&self) -> MutexGuard<'_, Stage<F>> {
        self.stage.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Zero-fills the published segment, each chunk under the lock, until
    /// it is done or taken; then syncs it if it is still here, and returns
    /// it once synced. A failure only ends the fill: the writer's own syncs
    /// report a bad file.
    fn zero_fill(&self, segment_bytes: u64) -> Option<Arc<F>> {
        let filled = zero_fill(0, segment_bytes, |zeros, off| match &*self.lock() {
            Stage::Published(file) => {
                let written = file.write_at(zeros, off);
                if written.is_ok() {
                    self.filled.fetch_add(zeros.len() as u64, Ordering::Relaxed);
                }
                Some(written)
            }
            _ => None,
        });
        if !filled.unwrap_or(false) {
            return None;
        }
        let file = match &*self.lock() {
            Stage::Published(file) => Arc::clone(file),
            _ => return None,
        };
        file.sync_all().ok().map(|()| file)
    }
}

/// Removes segment `index` of lane `core_id`. Not durable by itself: sync
/// the directory after the removals that must stick.
pub fn remove_segment<I: Io>(io: &I, dir: &Path, core_id: u32, index: u64) -> Result<()> {
    let path = segment_path(dir, core_id, index);
    io.remove(&path)
        .context(|| format!("removing {}", path.display()))
}

/// Makes segment `index` of `core_id` at once: created (or opened, if a
/// preparation published it meanwhile), blocks reserved with `preallocate`,
/// its name durable. Not zero-filled: its first syncs may cost a little more.
pub fn create_now<I: Io>(
    io: &I,
    dir: &Path,
    core_id: u32,
    index: u64,
    segment_bytes: u64,
    preallocate: bool,
) -> Result<I::File> {
    let path = segment_path(dir, core_id, index);
    let what = || format!("creating {}", path.display());
    let file = match io.open(&path, OpenMode::CreateNew) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            io.open(&path, OpenMode::Existing)
        }
        other => other,
    }
    .context(what)?;
    if preallocate {
        file.allocate(segment_bytes).context(what)?;
    }
    io.sync_dir(dir).context(what)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemIo;

    #[test]
    fn names_sort_and_parse_back() {
        let a = segment_name(3, 9);
        let b = segment_name(3, 10);
        assert!(a < b);
        assert_eq!(parse_segment_name(&a), Some((3, 9)));
        assert_eq!(
            parse_segment_name(&segment_name(u32::from(u16::MAX), 1 << 33)),
            Some((65535, 1 << 33))
        );
        for bad in [
            "wal-1-2.log",
            "wal-00001-000000000x.log",
            "wal-00001-0000000001.log.tmp",
            "x",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn prepare_zero_fills_and_makes_the_name_durable() {
        let (io, dir) = wal_dir();
        prepare(&io, dir, 0, 1, 3 * ZERO_CHUNK as u64 / 2, true).unwrap();
        io.crash();
        let bytes = io
            .contents(&segment_path(dir, 0, 1))
            .expect("survives a crash");
        assert_eq!(bytes.len(), 3 * ZERO_CHUNK / 2);
        assert!(bytes.iter().all(|&b| b == 0));
        assert!(
            prepare(&io, dir, 0, 1, 4096, true).is_err(),
            "never reuses a name"
        );
    }

    /// An empty WAL directory in memory.
    fn wal_dir() -> (MemIo, &'static Path) {
        let io = MemIo::new();
        let dir = Path::new("/wal");
        io.create_dir(dir).unwrap();
        (io, dir)
    }

    /// Starts preparing segment `index` of lane 0 and waits until it is
    /// published.
    fn published(io: &MemIo, index: u64, size: u64) -> Preparing<crate::io::MemFile> {
        let preparing = Preparing::start(io, Path::new("/wal"), 0, index, size, true);
        while matches!(*preparing.handover.lock(), Stage::Creating) {
            std::thread::yield_now();
        }
        preparing
    }

    #[test]
    fn a_preparation_left_alone_publishes_a_zero_filled_segment() {
        let (io, dir) = wal_dir();
        let size = 8 * ZERO_CHUNK as u64;
        let preparing = Preparing::start(&io, dir, 0, 2, size, true);
        while !preparing.thread.as_ref().unwrap().is_finished() {
            std::thread::yield_now();
        }
        assert_eq!(preparing.handover.filled.load(Ordering::Relaxed), size);
        let (file, thread) = preparing.take();
        thread.unwrap().join().unwrap();
        assert_eq!(file.expect("published").size().unwrap(), size);
        io.crash();
        io.restart();
        assert_eq!(io.list(dir).unwrap(), vec![segment_name(0, 2)]);
        let bytes = io.contents(&segment_path(dir, 0, 2)).unwrap();
        assert_eq!(bytes.len() as u64, size);
        assert!(bytes.iter().all(|&b| b == 0));
    }

    #[test]
    fn no_zero_lands_on_what_the_writer_writes_after_taking_a_segment() {
        let (io, dir) = wal_dir();
        let chunks = 256u64;
        let size = chunks * ZERO_CHUNK as u64;
        let mut taken_part_way = 0;
        for index in 0..10 {
            let preparing = published(&io, index, size);
            let handover = Arc::clone(&preparing.handover);
            let (file, thread) = preparing.take();
            let file = file.expect("published");
            // As the writer would: bytes all over the segment, right away.
            for chunk in 0..chunks {
                file.write_at(b"data", chunk * ZERO_CHUNK as u64 + 8)
                    .unwrap();
            }
            thread.unwrap().join().unwrap();
            if handover.filled.load(Ordering::Relaxed) < size {
                taken_part_way += 1;
            }
            let bytes = io.contents(&segment_path(dir, 0, index)).unwrap();
            for chunk in 0..chunks as usize {
                let at = chunk * ZERO_CHUNK + 8;
                assert_eq!(
                    &bytes[at..at + 4],
                    b"data",
                    "chunk {chunk} of segment {index}"
                );
            }
        }
        assert!(taken_part_way > 0, "every take came after the whole fill");
    }

    #[test]
    fn a_stopped_preparation_writes_nothing_more() {
        let (io, dir) = wal_dir();
        let size = 256 * ZERO_CHUNK as u64;
        let mut stopped_part_way = 0;
        for index in 0..10 {
            let preparing = published(&io, index, size);
            let handover = Arc::clone(&preparing.handover);
            preparing.stop();
            let filled = handover.filled.load(Ordering::Relaxed);
            if filled < size {
                stopped_part_way += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
            assert_eq!(handover.filled.load(Ordering::Relaxed), filled);
            assert!(matches!(*handover.lock(), Stage::Done));
            assert!(
                io.exists(&segment_path(dir, 0, index)).unwrap(),
                "stays published"
            );
        }
        assert!(stopped_part_way > 0, "every stop came after the whole fill");
    }

    #[test]
    fn a_preparation_that_cannot_create_its_segment_hands_over_nothing() {
        let (io, dir) = wal_dir();
        io.fail(crate::io::FaultOp::Open, ".prep", 0, None, libc::ENOSPC);
        let (file, thread) = Preparing::start(&io, dir, 0, 0, 4096, true).take();
        thread.unwrap().join().unwrap();
        assert!(file.is_none());
        assert!(io.list(dir).unwrap().is_empty());
    }

    #[test]
    fn a_preparation_never_replaces_a_segment_the_writer_made() {
        let (io, dir) = wal_dir();
        let made = create_now(&io, dir, 0, 3, 4096, true).unwrap();
        made.write_at(b"data", 64).unwrap();
        assert!(prepare(&io, dir, 0, 3, 4096, true).is_err());
        let (file, thread) = Preparing::start(&io, dir, 0, 3, 4096, true).take();
        thread.unwrap().join().unwrap();
        assert!(file.is_none(), "a background preparation neither");
        assert_eq!(
            &io.contents(&segment_path(dir, 0, 3)).unwrap()[64..68],
            b"data"
        );
        assert_eq!(
            io.list(dir).unwrap(),
            vec![segment_name(0, 3)],
            "no temporary file left"
        );
        // And the other way round: create_now takes a published preparation.
        prepare(&io, dir, 0, 4, 4096, true).unwrap();
        assert_eq!(
            create_now(&io, dir, 0, 4, 4096, true)
                .unwrap()
                .size()
                .unwrap(),
            4096
        );
    }

    #[test]
    fn write_zeros_covers_its_range_and_nothing_else() {
        let (io, dir) = wal_dir();
        let file = io.open(&dir.join("f"), OpenMode::CreateNew).unwrap();
        let len = 3 * ZERO_CHUNK + 100;
        file.write_at(&vec![0xAB; len], 0).unwrap();
        write_zeros(&file, 10, (len - 10) as u64).unwrap();
        let bytes = io.contents(&dir.join("f")).unwrap();
        assert_eq!(bytes.len(), len);
        assert!(
            bytes[..10]
                .iter()
                .chain(&bytes[len - 10..])
                .all(|&b| b == 0xAB)
        );
        assert!(bytes[10..len - 10].iter().all(|&b| b == 0));
    }

    #[test]
    fn list_splits_known_and_foreign_lanes() {
        let (io, dir) = wal_dir();
        for (core, index) in [(0, 2), (0, 1), (1, 0), (4, 0)] {
            prepare(&io, dir, core, index, 0, false).unwrap();
        }
        let (lanes, foreign) = list_segments(&io, dir, 2).unwrap();
        assert_eq!(lanes, vec![vec![1, 2], vec![0]]);
        assert_eq!(foreign, vec![segment_name(4, 0)]);
    }
}
