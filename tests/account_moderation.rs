//! Account moderation by server admins (`/admin/suspend`, `/admin/lock`): a suspended
//! account still reads, leaves and redacts its own messages but cannot send, join or
//! create rooms (403 `M_USER_SUSPENDED`); a locked account gets 401 `M_USER_LOCKED` with
//! `soft_logout` for everything but logging out. Only admins may ask or change, never
//! about another admin or themselves; unknown and remote users are told apart.

mod common;

use common::{TestServer, assert_error};
use serde_json::json;

const SUSPEND: &str = "/_matrix/client/v1/admin/suspend";
const LOCK: &str = "/_matrix/client/v1/admin/lock";

#[tokio::test]
async fn suspended_accounts_read_but_do_not_take_part() {
    let s = TestServer::start().await;
    let (admin, _) = s.register("boss", "pw").await;
    s.sql("UPDATE users SET is_admin = TRUE WHERE localpart = 'boss'")
        .await;
    let (mallory, _) = s.register("mallory", "pw").await;
    let room = s
        .create_room(&admin, json!({"preset": "public_chat"}))
        .await;
    s.join(&mallory, &room).await;
    let mine = s
        .send_message(
            &mallory,
            &room,
            "t1",
            json!({"msgtype": "m.text", "body": "spam"}),
        )
        .await;
    let theirs = s
        .send_message(
            &admin,
            &room,
            "t2",
            json!({"msgtype": "m.text", "body": "hello"}),
        )
        .await;

    // Admins see the capability; others do not.
    let (_, caps) = s.get("/_matrix/client/v3/capabilities", Some(&admin)).await;
    assert_eq!(
        caps["capabilities"]["m.account_moderation"],
        json!({"suspend": true, "lock": true})
    );
    let (_, caps) = s
        .get("/_matrix/client/v3/capabilities", Some(&mallory))
        .await;
    assert!(
        caps["capabilities"]["m.account_moderation"].is_null(),
        "{caps}"
    );

    let path = format!("{SUSPEND}/@mallory:localhost");
    let (status, body) = s.get(&path, Some(&admin)).await;
    assert_eq!((status.as_u16(), body), (200, json!({"suspended": false})));
    let (status, body) = s.put(&path, Some(&admin), json!({"suspended": true})).await;
    assert_eq!((status.as_u16(), body), (200, json!({"suspended": true})));
    assert_eq!(
        s.get(&path, Some(&admin)).await.1,
        json!({"suspended": true})
    );

    // Reads work; taking part does not.
    let (status, _) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b"),
            Some(&mallory),
        )
        .await;
    assert_eq!(status, 200);
    let r = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t3"),
            Some(&mallory),
            json!({"msgtype": "m.text", "body": "more spam"}),
        )
        .await;
    assert_error(&r, 403, "M_USER_SUSPENDED");
    let r = s
        .post("/_matrix/client/v3/createRoom", Some(&mallory), json!({}))
        .await;
    assert_error(&r, 403, "M_USER_SUSPENDED");
    let r = s
        .put(
            "/_matrix/client/v3/profile/@mallory:localhost/displayname",
            Some(&mallory),
            json!({"displayname": "Admin"}),
        )
        .await;
    assert_error(&r, 403, "M_USER_SUSPENDED");
    // Their own message can go; someone else's cannot, even with the power to.
    let (status, body) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/redact/{mine}/r1"),
            Some(&mallory),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let r = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/redact/{theirs}/r2"),
            Some(&mallory),
            json!({}),
        )
        .await;
    assert_error(&r, 403, "M_USER_SUSPENDED");
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/leave"),
            Some(&mallory),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);

    // Lifted: back to normal.
    s.put(&path, Some(&admin), json!({"suspended": false}))
        .await;
    let (status, _) = s
        .post("/_matrix/client/v3/createRoom", Some(&mallory), json!({}))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn locked_accounts_can_only_log_out_and_only_admins_moderate() {
    let s = TestServer::start().await;
    let (admin, _) = s.register("boss", "pw").await;
    s.sql("UPDATE users SET is_admin = TRUE WHERE localpart = 'boss'")
        .await;
    let (other_admin, _) = s.register("chief", "pw").await;
    s.sql("UPDATE users SET is_admin = TRUE WHERE localpart = 'chief'")
        .await;
    let (mallory, _) = s.register("mallory", "pw").await;
    let (bob, _) = s.register("bob", "pw").await;

    let path = format!("{LOCK}/@mallory:localhost");
    let (status, body) = s.put(&path, Some(&admin), json!({"locked": true})).await;
    assert_eq!((status.as_u16(), body), (200, json!({"locked": true})));
    assert_eq!(s.get(&path, Some(&admin)).await.1, json!({"locked": true}));
    let (status, body) = s.get("/_matrix/client/v3/sync", Some(&mallory)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["errcode"], "M_USER_LOCKED");
    assert_eq!(body["soft_logout"], true);
    let (status, _) = s
        .post("/_matrix/client/v3/logout", Some(&mallory), json!({}))
        .await;
    assert_eq!(status, 200);

    // Only admins ask (before any lookup), never about admins or themselves to change.
    for path in [
        format!("{LOCK}/@bob:localhost"),
        format!("{SUSPEND}/@nobody:localhost"),
    ] {
        assert_error(&s.get(&path, Some(&bob)).await, 403, "M_FORBIDDEN");
    }
    let r = s
        .put(
            &format!("{SUSPEND}/@chief:localhost"),
            Some(&admin),
            json!({"suspended": true}),
        )
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");
    let r = s
        .put(
            &format!("{LOCK}/@boss:localhost"),
            Some(&admin),
            json!({"locked": true}),
        )
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");
    assert_eq!(
        s.get("/_matrix/client/v3/account/whoami", Some(&other_admin))
            .await
            .0,
        200
    );
    assert_error(
        &s.get(&format!("{SUSPEND}/@nobody:localhost"), Some(&admin))
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get(
            &format!("{SUSPEND}/@someone:elsewhere.example"),
            Some(&admin),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
}
