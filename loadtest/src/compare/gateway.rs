//! `ringwall-load compare --scenarios gateway`: what the gateway's policies cost per request.
//!
//! One fast origin (balance's, on the load core). In front of it, one worker or thread each on
//! the proxy core: ringwall plain, with a rate limit, with an API key, with a JWT (RS256, ES256:
//! the same token on every request, as a client sends it, so from the per-worker cache after
//! the first), and with an RS256 JWT verified on every request (the cache off: what a new
//! token per request costs); nginx plain and with `limit_req`; HAProxy plain and with a stick
//! table counting each client's request rate. The limits are far above the load, so nothing
//! is refused: the figure is the price of the check. The same closed-loop load (small
//! keep-alive GETs, 16 connections) on each, rounds interleaved; CPU µs per request of the
//! proxy's processes, medians of the rounds, and each one's ratio to its own plain variant.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::balance::Origins;
use super::processes::{
    cpu_rounds, file_stem, finish_scenario, nginx_single, ringwall_single, start_proxies, CpuRun,
    NginxExtra, ProxySpec, Server,
};
use super::scenario::Proxy;
use super::CompareArgs;
use crate::options::LoadOptions;

const CONNECTIONS: usize = 16;

/// One proxy with one policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    pub proxy: Proxy,
    pub policy: Policy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Plain,
    RateLimit,
    ApiKey,
    JwtRs256,
    JwtEs256,
    /// RS256, the cache of verified tokens off.
    JwtRs256Uncached,
}

impl Policy {
    fn name(self) -> &'static str {
        match self {
            Policy::Plain => "plain",
            Policy::RateLimit => "rate limit",
            Policy::ApiKey => "API key",
            Policy::JwtRs256 => "JWT RS256",
            Policy::JwtEs256 => "JWT ES256",
            Policy::JwtRs256Uncached => "JWT RS256, verified every request",
        }
    }
}

pub const VARIANTS: [Variant; 10] = [
    Variant {
        proxy: Proxy::Ringwall,
        policy: Policy::Plain,
    },
    Variant {
        proxy: Proxy::Ringwall,
        policy: Policy::RateLimit,
    },
    Variant {
        proxy: Proxy::Ringwall,
        policy: Policy::ApiKey,
    },
    Variant {
        proxy: Proxy::Ringwall,
        policy: Policy::JwtRs256,
    },
    Variant {
        proxy: Proxy::Ringwall,
        policy: Policy::JwtEs256,
    },
    Variant {
        proxy: Proxy::Ringwall,
        policy: Policy::JwtRs256Uncached,
    },
    Variant {
        proxy: Proxy::Nginx,
        policy: Policy::Plain,
    },
    Variant {
        proxy: Proxy::Nginx,
        policy: Policy::RateLimit,
    },
    Variant {
        proxy: Proxy::Haproxy,
        policy: Policy::Plain,
    },
    Variant {
        proxy: Proxy::Haproxy,
        policy: Policy::RateLimit,
    },
];

impl Variant {
    pub fn label(&self) -> String {
        let policy = match (self.proxy, self.policy) {
            (Proxy::Nginx, Policy::RateLimit) => "limit_req",
            (Proxy::Haproxy, Policy::RateLimit) => "stick table",
            (_, policy) => policy.name(),
        };
        format!("{} {policy}", self.proxy)
    }

    fn stem(self) -> String {
        file_stem(&self.label())
    }
}

/// The keys and credentials the variants use.
struct Secrets {
    rs256: String,
    es256: String,
    api_key: &'static str,
}

const API_KEY: &str = "compare-gateway-key";

/// Makes an RSA and a P-256 key with openssl under `dir` and a token for each (valid an hour).
fn secrets(dir: &Path) -> anyhow::Result<Secrets> {
    let openssl = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .context("running openssl (apt-get install -y openssl)")?;
        if !out.status.success() {
            bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "rsa.pem",
    ])?;
    openssl(&["pkey", "-in", "rsa.pem", "-pubout", "-out", "rsa.pub"])?;
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        "ec.pem",
    ])?;
    openssl(&["pkey", "-in", "ec.pem", "-pubout", "-out", "ec.pub"])?;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 3600;
    let claims = serde_json::json!({"sub": "bench", "exp": exp});
    let sign = |alg, key: jsonwebtoken::EncodingKey| {
        jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &key)
    };
    let rsa = jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(dir.join("rsa.pem"))?)?;
    let ec = jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(dir.join("ec.pem"))?)?;
    Ok(Secrets {
        rs256: sign(jsonwebtoken::Algorithm::RS256, rsa)?,
        es256: sign(jsonwebtoken::Algorithm::ES256, ec)?,
        api_key: API_KEY,
    })
}

fn sha256_hex(text: &str) -> anyhow::Result<String> {
    let out = Command::new("sh")
        .args(["-c", &format!("printf %s '{text}' | sha256sum")])
        .output()
        .context("sha256sum")?;
    Ok(String::from_utf8(out.stdout)?
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned())
}

/// The configuration text, its file name and the command line of `variant` on `port`.
fn config(
    variant: Variant,
    port: u16,
    origin: u16,
    dir: &Path,
) -> anyhow::Result<(String, String, Vec<String>)> {
    let stem = variant.stem();
    let file = |suffix: &str| dir.join(format!("{stem}{suffix}")).display().to_string();
    let comment = format!("gateway: {}", variant.label());
    Ok(match variant.proxy {
        Proxy::Ringwall => {
            let policy = match variant.policy {
                Policy::Plain => String::new(),
                Policy::RateLimit => "[[rate_limit]]\nname = \"per-client\"\nrate = \"100000000/s\"\n\n[http]\nrate_limits = [\"per-client\"]\n\n".to_owned(),
                Policy::ApiKey => format!(
                    "[auth]\nmode = \"required\"\n\n[[consumer]]\nname = \"bench\"\napi_keys = [\"sha256:{}\"]\n\n",
                    sha256_hex(API_KEY)?
                ),
                Policy::JwtRs256 | Policy::JwtRs256Uncached | Policy::JwtEs256 => {
                    let key = if variant.policy == Policy::JwtEs256 { "ec.pub" } else { "rsa.pub" };
                    let cache = if variant.policy == Policy::JwtRs256Uncached { 0 } else { 10_000 };
                    format!(
                        "[auth]\nmode = \"required\"\n\n[auth.jwt]\nkeys = \"{}\"\ncache = {cache}\n\n",
                        dir.join(key).display()
                    )
                }
            };
            let (text, args) = ringwall_single(&comment, port, origin, &policy, &file(".toml"));
            (text, file(".toml"), args)
        }
        Proxy::Nginx => {
            let (http, location) = if variant.policy == Policy::RateLimit {
                (
                    "    limit_req_zone $binary_remote_addr zone=per_client:10m rate=100000000r/s;\n",
                    "            limit_req zone=per_client burst=1000 nodelay;\n",
                )
            } else {
                ("", "")
            };
            let extra = NginxExtra { http, location };
            let (text, args) =
                nginx_single(&comment, port, origin, &extra, dir, &stem, &file(".conf"));
            (text, file(".conf"), args)
        }
        Proxy::Haproxy => {
            let limit = if variant.policy == Policy::RateLimit {
                "    stick-table type ip size 100k expire 30s store http_req_rate(1s)\n\
                 \x20   http-request track-sc0 src\n\
                 \x20   http-request deny deny_status 429 if { sc_http_req_rate(0) gt 100000000 }\n"
            } else {
                ""
            };
            let text = format!(
                "# ringwall-load compare gateway: {label}\nglobal\n    nbthread 1\n    maxconn 4096\n\n\
                 defaults\n    mode http\n    timeout connect 5s\n    timeout client 300s\n\
                 \x20   timeout server 300s\n    timeout http-keep-alive 300s\n    http-reuse always\n\n\
                 frontend http_in\n    bind 127.0.0.1:{port} backlog 4096\n{limit}    default_backend origin\n\n\
                 backend origin\n    server o0 127.0.0.1:{origin}\n",
                label = variant.label(),
            );
            let args = vec!["-f".into(), file(".cfg"), "-db".into()];
            (text, file(".cfg"), args)
        }
    })
}

/// What the gateway scenario found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Gateway {
    pub connections: usize,
    pub duration_seconds: f64,
    pub rounds: usize,
    pub runs: Vec<CpuRun>,
}

impl Gateway {
    fn median_of(&self, label: &str, f: fn(&CpuRun) -> f64) -> Option<f64> {
        CpuRun::median_of(&self.runs, label, f)
    }

    /// The table: per variant, medians of its rounds, and the ratio to its proxy's plain run.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "What the gateway's policies cost: one origin; small keep-alive GETs, closed loop, {} \
             connections, {} s per run, medians of {} rounds (rounds interleaved); one worker or \
             thread per proxy. Limits far above the load (nothing refused).\n\n\
             | proxy and policy | requests/s | CPU µs/request | ÷ its plain |\n\
             |---|---:|---:|---:|\n",
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
            let plain = Variant {
                proxy: variant.proxy,
                policy: Policy::Plain,
            }
            .label();
            let ratio = self
                .median_of(&plain, |r| r.cpu_us_per_request)
                .map_or_else(|| "-".to_owned(), |p| format!("{:.3}", cpu / p));
            let _ = writeln!(out, "| {label} | {rps:.0} | {cpu:.2} | {ratio} |");
        }
        let failed: u64 = self.runs.iter().map(|r| r.failed).sum();
        let _ = writeln!(out, "\nFailed or refused requests over all runs: {failed}.");
        out
    }
}

/// Writes every variant's configuration into `dir` and starts it on the proxy core; the
/// servers and their ports, in [`VARIANTS`] order.
fn start_variants(
    args: &CompareArgs,
    origin: u16,
    dir: &Path,
) -> anyhow::Result<(Vec<Server>, Vec<u16>)> {
    start_proxies(args, dir, VARIANTS.len(), |i, port| {
        let variant = VARIANTS[i];
        let (config, config_path, command) = config(variant, port, origin, dir)?;
        Ok(ProxySpec {
            label: variant.label(),
            stem: variant.stem(),
            proxy: variant.proxy,
            config_path: config_path.into(),
            config,
            command,
        })
    })
}

/// Runs the gateway scenario; writes `gateway.md` and `gateway.json` into `--out`.
pub fn run(args: &CompareArgs, cancel: &Arc<AtomicBool>) -> anyhow::Result<Gateway> {
    if !args.ringwall.is_file() {
        bail!(
            "no ringwall binary at {} (cargo build --release -p ringwall, or --ringwall PATH)",
            args.ringwall.display()
        );
    }
    let dir = std::env::temp_dir().join(format!("ringwall-load-gateway-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let secrets = secrets(&dir)?;
    let origins = Origins::start(args.load_cpu)?;
    let origin = origins.ports[0];
    let (mut servers, ports) = start_variants(args, origin, &dir)?;
    let headers = |variant: &Variant| -> Vec<(String, String)> {
        match variant.policy {
            Policy::ApiKey => vec![("X-API-Key".into(), secrets.api_key.into())],
            Policy::JwtRs256 | Policy::JwtRs256Uncached => {
                vec![("Authorization".into(), format!("Bearer {}", secrets.rs256))]
            }
            Policy::JwtEs256 => vec![("Authorization".into(), format!("Bearer {}", secrets.es256))],
            Policy::Plain | Policy::RateLimit => Vec::new(),
        }
    };
    let options = |variant: &Variant, port: u16, pids: Vec<u32>, duration: Duration| LoadOptions {
        url: format!("http://127.0.0.1:{port}/"),
        connections: CONNECTIONS,
        threads: 1,
        duration,
        keepalive: true,
        headers: headers(variant),
        timeout: Duration::from_secs(5),
        cpus: vec![args.load_cpu],
        pids,
        cancel: Some(cancel.clone()),
        ..LoadOptions::default()
    };
    for (variant, &port) in VARIANTS.iter().zip(&ports) {
        eprintln!("gateway: warming up {}", variant.label());
        crate::run(&options(variant, port, Vec::new(), Duration::from_secs(1)))
            .with_context(|| format!("warming up {}", variant.label()))?;
    }
    let labels: Vec<String> = VARIANTS.iter().map(Variant::label).collect();
    let runs = cpu_rounds(
        args,
        cancel,
        "gateway",
        &labels,
        &mut servers,
        |i, pids, d| options(&VARIANTS[i], ports[i], pids, d),
    )?;
    servers.clear();
    drop(origins);
    let gateway = Gateway {
        connections: CONNECTIONS,
        duration_seconds: args.duration.as_secs_f64(),
        rounds: args.rounds,
        runs,
    };
    finish_scenario(args, "gateway", &gateway.markdown(), &gateway, &dir)?;
    Ok(gateway)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_is_configured_and_the_table_gives_ratios_to_plain() {
        let dir = Path::new("/tmp/x");
        for variant in VARIANTS.iter().filter(|v| v.policy != Policy::ApiKey) {
            let (text, path, args) = config(*variant, 8080, 9090, dir).unwrap();
            assert!(text.contains(":8080") && text.contains(":9090"), "{text}");
            assert!(args.contains(&path), "{args:?}");
        }
        let nginx = config(VARIANTS[7], 1, 2, dir).unwrap().0;
        assert!(nginx.contains("limit_req zone=per_client"), "{nginx}");
        let haproxy = config(VARIANTS[9], 1, 2, dir).unwrap().0;
        assert!(haproxy.contains("track-sc0 src"), "{haproxy}");
        let uncached = config(VARIANTS[5], 1, 2, dir).unwrap().0;
        assert!(uncached.contains("cache = 0"), "{uncached}");
        let run = |variant: &str, cpu| CpuRun {
            variant: variant.to_owned(),
            round: 1,
            requests: 1000,
            requests_per_second: 500.0,
            cpu_us_per_request: cpu,
            failed: 0,
        };
        let g = Gateway {
            connections: 16,
            duration_seconds: 5.0,
            rounds: 1,
            runs: vec![
                run("ringwall plain", 10.0),
                run("ringwall rate limit", 10.4),
            ],
        };
        let md = g.markdown();
        assert!(
            md.contains("| ringwall rate limit | 500 | 10.40 | 1.040 |"),
            "{md}"
        );
    }
}
