//! The cache's on-disk tier, shared by every worker: one file per URL, written atomically
//! (a temporary file renamed into place), bounded in bytes (the oldest files go first), read
//! again after a restart.
//!
//! Writes, removals and the bound are kept by one writer thread (`ringwall-cache-disk`), so a
//! worker only queues a job (a channel send) and never waits on the disk to store. A worker
//! reads a file itself on a memory miss (`monoio::fs::read`: an io_uring read, or `pread`
//! under epoll, as nginx reads its cache files), and keeps what it read in its memory store.
//!
//! A file is `RWC1`, the length and JSON of the entry's cache policy and key, the length and
//! bytes of the stored head, then the body. Names are the SHA-256 of the key, in hex.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};

use crate::cache::{CacheRequest, Entry};
use crate::http1::{parse_response, HeadLimits, Method};

const MAGIC: &[u8; 4] = b"RWC1";

/// The disk tier of one process.
pub struct Disk {
    dir: PathBuf,
    jobs: crossbeam_channel::Sender<Job>,
}

enum Job {
    Write { key: Vec<u8>, bytes: Vec<u8> },
    Remove { key: Vec<u8> },
    Purge { key: Vec<u8>, prefix: bool },
}

static DISK: std::sync::OnceLock<Option<Arc<Disk>>> = std::sync::OnceLock::new();

impl Disk {
    /// The process's disk tier for `dir` bounded by `max_bytes`, started on first use (every
    /// worker gets the same one; a reload cannot move it).
    pub fn shared(dir: &Path, max_bytes: u64) -> Option<Arc<Disk>> {
        DISK.get_or_init(|| match Disk::start(dir, max_bytes) {
            Ok(disk) => Some(Arc::new(disk)),
            Err(e) => {
                tracing::error!("the cache directory {} cannot be used: {e}", dir.display());
                None
            }
        })
        .clone()
    }

    fn start(dir: &Path, max_bytes: u64) -> std::io::Result<Disk> {
        std::fs::create_dir_all(dir)?;
        let (jobs, queue) = crossbeam_channel::unbounded();
        let index = Index::scan(dir, max_bytes);
        tracing::info!(
            dir = %dir.display(),
            files = index.files.len(),
            bytes = index.bytes,
            "cache directory opened"
        );
        let writer_dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("ringwall-cache-disk".to_owned())
            .spawn(move || writer(&writer_dir, index, &queue))?;
        Ok(Disk {
            dir: dir.to_path_buf(),
            jobs,
        })
    }

    fn path(&self, key: &[u8]) -> PathBuf {
        self.dir.join(file_name(key))
    }

    /// Queues `entry` to be written under `key` (replacing what was there).
    pub fn store(&self, key: &[u8], entry: &Entry) {
        if let Some(bytes) = encode(key, entry) {
            let _ = self.jobs.send(Job::Write {
                key: key.to_vec(),
                bytes,
            });
        }
    }

    /// Queues the removal of what is stored under `key`.
    pub fn remove(&self, key: &[u8]) {
        let _ = self.jobs.send(Job::Remove { key: key.to_vec() });
    }

    /// Queues the removal of `key` (with any `key_headers` after it), or of every key that
    /// starts with it.
    pub fn purge(&self, key: &[u8], prefix: bool) {
        let _ = self.jobs.send(Job::Purge {
            key: key.to_vec(),
            prefix,
        });
    }

    /// What is stored under `key`, read from disk; `None` when nothing is (or it cannot be
    /// read: a damaged file is left for the writer to replace).
    pub async fn load(
        &self,
        key: &[u8],
        request: &CacheRequest,
        limits: &HeadLimits,
    ) -> Option<Arc<Entry>> {
        let bytes = monoio::fs::read(self.path(key)).await.ok()?;
        let (stored_key, policy, head, body) = decode(bytes)?;
        if stored_key != key {
            return None;
        }
        let head = parse_response(&mut BytesMut::from(&head[..]), limits, Method::Get)
            .ok()
            .flatten()?;
        crate::cache::entry(request, &head, policy, body, limits)
    }
}

/// The file name of `key`: its SHA-256, in hex.
fn file_name(key: &[u8]) -> String {
    let digest = Sha256::digest(key);
    digest.iter().fold(String::with_capacity(64), |mut out, b| {
        use std::fmt::Write as _;
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn encode(key: &[u8], entry: &Entry) -> Option<Vec<u8>> {
    let meta = serde_json::to_vec(&(key, &entry.policy)).ok()?;
    let head = entry.head.raw();
    let mut out = Vec::with_capacity(12 + meta.len() + head.len() + entry.body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&u32::try_from(meta.len()).ok()?.to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(&u32::try_from(head.len()).ok()?.to_le_bytes());
    out.extend_from_slice(head);
    out.extend_from_slice(&entry.body);
    Some(out)
}

type Decoded = (Vec<u8>, http_cache_semantics::CachePolicy, Bytes, Bytes);

fn decode(bytes: Vec<u8>) -> Option<Decoded> {
    let bytes = Bytes::from(bytes);
    if bytes.get(..4)? != MAGIC {
        return None;
    }
    let number = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(raw)).ok()
    };
    let meta_len = number(4)?;
    let meta = bytes.get(8..8 + meta_len)?;
    let (key, policy): (Vec<u8>, http_cache_semantics::CachePolicy) =
        serde_json::from_slice(meta).ok()?;
    let head_at = 8 + meta_len;
    let head_len = number(head_at)?;
    let head = bytes.slice(head_at + 4..(head_at + 4 + head_len).min(bytes.len()));
    if head.len() != head_len {
        return None;
    }
    let body = bytes.slice(head_at + 4 + head_len..);
    Some((key, policy, head, body))
}

/// The files of the directory as the writer knows them.
struct Index {
    /// Name → (key, size, written).
    files: HashMap<String, (Vec<u8>, u64, SystemTime)>,
    /// Oldest first: (written, name).
    order: BTreeSet<(SystemTime, String)>,
    bytes: u64,
    max_bytes: u64,
}

impl Index {
    /// What the directory holds (a restart finds what the last run stored); temporary files
    /// left by a crash are removed.
    fn scan(dir: &Path, max_bytes: u64) -> Index {
        let mut index = Index {
            files: HashMap::new(),
            order: BTreeSet::new(),
            bytes: 0,
            max_bytes,
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return index;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(".tmp-") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let Some(key) = read_key(&path) else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let written = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            index.add(name, key, meta.len(), written);
        }
        index.evict(dir);
        index
    }

    fn add(&mut self, name: String, key: Vec<u8>, size: u64, written: SystemTime) {
        self.bytes += size;
        self.order.insert((written, name.clone()));
        self.files.insert(name, (key, size, written));
    }

    fn forget(&mut self, name: &str) -> bool {
        let Some((_, size, written)) = self.files.remove(name) else {
            return false;
        };
        self.bytes -= size;
        self.order.remove(&(written, name.to_owned()));
        true
    }

    fn evict(&mut self, dir: &Path) {
        while self.bytes > self.max_bytes {
            let Some((_, name)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, size, _)) = self.files.remove(&name) {
                self.bytes -= size;
            }
            let _ = std::fs::remove_file(dir.join(&name));
        }
    }
}

/// The key of a cache file (its header only is read).
fn read_key(path: &Path) -> Option<Vec<u8>> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 8];
    file.read_exact(&mut head).ok()?;
    if &head[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(head[4..8].try_into().ok()?) as usize;
    let mut meta = vec![0; len];
    file.read_exact(&mut meta).ok()?;
    let (key, _): (Vec<u8>, serde::de::IgnoredAny) = serde_json::from_slice(&meta).ok()?;
    Some(key)
}

/// The writer thread: carries out the jobs in order until every worker is gone.
fn writer(dir: &Path, mut index: Index, jobs: &crossbeam_channel::Receiver<Job>) {
    for job in jobs {
        match job {
            Job::Write { key, bytes } => {
                let name = file_name(&key);
                let path = dir.join(&name);
                let temporary = dir.join(format!(".tmp-{name}"));
                let written = std::fs::File::create(&temporary)
                    .and_then(|mut file| file.write_all(&bytes))
                    .and_then(|()| std::fs::rename(&temporary, &path));
                if let Err(e) = written {
                    tracing::warn!("cannot write a cache file in {}: {e}", dir.display());
                    let _ = std::fs::remove_file(&temporary);
                    continue;
                }
                index.forget(&name);
                index.add(name, key, bytes.len() as u64, SystemTime::now());
                index.evict(dir);
            }
            Job::Remove { key } => {
                let name = file_name(&key);
                if index.forget(&name) {
                    let _ = std::fs::remove_file(dir.join(&name));
                }
            }
            Job::Purge { key, prefix } => {
                let names: Vec<String> = index
                    .files
                    .iter()
                    .filter(|(_, (k, _, _))| {
                        k.starts_with(&key) && (prefix || k.len() == key.len() || k[key.len()] == 0)
                    })
                    .map(|(name, _)| name.clone())
                    .collect();
                for name in names {
                    index.forget(&name);
                    let _ = std::fs::remove_file(dir.join(&name));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ringwall-disk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn file(dir: &Path, key: &[u8], body_len: usize) {
        let meta = serde_json::to_vec(&(key, 0u8)).unwrap();
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend(std::iter::repeat_n(b'x', body_len));
        std::fs::write(dir.join(file_name(key)), out).unwrap();
        // Distinct modification times, oldest first.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    #[test]
    fn a_scan_finds_the_files_and_keeps_the_bound_oldest_first() {
        let dir = temp_dir("scan");
        for key in [&b"a/1"[..], b"a/2", b"a/3"] {
            file(&dir, key, 1000);
        }
        std::fs::write(dir.join(".tmp-left-by-a-crash"), b"x").unwrap();
        std::fs::write(dir.join(file_name(b"damaged")), b"not a cache file").unwrap();
        let index = Index::scan(&dir, 2500);
        // The oldest went to keep under 2500 bytes; the temporary and damaged files too.
        assert_eq!(index.files.len(), 2);
        assert!(index.bytes <= 2500);
        assert!(!dir.join(file_name(b"a/1")).exists());
        assert!(dir.join(file_name(b"a/3")).exists());
        assert!(!dir.join(".tmp-left-by-a-crash").exists());
        assert!(!dir.join(file_name(b"damaged")).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn damaged_files_do_not_decode() {
        assert!(decode(b"RWC1".to_vec()).is_none());
        assert!(decode(b"XXXX\0\0\0\0".to_vec()).is_none());
        let mut short = MAGIC.to_vec();
        short.extend_from_slice(&100u32.to_le_bytes());
        assert!(decode(short).is_none());
        assert_eq!(file_name(b"k").len(), 64);
    }
}
