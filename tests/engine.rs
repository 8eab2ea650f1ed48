//! The engine through its Rust API on the fault-injecting in-memory backend:
//! appends, rotation, reopen, crash, poisoning, limits, locks.

mod common;

use common::*;
use corewal::io::{FaultOp, Io};
use corewal::{Error, Manager, MemIo, SourceOffsetRef};

#[test]
fn records_of_every_lane_come_back_in_global_order() {
    let io = MemIo::new();
    let m = open(&io, 3);
    for i in 0..300u32 {
        let w = m.writer(i % 3).unwrap();
        w.append_put(format!("k{i}").as_bytes(), format!("v{i}").as_bytes())
            .unwrap();
    }
    m.writer(1).unwrap().append_delete(b"k1").unwrap();
    let offsets = [
        SourceOffsetRef {
            name: b"topic-a",
            offset: 7,
        },
        SourceOffsetRef {
            name: b"topic-b",
            offset: 9,
        },
    ];
    m.writer(2)
        .unwrap()
        .append_commit(&offsets, Some(-3))
        .unwrap();
    m.writer(0).unwrap().append_checkpoint(42).unwrap();
    m.close().unwrap();
    let recs = read_all(&io, dir()).unwrap();
    assert_eq!(recs.len(), 303);
    for core in 0..3 {
        let want: Vec<String> = (0..300)
            .filter(|i| i % 3 == core)
            .map(|i| format!("put k{i} v{i}"))
            .collect();
        assert_eq!(puts(&recs, core), want, "lane {core}");
        let seqs: Vec<u64> = recs
            .iter()
            .filter(|r| r.core == core)
            .map(|r| r.sequence)
            .collect();
        assert_eq!(
            seqs,
            (0..seqs.len() as u64).collect::<Vec<_>>(),
            "lane {core} sequences"
        );
    }
    assert!(recs.iter().any(|r| r.op == "del k1" && r.core == 1));
    assert!(
        recs.iter()
            .any(|r| r.op == "commit [topic-a=7,topic-b=9] Some(-3)" && r.core == 2)
    );
    assert!(recs.iter().any(|r| r.op == "checkpoint 42" && r.core == 0));
}

#[test]
fn segments_rotate_and_every_record_survives_rotation() {
    let io = MemIo::new();
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    let value = [b'x'; 1000];
    for i in 0..100u32 {
        w.append_put(&i.to_be_bytes(), &value).unwrap();
    }
    m.close().unwrap();
    assert!(
        io.contents(&segment(0, 5)).is_some(),
        "100 KB in 16 KiB segments rotates at least 5 times"
    );
    let recs = read_all(&io, dir()).unwrap();
    assert_eq!(recs.len(), 100);
}

#[test]
fn reopen_continues_sequence_position_clock_and_epoch() {
    let io = MemIo::new();
    let m = open(&io, 2);
    m.advance_epoch().unwrap();
    let w = m.writer(1).unwrap();
    for i in 0..10u32 {
        w.append_put(&i.to_be_bytes(), b"first").unwrap();
    }
    let (position, sequence, epoch) = (w.position(), w.sequence(), m.epoch());
    m.close().unwrap();
    let m = Manager::open_with(io.clone(), dir(), &corewal::Options::default()).unwrap();
    assert_eq!(m.num_cores(), 2, "num_cores 0 takes the directory's count");
    let w = m.writer(1).unwrap();
    assert_eq!(
        (w.position(), w.synced_position(), w.sequence(), m.epoch()),
        (position, position, sequence, epoch)
    );
    assert_eq!(w.append_put(b"next", b"second").unwrap(), position);
    m.close().unwrap();
    let recs = read_all(&io, dir()).unwrap();
    let lane1: Vec<&Rec> = recs.iter().filter(|r| r.core == 1).collect();
    assert_eq!(lane1.len(), 11);
    assert_eq!(lane1.last().unwrap().sequence, 10);
    assert_eq!(lane1.last().unwrap().op, "put next second");
}

#[test]
fn lanes_can_be_added_but_never_dropped() {
    let io = MemIo::new();
    let m = open(&io, 2);
    for core in 0..2 {
        m.writer(core)
            .unwrap()
            .append_put(b"old", &[core as u8])
            .unwrap();
    }
    m.close().unwrap();
    drop(m);
    let err = Manager::open_with(io.clone(), dir(), &options(1))
        .err()
        .unwrap();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("drop lanes"), "{err}");
    let m = open(&io, 4);
    assert_eq!(m.num_cores(), 4);
    assert_eq!(m.writer(1).unwrap().sequence(), 1, "old lanes continue");
    m.writer(3).unwrap().append_put(b"new", b"lane").unwrap();
    m.close().unwrap();
    drop(m);
    let m = Manager::open_with(io.clone(), dir(), &corewal::Options::default()).unwrap();
    assert_eq!(m.num_cores(), 4, "the new count is the directory's now");
    m.close().unwrap();
    let recs = read_all(&io, dir()).unwrap();
    let lanes: Vec<u32> = recs
        .iter()
        .filter(|r| r.op.starts_with("put"))
        .map(|r| r.core)
        .collect();
    assert_eq!(lanes.len(), 3);
    assert!(
        lanes.contains(&0) && lanes.contains(&1) && lanes.contains(&3),
        "old and new lanes merge"
    );
}

#[test]
fn creating_needs_lanes_and_opening_a_missing_wal_can_be_refused() {
    let io = MemIo::new();
    let err = Manager::open_with(io.clone(), dir(), &options(0))
        .err()
        .unwrap();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(
        !io.exists(dir()).unwrap(),
        "a refused create leaves nothing behind"
    );
    let opts = corewal::Options {
        create_if_missing: false,
        ..options(1)
    };
    assert!(matches!(
        Manager::open_with(io.clone(), dir(), &opts),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn a_second_open_is_locked_out_until_the_first_closes() {
    let io = MemIo::new();
    let first = open(&io, 1);
    assert!(matches!(
        Manager::open_with(io.clone(), dir(), &options(1)),
        Err(Error::Locked(_))
    ));
    first.close().unwrap();
    assert!(Manager::open_with(io.clone(), dir(), &options(1)).is_ok());
}

#[test]
fn epoch_change_writes_a_barrier_before_the_next_record() {
    let io = MemIo::new();
    let m = open(&io, 2);
    m.writer(0).unwrap().append_put(b"a", b"1").unwrap();
    m.writer(1).unwrap().append_put(b"b", b"1").unwrap();
    assert_eq!(m.advance_epoch().unwrap(), 2);
    m.writer(0).unwrap().append_put(b"a", b"2").unwrap();
    m.writer(1).unwrap().epoch_barrier().unwrap();
    m.close().unwrap();
    let recs = read_all(&io, dir()).unwrap();
    let lane0: Vec<(u64, &str)> = recs
        .iter()
        .filter(|r| r.core == 0)
        .map(|r| (r.epoch, r.op.as_str()))
        .collect();
    assert_eq!(lane0, vec![(1, "put a 1"), (2, "barrier"), (2, "put a 2")]);
    let lane1: Vec<(u64, &str)> = recs
        .iter()
        .filter(|r| r.core == 1)
        .map(|r| (r.epoch, r.op.as_str()))
        .collect();
    assert_eq!(
        lane1,
        vec![(1, "put b 1"), (2, "barrier")],
        "an explicit barrier is the epoch's first record"
    );
}

#[test]
fn oversized_record_is_refused_and_nothing_is_written() {
    let io = MemIo::new();
    let opts = corewal::Options {
        max_record_bytes: 512,
        ..options(1)
    };
    let m = Manager::open_with(io.clone(), dir(), &opts).unwrap();
    let w = m.writer(0).unwrap();
    w.append_put(b"k", b"small").unwrap();
    m.advance_epoch().unwrap();
    let (position, sequence) = (w.position(), w.sequence());
    let err = w.append_put(b"k", &[0u8; 600]).unwrap_err();
    assert!(matches!(err, Error::TooLarge { limit: 512, .. }), "{err}");
    assert_eq!(
        (w.position(), w.sequence()),
        (position, sequence),
        "no barrier, no record"
    );
    w.append_put(b"k", b"fits").unwrap();
    m.close().unwrap();
    let ops: Vec<String> = read_all(&io, dir())
        .unwrap()
        .into_iter()
        .map(|r| r.op)
        .collect();
    assert_eq!(ops, vec!["put k small", "barrier", "put k fits"]);
}

#[test]
fn a_crash_keeps_every_synced_record_and_loses_only_unsynced_ones() {
    let io = MemIo::new();
    let m = open(&io, 2);
    for i in 0..50u32 {
        m.writer(i % 2)
            .unwrap()
            .append_put(&i.to_be_bytes(), b"synced")
            .unwrap();
    }
    m.sync_all().unwrap();
    for i in 0..50u32 {
        m.writer(i % 2)
            .unwrap()
            .append_put(&i.to_be_bytes(), b"unsynced")
            .unwrap();
    }
    io.crash();
    drop(m);
    io.restart();
    let m = open(&io, 2);
    m.close().unwrap();
    let recs = read_all(&io, dir()).unwrap();
    assert_eq!(recs.len(), 50);
    assert!(
        recs.iter()
            .all(|r| r.op.ends_with("synced") && !r.op.ends_with("unsynced"))
    );
}

/// Appends, syncs and crashes at pseudo-random points: after every reopen the
/// recovered records are exactly a prefix of what was appended that covers
/// everything acknowledged by a sync.
#[test]
fn random_crashes_never_lose_an_acknowledged_record() {
    random_crashes(false);
}

/// The same with out-of-order writeback: unsynced sectors persist at random,
/// so valid frames can follow damage. The durable marks must classify every
/// such tail as torn (never as corruption) and keep every acknowledged record.
#[test]
fn torn_writeback_is_never_mistaken_for_corruption() {
    random_crashes(true);
}

fn random_crashes(torn: bool) {
    let io = MemIo::new();
    let mut appended: Vec<Vec<String>> = vec![Vec::new(); 2];
    let mut acknowledged = [0usize; 2];
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..40 {
        let m = open(&io, 2);
        for step in 0..(next() % 200) {
            let core = (next() % 2) as u32;
            let w = m.writer(core).unwrap();
            let value = "v".repeat((next() % 300) as usize);
            w.append_put(format!("{round}-{step}").as_bytes(), value.as_bytes())
                .unwrap();
            appended[core as usize].push(format!("put {round}-{step} {value}"));
            if next() % 16 == 0 {
                w.sync().unwrap();
                acknowledged[core as usize] = appended[core as usize].len();
            }
        }
        if torn {
            io.crash_torn(next());
        } else {
            io.crash();
        }
        drop(m);
        io.restart();
        // Open (which repairs) before reading: the read-only iterator must
        // agree with what open keeps.
        let before = read_all(&io, dir()).unwrap_or_else(|e| panic!("round {round}: {e}"));
        open(&io, 2).close().unwrap();
        let recs = read_all(&io, dir()).unwrap();
        assert_eq!(
            before, recs,
            "round {round}: repair changed what recovery yields"
        );
        for core in 0..2u32 {
            let got = puts(&recs, core);
            let all = &appended[core as usize];
            assert!(
                got.len() >= acknowledged[core as usize],
                "round {round} lane {core} lost acknowledged records"
            );
            assert_eq!(
                got[..],
                all[..got.len()],
                "round {round} lane {core}: not a prefix"
            );
            appended[core as usize].truncate(got.len());
            acknowledged[core as usize] = got.len();
        }
    }
}

#[test]
fn a_failed_fdatasync_poisons_the_writer_for_good() {
    let io = MemIo::new();
    let m = open(&io, 2);
    let w = m.writer(0).unwrap();
    w.append_put(b"a", b"1").unwrap();
    w.sync().unwrap();
    let synced = w.synced_position();
    w.append_put(b"b", b"2").unwrap();
    io.fail(FaultOp::SyncData, "wal-00000-", 0, Some(1), libc::EIO);
    assert!(matches!(w.sync(), Err(Error::Poisoned(msg)) if msg.contains("fdatasync")));
    io.clear_faults();
    assert_eq!(
        w.synced_position(),
        synced,
        "never advances past the last good sync"
    );
    assert!(matches!(w.append_put(b"c", b"3"), Err(Error::Poisoned(_))));
    assert!(
        matches!(w.sync(), Err(Error::Poisoned(_))),
        "no retry that pretends it worked"
    );
    assert_eq!(w.synced_position(), synced);
    m.writer(1).unwrap().append_put(b"other", b"lane").unwrap();
    m.writer(1)
        .unwrap()
        .sync()
        .expect("other lanes are unaffected");
    assert!(matches!(m.close(), Err(Error::Poisoned(_))));
    drop(m);
    let recs = read_all(&io, dir()).unwrap();
    assert!(puts(&recs, 0).contains(&"put a 1".to_string()));
}

#[test]
fn a_failed_write_poisons_the_writer() {
    let io = MemIo::new();
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    w.append_put(b"a", b"1").unwrap();
    io.fail(FaultOp::Write, "wal-00000-", 0, None, libc::EIO);
    assert!(matches!(w.sync(), Err(Error::Poisoned(msg)) if msg.contains("write")));
    io.clear_faults();
    assert!(matches!(w.append_put(b"b", b"2"), Err(Error::Poisoned(_))));
    assert_eq!(w.synced_position(), 0);
}

#[test]
fn a_failing_background_preparation_never_fails_an_append() {
    let io = MemIo::new();
    // Every background preparation fails; rotation makes its segments itself.
    io.fail(FaultOp::Open, ".prep", 0, None, libc::ENOSPC);
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    let value = [b'x'; 1000];
    for i in 0..60u32 {
        w.append_put(&i.to_be_bytes(), &value)
            .expect("rotation does not depend on the preparer");
    }
    w.sync().expect("the writer is not poisoned");
    assert!(
        io.contents(&segment(0, 3)).is_some(),
        "rotated several times"
    );
    m.close().unwrap();
    io.clear_faults();
    assert_eq!(read_all(&io, dir()).unwrap().len(), 60);
}

#[test]
fn the_background_flusher_syncs_writers_nobody_syncs() {
    let io = MemIo::new();
    let opts = corewal::Options {
        flusher_interval_us: 1_000,
        ..options(1)
    };
    let m = Manager::open_with(io.clone(), dir(), &opts).unwrap();
    let w = m.writer(0).unwrap();
    w.append_put(b"k", b"v").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while w.synced_position() < w.position() {
        assert!(std::time::Instant::now() < deadline, "flusher never synced");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn group_commit_triggers_sync_by_records_and_bytes() {
    let io = MemIo::new();
    let opts = corewal::Options {
        sync_every_records: 10,
        ..options(1)
    };
    let m = Manager::open_with(io.clone(), dir(), &opts).unwrap();
    let w = m.writer(0).unwrap();
    for i in 0..9u32 {
        w.append_put(&i.to_be_bytes(), b"v").unwrap();
    }
    assert_eq!(w.synced_position(), 0);
    w.append_put(b"tenth", b"v").unwrap();
    assert_eq!(w.synced_position(), w.position());
    m.close().unwrap();
    drop(m);

    let io = MemIo::new();
    let opts = corewal::Options {
        sync_every_bytes: 4096,
        ..options(1)
    };
    let m = Manager::open_with(io.clone(), dir(), &opts).unwrap();
    let w = m.writer(0).unwrap();
    w.append_put(b"k", &[0u8; 1000]).unwrap();
    assert_eq!(w.synced_position(), 0);
    for _ in 0..4 {
        w.append_put(b"k", &[0u8; 1000]).unwrap();
    }
    assert!(w.synced_position() > 4096);
}

#[test]
fn calls_after_close_report_closed() {
    let io = MemIo::new();
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    m.close().unwrap();
    assert!(matches!(w.append_put(b"k", b"v"), Err(Error::Closed(_))));
    assert!(matches!(w.sync(), Err(Error::Closed(_))));
    assert!(matches!(m.writer(0), Err(Error::Closed(_))));
    assert!(matches!(m.advance_epoch(), Err(Error::Closed(_))));
    m.close().expect("closing twice is a no-op");
}

#[test]
fn out_of_range_core_is_an_invalid_argument() {
    let io = MemIo::new();
    let m = open(&io, 2);
    assert!(matches!(m.writer(2), Err(Error::InvalidArgument(_))));
}

#[test]
fn real_files_round_trip_with_owner_only_modes() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let m = Manager::open(
        &dir,
        &corewal::Options {
            num_cores: 2,
            segment_bytes: 64 << 10,
            ..Default::default()
        },
    )
    .unwrap();
    std::thread::scope(|s| {
        for core in 0..2u32 {
            let w = m.writer(core).unwrap();
            s.spawn(move || {
                for i in 0..2000u32 {
                    w.append_put(&i.to_be_bytes(), &[core as u8; 100]).unwrap();
                }
                w.sync().unwrap();
            });
        }
    });
    m.close().unwrap();
    let recs = read_all(&corewal::FileIo::default(), &dir).unwrap();
    assert_eq!(recs.len(), 4000);
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for entry in std::fs::read_dir(&dir).unwrap() {
        let mode = entry.unwrap().metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
