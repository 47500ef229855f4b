//! Reporting events, rooms and users to the server's admins.

use ruma::{EventId, RoomId, UserId};

use crate::{
    error::{Error, Result},
    server::{Homeserver, now_ms},
    storage::rooms::NewReport,
    users::Requester,
};

const MAX_REASON_CHARS: usize = 1000;

fn check_reason(reason: Option<&str>) -> Result<()> {
    if reason.is_some_and(|r| r.chars().count() > MAX_REASON_CHARS) {
        return Err(Error::InvalidParam(
            "reason is longer than 1000 characters".into(),
        ));
    }
    Ok(())
}

/// Events may be reported by those who can see them: members of the room.
pub async fn report_event(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    event_id: &EventId,
    reason: Option<&str>,
) -> Result<()> {
    check_reason(reason)?;
    let member = hs
        .storage
        .membership(room_id.as_str(), requester.user_id.as_str())
        .await?;
    let event = hs
        .storage
        .event(event_id.as_str())
        .await?
        .filter(|e| e.room_id == room_id.as_str());
    // Unknown and not visible are the same answer, so reports reveal nothing.
    if event.is_none() || member.as_deref() != Some("join") {
        return Err(Error::NotFound("event not found".into()));
    }
    insert(
        hs,
        requester,
        Some(room_id.as_str()),
        Some(event_id.as_str()),
        None,
        reason,
    )
    .await
}

pub async fn report_room(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    reason: &str,
) -> Result<()> {
    check_reason(Some(reason))?;
    if hs.storage.room(room_id.as_str()).await?.is_none() {
        return Err(Error::NotFound("room not found".into()));
    }
    insert(
        hs,
        requester,
        Some(room_id.as_str()),
        None,
        None,
        Some(reason),
    )
    .await
}

pub async fn report_user(
    hs: &Homeserver,
    requester: &Requester,
    user_id: &UserId,
    reason: &str,
) -> Result<()> {
    check_reason(Some(reason))?;
    if user_id.server_name() == hs.config.server_name()
        && hs.storage.user(user_id.as_str()).await?.is_none()
    {
        return Err(Error::NotFound("user not found".into()));
    }
    insert(
        hs,
        requester,
        None,
        None,
        Some(user_id.as_str()),
        Some(reason),
    )
    .await
}

async fn insert(
    hs: &Homeserver,
    requester: &Requester,
    room_id: Option<&str>,
    event_id: Option<&str>,
    user_id: Option<&str>,
    reason: Option<&str>,
) -> Result<()> {
    hs.storage
        .insert_report(&NewReport {
            reporter: requester.user_id.as_str(),
            room_id,
            event_id,
            user_id,
            reason,
            now_ms: now_ms(),
        })
        .await?;
    Ok(())
}
