//! Results of a comparison: one [`RunFigures`] per run, medians over rounds ([`Medians`]),
//! ratios to nginx and HAProxy, and the markdown table.
//!
//! Runs come in as they are measured; [`Comparison::from_runs`] groups them by scenario and
//! proxy and takes the median of each figure over the rounds (the mean of the middle two for an
//! even count). A proxy that does not support a scenario is [`Outcome::NotSupported`] and shows as
//! "not supported" in every output, with no ratio. Ratios are ringwall ÷ nginx and ringwall ÷
//! HAProxy (and HAProxy ÷ nginx); for CPU, latency and RSS lower is better, for requests/s higher.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::scenario::{Figure, Proxy, Scenario};
use crate::latency::{LatencySummary, Percentile};
use crate::report::LoadReport;

/// The figures of one run (one scenario, one proxy, one round).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunFigures {
    pub scenario: String,
    pub proxy: String,
    pub round: usize,
    pub requests: u64,
    pub requests_per_second: f64,
    /// MiB moved per second, both directions.
    pub mib_per_second: f64,
    pub cpu_us_per_request: Option<f64>,
    pub cpu_us_per_mib: Option<f64>,
    /// The proxy's CPU use over the run, percent of one core.
    pub proxy_cpu_percent: f64,
    pub latency: LatencySummary,
    /// Idle scenario: RSS growth per connection, bytes.
    pub rss_per_connection_bytes: Option<f64>,
    /// The generator's CPU, percent of one core: near 100 means the load side was the limit.
    pub generator_cpu_percent: f64,
    pub errors: u64,
    pub non_2xx: u64,
}

impl RunFigures {
    /// The figures of a load run against the proxy's processes (`report.processes`).
    pub fn from_report(scenario: Scenario, proxy: Proxy, round: usize, r: &LoadReport) -> Self {
        let mib = (r.bytes_read + r.bytes_written) as f64 / (1024.0 * 1024.0);
        RunFigures {
            scenario: scenario.name().to_string(),
            proxy: proxy.name().to_string(),
            round,
            requests: r.requests,
            requests_per_second: r.requests_per_second,
            mib_per_second: if r.elapsed_seconds > 0.0 {
                mib / r.elapsed_seconds
            } else {
                0.0
            },
            cpu_us_per_request: r.target_cpu_us_per_request(),
            cpu_us_per_mib: r.target_cpu_us_per_mib(),
            proxy_cpu_percent: r.processes.iter().map(|p| p.cpu_percent).sum(),
            latency: r.latency.clone(),
            rss_per_connection_bytes: None,
            generator_cpu_percent: r.generator.cpu_percent,
            errors: r.errors.total(),
            non_2xx: r.status.non_2xx_3xx() + r.status.s3xx,
        }
    }
}

/// The median of `values`, `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        f64::midpoint(v[mid - 1], v[mid])
    })
}

/// `a / b` when both are known and `b` is not zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

/// Medians over the rounds of one scenario and proxy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Medians {
    pub rounds: usize,
    pub requests_per_second: Option<f64>,
    pub mib_per_second: Option<f64>,
    pub cpu_us_per_request: Option<f64>,
    pub cpu_us_per_mib: Option<f64>,
    pub proxy_cpu_percent: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    /// Median latency at each curve point.
    pub latency_curve: Vec<Percentile>,
    pub rss_per_connection_bytes: Option<f64>,
    pub max_generator_cpu_percent: f64,
    pub errors: u64,
    pub non_2xx: u64,
}

impl Medians {
    pub fn of(runs: &[&RunFigures]) -> Medians {
        let m = |f: &dyn Fn(&RunFigures) -> Option<f64>| {
            median(&runs.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
        };
        let curve_len = runs
            .iter()
            .map(|r| r.latency.curve.len())
            .min()
            .unwrap_or(0);
        let latency_curve = (0..curve_len)
            .map(|i| Percentile {
                percentile: runs[0].latency.curve[i].percentile,
                us: m(&|r| Some(r.latency.curve[i].us as f64))
                    .unwrap_or(0.0)
                    .round() as u64,
            })
            .collect();
        let has_latency = |r: &RunFigures| r.latency.count > 0;
        Medians {
            rounds: runs.len(),
            requests_per_second: m(&|r| Some(r.requests_per_second)),
            mib_per_second: m(&|r| Some(r.mib_per_second)),
            cpu_us_per_request: m(&|r| r.cpu_us_per_request),
            cpu_us_per_mib: m(&|r| r.cpu_us_per_mib),
            proxy_cpu_percent: m(&|r| Some(r.proxy_cpu_percent)),
            p50_us: m(&|r| has_latency(r).then_some(r.latency.p50_us as f64)),
            p99_us: m(&|r| has_latency(r).then_some(r.latency.p99_us as f64)),
            p999_us: m(&|r| has_latency(r).then_some(r.latency.p999_us as f64)),
            latency_curve,
            rss_per_connection_bytes: m(&|r| r.rss_per_connection_bytes),
            max_generator_cpu_percent: runs
                .iter()
                .map(|r| r.generator_cpu_percent)
                .fold(0.0, f64::max),
            errors: runs.iter().map(|r| r.errors).sum(),
            non_2xx: runs.iter().map(|r| r.non_2xx).sum(),
        }
    }
}

/// A proxy's result in one scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Only in results written before ringwall had TLS and L4 listeners (read by
    /// `--render`); a run today measures every proxy in every scenario.
    NotSupported,
    Measured(Medians),
}

impl Outcome {
    pub fn medians(&self) -> Option<&Medians> {
        match self {
            Outcome::Measured(m) => Some(m),
            Outcome::NotSupported => None,
        }
    }
}

/// One scenario's results for every proxy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub description: String,
    /// Open-loop rate, when the scenario had one.
    pub rate: Option<f64>,
    pub ringwall: Outcome,
    pub nginx: Outcome,
    pub haproxy: Outcome,
}

impl ScenarioResult {
    pub fn outcome(&self, proxy: Proxy) -> &Outcome {
        match proxy {
            Proxy::Ringwall => &self.ringwall,
            Proxy::Nginx => &self.nginx,
            Proxy::Haproxy => &self.haproxy,
        }
    }

    pub fn kind(&self) -> Option<Scenario> {
        Scenario::parse(&self.scenario)
    }
}

/// The whole comparison, as written to JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub rounds: usize,
    pub duration_seconds: f64,
    pub scenarios: Vec<ScenarioResult>,
    pub runs: Vec<RunFigures>,
}

impl Comparison {
    /// Groups `runs` by scenario and proxy and takes medians; `rates` gives each open-loop
    /// scenario's rate.
    pub fn from_runs(
        scenarios: &[Scenario],
        runs: Vec<RunFigures>,
        rounds: usize,
        duration_seconds: f64,
        rates: &[(Scenario, f64)],
    ) -> Comparison {
        let outcome = |s: Scenario, p: Proxy| {
            let mine: Vec<&RunFigures> = runs
                .iter()
                .filter(|r| r.scenario == s.name() && r.proxy == p.name())
                .collect();
            Outcome::Measured(Medians::of(&mine))
        };
        let results = scenarios
            .iter()
            .map(|&s| ScenarioResult {
                scenario: s.name().to_string(),
                description: s.description().to_string(),
                rate: rates.iter().find(|(r, _)| *r == s).map(|(_, v)| *v),
                ringwall: outcome(s, Proxy::Ringwall),
                nginx: outcome(s, Proxy::Nginx),
                haproxy: outcome(s, Proxy::Haproxy),
            })
            .collect();
        Comparison {
            rounds,
            duration_seconds,
            scenarios: results,
            runs,
        }
    }

    /// The markdown report: one row per figure, medians, and ratios.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Medians of {} rounds ({}s per run, rounds interleaved ringwall, nginx, HAProxy). \
             Ratios are ringwall ÷ nginx and ringwall ÷ HAProxy: below 1 is better for CPU, \
             latency and RSS, above 1 for requests/s.\n",
            self.rounds, self.duration_seconds
        );
        let _ = writeln!(
            out,
            "| scenario | figure | ringwall | nginx | HAProxy | ringwall ÷ nginx | ringwall ÷ HAProxy | HAProxy ÷ nginx |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
        for s in &self.scenarios {
            let Some(kind) = s.kind() else { continue };
            for (label, get) in rows(kind) {
                let v = |p: Proxy| s.outcome(p).medians().and_then(get);
                let cell = |p: Proxy| match s.outcome(p) {
                    Outcome::NotSupported => "not supported".to_string(),
                    Outcome::Measured(m) => get(m).map_or_else(|| "–".to_string(), fmt_value),
                };
                let r = |a: Option<f64>, b: Option<f64>| {
                    ratio(a, b).map_or_else(|| "–".to_string(), |x| format!("{x:.2}"))
                };
                let name = match s.rate {
                    Some(rate) => format!("{} ({rate:.0}/s)", s.scenario),
                    None => s.scenario.clone(),
                };
                let _ = writeln!(
                    out,
                    "| {name} | {label} | {} | {} | {} | {} | {} | {} |",
                    cell(Proxy::Ringwall),
                    cell(Proxy::Nginx),
                    cell(Proxy::Haproxy),
                    r(v(Proxy::Ringwall), v(Proxy::Nginx)),
                    r(v(Proxy::Ringwall), v(Proxy::Haproxy)),
                    r(v(Proxy::Haproxy), v(Proxy::Nginx)),
                );
            }
        }
        let _ = writeln!(out);
        for s in &self.scenarios {
            let _ = writeln!(out, "- **{}**: {}", s.scenario, s.description);
        }
        let worst = self
            .scenarios
            .iter()
            .flat_map(|s| Proxy::ALL.map(|p| s.outcome(p).medians().cloned()))
            .flatten()
            .fold((0.0f64, 0u64, 0u64), |(g, e, n), m| {
                (
                    g.max(m.max_generator_cpu_percent),
                    e + m.errors,
                    n + m.non_2xx,
                )
            });
        let _ = writeln!(
            out,
            "\nLoad generator: at most {:.0}% of its core in any run. Failed requests: {}; \
             responses other than 2xx: {}.",
            worst.0, worst.1, worst.2
        );
        out
    }
}

type Getter = fn(&Medians) -> Option<f64>;

/// The rows shown for a scenario: label and figure.
pub fn rows(s: Scenario) -> Vec<(&'static str, Getter)> {
    let rps: (&str, Getter) = ("requests/s", |m| m.requests_per_second);
    let cpu_req: (&str, Getter) = ("CPU µs/request", |m| m.cpu_us_per_request);
    let cpu_mib: (&str, Getter) = ("CPU µs/MiB", |m| m.cpu_us_per_mib);
    match s.figure() {
        Figure::CpuPerRequest => vec![rps, cpu_req],
        Figure::CpuPerMib => vec![rps, ("MiB/s", |m| m.mib_per_second), cpu_mib],
        Figure::Latency => vec![
            cpu_req,
            ("p50 µs", |m| m.p50_us),
            ("p99 µs", |m| m.p99_us),
            ("p99.9 µs", |m| m.p999_us),
            ("proxy CPU %", |m| m.proxy_cpu_percent),
        ],
        Figure::RssPerConnection => {
            vec![("RSS bytes/connection", |m| m.rss_per_connection_bytes)]
        }
    }
}

/// Numbers with a sensible number of digits.
pub fn fmt_value(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(scenario: Scenario, proxy: Proxy, round: usize, rps: f64, cpu: f64) -> RunFigures {
        RunFigures {
            scenario: scenario.name().into(),
            proxy: proxy.name().into(),
            round,
            requests: 1000,
            requests_per_second: rps,
            mib_per_second: 1.0,
            cpu_us_per_request: Some(cpu),
            cpu_us_per_mib: None,
            proxy_cpu_percent: 50.0,
            latency: LatencySummary::default(),
            rss_per_connection_bytes: None,
            generator_cpu_percent: 40.0 + round as f64,
            errors: 0,
            non_2xx: 0,
        }
    }

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 2.0]), Some(2.0));
        assert_eq!(ratio(Some(12.0), Some(16.0)), Some(0.75));
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(fmt_value(12345.6), "12346");
        assert_eq!(fmt_value(15.25), "15.2");
        assert_eq!(fmt_value(1.234), "1.23");
    }

    #[test]
    fn comparison_groups_rounds_and_marks_unsupported() {
        let mut runs = Vec::new();
        for (round, (rw, ng, hp)) in [(12.0, 16.0, 18.0), (30.0, 15.0, 17.0), (11.0, 17.0, 19.0)]
            .into_iter()
            .enumerate()
        {
            runs.push(run(Scenario::Small16, Proxy::Ringwall, round, 50_000.0, rw));
            runs.push(run(Scenario::Small16, Proxy::Nginx, round, 40_000.0, ng));
            runs.push(run(Scenario::Small16, Proxy::Haproxy, round, 38_000.0, hp));
            runs.push(run(Scenario::L4Body1m, Proxy::Nginx, round, 30_000.0, 20.0));
            runs.push(run(
                Scenario::L4Body1m,
                Proxy::Haproxy,
                round,
                28_000.0,
                22.0,
            ));
        }
        let mut c =
            Comparison::from_runs(&[Scenario::Small16, Scenario::L4Body1m], runs, 3, 10.0, &[]);
        // As in a result written before ringwall forwarded TCP.
        c.scenarios[1].ringwall = Outcome::NotSupported;
        let small = &c.scenarios[0];
        let rw = small.ringwall.medians().unwrap();
        // The outlier round (30 µs) does not move the median.
        assert_eq!(rw.cpu_us_per_request, Some(12.0));
        assert_eq!(rw.rounds, 3);
        assert!((rw.max_generator_cpu_percent - 42.0).abs() < 1e-9);
        assert_eq!(
            small.nginx.medians().unwrap().cpu_us_per_request,
            Some(16.0)
        );
        assert_eq!(c.scenarios[1].ringwall, Outcome::NotSupported);

        let md = c.markdown();
        assert!(
            md.contains("| small-16 | CPU µs/request | 12.0 | 16.0 | 18.0 | 0.75 | 0.67 | 1.12 |"),
            "{md}"
        );
        assert!(
            md.contains("| l4-1m | requests/s | not supported | 30000 | 28000 | – | – | 0.93 |"),
            "{md}"
        );
        assert!(md.contains("| small-16 | requests/s | 50000 | 40000 | 38000 | 1.25 |"));
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(r#""outcome":"not_supported""#));
        let back: Comparison = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }
}
