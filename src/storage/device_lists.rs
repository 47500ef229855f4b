//! Device lists across servers: the updates other servers are sent about local users'
//! devices (queued as EDU skeletons in the change's transaction; the sender fills in the
//! device as it is when sent), and the cached device lists of other servers' users.

use serde_json::{Value as JsonValue, json};
use sqlx::{PgConnection, Row, types::Json};

use super::{Result, Storage, e2ee::mark_device_lists_changed, federation::queue_user_edu_in};

/// Queues an `m.device_list_update` for each of a local user's changed devices to every
/// server sharing a room with them: `stream_id` new, `prev_id` the one sent before. The
/// caller holds the device list stream lock (taken by `mark_device_lists_changed`), which
/// orders these per user.
pub(crate) async fn poke_devices(
    conn: &mut PgConnection,
    user_id: &str,
    device_ids: &[String],
) -> Result<()> {
    for device_id in device_ids {
        let prev: Option<i64> =
            sqlx::query_scalar("SELECT stream_id FROM device_list_outbound WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&mut *conn)
                .await?;
        let stream_id: i64 = sqlx::query_scalar(
            "INSERT INTO device_list_outbound (user_id, stream_id)
             VALUES ($1, nextval('device_list_stream'))
             ON CONFLICT (user_id) DO UPDATE SET stream_id = EXCLUDED.stream_id
             RETURNING stream_id",
        )
        .bind(user_id)
        .fetch_one(&mut *conn)
        .await?;
        let edu = json!({ "edu_type": "m.device_list_update", "content": {
            "user_id": user_id, "device_id": device_id, "stream_id": stream_id,
            "prev_id": prev.into_iter().collect::<Vec<_>>() } });
        queue_user_edu_in(conn, user_id, &edu).await?;
    }
    Ok(())
}

/// Queues an `m.signing_key_update` about a local user (their master or self-signing key
/// changed); the sender fills in the keys.
pub(crate) async fn poke_signing_keys(conn: &mut PgConnection, user_id: &str) -> Result<()> {
    let edu = json!({ "edu_type": "m.signing_key_update", "content": { "user_id": user_id } });
    queue_user_edu_in(conn, user_id, &edu).await?;
    Ok(())
}

/// After `user_id` stopped being joined to `room_id`: cached device lists this server
/// no longer hears updates for are dropped (a later query fetches them afresh): the
/// user's own, and those of the room's members who share no other room with a user of
/// the leaving user's server.
pub(crate) async fn forget_unshared_device_lists(
    conn: &mut PgConnection,
    room_id: &str,
    user_id: &str,
) -> Result<()> {
    sqlx::query(
        "DELETE FROM remote_device_lists c
         WHERE c.user_id = $2
            OR (c.user_id IN (SELECT user_id FROM memberships
                              WHERE room_id = $1 AND membership = 'join')
                AND NOT EXISTS (
                    SELECT 1 FROM memberships theirs JOIN memberships ours USING (room_id)
                    WHERE theirs.user_id = c.user_id AND theirs.membership = 'join'
                      AND ours.membership = 'join'
                      AND substr(ours.user_id, strpos(ours.user_id, ':') + 1)
                          = substr($2, strpos($2, ':') + 1)))",
    )
    .bind(room_id)
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A device of another server's user, as cached.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RemoteDevice {
    pub device_id: String,
    pub display_name: Option<String>,
    pub keys: Option<Json<JsonValue>>,
}

/// Another server's user's device list, as cached.
#[derive(Debug, Clone)]
pub struct RemoteDeviceList {
    pub stream_id: i64,
    pub master_key: Option<JsonValue>,
    pub self_signing_key: Option<JsonValue>,
    pub devices: Vec<RemoteDevice>,
}

impl Storage {
    /// The stream_id of the last device list update sent about a local user (0: none).
    pub async fn device_list_stream_id(&self, user_id: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT stream_id FROM device_list_outbound WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(self.pool())
                .await?
                .unwrap_or(0),
        )
    }

    /// The cached device list of another server's user, if any.
    pub async fn remote_device_list(&self, user_id: &str) -> Result<Option<RemoteDeviceList>> {
        let Some(head) = sqlx::query(
            "SELECT stream_id, master_key, self_signing_key FROM remote_device_lists
             WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?
        else {
            return Ok(None);
        };
        let devices = sqlx::query_as(
            "SELECT device_id, display_name, keys FROM remote_devices
             WHERE user_id = $1 ORDER BY device_id",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        Ok(Some(RemoteDeviceList {
            stream_id: head.get(0),
            master_key: head.get::<Option<Json<JsonValue>>, _>(1).map(|j| j.0),
            self_signing_key: head.get::<Option<Json<JsonValue>>, _>(2).map(|j| j.0),
            devices,
        }))
    }

    /// Replaces the cached device list of another server's user (a full resync) and
    /// tells local users sharing a room with them.
    pub async fn replace_remote_device_list(
        &self,
        user_id: &str,
        list: &RemoteDeviceList,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        // The head row first: it locks the user's list, so two resyncs at once (an
        // update's and a query's) take turns instead of colliding.
        sqlx::query(
            "INSERT INTO remote_device_lists
                 (user_id, stream_id, master_key, self_signing_key, synced_ts)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id) DO UPDATE SET
                 stream_id = EXCLUDED.stream_id, master_key = EXCLUDED.master_key,
                 self_signing_key = EXCLUDED.self_signing_key, synced_ts = EXCLUDED.synced_ts",
        )
        .bind(user_id)
        .bind(list.stream_id)
        .bind(list.master_key.as_ref().map(Json))
        .bind(list.self_signing_key.as_ref().map(Json))
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM remote_devices WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        for d in &list.devices {
            sqlx::query(
                "INSERT INTO remote_devices (user_id, device_id, display_name, keys)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(user_id)
            .bind(&d.device_id)
            .bind(&d.display_name)
            .bind(&d.keys)
            .execute(&mut *tx)
            .await?;
        }
        mark_device_lists_changed(&mut tx, &[user_id.to_owned()]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Applies one device update of another server's user when it follows on from the
    /// cached list (`prev_ids` all the cached stream_id): true when applied. False when
    /// there is no cache or a gap: the caller resyncs.
    pub async fn apply_remote_device_update(
        &self,
        user_id: &str,
        stream_id: i64,
        prev_ids: &[i64],
        device: &RemoteDevice,
        deleted: bool,
    ) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let cached: Option<i64> = sqlx::query_scalar(
            "SELECT stream_id FROM remote_device_lists WHERE user_id = $1 FOR UPDATE",
        )
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(cached) = cached else {
            return Ok(false);
        };
        if stream_id <= cached {
            // Seen already (a retried transaction).
            return Ok(true);
        }
        if prev_ids.is_empty() || prev_ids.iter().any(|p| *p != cached) {
            return Ok(false);
        }
        if deleted {
            sqlx::query("DELETE FROM remote_devices WHERE user_id = $1 AND device_id = $2")
                .bind(user_id)
                .bind(&device.device_id)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query(
                "INSERT INTO remote_devices (user_id, device_id, display_name, keys)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (user_id, device_id) DO UPDATE
                 SET display_name = EXCLUDED.display_name,
                     keys = coalesce(EXCLUDED.keys, remote_devices.keys)",
            )
            .bind(user_id)
            .bind(&device.device_id)
            .bind(&device.display_name)
            .bind(&device.keys)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE remote_device_lists SET stream_id = $2 WHERE user_id = $1")
            .bind(user_id)
            .bind(stream_id)
            .execute(&mut *tx)
            .await?;
        mark_device_lists_changed(&mut tx, &[user_id.to_owned()]).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Another server's user's new cross-signing keys (either may be absent: unchanged).
    /// False when nothing is cached (the next query fetches them).
    pub async fn set_remote_signing_keys(
        &self,
        user_id: &str,
        master_key: Option<&JsonValue>,
        self_signing_key: Option<&JsonValue>,
    ) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let updated = sqlx::query(
            "UPDATE remote_device_lists
             SET master_key = coalesce($2, master_key),
                 self_signing_key = coalesce($3, self_signing_key)
             WHERE user_id = $1",
        )
        .bind(user_id)
        .bind(master_key.map(Json))
        .bind(self_signing_key.map(Json))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        mark_device_lists_changed(&mut tx, &[user_id.to_owned()]).await?;
        tx.commit().await?;
        Ok(updated > 0)
    }

    /// Forgets the cached device list of another server's user (a gap: resync) and tells
    /// local users sharing a room with them to query again.
    pub async fn drop_remote_device_list(&self, user_id: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM remote_device_lists WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        mark_device_lists_changed(&mut tx, &[user_id.to_owned()]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether a user (of another server) is joined to a room with a member of
    /// `local_server`.
    pub async fn shares_room_with_server(&self, user_id: &str, local_server: &str) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (
                 SELECT 1 FROM memberships theirs JOIN memberships mine USING (room_id)
                 WHERE theirs.user_id = $1 AND theirs.membership = 'join'
                   AND mine.membership = 'join'
                   AND substr(mine.user_id, strpos(mine.user_id, ':') + 1) = $2)",
        )
        .bind(user_id)
        .bind(local_server)
        .fetch_one(self.pool())
        .await?)
    }
}
