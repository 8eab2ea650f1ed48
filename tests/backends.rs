//! The same scenarios on real files through both backends: the blocking
//! queue (pwrite + fdatasync) and io_uring, each through the page cache
//! only, with direct writes before syncs (the default) and with every write
//! direct. Failure paths of io_uring are driven by injected failed
//! completions.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::read_all;
use corewal::uring::InjectOp;
use corewal::{Backend, Error, FileIo, Manager, Options};

/// Which segment writes go direct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direct {
    /// None (`direct_sync` off): every sync is an fdatasync.
    PageCache,
    /// The write before a sync that is alone (the default, `direct_sync`).
    BeforeSyncs,
    /// Every write (`direct_io`).
    Every,
}

const DIRECT: [Direct; 3] = [Direct::PageCache, Direct::BeforeSyncs, Direct::Every];

/// A backend, and which segment writes go direct.
#[derive(Debug, Clone, Copy)]
struct Setup {
    backend: Backend,
    direct: Direct,
}

const SETUPS: [Setup; 6] = {
    let mut setups = [Setup {
        backend: Backend::Sync,
        direct: Direct::PageCache,
    }; 6];
    let mut i = 0;
    while i < 6 {
        setups[i] = Setup {
            backend: if i % 2 == 0 {
                Backend::Sync
            } else {
                Backend::IoUring
            },
            direct: DIRECT[i / 2],
        };
        i += 1;
    }
    setups
};

fn options(setup: Setup, lanes: u32) -> Options {
    Options {
        num_cores: lanes,
        segment_bytes: 256 << 10,
        backend: setup.backend,
        direct_io: setup.direct == Direct::Every,
        direct_sync: setup.direct == Direct::BeforeSyncs,
        ..Options::default()
    }
}

fn open(dir: &Path, setup: Setup, lanes: u32) -> Manager<FileIo> {
    let m = Manager::open(dir, &options(setup, lanes)).unwrap();
    let used = m.backend();
    assert_eq!(used.backend, setup.backend, "{setup:?} was not used");
    assert_eq!(used.direct_io, setup.direct == Direct::Every, "{setup:?}");
    assert_eq!(
        used.direct_sync,
        setup.direct == Direct::BeforeSyncs,
        "{setup:?}"
    );
    m
}

#[test]
fn lanes_on_threads_round_trip_and_continue_after_reopen() {
    for setup in SETUPS {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        for round in 0..2u8 {
            let m = open(&dir, setup, 2);
            std::thread::scope(|s| {
                for core in 0..2 {
                    let w = m.writer(core).unwrap();
                    s.spawn(move || {
                        for i in 0..3000u32 {
                            w.append_put(&i.to_be_bytes(), &[round; 100]).unwrap();
                        }
                        w.sync().unwrap();
                        assert_eq!(w.synced_position(), w.position());
                    });
                }
            });
            assert_eq!(m.writer(1).unwrap().sequence(), 3000 * (round as u64 + 1));
            m.close().unwrap();
        }
        assert_eq!(
            read_all(&FileIo::default(), &dir).unwrap().len(),
            12_000,
            "{setup:?}"
        );
    }
}

#[test]
fn pipelined_syncs_across_rotations_complete_in_order() {
    for setup in SETUPS {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let m = open(&dir, setup, 1);
        let w = m.writer(0).unwrap();
        let (mut submitted, mut completed) = (Vec::new(), Vec::new());
        for i in 0..20_000u32 {
            w.append_put(&i.to_be_bytes(), &[3u8; 100]).unwrap();
            if i % 64 == 63 {
                submitted.push((w.sync_submit().unwrap(), w.position()));
            }
            completed.extend(
                w.poll(64)
                    .unwrap()
                    .into_iter()
                    .map(|c| (c.token, c.synced_position)),
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while completed.len() < submitted.len() {
            assert!(Instant::now() < deadline, "{setup:?}: syncs never finished");
            completed.extend(
                w.poll(64)
                    .unwrap()
                    .into_iter()
                    .map(|c| (c.token, c.synced_position)),
            );
        }
        assert_eq!(completed, submitted, "{setup:?}");
        assert!(
            dir.join("wal-00000-0000000010.log").exists(),
            "rotated many times"
        );
        m.close().unwrap();
        assert_eq!(read_all(&FileIo::default(), &dir).unwrap().len(), 20_000);
    }
}

#[test]
fn wait_blocks_until_the_token_is_durable() {
    for setup in SETUPS {
        let tmp = tempfile::tempdir().unwrap();
        let m = open(&tmp.path().join("wal"), setup, 1);
        let w = m.writer(0).unwrap();
        w.append_put(b"k", &[1u8; 4000]).unwrap();
        let token = w.sync_submit().unwrap();
        let done = w.wait(token).unwrap();
        assert_eq!(
            (done.token, done.synced_position),
            (token, w.position()),
            "{setup:?}"
        );
        assert_eq!(w.synced_position(), w.position());
    }
}

/// Whether `fd` turns readable within `timeout_ms`.
fn readable_within(fd: std::os::fd::RawFd, timeout_ms: i32) -> bool {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, and the count says one.
    unsafe { libc::poll(&mut pollfd, 1, timeout_ms) == 1 }
}

#[test]
fn the_event_fd_wakes_a_poller_for_syncs_that_wait_for_a_full_segment() {
    for setup in SETUPS {
        let tmp = tempfile::tempdir().unwrap();
        let m = open(&tmp.path().join("wal"), setup, 1);
        let w = m.writer(0).unwrap();
        for round in 0..30u32 {
            // More than a 256 KiB segment: the sync also waits for the
            // fdatasync of the full one, which runs on its own thread.
            for i in 0..80u32 {
                w.append_put(&(round * 100 + i).to_be_bytes(), &[7u8; 4000])
                    .unwrap();
            }
            let token = w.sync_submit().unwrap();
            // An event loop: poll, and sleep on the fd when nothing is ready.
            let done = loop {
                if let Some(done) = w.poll(1).unwrap().pop() {
                    break done;
                }
                assert!(
                    readable_within(w.event_fd(), 5_000),
                    "{setup:?} round {round}: sync {token} pending and the event fd quiet for 5 s"
                );
            };
            assert_eq!(
                (done.token, done.synced_position),
                (token, w.position()),
                "{setup:?}"
            );
        }
    }
}

#[test]
fn torn_tail_on_disk_is_cut_at_reopen() {
    for setup in SETUPS {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let m = open(&dir, setup, 1);
        let w = m.writer(0).unwrap();
        for i in 0..10u32 {
            w.append_put(&i.to_be_bytes(), b"kept").unwrap();
        }
        let end = w.position();
        m.close().unwrap();
        drop(m);
        use std::os::unix::fs::FileExt;
        let seg = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("wal-00000-0000000000.log"))
            .unwrap();
        seg.write_all_at(&[0xAB; 40], 64 + end).unwrap();
        let m = open(&dir, setup, 1);
        assert_eq!(m.writer(0).unwrap().position(), end, "{setup:?}");
        m.writer(0).unwrap().append_put(b"new", b"after").unwrap();
        m.close().unwrap();
        assert_eq!(read_all(&FileIo::default(), &dir).unwrap().len(), 11);
    }
}

/// io_uring, with segment writes direct as `direct` says, and the handle
/// to inject failures.
fn open_uring_with_handle(dir: &Path, direct: Direct) -> (Manager<FileIo>, FileIo) {
    let mut io = FileIo::for_backend(Backend::IoUring, Default::default()).unwrap();
    io = match direct {
        Direct::PageCache => io,
        Direct::BeforeSyncs => io.with_direct_sync(dir).unwrap(),
        Direct::Every => io.with_direct_io(dir).unwrap(),
    };
    let setup = Setup {
        backend: Backend::IoUring,
        direct,
    };
    let m = Manager::open_with(io.clone(), dir, &options(setup, 1)).unwrap();
    (m, io)
}

#[test]
fn io_uring_failed_sync_completion_poisons_and_is_reported() {
    for direct in DIRECT {
        failed_sync_completion_poisons_and_is_reported(direct);
    }
}

fn failed_sync_completion_poisons_and_is_reported(direct: Direct) {
    let tmp = tempfile::tempdir().unwrap();
    let (m, io) = open_uring_with_handle(&tmp.path().join("wal"), direct);
    let w = m.writer(0).unwrap();
    w.append_put(b"a", b"1").unwrap();
    w.sync().unwrap();
    let durable = w.synced_position();
    w.append_put(b"b", b"2").unwrap();
    io.inject_failure(InjectOp::Sync, libc::EIO);
    let token = w.sync_submit().unwrap();
    let done = w.wait(token).unwrap();
    assert!(
        done.result.as_ref().unwrap_err().contains("fdatasync"),
        "{done:?}"
    );
    assert_eq!(done.synced_position, durable);
    assert_eq!(
        w.synced_position(),
        durable,
        "never past the last good sync"
    );
    assert!(matches!(w.append_put(b"c", b"3"), Err(Error::Poisoned(_))));
    assert!(matches!(w.sync(), Err(Error::Poisoned(_))));
}

#[test]
fn io_uring_failed_write_completion_poisons() {
    for direct in DIRECT {
        failed_write_completion_poisons(direct);
    }
}

fn failed_write_completion_poisons(direct: Direct) {
    let tmp = tempfile::tempdir().unwrap();
    let (m, io) = open_uring_with_handle(&tmp.path().join("wal"), direct);
    let w = m.writer(0).unwrap();
    w.append_put(b"a", b"1").unwrap();
    io.inject_failure(InjectOp::Write, libc::EIO);
    // The submit flushes the write; its failed completion is reaped either
    // by the submit itself (which then reports the poisoning at once) or by
    // the wait (the token's completion carries it).
    match w.sync_submit() {
        Ok(token) => {
            let done = w.wait(token);
            assert!(
                matches!(&done, Ok(c) if c.result.is_err())
                    || matches!(done, Err(Error::Poisoned(_))),
                "{done:?}"
            );
        }
        Err(e) => assert!(
            matches!(e, Error::Poisoned(ref m) if m.contains("write")),
            "{e}"
        ),
    }
    assert_eq!(w.synced_position(), 0);
    assert!(matches!(w.append_put(b"b", b"2"), Err(Error::Poisoned(_))));
}

#[test]
fn io_uring_failed_write_of_a_full_buffer_poisons() {
    // A full write buffer goes out through the ring (the write before a
    // sync is done directly): fail that one.
    let tmp = tempfile::tempdir().unwrap();
    let (m, io) = open_uring_with_handle(&tmp.path().join("wal"), Direct::PageCache);
    let w = m.writer(0).unwrap();
    io.inject_failure(InjectOp::Write, libc::EIO);
    let value = vec![7u8; 4096];
    let mut appended = 0;
    let failed = loop {
        match w.append_put(b"k", &value) {
            Ok(_) => appended += 1,
            Err(e) => break Some(e),
        }
        if appended == 200 {
            // 800 KiB: several full buffers went out by now.
            break None;
        }
    };
    let outcome = match failed {
        Some(e) => Err(e),
        None => w.sync(),
    };
    assert!(
        matches!(&outcome, Err(Error::Poisoned(m)) if m.contains("write")),
        "{outcome:?}"
    );
    assert_eq!(w.synced_position(), 0);
    assert!(matches!(w.append_put(b"b", b"2"), Err(Error::Poisoned(_))));
}

#[test]
fn io_uring_cancelled_write_is_a_failure_too() {
    let tmp = tempfile::tempdir().unwrap();
    let (m, io) = open_uring_with_handle(&tmp.path().join("wal"), Direct::PageCache);
    let w = m.writer(0).unwrap();
    w.append_put(b"a", b"1").unwrap();
    io.inject_failure(InjectOp::Write, libc::ECANCELED);
    assert!(w.sync().is_err());
    assert!(matches!(w.append_put(b"b", b"2"), Err(Error::Poisoned(msg)) if msg.contains("write")));
}

#[test]
fn direct_writes_before_syncs_are_off_where_segments_do_not_end_on_a_block() {
    for (segment_bytes, on) in [(64 << 10, true), ((64 << 10) + 8, false)] {
        let tmp = tempfile::tempdir().unwrap();
        let options = Options {
            num_cores: 1,
            segment_bytes,
            ..Options::default()
        };
        let m = Manager::open(&tmp.path().join("wal"), &options).unwrap();
        assert_eq!(m.backend().direct_sync, on, "{segment_bytes}-byte segments");
        // Either way the log works: small syncs, reopened and read back.
        let w = m.writer(0).unwrap();
        for i in 0..500u32 {
            w.append_put(&i.to_be_bytes(), &[1; 100]).unwrap();
            w.sync().unwrap();
        }
        m.close().unwrap();
        assert_eq!(
            read_all(&FileIo::default(), &tmp.path().join("wal"))
                .unwrap()
                .len(),
            500
        );
    }
}
