//! Outgoing mail (`[email]`): one SMTP transport for the process, made on first use.

use std::{sync::Arc, time::Duration};

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
    transport::smtp::{
        authentication::Credentials,
        client::{Certificate, Tls, TlsParameters},
        extension::ClientId,
    },
};

use crate::{
    config::{EmailConfig, SmtpTls},
    error::{Error, Result},
    server::Homeserver,
};

/// Longest an SMTP conversation may take before the request gives up.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    pub app_name: String,
}

impl Mailer {
    /// The process's mailer; None when `[email]` has no SMTP server.
    pub fn of(hs: &Homeserver) -> Result<Option<Arc<Mailer>>> {
        if !hs.config.email.enabled() {
            return Ok(None);
        }
        hs.extensions
            .get_or_try_init(|| Self::new(&hs.config.email, hs.config.server_name().as_str()))
            .map(Some)
    }

    fn new(config: &EmailConfig, server_name: &str) -> Result<Self> {
        let host = config
            .smtp_host
            .clone()
            .ok_or_else(|| Error::Internal("email.smtp_host is unset".into()))?;
        let tls_error =
            |e: lettre::transport::smtp::Error| Error::Internal(format!("SMTP TLS: {e}"));
        let tls_parameters = || -> Result<TlsParameters> {
            let mut builder = TlsParameters::builder(host.clone());
            if let Some(path) = &config.tls_ca_file {
                let pem = std::fs::read(path)
                    .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
                builder =
                    builder.add_root_certificate(Certificate::from_pem(&pem).map_err(tls_error)?);
            }
            builder.build_rustls().map_err(tls_error)
        };
        let tls = match config.tls {
            SmtpTls::Starttls => Tls::Required(tls_parameters()?),
            SmtpTls::Tls => Tls::Wrapper(tls_parameters()?),
            SmtpTls::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(config.smtp_port)
            .tls(tls)
            .timeout(Some(SMTP_TIMEOUT))
            .hello_name(ClientId::Domain(server_name.to_owned()));
        if let (Some(user), Some(password)) = (&config.smtp_user, &config.smtp_password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        let from = config
            .from
            .as_deref()
            .unwrap_or_default()
            .parse()
            .map_err(|e| Error::Internal(format!("email.from: {e}")))?;
        Ok(Self {
            transport: builder.build(),
            from,
            app_name: config.app_name.clone(),
        })
    }

    /// Sends a plain-text mail. A failure is the server's (the address was checked
    /// before): logged, and answered as a 500 the client may retry.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<()> {
        let to: Mailbox = to
            .parse()
            .map_err(|_| Error::InvalidParam(format!("{to} is not an email address")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| Error::Internal(format!("building a mail: {e}")))?;
        self.transport.send(message).await.map_err(|e| {
            tracing::warn!("sending mail: {e}");
            Error::Internal("the mail could not be sent; try again later".into())
        })?;
        Ok(())
    }
}
