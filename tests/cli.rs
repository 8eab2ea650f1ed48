//! The `corewal` tool's WAL commands (`dump`, `verify`, `stats`), run as a
//! process against WALs written through the library in temporary
//! directories.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use corewal::format::SourceOffsetRef;
use corewal::{FileIo, Manager, OpView, Options, Recovery, RecoveryOptions};
use serde_json::Value;

const SEGMENT_HEADER: u64 = 64;
const LANE0_SEGMENT0: &str = "wal-00000-0000000000.log";

fn options() -> Options {
    Options {
        num_cores: 2,
        segment_bytes: 65536,
        ..Options::default()
    }
}

fn corewal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_corewal"))
        .args(args)
        .output()
        .expect("run corewal")
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.push(dir.to_str().expect("UTF-8 temp path"));
    corewal(&all)
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("UTF-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed by a signal")
}

/// `(lane, seq, epoch, op)` of a record.
type Rec = (u32, u64, u64, String);

/// What the sample WAL holds, as the library reads it back.
struct Sample {
    /// In recovery order.
    records: Vec<Rec>,
    first_epoch: u64,
    second_epoch: u64,
}

fn op_name(op: &OpView<'_>) -> &'static str {
    match op {
        OpView::Put { .. } => "put",
        OpView::Delete { .. } => "delete",
        OpView::Commit { .. } => "commit",
        OpView::Checkpoint { .. } => "checkpoint",
        OpView::EpochBarrier => "barrier",
    }
}

fn read_back(dir: &Path) -> Vec<Rec> {
    let opts = RecoveryOptions {
        from_checkpoint: false,
        ..RecoveryOptions::default()
    };
    let mut recovery = Recovery::open(FileIo::default(), dir, &opts).expect("recovery");
    let mut out = Vec::new();
    while let Some(e) = recovery.next().expect("next") {
        out.push((e.core_id, e.sequence, e.epoch, op_name(&e.op).to_owned()));
    }
    out
}

/// Two lanes, two epochs, every kind of operation, a non-UTF-8 key and a
/// value longer than the text form shows.
fn sample(dir: &Path) -> Sample {
    let m = Manager::open(dir, &options()).expect("open");
    let first_epoch = m.epoch();
    let (w0, w1) = (m.writer(0).unwrap(), m.writer(1).unwrap());
    w0.append_put(b"alpha", b"one").unwrap();
    w0.append_put(&[0, 1, 2], &[b'x'; 100]).unwrap();
    w0.append_delete(b"alpha").unwrap();
    w0.append_commit(
        &[
            SourceOffsetRef {
                name: b"topic-a",
                offset: 42,
            },
            SourceOffsetRef {
                name: b"topic-b",
                offset: 7,
            },
        ],
        Some(-5),
    )
    .unwrap();
    w1.append_put(b"beta", b"two").unwrap();
    w1.append_checkpoint(9).unwrap();
    m.sync_all().unwrap();
    let second_epoch = m.advance_epoch().unwrap();
    w0.append_put(b"gamma", b"three\n").unwrap();
    w1.append_put(b"delta", b"four").unwrap();
    w1.append_commit(
        &[SourceOffsetRef {
            name: b"src",
            offset: 1,
        }],
        None,
    )
    .unwrap();
    m.sync_all().unwrap();
    m.close().unwrap();
    Sample {
        records: read_back(dir),
        first_epoch,
        second_epoch,
    }
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `(lane, seq)` of each JSON line.
fn ids(lines: &[Value]) -> Vec<(u64, u64)> {
    lines
        .iter()
        .map(|v| (v["lane"].as_u64().unwrap(), v["seq"].as_u64().unwrap()))
        .collect()
}

fn one_line_error(o: &Output, code_wanted: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(code(o), code_wanted, "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(needle), "{needle:?} in {err:?}");
}

#[test]
fn help_lists_the_wal_commands() {
    let o = corewal(&["--help"]);
    assert_eq!(code(&o), 0);
    let text = stdout(&o);
    for command in ["bench", "dump", "verify", "stats"] {
        assert!(text.contains(&format!("  {command} ")), "{command}: {text}");
    }
    for command in ["dump", "verify", "stats"] {
        let o = corewal(&[command, "--help"]);
        assert_eq!(code(&o), 0);
        assert!(stdout(&o).contains(&format!("corewal {command} DIR")));
    }
}

#[test]
fn bad_usage_is_one_line_and_exit_2() {
    for args in [
        &["dump"][..],
        &["dump", "/x", "--op", "frob"],
        &["verify", "/x", "--mode", "lenient"],
        &["stats", "/x", "/y"],
        &["dump", "/x", "--limit", "many"],
    ] {
        let o = corewal(args);
        one_line_error(&o, 2, "corewal: ");
    }
}

#[test]
fn dump_text_shows_every_record_in_recovery_order() {
    let tmp = tempfile::tempdir().unwrap();
    let s = sample(tmp.path());
    let o = run_in(tmp.path(), &["dump"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), s.records.len(), "{text}");
    for (line, (lane, seq, epoch, _)) in lines.iter().zip(&s.records) {
        let head = format!("lane {lane} seq {seq} epoch {epoch} ts ");
        assert!(line.starts_with(&head), "{line:?} should start {head:?}");
        assert!(line.contains("Z pos "), "{line}");
    }
    let find = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{text}"))
    };
    find(r#"PUT key="alpha" value="one""#);
    find(&format!(
        r#"PUT key=0x000102 value=100 bytes "{}"..."#,
        "x".repeat(32)
    ));
    find(r#"DELETE key="alpha""#);
    find(r#"COMMIT offsets=["topic-a"=42, "topic-b"=7] watermark=-5"#);
    find(r#"COMMIT offsets=["src"=1] watermark=none"#);
    find("CHECKPOINT id=9");
    find(r#"PUT key="gamma" value="three\n""#);
    let barrier = find("EPOCH_BARRIER");
    assert!(barrier.contains(&format!("epoch {}", s.second_epoch)));
    // The timestamp is RFC 3339 UTC with nanoseconds.
    let ts = lines[0]
        .split(" ts ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert_eq!(ts.len(), "2026-11-21T20:08:04.123456789Z".len(), "{ts}");
    assert_eq!((&ts[4..5], &ts[10..11], &ts[19..20]), ("-", "T", "."));
}

#[test]
fn dump_json_lines_carry_every_field() {
    let tmp = tempfile::tempdir().unwrap();
    let s = sample(tmp.path());
    let o = run_in(tmp.path(), &["dump", "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let lines = json_lines(&o);
    let want: Vec<(u64, u64)> = s.records.iter().map(|r| (u64::from(r.0), r.1)).collect();
    assert_eq!(ids(&lines), want, "recovery order");
    for (v, (_, _, epoch, op)) in lines.iter().zip(&s.records) {
        assert_eq!(v["epoch"].as_u64(), Some(*epoch));
        assert_eq!(v["op"].as_str(), Some(op.as_str()));
        assert!(v["timestamp_ns"].as_i64().unwrap() > 0);
        assert!(v["position"].is_u64());
    }
    // Fields come in a fixed order.
    let first = stdout(&o).lines().next().unwrap().to_owned();
    assert!(
        first.starts_with(r#"{"lane":"#) && first.contains(r#","seq":"#),
        "{first}"
    );
    let find = |op: &str, key: &str| -> &Value {
        lines
            .iter()
            .find(|v| v["op"] == op && v["key_hex"] == key)
            .unwrap_or_else(|| panic!("no {op} with key_hex {key}"))
    };
    let put = find("put", "616c706861");
    assert_eq!(put["key"], "alpha");
    assert_eq!(put["value"], "one");
    assert_eq!(put["value_hex"], "6f6e65");
    let binary = find("put", "000102");
    assert!(binary.get("key").is_some(), "0,1,2 is valid UTF-8");
    assert_eq!(binary["value_hex"], "78".repeat(100));
    let delete = find("delete", "616c706861");
    assert!(delete.get("value_hex").is_none());
    let commits: Vec<&Value> = lines.iter().filter(|v| v["op"] == "commit").collect();
    assert_eq!(commits.len(), 2);
    let two = commits.iter().find(|v| v["watermark"] == -5).unwrap();
    assert_eq!(two["offsets"][0]["name"], "topic-a");
    assert_eq!(two["offsets"][0]["name_hex"], "746f7069632d61");
    assert_eq!(two["offsets"][0]["offset"], 42);
    assert_eq!(two["offsets"][1]["offset"], 7);
    let one = commits.iter().find(|v| v["watermark"].is_null()).unwrap();
    assert_eq!(one["offsets"].as_array().unwrap().len(), 1);
    let checkpoint = lines.iter().find(|v| v["op"] == "checkpoint").unwrap();
    assert_eq!(checkpoint["checkpoint_id"], 9);
    assert_eq!(checkpoint["lane"], 1);
}

#[test]
fn dump_non_utf8_bytes_have_only_hex() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::open(tmp.path(), &options()).unwrap();
    m.writer(0)
        .unwrap()
        .append_put(&[0xff, 0xfe], b"ok")
        .unwrap();
    m.close().unwrap();
    let o = run_in(tmp.path(), &["dump", "--json"]);
    let lines = json_lines(&o);
    assert_eq!(lines[0]["key_hex"], "fffe");
    assert!(lines[0].get("key").is_none(), "{}", lines[0]);
    assert_eq!(lines[0]["value"], "ok");
    let o = run_in(tmp.path(), &["dump"]);
    assert!(
        stdout(&o).contains(r#"PUT key=0xfffe value="ok""#),
        "{}",
        stdout(&o)
    );
}

#[test]
fn dump_filters_and_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let s = sample(tmp.path());
    let dump = |args: &[&str]| {
        let mut all = vec!["dump", "--json"];
        all.extend_from_slice(args);
        let o = run_in(tmp.path(), &all);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        json_lines(&o)
    };
    let subset = |keep: &dyn Fn(&Rec) -> bool| -> Vec<(u64, u64)> {
        s.records
            .iter()
            .filter(|r| keep(r))
            .map(|r| (u64::from(r.0), r.1))
            .collect()
    };

    let lane1 = dump(&["--lane", "1"]);
    assert_eq!(ids(&lane1), subset(&|r| r.0 == 1));
    assert!(!lane1.is_empty());

    let edits = dump(&["--op", "put,delete"]);
    assert_eq!(ids(&edits), subset(&|r| r.3 == "put" || r.3 == "delete"));
    assert_eq!(edits.len(), 6);

    let second = s.second_epoch.to_string();
    let later = dump(&["--from-epoch", &second]);
    assert_eq!(ids(&later), subset(&|r| r.2 >= s.second_epoch));
    assert!(later.iter().any(|v| v["op"] == "barrier"));

    let first = s.first_epoch.to_string();
    let earlier = dump(&["--to-epoch", &first]);
    assert_eq!(ids(&earlier), subset(&|r| r.2 <= s.first_epoch));
    assert_eq!(earlier.len(), 6);

    let three = dump(&["--limit", "3"]);
    assert_eq!(ids(&three), subset(&|_| true)[..3].to_vec());
    let combined = dump(&["--lane=0", "--op=put", "--limit=1", "--from-epoch", &second]);
    assert_eq!(ids(&combined).len(), 1);
    assert_eq!(combined[0]["key"], "gamma");

    // A lane the WAL does not have is refused in one line.
    let o = run_in(tmp.path(), &["dump", "--lane", "7"]);
    one_line_error(&o, 2, "lane 7");
}

/// Writes `bytes` at `offset` of `path`.
fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
    file.sync_all().unwrap();
}

#[test]
fn verify_a_clean_wal() {
    let tmp = tempfile::tempdir().unwrap();
    let s = sample(tmp.path());
    let o = run_in(tmp.path(), &["verify"]);
    let text = stdout(&o);
    assert_eq!(code(&o), 0, "{text}{}", stderr(&o));
    assert!(text.contains("lane 0: 1 segment (0), "), "{text}");
    assert_eq!(text.matches(": clean").count(), 2, "{text}");
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("sound (mode tolerate): 2 lanes, ")
            && last.contains(&format!("{} records", s.records.len())),
        "{last}"
    );
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));

    let o = run_in(tmp.path(), &["verify", "--json", "--mode", "absolute"]);
    assert_eq!(code(&o), 0);
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["sound"], true);
    assert_eq!(v["mode"], "absolute");
    assert_eq!(v["records"].as_u64(), Some(s.records.len() as u64));
    for lane in 0..2u32 {
        let l = &v["lanes"][lane as usize];
        assert_eq!(l["verdict"], "clean");
        let n = s.records.iter().filter(|r| r.0 == lane).count() as u64;
        assert_eq!(l["records"].as_u64(), Some(n));
        assert!(l["damage"].is_null());
    }
}

/// Lane 0's end position, after the sample is written.
fn lane0_end(dir: &Path) -> u64 {
    let scans = corewal::recovery::scan_dir(&FileIo::default(), dir, 2).unwrap();
    scans[0].end_position
}

#[test]
fn verify_reports_a_torn_tail_and_absolute_refuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    sample(tmp.path());
    let end = lane0_end(tmp.path());
    let offset = SEGMENT_HEADER + end;
    write_at(&tmp.path().join(LANE0_SEGMENT0), offset, &[0xa5; 24]);

    let o = run_in(tmp.path(), &["verify"]);
    let text = stdout(&o);
    assert_eq!(code(&o), 0, "a torn tail is sound: {text}");
    let lane0 = text.lines().find(|l| l.starts_with("lane 0:")).unwrap();
    assert!(
        lane0.contains(&format!("torn tail at {LANE0_SEGMENT0} offset {offset}")),
        "{lane0}"
    );
    assert!(
        text.lines()
            .last()
            .unwrap()
            .contains("1 torn tail cut by recovery")
    );

    let o = run_in(tmp.path(), &["verify", "--mode", "absolute"]);
    let text = stdout(&o);
    assert_eq!(code(&o), 1, "{text}");
    assert!(
        text.contains(&format!("TORN TAIL at {LANE0_SEGMENT0} offset {offset}")),
        "{text}"
    );
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("DAMAGED (mode absolute)")
    );

    let o = run_in(tmp.path(), &["verify", "--json"]);
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["sound"], true);
    assert_eq!(v["torn_tails"], 1);
    assert_eq!(v["lanes"][0]["verdict"], "torn_tail");
    assert_eq!(v["lanes"][0]["damage"]["offset"].as_u64(), Some(offset));
    assert_eq!(v["lanes"][0]["damage"]["position"].as_u64(), Some(end));

    // dump reads everything before the tail; absolute refuses it.
    let o = run_in(tmp.path(), &["dump"]);
    assert_eq!(code(&o), 0);
    let o = run_in(tmp.path(), &["dump", "--mode", "absolute"]);
    one_line_error(&o, 1, "torn tail");
}

/// Lane 0 with two synced batches; a byte of the first batch flipped.
fn corrupt_sample(dir: &Path) {
    let m = Manager::open(dir, &options()).unwrap();
    let (w0, w1) = (m.writer(0).unwrap(), m.writer(1).unwrap());
    for i in 0..3 {
        w0.append_put(format!("first-{i}").as_bytes(), b"v")
            .unwrap();
    }
    w1.append_put(b"other", b"lane").unwrap();
    m.sync_all().unwrap();
    for i in 0..3 {
        w0.append_put(format!("second-{i}").as_bytes(), b"v")
            .unwrap();
    }
    m.sync_all().unwrap();
    m.close().unwrap();
    let path = dir.join(LANE0_SEGMENT0);
    let mut byte = [0u8; 1];
    let file = std::fs::File::open(&path).unwrap();
    file.read_exact_at(&mut byte, SEGMENT_HEADER + 20).unwrap();
    write_at(&path, SEGMENT_HEADER + 20, &[byte[0] ^ 0x10]);
}

#[test]
fn verify_names_lane_segment_and_offset_of_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    corrupt_sample(tmp.path());
    for mode in [&[][..], &["--mode", "absolute"]] {
        let mut args = vec!["verify"];
        args.extend_from_slice(mode);
        let o = run_in(tmp.path(), &args);
        let text = stdout(&o);
        assert_eq!(code(&o), 1, "{text}");
        let lane0 = text.lines().find(|l| l.starts_with("lane 0:")).unwrap();
        assert!(
            lane0.contains(&format!("CORRUPT at {LANE0_SEGMENT0} offset 64: ")),
            "{lane0}"
        );
        assert!(lane0.contains("acknowledged data is damaged"), "{lane0}");
        let lane1 = text.lines().find(|l| l.starts_with("lane 1:")).unwrap();
        assert!(lane1.ends_with("clean"), "{lane1}");
        assert!(
            text.lines().last().unwrap().contains("refused (lane 0)"),
            "{text}"
        );
        assert!(!stderr(&o).contains("panicked"));
    }
    // Point-in-time reads each lane up to its first damage: sound.
    let o = run_in(tmp.path(), &["verify", "--mode", "point-in-time"]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(stdout(&o).contains("point-in-time recovery stops this lane there"));

    let o = run_in(tmp.path(), &["verify", "--json"]);
    assert_eq!(code(&o), 1);
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["sound"], false);
    let lane0 = &v["lanes"][0];
    assert_eq!(lane0["verdict"], "corrupt");
    assert_eq!(lane0["damage"]["segment"], LANE0_SEGMENT0);
    assert_eq!(lane0["damage"]["offset"], 64);
    assert!(lane0["error"].as_str().unwrap().contains("lane 0"));
}

#[test]
fn skip_corrupt_reads_around_damage_and_verify_lists_the_ranges() {
    let tmp = tempfile::tempdir().unwrap();
    corrupt_sample(tmp.path());

    // dump: every valid record, the damaged first one of lane 0 left out.
    let o = run_in(tmp.path(), &["dump", "--json", "--mode", "skip-corrupt"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let lines = json_lines(&o);
    let mut lane0: Vec<u64> = ids(&lines)
        .into_iter()
        .filter(|r| r.0 == 0)
        .map(|r| r.1)
        .collect();
    lane0.sort();
    assert_eq!(lane0, vec![1, 2, 3, 4, 5]);
    assert_eq!(lines.len(), 6, "and lane 1's record");
    // Record 0 started at position 0: record 1's position is its length.
    let length = lines
        .iter()
        .find(|v| v["lane"] == 0 && v["seq"] == 1)
        .unwrap()["position"]
        .as_u64()
        .unwrap();

    let o = run_in(tmp.path(), &["verify", "--mode", "skip-corrupt"]);
    let text = stdout(&o);
    assert_eq!(code(&o), 0, "skipping makes it readable: {text}");
    let lane0 = text.lines().find(|l| l.starts_with("lane 0:")).unwrap();
    assert!(
        lane0.contains(", 5 records, ")
            && lane0.ends_with(&format!(
                "1 damaged range ({length} bytes) skipped: {LANE0_SEGMENT0} offset 64 \
                 length {length} (frames fail their checksum)"
            )),
        "{lane0}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("lane 1:") && l.ends_with("clean"))
    );
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("sound (mode skip-corrupt)")
            && last.contains(&format!("1 damaged range ({length} bytes) skipped")),
        "{last}"
    );

    let o = run_in(tmp.path(), &["verify", "--json", "--mode", "skip-corrupt"]);
    assert_eq!(code(&o), 0);
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["sound"], true);
    assert_eq!(v["mode"], "skip-corrupt");
    assert_eq!(v["damaged_ranges"], 1);
    let l0 = &v["lanes"][0];
    assert_eq!(l0["verdict"], "damaged");
    assert_eq!(l0["records"], 5);
    assert!(l0["damage"].is_null(), "no torn tail");
    let range = &l0["damaged_ranges"][0];
    assert_eq!(range["segment"], LANE0_SEGMENT0);
    assert_eq!(range["offset"], 64);
    assert_eq!(range["length"].as_u64(), Some(length));
    assert_eq!(v["lanes"][1]["damaged_ranges"].as_array().unwrap().len(), 0);

    // The default mode still refuses it.
    let o = run_in(tmp.path(), &["dump"]);
    one_line_error(&o, 1, "--mode skip-corrupt");
}

#[test]
fn dump_of_a_corrupt_wal_fails_in_one_line_and_point_in_time_reads_it() {
    let tmp = tempfile::tempdir().unwrap();
    corrupt_sample(tmp.path());
    let o = run_in(tmp.path(), &["dump"]);
    one_line_error(&o, 1, "--mode point-in-time");
    let err = stderr(&o);
    assert!(
        err.contains("lane 0") && err.contains(LANE0_SEGMENT0) && err.contains("offset 64"),
        "{err}"
    );
    assert!(stdout(&o).is_empty());
    let o = run_in(tmp.path(), &["dump", "--json", "--mode", "point-in-time"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1, "only lane 1's record");
    assert_eq!(lines[0]["lane"], 1);
    // stats still reports, with the verdict.
    let o = run_in(tmp.path(), &["stats", "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["lanes"][0]["verdict"], "corrupt");
    assert_eq!(v["lanes"][0]["records"], 0);
    assert_eq!(v["lanes"][1]["records"], 1);
}

/// A frame that checks but whose record breaks the lane's sequence:
/// the scan keeps it, reading it back fails.
#[test]
fn a_record_that_does_not_read_back_is_corruption() {
    use corewal::format::{Encoder, OpRef, RecordRef, frame_seed, seal_frame};
    let tmp = tempfile::tempdir().unwrap();
    let s = sample(tmp.path());
    let end = lane0_end(tmp.path());
    let last = s.records.iter().rfind(|r| r.0 == 0).unwrap();
    let record = RecordRef {
        epoch: last.2,
        timestamp_ns: i64::MAX / 2,
        sequence: last.1 + 5,
        durable_mark: 0,
        core_id: 0,
        op: OpRef::Delete { key: b"forged" },
    };
    let mut encoder = Encoder::default();
    let (padded, len) = encoder.encode(&record);
    let mut frame = seal_frame(frame_seed(0, 0), len, padded).to_vec();
    frame.extend_from_slice(padded);
    let offset = SEGMENT_HEADER + end;
    write_at(&tmp.path().join(LANE0_SEGMENT0), offset, &frame);

    let o = run_in(tmp.path(), &["verify"]);
    let text = stdout(&o);
    assert_eq!(code(&o), 1, "{text}");
    let lane0 = text.lines().find(|l| l.starts_with("lane 0:")).unwrap();
    assert!(
        lane0.contains(&format!(
            "CORRUPT at {LANE0_SEGMENT0} offset {offset}: sequence"
        )),
        "{lane0}"
    );
    assert!(lane0.contains("does not read back"), "{lane0}");
    let o = run_in(tmp.path(), &["verify", "--json"]);
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["lanes"][0]["damage"]["position"].as_u64(), Some(end));
    assert_eq!(v["lanes"][0]["damage"]["record_unreadable"], true);

    // dump prints the lane's records before it, then fails in one line.
    // (The merge decodes a lane's next record before yielding other lanes'
    // later ones, so those are not reached.)
    let o = run_in(tmp.path(), &["dump"]);
    one_line_error(&o, 1, "sequence");
    let lane0 = s.records.iter().filter(|r| r.0 == 0).count();
    let printed = stdout(&o);
    assert_eq!(
        printed.lines().filter(|l| l.starts_with("lane 0 ")).count(),
        lane0,
        "{printed}"
    );
}

#[test]
fn not_a_wal_and_missing_paths_exit_2_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    for command in ["dump", "verify", "stats"] {
        let o = run_in(tmp.path(), &[command]);
        one_line_error(&o, 2, "no WAL here (no corewal.meta)");
        assert!(stdout(&o).is_empty());
        let o = run_in(&missing, &[command]);
        one_line_error(&o, 2, "no such directory");
        let o = run_in(&file, &[command]);
        one_line_error(&o, 2, "not a directory");
    }
}

#[test]
fn damaged_metadata_is_damage() {
    let tmp = tempfile::tempdir().unwrap();
    sample(tmp.path());
    let meta = tmp.path().join("corewal.meta");
    let text = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(&meta, text.replace("num_cores=2", "num_cores=3")).unwrap();
    let o = run_in(tmp.path(), &["verify"]);
    one_line_error(&o, 1, "corewal.meta");
}

#[test]
fn stats_count_what_was_written() {
    let tmp = tempfile::tempdir().unwrap();
    let s = sample(tmp.path());
    let o = run_in(tmp.path(), &["stats", "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["num_cores"], 2);
    assert_eq!(v["segment_bytes"], 65536);
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["preallocate"], true);
    assert_eq!(v["records"].as_u64(), Some(s.records.len() as u64));
    assert_eq!(v["first_epoch"].as_u64(), Some(s.first_epoch));
    assert_eq!(v["last_epoch"].as_u64(), Some(s.second_epoch));
    // A preallocated segment per lane (plus the next one where the idle-
    // priority preparer got to run before close), the metadata and the lock.
    let mut on_disk = 0;
    let mut files = 0;
    for entry in std::fs::read_dir(tmp.path()).unwrap() {
        files += 1;
        on_disk += entry.unwrap().metadata().unwrap().len();
    }
    assert_eq!(v["files"].as_u64(), Some(files));
    assert_eq!(v["disk_bytes"].as_u64(), Some(on_disk));
    assert!(on_disk >= 2 * 65536, "{on_disk}");
    for lane in 0..2u32 {
        let l = &v["lanes"][lane as usize];
        let mine: Vec<_> = s.records.iter().filter(|r| r.0 == lane).collect();
        assert_eq!(l["records"].as_u64(), Some(mine.len() as u64));
        assert_eq!(l["first_epoch"].as_u64(), Some(s.first_epoch));
        assert_eq!(l["last_epoch"].as_u64(), Some(s.second_epoch));
        assert_eq!(l["last_sequence"].as_u64(), Some(mine.last().unwrap().1));
        assert_eq!(l["segments"], 1);
        assert_eq!(l["first_segment"], 0);
        assert_eq!(l["verdict"], "clean");
        assert_eq!(l["ops"]["barrier"], 1, "one barrier closes the first epoch");
        let bytes = l["end_position"].as_u64().unwrap() - l["start_position"].as_u64().unwrap();
        assert_eq!(l["bytes"].as_u64(), Some(bytes));
        assert!(bytes > 0);
    }
    assert_eq!(v["lanes"][0]["ops"]["put"], 3);
    assert_eq!(v["lanes"][0]["ops"]["delete"], 1);
    assert_eq!(v["lanes"][1]["ops"]["checkpoint"], 1);
    assert_eq!(v["lanes"][1]["ops"]["commit"], 1);

    let o = run_in(tmp.path(), &["stats"]);
    assert_eq!(code(&o), 0);
    let text = stdout(&o);
    assert!(
        text.contains("format version 1, 2 lanes, segment_bytes 65536"),
        "{text}"
    );
    let header = text.lines().find(|l| l.starts_with("lane")).unwrap();
    assert!(
        header.contains("records") && header.contains("verdict"),
        "{text}"
    );
    let total = text.lines().find(|l| l.starts_with("all")).unwrap();
    let cells: Vec<&str> = total.split_whitespace().collect();
    assert_eq!(cells[2], s.records.len().to_string(), "{total}");
}

#[test]
fn tools_read_beside_an_open_manager() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::open(tmp.path(), &options()).unwrap();
    m.writer(0).unwrap().append_put(b"k", b"v").unwrap();
    m.sync_all().unwrap();
    for command in ["dump", "verify", "stats"] {
        let o = run_in(tmp.path(), &[command]);
        assert_eq!(code(&o), 0, "{command}: {}", stderr(&o));
    }
    m.close().unwrap();
}

#[test]
fn dump_into_a_closed_pipe_ends_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Manager::open(tmp.path(), &options()).unwrap();
    let w = m.writer(0).unwrap();
    // Far more output than a pipe buffers, across several segments.
    for i in 0..5000u32 {
        w.append_put(format!("key-{i}").as_bytes(), b"value")
            .unwrap();
    }
    m.close().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_corewal"))
        .arg("dump")
        .arg(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("lane 0 seq "), "{line}");
    drop(out);
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.is_empty(), "{err}");
    assert_eq!(o.status.code(), Some(0), "{:?}", o.status);
    // The same through --json.
    let mut child = Command::new(env!("CARGO_BIN_EXE_corewal"))
        .args(["dump", "--json"])
        .arg(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    std::io::stderr().flush().unwrap();
}
