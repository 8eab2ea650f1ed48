//! The corewal side of the workloads, through the library's public Rust API
//! with default options (64 MiB segments, preallocation) but the backend.

use std::path::Path;

use corewal::{Backend, FileIo, Manager, OpView, Options, Recovery, RecoveryOptions, Writer};

use crate::data;
use crate::mem::Probe;
use crate::report::Rss;

/// Opens (creating) a WAL with `lanes` lanes on `backend` and otherwise
/// default options. [`corewal::Error::Unsupported`] for io_uring where no
/// ring can be set up.
pub fn open(dir: &Path, lanes: u32, backend: Backend) -> corewal::Result<Manager> {
    let options = Options {
        num_cores: lanes,
        backend,
        ..Options::default()
    };
    Manager::open(dir, &options)
}

/// How the command line and the report name a backend.
pub fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Auto => "auto",
        Backend::Sync => "sync",
        Backend::IoUring => "io_uring",
    }
}

/// The backend named `name` (`auto`, `sync`, `io_uring`).
pub fn parse_backend(name: &str) -> Option<Backend> {
    [Backend::Auto, Backend::Sync, Backend::IoUring]
        .into_iter()
        .find(|&b| backend_name(b) == name || (b == Backend::IoUring && name == "io-uring"))
}

/// Appends record `index` of `lane`.
#[inline]
pub fn append(writer: &Writer<FileIo>, lane: u32, index: u64) -> corewal::Result<u64> {
    writer.append_put(&data::key(lane, index), &data::VALUE)
}

/// What reading a WAL back yielded.
#[derive(Debug, Clone, Copy)]
pub struct ReadBack {
    pub records: u64,
    /// Bytes of frame data in the lanes read.
    pub bytes: u64,
    pub rss: Rss,
}

/// Reads every record of the WAL in `dir` through the recovery iterator,
/// touching each key and value as a user would; the resident set is taken
/// from `probe` while the iterator is still open.
pub fn read_all(dir: &Path, probe: &Probe) -> corewal::Result<ReadBack> {
    let mut recovery = Recovery::open(FileIo::default(), dir, &RecoveryOptions::default())?;
    let (mut records, mut touched) = (0u64, 0u64);
    while let Some(entry) = recovery.next()? {
        records += 1;
        if let OpView::Put { key, value } = entry.op {
            let last = key.last().copied().unwrap_or(0);
            touched = touched.wrapping_add(u64::from(last) + value.len() as u64);
        }
    }
    std::hint::black_box(touched);
    let bytes = recovery
        .scans()
        .iter()
        .map(|s| s.end_position - s.start_position)
        .sum();
    Ok(ReadBack {
        records,
        bytes,
        rss: probe.finish(),
    })
}

/// Recovery from a checkpoint against a full replay of the same log.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointReplay {
    /// PUT records yielded and seconds taken by a full replay.
    pub full: (u64, f64),
    /// The same from the checkpoint.
    pub from_checkpoint: (u64, f64),
    /// Segments the full replay read, and those the checkpoint left out.
    pub segments: usize,
    pub skipped: usize,
}

/// Checkpoints the one-lane WAL in `dir` as it stands (the one-call
/// protocol), appends `tail` records after it, then times a full replay
/// and a recovery from the checkpoint.
pub fn checkpoint_replay(
    dir: &Path,
    backend: Backend,
    tail: u64,
) -> corewal::Result<CheckpointReplay> {
    let manager = open(dir, 1, backend)?;
    manager.checkpoint(1, b"bench")?;
    let writer = manager.writer(0)?;
    for index in 0..tail {
        writer.append_put(&data::key(1, index), &data::VALUE)?;
    }
    manager.close()?;
    let replay = |from_checkpoint: bool| -> corewal::Result<(u64, f64, usize)> {
        let options = RecoveryOptions {
            from_checkpoint,
            ..RecoveryOptions::default()
        };
        let start = std::time::Instant::now();
        let mut recovery = Recovery::open(FileIo::default(), dir, &options)?;
        // PUTs only: the checkpoint adds its epoch barriers to the log.
        let mut records = 0u64;
        while let Some(entry) = recovery.next()? {
            records += u64::from(matches!(entry.op, OpView::Put { .. }));
        }
        let secs = start.elapsed().as_secs_f64();
        let segments = recovery.scans().iter().map(|s| s.kept.len()).sum();
        Ok((records, secs, segments))
    };
    let (records, secs, segments) = replay(false)?;
    let (cp_records, cp_secs, cp_segments) = replay(true)?;
    Ok(CheckpointReplay {
        full: (records, secs),
        from_checkpoint: (cp_records, cp_secs),
        segments,
        skipped: segments - cp_segments,
    })
}
