//! The `axon` binary: version, config errors (exit 2, naming the key), create-user and
//! migrate, and the embedded PostgreSQL surviving a SIGKILL of axon.

use std::{
    io::Write as _,
    process::{Command, Stdio},
};

use serde_json::json;

#[path = "common/cli.rs"]
mod cli_support;

use cli_support::*;

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

#[test]
fn embedded_postgres_survives_sigkill_and_stops_on_sigterm() {
    let dir = data_dir();
    let port = free_port();
    let mut first = serving(dir.path(), port, &[]);
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

    let mut second = serving(dir.path(), port, &[]);
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

    let mut server = serving(dir.path(), port, &[]);
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
