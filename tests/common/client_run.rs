//! Helpers for the tests that drive the `axon` binary with real client libraries from
//! other ecosystems (matrix-nio, matrix-js-sdk): where their installs are cached, bounded
//! child processes, and a server whose log a failure can show. Included with `#[path]`
//! next to `cli.rs`.
#![allow(dead_code)]

use std::{
    fs::File,
    io::Read as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::cli;

/// The cargo target dir: the test binaries' `axon` is `<target>/<profile>/axon`.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(cli::AXON)
        .parent()
        .and_then(Path::parent)
        .expect("the axon binary sits in <target>/<profile>/")
        .to_path_buf()
}

pub fn show(output: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `cmd` to completion, its output captured; kills it after `limit`.
pub fn run_bounded(mut cmd: Command, limit: Duration, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {what}: {e}"));
    // Drain both pipes meanwhile so a chatty child never blocks on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let status = child.wait().unwrap();
            let output = Output {
                status,
                stdout: out_reader.join().unwrap(),
                stderr: err_reader.join().unwrap(),
            };
            panic!("{what} did not finish within {limit:?}: {}", show(&output));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

/// `axon serve`, its log kept in the data dir; stopped with SIGTERM when dropped.
pub struct Server {
    child: Child,
    log: PathBuf,
    pub port: u16,
    _data: tempfile::TempDir,
}

impl Server {
    pub fn start() -> Self {
        let data = cli::data_dir();
        let port = cli::free_port();
        let log = data.path().join("axon.log");
        let file = File::create(&log).unwrap();
        let mut child = cli::axon(data.path(), port)
            .env("AXON_LOG", "info")
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        cli::wait_until_serving(port, &mut child);
        Server {
            child,
            log,
            port,
            _data: data,
        }
    }

    /// The last lines of axon's log, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signalling our own child, which then stops its PostgreSQL.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
