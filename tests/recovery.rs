//! Recovery: torn tails against corruption (one test per situation of the
//! table in `src/recovery.rs`), recovery modes, options, and hostile input.

mod common;

use common::*;
use corewal::format::{HeaderProblem, SEGMENT_HEADER_LEN, frame_len};
use corewal::io::Io;
use corewal::recovery::{DamageKind, DamagedRange, LaneStats};
use corewal::{Error, Manager, MemIo, Options, Recovery, RecoveryMode, RecoveryOptions};

/// Two synced batches in lane 0 (one 16 KiB segment), closed. Returns the
/// lane position where batch 2 starts.
fn two_batches(io: &MemIo) -> u64 {
    let m = open(io, 1);
    let w = m.writer(0).unwrap();
    for i in 0..5u32 {
        w.append_put(format!("a{i}").as_bytes(), b"first").unwrap();
    }
    w.sync().unwrap();
    let second = w.position();
    for i in 0..5u32 {
        w.append_put(format!("b{i}").as_bytes(), b"second").unwrap();
    }
    w.sync().unwrap();
    m.close().unwrap();
    second
}

fn flip(io: &MemIo, path: &std::path::Path, offset: usize) {
    let byte = io.contents(path).unwrap()[offset];
    io.poke(path, offset, &[byte ^ 0x01]);
}

fn reopen(io: &MemIo, mode: RecoveryMode) -> corewal::Result<Manager<MemIo>> {
    Manager::open_with(
        io.clone(),
        dir(),
        &Options {
            recovery_mode: mode,
            ..options(1)
        },
    )
}

#[test]
fn clean_end_in_zeros_opens_with_every_record() {
    let io = MemIo::new();
    two_batches(&io);
    for mode in [
        RecoveryMode::TolerateTornTail,
        RecoveryMode::Absolute,
        RecoveryMode::PointInTime,
    ] {
        reopen(&io, mode).unwrap().close().unwrap();
    }
    assert_eq!(read_all(&io, dir()).unwrap().len(), 10);
}

#[test]
fn damage_below_a_later_durable_mark_is_corruption() {
    let io = MemIo::new();
    two_batches(&io);
    let before = io.contents(&segment(0, 0)).unwrap();
    flip(&io, &segment(0, 0), SEGMENT_HEADER_LEN + 20);
    let damaged = io.contents(&segment(0, 0)).unwrap();
    let err = reopen(&io, RecoveryMode::TolerateTornTail).err().unwrap();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            Error::Corrupt {
                lane: 0,
                offset: 64,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("wal-00000-0000000000.log") && msg.contains("lane 0"),
        "{msg}"
    );
    assert_eq!(
        io.contents(&segment(0, 0)).unwrap(),
        damaged,
        "a refused open changes nothing"
    );
    assert_ne!(before, damaged);
    assert!(matches!(read_all(&io, dir()), Err(Error::Corrupt { .. })));
    assert!(matches!(
        reopen(&io, RecoveryMode::Absolute),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn point_in_time_stops_at_the_first_damage_even_when_it_is_corruption() {
    let io = MemIo::new();
    let second = two_batches(&io);
    flip(
        &io,
        &segment(0, 0),
        SEGMENT_HEADER_LEN + second as usize + 20,
    );
    let opts = RecoveryOptions {
        mode: RecoveryMode::PointInTime,
        ..Default::default()
    };
    let recs = read_with(&io, dir(), &opts).unwrap();
    assert_eq!(puts(&recs, 0).len(), 5, "batch 1 only");
    reopen(&io, RecoveryMode::PointInTime)
        .unwrap()
        .close()
        .unwrap();
    assert_eq!(
        read_all(&io, dir()).unwrap().len(),
        5,
        "the cut is permanent after repair"
    );
}

#[test]
fn damage_in_the_last_unvouched_batch_is_a_torn_tail() {
    let io = MemIo::new();
    let second = two_batches(&io);
    // Nothing after batch 2 carries a durable mark above its start.
    flip(
        &io,
        &segment(0, 0),
        SEGMENT_HEADER_LEN + second as usize + 20,
    );
    assert!(
        matches!(
            reopen(&io, RecoveryMode::Absolute),
            Err(Error::Corrupt { .. })
        ),
        "absolute refuses any damage"
    );
    let m = reopen(&io, RecoveryMode::TolerateTornTail).unwrap();
    assert_eq!(m.writer(0).unwrap().position(), second);
    assert_eq!(m.writer(0).unwrap().sequence(), 5);
    m.close().unwrap();
    assert_eq!(read_all(&io, dir()).unwrap().len(), 5);
}

#[test]
fn garbage_after_the_end_is_cut_and_never_resurrected() {
    let io = MemIo::new();
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    for i in 0..3u32 {
        w.append_put(&i.to_be_bytes(), b"kept").unwrap();
    }
    w.sync().unwrap();
    let end = w.position() as usize;
    // A stale, valid frame far beyond the end, and a partial frame at it.
    for i in 3..6u32 {
        w.append_put(&i.to_be_bytes(), b"stale").unwrap();
    }
    m.close().unwrap();
    let stale = io.contents(&segment(0, 0)).unwrap()[SEGMENT_HEADER_LEN + end..].to_vec();
    io.poke(&segment(0, 0), SEGMENT_HEADER_LEN + end, &[0xAB; 20]);
    io.poke(
        &segment(0, 0),
        SEGMENT_HEADER_LEN + end + 4096,
        &stale[..frame_len(60)],
    );
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    assert_eq!(w.position() as usize, end);
    // Refill exactly up to where the stale frame sat; it must not come back.
    w.append_put(b"new", b"after repair").unwrap();
    m.close().unwrap();
    let bytes = io.contents(&segment(0, 0)).unwrap();
    assert!(
        bytes[SEGMENT_HEADER_LEN + end + 4096..]
            .iter()
            .all(|&b| b == 0),
        "tail zeroed"
    );
    let ops: Vec<String> = read_all(&io, dir())
        .unwrap()
        .into_iter()
        .map(|r| r.op)
        .collect();
    assert_eq!(ops.len(), 4);
    assert_eq!(ops[3], "put new after repair");
}

#[test]
fn frame_copied_from_another_lane_does_not_validate() {
    let io = MemIo::new();
    let m = open(&io, 2);
    m.writer(0).unwrap().append_put(b"lane", b"zero").unwrap();
    let end0 = SEGMENT_HEADER_LEN + m.writer(0).unwrap().position() as usize;
    m.writer(1).unwrap().append_put(b"lane", b"one").unwrap();
    m.writer(1)
        .unwrap()
        .append_put(b"lane", b"one again")
        .unwrap();
    m.sync_all().unwrap();
    m.close().unwrap();
    let lane1 = io.contents(&segment(1, 0)).unwrap();
    // Misdirected write: lane 1's frames land at lane 0's end.
    let frames = &lane1[SEGMENT_HEADER_LEN..SEGMENT_HEADER_LEN + 2 * frame_len(100)];
    io.poke(&segment(0, 0), end0, frames);
    let recs = read_all(&io, dir()).unwrap();
    assert_eq!(puts(&recs, 0), vec!["put lane zero"]);
}

#[test]
fn a_missing_middle_segment_behind_acknowledged_data_is_corruption() {
    let io = MemIo::new();
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    for i in 0..60u32 {
        w.append_put(&i.to_be_bytes(), &[b'x'; 900]).unwrap();
        w.sync().unwrap();
    }
    m.close().unwrap();
    assert!(io.contents(&segment(0, 3)).is_some());
    io.remove(&segment(0, 1)).unwrap();
    let err = reopen(&io, RecoveryMode::TolerateTornTail).err().unwrap();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("segment 1 is missing"), "{err}");
}

#[test]
fn a_damaged_segment_header_behind_acknowledged_data_is_corruption() {
    let io = MemIo::new();
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    for i in 0..60u32 {
        w.append_put(&i.to_be_bytes(), &[b'x'; 900]).unwrap();
        w.sync().unwrap();
    }
    m.close().unwrap();
    flip(&io, &segment(0, 1), 30);
    let err = reopen(&io, RecoveryMode::TolerateTornTail).err().unwrap();
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn unused_prepared_segment_at_the_end_is_a_clean_end() {
    let io = MemIo::new();
    let m = open(&io, 1);
    m.writer(0).unwrap().append_put(b"k", b"v").unwrap();
    m.close().unwrap();
    // Closing stops a preparation that has not published its segment yet;
    // make sure one is there.
    if io.contents(&segment(0, 1)).is_none() {
        corewal::segment::prepare(&io, dir(), 0, 1, options(1).segment_bytes, true).unwrap();
    }
    assert!(
        io.contents(&segment(0, 1)).unwrap().iter().all(|&b| b == 0),
        "prepared next segment"
    );
    reopen(&io, RecoveryMode::Absolute)
        .unwrap()
        .close()
        .unwrap();
    assert_eq!(read_all(&io, dir()).unwrap().len(), 1);
}

#[test]
fn read_only_recovery_changes_nothing_and_runs_beside_a_manager() {
    let io = MemIo::new();
    let second = two_batches(&io);
    flip(
        &io,
        &segment(0, 0),
        SEGMENT_HEADER_LEN + second as usize + 20,
    );
    let snapshot = io.contents(&segment(0, 0)).unwrap();
    assert_eq!(read_all(&io, dir()).unwrap().len(), 5);
    assert_eq!(io.contents(&segment(0, 0)).unwrap(), snapshot);
    let m = open(&io, 1);
    m.writer(0).unwrap().append_put(b"more", b"data").unwrap();
    m.writer(0).unwrap().sync().unwrap();
    assert_eq!(
        read_all(&io, dir()).unwrap().len(),
        6,
        "sees the durable prefix while locked"
    );
    let mut via_manager = m.recover(&RecoveryOptions::default()).unwrap();
    let mut n = 0;
    while via_manager.next().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 6);
}

#[test]
fn max_epoch_and_lane_filter_select_records() {
    let io = MemIo::new();
    let m = open(&io, 3);
    for core in 0..3 {
        m.writer(core).unwrap().append_put(b"e1", b"v").unwrap();
    }
    m.advance_epoch().unwrap();
    for core in 0..3 {
        m.writer(core).unwrap().append_put(b"e2", b"v").unwrap();
    }
    m.close().unwrap();
    let upto1 = read_with(
        &io,
        dir(),
        &RecoveryOptions {
            max_epoch: 1,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(upto1.len(), 3);
    assert!(upto1.iter().all(|r| r.epoch == 1));
    let lanes = read_with(
        &io,
        dir(),
        &RecoveryOptions {
            lanes: Some(vec![2, 0]),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(lanes.iter().all(|r| r.core != 1));
    assert_eq!(lanes.len(), 6, "two puts and a barrier per lane");
    let bad = read_with(
        &io,
        dir(),
        &RecoveryOptions {
            lanes: Some(vec![3]),
            ..Default::default()
        },
    );
    assert!(matches!(bad, Err(Error::InvalidArgument(_))));
}

#[test]
fn damage_in_a_lane_left_out_by_the_filter_does_not_stop_the_others() {
    let io = MemIo::new();
    let m = open(&io, 2);
    for core in 0..2 {
        let w = m.writer(core).unwrap();
        w.append_put(b"a", b"1").unwrap();
        w.sync().unwrap();
        w.append_put(b"b", b"2").unwrap();
        w.sync().unwrap();
    }
    m.close().unwrap();
    flip(&io, &segment(1, 0), SEGMENT_HEADER_LEN + 20);
    assert!(matches!(
        read_all(&io, dir()),
        Err(Error::Corrupt { lane: 1, .. })
    ));
    let lane0 = RecoveryOptions {
        lanes: Some(vec![0]),
        ..Default::default()
    };
    assert_eq!(read_with(&io, dir(), &lane0).unwrap().len(), 2);
}

#[test]
fn a_directory_without_a_wal_is_not_found() {
    let io = MemIo::new();
    io.create_dir(dir()).unwrap();
    assert!(matches!(read_all(&io, dir()), Err(Error::NotFound(_))));
}

#[test]
fn damaged_metadata_is_corruption() {
    let io = MemIo::new();
    open(&io, 1).close().unwrap();
    let meta = dir().join(corewal::meta::META_FILE);
    flip(&io, &meta, 20);
    assert!(matches!(
        reopen(&io, RecoveryMode::TolerateTornTail),
        Err(Error::CorruptMeta(_))
    ));
}

/// Random damage of every kind: reading and opening answer with records or
/// an error, never a panic, a hang or a huge allocation.
#[test]
fn hostile_bytes_never_crash_the_reader() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let io = MemIo::new();
    let m = open(&io, 2);
    for i in 0..200u32 {
        let w = m.writer(i % 2).unwrap();
        w.append_put(&i.to_be_bytes(), &vec![b'v'; (i * 37 % 700) as usize])
            .unwrap();
        if i % 7 == 0 {
            w.sync().unwrap();
        }
    }
    m.close().unwrap();
    drop(m);
    let files: Vec<_> = (0..2)
        .flat_map(|c| (0..4).map(move |s| segment(c, s)))
        .collect();
    let pristine: Vec<_> = files.iter().map(|f| io.contents(f)).collect();
    for round in 0..300 {
        for (f, p) in files.iter().zip(&pristine) {
            if let Some(p) = p {
                io.poke(f, 0, p);
            }
        }
        for _ in 0..(1 + next() % 4) {
            let (f, p) = (&files[(next() % files.len() as u64) as usize], &pristine[0]);
            let Some(len) = io
                .contents(f)
                .map(|b| b.len())
                .or(p.as_ref().map(|p| p.len()))
            else {
                continue;
            };
            if len == 0 {
                continue;
            }
            let at = (next() % len as u64) as usize;
            let bytes: Vec<u8> = match next() % 3 {
                0 => vec![(next() & 0xff) as u8],
                1 => (next() as u32 | 0x8000_0000).to_le_bytes().to_vec(), // a huge length
                _ => (0..(next() % 64)).map(|_| next() as u8).collect(),
            };
            io.poke(f, at.min(len.saturating_sub(bytes.len())), &bytes);
        }
        let _ = read_all(&io, dir()).map(|r| r.len());
        let _ = read_with(&io, dir(), &skip()).map(|r| r.len());
        let repair = match round % 10 {
            0 => RecoveryMode::PointInTime,
            5 => RecoveryMode::SkipCorrupt,
            _ => continue,
        };
        if let Ok(m) = Manager::open_with(
            io.clone(),
            dir(),
            &Options {
                recovery_mode: repair,
                ..options(2)
            },
        ) {
            m.close().ok();
        }
    }
}

fn mode(mode: RecoveryMode) -> RecoveryOptions {
    RecoveryOptions {
        mode,
        ..Default::default()
    }
}

fn skip() -> RecoveryOptions {
    mode(RecoveryMode::SkipCorrupt)
}

/// `(sequence, position, op)` of every record `opts` reads, in order.
fn records(io: &MemIo, opts: &RecoveryOptions) -> corewal::Result<Vec<(u64, u64, String)>> {
    let mut recovery = Recovery::open(io.clone(), dir(), opts)?;
    let mut out = Vec::new();
    while let Some(e) = recovery.next()? {
        out.push((e.sequence, e.position, describe(&e.op)));
    }
    Ok(out)
}

fn stats(io: &MemIo, opts: &RecoveryOptions) -> Vec<LaneStats> {
    Recovery::open(io.clone(), dir(), opts)
        .unwrap()
        .stats()
        .to_vec()
}

/// Ten equal-sized records in lane 0, synced in two batches of five (so
/// the second batch vouches for the first). Returns their positions and
/// the lane's end.
fn ten_records(io: &MemIo) -> (Vec<u64>, u64) {
    let m = open(io, 1);
    let w = m.writer(0).unwrap();
    let mut positions = Vec::new();
    for i in 0..10u32 {
        positions.push(w.append_put(format!("k{i}").as_bytes(), b"value").unwrap());
        if i == 4 {
            w.sync().unwrap();
        }
    }
    w.sync().unwrap();
    let end = w.position();
    m.close().unwrap();
    (positions, end)
}

fn offset(position: u64) -> usize {
    SEGMENT_HEADER_LEN + position as usize
}

fn sequences(recs: &[(u64, u64, String)]) -> Vec<u64> {
    recs.iter().map(|r| r.0).collect()
}

#[test]
fn skip_corrupt_reads_the_records_on_both_sides_of_damage() {
    let io = MemIo::new();
    let (pos, end) = ten_records(&io);
    flip(&io, &segment(0, 0), offset(pos[2]) + 20);
    let damaged = io.contents(&segment(0, 0)).unwrap();
    assert!(
        matches!(read_all(&io, dir()), Err(Error::Corrupt { .. })),
        "acknowledged damage: tolerate refuses"
    );
    let recs = records(&io, &skip()).unwrap();
    assert_eq!(sequences(&recs), vec![0, 1, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(recs[2], (3, pos[3], "put k3 value".to_string()));
    let lane = &stats(&io, &skip())[0];
    let frame = pos[3] - pos[2];
    assert_eq!(
        lane.damaged,
        vec![DamagedRange {
            segment_index: 0,
            offset: offset(pos[2]) as u64,
            length: frame,
            kind: DamageKind::Frames,
        }]
    );
    assert_eq!(lane.records, 9);
    assert_eq!(lane.bytes, end - frame);
    assert_eq!(lane.segments, 1);
    assert_eq!((lane.first_epoch, lane.last_epoch), (Some(1), Some(1)));
    assert_eq!(lane.torn_tail, None);
    assert_eq!(
        io.contents(&segment(0, 0)).unwrap(),
        damaged,
        "reading changes nothing"
    );
}

#[test]
fn skip_corrupt_reads_past_zeros_where_frames_were() {
    let io = MemIo::new();
    let (pos, _) = ten_records(&io);
    let hole = (pos[4] - pos[2]) as usize;
    io.poke(&segment(0, 0), offset(pos[2]), &vec![0; hole]);
    assert!(matches!(read_all(&io, dir()), Err(Error::Corrupt { .. })));
    let recs = records(&io, &skip()).unwrap();
    assert_eq!(sequences(&recs), vec![0, 1, 4, 5, 6, 7, 8, 9]);
    let lane = &stats(&io, &skip())[0];
    assert_eq!(lane.damaged.len(), 1);
    assert_eq!(
        (lane.damaged[0].offset, lane.damaged[0].length),
        (offset(pos[2]) as u64, hole as u64)
    );
}

/// `(sequence, position)` of every record of lane 0 in 16 KiB segments,
/// each synced: 60 records of 900 bytes over four segments.
fn sixty_records(io: &MemIo) -> Vec<(u64, u64)> {
    let m = open(io, 1);
    let w = m.writer(0).unwrap();
    let mut out = Vec::new();
    for i in 0..60u64 {
        out.push((i, w.append_put(&i.to_be_bytes(), &[b'x'; 900]).unwrap()));
        w.sync().unwrap();
    }
    m.close().unwrap();
    assert!(io.contents(&segment(0, 3)).is_some());
    out
}

/// The base position of each segment of lane 0, as the scan keeps them.
fn segment_bases(io: &MemIo) -> Vec<u64> {
    corewal::recovery::scan_dir(io, dir(), 1).unwrap()[0]
        .kept
        .iter()
        .map(|k| k.base_position)
        .collect()
}

#[test]
fn skip_corrupt_skips_a_segment_whose_header_is_damaged() {
    let io = MemIo::new();
    let all = sixty_records(&io);
    let bases = segment_bases(&io);
    flip(&io, &segment(0, 1), 30);
    assert!(reopen(&io, RecoveryMode::TolerateTornTail).is_err());
    let in_segment_1 = |p: u64| p >= bases[1] && p < bases[2];
    let wanted: Vec<u64> = all
        .iter()
        .filter(|(_, p)| !in_segment_1(*p))
        .map(|r| r.0)
        .collect();
    assert!(wanted.len() < 60 && wanted.iter().any(|&s| s > 50));
    assert_eq!(sequences(&records(&io, &skip()).unwrap()), wanted);
    let lane = &stats(&io, &skip())[0];
    let len = io.contents(&segment(0, 1)).unwrap().len() as u64;
    assert_eq!(
        lane.damaged,
        vec![DamagedRange {
            segment_index: 1,
            offset: 0,
            length: len,
            kind: DamageKind::Header(HeaderProblem::BadChecksum),
        }]
    );
    assert_eq!(lane.records, wanted.len() as u64);
    assert_eq!(lane.segments, bases.len() as u64 - 1);
}

#[test]
fn skip_corrupt_reports_a_missing_segment_and_reads_on() {
    let io = MemIo::new();
    let all = sixty_records(&io);
    let bases = segment_bases(&io);
    io.remove(&segment(0, 1)).unwrap();
    let wanted: Vec<u64> = all
        .iter()
        .filter(|(_, p)| *p < bases[1] || *p >= bases[2])
        .map(|r| r.0)
        .collect();
    assert_eq!(sequences(&records(&io, &skip()).unwrap()), wanted);
    let lane = &stats(&io, &skip())[0];
    assert_eq!(
        lane.damaged,
        vec![DamagedRange {
            segment_index: 1,
            offset: 0,
            length: 0,
            kind: DamageKind::Missing,
        }]
    );
}

#[test]
fn skip_corrupt_measures_lost_bytes_at_a_segment_end_by_the_next_base() {
    let io = MemIo::new();
    let all = sixty_records(&io);
    let bases = segment_bases(&io);
    // The last record of segment 0 is zeroed: only segment 1's base
    // position says how much is missing.
    let &(lost, at) = all.iter().rfind(|(_, p)| *p < bases[1]).unwrap();
    let length = bases[1] - at;
    io.poke(&segment(0, 0), offset(at), &vec![0; length as usize]);
    let recs = records(&io, &skip()).unwrap();
    assert_eq!(recs.len(), 59);
    assert!(!sequences(&recs).contains(&lost));
    let lane = &stats(&io, &skip())[0];
    assert_eq!(
        lane.damaged,
        vec![DamagedRange {
            segment_index: 0,
            offset: offset(at) as u64,
            length,
            kind: DamageKind::Frames,
        }]
    );
}

#[test]
fn a_manager_opened_with_skip_corrupt_keeps_every_valid_record_and_appends_after_them() {
    let io = MemIo::new();
    let (pos, end) = ten_records(&io);
    flip(&io, &segment(0, 0), offset(pos[2]) + 20);
    // And a torn tail after the last record.
    io.poke(&segment(0, 0), offset(end), &[0xAB; 20]);
    let m = reopen(&io, RecoveryMode::SkipCorrupt).unwrap();
    let w = m.writer(0).unwrap();
    assert_eq!(w.position(), end, "resumes after the last valid record");
    assert_eq!(w.sequence(), 10);
    for i in 0..3u32 {
        w.append_put(format!("n{i}").as_bytes(), b"new").unwrap();
    }
    w.sync().unwrap();
    m.close().unwrap();
    reopen(&io, RecoveryMode::SkipCorrupt)
        .unwrap()
        .close()
        .unwrap();
    let recs = records(&io, &skip()).unwrap();
    assert_eq!(
        sequences(&recs),
        vec![0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    );
    assert_eq!(recs[9].2, "put n0 new");
    assert_eq!(recs[9].1, end);
    let lane = &stats(&io, &skip())[0];
    assert_eq!(lane.damaged.len(), 1, "the damage stays, and only it");
    assert_eq!(lane.damaged[0].offset, offset(pos[2]) as u64);
    assert_eq!(lane.torn_tail, None, "the tail was cut");
    assert!(
        matches!(read_all(&io, dir()), Err(Error::Corrupt { .. })),
        "tolerate still refuses the damage in the middle"
    );
}

#[test]
fn skip_corrupt_reports_a_torn_tail_after_the_last_valid_record() {
    let io = MemIo::new();
    let (pos, end) = ten_records(&io);
    flip(&io, &segment(0, 0), offset(pos[9]) + 20);
    let lane = &stats(&io, &skip())[0];
    assert!(
        lane.damaged.is_empty(),
        "nothing valid follows: not skipped"
    );
    let tail = lane.torn_tail.as_ref().unwrap();
    assert_eq!(
        (tail.segment_index, tail.offset, tail.position),
        (0, offset(pos[9]) as u64, pos[9])
    );
    assert_eq!(lane.records, 9);
    assert!(end > pos[9]);
}

#[test]
fn skip_corrupt_refuses_a_sequence_that_decreases() {
    let io = MemIo::new();
    let (pos, _) = ten_records(&io);
    let bytes = io.contents(&segment(0, 0)).unwrap();
    let frame = (pos[2] - pos[1]) as usize;
    // Record 3 is damaged; record 1's frame (valid in this segment) lands
    // where record 4 was, right after the damage.
    let copy = bytes[offset(pos[1])..offset(pos[1]) + frame].to_vec();
    flip(&io, &segment(0, 0), offset(pos[3]) + 20);
    io.poke(&segment(0, 0), offset(pos[4]), &copy);
    let err = records(&io, &skip()).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { lane: 0, .. }) && err.to_string().contains("sequence 1"),
        "{err}"
    );
}

#[test]
fn stats_of_a_clean_log() {
    let io = MemIo::new();
    let m = open(&io, 3);
    for i in 0..40u32 {
        m.writer(i % 2)
            .unwrap()
            .append_put(&i.to_be_bytes(), &[b'v'; 900])
            .unwrap();
    }
    let e2 = m.advance_epoch().unwrap();
    m.writer(0).unwrap().append_put(b"late", b"v").unwrap();
    let ends: Vec<u64> = (0..3).map(|c| m.writer(c).unwrap().position()).collect();
    m.close().unwrap();
    for opts in [RecoveryOptions::default(), skip()] {
        let all = stats(&io, &opts);
        assert_eq!(all.len(), 3);
        let recs = read_with(&io, dir(), &opts).unwrap();
        for (lane, s) in all.iter().enumerate() {
            assert_eq!(s.core_id, lane as u32);
            let n = recs.iter().filter(|r| r.core == lane as u32).count() as u64;
            assert_eq!(s.records, n);
            assert_eq!(s.bytes, ends[lane]);
            assert!(s.damaged.is_empty() && s.torn_tail.is_none());
        }
        assert_eq!(all[0].records, 22, "20 puts, a barrier and a put");
        assert_eq!((all[0].first_epoch, all[0].last_epoch), (Some(1), Some(e2)));
        assert_eq!((all[1].first_epoch, all[1].last_epoch), (Some(1), Some(1)));
        assert_eq!((all[2].records, all[2].first_epoch), (0, None));
        assert!(all[0].segments >= 2, "{}", all[0].segments);
        // One element per lane read, in lane order.
        let some = RecoveryOptions {
            lanes: Some(vec![2, 0]),
            ..opts.clone()
        };
        let cores: Vec<u32> = stats(&io, &some).iter().map(|s| s.core_id).collect();
        assert_eq!(cores, vec![0, 2]);
    }
}

#[test]
fn stats_report_a_torn_tail_where_the_lane_is_cut() {
    let io = MemIo::new();
    let second = two_batches(&io);
    flip(&io, &segment(0, 0), offset(second) + 20);
    for m in [RecoveryMode::TolerateTornTail, RecoveryMode::PointInTime] {
        let lane = &stats(&io, &mode(m))[0];
        let tail = lane.torn_tail.as_ref().unwrap();
        assert_eq!(
            (tail.segment_index, tail.offset, tail.position),
            (0, offset(second) as u64, second)
        );
        assert_eq!((lane.records, lane.bytes), (5, second));
        assert!(lane.damaged.is_empty());
    }
}

#[test]
fn stats_from_a_checkpoint_count_the_range_read() {
    let io = MemIo::new();
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    for i in 0..25u32 {
        w.append_put(&i.to_be_bytes(), &[b'v'; 900]).unwrap();
    }
    m.checkpoint(7, b"").unwrap();
    let start = m.latest_checkpoint().unwrap().lane_start(0);
    for i in 0..4u32 {
        w.append_put(format!("after{i}").as_bytes(), b"v").unwrap();
    }
    let end = w.position();
    m.close().unwrap();
    let bases = segment_bases(&io);
    assert!(
        bases.iter().all(|&b| b != start) && bases[1] < start,
        "the start lies inside a later segment"
    );
    let lane = &stats(&io, &RecoveryOptions::default())[0];
    let recs = read_all(&io, dir()).unwrap();
    assert_eq!(recs.len(), 5, "the barrier and four puts: {recs:?}");
    assert_eq!(lane.records, 5);
    assert_eq!(lane.bytes, end - start);
    assert_eq!(
        (lane.first_epoch, lane.last_epoch),
        (Some(recs[0].epoch), Some(recs[0].epoch))
    );
    assert_eq!(
        lane.segments,
        (bases.len() - bases.iter().rposition(|&b| b <= start).unwrap()) as u64
    );
    // From the beginning: every record, the barrier and the checkpoint
    // epoch's records included.
    let whole = RecoveryOptions {
        from_checkpoint: false,
        ..Default::default()
    };
    let lane = &stats(&io, &whole)[0];
    assert_eq!(
        lane.records,
        read_with(&io, dir(), &whole).unwrap().len() as u64
    );
    assert_eq!((lane.bytes, lane.first_epoch), (end, Some(1)));

    // Damage before the start, in the segment holding it: skipping reads
    // and counts only what lies after the start.
    let first = *bases.iter().filter(|&&b| b <= start).max().unwrap();
    let index = bases.iter().position(|&b| b == first).unwrap() as u64;
    flip(&io, &segment(0, index), SEGMENT_HEADER_LEN + 20);
    let skipping = RecoveryOptions {
        mode: RecoveryMode::SkipCorrupt,
        ..Default::default()
    };
    assert!(read_all(&io, dir()).is_err(), "tolerate refuses it");
    let lane = &stats(&io, &skipping)[0];
    assert_eq!(read_with(&io, dir(), &skipping).unwrap().len(), 5);
    assert_eq!((lane.records, lane.bytes), (5, end - start));
    assert_eq!(lane.damaged.len(), 1);
    assert_eq!(lane.damaged[0].segment_index, index);
}

/// Wherever one acknowledged record is damaged (start, middle or end of a
/// segment), skipping loses exactly that record and reports exactly its
/// frame; the last record has nothing after it, so it is a torn tail.
#[test]
fn skip_corrupt_loses_only_the_damaged_record_wherever_it_is() {
    let pristine = MemIo::new();
    let all = sixty_records(&pristine);
    let files: Vec<_> = (0..4).map(|s| pristine.contents(&segment(0, s))).collect();
    let bases = segment_bases(&pristine);
    let io = MemIo::new();
    sixty_records(&io);
    for (k, &(lost, at)) in all.iter().enumerate() {
        for (s, bytes) in files.iter().enumerate() {
            io.poke(&segment(0, s as u64), 0, bytes.as_ref().unwrap());
        }
        let index = bases.iter().rposition(|&b| b <= at).unwrap();
        flip(
            &io,
            &segment(0, index as u64),
            SEGMENT_HEADER_LEN + (at - bases[index]) as usize + 20,
        );
        let recs = records(&io, &skip()).unwrap();
        let wanted: Vec<u64> = (0..60).filter(|&s| s != lost).collect();
        assert_eq!(sequences(&recs), wanted, "record {k} damaged");
        let lane = &stats(&io, &skip())[0];
        match all.get(k + 1) {
            Some(&(_, next)) => {
                assert_eq!(lane.damaged.len(), 1, "record {k}: {:?}", lane.damaged);
                let d = lane.damaged[0];
                assert_eq!(
                    (d.segment_index, d.offset, d.length),
                    (
                        index as u64,
                        SEGMENT_HEADER_LEN as u64 + at - bases[index],
                        next - at
                    ),
                    "record {k}"
                );
                assert_eq!(lane.torn_tail, None);
            }
            None => {
                assert!(lane.damaged.is_empty());
                assert_eq!(lane.torn_tail.as_ref().unwrap().position, at);
            }
        }
    }
}

/// Appends `per_lane` records to every lane of a fresh `lanes`-lane WAL,
/// lanes taking turns, and closes it.
fn fill_lanes(io: &MemIo, lanes: u32, per_lane: u32) {
    let m = open(io, lanes);
    for i in 0..per_lane {
        for lane in 0..lanes {
            let w = m.writer(lane).unwrap();
            w.append_put(format!("k{lane}-{i}").as_bytes(), b"v")
                .unwrap();
        }
    }
    m.close().unwrap();
}

#[test]
fn many_lanes_each_read_in_batches_merge_in_order() {
    // 3 lanes of several decoding batches each, and 20 lanes of less than
    // one: each lane's records come back whole, in order.
    for lanes in [3u32, 20] {
        let io = MemIo::new();
        let per_lane = if lanes == 3 { 3000 } else { 150 };
        fill_lanes(&io, lanes, per_lane);
        let records = read_all(&io, dir()).unwrap();
        assert_eq!(records.len() as u32, lanes * per_lane);
        for lane in 0..lanes {
            let seqs: Vec<u64> = records
                .iter()
                .filter(|r| r.core == lane)
                .map(|r| r.sequence)
                .collect();
            assert_eq!(
                seqs,
                (0..per_lane as u64).collect::<Vec<_>>(),
                "lane {lane}"
            );
        }
    }
}

#[test]
fn a_record_damaged_after_open_stops_the_iterator_for_good() {
    let io = MemIo::new();
    let m = open(&io, 1);
    let w = m.writer(0).unwrap();
    let mut positions = Vec::new();
    for i in 0..8000u32 {
        positions.push(w.append_put(format!("k{i}").as_bytes(), b"value").unwrap());
    }
    let (segment_index, base) = {
        // The segment that holds record 7000, and its base position.
        let wanted = positions[7000];
        let mut found = None;
        for name in io.list(dir()).unwrap() {
            let Some((0, index)) = corewal::segment::parse_segment_name(&name) else {
                continue;
            };
            let bytes = io.contents(&dir().join(&name)).unwrap();
            if let Ok(h) = corewal::format::SegmentHeader::decode(&bytes)
                && h.base_position <= wanted
                && found.is_none_or(|(_, b)| b < h.base_position)
            {
                found = Some((index, h.base_position));
            }
        }
        found.unwrap()
    };
    m.close().unwrap();
    let mut recovery =
        corewal::Recovery::open(io.clone(), dir(), &RecoveryOptions::default()).unwrap();
    // Segments are mapped only when the decoding reaches them, a batch
    // ahead of the merge: record 7000 has not been read yet.
    let path = corewal::segment::segment_path(dir(), 0, segment_index);
    let offset = SEGMENT_HEADER_LEN + (positions[7000] - base) as usize;
    io.poke(&path, offset, &[0, 0, 0, 0]);
    let mut yielded = 0u64;
    let error = loop {
        match recovery.next() {
            Ok(Some(e)) => {
                assert_eq!(e.sequence, yielded);
                yielded += 1;
            }
            Ok(None) => panic!("the damaged record went unnoticed"),
            Err(e) => break e,
        }
    };
    assert_eq!(yielded, 7000, "every record before the damage is yielded");
    assert!(matches!(error, Error::Corrupt { .. }), "{error}");
    for _ in 0..3 {
        let again = recovery.next().map(|e| e.is_some());
        assert!(
            matches!(again, Err(Error::Corrupt { .. })),
            "later calls fail the same way: {again:?}"
        );
    }
}
