//! `corewal dump`: every record of a WAL in recovery order, one per line,
//! as text for people (like `pg_waldump`) or as JSON lines for scripts.

use std::fmt::Write as _;
use std::io::{BufWriter, IsTerminal, Write as _};
use std::path::PathBuf;

use corewal::recovery::Entry;
use corewal::{Error, OpKind, OpView, Recovery, RecoveryMode, RecoveryOptions};

use crate::json::{Hex, JsonWriter};
use crate::progress::Bar;
use crate::wal::{self, Failure, ReadProgress, Wal};

pub const USAGE: &str = "\
Print the records of a WAL in recovery order, one per line

Usage: corewal dump DIR [OPTIONS]

Reads the WAL in DIR without locking or changing it (a manager may have it
open). Records come in the order recovery replays them: by epoch, timestamp,
lane and sequence. Text lines look like

  lane 0 seq 12 epoch 3 ts 2026-11-21T20:08:04.123456789Z pos 4096 PUT key=\"abc\" value=\"x\"

Keys and values show as quoted text when printable, else as 0x and hex;
past 32 bytes only the first 32 are shown, after the full length.

Options:
      --json           One JSON object per line, with every byte (key_hex,
                       value_hex; key and value too when they are UTF-8)
      --lane LIST      Only these lanes, e.g. --lane 0,3
      --from-epoch E   Skip records of epochs before E
      --to-epoch E     Stop each lane after epoch E
      --op LIST        Only these operations: put, delete, commit,
                       checkpoint, barrier (e.g. --op put,delete)
      --mode MODE      How damage is treated: tolerate (default: a torn tail
                       is cut, corruption is refused), absolute (any damage
                       is refused), point-in-time (each lane up to its first
                       damage), skip-corrupt (every valid record, skipping
                       damaged ranges; 'corewal verify' lists them)
      --limit N        Stop after N records
  -h, --help           Print this help

Exit status: 0 when every record was printed (or the reader closed the
pipe), 1 when the WAL is damaged, 2 when DIR is not a WAL or cannot be read.
";

/// Bytes of a key or value shown in text lines.
const SHOWN_BYTES: usize = 32;
/// Source offsets of a COMMIT shown in text lines.
const SHOWN_OFFSETS: usize = 8;

/// Options of `corewal dump`.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub dir: PathBuf,
    pub json: bool,
    pub lanes: Option<Vec<u32>>,
    pub from_epoch: Option<u64>,
    pub to_epoch: Option<u64>,
    pub ops: Option<Vec<OpKind>>,
    pub mode: RecoveryMode,
    pub limit: Option<u64>,
}

/// The name `--op` and JSON lines use for an operation.
pub fn op_name(kind: OpKind) -> &'static str {
    match kind {
        OpKind::Put => "put",
        OpKind::Delete => "delete",
        OpKind::Commit => "commit",
        OpKind::Checkpoint => "checkpoint",
        OpKind::EpochBarrier => "barrier",
    }
}

pub fn parse_op(name: &str) -> Option<OpKind> {
    match name.to_ascii_lowercase().as_str() {
        "put" => Some(OpKind::Put),
        "delete" | "del" => Some(OpKind::Delete),
        "commit" => Some(OpKind::Commit),
        "checkpoint" => Some(OpKind::Checkpoint),
        "barrier" | "epoch_barrier" | "epoch-barrier" => Some(OpKind::EpochBarrier),
        _ => None,
    }
}

/// Records between two looks at the clock for the progress bar.
const PROGRESS_EVERY: u64 = 1024;

pub fn run(config: &Config) -> Result<u8, Failure> {
    let wal = Wal::open(&config.dir)?;
    // Lines scrolling on the terminal are progress enough.
    let bar_allowed = !std::io::stdout().is_terminal();
    let mut bar = Bar::new("dump: scanning", wal.segment_file_bytes(), bar_allowed);
    let scans = wal.scan(&mut bar, config.mode)?;
    let wanted = |core: u32| config.lanes.as_ref().is_none_or(|l| l.contains(&core));
    let mut progress = ReadProgress::new(&scans, wanted);
    bar.phase("dump: reading", progress.total);
    let opts = RecoveryOptions {
        mode: config.mode,
        // Every record on disk, whatever a checkpoint says.
        from_checkpoint: false,
        max_epoch: config.to_epoch.unwrap_or(u64::MAX),
        lanes: config.lanes.clone(),
    };
    let mut recovery = Recovery::new(wal.io.clone(), &wal.dir, scans, &opts, None)
        .map_err(|e| refused(&e, config))?;

    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut line = String::new();
    let mut printed = 0u64;
    let mut seen = 0u64;
    let failure = loop {
        if config.limit.is_some_and(|limit| printed >= limit) {
            break None;
        }
        let entry = match recovery.next() {
            Ok(Some(entry)) => entry,
            Ok(None) => break None,
            Err(e) => break Some(Failure::from_error(&e)),
        };
        seen += 1;
        if seen.is_multiple_of(PROGRESS_EVERY) {
            progress.record(entry.core_id, entry.position);
            bar.set(progress.done);
        }
        if config.from_epoch.is_some_and(|from| entry.epoch < from)
            || config
                .ops
                .as_ref()
                .is_some_and(|ops| !ops.contains(&entry.op.kind()))
        {
            continue;
        }
        line.clear();
        if config.json {
            json_line(&mut line, &entry);
        } else {
            text_line(&mut line, &entry);
        }
        line.push('\n');
        if let Err(e) = out.write_all(line.as_bytes()) {
            bar.finish();
            return wal::output_failure(e).map(|()| 0);
        }
        printed += 1;
    };
    bar.finish();
    // What was read before a failure is still printed.
    let flushed = out.flush();
    if let Some(failure) = failure {
        return Err(failure);
    }
    if let Err(e) = flushed {
        wal::output_failure(e)?;
    }
    Ok(0)
}

/// The message when the mode refuses to open: what is damaged, and how to
/// read what precedes the damage.
fn refused(e: &Error, config: &Config) -> Failure {
    let mut failure = Failure::from_error(e);
    if matches!(e, Error::Corrupt { .. })
        && !matches!(
            config.mode,
            RecoveryMode::PointInTime | RecoveryMode::SkipCorrupt
        )
    {
        failure.message.push_str(
            "; --mode point-in-time prints each lane up to its first damage, \
             --mode skip-corrupt every valid record around it, \
             'corewal verify' reports every lane",
        );
    }
    failure
}

/// `lane 0 seq 12 epoch 3 ts ... pos 4096 PUT key="abc" value="x"`.
pub fn text_line(out: &mut String, e: &Entry<'_>) {
    let _ = write!(
        out,
        "lane {} seq {} epoch {} ts {} pos {} ",
        e.core_id,
        e.sequence,
        e.epoch,
        wal::timestamp(e.timestamp_ns),
        e.position
    );
    match e.op {
        OpView::Put { key, value } => {
            out.push_str("PUT key=");
            wal::push_bytes(out, key, SHOWN_BYTES);
            out.push_str(" value=");
            wal::push_bytes(out, value, SHOWN_BYTES);
        }
        OpView::Delete { key } => {
            out.push_str("DELETE key=");
            wal::push_bytes(out, key, SHOWN_BYTES);
        }
        OpView::Commit { offsets, watermark } => {
            out.push_str("COMMIT offsets=[");
            for i in 0..offsets.len().min(SHOWN_OFFSETS) {
                if let Some((name, offset)) = offsets.get(i) {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    wal::push_bytes(out, name, SHOWN_BYTES);
                    let _ = write!(out, "={offset}");
                }
            }
            if offsets.len() > SHOWN_OFFSETS {
                let _ = write!(out, ", ... {} in all", offsets.len());
            }
            out.push_str("] watermark=");
            match watermark {
                Some(w) => {
                    let _ = write!(out, "{w}");
                }
                None => out.push_str("none"),
            }
        }
        OpView::Checkpoint { checkpoint_id } => {
            let _ = write!(out, "CHECKPOINT id={checkpoint_id}");
        }
        OpView::EpochBarrier => out.push_str("EPOCH_BARRIER"),
    }
}

/// `{"lane":0,"seq":12,"epoch":3,"timestamp_ns":..,"time":"..","position":4096,"op":"put",..}`.
pub fn json_line(out: &mut String, e: &Entry<'_>) {
    let mut o = JsonWriter::new(out);
    o.field("lane", e.core_id);
    o.field("seq", e.sequence);
    o.field("epoch", e.epoch);
    o.field("timestamp_ns", e.timestamp_ns);
    o.field("time", wal::timestamp(e.timestamp_ns));
    o.field("position", e.position);
    o.field("op", op_name(e.op.kind()));
    match e.op {
        OpView::Put { key, value } => {
            bytes(&mut o, "key_hex", "key", key);
            bytes(&mut o, "value_hex", "value", value);
        }
        OpView::Delete { key } => bytes(&mut o, "key_hex", "key", key),
        OpView::Commit { offsets, watermark } => {
            let pairs = (0..offsets.len()).filter_map(|i| offsets.get(i));
            o.objects("offsets", pairs, |item, (name, offset)| {
                bytes(item, "name_hex", "name", name);
                item.field("offset", offset);
            });
            o.field("watermark", watermark);
        }
        OpView::Checkpoint { checkpoint_id } => o.field("checkpoint_id", checkpoint_id),
        OpView::EpochBarrier => {}
    }
    o.finish();
}

/// Bytes as `hex` (always) and `text` (when they are UTF-8).
fn bytes(o: &mut JsonWriter<'_>, hex: &str, text: &str, b: &[u8]) {
    o.field(hex, Hex(b));
    if let Ok(s) = std::str::from_utf8(b) {
        o.field(text, s);
    }
}
