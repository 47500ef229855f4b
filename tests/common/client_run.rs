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

/// A venv under `<target>/client-envs/<name>` with the pinned `requirements` installed
/// (wheels only); its python. A lock file keeps parallel test processes from building the
/// same venv at once; a stamp (the hash of the requirements and of `python3 --version`)
/// skips the install when nothing changed.
pub fn python_env(name: &str, requirements: &Path) -> PathBuf {
    use sha2::{Digest as _, Sha256};
    let envs = target_dir().join("client-envs");
    std::fs::create_dir_all(&envs).unwrap();
    let venv = envs.join(name);
    let python = venv.join("bin/python");
    let stamp = venv.join(".requirements.sha256");

    let lock = File::create(envs.join(format!("{name}.lock"))).unwrap();
    lock.lock().expect("lock the venv");

    let version = Command::new("python3").arg("--version").output();
    let version = match version {
        Ok(out) if out.status.success() => out,
        _ => panic!(
            "python3 is needed for the {name} test; install it with \
             `apt-get install -y python3 python3-venv` (scripts/test does this as root)"
        ),
    };
    let mut hash = Sha256::new();
    hash.update(std::fs::read(requirements).unwrap());
    hash.update(&version.stdout);
    hash.update(&version.stderr);
    let want = format!("{:x}", hash.finalize());

    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == want) {
        return python;
    }

    let started = Instant::now();
    eprintln!(
        "installing {} into {}",
        requirements.display(),
        venv.display()
    );
    if venv.exists() {
        std::fs::remove_dir_all(&venv).unwrap();
    }
    let mut make = Command::new("python3");
    make.args(["-m", "venv"]).arg(&venv);
    let out = run_bounded(make, Duration::from_secs(120), "python3 -m venv");
    assert!(
        out.status.success(),
        "python3 -m venv failed (on Debian: apt-get install -y python3-venv): {}",
        show(&out)
    );
    let mut install = Command::new(venv.join("bin/pip"));
    install
        .args([
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--only-binary=:all:",
            "-r",
        ])
        .arg(requirements);
    let out = run_bounded(install, Duration::from_secs(600), "pip install");
    assert!(
        out.status.success(),
        "pip install -r {} failed (PyPI is needed): {}",
        requirements.display(),
        show(&out)
    );
    std::fs::write(&stamp, &want).unwrap();
    eprintln!(
        "{name}: installed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    python
}
