//! Third-party identifiers (email addresses): proving one by a mailed link, the account's
//! list (add, delete), and binding them at identity servers.

use ruma::{UserId, api::client::uiaa::AuthData};
use serde::{Deserialize, Serialize};

use super::{
    Requester,
    uia::{self, UiaAction},
};
use crate::{
    error::{Error, Result},
    identity::IdentityClient,
    mail::Mailer,
    ratelimit::Action,
    secrets,
    server::{Homeserver, now_ms},
    storage::threepids::{NewThreepidSession, ThreepidRow, ThreepidSessionRow},
};

pub const EMAIL: &str = "email";
/// Where the validation link of a mail points (served on the client listener).
pub const SUBMIT_TOKEN_PATH: &str = "/_axon/client/email/submit_token";
/// How long a validated session may still be used to add the address or reset a password.
const VALIDATED_FOR_MS: i64 = 24 * 3600 * 1000;

/// Why an address is being proved; each purpose checks the address differently first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Registering an account with it: no account may have it.
    Register,
    /// Resetting the password of the account that has it.
    PasswordReset,
    /// Adding it to the requester's account: no account may have it.
    Add,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::PasswordReset => "password_reset",
            Self::Add => "add",
        }
    }
}

/// A 3PID an email stage of UIA proved, as the UIA session keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proven {
    pub medium: String,
    pub address: String,
    pub validated_ts: i64,
    pub session_id: String,
}

pub struct TokenRequest<'a> {
    pub client_secret: &'a str,
    pub email: &'a str,
    pub send_attempt: u64,
    pub next_link: Option<&'a str>,
}

/// An email address as stored and compared: trimmed, lower case (as Synapse).
pub fn canonical_email(address: &str) -> Result<String> {
    let address = address.trim();
    let invalid = || Error::InvalidParam(format!("{address:?} is not an email address"));
    if address.len() > 320 {
        return Err(invalid());
    }
    let parsed: lettre::Address = address.parse().map_err(|_| invalid())?;
    Ok(format!(
        "{}@{}",
        parsed.user().to_lowercase(),
        parsed.domain().to_lowercase()
    ))
}

/// The spec's client secret: 1 to 255 of `[0-9a-zA-Z.=_-]`.
pub fn check_client_secret(secret: &str) -> Result<()> {
    let ok = !secret.is_empty()
        && secret.len() <= 255
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".=_-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidParam("invalid client_secret".into()))
    }
}

/// `/…/email/requestToken`: checks the address for the purpose and mails a validation
/// link. A repeat with the same secret, address and `send_attempt` answers the same
/// session without mailing again. Returns the session ID.
pub async fn request_email_token(
    hs: &Homeserver,
    purpose: Purpose,
    req: TokenRequest<'_>,
) -> Result<String> {
    let Some(mailer) = Mailer::of(hs)? else {
        let why = "this server cannot send email: no SMTP server is configured".to_owned();
        return Err(match purpose {
            Purpose::Add => Error::ThreepidMediumNotSupported(why),
            Purpose::Register | Purpose::PasswordReset => Error::ThreepidDenied(why),
        });
    };
    check_client_secret(req.client_secret)?;
    let address = canonical_email(req.email)?;
    if let Some(link) = req.next_link {
        let ok = reqwest::Url::parse(link).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            return Err(Error::InvalidParam(
                "next_link must be an http(s) URL".into(),
            ));
        }
    }
    let owner = hs.storage.threepid_owner(EMAIL, &address).await?;
    match purpose {
        Purpose::Register | Purpose::Add if owner.is_some() => return Err(Error::ThreepidInUse),
        Purpose::PasswordReset if owner.is_none() => {
            return Err(Error::ThreepidNotFound(
                "no account on this server has that email address".into(),
            ));
        }
        _ => {}
    }
    let now = now_ms();
    let attempt = i64::try_from(req.send_attempt).unwrap_or(i64::MAX);
    let existing = hs
        .storage
        .latest_threepid_session(req.client_secret, EMAIL, &address, purpose.as_str(), now)
        .await?;
    if let Some(session) = &existing
        && attempt <= session.send_attempt
    {
        return Ok(session.session_id.clone());
    }
    // Mails cost the recipient attention: at most a few per address and per minute.
    hs.rate_limiter.check(Action::ThreepidMail, &address)?;
    let token = secrets::random_id(32);
    let token_hash = hex(&secrets::token_hash(&token));
    let session_id = match existing {
        Some(session) => {
            hs.storage
                .set_threepid_session_attempt(
                    &session.session_id,
                    attempt,
                    &token_hash,
                    req.next_link,
                )
                .await?;
            session.session_id
        }
        None => {
            let session_id = secrets::random_id(24);
            hs.storage
                .create_threepid_session(&NewThreepidSession {
                    session_id: &session_id,
                    client_secret: req.client_secret,
                    medium: EMAIL,
                    address: &address,
                    purpose: purpose.as_str(),
                    token_hash: &token_hash,
                    send_attempt: attempt,
                    next_link: req.next_link,
                    now_ms: now,
                    expires_ts: now + hs.config.email.token_lifetime_secs as i64 * 1000,
                })
                .await?;
            session_id
        }
    };
    let link = validation_link(hs, &session_id, req.client_secret, &token);
    let (subject, intro) = match purpose {
        Purpose::Register => (
            format!("Confirm your email address for {}", mailer.app_name),
            "Someone asked to register an account with this email address.",
        ),
        Purpose::PasswordReset => (
            format!("Reset your {} password", mailer.app_name),
            "Someone asked to reset the password of the account with this email address.",
        ),
        Purpose::Add => (
            format!("Confirm your email address for {}", mailer.app_name),
            "Someone asked to add this email address to their account.",
        ),
    };
    let body = format!(
        "{intro}\n\nIf it was you, open this link to confirm:\n\n{link}\n\n\
         If it was not you, ignore this mail.\n\n-- {} ({})\n",
        mailer.app_name,
        hs.config.server_name(),
    );
    mailer.send(&address, &subject, body).await?;
    Ok(session_id)
}

fn validation_link(hs: &Homeserver, sid: &str, client_secret: &str, token: &str) -> String {
    let mut url = match reqwest::Url::parse(&format!(
        "{}{SUBMIT_TOKEN_PATH}",
        hs.config.public_baseurl()
    )) {
        Ok(url) => url,
        Err(_) => return format!("{SUBMIT_TOKEN_PATH}?sid={sid}&token={token}"),
    };
    url.query_pairs_mut()
        .append_pair("sid", sid)
        .append_pair("client_secret", client_secret)
        .append_pair("token", token);
    url.to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The mailed link was opened: the session's address is proven. Returns where to send
/// the browser next, if the client asked for that.
pub async fn submit_token(
    hs: &Homeserver,
    sid: &str,
    client_secret: &str,
    token: &str,
) -> Result<Option<String>> {
    let failed = || Error::ThreepidAuthFailed("the link is wrong or has expired".into());
    let now = now_ms();
    let session = hs
        .storage
        .threepid_session(sid, client_secret)
        .await?
        .filter(|s| s.expires_ts > now)
        .ok_or_else(failed)?;
    let given = hex(&secrets::token_hash(token));
    if !secrets::constant_time_eq(given.as_bytes(), session.token_hash.as_bytes()) {
        return Err(failed());
    }
    hs.storage
        .validate_threepid_session(sid, now, now + VALIDATED_FOR_MS)
        .await?;
    Ok(session.next_link)
}

/// A session whose address was proven, by its ID and secret.
pub async fn validated_session(
    hs: &Homeserver,
    sid: &str,
    client_secret: &str,
) -> Result<Option<ThreepidSessionRow>> {
    Ok(hs
        .storage
        .threepid_session(sid, client_secret)
        .await?
        .filter(|s| s.validated_ts.is_some() && s.expires_ts > now_ms()))
}

/// The email stage of UIA: the session's address must be proven and, when an account is
/// authenticating, be that account's.
pub async fn prove_for_uia(
    hs: &Homeserver,
    user: Option<&UserId>,
    sid: &str,
    client_secret: &str,
) -> Result<std::result::Result<Proven, (&'static str, String)>> {
    let Some(session) = validated_session(hs, sid, client_secret).await? else {
        return Ok(Err((
            "M_UNAUTHORIZED",
            "the email address has not been confirmed yet".into(),
        )));
    };
    if let Some(user) = user {
        let owner = hs
            .storage
            .threepid_owner(&session.medium, &session.address)
            .await?;
        if owner.as_deref() != Some(user.as_str()) {
            return Ok(Err((
                "M_UNAUTHORIZED",
                "that email address is not this account's".into(),
            )));
        }
    }
    Ok(Ok(Proven {
        medium: session.medium,
        address: session.address,
        validated_ts: session.validated_ts.unwrap_or_default(),
        session_id: session.session_id,
    }))
}

pub async fn list(hs: &Homeserver, requester: &Requester) -> Result<Vec<ThreepidRow>> {
    Ok(hs.storage.threepids_of(requester.user_id.as_str()).await?)
}

/// Gives a new account the address its registration proved.
pub async fn attach_proven(hs: &Homeserver, user_id: &UserId, proven: &Proven) -> Result<()> {
    if !hs
        .storage
        .add_threepid(
            user_id.as_str(),
            &proven.medium,
            &proven.address,
            proven.validated_ts,
            now_ms(),
        )
        .await?
    {
        // Taken between the proof and the registration: the account stays without it.
        tracing::info!("{user_id} registered with an address another account took meanwhile");
    }
    hs.storage
        .delete_threepid_session(&proven.session_id)
        .await?;
    Ok(())
}

/// `POST /account/3pid/add`: the requester proves it is them (password), and the session
/// proves the address.
pub async fn add(
    hs: &Homeserver,
    requester: &Requester,
    sid: &str,
    client_secret: &str,
    auth: Option<&AuthData>,
) -> Result<()> {
    check_client_secret(client_secret)?;
    uia::check_operation(
        hs,
        UiaAction::AddThreepid,
        Some(&requester.user_id),
        uia::password_flows(),
        auth,
        &serde_json::json!({ "sid": sid }),
    )
    .await?;
    add_validated(hs, requester, sid, client_secret).await
}

/// Adds the address a validated session proved to the requester's account.
pub async fn add_validated(
    hs: &Homeserver,
    requester: &Requester,
    sid: &str,
    client_secret: &str,
) -> Result<()> {
    let session = validated_session(hs, sid, client_secret)
        .await?
        .ok_or_else(|| {
            Error::ThreepidAuthFailed("no confirmed email address for that session".into())
        })?;
    let added = hs
        .storage
        .add_threepid(
            requester.user_id.as_str(),
            &session.medium,
            &session.address,
            session.validated_ts.unwrap_or_default(),
            now_ms(),
        )
        .await?;
    if !added {
        return Err(Error::ThreepidInUse);
    }
    hs.storage.delete_threepid_session(sid).await?;
    Ok(())
}

/// `POST /account/3pid/bind`: the identity server binds the address it validated to the
/// requester; this server remembers where, to unbind it later.
pub async fn bind(
    hs: &Homeserver,
    requester: &Requester,
    id_server: &str,
    id_access_token: &str,
    sid: &str,
    client_secret: &str,
) -> Result<()> {
    check_client_secret(client_secret)?;
    let bound = IdentityClient::of(hs)?
        .bind(
            id_server,
            id_access_token,
            sid,
            client_secret,
            requester.user_id.as_str(),
        )
        .await?;
    hs.storage
        .record_id_server_binding(
            requester.user_id.as_str(),
            &bound.medium,
            &bound.address,
            id_server,
        )
        .await?;
    Ok(())
}

/// Unbinds a 3PID of the user from `id_server`, or else from every identity server it
/// was bound to through us. True when every unbinding succeeded and there was one.
pub async fn unbind(
    hs: &Homeserver,
    user_id: &UserId,
    medium: &str,
    address: &str,
    id_server: Option<&str>,
) -> Result<bool> {
    let address = if medium == EMAIL {
        canonical_email(address).unwrap_or_else(|_| address.to_owned())
    } else {
        address.to_owned()
    };
    let servers = match id_server {
        Some(server) => vec![server.to_owned()],
        None => {
            hs.storage
                .id_servers_bound(user_id.as_str(), medium, &address)
                .await?
        }
    };
    if servers.is_empty() {
        return Ok(false);
    }
    let client = IdentityClient::of(hs)?;
    let mut all = true;
    for server in servers {
        let done = client
            .unbind(hs, &server, user_id.as_str(), medium, &address)
            .await?;
        all &= done;
        hs.storage
            .forget_id_server_binding(user_id.as_str(), medium, &address, &server)
            .await?;
    }
    Ok(all)
}

/// `POST /account/3pid/delete`: unbinds it from identity servers, then removes it from
/// the account. Returns whether the unbinding succeeded.
pub async fn delete(
    hs: &Homeserver,
    requester: &Requester,
    medium: &str,
    address: &str,
    id_server: Option<&str>,
) -> Result<bool> {
    let unbound = unbind(hs, &requester.user_id, medium, address, id_server).await?;
    let address = if medium == EMAIL {
        canonical_email(address).unwrap_or_else(|_| address.to_owned())
    } else {
        address.to_owned()
    };
    hs.storage
        .delete_threepid(requester.user_id.as_str(), medium, &address)
        .await?;
    Ok(unbound)
}

/// Before an account is deactivated: every 3PID it bound through us is unbound (and those
/// it has, from `id_server` when given). True when all unbindings succeeded.
pub async fn unbind_all(
    hs: &Homeserver,
    user_id: &UserId,
    id_server: Option<&str>,
) -> Result<bool> {
    let mut targets: Vec<(String, String, Option<String>)> = hs
        .storage
        .id_server_bindings_of(user_id.as_str())
        .await?
        .into_iter()
        .map(|(m, a, s)| (m, a, Some(s)))
        .collect();
    if let Some(server) = id_server {
        for t in hs.storage.threepids_of(user_id.as_str()).await? {
            targets.push((t.medium, t.address, Some(server.to_owned())));
        }
    }
    targets.sort();
    targets.dedup();
    let mut all = !targets.is_empty();
    for (medium, address, server) in targets {
        match unbind(hs, user_id, &medium, &address, server.as_deref()).await {
            Ok(done) => all &= done,
            Err(e) => {
                // Deactivation goes on: the identity server may be gone for good.
                tracing::info!("unbinding {medium} of {user_id} at deactivation: {e}");
                all = false;
            }
        }
    }
    Ok(all)
}

/// The account an email address belongs to (login with `m.id.thirdparty`).
pub async fn owner_of(hs: &Homeserver, medium: &str, address: &str) -> Result<Option<String>> {
    let address = match medium {
        EMAIL => match canonical_email(address) {
            Ok(a) => a,
            Err(_) => return Ok(None),
        },
        _ => address.to_owned(),
    };
    Ok(hs.storage.threepid_owner(medium, &address).await?)
}
