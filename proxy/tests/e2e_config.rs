//! End to end: `ringwall check` and starting from a file. A valid file passes; a bad one is
//! refused with one line naming the file, the line and the field.

mod common;

use common::{get, run_ringwall, Origin, Proxy, TempFile};

const VALID: &str = r#"listen = ["127.0.0.1:0"]

[engine]
workers = 1

[timeouts]
client_header = "5s"

[limits]
max_body = "1MiB"

[[upstream]]
name = "app"
servers = ["127.0.0.1:9001", "127.0.0.1:9002"]

[[route]]
name = "api"
hosts = ["api.example.com", "*.example.org"]
path_prefix = "/api/"
methods = ["GET", "POST"]
upstream = "app"

[[route]]
upstream = "app"
"#;

#[test]
fn check_accepts_a_valid_file() {
    let file = TempFile::new("valid.toml", VALID);
    let run = run_ringwall(&["check", "--config", &file.display()]);
    assert!(run.status.success(), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("ok"), "stdout: {}", run.stdout);
    assert!(run.stdout.contains("2 routes"), "stdout: {}", run.stdout);
}

#[test]
fn check_accepts_the_shipped_example() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../ringwall.example.toml");
    let run = run_ringwall(&["check", "--config", example]);
    assert!(run.status.success(), "{}\n{}", run.stdout, run.stderr);
}

/// Runs `ringwall check` on `toml`; it must fail and its stderr must name the file, `line`
/// and `field`.
fn check_rejects(toml: &str, line: usize, field: &str) -> String {
    let file = TempFile::new("bad.toml", toml);
    let run = run_ringwall(&["check", "--config", &file.display()]);
    assert!(
        !run.status.success(),
        "accepted a bad file: {}\n{}",
        run.stdout,
        run.stderr
    );
    let location = format!("{}:{line}:", file.display());
    assert!(
        run.stderr.contains(&location),
        "stderr does not name {location}: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains(field),
        "stderr does not name {field}: {}",
        run.stderr
    );
    run.stderr
}

#[test]
fn check_names_an_unknown_field() {
    let toml = "[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:9001\"]\n\n\
                [[route]]\nupstream = \"app\"\ncolour = \"blue\"\n";
    let stderr = check_rejects(toml, 7, "route[0].colour");
    assert!(stderr.contains("colour"), "{stderr}");

    let toml = "[timeouts]\nclient_headers = \"5s\"\n\n\
                [[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:9001\"]\n";
    check_rejects(toml, 2, "timeouts.client_headers");
}

#[test]
fn check_names_an_unknown_upstream() {
    let toml = "[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:9001\"]\n\n\
                [[route]]\nname = \"first\"\nupstream = \"app\"\n\n\
                [[route]]\nname = \"second\"\nupstream = \"api\"\n";
    let stderr = check_rejects(toml, 11, "route[1].upstream");
    assert!(stderr.contains("api"), "{stderr}");
}

#[test]
fn starting_with_a_bad_file_fails_before_listening() {
    let file = TempFile::new("bad-start.toml", "[[route]]\nupstream = \"nowhere\"\n");
    let run = run_ringwall(&["--config", &file.display(), "--listen", "127.0.0.1:0"]);
    assert!(!run.status.success());
    assert!(run.stderr.contains(&file.display()), "{}", run.stderr);
    assert!(!run.stderr.contains("listening on"), "{}", run.stderr);
}

#[test]
fn a_file_and_flags_together_serve_traffic() {
    let origin = Origin::echo("from-file");
    let toml = format!(
        "[[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n\n[[route]]\nupstream = \"app\"\n",
        origin.addr
    );
    let proxy = Proxy::with_config(&toml, &["--workers", "1"]);
    let response = proxy.client().request(get("/", "file.test"));
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-origin"), Some("from-file"));
}
