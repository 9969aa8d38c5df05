//! A real Prometheus text-format parser for the tests: Python's `prometheus_client`
//! (`pip install prometheus_client`; `.ci/run` installs it). A test that needs it fails, saying
//! so, when it is missing.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

/// One sample as the parser read it.
#[derive(Clone, Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"family": family.name, "type": family.type, "name": s.name,
                    "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;

/// Parses `text` with `prometheus_client`; panics (failing the test) when the text is not
/// valid exposition format or the parser is missing.
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut child = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("this test needs python3 with prometheus_client (pip install prometheus_client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named 'prometheus_client'"),
        "this test needs Python's prometheus_client: pip install prometheus_client \
         (.ci/run installs it)"
    );
    assert!(
        output.status.success(),
        "prometheus_client refused the metrics:\n{stderr}\n--- text ---\n{text}"
    );
    let samples: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    samples
        .into_iter()
        .map(|s| Sample {
            name: s["name"].as_str().unwrap().to_owned(),
            labels: s["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect(),
            value: s["value"].as_f64().unwrap(),
        })
        .collect()
}

/// `GET /metrics` from the admin listener at `admin`, parsed.
pub fn scrape(admin: std::net::SocketAddr) -> Vec<Sample> {
    let response =
        super::Client::connect(admin).request("GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n");
    assert_eq!(response.status, 200, "{}", response.head.raw);
    parse_prometheus(&String::from_utf8_lossy(&response.body))
}

/// The sum of the samples named `name` whose labels include every pair of `labels`, as a
/// count (every value summed this way is a whole number).
#[allow(clippy::cast_sign_loss)] // counts are not negative
pub fn count(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> u64 {
    sum(samples, name, labels).round() as u64
}

/// The sum of the samples named `name` whose labels include every pair of `labels`.
pub fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}
