use corewal::{Manager, Options, Recovery, RecoveryOptions, FileIo};
fn main() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("wal");
    let opts = Options { num_cores: 2, segment_bytes: 1 << 20, ..Options::default() };
    let m = Manager::open(&p, &opts).unwrap();
    let t = std::time::Instant::now();
    for i in 0..20000u32 {
        let w = m.writer(i % 2).unwrap();
        w.append_put(&i.to_le_bytes(), &[7u8; 100]).unwrap();
    }
    m.sync_all().unwrap();
    println!("appended in {:?}, pos {}", t.elapsed(), m.writer(0).unwrap().position());
    m.advance_epoch().unwrap();
    m.writer(0).unwrap().append_delete(b"x").unwrap();
    m.close().unwrap();
    drop(m);
    let m = Manager::open(&p, &Options::default()).unwrap();
    println!("reopened seq {} pos {} epoch {}", m.writer(0).unwrap().sequence(), m.writer(0).unwrap().position(), m.epoch());
    m.close().unwrap();
    let mut r = Recovery::open(FileIo::default(), &p, &RecoveryOptions::default()).unwrap();
    let mut n = 0; let mut last = None;
    while let Some(e) = r.next().unwrap() { 
        let k = (e.epoch, e.timestamp_ns, e.core_id, e.sequence);
        if let Some(l) = last { assert!(l < k); }
        last = Some(k); n += 1; }
    println!("recovered {n}");
    for f in std::fs::read_dir(&p).unwrap() { let f = f.unwrap(); println!("{:?} {}", f.file_name(), f.metadata().unwrap().len()); }
}
