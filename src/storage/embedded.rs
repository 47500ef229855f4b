//! A private PostgreSQL cluster under `data_dir`, used when no `database.url` is set.
//!
//! The cluster listens on a unix socket only, in a directory only its owner can enter. When
//! axon runs as root the cluster runs as an unprivileged system user, since initdb and
//! postgres refuse root. A cluster left running by a killed axon is stopped and started
//! again, so the postmaster always belongs to the current process's lifetime.

use std::{
    os::unix::{ffi::OsStrExt, fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use sqlx::postgres::PgConnectOptions;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "PostgreSQL server binaries not found (looked for pg_config and /usr/lib/postgresql/*/bin). Install them with: sudo apt-get install -y postgresql"
    )]
    NotInstalled,
    #[error("installing PostgreSQL with apt-get failed: {0}")]
    InstallFailed(String),
    #[error("{step} failed: {detail}")]
    Command { step: &'static str, detail: String },
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// Tries to start the postmaster before giving up (a second apart).
const START_ATTEMPTS: u32 = 10;

/// Database name and role axon uses inside its own cluster.
pub const DATABASE: &str = "axon";
const PORT: u16 = 5432;

/// A running private cluster; `stop` shuts it down.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    owner: Option<(u32, u32)>,
    durable: bool,
}

impl EmbeddedPostgres {
    /// Initialises (first time) and starts the cluster under `root`, installing the server
    /// package first when it is missing and we are root.
    pub fn start(root: &Path) -> Result<Self, EmbeddedError> {
        Self::start_with(root, true)
    }

    /// `durable: false` turns off fsync and synchronous commit: for throwaway clusters
    /// (tests), never for data anyone keeps.
    pub fn start_with(root: &Path, durable: bool) -> Result<Self, EmbeddedError> {
        let bin_dir = match find_bin_dir() {
            Some(dir) => dir,
            None if is_root() => {
                install_postgres()?;
                find_bin_dir().ok_or(EmbeddedError::NotInstalled)?
            }
            None => return Err(EmbeddedError::NotInstalled),
        };
        let owner = if is_root() {
            Some(unprivileged_user()?)
        } else {
            None
        };
        let root = std::path::absolute(root).map_err(|e| io("data_dir", e))?;
        std::fs::create_dir_all(&root).map_err(|e| io("create data_dir", e))?;
        let root = match owner {
            Some(owner) => reachable_root(&root, owner)?,
            None => root,
        };
        let this = Self {
            bin_dir,
            data_dir: root.join("pgdata"),
            socket_dir: root.join("pgrun"),
            owner,
            durable,
        };
        this.prepare_dir(&this.socket_dir)?;
        if !this.data_dir.join("PG_VERSION").exists() {
            this.init()?;
        }
        this.start_postmaster()?;
        this.ensure_database()?;
        Ok(this)
    }

    /// Starts the postmaster again after it died (the supervisor in `run` calls this).
    pub fn restart(&self) -> Result<(), EmbeddedError> {
        self.start_postmaster()
    }

    /// Whether our postmaster is running: the PID in `postmaster.pid` is alive and is a
    /// postgres process whose working directory is our data directory.
    pub fn is_running(&self) -> bool {
        self.postmaster_pid()
            .is_some_and(|pid| is_our_postmaster(pid, &self.data_dir))
    }

    fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse::<i32>().ok()
    }

    /// Starts the postmaster, trying again for a while: after a crash the dead
    /// postmaster's backends can hold its shared memory for a moment, and postgres refuses
    /// to start until they are gone. The last failure names the end of postgres.log.
    fn start_postmaster(&self) -> Result<(), EmbeddedError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.start_postmaster_once() {
                Ok(()) => return Ok(()),
                Err(e) if attempt >= START_ATTEMPTS => {
                    let log = std::fs::read_to_string(self.data_dir.join("postgres.log"))
                        .unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    return Err(EmbeddedError::Command {
                        step: "starting PostgreSQL",
                        detail: format!("{e}; postgres.log ends: {}", tail.join(" | ")),
                    });
                }
                Err(e) => {
                    tracing::warn!(attempt, "starting PostgreSQL: {e}; trying again");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    fn start_postmaster_once(&self) -> Result<(), EmbeddedError> {
        self.recover_unclean_stop()?;
        self.run_pg_ctl(
            "pg_ctl start",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-s",
                "-l",
                &self.data_dir.join("postgres.log").to_string_lossy(),
                "-o",
                &format!(
                    "-c listen_addresses='' -c unix_socket_directories='{}' -c unix_socket_permissions=0700 -p {PORT} {}",
                    self.socket_dir.display(),
                    if self.durable {
                        "-c fsync=on"
                    } else {
                        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                    }
                ),
            ],
        )
    }

    /// Connection options for the cluster's socket.
    pub fn connect_options(&self) -> PgConnectOptions {
        socket_options(&self.socket_dir)
    }

    /// Fast shutdown: disconnects clients, checkpoints, exits.
    pub fn stop(&self) -> Result<(), EmbeddedError> {
        self.run_pg_ctl("pg_ctl stop", &["stop", "-w", "-s", "-m", "fast"])
    }

    fn init(&self) -> Result<(), EmbeddedError> {
        self.prepare_dir(&self.data_dir)?;
        let mut cmd = self.command("initdb");
        cmd.args(["-D"]).arg(&self.data_dir).args([
            "-U",
            DATABASE,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]);
        run("initdb", cmd)
    }

    /// A postmaster left by an axon that was killed keeps running; stop it so the one we
    /// start is ours. A PID file whose PID is now some other process (PIDs are reused
    /// after a reboot or a long time) is stale: it is removed, and that process is left
    /// alone.
    fn recover_unclean_stop(&self) -> Result<(), EmbeddedError> {
        let Some(pid) = self.postmaster_pid() else {
            return Ok(());
        };
        if is_our_postmaster(pid, &self.data_dir) {
            tracing::warn!(
                pid,
                "stopping a PostgreSQL cluster left running by an earlier axon"
            );
            self.run_pg_ctl(
                "pg_ctl stop (recovery)",
                &["stop", "-w", "-s", "-m", "fast"],
            )
            .or_else(|_| {
                self.run_pg_ctl(
                    "pg_ctl stop (recovery)",
                    &["stop", "-w", "-s", "-m", "immediate"],
                )
            })?;
        } else if process_exists(pid) {
            tracing::warn!(
                pid,
                "postmaster.pid names a process that is not this cluster's postmaster; removing the stale file"
            );
            std::fs::remove_file(self.data_dir.join("postmaster.pid"))
                .map_err(|e| io("remove stale postmaster.pid", e))?;
        }
        Ok(())
    }

    fn ensure_database(&self) -> Result<(), EmbeddedError> {
        let mut check = self.command("psql");
        self.psql_args(&mut check, "postgres").args([
            "-tAc",
            &format!("SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"),
        ]);
        let out = output("psql", check)?;
        if String::from_utf8_lossy(&out).trim() == "1" {
            return Ok(());
        }
        let mut create = self.command("psql");
        self.psql_args(&mut create, "postgres")
            .args(["-c", &format!("CREATE DATABASE {DATABASE}")]);
        run("createdb", create)
    }

    fn psql_args<'c>(&self, cmd: &'c mut Command, db: &str) -> &'c mut Command {
        cmd.arg("-h").arg(&self.socket_dir).args([
            "-p",
            &PORT.to_string(),
            "-U",
            DATABASE,
            "-d",
            db,
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
        ])
    }

    fn run_pg_ctl(&self, step: &'static str, args: &[&str]) -> Result<(), EmbeddedError> {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D").arg(&self.data_dir).args(args);
        run(step, cmd)
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.stdin(Stdio::null())
            .env("LC_ALL", "C.UTF-8")
            .env_remove("PGDATA");
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid); // std drops supplementary groups too
            // The unprivileged user cannot read root's cwd.
            cmd.current_dir("/");
        }
        cmd
    }

    fn prepare_dir(&self, dir: &Path) -> Result<(), EmbeddedError> {
        std::fs::create_dir_all(dir).map_err(|e| io("create directory", e))?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|e| io("chown", e))?;
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io("chmod", e))
    }
}

/// The unprivileged cluster owner must be able to reach the cluster's directory. A data_dir
/// under /root is not reachable; the cluster then lives under /var/lib/axon with a symlink
/// `data_dir/postgres` pointing at it, so it still belongs to that data_dir.
fn reachable_root(root: &Path, (uid, gid): (u32, u32)) -> Result<PathBuf, EmbeddedError> {
    let reachable = Command::new("test")
        .arg("-x")
        .arg(root)
        .uid(uid)
        .gid(gid)
        .current_dir("/")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if reachable {
        return Ok(root.to_path_buf());
    }
    let link = root.join("postgres");
    if let Ok(target) = std::fs::read_link(&link) {
        return Ok(target);
    }
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    root.hash(&mut hasher);
    let target = PathBuf::from(format!("/var/lib/axon/clusters/{:016x}", hasher.finish()));
    std::fs::create_dir_all(&target).map_err(|e| io("create /var/lib/axon", e))?;
    for dir in [
        Path::new("/var/lib/axon"),
        Path::new("/var/lib/axon/clusters"),
        &target,
    ] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io("chmod", e))?;
    }
    std::os::unix::fs::symlink(&target, &link).map_err(|e| io("symlink data_dir/postgres", e))?;
    tracing::info!(cluster = %target.display(), "data_dir is not reachable by the cluster's user; keeping the cluster under /var/lib/axon");
    Ok(target)
}

fn process_exists(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// Whether `pid` is a postgres process serving `data_dir`: its program is `postgres` and
/// its command line names `data_dir` (pg_ctl starts it with `-D`) or, failing that, its
/// working directory (postgres changes into its data directory) is `data_dir`. When
/// neither can be read (another user's process without ptrace rights, hidepid), it is
/// taken to be ours: wrongly believing it foreign would delete a live cluster's PID file.
fn is_our_postmaster(pid: i32, data_dir: &Path) -> bool {
    if !process_exists(pid) {
        return false;
    }
    let proc = PathBuf::from(format!("/proc/{pid}"));
    if let Ok(comm) = std::fs::read_to_string(proc.join("comm"))
        && !matches!(comm.trim(), "postgres" | "postmaster")
    {
        return false;
    }
    let ours = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    if let Ok(cmdline) = std::fs::read(proc.join("cmdline"))
        && !cmdline.is_empty()
    {
        return cmdline
            .split(|b| *b == 0)
            .map(|arg| Path::new(std::ffi::OsStr::from_bytes(arg)))
            .any(|arg| arg == ours || arg == data_dir);
    }
    match std::fs::read_link(proc.join("cwd")) {
        Ok(cwd) => cwd == ours,
        Err(_) => true,
    }
}

fn io(what: &str, e: std::io::Error) -> EmbeddedError {
    EmbeddedError::Io(what.to_owned(), e)
}

fn run(step: &'static str, cmd: Command) -> Result<(), EmbeddedError> {
    output(step, cmd).map(|_| ())
}

fn output(step: &'static str, mut cmd: Command) -> Result<Vec<u8>, EmbeddedError> {
    let out = cmd.output().map_err(|e| EmbeddedError::Command {
        step,
        detail: e.to_string(),
    })?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(EmbeddedError::Command {
            step,
            detail: format!(
                "{}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            ),
        })
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Directory holding initdb, pg_ctl and postgres: pg_config's BINDIR, else the newest
/// /usr/lib/postgresql/<version>/bin.
pub fn find_bin_dir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

fn install_postgres() -> Result<(), EmbeddedError> {
    tracing::info!("PostgreSQL server not found; installing it with apt-get");
    let status = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| EmbeddedError::InstallFailed(e.to_string()))
    };
    status(&["update", "-q"])?;
    let s = status(&[
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "postgresql",
    ])?;
    if s.success() {
        Ok(())
    } else {
        Err(EmbeddedError::InstallFailed(s.to_string()))
    }
}

/// uid/gid of `postgres` (made by Debian's package), else `nobody`.
fn unprivileged_user() -> Result<(u32, u32), EmbeddedError> {
    for name in [c"postgres", c"nobody"] {
        // SAFETY: getpwnam returns a pointer to static storage or null; we copy out at once
        // and no other thread calls getpwnam at start-up.
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        if !pw.is_null() {
            // SAFETY: non-null result of getpwnam points at a valid passwd.
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            return Ok((uid, gid));
        }
    }
    Err(EmbeddedError::Command {
        step: "find an unprivileged user",
        detail: "running as root, but neither `postgres` nor `nobody` exists".into(),
    })
}

/// Connection options for a cluster another process runs on `data_dir`.
pub fn attach(data_dir: &Path) -> Result<PgConnectOptions, EmbeddedError> {
    let root = std::path::absolute(data_dir).map_err(|e| io("data_dir", e))?;
    let root = std::fs::read_link(root.join("postgres")).unwrap_or(root);
    Ok(socket_options(&root.join("pgrun")))
}

fn socket_options(socket_dir: &Path) -> PgConnectOptions {
    PgConnectOptions::new()
        .socket(socket_dir)
        .port(PORT)
        .username(DATABASE)
        .database(DATABASE)
}

/// Waits until the socket accepts connections (pg_ctl -w already does; this guards the
/// window on slow disks).
pub async fn wait_ready(options: &PgConnectOptions) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if sqlx::ConnectOptions::connect(options).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
