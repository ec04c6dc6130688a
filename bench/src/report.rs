//! Results as a markdown table, JSON, and an SVG chart.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use plotters::prelude::*;
use serde::Serialize;

use crate::load::LoadReport;

/// One system at one load point.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    /// The system under test.
    pub system: String,
    /// The request class (`all` for the whole mix).
    pub class: String,
    /// Offered load (open loop); `None` in closed loop.
    pub offered_rps: Option<f64>,
    /// Responses per second.
    pub achieved_rps: f64,
    /// Successful (2xx) responses per second.
    pub goodput_rps: f64,
    /// Median latency of successful responses.
    pub p50_ms: f64,
    /// 99th percentile latency of successful responses.
    pub p99_ms: f64,
    /// 99.9th percentile latency of successful responses.
    pub p999_ms: f64,
    /// Transport errors.
    pub errors: u64,
    /// 503 and 429 responses.
    pub rejected: u64,
    /// 99th percentile latency of rejections.
    pub reject_p99_ms: Option<f64>,
    /// Scheduled requests that never completed.
    pub timed_out: u64,
    /// The comparison the scenario makes (throughput against bare axum, goodput against capacity).
    pub ratio_to_baseline: Option<f64>,
    /// Throughput against the hand-assembled peer stack, in scenarios that run one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_to_peer_stack: Option<f64>,
    /// `bare` (no metrics recorder, no subscriber) or `production` (both installed, as the
    /// example server runs), in scenarios that measure both.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration: Option<String>,
    /// The request path, in scenarios that measure several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Peak resident memory of the server process (`VmHWM`), in scenarios that measure it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_peak_rss_mib: Option<f64>,
    /// Growth of the server's resident memory (`VmRSS`) over the measured time, in scenarios
    /// that measure it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_growth_mib: Option<f64>,
    /// Resident memory at the end of a soak over its value at the 10% mark, minus one (medians
    /// of the samples around each), in scenarios that soak.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_growth_ratio: Option<f64>,
    /// Open file descriptors at the end of a soak minus at its 10% mark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd_growth: Option<i64>,
    /// Tasks alive on the server's runtime at the end of a soak minus at its 10% mark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_growth: Option<i64>,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Row {
    /// Rows for the whole mix and, when the mix has several classes, for each class.
    pub fn from_report(system: &str, offered_rps: Option<f64>, report: &LoadReport) -> Vec<Row> {
        let secs = report.duration.as_secs_f64();
        let make = |class: &str, stats: &crate::load::ClassStats, timed_out: u64| {
            let success = &stats.success;
            Row {
                system: system.to_owned(),
                class: class.to_owned(),
                offered_rps,
                achieved_rps: stats.completed() as f64 / secs,
                goodput_rps: stats.succeeded() as f64 / secs,
                p50_ms: ms(success.value_at_quantile(0.5)),
                p99_ms: ms(success.value_at_quantile(0.99)),
                p999_ms: ms(success.value_at_quantile(0.999)),
                errors: stats.errors,
                rejected: stats.rejections(),
                reject_p99_ms: (!stats.rejected.is_empty())
                    .then(|| ms(stats.rejected.value_at_quantile(0.99))),
                timed_out,
                ratio_to_baseline: None,
                ratio_to_peer_stack: None,
                configuration: None,
                path: None,
                server_peak_rss_mib: None,
                server_rss_growth_mib: None,
                ..Row::default()
            }
        };
        let mut rows = vec![make("all", &report.total(), report.timed_out)];
        if report.classes.len() > 1 {
            rows.extend(
                report
                    .classes
                    .iter()
                    .map(|(name, stats)| make(name, stats, 0)),
            );
        }
        rows
    }
}

fn num(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// Where `palisade-bench` writes its files: `--out` as its `main` reads it, else `target/bench`.
/// For scenarios that write files of their own beside the common ones.
pub fn out_dir() -> PathBuf {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map_or_else(|| PathBuf::from("target/bench"), PathBuf::from)
}

/// A markdown table of `rows`. The server memory columns appear only when a row has them.
pub fn markdown(rows: &[Row]) -> String {
    let memory = rows
        .iter()
        .any(|r| r.server_peak_rss_mib.is_some() || r.server_rss_growth_mib.is_some());
    let mut out = String::from(
        "| system | class | offered rps | achieved rps | goodput rps | p50 ms | p99 ms | p99.9 ms | rejected | reject p99 ms | errors | timed out | ratio |",
    );
    out.push_str(if memory {
        " server peak RSS MiB | server RSS growth MiB |\n"
    } else {
        "\n"
    });
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    out.push_str(if memory { "---:|---:|\n" } else { "\n" });
    for r in rows {
        let _ = write!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.system,
            match (&r.configuration, &r.path) {
                (Some(configuration), Some(path)) => format!("{path} ({configuration})"),
                _ => r.class.clone(),
            },
            r.offered_rps.map_or("closed loop".into(), num),
            num(r.achieved_rps),
            num(r.goodput_rps),
            num(r.p50_ms),
            num(r.p99_ms),
            num(r.p999_ms),
            r.rejected,
            r.reject_p99_ms.map_or("-".into(), num),
            r.errors,
            r.timed_out,
            r.ratio_to_baseline
                .map_or("-".into(), |x| format!("{x:.2}")),
        );
        if memory {
            let _ = write!(
                out,
                " {} | {} |",
                r.server_peak_rss_mib
                    .map_or("-".into(), |x| format!("{x:.1}")),
                r.server_rss_growth_mib
                    .map_or("-".into(), |x| format!("{x:.1}")),
            );
        }
        out.push('\n');
    }
    out
}

/// Writes `rows` as pretty JSON.
///
/// # Errors
///
/// I/O errors.
pub fn write_json(path: &Path, rows: &[Row]) -> Result<(), String> {
    let json = serde_json::to_string_pretty(rows).map_err(|e| e.to_string())?;
    std::fs::write(path, json).map_err(|e| format!("write {}: {e}", path.display()))
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

type Panel<'a, 'b> = (
    &'a str,
    fn(&Row) -> f64,
    &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
);

/// Draws goodput and p99 against offered load, one line per system (open-loop rows), or achieved
/// throughput and p99 per system (closed-loop rows), as an SVG.
///
/// # Errors
///
/// Drawing or I/O errors.
pub fn write_svg(path: &Path, title: &str, rows: &[Row]) -> Result<(), String> {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.class == "all").collect();
    let mut systems: Vec<&str> = Vec::new();
    for r in &rows {
        if !systems.contains(&r.system.as_str()) {
            systems.push(&r.system);
        }
    }
    let root = SVGBackend::new(path, (1100, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(550);
    let open_loop = rows.iter().all(|r| r.offered_rps.is_some());
    let x_of = |r: &Row, i: usize| {
        if open_loop {
            r.offered_rps.unwrap_or(0.0)
        } else {
            i as f64
        }
    };
    let x_max = rows
        .iter()
        .enumerate()
        .map(|(i, r)| x_of(r, i))
        .fold(1.0, f64::max)
        * 1.08;
    let panels: [Panel<'_, '_>; 2] = [
        (
            if open_loop {
                "goodput (responses/s)"
            } else {
                "throughput (responses/s)"
            },
            |r| r.goodput_rps,
            &left,
        ),
        // Logarithmic: limiters answer in milliseconds while an unbounded queue takes seconds.
        (
            "p99 latency of successes (ms, log scale)",
            |r| r.p99_ms.max(0.1).log10(),
            &right,
        ),
    ];
    for (caption, value, area) in panels {
        let log = caption.contains("log scale");
        let y_max = rows.iter().map(|r| value(r)).fold(1.0, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(if open_loop {
            "offered load (requests/s)"
        } else {
            "system"
        });
        let as_ms = |y: &f64| format!("{:.1}", 10f64.powf(*y));
        if log {
            mesh.y_label_formatter(&as_ms);
        }
        if !open_loop {
            mesh.x_labels(0);
        }
        mesh.draw().map_err(|e| e.to_string())?;
        for (index, system) in systems.iter().enumerate() {
            let color = COLORS[index % COLORS.len()];
            let points: Vec<(f64, f64)> = rows
                .iter()
                .enumerate()
                .filter(|(_, r)| r.system == *system)
                .map(|(i, r)| (x_of(r, i), value(r)))
                .collect();
            let series = chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(|e| e.to_string())?;
            series.label(*system).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&(x, y)| Circle::new((x, y), 4, color.filled())),
                )
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}
