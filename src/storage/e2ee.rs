//! End-to-end encryption keys: device keys, one-time and fallback keys, cross-signing keys
//! and their signatures, and the device list stream that tells others to fetch them again.

use serde_json::Value as JsonValue;
use sqlx::{PgConnection, Row, postgres::PgRow, types::Json};

use super::{
    Result, Storage,
    streams::{self, Stream},
};

/// A public key as uploaded: `(algorithm, key ID, signed JSON)`.
pub type UploadedKey = (String, String, JsonValue);

/// A key handed out by a claim.
#[derive(Debug, Clone)]
pub struct ClaimedKey {
    pub user_id: String,
    pub device_id: String,
    pub algorithm: String,
    pub key_id: String,
    pub key_json: JsonValue,
}

/// A signature of one key by another, stored apart from the key it signs.
#[derive(Debug, Clone)]
pub struct KeySignature {
    pub target_user: String,
    /// A device ID or a cross-signing public key.
    pub target_key: String,
    pub signer_user: String,
    pub signer_key_id: String,
    pub signature: String,
}

/// Gives these users a new device list position and wakes whoever shares a room with them.
pub(crate) async fn mark_device_lists_changed(
    conn: &mut PgConnection,
    users: &[String],
) -> Result<()> {
    if users.is_empty() {
        return Ok(());
    }
    streams::lock_stream(conn, Stream::DeviceLists).await?;
    sqlx::query(
        "INSERT INTO device_list_changes (user_id, stream_pos, shared_pos)
         SELECT u, p, p FROM (
             SELECT u, nextval('device_list_stream') AS p FROM unnest($1::text[]) AS u) n
         ON CONFLICT (user_id) DO UPDATE
         SET stream_pos = EXCLUDED.stream_pos, shared_pos = EXCLUDED.shared_pos",
    )
    .bind(users)
    .execute(&mut *conn)
    .await?;
    streams::wake_users_and_their_rooms(conn, users).await
}

/// A change of the user's keys that only they see (their user-signing key): their own
/// syncs list it, others' do not.
async fn mark_own_keys_changed(conn: &mut PgConnection, user: &str) -> Result<()> {
    streams::lock_stream(conn, Stream::DeviceLists).await?;
    sqlx::query(
        "INSERT INTO device_list_changes (user_id, stream_pos, shared_pos)
         VALUES ($1, nextval('device_list_stream'), 0)
         ON CONFLICT (user_id) DO UPDATE SET stream_pos = EXCLUDED.stream_pos",
    )
    .bind(user)
    .execute(&mut *conn)
    .await?;
    streams::notify(conn, &format!("u:{user}")).await
}

impl Storage {
    /// The identity keys of the listed devices of a user (all devices when empty).
    pub async fn device_keys(
        &self,
        user_id: &str,
        device_ids: &[String],
    ) -> Result<Vec<(String, JsonValue)>> {
        let rows = sqlx::query(
            "SELECT k.device_id, k.key_json FROM device_keys k
             WHERE k.user_id = $1 AND (cardinality($2::text[]) = 0 OR k.device_id = ANY($2))
             ORDER BY k.device_id",
        )
        .bind(user_id)
        .bind(device_ids)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get(0), r.get::<Json<JsonValue>, _>(1).0))
            .collect())
    }

    /// Everything `/keys/query` shows of these users, in three queries whatever their
    /// number: (user, device, display name, keys) and (user, usage, public key, JSON).
    #[allow(clippy::type_complexity)]
    pub async fn keys_of_users(
        &self,
        users: &[String],
    ) -> Result<(
        Vec<(String, String, Option<String>, JsonValue)>,
        Vec<(String, String, String, JsonValue)>,
    )> {
        let devices = sqlx::query(
            "SELECT k.user_id, k.device_id, d.display_name, k.key_json
             FROM device_keys k JOIN devices d USING (user_id, device_id)
             WHERE k.user_id = ANY($1) ORDER BY k.user_id, k.device_id",
        )
        .bind(users)
        .fetch_all(self.pool())
        .await?
        .into_iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get::<Json<JsonValue>, _>(3).0,
            )
        })
        .collect();
        let cross = sqlx::query(
            "SELECT user_id, usage, public_key, key_json FROM cross_signing_keys
             WHERE user_id = ANY($1)",
        )
        .bind(users)
        .fetch_all(self.pool())
        .await?
        .into_iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get::<Json<JsonValue>, _>(3).0,
            )
        })
        .collect();
        Ok((devices, cross))
    }

    /// Stores a device's identity keys; a change is a device list change.
    pub async fn set_device_keys(
        &self,
        user_id: &str,
        device_id: &str,
        keys: &JsonValue,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let changed = sqlx::query(
            "INSERT INTO device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3)
             ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = EXCLUDED.key_json
             WHERE device_keys.key_json <> EXCLUDED.key_json",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(Json(keys))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed > 0 {
            mark_device_lists_changed(&mut tx, &[user_id.to_owned()]).await?;
            super::device_lists::poke_devices(&mut tx, user_id, &[device_id.to_owned()]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The stored one-time keys among `full_ids` (`<algorithm>:<key ID>`), to compare with
    /// a new upload.
    pub async fn existing_one_time_keys(
        &self,
        user_id: &str,
        device_id: &str,
        full_ids: &[String],
    ) -> Result<Vec<(String, JsonValue)>> {
        let rows = sqlx::query(
            "SELECT algorithm || ':' || key_id, key_json FROM one_time_keys
             WHERE user_id = $1 AND device_id = $2 AND algorithm || ':' || key_id = ANY($3)",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(full_ids)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get(0), r.get::<Json<JsonValue>, _>(1).0))
            .collect())
    }

    pub async fn add_one_time_keys(
        &self,
        user_id: &str,
        device_id: &str,
        keys: &[UploadedKey],
    ) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let algorithms: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
        let ids: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
        let jsons: Vec<Json<&JsonValue>> = keys.iter().map(|k| Json(&k.2)).collect();
        sqlx::query(
            "INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, key_json)
             SELECT $1, $2, a, k, j FROM unnest($3::text[], $4::text[], $5::jsonb[]) AS t(a, k, j)
             ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(&algorithms)
        .bind(&ids)
        .bind(&jsons)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Replaces the device's fallback key of each algorithm; an identical re-upload keeps
    /// its used flag.
    pub async fn set_fallback_keys(
        &self,
        user_id: &str,
        device_id: &str,
        keys: &[UploadedKey],
    ) -> Result<()> {
        for (algorithm, key_id, json) in keys {
            sqlx::query(
                "INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, key_json)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (user_id, device_id, algorithm) DO UPDATE
                 SET key_id = EXCLUDED.key_id, key_json = EXCLUDED.key_json, used = FALSE
                 WHERE fallback_keys.key_id <> EXCLUDED.key_id
                    OR fallback_keys.key_json <> EXCLUDED.key_json",
            )
            .bind(user_id)
            .bind(device_id)
            .bind(algorithm)
            .bind(key_id)
            .bind(Json(json))
            .execute(self.pool())
            .await?;
        }
        Ok(())
    }

    /// Unclaimed one-time keys of a device, per algorithm.
    pub async fn one_time_key_counts(
        &self,
        user_id: &str,
        device_id: &str,
    ) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT algorithm, count(*) FROM one_time_keys
             WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm",
        )
        .bind(user_id)
        .bind(device_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Algorithms with a fallback key not yet handed out.
    pub async fn unused_fallback_key_types(
        &self,
        user_id: &str,
        device_id: &str,
    ) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT algorithm FROM fallback_keys
             WHERE user_id = $1 AND device_id = $2 AND NOT used ORDER BY algorithm",
        )
        .bind(user_id)
        .bind(device_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Claims a one-time key of `algorithm` for a device (deleted, so never given out
    /// twice, even to concurrent claims).
    pub async fn claim_one_time_key(
        &self,
        user_id: &str,
        device_id: &str,
        algorithm: &str,
    ) -> Result<Option<ClaimedKey>> {
        let row = sqlx::query(
            "DELETE FROM one_time_keys WHERE ctid = (
                 SELECT ctid FROM one_time_keys
                 WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
                 ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING key_id, key_json",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(algorithm)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| claimed_key(user_id, device_id, algorithm, r)))
    }

    /// Hands out a device's fallback key of `algorithm` (marked used; it stays until
    /// replaced).
    pub async fn claim_fallback_key(
        &self,
        user_id: &str,
        device_id: &str,
        algorithm: &str,
    ) -> Result<Option<ClaimedKey>> {
        let row = sqlx::query(
            "UPDATE fallback_keys SET used = TRUE
             WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
             RETURNING key_id, key_json",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(algorithm)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| claimed_key(user_id, device_id, algorithm, r)))
    }

    /// A user's cross-signing keys: `(usage, public key, JSON)`.
    pub async fn cross_signing_keys(
        &self,
        user_id: &str,
    ) -> Result<Vec<(String, String, JsonValue)>> {
        let rows = sqlx::query(
            "SELECT usage, public_key, key_json FROM cross_signing_keys WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get::<Json<JsonValue>, _>(2).0))
            .collect())
    }

    /// Stores cross-signing keys `(usage, public key, JSON)`: a device list change.
    pub async fn set_cross_signing_keys(
        &self,
        user_id: &str,
        keys: &[(&str, String, JsonValue)],
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        for (usage, public_key, json) in keys {
            sqlx::query(
                "INSERT INTO cross_signing_keys (user_id, usage, public_key, key_json)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (user_id, usage) DO UPDATE
                 SET public_key = EXCLUDED.public_key, key_json = EXCLUDED.key_json",
            )
            .bind(user_id)
            .bind(usage)
            .bind(public_key)
            .bind(Json(json))
            .execute(&mut *tx)
            .await?;
        }
        if keys.iter().all(|(usage, _, _)| *usage == "user_signing") {
            mark_own_keys_changed(&mut tx, user_id).await?;
        } else {
            mark_device_lists_changed(&mut tx, &[user_id.to_owned()]).await?;
            super::device_lists::poke_signing_keys(&mut tx, user_id).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores signatures; each signed user's device list changes.
    pub async fn add_key_signatures(&self, signatures: &[KeySignature]) -> Result<()> {
        if signatures.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await?;
        for s in signatures {
            sqlx::query(
                "INSERT INTO key_signatures
                     (target_user, target_key, signer_user, signer_key_id, signature)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (target_user, target_key, signer_user, signer_key_id)
                 DO UPDATE SET signature = EXCLUDED.signature",
            )
            .bind(&s.target_user)
            .bind(&s.target_key)
            .bind(&s.signer_user)
            .bind(&s.signer_key_id)
            .bind(&s.signature)
            .execute(&mut *tx)
            .await?;
        }
        let mut users: Vec<String> = signatures.iter().map(|s| s.target_user.clone()).collect();
        users.sort();
        users.dedup();
        mark_device_lists_changed(&mut tx, &users).await?;
        // Other servers hear of a user's signatures of their own keys: a device signed
        // by the self-signing key (that device's update), or the master key signed by a
        // device (a signing key update). Signatures of other users' keys stay here.
        for s in signatures.iter().filter(|s| s.target_user == s.signer_user) {
            let is_device: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM devices WHERE user_id = $1 AND device_id = $2)",
            )
            .bind(&s.target_user)
            .bind(&s.target_key)
            .fetch_one(&mut *tx)
            .await?;
            if is_device {
                super::device_lists::poke_devices(
                    &mut tx,
                    &s.target_user,
                    std::slice::from_ref(&s.target_key),
                )
                .await?;
            } else {
                super::device_lists::poke_signing_keys(&mut tx, &s.target_user).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Signatures stored for keys of these users.
    pub async fn key_signatures(&self, target_users: &[String]) -> Result<Vec<KeySignature>> {
        let rows = sqlx::query(
            "SELECT target_user, target_key, signer_user, signer_key_id, signature
             FROM key_signatures WHERE target_user = ANY($1)",
        )
        .bind(target_users)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| KeySignature {
                target_user: r.get(0),
                target_key: r.get(1),
                signer_user: r.get(2),
                signer_key_id: r.get(3),
                signature: r.get(4),
            })
            .collect())
    }

    /// Users whose device lists `user_id` must fetch again after (since_lists, since_events):
    /// those sharing a room whose devices changed (themselves included), and those who came
    /// to share a room.
    pub async fn device_lists_changed(
        &self,
        user_id: &str,
        since_lists: i64,
        since_events: i64,
    ) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM device_list_changes c
             WHERE (c.user_id = $1 AND c.stream_pos > $2) OR (c.shared_pos > $2 AND EXISTS (
                 SELECT 1 FROM memberships mine JOIN memberships theirs USING (room_id)
                 WHERE mine.user_id = $1 AND mine.membership = 'join'
                   AND theirs.user_id = c.user_id AND theirs.membership = 'join'))
             UNION
             -- Who joined one of my rooms (an index range per room) ...
             SELECT theirs.user_id FROM memberships mine
             JOIN memberships theirs ON theirs.room_id = mine.room_id AND theirs.stream_pos > $3
             WHERE mine.user_id = $1 AND mine.membership = 'join'
               AND theirs.membership = 'join' AND theirs.user_id <> $1
             UNION
             -- ... and everyone in the rooms I joined.
             SELECT theirs.user_id FROM memberships mine
             JOIN memberships theirs ON theirs.room_id = mine.room_id
             WHERE mine.user_id = $1 AND mine.membership = 'join' AND mine.stream_pos > $3
               AND theirs.membership = 'join' AND theirs.user_id <> $1",
        )
        .bind(user_id)
        .bind(since_lists)
        .bind(since_events)
        .fetch_all(self.pool())
        .await?)
    }

    /// Users who no longer share any room with `user_id` through a membership change
    /// after `since_events` (theirs or `user_id`'s own).
    pub async fn device_lists_left(&self, user_id: &str, since_events: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT theirs.user_id
             FROM memberships mine JOIN memberships theirs USING (room_id)
             WHERE mine.user_id = $1 AND theirs.user_id <> $1
               AND ((mine.stream_pos > $2 AND mine.membership IN ('leave', 'ban')
                     AND theirs.membership = 'join')
                 OR (theirs.stream_pos > $2 AND theirs.membership IN ('leave', 'ban')
                     AND mine.membership = 'join'))
               AND NOT EXISTS (
                 SELECT 1 FROM memberships a JOIN memberships b USING (room_id)
                 WHERE a.user_id = $1 AND a.membership = 'join'
                   AND b.user_id = theirs.user_id AND b.membership = 'join')",
        )
        .bind(user_id)
        .bind(since_events)
        .fetch_all(self.pool())
        .await?)
    }
}

fn claimed_key(user_id: &str, device_id: &str, algorithm: &str, r: PgRow) -> ClaimedKey {
    ClaimedKey {
        user_id: user_id.to_owned(),
        device_id: device_id.to_owned(),
        algorithm: algorithm.to_owned(),
        key_id: r.get(0),
        key_json: r.get::<Json<JsonValue>, _>(1).0,
    }
}
