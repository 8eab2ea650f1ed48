//! corewal: a thread-per-core write-ahead log.
//!
//! Each core appends to its own lane through its own [`Writer`]; lanes share
//! no lock on the append path. After a crash, [`Recovery`] replays every lane
//! in one deterministic order: `(epoch, timestamp_ns, core_id, sequence)`.
//!
//! The C ABI in [`ffi`] is the product's main interface; this Rust API is
//! what it wraps.

pub mod checkpoint;
pub mod direct;
pub mod error;
pub mod ffi;
pub mod format;
pub mod io;
pub mod manager;
pub mod meta;
pub mod options;
pub mod recovery;
pub mod segment;
pub mod uring;
pub mod writer;

pub use error::{Error, Result};
pub use format::{OpKind, OpView, SourceOffsetRef};
pub use io::{FileIo, MemIo};
pub use manager::Manager;
pub use options::{Backend, Options};
pub use recovery::{Entry, Recovery, RecoveryMode, RecoveryOptions};
pub use writer::Writer;
