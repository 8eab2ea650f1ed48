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
    /// The same error again, for a caller that reports it more than once
    /// (an `io::Error` keeps its kind, errno and message, not its source).
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
            Error::Io { context, source } => Error::Io {
                context: context.clone(),
                source: match source.raw_os_error() {
                    Some(errno) => io::Error::from_raw_os_error(errno),
                    None => io::Error::new(source.kind(), source.to_string()),
                },
            },
            Error::Corrupt {
                lane,
                segment,
                offset,
                reason,
            } => Error::Corrupt {
                lane: *lane,
                segment: segment.clone(),
                offset: *offset,
                reason: reason.clone(),
            },
            Error::CorruptMeta(m) => Error::CorruptMeta(m.clone()),
            Error::Locked(p) => Error::Locked(p.clone()),
            Error::Poisoned(m) => Error::Poisoned(m.clone()),
            Error::Busy(m) => Error::Busy(m.clone()),
            Error::TooLarge { size, limit } => Error::TooLarge {
                size: *size,
                limit: *limit,
            },
            Error::Unsupported(m) => Error::Unsupported(m.clone()),
            Error::NotFound(m) => Error::NotFound(m.clone()),
            Error::Closed(what) => Error::Closed(what),
        }
    }

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
