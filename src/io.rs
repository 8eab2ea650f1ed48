//! The I/O layer the engine is generic over.
//!
//! [`Io`] is the file system (open, list, rename, lock, map); [`IoFile`] one
//! open file; [`SubmitQueue`] the per-writer queue through which the append
//! path writes and syncs. The queue takes ownership of write buffers and hands
//! them back in completions, so a backend that finishes work later (io_uring)
//! fits the same shape as the blocking one.
//!
//! Implementations: [`FileIo`] (real files, pwrite + fdatasync) and
//! [`MemIo`] (in memory, fails chosen operations, can "crash").

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Deref;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::direct::{DirectFiles, DirectWrites, Route};
use crate::options::Backend;
use crate::uring::{InjectOp, UringOptions, UringQueue};

/// How [`Io::open`] treats a missing or existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist.
    Existing,
    /// Create it if missing.
    Create,
    /// Create it; fail if it exists.
    CreateNew,
}

/// One open file. Shared between the writer and its queue, hence `&self`.
pub trait IoFile: Send + Sync + 'static {
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// One write of as much of `buf` as the system takes; returns how much.
    fn write_some_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// fdatasync.
    fn sync_data(&self) -> io::Result<()>;
    /// fsync (data and metadata such as the size).
    fn sync_all(&self) -> io::Result<()>;
    /// The file's size in bytes.
    fn size(&self) -> io::Result<u64>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Reserves blocks for the first `len` bytes and makes the file that
    /// long, so that later writes neither allocate nor change its size.
    fn allocate(&self, len: u64) -> io::Result<()>;
}

/// A read-only view of a whole file.
pub trait MappedFile: Deref<Target = [u8]> + Send + Sync + 'static {
    /// Hints that `range` of the view will not be read again, so its pages
    /// can leave this process's resident set.
    fn release(&self, offset: usize, len: usize);
}

/// A finished queue operation.
#[derive(Debug)]
pub enum Completion {
    /// A write finished; its buffer comes back for reuse.
    Write {
        buf: Vec<u8>,
        result: io::Result<()>,
        /// Bytes that reached the file (all of `buf` on success).
        written: usize,
    },
    /// A sync finished.
    Sync { token: u64, result: io::Result<()> },
}

/// The queue a writer submits its writes and syncs to. One per writer, used
/// by one thread at a time.
pub trait SubmitQueue: Send + 'static {
    type File: IoFile;
    /// Queues a write of all of `buf` at `offset`.
    fn write(&mut self, file: &Arc<Self::File>, buf: Vec<u8>, offset: u64);
    /// Queues an fdatasync of `file` that covers every write queued before it.
    fn sync(&mut self, file: &Arc<Self::File>, token: u64);
    /// Like [`write`](Self::write), for a write a sync follows at once: a
    /// queue may then do it on the calling thread.
    fn write_now(&mut self, file: &Arc<Self::File>, buf: Vec<u8>, offset: u64) {
        self.write(file, buf, offset);
    }
    /// Like [`write_now`](Self::write_now), where that sync is *alone*:
    /// the application waited for the previous sync before it appended
    /// anything after it, so syncs are not being pipelined. A queue may
    /// then write it direct, which holds back writes queued after it (see
    /// [`crate::direct`]).
    fn write_alone(&mut self, file: &Arc<Self::File>, buf: Vec<u8>, offset: u64) {
        self.write_now(file, buf, offset);
    }
    /// Like [`write_now`](Self::write_now), for a caller that waits for
    /// the write and the sync after it right away: a queue may do it on the
    /// calling thread even where that blocks for the device.
    fn write_waited(&mut self, file: &Arc<Self::File>, buf: Vec<u8>, offset: u64) {
        self.write_now(file, buf, offset);
    }
    /// Like [`sync`](Self::sync), for a caller that waits for this sync
    /// right away: a queue may then do the fdatasync on the calling thread.
    fn sync_now(&mut self, file: &Arc<Self::File>, token: u64) {
        self.sync(file, token);
    }
    /// Moves finished operations into `out`. With `wait`, blocks until at
    /// least one operation finishes unless none is in flight.
    fn reap(&mut self, wait: bool, out: &mut Vec<Completion>);
    /// Operations queued and not yet reaped.
    fn in_flight(&self) -> usize;
    /// From now on, signal `event` whenever a sync queued with
    /// [`sync`](Self::sync) finishes, or an operation a queued sync waits
    /// for. Writes that no queued sync waits for and the `*_now` operations
    /// (their caller reaps them at once) need not signal it.
    fn attach_event(&mut self, event: Arc<EventFd>) -> io::Result<()>;
}

/// An eventfd: turns readable when signalled, quiet again when drained, so
/// an event loop (epoll, a Go netpoller, a Zig event loop) can wait for
/// completions.
#[derive(Debug)]
pub struct EventFd(std::os::fd::OwnedFd);

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        use std::os::fd::FromRawFd;
        // SAFETY: eventfd takes no pointers; a non-negative result is a new
        // descriptor that nothing else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        Ok(EventFd(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    pub fn raw(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }

    /// Makes the descriptor readable.
    pub fn signal(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live local buffer to our own
        // descriptor. A full counter (EAGAIN) is already readable, so the
        // result needs no handling.
        unsafe { libc::write(self.raw(), one.as_ptr().cast(), one.len()) };
    }

    /// Makes the descriptor quiet until the next signal.
    pub fn drain(&self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live local buffer from our own
        // non-blocking descriptor; EAGAIN (nothing to drain) is fine.
        unsafe { libc::read(self.raw(), count.as_mut_ptr().cast(), count.len()) };
    }
}

/// The file system a manager works on.
pub trait Io: Clone + Send + Sync + 'static {
    type File: IoFile;
    type Map: MappedFile;
    type Lock: Send + Sync + 'static;
    type Queue: SubmitQueue<File = Self::File>;

    fn create_dir(&self, path: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> io::Result<bool>;
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Self::File>;
    /// Names (not paths) of the entries of `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Gives `from`'s file the name `to` too; `AlreadyExists` if `to` exists
    /// (never replaces).
    fn link(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes the exclusive lock on `path`; `WouldBlock` if someone holds it.
    fn lock(&self, path: &Path) -> io::Result<Self::Lock>;
    /// Maps the first `len` bytes of `file` read-only.
    fn map(&self, file: &Self::File, len: usize) -> io::Result<Self::Map>;
    /// A submission queue for one writer.
    fn queue(&self) -> io::Result<Self::Queue>;
    /// Called once a prepared segment is zero-filled and synced, before the
    /// writer uses it.
    fn settle(&self, _file: &Self::File) {}
    /// The backend for a WAL whose segments are `segment_bytes` long (known
    /// once the directory's metadata is read).
    fn for_segments(self, _segment_bytes: u64) -> Self {
        self
    }

    /// The queue kind [`Io::queue`] makes.
    fn backend_in_use(&self) -> BackendInUse {
        BackendInUse {
            backend: Backend::Sync,
            fallback_reason: None,
            direct_io: false,
            direct_sync: false,
        }
    }

    /// Reads a whole small file.
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let file = self.open(path, OpenMode::Existing)?;
        let len = file.size()?;
        if len > MAX_SMALL_FILE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is {len} bytes, more than expected", path.display()),
            ));
        }
        let mut buf = vec![0u8; len as usize];
        let mut done = 0;
        while done < buf.len() {
            let n = file.read_at(&mut buf[done..], done as u64)?;
            if n == 0 {
                buf.truncate(done);
                break;
            }
            done += n;
        }
        Ok(buf)
    }

    /// Replaces `path` with `bytes` so that a crash leaves the old or the new
    /// content, never a mix: temp file, fsync, rename, directory fsync.
    fn write_atomic(&self, dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
        let tmp = dir.join(format!("{name}.tmp"));
        let _ = self.remove(&tmp);
        let file = self.open(&tmp, OpenMode::CreateNew)?;
        file.write_at(bytes, 0)?;
        file.sync_all()?;
        drop(file);
        self.rename(&tmp, &dir.join(name))?;
        self.sync_dir(dir)
    }
}

/// Upper bound for metadata-sized files read whole.
const MAX_SMALL_FILE: u64 = 1 << 20;

/// Writes all of `buf` at `offset` now, as a finished write [`Completion`]
/// that says how much reached the file.
pub(crate) fn write_whole<F: IoFile + ?Sized>(file: &F, buf: Vec<u8>, offset: u64) -> Completion {
    let mut written = 0;
    let result = loop {
        if written == buf.len() {
            break Ok(());
        }
        match file.write_some_at(&buf[written..], offset + written as u64) {
            Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    Completion::Write {
        buf,
        result,
        written,
    }
}

/// A queue that performs each operation as it is submitted; completions are
/// ready at once. The sync backend, and the queue of [`MemIo`].
pub struct BlockingQueue<F> {
    done: VecDeque<Completion>,
    event: Option<Arc<EventFd>>,
    _file: std::marker::PhantomData<fn() -> F>,
}

impl<F> Default for BlockingQueue<F> {
    fn default() -> Self {
        BlockingQueue {
            done: VecDeque::new(),
            event: None,
            _file: std::marker::PhantomData,
        }
    }
}

impl<F> BlockingQueue<F> {
    /// Keeps a finished operation for reap; `signal`: make the event fd
    /// readable too (only a sync someone may be waiting on needs it, and a
    /// signal costs a system call).
    pub(crate) fn finish(&mut self, completion: Completion, signal: bool) {
        self.done.push_back(completion);
        if let Some(event) = self.event.as_ref().filter(|_| signal) {
            event.signal();
        }
    }
}

impl<F: IoFile> SubmitQueue for BlockingQueue<F> {
    type File = F;

    fn write(&mut self, file: &Arc<F>, buf: Vec<u8>, offset: u64) {
        // Done before any later sync is queued: no sync waits for it.
        self.finish(write_whole(&**file, buf, offset), false);
    }

    fn sync(&mut self, file: &Arc<F>, token: u64) {
        let result = file.sync_data();
        self.finish(Completion::Sync { token, result }, true);
    }

    fn sync_now(&mut self, file: &Arc<F>, token: u64) {
        let result = file.sync_data();
        self.finish(Completion::Sync { token, result }, false);
    }

    fn reap(&mut self, _wait: bool, out: &mut Vec<Completion>) {
        out.extend(self.done.drain(..));
    }

    fn in_flight(&self) -> usize {
        self.done.len()
    }

    fn attach_event(&mut self, event: Arc<EventFd>) -> io::Result<()> {
        self.event = Some(event);
        Ok(())
    }
}

/// The sync backend with direct I/O (see [`crate::direct`]): each write
/// [`DirectFiles::route`] sends direct is staged and written
/// `O_DIRECT | O_DSYNC` on the calling thread, so a sync of a file with
/// nothing buffered since its last fdatasync needs none. Other writes, and
/// files that refuse direct I/O, are written and synced as by
/// [`BlockingQueue`].
pub struct DirectQueue {
    done: BlockingQueue<File>,
    files: DirectFiles,
    /// fdatasyncs done (syncs that could not be folded).
    fdatasyncs: u64,
}

impl DirectQueue {
    /// A queue writing direct what `writes` says.
    pub fn new(writes: DirectWrites) -> DirectQueue {
        DirectQueue {
            done: BlockingQueue::default(),
            files: DirectFiles::new(writes),
            fdatasyncs: 0,
        }
    }

    /// A write, direct or buffered as [`DirectFiles::route`] decides (on
    /// this queue nothing is ever in flight, so a sync is always alone).
    fn write_routed(&mut self, file: &Arc<File>, buf: Vec<u8>, offset: u64, sync_follows: bool) {
        let route = self
            .files
            .route(file, offset, buf.len(), sync_follows, true, false);
        match self.files.find(file) {
            Some(direct) if route != Route::Buffered && !buf.is_empty() => {
                let done = direct.write_now(route, file, buf, offset);
                self.done.finish(done, false);
            }
            _ => self.done.write(file, buf, offset),
        }
    }

    /// A sync of `file`; `signal`: make the event fd readable too.
    fn sync_with(&mut self, file: &Arc<File>, token: u64, signal: bool) {
        let result = if self.files.folds_sync(file) {
            // Its writes since the last fdatasync were durable when they
            // returned.
            Ok(())
        } else {
            self.fdatasyncs += 1;
            file.sync_data()
        };
        self.done.finish(Completion::Sync { token, result }, signal);
    }
}

impl SubmitQueue for DirectQueue {
    type File = File;

    fn write(&mut self, file: &Arc<File>, buf: Vec<u8>, offset: u64) {
        self.write_routed(file, buf, offset, false);
    }

    fn write_now(&mut self, file: &Arc<File>, buf: Vec<u8>, offset: u64) {
        self.write_routed(file, buf, offset, true);
    }

    fn sync(&mut self, file: &Arc<File>, token: u64) {
        self.sync_with(file, token, true);
    }

    fn sync_now(&mut self, file: &Arc<File>, token: u64) {
        self.sync_with(file, token, false);
    }

    fn reap(&mut self, wait: bool, out: &mut Vec<Completion>) {
        self.done.reap(wait, out)
    }

    fn in_flight(&self) -> usize {
        self.done.in_flight()
    }

    fn attach_event(&mut self, event: Arc<EventFd>) -> io::Result<()> {
        self.done.attach_event(event)
    }
}

/// The backend a manager ended up with, and why, when it differs from the
/// one asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInUse {
    /// [`Backend::Sync`] or [`Backend::IoUring`].
    pub backend: Backend,
    /// Why `Auto` did not pick io_uring; `None` when nothing fell back.
    pub fallback_reason: Option<String>,
    /// Every segment write is direct (the `direct_io` option).
    pub direct_io: bool,
    /// The write before a sync that is alone goes direct while nothing is
    /// buffered (the `direct_sync` option, where the file system allows
    /// it).
    pub direct_sync: bool,
}

/// Real files: pwrite, fdatasync, flock, mmap; writes and syncs through
/// io_uring when chosen.
#[derive(Debug, Clone)]
pub struct FileIo {
    file_mode: u32,
    dir_mode: u32,
    uring: Option<UringOptions>,
    fallback_reason: Option<String>,
    /// Which segment writes go direct (see [`crate::direct`]).
    direct: Option<DirectWrites>,
    /// Failures to inject into the io_uring queues made from this value
    /// (tests of the failure paths).
    injected: Arc<Mutex<VecDeque<(InjectOp, i32)>>>,
}

impl Default for FileIo {
    fn default() -> Self {
        FileIo {
            file_mode: 0o600,
            dir_mode: 0o700,
            uring: None,
            fallback_reason: None,
            direct: None,
            injected: Arc::default(),
        }
    }
}

impl FileIo {
    /// File and directory permission bits for what this backend creates.
    pub fn with_modes(file_mode: u32, dir_mode: u32) -> FileIo {
        FileIo {
            file_mode,
            dir_mode,
            ..FileIo::default()
        }
    }

    /// Real files with the queue `backend` asks for: `IoUring` fails where
    /// a ring cannot be set up; `Auto` takes io_uring where it works and
    /// the blocking queue otherwise, remembering why.
    pub fn for_backend(backend: Backend, uring: UringOptions) -> Result<FileIo, String> {
        let mut io = FileIo::default();
        match backend {
            Backend::Sync => {}
            Backend::IoUring => {
                crate::uring::probe()?;
                io.uring = Some(uring);
            }
            Backend::Auto => match crate::uring::probe() {
                Ok(()) => io.uring = Some(uring),
                Err(reason) => io.fallback_reason = Some(reason),
            },
        }
        Ok(io)
    }

    /// Writes segments with direct I/O (see [`crate::direct`]), on either
    /// queue, if it works where `dir` is; the error says why not.
    pub fn with_direct_io(self, dir: &Path) -> Result<FileIo, String> {
        self.with_direct(DirectWrites::Every, dir)
    }

    /// Writes the write before a sync that is alone direct while nothing
    /// is buffered ([`DirectWrites::BeforeSyncs`]), if direct I/O works
    /// where `dir` is; the error says why not.
    pub fn with_direct_sync(self, dir: &Path) -> Result<FileIo, String> {
        self.with_direct(DirectWrites::BeforeSyncs, dir)
    }

    fn with_direct(self, writes: DirectWrites, dir: &Path) -> Result<FileIo, String> {
        crate::direct::probe(dir)?;
        Ok(FileIo {
            direct: Some(writes),
            ..self
        })
    }
}

impl FileIo {
    /// Makes the next io_uring completion of kind `op` (on any queue made
    /// from this `FileIo` or a clone) fail with `errno`: how the failure
    /// paths of the io_uring backend are tested.
    #[doc(hidden)]
    pub fn inject_failure(&self, op: InjectOp, errno: i32) {
        lock_state(&self.injected).push_back((op, errno));
    }
}

/// The queue of [`FileIo`]: blocking (through the page cache or direct), or
/// an io_uring ring.
pub enum FileQueue {
    Blocking(BlockingQueue<File>),
    Direct(DirectQueue),
    Uring(Box<UringQueue>, Arc<Mutex<VecDeque<(InjectOp, i32)>>>),
}

impl FileQueue {
    /// The queue in use; injected failures are handed to a ring first.
    fn active(&mut self) -> &mut dyn SubmitQueue<File = File> {
        match self {
            FileQueue::Blocking(q) => q,
            FileQueue::Direct(q) => q,
            FileQueue::Uring(q, injected) => {
                for (op, errno) in lock_state(injected).drain(..) {
                    q.inject_failure(op, errno);
                }
                q.as_mut()
            }
        }
    }
}

impl SubmitQueue for FileQueue {
    type File = File;

    fn write(&mut self, file: &Arc<File>, buf: Vec<u8>, offset: u64) {
        self.active().write(file, buf, offset)
    }

    fn sync(&mut self, file: &Arc<File>, token: u64) {
        self.active().sync(file, token)
    }

    fn sync_now(&mut self, file: &Arc<File>, token: u64) {
        self.active().sync_now(file, token)
    }

    fn write_now(&mut self, file: &Arc<File>, buf: Vec<u8>, offset: u64) {
        self.active().write_now(file, buf, offset)
    }

    fn write_alone(&mut self, file: &Arc<File>, buf: Vec<u8>, offset: u64) {
        self.active().write_alone(file, buf, offset)
    }

    fn write_waited(&mut self, file: &Arc<File>, buf: Vec<u8>, offset: u64) {
        self.active().write_waited(file, buf, offset)
    }

    fn reap(&mut self, wait: bool, out: &mut Vec<Completion>) {
        self.active().reap(wait, out)
    }

    fn in_flight(&self) -> usize {
        match self {
            FileQueue::Blocking(q) => q.in_flight(),
            FileQueue::Direct(q) => q.in_flight(),
            FileQueue::Uring(q, _) => q.in_flight(),
        }
    }

    fn attach_event(&mut self, event: Arc<EventFd>) -> io::Result<()> {
        self.active().attach_event(event)
    }
}

impl IoFile for File {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }

    fn write_some_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        FileExt::write_at(self, buf, offset)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn sync_all(&self) -> io::Result<()> {
        File::sync_all(self)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let len =
            libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: fallocate only reads its integer arguments; the descriptor
        // is owned by `self` and open for writing.
        let rc = unsafe { libc::fallocate(self.as_raw_fd(), 0, 0, len) };
        if rc == 0 {
            return Ok(());
        }
        match io::Error::last_os_error() {
            // File systems without fallocate: a sized (sparse) file still
            // keeps size changes out of later syncs.
            e if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)
            ) =>
            {
                File::set_len(self, len as u64)
            }
            e => Err(e),
        }
    }
}

/// A read-only shared mapping of a segment file.
pub struct FileMap(Option<memmap2::Mmap>);

impl Deref for FileMap {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_deref().unwrap_or(&[])
    }
}

impl MappedFile for FileMap {
    fn release(&self, offset: usize, len: usize) {
        let Some(map) = &self.0 else { return };
        if len == 0 || offset.checked_add(len).is_none_or(|end| end > map.len()) {
            return;
        }
        // SAFETY: the mapping is read-only and file-backed, so MADV_DONTNEED
        // only drops this process's page references; the next read of the
        // range faults the same file bytes back in. No Rust reference into the
        // range is invalidated because the bytes stay readable.
        let _ =
            unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) };
    }
}

impl Io for FileIo {
    type File = File;
    type Map = FileMap;
    type Lock = File;
    type Queue = FileQueue;

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(self.dir_mode)
            .create(path)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<File> {
        let mut opts = OpenOptions::new();
        opts.read(true)
            .write(true)
            .mode(self.file_mode)
            // std already opens with O_CLOEXEC; O_NOFOLLOW keeps a planted
            // symlink from redirecting writes.
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
        match mode {
            OpenMode::Existing => {}
            OpenMode::Create => {
                opts.create(true);
            }
            OpenMode::CreateNew => {
                opts.create_new(true);
            }
        }
        opts.open(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn link(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::hard_link(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(dir)?
            .sync_all()
    }

    fn lock(&self, path: &Path) -> io::Result<File> {
        let file = self.open(path, OpenMode::Create)?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn map(&self, file: &File, len: usize) -> io::Result<FileMap> {
        if len == 0 {
            return Ok(FileMap(None));
        }
        // SAFETY: segment files are only written by the writer that owns the
        // lane, under the directory lock, and only past the end a reader has
        // validated; bytes a reader looks at do not change underneath it.
        // The one exception is a truncation, which zeroes a lane's discarded
        // suffix: a reader running beside it may see those bytes turn to
        // zeros. The mapping stays valid (files are never shrunk under it),
        // every record is validated when it is decoded, and what is handed
        // out are slices inside the mapping, so such a reader sees changed
        // bytes or gets an error, never memory outside the mapping.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(file)? };
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(FileMap(Some(map)))
    }

    fn queue(&self) -> io::Result<FileQueue> {
        Ok(match &self.uring {
            Some(options) => {
                let options = UringOptions {
                    direct: self.direct,
                    ..*options
                };
                FileQueue::Uring(Box::new(UringQueue::new(options)?), self.injected.clone())
            }
            None => match self.direct {
                Some(writes) => FileQueue::Direct(DirectQueue::new(writes)),
                None => FileQueue::Blocking(BlockingQueue::default()),
            },
        })
    }

    /// With every write direct, drops the zero-filled segment's clean
    /// cached pages: a direct write over cached pages cannot be issued
    /// without blocking (io_uring hands it to a worker), and the writer
    /// never reads them. With buffered writes beside direct ones they stay
    /// (see [`crate::direct`]).
    fn settle(&self, file: &File) {
        if self.direct == Some(DirectWrites::Every) {
            crate::direct::drop_cached(file, 0, None);
        }
    }

    /// Direct writes before syncs only where segments end on a block: the
    /// last write of a segment is padded to a whole block and must not
    /// reach past it. (Every write direct is refused at open instead.)
    fn for_segments(self, segment_bytes: u64) -> FileIo {
        let fits = segment_bytes.is_multiple_of(crate::direct::BLOCK as u64);
        match self.direct {
            Some(DirectWrites::BeforeSyncs) if !fits => FileIo {
                direct: None,
                ..self
            },
            _ => self,
        }
    }

    fn backend_in_use(&self) -> BackendInUse {
        BackendInUse {
            backend: if self.uring.is_some() {
                Backend::IoUring
            } else {
                Backend::Sync
            },
            fallback_reason: self.fallback_reason.clone(),
            direct_io: self.direct == Some(DirectWrites::Every),
            direct_sync: self.direct == Some(DirectWrites::BeforeSyncs),
        }
    }
}

/// Operations of [`MemIo`] that can be made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    Open,
    Write,
    Read,
    SyncData,
    SyncAll,
    SyncDir,
    Rename,
    Remove,
    SetLen,
}

#[derive(Debug, Clone)]
struct Fault {
    op: FaultOp,
    path_contains: String,
    skip: u64,
    remaining: Option<u64>,
    errno: i32,
}

#[derive(Default)]
struct MemFileData {
    /// What reads see (the page cache).
    data: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
}

type SharedData = Arc<Mutex<MemFileData>>;

#[derive(Default)]
struct MemState {
    files: HashMap<PathBuf, SharedData>,
    /// The directory tree as of the last directory sync.
    durable_files: HashMap<PathBuf, SharedData>,
    dirs: Vec<PathBuf>,
    locks: Vec<PathBuf>,
    faults: Vec<Fault>,
    /// Set by a crash: the process is gone, nothing reaches the disk until
    /// [`MemIo::restart`].
    dead: bool,
}

/// An in-memory file system for tests: every operation can be made to fail
/// with a chosen errno, and [`MemIo::crash`] drops everything that was not
/// made durable (unsynced file bytes, unsynced directory changes).
#[derive(Clone, Default)]
pub struct MemIo {
    state: Arc<Mutex<MemState>>,
}

fn lock_state<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemIo {
    pub fn new() -> MemIo {
        MemIo::default()
    }

    /// Makes every `op` on a path containing `path_contains` fail with
    /// `errno`, after `skip` successful ones, `times` times (None: forever).
    pub fn fail(
        &self,
        op: FaultOp,
        path_contains: &str,
        skip: u64,
        times: Option<u64>,
        errno: i32,
    ) {
        lock_state(&self.state).faults.push(Fault {
            op,
            path_contains: path_contains.to_owned(),
            skip,
            remaining: times,
            errno,
        });
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        lock_state(&self.state).faults.clear();
    }

    /// Simulates power loss: each file keeps only its synced bytes and the
    /// directory only its synced entries. From then on every operation fails
    /// (the process is gone: handles still open, and threads still running,
    /// can change nothing) until [`MemIo::restart`].
    pub fn crash(&self) {
        let mut st = lock_state(&self.state);
        st.files = st.durable_files.clone();
        for data in st.files.values() {
            let mut d = lock_state(data);
            d.data = d.durable.clone();
        }
        st.dead = true;
    }

    /// Simulates power loss during writeback: of every 512-byte sector that
    /// was written but not synced, a pseudo-random half (chosen by `seed`)
    /// reaches the disk, in no particular order. Then as [`MemIo::crash`].
    pub fn crash_torn(&self, mut seed: u64) {
        const SECTOR: usize = 512;
        let mut coin = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed & 1 == 1
        };
        {
            let st = lock_state(&self.state);
            for data in st.durable_files.values() {
                let mut guard = lock_state(data);
                let d = &mut *guard;
                if d.durable.len() < d.data.len() {
                    d.durable.resize(d.data.len(), 0);
                }
                for start in (0..d.data.len()).step_by(SECTOR) {
                    let end = (start + SECTOR).min(d.data.len());
                    if d.data[start..end] != d.durable[start..end] && coin() {
                        d.durable[start..end].copy_from_slice(&d.data[start..end]);
                    }
                }
            }
        }
        self.crash();
    }

    /// Simulates the process dying while the machine stays up: unsynced
    /// bytes survive in the page cache. Operations fail until
    /// [`MemIo::restart`].
    pub fn kill(&self) {
        lock_state(&self.state).dead = true;
    }

    /// A new process starts: operations work again and no lock is held.
    pub fn restart(&self) {
        let mut st = lock_state(&self.state);
        st.dead = false;
        st.locks.clear();
    }

    /// The current bytes of `path`, if it exists.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let st = lock_state(&self.state);
        st.files.get(path).map(|d| lock_state(d).data.clone())
    }

    /// Overwrites bytes of `path` behind the library's back (and durably),
    /// to plant damage; creates the file if it is missing.
    pub fn poke(&self, path: &Path, offset: usize, bytes: &[u8]) {
        let mut st = lock_state(&self.state);
        let data = st.files.entry(path.to_owned()).or_default().clone();
        st.durable_files.insert(path.to_owned(), data.clone());
        let mut guard = lock_state(&data);
        let d = &mut *guard;
        for buf in [&mut d.data, &mut d.durable] {
            if buf.len() < offset + bytes.len() {
                buf.resize(offset + bytes.len(), 0);
            }
            buf[offset..offset + bytes.len()].copy_from_slice(bytes);
        }
    }

    fn alive(&self) -> io::Result<()> {
        if lock_state(&self.state).dead {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }

    fn check(&self, op: FaultOp, path: &Path) -> io::Result<()> {
        let mut st = lock_state(&self.state);
        if st.dead {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let path = path.to_string_lossy();
        for fault in st.faults.iter_mut() {
            if fault.op != op || !path.contains(fault.path_contains.as_str()) {
                continue;
            }
            if fault.skip > 0 {
                fault.skip -= 1;
                continue;
            }
            match &mut fault.remaining {
                Some(0) => continue,
                Some(n) => *n -= 1,
                None => {}
            }
            return Err(io::Error::from_raw_os_error(fault.errno));
        }
        Ok(())
    }
}

/// A file of [`MemIo`].
pub struct MemFile {
    io: MemIo,
    path: PathBuf,
    data: SharedData,
}

impl IoFile for MemFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.io.check(FaultOp::Write, &self.path)?;
        let mut d = lock_state(&self.data);
        let start = offset as usize;
        if d.data.len() < start + buf.len() {
            d.data.resize(start + buf.len(), 0);
        }
        d.data[start..start + buf.len()].copy_from_slice(buf);
        Ok(())
    }

    fn write_some_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.write_at(buf, offset).map(|()| buf.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.io.check(FaultOp::Read, &self.path)?;
        let d = lock_state(&self.data);
        let start = (offset as usize).min(d.data.len());
        let n = buf.len().min(d.data.len() - start);
        buf[..n].copy_from_slice(&d.data[start..start + n]);
        Ok(n)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.io.check(FaultOp::SyncData, &self.path)?;
        let mut d = lock_state(&self.data);
        d.durable = d.data.clone();
        Ok(())
    }

    fn sync_all(&self) -> io::Result<()> {
        self.io.check(FaultOp::SyncAll, &self.path)?;
        let mut d = lock_state(&self.data);
        d.durable = d.data.clone();
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(lock_state(&self.data).data.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.io.check(FaultOp::SetLen, &self.path)?;
        lock_state(&self.data).data.resize(len as usize, 0);
        Ok(())
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.io.check(FaultOp::SetLen, &self.path)?;
        let mut d = lock_state(&self.data);
        if d.data.len() < len as usize {
            d.data.resize(len as usize, 0);
        }
        Ok(())
    }
}

/// A copy of a [`MemFile`]'s bytes, aligned like a page-aligned mapping.
pub struct MemMap(rkyv::util::AlignedVec);

impl Deref for MemMap {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl MappedFile for MemMap {
    fn release(&self, _offset: usize, _len: usize) {}
}

/// The lock guard of [`MemIo`].
pub struct MemLock {
    io: MemIo,
    path: PathBuf,
}

impl Drop for MemLock {
    fn drop(&mut self) {
        lock_state(&self.io.state).locks.retain(|p| p != &self.path);
    }
}

impl Io for MemIo {
    type File = MemFile;
    type Map = MemMap;
    type Lock = MemLock;
    type Queue = BlockingQueue<MemFile>;

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.alive()?;
        let mut st = lock_state(&self.state);
        if !st.dirs.iter().any(|d| d == path) {
            st.dirs.push(path.to_owned());
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.alive()?;
        let st = lock_state(&self.state);
        Ok(st.files.contains_key(path) || st.dirs.iter().any(|d| d == path))
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<MemFile> {
        self.check(FaultOp::Open, path)?;
        let mut st = lock_state(&self.state);
        let parent = path.parent().unwrap_or(Path::new(""));
        if !st.dirs.iter().any(|d| d == parent) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let data = match (st.files.get(path), mode) {
            (Some(_), OpenMode::CreateNew) => return Err(io::ErrorKind::AlreadyExists.into()),
            (Some(d), _) => d.clone(),
            (None, OpenMode::Existing) => return Err(io::ErrorKind::NotFound.into()),
            (None, _) => {
                let d = SharedData::default();
                st.files.insert(path.to_owned(), d.clone());
                d
            }
        };
        Ok(MemFile {
            io: self.clone(),
            path: path.to_owned(),
            data,
        })
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.alive()?;
        let st = lock_state(&self.state);
        if !st.dirs.iter().any(|d| d == dir) {
            return Err(io::ErrorKind::NotFound.into());
        }
        Ok(st
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(FaultOp::Rename, from)?;
        let mut st = lock_state(&self.state);
        let data = st.files.remove(from).ok_or(io::ErrorKind::NotFound)?;
        st.files.insert(to.to_owned(), data);
        Ok(())
    }

    fn link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(FaultOp::Rename, from)?;
        let mut st = lock_state(&self.state);
        if st.files.contains_key(to) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let data = st.files.get(from).ok_or(io::ErrorKind::NotFound)?.clone();
        st.files.insert(to.to_owned(), data);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.check(FaultOp::Remove, path)?;
        let mut st = lock_state(&self.state);
        st.files
            .remove(path)
            .map(|_| ())
            .ok_or(io::ErrorKind::NotFound.into())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check(FaultOp::SyncDir, dir)?;
        let mut st = lock_state(&self.state);
        let in_dir = |p: &Path| p.parent() == Some(dir);
        let current: Vec<(PathBuf, SharedData)> = st
            .files
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, d)| (p.clone(), d.clone()))
            .collect();
        st.durable_files.retain(|p, _| !in_dir(p));
        st.durable_files.extend(current);
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<MemLock> {
        drop(self.open(path, OpenMode::Create)?);
        let mut st = lock_state(&self.state);
        if st.locks.iter().any(|p| p == path) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        st.locks.push(path.to_owned());
        Ok(MemLock {
            io: self.clone(),
            path: path.to_owned(),
        })
    }

    fn map(&self, file: &MemFile, len: usize) -> io::Result<MemMap> {
        self.check(FaultOp::Read, &file.path)?;
        let d = lock_state(&file.data);
        let mut copy = rkyv::util::AlignedVec::with_capacity(len);
        copy.extend_from_slice(&d.data[..len.min(d.data.len())]);
        Ok(MemMap(copy))
    }

    fn queue(&self) -> io::Result<BlockingQueue<MemFile>> {
        Ok(BlockingQueue::default())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small deterministic generator for the mixed-operation tests.
    pub(crate) struct XorShift(pub u64);

    impl XorShift {
        /// The next number below `n`.
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    #[test]
    fn mem_crash_keeps_only_synced_bytes_and_entries() {
        let io = MemIo::new();
        let dir = Path::new("/wal");
        io.create_dir(dir).unwrap();
        let a = io.open(&dir.join("a"), OpenMode::CreateNew).unwrap();
        a.write_at(b"hello", 0).unwrap();
        a.sync_data().unwrap();
        io.sync_dir(dir).unwrap();
        a.write_at(b" world", 5).unwrap();
        let b = io.open(&dir.join("b"), OpenMode::CreateNew).unwrap();
        b.write_at(b"x", 0).unwrap();
        b.sync_data().unwrap();
        io.crash();
        assert!(
            a.write_at(b"late", 0).is_err(),
            "a dead process writes nothing"
        );
        io.restart();
        assert_eq!(io.contents(&dir.join("a")).unwrap(), b"hello");
        assert!(io.contents(&dir.join("b")).is_none(), "entry never synced");
    }

    #[test]
    fn mem_faults_fire_after_skip_and_stop_after_times() {
        let io = MemIo::new();
        let dir = Path::new("/wal");
        io.create_dir(dir).unwrap();
        let f = io.open(&dir.join("seg"), OpenMode::CreateNew).unwrap();
        io.fail(FaultOp::SyncData, "seg", 1, Some(1), libc::EIO);
        assert!(f.sync_data().is_ok());
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(libc::EIO));
        assert!(f.sync_data().is_ok());
    }

    #[test]
    fn mem_lock_is_exclusive_until_dropped() {
        let io = MemIo::new();
        let dir = Path::new("/wal");
        io.create_dir(dir).unwrap();
        let held = io.lock(&dir.join("LOCK")).unwrap();
        assert_eq!(
            io.lock(&dir.join("LOCK")).err().map(|e| e.kind()),
            Some(io::ErrorKind::WouldBlock)
        );
        drop(held);
        assert!(io.lock(&dir.join("LOCK")).is_ok());
    }

    #[test]
    fn file_lock_is_exclusive_across_descriptors() {
        let tmp = tempfile::tempdir().unwrap();
        let io = FileIo::default();
        let path = tmp.path().join("LOCK");
        let held = io.lock(&path).unwrap();
        assert_eq!(
            io.lock(&path).err().map(|e| e.kind()),
            Some(io::ErrorKind::WouldBlock)
        );
        drop(held);
        assert!(io.lock(&path).is_ok());
    }

    #[test]
    fn the_direct_queue_before_syncs_folds_only_syncs_of_clean_files_and_keeps_the_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        if let Err(why) = crate::direct::probe(tmp.path()) {
            eprintln!("skipping: {why}");
            return;
        }
        let io = FileIo::default().with_direct_sync(tmp.path()).unwrap();
        assert!(io.backend_in_use().direct_sync);
        let len = 4usize << 20;
        for seed in 1..=4u64 {
            let FileQueue::Direct(mut q) = io.queue().unwrap() else {
                panic!("direct writes on the sync backend are the direct queue");
            };
            let path = tmp.path().join(format!("seg{seed}"));
            let file = Arc::new(io.open(&path, OpenMode::CreateNew).unwrap());
            crate::segment::write_zeros(&*file, 0, len as u64).unwrap();
            file.sync_data().unwrap();
            let mut rng = XorShift(seed * 0x2545_F491_4F6C_DD1D);
            let (mut model, mut offset, mut token) = (vec![0u8; len], 0usize, 0u64);
            let (mut folded, mut out) = (0, Vec::new());
            while offset < len - (80 << 10) {
                let most = if rng.below(2) == 0 { 300 } else { 70_000 };
                let n = 1 + rng.below(most) as usize;
                let data: Vec<u8> = (0..n).map(|i| (offset + i * 7) as u8 | 1).collect();
                model[offset..offset + n].copy_from_slice(&data);
                let before = q.fdatasyncs;
                match rng.below(3) {
                    0 => q.write(&file, data, offset as u64),
                    1 => {
                        // Clean: the write goes direct, its sync is folded.
                        let clean = !q.files.find(&file).is_some_and(|d| d.is_buffered());
                        q.write_now(&file, data, offset as u64);
                        token += 1;
                        q.sync(&file, token);
                        assert_eq!(q.fdatasyncs == before, clean, "seed {seed}");
                        folded += u64::from(clean);
                    }
                    _ => {
                        q.write_waited(&file, data, offset as u64);
                        token += 1;
                        q.sync_now(&file, token);
                        folded += u64::from(q.fdatasyncs == before);
                    }
                }
                offset += n;
                q.reap(false, &mut out);
            }
            assert!(
                folded > 0 && folded < token,
                "seed {seed}: {folded} of {token} folded"
            );
            assert!(out.iter().all(|c| match c {
                Completion::Write {
                    result,
                    buf,
                    written,
                } => result.is_ok() && *written == buf.len(),
                Completion::Sync { result, .. } => result.is_ok(),
            }));
            assert!(
                std::fs::read(&path).unwrap() == model,
                "seed {seed}: the file differs from the model"
            );
        }
    }

    #[test]
    fn the_direct_queue_writes_in_place_and_its_syncs_need_no_fdatasync() {
        let tmp = tempfile::tempdir().unwrap();
        if let Err(why) = crate::direct::probe(tmp.path()) {
            eprintln!("skipping: {why}");
            return;
        }
        let io = FileIo::default().with_direct_io(tmp.path()).unwrap();
        let FileQueue::Direct(mut q) = io.queue().unwrap() else {
            panic!("direct I/O on the sync backend is the direct queue");
        };
        let event = Arc::new(EventFd::new().unwrap());
        q.attach_event(event.clone()).unwrap();
        let path = tmp.path().join("seg");
        let file = Arc::new(io.open(&path, OpenMode::CreateNew).unwrap());
        file.set_len(32 << 10).unwrap();
        let mut model = vec![0u8; 32 << 10];
        let mut offset = 0;
        for (i, len) in [10usize, 5000, 4096, 3].into_iter().enumerate() {
            let data = vec![i as u8 + 1; len];
            model[offset..offset + len].copy_from_slice(&data);
            q.write(&file, data, offset as u64);
            offset += len;
        }
        q.sync(&file, 7);
        let mut out = Vec::new();
        q.reap(false, &mut out);
        assert_eq!(out.len(), 5);
        for c in &out[..4] {
            assert!(
                matches!(c, Completion::Write { result: Ok(()), buf, written } if *written == buf.len()),
                "{c:?}"
            );
        }
        assert!(matches!(
            out[4],
            Completion::Sync {
                token: 7,
                result: Ok(())
            }
        ));
        let mut count = [0u8; 8];
        // SAFETY: reads 8 bytes into a live local array.
        let n = unsafe { libc::read(event.raw(), count.as_mut_ptr().cast(), 8) };
        assert_eq!(n, 8, "the sync signalled the event fd");
        assert_eq!(std::fs::read(&path).unwrap(), model);
    }

    #[test]
    fn file_open_refuses_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        std::fs::write(&target, b"x").unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = FileIo::default()
            .open(&link, OpenMode::Create)
            .err()
            .unwrap();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn file_modes_default_to_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let io = FileIo::default();
        let dir = tmp.path().join("wal");
        io.create_dir(&dir).unwrap();
        drop(io.open(&dir.join("f"), OpenMode::CreateNew).unwrap());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("f")), 0o600);
    }
}
