//! Results of the workloads, the targets they are held to, and the two ways
//! of showing them: a table for people and JSON lines for scripts.

use crate::json::JsonObject;

/// Bytes in a megabyte, for MB/s and RSS figures.
const MB: f64 = 1e6;

/// Latency percentiles of one side's operations.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub samples: usize,
}

impl Latency {
    /// Nearest-rank percentiles of `samples`.
    pub fn from_samples(samples: &[std::time::Duration]) -> Option<Latency> {
        Latency::from_nanos(samples.iter().map(|d| d.as_nanos() as u64).collect())
    }

    /// Nearest-rank percentiles of `nanos`, samples in nanoseconds.
    pub fn from_nanos(mut nanos: Vec<u64>) -> Option<Latency> {
        if nanos.is_empty() {
            return None;
        }
        nanos.sort_unstable();
        let us = |per_100k: u64| nearest_rank(&nanos, per_100k) as f64 / 1e3;
        Some(Latency {
            p50_us: us(50_000),
            p99_us: us(99_000),
            p999_us: us(99_900),
            max_us: us(100_000),
            samples: nanos.len(),
        })
    }
}

/// The nearest-rank percentile of `sorted` (ascending, not empty), the
/// percentile given in thousandths of a percent (99.9 % = 99,900): the
/// smallest sample that at least that share of samples are at or below.
/// Integer arithmetic, so 99.9 % of 1,000 samples is exactly rank 999.
pub fn nearest_rank(sorted: &[u64], per_100k: u64) -> u64 {
    let n = sorted.len() as u64;
    let rank = (per_100k * n).div_ceil(100_000).clamp(1, n);
    sorted[rank as usize - 1]
}

/// How many syncs a writer had in flight, sampled after every append.
#[derive(Debug, Clone, Copy, Default)]
pub struct InFlight {
    pub syncs: u64,
    pub samples: u64,
    /// Sum of `submitted - completed` over the samples.
    pub sum: u64,
    pub max: u64,
}

impl InFlight {
    pub fn sample(&mut self, in_flight: u64) {
        self.samples += 1;
        self.sum += in_flight;
        self.max = self.max.max(in_flight);
    }

    pub fn mean(&self) -> f64 {
        if self.samples == 0 {
            return 0.0;
        }
        self.sum as f64 / self.samples as f64
    }
}

/// Per-append latency around segment rotation (W1-latency).
#[derive(Debug, Clone, Default)]
pub struct Rotation {
    /// Latency of each append that moved the lane to a new segment, µs.
    pub rotating_us: Vec<f64>,
    /// The largest latency of every other append, µs.
    pub max_other_us: f64,
    /// Mean cost of one `Instant::now()`, ns; each sample includes one.
    pub clock_ns: f64,
}

impl Rotation {
    pub fn max_rotating_us(&self) -> Option<f64> {
        self.rotating_us.iter().copied().reduce(f64::max)
    }
}

/// Resident-set figures of a read.
#[derive(Debug, Clone, Copy)]
pub struct Rss {
    /// Peak resident set of the process during the read (`VmHWM`).
    pub peak_bytes: u64,
    /// How far the resident set rose above where it was before the read.
    pub growth_bytes: u64,
    /// Whether the peak was reset before the read; if not, it is the
    /// process's lifetime peak.
    pub peak_reset: bool,
}

/// What one side (corewal or raw) did in a workload.
#[derive(Debug, Clone, Copy)]
pub struct Side {
    pub records: u64,
    /// Bytes of frame data written or read.
    pub bytes: u64,
    pub secs: f64,
    pub latency: Option<Latency>,
    pub rss: Option<Rss>,
    pub in_flight: Option<InFlight>,
}

impl Side {
    pub fn new(records: u64, bytes: u64, secs: f64) -> Side {
        Side {
            records,
            bytes,
            secs,
            latency: None,
            rss: None,
            in_flight: None,
        }
    }

    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.secs.max(1e-9)
    }

    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / MB / self.secs.max(1e-9)
    }

    fn to_json(self, ops: bool) -> JsonObject {
        let mut o = JsonObject::default();
        o.field("seconds", round(self.secs, 4));
        o.field("records", self.records);
        o.field("bytes", self.bytes);
        let rate_key = if ops { "ops_per_s" } else { "records_per_s" };
        o.field(rate_key, self.records_per_s().round());
        o.field("mb_per_s", round(self.mb_per_s(), 1));
        if let Some(l) = self.latency {
            o.field("p50_us", round(l.p50_us, 1));
            o.field("p99_us", round(l.p99_us, 1));
            o.field("p999_us", round(l.p999_us, 1));
            o.field("max_us", round(l.max_us, 1));
            o.field("samples", l.samples);
        }
        if let Some(r) = self.rss {
            o.field("peak_rss_mb", round(r.peak_bytes as f64 / MB, 1));
            o.field("rss_growth_mb", round(r.growth_bytes as f64 / MB, 1));
            o.field("peak_rss_reset", r.peak_reset);
        }
        if let Some(f) = self.in_flight {
            o.field("syncs", f.syncs);
            o.field("in_flight_mean", round(f.mean(), 3));
            o.field("in_flight_max", f.max);
        }
        o
    }
}

/// The figure a target is about; decides the table row it is shown on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    /// corewal's rate over raw's.
    Ratio,
    /// corewal's own rate, in records (or operations) per second.
    Rate,
    /// corewal's p99 latency over raw's.
    P99Ratio,
    /// corewal's peak resident set, in MB.
    PeakRss,
    /// corewal's W4 rate over its own W1 rate.
    Scaling,
}

impl Figure {
    fn key(self) -> &'static str {
        match self {
            Figure::Ratio => "ratio",
            Figure::Rate => "records_per_s",
            Figure::P99Ratio => "p99_ratio",
            Figure::PeakRss => "peak_rss_mb",
            Figure::Scaling => "scaling_vs_w1",
        }
    }
}

/// A target of BENCH.md and whether this run met it.
#[derive(Debug, Clone)]
pub struct Check {
    pub figure: Figure,
    pub target: String,
    pub observed: f64,
    /// The target is an upper bound (latency, memory).
    pub at_most: bool,
    pub pass: bool,
}

impl Check {
    fn marker(&self) -> &'static str {
        match (self.pass, self.at_most) {
            (true, _) => "✓ ok",
            (false, false) => "✗ below",
            (false, true) => "✗ above",
        }
    }
}

/// One workload's results on both sides.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub id: &'static str,
    pub title: String,
    pub lanes: u32,
    /// corewal's I/O backend (`sync`, `io_uring`); `None` where none is
    /// involved (reading back).
    pub backend: Option<&'static str>,
    /// How durability is asked for: `blocking`, `submit+wait`,
    /// `submit+poll`, `pipelined`; `read` for W5.
    pub mode: Option<&'static str>,
    /// Every segment write direct (the `direct_io` option).
    pub direct_io: bool,
    /// Writes before syncs that are alone direct (the `direct_sync`
    /// option, in use).
    pub direct_sync: bool,
    pub corewal: Side,
    /// Printed after the raw rate, pointing at a footnote.
    pub raw_mark: &'static str,
    /// Rates are of durable operations (W2), not records.
    pub ops: bool,
    /// Show p99.9 and max beside p50 and p99.
    pub show_tail: bool,
    pub rotation: Option<Rotation>,
    pub raw: Side,
    /// corewal's rate here over its own W1 rate (W4).
    pub scaling_vs_w1: Option<f64>,
    pub checks: Vec<Check>,
}

impl Outcome {
    pub fn new(id: &'static str, title: String, lanes: u32, corewal: Side, raw: Side) -> Outcome {
        Outcome {
            id,
            title,
            lanes,
            backend: None,
            mode: None,
            direct_io: false,
            direct_sync: false,
            corewal,
            raw_mark: "",
            ops: false,
            show_tail: false,
            rotation: None,
            raw,
            scaling_vs_w1: None,
            checks: Vec::new(),
        }
    }

    /// Records the backend and durability mode.
    pub fn variant(mut self, backend: Option<&'static str>, mode: &'static str) -> Outcome {
        self.backend = backend;
        self.mode = Some(mode);
        self
    }

    /// corewal's rate over raw's.
    pub fn ratio(&self) -> f64 {
        self.corewal.records_per_s() / self.raw.records_per_s()
    }

    pub fn p99_ratio(&self) -> Option<f64> {
        Some(self.corewal.latency?.p99_us / self.raw.latency?.p99_us)
    }

    fn check(
        mut self,
        figure: Figure,
        target: String,
        observed: f64,
        bound: f64,
        at_most: bool,
    ) -> Outcome {
        let pass = if at_most {
            observed <= bound
        } else {
            observed >= bound
        };
        self.checks.push(Check {
            figure,
            target,
            observed,
            at_most,
            pass,
        });
        self
    }

    /// corewal ≥ `min` × raw.
    pub fn want_ratio(self, min: f64) -> Outcome {
        let ratio = self.ratio();
        self.check(
            Figure::Ratio,
            format!("≥ {min:.2} × raw"),
            ratio,
            min,
            false,
        )
    }

    /// corewal's own rate ≥ `min`, an absolute figure.
    pub fn want_rate(self, min: f64, note: &str) -> Outcome {
        let rate = self.corewal.records_per_s();
        let target = format!("≥ {} rec/s{note}", compact(min));
        self.check(Figure::Rate, target, rate, min, false)
    }

    /// corewal's p99 ≤ `max` × raw's.
    pub fn want_p99_ratio(self, max: f64) -> Outcome {
        match self.p99_ratio() {
            Some(r) => self.check(
                Figure::P99Ratio,
                format!("p99 ≤ {max:.1} × raw"),
                r,
                max,
                true,
            ),
            None => self,
        }
    }

    /// corewal's peak resident set ≤ `max_mb` MB.
    pub fn want_peak_rss(self, max_mb: f64) -> Outcome {
        match self.corewal.rss {
            Some(r) => {
                let mb = r.peak_bytes as f64 / MB;
                self.check(
                    Figure::PeakRss,
                    format!("peak RSS ≤ {max_mb:.0} MB"),
                    mb,
                    max_mb,
                    true,
                )
            }
            None => self,
        }
    }

    /// corewal's rate ≥ `min` × `w1_rate`, corewal's own W1 rate.
    pub fn want_scaling(mut self, w1_rate: f64, min: f64) -> Outcome {
        let scaling = self.corewal.records_per_s() / w1_rate;
        self.scaling_vs_w1 = Some(scaling);
        self.check(
            Figure::Scaling,
            format!("≥ {min:.1} × corewal W1"),
            scaling,
            min,
            false,
        )
    }

    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }

    /// One JSON object per workload.
    pub fn to_json(&self) -> JsonObject {
        let ops = self.ops;
        let mut o = JsonObject::default();
        o.field("id", self.id);
        o.field("workload", self.title.as_str());
        o.field("lanes", self.lanes);
        o.field("backend", self.backend);
        o.field("mode", self.mode);
        o.field("direct_io", self.direct_io);
        o.field("direct_sync", self.direct_sync);
        o.object("corewal", self.corewal.to_json(ops));
        o.object("raw", self.raw.to_json(ops));
        o.field("ratio", round(self.ratio(), 3));
        if let Some(r) = self.p99_ratio() {
            o.field("p99_ratio", round(r, 3));
        }
        if let Some(s) = self.scaling_vs_w1 {
            o.field("scaling_vs_w1", round(s, 3));
        }
        if let Some(r) = &self.rotation {
            let mut rot = JsonObject::default();
            rot.field("rotations", r.rotating_us.len());
            rot.field("max_rotating_us", r.max_rotating_us().map(|x| round(x, 1)));
            rot.field("max_other_us", round(r.max_other_us, 1));
            let each: Vec<f64> = r.rotating_us.iter().map(|&x| round(x, 1)).collect();
            rot.field("rotating_us", each.as_slice());
            rot.field("clock_overhead_ns", round(r.clock_ns, 1));
            o.object("rotation", rot);
        }
        let checks = self.checks.iter().map(|c| {
            let mut check = JsonObject::default();
            check.field("figure", c.figure.key());
            check.field("target", c.target.as_str());
            check.field("observed", round(c.observed, 3));
            check.field("pass", c.pass);
            check
        });
        o.objects("checks", checks);
        o.field("pass", self.passed());
        o
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// `1234567` → `"1,234,567"`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate or count the way BENCH.md writes them: `11.4 M`, `370 k`, `7,990`.
pub fn compact(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e5 {
        format!("{:.0} k", x / 1e3)
    } else {
        thousands(x.round() as u64)
    }
}

/// A latency in microseconds, with decimals where they matter:
/// `0.21 µs`, `4.3 µs`, `41 µs`, `1,605 µs`.
pub fn micros(us: f64) -> String {
    if us < 1.0 {
        format!("{us:.2} µs")
    } else if us < 10.0 {
        format!("{us:.1} µs")
    } else {
        format!("{} µs", thousands(us.round() as u64))
    }
}

/// A table row: id, workload, corewal, raw, ratio, target, result.
type Row = [String; 7];

fn row(cells: [&str; 7]) -> Row {
    cells.map(str::to_owned)
}

/// The rows of one outcome: its main figure first, the others below it,
/// each target beside the figure it is about.
fn rows(o: &Outcome) -> Vec<Row> {
    let unit = if o.ops { "ops/s" } else { "rec/s" };
    let rate = |s: &Side| format!("{} {unit}", compact(s.records_per_s()));
    let mut rows = Vec::new();
    let mut figure_rows = |figures: &[Figure], cells: [String; 5]| {
        let [id, title, corewal, raw, ratio] = cells;
        let mut checks = o.checks.iter().filter(|c| figures.contains(&c.figure));
        let first = checks.next();
        rows.push([
            id,
            title,
            corewal,
            raw,
            ratio,
            first.map_or(String::new(), |c| c.target.clone()),
            first.map_or(String::new(), |c| c.marker().to_owned()),
        ]);
        for c in checks {
            rows.push(row(["", "", "", "", "", &c.target, c.marker()]));
        }
    };
    figure_rows(
        &[Figure::Ratio, Figure::Rate],
        [
            o.id.to_owned(),
            o.title.clone(),
            rate(&o.corewal),
            format!("{}{}", rate(&o.raw), o.raw_mark),
            format!("{:.2}", o.ratio()),
        ],
    );
    let blank = String::new;
    if o.corewal.latency.is_none() && o.corewal.in_flight.is_none() {
        let mbs = |s: &Side| format!("{} MB/s", thousands(s.mb_per_s().round() as u64));
        figure_rows(
            &[],
            [blank(), blank(), mbs(&o.corewal), mbs(&o.raw), blank()],
        );
    }
    if let Some(f) = o.corewal.in_flight {
        let cells = [
            blank(),
            "syncs in flight, mean (max)".into(),
            format!("{:.2} ({})", f.mean(), f.max),
            blank(),
            blank(),
        ];
        figure_rows(&[], cells);
    }
    if let (Some(c), Some(r)) = (o.corewal.latency, o.raw.latency) {
        let mut lines = vec![("p50", c.p50_us, r.p50_us), ("p99", c.p99_us, r.p99_us)];
        if o.show_tail {
            lines.push(("p99.9", c.p999_us, r.p999_us));
            lines.push(("max", c.max_us, r.max_us));
        }
        for (name, c, r) in lines {
            let figures: &[Figure] = if name == "p99" {
                &[Figure::P99Ratio]
            } else {
                &[]
            };
            let cells = [
                blank(),
                name.into(),
                micros(c),
                micros(r),
                format!("{:.2}", c / r),
            ];
            figure_rows(figures, cells);
        }
    }
    if let Some(rot) = &o.rotation {
        let rotating = match rot.max_rotating_us() {
            Some(max) => micros(max),
            None => "—".into(),
        };
        let label = format!("max, {} rotating appends", rot.rotating_us.len());
        figure_rows(&[], [blank(), label, rotating, blank(), blank()]);
        let cells = [
            blank(),
            "max, all other appends".into(),
            micros(rot.max_other_us),
            blank(),
            blank(),
        ];
        figure_rows(&[], cells);
    }
    if let (Some(c), Some(r)) = (o.corewal.rss, o.raw.rss) {
        let mb = |b: u64| format!("{:.1} MB", b as f64 / MB);
        let peak = |x: &Rss| {
            format!(
                "{}{}",
                mb(x.peak_bytes),
                if x.peak_reset { "" } else { "*" }
            )
        };
        let cells = [blank(), "peak RSS".into(), peak(&c), peak(&r), blank()];
        figure_rows(&[Figure::PeakRss], cells);
        let growth = |x: &Rss| format!("+{}", mb(x.growth_bytes));
        figure_rows(
            &[],
            [
                blank(),
                "RSS growth".into(),
                growth(&c),
                growth(&r),
                blank(),
            ],
        );
    }
    if let Some(s) = o.scaling_vs_w1 {
        let cells = [
            blank(),
            "scaling".into(),
            format!("{s:.2} × W1"),
            blank(),
            blank(),
        ];
        figure_rows(&[Figure::Scaling], cells);
    }
    rows
}

/// The whole report as a table; `notes` are printed under it.
pub fn table(outcomes: &[Outcome], heading: &str, notes: &[String]) -> String {
    let mut all = vec![row([
        "id", "workload", "corewal", "raw", "ratio", "target", "",
    ])];
    for o in outcomes {
        all.extend(rows(o));
    }
    let width = |col: usize| {
        all.iter()
            .map(|r| r[col].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..7).map(width).collect();
    let right_aligned = [false, false, true, true, true, false, false];
    let mut out = format!("{heading}\n\n");
    for (i, r) in all.iter().enumerate() {
        // A rule under the header, a blank line between workloads.
        if i == 1 {
            let total: usize = widths.iter().map(|w| w + 2).sum();
            out.push_str(&"-".repeat(total - 2));
            out.push('\n');
        } else if i > 1 && !r[0].is_empty() {
            out.push('\n');
        }
        let mut line = String::new();
        for (col, cell) in r.iter().enumerate() {
            let pad = " ".repeat(widths[col] - cell.chars().count());
            if right_aligned[col] {
                line.push_str(&format!("{pad}{cell}  "));
            } else {
                line.push_str(&format!("{cell}{pad}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let checks: Vec<&Check> = outcomes.iter().flat_map(|o| &o.checks).collect();
    let met = checks.iter().filter(|c| c.pass).count();
    out.push_str(&format!("\n{met} of {} targets met.\n", checks.len()));
    for note in notes {
        out.push_str(note);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn numbers_print_like_bench_md() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(7990), "7,990");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(compact(11_400_000.0), "11.40 M");
        assert_eq!(compact(370_000.0), "370 k");
        assert_eq!(compact(7_990.4), "7,990");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        let l = Latency::from_samples(&samples).unwrap();
        assert_eq!((l.p50_us.round(), l.p99_us.round()), (50.0, 99.0));
        let one = Latency::from_samples(&[Duration::from_micros(7)]).unwrap();
        assert_eq!(one.p99_us.round(), 7.0);
        assert!(Latency::from_samples(&[]).is_none());
    }

    #[test]
    fn tail_percentiles_use_integer_ranks() {
        // 1..=1000 ns: p99.9 is rank 999 exactly, which a float ceil of
        // 0.999 * 1000 can miss.
        let nanos: Vec<u64> = (1..=1000).rev().collect();
        let l = Latency::from_nanos(nanos).unwrap();
        assert_eq!(l.p50_us, 0.5);
        assert_eq!(l.p99_us, 0.99);
        assert_eq!(l.p999_us, 0.999);
        assert_eq!(l.max_us, 1.0);
        assert_eq!(l.samples, 1000);
        let sorted = [10, 20, 30];
        assert_eq!(nearest_rank(&sorted, 0), 10, "p0 is the first sample");
        assert_eq!(nearest_rank(&sorted, 33_333), 10);
        assert_eq!(nearest_rank(&sorted, 33_334), 20);
        assert_eq!(nearest_rank(&sorted, 100_000), 30);
        assert_eq!(nearest_rank(&[5], 99_900), 5);
        assert!(Latency::from_nanos(Vec::new()).is_none());
    }

    #[test]
    fn in_flight_averages_its_samples() {
        let mut f = InFlight::default();
        assert_eq!(f.mean(), 0.0, "no samples");
        for n in [0, 1, 2, 5] {
            f.sample(n);
        }
        assert_eq!((f.samples, f.sum, f.max), (4, 8, 5));
        assert_eq!(f.mean(), 2.0);
    }

    #[test]
    fn micros_keep_the_digits_that_matter() {
        assert_eq!(micros(0.214), "0.21 µs");
        assert_eq!(micros(4.34), "4.3 µs");
        assert_eq!(micros(41.4), "41 µs");
        assert_eq!(micros(1605.2), "1,605 µs");
    }

    #[test]
    fn variants_rotation_and_in_flight_show_in_table_and_json() {
        let mut side = Side::new(1000, 200_000, 0.5);
        side.latency = Latency::from_nanos((1..=1000).map(|n| n * 1000).collect());
        let mut o = Outcome::new("W1-latency", "timed".into(), 1, side, side)
            .variant(Some("io_uring"), "blocking");
        o.show_tail = true;
        o.rotation = Some(Rotation {
            rotating_us: vec![250.0, 12.5],
            max_other_us: 40.0,
            clock_ns: 25.0,
        });
        let mut pipelined = Side::new(100, 20_000, 0.5);
        let mut f = InFlight {
            syncs: 2,
            ..InFlight::default()
        };
        f.sample(1);
        f.sample(2);
        pipelined.in_flight = Some(f);
        let mut w6 = Outcome::new(
            "W6",
            "piped".into(),
            1,
            pipelined,
            Side::new(100, 20_000, 1.0),
        )
        .variant(Some("sync"), "pipelined");
        w6.raw_mark = "²";
        let w5 = Outcome::new("W5", "read".into(), 1, side, side).variant(None, "read");
        let text = table(&[o.clone(), w6.clone()], "heading", &[]);
        for want in [
            "p99.9",
            "999 µs",
            "1,000 µs",
            "max, 2 rotating appends",
            "250 µs",
            "max, all other appends",
            "40 µs",
            "syncs in flight, mean (max)",
            "1.50 (2)",
            "100 rec/s²",
        ] {
            assert!(text.contains(want), "{want:?} missing from\n{text}");
        }

        let json: serde_json::Value = serde_json::from_str(&o.to_json().to_string()).unwrap();
        assert_eq!(json["backend"], "io_uring");
        assert_eq!(json["mode"], "blocking");
        assert_eq!(json["corewal"]["records_per_s"], 2000.0, "records, not ops");
        assert_eq!(json["corewal"]["p999_us"], 999.0);
        assert_eq!(json["corewal"]["max_us"], 1000.0);
        assert_eq!(json["rotation"]["rotations"], 2);
        assert_eq!(json["rotation"]["max_rotating_us"], 250.0);
        assert_eq!(json["rotation"]["rotating_us"][1], 12.5);
        let json: serde_json::Value = serde_json::from_str(&w6.to_json().to_string()).unwrap();
        assert_eq!(json["mode"], "pipelined");
        assert_eq!(json["corewal"]["in_flight_mean"], 1.5);
        assert_eq!(json["corewal"]["in_flight_max"], 2);
        assert_eq!(json["corewal"]["syncs"], 2);
        let json: serde_json::Value = serde_json::from_str(&w5.to_json().to_string()).unwrap();
        assert!(json["backend"].is_null());
        assert_eq!(json["mode"], "read");
    }

    #[test]
    fn checks_mark_pass_and_fail() {
        let fast = Side::new(100, 1000, 1.0);
        let slow = Side::new(50, 500, 1.0);
        let o = Outcome::new("W1", "t".into(), 1, slow, fast).want_ratio(0.8);
        assert!(!o.passed());
        assert_eq!(o.checks[0].marker(), "✗ below");
        let o = Outcome::new("W1", "t".into(), 1, fast, fast).want_ratio(0.8);
        assert!(o.passed());
        let line = o.to_json().to_string();
        assert!(line.starts_with(r#"{"id":"W1","workload":"t","#), "{line}");
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(json["id"], "W1");
        assert_eq!(json["ratio"], 1.0);
        assert_eq!(json["corewal"]["records_per_s"], 100.0);
    }
}
