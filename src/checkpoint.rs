//! The checkpoint manifest: which checkpoint is the latest, the epoch it
//! covers, where each lane's replay starts, and the caller's opaque bytes.
//!
//! The invariant (SPEC §5): the state at checkpoint epoch E plus the replay
//! of every record with epoch > E is the consistent state. Each lane's start
//! is the position of its EPOCH_BARRIER closing E: everything before it has
//! an epoch <= E. The manifest is replaced atomically (temp file, fsync,
//! rename, directory fsync), so a crash at any step leaves the old manifest
//! or the new one, never neither.
//!
//! The reset marker lives here too: a small file that says a reset of every
//! lane is under way (see `Manager::reset`).

use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::io::Io;
use crate::meta::{Field, corrupt, open_fields, read_sealed, seal_lines, write_sealed};

/// Name of the manifest inside a WAL directory.
pub const MANIFEST_FILE: &str = "corewal.manifest";
/// Name of the marker of a reset under way.
pub const RESET_FILE: &str = "corewal.reset";
/// Largest `meta` a checkpoint may carry.
pub const MAX_META_BYTES: usize = 256 << 10;

/// The latest checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub checkpoint_id: u64,
    /// Every record of this epoch or earlier is covered by the checkpoint.
    pub epoch: u64,
    /// Per lane: the position replay starts from.
    pub lane_starts: Vec<u64>,
    /// The caller's opaque bytes.
    pub meta: Vec<u8>,
}

impl Manifest {
    /// Text, one `key=value` a line, closed by a checksum of the lines above.
    pub fn encode(&self) -> String {
        let mut body = format!(
            "corewal-manifest\ncheckpoint_id={}\nepoch={}\n",
            self.checkpoint_id, self.epoch
        );
        push_lane_starts(&mut body, &self.lane_starts);
        body.push_str("meta=");
        for byte in &self.meta {
            body.push_str(&format!("{byte:02x}"));
        }
        body.push('\n');
        seal_lines(body)
    }

    pub fn decode(text: &[u8]) -> Result<Manifest> {
        let bad = |why: &str| corrupt(MANIFEST_FILE, why);
        let mut manifest = Manifest {
            checkpoint_id: 0,
            epoch: 0,
            lane_starts: Vec::new(),
            meta: Vec::new(),
        };
        let mut lanes = LaneStarts::default();
        for field in open_fields(text, MANIFEST_FILE, "corewal-manifest")? {
            match field.key {
                "checkpoint_id" => manifest.checkpoint_id = field.number()?,
                "epoch" => manifest.epoch = field.number()?,
                "meta" => {
                    manifest.meta = decode_hex(field.value).ok_or_else(|| bad("meta is not hex"))?
                }
                _ => lanes.take(&field)?, // lane lines, or written by a newer version
            }
        }
        manifest.lane_starts = lanes.finish(MANIFEST_FILE)?;
        Ok(manifest)
    }

    /// The manifest of `dir`; `None` before the first checkpoint.
    pub fn read<I: Io>(io: &I, dir: &Path) -> Result<Option<Manifest>> {
        read_sealed(io, dir, MANIFEST_FILE, Manifest::decode)
    }

    /// Replaces the manifest of `dir` atomically and durably.
    pub fn write<I: Io>(&self, io: &I, dir: &Path) -> Result<()> {
        write_sealed(io, dir, MANIFEST_FILE, &self.encode())
    }

    /// Where replay of lane `core` starts (0 for a lane added after it).
    pub fn lane_start(&self, core: u32) -> u64 {
        self.lane_starts.get(core as usize).copied().unwrap_or(0)
    }

    /// Removes the manifest of `dir`, durably; no manifest is not an error.
    pub fn remove<I: Io>(io: &I, dir: &Path) -> Result<()> {
        remove_durably(io, dir, MANIFEST_FILE)
    }
}

/// A reset under way: each lane's position when it began. Everything before
/// those positions is gone as far as any reader is concerned, whatever is
/// still on disk. Written (atomically) before a reset touches anything and
/// removed once every lane is empty, so a crash in between leaves it for
/// the next open, which finishes the reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetMarker {
    pub lane_starts: Vec<u64>,
}

impl ResetMarker {
    pub fn encode(&self) -> String {
        let mut body = "corewal-reset\n".to_string();
        push_lane_starts(&mut body, &self.lane_starts);
        seal_lines(body)
    }

    pub fn decode(text: &[u8]) -> Result<ResetMarker> {
        let mut lanes = LaneStarts::default();
        for field in open_fields(text, RESET_FILE, "corewal-reset")? {
            lanes.take(&field)?; // lane lines, or written by a newer version
        }
        Ok(ResetMarker {
            lane_starts: lanes.finish(RESET_FILE)?,
        })
    }

    /// The marker of `dir`; `None` when no reset is under way.
    pub fn read<I: Io>(io: &I, dir: &Path) -> Result<Option<ResetMarker>> {
        read_sealed(io, dir, RESET_FILE, ResetMarker::decode)
    }

    /// Writes the marker of `dir` atomically and durably.
    pub fn write<I: Io>(&self, io: &I, dir: &Path) -> Result<()> {
        write_sealed(io, dir, RESET_FILE, &self.encode())
    }

    /// Removes the marker of `dir`, durably: the reset is over.
    pub fn remove<I: Io>(io: &I, dir: &Path) -> Result<()> {
        remove_durably(io, dir, RESET_FILE)
    }
}

/// Writes per-lane positions as the manifest and the reset marker store
/// them: `lanes=N`, then `lane.I=position` for each lane.
fn push_lane_starts(body: &mut String, starts: &[u64]) {
    body.push_str(&format!("lanes={}\n", starts.len()));
    for (lane, start) in starts.iter().enumerate() {
        body.push_str(&format!("lane.{lane}={start}\n"));
    }
}

/// Reads back what [`push_lane_starts`] wrote.
#[derive(Default)]
struct LaneStarts {
    declared: Option<usize>,
    starts: Vec<u64>,
}

impl LaneStarts {
    /// Takes `field` if it is a lane line; ignores any other.
    fn take(&mut self, field: &Field<'_>) -> Result<()> {
        if field.key == "lanes" {
            let n = field.number()?;
            if n > u64::from(crate::options::MAX_CORES) {
                return Err(corrupt(field.file, "too many lanes"));
            }
            self.declared = Some(n as usize);
        } else if field.key.starts_with("lane.") {
            self.starts.push(field.number()?);
        }
        Ok(())
    }

    fn finish(self, file: &str) -> Result<Vec<u64>> {
        if self.declared != Some(self.starts.len()) {
            return Err(corrupt(file, "lane count does not match its lane lines"));
        }
        Ok(self.starts)
    }
}

/// Removes `dir/name` if it exists and makes the removal durable.
fn remove_durably<I: Io>(io: &I, dir: &Path, name: &str) -> Result<()> {
    let path = dir.join(name);
    match io.remove(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
    }
    io.sync_dir(dir)
        .context(|| format!("syncing {}", dir.display()))
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() / 2 > MAX_META_BYTES {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{FaultOp, MemIo};

    fn sample() -> Manifest {
        Manifest {
            checkpoint_id: 7,
            epoch: 3,
            lane_starts: vec![4096, 0, 123_456],
            meta: b"\x00snapshot-7\xff".to_vec(),
        }
    }

    #[test]
    fn round_trips() {
        assert_eq!(
            Manifest::decode(sample().encode().as_bytes()).unwrap(),
            sample()
        );
        let empty = Manifest {
            meta: Vec::new(),
            lane_starts: Vec::new(),
            ..sample()
        };
        assert_eq!(Manifest::decode(empty.encode().as_bytes()).unwrap(), empty);
    }

    #[test]
    fn damage_is_refused() {
        let text = sample().encode();
        for (from, to) in [
            ("epoch=3", "epoch=4"),
            ("lanes=3", "lanes=2"),
            ("meta=00", "meta=0"),
        ] {
            assert!(
                Manifest::decode(text.replace(from, to).as_bytes()).is_err(),
                "{from}"
            );
        }
        assert!(Manifest::decode(b"").is_err());
    }

    #[test]
    fn reset_marker_round_trips_and_refuses_damage() {
        let marker = ResetMarker {
            lane_starts: vec![0, 4096, u64::MAX],
        };
        assert_eq!(
            ResetMarker::decode(marker.encode().as_bytes()).unwrap(),
            marker
        );
        let text = marker.encode();
        assert!(ResetMarker::decode(text.replace("lanes=3", "lanes=2").as_bytes()).is_err());
        assert!(
            ResetMarker::decode(sample().encode().as_bytes()).is_err(),
            "a manifest is not a marker"
        );
        let io = MemIo::new();
        let dir = Path::new("/wal");
        io.create_dir(dir).unwrap();
        assert_eq!(ResetMarker::read(&io, dir).unwrap(), None);
        marker.write(&io, dir).unwrap();
        io.crash();
        io.restart();
        assert_eq!(ResetMarker::read(&io, dir).unwrap(), Some(marker));
        ResetMarker::remove(&io, dir).unwrap();
        ResetMarker::remove(&io, dir).expect("removing it twice is fine");
        io.crash();
        io.restart();
        assert_eq!(ResetMarker::read(&io, dir).unwrap(), None, "durably gone");
    }

    #[test]
    fn a_crash_at_any_step_leaves_the_old_or_the_new_manifest() {
        let dir = Path::new("/wal");
        let old = sample();
        let new = Manifest {
            checkpoint_id: 8,
            epoch: 5,
            ..sample()
        };
        for (op, skip) in [
            (FaultOp::Write, 0),
            (FaultOp::SyncAll, 0),
            (FaultOp::Rename, 0),
            (FaultOp::SyncDir, 0),
        ] {
            let io = MemIo::new();
            io.create_dir(dir).unwrap();
            old.write(&io, dir).unwrap();
            io.fail(op, "", skip, Some(1), libc::EIO);
            assert!(new.write(&io, dir).is_err(), "{op:?}");
            io.crash();
            io.restart();
            assert_eq!(
                Manifest::read(&io, dir).unwrap(),
                Some(old.clone()),
                "{op:?}"
            );
        }
        let io = MemIo::new();
        io.create_dir(dir).unwrap();
        old.write(&io, dir).unwrap();
        new.write(&io, dir).unwrap();
        io.crash();
        io.restart();
        assert_eq!(Manifest::read(&io, dir).unwrap(), Some(new));
    }
}
