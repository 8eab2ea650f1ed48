//! W2, W3 and W6: durable appends. Every corewal variant ({blocking sync,
//! sync submit + poll/wait} × {sync backend, io_uring backend} × {through
//! the page cache only, direct writes before syncs (the default), every
//! write direct}) runs in the
//! same rounds as one raw baseline: each round runs a block of batches on
//! every side, the order of the sides rotating from round to round, so the
//! machine's fdatasync phases (~35 µs or ~4 ms, lasting seconds) fall on
//! all sides alike.

use std::collections::VecDeque;
use std::ops::Range;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use corewal::writer::SyncCompletion;
use corewal::{Backend, FileIo, Manager, Options, Writer};

use crate::bench::Result;
use crate::engine;
use crate::raw::{Frames, RawLog};
use crate::report::InFlight;

/// How a corewal variant makes its appends durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `sync()` after each batch.
    Blocking,
    /// `sync_submit()` then `wait(token)` after each batch (W2).
    SubmitWait,
    /// `sync_submit()` then `poll` until that token completes, sleeping on
    /// the writer's event fd between empty polls (W3).
    SubmitPoll,
    /// `sync_submit()` after each batch without waiting, `poll` after every
    /// append; the outstanding syncs are waited for at the end of each block
    /// (W6).
    Pipelined,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Blocking => "blocking",
            Mode::SubmitWait => "submit+wait",
            Mode::SubmitPoll => "submit+poll",
            Mode::Pipelined => "pipelined",
        }
    }
}

/// Which segment writes of a variant go direct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// None: `direct_sync` off.
    PageCache,
    /// The write before a sync that is alone: the defaults.
    BeforeSyncs,
    /// Every write: `direct_io`.
    Direct,
}

impl Writes {
    pub const ALL: [Writes; 3] = [Writes::PageCache, Writes::BeforeSyncs, Writes::Direct];

    /// Its word in labels and directory names; none for the defaults.
    pub fn tag(self) -> Option<&'static str> {
        match self {
            Writes::PageCache => Some("buffered"),
            Writes::BeforeSyncs => None,
            Writes::Direct => Some("direct"),
        }
    }
}

/// One corewal side of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// The workload it belongs to (W3 and W6 share a group and a raw side).
    pub id: &'static str,
    pub backend: Backend,
    /// The `direct_io` and `direct_sync` options.
    pub writes: Writes,
    pub mode: Mode,
}

impl Variant {
    pub fn label(&self) -> String {
        format!(
            "{}{} {}",
            engine::backend_name(self.backend),
            self.writes.tag().map_or(String::new(), |t| format!(" {t}")),
            self.mode.name()
        )
    }
}

/// How often a submit+poll variant found nothing and slept on the event fd.
#[derive(Debug, Clone, Copy, Default)]
pub struct PollStats {
    /// Polls that returned no completion.
    pub empty_polls: u64,
    /// Sleeps on the event fd that ran into their timeout: the fd did not
    /// turn readable although a sync was in flight (a lost wake-up if the
    /// next poll then finds the completion).
    pub fd_timeouts: u64,
}

/// What one corewal variant did.
pub struct Measured {
    pub variant: Variant,
    /// Time of each batch (append(s) and the sync that covers them).
    pub times: Vec<Duration>,
    /// Bytes of frame data written.
    pub bytes: u64,
    /// `Pipelined`: syncs in flight after each append.
    pub in_flight: Option<InFlight>,
    pub poll: PollStats,
}

/// The outcome of a group: the raw side, every variant that ran, and the
/// ones that could not (their backend is unsupported here).
pub struct Group {
    pub records: u64,
    pub raw_times: Vec<Duration>,
    pub raw_bytes: u64,
    pub measured: Vec<Measured>,
    pub skipped: Vec<(Variant, String)>,
    /// Background work (the next segments' zero-fill) that had not finished
    /// when timing started, if any.
    pub unsettled: Option<String>,
    /// How long the wait for that background work took.
    pub settle_secs: f64,
}

/// Longest wait for the managers' background segment preparation.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Sleep on the event fd before polling again anyway.
pub const FD_WAIT_MS: i32 = 100;
/// A sync that has not completed after this long is reported as lost.
const LOST_AFTER: Duration = Duration::from_secs(30);

/// Runs `batches` batches of `batch` appends on the raw baseline and on
/// every variant (one lane, `options` with the variant's backend), in
/// rounds of interleaved blocks of `block` batches. `say` reports progress.
#[allow(clippy::too_many_arguments)]
pub fn run(
    root: &Path,
    name: &str,
    batch: u64,
    batches: u64,
    block: u64,
    options: &Options,
    variants: &[Variant],
    say: &dyn Fn(String),
) -> Result<Group> {
    let records = batch * batches;
    let frames = Frames::encode(0, records);
    let raw_path = root.join(format!("{name}-raw-0.log"));
    let mut log = RawLog::create(&raw_path, frames.byte_len())?;

    let threads_before = busy_threads();
    let mut runners = Vec::new();
    let mut skipped = Vec::new();
    for &variant in variants {
        let dir = root.join(format!(
            "{name}-{}{}-{}-corewal",
            engine::backend_name(variant.backend),
            variant
                .writes
                .tag()
                .map_or(String::new(), |t| format!("-{t}")),
            variant.mode.name().replace('+', "-")
        ));
        let options = Options {
            num_cores: 1,
            backend: variant.backend,
            direct_io: variant.writes == Writes::Direct,
            direct_sync: variant.writes == Writes::BeforeSyncs,
            ..options.clone()
        };
        match Manager::open(&dir, &options) {
            Ok(manager)
                if variant.writes == Writes::BeforeSyncs && !manager.backend().direct_sync =>
            {
                // Silently off where direct I/O is refused: the same as
                // the page-cache variant.
                manager.close()?;
                std::fs::remove_dir_all(&dir)?;
                skipped.push((
                    variant,
                    "direct I/O is not available here, so direct_sync is off".into(),
                ));
            }
            Ok(manager) => {
                let in_use = manager.backend().backend;
                if in_use != variant.backend {
                    return Err(format!(
                        "{}: asked for the {} backend, the manager uses {}",
                        variant.id,
                        engine::backend_name(variant.backend),
                        engine::backend_name(in_use)
                    )
                    .into());
                }
                runners.push(Runner::new(variant, manager, dir));
            }
            Err(corewal::Error::Unsupported(why)) => skipped.push((variant, why)),
            Err(e) => return Err(e.into()),
        }
    }
    // Each open starts zero-filling the lane's next segment in the
    // background; the raw file was zero-filled before timing, so let that
    // finish first (it would slow every side's fdatasyncs alike).
    say(format!(
        "{name}: waiting for background segment preparation"
    ));
    let settle_start = Instant::now();
    let unsettled = settle(threads_before);
    // Writeback and journal work left by earlier workloads (W1 deletes
    // hundreds of MB) runs on kernel threads, which also finish io_uring
    // requests: let it end before timing, so it falls on no variant.
    sync_file_system(root)?;
    let settle_secs = settle_start.elapsed().as_secs_f64();

    let mut raw_times = Vec::with_capacity(batches as usize);
    let sides = runners.len() + 1;
    let block = block.max(1);
    let rounds = batches.div_ceil(block);
    for round in 0..rounds {
        if round % 16 == 0 {
            say(format!("{name}: round {} of {rounds}", round + 1));
        }
        let block = round * block..((round + 1) * block).min(batches);
        // Rotate the order, so no side always follows another.
        for k in 0..sides {
            match (k + round as usize) % sides {
                0 => raw_batches(&mut log, &frames, batch, block.clone(), &mut raw_times)?,
                i => runners[i - 1].block(batch, block.clone())?,
            }
        }
    }
    drop(log);
    std::fs::remove_file(&raw_path)?;
    let mut measured = Vec::new();
    for runner in runners {
        measured.push(runner.finish()?);
    }
    Ok(Group {
        records,
        raw_times,
        raw_bytes: frames.byte_len(),
        measured,
        skipped,
        unsettled,
        settle_secs,
    })
}

/// A corewal variant's manager and what it measured so far.
struct Runner {
    manager: Manager,
    dir: PathBuf,
    state: State,
}

/// A runner's measurements and sync bookkeeping.
struct State {
    variant: Variant,
    times: Vec<Duration>,
    in_flight: InFlight,
    /// Tokens submitted and not yet completed, oldest first (Pipelined).
    outstanding: VecDeque<u64>,
    poll: PollStats,
    completions: Vec<SyncCompletion>,
}

impl Runner {
    fn new(variant: Variant, manager: Manager, dir: PathBuf) -> Runner {
        Runner {
            manager,
            dir,
            state: State {
                variant,
                times: Vec::new(),
                in_flight: InFlight::default(),
                outstanding: VecDeque::new(),
                poll: PollStats::default(),
                completions: Vec::with_capacity(64),
            },
        }
    }

    /// Batches `block`: each `batch` appends and the sync that covers them.
    fn block(&mut self, batch: u64, block: Range<u64>) -> Result<()> {
        let writer = self.manager.writer(0)?;
        self.state.block(writer, batch, block)
    }

    /// Checks that everything written is durable, closes the manager and
    /// removes its directory.
    fn finish(self) -> Result<Measured> {
        let Runner {
            manager,
            dir,
            state,
        } = self;
        let writer = manager.writer(0)?;
        let (bytes, synced) = (writer.position(), writer.synced_position());
        if synced != bytes {
            return Err(format!(
                "{}: after the last completion synced_position is {synced}, position {bytes}",
                state.variant.label()
            )
            .into());
        }
        manager.close()?;
        std::fs::remove_dir_all(&dir)?;
        let pipelined = state.variant.mode == Mode::Pipelined;
        Ok(Measured {
            variant: state.variant,
            times: state.times,
            bytes,
            in_flight: pipelined.then_some(state.in_flight),
            poll: state.poll,
        })
    }
}

impl State {
    fn block(&mut self, writer: &Writer<FileIo>, batch: u64, block: Range<u64>) -> Result<()> {
        for b in block {
            let records = b * batch..(b + 1) * batch;
            let start = Instant::now();
            match self.variant.mode {
                Mode::Blocking => {
                    append_all(writer, records)?;
                    writer.sync()?;
                }
                Mode::SubmitWait => {
                    append_all(writer, records)?;
                    let token = writer.sync_submit()?;
                    let done = writer.wait(token)?;
                    check(&done, token)?;
                }
                Mode::SubmitPoll => {
                    append_all(writer, records)?;
                    let token = writer.sync_submit()?;
                    self.poll_until(writer, token)?;
                }
                Mode::Pipelined => {
                    let last = records.end - 1;
                    for i in records {
                        engine::append(writer, 0, i)?;
                        if i == last {
                            self.outstanding.push_back(writer.sync_submit()?);
                            self.in_flight.syncs += 1;
                        }
                        self.collect(writer)?;
                        self.in_flight.sample(self.outstanding.len() as u64);
                    }
                }
            }
            self.times.push(start.elapsed());
        }
        if self.variant.mode == Mode::Pipelined {
            // The block is done when what it appended is durable: wait for
            // the syncs still out, oldest first, and count it in its time.
            let start = Instant::now();
            while let Some(&token) = self.outstanding.front() {
                let done = writer.wait(token)?;
                check(&done, token)?;
                self.outstanding.pop_front();
            }
            if let Some(last) = self.times.last_mut() {
                *last += start.elapsed();
            }
        }
        Ok(())
    }

    /// Pipelined: takes the completions ready now, which must arrive in
    /// token order.
    fn collect(&mut self, writer: &Writer<FileIo>) -> Result<()> {
        writer.poll_into(64, &mut self.completions)?;
        for done in self.completions.drain(..) {
            let Some(expected) = self.outstanding.pop_front() else {
                return Err(format!(
                    "{}: poll returned token {} but no sync was outstanding",
                    self.variant.id, done.token
                )
                .into());
            };
            check(&done, expected)?;
        }
        Ok(())
    }

    /// Polls until `token` completes, sleeping on the event fd whenever a
    /// poll comes back empty.
    fn poll_until(&mut self, writer: &Writer<FileIo>, token: u64) -> Result<()> {
        let start = Instant::now();
        loop {
            writer.poll_into(16, &mut self.completions)?;
            if let Some(done) = self.completions.pop() {
                if !self.completions.is_empty() {
                    return Err(format!(
                        "{}: poll returned {} completions with one sync outstanding",
                        self.variant.id,
                        self.completions.len() + 1
                    )
                    .into());
                }
                return check(&done, token);
            }
            self.poll.empty_polls += 1;
            if !wait_readable(writer.event_fd(), FD_WAIT_MS) {
                self.poll.fd_timeouts += 1;
                if start.elapsed() > LOST_AFTER {
                    return Err(format!(
                        "{}: sync token {token} had not completed after {} s of polling \
                         (event fd never turned readable)",
                        self.variant.id,
                        LOST_AFTER.as_secs()
                    )
                    .into());
                }
            }
        }
    }
}

fn append_all(writer: &Writer<FileIo>, records: Range<u64>) -> Result<()> {
    for i in records {
        engine::append(writer, 0, i)?;
    }
    Ok(())
}

/// A completion must be the one expected and must have succeeded.
fn check(done: &SyncCompletion, token: u64) -> Result<()> {
    if done.token != token {
        return Err(format!(
            "sync completions out of order: got token {}, expected {token}",
            done.token
        )
        .into());
    }
    done.result
        .clone()
        .map_err(|why| format!("sync token {token} failed: {why}").into())
}

/// Whether `fd` turned readable within `timeout_ms`.
fn wait_readable(fd: RawFd, timeout_ms: i32) -> bool {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, and the count says one.
    let n = unsafe { libc::poll(&mut pollfd, 1, timeout_ms) };
    // EINTR counts as a wake-up: the caller polls again either way.
    n != 0
}

/// The raw side of a block: each `batch` frames written then fdatasynced.
pub fn raw_batches(
    log: &mut RawLog,
    frames: &Frames,
    batch: u64,
    block: Range<u64>,
    times: &mut Vec<Duration>,
) -> Result<()> {
    for b in block {
        let start = Instant::now();
        for i in b * batch..(b + 1) * batch {
            log.append(frames.get(i as usize))?;
        }
        log.sync()?;
        times.push(start.elapsed());
    }
    Ok(())
}

/// Threads of this process that do work of ours, io_uring's kernel workers
/// (`iou-wrk-*`, `iou-sqp-*`) left out: they come and go on their own.
/// `None` where /proc is unavailable.
fn busy_threads() -> Option<usize> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    Some(
        tasks
            .filter_map(|t| t.ok())
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|comm| !comm.starts_with("iou-"))
            })
            .count(),
    )
}

/// Waits until the threads started since `before` was counted (the
/// managers' segment preparations) have finished, or the timeout. Returns
/// what was still running if it gave up.
/// `syncfs` of the file system holding `dir`.
fn sync_file_system(dir: &Path) -> Result<()> {
    let dir = std::fs::File::open(dir)?;
    // SAFETY: syncfs takes a descriptor `dir` keeps open.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

fn settle(before: Option<usize>) -> Option<String> {
    let before = before?;
    let start = Instant::now();
    loop {
        let now = busy_threads()?;
        if now <= before {
            return None;
        }
        if start.elapsed() > SETTLE_TIMEOUT {
            return Some(format!(
                "{} background threads still running after {} s; timing started anyway",
                now - before,
                SETTLE_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_runs_and_leaves_everything_durable() {
        let root = tempfile::tempdir().unwrap();
        let variants: Vec<Variant> = [
            Mode::Blocking,
            Mode::SubmitWait,
            Mode::SubmitPoll,
            Mode::Pipelined,
        ]
        .into_iter()
        .flat_map(|mode| {
            [Backend::Sync, Backend::IoUring]
                .into_iter()
                .flat_map(move |backend| {
                    Writes::ALL.map(|writes| Variant {
                        id: "T",
                        backend,
                        writes,
                        mode,
                    })
                })
        })
        .collect();
        // Small segments: 8 managers must not zero-fill 64 MiB each.
        let options = Options {
            segment_bytes: 64 << 10,
            ..Options::default()
        };
        let group = run(root.path(), "t", 4, 10, 3, &options, &variants, &|_| {}).unwrap();
        // 10 batches in blocks of 3: 4 rounds, the last one short.
        assert_eq!(group.records, 40);
        assert_eq!(group.raw_times.len(), 10);
        assert_eq!(group.measured.len() + group.skipped.len(), variants.len());
        for (variant, why) in &group.skipped {
            assert!(
                variant.backend == Backend::IoUring || variant.writes != Writes::PageCache,
                "{why}"
            );
        }
        for m in &group.measured {
            assert_eq!(m.times.len(), 10, "{}", m.variant.label());
            assert_eq!(m.bytes, group.raw_bytes, "{}", m.variant.label());
            match m.in_flight {
                Some(f) => {
                    assert_eq!(m.variant.mode, Mode::Pipelined);
                    assert_eq!((f.syncs, f.samples), (10, 40));
                }
                None => assert_ne!(m.variant.mode, Mode::Pipelined),
            }
        }
        // Everything was removed but the temporary directory itself.
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[test]
    fn modes_have_distinct_names() {
        let names = [
            Mode::Blocking,
            Mode::SubmitWait,
            Mode::SubmitPoll,
            Mode::Pipelined,
        ]
        .map(Mode::name);
        for (i, a) in names.iter().enumerate() {
            assert!(!names[i + 1..].contains(a), "{a}");
        }
    }
}
