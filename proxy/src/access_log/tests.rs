//! Lines as they are written: the formats, escaping, redaction, templates, and batching.

use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::filters::testing::{context, request_head};

/// A finished request: `GET` with a query, a referer and a user agent, answered 200.
fn finished() -> (RequestHead, RequestContext) {
    let head = request_head(
        "GET /a/b?x=1&api_key=s3cret&access-token=t0k HTTP/1.1\r\nHost: shop.test\r\n\
         Referer: https://ref.test/\r\nUser-Agent: tester \"1\"\r\nAuthorization: Bearer nope\r\n\r\n",
    );
    let mut ctx = context("192.0.2.7:4000");
    ctx.status = 200;
    ctx.bytes_sent = 12;
    ctx.route = Some("app".into());
    ctx.upstream_addr = Some("127.0.0.1:9001".parse().unwrap());
    ctx.upstream_time = Some(Duration::from_millis(3));
    (head, ctx)
}

fn line(format: &AccessLogFormat) -> String {
    let (head, ctx) = finished();
    let now = UNIX_EPOCH + Duration::from_millis(1_764_590_400_250); // 2025-12-01T12:00:00.250Z
    let l = Line {
        head: &head,
        ctx: &ctx,
        listener: "public",
        now,
    };
    let mut out = Vec::new();
    let mut clock = Clock::default();
    match format {
        AccessLogFormat::Combined => l.combined(&mut out, &mut clock),
        AccessLogFormat::Json => l.json(&mut out, &mut clock),
        AccessLogFormat::Template(parts) => l.template(parts, &mut out, &mut clock),
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn combined_is_nginx_s_line_without_secrets() {
    assert_eq!(
        line(&AccessLogFormat::Combined),
        "192.0.2.7 - - [01/Dec/2025:12:00:00 +0000] \"GET /a/b?x=1&api_key=[redacted]&\
         access-token=[redacted] HTTP/1.1\" 200 12 \"https://ref.test/\" \"tester \\x221\\x22\""
    );
}

#[test]
fn json_has_every_field_and_parses() {
    let text = line(&AccessLogFormat::Json);
    let value: serde_json::Value = serde_json::from_str(&text).expect(&text);
    assert_eq!(value["time"], "2025-12-01T12:00:00.250Z");
    assert_eq!(value["client"], "192.0.2.7");
    assert_eq!(value["status"], 200);
    assert_eq!(value["bytes_sent"], 12);
    assert_eq!(value["upstream"], "127.0.0.1:9001");
    assert_eq!(value["upstream_time"], 0.003);
    assert_eq!(value["route"], "app");
    assert_eq!(value["request_id"], "-");
    assert_eq!(value["listener"], "public");
    assert_eq!(
        value["uri"],
        "/a/b?x=1&api_key=[redacted]&access-token=[redacted]"
    );
    assert!(!text.contains("s3cret") && !text.contains("Bearer") && !text.contains("t0k"));
}

#[test]
fn templates_name_their_fields() {
    let parts = parse_template("${client} ${method} ${path} ${status} $$ ${route}").unwrap();
    assert_eq!(
        line(&AccessLogFormat::Template(parts)),
        "192.0.2.7 GET /a/b 200 $ app"
    );
    assert!(parse_template("${nope}")
        .unwrap_err()
        .contains("unknown field `nope`"));
    assert!(parse_template("no fields").is_err());
    assert!(parse_template("${client").is_err());
    assert!(parse_template("$client").is_err());
}

#[test]
fn credentials_are_known_by_their_names() {
    for secret in [
        "key",
        "API_KEY",
        "apikey",
        "access_token",
        "x-auth",
        "password",
        "sig",
    ] {
        assert!(is_secret(secret.as_bytes()), "{secret}");
    }
    for plain in ["monkey", "keyword", "q", "page", "signup"] {
        assert!(!is_secret(plain.as_bytes()), "{plain}");
    }
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let (sender, receiver) = crossbeam_channel::bounded(1);
    let log = AccessLog {
        sender,
        format: AccessLogFormat::Combined.into(),
        buf: RefCell::new(Vec::new()),
        lines: Cell::new(0),
        dropped: Cell::new(0),
        clock: RefCell::new(Clock::default()),
    };
    let (head, ctx) = finished();
    log.log(&head, &ctx, "l");
    log.flush(); // takes the queue's one place
    log.log(&head, &ctx, "l");
    log.log(&head, &ctx, "l");
    log.flush(); // the writer is behind: dropped
    assert_eq!(log.dropped(), 2);
    let batch = receiver.try_recv().unwrap();
    assert_eq!(String::from_utf8(batch).unwrap().lines().count(), 1);
}
