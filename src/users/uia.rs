//! User-interactive authentication: sessions kept in the database, stages checked here.

use ruma::{
    UserId,
    api::client::uiaa::{AuthData, AuthFlow, AuthType, UiaaInfo, UserIdentifier},
};
use serde_json::{Value as JsonValue, json};

use super::{
    login, secrets,
    threepid::{self, Proven},
};
use crate::{
    error::{Error, Result},
    ratelimit::Action,
    server::{Homeserver, now_ms},
    storage::uia::NewUiaSession,
};

/// What a UIA session authorises; a session started for one action cannot complete another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiaAction {
    Register,
    DeleteDevices,
    ChangePassword,
    Deactivate,
    GetLoginToken,
    SigningKeys,
    AddThreepid,
    ResetPassword,
}

impl UiaAction {
    fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::DeleteDevices => "delete_devices",
            Self::ChangePassword => "change_password",
            Self::Deactivate => "deactivate",
            Self::GetLoginToken => "get_login_token",
            Self::SigningKeys => "device_signing_upload",
            Self::AddThreepid => "add_threepid",
            Self::ResetPassword => "reset_password",
        }
    }
}

/// The flows offered to an existing user proving it is them: their password.
pub fn password_flows() -> Vec<Vec<AuthType>> {
    vec![vec![AuthType::Password]]
}

/// Runs one round of UIA. `Ok(())` when a flow is complete; otherwise the 401 to send,
/// as `Error::Uia`. `user` is the account that must authenticate (None for registration).
pub async fn check(
    hs: &Homeserver,
    action: UiaAction,
    user: Option<&UserId>,
    flows: Vec<Vec<AuthType>>,
    auth: Option<&AuthData>,
) -> Result<()> {
    check_operation(hs, action, user, flows, auth, &JsonValue::Null).await
}

/// `check` for an operation with a subject (`operation`, e.g. the devices to delete): a
/// session started for one subject cannot complete another (403, as Synapse).
pub async fn check_operation(
    hs: &Homeserver,
    action: UiaAction,
    user: Option<&UserId>,
    flows: Vec<Vec<AuthType>>,
    auth: Option<&AuthData>,
    operation: &JsonValue,
) -> Result<()> {
    check_proving(hs, action, user, flows, auth, operation)
        .await
        .map(drop)
}

/// `check_operation`, answering with the 3PID an email stage of the session proved.
pub async fn check_proving(
    hs: &Homeserver,
    action: UiaAction,
    user: Option<&UserId>,
    flows: Vec<Vec<AuthType>>,
    auth: Option<&AuthData>,
    operation: &JsonValue,
) -> Result<Option<Proven>> {
    let Some(auth) = auth else {
        let session = new_session(hs, action, user, &flows, operation).await?;
        return Err(challenge(&flows, session, Vec::new(), None));
    };
    let (session_id, mut completed) = match auth.session() {
        Some(id) => {
            let row = hs.storage.uia_session(id).await?;
            match row {
                Some(row)
                    if row.action == action.as_str()
                        && row.user_id.as_deref() == user.map(|u| u.as_str())
                        && row.expires_ts > now_ms() =>
                {
                    if !operation.is_null() && row.params.get("operation") != Some(operation) {
                        return Err(Error::Forbidden(
                            "the requested operation changed during the authentication session"
                                .into(),
                        ));
                    }
                    (id.to_owned(), row.completed)
                }
                _ => return Err(Error::Unrecognized("unknown or expired UIA session".into())),
            }
        }
        // A client may authenticate on its first request without a session.
        None => (
            new_session(hs, action, user, &flows, operation).await?,
            Vec::new(),
        ),
    };

    let stage = auth.auth_type();
    let offered = |t: &AuthType| flows.iter().any(|f| f.contains(t));
    let Some(stage) = stage.filter(offered) else {
        return Err(challenge(
            &flows,
            session_id,
            completed,
            Some(("M_UNRECOGNIZED", "authentication type not offered".into())),
        ));
    };
    if let Err(failure) = check_stage(hs, user, &session_id, auth).await? {
        return Err(challenge(&flows, session_id, completed, Some(failure)));
    }
    if !completed.iter().any(|c| c == stage.as_str()) {
        completed.push(stage.as_str().to_owned());
    }
    let done = flows.iter().any(|flow| {
        flow.iter()
            .all(|s| completed.iter().any(|c| c == s.as_str()))
    });
    if done {
        let proven: Option<Proven> = hs
            .storage
            .uia_session(&session_id)
            .await?
            .and_then(|row| row.params.get("threepid").cloned())
            .and_then(|p| serde_json::from_value(p).ok());
        // A registration's session outlives it (until it expires), so that a repeated
        // final request answers with the same account instead of "user in use".
        if action == UiaAction::Register {
            hs.storage
                .set_uia_completed(&session_id, &completed)
                .await?;
        } else {
            hs.storage.delete_uia_session(&session_id).await?;
        }
        Ok(proven)
    } else {
        hs.storage
            .set_uia_completed(&session_id, &completed)
            .await?;
        Err(challenge(&flows, session_id, completed, None))
    }
}

/// Checks one stage's credentials. The outer error ends the request (a server failure, or
/// credentials of the wrong account); the inner one is a failed stage, reported inside the
/// 401.
async fn check_stage(
    hs: &Homeserver,
    user: Option<&UserId>,
    session_id: &str,
    auth: &AuthData,
) -> Result<Result<(), (&'static str, String)>> {
    Ok(match auth {
        AuthData::Dummy(_) => Ok(()),
        AuthData::EmailIdentity(email) => {
            let creds = &email.thirdparty_id_creds;
            match threepid::prove_for_uia(
                hs,
                user,
                creds.sid.as_str(),
                creds.client_secret.as_str(),
            )
            .await?
            {
                Ok(proven) => {
                    let value = serde_json::to_value(&proven)
                        .map_err(|e| Error::Internal(e.to_string()))?;
                    hs.storage
                        .merge_uia_param(session_id, "threepid", &value)
                        .await?;
                    Ok(())
                }
                Err(failure) => Err(failure),
            }
        }
        AuthData::RegistrationToken(t) => {
            if registration_token_valid(hs, &t.token) {
                Ok(())
            } else {
                Err(("M_FORBIDDEN", "invalid registration token".into()))
            }
        }
        AuthData::Password(p) => {
            let Some(user) = user else {
                return Ok(Err(("M_FORBIDDEN", "no account to authenticate".into())));
            };
            hs.rate_limiter.peek(Action::FailedLogin, user.as_str())?;
            let claimed = match &p.identifier {
                UserIdentifier::Matrix(id) => login::qualify_user_id(hs, &id.user).ok(),
                _ => None,
            };
            if claimed.as_deref() != Some(user) {
                // Another account's credentials: refused outright (403, as Synapse),
                // not a stage to retry.
                return Err(Error::Forbidden(
                    "identifier does not match the logged-in user".into(),
                ));
            }
            let hash = hs
                .storage
                .user(user.as_str())
                .await?
                .and_then(|u| u.password_hash);
            match hash {
                Some(hash) if secrets::verify_password(&p.password, &hash).await => Ok(()),
                _ => {
                    hs.rate_limiter.record(Action::FailedLogin, user.as_str());
                    Err(("M_FORBIDDEN", "invalid password".into()))
                }
            }
        }
        _ => Err(("M_UNRECOGNIZED", "authentication type not supported".into())),
    })
}

/// What a registration session remembers (`params`), if the session exists for that
/// action and has not expired.
pub async fn remembered(
    hs: &Homeserver,
    action: UiaAction,
    session_id: &str,
) -> Result<Option<JsonValue>> {
    Ok(hs
        .storage
        .uia_session(session_id)
        .await?
        .filter(|row| row.action == action.as_str() && row.expires_ts > now_ms())
        .map(|row| row.params))
}

/// Stores what a session should remember.
pub async fn remember(hs: &Homeserver, session_id: &str, params: &JsonValue) -> Result<()> {
    hs.storage.set_uia_params(session_id, params).await?;
    Ok(())
}

pub fn registration_token_valid(hs: &Homeserver, token: &str) -> bool {
    hs.config
        .registration
        .tokens
        .iter()
        .any(|t| secrets::constant_time_eq(t.as_bytes(), token.as_bytes()))
}

async fn new_session(
    hs: &Homeserver,
    action: UiaAction,
    user: Option<&UserId>,
    flows: &[Vec<AuthType>],
    operation: &JsonValue,
) -> Result<String> {
    let session_id = secrets::random_id(24);
    let now = now_ms();
    let flows_json: JsonValue = flows
        .iter()
        .map(|f| f.iter().map(|s| s.as_str().to_owned()).collect::<Vec<_>>())
        .collect::<Vec<_>>()
        .into();
    hs.storage
        .create_uia_session(&NewUiaSession {
            session_id: &session_id,
            action: action.as_str(),
            user_id: user.map(|u| u.as_str()),
            flows: &flows_json,
            params: &if operation.is_null() {
                json!({})
            } else {
                json!({ "operation": operation })
            },
            now_ms: now,
            expires_ts: now + hs.config.auth.uia_session_lifetime_secs as i64 * 1000,
        })
        .await?;
    Ok(session_id)
}

fn challenge(
    flows: &[Vec<AuthType>],
    session: String,
    completed: Vec<String>,
    error: Option<(&'static str, String)>,
) -> Error {
    let mut info = UiaaInfo::new(flows.iter().map(|f| AuthFlow::new(f.clone())).collect());
    info.session = Some(session);
    info.completed = completed
        .iter()
        .map(|c| AuthType::from(c.as_str()))
        .collect();
    info.params = serde_json::value::to_raw_value(&json!({})).ok();
    Error::Uia {
        info: Box::new(info),
        error,
    }
}
