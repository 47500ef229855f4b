//! A real Python client against the `axon` binary: matrix-nio (with end-to-end encryption)
//! runs tests/clients/nio/e2ee_chat.py, two users chatting in a Megolm-encrypted room.
//!
//! nio and its pinned dependencies are installed into a venv cached in the cargo target dir
//! (`<target>/client-envs/nio`), made again only when tests/clients/nio/requirements.txt
//! (or the python3 it was made with) changes. It needs `python3` with its venv module
//! (scripts/test installs them) and PyPI.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/client_run.rs"]
mod client_run;

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use client_run::{Server, run_bounded, show, target_dir};
use sha2::{Digest as _, Sha256};

const CLIENT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/nio");

/// How long the script may run (it also bounds itself, 30 s less).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);

/// The venv's python, with the pinned requirements installed. A lock file keeps parallel
/// test processes from building the same venv at once; a stamp (the hash of the
/// requirements and of `python3 --version`) skips the install when nothing changed.
fn nio_env() -> PathBuf {
    let envs = target_dir().join("client-envs");
    std::fs::create_dir_all(&envs).unwrap();
    let venv = envs.join("nio");
    let python = venv.join("bin/python");
    let stamp = venv.join(".requirements.sha256");
    let requirements = Path::new(CLIENT_DIR).join("requirements.txt");

    let lock = File::create(envs.join("nio.lock")).unwrap();
    lock.lock().expect("lock the nio venv");

    let version = Command::new("python3").arg("--version").output();
    let version = match version {
        Ok(out) if out.status.success() => out,
        _ => panic!(
            "python3 is needed for the matrix-nio test; install it with \
             `apt-get install -y python3 python3-venv` (scripts/test does this as root)"
        ),
    };
    let mut hash = Sha256::new();
    hash.update(std::fs::read(&requirements).unwrap());
    hash.update(&version.stdout);
    hash.update(&version.stderr);
    let want = format!("{:x}", hash.finalize());

    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == want) {
        return python;
    }

    let started = Instant::now();
    eprintln!("client_nio: installing matrix-nio into {}", venv.display());
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
        .arg(&requirements);
    let out = run_bounded(install, Duration::from_secs(600), "pip install");
    assert!(
        out.status.success(),
        "pip install -r {} failed: {}",
        requirements.display(),
        show(&out)
    );
    std::fs::write(&stamp, &want).unwrap();
    eprintln!(
        "client_nio: installed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    python
}

#[test]
fn nio_clients_chat_in_an_encrypted_room() {
    let python = nio_env();
    let server = Server::start();

    let started = Instant::now();
    let mut script = Command::new(&python);
    script
        .arg(Path::new(CLIENT_DIR).join("e2ee_chat.py"))
        .arg(format!("http://127.0.0.1:{}", server.port))
        .args(["--timeout", &(SCRIPT_TIMEOUT.as_secs() - 30).to_string()])
        // No __pycache__ in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let out = run_bounded(script, SCRIPT_TIMEOUT, "e2ee_chat.py");
    assert!(
        out.status.success(),
        "the matrix-nio e2ee chat failed: {}\n--- axon's log (last lines) ---\n{}",
        show(&out),
        server.log_tail()
    );
    println!(
        "{}(script ran {:.1}s)",
        String::from_utf8_lossy(&out.stdout),
        started.elapsed().as_secs_f64()
    );
}
