//! Helpers for the tests that run the `axon` binary (included with `#[path]`).
#![allow(dead_code)]

use std::{
    io::Write as _,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

pub const AXON: &str = env!("CARGO_BIN_EXE_axon");

pub fn axon(data_dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(AXON);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AXON_SERVER_NAME", "localhost")
        .env("AXON_DATA_DIR", data_dir)
        .env("AXON_LISTEN__CLIENT", format!("127.0.0.1:{port}"))
        .env("AXON_REGISTRATION__MODE", "open")
        .env("AXON_RATE_LIMITS__ENABLED", "false");
    cmd
}

/// A data dir the unprivileged cluster user can reach when tests run as root.
pub fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a command that should finish by itself; kills it (and fails) if it does not.
pub fn run(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run axon");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("axon did not exit: {:?}", child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// `axon serve` on `data_dir` and `port`, its output discarded, once it serves.
pub fn serving(data_dir: &Path, port: u16, env: &[(&str, &str)]) -> Child {
    let mut cmd = axon(data_dir, port);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_serving(port, &mut child);
    child
}

pub fn wait_until_serving(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("axon exited early: {status}");
        }
        if http(port, "GET", "/_matrix/client/versions", None).0 == 200 {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("axon did not start serving");
}

/// Minimal blocking HTTP/1.1 client, enough for these tests.
pub fn http(port: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    use std::io::Read as _;
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, Value::Null);
    };
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, Value::Null);
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let json = response
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

pub fn login(port: u16, user: &str, password: &str) -> u16 {
    http(
        port,
        "POST",
        "/_matrix/client/v3/login",
        Some(json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password})),
    )
    .0
}

pub fn postmaster_running(data: &Path) -> bool {
    // SAFETY: signal 0 only checks the process exists.
    postmaster_pid(data).is_some_and(|pid| unsafe { libc::kill(pid, 0) == 0 })
}

/// The cluster's data directory under an axon data_dir.
pub fn pgdata(data: &Path) -> PathBuf {
    let root = std::fs::read_link(data.join("postgres")).unwrap_or(data.to_path_buf());
    root.join("pgdata")
}

/// The PID in the cluster's postmaster.pid.
pub fn postmaster_pid(data: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(pgdata(data).join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}
