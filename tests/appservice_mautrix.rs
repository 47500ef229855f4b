//! A real appservice library against axon: a bridge built on mautrix-python (PyPI), run by
//! tests/clients/mautrix/bridge.py, registered through a registration file. It gets an
//! invite and a message in transactions, registers a puppet, replies as it with a
//! massaged timestamp, makes a room for an alias of its namespace when asked, and sees
//! typing and a to-device message, and device list changes and one-time key counts
//! (MSC3202).
//!
//! mautrix and its pinned dependencies are installed into a venv cached in the cargo
//! target dir (`<target>/client-envs/mautrix`), made again only when
//! tests/clients/mautrix/requirements.txt changes. It needs `python3` with its venv module
//! (scripts/test installs them) and PyPI.

#[path = "common/appservice.rs"]
mod appservice;
#[path = "common/cli.rs"]
mod cli;
#[path = "common/client_run.rs"]
mod client_run;
mod common;

use std::{path::Path, process::Command, time::Duration};

use client_run::{python_env, run_bounded, show};
use common::TestServer;

const CLIENT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/mautrix");
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);

#[tokio::test(flavor = "multi_thread")]
async fn a_mautrix_bridge_works_on_axon() {
    let python = python_env("mautrix", &Path::new(CLIENT_DIR).join("requirements.txt"));
    let port = cli::free_port();
    let dir = tempfile::tempdir().unwrap();
    let registration = dir.path().join("registration.yaml");
    std::fs::write(
        &registration,
        format!(
            "id: bridge\nurl: http://127.0.0.1:{port}\nas_token: {}\nhs_token: {}\n\
             sender_localpart: bridgebot\nrate_limited: false\nreceive_ephemeral: true\n\
             org.matrix.msc3202: true\n\
             namespaces:\n  users:\n    - exclusive: true\n      regex: '@bridge_.*:localhost'\n\
             \x20 aliases:\n    - exclusive: true\n      regex: '#bridge_.*:localhost'\n",
            appservice::AS_TOKEN,
            appservice::HS_TOKEN
        ),
    )
    .unwrap();
    let s = TestServer::start_with(|env| env.extend(appservice::env_with(&[registration]))).await;
    let (human, _) = s.register("human", "pw").await;

    let mut script = Command::new(&python);
    script
        .arg(Path::new(CLIENT_DIR).join("bridge.py"))
        .arg(&s.base)
        .arg(port.to_string())
        .arg(&human)
        .args(["--timeout", &(SCRIPT_TIMEOUT.as_secs() - 30).to_string()])
        .current_dir(dir.path())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let out = tokio::task::spawn_blocking(move || run_bounded(script, SCRIPT_TIMEOUT, "bridge.py"))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "the mautrix bridge failed: {}",
        show(&out)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    for step in [
        "puppet registered",
        "invite received in a transaction",
        "message received in a transaction",
        "puppet replied with a massaged timestamp",
        "alias made on demand",
        "typing received",
        "to-device message received",
        "device list change received",
        "one-time key counts received",
    ] {
        assert!(said.contains(step), "missing {step:?}: {said}");
    }
}
