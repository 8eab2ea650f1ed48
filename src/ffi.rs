//! The C ABI. This layer converts and checks arguments and maps errors to
//! statuses; the engine does the work. `include/corewal.h` is generated from
//! this file by cbindgen (see `tests/header.rs`).
//!
//! Every export runs inside [`boundary`], which catches panics (the release
//! profile keeps `panic = "unwind"` for this) and records the message for
//! `cw_last_error()`.
//!
//! Handles (`cw_manager`, `cw_recovery`) are never freed: closing one
//! releases everything it holds (lanes, buffers, files, mappings, the lock)
//! and leaves a small closed shell behind, so a call on a closed handle gets
//! `CW_ERR_INVALID_ARGUMENT` instead of undefined behaviour.

#![allow(non_camel_case_types)]

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Mutex, TryLockError};

use crate::error::Error;
use crate::format::{OpKind, OpView, SourceOffsetRef};
use crate::io::FileIo;
use crate::manager::Manager;
use crate::options::{Backend, Options};
use crate::recovery::{LaneStats, Recovery, RecoveryMode, RecoveryOptions};
use crate::writer::Writer;

/// Result of every fallible call: `CW_OK`, `CW_DONE`, or a negative `CW_ERR_*`.
pub type cw_status = i32;

/// Success.
pub const CW_OK: cw_status = 0;
/// An iterator is exhausted (not an error).
pub const CW_DONE: cw_status = 1;
/// A NULL pointer, out-of-range value, bad option, or a closed handle.
pub const CW_ERR_INVALID_ARGUMENT: cw_status = -1;
/// The operating system reported an I/O error.
pub const CW_ERR_IO: cw_status = -2;
/// The WAL is damaged in a way the recovery mode does not accept.
pub const CW_ERR_CORRUPT: cw_status = -3;
/// Another manager holds the directory's lock.
pub const CW_ERR_LOCKED: cw_status = -4;
/// An earlier write or fdatasync failed; the writer accepts no more calls.
pub const CW_ERR_POISONED: cw_status = -5;
/// Another thread is inside the same writer or iterator.
pub const CW_ERR_BUSY: cw_status = -6;
/// A record is larger than `max_record_bytes`; nothing was written.
pub const CW_ERR_TOO_LARGE: cw_status = -7;
/// The request needs something this build or kernel does not offer.
pub const CW_ERR_UNSUPPORTED: cw_status = -8;
/// The directory or WAL does not exist (and was not to be created).
pub const CW_ERR_NOT_FOUND: cw_status = -9;
/// A bug inside the library was caught at the boundary.
pub const CW_ERR_PANIC: cw_status = -10;

/// I/O backends (`cw_options.backend`).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cw_backend {
    /// The best backend available here.
    CW_BACKEND_AUTO = 0,
    /// pwrite + fdatasync; always available.
    CW_BACKEND_SYNC = 1,
    /// One io_uring ring per writer; CW_ERR_UNSUPPORTED where the kernel
    /// (or a sandbox) does not allow one.
    CW_BACKEND_IO_URING = 2,
}

/// Operation carried by a record (`cw_entry.op`).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cw_op {
    CW_OP_PUT = 1,
    CW_OP_DELETE = 2,
    CW_OP_COMMIT = 3,
    CW_OP_CHECKPOINT = 4,
    CW_OP_EPOCH_BARRIER = 5,
}

/// How damage is treated when a WAL is opened or read.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cw_recovery_mode {
    /// Cut a torn tail (damage no sync ever acknowledged); refuse corruption.
    CW_RECOVER_TOLERATE_TORN_TAIL = 0,
    /// Any damage, a torn tail included, is `CW_ERR_CORRUPT`.
    CW_RECOVER_ABSOLUTE = 1,
    /// Stop each lane at its first damage, whatever follows it.
    CW_RECOVER_POINT_IN_TIME = 2,
    /// Read every frame that validates and skip the damaged ranges between
    /// them (listed by `cw_recovery_stats` and `cw_recovery_damaged_range`);
    /// damage after a lane's last valid frame is its torn tail. Sequences
    /// must still increase (a decrease is CW_ERR_CORRUPT). A segment whose
    /// header is damaged, unused, names another lane or segment, or starts
    /// before data already read is skipped whole: its frames' positions
    /// cannot be trusted. At `cw_manager_open`, each lane resumes after its
    /// last valid frame: what follows it is cut, and damaged ranges before
    /// it stay on disk (so CW_RECOVER_TOLERATE_TORN_TAIL still refuses
    /// them; this mode reads past them again).
    CW_RECOVER_SKIP_CORRUPT = 3,
}

/// An open WAL directory. Opaque.
pub struct cw_manager {
    _private: [u8; 0],
}

/// The writer of one lane, borrowed from its manager. Opaque.
pub struct cw_writer {
    _private: [u8; 0],
}

/// A recovery iterator. Opaque.
pub struct cw_recovery {
    _private: [u8; 0],
}

/// Options of `cw_manager_open`. Initialise with
/// `cw_options_init(&opts, sizeof opts)`, then change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cw_options {
    /// Set by `cw_options_init`: the size of the caller's struct.
    pub struct_size: u32,
    /// Lanes to create (> 0); 0 opens with the directory's count; a larger
    /// count adds lanes (recovery merges old and new); a smaller one is refused.
    pub num_cores: u32,
    /// Segment file size; default 64 MiB. Fixed when the WAL is created.
    pub segment_bytes: u64,
    /// Largest encoded record (key + value + ~64 bytes); default 16 MiB.
    pub max_record_bytes: u64,
    /// A `cw_backend`; default `CW_BACKEND_AUTO`.
    pub backend: i32,
    /// A `cw_recovery_mode` used to repair lanes at open.
    pub recovery_mode: i32,
    /// Create the directory and WAL if missing; default 1.
    pub create_if_missing: u32,
    /// Zero-fill and sync segments before use; default 1. Fixed at creation.
    pub preallocate: u32,
    /// Sync after this many records since the last sync; 0 = off.
    pub sync_every_records: u64,
    /// Sync after this many bytes since the last sync; 0 = off.
    pub sync_every_bytes: u64,
    /// Sync when an append comes this many µs after the last sync; 0 = off.
    pub sync_interval_us: u64,
    /// A background thread syncs idle writers this often (µs); 0 = none.
    pub flusher_interval_us: u64,
    /// io_uring only: 1 = a kernel thread polls each ring's submission queue
    /// (saves a syscall per submit, costs a core); default 0.
    pub io_uring_sqpoll: u32,
    /// io_uring only: submission queue entries per writer; default 256.
    pub io_uring_entries: u32,
    /// 1 = write segments with direct I/O (`O_DIRECT | O_DSYNC`): a sync
    /// then needs no fdatasync, so syncs are faster and bulk appends slower
    /// (every write reaches the device). `cw_manager_open` fails with
    /// CW_ERR_UNSUPPORTED where the file system refuses it; needs
    /// `segment_bytes` to be a multiple of 4096. Default 0.
    pub direct_io: u32,
    /// 1 = while the application waits for its syncs (the last two
    /// finished before anything more was appended) and nothing of the
    /// segment went through the page cache since its last fdatasync, the
    /// write a sync follows goes `O_DIRECT | O_DSYNC` and that sync needs
    /// no fdatasync: small, waited-for syncs get faster; bulk appends and
    /// pipelined syncs stay buffered. Only where the file system supports
    /// direct I/O and `segment_bytes` is a multiple of 4096; elsewhere it
    /// is simply off (no error). 0 = every sync is an fdatasync. No effect
    /// with `direct_io`. Default 1.
    pub direct_sync: u32,
}

/// One `(source name, offset)` pair of a COMMIT record. `name` need not be
/// NUL-terminated.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cw_source_offset {
    pub name: *const c_char,
    pub name_len: usize,
    pub offset: u64,
}

/// A finished sync, reported by `cw_writer_poll` and `cw_writer_wait`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cw_completion {
    /// The token `cw_writer_sync_submit` returned.
    pub token: u64,
    /// The lane position this sync made durable (its boundary at submit);
    /// for a failed sync, the last position that is durable.
    pub synced_position: u64,
    /// CW_OK, or CW_ERR_POISONED when the sync failed (see cw_last_error()).
    pub status: cw_status,
}

/// Options of `cw_recovery_open` and `cw_manager_recover`. Initialise with
/// `cw_recovery_options_init(&opts, sizeof opts)`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cw_recovery_options {
    /// Set by `cw_recovery_options_init`.
    pub struct_size: u32,
    /// A `cw_recovery_mode`; default `CW_RECOVER_TOLERATE_TORN_TAIL`.
    pub mode: i32,
    /// Start from the latest checkpoint when there is one; default 1.
    pub from_checkpoint: u32,
    /// Records of later epochs are not yielded; default UINT64_MAX.
    pub max_epoch: u64,
    /// Lanes to read (`lanes_len` entries); NULL reads every lane.
    pub lanes: *const u32,
    pub lanes_len: usize,
}

/// One record yielded by `cw_recovery_next`. `key` and `value` point into
/// the library's mapping of the segment and stay valid until the next call
/// on the iterator or its close.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cw_entry {
    pub epoch: u64,
    pub timestamp_ns: i64,
    pub sequence: u64,
    /// Lane position of the record.
    pub position: u64,
    pub core_id: u32,
    /// A `cw_op`.
    pub op: i32,
    /// PUT and DELETE: the key; NULL otherwise.
    pub key: *const u8,
    pub key_len: usize,
    /// PUT: the value; NULL otherwise.
    pub value: *const u8,
    pub value_len: usize,
    /// CHECKPOINT: its id.
    pub checkpoint_id: u64,
    /// COMMIT: 1 when `watermark` is set.
    pub has_watermark: u32,
    pub watermark: i64,
    /// COMMIT: number of source offsets; read each with `cw_recovery_entry_offset`.
    pub offsets_len: usize,
}

/// What a recovery iterator reads from one lane, reported by
/// `cw_recovery_stats`. Computed when the iterator opens (from the scan
/// that finds where each lane ends), so it is known before the first
/// record and does not change while reading.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cw_lane_stats {
    pub core_id: u32,
    /// Segment files holding the range read.
    pub segments: u64,
    /// Records in the range read: from the lane's checkpoint position when
    /// the iterator starts from a checkpoint (`from_checkpoint`), else from
    /// its first record, up to where the mode stops reading the lane.
    /// `max_epoch` is not applied.
    pub records: u64,
    /// Their frame bytes (damaged ranges not included).
    pub bytes: u64,
    /// Epochs of the first and last of those records; 0 when `has_records`
    /// is 0.
    pub first_epoch: u64,
    pub last_epoch: u64,
    /// 1 when `records` > 0.
    pub has_records: u32,
    /// 1 when the lane's data ends in damage that is cut off rather than at
    /// a clean end: a torn tail (under CW_RECOVER_POINT_IN_TIME, the first
    /// damage; under CW_RECOVER_SKIP_CORRUPT, damage after the last valid
    /// frame). The three fields below say where it starts; 0 otherwise.
    pub torn_tail: u32,
    /// Lane position where the tail starts.
    pub torn_tail_position: u64,
    /// Segment index and file offset where the tail starts (the segment
    /// file is `wal-CCCCC-SSSSSSSSSS.log` for lane C, segment S).
    pub torn_tail_segment: u64,
    pub torn_tail_offset: u64,
    /// Ranges skipped between valid frames (CW_RECOVER_SKIP_CORRUPT only;
    /// read each with `cw_recovery_damaged_range`), and their total length.
    pub damaged_ranges: u64,
    pub damaged_bytes: u64,
}

/// A range of a segment file that CW_RECOVER_SKIP_CORRUPT skipped, read
/// with `cw_recovery_damaged_range`: `length` bytes of segment
/// `segment_index` from file `offset`. Between two valid frames of a
/// segment it runs from the end of the first to the start of the second;
/// at a segment's end, over the damaged bytes or the lane bytes the next
/// segment's base position says are missing; a segment that is skipped
/// whole is offset 0 and the file's length; missing segment files are one
/// range with the first missing index, offset 0 and length 0.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cw_damaged_range {
    pub segment_index: u64,
    pub offset: u64,
    pub length: u64,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    let message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = message);
}

fn status_of(error: &Error) -> cw_status {
    match error {
        Error::InvalidArgument(_) | Error::Closed(_) => CW_ERR_INVALID_ARGUMENT,
        Error::Io { .. } => CW_ERR_IO,
        Error::Corrupt { .. } | Error::CorruptMeta(_) => CW_ERR_CORRUPT,
        Error::Locked(_) => CW_ERR_LOCKED,
        Error::Poisoned(_) => CW_ERR_POISONED,
        Error::Busy(_) => CW_ERR_BUSY,
        Error::TooLarge { .. } => CW_ERR_TOO_LARGE,
        Error::NotFound(_) => CW_ERR_NOT_FOUND,
        Error::Unsupported(_) => CW_ERR_UNSUPPORTED,
    }
}

/// Runs an export body: maps its error to a status and records the message;
/// catches a panic as `CW_ERR_PANIC`.
fn boundary(body: impl FnOnce() -> Result<cw_status, Error>) -> cw_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(status)) => status,
        Ok(Err(error)) => {
            set_last_error(&error.to_string());
            status_of(&error)
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("internal error (panic): {what}"));
            CW_ERR_PANIC
        }
    }
}

/// Runs an export that returns a plain value; a panic yields `fallback`.
fn boundary_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidArgument(message.into())
}

/// Borrows `*ptr`, refusing NULL.
///
/// The caller of the export promises that a non-NULL pointer points to a
/// live value of the right type for the duration of the call.
fn deref<'a, T>(ptr: *const T, name: &str) -> Result<&'a T, Error> {
    // SAFETY: non-NULL pointers are valid for reads by the export's contract
    // (documented in the header); NULL is refused here.
    unsafe { ptr.as_ref() }.ok_or_else(|| invalid(format!("{name} is NULL")))
}

/// Borrows `len` values at `ptr`; NULL is accepted only with `len == 0`.
fn slice<'a, T>(ptr: *const T, len: usize, name: &str) -> Result<&'a [T], Error> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(invalid(format!("{name} is NULL but its length is {len}")));
    }
    if len > isize::MAX as usize / size_of::<T>().max(1) {
        return Err(invalid(format!("{name} length {len} is too large")));
    }
    // SAFETY: by the export's contract `ptr` points to `len` readable values
    // that stay unchanged during the call; NULL and overlong lengths are
    // refused above.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Borrows `len` bytes at `ptr`; NULL is accepted only with `len == 0`.
fn bytes<'a>(ptr: *const u8, len: usize, name: &str) -> Result<&'a [u8], Error> {
    slice(ptr, len, name)
}

/// Writes `value` through an out-parameter, refusing NULL.
fn write_out<T>(out: *mut T, value: T, name: &str) -> Result<(), Error> {
    if out.is_null() {
        return Err(invalid(format!("{name} is NULL")));
    }
    // SAFETY: non-NULL out-parameters point to writable storage for a `T`
    // by the export's contract.
    unsafe { out.write(value) };
    Ok(())
}

/// Writes element `index` of a caller's output array. The caller of the
/// export promised room for its capacity; `index` stays below it.
fn write_nth<T>(out: *mut T, index: usize, value: T) {
    // SAFETY: `out` is non-NULL with room for `cap > index` elements, by the
    // export's contract and its callers' checks.
    unsafe { out.add(index).write(value) };
}

fn check_out<T>(out: *mut T, name: &str) -> Result<(), Error> {
    if out.is_null() {
        Err(invalid(format!("{name} is NULL")))
    } else {
        Ok(())
    }
}

/// Copies the caller's sized struct (`struct_size` first) over `defaults`:
/// fields beyond the caller's size keep their defaults.
fn read_sized<T: Copy>(ptr: *const T, defaults: T, name: &str) -> Result<T, Error> {
    if ptr.is_null() {
        return Ok(defaults);
    }
    // SAFETY: every sized struct starts with its `uint32_t struct_size`, which
    // any caller's version of the struct has.
    let declared = unsafe { (ptr as *const u32).read_unaligned() } as usize;
    if declared < size_of::<u32>() {
        return Err(invalid(format!(
            "{name}.struct_size is {declared}; initialise the struct with its _init function"
        )));
    }
    let mut value = defaults;
    let n = declared.min(size_of::<T>());
    // SAFETY: the caller's struct is `declared` bytes long, and `n` bytes fit
    // in both it and `value`; the structs are plain integers and pointers, for
    // which any bit pattern is valid.
    unsafe { std::ptr::copy_nonoverlapping(ptr as *const u8, &mut value as *mut T as *mut u8, n) };
    Ok(value)
}

/// Fills the caller's sized struct with `defaults`, never past `size` bytes.
fn init_sized<T: Copy>(
    ptr: *mut T,
    size: usize,
    mut defaults: T,
    set_size: impl FnOnce(&mut T, u32),
) {
    if ptr.is_null() || size < size_of::<u32>() {
        return;
    }
    let n = size.min(size_of::<T>());
    set_size(&mut defaults, n as u32);
    // SAFETY: the caller passes the size of its own struct, so `n` bytes are
    // writable at `ptr`; `n` never exceeds our struct either.
    unsafe { std::ptr::copy_nonoverlapping(&defaults as *const T as *const u8, ptr as *mut u8, n) };
}

fn default_options() -> cw_options {
    let d = Options::default();
    cw_options {
        struct_size: size_of::<cw_options>() as u32,
        num_cores: d.num_cores,
        segment_bytes: d.segment_bytes,
        max_record_bytes: d.max_record_bytes,
        backend: cw_backend::CW_BACKEND_AUTO as i32,
        recovery_mode: cw_recovery_mode::CW_RECOVER_TOLERATE_TORN_TAIL as i32,
        create_if_missing: d.create_if_missing as u32,
        preallocate: d.preallocate as u32,
        sync_every_records: d.sync_every_records,
        sync_every_bytes: d.sync_every_bytes,
        sync_interval_us: d.sync_interval_us,
        flusher_interval_us: d.flusher_interval_us,
        io_uring_sqpoll: d.uring_sqpoll as u32,
        io_uring_entries: d.uring_entries,
        direct_io: d.direct_io as u32,
        direct_sync: d.direct_sync as u32,
    }
}

fn default_recovery_options() -> cw_recovery_options {
    cw_recovery_options {
        struct_size: size_of::<cw_recovery_options>() as u32,
        mode: cw_recovery_mode::CW_RECOVER_TOLERATE_TORN_TAIL as i32,
        from_checkpoint: 1,
        max_epoch: u64::MAX,
        lanes: std::ptr::null(),
        lanes_len: 0,
    }
}

impl TryFrom<i32> for Backend {
    type Error = Error;
    fn try_from(value: i32) -> Result<Backend, Error> {
        match value {
            v if v == cw_backend::CW_BACKEND_AUTO as i32 => Ok(Backend::Auto),
            v if v == cw_backend::CW_BACKEND_SYNC as i32 => Ok(Backend::Sync),
            v if v == cw_backend::CW_BACKEND_IO_URING as i32 => Ok(Backend::IoUring),
            v => Err(invalid(format!("backend {v} is not a cw_backend"))),
        }
    }
}

impl TryFrom<i32> for RecoveryMode {
    type Error = Error;
    fn try_from(value: i32) -> Result<RecoveryMode, Error> {
        use cw_recovery_mode::*;
        match value {
            v if v == CW_RECOVER_TOLERATE_TORN_TAIL as i32 => Ok(RecoveryMode::TolerateTornTail),
            v if v == CW_RECOVER_ABSOLUTE as i32 => Ok(RecoveryMode::Absolute),
            v if v == CW_RECOVER_POINT_IN_TIME as i32 => Ok(RecoveryMode::PointInTime),
            v if v == CW_RECOVER_SKIP_CORRUPT as i32 => Ok(RecoveryMode::SkipCorrupt),
            v => Err(invalid(format!(
                "recovery mode {v} is not a cw_recovery_mode"
            ))),
        }
    }
}

impl From<OpKind> for cw_op {
    fn from(kind: OpKind) -> cw_op {
        match kind {
            OpKind::Put => cw_op::CW_OP_PUT,
            OpKind::Delete => cw_op::CW_OP_DELETE,
            OpKind::Commit => cw_op::CW_OP_COMMIT,
            OpKind::Checkpoint => cw_op::CW_OP_CHECKPOINT,
            OpKind::EpochBarrier => cw_op::CW_OP_EPOCH_BARRIER,
        }
    }
}

fn convert_options(ptr: *const cw_options) -> Result<Options, Error> {
    let raw = read_sized(ptr, default_options(), "opts")?;
    Ok(Options {
        num_cores: raw.num_cores,
        segment_bytes: raw.segment_bytes,
        max_record_bytes: raw.max_record_bytes,
        backend: Backend::try_from(raw.backend)?,
        recovery_mode: RecoveryMode::try_from(raw.recovery_mode)?,
        create_if_missing: raw.create_if_missing != 0,
        preallocate: raw.preallocate != 0,
        sync_every_records: raw.sync_every_records,
        sync_every_bytes: raw.sync_every_bytes,
        sync_interval_us: raw.sync_interval_us,
        flusher_interval_us: raw.flusher_interval_us,
        uring_sqpoll: raw.io_uring_sqpoll != 0,
        uring_entries: raw.io_uring_entries,
        direct_io: raw.direct_io != 0,
        direct_sync: raw.direct_sync != 0,
    })
}

fn convert_recovery_options(ptr: *const cw_recovery_options) -> Result<RecoveryOptions, Error> {
    let raw = read_sized(ptr, default_recovery_options(), "opts")?;
    let lanes = if raw.lanes.is_null() && raw.lanes_len == 0 {
        None
    } else {
        Some(slice(raw.lanes, raw.lanes_len, "opts.lanes")?.to_vec())
    };
    Ok(RecoveryOptions {
        mode: RecoveryMode::try_from(raw.mode)?,
        from_checkpoint: raw.from_checkpoint != 0,
        max_epoch: raw.max_epoch,
        lanes,
    })
}

fn path_arg<'a>(dir: *const c_char) -> Result<&'a Path, Error> {
    let dir = deref(dir, "dir")?;
    // SAFETY: `dir` is non-NULL and, by contract, a NUL-terminated string.
    let dir = unsafe { CStr::from_ptr(dir) };
    let dir = dir
        .to_str()
        .map_err(|_| invalid("dir is not valid UTF-8"))?;
    if dir.is_empty() {
        return Err(invalid("dir is empty"));
    }
    Ok(Path::new(dir))
}

/// Closed handles stay here for the life of the process (see module docs).
/// Holding them keeps leak checkers from reporting a retired shell.
static RETIRED: Mutex<Vec<usize>> = Mutex::new(Vec::new());

fn retire(address: usize) {
    RETIRED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(address);
}

type FfiManager = Manager<FileIo>;
type FfiWriter = Writer<FileIo>;

fn manager<'a>(ptr: *const cw_manager) -> Result<&'a FfiManager, Error> {
    deref(ptr as *const FfiManager, "manager")
}

fn writer<'a>(ptr: *const cw_writer) -> Result<&'a FfiWriter, Error> {
    deref(ptr as *const FfiWriter, "writer")
}

/// What a `cw_recovery` points to.
struct RecoveryHandle {
    state: Mutex<Option<RecoveryState>>,
}

struct RecoveryState {
    recovery: Recovery<FileIo>,
    /// COMMIT offsets of the last entry: name pointer (into the mapping),
    /// name length, offset. Valid until the next call, like the entry.
    offsets: Vec<(*const u8, usize, u64)>,
}

// SAFETY: the raw pointers in `offsets` point into the mappings owned by the
// same `RecoveryState`; they move with it and are only read under its mutex.
unsafe impl Send for RecoveryState {}

fn recovery_handle<'a>(ptr: *const cw_recovery) -> Result<&'a RecoveryHandle, Error> {
    deref(ptr as *const RecoveryHandle, "recovery")
}

fn with_recovery<T>(
    ptr: *const cw_recovery,
    f: impl FnOnce(&mut RecoveryState) -> Result<T, Error>,
) -> Result<T, Error> {
    let handle = recovery_handle(ptr)?;
    let mut guard = match handle.state.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::WouldBlock) => return Err(Error::Busy("recovery iterator".into())),
        Err(TryLockError::Poisoned(_)) => {
            return Err(Error::Poisoned(
                "a panic interrupted an earlier call on this iterator".into(),
            ));
        }
    };
    let state = guard.as_mut().ok_or(Error::Closed("recovery iterator"))?;
    f(state)
}

fn new_recovery_handle(recovery: Recovery<FileIo>) -> *mut cw_recovery {
    let handle = Box::new(RecoveryHandle {
        state: Mutex::new(Some(RecoveryState {
            recovery,
            offsets: Vec::new(),
        })),
    });
    Box::into_raw(handle) as *mut cw_recovery
}

/// The library version, e.g. "0.1.0" (equal to `CW_VERSION_STRING`).
///
/// Returns a static string; never NULL. Thread safety: any thread, any time.
#[unsafe(no_mangle)]
pub extern "C" fn cw_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// The name of a status, e.g. "CW_ERR_CORRUPT"; "CW_UNKNOWN_STATUS" for a
/// value that is not a status.
///
/// Returns a static string; never NULL. Thread safety: any thread, any time.
#[unsafe(no_mangle)]
pub extern "C" fn cw_status_name(status: cw_status) -> *const c_char {
    let name: &'static [u8] = match status {
        CW_OK => b"CW_OK\0",
        CW_DONE => b"CW_DONE\0",
        CW_ERR_INVALID_ARGUMENT => b"CW_ERR_INVALID_ARGUMENT\0",
        CW_ERR_IO => b"CW_ERR_IO\0",
        CW_ERR_CORRUPT => b"CW_ERR_CORRUPT\0",
        CW_ERR_LOCKED => b"CW_ERR_LOCKED\0",
        CW_ERR_POISONED => b"CW_ERR_POISONED\0",
        CW_ERR_BUSY => b"CW_ERR_BUSY\0",
        CW_ERR_TOO_LARGE => b"CW_ERR_TOO_LARGE\0",
        CW_ERR_UNSUPPORTED => b"CW_ERR_UNSUPPORTED\0",
        CW_ERR_NOT_FOUND => b"CW_ERR_NOT_FOUND\0",
        CW_ERR_PANIC => b"CW_ERR_PANIC\0",
        _ => b"CW_UNKNOWN_STATUS\0",
    };
    name.as_ptr() as *const c_char
}

/// The message of the calling thread's last failed call; "" if none failed.
///
/// The string belongs to the library and stays valid until the next failing
/// call on this thread; never NULL. Successful calls leave it unchanged.
/// Thread safety: any thread; each thread sees its own message.
#[unsafe(no_mangle)]
pub extern "C" fn cw_last_error() -> *const c_char {
    static EMPTY: &[u8] = b"\0";
    boundary_value(EMPTY.as_ptr() as *const c_char, || {
        LAST_ERROR.with(|slot| slot.borrow().as_ptr())
    })
}

/// Fills `*opts` with defaults and records `size` (pass `sizeof *opts`) in
/// `opts->struct_size`. Never writes more than `size` bytes, so a caller
/// built against an older, smaller `cw_options` is safe.
///
/// NULL `opts` or a `size` below 4 does nothing. Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn cw_options_init(opts: *mut cw_options, size: usize) {
    boundary_value((), || {
        init_sized(opts, size, default_options(), |o, n| o.struct_size = n)
    });
}

/// Opens or creates the WAL in directory `dir` and returns a manager in
/// `*manager_out`.
///
/// Takes the directory's lock, creates it with `opts->num_cores` lanes if it
/// is new (and `create_if_missing`), and repairs each lane according to
/// `opts->recovery_mode` (by default: cut a torn tail, refuse corruption).
/// `opts` may be NULL for defaults (which only open an existing WAL, since
/// creating one needs `num_cores`).
///
/// Returns CW_OK; CW_ERR_INVALID_ARGUMENT (NULL `dir`/`manager_out`, bad
/// option, a `num_cores` smaller than the directory's); CW_ERR_LOCKED
/// (another manager has it open); CW_ERR_NOT_FOUND (missing and not to be
/// created); CW_ERR_CORRUPT (damage the recovery mode refuses; the message
/// names lane, segment file and offset); CW_ERR_UNSUPPORTED
/// (`CW_BACKEND_IO_URING` where no ring can be set up, `direct_io` where the
/// file system refuses direct I/O); CW_ERR_IO.
///
/// Ownership: the caller owns the manager and releases it with
/// `cw_manager_close`. Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn cw_manager_open(
    dir: *const c_char,
    opts: *const cw_options,
    manager_out: *mut *mut cw_manager,
) -> cw_status {
    boundary(|| {
        check_out(manager_out, "manager_out")?;
        let dir = path_arg(dir)?;
        let options = convert_options(opts)?;
        let manager = Manager::open(dir, &options)?;
        let ptr = Box::into_raw(Box::new(manager)) as *mut cw_manager;
        write_out(manager_out, ptr, "manager_out")?;
        Ok(CW_OK)
    })
}

/// Syncs every lane, then releases the manager's lanes, files and lock.
/// Writers borrowed from it become unusable (calls return
/// CW_ERR_INVALID_ARGUMENT). Closing NULL or an already closed manager
/// returns CW_OK.
///
/// Returns CW_OK, or the first sync failure (CW_ERR_POISONED, CW_ERR_IO);
/// everything is released either way. A small closed shell stays allocated
/// so that stray calls on the handle are answered with a status.
///
/// Thread safety: any thread, once no other thread uses the manager or its
/// writers; a writer in use is waited for.
#[unsafe(no_mangle)]
pub extern "C" fn cw_manager_close(manager: *mut cw_manager) -> cw_status {
    boundary(|| {
        if manager.is_null() {
            return Ok(CW_OK);
        }
        let m = self::manager(manager)?;
        let first_close = !m.is_closed();
        let result = m.close();
        if first_close {
            retire(manager as usize);
        }
        result.map(|()| CW_OK)
    })
}

/// Number of lanes of the manager; 0 for NULL.
///
/// Thread safety: any thread, any time.
#[unsafe(no_mangle)]
pub extern "C" fn cw_manager_num_cores(manager: *const cw_manager) -> u32 {
    boundary_value(0, || manager_ref(manager).map_or(0, |m| m.num_cores()))
}

fn manager_ref<'a>(ptr: *const cw_manager) -> Option<&'a FfiManager> {
    self::manager(ptr).ok()
}

/// The backend the manager's writers use: CW_BACKEND_SYNC or
/// CW_BACKEND_IO_URING (what CW_BACKEND_AUTO resolved to); -1 for NULL.
///
/// Thread safety: any thread, any time.
#[unsafe(no_mangle)]
pub extern "C" fn cw_manager_backend(manager: *const cw_manager) -> i32 {
    boundary_value(-1, || {
        manager_ref(manager).map_or(-1, |m| match m.backend().backend {
            Backend::IoUring => cw_backend::CW_BACKEND_IO_URING as i32,
            _ => cw_backend::CW_BACKEND_SYNC as i32,
        })
    })
}

/// Why CW_BACKEND_AUTO chose CW_BACKEND_SYNC (for example "io_uring_setup:
/// Operation not permitted"); "" when nothing fell back; "" for NULL.
///
/// The string belongs to the manager and lives as long as its handle.
/// Thread safety: any thread, any time.
#[unsafe(no_mangle)]
pub extern "C" fn cw_manager_backend_reason(manager: *const cw_manager) -> *const c_char {
    static EMPTY: &[u8] = b"\0";
    boundary_value(EMPTY.as_ptr() as *const c_char, || {
        manager_ref(manager)
            .and_then(|m| m.backend_reason_c())
            .map_or(EMPTY.as_ptr() as *const c_char, |c| c.as_ptr())
    })
}

/// Returns the writer of lane `core_id` in `*writer_out`.
///
/// Returns CW_OK; CW_ERR_INVALID_ARGUMENT (NULL argument, `core_id` not
/// below `cw_manager_num_cores`, closed manager).
///
/// Ownership: the writer is borrowed from the manager and dies with it; do
/// not free it. Thread safety: any thread; the same handle is returned each
/// time. A writer is then used by one thread at a time.
#[unsafe(no_mangle)]
pub extern "C" fn cw_manager_writer(
    manager: *mut cw_manager,
    core_id: u32,
    writer_out: *mut *mut cw_writer,
) -> cw_status {
    boundary(|| {
        check_out(writer_out, "writer_out")?;
        let w = self::manager(manager)?.writer(core_id)?;
        write_out(
            writer_out,
            w as *const FfiWriter as *mut cw_writer,
            "writer_out",
        )?;
        Ok(CW_OK)
    })
}

/// The epoch new records are stamped with; 0 for NULL.
///
/// Thread safety: any thread, any time.
#[unsafe(no_mangle)]
pub extern "C" fn cw_manager_epoch(manager: *const cw_manager) -> u64 {
    boundary_value(0, || manager_ref(manager).map_or(0, |m| m.epoch()))
}

/// Starts the next epoch and returns it in `*epoch_out` (may be NULL).
/// Each writer closes its previous epoch with an EPOCH_BARRIER at its next
/// append.
///
/// Returns CW_OK; CW_ERR_INVALID_ARGUMENT (NULL or closed manager).
/// Thread safety: any thread, concurrently with appends.
#[unsafe(no_mangle)]
pub extern "C" fn cw_manager_advance_epoch(
    manager: *mut cw_manager,
    epoch_out: *mut u64,
) -> cw_status {
    boundary(|| {
        let epoch = self::manager(manager)?.advance_epoch()?;
        if !epoch_out.is_null() {
            write_out(epoch_out, epoch, "epoch_out")?;
        }
        Ok(CW_OK)
    })
}

/// Syncs every lane (as `cw_writer_sync` on each), waiting for writers in
/// use.
///
/// Returns CW_OK or the first failure (CW_ERR_POISONED, CW_ERR_IO,
/// CW_ERR_INVALID_ARGUMENT for a NULL or closed manager); every lane is
/// attempted. Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn cw_manager_sync_all(manager: *mut cw_manager) -> cw_status {
    boundary(|| self::manager(manager)?.sync_all().map(|()| CW_OK))
}

/// Commits checkpoint `checkpoint_id` covering every record of epoch `epoch`
/// and earlier (step 3 of the protocol): checks that every lane has a durable
/// EPOCH_BARRIER closing `epoch` (written in this session with
/// `cw_writer_epoch_barrier` or by the lane's first append in a later epoch,
/// then synced), and atomically replaces the manifest (temp file, fdatasync,
/// rename, directory fsync) with the id, the epoch, each lane's barrier
/// position and a copy of the `meta_len` bytes at `meta` (NULL when 0; at
/// most 256 KiB). A crash at any step leaves the old or the new manifest.
///
/// The protocol: 1. coordinator: `cw_manager_advance_epoch` (E+1); 2. each
/// core, on its own thread: `cw_writer_epoch_barrier` and a sync; 3.
/// coordinator: `cw_manager_checkpoint_commit(m, id, E, ...)`.
///
/// Returns CW_OK; CW_ERR_INVALID_ARGUMENT (NULL manager, `epoch` not below
/// the current epoch, a lane without a durable barrier closing it, an epoch
/// before the latest checkpoint's, meta too large); CW_ERR_IO (the manifest
/// could not be written; the previous one stays). Thread safety: any thread;
/// it briefly waits for each writer in use.
#[unsafe(no_mangle)]
pub extern "C" fn cw_manager_checkpoint_commit(
    manager: *mut cw_manager,
    checkpoint_id: u64,
    epoch: u64,
    meta: *const u8,
    meta_len: usize,
) -> cw_status {
    boundary(|| {
        let meta = bytes(meta, meta_len, "meta")?;
        self::manager(manager)?.checkpoint_commit(checkpoint_id, epoch, meta)?;
        Ok(CW_OK)
    })
}

/// The whole checkpoint protocol in one call, for callers that can pause
/// their writers: advances the epoch (to E+1), writes an EPOCH_BARRIER on
/// every lane and syncs it, then commits checkpoint `checkpoint_id` for
/// epoch E with `meta` as `cw_manager_checkpoint_commit` does.
///
/// Returns CW_OK; CW_ERR_INVALID_ARGUMENT; CW_ERR_POISONED (a lane's sync
/// failed); CW_ERR_IO. Thread safety: any thread; it waits for each writer
/// in use, so callers must not hold writers busy meanwhile.
#[unsafe(no_mangle)]
pub extern "C" fn cw_manager_checkpoint(
    manager: *mut cw_manager,
    checkpoint_id: u64,
    meta: *const u8,
    meta_len: usize,
) -> cw_status {
    boundary(|| {
        let meta = bytes(meta, meta_len, "meta")?;
        self::manager(manager)?.checkpoint(checkpoint_id, meta)?;
        Ok(CW_OK)
    })
}

/// Deletes the segment files that lie wholly before the latest checkpoint's
/// lane positions (never a lane's active segment). The manifest covering
/// them is durable before anything is deleted. Without a checkpoint it
/// deletes nothing.
///
/// Returns CW_OK; CW_ERR_INVALID_ARGUMENT (NULL or closed manager);
/// CW_ERR_IO. Thread safety: any thread; it briefly waits for each writer
/// in use.
#[unsafe(no_mangle)]
pub extern "C" fn cw_manager_purge(manager: *mut cw_manager) -> cw_status {
    boundary(|| self::manager(manager)?.purge().map(|_| CW_OK))
}

/// Empties every lane: afterwards recovery yields no record of any lane and
/// the checkpoint manifest is gone (its meta describes a state these lanes
/// no longer replay to). Lane positions, sequences and segment file
/// indexes carry on from where they were (each lane goes on in a new
/// segment starting at its position); the epoch stays. Writers obtained
/// before stay valid and append after the reset. (Sequences and the epoch
/// are recovered from records at open: a lane still empty when the WAL is
/// reopened starts again at sequence 0, and a WAL with no record at all at
/// epoch 1.)
///
/// Durable and atomic across lanes: a crash before the call returns leaves
/// either the WAL as it was (old manifest included) or one in which no
/// lane yields any old record; `cw_manager_open` then finishes the reset.
///
/// Returns CW_OK; CW_ERR_BUSY (another thread is inside one of the writers;
/// nothing changed); CW_ERR_POISONED (a writer is poisoned, nothing
/// changed; or the reset failed part-way, and every writer is now
/// poisoned: reopen the directory to finish it); CW_ERR_INVALID_ARGUMENT
/// (NULL or closed manager); CW_ERR_IO (nothing changed). Thread safety:
/// any thread; it never waits for a writer in use (that is CW_ERR_BUSY),
/// and holds every writer while it runs.
#[unsafe(no_mangle)]
pub extern "C" fn cw_manager_reset(manager: *mut cw_manager) -> cw_status {
    boundary(|| self::manager(manager)?.reset().map(|()| CW_OK))
}

/// Opens a recovery iterator over the manager's lanes as they are on disk
/// (everything appended before the last sync or buffer flush), for replay
/// before appending starts. `opts` may be NULL for defaults.
///
/// Returns CW_OK; CW_ERR_INVALID_ARGUMENT; CW_ERR_CORRUPT; CW_ERR_IO.
/// Ownership: the caller closes the iterator with `cw_recovery_close`;
/// close it before the manager. Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn cw_manager_recover(
    manager: *mut cw_manager,
    opts: *const cw_recovery_options,
    recovery_out: *mut *mut cw_recovery,
) -> cw_status {
    boundary(|| {
        check_out(recovery_out, "recovery_out")?;
        let options = convert_recovery_options(opts)?;
        let recovery = self::manager(manager)?.recover(&options)?;
        write_out(recovery_out, new_recovery_handle(recovery), "recovery_out")?;
        Ok(CW_OK)
    })
}

fn append(
    writer: *mut cw_writer,
    position_out: *mut u64,
    f: impl FnOnce(&FfiWriter) -> Result<u64, Error>,
) -> cw_status {
    boundary(|| {
        let position = f(self::writer(writer)?)?;
        if !position_out.is_null() {
            write_out(position_out, position, "position_out")?;
        }
        Ok(CW_OK)
    })
}

/// Appends PUT(key, value) to the writer's lane and returns the record's
/// position in `*position_out` (may be NULL). The bytes are copied before
/// the call returns. The record is durable after a later sync.
///
/// Returns CW_OK; CW_ERR_INVALID_ARGUMENT (NULL writer, NULL data with a
/// non-zero length, closed manager); CW_ERR_TOO_LARGE (nothing written);
/// CW_ERR_BUSY (another thread is inside this writer); CW_ERR_POISONED.
/// Thread safety: one thread at a time per writer; different writers in
/// parallel.
#[unsafe(no_mangle)]
pub extern "C" fn cw_writer_append_put(
    writer: *mut cw_writer,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    position_out: *mut u64,
) -> cw_status {
    append(writer, position_out, |w| {
        let key = bytes(key, key_len, "key")?;
        let value = bytes(value, value_len, "value")?;
        w.append_put(key, value)
    })
}

/// Appends DELETE(key); as `cw_writer_append_put` otherwise.
///
/// Returns CW_OK; CW_ERR_INVALID_ARGUMENT; CW_ERR_TOO_LARGE; CW_ERR_BUSY;
/// CW_ERR_POISONED. Thread safety: one thread at a time per writer.
#[unsafe(no_mangle)]
pub extern "C" fn cw_writer_append_delete(
    writer: *mut cw_writer,
    key: *const u8,
    key_len: usize,
    position_out: *mut u64,
) -> cw_status {
    append(writer, position_out, |w| {
        w.append_delete(bytes(key, key_len, "key")?)
    })
}

/// Appends COMMIT(source offsets, watermark): `offsets_len` entries at
/// `offsets` (NULL allowed when 0) and an optional watermark (`watermark`
/// NULL for none). Names are copied; they need not be NUL-terminated.
///
/// Returns CW_OK; CW_ERR_INVALID_ARGUMENT; CW_ERR_TOO_LARGE; CW_ERR_BUSY;
/// CW_ERR_POISONED. Thread safety: one thread at a time per writer.
#[unsafe(no_mangle)]
pub extern "C" fn cw_writer_append_commit(
    writer: *mut cw_writer,
    offsets: *const cw_source_offset,
    offsets_len: usize,
    watermark: *const i64,
    position_out: *mut u64,
) -> cw_status {
    append(writer, position_out, |w| {
        let raw = slice(offsets, offsets_len, "offsets")?;
        let pairs = raw
            .iter()
            .map(|o| {
                Ok(SourceOffsetRef {
                    name: bytes(o.name as *const u8, o.name_len, "offsets[].name")?,
                    offset: o.offset,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let watermark = if watermark.is_null() {
            None
        } else {
            Some(*deref(watermark, "watermark")?)
        };
        w.append_commit(&pairs, watermark)
    })
}

/// Appends a CHECKPOINT(checkpoint_id) record.
///
/// Returns CW_OK; CW_ERR_INVALID_ARGUMENT; CW_ERR_BUSY; CW_ERR_POISONED.
/// Thread safety: one thread at a time per writer.
#[unsafe(no_mangle)]
pub extern "C" fn cw_writer_append_checkpoint(
    writer: *mut cw_writer,
    checkpoint_id: u64,
    position_out: *mut u64,
) -> cw_status {
    append(writer, position_out, |w| w.append_checkpoint(checkpoint_id))
}

/// Appends an EPOCH_BARRIER stamped with the manager's current epoch: every
/// record of an earlier epoch in this lane lies before it.
///
/// Returns CW_OK; CW_ERR_INVALID_ARGUMENT; CW_ERR_BUSY; CW_ERR_POISONED.
/// Thread safety: one thread at a time per writer.
#[unsafe(no_mangle)]
pub extern "C" fn cw_writer_epoch_barrier(
    writer: *mut cw_writer,
    position_out: *mut u64,
) -> cw_status {
    append(writer, position_out, |w| w.epoch_barrier())
}

/// Writes out everything the writer buffers and fdatasyncs it; on CW_OK,
/// `cw_writer_synced_position` equals `cw_writer_position`.
///
/// Returns CW_OK; CW_ERR_INVALID_ARGUMENT; CW_ERR_BUSY; CW_ERR_POISONED (this
/// sync failed, or an earlier one did: the writer accepts no more calls and
/// the synced position never moves again; reopen the directory to recover
/// what is on disk). A failed fdatasync is never retried.
/// Thread safety: one thread at a time per writer.
#[unsafe(no_mangle)]
pub extern "C" fn cw_writer_sync(writer: *mut cw_writer) -> cw_status {
    boundary(|| self::writer(writer)?.sync().map(|()| CW_OK))
}

/// Starts making everything appended so far durable and returns at once
/// with a token in `*token_out`. The sync covers exactly what was appended
/// before this call (its boundary is the current `cw_writer_position`);
/// appends made afterwards are not covered. Several syncs may be in flight;
/// each finishes, in token order, when its boundary is durable. Collect
/// finished syncs with `cw_writer_poll` or `cw_writer_wait`.
///
/// Returns CW_OK; CW_ERR_INVALID_ARGUMENT (NULL argument, closed manager);
/// CW_ERR_BUSY; CW_ERR_POISONED. Thread safety: one thread at a time per
/// writer.
#[unsafe(no_mangle)]
pub extern "C" fn cw_writer_sync_submit(writer: *mut cw_writer, token_out: *mut u64) -> cw_status {
    boundary(|| {
        check_out(token_out, "token_out")?;
        let token = self::writer(writer)?.sync_submit()?;
        write_out(token_out, token, "token_out")?;
        Ok(CW_OK)
    })
}

thread_local! {
    static POLLED: RefCell<Vec<crate::writer::SyncCompletion>> = const { RefCell::new(Vec::new()) };
}

fn completion_of(done: &crate::writer::SyncCompletion) -> cw_completion {
    cw_completion {
        token: done.token,
        synced_position: done.synced_position,
        status: if done.result.is_ok() {
            CW_OK
        } else {
            CW_ERR_POISONED
        },
    }
}

/// Reports finished syncs without blocking: writes up to `cap` completions,
/// oldest first, to `completions_out` and their number to `*count_out`. Zero
/// completions is a normal answer (CW_OK with `*count_out == 0`); completions
/// beyond `cap` wait for the next call. Also submits a sync when a group
/// commit option says one is due, and drains the event fd.
///
/// A failed sync is reported as a completion with status CW_ERR_POISONED
/// (every sync pending with it fails too); once all are reported, poll
/// returns CW_ERR_POISONED itself.
///
/// Returns CW_OK; CW_ERR_INVALID_ARGUMENT (NULL writer or `count_out`, NULL
/// `completions_out` with a non-zero `cap`); CW_ERR_BUSY; CW_ERR_POISONED.
/// Thread safety: one thread at a time per writer.
#[unsafe(no_mangle)]
pub extern "C" fn cw_writer_poll(
    writer: *mut cw_writer,
    completions_out: *mut cw_completion,
    cap: usize,
    count_out: *mut usize,
) -> cw_status {
    boundary(|| {
        check_out(count_out, "count_out")?;
        if completions_out.is_null() && cap != 0 {
            return Err(invalid("completions_out is NULL but cap is not 0"));
        }
        let w = self::writer(writer)?;
        POLLED.with(|polled| {
            let mut polled = polled.borrow_mut();
            w.poll_into(cap, &mut polled)?;
            debug_assert!(polled.len() <= cap);
            for (i, done) in polled.iter().enumerate() {
                write_nth(completions_out, i, completion_of(done));
            }
            write_out(count_out, polled.len(), "count_out")
        })?;
        Ok(CW_OK)
    })
}

/// Blocks until the sync with `token` has finished and writes its completion
/// to `*completion_out`. Other finished syncs stay for `cw_writer_poll`.
///
/// Returns CW_OK (the token's boundary is durable); CW_ERR_POISONED (the sync
/// failed; nothing is written); CW_ERR_NOT_FOUND (no such token pending:
/// never issued, or already reported by poll or wait);
/// CW_ERR_INVALID_ARGUMENT; CW_ERR_BUSY. Thread safety: one thread at a time
/// per writer.
#[unsafe(no_mangle)]
pub extern "C" fn cw_writer_wait(
    writer: *mut cw_writer,
    token: u64,
    completion_out: *mut cw_completion,
) -> cw_status {
    boundary(|| {
        check_out(completion_out, "completion_out")?;
        let done = self::writer(writer)?.wait(token)?;
        if let Err(why) = &done.result {
            return Err(Error::Poisoned(why.clone()));
        }
        write_out(completion_out, completion_of(&done), "completion_out")?;
        Ok(CW_OK)
    })
}

/// Discards the writer's records from `position` on (a rollback of the
/// lane's suffix). `position` must be where one of the lane's records starts
/// (as an append returned it), at or above the lane's start and the latest
/// checkpoint's start for this lane; the lane's current position is
/// accepted and changes nothing.
///
/// Syncs in flight are waited for first (their completions stay for
/// `cw_writer_poll` / `cw_writer_wait`). Everything discarded is destroyed
/// durably before CW_OK is returned: no crash brings it back. A crash
/// during the call leaves the old lane cut at or after `position` (some
/// discarded records may then come back, never as corruption). Afterwards
/// `cw_writer_position` is `position`, the next record gets the sequence
/// of the first discarded one, and
/// `cw_writer_synced_position` is at most `position`. EPOCH_BARRIERs
/// discarded no longer count for `cw_manager_checkpoint_commit`.
///
/// Returns CW_OK; CW_ERR_INVALID_ARGUMENT (NULL writer, closed manager, or a
/// `position` that is not a record boundary, beyond the end, below the
/// lane's start or below the checkpoint's start; nothing changed);
/// CW_ERR_BUSY; CW_ERR_POISONED (an earlier failure, or this truncation
/// failed part-way: reopen the directory to recover what is on disk);
/// CW_ERR_IO (nothing changed). Thread safety: one thread at a time per
/// writer; it briefly waits for a checkpoint commit or purge in progress.
#[unsafe(no_mangle)]
pub extern "C" fn cw_writer_truncate(writer: *mut cw_writer, position: u64) -> cw_status {
    boundary(|| self::writer(writer)?.truncate(position).map(|()| CW_OK))
}

/// A file descriptor that turns readable when the writer has completions
/// for `cw_writer_poll` (an eventfd), so an event loop (epoll, the Go
/// netpoller, a Zig event loop) can wait for syncs; `cw_writer_poll` drains
/// it. Readiness may be spurious: poll, and wait again if it reports none.
/// -1 for NULL or a closed writer. The descriptor belongs to the writer;
/// never close it.
///
/// Thread safety: any thread, any time.
#[unsafe(no_mangle)]
pub extern "C" fn cw_writer_event_fd(writer: *const cw_writer) -> c_int {
    boundary_value(-1, || self::writer(writer).map_or(-1, |w| w.event_fd()))
}

/// Bytes appended to the lane so far (its logical end); 0 for NULL.
///
/// Thread safety: any thread, any time (reads a published counter).
#[unsafe(no_mangle)]
pub extern "C" fn cw_writer_position(writer: *const cw_writer) -> u64 {
    boundary_value(0, || self::writer(writer).map_or(0, |w| w.position()))
}

/// Bytes of the lane made durable by a completed fdatasync; only data below
/// it is promised to survive a crash. 0 for NULL.
///
/// Thread safety: any thread, any time.
#[unsafe(no_mangle)]
pub extern "C" fn cw_writer_synced_position(writer: *const cw_writer) -> u64 {
    boundary_value(0, || {
        self::writer(writer).map_or(0, |w| w.synced_position())
    })
}

/// Sequence number the writer's next record will get (continues across
/// reopen); 0 for NULL.
///
/// Thread safety: any thread, any time.
#[unsafe(no_mangle)]
pub extern "C" fn cw_writer_sequence(writer: *const cw_writer) -> u64 {
    boundary_value(0, || self::writer(writer).map_or(0, |w| w.sequence()))
}

/// The writer's lane (core id); UINT32_MAX for NULL.
///
/// Thread safety: any thread, any time.
#[unsafe(no_mangle)]
pub extern "C" fn cw_writer_core_id(writer: *const cw_writer) -> u32 {
    boundary_value(u32::MAX, || {
        self::writer(writer).map_or(u32::MAX, |w| w.core_id())
    })
}

/// Fills `*opts` with defaults (every lane, tolerate torn tails, from the
/// latest checkpoint, no epoch limit) and records `size` (pass
/// `sizeof *opts`). Never writes more than `size` bytes.
///
/// NULL `opts` or a `size` below 4 does nothing. Thread safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn cw_recovery_options_init(opts: *mut cw_recovery_options, size: usize) {
    boundary_value((), || {
        init_sized(opts, size, default_recovery_options(), |o, n| {
            o.struct_size = n
        })
    });
}

/// Opens a read-only recovery iterator over the WAL in `dir`. It takes no
/// lock and never modifies the directory, so it may run beside an open
/// manager. `opts` may be NULL for defaults.
///
/// Returns CW_OK; CW_ERR_INVALID_ARGUMENT (NULL argument, bad option, lane
/// filter naming a missing lane); CW_ERR_NOT_FOUND (no WAL in `dir`);
/// CW_ERR_CORRUPT (damage `opts->mode` refuses); CW_ERR_IO.
///
/// Ownership: the caller closes it with `cw_recovery_close`. Thread safety:
/// any thread; the iterator is then used by one thread at a time.
#[unsafe(no_mangle)]
pub extern "C" fn cw_recovery_open(
    dir: *const c_char,
    opts: *const cw_recovery_options,
    recovery_out: *mut *mut cw_recovery,
) -> cw_status {
    boundary(|| {
        check_out(recovery_out, "recovery_out")?;
        let dir = path_arg(dir)?;
        let options = convert_recovery_options(opts)?;
        let recovery = Recovery::open(FileIo::default(), dir, &options)?;
        write_out(recovery_out, new_recovery_handle(recovery), "recovery_out")?;
        Ok(CW_OK)
    })
}

/// Yields the next record, across all lanes, in `(epoch, timestamp_ns,
/// core_id, sequence)` order into `*entry_out`.
///
/// Returns CW_OK (entry written); CW_DONE (no more records; nothing
/// written); CW_ERR_CORRUPT (a record fails validation while reading);
/// CW_ERR_INVALID_ARGUMENT (NULL argument, closed iterator); CW_ERR_BUSY
/// (another thread is inside this iterator); CW_ERR_IO.
///
/// Ownership: `entry_out->key` and `->value` point into the library's
/// mapping and stay valid until the next call on this iterator or its close.
/// Thread safety: one thread at a time per iterator.
#[unsafe(no_mangle)]
pub extern "C" fn cw_recovery_next(
    recovery: *mut cw_recovery,
    entry_out: *mut cw_entry,
) -> cw_status {
    boundary(|| {
        check_out(entry_out, "entry_out")?;
        with_recovery(recovery, |state| {
            state.offsets.clear();
            let Some(entry) = state.recovery.next()? else {
                return Ok(CW_DONE);
            };
            let mut out = cw_entry {
                epoch: entry.epoch,
                timestamp_ns: entry.timestamp_ns,
                sequence: entry.sequence,
                position: entry.position,
                core_id: entry.core_id,
                op: cw_op::from(entry.op.kind()) as i32,
                key: std::ptr::null(),
                key_len: 0,
                value: std::ptr::null(),
                value_len: 0,
                checkpoint_id: 0,
                has_watermark: 0,
                watermark: 0,
                offsets_len: 0,
            };
            match entry.op {
                OpView::Put { key, value } => {
                    (out.key, out.key_len) = (key.as_ptr(), key.len());
                    (out.value, out.value_len) = (value.as_ptr(), value.len());
                }
                OpView::Delete { key } => (out.key, out.key_len) = (key.as_ptr(), key.len()),
                OpView::Commit { offsets, watermark } => {
                    out.offsets_len = offsets.len();
                    if let Some(w) = watermark {
                        (out.has_watermark, out.watermark) = (1, w);
                    }
                    for i in 0..offsets.len() {
                        if let Some((name, offset)) = offsets.get(i) {
                            state.offsets.push((name.as_ptr(), name.len(), offset));
                        }
                    }
                }
                OpView::Checkpoint { checkpoint_id } => out.checkpoint_id = checkpoint_id,
                OpView::EpochBarrier => {}
            }
            write_out(entry_out, out, "entry_out")?;
            Ok(CW_OK)
        })
    })
}

/// Reads source offset `index` (below `offsets_len`) of the COMMIT entry the
/// last `cw_recovery_next` yielded into `*offset_out`.
///
/// Returns CW_OK; CW_ERR_INVALID_ARGUMENT (NULL argument, closed iterator);
/// CW_ERR_NOT_FOUND (`index` out of range, or the last entry is not a
/// COMMIT). `offset_out->name` points into the mapping, is not
/// NUL-terminated, and lives as long as the entry. Thread safety: one thread
/// at a time per iterator.
#[unsafe(no_mangle)]
pub extern "C" fn cw_recovery_entry_offset(
    recovery: *const cw_recovery,
    index: usize,
    offset_out: *mut cw_source_offset,
) -> cw_status {
    boundary(|| {
        check_out(offset_out, "offset_out")?;
        with_recovery(recovery, |state| {
            let &(name, name_len, offset) = state.offsets.get(index).ok_or_else(|| {
                Error::NotFound(format!("the last entry has no source offset {index}"))
            })?;
            let out = cw_source_offset {
                name: name as *const c_char,
                name_len,
                offset,
            };
            write_out(offset_out, out, "offset_out")?;
            Ok(CW_OK)
        })
    })
}

/// The checkpoint the iterator starts from (options `from_checkpoint`, the
/// default): its id, the epoch it covers, and its meta bytes. Each lane is
/// read from its checkpoint position, and only records of later epochs are
/// yielded. Outputs may be NULL when not wanted.
///
/// Returns CW_OK; CW_ERR_NOT_FOUND (no checkpoint, or `from_checkpoint` was
/// 0); CW_ERR_INVALID_ARGUMENT (NULL or closed iterator); CW_ERR_BUSY.
/// Ownership: `*meta_out` points into the iterator and stays valid until it
/// is closed. Thread safety: one thread at a time per iterator.
#[unsafe(no_mangle)]
pub extern "C" fn cw_recovery_checkpoint(
    recovery: *const cw_recovery,
    checkpoint_id_out: *mut u64,
    epoch_out: *mut u64,
    meta_out: *mut *const u8,
    meta_len_out: *mut usize,
) -> cw_status {
    boundary(|| {
        with_recovery(recovery, |state| {
            let c = state.recovery.checkpoint().ok_or_else(|| {
                Error::NotFound("the iterator does not start from a checkpoint".into())
            })?;
            if !checkpoint_id_out.is_null() {
                write_out(checkpoint_id_out, c.checkpoint_id, "checkpoint_id_out")?;
            }
            if !epoch_out.is_null() {
                write_out(epoch_out, c.epoch, "epoch_out")?;
            }
            if !meta_out.is_null() {
                write_out(meta_out, c.meta.as_ptr(), "meta_out")?;
            }
            if !meta_len_out.is_null() {
                write_out(meta_len_out, c.meta.len(), "meta_len_out")?;
            }
            Ok(CW_OK)
        })
    })
}

fn lane_stats_of(s: &LaneStats) -> cw_lane_stats {
    let tail = s.torn_tail.as_ref();
    cw_lane_stats {
        core_id: s.core_id,
        segments: s.segments,
        records: s.records,
        bytes: s.bytes,
        first_epoch: s.first_epoch.unwrap_or(0),
        last_epoch: s.last_epoch.unwrap_or(0),
        has_records: u32::from(s.records > 0),
        torn_tail: u32::from(tail.is_some()),
        torn_tail_position: tail.map_or(0, |t| t.position),
        torn_tail_segment: tail.map_or(0, |t| t.segment_index),
        torn_tail_offset: tail.map_or(0, |t| t.offset),
        damaged_ranges: s.damaged.len() as u64,
        damaged_bytes: s.damaged.iter().map(|d| d.length).sum(),
    }
}

/// Per-lane statistics of what the iterator reads: one `cw_lane_stats` per
/// lane it reads (every lane, or those of `opts->lanes`), in lane order.
/// Writes the first `cap` of them to `stats_out` and the number of lanes it
/// reads to `*count_out`, which may be larger than `cap`: call with `cap` 0
/// (and `stats_out` NULL) to size the array. (Unlike `cw_writer_poll`,
/// nothing waits for a later call: the statistics are fixed at open.)
///
/// Returns CW_OK; CW_ERR_INVALID_ARGUMENT (NULL iterator or `count_out`,
/// NULL `stats_out` with a non-zero `cap`, closed iterator); CW_ERR_BUSY.
/// Thread safety: one thread at a time per iterator.
#[unsafe(no_mangle)]
pub extern "C" fn cw_recovery_stats(
    recovery: *const cw_recovery,
    stats_out: *mut cw_lane_stats,
    cap: usize,
    count_out: *mut usize,
) -> cw_status {
    boundary(|| {
        check_out(count_out, "count_out")?;
        if stats_out.is_null() && cap != 0 {
            return Err(invalid("stats_out is NULL but cap is not 0"));
        }
        with_recovery(recovery, |state| {
            let stats = state.recovery.stats();
            for (i, lane) in stats.iter().take(cap).enumerate() {
                write_nth(stats_out, i, lane_stats_of(lane));
            }
            write_out(count_out, stats.len(), "count_out")?;
            Ok(CW_OK)
        })
    })
}

/// Reads damaged range `index` (below that lane's
/// `cw_lane_stats.damaged_ranges`) of lane `core_id` into `*range_out`.
/// Ranges come in lane order; only CW_RECOVER_SKIP_CORRUPT has any.
///
/// Returns CW_OK; CW_ERR_NOT_FOUND (`index` out of range, or the iterator
/// does not read lane `core_id`); CW_ERR_INVALID_ARGUMENT (NULL argument,
/// closed iterator); CW_ERR_BUSY. Thread safety: one thread at a time per
/// iterator.
#[unsafe(no_mangle)]
pub extern "C" fn cw_recovery_damaged_range(
    recovery: *const cw_recovery,
    core_id: u32,
    index: usize,
    range_out: *mut cw_damaged_range,
) -> cw_status {
    boundary(|| {
        check_out(range_out, "range_out")?;
        with_recovery(recovery, |state| {
            let lane = state
                .recovery
                .stats()
                .iter()
                .find(|s| s.core_id == core_id)
                .ok_or_else(|| {
                    Error::NotFound(format!("the iterator does not read lane {core_id}"))
                })?;
            let d = lane.damaged.get(index).ok_or_else(|| {
                Error::NotFound(format!(
                    "lane {core_id} has {} damaged ranges; there is no range {index}",
                    lane.damaged.len()
                ))
            })?;
            let out = cw_damaged_range {
                segment_index: d.segment_index,
                offset: d.offset,
                length: d.length,
            };
            write_out(range_out, out, "range_out")?;
            Ok(CW_OK)
        })
    })
}

/// Closes the iterator and releases its mappings; entries it yielded become
/// invalid. NULL or an already closed iterator is ignored.
///
/// Thread safety: any thread, once no other thread uses the iterator.
#[unsafe(no_mangle)]
pub extern "C" fn cw_recovery_close(recovery: *mut cw_recovery) {
    boundary_value((), || {
        if let Ok(handle) = recovery_handle(recovery) {
            let mut guard = handle.state.lock().unwrap_or_else(|e| e.into_inner());
            if guard.take().is_some() {
                retire(recovery as usize);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: cw_last_error never returns NULL and its string lives until
        // the next failing call on this thread.
        unsafe { CStr::from_ptr(cw_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = boundary(|| panic!("boom at the boundary"));
        assert_eq!(status, CW_ERR_PANIC);
        assert!(last_error().contains("boom at the boundary"));
    }

    #[test]
    fn errors_map_to_their_statuses() {
        assert_eq!(
            boundary(|| Err(Error::Busy("writer 3".into()))),
            CW_ERR_BUSY
        );
        assert!(last_error().contains("writer 3"));
        assert_eq!(
            boundary(|| Err(Error::TooLarge { size: 2, limit: 1 })),
            CW_ERR_TOO_LARGE
        );
        assert_eq!(
            boundary(|| Err(Error::Closed("manager"))),
            CW_ERR_INVALID_ARGUMENT
        );
        assert_eq!(boundary(|| Ok(CW_DONE)), CW_DONE);
    }

    #[test]
    fn options_init_never_writes_past_the_callers_size() {
        let mut raw = [0xEEu8; size_of::<cw_options>() + 8];
        let small = std::mem::offset_of!(cw_options, sync_every_records);
        init_sized(
            raw.as_mut_ptr() as *mut cw_options,
            small,
            default_options(),
            |o, n| o.struct_size = n,
        );
        assert!(
            raw[small..].iter().all(|&b| b == 0xEE),
            "wrote past the caller's struct"
        );
        assert_eq!(
            u32::from_ne_bytes(raw[..4].try_into().unwrap()) as usize,
            small
        );
        let read =
            read_sized(raw.as_ptr() as *const cw_options, default_options(), "opts").unwrap();
        assert_eq!(
            read.sync_every_records, 0,
            "fields beyond the caller's size take defaults"
        );
        assert_eq!(read.segment_bytes, 64 << 20);
    }

    #[test]
    fn an_uninitialised_options_struct_is_refused() {
        let zeroed = [0u8; size_of::<cw_options>()];
        assert!(
            read_sized(
                zeroed.as_ptr() as *const cw_options,
                default_options(),
                "opts"
            )
            .is_err()
        );
    }

    #[test]
    fn unknown_enum_values_are_invalid_arguments() {
        assert!(Backend::try_from(7).is_err());
        assert!(RecoveryMode::try_from(-1).is_err());
        assert!(RecoveryMode::try_from(4).is_err());
        assert_eq!(
            RecoveryMode::try_from(3).unwrap(),
            RecoveryMode::SkipCorrupt
        );
        assert_eq!(
            RecoveryMode::try_from(2).unwrap(),
            RecoveryMode::PointInTime
        );
    }
}
