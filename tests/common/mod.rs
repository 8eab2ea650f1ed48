//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

use corewal::io::Io;
use corewal::{Manager, MemIo, OpView, Options, Recovery, RecoveryOptions};

pub const DIR: &str = "/wal";

pub fn dir() -> &'static Path {
    Path::new(DIR)
}

/// Small segments so that tests rotate often.
pub fn options(lanes: u32) -> Options {
    Options {
        num_cores: lanes,
        segment_bytes: 16 << 10,
        ..Options::default()
    }
}

pub fn open(io: &MemIo, lanes: u32) -> Manager<MemIo> {
    Manager::open_with(io.clone(), dir(), &options(lanes)).expect("open")
}

/// A record as the tests compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub core: u32,
    pub sequence: u64,
    pub epoch: u64,
    pub op: String,
}

pub fn describe(op: &OpView<'_>) -> String {
    match op {
        OpView::Put { key, value } => format!(
            "put {} {}",
            String::from_utf8_lossy(key),
            String::from_utf8_lossy(value)
        ),
        OpView::Delete { key } => format!("del {}", String::from_utf8_lossy(key)),
        OpView::Commit { offsets, watermark } => {
            let pairs: Vec<String> = (0..offsets.len())
                .filter_map(|i| offsets.get(i))
                .map(|(n, o)| format!("{}={o}", String::from_utf8_lossy(n)))
                .collect();
            format!("commit [{}] {watermark:?}", pairs.join(","))
        }
        OpView::Checkpoint { checkpoint_id } => format!("checkpoint {checkpoint_id}"),
        OpView::EpochBarrier => "barrier".into(),
    }
}

/// Every record of the WAL in `dir`, in recovery order.
pub fn read_all<I: Io>(io: &I, dir: &Path) -> corewal::Result<Vec<Rec>> {
    read_with(io, dir, &RecoveryOptions::default())
}

pub fn read_with<I: Io>(io: &I, dir: &Path, opts: &RecoveryOptions) -> corewal::Result<Vec<Rec>> {
    let mut recovery = Recovery::open(io.clone(), dir, opts)?;
    let mut out = Vec::new();
    let mut last = None;
    while let Some(e) = recovery.next()? {
        let key = (e.epoch, e.timestamp_ns, e.core_id, e.sequence);
        assert!(
            last.is_none_or(|l| l < key),
            "order broken: {last:?} then {key:?}"
        );
        last = Some(key);
        out.push(Rec {
            core: e.core_id,
            sequence: e.sequence,
            epoch: e.epoch,
            op: describe(&e.op),
        });
    }
    Ok(out)
}

/// The PUT payloads of `recs` in lane `core`.
pub fn puts(recs: &[Rec], core: u32) -> Vec<String> {
    recs.iter()
        .filter(|r| r.core == core && r.op.starts_with("put"))
        .map(|r| r.op.clone())
        .collect()
}

pub fn segment(core: u32, index: u64) -> std::path::PathBuf {
    corewal::segment::segment_path(dir(), core, index)
}
