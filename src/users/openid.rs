//! OpenID tokens: a user asks for one (`POST /user/{userId}/openid/request_token`) and
//! hands it to a third party (a widget, Element Call), which asks this server over
//! federation (`/openid/userinfo`) whose it is. The token proves nothing else.

use ruma::{OwnedUserId, UserId};

use crate::{
    error::{Error, Result},
    secrets,
    server::{Homeserver, now_ms},
    users::Requester,
};

/// How long a token names its user, as in Synapse.
pub const LIFETIME_SECS: u64 = 3600;

/// A new token for the requester (only for themselves).
pub async fn request_token(
    hs: &Homeserver,
    requester: &Requester,
    user_id: &UserId,
) -> Result<String> {
    if requester.user_id != user_id {
        return Err(Error::Forbidden(
            "you may only request OpenID tokens for yourself".into(),
        ));
    }
    let token = secrets::random_id(32);
    let now = now_ms();
    hs.storage
        .insert_openid_token(
            &secrets::token_hash(&token),
            user_id.as_str(),
            now + (LIFETIME_SECS as i64) * 1000,
            now,
        )
        .await?;
    Ok(token)
}

/// The user a token names: 401 `M_UNKNOWN_TOKEN` when it is unknown or expired.
pub async fn userinfo(hs: &Homeserver, token: &str) -> Result<OwnedUserId> {
    let user = hs
        .storage
        .openid_token_user(&secrets::token_hash(token), now_ms())
        .await?;
    user.and_then(|u| OwnedUserId::try_from(u).ok())
        .ok_or(Error::UnknownToken { soft_logout: false })
}
