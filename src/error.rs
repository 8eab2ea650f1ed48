//! The one error type of the engine. Statuses exist only at the FFI edge.

use std::io;
use std::path::PathBuf;

/// Everything the engine can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "corrupt WAL: lane {lane}, segment {}, offset {offset}: {reason}",
        segment.display()
    )]
    Corrupt {
        lane: u32,
        segment: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("corrupt WAL: {0}")]
    CorruptMeta(String),
    #[error("directory {0} is locked by another open manager")]
    Locked(PathBuf),
    #[error("writer is poisoned by an earlier failure: {0}")]
    Poisoned(String),
    /// Names what is in use: "writer 3", "recovery iterator".
    #[error("{0} is in use by another thread")]
    Busy(String),
    #[error("record of {size} bytes is larger than max_record_bytes ({limit})")]
    TooLarge { size: u64, limit: u64 },
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{0} is closed")]
    Closed(&'static str),
}

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Attaches context to `io::Result`s.
pub(crate) trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}
