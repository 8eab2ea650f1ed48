//! `corewal bench`: the workloads of BENCH.md, each run against corewal and
//! against the raw baseline in the same process, interleaved so that the
//! machine's noise (fdatasync latency switches between ~0.15 ms and ~4 ms
//! phases) hits both sides alike.

use std::error::Error;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use corewal::{FileIo, Writer};

use crate::engine;
use crate::mem::Probe;
use crate::progress::Progress;
use crate::raw::{self, Frames, RawLog, Scanned};
use crate::report::{self, Latency, Outcome, Side, compact, thousands};

pub const USAGE: &str = "\
Run the benchmark workloads of BENCH.md against corewal and a raw baseline

Usage: corewal bench [OPTIONS]

Each workload runs against corewal and against the raw baseline (the same
frames pre-encoded, written with pwrite through a 64 KiB buffer into a
preallocated zero-filled file, fdatasync at the same points) in this one
process, and prints both with their ratio corewal/raw and the target.

  W1  1 writer appends 2,000,000 records, then one sync
  W2  1 writer, every append followed by a sync, 5,000 records
  W3  1 writer, 200,000 records, sync after every 64
  W4  2 writers on 2 threads, 1,000,000 records each, then sync
  W5  read W1's log back through the recovery iterator, and W4's
      (2 lanes merged)

Options:
      --dir DIR      Put the data in a fresh directory inside DIR
                     (default: the system's temporary directory); it is
                     removed at the end
      --json         Print one JSON object per workload per line instead of
                     the table
      --only LIST    Run only these workloads, e.g. --only W1,W3
      --scale F      Multiply every record count by F (e.g. 0.01 for a quick
                     smoke run; default 1)
  -h, --help         Print this help
";

pub type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// The workloads of BENCH.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    W1,
    W2,
    W3,
    W4,
    W5,
}

impl Workload {
    pub const ALL: [Workload; 5] = [
        Workload::W1,
        Workload::W2,
        Workload::W3,
        Workload::W4,
        Workload::W5,
    ];

    pub fn parse(name: &str) -> Option<Workload> {
        Workload::ALL
            .into_iter()
            .find(|w| format!("{w:?}").eq_ignore_ascii_case(name))
    }
}

/// Options of `corewal bench`.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: Option<PathBuf>,
    pub json: bool,
    pub only: Option<Vec<Workload>>,
    pub scale: f64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            dir: None,
            json: false,
            only: None,
            scale: 1.0,
        }
    }
}

const W1_RECORDS: u64 = 2_000_000;
const W2_RECORDS: u64 = 5_000;
const W3_RECORDS: u64 = 200_000;
const W3_BATCH: u64 = 64;
const W4_RECORDS_PER_WRITER: u64 = 1_000_000;
const W4_WRITERS: u32 = 2;
/// W2 and W3 alternate corewal and raw in this many blocks each: fdatasync
/// latency phases last seconds, so short blocks spread them over both sides.
const ROUNDS: u64 = 50;

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

    let mut bench = Bench::new(root.path(), config.scale);
    let mut outcomes = Vec::new();
    for workload in workloads {
        for outcome in bench.run(workload)? {
            if config.json {
                println!("{}", outcome.to_json());
            }
            outcomes.push(outcome);
        }
    }
    bench.progress.clear();
    if !config.json {
        let heading = format!(
            "corewal bench: scale {}, blocking sync (pwrite + fdatasync), default options, data under {}",
            config.scale,
            base.display()
        );
        print!("{}", report::table(&outcomes, &heading, &notes()));
    }
    root.close()
        .map_err(|e| format!("removing the benchmark data: {e}"))?;
    Ok(())
}

fn notes() -> Vec<String> {
    [
        "ratio = corewal / raw, same run. raw = the same frames pre-encoded before timing, pwrite through a",
        "  64 KiB buffer into a file preallocated with zeros and synced once, fdatasync at the same points;",
        "  for W5 one buffered pass checking every frame's crc32c. W2/W3 alternate corewal and raw in",
        "  50 blocks; W1/W4/W5 run raw first, then corewal. Timing starts after the manager is open.",
        "MB = 10^6 bytes of frame data. Peak RSS = VmHWM of the whole process, reset before each read",
        "  (* = reset unavailable: lifetime peak); RSS growth = peak - RSS before the read.",
        "¹ okaywal's figure from BENCH.md, measured in another run: an absolute, noisy comparison.",
    ]
    .map(String::from)
    .to_vec()
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
    progress: Progress,
    w1: Option<Written>,
    w4: Option<Written>,
    /// corewal's W1 rate, for W4's scaling target.
    w1_rate: Option<f64>,
}

impl<'a> Bench<'a> {
    fn new(root: &'a Path, scale: f64) -> Bench<'a> {
        Bench {
            root,
            scale,
            progress: Progress::new(),
            w1: None,
            w4: None,
            w1_rate: None,
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
            Workload::W2 => vec![self.w2()?],
            Workload::W3 => vec![self.w3()?],
            Workload::W4 => vec![self.w4()?],
            Workload::W5 => self.w5()?,
        })
    }

    /// Writes `written`'s data with both sides; returns (corewal, raw).
    fn fill(&self, id: &str, written: &Written) -> Result<(Side, Side)> {
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
        let corewal = fill_corewal(&written.corewal_dir, lanes, n)?;
        Ok((corewal, raw))
    }

    fn w1(&mut self) -> Result<Outcome> {
        let written = Written::at(self.root, "w1", 1, self.scaled(W1_RECORDS));
        let (corewal, raw) = self.fill("W1", &written)?;
        let title = format!("1 writer, {} appends + sync", count(written.records));
        self.w1_rate = Some(corewal.records_per_s());
        self.w1 = Some(written);
        Ok(Outcome::new("W1", title, 1, corewal, raw).want_ratio(W1_MIN_RATIO))
    }

    fn w2(&mut self) -> Result<Outcome> {
        let n = self.scaled(W2_RECORDS);
        let (corewal, raw) = self.synced("W2", 1, n)?;
        let title = format!("append + sync × {}", count(n));
        let mut outcome = Outcome::new("W2", title, 1, corewal, raw)
            .want_ratio(W2_MIN_RATIO)
            .want_p99_ratio(W2_MAX_P99_RATIO);
        outcome.sync = Some("blocking");
        Ok(outcome)
    }

    fn w3(&mut self) -> Result<Outcome> {
        let batches = (self.scaled(W3_RECORDS) / W3_BATCH).max(1);
        let (corewal, raw) = self.synced("W3", W3_BATCH, batches)?;
        let title = format!("{} appends, sync / {W3_BATCH}", count(batches * W3_BATCH));
        let mut outcome = Outcome::new("W3", title, 1, corewal, raw)
            .want_ratio(W3_MIN_RATIO)
            .want_rate(W3_OKAYWAL_RATE, " (okaywal¹)");
        outcome.sync = Some("blocking");
        Ok(outcome)
    }

    fn w4(&mut self) -> Result<Outcome> {
        let per_writer = self.scaled(W4_RECORDS_PER_WRITER);
        let written = Written::at(self.root, "w4", W4_WRITERS, per_writer);
        let (corewal, raw) = self.fill("W4", &written)?;
        let title = format!("{W4_WRITERS} writers × {} + sync", count(per_writer));
        self.w4 = Some(written);
        let mut outcome =
            Outcome::new("W4", title, W4_WRITERS, corewal, raw).want_ratio(W4_MIN_RATIO);
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
        let single = Outcome::new("W5", title, 1, corewal, raw).want_peak_rss(W5_MAX_PEAK_RSS_MB);

        let two = self.w4.as_ref().expect("written above");
        let (corewal, raw) = self.read_back("W5-merged", two)?;
        let title = format!(
            "read W4's {} back, {} lanes merged",
            count(two.records),
            two.lanes()
        );
        let merged = Outcome::new("W5-merged", title, two.lanes(), corewal, raw)
            .want_rate(W5_MERGED_MIN_RATE, "")
            .want_peak_rss(W5_MAX_PEAK_RSS_MB);
        Ok(vec![single, merged])
    }

    /// Reads `written` back with both sides (raw first); returns (corewal, raw).
    fn read_back(&self, id: &str, written: &Written) -> Result<(Side, Side)> {
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

    /// `batches` batches of `batch` appends, each followed by a blocking
    /// sync, alternating blocks of batches between corewal and raw.
    /// Latency percentiles are per batch when a batch is one record.
    fn synced(&self, id: &str, batch: u64, batches: u64) -> Result<(Side, Side)> {
        let records = batch * batches;
        let name = id.to_ascii_lowercase();
        let frames = Frames::encode(0, records);
        let raw_path = self.root.join(format!("{name}-raw-0.log"));
        let mut log = RawLog::create(&raw_path, frames.byte_len())?;
        let corewal_dir = self.root.join(format!("{name}-corewal"));
        let manager = engine::open(&corewal_dir, 1)?;
        let writer = manager.writer(0)?;

        let mut corewal_times = Vec::with_capacity(batches as usize);
        let mut raw_times = Vec::with_capacity(batches as usize);
        let rounds = ROUNDS.min(batches);
        for round in 0..rounds {
            self.say(format!("{id}: round {} of {rounds}", round + 1));
            let block = batches * round / rounds..batches * (round + 1) / rounds;
            // Alternate which side goes first, so neither always follows the other.
            if round % 2 == 0 {
                corewal_batches(writer, batch, block.clone(), &mut corewal_times)?;
                raw_batches(&mut log, &frames, batch, block, &mut raw_times)?;
            } else {
                raw_batches(&mut log, &frames, batch, block.clone(), &mut raw_times)?;
                corewal_batches(writer, batch, block, &mut corewal_times)?;
            }
        }
        let corewal_bytes = writer.position();
        manager.close()?;
        drop(log);
        std::fs::remove_dir_all(&corewal_dir)?;
        std::fs::remove_file(&raw_path)?;

        let side = |bytes: u64, times: &[Duration]| {
            let mut side = Side::new(records, bytes, times.iter().sum::<Duration>().as_secs_f64());
            if batch == 1 {
                side.latency = Latency::from_samples(times);
            }
            side
        };
        Ok((
            side(corewal_bytes, &corewal_times),
            side(frames.byte_len(), &raw_times),
        ))
    }
}

/// corewal batches `block`: each `batch` appends then a sync, timed.
fn corewal_batches(
    writer: &Writer<FileIo>,
    batch: u64,
    block: Range<u64>,
    times: &mut Vec<Duration>,
) -> Result<()> {
    for b in block {
        let start = Instant::now();
        for i in b * batch..(b + 1) * batch {
            engine::append(writer, 0, i)?;
        }
        writer.sync()?;
        times.push(start.elapsed());
    }
    Ok(())
}

/// The raw side of [`corewal_batches`].
fn raw_batches(
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

/// corewal: `records` appends on each of `lanes` lanes of a fresh WAL in
/// `dir`, one thread per lane, then a sync. The manager is opened before
/// timing starts, as the raw file is prepared before it.
fn fill_corewal(dir: &Path, lanes: u32, records: u64) -> Result<Side> {
    let manager = engine::open(dir, lanes)?;
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
    Ok(Side::new(
        records * u64::from(lanes),
        bytes,
        elapsed.as_secs_f64(),
    ))
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
