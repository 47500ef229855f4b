//! The user directory: who a user can find by name. Read straight from room
//! memberships and member events (so it is always current): users in public rooms (join
//! rule `public` or history `world_readable`), users sharing a room with the searcher,
//! and with `search_all_users` every local account.

use super::{Result, Storage};

/// One user found.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DirectoryUser {
    pub user_id: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

impl Storage {
    /// Users whose display name or user ID has a word starting with each of `patterns`
    /// (POSIX regexes, each already escaped and lower-case), at most `limit`, those
    /// whose display name starts with the first pattern first.
    pub async fn search_user_directory(
        &self,
        searcher: &str,
        patterns: &[String],
        all_local_users: bool,
        limit: i64,
    ) -> Result<Vec<DirectoryUser>> {
        Ok(sqlx::query_as(
            "WITH public_rooms AS (
                 SELECT cs.room_id FROM current_state cs
                 JOIN events e ON e.event_nid = cs.event_nid
                 WHERE cs.state_key = ''
                   AND ((cs.event_type = 'm.room.join_rules'
                         AND e.pdu->'content'->>'join_rule' = 'public')
                     OR (cs.event_type = 'm.room.history_visibility'
                         AND e.pdu->'content'->>'history_visibility' = 'world_readable'))),
             candidates AS (
                 SELECT m.user_id, m.event_nid FROM memberships m
                 WHERE m.membership = 'join' AND m.room_id IN (SELECT room_id FROM public_rooms)
                 UNION ALL
                 SELECT theirs.user_id, theirs.event_nid
                 FROM memberships mine JOIN memberships theirs USING (room_id)
                 WHERE mine.user_id = $1 AND mine.membership = 'join'
                   AND theirs.membership = 'join' AND theirs.user_id <> $1
                 UNION ALL
                 SELECT u.user_id, NULL FROM users u WHERE $3 AND NOT u.deactivated),
             named AS (
                 SELECT DISTINCT ON (c.user_id) c.user_id,
                        coalesce(e.pdu->'content'->>'displayname',
                                 p.value #>> '{}') AS display_name,
                        coalesce(e.pdu->'content'->>'avatar_url', a.value #>> '{}') AS avatar_url
                 FROM candidates c
                 LEFT JOIN events e ON e.event_nid = c.event_nid
                 LEFT JOIN profile_fields p ON p.user_id = c.user_id AND p.field = 'displayname'
                 LEFT JOIN profile_fields a ON a.user_id = c.user_id AND a.field = 'avatar_url'
                 ORDER BY c.user_id, (e.pdu->'content'->>'displayname') IS NULL)
             SELECT user_id, display_name, avatar_url FROM named n
             WHERE NOT EXISTS (
                 SELECT 1 FROM unnest($2::text[]) w
                 WHERE lower(coalesce(n.display_name, '') || ' ' || n.user_id)
                       !~ ('(^|[^[:alnum:]])' || w))
             ORDER BY lower(coalesce(n.display_name, '')) ~ ('^' || $2[1]) DESC, n.user_id
             LIMIT $4",
        )
        .bind(searcher)
        .bind(patterns)
        .bind(all_local_users)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }
}
