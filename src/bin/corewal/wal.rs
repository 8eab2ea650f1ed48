//! What `dump`, `verify` and `stats` share: opening a directory as a WAL
//! (read-only, no lock), scanning its lanes with a progress bar, how
//! failures map to exit statuses, and showing record fields as text.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use corewal::meta::Meta;
use corewal::recovery::{LaneScan, LaneStats, RecoveryMode, ScanOptions, Verdict, scan_lane_with};
use corewal::segment::{list_segments, segment_path};
use corewal::{Error, FileIo};

use crate::json::JsonObject;
use crate::progress::Bar;

/// Exit status of a WAL that is damaged (or a record that cannot be read).
pub const DAMAGED: u8 = 1;
/// Exit status of a path that is not a WAL or cannot be read, and of bad usage.
pub const UNREADABLE: u8 = 2;

/// Why a command stopped: a one-line message and the exit status.
#[derive(Debug)]
pub struct Failure {
    pub status: u8,
    pub message: String,
}

impl Failure {
    pub fn unreadable(message: impl Into<String>) -> Failure {
        Failure {
            status: UNREADABLE,
            message: message.into(),
        }
    }

    /// A library error: damage is [`DAMAGED`], everything else (I/O,
    /// arguments the WAL does not accept) [`UNREADABLE`].
    pub fn from_error(e: &Error) -> Failure {
        Failure {
            status: status_of(e),
            message: one_line(&e.to_string()),
        }
    }
}

pub fn status_of(e: &Error) -> u8 {
    match e {
        Error::Corrupt { .. } | Error::CorruptMeta(_) => DAMAGED,
        _ => UNREADABLE,
    }
}

/// Messages are printed on one line whatever a reason holds.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// Writes `text` to stdout. A reader that went away (`| head`) is not an
/// error: the output is simply not wanted any more.
pub fn emit(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) => output_failure(e),
    }
}

/// What a failed write to stdout means: nothing when the reader closed the
/// pipe, a one-line failure otherwise.
pub fn output_failure(e: std::io::Error) -> Result<(), Failure> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(Failure::unreadable(format!("writing to stdout: {e}")))
    }
}

/// A WAL directory opened for reading.
pub struct Wal {
    pub dir: PathBuf,
    pub io: FileIo,
    pub meta: Meta,
    /// Segment indexes of each lane, sorted.
    pub segments: Vec<Vec<u64>>,
    /// Segment files of lanes at or beyond `num_cores`, which no reader uses.
    pub foreign: Vec<String>,
}

impl Wal {
    /// Opens `dir` if it holds a WAL: its metadata and the list of its
    /// segments. Nothing is locked or written.
    pub fn open(dir: &Path) -> Result<Wal, Failure> {
        let shown = dir.display();
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(Failure::unreadable(format!("{shown}: not a directory"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Failure::unreadable(format!("{shown}: no such directory")));
            }
            Err(e) => return Err(Failure::unreadable(format!("{shown}: {e}"))),
        }
        let io = FileIo::default();
        let meta = match Meta::read(&io, dir) {
            Ok(Some(meta)) => meta,
            Ok(None) => {
                return Err(Failure::unreadable(format!(
                    "{shown}: no WAL here (no {})",
                    corewal::meta::META_FILE
                )));
            }
            Err(e) => {
                let mut failure = Failure::from_error(&e);
                if matches!(e, Error::CorruptMeta(_)) {
                    failure.message = format!("{shown}: {}", failure.message);
                }
                return Err(failure);
            }
        };
        let (segments, foreign) =
            list_segments(&io, dir, meta.num_cores).map_err(|e| Failure::from_error(&e))?;
        Ok(Wal {
            dir: dir.to_owned(),
            io,
            meta,
            segments,
            foreign,
        })
    }

    /// Bytes of every lane's segment files, as the file system reports them.
    pub fn segment_file_bytes(&self) -> u64 {
        self.segments
            .iter()
            .enumerate()
            .flat_map(|(core, indexes)| {
                indexes
                    .iter()
                    .map(move |&index| segment_path(&self.dir, core as u32, index))
            })
            .filter_map(|path| std::fs::metadata(path).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Scans every lane as `recovery::scan_dir` does, a lane at a time so
    /// that `bar` can follow (by segment file bytes), collecting what
    /// reading in `mode` needs.
    pub fn scan(&self, bar: &mut Bar, mode: RecoveryMode) -> Result<Vec<LaneScan>, Failure> {
        let mut done = 0u64;
        let mut scans = Vec::with_capacity(self.segments.len());
        for (core, indexes) in self.segments.iter().enumerate() {
            let core = core as u32;
            let opts = ScanOptions::for_mode(mode, 0);
            let scan = scan_lane_with(&self.io, &self.dir, core, indexes, opts)
                .map_err(|e| Failure::from_error(&e))?;
            done += indexes
                .iter()
                .filter_map(|&i| std::fs::metadata(segment_path(&self.dir, core, i)).ok())
                .map(|m| m.len())
                .sum::<u64>();
            bar.set(done);
            scans.push(scan);
        }
        Ok(scans)
    }
}

/// Tracks how far a read through a `Recovery` has come, in lane bytes, for
/// a progress bar.
pub struct ReadProgress {
    /// Each lane's position as last reported.
    at: Vec<u64>,
    pub done: u64,
    pub total: u64,
}

impl ReadProgress {
    /// For the lanes of `scans` that `wanted` keeps.
    pub fn new(scans: &[LaneScan], wanted: impl Fn(u32) -> bool) -> ReadProgress {
        let total = scans
            .iter()
            .filter(|s| wanted(s.core_id))
            .map(lane_bytes)
            .sum();
        ReadProgress {
            at: scans.iter().map(|s| s.start_position).collect(),
            done: 0,
            total,
        }
    }

    /// A record of lane `core` starts at `position`.
    pub fn record(&mut self, core: u32, position: u64) {
        if let Some(at) = self.at.get_mut(core as usize)
            && position > *at
        {
            self.done += position - *at;
            *at = position;
        }
    }
}

/// The segments a reader reads from a lane and where its data ends: every
/// run of a scan that collected runs (skip-corrupt), else the valid prefix.
pub struct Extent {
    pub first: Option<u64>,
    pub last: Option<u64>,
    /// Segment files after `last`.
    pub past_end: usize,
    pub end_position: u64,
}

pub fn extent(scan: &LaneScan) -> Extent {
    let Some(skip) = &scan.skip else {
        return Extent {
            first: scan.kept.first().map(|k| k.index),
            last: scan.kept.last().map(|k| k.index),
            past_end: scan.beyond.len(),
            end_position: scan.end_position,
        };
    };
    let last = skip.runs.last();
    let past = |index: &&u64| last.is_none_or(|l| **index > l.index);
    Extent {
        first: skip.runs.first().map(|r| r.index),
        last: last.map(|r| r.index),
        past_end: scan
            .kept
            .iter()
            .map(|k| &k.index)
            .chain(&scan.beyond)
            .filter(past)
            .count(),
        end_position: last.map_or(scan.start_position, |r| r.end_position()),
    }
}

/// The JSON fields every tool reports for a lane: where the scan found its
/// data, the library's statistics of what a reader gets (`read`), and the
/// records the caller read back, in this order.
pub fn lane_json(scan: &LaneScan, read: &LaneStats, records: u64) -> JsonObject {
    let extent = extent(scan);
    let mut l = JsonObject::default();
    l.field("lane", scan.core_id);
    l.field("segments", read.segments);
    l.field("first_segment", extent.first);
    l.field("last_segment", extent.last);
    l.field("segments_past_end", extent.past_end);
    l.field("records", records);
    l.field("bytes", read.bytes);
    l.field("start_position", scan.start_position);
    l.field("end_position", extent.end_position);
    l
}

/// Bytes of a lane's valid prefix.
pub fn lane_bytes(scan: &LaneScan) -> u64 {
    scan.end_position.saturating_sub(scan.start_position)
}

pub fn mode_name(mode: RecoveryMode) -> &'static str {
    match mode {
        RecoveryMode::TolerateTornTail => "tolerate",
        RecoveryMode::Absolute => "absolute",
        RecoveryMode::PointInTime => "point-in-time",
        RecoveryMode::SkipCorrupt => "skip-corrupt",
    }
}

pub fn parse_mode(name: &str) -> Option<RecoveryMode> {
    match name {
        "tolerate" | "tolerate-torn-tail" => Some(RecoveryMode::TolerateTornTail),
        "absolute" => Some(RecoveryMode::Absolute),
        "point-in-time" => Some(RecoveryMode::PointInTime),
        "skip-corrupt" => Some(RecoveryMode::SkipCorrupt),
        _ => None,
    }
}

/// The verdict as JSON names it.
pub fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Clean => "clean",
        Verdict::TornTail => "torn_tail",
        Verdict::Corrupt => "corrupt",
    }
}

/// `first-last` of the segments a reader reads (see [`extent`]), `-` when
/// there are none.
pub fn segment_range(scan: &LaneScan) -> String {
    let extent = extent(scan);
    match (extent.first, extent.last) {
        (Some(first), Some(last)) if first == last => first.to_string(),
        (Some(first), Some(last)) => format!("{first}-{last}"),
        _ => "-".into(),
    }
}

/// A wall-clock time in nanoseconds since the Unix epoch, as RFC 3339 UTC
/// with nanoseconds: `2026-11-21T20:08:04.123456789Z`.
pub fn timestamp(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        day_secs / 3600,
        day_secs % 3600 / 60,
        day_secs % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Appends `bytes` for a person: quoted, escaped text when it is printable
/// UTF-8, else `0x` and hex. Past `max` bytes only the first `max` are
/// shown, after the full length and followed by `...`:
/// `100 bytes "0123456789abcdef0123456789abcdef"...`.
pub fn push_bytes(out: &mut String, bytes: &[u8], max: usize) {
    let shown = &bytes[..bytes.len().min(max)];
    let truncated = shown.len() < bytes.len();
    if truncated {
        let _ = write!(out, "{} bytes ", bytes.len());
    }
    match printable(shown, truncated) {
        Some(text) => {
            out.push('"');
            for c in text.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        None => {
            out.push_str("0x");
            crate::json::push_hex(out, shown);
        }
    }
    if truncated {
        out.push_str("...");
    }
}

/// `bytes` as text when it is UTF-8 without control characters other than
/// tab and line breaks; a cut through the last character is allowed when
/// `truncated`.
fn printable(bytes: &[u8], truncated: bool) -> Option<&str> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) if truncated && e.error_len().is_none() => {
            std::str::from_utf8(&bytes[..e.valid_up_to()]).ok()?
        }
        Err(_) => return None,
    };
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\t' | '\r'))
        .then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(timestamp(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(
            timestamp(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            timestamp(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
        // The extremes do not overflow.
        assert!(timestamp(i64::MIN).starts_with("1677-09-21T"));
        assert!(timestamp(i64::MAX).starts_with("2262-04-11T"));
    }

    fn shown(bytes: &[u8], max: usize) -> String {
        let mut out = String::new();
        push_bytes(&mut out, bytes, max);
        out
    }

    #[test]
    fn bytes_show_as_text_or_hex_and_long_ones_are_cut() {
        assert_eq!(shown(b"abc", 32), r#""abc""#);
        assert_eq!(shown(b"", 32), r#""""#);
        assert_eq!(shown(b"a\"b\\c\n", 32), r#""a\"b\\c\n""#);
        assert_eq!(shown(&[0, 1, 0xff], 32), "0x0001ff");
        assert_eq!(shown(b"\x1b[31m", 32), "0x1b5b33316d");
        assert_eq!(shown(b"0123456789", 4), r#"10 bytes "0123"..."#);
        assert_eq!(shown(&[0xab; 6], 2), "6 bytes 0xabab...");
        // A cut through a multi-byte character still reads as text.
        assert_eq!(shown("añb".as_bytes(), 2), r#"4 bytes "a"..."#);
        assert_eq!(shown("añb".as_bytes(), 32), r#""añb""#);
    }
}
