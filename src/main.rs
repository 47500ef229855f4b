//! The `axon` command line.

use std::{io::IsTerminal as _, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use axon::{
    config::Config,
    run::{self, Database},
    secrets,
    server::Homeserver,
    users::register,
};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "axon", version, about = "A Matrix homeserver on PostgreSQL")]
struct Cli {
    /// TOML configuration file; every key can also be set as AXON_<SECTION>__<KEY>.
    #[arg(long, short, global = true, env = "AXON_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the homeserver.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Make a new signing key; the old one stays published as an old verify key. Restart
    /// running servers to sign with the new key.
    RotateSigningKey,
    /// Create an account, bypassing the registration mode.
    CreateUser {
        localpart: String,
        /// Make the account a server admin.
        #[arg(long)]
        admin: bool,
        /// Read the password from this file (first line). Without it, the password is read
        /// from standard input when that is not a terminal, else generated and printed.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

/// Panics are logged as one error line (where, and the start of the message) instead of
/// the default hook's output with a backtrace: a request that panics is answered 500 by
/// the HTTP layer, and a client repeating it must not flood the log.
fn log_panics_briefly() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        // The start only: messages can quote request data.
        let message: String = message.chars().take(160).collect();
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if axon::http::extract::panic_is_from_decoding() {
            tracing::debug!(%location, "malformed request (decoder panicked): {message}");
        } else {
            tracing::error!(%location, "panic: {message}");
        }
    }));
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AXON_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    log_panics_briefly();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("axon: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("axon: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => run::serve(config).await,
            Command::Migrate => {
                let db = Database::open(&config).await?;
                println!("migrations applied");
                db.close().await;
                Ok(())
            }
            Command::RotateSigningKey => {
                let db = Database::open(&config).await?;
                let result = axon::server::keys::rotate(&db.storage).await;
                db.close().await;
                let key_id = result.map_err(|e| anyhow::anyhow!("{e}"))?;
                println!("new signing key {key_id}");
                Ok(())
            }
            Command::CreateUser {
                localpart,
                admin,
                password_file,
            } => create_user(config, &localpart, admin, password_file).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("axon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn create_user(
    config: Config,
    localpart: &str,
    admin: bool,
    password_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let (password, generated) = match password_file {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            (text.lines().next().unwrap_or_default().to_owned(), false)
        }
        None if !std::io::stdin().is_terminal() => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            (line.trim_end_matches(['\r', '\n']).to_owned(), false)
        }
        None => (secrets::new_token(""), true),
    };
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    let db = Database::open(&config).await?;
    let result = match Homeserver::new(config, db.storage.clone()).await {
        Ok(hs) => register::create_user_cli(&hs, localpart, Some(&password), admin).await,
        Err(e) => Err(e),
    };
    db.close().await;
    let user_id = result.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("created {user_id}{}", if admin { " (admin)" } else { "" });
    if generated {
        println!("password: {password}");
    }
    Ok(())
}
