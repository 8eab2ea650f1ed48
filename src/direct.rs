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

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ffi::CString;
use std::fs::File;
use std::io;
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
/// caller's bytes starting `head` bytes in.
pub struct Staged {
    /// At least `len` bytes; a reused buffer may be longer.
    pub buf: AlignedBuf,
    /// Bytes to write: a whole number of blocks.
    pub len: usize,
    pub offset: u64,
    pub head: usize,
    /// How many of the caller's bytes it carries.
    pub data_len: usize,
    /// The direct descriptor it is written through (its [`DirectFile`]
    /// lives as long as the file's `Arc`).
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

/// A file opened for direct writes, and its staging state.
pub struct DirectFile {
    fd: OwnedFd,
    tail: Tail,
    /// The buffer of the last finished write, for the next one: writes to
    /// a file go one at a time, so one spare saves an aligned allocation
    /// and its zeroing per write.
    spare: Option<AlignedBuf>,
}

impl DirectFile {
    /// Opens `file` a second time, `O_DIRECT | O_DSYNC`, through
    /// `/proc/self/fd` (the same inode, whatever its path is now), and drops
    /// its clean cached pages from `from` on: a direct write over cached
    /// pages cannot be issued without blocking, so io_uring would hand it
    /// to a worker thread.
    pub fn open(file: &File, from: u64) -> io::Result<DirectFile> {
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
        drop_cached(file, from);
        Ok(DirectFile::with_fd(fd))
    }

    fn with_fd(fd: OwnedFd) -> DirectFile {
        DirectFile {
            fd,
            tail: Tail::default(),
            spare: None,
        }
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

    /// Stages and writes `buf` at `offset` of `file` on this thread.
    pub fn write_now(&mut self, file: &File, buf: Vec<u8>, offset: u64) -> Completion {
        let (result, written) = match self.stage(file, &buf, offset) {
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
/// block) to its end. Dirty pages stay; a failure only costs speed.
pub fn drop_cached(file: &File, from: u64) {
    let from = from - from % BLOCK as u64;
    // SAFETY: fadvise takes only integer arguments; the descriptor is owned
    // by `file`.
    unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            from as libc::off_t,
            0,
            libc::POSIX_FADV_DONTNEED,
        )
    };
}

/// The files a queue writes directly, by the `Arc<File>` the writer hands
/// it. A file that cannot be opened for direct I/O is written through the
/// page cache and synced with fdatasync, as without the option.
#[derive(Default)]
pub struct DirectFiles {
    files: Vec<(Weak<File>, Option<DirectFile>)>,
}

impl DirectFiles {
    /// The direct side of `file`, opened on first use (when `offset` is
    /// where writing starts; files nobody holds any more are forgotten
    /// then); `None` if it could not be opened.
    pub fn get(&mut self, file: &Arc<File>, offset: u64) -> Option<&mut DirectFile> {
        let i = match self.position(file) {
            Some(i) => i,
            None => {
                self.files.retain(|(weak, _)| weak.strong_count() > 0);
                let direct = DirectFile::open(file, offset).ok();
                self.files.push((Arc::downgrade(file), direct));
                self.files.len() - 1
            }
        };
        self.files[i].1.as_mut()
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
        let mut files = DirectFiles::default();
        let mut model = vec![0u8; 8 * BLOCK];
        let mut offset = 0;
        for (i, len) in [13usize, 4083, 1, 9000, 4096, 77].into_iter().enumerate() {
            let data = vec![i as u8 + 1; len];
            let direct = files.get(&file, offset).expect("direct I/O works here");
            let done = direct.write_now(&file, data.clone(), offset);
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

    #[test]
    fn the_probe_names_what_refused_direct_io() {
        let err = probe(Path::new("/proc/self")).unwrap_err();
        assert!(
            err.contains("direct I/O is not available in /proc/self"),
            "{err}"
        );
    }
}
