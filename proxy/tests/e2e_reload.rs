//! Reloading a running ringwall (SIGHUP, `ringwall reload`): routes, servers and listeners
//! change without a restart, connections move to the new configuration between requests, the
//! pools to servers that stay are kept, a bad configuration is refused with its file, line and
//! field while the old one keeps serving, and nothing fails under load through reloads.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::{run_ringwall, Client, Origin, Proxy, TempFile};

/// A configuration of one group `app` of `servers` and a route `all` to it, plus `extra`.
fn config(servers: &[SocketAddr], extra: &str) -> String {
    let servers: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[[upstream]]\nname = \"app\"\nservers = [{}]\n\n{extra}\n\
         [[route]]\nname = \"all\"\nupstream = \"app\"\n",
        servers.join(", ")
    )
}

fn get(client: &mut Client, path: &str) -> common::Response {
    client.request(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n"))
}

/// Which echo origin answered.
fn origin_of(response: &common::Response) -> String {
    response.header("x-origin").unwrap_or_default().to_owned()
}

#[test]
fn a_reload_moves_routes_and_servers_and_keeps_the_pools() {
    let a = Origin::echo("origin-a");
    let b = Origin::echo("origin-b");
    let file = TempFile::new("reload.toml", &config(&[a.addr], ""));
    let proxy = Proxy::with_config_path(&file.display(), &["--workers", "1"], true);
    let mut client = proxy.client();
    let first = get(&mut client, "/one");
    assert_eq!(first.status, 200);
    assert!(
        origin_of(&first).contains("origin-a"),
        "{:?}",
        first.head.raw
    );

    // Same server, a route that adds a response header: the pooled connection to it stays.
    let with_header =
        config(&[a.addr], "") + "[route.response_headers.set]\n\"X-Generation\" = \"2\"\n";
    std::fs::write(&file.path, with_header).unwrap();
    proxy.reload().expect("the reload is taken");
    let second = get(&mut client, "/two");
    assert_eq!(second.status, 200);
    assert_eq!(
        second.header("x-generation"),
        Some("2"),
        "the same client connection runs its next request on the new configuration"
    );
    assert_eq!(a.connections(), 1, "the pool to the kept server was kept");

    // Another server: new requests go there, on the same client connection too.
    std::fs::write(&file.path, config(&[b.addr], "")).unwrap();
    proxy.reload().expect("the reload is taken");
    let third = get(&mut client, "/three");
    assert!(
        origin_of(&third).contains("origin-b"),
        "{:?}",
        third.head.raw
    );
    assert_eq!(third.header("x-generation"), None);
    let fresh = get(&mut proxy.client(), "/four");
    assert!(origin_of(&fresh).contains("origin-b"));
    assert!(
        common::wait_until(Duration::from_secs(3), || a.open() == 0),
        "the idle connection to the removed server was closed"
    );

    // The log level follows the file too: at `trace`, every request is logged.
    assert!(!proxy.logs().contains("route=all"));
    std::fs::write(
        &file.path,
        format!("log_level = \"trace\"\n{}", config(&[b.addr], "")),
    )
    .unwrap();
    proxy.reload().expect("the reload is taken");
    assert_eq!(get(&mut client, "/traced").status, 200);
    assert!(
        common::wait_until(Duration::from_secs(3), || proxy
            .logs()
            .contains("route=all")),
        "{}",
        proxy.logs()
    );
}

#[test]
fn a_bad_reload_is_refused_with_file_line_and_field_and_the_old_one_serves() {
    let a = Origin::echo("origin-a");
    let b = Origin::echo("origin-b");
    let file = TempFile::new("bad-reload.toml", &config(&[a.addr], ""));
    let proxy = Proxy::with_config_path(&file.display(), &["--admin", "127.0.0.1:0"], true);
    // Line 3 has a value of the wrong type; the rest would move to origin b.
    let bad =
        config(&[b.addr], "").replace("servers = [", "max_idle_per_server = \"many\"\nservers = [");
    std::fs::write(&file.path, &bad).unwrap();
    let refused = proxy.reload().expect_err("an invalid file is refused");
    let place = format!("{}:3", file.display());
    assert!(
        refused.contains(&place),
        "names the file and line: {refused}"
    );
    assert!(
        refused.contains("max_idle_per_server"),
        "names the field: {refused}"
    );
    assert!(refused.contains("still serving"), "{refused}");
    let response = get(&mut proxy.client(), "/after");
    assert!(
        origin_of(&response).contains("origin-a"),
        "the old generation serves"
    );

    // A setting a reload cannot change is refused, saying which.
    // (`--workers` is a flag here: the file's `[engine] workers` would not change it.)
    let fixed = config(&[b.addr], "[limits]\nmax_connections_per_ip = 5\n");
    std::fs::write(&file.path, fixed).unwrap();
    let refused = proxy
        .reload()
        .expect_err("the per-address limit cannot change");
    assert!(
        refused.contains("limits.max_connections_per_ip cannot change on a reload"),
        "{refused}"
    );

    // `check` says the same of the bad file as the refused reload did.
    std::fs::write(&file.path, &bad).unwrap();
    let check = run_ringwall(&["check", "--config", &file.display()]);
    assert!(!check.status.success());
    assert!(check.stderr.contains(&place), "{}", check.stderr);

    let admin = proxy.admin_addr();
    let status = Client::connect(admin).request("GET /status HTTP/1.1\r\nHost: x\r\n\r\n");
    let value: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    assert_eq!(value["generation"], 1);
    assert_eq!(value["reload_failures"], 2);
    let samples = common::scrape(admin);
    assert_eq!(
        common::count(&samples, "ringwall_reloads_total", &[("result", "refused")]),
        2
    );
    assert_eq!(
        common::count(&samples, "ringwall_config_generation", &[]),
        1
    );

    // Fixed, it is taken.
    std::fs::write(&file.path, config(&[b.addr], "")).unwrap();
    proxy.reload().expect("a valid file is taken");
    assert!(origin_of(&get(&mut proxy.client(), "/fixed")).contains("origin-b"));
    let status = Client::connect(admin).request("GET /status HTTP/1.1\r\nHost: x\r\n\r\n");
    let value: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    assert_eq!(value["generation"], 2);
}

/// A port nothing listens on now (bound and released).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn a_reload_binds_new_listeners_and_closes_removed_ones() {
    let a = Origin::echo("origin-a");
    let (one, two) = (free_port(), free_port());
    let listeners = |addrs: &[(&str, SocketAddr)]| -> String {
        addrs
            .iter()
            .map(|(name, addr)| format!("[[listener]]\nname = \"{name}\"\naddress = \"{addr}\"\n"))
            .collect::<Vec<_>>()
            .concat()
    };
    let file = TempFile::new(
        "listeners.toml",
        &(listeners(&[("one", one)]) + &config(&[a.addr], "")),
    );
    let proxy = Proxy::with_config_path(&file.display(), &[], false);
    assert_eq!(proxy.addr, one);
    let mut kept = Client::connect(one);
    assert_eq!(get(&mut kept, "/").status, 200);
    assert!(TcpStream::connect(two).is_err());

    std::fs::write(
        &file.path,
        listeners(&[("one", one), ("two", two)]) + &config(&[a.addr], ""),
    )
    .unwrap();
    proxy.reload().expect("taken");
    assert_eq!(
        get(&mut Client::connect(two), "/").status,
        200,
        "the new listener accepts"
    );
    assert_eq!(get(&mut kept, "/").status, 200, "the kept one still serves");

    std::fs::write(
        &file.path,
        listeners(&[("two", two)]) + &config(&[a.addr], ""),
    )
    .unwrap();
    proxy.reload().expect("taken");
    assert!(
        common::wait_until(Duration::from_secs(3), || TcpStream::connect(one).is_err()),
        "the removed listener no longer accepts"
    );
    assert_eq!(get(&mut Client::connect(two), "/").status, 200);
}

#[test]
fn ringwall_reload_checks_first_then_signals_the_process_in_the_pid_file() {
    let a = Origin::echo("origin-a");
    let b = Origin::echo("origin-b");
    let file = TempFile::new("cmd-reload.toml", &config(&[a.addr], ""));
    let pid_file = TempFile::new("ringwall.pid", "");
    let proxy =
        Proxy::with_config_path(&file.display(), &["--pid-file", &pid_file.display()], true);
    assert!(
        common::wait_until(Duration::from_secs(3), || {
            std::fs::read_to_string(&pid_file.path)
                .is_ok_and(|t| t.trim() == proxy.pid().to_string())
        }),
        "the pid file holds the process id"
    );

    // A bad file: the command says why, and the process is not signalled.
    std::fs::write(&file.path, "[[upstream]]\nname = 3\n").unwrap();
    let before = proxy.reloads_begun();
    let refused = run_ringwall(&[
        "reload",
        "--config",
        &file.display(),
        "--pid-file",
        &pid_file.display(),
    ]);
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("reload not sent"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains(&format!("{}:2", file.display())));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(proxy.reloads_begun(), before, "not signalled");

    std::fs::write(&file.path, config(&[b.addr], "")).unwrap();
    let sent = run_ringwall(&[
        "reload",
        "--config",
        &file.display(),
        "--pid-file",
        &pid_file.display(),
    ]);
    assert!(sent.status.success(), "{}", sent.stderr);
    assert!(sent.stdout.contains("reload sent"), "{}", sent.stdout);
    proxy.reload_result(before).expect("reloaded");
    assert!(origin_of(&get(&mut proxy.client(), "/")).contains("origin-b"));

    // Without a pid file to go by, it says what it needs.
    let lost = run_ringwall(&["reload"]);
    assert!(!lost.status.success());
    assert!(lost.stderr.contains("--pid-file"), "{}", lost.stderr);
}

/// The bar: a fixed request rate for 10 s, a reload every second that changes the
/// routes and the servers, and not one failed request or unexpected status.
#[test]
fn reloads_every_second_under_load_fail_no_request() {
    let a = Origin::echo("origin-a");
    let b = Origin::echo("origin-b");
    let c = Origin::echo("origin-c");
    let shapes: [(Vec<SocketAddr>, &str); 4] = [
        (vec![a.addr], ""),
        (
            vec![b.addr, c.addr],
            "[route.response_headers.set]\n\"X-Shape\" = \"two\"\n",
        ),
        (vec![c.addr], ""),
        (vec![a.addr, b.addr], ""),
    ];
    // Each shape also has an extra route before the catch-all, on another path.
    let render = |i: usize| {
        let (servers, extra) = &shapes[i % shapes.len()];
        format!(
            "[[route]]\nname = \"extra-{i}\"\npath_prefix = \"/extra-{i}/\"\nupstream = \"app\"\n\n{}",
            config(servers, extra)
        )
    };
    let file = TempFile::new("under-load.toml", &render(0));
    let proxy = Proxy::with_config_path(&file.display(), &[], true);
    let options = ringwall_load::LoadOptions {
        url: proxy.url("/load"),
        connections: 16,
        threads: 1,
        duration: Duration::from_secs(10),
        rate: Some(400.0),
        timeout: Duration::from_secs(5),
        ..ringwall_load::LoadOptions::default()
    };
    let load = std::thread::spawn(move || ringwall_load::run(&options));
    let mut taken = 0;
    for i in 1..=10 {
        std::thread::sleep(Duration::from_secs(1));
        std::fs::write(&file.path, render(i)).unwrap();
        if proxy.reload().is_ok() {
            taken += 1;
        }
    }
    let report = load.join().unwrap().expect("the load ran");
    assert_eq!(taken, 10, "every reload was taken:\n{}", proxy.logs());
    let errors = &report.errors;
    assert_eq!(
        (
            errors.connect,
            errors.read,
            errors.write,
            errors.timeout,
            errors.protocol
        ),
        (0, 0, 0, 0, 0),
        "failed requests"
    );
    assert_eq!(
        report.status.s2xx, report.requests,
        "unexpected statuses: {:?}",
        report.status
    );
    assert!(
        report.requests >= 3600,
        "{} requests in 10 s at 400/s",
        report.requests
    );
    // Every origin of the shapes took part.
    assert!(a.requests() > 0 && b.requests() > 0 && c.requests() > 0);
}
