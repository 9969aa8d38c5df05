//! `ringwall-load compare --scenarios cache`: what a cache hit and on-the-fly compression cost.
//!
//! The origin is an nginx of its own on the load core, serving a 4 KiB and a 64 KiB file with
//! `Cache-Control: max-age=3600`, and a 64 KiB JSON document. In front of it, one worker or
//! thread each on the proxy core: ringwall with its cache (`--cache 64MiB`) and nginx with
//! `proxy_cache` (a `keys_zone` in memory, its files under the temp dir), both answering the
//! two files from their caches (checked before measuring: `Cache-Status` hit, and nginx's
//! `$upstream_cache_status` HIT); and for the JSON document, ringwall compressing with gzip
//! (level 6) and with brotli (level 4), and nginx `gzip on` at level 6, every response
//! compressed anew (no cache). The same closed-loop load on each (16 keep-alive connections),
//! rounds interleaved; requests/s and CPU µs per request of the proxy's processes, medians of
//! the rounds.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::processes::{
    cpu_rounds, file_stem, find_program, finish_scenario, free_port, nginx_single, ringwall_single,
    start_proxies, CpuRun, NginxExtra, ProxySpec, Server,
};
use super::scenario::Proxy;
use super::CompareArgs;
use crate::options::LoadOptions;

const CONNECTIONS: usize = 16;

/// What a variant serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    /// A cache hit of the 4 KiB file.
    Hit4k,
    /// A cache hit of the 64 KiB file.
    Hit64k,
    /// The 64 KiB JSON, gzip level 6, every response.
    Gzip,
    /// The 64 KiB JSON, brotli level 4, every response.
    Brotli,
}

impl Job {
    fn name(self) -> &'static str {
        match self {
            Job::Hit4k => "cache hit, 4 KiB",
            Job::Hit64k => "cache hit, 64 KiB",
            Job::Gzip => "gzip 6, 64 KiB JSON",
            Job::Brotli => "brotli 4, 64 KiB JSON",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Job::Hit4k => "/files/4k",
            Job::Hit64k => "/files/64k",
            Job::Gzip | Job::Brotli => "/files/doc.json",
        }
    }

    fn accept_encoding(self) -> Option<&'static str> {
        match self {
            Job::Gzip => Some("gzip"),
            Job::Brotli => Some("br"),
            Job::Hit4k | Job::Hit64k => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    pub proxy: Proxy,
    pub job: Job,
}

pub const VARIANTS: [Variant; 7] = [
    Variant {
        proxy: Proxy::Ringwall,
        job: Job::Hit4k,
    },
    Variant {
        proxy: Proxy::Nginx,
        job: Job::Hit4k,
    },
    Variant {
        proxy: Proxy::Ringwall,
        job: Job::Hit64k,
    },
    Variant {
        proxy: Proxy::Nginx,
        job: Job::Hit64k,
    },
    Variant {
        proxy: Proxy::Ringwall,
        job: Job::Gzip,
    },
    Variant {
        proxy: Proxy::Nginx,
        job: Job::Gzip,
    },
    Variant {
        proxy: Proxy::Ringwall,
        job: Job::Brotli,
    },
];

impl Variant {
    pub fn label(&self) -> String {
        format!("{} {}", self.proxy, self.job.name())
    }

    fn stem(self) -> String {
        file_stem(&self.label())
    }
}

/// The origin's files: 4 KiB and 64 KiB of text, and a 64 KiB JSON document.
fn write_files(www: &Path) -> anyhow::Result<()> {
    let files = www.join("files");
    std::fs::create_dir_all(&files)?;
    let text = |len: usize| -> Vec<u8> { (0..len).map(|i| b"abcdefghij\n"[i % 11]).collect() };
    std::fs::write(files.join("4k"), text(4096))?;
    std::fs::write(files.join("64k"), text(65536))?;
    let mut json = String::from("[");
    let mut i = 0;
    while json.len() < 65536 {
        if i > 0 {
            json.push(',');
        }
        let _ = write!(
            json,
            "{{\"id\":{i},\"name\":\"item {i}\",\"tags\":[\"a\",\"b\"],\"price\":{}.{:02}}}",
            i * 7 % 1000,
            i % 100
        );
        i += 1;
    }
    json.push(']');
    std::fs::write(files.join("doc.json"), json)?;
    Ok(())
}

fn origin_config(dir: &Path, port: u16) -> String {
    format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\npid {pid};\n\
         error_log {log} warn;\nevents {{ worker_connections 4096; }}\nhttp {{\n\
         \x20   access_log off;\n    sendfile on;\n    keepalive_requests 1000000;\n\
         \x20   keepalive_timeout 300s;\n    types {{ text/plain txt; application/json json; }}\n\
         \x20   default_type text/plain;\n    server {{\n\
         \x20       listen 127.0.0.1:{port} backlog=4096;\n\
         \x20       location /files/ {{ root {www}; expires 1h; }}\n    }}\n}}\n",
        pid = dir.join("origin.pid").display(),
        log = dir.join("origin-error.log").display(),
        www = dir.join("www").display(),
    )
}

/// The configuration text, its file name and the command line of `variant` on `port`.
fn config(variant: Variant, port: u16, origin: u16, dir: &Path) -> (String, String, Vec<String>) {
    let stem = variant.stem();
    let file = |suffix: &str| dir.join(format!("{stem}{suffix}")).display().to_string();
    let comment = format!("cache: {}", variant.label());
    match variant.proxy {
        // (No HAProxy variant: its small cache and its lack of compression are not compared.)
        Proxy::Ringwall | Proxy::Haproxy => {
            let feature = match variant.job {
                Job::Hit4k | Job::Hit64k => "[cache]\nmemory = \"64MiB\"\n\n",
                Job::Gzip => "[compression]\nencodings = [\"gzip\"]\ngzip_level = 6\n\n",
                Job::Brotli => "[compression]\nencodings = [\"br\"]\nbrotli_level = 4\n\n",
            };
            let (text, args) = ringwall_single(&comment, port, origin, feature, &file(".toml"));
            (text, file(".toml"), args)
        }
        Proxy::Nginx => {
            let cache_path = format!(
                "    proxy_cache_path {} levels=1:2 keys_zone=bench:16m max_size=1g inactive=1h use_temp_path=off;\n",
                dir.join(format!("{stem}-cache")).display()
            );
            let extra = match variant.job {
                Job::Hit4k | Job::Hit64k => NginxExtra {
                    http: &cache_path,
                    location: "            proxy_cache bench;\n            proxy_cache_lock on;\n\
                               \x20           add_header X-Cache-Status $upstream_cache_status;\n",
                },
                Job::Gzip | Job::Brotli => NginxExtra {
                    http: "    gzip on;\n    gzip_comp_level 6;\n    gzip_min_length 256;\n\
                           \x20   gzip_proxied any;\n    gzip_vary on;\n    gzip_types application/json;\n",
                    location: "",
                },
            };
            let (text, args) =
                nginx_single(&comment, port, origin, &extra, dir, &stem, &file(".conf"));
            (text, file(".conf"), args)
        }
    }
}

/// What the cache scenario found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CacheResults {
    pub connections: usize,
    pub duration_seconds: f64,
    pub rounds: usize,
    pub runs: Vec<CpuRun>,
    /// Response bytes of each variant's answer (the compressed size, for compression).
    pub sizes: Vec<(String, usize)>,
}

impl CacheResults {
    fn median_of(&self, label: &str, f: fn(&CpuRun) -> f64) -> Option<f64> {
        CpuRun::median_of(&self.runs, label, f)
    }

    /// The table: per variant, medians of its rounds, and its CPU per request over nginx's
    /// for the same job (gzip's, for brotli).
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "Cache hits and compression: one nginx origin; closed loop, {} keep-alive \
             connections, {} s per run, medians of {} rounds (rounds interleaved); one worker or \
             thread per proxy.\n\n\
             | proxy and job | response bytes | requests/s | CPU µs/request | ÷ nginx's |\n\
             |---|---:|---:|---:|---:|\n",
            self.connections, self.duration_seconds, self.rounds
        );
        for variant in VARIANTS {
            let label = variant.label();
            let (Some(rps), Some(cpu)) = (
                self.median_of(&label, |r| r.requests_per_second),
                self.median_of(&label, |r| r.cpu_us_per_request),
            ) else {
                continue;
            };
            let nginx_job = if variant.job == Job::Brotli {
                Job::Gzip
            } else {
                variant.job
            };
            let nginx = Variant {
                proxy: Proxy::Nginx,
                job: nginx_job,
            }
            .label();
            let ratio = self
                .median_of(&nginx, |r| r.cpu_us_per_request)
                .map_or_else(|| "-".to_owned(), |n| format!("{:.3}", cpu / n));
            let size = self
                .sizes
                .iter()
                .find(|(l, _)| *l == label)
                .map_or(0, |(_, s)| *s);
            let _ = writeln!(out, "| {label} | {size} | {rps:.0} | {cpu:.2} | {ratio} |");
        }
        let failed: u64 = self.runs.iter().map(|r| r.failed).sum();
        let _ = writeln!(out, "\nFailed requests over all runs: {failed}.");
        out
    }
}

/// One request with curl: the response's head (lowercase) and its body's length.
fn probe(port: u16, job: Job) -> anyhow::Result<(String, usize)> {
    let mut curl = Command::new("curl");
    curl.args([
        "-sS",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-w",
        "\n%{size_download}",
    ]);
    if let Some(encoding) = job.accept_encoding() {
        curl.args(["-H", &format!("Accept-Encoding: {encoding}")]);
    }
    let out = curl
        .arg(format!("http://127.0.0.1:{port}{}", job.path()))
        .output()
        .context("running curl (apt-get install -y curl)")?;
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    let size = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    Ok((text, size))
}

/// The origin nginx on the load core, with its files under `dir`; and its port.
fn start_origin(args: &CompareArgs, dir: &Path) -> anyhow::Result<(Server, u16)> {
    write_files(&dir.join("www"))?;
    let port = free_port()?;
    let conf = dir.join("origin.conf");
    std::fs::write(&conf, origin_config(dir, port))?;
    let nginx = find_program("nginx").context("nginx (apt-get install -y nginx)")?;
    let origin = Server::start(
        "origin",
        args.load_cpu,
        &nginx,
        &[
            "-c".into(),
            conf.display().to_string(),
            "-p".into(),
            dir.display().to_string(),
            "-e".into(),
            dir.join("origin-error.log").display().to_string(),
        ],
        &dir.join("origin.out"),
        port,
    )?;
    Ok((origin, port))
}

/// Checks that `variant` answers from its cache (or compressed) as it is to be measured;
/// its response's body length.
fn answers_as_measured(variant: Variant, port: u16) -> anyhow::Result<usize> {
    let (head, size) = probe(port, variant.job)?;
    let served_right = match (variant.proxy, variant.job) {
        (Proxy::Nginx, Job::Hit4k | Job::Hit64k) => head.contains("x-cache-status: hit"),
        (_, Job::Hit4k | Job::Hit64k) => head.contains("cache-status: ringwall; hit"),
        (_, Job::Gzip) => head.contains("content-encoding: gzip"),
        (_, Job::Brotli) => head.contains("content-encoding: br"),
    };
    if !served_right {
        bail!("{} did not answer as measured:\n{head}", variant.label());
    }
    Ok(size)
}

/// Runs the cache scenario; writes `cache.md` and `cache.json` into `--out`.
pub fn run(args: &CompareArgs, cancel: &Arc<AtomicBool>) -> anyhow::Result<CacheResults> {
    if !args.ringwall.is_file() {
        bail!(
            "no ringwall binary at {} (cargo build --release -p ringwall, or --ringwall PATH)",
            args.ringwall.display()
        );
    }
    let dir = std::env::temp_dir().join(format!("ringwall-load-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (origin, origin_port) = start_origin(args, &dir)?;
    let (mut servers, ports) = start_proxies(args, &dir, VARIANTS.len(), |i, port| {
        let variant = VARIANTS[i];
        let (config, config_path, command) = config(variant, port, origin_port, &dir);
        Ok(ProxySpec {
            label: variant.label(),
            stem: variant.stem(),
            proxy: variant.proxy,
            config_path: config_path.into(),
            config,
            command,
        })
    })?;
    let options = |variant: &Variant, port: u16, pids: Vec<u32>, duration: Duration| LoadOptions {
        url: format!("http://127.0.0.1:{port}{}", variant.job.path()),
        connections: CONNECTIONS,
        threads: 1,
        duration,
        keepalive: true,
        headers: variant
            .job
            .accept_encoding()
            .map(|e| vec![("Accept-Encoding".to_owned(), e.to_owned())])
            .unwrap_or_default(),
        timeout: Duration::from_secs(5),
        cpus: vec![args.load_cpu],
        pids,
        cancel: Some(cancel.clone()),
        ..LoadOptions::default()
    };
    let mut sizes = Vec::new();
    for (variant, &port) in VARIANTS.iter().zip(&ports) {
        eprintln!("cache: warming up {}", variant.label());
        crate::run(&options(variant, port, Vec::new(), Duration::from_secs(1)))
            .with_context(|| format!("warming up {}", variant.label()))?;
        sizes.push((variant.label(), answers_as_measured(*variant, port)?));
    }
    let labels: Vec<String> = VARIANTS.iter().map(Variant::label).collect();
    let runs = cpu_rounds(
        args,
        cancel,
        "cache",
        &labels,
        &mut servers,
        |i, pids, d| options(&VARIANTS[i], ports[i], pids, d),
    )?;
    servers.clear();
    drop(origin);
    let results = CacheResults {
        connections: CONNECTIONS,
        duration_seconds: args.duration.as_secs_f64(),
        rounds: args.rounds,
        runs,
        sizes,
    };
    finish_scenario(args, "cache", &results.markdown(), &results, &dir)?;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_is_configured_for_its_job() {
        let dir = Path::new("/tmp/x");
        for variant in VARIANTS {
            let (text, path, args) = config(variant, 8080, 9090, dir);
            assert!(text.contains(":8080") && text.contains(":9090"), "{text}");
            assert!(args.contains(&path), "{args:?}");
        }
        assert!(config(VARIANTS[0], 1, 2, dir).0.contains("[cache]"));
        assert!(config(VARIANTS[1], 1, 2, dir)
            .0
            .contains("proxy_cache bench;"));
        assert!(config(VARIANTS[4], 1, 2, dir).0.contains("gzip_level = 6"));
        assert!(config(VARIANTS[5], 1, 2, dir)
            .0
            .contains("gzip_comp_level 6;"));
        assert!(config(VARIANTS[6], 1, 2, dir)
            .0
            .contains("encodings = [\"br\"]"));
        assert!(origin_config(dir, 3).contains("expires 1h;"));
    }
}
