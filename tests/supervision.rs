//! The `axon` binary and its embedded PostgreSQL: the cluster is supervised (restarted when
//! it dies, 503 meanwhile, never a 30-second hang), a stale PID file naming another process
//! harms nothing, and the log is plain text when it is not a terminal.

#[path = "common/cli.rs"]
mod cli_support;

use std::{
    io::Read as _,
    process::Stdio,
    time::{Duration, Instant},
};

use cli_support::*;
use serde_json::json;

fn register(port: u16, user: &str) {
    let (status, body) = http(
        port,
        "POST",
        "/_matrix/client/v3/register",
        Some(
            json!({"username": user, "password": format!("{user}-password"),
                    "auth": {"type": "m.login.dummy"}}),
        ),
    );
    assert_eq!(status, 200, "{body}");
}

/// The metrics listener's text.
fn scrape(port: u16) -> String {
    use std::io::Write as _;
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).unwrap();
    text
}

fn sigterm(child: &mut std::process::Child) -> std::process::ExitStatus {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap()
}

#[test]
fn a_killed_postgres_is_restarted_and_requests_get_503_meanwhile() {
    let dir = data_dir();
    let port = free_port();
    let metrics_port = free_port();
    let metrics_address = format!("127.0.0.1:{metrics_port}");
    let mut server = serving(
        dir.path(),
        port,
        &[("AXON_LISTEN__METRICS", &metrics_address)],
    );
    register(port, "kim");
    let first = postmaster_pid(dir.path()).expect("postmaster.pid");
    // SAFETY: killing the cluster this test's axon started.
    unsafe { libc::kill(first, libc::SIGKILL) };

    let deadline = Instant::now() + Duration::from_secs(90);
    let mut statuses = Vec::new();
    loop {
        let asked = Instant::now();
        let status = login(port, "kim", "kim-password");
        assert!(
            asked.elapsed() < Duration::from_secs(15),
            "a request hung for {:?} while the database was down",
            asked.elapsed()
        );
        statuses.push(status);
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "while the database is down: {statuses:?}");
        assert!(Instant::now() < deadline, "not back: {statuses:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let second = postmaster_pid(dir.path()).expect("postmaster.pid");
    assert_ne!(first, second, "a new postmaster serves");
    let metrics = scrape(metrics_port);
    assert!(
        metrics.contains("axon_embedded_postgres_restarts_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("axon_embedded_postgres_running 1"),
        "{metrics}"
    );
    assert!(sigterm(&mut server).success());
    assert!(!postmaster_running(dir.path()), "cluster stopped with axon");
}

#[test]
fn a_stale_pid_file_naming_another_process_is_left_alone() {
    let dir = data_dir();
    let port = free_port();
    let mut server = serving(dir.path(), port, &[]);
    register(port, "kim");
    // axon and its cluster die without cleaning up; the PID is later someone else's.
    let pid = postmaster_pid(dir.path()).unwrap();
    let pid_file = std::fs::read_to_string(pgdata(dir.path()).join("postmaster.pid")).unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    // SAFETY: killing the orphaned cluster of this test.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(500));
    let mut bystander = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();
    let stale = pid_file.replacen(&pid.to_string(), &bystander.id().to_string(), 1);
    std::fs::write(pgdata(dir.path()).join("postmaster.pid"), stale).unwrap();

    let mut server = serving(dir.path(), port, &[]);
    assert_eq!(login(port, "kim", "kim-password"), 200);
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "the process named by the stale PID file was signalled"
    );
    let _ = bystander.kill();
    let _ = bystander.wait();
    assert!(sigterm(&mut server).success());
}

#[test]
fn the_log_is_plain_text_when_not_a_terminal() {
    let dir = data_dir();
    let port = free_port();
    let mut server = axon(dir.path(), port)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_serving(port, &mut server);
    // A request whose query string once panicked (and echoed the token): now a 401.
    let (status, _) = http(
        port,
        "GET",
        "/_matrix/client/v3/account/whoami?access_token=%\u{e9}secret",
        None,
    );
    assert_eq!(status, 401);
    assert!(sigterm(&mut server).success());
    let mut log = String::new();
    server
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("axon is serving"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI escapes in the log: {log}");
    assert!(!log.contains("secret"), "the log echoes a token: {log}");
    assert!(!log.contains("panic"), "{log}");
}
