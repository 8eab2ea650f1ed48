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
