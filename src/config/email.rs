//! `[email]`: the SMTP server validation mails go out through (registration with an email
//! address, password reset, adding an address to an account). Unset `smtp_host`: no mail
//! is sent, and the email endpoints answer that this server cannot send any.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, env};

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which the server must offer (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on the same machine.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    #[serde(default)]
    pub smtp_host: Option<String>,
    #[serde(default = "default_smtp_port")]
    pub smtp_port: u16,
    #[serde(default = "default_tls")]
    pub tls: SmtpTls,
    /// Credentials for SMTP AUTH; none: no authentication.
    #[serde(default)]
    pub smtp_user: Option<String>,
    #[serde(default, deserialize_with = "env::opt_string_or_number")]
    pub smtp_password: Option<String>,
    /// The sender, e.g. `"Example Matrix <noreply@example.org>"`.
    #[serde(default)]
    pub from: Option<String>,
    /// The name mails call the service by.
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// How long a mailed validation link stays valid, in seconds.
    #[serde(default = "default_token_lifetime_secs")]
    pub token_lifetime_secs: u64,
    /// Registration must prove an email address (Synapse's `registrations_require_3pid`).
    #[serde(default)]
    pub require_for_registration: bool,
    /// A PEM CA certificate trusted for the SMTP server besides the system's roots.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
}

fn default_smtp_port() -> u16 {
    587
}

fn default_tls() -> SmtpTls {
    SmtpTls::Starttls
}

fn default_app_name() -> String {
    "Matrix".into()
}

fn default_token_lifetime_secs() -> u64 {
    3600
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            smtp_host: None,
            smtp_port: default_smtp_port(),
            tls: default_tls(),
            smtp_user: None,
            smtp_password: None,
            from: None,
            app_name: default_app_name(),
            token_lifetime_secs: default_token_lifetime_secs(),
            require_for_registration: false,
            tls_ca_file: None,
        }
    }
}

impl EmailConfig {
    /// Whether validation mails can be sent.
    pub fn enabled(&self) -> bool {
        self.smtp_host.is_some()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.require_for_registration && !self.enabled() {
            return Err(ConfigError::new(
                "email.require_for_registration",
                "needs email.smtp_host: no mail could prove the address",
            ));
        }
        if !self.enabled() {
            return Ok(());
        }
        match &self.from {
            None => {
                return Err(ConfigError::new(
                    "email.from",
                    "is required when smtp_host is set",
                ));
            }
            Some(from) if from.parse::<lettre::message::Mailbox>().is_err() => {
                return Err(ConfigError::new(
                    "email.from",
                    format!("{from:?} is not an address (e.g. \"Name <noreply@example.org>\")"),
                ));
            }
            Some(_) => {}
        }
        if self.smtp_user.is_some() != self.smtp_password.is_some() {
            return Err(ConfigError::new(
                "email.smtp_password",
                "smtp_user and smtp_password go together",
            ));
        }
        if !(60..=7 * 86_400).contains(&self.token_lifetime_secs) {
            return Err(ConfigError::new(
                "email.token_lifetime_secs",
                "must be between 60 and 604800",
            ));
        }
        if let Some(path) = &self.tls_ca_file
            && !path.is_file()
        {
            return Err(ConfigError::new(
                "email.tls_ca_file",
                format!("{} is not a file", path.display()),
            ));
        }
        Ok(())
    }
}
