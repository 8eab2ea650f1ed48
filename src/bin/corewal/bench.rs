//! `corewal bench`: the workloads of BENCH.md, each run against corewal and
//! against the raw baseline in the same process, interleaved so that the
//! machine's noise (fdatasync latency switches between ~0.15 ms and ~4 ms
//! phases) hits both sides alike.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use corewal::io::BackendInUse;
use corewal::{Backend, Options};

use crate::durable::{self, Group, Mode, Variant, Writes};
use crate::engine::{self, backend_name};
use crate::json::JsonObject;
use crate::mem::Probe;
use crate::progress::Progress;
use crate::raw::{self, Frames, RawLog, Scanned};
use crate::report::{self, Latency, Outcome, Side, compact, thousands};
use crate::timed;

pub const USAGE: &str = "\
Run the benchmark workloads of BENCH.md against corewal and a raw baseline

Usage: corewal bench [OPTIONS]

Each workload runs against corewal and against the raw baseline (the same
frames pre-encoded, written with pwrite through a 64 KiB buffer into a
preallocated zero-filled file, fdatasync at the same points) in this one
process, and prints both with their ratio corewal/raw and the target.

  W1          1 writer appends 2,000,000 records, then one sync
  W1-latency  W1 again with every append timed: p50/p99/p99.9/max, and
              the appends that rotated to a new segment against the others
  W2          1 writer, every append followed by a sync, 5,000 records
  W3          1 writer, 200,000 records, sync after every 64
  W4          2 writers on 2 threads, 1,000,000 records each, then sync
  W5          read W1's log back through the recovery iterator, and W4's
              (2 lanes merged)
  W6          1 writer, 200,000 records, a sync submitted every 64 while
              appends go on, completions polled after every append

W2 and W3 run twelve corewal variants, {blocking sync(), sync_submit +
wait (W2) or poll (W3)} x {sync backend, io_uring backend} x {buffered:
through the page cache only (direct_sync 0); unmarked, the defaults:
direct writes before syncs that are alone (direct_sync 1); direct: every
write direct (direct_io 1)}, and W6 one per backend and setting, all
interleaved with one raw baseline in the same rounds of short blocks (W6
shares W3's rounds and raw). io_uring or direct variants are skipped,
with a note, where the library reports them unsupported.

Options:
      --dir DIR      Put the data in a fresh directory inside DIR
                     (default: the system's temporary directory); it is
                     removed at the end
      --json         Print one JSON object per workload per line instead of
                     the table
      --only LIST    Run only these workloads, e.g. --only W1,W3
      --scale F      Multiply every record count by F (e.g. 0.01 for a quick
                     smoke run; default 1)
      --backend B    Backend of W1, W1-latency, W4 and W5: auto (the
                     default), sync or io_uring
  -h, --help         Print this help
";

pub type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// The workloads of BENCH.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    W1,
    W1Latency,
    W2,
    W3,
    W4,
    W5,
    W6,
}

impl Workload {
    pub const ALL: [Workload; 7] = [
        Workload::W1,
        Workload::W1Latency,
        Workload::W2,
        Workload::W3,
        Workload::W4,
        Workload::W5,
        Workload::W6,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::W1 => "W1",
            Workload::W1Latency => "W1-latency",
            Workload::W2 => "W2",
            Workload::W3 => "W3",
            Workload::W4 => "W4",
            Workload::W5 => "W5",
            Workload::W6 => "W6",
        }
    }

    pub fn parse(name: &str) -> Option<Workload> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name().eq_ignore_ascii_case(name))
    }
}

/// Options of `corewal bench`.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: Option<PathBuf>,
    pub json: bool,
    pub only: Option<Vec<Workload>>,
    pub scale: f64,
    /// Backend of W1, W1-latency, W4 and W5.
    pub backend: Backend,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            dir: None,
            json: false,
            only: None,
            scale: 1.0,
            backend: Backend::Auto,
        }
    }
}

const W1_RECORDS: u64 = 2_000_000;
const W2_RECORDS: u64 = 5_000;
const W3_RECORDS: u64 = 200_000;
const W3_BATCH: u64 = 64;
const W6_RECORDS: u64 = 200_000;
const W6_BATCH: u64 = 64;
// W6 runs in W3's rounds, with W3's raw side: the same records and batches.
const _: () = assert!(W6_RECORDS == W3_RECORDS && W6_BATCH == W3_BATCH);
const W4_RECORDS_PER_WRITER: u64 = 1_000_000;
const W4_WRITERS: u32 = 2;
/// W2 and W3 (with W6) interleave their sides in rounds of one block per
/// side, a block being this many batches. fdatasync latency switches
/// between ~40 µs and ~4 ms phases that last from 100 ms to seconds: a
/// round must stay well inside one phase, or whichever side happens to run
/// during a slow phase takes all of it. W2: 5 durable appends per block,
/// a round of 5 sides at most ~100 ms. W3/W6: 8 syncs per block (W6 waits
/// for its outstanding syncs at the end of each block, so this also
/// bounds how many it can have in flight), a round of 7 sides at most
/// ~250 ms.
const W2_BLOCK: u64 = 5;
const W3_BLOCK: u64 = 8;

/// Targets of BENCH.md.
const W1_MIN_RATIO: f64 = 0.80;
const W2_MIN_RATIO: f64 = 0.95;
const W2_MAX_P99_RATIO: f64 = 1.2;
const W3_MIN_RATIO: f64 = 0.90;
/// okaywal with checkpointing in BENCH.md's table, the best peer on W3.
const W3_OKAYWAL_RATE: f64 = 484_000.0;
const W4_MIN_SCALING: f64 = 1.8;
const W4_MIN_RATIO: f64 = 0.80;
const W5_MERGED_MIN_RATE: f64 = 10_000_000.0;
const W5_MAX_PEAK_RSS_MB: f64 = 64.0;

/// Runs the workloads `config` asks for and prints the report.
pub fn run(config: &Config) -> Result<()> {
    let base = config.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).map_err(|e| format!("creating {}: {e}", base.display()))?;
    let root = tempfile::Builder::new()
        .prefix("corewal-bench-")
        .tempdir_in(&base)
        .map_err(|e| format!("creating a directory in {}: {e}", base.display()))?;
    let mut workloads = config.only.clone().unwrap_or(Workload::ALL.to_vec());
    workloads.sort();
    workloads.dedup();

    let auto = auto_backend(root.path())?;
    let mut bench = Bench::new(root.path(), config, workloads.clone());
    let mut outcomes = Vec::new();
    for workload in workloads {
        for outcome in bench.run(workload)? {
            if config.json {
                println!("{}", outcome.to_json());
            }
            outcomes.push(outcome);
        }
        for skipped in bench.skipped.drain(..) {
            if config.json {
                println!("{skipped}");
            }
        }
    }
    bench.progress.clear();
    if !config.json {
        let heading = heading(config, &base, &auto);
        let mut notes = notes(&bench.wanted);
        notes.append(&mut bench.notes);
        print!("{}", report::table(&outcomes, &heading, &notes));
    }
    root.close()
        .map_err(|e| format!("removing the benchmark data: {e}"))?;
    Ok(())
}

/// What `Backend::Auto` picks here, and why if it fell back: a throwaway
/// WAL opened with small, unfilled segments.
fn auto_backend(root: &Path) -> Result<BackendInUse> {
    let dir = root.join("auto-probe");
    let options = Options {
        num_cores: 1,
        segment_bytes: 64 << 10,
        preallocate: false,
        backend: Backend::Auto,
        ..Options::default()
    };
    let manager = corewal::Manager::open(&dir, &options)?;
    let in_use = manager.backend().clone();
    manager.close()?;
    drop(manager);
    std::fs::remove_dir_all(&dir)?;
    Ok(in_use)
}

/// The table's first lines: scale, place, and the backends.
fn heading(config: &Config, base: &Path, auto: &BackendInUse) -> String {
    let picked = match &auto.fallback_reason {
        Some(why) => format!(
            "backend auto -> {} here (fallback: {why})",
            backend_name(auto.backend)
        ),
        None => format!("backend auto -> {} here", backend_name(auto.backend)),
    };
    let chosen = match config.backend {
        Backend::Auto => format!("auto = {}", backend_name(auto.backend)),
        other => backend_name(other).to_owned(),
    };
    format!(
        "corewal bench: scale {}, default options, data under {}\n\
         {picked}; W1, W1-latency, W4 and W5 write with --backend {chosen}; \
         W2, W3 and W6 run on each backend",
        config.scale,
        base.display()
    )
}

fn notes(wanted: &[Workload]) -> Vec<String> {
    let mut notes: Vec<String> = [
        "ratio = corewal / raw, same run. raw = the same frames pre-encoded before timing, pwrite through a",
        "  64 KiB buffer into a file preallocated with zeros and synced once, fdatasync at the same points;",
        "  for W5 one buffered pass checking every frame's crc32c. W1/W4/W5 run raw first, then corewal;",
        "  timing starts after the manager is open. W5 fsyncs both sides' files before reading, so that",
        "  neither read races the writeback of what W1/W4 left dirty; corewal's time includes opening the",
        "  iterator (the scan of every lane).",
        "W2, W3, W6: every corewal variant and one raw side run in rounds of one block per side, in",
        "  rotating order; a block is 5 appends+syncs (W2) or 8 batches of 64 (W3, W6). Timing starts once",
        "  every variant's manager is open and its background preparation of the next segment is done.",
        "  blocking = sync(); submit+wait = sync_submit() then wait(token); submit+poll = sync_submit() then",
        "  poll() until the token completes, sleeping on event_fd() between empty polls; pipelined (W6) =",
        "  sync_submit() after every 64th append without waiting and poll() after every append, the syncs",
        "  still out waited for at the end of each block (counted, so at most 8 are in flight). Syncs in",
        "  flight = submitted - completed, sampled after every append.",
        "MB = 10^6 bytes of frame data. Peak RSS = VmHWM of the whole process, reset before each read",
        "  (* = reset unavailable: lifetime peak); RSS growth = peak - RSS before the read.",
        "¹ okaywal's figure from BENCH.md, measured in another run: an absolute, noisy comparison.",
    ]
    .map(String::from)
    .to_vec();
    if wanted.contains(&Workload::W6) {
        notes.push(
            "² W6's raw is W3's raw (fdatasync after every 64, blocking), run in the same rounds; \
             W6 has no target, its ratio is for reference."
                .into(),
        );
    }
    notes
}

/// Where a write workload left its data, for W5 to read back.
struct Written {
    corewal_dir: PathBuf,
    raw_files: Vec<PathBuf>,
    records: u64,
}

impl Written {
    fn at(root: &Path, name: &str, lanes: u32, records_per_lane: u64) -> Written {
        Written {
            corewal_dir: root.join(format!("{name}-corewal")),
            raw_files: (0..lanes)
                .map(|lane| root.join(format!("{name}-raw-{lane}.log")))
                .collect(),
            records: records_per_lane * u64::from(lanes),
        }
    }

    fn lanes(&self) -> u32 {
        self.raw_files.len() as u32
    }

    fn records_per_lane(&self) -> u64 {
        self.records / u64::from(self.lanes())
    }
}

struct Bench<'a> {
    root: &'a Path,
    scale: f64,
    /// Backend of W1, W1-latency, W4 and W5.
    backend: Backend,
    wanted: Vec<Workload>,
    progress: Progress,
    w1: Option<Written>,
    w4: Option<Written>,
    /// corewal's W1 rate, for W4's scaling target.
    w1_rate: Option<f64>,
    /// W6's outcomes, measured in W3's rounds, shown in W6's turn.
    w6: Option<Vec<Outcome>>,
    /// Lines for under the table.
    notes: Vec<String>,
    /// Variants that could not run, as JSON lines.
    skipped: Vec<JsonObject>,
}

impl<'a> Bench<'a> {
    fn new(root: &'a Path, config: &Config, wanted: Vec<Workload>) -> Bench<'a> {
        Bench {
            root,
            scale: config.scale,
            backend: config.backend,
            wanted,
            progress: Progress::new(),
            w1: None,
            w4: None,
            w1_rate: None,
            w6: None,
            notes: Vec::new(),
            skipped: Vec::new(),
        }
    }

    fn scaled(&self, records: u64) -> u64 {
        ((records as f64 * self.scale).round() as u64).max(1)
    }

    fn say(&self, msg: impl AsRef<str>) {
        self.progress.say(msg.as_ref());
    }

    fn run(&mut self, workload: Workload) -> Result<Vec<Outcome>> {
        Ok(match workload {
            Workload::W1 => vec![self.w1()?],
            Workload::W1Latency => vec![self.w1_latency()?],
            Workload::W2 => self.w2()?,
            Workload::W3 => {
                let with_w6 = self.wanted.contains(&Workload::W6);
                let (w3, w6) = self.w3_w6(true, with_w6)?;
                if with_w6 {
                    self.w6 = Some(w6);
                }
                self.ring_probe()?;
                w3
            }
            Workload::W4 => vec![self.w4()?],
            Workload::W5 => self.w5()?,
            Workload::W6 => match self.w6.take() {
                Some(w6) => w6,
                None => self.w3_w6(false, true)?.1,
            },
        })
    }

    /// Writes `written`'s data with both sides; returns (corewal, raw) and
    /// corewal's backend.
    fn fill(&self, id: &str, written: &Written) -> Result<(Side, Side, Backend)> {
        let n = written.records_per_lane();
        let lanes = written.lanes();
        self.say(format!(
            "{id}: raw baseline, preparing and writing {} records",
            thousands(written.records)
        ));
        let raw = fill_raw(&written.raw_files, n)?;
        self.say(format!(
            "{id}: corewal, appending {} records",
            thousands(written.records)
        ));
        let (corewal, backend) = fill_corewal(&written.corewal_dir, lanes, n, self.backend)?;
        Ok((corewal, raw, backend))
    }

    fn w1(&mut self) -> Result<Outcome> {
        let written = Written::at(self.root, "w1", 1, self.scaled(W1_RECORDS));
        let (corewal, raw, backend) = self.fill("W1", &written)?;
        let title = format!("1 writer, {} appends + sync", count(written.records));
        self.w1_rate = Some(corewal.records_per_s());
        self.w1 = Some(written);
        Ok(Outcome::new("W1", title, 1, corewal, raw)
            .want_ratio(W1_MIN_RATIO)
            .variant(Some(backend_name(backend)), Mode::Blocking.name()))
    }

    /// W1's appends again, each timed, in a separate run.
    fn w1_latency(&mut self) -> Result<Outcome> {
        let n = self.scaled(W1_RECORDS);
        self.say(format!(
            "W1-latency: raw, then corewal, {} appends each timed",
            thousands(n)
        ));
        let t = timed::run(self.root, n, self.backend)?;
        let rotations = t.rotation.rotating_us.len();
        if t.segments_used != rotations + 1 {
            self.notes.push(format!(
                "W1-latency: {rotations} rotations seen but {} segments used: the count is off",
                t.segments_used
            ));
        }
        self.notes.push(format!(
            "W1-latency: W1 again in fresh files (raw first), every append timed with Instant::now(), \
             which costs ~{:.0} ns here",
            t.rotation.clock_ns
        ));
        self.notes.push(
            "  (each sample includes one call; the rates include the timing and are not W1's). A rotating \
             append is one whose"
                .into(),
        );
        self.notes.push(
            "  frame starts a new segment; it flushes the old one's buffer and swaps in the prepared \
             next segment."
                .into(),
        );
        let title = format!("W1 again, {} appends each timed", count(n));
        let mut outcome = Outcome::new("W1-latency", title, 1, t.corewal, t.raw)
            .variant(Some(backend_name(t.backend)), Mode::Blocking.name());
        outcome.show_tail = true;
        outcome.rotation = Some(t.rotation);
        Ok(outcome)
    }

    /// Runs durable-append `variants` with one raw side; notes what could
    /// not run or settle.
    fn group(
        &mut self,
        name: &str,
        batch: u64,
        batches: u64,
        block: u64,
        variants: &[Variant],
    ) -> Result<Group> {
        let progress = &self.progress;
        let say = |msg: String| progress.say(&msg);
        let options = Options::default();
        let group = durable::run(
            self.root, name, batch, batches, block, &options, variants, &say,
        )?;
        self.notes.push(format!(
            "{name}: timing started {:.1} s after the managers were open (background segment preparation).",
            group.settle_secs
        ));
        for (variant, why) in &group.skipped {
            self.notes.push(format!(
                "{} {}: skipped, the library says: {why}",
                variant.id,
                variant.label()
            ));
            let mut o = JsonObject::default();
            o.field("id", variant.id);
            o.field("backend", backend_name(variant.backend));
            o.field("mode", variant.mode.name());
            o.field("skipped", why.as_str());
            self.skipped.push(o);
        }
        if let Some(why) = &group.unsettled {
            self.notes.push(format!("{name}: {why}"));
        }
        for m in &group.measured {
            if m.poll.fd_timeouts > 0 {
                self.notes.push(format!(
                    "{} {}: {} of {} empty polls slept {} ms on the event fd without a wake-up",
                    m.variant.id,
                    m.variant.label(),
                    m.poll.fd_timeouts,
                    m.poll.empty_polls,
                    durable::FD_WAIT_MS,
                ));
            }
        }
        Ok(group)
    }

    fn w2(&mut self) -> Result<Vec<Outcome>> {
        let n = self.scaled(W2_RECORDS);
        let variants = each_backend("W2", &[Mode::Blocking, Mode::SubmitWait]);
        let group = self.group("W2", 1, n, W2_BLOCK, &variants)?;
        let raw = group_side(group.raw_bytes, group.records, &group.raw_times, true);
        Ok(group
            .measured
            .iter()
            .map(|m| {
                let corewal = group_side(m.bytes, group.records, &m.times, true);
                let title = format!("append + sync × {}, {}", count(n), m.variant.label());
                let outcome = Outcome::new("W2", title, 1, corewal, raw)
                    .want_ratio(W2_MIN_RATIO)
                    .want_p99_ratio(W2_MAX_P99_RATIO);
                let mut outcome = of_variant(outcome, &m.variant);
                outcome.ops = true;
                outcome
            })
            .collect())
    }

    /// W3's variants and W6's, in the same rounds with one raw side (W6's
    /// raw baseline is W3's); returns (W3's outcomes, W6's).
    fn w3_w6(&mut self, w3: bool, w6: bool) -> Result<(Vec<Outcome>, Vec<Outcome>)> {
        let batches = (self.scaled(W3_RECORDS) / W3_BATCH).max(1);
        let mut variants = Vec::new();
        if w3 {
            variants.extend(each_backend("W3", &[Mode::Blocking, Mode::SubmitPoll]));
        }
        if w6 {
            variants.extend(each_backend("W6", &[Mode::Pipelined]));
        }
        let name = if w3 { "W3" } else { "W6" };
        let group = self.group(name, W3_BATCH, batches, W3_BLOCK, &variants)?;
        let raw = group_side(group.raw_bytes, group.records, &group.raw_times, false);
        let records = count(group.records);
        let (mut w3_outcomes, mut w6_outcomes) = (Vec::new(), Vec::new());
        for m in &group.measured {
            let mut corewal = group_side(m.bytes, group.records, &m.times, false);
            let label = m.variant.label();
            if m.variant.id == "W3" {
                let title = format!("{records} appends, sync / {W3_BATCH}, {label}");
                let outcome = Outcome::new("W3", title, 1, corewal, raw)
                    .want_ratio(W3_MIN_RATIO)
                    .want_rate(W3_OKAYWAL_RATE, " (okaywal¹)");
                w3_outcomes.push(of_variant(outcome, &m.variant));
            } else {
                corewal.in_flight = m.in_flight;
                let title = format!("{records} appends, submit / {W3_BATCH}, {label}");
                let outcome = Outcome::new("W6", title, 1, corewal, raw);
                let mut outcome = of_variant(outcome, &m.variant);
                outcome.raw_mark = "²";
                w6_outcomes.push(outcome);
            }
        }
        Ok((w3_outcomes, w6_outcomes))
    }

    /// W3's raw loop twice, in alternating blocks: with fdatasync, and with
    /// each fdatasync an io_uring fsync the thread waits for. The kernel runs
    /// every io_uring fsync on an io-wq worker thread; their ratio is what
    /// that hand-off leaves of raw for any asynchronous sync on io_uring.
    fn ring_probe(&mut self) -> Result<()> {
        if corewal::uring::probe().is_err() {
            return Ok(());
        }
        let batches = (self.scaled(W3_RECORDS) / W3_BATCH).max(1);
        let frames = Frames::encode(0, batches * W3_BATCH);
        let dir = self.root.join("ring-probe");
        std::fs::create_dir_all(&dir)?;
        let mut plain = RawLog::create(&dir.join("fdatasync"), frames.byte_len())?;
        let mut ringed = RawLog::create(&dir.join("io_uring-fsync"), frames.byte_len())?;
        ringed.sync_on(io_uring::IoUring::new(8)?);
        let (mut plain_times, mut ring_times) = (Vec::new(), Vec::new());
        for (n, first) in (0..batches).step_by(W3_BLOCK as usize).enumerate() {
            let block = first..(first + W3_BLOCK).min(batches);
            let mut sides = [
                (&mut plain, &mut plain_times),
                (&mut ringed, &mut ring_times),
            ];
            sides.rotate_left(n % 2);
            for (log, times) in sides {
                durable::raw_batches(log, &frames, W3_BATCH, block.clone(), times)?;
            }
        }
        let (plain_time, ring_time): (Duration, Duration) =
            (plain_times.iter().sum(), ring_times.iter().sum());
        let records = (batches * W3_BATCH) as f64;
        let rate = |t: Duration| compact(records / t.as_secs_f64());
        self.notes.push(format!(
            "W3 io_uring fsync probe: W3's raw loop with each fdatasync an io_uring fsync the thread \
             waits for ran at {:.2} × the same loop with fdatasync ({} against {} rec/s, alternating \
             blocks; no corewal code): the hand-off to the kernel's io-wq worker that bounds every \
             submit+wait/poll variant on io_uring.",
            plain_time.as_secs_f64() / ring_time.as_secs_f64(),
            rate(ring_time),
            rate(plain_time),
        ));
        Ok(std::fs::remove_dir_all(&dir)?)
    }

    fn w4(&mut self) -> Result<Outcome> {
        let per_writer = self.scaled(W4_RECORDS_PER_WRITER);
        let written = Written::at(self.root, "w4", W4_WRITERS, per_writer);
        let (corewal, raw, backend) = self.fill("W4", &written)?;
        let title = format!("{W4_WRITERS} writers × {} + sync", count(per_writer));
        self.w4 = Some(written);
        let mut outcome = Outcome::new("W4", title, W4_WRITERS, corewal, raw)
            .want_ratio(W4_MIN_RATIO)
            .variant(Some(backend_name(backend)), Mode::Blocking.name());
        if let Some(w1_rate) = self.w1_rate {
            outcome = outcome.want_scaling(w1_rate, W4_MIN_SCALING);
        }
        Ok(outcome)
    }

    fn w5(&mut self) -> Result<Vec<Outcome>> {
        // W5 reads what W1 and W4 wrote; write it (untimed) if they did not run.
        if self.w1.is_none() {
            let written = Written::at(self.root, "w1", 1, self.scaled(W1_RECORDS));
            self.fill("W5 (writing W1's data)", &written)?;
            self.w1 = Some(written);
        }
        if self.w4.is_none() {
            let written = Written::at(
                self.root,
                "w4",
                W4_WRITERS,
                self.scaled(W4_RECORDS_PER_WRITER),
            );
            self.fill("W5 (writing W4's data)", &written)?;
            self.w4 = Some(written);
        }
        let one = self.w1.as_ref().expect("written above");
        let (corewal, raw) = self.read_back("W5", one)?;
        let title = format!("read W1's {} back, 1 lane", count(one.records));
        let single = Outcome::new("W5", title, 1, corewal, raw)
            .want_peak_rss(W5_MAX_PEAK_RSS_MB)
            .variant(None, "read");

        let two = self.w4.as_ref().expect("written above");
        let (corewal, raw) = self.read_back("W5-merged", two)?;
        let title = format!(
            "read W4's {} back, {} lanes merged",
            count(two.records),
            two.lanes()
        );
        let merged = Outcome::new("W5-merged", title, two.lanes(), corewal, raw)
            .want_rate(W5_MERGED_MIN_RATE, "")
            .want_peak_rss(W5_MAX_PEAK_RSS_MB)
            .variant(None, "read");

        // Last, as it adds a checkpoint and records to W1's log.
        let tail = (one.records / 10).max(1);
        self.say(format!(
            "W5: checkpointing W1's log, appending {}, replaying it whole and from the checkpoint",
            thousands(tail)
        ));
        let c = engine::checkpoint_replay(&one.corewal_dir, self.backend, tail)?;
        expect_records(
            "W5 checkpoint",
            "from the checkpoint",
            c.from_checkpoint.0,
            tail,
        )?;
        self.notes.push(format!(
            "W5 checkpoint: W1's log checkpointed, then {} more records: full replay {} records in {:.1} ms, \
             from the checkpoint {} records in {:.1} ms ({} of {} segments never opened).",
            thousands(tail),
            thousands(c.full.0),
            c.full.1 * 1e3,
            thousands(c.from_checkpoint.0),
            c.from_checkpoint.1 * 1e3,
            c.skipped,
            c.segments
        ));
        Ok(vec![single, merged])
    }

    /// Reads `written` back with both sides (raw first); returns (corewal, raw).
    fn read_back(&self, id: &str, written: &Written) -> Result<(Side, Side)> {
        // The write workloads leave hundreds of MB dirty: write them back
        // first, so that neither side's read races the kernel's writeback.
        self.say(format!("{id}: writing back dirty pages before reading"));
        written_back(written)?;
        self.say(format!(
            "{id}: raw baseline, scanning {} records",
            thousands(written.records)
        ));
        let probe = Probe::start();
        let start = Instant::now();
        let mut found = Scanned::default();
        for (lane, path) in written.raw_files.iter().enumerate() {
            let scanned = raw::scan(path, lane as u32)?;
            found.frames += scanned.frames;
            found.bytes += scanned.bytes;
        }
        let secs = start.elapsed().as_secs_f64();
        let mut raw = Side::new(found.frames, found.bytes, secs);
        raw.rss = Some(probe.finish());
        expect_records(id, "raw", found.frames, written.records)?;

        self.say(format!(
            "{id}: corewal, recovering {} records",
            thousands(written.records)
        ));
        let probe = Probe::start();
        let start = Instant::now();
        let back = engine::read_all(&written.corewal_dir, &probe)?;
        let secs = start.elapsed().as_secs_f64();
        let mut corewal = Side::new(back.records, back.bytes, secs);
        corewal.rss = Some(back.rss);
        expect_records(id, "corewal", back.records, written.records)?;
        Ok((corewal, raw))
    }
}

/// fsyncs every file of `written` (both sides), so that their dirty pages
/// are on disk before they are read back.
fn written_back(written: &Written) -> Result<()> {
    let mut files = written.raw_files.clone();
    for entry in std::fs::read_dir(&written.corewal_dir)? {
        files.push(entry?.path());
    }
    for path in files.iter().filter(|p| p.is_file()) {
        std::fs::File::open(path)?.sync_all()?;
    }
    Ok(())
}

/// `outcome` marked with `variant`'s backend, mode and direct I/O.
fn of_variant(outcome: Outcome, variant: &Variant) -> Outcome {
    let mut outcome = outcome.variant(Some(backend_name(variant.backend)), variant.mode.name());
    outcome.direct_io = variant.writes == Writes::Direct;
    outcome.direct_sync = variant.writes == Writes::BeforeSyncs;
    outcome
}

/// The variants of `id` in `modes`, on the sync backend, then io_uring,
/// each through the page cache only, with the defaults, then with every
/// write direct.
fn each_backend(id: &'static str, modes: &[Mode]) -> Vec<Variant> {
    [Backend::Sync, Backend::IoUring]
        .into_iter()
        .flat_map(|backend| Writes::ALL.map(|writes| (backend, writes)))
        .flat_map(|(backend, writes)| {
            modes.iter().map(move |&mode| Variant {
                id,
                backend,
                writes,
                mode,
            })
        })
        .collect()
}

/// One side of a durable-append group: `records` records in batches timed
/// as `times`; with `latency`, the batches' percentiles (batches of one).
fn group_side(bytes: u64, records: u64, times: &[Duration], latency: bool) -> Side {
    let mut side = Side::new(records, bytes, times.iter().sum::<Duration>().as_secs_f64());
    if latency {
        side.latency = Latency::from_samples(times);
    }
    side
}

/// corewal: `records` appends on each of `lanes` lanes of a fresh WAL in
/// `dir`, one thread per lane, then a sync. The manager is opened before
/// timing starts, as the raw file is prepared before it.
fn fill_corewal(dir: &Path, lanes: u32, records: u64, backend: Backend) -> Result<(Side, Backend)> {
    let manager = engine::open(dir, lanes, backend)?;
    let in_use = manager.backend().backend;
    let writers = (0..lanes)
        .map(|lane| Ok((lane, manager.writer(lane)?)))
        .collect::<Result<Vec<_>>>()?;
    let elapsed = timed_parallel(writers, |(lane, writer)| {
        for i in 0..records {
            engine::append(writer, lane, i)?;
        }
        writer.sync()?;
        Ok(())
    })?;
    let mut bytes = 0;
    for lane in 0..lanes {
        bytes += manager.writer(lane)?.position();
    }
    manager.close()?;
    let side = Side::new(records * u64::from(lanes), bytes, elapsed.as_secs_f64());
    Ok((side, in_use))
}

/// raw: the same, one preallocated file and one thread per lane, frames
/// encoded before timing starts.
fn fill_raw(paths: &[PathBuf], records: u64) -> Result<Side> {
    let frames: Vec<Frames> = (0..paths.len() as u32)
        .map(|lane| Frames::encode(lane, records))
        .collect();
    let mut lanes = Vec::new();
    for (path, frames) in paths.iter().zip(&frames) {
        lanes.push((RawLog::create(path, frames.byte_len())?, frames));
    }
    // The frames outlive the timed part: freeing them is not the baseline's work.
    let elapsed = timed_parallel(lanes, |(mut log, frames)| {
        for frame in frames.iter() {
            log.append(frame)?;
        }
        log.sync()?;
        Ok(())
    })?;
    let bytes = frames.iter().map(Frames::byte_len).sum();
    Ok(Side::new(
        records * paths.len() as u64,
        bytes,
        elapsed.as_secs_f64(),
    ))
}

/// Runs `work` on one thread per item, all released at once; returns the
/// time from their release until the last one finished.
fn timed_parallel<T: Send>(
    items: Vec<T>,
    work: impl Fn(T) -> Result<()> + Sync,
) -> Result<Duration> {
    let start_line = Barrier::new(items.len() + 1);
    std::thread::scope(|scope| {
        let threads: Vec<_> = items
            .into_iter()
            .map(|item| {
                let (start_line, work) = (&start_line, &work);
                scope.spawn(move || {
                    start_line.wait();
                    work(item)
                })
            })
            .collect();
        start_line.wait();
        let start = Instant::now();
        let results: Vec<_> = threads.into_iter().map(|t| t.join()).collect();
        let elapsed = start.elapsed();
        for result in results {
            result.map_err(|_| "a benchmark thread panicked")??;
        }
        Ok(elapsed)
    })
}

fn expect_records(id: &str, side: &str, found: u64, expected: u64) -> Result<()> {
    if found != expected {
        return Err(format!("{id}: {side} read back {found} records, expected {expected}").into());
    }
    Ok(())
}

/// A record count for a title: `2 M`, `200 k`, `5,000`.
fn count(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{} M", n / 1_000_000)
    } else if n >= 100_000 && n.is_multiple_of(1_000) {
        format!("{} k", n / 1_000)
    } else if n >= 1_000_000 {
        compact(n as f64)
    } else {
        thousands(n)
    }
}
