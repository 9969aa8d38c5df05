//! `[cache]`: the response cache's size; a route's `cache` (off, or its key, default TTL,
//! cacheable statuses and bypass conditions).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{path, FieldPath, Problem};
use super::file::FileConfig;
use super::units::{deserialize_some_duration, serialize_some_duration, ByteSize};
use super::Route;

type Checked<T> = Result<T, Problem>;

/// `[cache]` as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct CacheFile {
    /// Memory for cached responses, per worker. Default: none (no cache).
    pub memory: Option<ByteSize>,
    /// The largest response stored. Default: `"8MiB"`.
    pub max_entry: ByteSize,
    /// A directory for the on-disk tier every worker shares (relative: to the file's
    /// directory). Default: none (memory only).
    pub disk_dir: Option<String>,
    /// Most bytes of files in `disk_dir`. Default: `"1GiB"` when `disk_dir` is set.
    pub disk_size: Option<ByteSize>,
}

impl Default for CacheFile {
    fn default() -> Self {
        Self {
            memory: None,
            max_entry: ByteSize(8 * 1024 * 1024),
            disk_dir: None,
            disk_size: None,
        }
    }
}

/// The memory of a cache given a disk tier but no `memory`.
const MEMORY_WITH_DISK: u64 = 64 * 1024 * 1024;
/// `disk_size` when it is not given.
const DEFAULT_DISK_SIZE: u64 = 1024 * 1024 * 1024;

/// A route's `cache`: `false`, or a table.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub(crate) enum RouteCacheFile {
    On(bool),
    Table(RouteCacheTable),
}

/// `[route.cache]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RouteCacheTable {
    /// Request fields whose values are part of the key, beside the host, path and query.
    pub key_headers: Vec<String>,
    /// Freshness for responses that give none (no `max-age`, `s-maxage` or `Expires`, nor a
    /// `Last-Modified` to guess from). Default: none (such responses are stored only when a
    /// heuristic applies).
    #[serde(
        deserialize_with = "deserialize_some_duration",
        serialize_with = "serialize_some_duration"
    )]
    pub default_ttl: Option<Duration>,
    /// The statuses that may be stored. Default: those RFC 9110 makes cacheable by default
    /// (200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501) and any status with explicit
    /// freshness.
    pub statuses: Option<Vec<u16>>,
    /// A request with one of these cookies is neither answered from nor stored in the cache.
    pub bypass_cookies: Vec<String>,
    /// A request with one of these fields likewise.
    pub bypass_headers: Vec<String>,
}

/// `[cache]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheSettings {
    /// Bytes of cached responses per worker.
    pub memory: u64,
    pub max_entry: u64,
    /// The on-disk tier: its directory (absolute) and most bytes.
    pub disk: Option<(std::path::PathBuf, u64)>,
}

/// A route's caching, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteCache {
    /// Lowercase.
    pub key_headers: Vec<String>,
    pub default_ttl: Option<Duration>,
    /// `None`: RFC 9111's rules alone.
    pub statuses: Option<Vec<u16>>,
    pub bypass_cookies: Vec<String>,
    /// Lowercase.
    pub bypass_headers: Vec<String>,
}

/// `[cache]` checked, and each route's `cache` put on its policy (every route caches when
/// `[cache] memory` is set, unless it says `cache = false`).
pub(crate) fn check_cache(
    file: &FileConfig,
    routes: &mut [Route],
    base: Option<&std::path::Path>,
) -> Checked<Option<CacheSettings>> {
    let here = path(&["cache"]);
    let disk = match (&file.cache.disk_dir, file.cache.disk_size) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(Problem::new(
                here.key("disk_size"),
                "applies to the disk tier: give disk_dir (or --cache-dir) too",
            ))
        }
        (Some(_), Some(ByteSize(0))) => {
            return Err(Problem::new(here.key("disk_size"), "must be more than 0"))
        }
        (Some(dir), size) => {
            let dir = super::validate::file_path(dir, base, &here.key("disk_dir"))?;
            Some((dir, size.map_or(DEFAULT_DISK_SIZE, |s| s.0)))
        }
    };
    let memory = match (file.cache.memory, &disk) {
        (Some(ByteSize(0)), _) => {
            return Err(Problem::new(
                here.key("memory"),
                "must be more than 0 (leave it out for no cache)",
            ))
        }
        (Some(ByteSize(memory)), _) => Some(memory),
        (None, Some(_)) => Some(MEMORY_WITH_DISK),
        (None, None) => None,
    };
    let settings = memory.map(|memory| CacheSettings {
        memory,
        max_entry: file.cache.max_entry.0,
        disk,
    });
    if settings.is_some() && file.cache.max_entry.0 == 0 {
        return Err(Problem::new(here.key("max_entry"), "must be more than 0"));
    }
    for (i, (route, route_file)) in routes.iter_mut().zip(&file.route).enumerate() {
        let at = path(&["route"]).index(i).key("cache");
        let table = match &route_file.cache {
            None | Some(RouteCacheFile::On(true)) => RouteCacheTable::default(),
            Some(RouteCacheFile::On(false)) => continue,
            Some(RouteCacheFile::Table(table)) => table.clone(),
        };
        if settings.is_none() {
            if route_file.cache.is_some() {
                return Err(Problem::new(
                    at,
                    "there is no cache to use: give [cache] memory (or --cache)",
                ));
            }
            continue;
        }
        route.policy.cache = Some(Arc::new(check_route_cache(&table, &at)?));
    }
    Ok(settings)
}

fn check_route_cache(table: &RouteCacheTable, at: &FieldPath) -> Checked<RouteCache> {
    let names = |list: &[String], key: &str| -> Checked<Vec<String>> {
        list.iter()
            .enumerate()
            .map(|(i, name)| {
                let name = name.trim();
                if name.is_empty() || !super::policy::is_token(name) {
                    return Err(Problem::new(
                        at.key(key).index(i),
                        format!("{name:?} is not a field name"),
                    ));
                }
                Ok(name.to_ascii_lowercase())
            })
            .collect()
    };
    if let Some(ttl) = table.default_ttl {
        if ttl.is_zero() {
            return Err(Problem::new(at.key("default_ttl"), "must be more than 0"));
        }
    }
    if let Some(statuses) = &table.statuses {
        for (i, &status) in statuses.iter().enumerate() {
            if !(200..=599).contains(&status) || status == 206 || status == 304 {
                return Err(Problem::new(
                    at.key("statuses").index(i),
                    format!(
                        "{status} cannot be stored: a final status of 200 to 599, not 206 or 304"
                    ),
                ));
            }
        }
    }
    Ok(RouteCache {
        key_headers: names(&table.key_headers, "key_headers")?,
        default_ttl: table.default_ttl,
        statuses: table.statuses.clone(),
        bypass_cookies: table
            .bypass_cookies
            .iter()
            .map(|c| c.trim().to_owned())
            .collect(),
        bypass_headers: names(&table.bypass_headers, "bypass_headers")?,
    })
}
