//! Access logs: one line per request, written without ever blocking a worker.
//!
//! Each worker formats its lines into a buffer of its own ([`AccessLog`]); the buffer goes to
//! one writer thread ([`LogWriter`]) when it holds 16 KiB and on a 100 ms tick, through a bounded
//! queue that the worker only ever tries: when the writer is behind and the queue is full, the
//! batch is dropped and its lines counted (logged at warn, and kept for the metrics). The writer
//! appends to the file (or stdout) and reopens the file on SIGUSR1, logrotate's convention.
//!
//! Formats: nginx's `combined`, JSON (one object per line), or a template of named fields
//! (TLS version and SNI among them).
//! Nothing secret is written: no header is logged but `Referer` and `User-Agent`, and the
//! values of query parameters that carry credentials (`key`, `token`, `password`, … see
//! [`SECRET_PARAMS`]) are replaced by `[redacted]`.

use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::config::{AccessLogFormat, AccessLogSettings, AccessLogTarget};
use crate::http1::{put_decimal, put_ip, Civil, RequestHead, Version, MONTHS};
use crate::l7::RequestContext;

/// A worker's buffer goes to the writer once it holds this much.
const BATCH: usize = 16 * 1024;
/// Batches the writer may be behind before workers drop lines.
const QUEUE: usize = 256;
/// How often a worker hands over what it buffered.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Query parameters whose values never reach a log (compared without case; also any name that
/// ends in one of them after `_` or `-`, as `api_key`, `access-token`).
pub const SECRET_PARAMS: [&str; 9] = [
    "key",
    "apikey",
    "token",
    "password",
    "passwd",
    "secret",
    "signature",
    "sig",
    "auth",
];

/// The process's log writer: a thread that appends batches to the log.
pub struct LogWriter {
    sender: Sender<Vec<u8>>,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    /// Opens the log (`None` when logging is off) and starts its thread. The file is opened
    /// here, so that a path that cannot be written stops the start.
    pub fn start(settings: &AccessLogSettings) -> io::Result<Option<Self>> {
        let sink = match &settings.target {
            AccessLogTarget::Off => return Ok(None),
            AccessLogTarget::Stdout => Sink::Stdout,
            AccessLogTarget::File(path) => Sink::File {
                file: open(path)?,
                path: path.clone(),
            },
        };
        let reopen = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGUSR1, reopen.clone())?;
        let (sender, receiver) = crossbeam_channel::bounded(QUEUE);
        let thread = std::thread::Builder::new()
            .name("ringwall-log".into())
            .spawn(move || write_batches(sink, &receiver, &reopen))?;
        Ok(Some(Self {
            sender,
            thread: Some(thread),
        }))
    }

    /// A worker's end.
    pub fn for_worker(&self, settings: &AccessLogSettings) -> AccessLog {
        AccessLog {
            sender: self.sender.clone(),
            format: RefCell::new(settings.format.clone()),
            buf: RefCell::new(Vec::with_capacity(BATCH)),
            lines: Cell::new(0),
            dropped: Cell::new(0),
            clock: RefCell::new(Clock::default()),
        }
    }

    /// Waits for the thread to write what the workers handed over (they are gone by then).
    pub fn finish(mut self) {
        let (sender, _) = crossbeam_channel::bounded(0);
        drop(std::mem::replace(&mut self.sender, sender));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn open(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

enum Sink {
    Stdout,
    File { file: File, path: PathBuf },
}

fn write_batches(mut sink: Sink, receiver: &Receiver<Vec<u8>>, reopen: &AtomicBool) {
    while let Ok(batch) = receiver.recv() {
        if let Sink::File { file, path } = &mut sink {
            if reopen.swap(false, Ordering::AcqRel) {
                match open(path) {
                    Ok(new) => *file = new,
                    Err(e) => tracing::error!("cannot reopen the access log: {e}"),
                }
            }
        }
        let written = match &mut sink {
            Sink::Stdout => io::stdout().lock().write_all(&batch),
            Sink::File { file, .. } => file.write_all(&batch),
        };
        if let Err(e) = written {
            tracing::error!("cannot write the access log: {e}");
        }
    }
}

/// A worker's access log: its buffer, and what it dropped.
pub struct AccessLog {
    sender: Sender<Vec<u8>>,
    /// Changed by a reload.
    format: RefCell<AccessLogFormat>,
    buf: RefCell<Vec<u8>>,
    /// Lines in `buf`.
    lines: Cell<u64>,
    dropped: Cell<u64>,
    clock: RefCell<Clock>,
}

impl AccessLog {
    /// Writes the line of one finished request.
    pub fn log(&self, head: &RequestHead, ctx: &RequestContext, listener: &str) {
        let now = SystemTime::now();
        let line = Line {
            head,
            ctx,
            listener,
            now,
        };
        let mut buf = self.buf.borrow_mut();
        let mut clock = self.clock.borrow_mut();
        match &*self.format.borrow() {
            AccessLogFormat::Combined => line.combined(&mut buf, &mut clock),
            AccessLogFormat::Json => line.json(&mut buf, &mut clock),
            AccessLogFormat::Template(parts) => line.template(parts, &mut buf, &mut clock),
        }
        buf.push(b'\n');
        self.lines.set(self.lines.get() + 1);
        let full = buf.len() >= BATCH;
        drop(buf);
        if full {
            self.flush();
        }
    }

    /// Hands what is buffered to the writer; drops it (and counts its lines) when the writer
    /// is behind.
    pub fn flush(&self) {
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        let bytes = std::mem::replace(&mut *buf, Vec::with_capacity(BATCH));
        let lines = self.lines.replace(0);
        match self.sender.try_send(bytes) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let dropped = self.dropped.get() + lines;
                self.dropped.set(dropped);
                tracing::warn!(dropped, "access log behind: lines dropped");
            }
        }
    }

    /// Lines from now on look as `format` says (a reload).
    pub fn set_format(&self, format: &AccessLogFormat) {
        if *self.format.borrow() != *format {
            *self.format.borrow_mut() = format.clone();
        }
    }

    /// Lines this worker dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// Runs on the worker until it drains: hands the buffer over every [`FLUSH_EVERY`]. (The
    /// lines of requests that end during the drain go out when the worker's log is dropped
    /// with it; this task ends so that it does not keep the log, and with it the writer's
    /// channel, alive.)
    pub async fn run(self: std::rc::Rc<Self>, drain: ringwall_runtime::Drain) {
        loop {
            monoio::select! {
                () = monoio::time::sleep(FLUSH_EVERY) => self.flush(),
                () = drain.wait() => break,
            }
        }
        self.flush();
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The formatted times of the current second, made once per second per worker.
#[derive(Default)]
struct Clock {
    second: u64,
    /// `01/Dec/2026:12:00:00 +0000`
    local: String,
    /// `2026-12-01T12:00:00`
    iso: String,
}

impl Clock {
    fn at(&mut self, now: SystemTime) -> (&str, &str, u32) {
        let since = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        if since.as_secs() != self.second || self.local.is_empty() {
            let t = Civil::of(now);
            self.second = since.as_secs();
            self.local = format!(
                "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
                t.day,
                MONTHS[t.month - 1],
                t.year,
                t.hour,
                t.minute,
                t.second
            );
            self.iso = format!(
                "{}-{:02}-{:02}T{:02}:{:02}:{:02}",
                t.year, t.month, t.day, t.hour, t.minute, t.second
            );
        }
        (&self.local, &self.iso, since.subsec_millis())
    }
}

/// One request's line being written.
struct Line<'a> {
    head: &'a RequestHead,
    ctx: &'a RequestContext,
    listener: &'a str,
    now: SystemTime,
}

impl Line<'_> {
    fn combined(&self, out: &mut Vec<u8>, clock: &mut Clock) {
        // Written piece by piece: `write!`'s formatting machinery costs more than the rest of
        // the line together (bench/scripts/callgrind-log.sh).
        let (local, _, _) = clock.at(self.now);
        put_ip(out, self.ctx.client_ip);
        out.extend_from_slice(b" - - [");
        out.extend_from_slice(local.as_bytes());
        out.extend_from_slice(b"] \"");
        escaped(out, self.head.method_bytes());
        out.push(b' ');
        target(out, self.head.target());
        out.push(b' ');
        out.extend_from_slice(protocol(self.head.version()).as_bytes());
        out.extend_from_slice(b"\" ");
        put_decimal(out, u64::from(self.ctx.status));
        out.push(b' ');
        put_decimal(out, self.ctx.bytes_sent);
        out.extend_from_slice(b" \"");
        escaped(out, self.head.field("referer").unwrap_or(b"-"));
        out.extend_from_slice(b"\" \"");
        escaped(out, self.head.field("user-agent").unwrap_or(b"-"));
        out.push(b'"');
    }

    fn json(&self, out: &mut Vec<u8>, clock: &mut Clock) {
        let (_, iso, millis) = clock.at(self.now);
        let _ = write!(out, "{{\"time\":\"{iso}.{millis:03}Z\"");
        // Every field but those the JSON line has in another form (`time` is first).
        for field in AccessLogField::ALL.into_iter().filter(|f| {
            !matches!(
                f,
                AccessLogField::Remote
                    | AccessLogField::Path
                    | AccessLogField::Scheme
                    | AccessLogField::Time
                    | AccessLogField::TimeLocal
            )
        }) {
            let _ = write!(out, ",\"{}\":", field.name());
            if field.is_number() {
                let mut value = Vec::new();
                self.field(field, &mut value, clock);
                if value == b"-" {
                    out.extend_from_slice(b"null");
                } else {
                    out.extend_from_slice(&value);
                }
            } else {
                out.push(b'"');
                let mut value = Vec::new();
                self.field(field, &mut value, clock);
                json_escaped(out, &value);
                out.push(b'"');
            }
        }
        out.push(b'}');
    }

    fn template(&self, parts: &[TemplatePiece], out: &mut Vec<u8>, clock: &mut Clock) {
        for part in parts {
            match part {
                TemplatePiece::Text(text) => out.extend_from_slice(text.as_bytes()),
                TemplatePiece::Field(field) => self.field(*field, out, clock),
            }
        }
    }

    /// One field's value (`-` when there is none), escaped for a text line.
    fn field(&self, field: AccessLogField, out: &mut Vec<u8>, clock: &mut Clock) {
        let ctx = self.ctx;
        match field {
            AccessLogField::Client => put_ip(out, ctx.client_ip),
            AccessLogField::Remote => {
                let _ = write!(out, "{}", ctx.remote_addr);
            }
            AccessLogField::Method => escaped(out, self.head.method_bytes()),
            AccessLogField::Path => escaped(out, self.head.path()),
            AccessLogField::Uri => target(out, self.head.target()),
            AccessLogField::Protocol => {
                out.extend_from_slice(protocol(self.head.version()).as_bytes());
            }
            AccessLogField::Status => put_decimal(out, u64::from(ctx.status)),
            AccessLogField::BytesSent => put_decimal(out, ctx.bytes_sent),
            AccessLogField::BytesReceived => put_decimal(out, ctx.bytes_received),
            AccessLogField::Duration => {
                seconds(
                    out,
                    Some(ctx.duration.unwrap_or_else(|| ctx.started.elapsed())),
                );
            }
            AccessLogField::Upstream => address(out, ctx.upstream_addr),
            AccessLogField::UpstreamTime => seconds(out, ctx.upstream_time),
            AccessLogField::Route => match &ctx.route {
                Some(route) => escaped(out, route.as_bytes()),
                None => out.push(b'-'),
            },
            AccessLogField::Consumer => match &ctx.consumer {
                Some(consumer) => escaped(out, consumer.name.as_bytes()),
                None => out.push(b'-'),
            },
            AccessLogField::RequestId => match &ctx.request_id {
                Some(id) => escaped(out, id),
                None => out.push(b'-'),
            },
            AccessLogField::Listener => escaped(out, self.listener.as_bytes()),
            AccessLogField::Scheme => out.extend_from_slice(ctx.scheme.as_bytes()),
            AccessLogField::Host => escaped(out, self.head.host().unwrap_or(b"-")),
            AccessLogField::Referer => escaped(out, self.head.field("referer").unwrap_or(b"-")),
            AccessLogField::UserAgent => {
                escaped(out, self.head.field("user-agent").unwrap_or(b"-"));
            }
            AccessLogField::Time => {
                let (_, iso, millis) = clock.at(self.now);
                let _ = write!(out, "{iso}.{millis:03}Z");
            }
            AccessLogField::TimeLocal => {
                let (local, _, _) = clock.at(self.now);
                out.extend_from_slice(local.as_bytes());
            }
            AccessLogField::TlsVersion => match &ctx.tls {
                Some(tls) => out.extend_from_slice(tls.version.as_bytes()),
                None => out.push(b'-'),
            },
            AccessLogField::Sni => match ctx.tls.as_ref().and_then(|t| t.sni.as_deref()) {
                Some(sni) => escaped(out, sni.as_bytes()),
                None => out.push(b'-'),
            },
        }
    }
}

/// A piece of a log template: text, or a field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplatePiece {
    Text(String),
    Field(AccessLogField),
}

/// The fields a line can carry, by the name templates and JSON use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessLogField {
    /// The client's address (the real one behind trusted proxies).
    Client,
    /// The peer's address and port.
    Remote,
    Method,
    /// The path as sent, without the query.
    Path,
    /// The request target as sent, credentials in the query redacted.
    Uri,
    Protocol,
    Status,
    BytesSent,
    BytesReceived,
    /// Seconds from the request head to the end of the response, `0.003`.
    Duration,
    Upstream,
    /// Seconds from the request head to the origin's response head.
    UpstreamTime,
    Route,
    RequestId,
    Listener,
    Scheme,
    Host,
    Referer,
    UserAgent,
    /// RFC 3339 in UTC, with milliseconds.
    Time,
    /// nginx's `$time_local` (UTC).
    TimeLocal,
    /// `TLSv1.3`, `TLSv1.2`; `-` on plain listeners.
    TlsVersion,
    /// The server name the TLS client asked for.
    Sni,
    /// The authenticated consumer; `-` when anonymous.
    Consumer,
}

impl AccessLogField {
    const ALL: [AccessLogField; 24] = [
        AccessLogField::Client,
        AccessLogField::Remote,
        AccessLogField::Method,
        AccessLogField::Path,
        AccessLogField::Uri,
        AccessLogField::Protocol,
        AccessLogField::Status,
        AccessLogField::BytesSent,
        AccessLogField::BytesReceived,
        AccessLogField::Duration,
        AccessLogField::Upstream,
        AccessLogField::UpstreamTime,
        AccessLogField::Route,
        AccessLogField::RequestId,
        AccessLogField::Listener,
        AccessLogField::Scheme,
        AccessLogField::Host,
        AccessLogField::Referer,
        AccessLogField::UserAgent,
        AccessLogField::Time,
        AccessLogField::TimeLocal,
        AccessLogField::TlsVersion,
        AccessLogField::Sni,
        AccessLogField::Consumer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AccessLogField::Client => "client",
            AccessLogField::Remote => "remote",
            AccessLogField::Method => "method",
            AccessLogField::Path => "path",
            AccessLogField::Uri => "uri",
            AccessLogField::Protocol => "protocol",
            AccessLogField::Status => "status",
            AccessLogField::BytesSent => "bytes_sent",
            AccessLogField::BytesReceived => "bytes_received",
            AccessLogField::Duration => "duration",
            AccessLogField::Upstream => "upstream",
            AccessLogField::UpstreamTime => "upstream_time",
            AccessLogField::Route => "route",
            AccessLogField::RequestId => "request_id",
            AccessLogField::Listener => "listener",
            AccessLogField::Scheme => "scheme",
            AccessLogField::Host => "host",
            AccessLogField::Referer => "referer",
            AccessLogField::UserAgent => "user_agent",
            AccessLogField::Time => "time",
            AccessLogField::TimeLocal => "time_local",
            AccessLogField::TlsVersion => "tls_version",
            AccessLogField::Sni => "sni",
            AccessLogField::Consumer => "consumer",
        }
    }

    /// Written as a JSON number (or `null`).
    fn is_number(self) -> bool {
        matches!(
            self,
            AccessLogField::Status
                | AccessLogField::BytesSent
                | AccessLogField::BytesReceived
                | AccessLogField::Duration
                | AccessLogField::UpstreamTime
        )
    }
}

/// Parses a template: text with `${field}` references (`$$` is a `$`).
pub fn parse_template(text: &str) -> Result<Vec<TemplatePiece>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        literal.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            literal.push('$');
            rest = after;
            continue;
        }
        let Some(inner) = rest.strip_prefix('{') else {
            return Err("a `$` must start `${field}` (write `$$` for a `$`)".to_owned());
        };
        let Some(end) = inner.find('}') else {
            return Err("an unclosed `${`".to_owned());
        };
        let name = &inner[..end];
        let Some(field) = AccessLogField::ALL.into_iter().find(|f| f.name() == name) else {
            let known: Vec<&str> = AccessLogField::ALL.iter().map(|f| f.name()).collect();
            return Err(format!(
                "unknown field `{name}` (known: {})",
                known.join(", ")
            ));
        };
        if !literal.is_empty() {
            pieces.push(TemplatePiece::Text(std::mem::take(&mut literal)));
        }
        pieces.push(TemplatePiece::Field(field));
        rest = &inner[end + 1..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        pieces.push(TemplatePiece::Text(literal));
    }
    if !pieces.iter().any(|p| matches!(p, TemplatePiece::Field(_))) {
        return Err("a template needs at least one `${field}`".to_owned());
    }
    Ok(pieces)
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::Http10 => "HTTP/1.0",
        Version::Http11 => "HTTP/1.1",
    }
}

/// Seconds with three decimals, nginx's `$request_time`; `-` without a value.
fn seconds(out: &mut Vec<u8>, value: Option<Duration>) {
    match value {
        Some(d) => {
            let _ = write!(out, "{}.{:03}", d.as_secs(), d.subsec_millis());
        }
        None => out.push(b'-'),
    }
}

fn address(out: &mut Vec<u8>, value: Option<SocketAddr>) {
    match value {
        Some(addr) => {
            let _ = write!(out, "{addr}");
        }
        None => out.push(b'-'),
    }
}

/// Bytes as nginx logs them: printable ASCII as is, `"`, `\` and everything else as `\xHH`.
fn escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            out.push(b);
        } else {
            let _ = write!(out, "\\x{b:02X}");
        }
    }
}

/// A string's bytes inside JSON quotes (what [`escaped`] left is ASCII already).
fn json_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x20..=0x7e => out.push(b),
            _ => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
    }
}

/// The request target with the values of credential-carrying query parameters redacted.
fn target(out: &mut Vec<u8>, target: &[u8]) {
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(q) => (&target[..q], Some(&target[q + 1..])),
        None => (target, None),
    };
    escaped(out, path);
    let Some(query) = query else {
        return;
    };
    out.push(b'?');
    for (i, pair) in query.split(|&b| b == b'&').enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], Some(&pair[eq + 1..])),
            None => (pair, None),
        };
        escaped(out, name);
        if let Some(value) = value {
            out.push(b'=');
            if is_secret(name) {
                out.extend_from_slice(b"[redacted]");
            } else {
                escaped(out, value);
            }
        }
    }
}

/// Whether a query parameter's name says it carries a credential.
pub fn is_secret(name: &[u8]) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|secret| {
        let secret = secret.as_bytes();
        name == secret
            || (name.len() > secret.len()
                && name.ends_with(secret)
                && matches!(name[name.len() - secret.len() - 1], b'_' | b'-'))
    })
}

#[cfg(test)]
mod tests;
