//! Direct I/O for the append path (the `direct_io` option): segment writes
//! that bypass the page cache (`O_DIRECT`) and are durable once they
//! complete (`O_DSYNC`), so a sync needs no `fdatasync` of its own. On
//! io_uring that matters most: the kernel runs every fdatasync request on
//! an io-wq worker thread, while a direct write is issued from the
//! submitting thread and ended by the block layer.
//!
//! Direct writes must start and end on block boundaries and come from
//! block-aligned memory; a lane appends frames of any length. So each write
//! is *staged*: copied into an aligned buffer behind the bytes already in
//! its first, partial block (kept from the previous write to the file, or
//! read back from it), and padded with zeros to a whole block. The next
//! write rewrites that partial block, so two writes to one file must never
//! be in flight together (they could land in either order): the queues run
//! them one at a time per file.
//!
//! Why every direct write is `O_DSYNC` rather than only the last one before
//! a sync: on a device with FUA, a synchronous direct write is made durable
//! by itself (FUA) and the device's volatile cache is not flushed, so
//! earlier plain writes could still be lost. With every write durable on
//! completion, "a sync covers every write queued before it" holds once
//! those writes have completed, on any device.
//!
//! Two modes ([`DirectWrites`]):
//!
//! - **Every write** (the `direct_io` option): the whole segment bypasses
//!   the page cache.
//! - **Before syncs** (the `direct_sync` option, on by default): writes of
//!   full buffers go through the page cache, and only the write a sync
//!   follows goes direct, when nothing of the file was written through the
//!   page cache since its last fdatasync was queued. Then that sync needs
//!   no fdatasync; otherwise the write is buffered too and the sync is an
//!   fdatasync, which covers both kinds. Small, frequent syncs (one
//!   transaction, a batch of 64) so skip the fdatasync, and on io_uring its
//!   io-wq worker, while bulk appends keep the page cache's speed.
//!
//!   A write a sync follows goes direct only when that sync is alone: the
//!   writer saw its last two syncs finish before anything more was
//!   appended ([`crate::io::SubmitQueue::write_alone`]), and nothing of the
//!   queue is in flight. Pipelined syncs stay buffered writes and
//!   fdatasyncs, which overlap; a direct write would hold back every write
//!   queued after it to its file.
//!
//!   Mixing the two on one file needs these rules, all kept here and in
//!   the queues:
//!   - A buffered write never runs while a direct write queued before it
//!     to the same file is in flight (the direct write's zero padding and
//!     its invalidation of cached pages would race with the buffered bytes
//!     in that block).
//!   - Before a direct write goes to the ring, the clean cached pages
//!     around it are dropped (the zero-fill and earlier buffered writes
//!     left them there), or the kernel would hand it to a worker. The page
//!     cache holds a file in folios aligned to their size, so whole aligned
//!     windows of [`UNCACHE_WINDOW`] go.
//!   - A buffered write that lands where pages were dropped is staged like
//!     a direct one, into whole blocks, and written through the page
//!     cache: a partial page that is not cached would be read from the
//!     device first. Its zero padding is safe for the same reason as a
//!     direct write's: past the lane's end a segment holds only zeros.
//!   - Any other buffered write forgets the carried partial block (the next
//!     direct write reads it back, through the page cache, where the
//!     buffered bytes are).
//!
//!   Segments keep their cached pages otherwise, for bulk appends.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::{Arc, Weak};

use crate::io::Completion;

/// Alignment of direct writes, in memory and in the file. 4096 suits every
/// common device (logical blocks of 512 or 4096 bytes) and file system.
pub const BLOCK: usize = 4096;

/// A zeroed heap buffer aligned to [`BLOCK`], a whole number of blocks long.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer is plain bytes owned by this value alone.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only reads the bytes.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// `blocks` zeroed blocks (at least one).
    pub fn zeroed(blocks: usize) -> AlignedBuf {
        let len = blocks.max(1) * BLOCK;
        let layout = Self::layout(len);
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            std::alloc::handle_alloc_error(layout)
        };
        AlignedBuf { ptr, len }
    }

    fn layout(len: usize) -> Layout {
        Layout::from_size_align(len, BLOCK).expect("a block-aligned layout")
    }

    /// Its length in bytes: a whole number of blocks.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: a buffer holds at least one block.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points at `len` initialised (zeroed) bytes owned by
        // `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, to fill.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this very layout.
        unsafe { dealloc(self.ptr.as_ptr(), Self::layout(self.len)) };
    }
}

/// One write as it goes to the file: whole blocks from `offset`, the
/// caller's bytes starting `head` bytes in. Written through the direct
/// descriptor, or through the file's own for whole blocks that go through
/// the page cache ([`Route::WholeBlocks`]).
pub struct Staged {
    /// At least `len` bytes; a reused buffer may be longer.
    pub buf: AlignedBuf,
    /// Bytes to write: a whole number of blocks.
    pub len: usize,
    pub offset: u64,
    pub head: usize,
    /// How many of the caller's bytes it carries.
    pub data_len: usize,
    /// The descriptor it is written through: the direct one (its
    /// [`DirectFile`] lives as long as the file's `Arc`) or the file's own
    /// (the caller holds the file until the write is done).
    pub fd: RawFd,
}

impl Staged {
    /// The blocks to write.
    pub fn bytes(&self) -> &[u8] {
        &self.buf.as_slice()[..self.len]
    }

    /// How many of the caller's bytes reached the file when `done` bytes of
    /// the staged buffer did.
    pub fn data_written(&self, done: usize) -> usize {
        done.saturating_sub(self.head).min(self.data_len)
    }

    /// Writes all of it on this thread; returns how much reached the file,
    /// and the error that stopped it.
    pub fn write(&self) -> (usize, io::Result<()>) {
        let bytes = self.bytes();
        let mut done = 0;
        while done < bytes.len() {
            // SAFETY: writes from a live buffer of `bytes.len() - done`
            // bytes to a descriptor its `DirectFile` keeps open.
            let n = unsafe {
                libc::pwrite(
                    self.fd,
                    bytes[done..].as_ptr().cast(),
                    bytes.len() - done,
                    (self.offset + done as u64) as libc::off_t,
                )
            };
            match n {
                n if n > 0 => done += n as usize,
                0 => return (done, Err(io::ErrorKind::WriteZero.into())),
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return (done, Err(e));
                    }
                }
            }
        }
        (done, Ok(()))
    }
}

/// The bytes of a file's last, partial block, as the last staged write left
/// them: the next write, if it starts where that one ended (`end`), begins
/// with them.
#[derive(Default)]
struct Tail {
    end: Option<u64>,
    bytes: Vec<u8>,
}

/// Which segment writes go direct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectWrites {
    /// Every write (the `direct_io` option).
    Every,
    /// Only the write before a sync that is alone, while nothing of the
    /// file waits for an fdatasync (the `direct_sync` option); see the
    /// module docs.
    BeforeSyncs,
}

/// A file opened for direct writes, and its staging state.
pub struct DirectFile {
    fd: OwnedFd,
    tail: Tail,
    /// The buffer of the last finished write, for the next one: writes to
    /// a file go one at a time, so one spare saves an aligned allocation
    /// and its zeroing per write.
    spare: Option<AlignedBuf>,
    /// Bytes went through the page cache since the last fdatasync of the
    /// file was queued: the next sync must be an fdatasync.
    buffered: bool,
    /// Where clean cached pages were last dropped
    /// ([`DirectFile::uncache`]); buffered writes that land there are
    /// staged into whole blocks.
    dropped: Range<u64>,
    /// A buffered write cached pages inside `dropped` again since.
    recached: bool,
}

/// Cached pages are dropped around direct writes in windows of this size
/// and alignment. The page cache holds a file in folios as large as the
/// writes that filled them (here at most the writer's 256 KiB buffer; the
/// zero-fill writes 64 KiB), aligned to their size; a folio reaching past
/// the dropped range would stay and send the direct write to a worker.
pub const UNCACHE_WINDOW: u64 = 256 << 10;

/// How one write goes to its file ([`DirectFiles::route`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Staged and written direct: durable when it completes.
    Direct,
    /// Through the page cache, staged into whole blocks: it lands where
    /// cached pages were dropped.
    WholeBlocks,
    /// Through the page cache as it is.
    Buffered,
}

impl DirectFile {
    /// Opens `file` a second time, `O_DIRECT | O_DSYNC`, through
    /// `/proc/self/fd` (the same inode, whatever its path is now), and,
    /// with `drop_cache`, drops its clean cached pages from `from` on: a
    /// direct write over cached pages cannot be issued without blocking, so
    /// io_uring would hand it to a worker thread.
    pub fn open(file: &File, from: u64, drop_cache: bool) -> io::Result<DirectFile> {
        let path = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .expect("no NUL in a number");
        // SAFETY: `path` is a valid NUL-terminated string; open takes no
        // other pointer.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_WRONLY | libc::O_DIRECT | libc::O_DSYNC | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if drop_cache {
            drop_cached(file, from, None);
        }
        Ok(DirectFile::with_fd(fd))
    }

    fn with_fd(fd: OwnedFd) -> DirectFile {
        DirectFile {
            fd,
            tail: Tail::default(),
            spare: None,
            buffered: false,
            dropped: 0..0,
            recached: false,
        }
    }

    /// Whether bytes went through the page cache since the last fdatasync
    /// of the file was queued.
    #[cfg(test)]
    pub(crate) fn is_buffered(&self) -> bool {
        self.buffered
    }

    /// How a buffered write of `len` bytes at `offset` goes, recorded: the
    /// next sync needs an fdatasync. `behind_direct`: it waits in a queue
    /// for a direct write before it, and goes as it is (staged, it would
    /// also hold back every write after it).
    fn route_buffered(&mut self, offset: u64, len: usize, behind_direct: bool) -> Route {
        self.buffered = true;
        if !behind_direct && offset < self.dropped.end && offset + len as u64 > self.dropped.start {
            self.recached = true;
            Route::WholeBlocks
        } else {
            // What the write leaves in the partial block is not carried.
            self.tail.end = None;
            Route::Buffered
        }
    }

    /// Makes sure no clean cached page lies under `staged`, so io_uring can
    /// issue it without a worker: drops the cached pages of the aligned
    /// windows around it, unless that was done already and nothing was
    /// cached there since. About one call per window of direct writes; the
    /// pages it drops before the write belong to bytes already written, and
    /// buffered writes into the rest are staged ([`Route::WholeBlocks`]).
    pub fn uncache(&mut self, file: &File, staged: &Staged) {
        let end = staged.offset + staged.len as u64;
        if !self.recached && self.dropped.start <= staged.offset && end <= self.dropped.end {
            return;
        }
        let from = staged.offset - staged.offset % UNCACHE_WINDOW;
        let to = end.div_ceil(UNCACHE_WINDOW) * UNCACHE_WINDOW;
        drop_cached(file, from, Some(to - from));
        self.dropped = from..to;
        self.recached = false;
    }

    /// Stages a write of `data` at `offset` of `file`: the aligned buffer
    /// holds the bytes already in the first block before `offset` (from the
    /// previous write if it ended at `offset`, else read from `file`),
    /// `data`, and zeros to the end of the last block.
    pub fn stage(&mut self, file: &File, data: &[u8], offset: u64) -> io::Result<Staged> {
        let head = (offset % BLOCK as u64) as usize;
        let start = offset - head as u64;
        let used = head + data.len();
        let blocks = used.div_ceil(BLOCK).max(1);
        let len = blocks * BLOCK;
        let mut buf = match self.spare.take() {
            Some(spare) if spare.len() >= len => spare,
            _ => AlignedBuf::zeroed(blocks),
        };
        let bytes = &mut buf.as_mut_slice()[..len];
        if head > 0 {
            if self.tail.end.take() == Some(offset) {
                bytes[..head].copy_from_slice(&self.tail.bytes);
            } else {
                read_up_to(file, &mut bytes[..head], start)?;
            }
        }
        bytes[head..used].copy_from_slice(data);
        // A reused buffer holds an older write's bytes there.
        bytes[used..].fill(0);
        let partial = used % BLOCK;
        self.tail.end = None;
        if partial > 0 {
            self.tail.bytes.clear();
            self.tail
                .bytes
                .extend_from_slice(&bytes[used - partial..used]);
            self.tail.end = Some(offset + data.len() as u64);
        }
        Ok(Staged {
            buf,
            len,
            offset: start,
            head,
            data_len: data.len(),
            fd: self.fd.as_raw_fd(),
        })
    }

    /// Whether staging a write at `offset` reads its partial first block
    /// back from the file (it does not follow the last staged write).
    pub fn reads_back(&self, offset: u64) -> bool {
        !offset.is_multiple_of(BLOCK as u64) && self.tail.end != Some(offset)
    }

    /// Ends `staged`, which wrote `done` bytes and then succeeded (`ok`)
    /// or failed, and returns how many of the caller's bytes reached the
    /// file. After a failure the staged partial block is forgotten (what
    /// the failed write left there is unknown, so the next write reads it
    /// back). The buffer is kept for the next write (the larger, if a
    /// spare is already there).
    pub fn finish(&mut self, staged: Staged, ok: bool, done: usize) -> usize {
        let written = if ok {
            staged.data_len
        } else {
            self.tail.end = None;
            staged.data_written(done)
        };
        if self
            .spare
            .as_ref()
            .is_none_or(|s| s.len() < staged.buf.len())
        {
            self.spare = Some(staged.buf);
        }
        written
    }

    /// [`DirectFile::stage`] for a write routed `route` (not
    /// [`Route::Buffered`]): whole blocks through the page cache go through
    /// `file`'s own descriptor.
    pub fn stage_as(
        &mut self,
        route: Route,
        file: &File,
        data: &[u8],
        offset: u64,
    ) -> io::Result<Staged> {
        debug_assert_ne!(route, Route::Buffered);
        let mut staged = self.stage(file, data, offset)?;
        if route == Route::WholeBlocks {
            staged.fd = file.as_raw_fd();
        }
        Ok(staged)
    }

    /// Stages and writes `buf` at `offset` of `file` on this thread, as
    /// `route` says (not [`Route::Buffered`]).
    pub fn write_now(
        &mut self,
        route: Route,
        file: &File,
        buf: Vec<u8>,
        offset: u64,
    ) -> Completion {
        let (result, written) = match self.stage_as(route, file, &buf, offset) {
            Err(e) => (Err(e), 0),
            Ok(staged) => {
                let (done, result) = staged.write();
                let written = self.finish(staged, result.is_ok(), done);
                (result, written)
            }
        };
        Completion::Write {
            buf,
            result,
            written,
        }
    }
}

/// Reads `buf.len()` bytes at `offset`; zeros for anything past the end.
fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf[got..].fill(0);
    Ok(())
}

/// Drops the clean cached pages of `file` from `from` (rounded down to a
/// block), `len` bytes or (`None`) to its end. Dirty pages stay; a failure
/// only costs speed.
pub fn drop_cached(file: &File, from: u64, len: Option<u64>) {
    let start = from - from % BLOCK as u64;
    let len = len.map_or(0, |len| len + (from - start));
    // SAFETY: fadvise takes only integer arguments; the descriptor is owned
    // by `file`.
    unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            start as libc::off_t,
            len as libc::off_t,
            libc::POSIX_FADV_DONTNEED,
        )
    };
}

/// The files a queue writes directly, by the `Arc<File>` the writer hands
/// it. A file that cannot be opened for direct I/O is written through the
/// page cache and synced with fdatasync, as without the option.
pub struct DirectFiles {
    files: Vec<(Weak<File>, Option<DirectFile>)>,
    writes: DirectWrites,
}

impl DirectFiles {
    /// An empty table whose files are written as `writes` says.
    pub fn new(writes: DirectWrites) -> DirectFiles {
        DirectFiles {
            files: Vec::new(),
            writes,
        }
    }

    /// Which writes go direct.
    pub fn writes(&self) -> DirectWrites {
        self.writes
    }

    /// The direct side of `file`, opened on first use (when `offset` is
    /// where writing starts; files nobody holds any more are forgotten
    /// then); `None` if it could not be opened.
    pub fn get(&mut self, file: &Arc<File>, offset: u64) -> Option<&mut DirectFile> {
        let i = match self.position(file) {
            Some(i) => i,
            None => {
                self.files.retain(|(weak, _)| weak.strong_count() > 0);
                let drop_cache = self.writes == DirectWrites::Every;
                let direct = DirectFile::open(file, offset, drop_cache).ok();
                self.files.push((Arc::downgrade(file), direct));
                self.files.len() - 1
            }
        };
        self.files[i].1.as_mut()
    }

    /// How a write of `len` bytes of `file` at `offset` goes; a write
    /// through the page cache is recorded, so the next sync of the file is
    /// an fdatasync. `sync_follows`: a sync is queued right after it;
    /// `alone`: that sync is alone (see the module docs; nothing of the
    /// queue is in flight then); `behind_direct`: a direct write queued
    /// before it to the file is in flight. Before syncs, a write goes
    /// direct only when its sync follows and is alone, and while nothing of
    /// the file is buffered. The file is looked up with
    /// [`DirectFiles::find`] after.
    pub fn route(
        &mut self,
        file: &Arc<File>,
        offset: u64,
        len: usize,
        sync_follows: bool,
        alone: bool,
        behind_direct: bool,
    ) -> Route {
        let writes = self.writes;
        let Some(direct) = self.get(file, offset) else {
            return Route::Buffered;
        };
        match writes {
            DirectWrites::Every => Route::Direct,
            DirectWrites::BeforeSyncs if sync_follows && alone && !direct.buffered => Route::Direct,
            DirectWrites::BeforeSyncs => direct.route_buffered(offset, len, behind_direct),
        }
    }

    /// Whether a sync of `file` queued now needs no fdatasync: the file is
    /// written direct and nothing went through its page cache since its
    /// last fdatasync. If it does need one, the file counts as clean from
    /// here on: that fdatasync covers what was written before it.
    pub fn folds_sync(&mut self, file: &Arc<File>) -> bool {
        match self.find(file) {
            Some(direct) if direct.buffered => {
                direct.buffered = false;
                false
            }
            Some(_) => true,
            None => false,
        }
    }

    /// The direct side of `file` if it is written directly (opened, not
    /// refused); never opens it.
    pub fn find(&mut self, file: &Arc<File>) -> Option<&mut DirectFile> {
        let i = self.position(file)?;
        self.files[i].1.as_mut()
    }

    fn position(&self, file: &Arc<File>) -> Option<usize> {
        let ptr = Arc::as_ptr(file);
        self.files.iter().position(|(w, _)| w.as_ptr() == ptr)
    }
}

/// Checks that direct I/O works where `dir` is (or will be: its closest
/// existing ancestor): an unnamed `O_TMPFILE` opened `O_DIRECT | O_DSYNC`
/// takes one aligned block. The error says what refused it.
pub fn probe(dir: &Path) -> Result<(), String> {
    let existing = dir
        .ancestors()
        .find(|p| p.is_dir())
        .unwrap_or(Path::new("."));
    let path = CString::new(existing.as_os_str().as_bytes())
        .map_err(|_| format!("{} contains a NUL byte", existing.display()))?;
    // SAFETY: `path` is a valid NUL-terminated string; the mode is an
    // integer.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_TMPFILE | libc::O_WRONLY | libc::O_DIRECT | libc::O_DSYNC | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    let what = |e: io::Error| format!("direct I/O is not available in {}: {e}", existing.display());
    if fd < 0 {
        return Err(what(io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let block = AlignedBuf::zeroed(1);
    // SAFETY: writes one block from a live aligned buffer to a descriptor
    // owned here.
    let n = unsafe { libc::pwrite(fd.as_raw_fd(), block.as_slice().as_ptr().cast(), BLOCK, 0) };
    match n {
        n if n == BLOCK as isize => Ok(()),
        n if n < 0 => Err(what(io::Error::last_os_error())),
        _ => Err(what(io::ErrorKind::WriteZero.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_in(dir: &tempfile::TempDir, len: u64) -> Arc<File> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        file.set_len(len).unwrap();
        Arc::new(file)
    }

    fn contents(file: &File, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        file.read_exact_at(&mut out, 0).unwrap();
        out
    }

    #[test]
    fn aligned_buffers_are_aligned_zeroed_and_whole_blocks() {
        for blocks in [0, 1, 3] {
            let buf = AlignedBuf::zeroed(blocks);
            assert_eq!(buf.as_slice().as_ptr() as usize % BLOCK, 0);
            assert_eq!(buf.len(), blocks.max(1) * BLOCK);
            assert!(buf.as_slice().iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn staging_starts_at_a_block_and_carries_the_partial_block_forward() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_in(&dir, 4 * BLOCK as u64);
        let mut direct = DirectFile::with_fd(file.try_clone().unwrap().into());
        let first = direct.stage(&file, &[1; 100], 0).unwrap();
        assert_eq!(
            (first.offset, first.head, first.bytes().len()),
            (0, 0, BLOCK)
        );
        assert_eq!(&first.bytes()[..100], &[1; 100][..]);
        assert!(first.bytes()[100..].iter().all(|&b| b == 0));
        // Not written to the file: the second write must take the first's
        // bytes from the staged tail, not from the file.
        let second = direct.stage(&file, &[2; BLOCK], 100).unwrap();
        assert_eq!((second.offset, second.head), (0, 100));
        assert_eq!(second.bytes().len(), 2 * BLOCK);
        let bytes = second.bytes();
        assert_eq!(&bytes[..100], &[1; 100][..]);
        assert_eq!(&bytes[100..100 + BLOCK], &[2; BLOCK][..]);
        assert!(bytes[100 + BLOCK..].iter().all(|&b| b == 0));
        assert_eq!(second.data_written(50), 0);
        assert_eq!(second.data_written(BLOCK), BLOCK - 100);
        assert_eq!(second.data_written(2 * BLOCK), BLOCK);
    }

    #[test]
    fn a_write_elsewhere_reads_its_partial_block_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_in(&dir, 2 * BLOCK as u64);
        file.write_all_at(&[9; 300], 0).unwrap();
        let mut direct = DirectFile::with_fd(file.try_clone().unwrap().into());
        direct.stage(&file, &[1; 10], 500).unwrap();
        // 200 does not follow the staged write (it ended at 510).
        let staged = direct.stage(&file, &[2; 10], 200).unwrap();
        let bytes = staged.bytes();
        assert_eq!(&bytes[..200], &[9; 200][..]);
        assert_eq!(&bytes[200..210], &[2; 10][..]);
        assert!(bytes[210..].iter().all(|&b| b == 0));
        // The tail of a failed write: read back too.
        assert_eq!(direct.finish(staged, false, 0), 0);
        let again = direct.stage(&file, &[3; 4], 210).unwrap();
        assert_eq!(&again.bytes()[..200], &[9; 200][..]);
    }

    #[test]
    fn a_reused_buffer_carries_none_of_its_older_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_in(&dir, 8 * BLOCK as u64);
        let mut direct = DirectFile::with_fd(file.try_clone().unwrap().into());
        let big = direct.stage(&file, &[0xEE; 5 * BLOCK], 0).unwrap();
        let reused = big.buf.as_slice().as_ptr();
        assert_eq!(direct.finish(big, true, 5 * BLOCK), 5 * BLOCK);
        let small = direct.stage(&file, &[5; 10], 5 * BLOCK as u64).unwrap();
        assert_eq!(small.buf.as_slice().as_ptr(), reused, "the spare is taken");
        assert_eq!(small.bytes().len(), BLOCK, "only the blocks it needs");
        assert_eq!(&small.bytes()[..10], &[5; 10][..]);
        assert!(small.bytes()[10..].iter().all(|&b| b == 0));
        // With no spare left, a buffer of its own; once both are back, the
        // larger one stays for the next write.
        let other = direct.stage(&file, &[6; 10], 0).unwrap();
        assert_ne!(other.buf.as_slice().as_ptr(), reused);
        direct.finish(small, true, BLOCK);
        direct.finish(other, true, BLOCK);
        let next = direct.stage(&file, &[7; 4 * BLOCK], 0).unwrap();
        assert_eq!(next.buf.as_slice().as_ptr(), reused);
        assert_eq!(next.bytes().len(), 4 * BLOCK);
    }

    #[test]
    fn direct_writes_land_where_the_caller_meant_them() {
        let dir = tempfile::tempdir().unwrap();
        if let Err(why) = probe(dir.path()) {
            eprintln!("skipping: {why}");
            return;
        }
        let file = file_in(&dir, 8 * BLOCK as u64);
        let mut files = DirectFiles::new(DirectWrites::Every);
        let mut model = vec![0u8; 8 * BLOCK];
        let mut offset = 0;
        for (i, len) in [13usize, 4083, 1, 9000, 4096, 77].into_iter().enumerate() {
            let data = vec![i as u8 + 1; len];
            let direct = files.get(&file, offset).expect("direct I/O works here");
            let done = direct.write_now(Route::Direct, &file, data.clone(), offset);
            assert!(
                matches!(done, Completion::Write { result: Ok(()), written, .. } if written == len),
                "{done:?}"
            );
            model[offset as usize..offset as usize + len].copy_from_slice(&data);
            offset += len as u64;
        }
        assert!(files.find(&file).is_some());
        assert_eq!(contents(&file, model.len()), model);
    }

    /// A file of `len` zero bytes written through the page cache (as the
    /// zero-fill leaves a segment), in a directory where direct I/O works;
    /// `None`, with a line saying why, where it does not.
    fn cached_zeros(dir: &tempfile::TempDir, len: usize) -> Option<Arc<File>> {
        if let Err(why) = probe(dir.path()) {
            eprintln!("skipping: {why}");
            return None;
        }
        let file = file_in(dir, 0);
        crate::segment::write_zeros(&*file, 0, len as u64).unwrap();
        file.sync_data().unwrap();
        Some(file)
    }

    /// Which pages of the first `len` bytes of `file` are in the page
    /// cache.
    fn resident(file: &File, len: usize) -> Vec<bool> {
        // SAFETY: a read-only shared mapping of a file nobody truncates
        // during the test; its bytes are never read, only their residency.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(file).unwrap() };
        let mut pages = vec![0u8; len.div_ceil(BLOCK)];
        // SAFETY: the range is the live mapping; `pages` has one byte per
        // page of it.
        let rc = unsafe { libc::mincore(map.as_ptr() as *mut _, len, pages.as_mut_ptr()) };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        pages.iter().map(|p| p & 1 == 1).collect()
    }

    #[test]
    fn before_syncs_only_an_alone_sync_of_a_clean_file_goes_direct() {
        let dir = tempfile::tempdir().unwrap();
        let Some(file) = cached_zeros(&dir, 1 << 20) else {
            return;
        };
        let mut files = DirectFiles::new(DirectWrites::BeforeSyncs);
        let route = |files: &mut DirectFiles, follows, alone| {
            files.route(&file, 0, 100, follows, alone, false)
        };
        assert_eq!(route(&mut files, true, true), Route::Direct);
        assert!(files.folds_sync(&file), "nothing buffered: no fdatasync");
        assert_eq!(route(&mut files, true, false), Route::Buffered, "pipelined");
        assert!(!files.folds_sync(&file), "a buffered write needs one");
        assert!(files.folds_sync(&file), "that fdatasync covered it");
        assert_eq!(
            route(&mut files, false, true),
            Route::Buffered,
            "no sync follows"
        );
        assert_eq!(
            route(&mut files, true, true),
            Route::Buffered,
            "the file waits for an fdatasync: the write goes with it"
        );
        assert!(!files.folds_sync(&file));
        assert_eq!(route(&mut files, true, true), Route::Direct);
        assert!(files.folds_sync(&file));

        let mut every = DirectFiles::new(DirectWrites::Every);
        for (follows, alone) in [(false, false), (true, false), (true, true)] {
            assert_eq!(
                every.route(&file, 0, 100, follows, alone, false),
                Route::Direct
            );
        }
        assert!(every.folds_sync(&file));
    }

    #[test]
    fn a_direct_write_drops_the_cached_pages_of_its_windows_once() {
        let dir = tempfile::tempdir().unwrap();
        let len = 4 * UNCACHE_WINDOW as usize;
        let Some(file) = cached_zeros(&dir, len) else {
            return;
        };
        let window = (UNCACHE_WINDOW / BLOCK as u64) as usize;
        let mut files = DirectFiles::new(DirectWrites::BeforeSyncs);
        assert_eq!(files.route(&file, 0, 10, true, true, false), Route::Direct);
        assert!(resident(&file, len).iter().all(|&r| r), "opening kept them");
        // A write across the first window's end: both windows go, whole.
        let at = UNCACHE_WINDOW - 100;
        let direct = files.find(&file).unwrap();
        let staged = direct.stage(&file, &[1; 300], at).unwrap();
        direct.uncache(&file, &staged);
        let pages = resident(&file, len);
        assert!(pages[..2 * window].iter().all(|&r| !r), "{pages:?}");
        assert!(pages[2 * window..].iter().all(|&r| r), "the rest stays");

        // Inside those windows, with nothing cached since: no drop again.
        let mut byte = [0u8; 1];
        file.read_exact_at(&mut byte, 0).unwrap();
        let next = direct.stage(&file, &[1; 10], at + 300).unwrap();
        direct.uncache(&file, &next);
        assert!(resident(&file, BLOCK)[0], "the page read back stays");

        // A buffered write there is staged into whole blocks through the
        // file's own descriptor, and the carried block stays.
        let end = at + 310;
        assert_eq!(
            files.route(&file, end, 50, false, false, false),
            Route::WholeBlocks
        );
        let direct = files.find(&file).unwrap();
        assert!(!direct.reads_back(end), "follows the carried block");
        let whole = direct
            .stage_as(Route::WholeBlocks, &file, &[2; 50], end)
            .unwrap();
        assert_eq!(whole.fd, file.as_raw_fd());
        assert_eq!(whole.offset % BLOCK as u64, 0);
        assert!(!direct.reads_back(end + 50), "whole blocks keep it");
        assert!(whole.write().1.is_ok());
        let page = (whole.offset / BLOCK as u64) as usize;
        assert!(resident(&file, len)[page], "written through the page cache");
        // It cached pages again: the next direct write, which comes only
        // once an fdatasync made them clean, drops them.
        file.sync_data().unwrap();
        let again = direct.stage(&file, &[3; 10], end + 50).unwrap();
        direct.uncache(&file, &again);
        assert!(!resident(&file, len)[page]);

        // Waiting behind a direct write, a buffered write goes as it is and
        // the carried block is forgotten; outside the dropped range too.
        let later = end + 60;
        assert_eq!(
            files.route(&file, later, 10, false, false, true),
            Route::Buffered
        );
        assert!(files.find(&file).unwrap().reads_back(later + 10));
        let far = 3 * UNCACHE_WINDOW + 5;
        assert_eq!(
            files.route(&file, far, 10, false, false, false),
            Route::Buffered
        );
    }

    #[test]
    fn the_probe_names_what_refused_direct_io() {
        let err = probe(Path::new("/proc/self")).unwrap_err();
        assert!(
            err.contains("direct I/O is not available in /proc/self"),
            "{err}"
        );
    }
}
