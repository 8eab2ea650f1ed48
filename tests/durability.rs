//! Submit / poll / wait, the event fd, group commit and failure semantics of
//! SPEC §3, on the fault-injecting backend and on real files.

mod common;

use std::time::{Duration, Instant};

use common::*;
use corewal::io::FaultOp;
use corewal::{Error, Manager, MemIo, Options};

fn readable(fd: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n == 1 && pfd.revents & libc::POLLIN != 0
}

#[test]
fn each_completion_reports_the_boundary_recorded_at_submit() {
    let io = MemIo::new();
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    w.append_put(b"a", b"1").unwrap();
    let first_boundary = w.position();
    let t1 = w.sync_submit().unwrap();
    w.append_put(b"b", b"2").unwrap();
    let second_boundary = w.position();
    let t2 = w.sync_submit().unwrap();
    w.append_put(b"c", b"not covered").unwrap();
    assert!(t2 > t1);
    let done = w.poll(16).unwrap();
    let got: Vec<(u64, u64, bool)> = done
        .iter()
        .map(|c| (c.token, c.synced_position, c.result.is_ok()))
        .collect();
    assert_eq!(
        got,
        vec![(t1, first_boundary, true), (t2, second_boundary, true)]
    );
    assert_eq!(
        w.synced_position(),
        second_boundary,
        "appends after the submit are not covered"
    );
    assert!(w.position() > w.synced_position());
}

#[test]
fn poll_never_blocks_and_answers_nothing_when_idle() {
    let io = MemIo::new();
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    assert!(w.poll(8).unwrap().is_empty());
    w.append_put(b"k", b"v").unwrap();
    assert!(
        w.poll(8).unwrap().is_empty(),
        "an append alone finishes no sync"
    );
}

#[test]
fn poll_hands_out_at_most_cap_and_keeps_the_rest_in_order() {
    let io = MemIo::new();
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    let tokens: Vec<u64> = (0..3)
        .map(|i: u32| {
            w.append_put(&i.to_be_bytes(), b"v").unwrap();
            w.sync_submit().unwrap()
        })
        .collect();
    let first = w.poll(1).unwrap();
    assert_eq!(
        first.iter().map(|c| c.token).collect::<Vec<_>>(),
        tokens[..1]
    );
    let rest = w.poll(0).unwrap();
    assert!(rest.is_empty(), "cap 0 hands out nothing");
    let rest = w.poll(10).unwrap();
    assert_eq!(
        rest.iter().map(|c| c.token).collect::<Vec<_>>(),
        tokens[1..]
    );
    assert!(
        rest.windows(2)
            .all(|p| p[0].synced_position < p[1].synced_position)
    );
}

#[test]
fn wait_takes_its_token_and_leaves_the_others_for_poll() {
    let io = MemIo::new();
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    w.append_put(b"a", b"1").unwrap();
    let t1 = w.sync_submit().unwrap();
    w.append_put(b"b", b"2").unwrap();
    let t2 = w.sync_submit().unwrap();
    let done = w.wait(t2).unwrap();
    assert_eq!((done.token, done.synced_position), (t2, w.position()));
    let polled: Vec<u64> = w.poll(8).unwrap().iter().map(|c| c.token).collect();
    assert_eq!(polled, vec![t1]);
    assert!(
        matches!(w.wait(t2), Err(Error::NotFound(_))),
        "already reported"
    );
    assert!(
        matches!(w.wait(999), Err(Error::NotFound(_))),
        "never issued"
    );
}

#[test]
fn the_event_fd_turns_readable_with_completions_and_poll_quiets_it() {
    let io = MemIo::new();
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    let fd = w.event_fd();
    assert!(fd >= 0);
    assert!(!readable(fd));
    w.append_put(b"k", b"v").unwrap();
    w.sync_submit().unwrap();
    assert!(readable(fd));
    assert_eq!(w.poll(8).unwrap().len(), 1);
    assert!(!readable(fd), "poll drains the event fd");
    m.close().unwrap();
    assert_eq!(w.event_fd(), -1, "a closed writer has no descriptor");
}

#[test]
fn a_sync_after_rotation_also_waits_for_the_full_segments() {
    let io = MemIo::new();
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    for i in 0..40u32 {
        w.append_put(&i.to_be_bytes(), &[b'x'; 1000]).unwrap();
    }
    assert!(
        io.contents(&segment(0, 2)).is_some(),
        "rotated at least twice"
    );
    let token = w.sync_submit().unwrap();
    let done = w.wait(token).unwrap();
    assert_eq!(done.synced_position, w.position());
    io.crash();
    drop(m);
    io.restart();
    assert_eq!(
        read_all(&io, dir()).unwrap().len(),
        40,
        "every segment is durable"
    );
}

#[test]
fn a_failed_sync_completes_with_its_error_and_poisons_the_writer() {
    let io = MemIo::new();
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    w.append_put(b"a", b"1").unwrap();
    w.sync().unwrap();
    let durable = w.synced_position();
    w.append_put(b"b", b"2").unwrap();
    io.fail(FaultOp::SyncData, "wal-00000-", 0, Some(1), libc::EIO);
    let token = w
        .sync_submit()
        .expect("the failure shows in the completion");
    let done = w.poll(8).unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].token, token);
    assert!(done[0].result.as_ref().unwrap_err().contains("fdatasync"));
    assert_eq!(done[0].synced_position, durable);
    assert_eq!(
        w.synced_position(),
        durable,
        "never past the last good sync"
    );
    assert!(
        matches!(w.poll(8), Err(Error::Poisoned(_))),
        "then poll itself reports it"
    );
    assert!(matches!(w.sync_submit(), Err(Error::Poisoned(_))));
    assert!(matches!(w.append_put(b"c", b"3"), Err(Error::Poisoned(_))));
}

#[test]
fn wait_on_a_failed_sync_reports_poisoned() {
    let io = MemIo::new();
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    w.append_put(b"a", b"1").unwrap();
    io.fail(FaultOp::SyncData, "wal-00000-", 0, Some(1), libc::EIO);
    let token = w.sync_submit().unwrap();
    let done = w.wait(token).unwrap();
    assert!(done.result.is_err());
    assert_eq!(w.synced_position(), 0);
}

#[test]
fn group_commit_syncs_are_not_reported_and_do_not_pile_up() {
    let io = MemIo::new();
    let opts = Options {
        sync_every_records: 4,
        ..options(1)
    };
    let m = Manager::open_with(io.clone(), dir(), &opts).unwrap();
    let w = m.writer(0).unwrap();
    for i in 0..400u32 {
        w.append_put(&i.to_be_bytes(), b"v").unwrap();
    }
    // The last sync may still wait for a full segment's background sync; it
    // completes at a later call into the writer.
    let deadline = Instant::now() + Duration::from_secs(5);
    while w.synced_position() < w.position() {
        assert!(
            Instant::now() < deadline,
            "group commit never made the appends durable"
        );
        assert!(
            w.poll(1000).unwrap().is_empty(),
            "only syncs the caller asked for are reported"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(w.poll(1000).unwrap().is_empty());
}

#[test]
fn poll_submits_a_sync_when_the_interval_is_due() {
    let io = MemIo::new();
    let opts = Options {
        sync_interval_us: 2_000,
        ..options(1)
    };
    let m = Manager::open_with(io.clone(), dir(), &opts).unwrap();
    let w = m.writer(0).unwrap();
    w.append_put(b"k", b"v").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while w.synced_position() < w.position() {
        assert!(
            Instant::now() < deadline,
            "poll never submitted the due sync"
        );
        std::thread::sleep(Duration::from_millis(1));
        w.poll(8).unwrap();
    }
}

#[test]
fn real_files_pipeline_syncs_while_appending() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let m = Manager::open(
        &dir,
        &Options {
            num_cores: 1,
            segment_bytes: 1 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    let w = m.writer(0).unwrap();
    let mut submitted = Vec::new();
    let mut completed = Vec::new();
    for i in 0..20_000u32 {
        w.append_put(&i.to_be_bytes(), &[7u8; 100]).unwrap();
        if i % 64 == 63 {
            submitted.push((w.sync_submit().unwrap(), w.position()));
        }
        completed.extend(w.poll(64).unwrap());
    }
    while completed.len() < submitted.len() {
        completed.extend(w.poll(64).unwrap());
    }
    let got: Vec<(u64, u64)> = completed
        .iter()
        .map(|c| (c.token, c.synced_position))
        .collect();
    assert_eq!(
        got, submitted,
        "every token once, in order, with its boundary"
    );
    m.close().unwrap();
    assert_eq!(
        read_all(&corewal::FileIo::default(), &dir).unwrap().len(),
        20_000
    );
}

#[test]
fn enospc_before_any_byte_is_written_is_a_clean_error() {
    let io = MemIo::new();
    let opts = Options {
        segment_bytes: 4 << 20,
        ..options(1)
    };
    let m = Manager::open_with(io.clone(), dir(), &opts).unwrap();
    let w = m.writer(0).unwrap();
    io.fail(
        FaultOp::Write,
        "wal-00000-0000000000",
        0,
        Some(1),
        libc::ENOSPC,
    );
    let mut appended = 0u32;
    let err = loop {
        match w.append_put(&appended.to_be_bytes(), &[b'v'; 200]) {
            Ok(_) => appended += 1,
            Err(e) => break e,
        }
        assert!(appended < 10_000, "the buffer never flushed");
    };
    assert!(
        matches!(&err, Error::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC)),
        "{err}"
    );
    // Not poisoned: space is back, the same records go out on the next sync.
    w.append_put(b"after", b"space came back").unwrap();
    w.sync().expect("the writer is still usable");
    io.crash();
    drop(m);
    io.restart();
    let recs = read_all(&io, dir()).unwrap();
    assert_eq!(
        recs.len(),
        appended as usize + 1,
        "every acknowledged append, once"
    );
    assert_eq!(recs.last().unwrap().op, "put after space came back");
}

#[test]
fn enospc_in_the_flush_of_a_sync_issues_no_token_and_loses_nothing() {
    let io = MemIo::new();
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    w.append_put(b"a", b"1").unwrap();
    io.fail(
        FaultOp::Write,
        "wal-00000-0000000000",
        0,
        None,
        libc::ENOSPC,
    );
    // The sync's own flush fails: nothing is lost, no token is issued.
    assert!(matches!(w.sync_submit(), Err(Error::Io { .. })));
    io.clear_faults();
    let token = w.sync_submit().unwrap();
    assert!(w.wait(token).unwrap().result.is_ok());
}
