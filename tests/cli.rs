//! The `axon` binary: version, config errors (exit 2, naming the key), create-user and
//! migrate, and the embedded PostgreSQL surviving a SIGKILL of axon.

use std::{
    io::Write as _,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

const AXON: &str = env!("CARGO_BIN_EXE_axon");

fn axon(data_dir: &Path, port: u16) -> Command {
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
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a command that should finish by itself; kills it (and fails) if it does not.
fn run(mut cmd: Command) -> Output {
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

#[test]
fn version() {
    let out = run({
        let mut c = Command::new(AXON);
        c.arg("--version");
        c
    });
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn config_errors_exit_2_naming_the_key() {
    let dir = data_dir();
    /// (config file, environment, the key the message must name)
    type Case<'a> = (Option<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            Some("server_name = \"localhost\"\n[registration]\nmode = \"sometimes\"\n"),
            vec![],
            "registration.mode",
        ),
        (
            Some("server_name = \"localhost\"\n[listen]\nclient = \"not an address\"\n"),
            vec![],
            "listen.client",
        ),
        (
            Some("server_name = \"localhost\"\nnot toml at all = = =\n"),
            vec![],
            "not toml at all",
        ),
        (
            None,
            vec![("AXON_RATE_LIMITS__ENABLED", "perhaps")],
            "rate_limits.enabled",
        ),
        (
            None,
            vec![("AXON_REGISTRATION__MODE", "sometimes")],
            "registration.mode",
        ),
        (
            None,
            vec![("AXON_DATABASE__URL", "mysql://x")],
            "database.url",
        ),
    ];
    for (file, env, key) in cases {
        // only what the case sets: the environment would override the file
        let mut cmd = Command::new(AXON);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AXON_DATA_DIR", dir.path())
            .arg("serve");
        if file.is_none() {
            cmd.env("AXON_SERVER_NAME", "localhost");
        }
        if let Some(text) = file {
            let path = dir.path().join("axon.toml");
            std::fs::write(&path, text).unwrap();
            cmd.arg("--config").arg(&path);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = run(cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {stderr}");
        assert!(stderr.contains(key), "message should name {key}: {stderr}");
    }
    // no server_name at all
    let mut cmd = axon(dir.path(), free_port());
    cmd.env_remove("AXON_SERVER_NAME").arg("serve");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server_name"));
    // a missing config file
    let mut cmd = axon(dir.path(), free_port());
    cmd.args(["serve", "--config", "/nonexistent/axon.toml"]);
    assert_eq!(run(cmd).status.code(), Some(2));
}

fn wait_until_serving(port: u16, child: &mut Child) {
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
fn http(port: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
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

fn login(port: u16, user: &str, password: &str) -> u16 {
    http(
        port,
        "POST",
        "/_matrix/client/v3/login",
        Some(json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password})),
    )
    .0
}

fn postmaster_running(data: &Path) -> bool {
    let root = std::fs::read_link(data.join("postgres")).unwrap_or(data.to_path_buf());
    let Ok(text) = std::fs::read_to_string(root.join("pgdata/postmaster.pid")) else {
        return false;
    };
    let pid: i32 = text.lines().next().unwrap().trim().parse().unwrap();
    // SAFETY: signal 0 only checks the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn embedded_postgres_survives_sigkill_and_stops_on_sigterm() {
    let dir = data_dir();
    let port = free_port();
    let mut first = axon(dir.path(), port)
        .arg("serve")
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_serving(port, &mut first);
    let (status, body) = http(
        port,
        "POST",
        "/_matrix/client/v3/register",
        Some(
            json!({"username": "kim", "password": "kim-password", "auth": {"type": "m.login.dummy"}}),
        ),
    );
    assert_eq!(status, 200, "{body}");

    // unclean stop: the postmaster is orphaned and still running
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(postmaster_running(dir.path()));

    let mut second = axon(dir.path(), port)
        .arg("serve")
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_serving(port, &mut second);
    assert_eq!(
        login(port, "kim", "kim-password"),
        200,
        "account survived the unclean stop"
    );

    // clean stop: SIGTERM drains, stops the cluster, exits 0
    // SAFETY: sending SIGTERM to our own child.
    unsafe { libc::kill(second.id() as i32, libc::SIGTERM) };
    let status = second.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!postmaster_running(dir.path()), "cluster stopped with axon");
}

#[test]
fn create_user_and_migrate() {
    let dir = data_dir();
    let port = free_port();
    let out = run({
        let mut c = axon(dir.path(), port);
        c.arg("migrate");
        c
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let password_file = dir.path().join("pw");
    std::fs::write(&password_file, "admin-password\n").unwrap();
    let out = run({
        let mut c = axon(dir.path(), port);
        c.args(["create-user", "root", "--admin", "--password-file"])
            .arg(&password_file);
        c
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("@root:localhost"));

    // the same name twice is refused
    let out = run({
        let mut c = axon(dir.path(), port);
        c.args(["create-user", "root", "--password-file"])
            .arg(&password_file);
        c
    });
    assert_eq!(out.status.code(), Some(1));
    // a bad localpart is refused
    let out = run({
        let mut c = axon(dir.path(), port);
        c.args(["create-user", "Not Valid", "--password-file"])
            .arg(&password_file);
        c
    });
    assert!(!out.status.success());

    let mut server = axon(dir.path(), port)
        .arg("serve")
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_serving(port, &mut server);
    assert_eq!(login(port, "root", "admin-password"), 200);

    // create-user beside a running server uses the server's cluster
    let mut c = axon(dir.path(), port);
    c.args(["create-user", "second"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"second-password\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(login(port, "second", "second-password"), 200);

    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    assert!(server.wait().unwrap().success());
}
