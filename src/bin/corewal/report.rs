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
    pub samples: usize,
}

impl Latency {
    /// Nearest-rank percentiles of `samples`.
    pub fn from_samples(samples: &[std::time::Duration]) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        us.sort_by(f64::total_cmp);
        let rank = |p: f64| us[((p * us.len() as f64).ceil() as usize).clamp(1, us.len()) - 1];
        Some(Latency {
            p50_us: rank(0.50),
            p99_us: rank(0.99),
            samples: us.len(),
        })
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
}

impl Side {
    pub fn new(records: u64, bytes: u64, secs: f64) -> Side {
        Side {
            records,
            bytes,
            secs,
            latency: None,
            rss: None,
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
            o.field("samples", l.samples);
        }
        if let Some(r) = self.rss {
            o.field("peak_rss_mb", round(r.peak_bytes as f64 / MB, 1));
            o.field("rss_growth_mb", round(r.growth_bytes as f64 / MB, 1));
            o.field("peak_rss_reset", r.peak_reset);
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
    /// Sync flavour for the workloads that sync often.
    pub sync: Option<&'static str>,
    pub corewal: Side,
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
            sync: None,
            corewal,
            raw,
            scaling_vs_w1: None,
            checks: Vec::new(),
        }
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
        let ops = self.corewal.latency.is_some();
        let mut o = JsonObject::default();
        o.field("id", self.id);
        o.field("workload", self.title.as_str());
        o.field("lanes", self.lanes);
        if let Some(sync) = self.sync {
            o.field("sync", sync);
        }
        o.object("corewal", self.corewal.to_json(ops));
        o.object("raw", self.raw.to_json(ops));
        o.field("ratio", round(self.ratio(), 3));
        if let Some(r) = self.p99_ratio() {
            o.field("p99_ratio", round(r, 3));
        }
        if let Some(s) = self.scaling_vs_w1 {
            o.field("scaling_vs_w1", round(s, 3));
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

/// A table row: id, workload, corewal, raw, ratio, target, result.
type Row = [String; 7];

fn row(cells: [&str; 7]) -> Row {
    cells.map(str::to_owned)
}

/// The rows of one outcome: its main figure first, the others below it,
/// each target beside the figure it is about.
fn rows(o: &Outcome) -> Vec<Row> {
    let unit = if o.corewal.latency.is_some() {
        "ops/s"
    } else {
        "rec/s"
    };
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
            rate(&o.raw),
            format!("{:.2}", o.ratio()),
        ],
    );
    let blank = String::new;
    if o.corewal.latency.is_none() {
        let mbs = |s: &Side| format!("{} MB/s", thousands(s.mb_per_s().round() as u64));
        figure_rows(
            &[],
            [blank(), blank(), mbs(&o.corewal), mbs(&o.raw), blank()],
        );
    }
    if let (Some(c), Some(r)) = (o.corewal.latency, o.raw.latency) {
        let us = |x: f64| format!("{} µs", thousands(x.round() as u64));
        let p50 = ("p50".to_owned(), us(c.p50_us), us(r.p50_us));
        figure_rows(
            &[],
            [
                blank(),
                p50.0,
                p50.1,
                p50.2,
                format!("{:.2}", c.p50_us / r.p50_us),
            ],
        );
        let ratio = format!("{:.2}", c.p99_us / r.p99_us);
        figure_rows(
            &[Figure::P99Ratio],
            [blank(), "p99".into(), us(c.p99_us), us(r.p99_us), ratio],
        );
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
