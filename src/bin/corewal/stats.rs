//! `corewal stats`: the shape of a WAL — its metadata, what the directory
//! holds on disk, and per lane its segments, records, bytes, epochs, last
//! record and verdict — from one scan and one pass over the records.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use corewal::recovery::{LaneScan, LaneStats};
use corewal::{OpKind, Recovery, RecoveryMode, RecoveryOptions};

use crate::json::JsonObject;
use crate::progress::{Bar, bytes};
use crate::wal::{self, Failure, ReadProgress, Wal};

pub const USAGE: &str = "\
Print the shape of a WAL: metadata, files on disk, and per lane its
segments, records, bytes, epochs, last record and verdict

Usage: corewal stats DIR [OPTIONS]

Reads the WAL in DIR without locking or changing it (a manager may have it
open). Each lane is counted up to where recovery would stop reading it; the
verdict column says whether that is a clean end, a torn tail or corruption
('corewal verify' explains it).

Options:
      --json     One JSON object instead of the text report
  -h, --help     Print this help

Exit status: 0 when the statistics were printed, 1 when a record in a
lane's valid prefix does not read back, 2 when DIR is not a WAL or cannot
be read.
";

/// Options of `corewal stats`.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub dir: PathBuf,
    pub json: bool,
}

/// Operations in the order their counts are shown.
const OPS: [OpKind; 5] = [
    OpKind::Put,
    OpKind::Delete,
    OpKind::Commit,
    OpKind::Checkpoint,
    OpKind::EpochBarrier,
];

/// What the pass over the records counted in one lane.
#[derive(Debug, Clone, Default)]
struct LaneCount {
    records: u64,
    first_epoch: Option<u64>,
    last_epoch: Option<u64>,
    first_sequence: Option<u64>,
    last_sequence: Option<u64>,
    last_timestamp_ns: Option<i64>,
    /// Records per operation, in [`OPS`] order.
    ops: [u64; 5],
}

/// Files of the directory and their sizes.
#[derive(Debug, Default)]
struct DirTotals {
    files: u64,
    segment_files: u64,
    /// File lengths, preallocated space included.
    bytes: u64,
    /// Blocks the file system holds for them.
    allocated: u64,
}

/// Records between two looks at the clock for the progress bar.
const PROGRESS_EVERY: u64 = 4096;

pub fn run(config: &Config) -> Result<u8, Failure> {
    let wal = Wal::open(&config.dir)?;
    let totals = dir_totals(&wal)?;
    let mut bar = Bar::new("stats: scanning", wal.segment_file_bytes(), true);
    let scans = wal.scan(&mut bar, RecoveryMode::PointInTime)?;
    let mut progress = ReadProgress::new(&scans, |_| true);
    bar.phase("stats: reading", progress.total);

    // One pass over every lane. Point-in-time reads each lane's valid
    // prefix whatever its verdict, which the report shows.
    let opts = RecoveryOptions {
        mode: RecoveryMode::PointInTime,
        from_checkpoint: false,
        max_epoch: u64::MAX,
        lanes: None,
    };
    let mut counts = vec![LaneCount::default(); scans.len()];
    let mut recovery = Recovery::new(wal.io.clone(), &wal.dir, scans, &opts, None)
        .map_err(|e| Failure::from_error(&e))?;
    let mut seen = 0u64;
    while let Some(entry) = recovery.next().map_err(|e| Failure::from_error(&e))? {
        let count = &mut counts[entry.core_id as usize];
        count.records += 1;
        count.first_epoch.get_or_insert(entry.epoch);
        count.last_epoch = Some(entry.epoch);
        count.first_sequence.get_or_insert(entry.sequence);
        count.last_sequence = Some(entry.sequence);
        count.last_timestamp_ns = Some(entry.timestamp_ns);
        let kind = entry.op.kind();
        if let Some(i) = OPS.iter().position(|&k| k == kind) {
            count.ops[i] += 1;
        }
        seen += 1;
        if seen.is_multiple_of(PROGRESS_EVERY) {
            progress.record(entry.core_id, entry.position);
            bar.set(progress.done);
        }
    }
    bar.finish();
    let scans = recovery.scans();
    let read = recovery.stats();

    let report = if config.json {
        format!("{}\n", json_report(&wal, &totals, scans, read, &counts))
    } else {
        text_report(&wal, &totals, scans, &counts)
    };
    wal::emit(&report)?;
    Ok(0)
}

fn dir_totals(wal: &Wal) -> Result<DirTotals, Failure> {
    let unreadable =
        |e: std::io::Error| Failure::unreadable(format!("listing {}: {e}", wal.dir.display()));
    let mut totals = DirTotals::default();
    for entry in std::fs::read_dir(&wal.dir).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        // Not followed: a link is not the WAL's space.
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        totals.files += 1;
        totals.bytes += meta.len();
        totals.allocated += meta.blocks() * 512;
        if corewal::segment::parse_segment_name(&entry.file_name().to_string_lossy()).is_some() {
            totals.segment_files += 1;
        }
    }
    Ok(totals)
}

/// The verdict as the table shows it.
fn verdict_text(scan: &LaneScan) -> String {
    match (wal::verdict_name(scan.verdict), &scan.stop) {
        ("clean", _) | (_, None) => "clean".into(),
        (name, Some(stop)) => format!(
            "{} at segment {} offset {}",
            if name == "corrupt" {
                "CORRUPT"
            } else {
                "torn tail"
            },
            stop.segment_index,
            stop.offset
        ),
    }
}

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

fn epochs(first: Option<u64>, last: Option<u64>) -> String {
    match (first, last) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => "-".into(),
    }
}

fn text_report(wal: &Wal, totals: &DirTotals, scans: &[LaneScan], counts: &[LaneCount]) -> String {
    let meta = &wal.meta;
    let mut out = String::new();
    let _ = writeln!(out, "WAL {}", wal.dir.display());
    let _ = writeln!(
        out,
        "  format version {}, {} lanes, segment_bytes {} ({}), preallocate {}, \
         max_record_bytes {} at creation",
        meta.format_version,
        meta.num_cores,
        meta.segment_bytes,
        bytes(meta.segment_bytes as f64),
        if meta.preallocate { "on" } else { "off" },
        meta.max_record_bytes,
    );
    let _ = writeln!(
        out,
        "  directory: {} files ({} segments), {} bytes ({}, preallocated space included), \
         {} allocated",
        totals.files,
        totals.segment_files,
        totals.bytes,
        bytes(totals.bytes as f64),
        bytes(totals.allocated as f64),
    );
    if !wal.foreign.is_empty() {
        let _ = writeln!(
            out,
            "  {} segment files of lanes beyond num_cores, not read: {}",
            wal.foreign.len(),
            wal.foreign.join(", ")
        );
    }
    out.push('\n');

    let mut rows = vec![
        [
            "lane",
            "segments",
            "indexes",
            "records",
            "bytes",
            "epochs",
            "last seq",
            "last timestamp",
            "verdict",
        ]
        .map(String::from),
    ];
    for (scan, count) in scans.iter().zip(counts) {
        rows.push([
            scan.core_id.to_string(),
            scan.kept.len().to_string(),
            wal::segment_range(scan),
            count.records.to_string(),
            wal::lane_bytes(scan).to_string(),
            epochs(count.first_epoch, count.last_epoch),
            opt(count.last_sequence),
            opt(count.last_timestamp_ns.map(wal::timestamp)),
            verdict_text(scan),
        ]);
    }
    let first_epoch = counts.iter().filter_map(|c| c.first_epoch).min();
    let last_epoch = counts.iter().filter_map(|c| c.last_epoch).max();
    rows.push([
        "all".into(),
        scans
            .iter()
            .map(|s| s.kept.len())
            .sum::<usize>()
            .to_string(),
        String::new(),
        counts.iter().map(|c| c.records).sum::<u64>().to_string(),
        scans.iter().map(wal::lane_bytes).sum::<u64>().to_string(),
        epochs(first_epoch, last_epoch),
        String::new(),
        opt(counts
            .iter()
            .filter_map(|c| c.last_timestamp_ns)
            .max()
            .map(wal::timestamp)),
        String::new(),
    ]);
    // Counts right-aligned, the rest left-aligned; the last column unpadded.
    let right = [false, true, false, true, true, false, true, false, false];
    let widths: Vec<usize> = (0..right.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            match (right[c], c + 1 == row.len()) {
                (true, _) => {
                    let _ = write!(line, "{cell:>w$}", w = widths[c]);
                }
                (false, false) => {
                    let _ = write!(line, "{cell:<w$}", w = widths[c]);
                }
                (false, true) => line.push_str(cell),
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }

    out.push('\n');
    let mut ops = String::new();
    for (i, kind) in OPS.iter().enumerate() {
        let n: u64 = counts.iter().map(|c| c.ops[i]).sum();
        if i > 0 {
            ops.push_str(", ");
        }
        let _ = write!(ops, "{} {n}", crate::dump::op_name(*kind));
    }
    let _ = writeln!(out, "operations: {ops}");
    out
}

fn json_report(
    wal: &Wal,
    totals: &DirTotals,
    scans: &[LaneScan],
    read: &[LaneStats],
    counts: &[LaneCount],
) -> JsonObject {
    let meta = &wal.meta;
    let mut o = JsonObject::default();
    o.field("dir", wal.dir.display().to_string());
    o.field("format_version", meta.format_version);
    o.field("num_cores", meta.num_cores);
    o.field("segment_bytes", meta.segment_bytes);
    o.field("preallocate", meta.preallocate);
    o.field("max_record_bytes", meta.max_record_bytes);
    o.field("files", totals.files);
    o.field("segment_files", totals.segment_files);
    o.field("disk_bytes", totals.bytes);
    o.field("allocated_bytes", totals.allocated);
    o.field("foreign_segments", wal.foreign.len());
    o.field("records", counts.iter().map(|c| c.records).sum::<u64>());
    o.field("bytes", scans.iter().map(wal::lane_bytes).sum::<u64>());
    o.field(
        "first_epoch",
        counts.iter().filter_map(|c| c.first_epoch).min(),
    );
    o.field(
        "last_epoch",
        counts.iter().filter_map(|c| c.last_epoch).max(),
    );
    o.objects(
        "lanes",
        scans
            .iter()
            .zip(read)
            .zip(counts)
            .map(|((scan, read), count)| {
                let mut l = wal::lane_json(scan, read, count.records);
                l.field("first_epoch", count.first_epoch);
                l.field("last_epoch", count.last_epoch);
                l.field("first_sequence", count.first_sequence);
                l.field("last_sequence", count.last_sequence);
                l.field("last_timestamp_ns", count.last_timestamp_ns);
                l.field("last_time", count.last_timestamp_ns.map(wal::timestamp));
                let mut ops = JsonObject::default();
                for (i, kind) in OPS.iter().enumerate() {
                    ops.field(crate::dump::op_name(*kind), count.ops[i]);
                }
                l.object("ops", ops);
                l.field("verdict", wal::verdict_name(scan.verdict));
                l
            }),
    );
    o
}
