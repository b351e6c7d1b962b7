//! The benchmark's figures: throughput and latency summaries, and the table it prints.

use std::time::Duration;

use serde::Serialize;

/// One line of the table / one entry of the JSON.
#[derive(Clone, Debug, Serialize)]
pub struct Metric {
    pub name: String,
    pub what: String,
    /// `None`: not measured (no `--server-pid`).
    pub value: Option<f64>,
    pub unit: &'static str,
    /// The machine limit that bounds this throughput, and the fraction of it reached.
    pub bound: Option<String>,
    pub bound_value: Option<f64>,
    pub fraction: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub endpoint: String,
    pub cores: usize,
    pub size: u64,
    pub part_size: u64,
    pub big_size: u64,
    pub parts_max: u32,
    pub checksums: bool,
    pub data_dir: String,
    pub elapsed_s: f64,
    pub metrics: Vec<Metric>,
}

pub(super) const MB: f64 = 1_000_000.0;

pub(super) fn throughput(
    name: &str,
    what: &str,
    bytes: u64,
    d: Duration,
    bound: Option<(String, f64)>,
) -> Metric {
    let bps = bytes as f64 / d.as_secs_f64().max(1e-9);
    Metric {
        name: name.into(),
        what: what.into(),
        value: Some(bps / MB),
        unit: "MB/s",
        fraction: bound.as_ref().map(|(_, b)| bps / b),
        bound_value: bound.as_ref().map(|(_, b)| b / MB),
        bound: bound.map(|(n, _)| n),
    }
}

pub(super) fn latency(name: &str, what: &str, d: Duration) -> Metric {
    Metric {
        name: name.into(),
        what: what.into(),
        value: Some(d.as_secs_f64() * 1000.0),
        unit: "ms",
        bound: None,
        bound_value: None,
        fraction: None,
    }
}

pub(super) fn rate(name: &str, what: &str, n: u64, d: Duration, unit: &'static str) -> Metric {
    Metric {
        name: name.into(),
        what: what.into(),
        value: Some(n as f64 / d.as_secs_f64().max(1e-9)),
        unit,
        bound: None,
        bound_value: None,
        fraction: None,
    }
}

pub(super) fn human(b: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
        (1, "B"),
    ];
    if b < 1 << 10 {
        return format!("{b} B");
    }
    for (u, name) in &UNITS[..3] {
        if b >= *u && b.is_multiple_of(*u) {
            return format!("{} {name}", b / u);
        }
    }
    let (u, name) = UNITS
        .iter()
        .find(|(u, _)| b >= *u)
        .copied()
        .unwrap_or((1, "B"));
    format!("{:.1} {name}", b as f64 / u as f64)
}

/// The table: metric, value, unit, and for throughputs the bounding limit and fraction.
pub fn table(r: &Report) -> String {
    let mut rows = vec![[
        "measurement".to_owned(),
        "value".to_owned(),
        "bound (MB/s)".to_owned(),
        "of bound".to_owned(),
    ]];
    for m in &r.metrics {
        let value = match m.value {
            Some(v) if v >= 100.0 => format!("{v:.0} {}", m.unit),
            Some(v) => format!("{v:.2} {}", m.unit),
            None => "n/a".into(),
        };
        let bound = match (&m.bound, m.bound_value) {
            (Some(n), Some(v)) => format!("{n} {v:.0}"),
            _ => String::new(),
        };
        let frac = m
            .fraction
            .map(|f| format!("{:.0}%", f * 100.0))
            .unwrap_or_default();
        rows.push([m.what.clone(), value, bound, frac]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (k, row) in rows.iter().enumerate() {
        out.push('|');
        for (i, cell) in row.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            if i == 0 {
                out.push_str(&format!(" {cell}{} |", " ".repeat(pad)));
            } else {
                out.push_str(&format!(" {}{cell} |", " ".repeat(pad)));
            }
        }
        out.push('\n');
        if k == 0 {
            out.push('|');
            for (i, w) in widths.iter().enumerate() {
                let dashes = "-".repeat(*w);
                out.push_str(&if i == 0 {
                    format!("-{dashes}-|")
                } else {
                    format!("-{dashes}:|")
                });
            }
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "\n{} cores; endpoint {}; data dir {}; {:.0} s\n",
        r.cores, r.endpoint, r.data_dir, r.elapsed_s
    ));
    out
}
