//! An io_uring [`SubmitQueue`] for real files.
//!
//! One ring per queue, so one per writer; a queue is used by one thread at a
//! time and never shared. Writes go to the kernel at explicit offsets; the
//! queue owns each buffer until the write's completion and then hands it
//! back. Syncs are `fdatasync`s ordered after every write queued before them.
//!
//! How the guarantees of [`SubmitQueue`] are kept:
//!
//! - **Ordering of a sync** (the SPEC's "fdatasync linked after the writes
//!   it must cover"). A sync waits in the queue's own backlog until every
//!   write queued before it on the same file has completed, whole, and only
//!   then goes to the kernel. Not `IOSQE_IO_DRAIN`: a drained fsync also
//!   holds back every request submitted after it, so appends could not
//!   flow while a sync runs, and pipelined syncs ran one after another. Not
//!   `IOSQE_IO_LINK`: a chain only spans one submission batch (writes go to
//!   the kernel as they are queued), and a failed or short write cancels
//!   the rest of its chain. Buffered writes usually complete within the
//!   `io_uring_enter` that submits them, so the wait is short. A write that
//!   comes back short is resubmitted for the rest and stays in the queue
//!   until all of it is written, so the syncs after it wait for that too.
//!   Syncs may run side by side and finish in any order; the writer hands
//!   them out in token order.
//! - **Work the caller waits for anyway runs on its own thread.** The
//!   kernel runs an io_uring fsync on an io-wq worker thread (it cannot be
//!   done without blocking), and here often a buffered write too, so a ring
//!   request the caller waits for costs thread wake-ups for nothing. A sync
//!   the caller waits for at once ([`SubmitQueue::sync_now`]) is an
//!   `fdatasync(2)` on the calling thread, once the writes before it have
//!   completed; the write just before a sync ([`SubmitQueue::write_now`]) is
//!   a `pwrite(2)`. Writes of full buffers stay on the ring, where they
//!   overlap with the appends that follow.
//! - **Direct I/O** ([`UringOptions::direct`], see [`crate::direct`]).
//!   Direct writes are staged into aligned blocks and go to the ring
//!   through an `O_DIRECT | O_DSYNC` descriptor, one at a time per file
//!   (each rewrites the previous one's partial block), the write before a
//!   sync too: the kernel issues them from the submitting thread, without a
//!   worker. A sync of a file with nothing buffered since its last fsync is
//!   *folded*: no request, done once the writes queued before it have
//!   completed, as each was durable on completion. With
//!   [`DirectWrites::BeforeSyncs`] only the write before a sync that is
//!   alone ([`SubmitQueue::write_alone`]) goes direct, when nothing else is
//!   in flight (pipelined syncs stay buffered writes and fsyncs, which
//!   overlap); a buffered write waits for the direct writes queued before
//!   it to the same file, and one into the windows whose cached pages a
//!   direct write dropped is staged into whole blocks and done on the
//!   calling thread.
//! - **No lost completions.** At most as many requests as the completion
//!   queue has entries are in the kernel at once (more are held in a
//!   user-space backlog), so the CQ cannot overflow even on kernels without
//!   `IORING_FEAT_NODROP`; `EBUSY`/`EAGAIN` from a submit are met by reaping
//!   first and trying again.
//! - **Buffers and files outlive their requests.** Each request's buffer
//!   (a `Vec`, whose heap block does not move when the `Vec` does) and a
//!   clone of its file's `Arc` stay in a slab slot named by the request's
//!   `user_data` until its last completion has been reaped. Dropping the
//!   queue waits for every request (see [`UringQueue`]'s `Drop`).
//! - **Every error is reported**, as a failed [`Completion`] carrying the
//!   errno (`ECANCELED` included), never dropped.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Weak};

use io_uring::{IoUring, Probe, opcode, squeue, types};

use crate::direct::{DirectFile, DirectFiles, DirectWrites, Route, Staged};
use crate::io::{Completion, EventFd, SubmitQueue, write_whole};

/// The environment variable that, set to anything but `""` or `"0"`, makes
/// [`probe`] and [`UringQueue::new`] fail as if the kernel had no io_uring.
pub const DISABLE_ENV: &str = "COREWAL_DISABLE_IO_URING";

const DISABLED_MESSAGE: &str = "io_uring disabled by COREWAL_DISABLE_IO_URING";

/// Size of each queue's table of registered files. A writer writes to one
/// segment at a time, so a few slots are plenty; files beyond them are used
/// through plain descriptors.
const FIXED_FILES: u32 = 16;

/// The most bytes one write request asks for (the SQE's length is 32-bit);
/// a longer buffer is written in pieces, like a short write.
const MAX_CHUNK: u32 = 1 << 30;

/// Settings of a [`UringQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UringOptions {
    /// Submission queue entries (rounded up to a power of two by the
    /// kernel, clamped to its maximum). The completion queue has twice as
    /// many, and bounds how many requests are in the kernel at once.
    pub entries: u32,
    /// Let a kernel thread poll the submission queue, so submitting needs
    /// no system call while that thread is awake.
    pub sqpoll: bool,
    /// How long the SQPOLL thread spins without work before it sleeps.
    pub sqpoll_idle_ms: u32,
    /// Which segment writes go direct (see [`crate::direct`]); syncs of
    /// directly written files need no fsync request. `None`: none.
    pub direct: Option<DirectWrites>,
}

impl Default for UringOptions {
    fn default() -> Self {
        UringOptions {
            entries: 256,
            sqpoll: false,
            sqpoll_idle_ms: 1000,
            direct: None,
        }
    }
}

/// Checks that io_uring can be used here: a small ring can be set up and it
/// supports the write and fsync operations. The error says why not, e.g.
/// `io_uring_setup: Operation not permitted (os error 1) (seccomp or
/// kernel.io_uring_disabled)`. Honours [`DISABLE_ENV`].
pub fn probe() -> Result<(), String> {
    probe_with(disabled_by_env())
}

pub(crate) fn probe_with(disabled: bool) -> Result<(), String> {
    if disabled {
        return Err(DISABLED_MESSAGE.to_owned());
    }
    let ring = IoUring::new(4).map_err(|e| setup_error(&e))?;
    check_opcodes(&ring).map_err(|e| e.to_string())
}

fn disabled_by_env() -> bool {
    disabled_by(std::env::var_os(DISABLE_ENV).as_deref())
}

fn disabled_by(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "0")
}

fn setup_error(e: &io::Error) -> String {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) => " (seccomp or kernel.io_uring_disabled)",
        Some(libc::ENOSYS) => " (kernel without io_uring, or a seccomp filter)",
        Some(libc::ENOMEM) => " (locked-memory limit too low)",
        _ => "",
    };
    format!("io_uring_setup: {e}{hint}")
}

fn check_opcodes(ring: &IoUring) -> io::Result<()> {
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe).map_err(|e| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!("io_uring opcode probe failed: {e}"),
        )
    })?;
    for (code, name) in [
        (opcode::Write::CODE, "IORING_OP_WRITE"),
        (opcode::Fsync::CODE, "IORING_OP_FSYNC"),
    ] {
        if !probe.is_supported(code) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring here does not support {name}"),
            ));
        }
    }
    Ok(())
}

/// Which kind of completion [`UringQueue::inject_failure`] fails.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectOp {
    Write,
    Sync,
}

/// How a request names its file.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// A slot of the ring's registered-file table.
    Fixed(u32),
    Fd(RawFd),
}

enum OpKind {
    Write {
        buf: Vec<u8>,
        offset: u64,
        /// Bytes already written by earlier (short) completions: of
        /// `staged` when there is one.
        done: usize,
        /// A direct write: what goes to the file.
        staged: Option<Staged>,
    },
    Sync {
        token: u64,
        /// Of a directly written file: done, with no request, once the
        /// writes before it are.
        folded: bool,
    },
}

/// A queued request, in the slab until its final completion is reaped.
struct Op {
    /// Keeps the file open while the kernel may use its descriptor.
    file: Arc<File>,
    target: Target,
    /// Queue order, for "queued before".
    seq: u64,
    /// Handed to the kernel (pushed to the SQ) and its CQE not yet reaped.
    in_ring: bool,
    kind: OpKind,
}

/// One entry of the registered-file table.
#[derive(Default)]
struct FileSlot {
    /// The file registered here. A `Weak` keeps the `Arc`'s allocation, so
    /// no other file can show up at the same address while it is here; it
    /// does not keep the file open.
    file: Option<Weak<File>>,
    /// Queued requests that use this slot.
    ops: usize,
}

/// An io_uring submission queue for one writer. See the module docs.
///
/// Writes queued together are in flight together and may land in any order,
/// like concurrent `pwrite`s; a sync covers every write queued before it.
///
/// Dropping the queue hands every queued request to the kernel and waits for
/// all of them (regular-file writes and fsyncs finish in bounded time, and
/// cancelling a write would leave a hole where the caller's bytes belong);
/// their completions are discarded.
pub struct UringQueue {
    ring: IoUring,
    /// Requests by `user_data`.
    ops: Vec<Option<Op>>,
    free: Vec<usize>,
    /// Requests in `ops`.
    live: usize,
    /// Direct writes in `ops`: buffered writes look for one before them
    /// only when there is one.
    live_direct: usize,
    /// Requests (new, or resubmissions) waiting to be pushed to the SQ, in
    /// order.
    backlog: VecDeque<usize>,
    /// Finished, waiting for `reap`.
    ready: VecDeque<Completion>,
    /// Requests pushed to the SQ whose CQE has not been reaped.
    in_ring: usize,
    /// Most requests in the ring at once: the CQ's size.
    cq_cap: usize,
    next_seq: u64,
    /// Registered-file table; empty when registration is unavailable.
    files: Vec<FileSlot>,
    event: OwnedFd,
    /// The owner's event fd, once attached: the ring signals it instead, and
    /// only the owner drains it.
    attached: Option<Arc<EventFd>>,
    sqpoll: bool,
    injected: VecDeque<(InjectOp, i32)>,
    /// Set when the ring itself failed (not one request): every request is
    /// failed with this errno from then on.
    broken: Option<i32>,
    cqes: Vec<(u64, i32)>,
    max_chunk: u32,
    /// Writes resubmitted for their rest after a short completion.
    resubmitted_writes: u64,
    /// With direct I/O: the files written directly.
    direct: Option<DirectFiles>,
    /// fsync requests handed to the kernel, and fdatasyncs done on the
    /// calling thread.
    fsyncs_issued: u64,
}

impl UringQueue {
    /// Sets up a ring, its registered-file table and its event fd. Fails if
    /// io_uring is unavailable (or disabled by [`DISABLE_ENV`]) or lacks the
    /// operations needed.
    pub fn new(options: UringOptions) -> io::Result<UringQueue> {
        Self::new_with(options, disabled_by_env())
    }

    fn new_with(options: UringOptions, disabled: bool) -> io::Result<UringQueue> {
        if disabled {
            return Err(io::Error::new(io::ErrorKind::Unsupported, DISABLED_MESSAGE));
        }
        if options.entries == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "io_uring needs at least one submission queue entry",
            ));
        }
        let mut builder = IoUring::builder();
        builder.setup_clamp();
        if options.sqpoll {
            builder.setup_sqpoll(options.sqpoll_idle_ms);
        }
        let ring = builder.build(options.entries)?;
        check_opcodes(&ring)?;
        let cq_cap = ring.params().cq_entries() as usize;

        // SAFETY: eventfd takes only integer arguments.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and is owned by nothing
        // else.
        let event = unsafe { OwnedFd::from_raw_fd(fd) };
        ring.submitter().register_eventfd(event.as_raw_fd())?;

        // Registered files make each request skip the descriptor lookup;
        // without them (old kernel, RLIMIT_NOFILE) plain descriptors work.
        let files = match ring.submitter().register_files_sparse(FIXED_FILES) {
            Ok(()) => (0..FIXED_FILES).map(|_| FileSlot::default()).collect(),
            Err(_) => Vec::new(),
        };

        Ok(UringQueue {
            ring,
            ops: Vec::new(),
            free: Vec::new(),
            live: 0,
            live_direct: 0,
            backlog: VecDeque::new(),
            ready: VecDeque::new(),
            in_ring: 0,
            cq_cap,
            next_seq: 0,
            files,
            event,
            attached: None,
            sqpoll: options.sqpoll,
            injected: VecDeque::new(),
            broken: None,
            cqes: Vec::new(),
            max_chunk: MAX_CHUNK,
            resubmitted_writes: 0,
            direct: options.direct.map(DirectFiles::new),
            fsyncs_issued: 0,
        })
    }

    /// A descriptor that turns readable when completions are posted, for an
    /// event loop (epoll, a netpoller) to wait on. [`SubmitQueue::reap`]
    /// drains it, so after a wake-up, reap: the descriptor stays quiet until
    /// the next completion. A wake-up with nothing to reap can happen and is
    /// harmless. Owned by the queue: do not close it.
    pub fn event_fd(&self) -> RawFd {
        self.event.as_raw_fd()
    }

    /// Makes the next completion of kind `op` report `errno` instead of its
    /// real result. For tests of failure handling.
    #[doc(hidden)]
    pub fn inject_failure(&mut self, op: InjectOp, errno: i32) {
        self.injected.push_back((op, errno));
    }

    fn queue(&mut self, file: &Arc<File>, kind: OpKind) {
        let target = self.target_for(file);
        if matches!(
            kind,
            OpKind::Write {
                staged: Some(_),
                ..
            }
        ) {
            self.live_direct += 1;
        }
        let op = Op {
            file: Arc::clone(file),
            target,
            seq: self.next_seq,
            in_ring: false,
            kind,
        };
        self.next_seq += 1;
        let id = match self.free.pop() {
            Some(id) => {
                self.ops[id] = Some(op);
                id
            }
            None => {
                self.ops.push(Some(op));
                self.ops.len() - 1
            }
        };
        self.live += 1;
        self.backlog.push_back(id);
        if self.advance() > 0 {
            // A sync finished outside reap: wake whoever waits for it.
            self.notify();
        }
    }

    /// Finishes a request without the kernel (empty write, broken ring).
    fn finish_now(&mut self, completion: Completion) {
        self.ready.push_back(completion);
        self.notify();
    }

    /// The slot of `file` in the registered-file table, registering it if
    /// needed; its descriptor if there is no free slot or registration fails.
    fn target_for(&mut self, file: &Arc<File>) -> Target {
        let fd = file.as_raw_fd();
        let ptr = Arc::as_ptr(file);
        let found = self
            .files
            .iter()
            .position(|s| s.file.as_ref().is_some_and(|w| w.as_ptr() == ptr));
        if let Some(i) = found {
            self.files[i].ops += 1;
            return Target::Fixed(i as u32);
        }
        // An empty slot, else one whose file is gone, else one whose file
        // has nothing in flight.
        let free = self
            .files
            .iter()
            .position(|s| s.file.is_none())
            .or_else(|| {
                self.files.iter().position(|s| {
                    s.ops == 0 && s.file.as_ref().is_some_and(|w| w.strong_count() == 0)
                })
            })
            .or_else(|| self.files.iter().position(|s| s.ops == 0));
        let Some(i) = free else {
            return Target::Fd(fd);
        };
        match self.ring.submitter().register_files_update(i as u32, &[fd]) {
            Ok(1) => {
                self.files[i] = FileSlot {
                    file: Some(Arc::downgrade(file)),
                    ops: 1,
                };
                Target::Fixed(i as u32)
            }
            _ => {
                self.files[i] = FileSlot::default();
                Target::Fd(fd)
            }
        }
    }

    /// Unregisters slots whose file nobody holds any more, so the kernel's
    /// reference does not keep it open.
    fn release_dead_files(&mut self) {
        for i in 0..self.files.len() {
            let slot = &self.files[i];
            let dead = slot.ops == 0 && slot.file.as_ref().is_some_and(|w| w.strong_count() == 0);
            if dead
                && self
                    .ring
                    .submitter()
                    .register_files_update(i as u32, &[-1])
                    .is_ok()
            {
                self.files[i] = FileSlot::default();
            }
        }
    }

    /// The SQE for request `id`, as it stands (a write asks for what is
    /// left of its buffer).
    fn entry_for(&self, id: usize) -> squeue::Entry {
        let op = self.ops[id].as_ref().expect("queued request in the slab");
        let entry = match &op.kind {
            OpKind::Write {
                staged: Some(staged),
                done,
                ..
            } => {
                let rest = &staged.bytes()[*done..];
                let len = rest.len().min(self.max_chunk as usize) as u32;
                opcode::Write::new(types::Fd(staged.fd), rest.as_ptr(), len)
                    .offset(staged.offset + *done as u64)
                    .build()
            }
            OpKind::Write {
                buf, offset, done, ..
            } => {
                let rest = &buf[*done..];
                let len = rest.len().min(self.max_chunk as usize) as u32;
                let at = offset + *done as u64;
                match op.target {
                    Target::Fixed(i) => opcode::Write::new(types::Fixed(i), rest.as_ptr(), len)
                        .offset(at)
                        .build(),
                    Target::Fd(fd) => opcode::Write::new(types::Fd(fd), rest.as_ptr(), len)
                        .offset(at)
                        .build(),
                }
            }
            OpKind::Sync { .. } => match op.target {
                Target::Fixed(i) => opcode::Fsync::new(types::Fixed(i))
                    .flags(types::FsyncFlags::DATASYNC)
                    .build(),
                Target::Fd(fd) => opcode::Fsync::new(types::Fd(fd))
                    .flags(types::FsyncFlags::DATASYNC)
                    .build(),
            },
        };
        entry.user_data(id as u64)
    }

    /// Whether a write queued before `seq` to `file` has not completed yet.
    fn write_pending_before(&self, file: *const File, seq: u64) -> bool {
        self.ops.iter().flatten().any(|op| {
            op.seq < seq && matches!(op.kind, OpKind::Write { .. }) && Arc::as_ptr(&op.file) == file
        })
    }

    /// Whether a direct write queued before `seq` to `file` has not
    /// completed yet.
    fn direct_pending_before(&self, file: *const File, seq: u64) -> bool {
        self.live_direct > 0
            && self.ops.iter().flatten().any(|op| {
                op.seq < seq
                    && matches!(
                        op.kind,
                        OpKind::Write {
                            staged: Some(_),
                            ..
                        }
                    )
                    && Arc::as_ptr(&op.file) == file
            })
    }

    /// Whether request `id` may go to the kernel now: a sync only once the
    /// writes before it are done (see the module docs), a direct write only
    /// once the one before it to the same file is (it rewrites that write's
    /// last, partial block), and a buffered write only once the direct
    /// writes before it to the same file are (see [`crate::direct`]).
    fn may_start(&self, id: usize) -> bool {
        match self.ops[id].as_ref() {
            Some(
                op @ Op {
                    kind:
                        OpKind::Sync { .. }
                        | OpKind::Write {
                            staged: Some(_), ..
                        },
                    ..
                },
            ) => !self.write_pending_before(Arc::as_ptr(&op.file), op.seq),
            Some(op) => !self.direct_pending_before(Arc::as_ptr(&op.file), op.seq),
            None => true,
        }
    }

    fn is_folded_sync(&self, id: usize) -> bool {
        matches!(
            self.ops[id].as_ref(),
            Some(Op {
                kind: OpKind::Sync { folded: true, .. },
                ..
            })
        )
    }

    /// Submits and reaps until no write queued before `seq` to `file` is
    /// left (or the ring broke).
    fn wait_for_writes(&mut self, file: *const File, seq: u64) {
        loop {
            self.harvest();
            self.advance();
            if self.broken.is_some() || !self.write_pending_before(file, seq) {
                return;
            }
            self.wait_one();
        }
    }

    /// Pushes the backlog to the SQ, as far as the CQ has room, and submits.
    /// Syncs still waiting for their writes stay behind; later requests
    /// pass them. Returns how many folded syncs it finished.
    fn advance(&mut self) -> usize {
        let mut folded = 0;
        let mut i = 0;
        while let Some(&id) = self.backlog.get(i) {
            if self.broken.is_some() {
                return folded;
            }
            if !self.may_start(id) {
                i += 1;
                continue;
            }
            if self.is_folded_sync(id) {
                // Its writes were durable when they completed.
                self.backlog.remove(i);
                let result = match self.take_injection(InjectOp::Sync) {
                    Some(errno) => Err(io::Error::from_raw_os_error(errno)),
                    None => Ok(()),
                };
                self.finish(id, result);
                folded += 1;
                continue;
            }
            if self.in_ring >= self.cq_cap {
                // The CQ could overflow: take what has finished first.
                if self.harvest() == 0 {
                    break;
                }
                // Finished writes may have freed a sync passed over above.
                i = 0;
                continue;
            }
            let entry = self.entry_for(id);
            // SAFETY: the entry points at the heap block of a buffer, and
            // names a descriptor or registered slot of a file, both held by
            // `self.ops[id]` (with a clone of the file's `Arc`) until the
            // request's last CQE is reaped; nothing touches the buffer
            // meanwhile, and moving the `Vec` does not move its heap block.
            // Drop waits for every request in the ring, and a broken ring
            // leaks them rather than free them.
            let pushed = unsafe { self.ring.submission().push(&entry) }.is_ok();
            if !pushed {
                // SQ full: hand its entries to the kernel, then try again.
                self.submit();
                if self.ring.submission().is_full() {
                    if self.sqpoll {
                        let _ = self.ring.submitter().squeue_wait();
                    }
                    if self.ring.submission().is_full() {
                        break;
                    }
                }
                continue;
            }
            self.backlog.remove(i);
            if let Some(op) = self.ops[id].as_mut() {
                op.in_ring = true;
                if matches!(op.kind, OpKind::Sync { .. }) {
                    self.fsyncs_issued += 1;
                }
            }
            self.in_ring += 1;
        }
        self.submit();
        folded
    }

    /// Submits what the SQ holds. EBUSY/EAGAIN: reap to make room, retry.
    fn submit(&mut self) {
        loop {
            let idle = {
                let sq = self.ring.submission();
                sq.is_empty() && !sq.cq_overflow()
            };
            if idle || self.broken.is_some() {
                return;
            }
            match self.ring.submit() {
                Ok(_) => return,
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    // Left in the SQ; the next submit takes them.
                    Some(libc::EBUSY | libc::EAGAIN) => {
                        if self.harvest() == 0 {
                            return;
                        }
                    }
                    _ => return self.break_down(e),
                },
            }
        }
    }

    /// Takes every CQE posted; returns how many.
    fn harvest(&mut self) -> usize {
        let mut cqes = std::mem::take(&mut self.cqes);
        let mut total = 0;
        loop {
            cqes.extend(
                self.ring
                    .completion()
                    .map(|cqe| (cqe.user_data(), cqe.result())),
            );
            total += cqes.len();
            if self.broken.is_some() {
                // Requests of a broken ring were already reported.
                cqes.clear();
                break;
            }
            self.in_ring -= cqes.len();
            for &(user_data, result) in &cqes {
                self.complete(user_data as usize, result);
            }
            let got = !cqes.is_empty();
            cqes.clear();
            // Completions the kernel kept aside (IORING_FEAT_NODROP) come
            // back with the next enter.
            if !(got && self.ring.submission().cq_overflow()) {
                break;
            }
            let _ = self.ring.submit();
        }
        self.cqes = cqes;
        total
    }

    fn take_injection(&mut self, kind: InjectOp) -> Option<i32> {
        let i = self.injected.iter().position(|&(k, _)| k == kind)?;
        self.injected.remove(i).map(|(_, errno)| errno)
    }

    /// Handles one CQE of request `id`.
    fn complete(&mut self, id: usize, result: i32) {
        let is_write = matches!(
            self.ops.get(id),
            Some(Some(Op {
                kind: OpKind::Write { .. },
                ..
            }))
        );
        let injected = self.take_injection(if is_write {
            InjectOp::Write
        } else {
            InjectOp::Sync
        });
        let result = injected.map_or(result, |errno| -errno);
        let Some(op) = self.ops.get_mut(id).and_then(Option::as_mut) else {
            debug_assert!(false, "a CQE for no request ({id})");
            return;
        };
        op.in_ring = false;
        let outcome = if result < 0 {
            Err(io::Error::from_raw_os_error(-result))
        } else {
            Ok(())
        };
        match &mut op.kind {
            OpKind::Write {
                buf, done, staged, ..
            } if result >= 0 => {
                if result == 0 {
                    return self.finish(id, Err(io::ErrorKind::WriteZero.into()));
                }
                *done += result as usize;
                let total = staged.as_ref().map_or(buf.len(), |s| s.len);
                if *done < total {
                    // Short: write the rest. The syncs after it wait until
                    // the whole write is done.
                    self.backlog.push_back(id);
                    self.resubmitted_writes += 1;
                    return;
                }
                self.finish(id, Ok(()));
            }
            _ => self.finish(id, outcome),
        }
    }

    /// Removes request `id` and queues its completion.
    fn finish(&mut self, id: usize, result: io::Result<()>) {
        let Some(op) = self.ops[id].take() else {
            return;
        };
        self.free.push(id);
        self.live -= 1;
        if matches!(
            op.kind,
            OpKind::Write {
                staged: Some(_),
                ..
            }
        ) {
            self.live_direct -= 1;
        }
        if let Target::Fixed(i) = op.target {
            self.files[i as usize].ops -= 1;
        }
        let completion = match op.kind {
            OpKind::Write {
                buf, done, staged, ..
            } => {
                let written = match staged {
                    None if result.is_ok() => buf.len(),
                    None => done,
                    Some(staged) => self.end_staged(&op.file, staged, result.is_ok(), done),
                };
                Completion::Write {
                    buf,
                    result,
                    written,
                }
            }
            OpKind::Sync { token, .. } => Completion::Sync { token, result },
        };
        self.ready.push_back(completion);
    }

    /// How many of the caller's bytes a finished direct write put in the
    /// file; its file's staging takes the buffer back.
    fn end_staged(&mut self, file: &Arc<File>, staged: Staged, ok: bool, done: usize) -> usize {
        match self.direct_file(file) {
            Some(direct) => direct.finish(staged, ok, done),
            // Not reached: the request holds the file, so its entry lives.
            None if ok => staged.data_len,
            None => staged.data_written(done),
        }
    }

    /// The ring itself failed (a submit or wait error that is not
    /// transient). Fails every request with that error. Requests the kernel
    /// may still hold are failed with an empty buffer and their buffer and
    /// file leaked: freeing them could let the kernel write freed memory to
    /// the file, or a reused descriptor.
    fn break_down(&mut self, e: io::Error) {
        let errno = e.raw_os_error().unwrap_or(libc::EIO);
        self.broken = Some(errno);
        for slot in &mut self.ops {
            let Some(Op {
                file,
                in_ring,
                kind,
                ..
            }) = slot.take()
            else {
                continue;
            };
            let result = Err(io::Error::from_raw_os_error(errno));
            self.ready.push_back(match kind {
                OpKind::Write {
                    buf, done, staged, ..
                } if in_ring => {
                    std::mem::forget(buf);
                    std::mem::forget(staged);
                    // The kernel may have written part of it: not "nothing".
                    Completion::Write {
                        buf: Vec::new(),
                        result,
                        written: done.max(1),
                    }
                }
                OpKind::Write {
                    buf, done, staged, ..
                } => Completion::Write {
                    buf,
                    result,
                    written: staged.map_or(done, |s| s.data_written(done)),
                },
                OpKind::Sync { token, .. } => Completion::Sync { token, result },
            });
            if in_ring {
                std::mem::forget(file);
            }
        }
        self.ops.clear();
        self.free.clear();
        self.backlog.clear();
        self.live = 0;
        self.live_direct = 0;
        self.in_ring = 0;
        for slot in &mut self.files {
            slot.ops = 0;
        }
        self.notify();
    }

    /// Submits and waits for at least one completion. A transient error
    /// (interrupted, busy, timed out) just returns; any other breaks the ring.
    fn wait_one(&mut self) {
        if let Err(e) = self.ring.submit_and_wait(1)
            && !matches!(
                e.raw_os_error(),
                Some(libc::EINTR | libc::EBUSY | libc::EAGAIN | libc::ETIME)
            )
        {
            self.break_down(e);
        }
    }

    /// How a write of `len` bytes at `offset` of `file` goes (see
    /// [`DirectFiles::route`]), and whether a direct write queued before it
    /// to the file is still pending; [`Route::Buffered`] without direct
    /// I/O.
    fn route(
        &mut self,
        file: &Arc<File>,
        offset: u64,
        len: usize,
        sync_follows: bool,
        alone: bool,
    ) -> (Route, bool) {
        let behind = self.direct_pending_before(Arc::as_ptr(file), self.next_seq);
        let alone = alone && self.live == 0;
        let route = self.direct.as_mut().map_or(Route::Buffered, |d| {
            d.route(file, offset, len, sync_follows, alone, behind)
        });
        (route, behind)
    }

    /// The staged form of a write of `buf` at `offset` routed `route`
    /// (`None`: written through the page cache as it is). A partial first
    /// block read back from the file is read once no earlier write to it
    /// is in flight.
    fn stage_routed(
        &mut self,
        route: Route,
        file: &Arc<File>,
        buf: &[u8],
        offset: u64,
    ) -> io::Result<Option<Staged>> {
        if route == Route::Buffered {
            return Ok(None);
        }
        let before_syncs =
            self.direct.as_ref().map(DirectFiles::writes) == Some(DirectWrites::BeforeSyncs);
        let Some(direct) = self.direct.as_mut().and_then(|d| d.find(file)) else {
            return Ok(None);
        };
        let direct = if !direct.reads_back(offset) {
            direct
        } else {
            self.wait_for_writes(Arc::as_ptr(file), self.next_seq);
            match self.direct_file(file) {
                Some(direct) => direct,
                None => return Ok(None),
            }
        };
        let staged = direct.stage_as(route, file, buf, offset)?;
        if route == Route::Direct && before_syncs {
            // The segment keeps its cached pages for buffered writes; a
            // direct write over cached pages would go to an io-wq worker.
            direct.uncache(file, &staged);
        }
        Ok(Some(staged))
    }

    /// Whether a sync of `file` queued now needs no fsync request.
    fn folds_sync(&mut self, file: &Arc<File>) -> bool {
        self.direct.as_mut().is_some_and(|d| d.folds_sync(file))
    }

    /// The direct side of `file`, if it is written directly.
    fn direct_file(&mut self, file: &Arc<File>) -> Option<&mut DirectFile> {
        self.direct.as_mut()?.find(file)
    }

    /// Makes the event fd readable.
    fn notify(&self) {
        if let Some(event) = &self.attached {
            return event.signal();
        }
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live local array to a descriptor the
        // queue owns.
        let _ = unsafe { libc::write(self.event.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    /// Reads the event fd until it is empty (not an attached one: its owner
    /// drains it when it hands completions out).
    fn drain_event(&self) {
        if self.attached.is_some() {
            return;
        }
        let mut count = [0u8; 8];
        loop {
            // SAFETY: reads at most 8 bytes into a live local array from a
            // descriptor the queue owns.
            let n = unsafe {
                libc::read(
                    self.event.as_raw_fd(),
                    count.as_mut_ptr().cast(),
                    count.len(),
                )
            };
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            // A read empties the counter; the next sees EAGAIN unless a
            // completion was posted in between.
            if n <= 0 {
                return;
            }
        }
    }

    /// A write a sync follows; `alone`: that sync is alone (see
    /// [`SubmitQueue::write_alone`]). A direct write goes to the ring: the
    /// kernel issues it from this thread without a worker, and a
    /// synchronous one would block a sync_submit for the whole device round
    /// trip. A buffered one behind a direct write in flight waits there;
    /// any other is a `pwrite` on this thread.
    fn write_before_sync(&mut self, file: &Arc<File>, buf: Vec<u8>, offset: u64, alone: bool) {
        if self.broken.is_some() || buf.is_empty() {
            return self.write(file, buf, offset);
        }
        self.send(file, buf, offset, Some(alone));
    }

    /// Routes a write and sends it on its way. Whole blocks through the
    /// page cache are written on this thread, as quick as a plain pwrite
    /// (so they hold nothing back); a direct write, and a buffered one
    /// waiting for a direct write before it, go to the ring. Any other
    /// buffered write goes to the ring too, or, when a sync follows
    /// (`sync: Some(alone)`), is a `pwrite` on this thread.
    fn send(&mut self, file: &Arc<File>, buf: Vec<u8>, offset: u64, sync: Option<bool>) {
        let (sync_follows, alone) = (sync.is_some(), sync == Some(true));
        let (route, behind_direct) = self.route(file, offset, buf.len(), sync_follows, alone);
        let staged = match self.stage_routed(route, file, &buf, offset) {
            Ok(staged) => staged,
            Err(e) => {
                return self.finish_now(Completion::Write {
                    buf,
                    result: Err(e),
                    written: 0,
                });
            }
        };
        match staged {
            Some(staged) if route == Route::WholeBlocks => self.write_staged_now(file, buf, staged),
            None if sync_follows && !behind_direct => self.write_buffered_now(file, buf, offset),
            staged => self.queue(
                file,
                OpKind::Write {
                    buf,
                    offset,
                    done: 0,
                    staged,
                },
            ),
        }
    }

    /// A staged write of `buf` done with `pwrite` on this thread. Nothing
    /// queued before it touches its blocks any more: its first block came
    /// from a staged write that has completed (no direct write is pending)
    /// or was read back once every write before it had.
    fn write_staged_now(&mut self, file: &Arc<File>, buf: Vec<u8>, staged: Staged) {
        let (done, result) = match (staged.write(), self.take_injection(InjectOp::Write)) {
            (_, Some(errno)) => (0, Err(io::Error::from_raw_os_error(errno))),
            (outcome, None) => outcome,
        };
        let written = self.end_staged(file, staged, result.is_ok(), done);
        // Reaped by the caller at once: no need to signal the event fd.
        self.ready.push_back(Completion::Write {
            buf,
            result,
            written,
        });
    }

    /// A buffered write done with `pwrite` on this thread.
    fn write_buffered_now(&mut self, file: &Arc<File>, buf: Vec<u8>, offset: u64) {
        let mut done = write_whole(&**file, buf, offset);
        if let Completion::Write { result, .. } = &mut done
            && let Some(errno) = self.take_injection(InjectOp::Write)
        {
            *result = Err(io::Error::from_raw_os_error(errno));
        }
        // Reaped by the caller at once: no need to signal the event fd.
        self.ready.push_back(done);
    }
}

impl SubmitQueue for UringQueue {
    type File = File;

    fn write(&mut self, file: &Arc<File>, buf: Vec<u8>, offset: u64) {
        if let Some(errno) = self.broken {
            let result = Err(io::Error::from_raw_os_error(errno));
            return self.finish_now(Completion::Write {
                buf,
                result,
                written: 0,
            });
        }
        if buf.is_empty() {
            return self.finish_now(Completion::Write {
                buf,
                result: Ok(()),
                written: 0,
            });
        }
        self.send(file, buf, offset, None);
    }

    fn sync(&mut self, file: &Arc<File>, token: u64) {
        if let Some(errno) = self.broken {
            let result = Err(io::Error::from_raw_os_error(errno));
            return self.finish_now(Completion::Sync { token, result });
        }
        let folded = self.folds_sync(file);
        self.queue(file, OpKind::Sync { token, folded });
    }

    fn write_now(&mut self, file: &Arc<File>, buf: Vec<u8>, offset: u64) {
        self.write_before_sync(file, buf, offset, false);
    }

    fn write_alone(&mut self, file: &Arc<File>, buf: Vec<u8>, offset: u64) {
        self.write_before_sync(file, buf, offset, true);
    }

    fn write_waited(&mut self, file: &Arc<File>, buf: Vec<u8>, offset: u64) {
        // A staged write the caller waits for anyway is done on this
        // thread, after the writes to the file still in the ring: an
        // O_DSYNC direct write issued through the ring is ended by a kernel
        // worker where the device has no FUA, a hand-off a blocked pwrite
        // does not need. The caller waits for everything in flight, so its
        // sync counts as alone.
        if self.broken.is_some() || buf.is_empty() || self.direct.is_none() {
            return self.write_now(file, buf, offset);
        }
        self.wait_for_writes(Arc::as_ptr(file), self.next_seq);
        if self.broken.is_some() {
            return self.write_now(file, buf, offset);
        }
        let (route, _) = self.route(file, offset, buf.len(), true, true);
        match self.stage_routed(route, file, &buf, offset) {
            Ok(Some(staged)) => self.write_staged_now(file, buf, staged),
            Ok(None) => self.write_buffered_now(file, buf, offset),
            Err(e) => self.ready.push_back(Completion::Write {
                buf,
                result: Err(e),
                written: 0,
            }),
        }
    }

    fn sync_now(&mut self, file: &Arc<File>, token: u64) {
        self.wait_for_writes(Arc::as_ptr(file), self.next_seq);
        let folded = self.folds_sync(file);
        let result = match (self.broken, self.take_injection(InjectOp::Sync)) {
            (Some(errno), _) | (None, Some(errno)) => Err(io::Error::from_raw_os_error(errno)),
            // Its writes were durable when they completed.
            (None, None) if folded => Ok(()),
            (None, None) => {
                self.fsyncs_issued += 1;
                file.sync_data()
            }
        };
        // Reaped by the caller at once: no need to signal the event fd.
        self.ready.push_back(Completion::Sync { token, result });
    }

    fn reap(&mut self, wait: bool, out: &mut Vec<Completion>) {
        let before = out.len();
        loop {
            self.advance();
            // Drain before taking CQEs: one posted after the drain leaves
            // the fd readable, so no wake-up is lost.
            self.drain_event();
            self.harvest();
            // Resubmissions (short writes) and syncs whose writes just
            // finished go in now, so an event loop that only reaps on
            // wake-ups sees them finish.
            self.advance();
            out.extend(self.ready.drain(..));
            if !wait || out.len() > before || self.live == 0 || self.in_ring == 0 {
                break;
            }
            self.wait_one();
        }
        self.release_dead_files();
    }

    fn in_flight(&self) -> usize {
        self.live + self.ready.len()
    }

    fn attach_event(&mut self, event: Arc<EventFd>) -> io::Result<()> {
        let submitter = self.ring.submitter();
        submitter.unregister_eventfd()?;
        submitter.register_eventfd(event.raw())?;
        self.attached = Some(event);
        Ok(())
    }
}

impl Drop for UringQueue {
    fn drop(&mut self) {
        // The kernel may read any buffer in the ring until its CQE: wait for
        // all of them (and do what is still queued) before freeing anything.
        while self.broken.is_none() && self.live > 0 {
            self.advance();
            if self.in_ring == 0 {
                // Cannot happen (an empty ring always takes the backlog);
                // never block on a ring with nothing in it.
                break;
            }
            // A broken ring leaks what the kernel may still hold.
            self.wait_one();
            self.harvest();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::os::unix::fs::FileExt;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    /// Skips the test (with a line saying why) where io_uring cannot run.
    macro_rules! require_uring {
        () => {
            if let Err(why) = probe_with(false) {
                eprintln!("skipping: io_uring unavailable here: {why}");
                return;
            }
        };
    }

    fn queue_with(options: UringOptions) -> UringQueue {
        UringQueue::new_with(options, false).expect("setting up a ring")
    }

    fn queue(entries: u32) -> UringQueue {
        queue_with(UringOptions {
            entries,
            ..UringOptions::default()
        })
    }

    fn temp_file(dir: &tempfile::TempDir, name: &str) -> (Arc<File>, PathBuf) {
        let path = dir.path().join(name);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        (Arc::new(file), path)
    }

    /// `len` bytes that differ for each `seed`; the first 8 are the seed.
    fn pattern(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut out: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let head = seed.to_le_bytes();
        let n = head.len().min(len);
        out[..n].copy_from_slice(&head[..n]);
        out
    }

    fn seed_of(buf: &[u8]) -> u64 {
        u64::from_le_bytes(buf[..8].try_into().unwrap())
    }

    /// Reaps (blocking) until nothing is in flight.
    fn drain(q: &mut UringQueue) -> Vec<Completion> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while q.in_flight() > 0 {
            assert!(Instant::now() < deadline, "operations never finished");
            q.reap(true, &mut out);
        }
        out
    }

    fn errno_of(result: &io::Result<()>) -> Option<i32> {
        result
            .as_ref()
            .err()
            .map(|e| e.raw_os_error().unwrap_or(-1))
    }

    fn readable(fd: RawFd, timeout_ms: i32) -> bool {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd, and its count.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        n == 1 && pfd.revents & libc::POLLIN != 0
    }

    fn put(model: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
        let end = offset as usize + bytes.len();
        if model.len() < end {
            model.resize(end, 0);
        }
        model[offset as usize..end].copy_from_slice(bytes);
    }

    #[test]
    fn writes_at_many_offsets_then_a_sync_read_back_the_same() {
        require_uring!();
        let dir = tempfile::tempdir().unwrap();
        let (file, path) = temp_file(&dir, "seg");
        let mut q = queue(32);
        let mut model = Vec::new();
        let mut sent = Vec::new();
        // Out of order, with gaps and odd sizes.
        for i in 0..64u64 {
            let slot = (i * 37) % 64;
            let len = 8 + ((i * 977) % 9000) as usize;
            let offset = slot * 10_000 + (i % 7);
            let buf = pattern(i, len);
            put(&mut model, offset, &buf);
            sent.push(buf.clone());
            q.write(&file, buf, offset);
        }
        q.sync(&file, 7);
        let done = drain(&mut q);
        assert_eq!(done.len(), 65);
        let mut returned = Vec::new();
        for (i, c) in done.iter().enumerate() {
            match c {
                Completion::Write { buf, result, .. } => {
                    assert!(result.is_ok(), "{result:?}");
                    returned.push(buf.clone());
                }
                Completion::Sync { token, result } => {
                    assert_eq!(*token, 7);
                    assert!(result.is_ok(), "{result:?}");
                    assert_eq!(i, 64, "the sync finishes after every write before it");
                }
            }
        }
        returned.sort_by_key(|b| seed_of(b));
        assert_eq!(returned, sent, "each buffer comes back once, unchanged");
        assert_eq!(std::fs::read(&path).unwrap(), model);
        assert_eq!(q.in_flight(), 0);
    }

    /// Writes and syncs interleaved, reaped by polling; a sync's completion
    /// comes only after every write queued before it, whose bytes are then
    /// in the file. Syncs may finish in any order, each once.
    fn interleaved(max_chunk: Option<u32>) -> UringQueue {
        let dir = tempfile::tempdir().unwrap();
        let (file, path) = temp_file(&dir, "seg");
        let mut q = queue(16);
        if let Some(chunk) = max_chunk {
            q.max_chunk = chunk;
        }
        const N: u64 = 40;
        const LEN: usize = 1000;
        let mut written = HashSet::new();
        let mut synced = HashSet::new();
        let mut out = Vec::new();
        let check =
            |out: &mut Vec<Completion>, written: &mut HashSet<u64>, synced: &mut HashSet<u64>| {
                for c in out.drain(..) {
                    match c {
                        Completion::Write { buf, result, .. } => {
                            assert!(result.is_ok(), "{result:?}");
                            assert_eq!(buf.len(), LEN);
                            assert!(written.insert(seed_of(&buf)), "write reported twice");
                        }
                        Completion::Sync { token, result } => {
                            assert!(result.is_ok(), "{result:?}");
                            assert!(synced.insert(token), "sync {token} reported twice");
                            let on_disk = std::fs::read(&path).unwrap();
                            for w in 0..=token {
                                assert!(written.contains(&w), "sync {token} before write {w}");
                                let at = w as usize * LEN;
                                assert_eq!(on_disk[at..at + LEN], pattern(w, LEN)[..]);
                            }
                        }
                    }
                }
            };
        for i in 0..N {
            q.write(&file, pattern(i, LEN), i * LEN as u64);
            q.sync(&file, i);
            q.reap(false, &mut out);
            check(&mut out, &mut written, &mut synced);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while (synced.len() as u64) < N {
            assert!(Instant::now() < deadline, "syncs never finished");
            q.reap(false, &mut out);
            check(&mut out, &mut written, &mut synced);
            std::thread::yield_now();
        }
        assert_eq!(written.len(), N as usize);
        assert_eq!(q.in_flight(), 0);
        q
    }

    #[test]
    fn interleaved_syncs_finish_after_the_writes_queued_before_them() {
        require_uring!();
        let q = interleaved(None);
        assert_eq!(q.resubmitted_writes, 0);
    }

    #[test]
    fn short_writes_are_finished_before_the_syncs_after_them() {
        require_uring!();
        // Each 1000-byte write goes to the kernel 300 bytes at a time: the
        // path a short completion takes.
        let q = interleaved(Some(300));
        assert_eq!(q.resubmitted_writes, 40 * 3);
    }

    #[test]
    fn a_sync_waiting_for_its_writes_does_not_hold_back_later_writes() {
        require_uring!();
        let dir = tempfile::tempdir().unwrap();
        let (file, path) = temp_file(&dir, "seg");
        let mut q = queue(8);
        // The first write goes in pieces, so it is still unfinished when
        // the sync and the next write are queued (nothing is reaped yet).
        q.max_chunk = 1000;
        let first = pattern(1, 10_000);
        let second = pattern(2, 4096);
        q.write(&file, first.clone(), 0);
        q.sync(&file, 7);
        q.write(&file, second.clone(), 10_000);
        let kinds: Vec<(bool, bool)> = q
            .ops
            .iter()
            .flatten()
            .map(|op| (matches!(op.kind, OpKind::Sync { .. }), op.in_ring))
            .collect();
        assert_eq!(
            kinds,
            vec![(false, true), (true, false), (false, true)],
            "the sync waits in the backlog; the later write went to the kernel"
        );
        let done = drain(&mut q);
        let sync_at = done
            .iter()
            .position(|c| {
                matches!(
                    c,
                    Completion::Sync {
                        token: 7,
                        result: Ok(())
                    }
                )
            })
            .expect("the sync completes");
        let first_at = done
            .iter()
            .position(|c| matches!(c, Completion::Write { buf, .. } if *buf == first))
            .expect("the first write completes");
        assert!(first_at < sync_at, "the sync finished after its write");
        let mut model = first;
        model.extend_from_slice(&second);
        assert_eq!(std::fs::read(&path).unwrap(), model);
    }

    #[test]
    fn sync_now_runs_after_the_writes_before_it_and_is_ready_at_once() {
        require_uring!();
        let dir = tempfile::tempdir().unwrap();
        let (file, path) = temp_file(&dir, "seg");
        let mut q = queue(8);
        q.max_chunk = 1000;
        let buf = pattern(5, 10_000);
        q.write(&file, buf.clone(), 0);
        q.sync_now(&file, 3);
        // Ready without waiting: the write and then the sync.
        let mut out = Vec::new();
        q.reap(false, &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(matches!(&out[0], Completion::Write { buf: b, result: Ok(()), .. } if *b == buf));
        assert!(matches!(
            out[1],
            Completion::Sync {
                token: 3,
                result: Ok(())
            }
        ));
        assert_eq!(std::fs::read(&path).unwrap(), buf);
        assert_eq!(q.in_flight(), 0);
        // An injected failure reaches a direct sync too.
        q.inject_failure(InjectOp::Sync, libc::EIO);
        q.sync_now(&file, 4);
        q.reap(false, &mut out);
        assert!(
            matches!(out[2], Completion::Sync { token: 4, result: Err(ref e) } if e.raw_os_error() == Some(libc::EIO))
        );
    }

    /// A queue with direct I/O and a file of `len` bytes (sized, as
    /// segments are) in a fresh directory.
    struct DirectSetup {
        q: UringQueue,
        file: Arc<File>,
        path: PathBuf,
        _dir: tempfile::TempDir,
    }

    /// [`DirectSetup`] with every write direct; `None`, with a line saying
    /// why, where io_uring or direct I/O is unavailable.
    fn direct_setup(len: u64) -> Option<DirectSetup> {
        direct_setup_with(DirectWrites::Every, len)
    }

    /// [`DirectSetup`] writing direct what `writes` says.
    fn direct_setup_with(writes: DirectWrites, len: u64) -> Option<DirectSetup> {
        let dir = tempfile::tempdir().unwrap();
        if let Err(why) = probe_with(false).and_then(|()| crate::direct::probe(dir.path())) {
            eprintln!("skipping: {why}");
            return None;
        }
        let q = queue_with(UringOptions {
            entries: 8,
            direct: Some(writes),
            ..UringOptions::default()
        });
        let (file, path) = temp_file(&dir, "seg");
        file.set_len(len).unwrap();
        Some(DirectSetup {
            q,
            file,
            path,
            _dir: dir,
        })
    }

    #[test]
    fn direct_writes_land_in_order_and_their_syncs_need_no_fsync() {
        let Some(DirectSetup {
            mut q,
            file,
            path,
            _dir,
        }) = direct_setup(256 << 10)
        else {
            return;
        };
        let mut model = vec![0u8; 256 << 10];
        let mut offset = 0u64;
        let mut token = 0;
        // Lengths that end mid-block, on a block, and span many blocks;
        // queued back to back, so each waits for the one before it.
        for (i, len) in [100usize, 3996, 4096, 1, 70_000, 513, 12_288, 7]
            .into_iter()
            .enumerate()
        {
            let buf = pattern(i as u64 + 1, len.max(8));
            let len = buf.len();
            model[offset as usize..offset as usize + len].copy_from_slice(&buf);
            if i % 3 == 2 {
                q.write_now(&file, buf, offset);
                token += 1;
                q.sync(&file, token);
            } else {
                q.write(&file, buf, offset);
            }
            offset += len as u64;
        }
        token += 1;
        q.sync_now(&file, token);
        let syncs = all_ok(&drain(&mut q));
        assert_eq!(syncs.len(), token as usize);
        assert_eq!(q.fsyncs_issued, 0, "every sync was folded");
        assert_eq!(std::fs::read(&path).unwrap(), model);
    }

    /// [`direct_setup_with`] before syncs, its file zero-filled through the
    /// page cache and synced, as a prepared segment is.
    fn before_syncs_setup(len: usize) -> Option<DirectSetup> {
        let setup = direct_setup_with(DirectWrites::BeforeSyncs, len as u64)?;
        crate::segment::write_zeros(&*setup.file, 0, len as u64).unwrap();
        setup.file.sync_data().unwrap();
        Some(setup)
    }

    /// Every completion succeeded, every write whole; the sync tokens.
    fn all_ok(out: &[Completion]) -> Vec<u64> {
        out.iter()
            .filter_map(|c| match c {
                Completion::Sync { token, result } => {
                    assert!(result.is_ok(), "{result:?}");
                    Some(*token)
                }
                Completion::Write {
                    result,
                    buf,
                    written,
                } => {
                    assert!(result.is_ok(), "{result:?}");
                    assert_eq!(*written, buf.len());
                    None
                }
            })
            .collect()
    }

    #[test]
    fn before_syncs_only_a_sync_alone_on_a_clean_file_is_folded() {
        let Some(DirectSetup {
            mut q,
            file,
            path,
            _dir,
        }) = before_syncs_setup(256 << 10)
        else {
            return;
        };
        let mut model = vec![0u8; 256 << 10];
        let mut offset = 0u64;
        let mut next = |len: usize| {
            let buf = pattern(offset + 1, len);
            let at = offset;
            put(&mut model, at, &buf);
            offset += len as u64;
            (buf, at)
        };
        let (buf, at) = next(1000);
        q.write_alone(&file, buf, at);
        q.sync(&file, 1);
        all_ok(&drain(&mut q));
        assert_eq!(q.fsyncs_issued, 0, "alone, nothing buffered: folded");

        let (full, at) = next(70_000);
        q.write(&file, full, at);
        let (buf, at) = next(300);
        q.write_alone(&file, buf, at);
        q.sync(&file, 2);
        all_ok(&drain(&mut q));
        assert_eq!(
            q.fsyncs_issued, 1,
            "a full buffer went through the page cache"
        );

        let (buf, at) = next(4096);
        q.write_alone(&file, buf, at);
        q.sync(&file, 3);
        all_ok(&drain(&mut q));
        assert_eq!(q.fsyncs_issued, 1, "clean again after that fsync");

        let (buf, at) = next(10);
        q.write_now(&file, buf, at);
        q.sync(&file, 4);
        all_ok(&drain(&mut q));
        assert_eq!(q.fsyncs_issued, 2, "not alone: buffered");

        let (buf, at) = next(5000);
        q.write_waited(&file, buf, at);
        q.sync_now(&file, 5);
        let (buf, at) = next(20);
        q.write_waited(&file, buf, at);
        q.sync_now(&file, 6);
        assert_eq!(all_ok(&drain(&mut q)), vec![5, 6]);
        assert_eq!(q.fsyncs_issued, 2, "blocking syncs of a clean file: folded");
        assert_eq!(std::fs::read(&path).unwrap(), model);
    }

    #[test]
    fn a_buffered_write_waits_for_the_direct_write_queued_before_it() {
        let Some(DirectSetup {
            mut q,
            file,
            path,
            _dir,
        }) = before_syncs_setup(64 << 10)
        else {
            return;
        };
        let (a, b) = (pattern(1, 5000), pattern(2, 3000));
        q.write_alone(&file, a.clone(), 0);
        q.sync(&file, 1);
        // A sync in flight: this one is not alone, and its write shares the
        // direct write's last block.
        q.write_now(&file, b.clone(), 5000);
        let plain = q
            .ops
            .iter()
            .flatten()
            .find(|op| matches!(op.kind, OpKind::Write { staged: None, .. }))
            .expect("the buffered write is queued, not done on the thread");
        assert!(
            !plain.in_ring,
            "it must not start before the direct write ends"
        );
        q.sync(&file, 2);
        assert_eq!(all_ok(&drain(&mut q)).len(), 2);
        assert_eq!(q.fsyncs_issued, 1);
        let mut model = vec![0u8; 64 << 10];
        put(&mut model, 0, &a);
        put(&mut model, 5000, &b);
        assert_eq!(std::fs::read(&path).unwrap(), model);
    }

    #[test]
    fn a_failed_whole_block_write_reports_none_of_its_bytes_and_the_next_reads_its_block_back() {
        let Some(DirectSetup {
            mut q,
            file,
            path,
            _dir,
        }) = before_syncs_setup(64 << 10)
        else {
            return;
        };
        let a = pattern(1, 5000);
        q.write_alone(&file, a.clone(), 0);
        q.sync(&file, 1);
        all_ok(&drain(&mut q));
        // A full buffer right behind the direct write lands where it dropped
        // the cached pages: whole blocks, on this thread. Make it fail.
        q.inject_failure(InjectOp::Write, libc::EIO);
        q.write(&file, pattern(2, 3000), 5000);
        assert_eq!(q.in_flight(), 1, "done at once, waiting for reap");
        let out = drain_ready(&mut q);
        assert!(
            matches!(&out[..], [Completion::Write { result: Err(e), written: 0, .. }] if e.raw_os_error() == Some(libc::EIO)),
            "{out:?}"
        );
        assert!(
            q.direct_file(&file).unwrap().reads_back(8000),
            "what the failed write left in its block is unknown"
        );
        // (The injection replaced the result of a write that was done.)
        // Bytes planted in that block stand for whatever the failure left:
        // the next write, which starts where the failed one ended, must
        // take them from the file, not from the failed write's copy.
        file.write_all_at(&[7; 100], 7900).unwrap();
        let c = pattern(3, 200);
        q.write(&file, c.clone(), 8000);
        q.sync(&file, 2);
        all_ok(&drain(&mut q));
        let mut model = vec![0u8; 64 << 10];
        put(&mut model, 0, &a);
        put(&mut model, 5000, &pattern(2, 3000));
        put(&mut model, 7900, &[7; 100]);
        put(&mut model, 8000, &c);
        assert_eq!(std::fs::read(&path).unwrap(), model);
    }

    #[test]
    fn mixed_direct_and_buffered_writes_land_as_the_model_says() {
        for seed in 1..=6u64 {
            let Some(DirectSetup {
                mut q,
                file,
                path,
                _dir,
            }) = before_syncs_setup(4 << 20)
            else {
                return;
            };
            let mut rng = crate::io::tests::XorShift(seed * 0x9E37_79B9_7F4A_7C15);
            let mut model = vec![0u8; 4 << 20];
            let mut offset = 0u64;
            let mut token = 0;
            let mut out = Vec::new();
            while offset < (4 << 20) - (80 << 10) {
                let len = match rng.below(3) {
                    0 => 1 + rng.below(200),
                    1 => 1 + rng.below(9000),
                    _ => 1 + rng.below(70_000),
                } as usize;
                let buf = pattern(offset, len);
                put(&mut model, offset, &buf);
                match rng.below(6) {
                    0 | 1 => q.write(&file, buf, offset),
                    2 => {
                        q.write_alone(&file, buf, offset);
                        token += 1;
                        q.sync(&file, token);
                    }
                    3 => {
                        q.write_now(&file, buf, offset);
                        token += 1;
                        q.sync(&file, token);
                    }
                    4 => {
                        q.write_waited(&file, buf, offset);
                        token += 1;
                        q.sync_now(&file, token);
                    }
                    _ => {
                        q.write(&file, buf, offset);
                        out.extend(drain(&mut q));
                    }
                }
                offset += len as u64;
                if rng.below(3) == 0 {
                    q.reap(false, &mut out);
                }
            }
            out.extend(drain(&mut q));
            let mut tokens = all_ok(&out);
            tokens.sort();
            assert_eq!(tokens, (1..=token).collect::<Vec<_>>(), "seed {seed}");
            assert!(
                q.fsyncs_issued > 0 && q.fsyncs_issued < token,
                "seed {seed}: {} fsyncs for {token} syncs: some folded, some not",
                q.fsyncs_issued
            );
            assert!(
                std::fs::read(&path).unwrap() == model,
                "seed {seed}: the file differs from the model"
            );
        }
    }

    #[test]
    fn a_waited_direct_write_is_done_on_this_thread_after_the_ring_writes_before_it() {
        let Some(DirectSetup {
            mut q,
            file,
            path,
            _dir,
        }) = direct_setup(64 << 10)
        else {
            return;
        };
        let (first, second) = (pattern(1, 5000), pattern(2, 3000));
        q.write(&file, first.clone(), 0);
        q.write_waited(&file, second.clone(), 5000);
        // Before any reap: the ring's write finished first, the waited one
        // was written by the call itself, over the first's partial block.
        assert_eq!(q.live, 0, "nothing left in the ring");
        let mut model = first.clone();
        model.extend_from_slice(&second);
        assert_eq!(std::fs::read(&path).unwrap()[..8000], model[..]);
        q.sync_now(&file, 1);
        let out = drain_ready(&mut q);
        assert!(
            matches!(
                &out[..],
                [
                    Completion::Write {
                        result: Ok(()),
                        written: 5000,
                        ..
                    },
                    Completion::Write {
                        result: Ok(()),
                        written: 3000,
                        ..
                    },
                    Completion::Sync {
                        token: 1,
                        result: Ok(())
                    },
                ]
            ),
            "{out:?}"
        );
        assert_eq!(q.fsyncs_issued, 0);
        // An injected failure reaches it, with none of its bytes counted.
        q.inject_failure(InjectOp::Write, libc::EIO);
        q.write_waited(&file, pattern(3, 10), 8000);
        let out = drain_ready(&mut q);
        assert!(
            matches!(&out[..], [Completion::Write { result: Err(e), written: 0, .. }] if e.raw_os_error() == Some(libc::EIO)),
            "{out:?}"
        );
    }

    /// What the queue has ready, without waiting.
    fn drain_ready(q: &mut UringQueue) -> Vec<Completion> {
        let mut out = Vec::new();
        q.reap(false, &mut out);
        out
    }

    #[test]
    fn a_folded_sync_waits_for_its_writes_and_signals_the_event_fd() {
        let Some(DirectSetup {
            mut q, file, _dir, ..
        }) = direct_setup(64 << 10)
        else {
            return;
        };
        // Not before the write has completed.
        q.write(&file, pattern(1, 5000), 0);
        q.sync(&file, 1);
        let out = drain(&mut q);
        assert!(
            matches!(out[0], Completion::Write { result: Ok(()), .. }),
            "{out:?}"
        );
        assert!(
            matches!(
                out[1],
                Completion::Sync {
                    token: 1,
                    result: Ok(())
                }
            ),
            "{out:?}"
        );
        // Nothing written since: done at once, and an event loop hears of
        // it.
        q.sync(&file, 2);
        assert!(readable(q.event_fd(), 1000));
        let mut out = Vec::new();
        q.reap(false, &mut out);
        assert!(
            matches!(
                out[..],
                [Completion::Sync {
                    token: 2,
                    result: Ok(())
                }]
            ),
            "{out:?}"
        );
        // An injected failure reaches a folded sync.
        q.inject_failure(InjectOp::Sync, libc::EIO);
        q.sync(&file, 3);
        let out = drain(&mut q);
        assert!(
            matches!(out[..], [Completion::Sync { token: 3, result: Err(ref e) }] if e.raw_os_error() == Some(libc::EIO)),
            "{out:?}"
        );
        assert_eq!(q.fsyncs_issued, 0);
    }

    #[test]
    fn a_failed_direct_write_reports_none_of_its_bytes_and_the_next_reads_its_block_back() {
        let Some(DirectSetup {
            mut q,
            file,
            path,
            _dir,
        }) = direct_setup(64 << 10)
        else {
            return;
        };
        let (a, b, c) = (pattern(1, 1000), pattern(2, 2000), pattern(3, 300));
        q.write(&file, a.clone(), 0);
        let out = drain(&mut q);
        assert!(matches!(
            out[..],
            [Completion::Write { result: Ok(()), .. }]
        ));
        q.inject_failure(InjectOp::Write, libc::EIO);
        q.write(&file, b.clone(), 1000);
        let out = drain(&mut q);
        assert!(
            matches!(&out[..], [Completion::Write { result: Err(e), written: 0, .. }] if e.raw_os_error() == Some(libc::EIO)),
            "{out:?}"
        );
        // The failed write's staged block is forgotten: the next write at
        // its end takes the block from the file (here the kernel did write
        // it; only its result was replaced), not from memory.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all_at(&[0xAB; 8], 2992)
            .unwrap();
        q.write(&file, c.clone(), 3000);
        drain(&mut q);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..1000], &a[..]);
        assert_eq!(&bytes[1000..2992], &b[..1992]);
        assert_eq!(&bytes[2992..3000], &[0xAB; 8]);
        assert_eq!(&bytes[3000..3300], &c[..]);
        assert!(bytes[3300..].iter().all(|&x| x == 0));
    }

    #[test]
    fn write_now_is_done_at_once_and_takes_injected_failures() {
        require_uring!();
        let dir = tempfile::tempdir().unwrap();
        let (file, path) = temp_file(&dir, "seg");
        let mut q = queue(8);
        let buf = pattern(9, 5000);
        q.write_now(&file, buf.clone(), 0);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            buf,
            "written before the call returns"
        );
        q.inject_failure(InjectOp::Write, libc::EIO);
        q.write_now(&file, pattern(10, 100), 5000);
        let mut out = Vec::new();
        q.reap(false, &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(matches!(&out[0], Completion::Write { buf: b, result: Ok(()), .. } if *b == buf));
        assert!(
            matches!(&out[1], Completion::Write { result: Err(e), .. } if e.raw_os_error() == Some(libc::EIO))
        );
        assert_eq!(q.in_flight(), 0);
    }

    #[test]
    fn a_long_write_in_pieces_completes_once() {
        require_uring!();
        let dir = tempfile::tempdir().unwrap();
        let (file, path) = temp_file(&dir, "seg");
        let mut q = queue(8);
        q.max_chunk = 1000;
        let buf = pattern(3, 10_000);
        q.write(&file, buf.clone(), 5);
        q.sync(&file, 1);
        let done = drain(&mut q);
        assert_eq!(done.len(), 2);
        assert!(matches!(&done[0], Completion::Write { buf: b, result: Ok(()), .. } if *b == buf));
        assert!(matches!(
            done[1],
            Completion::Sync {
                token: 1,
                result: Ok(())
            }
        ));
        assert_eq!(q.resubmitted_writes, 9);
        assert_eq!(std::fs::read(&path).unwrap()[5..], buf[..]);
    }

    #[test]
    fn an_idle_queue_reaps_nothing_and_never_blocks() {
        require_uring!();
        let mut q = queue(8);
        let mut out = Vec::new();
        q.reap(false, &mut out);
        assert!(out.is_empty());
        q.reap(true, &mut out);
        assert!(
            out.is_empty(),
            "wait with nothing in flight returns at once"
        );
        assert_eq!(q.in_flight(), 0);
        assert!(!readable(q.event_fd(), 0));
    }

    #[test]
    fn event_fd_turns_readable_on_completion_and_quiet_after_reap() {
        require_uring!();
        let dir = tempfile::tempdir().unwrap();
        let (file, _) = temp_file(&dir, "seg");
        let mut q = queue(8);
        let fd = q.event_fd();
        let mut out = Vec::new();
        assert!(!readable(fd, 0));

        q.write(&file, vec![1; 4096], 0);
        assert!(readable(fd, 5000), "a finished write wakes the event fd");
        q.reap(false, &mut out);
        assert_eq!(out.len(), 1, "what woke the fd is there to reap");
        assert!(!readable(fd, 0), "reap drained the event fd");

        q.sync(&file, 1);
        assert!(readable(fd, 5000), "a finished sync wakes the event fd");
        q.reap(false, &mut out);
        assert!(matches!(out[1], Completion::Sync { token: 1, .. }));
        assert!(!readable(fd, 0));

        // Finished without the kernel: still a wake-up.
        q.write(&file, Vec::new(), 0);
        assert!(readable(fd, 0));
        q.reap(false, &mut out);
        assert!(matches!(&out[2], Completion::Write { buf, result: Ok(()), .. } if buf.is_empty()));
        assert!(!readable(fd, 0));
        assert_eq!(q.in_flight(), 0);
    }

    #[test]
    fn injected_write_failures_are_reported_once_with_their_errno() {
        require_uring!();
        let dir = tempfile::tempdir().unwrap();
        let (file, _) = temp_file(&dir, "seg");
        let mut q = queue(8);
        q.inject_failure(InjectOp::Write, libc::EIO);
        q.inject_failure(InjectOp::Write, libc::ECANCELED);
        for i in 0..4u64 {
            q.write(&file, pattern(i, 4096), i * 4096);
        }
        q.sync(&file, 9);
        let done = drain(&mut q);
        let mut errnos = Vec::new();
        let mut seeds = Vec::new();
        let mut syncs = Vec::new();
        for c in &done {
            match c {
                Completion::Write { buf, result, .. } => {
                    seeds.push(seed_of(buf));
                    errnos.extend(errno_of(result));
                }
                Completion::Sync { token, result } => syncs.push((*token, errno_of(result))),
            }
        }
        errnos.sort();
        let mut injected = vec![libc::EIO, libc::ECANCELED];
        injected.sort();
        assert_eq!(errnos, injected);
        seeds.sort();
        assert_eq!(seeds, vec![0, 1, 2, 3], "every buffer back, once");
        // The fsync waits for the writes but is not cancelled when one
        // fails: it runs, and reports its own (good) result.
        assert_eq!(syncs, vec![(9, None)]);
        let mut more = Vec::new();
        q.reap(false, &mut more);
        assert!(more.is_empty(), "nothing reported twice");
        assert_eq!(q.in_flight(), 0);
    }

    #[test]
    fn an_injected_sync_failure_is_reported_with_its_token() {
        require_uring!();
        let dir = tempfile::tempdir().unwrap();
        let (file, _) = temp_file(&dir, "seg");
        let mut q = queue(8);
        q.inject_failure(InjectOp::Sync, libc::EIO);
        q.write(&file, pattern(0, 4096), 0);
        q.sync(&file, 1);
        q.write(&file, pattern(1, 4096), 4096);
        q.sync(&file, 2);
        let done = drain(&mut q);
        let summary: Vec<(char, Option<i32>)> = done
            .iter()
            .map(|c| match c {
                Completion::Write { result, .. } => ('w', errno_of(result)),
                Completion::Sync { token, result } => {
                    (char::from(b'0' + *token as u8), errno_of(result))
                }
            })
            .collect();
        // Each sync comes after the write before it; the two syncs may
        // finish in either order, and whichever finishes first carries the
        // injected failure, once.
        let at = |c: char| summary.iter().position(|&(k, _)| k == c).unwrap();
        let writes: Vec<usize> = (0..summary.len())
            .filter(|&i| summary[i] == ('w', None))
            .collect();
        assert_eq!(writes.len(), 2, "{summary:?}");
        assert!(at('1') > writes[0] && at('2') > writes[1], "{summary:?}");
        let syncs: Vec<Option<i32>> = summary
            .iter()
            .filter(|&&(k, _)| k != 'w')
            .map(|&(_, errno)| errno)
            .collect();
        assert_eq!(syncs, vec![Some(libc::EIO), None], "{summary:?}");
        assert_eq!(q.in_flight(), 0);
    }

    #[test]
    fn more_operations_than_the_completion_queue_holds_all_finish() {
        require_uring!();
        let dir = tempfile::tempdir().unwrap();
        let (file, path) = temp_file(&dir, "seg");
        let mut q = queue(8);
        assert_eq!(q.cq_cap, 16);
        let mut model = Vec::new();
        for i in 0..100u64 {
            let buf = pattern(i, 3000);
            put(&mut model, i * 3000, &buf);
            q.write(&file, buf, i * 3000);
            assert!(q.in_ring <= q.cq_cap);
        }
        q.sync(&file, 1);
        assert_eq!(q.in_flight(), 101);
        let mut out = Vec::new();
        while q.in_flight() > 0 {
            q.reap(true, &mut out);
            assert!(q.in_ring <= q.cq_cap);
        }
        assert_eq!(out.len(), 101);
        let ok_writes = out
            .iter()
            .filter(|c| matches!(c, Completion::Write { result: Ok(()), .. }))
            .count();
        assert_eq!(ok_writes, 100);
        assert!(matches!(
            out.last(),
            Some(Completion::Sync {
                token: 1,
                result: Ok(())
            })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), model);
    }

    #[test]
    fn a_queue_dropped_with_operations_in_flight_finishes_them_first() {
        require_uring!();
        let dir = tempfile::tempdir().unwrap();
        let (file, path) = temp_file(&dir, "seg");
        let mut model = Vec::new();
        {
            let mut q = queue(8);
            q.max_chunk = 5000;
            for i in 0..200u64 {
                let buf = pattern(i, 16 * 1024);
                put(&mut model, i * 16 * 1024, &buf);
                q.write(&file, buf, i * 16 * 1024);
            }
            q.sync(&file, 1);
            assert!(q.in_flight() > 0);
        }
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), model);
    }

    #[test]
    fn files_use_registered_slots_and_release_them_when_dropped() {
        require_uring!();
        let dir = tempfile::tempdir().unwrap();
        let mut q = queue(64);
        assert_eq!(
            q.files.len(),
            FIXED_FILES as usize,
            "registration works here"
        );
        let n = FIXED_FILES as usize + 4;
        let files: Vec<(Arc<File>, PathBuf)> =
            (0..n).map(|i| temp_file(&dir, &format!("f{i}"))).collect();
        for (i, (file, _)) in files.iter().enumerate() {
            q.write(file, pattern(i as u64, 100), 0);
            q.sync(file, i as u64);
        }
        let plain = q
            .ops
            .iter()
            .flatten()
            .filter(|op| matches!(op.target, Target::Fd(_)))
            .count();
        assert_eq!(plain, 8, "four files beyond the table, two requests each");
        let done = drain(&mut q);
        assert_eq!(done.len(), 2 * n);
        assert!(done.iter().all(|c| match c {
            Completion::Write { result, .. } | Completion::Sync { result, .. } => result.is_ok(),
        }));
        for (i, (_, path)) in files.iter().enumerate() {
            assert_eq!(std::fs::read(path).unwrap(), pattern(i as u64, 100));
        }
        // A slot is reused for a file seen before.
        let again = Arc::clone(&files[0].0);
        q.write(&again, pattern(0, 100), 0);
        assert!(matches!(
            q.ops.iter().flatten().next().unwrap().target,
            Target::Fixed(_)
        ));
        drain(&mut q);
        drop(again);
        drop(files);
        q.reap(false, &mut Vec::new());
        assert!(
            q.files.iter().all(|s| s.file.is_none()),
            "slots of dropped files are unregistered"
        );
    }

    #[test]
    fn without_registered_files_plain_descriptors_work() {
        require_uring!();
        let dir = tempfile::tempdir().unwrap();
        let (file, path) = temp_file(&dir, "seg");
        let mut q = queue(8);
        q.files.clear();
        q.write(&file, pattern(1, 5000), 0);
        q.sync(&file, 1);
        assert!(matches!(
            q.ops.iter().flatten().next().unwrap().target,
            Target::Fd(_)
        ));
        let done = drain(&mut q);
        assert_eq!(done.len(), 2);
        assert_eq!(std::fs::read(&path).unwrap(), pattern(1, 5000));
    }

    #[test]
    fn sqpoll_queue_writes_and_syncs() {
        require_uring!();
        let options = UringOptions {
            entries: 16,
            sqpoll: true,
            sqpoll_idle_ms: 10,
            ..UringOptions::default()
        };
        let mut q = match UringQueue::new_with(options, false) {
            Ok(q) => q,
            Err(e) => {
                eprintln!("skipping: SQPOLL unavailable here: {e}");
                return;
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let (file, path) = temp_file(&dir, "seg");
        let mut model = Vec::new();
        for i in 0..50u64 {
            let buf = pattern(i, 2000);
            put(&mut model, i * 2000, &buf);
            q.write(&file, buf, i * 2000);
            if i % 10 == 9 {
                q.sync(&file, i);
            }
        }
        let done = drain(&mut q);
        assert_eq!(done.len(), 55);
        let tokens: Vec<u64> = done
            .iter()
            .filter_map(|c| match c {
                Completion::Sync { token, result } => {
                    assert!(result.is_ok());
                    Some(*token)
                }
                Completion::Write { result, .. } => {
                    assert!(result.is_ok());
                    None
                }
            })
            .collect();
        let mut sorted = tokens.clone();
        sorted.sort();
        assert_eq!(sorted, vec![9, 19, 29, 39, 49], "each sync once");
        assert_eq!(std::fs::read(&path).unwrap(), model);
    }

    #[test]
    fn kernel_short_writes_are_resubmitted_until_all_bytes_are_written() {
        require_uring!();
        // A pipe smaller than the write, drained slowly: the kernel's
        // non-blocking attempt writes what fits and completes short.
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the live array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both descriptors were just created and are owned here only.
        let (mut reader, writer) =
            unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        // SAFETY: integer arguments on a descriptor owned here.
        unsafe { libc::fcntl(writer.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
        let writer = Arc::new(writer);
        let drained = std::thread::spawn(move || {
            use std::io::Read;
            let mut got = Vec::new();
            let mut chunk = [0u8; 1000];
            loop {
                std::thread::sleep(Duration::from_millis(1));
                match reader.read(&mut chunk).unwrap() {
                    0 => return got,
                    n => got.extend_from_slice(&chunk[..n]),
                }
            }
        });
        let mut q = queue(8);
        let buf = pattern(5, 64 * 1024);
        q.write(&writer, buf.clone(), 0);
        let done = drain(&mut q);
        assert_eq!(done.len(), 1);
        assert!(matches!(&done[0], Completion::Write { buf: b, result: Ok(()), .. } if *b == buf));
        assert!(
            q.resubmitted_writes > 0,
            "the kernel wrote the whole buffer at once; no short write to test"
        );
        drop(q);
        drop(writer);
        assert_eq!(drained.join().unwrap(), buf, "every byte once, in order");
    }

    #[test]
    fn a_broken_ring_fails_every_request_and_never_frees_what_the_kernel_holds() {
        require_uring!();
        let dir = tempfile::tempdir().unwrap();
        let (file, _) = temp_file(&dir, "seg");
        let mut q = queue(8);
        for i in 0..30u64 {
            q.write(&file, pattern(i, 4096), i * 4096);
        }
        q.sync(&file, 1);
        let held_writes = q
            .ops
            .iter()
            .flatten()
            .filter(|op| op.in_ring && matches!(op.kind, OpKind::Write { .. }))
            .count();
        let finished = q.ready.len();
        q.break_down(io::Error::from_raw_os_error(libc::EBADF));
        q.write(&file, pattern(99, 10), 0);
        q.sync(&file, 2);
        assert!(readable(q.event_fd(), 0));
        let done = drain(&mut q);
        assert_eq!(done.len(), 30 + 1 + 2);
        let mut failed = 0;
        let mut leaked = 0;
        for c in &done {
            match c {
                Completion::Write { buf, result, .. } => {
                    if result.is_err() {
                        assert_eq!(errno_of(result), Some(libc::EBADF));
                        failed += 1;
                        leaked += usize::from(buf.is_empty());
                    }
                }
                Completion::Sync { result, .. } => {
                    assert_eq!(errno_of(result), Some(libc::EBADF));
                }
            }
        }
        assert_eq!(failed, 30 - finished + 1, "all but the finished ones fail");
        assert_eq!(
            leaked, held_writes,
            "buffers the kernel may hold are never freed"
        );
        assert_eq!(q.in_flight(), 0);
    }

    #[test]
    fn probe_and_new_honour_the_disable_switch() {
        assert_eq!(probe_with(true), Err(DISABLED_MESSAGE.to_owned()));
        let err = UringQueue::new_with(UringOptions::default(), true)
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        assert_eq!(err.to_string(), DISABLED_MESSAGE);
        use std::ffi::OsStr;
        assert!(disabled_by(Some(OsStr::new("1"))));
        assert!(!disabled_by(Some(OsStr::new("0"))));
        assert!(!disabled_by(Some(OsStr::new(""))));
        assert!(!disabled_by(None));
        match probe_with(false) {
            Ok(()) => {}
            Err(why) => eprintln!("io_uring unavailable here: {why}"),
        }
    }

    #[test]
    fn setup_errors_say_what_to_check() {
        let eperm = setup_error(&io::Error::from_raw_os_error(libc::EPERM));
        assert!(eperm.starts_with("io_uring_setup: "), "{eperm}");
        assert!(eperm.contains("kernel.io_uring_disabled"), "{eperm}");
        require_uring!();
        let err = UringQueue::new_with(
            UringOptions {
                entries: 0,
                ..UringOptions::default()
            },
            false,
        )
        .err()
        .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
