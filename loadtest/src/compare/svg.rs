//! The comparison chart, as hand-written SVG (no plotting dependency).
//!
//! [`chart`] draws three panels from a [`Comparison`]: requests/s per scenario relative to nginx,
//! the proxy's cost per unit of work (CPU µs per request or per MiB, RSS per idle connection)
//! relative to nginx, each bar labelled with its absolute value; and the latency percentile
//! curves of the fixed-rate scenario (x: percentile on the usual "number of nines" scale,
//! y: milliseconds). Unsupported scenarios are marked "n/s" where the bar would be.

use std::fmt::Write as _;

use super::results::{fmt_value, Comparison, Medians, Outcome, ScenarioResult};
use super::scenario::{Figure, Proxy, Scenario};

const WIDTH: f64 = 1300.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const BAR_PANEL_HEIGHT: f64 = 260.0;
const CURVE_PANEL_HEIGHT: f64 = 300.0;

fn color(p: Proxy) -> &'static str {
    match p {
        Proxy::Ringwall => "#d9480f",
        Proxy::Nginx => "#2b8a3e",
        Proxy::Haproxy => "#1c7ed6",
    }
}

/// Escapes text for SVG.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The cost figure of a scenario and its unit.
fn cost(s: Scenario, m: &Medians) -> (Option<f64>, &'static str) {
    match s.figure() {
        Figure::CpuPerRequest | Figure::Latency => (m.cpu_us_per_request, "CPU µs/request"),
        Figure::CpuPerMib => (m.cpu_us_per_mib, "CPU µs/MiB"),
        Figure::RssPerConnection => (m.rss_per_connection_bytes, "RSS B/connection"),
    }
}

type Value = fn(Scenario, &Medians) -> (Option<f64>, &'static str);

/// The whole chart.
pub fn chart(c: &Comparison) -> String {
    let rate_scenario = c
        .scenarios
        .iter()
        .find(|s| s.kind() == Some(Scenario::SmallRate));
    let throughput: Vec<&ScenarioResult> = c
        .scenarios
        .iter()
        .filter(|s| {
            s.kind()
                .is_some_and(|k| !matches!(k.figure(), Figure::RssPerConnection | Figure::Latency))
        })
        .collect();
    let costs: Vec<&ScenarioResult> = c.scenarios.iter().filter(|s| s.kind().is_some()).collect();
    let mut height = 70.0;
    let mut body = String::new();
    if !throughput.is_empty() {
        let rps: Value = |_, m| (m.requests_per_second, "requests/s");
        bar_panel(
            &mut body,
            height,
            "Requests/s relative to nginx (higher is better)",
            &throughput,
            rps,
        );
        height += BAR_PANEL_HEIGHT + 40.0;
    }
    if !costs.is_empty() {
        bar_panel(
            &mut body,
            height,
            "Proxy cost relative to nginx: CPU µs per request or per MiB, RSS per idle connection (lower is better)",
            &costs,
            cost,
        );
        height += BAR_PANEL_HEIGHT + 40.0;
    }
    if let Some(s) = rate_scenario {
        curve_panel(&mut body, height, s);
        height += CURVE_PANEL_HEIGHT + 40.0;
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="28" font-size="20" font-weight="bold">ringwall vs nginx vs HAProxy, proxy on one core</text>"#
    );
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="48" font-size="12" fill="#555">medians of {} rounds, {}s per run; bars labelled with absolute values</text>"##,
        c.rounds, c.duration_seconds
    );
    // Legend.
    for (i, p) in Proxy::ALL.iter().enumerate() {
        let x = WIDTH - RIGHT - 330.0 + i as f64 * 110.0;
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="16" width="14" height="14" fill="{}"/><text x="{}" y="28" font-size="13">{}</text>"#,
            color(*p),
            x + 19.0,
            p.name()
        );
    }
    out.push_str(&body);
    out.push_str("</svg>\n");
    out
}

/// Grouped bars, one group per scenario, heights relative to nginx.
fn bar_panel(out: &mut String, top: f64, title: &str, scenarios: &[&ScenarioResult], value: Value) {
    let plot_top = top + 30.0;
    let plot_h = BAR_PANEL_HEIGHT - 70.0;
    let base = plot_top + plot_h;
    let plot_w = WIDTH - LEFT - RIGHT;
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{}" font-size="15" font-weight="bold">{}</text>"#,
        top + 14.0,
        escape(title)
    );
    // Relative values, and the scale's top. A group where nginx measured zero (no RSS growth)
    // is scaled to its largest bar instead, and says so.
    let denominator = |s: &ScenarioResult| -> Option<(f64, bool)> {
        let kind = s.kind()?;
        let of = |p: Proxy| s.outcome(p).medians().and_then(|m| value(kind, m).0);
        match of(Proxy::Nginx) {
            Some(n) if n > 0.0 => Some((n, false)),
            _ => Proxy::ALL
                .iter()
                .filter_map(|&p| of(p))
                .reduce(f64::max)
                .filter(|&m| m > 0.0)
                .map(|m| (m, true)),
        }
    };
    let rel = |s: &ScenarioResult, p: Proxy| -> Option<(f64, String)> {
        let kind = s.kind()?;
        let v = value(kind, s.outcome(p).medians()?).0?;
        let (d, _) = denominator(s)?;
        Some((v / d, short(v)))
    };
    let max_rel = scenarios
        .iter()
        .flat_map(|s| Proxy::ALL.map(|p| rel(s, p).map(|r| r.0)))
        .flatten()
        .fold(1.2f64, f64::max)
        .min(4.0);
    bar_grid(out, base, plot_h, max_rel);
    let group_w = plot_w / scenarios.len() as f64;
    let bar_w = (group_w * 0.8 / 3.0).min(60.0);
    for (i, s) in scenarios.iter().enumerate() {
        let gx = LEFT + i as f64 * group_w + (group_w - 3.0 * bar_w) / 2.0;
        for (j, p) in Proxy::ALL.iter().enumerate() {
            let x = gx + j as f64 * bar_w;
            match (s.outcome(*p), rel(s, *p)) {
                (Outcome::NotSupported, _) => {
                    let _ = writeln!(
                        out,
                        r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="{}">n/s</text>"#,
                        x + bar_w / 2.0,
                        base - 4.0,
                        color(*p)
                    );
                }
                (Outcome::Measured(_), Some((r, label))) => {
                    let h = (r.min(max_rel) / max_rel * plot_h).max(1.0);
                    // A bar past the top of the scale is cut there and marked.
                    let label = if r > max_rel {
                        format!("↑ {label}")
                    } else {
                        label
                    };
                    let _ = writeln!(
                        out,
                        r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{} {}: {}</title></rect>"#,
                        base - h,
                        bar_w - 2.0,
                        color(*p),
                        escape(&s.scenario),
                        p.name(),
                        escape(&label)
                    );
                    let _ = writeln!(
                        out,
                        r##"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle" fill="#333">{}</text>"##,
                        x + bar_w / 2.0 - 1.0,
                        base - h - 3.0,
                        escape(&label)
                    );
                }
                (Outcome::Measured(_), None) => {}
            }
        }
        let unit = s
            .kind()
            .and_then(|k| s.outcome(Proxy::Nginx).medians().map(|m| value(k, m).1))
            .unwrap_or("");
        let by_max = denominator(s).is_some_and(|(_, by_max)| by_max);
        group_labels(
            out,
            LEFT + (i as f64 + 0.5) * group_w,
            base,
            &s.scenario,
            unit,
            by_max,
        );
    }
}

/// Scenario name, unit, and a note when the group is scaled to its largest bar.
fn group_labels(out: &mut String, x: f64, base: f64, name: &str, unit: &str, by_max: bool) {
    let _ = writeln!(
        out,
        r#"<text x="{x:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
        base + 18.0,
        escape(name)
    );
    let _ = writeln!(
        out,
        r##"<text x="{x:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="#555">{}</text>"##,
        base + 31.0,
        escape(unit)
    );
    if by_max {
        let _ = writeln!(
            out,
            r##"<text x="{x:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="#555">(nginx 0: scaled to largest)</text>"##,
            base + 43.0
        );
    }
}

/// Horizontal grid of a bar panel, every 0.5×, the 1× line darker.
fn bar_grid(out: &mut String, base: f64, plot_h: f64, max_rel: f64) {
    // Grid at 0, 0.5, 1, ...
    let mut g = 0.0;
    while g <= max_rel + 1e-9 {
        let y = base - g / max_rel * plot_h;
        let (stroke, dash) = if (g - 1.0).abs() < 1e-9 {
            ("#888", "")
        } else {
            ("#e5e5e5", "")
        };
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="{stroke}" {dash}/><text x="{}" y="{:.1}" font-size="11" text-anchor="end" fill="#555">{g:.1}×</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0
        );
        g += 0.5;
    }
}

/// Position of a percentile on the "nines" axis: 0 → 0, 90 → 1, 99 → 2, ..., max → 5.
pub fn nines(percentile: f64) -> f64 {
    if percentile >= 100.0 {
        5.0
    } else {
        (-(1.0 - percentile / 100.0).log10()).clamp(0.0, 5.0)
    }
}

/// Latency percentile curves of the fixed-rate scenario.
fn curve_panel(out: &mut String, top: f64, s: &ScenarioResult) {
    let plot_top = top + 30.0;
    let plot_h = CURVE_PANEL_HEIGHT - 70.0;
    let base = plot_top + plot_h;
    let plot_w = WIDTH - LEFT - RIGHT - 170.0;
    let title = match s.rate {
        Some(r) => format!(
            "Latency at a fixed {r:.0} requests/s ({}) — from intended send times",
            s.scenario
        ),
        None => format!("Latency at a fixed rate ({})", s.scenario),
    };
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{}" font-size="15" font-weight="bold">{}</text>"#,
        top + 14.0,
        escape(&title)
    );
    let curves: Vec<(Proxy, &Medians)> = Proxy::ALL
        .iter()
        .filter_map(|&p| s.outcome(p).medians().map(|m| (p, m)))
        .filter(|(_, m)| !m.latency_curve.is_empty())
        .collect();
    let max_ms = curves
        .iter()
        .flat_map(|(_, m)| m.latency_curve.iter().map(|p| p.us as f64 / 1000.0))
        .fold(0.0f64, f64::max)
        .max(0.001);
    let y_top = nice_ceiling(max_ms);
    let x_of = |p: f64| LEFT + nines(p) / 5.0 * plot_w;
    let y_of = |ms: f64| base - ms / y_top * plot_h;
    curve_axes(out, plot_top, base, plot_w, y_top);
    for (i, (p, m)) in curves.iter().enumerate() {
        let points: Vec<String> = m
            .latency_curve
            .iter()
            .map(|pt| {
                format!(
                    "{:.1},{:.1}",
                    x_of(pt.percentile),
                    y_of(pt.us as f64 / 1000.0)
                )
            })
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2.5"/>"#,
            points.join(" "),
            color(*p)
        );
        for pt in &m.latency_curve {
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"><title>{} p{}: {} ms</title></circle>"#,
                x_of(pt.percentile),
                y_of(pt.us as f64 / 1000.0),
                color(*p),
                p.name(),
                pt.percentile,
                fmt_value(pt.us as f64 / 1000.0)
            );
        }
        // p99 call-out at the right.
        let p99 = m.p99_us.unwrap_or(0.0) / 1000.0;
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" fill="{}">{} p99 {} ms</text>"#,
            LEFT + plot_w + 10.0,
            plot_top + 14.0 + i as f64 * 18.0,
            color(*p),
            p.name(),
            fmt_value(p99)
        );
    }
    if let Outcome::NotSupported = s.ringwall {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" fill="{}">ringwall: not supported</text>"#,
            LEFT + plot_w + 10.0,
            plot_top + 70.0,
            color(Proxy::Ringwall)
        );
    }
}

/// Grid, tick labels and axis title of the latency panel.
fn curve_axes(out: &mut String, plot_top: f64, base: f64, plot_w: f64, y_top: f64) {
    let plot_h = base - plot_top;
    let x_of = |p: f64| LEFT + nines(p) / 5.0 * plot_w;
    let y_of = |ms: f64| base - ms / y_top * plot_h;
    for k in 0..=4 {
        let v = y_top * f64::from(k) / 4.0;
        let y = y_of(v);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end" fill="#555">{} ms</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            fmt_value(v)
        );
    }
    for (p, label) in [
        (0.0, "0%"),
        (90.0, "90%"),
        (99.0, "99%"),
        (99.9, "99.9%"),
        (99.99, "99.99%"),
        (100.0, "max"),
    ] {
        let x = x_of(p);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{plot_top:.1}" y2="{base:.1}" stroke="#f0f0f0"/><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#555">{label}</text>"##,
            base + 16.0
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#555">percentile</text>"##,
        LEFT + plot_w / 2.0,
        base + 32.0
    );
}

/// 1, 2 or 5 times a power of ten, at least `v`.
pub fn nice_ceiling(v: f64) -> f64 {
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&c| c >= v - 1e-12)
        .unwrap_or(10.0 * mag)
}

/// `52.1k`, `950`, `12.3`.
pub fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else {
        fmt_value(v)
    }
}

#[cfg(test)]
mod tests {
    use super::super::results::{Comparison, RunFigures};
    use super::*;
    use crate::latency::{LatencySummary, Percentile, CURVE_PERCENTILES};

    fn figures(s: Scenario, p: Proxy, rps: f64, us: u64) -> RunFigures {
        RunFigures {
            scenario: s.name().into(),
            proxy: p.name().into(),
            round: 0,
            requests: 100,
            requests_per_second: rps,
            mib_per_second: 1.0,
            cpu_us_per_request: Some(us as f64 / 100.0),
            cpu_us_per_mib: Some(800.0),
            proxy_cpu_percent: 50.0,
            latency: LatencySummary {
                count: 100,
                p50_us: us,
                p99_us: us * 3,
                curve: CURVE_PERCENTILES
                    .iter()
                    .enumerate()
                    .map(|(i, &percentile)| Percentile {
                        percentile,
                        us: us * (i as u64 + 1),
                    })
                    .collect(),
                ..LatencySummary::default()
            },
            rss_per_connection_bytes: Some(150.0),
            generator_cpu_percent: 30.0,
            errors: 0,
            non_2xx: 0,
        }
    }

    #[test]
    fn chart_has_every_panel_bar_and_curve() {
        let scenarios = [
            Scenario::Small16,
            Scenario::SmallRate,
            Scenario::L4Body1m,
            Scenario::Idle,
        ];
        let mut runs = Vec::new();
        for s in scenarios {
            for p in Proxy::ALL {
                if p != Proxy::Ringwall || s != Scenario::L4Body1m {
                    runs.push(figures(s, p, 40_000.0, 1000));
                }
            }
        }
        let mut c =
            Comparison::from_runs(&scenarios, runs, 1, 5.0, &[(Scenario::SmallRate, 20_000.0)]);
        // As in a result written before ringwall forwarded TCP.
        c.scenarios[2].ringwall = Outcome::NotSupported;
        let svg = chart(&c);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("Requests/s relative to nginx"));
        assert!(svg.contains("Latency at a fixed 20000 requests/s"));
        // small-16 and l4-1m in panel 1 (3 + 2 bars), all four in panel 2 (3 + 3 + 2 + 3).
        assert_eq!(svg.matches("<rect x=").count(), 3 + 5 + 11);
        assert_eq!(svg.matches(">n/s</text>").count(), 2);
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains(">40.0k</text>"));
        assert!(svg.contains(">150.0</text>"));
        assert!(svg.contains(">RSS B/connection</text>"));
        // Well-formed enough for a renderer: every element that opens, closes.
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        assert_eq!(svg.matches("<svg").count(), 1);
    }

    #[test]
    fn axis_helpers() {
        assert!(nines(0.0).abs() < 1e-12);
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert!((nines(100.0) - 5.0).abs() < 1e-12);
        assert!((nice_ceiling(3.2) - 5.0).abs() < 1e-12);
        assert!((nice_ceiling(0.7) - 1.0).abs() < 1e-12);
        assert!((nice_ceiling(12.0) - 20.0).abs() < 1e-12);
        assert_eq!(short(52_100.0), "52.1k");
        assert_eq!(short(950.0), "950.0");
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
