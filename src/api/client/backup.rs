//! Server-side key backup: `/room_keys/version` and `/room_keys/keys`.

use std::{collections::BTreeMap, sync::Arc};

use axum::Router;
use ruma::{
    OwnedRoomId, UInt,
    api::client::backup::{
        RoomKeyBackup, add_backup_keys, add_backup_keys_for_room, add_backup_keys_for_session,
        create_backup_version, delete_backup_keys, delete_backup_keys_for_room,
        delete_backup_keys_for_session, delete_backup_version, get_backup_info, get_backup_keys,
        get_backup_keys_for_room, get_backup_keys_for_session, get_latest_backup_info,
        update_backup_version,
    },
};

use super::keys::{json_of, raw_of};
use crate::{
    e2ee::backup::{self as domain, KeyToBackUp},
    error::{Error, Result},
    http::{Ruma, route},
    server::Homeserver,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route(router, create_version);
    let router = route(router, latest_version);
    let router = route(router, get_version);
    let router = route(router, update_version);
    let router = route(router, delete_version);
    let router = route(router, put_all);
    let router = route(router, put_room);
    let router = route(router, put_session);
    let router = route(router, get_all);
    let router = route(router, get_room);
    let router = route(router, get_session);
    let router = route(router, delete_all);
    let router = route(router, delete_room);
    route(router, delete_session)
}

fn uint(n: i64) -> UInt {
    UInt::try_from(n.max(0)).unwrap_or_default()
}

async fn create_version(
    hs: Arc<Homeserver>,
    req: Ruma<create_backup_version::v3::Request>,
) -> Result<create_backup_version::v3::Response> {
    let algorithm = json_of(&req.body.algorithm)?;
    let version = domain::create_version(&hs, req.requester()?, &algorithm).await?;
    Ok(create_backup_version::v3::Response::new(version))
}

async fn latest_version(
    hs: Arc<Homeserver>,
    req: Ruma<get_latest_backup_info::v3::Request>,
) -> Result<get_latest_backup_info::v3::Response> {
    let i = domain::get_version(&hs, req.requester()?, None).await?;
    Ok(get_latest_backup_info::v3::Response::new(
        raw_of(&i.algorithm)?,
        uint(i.count),
        i.etag,
        i.version,
    ))
}

async fn get_version(
    hs: Arc<Homeserver>,
    req: Ruma<get_backup_info::v3::Request>,
) -> Result<get_backup_info::v3::Response> {
    let i = domain::get_version(&hs, req.requester()?, Some(&req.body.version)).await?;
    Ok(get_backup_info::v3::Response::new(
        raw_of(&i.algorithm)?,
        uint(i.count),
        i.etag,
        i.version,
    ))
}

async fn update_version(
    hs: Arc<Homeserver>,
    req: Ruma<update_backup_version::v3::Request>,
) -> Result<update_backup_version::v3::Response> {
    let algorithm = json_of(&req.body.algorithm)?;
    domain::update_version(&hs, req.requester()?, &req.body.version, &algorithm).await?;
    Ok(update_backup_version::v3::Response::new())
}

async fn delete_version(
    hs: Arc<Homeserver>,
    req: Ruma<delete_backup_version::v3::Request>,
) -> Result<delete_backup_version::v3::Response> {
    domain::delete_version(&hs, req.requester()?, &req.body.version).await?;
    Ok(delete_backup_version::v3::Response::new())
}

fn keys_of_room(
    room_id: &OwnedRoomId,
    sessions: &BTreeMap<String, ruma::serde::Raw<ruma::api::client::backup::KeyBackupData>>,
) -> Result<Vec<KeyToBackUp>> {
    sessions
        .iter()
        .map(|(session, data)| {
            Ok(KeyToBackUp {
                room_id: room_id.to_string(),
                session_id: session.clone(),
                data: json_of(data)?,
            })
        })
        .collect()
}

async fn put_all(
    hs: Arc<Homeserver>,
    req: Ruma<add_backup_keys::v3::Request>,
) -> Result<add_backup_keys::v3::Response> {
    let b = &req.body;
    let mut keys = Vec::new();
    for (room_id, backup) in &b.rooms {
        keys.extend(keys_of_room(room_id, &backup.sessions)?);
    }
    let (count, etag) = domain::put_keys(&hs, req.requester()?, &b.version, &keys).await?;
    Ok(add_backup_keys::v3::Response::new(etag, uint(count)))
}

async fn put_room(
    hs: Arc<Homeserver>,
    req: Ruma<add_backup_keys_for_room::v3::Request>,
) -> Result<add_backup_keys_for_room::v3::Response> {
    let b = &req.body;
    let keys = keys_of_room(&b.room_id, &b.sessions)?;
    let (count, etag) = domain::put_keys(&hs, req.requester()?, &b.version, &keys).await?;
    Ok(add_backup_keys_for_room::v3::Response::new(
        etag,
        uint(count),
    ))
}

async fn put_session(
    hs: Arc<Homeserver>,
    req: Ruma<add_backup_keys_for_session::v3::Request>,
) -> Result<add_backup_keys_for_session::v3::Response> {
    let b = &req.body;
    let keys = [KeyToBackUp {
        room_id: b.room_id.to_string(),
        session_id: b.session_id.clone(),
        data: json_of(&b.session_data)?,
    }];
    let (count, etag) = domain::put_keys(&hs, req.requester()?, &b.version, &keys).await?;
    Ok(add_backup_keys_for_session::v3::Response::new(
        etag,
        uint(count),
    ))
}

type Sessions = BTreeMap<String, ruma::serde::Raw<ruma::api::client::backup::KeyBackupData>>;

fn by_room(
    keys: Vec<(String, String, serde_json::Value)>,
) -> Result<BTreeMap<OwnedRoomId, Sessions>> {
    let mut rooms: BTreeMap<OwnedRoomId, Sessions> = BTreeMap::new();
    for (room, session, data) in keys {
        let room = OwnedRoomId::try_from(room)
            .map_err(|e| Error::Internal(format!("stored room ID: {e}")))?;
        rooms
            .entry(room)
            .or_default()
            .insert(session, raw_of(&data)?);
    }
    Ok(rooms)
}

async fn get_all(
    hs: Arc<Homeserver>,
    req: Ruma<get_backup_keys::v3::Request>,
) -> Result<get_backup_keys::v3::Response> {
    let keys = domain::get_keys(&hs, req.requester()?, &req.body.version, None, None).await?;
    let rooms = by_room(keys)?
        .into_iter()
        .map(|(room, sessions)| (room, RoomKeyBackup::new(sessions)))
        .collect();
    Ok(get_backup_keys::v3::Response::new(rooms))
}

async fn get_room(
    hs: Arc<Homeserver>,
    req: Ruma<get_backup_keys_for_room::v3::Request>,
) -> Result<get_backup_keys_for_room::v3::Response> {
    let b = &req.body;
    let keys = domain::get_keys(
        &hs,
        req.requester()?,
        &b.version,
        Some(b.room_id.as_str()),
        None,
    )
    .await?;
    let sessions = by_room(keys)?.remove(&b.room_id).unwrap_or_default();
    Ok(get_backup_keys_for_room::v3::Response::new(sessions))
}

async fn get_session(
    hs: Arc<Homeserver>,
    req: Ruma<get_backup_keys_for_session::v3::Request>,
) -> Result<get_backup_keys_for_session::v3::Response> {
    let b = &req.body;
    let keys = domain::get_keys(
        &hs,
        req.requester()?,
        &b.version,
        Some(b.room_id.as_str()),
        Some(&b.session_id),
    )
    .await?;
    let (_, _, data) = keys
        .into_iter()
        .next()
        .ok_or_else(|| Error::NotFound("no key for this session".into()))?;
    Ok(get_backup_keys_for_session::v3::Response::new(raw_of(
        &data,
    )?))
}

async fn delete_all(
    hs: Arc<Homeserver>,
    req: Ruma<delete_backup_keys::v3::Request>,
) -> Result<delete_backup_keys::v3::Response> {
    let (count, etag) =
        domain::delete_keys(&hs, req.requester()?, &req.body.version, None, None).await?;
    Ok(delete_backup_keys::v3::Response::new(etag, uint(count)))
}

async fn delete_room(
    hs: Arc<Homeserver>,
    req: Ruma<delete_backup_keys_for_room::v3::Request>,
) -> Result<delete_backup_keys_for_room::v3::Response> {
    let b = &req.body;
    let (count, etag) = domain::delete_keys(
        &hs,
        req.requester()?,
        &b.version,
        Some(b.room_id.as_str()),
        None,
    )
    .await?;
    Ok(delete_backup_keys_for_room::v3::Response::new(
        etag,
        uint(count),
    ))
}

async fn delete_session(
    hs: Arc<Homeserver>,
    req: Ruma<delete_backup_keys_for_session::v3::Request>,
) -> Result<delete_backup_keys_for_session::v3::Response> {
    let b = &req.body;
    let (count, etag) = domain::delete_keys(
        &hs,
        req.requester()?,
        &b.version,
        Some(b.room_id.as_str()),
        Some(&b.session_id),
    )
    .await?;
    Ok(delete_backup_keys_for_session::v3::Response::new(
        etag,
        uint(count),
    ))
}
