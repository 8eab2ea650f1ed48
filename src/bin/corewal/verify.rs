//! `corewal verify`: scans every lane, reads every record back (which
//! validates each one), reports each lane's verdict and says through the
//! exit status whether the WAL is sound under a recovery mode.

use std::fmt::Write as _;
use std::path::PathBuf;

use corewal::format::SEGMENT_HEADER_LEN;
use corewal::recovery::{DamagedRange, LaneScan, LaneStats, Verdict};
use corewal::segment::{parse_segment_name, segment_name};
use corewal::{Error, Recovery, RecoveryMode, RecoveryOptions};

use crate::json::JsonObject;
use crate::progress::Bar;
use crate::wal::{self, DAMAGED, Failure, ReadProgress, Wal};

pub const USAGE: &str = "\
Check that a WAL is sound: every lane scanned, every record read back

Usage: corewal verify DIR [OPTIONS]

Reads the WAL in DIR without locking or changing it (a manager may have it
open) and prints, for each lane, its segments, records and bytes and the
verdict: clean, a torn tail (what a crash leaves: recovery cuts it and keeps
every record before it), or CORRUPT (acknowledged data is damaged), with the
segment file, offset and reason. A summary line follows.

Options:
      --mode MODE   Which damage makes the WAL unsound: tolerate (default:
                    corruption only; a torn tail is a note), absolute (any
                    damage, torn tails included), point-in-time (none that
                    the scan finds: each lane is read up to its first damage),
                    skip-corrupt (none that the scan finds: every valid
                    record is read, and each lane lists the damaged ranges
                    it skips, with segment file, offset and length)
      --json        One JSON object instead of the text report
  -h, --help        Print this help

Exit status: 0 when the WAL is sound under the mode, 1 when it is damaged,
2 when DIR is not a WAL or cannot be read.
";

/// Options of `corewal verify`.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub dir: PathBuf,
    pub mode: RecoveryMode,
    pub json: bool,
}

/// Where a lane is damaged.
struct Damage {
    /// Segment file name.
    segment: String,
    offset: u64,
    /// Lane position of the damage, when known.
    position: Option<u64>,
    reason: String,
}

/// What verify found in one lane.
struct LaneReport<'a> {
    scan: &'a LaneScan,
    /// The library's statistics of what the read covers.
    read: LaneStats,
    /// Read with skip-corrupt: damage is described by `read`.
    skipping: bool,
    /// Records that read back.
    records: u64,
    /// The error the mode makes of the scan.
    refused: Option<Error>,
    /// A record that does not read back, though its frame checks.
    read_error: Option<Error>,
}

impl LaneReport<'_> {
    fn sound(&self) -> bool {
        self.refused.is_none() && self.read_error.is_none()
    }

    /// Where the lane is damaged, if it is.
    fn damage(&self) -> Option<Damage> {
        if let Some(Error::Corrupt {
            segment,
            offset,
            reason,
            ..
        }) = &self.read_error
        {
            let name = file_name(segment);
            // The lane position of a file offset, from the kept segment.
            let position = parse_segment_name(&name)
                .and_then(|(_, index)| self.scan.kept.iter().find(|k| k.index == index))
                .map(|k| k.base_position + offset.saturating_sub(SEGMENT_HEADER_LEN as u64));
            return Some(Damage {
                segment: name,
                offset: *offset,
                position,
                reason: reason.clone(),
            });
        }
        if self.skipping {
            // Damaged ranges are skipped; what remains is a torn tail.
            let tail = self.read.torn_tail.as_ref()?;
            return Some(Damage {
                segment: segment_name(self.scan.core_id, tail.segment_index),
                offset: tail.offset,
                position: Some(tail.position),
                reason: tail.reason.clone(),
            });
        }
        let stop = self.scan.stop.as_ref()?;
        if self.scan.verdict == Verdict::Clean {
            return None;
        }
        let reason = match &self.refused {
            Some(Error::Corrupt { reason, .. }) => reason.clone(),
            _ => stop.reason.clone(),
        };
        Some(Damage {
            segment: segment_name(self.scan.core_id, stop.segment_index),
            offset: stop.offset,
            position: Some(stop.position),
            reason,
        })
    }

    fn verdict(&self) -> &'static str {
        match () {
            _ if self.read_error.is_some() => "corrupt",
            _ if !self.skipping => wal::verdict_name(self.scan.verdict),
            _ if !self.read.damaged.is_empty() => "damaged",
            _ if self.read.torn_tail.is_some() => "torn_tail",
            _ => "clean",
        }
    }

    fn damaged_bytes(&self) -> u64 {
        self.read.damaged.iter().map(|d| d.length).sum()
    }
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}

/// Records between two looks at the clock for the progress bar.
const PROGRESS_EVERY: u64 = 4096;

pub fn run(config: &Config) -> Result<u8, Failure> {
    let wal = Wal::open(&config.dir)?;
    let mut bar = Bar::new("verify: scanning", wal.segment_file_bytes(), true);
    let scans = wal.scan(&mut bar, config.mode)?;
    let mut progress = ReadProgress::new(&scans, |_| true);
    bar.phase("verify: reading", progress.total);
    let skipping = config.mode == RecoveryMode::SkipCorrupt;

    let mut lanes = Vec::with_capacity(scans.len());
    for scan in &scans {
        let refused = scan.check(&wal.dir, config.mode).err();
        // Each lane is read on its own, up to where its scan says it ends
        // (or, skipping, every run of it), so that damage in one lane does
        // not hide the others.
        let opts = RecoveryOptions {
            mode: if skipping {
                RecoveryMode::SkipCorrupt
            } else {
                RecoveryMode::PointInTime
            },
            from_checkpoint: false,
            max_epoch: u64::MAX,
            lanes: None,
        };
        let read = scan.stats(opts.mode).map_err(|e| Failure::from_error(&e))?;
        let mut records = 0u64;
        let mut read_error = None;
        match Recovery::new(wal.io.clone(), &wal.dir, vec![scan.clone()], &opts, None) {
            Ok(mut recovery) => loop {
                match recovery.next() {
                    Ok(Some(entry)) => {
                        records += 1;
                        if records.is_multiple_of(PROGRESS_EVERY) {
                            progress.record(entry.core_id, entry.position);
                            bar.set(progress.done);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        read_error = Some(e);
                        break;
                    }
                }
            },
            Err(e) => read_error = Some(e),
        }
        if let Some(e) = &read_error
            && wal::status_of(e) != DAMAGED
        {
            return Err(Failure::from_error(e));
        }
        lanes.push(LaneReport {
            scan,
            read,
            skipping,
            records,
            refused,
            read_error,
        });
    }
    bar.finish();

    let sound = lanes.iter().all(LaneReport::sound);
    let report = if config.json {
        format!("{}\n", json_report(config, &wal, &lanes, sound))
    } else {
        text_report(config, &wal, &lanes, sound)
    };
    wal::emit(&report)?;
    Ok(if sound { 0 } else { DAMAGED })
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn text_report(config: &Config, wal: &Wal, lanes: &[LaneReport<'_>], sound: bool) -> String {
    let mode = wal::mode_name(config.mode);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "WAL {}: format {}, {}, segment_bytes {}; mode {mode}",
        wal.dir.display(),
        wal.meta.format_version,
        plural(u64::from(wal.meta.num_cores), "lane", "lanes"),
        wal.meta.segment_bytes,
    );
    for lane in lanes {
        let scan = lane.scan;
        let _ = write!(
            out,
            "lane {}: {}",
            scan.core_id,
            plural(lane.read.segments, "segment", "segments"),
        );
        if lane.read.segments > 0 {
            let _ = write!(out, " ({})", wal::segment_range(scan));
        }
        let _ = write!(
            out,
            ", {}, {}: ",
            plural(lane.records, "record", "records"),
            plural(lane.read.bytes, "byte", "bytes"),
        );
        if !lane.read.damaged.is_empty() && lane.read_error.is_none() {
            push_damaged(&mut out, scan.core_id, &lane.read.damaged);
            if lane.damage().is_some() {
                out.push_str("; ");
            }
        }
        match (lane.verdict(), lane.damage()) {
            (
                "corrupt",
                Some(Damage {
                    segment,
                    offset,
                    reason,
                    ..
                }),
            ) => {
                let word = if lane.sound() { "corrupt" } else { "CORRUPT" };
                let _ = write!(out, "{word} at {segment} offset {offset}: {reason}");
                if lane.read_error.is_some() {
                    out.push_str(" (a record whose frame checks does not read back)");
                } else if lane.sound() {
                    out.push_str("; point-in-time recovery stops this lane there");
                }
            }
            (
                "torn_tail" | "damaged",
                Some(Damage {
                    segment,
                    offset,
                    reason,
                    ..
                }),
            ) => {
                if lane.sound() {
                    let _ = write!(
                        out,
                        "torn tail at {segment} offset {offset} ({reason}); \
                         recovery cuts it and keeps every record before it"
                    );
                } else {
                    let _ = write!(
                        out,
                        "TORN TAIL at {segment} offset {offset}: {reason}; refused by mode {mode}"
                    );
                }
            }
            ("damaged", None) => {}
            _ => out.push_str("clean"),
        }
        out.push('\n');
    }
    if !wal.foreign.is_empty() {
        let _ = writeln!(
            out,
            "note: {} of lanes beyond num_cores {} ignored: {}",
            plural(wal.foreign.len() as u64, "segment file", "segment files"),
            wal.meta.num_cores,
            wal.foreign.join(", ")
        );
    }
    let records: u64 = lanes.iter().map(|l| l.records).sum();
    let bytes: u64 = lanes.iter().map(|l| l.read.bytes).sum();
    let torn = lanes
        .iter()
        .filter(|l| l.sound() && l.damage().is_some() && l.verdict() != "corrupt")
        .count() as u64;
    let ranges: u64 = lanes.iter().map(|l| l.read.damaged.len() as u64).sum();
    let damaged_bytes: u64 = lanes.iter().map(LaneReport::damaged_bytes).sum();
    let stopped = lanes
        .iter()
        .filter(|l| l.sound() && l.verdict() == "corrupt")
        .count() as u64;
    if sound {
        let _ = write!(
            out,
            "sound (mode {mode}): {}, {}, {}",
            plural(lanes.len() as u64, "lane", "lanes"),
            plural(records, "record", "records"),
            plural(bytes, "byte", "bytes"),
        );
        if torn > 0 {
            let _ = write!(
                out,
                "; {} cut by recovery",
                plural(torn, "torn tail", "torn tails")
            );
        }
        if stopped > 0 {
            let _ = write!(
                out,
                "; {} read up to the damage",
                plural(stopped, "corrupt lane", "corrupt lanes")
            );
        }
        if ranges > 0 {
            let _ = write!(
                out,
                "; {} ({}) skipped",
                plural(ranges, "damaged range", "damaged ranges"),
                plural(damaged_bytes, "byte", "bytes"),
            );
        }
    } else {
        let bad: Vec<String> = lanes
            .iter()
            .filter(|l| !l.sound())
            .map(|l| l.scan.core_id.to_string())
            .collect();
        let _ = write!(
            out,
            "DAMAGED (mode {mode}): {} of {} refused ({} {}); {} and {} readable before the damage",
            bad.len(),
            plural(lanes.len() as u64, "lane", "lanes"),
            if bad.len() == 1 { "lane" } else { "lanes" },
            bad.join(", "),
            plural(records, "record", "records"),
            plural(bytes, "byte", "bytes"),
        );
    }
    out.push('\n');
    out
}

fn json_report(config: &Config, wal: &Wal, lanes: &[LaneReport<'_>], sound: bool) -> JsonObject {
    let mut o = JsonObject::default();
    o.field("dir", wal.dir.display().to_string());
    o.field("mode", wal::mode_name(config.mode));
    o.field("sound", sound);
    o.field("format_version", wal.meta.format_version);
    o.field("num_cores", wal.meta.num_cores);
    o.field("segment_bytes", wal.meta.segment_bytes);
    o.field("records", lanes.iter().map(|l| l.records).sum::<u64>());
    o.field("bytes", lanes.iter().map(|l| l.read.bytes).sum::<u64>());
    let count = |verdict: &str| lanes.iter().filter(|l| l.verdict() == verdict).count();
    o.field("torn_tails", count("torn_tail"));
    o.field("corrupt_lanes", count("corrupt"));
    o.field("refused_lanes", lanes.iter().filter(|l| !l.sound()).count());
    o.field(
        "damaged_ranges",
        lanes.iter().map(|l| l.read.damaged.len()).sum::<usize>(),
    );
    o.field(
        "damaged_bytes",
        lanes.iter().map(LaneReport::damaged_bytes).sum::<u64>(),
    );
    o.objects(
        "lanes",
        lanes.iter().map(|lane| {
            let scan = lane.scan;
            let mut l = wal::lane_json(scan, &lane.read, lane.records);
            l.field("verdict", lane.verdict());
            l.field("sound", lane.sound());
            match lane.damage() {
                Some(damage) => {
                    let mut d = JsonObject::default();
                    d.field("segment", damage.segment);
                    d.field("offset", damage.offset);
                    d.field("position", damage.position);
                    d.field("reason", damage.reason);
                    d.field("record_unreadable", lane.read_error.is_some());
                    l.object("damage", d);
                }
                None => l.field("damage", None::<u64>),
            }
            let error = lane.read_error.as_ref().or(lane.refused.as_ref());
            l.field("error", error.map(|e| e.to_string()));
            l.objects(
                "damaged_ranges",
                lane.read.damaged.iter().map(|d| {
                    let mut r = JsonObject::default();
                    r.field("segment", segment_name(scan.core_id, d.segment_index));
                    r.field("segment_index", d.segment_index);
                    r.field("offset", d.offset);
                    r.field("length", d.length);
                    r.field("reason", d.kind.to_string());
                    r
                }),
            );
            l
        }),
    );
    o.field("foreign_segments", wal.foreign.len());
    o
}

/// Damaged ranges shown in a lane's text line; the rest are counted.
const SHOWN_RANGES: usize = 8;

/// `2 damaged ranges (368 bytes) skipped: wal-...log offset 248 length 184
/// (frames fail their checksum), ...`.
fn push_damaged(out: &mut String, core_id: u32, ranges: &[DamagedRange]) {
    let bytes: u64 = ranges.iter().map(|d| d.length).sum();
    let _ = write!(
        out,
        "{} ({}) skipped: ",
        plural(ranges.len() as u64, "damaged range", "damaged ranges"),
        plural(bytes, "byte", "bytes"),
    );
    for (i, d) in ranges.iter().take(SHOWN_RANGES).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(
            out,
            "{} offset {} length {} ({})",
            segment_name(core_id, d.segment_index),
            d.offset,
            d.length,
            d.kind
        );
    }
    if ranges.len() > SHOWN_RANGES {
        let _ = write!(out, ", and {} more", ranges.len() - SHOWN_RANGES);
    }
}
