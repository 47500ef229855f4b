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
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use client_run::{Server, python_env, run_bounded, show};

const CLIENT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/nio");

/// How long the script may run (it also bounds itself, 30 s less).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);

fn nio_env() -> PathBuf {
    python_env("nio", &Path::new(CLIENT_DIR).join("requirements.txt"))
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
