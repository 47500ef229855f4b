//! Push rules over HTTP: the server-default ruleset, every `/pushrules` endpoint with its
//! errors, ordering with before/after, concurrent edits, and the rules in /sync and
//! account data.

mod common;

use common::{TestServer, assert_error};
use serde_json::{Value, json};

const R: &str = "/_matrix/client/v3/pushrules/global";

fn rule_ids(global: &Value, kind: &str) -> Vec<String> {
    global[kind]
        .as_array()
        .unwrap_or_else(|| panic!("no {kind} rules in {global}"))
        .iter()
        .map(|r| r["rule_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn push_rules_endpoints_and_errors() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let t = Some(alice.as_str());

    // The server defaults.
    let (status, res) = s.get("/_matrix/client/v3/pushrules/", t).await;
    assert_eq!(status, 200, "{res}");
    let global = &res["global"];
    let overrides = rule_ids(global, "override");
    assert_eq!(overrides[0], ".m.rule.master", "{overrides:?}");
    assert!(
        overrides.contains(&".m.rule.is_user_mention".to_owned()),
        "{overrides:?}"
    );
    assert!(rule_ids(global, "underride").contains(&".m.rule.message".to_owned()));
    let (_, scope) = s.get(&format!("{R}/"), t).await;
    assert_eq!(&scope, global);
    let (status, master) = s.get(&format!("{R}/override/.m.rule.master"), t).await;
    assert_eq!(status, 200, "{master}");
    assert_eq!(master["enabled"], false);
    assert_eq!(master["default"], true);

    // A room rule: created, read, disabled, its actions changed.
    let room_rule = format!("{R}/room/!quiet:localhost");
    let (status, res) = s.put(&room_rule, t, json!({ "actions": [] })).await;
    assert_eq!(status, 200, "{res}");
    let (_, rule) = s.get(&room_rule, t).await;
    assert_eq!(
        (rule["rule_id"].as_str(), rule["default"].as_bool()),
        (Some("!quiet:localhost"), Some(false)),
        "{rule}"
    );
    let (_, en) = s.get(&format!("{room_rule}/enabled"), t).await;
    assert_eq!(en["enabled"], true);
    let (status, _) = s
        .put(
            &format!("{room_rule}/enabled"),
            t,
            json!({ "enabled": false }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, en) = s.get(&format!("{room_rule}/enabled"), t).await;
    assert_eq!(en["enabled"], false);
    let (status, _) = s
        .put(
            &format!("{room_rule}/actions"),
            t,
            json!({ "actions": ["notify", {"set_tweak": "sound", "value": "default"}] }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, actions) = s.get(&format!("{room_rule}/actions"), t).await;
    assert_eq!(actions["actions"][0], "notify", "{actions}");
    assert_eq!(actions["actions"][1]["set_tweak"], "sound", "{actions}");
    // Default rules can be switched and changed, not deleted.
    let (status, _) = s
        .put(
            &format!("{R}/override/.m.rule.master/enabled"),
            t,
            json!({ "enabled": true }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, master) = s.get(&format!("{R}/override/.m.rule.master"), t).await;
    assert_eq!(master["enabled"], true, "{master}");
    assert_error(
        &s.delete(&format!("{R}/override/.m.rule.master"), t, None)
            .await,
        400,
        "M_INVALID_PARAM",
    );

    // Ordering: b before a, c after a.
    let cond = json!({ "conditions": [{"kind": "event_match", "key": "content.body", "pattern": "x"}], "actions": ["notify"] });
    for (id, query) in [("a", ""), ("b", "?before=a"), ("c", "?after=a")] {
        let (status, res) = s
            .put(&format!("{R}/override/{id}{query}"), t, cond.clone())
            .await;
        assert_eq!(status, 200, "{id}: {res}");
    }
    let (_, res) = s.get(&format!("{R}/"), t).await;
    let user_rules: Vec<String> = rule_ids(&res, "override")
        .into_iter()
        .filter(|r| !r.starts_with('.'))
        .collect();
    assert_eq!(user_rules, ["b", "a", "c"]);
    // User override rules come before the server's (after the master rule).
    let all = rule_ids(&res, "override");
    let pos = |id: &str| all.iter().position(|r| r == id).unwrap();
    assert!(pos("c") < pos(".m.rule.suppress_notices"), "{all:?}");

    // Errors.
    assert_error(
        &s.put(&format!("{R}/override/.mine"), t, cond.clone()).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.put(
            &format!("{R}/override/d?before=.m.rule.master"),
            t,
            cond.clone(),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.put(&format!("{R}/override/d?after=nope"), t, cond.clone())
            .await,
        404,
        "M_NOT_FOUND",
    );
    let res = s
        .put(
            &format!("{R}/override/d"),
            t,
            json!({ "conditions": [], "actions": ["dance"] }),
        )
        .await;
    assert_error(&res, 400, "M_INVALID_PARAM");
    // The legacy actions are accepted.
    let (status, _) = s
        .put(
            &format!("{R}/room/!old:localhost"),
            t,
            json!({ "actions": ["dont_notify"] }),
        )
        .await;
    assert_eq!(status, 200);
    assert_error(
        &s.get(&format!("{R}/override/nope"), t).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.delete(&format!("{R}/override/nope"), t, None).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.put(
            &format!("{R}/override/nope/enabled"),
            t,
            json!({"enabled": true}),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.put(
            &format!("{R}/override/nope/actions"),
            t,
            json!({"actions": []}),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert_eq!(s.put(&format!("{R}/bogus/x"), t, cond.clone()).await.0, 400);
    assert_error(&s.get(&format!("{R}/"), None).await, 401, "M_MISSING_TOKEN");
    // Deleting a user rule.
    let (status, _) = s.delete(&format!("{R}/override/a"), t, None).await;
    assert_eq!(status, 200);
    assert_error(
        &s.get(&format!("{R}/override/a"), t).await,
        404,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn rules_reach_sync_and_concurrent_edits_all_land() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let t = Some(alice.as_str());
    // Never changed: still there, in account data and in the initial sync.
    let (status, res) = s
        .get(
            "/_matrix/client/v3/user/@alice:localhost/account_data/m.push_rules",
            t,
        )
        .await;
    assert_eq!(status, 200, "{res}");
    assert!(res["global"]["underride"].is_array(), "{res}");
    let (_, first) = s
        .get("/_matrix/client/v3/sync?timeout=0&set_presence=offline", t)
        .await;
    let pushed = |res: &Value| -> Option<Value> {
        res["account_data"]["events"]
            .as_array()?
            .iter()
            .find(|e| e["type"] == "m.push_rules")
            .map(|e| e["content"].clone())
    };
    assert!(
        pushed(&first).expect("m.push_rules in the initial sync")["global"]["override"].is_array()
    );
    let since = first["next_batch"].as_str().unwrap();
    // Clients cannot write it as account data.
    let res = s
        .put(
            "/_matrix/client/v3/user/@alice:localhost/account_data/m.push_rules",
            t,
            json!({}),
        )
        .await;
    assert_eq!(res.0, 405, "{}", res.1);

    // Ten edits at once: none lost.
    let edits = (0..10).map(|i| {
        let (base, http, token) = (s.base.clone(), s.http.clone(), alice.clone());
        tokio::spawn(async move {
            http.put(format!("{base}{R}/room/!r{i}:localhost"))
                .bearer_auth(token)
                .json(&json!({ "actions": [] }))
                .send()
                .await
                .unwrap()
                .status()
        })
    });
    for e in edits {
        assert_eq!(e.await.unwrap(), 200);
    }
    let (_, res) = s.get(&format!("{R}/"), t).await;
    let rooms = rule_ids(&res, "room");
    for i in 0..10 {
        assert!(rooms.contains(&format!("!r{i}:localhost")), "{rooms:?}");
    }
    // The change comes down the next sync.
    let (_, next) = s
        .get(
            &format!("/_matrix/client/v3/sync?since={since}&timeout=0&set_presence=offline"),
            t,
        )
        .await;
    let rules = pushed(&next).expect("m.push_rules after a change");
    assert_eq!(
        rules["global"]["room"].as_array().unwrap().len(),
        10,
        "{rules}"
    );
}

/// The newest event of the room.
async fn latest(s: &TestServer, token: &str, room: &str) -> String {
    let (_, res) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1"),
            Some(token),
        )
        .await;
    res["chunk"][0]["event_id"].as_str().unwrap().to_owned()
}

/// (notifications, highlights) of a room in bob's sync, and the whole response.
async fn counts(
    s: &TestServer,
    token: &str,
    room: &str,
    since: &str,
    filter: &str,
) -> ((i64, i64), Value) {
    let (status, res) = s
        .get(
            &format!(
                "/_matrix/client/v3/sync?since={since}&timeout=0&set_presence=offline{filter}"
            ),
            Some(token),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let c = &res["rooms"]["join"][room]["unread_notifications"];
    (
        (
            c["notification_count"].as_i64().unwrap_or(-1),
            c["highlight_count"].as_i64().unwrap_or(-1),
        ),
        res,
    )
}

#[tokio::test]
async fn unread_counts_follow_messages_mentions_receipts_and_threads() {
    let s = TestServer::start().await;
    let (alice, bob, room) = s.alice_and_bob_in_a_room().await;
    let (_, first) = s
        .get(
            "/_matrix/client/v3/sync?timeout=0&set_presence=offline",
            Some(&bob),
        )
        .await;
    let since = first["next_batch"].as_str().unwrap().to_owned();

    s.send_message(
        &alice,
        &room,
        "m1",
        json!({"msgtype": "m.text", "body": "hello"}),
    )
    .await;
    let (c, _) = counts(&s, &bob, &room, &since, "").await;
    assert_eq!(c, (1, 0), "a message notifies");
    s.send_message(&alice,
        &room,
        "m2",
        json!({"msgtype": "m.text", "body": "bob: look", "m.mentions": {"user_ids": ["@bob:localhost"]}}),
    )
    .await;
    let (c, _) = counts(&s, &bob, &room, &since, "").await;
    assert_eq!(c, (2, 1), "a mention is a highlight");
    // The sender's own messages never count for her.
    let (c, _) = counts(&s, &alice, &room, &since, "").await;
    assert_eq!(c, (0, 0));

    // @room: a highlight when the sender may notify the room (alice, the creator), not
    // from bob (power 0 < the default 50).
    s.send_message(
        &alice,
        &room,
        "r1",
        json!({"msgtype": "m.text", "body": "all: hi", "m.mentions": {"room": true}}),
    )
    .await;
    let (c, _) = counts(&s, &bob, &room, &since, "").await;
    assert_eq!(c, (3, 2), "@room from the room's creator highlights");
    let before = counts(&s, &alice, &room, &since, "").await.0;
    s.send_message(
        &bob,
        &room,
        "r2",
        json!({"msgtype": "m.text", "body": "all: hi", "m.mentions": {"room": true}}),
    )
    .await;
    let (c, _) = counts(&s, &alice, &room, &since, "").await;
    assert_eq!(
        c,
        (before.0 + 1, before.1),
        "@room without the power only notifies"
    );
    let (status, _) = s
        .post(
            &format!(
                "/_matrix/client/v3/rooms/{room}/receipt/m.read/{}",
                latest(&s, &alice, &room).await
            ),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let mention = latest(&s, &bob, &room).await;

    // A read receipt clears them.
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{mention}"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (c, res) = counts(&s, &bob, &room, &since, "").await;
    assert_eq!(c, (0, 0), "{res}");
    let since = res["next_batch"].as_str().unwrap().to_owned();

    // Threads: a root in the main timeline, a reply in the thread; counted apart when the
    // filter asks for it, and a threaded receipt clears only its thread.
    let root = s
        .send_message(
            &alice,
            &room,
            "t1",
            json!({"msgtype": "m.text", "body": "root"}),
        )
        .await;
    s.send_message(&alice,
        &room,
        "t2",
        json!({"msgtype": "m.text", "body": "in thread", "m.relates_to": {"rel_type": "m.thread", "event_id": root}}),
    )
    .await;
    let threaded = "&filter=%7B%22room%22%3A%7B%22timeline%22%3A%7B%22unread_thread_notifications%22%3Atrue%7D%7D%7D";
    let (c, res) = counts(&s, &bob, &room, &since, threaded).await;
    assert_eq!(c, (1, 0), "main timeline: the root. {res}");
    assert_eq!(
        res["rooms"]["join"][&room]["unread_thread_notifications"][&root]["notification_count"], 1,
        "{res}"
    );
    let (c, _) = counts(&s, &bob, &room, &since, "").await;
    assert_eq!(c, (2, 0), "without the filter, one count for the room");
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{root}"),
            Some(&bob),
            json!({"thread_id": "main"}),
        )
        .await;
    assert_eq!(status, 200);
    let (c, res) = counts(&s, &bob, &room, &since, threaded).await;
    assert_eq!(c, (0, 0), "main read. {res}");
    assert_eq!(
        res["rooms"]["join"][&room]["unread_thread_notifications"][&root]["notification_count"], 1,
        "the thread is not. {res}"
    );

    // A muted room (an override rule without actions) counts nothing new.
    let (status, _) = s
        .put(
            &format!("{R}/override/mute-{room}"),
            Some(&bob),
            json!({"conditions": [{"kind": "event_match", "key": "room_id", "pattern": room}], "actions": []}),
        )
        .await;
    assert_eq!(status, 200);
    s.send_message(
        &alice,
        &room,
        "m3",
        json!({"msgtype": "m.text", "body": "shh"}),
    )
    .await;
    let (c, _) = counts(&s, &bob, &room, &since, threaded).await;
    assert_eq!(c, (0, 0), "muted");
}

#[tokio::test]
async fn notifications_list_pages_and_read_flags() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let (carol, _) = s.register("carol", "password-carol").await;
    let (_, res) = s
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({"preset": "public_chat", "invite": ["@carol:localhost"]}),
        )
        .await;
    let room = res["room_id"].as_str().unwrap().to_owned();
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/join/{room}"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    s.send_message(
        &alice,
        &room,
        "n1",
        json!({"msgtype": "m.text", "body": "one"}),
    )
    .await;
    s.send_message(
        &alice,
        &room,
        "n2",
        json!({"msgtype": "m.text", "body": "two", "m.mentions": {"user_ids": ["@bob:localhost"]}}),
    )
    .await;
    let third = s
        .send_message(
            &alice,
            &room,
            "n3",
            json!({"msgtype": "m.text", "body": "three"}),
        )
        .await;

    let n = "/_matrix/client/v3/notifications";
    let (status, res) = s.get(n, Some(&bob)).await;
    assert_eq!(status, 200, "{res}");
    // Each names its profile tag, null here (Synapse's shape; sytest reads the key).
    assert_eq!(res["notifications"][0]["profile_tag"], Value::Null, "{res}");
    assert!(
        res["notifications"][0]
            .as_object()
            .unwrap()
            .contains_key("profile_tag"),
        "{res}"
    );
    let bodies: Vec<&str> = res["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["event"]["content"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["three", "two", "one"], "newest first");
    let first = &res["notifications"][0];
    assert_eq!(
        (first["read"].as_bool(), first["room_id"].as_str()),
        (Some(false), Some(room.as_str())),
        "{first}"
    );
    assert!(
        first["actions"]
            .as_array()
            .unwrap()
            .contains(&json!("notify")),
        "{first}"
    );
    let (_, hl) = s.get(&format!("{n}?only=highlight"), Some(&bob)).await;
    let hl: Vec<&str> = hl["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["event"]["content"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(hl, ["two"]);
    // Paging.
    let (_, page) = s.get(&format!("{n}?limit=2"), Some(&bob)).await;
    assert_eq!(page["notifications"].as_array().unwrap().len(), 2);
    let next = page["next_token"].as_str().expect("more to come");
    let (_, rest) = s.get(&format!("{n}?limit=2&from={next}"), Some(&bob)).await;
    let rest: Vec<&str> = rest["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["event"]["content"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(rest, ["one"]);
    // Read after a receipt.
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{third}"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, res) = s.get(n, Some(&bob)).await;
    assert!(
        res["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["read"] == true),
        "{res}"
    );
    // Carol's invite notified her.
    let (_, res) = s.get(n, Some(&carol)).await;
    let invite = &res["notifications"][0]["event"];
    assert_eq!(
        (
            invite["type"].as_str(),
            invite["content"]["membership"].as_str()
        ),
        (Some("m.room.member"), Some("invite")),
        "{res}"
    );
    // Errors.
    assert_error(
        &s.get(&format!("{n}?from=abc"), Some(&bob)).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(&s.get(n, None).await, 401, "M_MISSING_TOKEN");
}

/// Each send evaluates push rules inside its write transaction. Those reads must use the
/// transaction: with more concurrent writes (in different rooms) than pool connections,
/// writes that each held a connection and waited for a second one starved the pool and
/// failed after the acquire timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_in_many_rooms_do_not_starve_the_pool() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let mut rooms = Vec::new();
    for _ in 0..12 {
        let (status, res) = s
            .post(
                "/_matrix/client/v3/createRoom",
                Some(&alice),
                json!({"invite": ["@bob:localhost"]}),
            )
            .await;
        assert_eq!(status, 200, "{res}");
        let room = res["room_id"].as_str().unwrap().to_owned();
        let (status, _) = s
            .post(
                &format!("/_matrix/client/v3/join/{room}"),
                Some(&bob),
                json!({}),
            )
            .await;
        assert_eq!(status, 200);
        rooms.push(room);
    }
    // The test server's pool has 4 connections; 12 rooms write at once, 5 times each.
    let sends: Vec<_> = rooms
        .iter()
        .enumerate()
        .map(|(i, room)| {
            let (base, token, room) = (s.base.clone(), alice.clone(), room.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut statuses = Vec::new();
                for n in 0..5 {
                    let res = http
                        .put(format!(
                            "{base}/_matrix/client/v3/rooms/{room}/send/m.room.message/r{i}n{n}"
                        ))
                        .bearer_auth(&token)
                        .json(&json!({"msgtype": "m.text", "body": "hi bob"}))
                        .send()
                        .await
                        .unwrap();
                    statuses.push(res.status().as_u16());
                }
                statuses
            })
        })
        .collect();
    for task in sends {
        assert_eq!(task.await.unwrap(), vec![200; 5]);
    }
    // Every message notified bob (besides his 12 invites).
    let (status, res) = s
        .get("/_matrix/client/v3/notifications?limit=100", Some(&bob))
        .await;
    assert_eq!(status, 200);
    let messages = res["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["event"]["type"] == "m.room.message")
        .count();
    assert_eq!(messages, 60);
}

#[tokio::test]
async fn pruning_drops_old_read_push_actions_and_keeps_unread_ones() {
    let s = TestServer::start().await;
    let (alice, bob, room) = s.alice_and_bob_in_a_room().await;
    let mut ids = Vec::new();
    for (txn, body) in [("p1", "one"), ("p2", "two"), ("p3", "three")] {
        ids.push(
            s.send_message(
                &alice,
                &room,
                txn,
                json!({"msgtype": "m.text", "body": body}),
            )
            .await,
        );
    }
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{}", ids[1]),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let now = axon::server::now_ms();
    // Nothing is old enough yet.
    assert_eq!(
        s.hs.storage
            .prune_push_actions(now - 86_400_000, 100)
            .await
            .unwrap(),
        0
    );
    // With the cut-off after them, the two read ones go; the unread one stays.
    assert_eq!(
        s.hs.storage
            .prune_push_actions(now + 60_000, 100)
            .await
            .unwrap(),
        2
    );
    let (_, res) = s.get("/_matrix/client/v3/notifications", Some(&bob)).await;
    let bodies: Vec<&str> = res["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["event"]["content"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["three"], "{res}");
    let ((notifications, _), _) = counts(&s, &bob, &room, "s0_0_0_0_0_0_0", "").await;
    assert_eq!(notifications, 1, "the badge is unchanged");
}

/// Messages from bridges, bots and older clients carry no `m.mentions`: the legacy default
/// rules (display name, user name, `@room`) still make them highlight, as on Synapse, and
/// do not apply to messages that do carry `m.mentions`.
#[tokio::test]
async fn plain_text_mentions_highlight_through_the_legacy_default_rules() {
    let s = TestServer::start().await;
    let (alice, bob, room) = s.alice_and_bob_in_a_room().await;
    let (status, _) = s
        .put(
            "/_matrix/client/v3/profile/@bob:localhost/displayname",
            Some(&bob),
            json!({ "displayname": "Bobby Tables" }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, rules) = s.get("/_matrix/client/v3/pushrules/", Some(&bob)).await;
    let overrides = rule_ids(&rules["global"], "override");
    for id in [".m.rule.contains_display_name", ".m.rule.roomnotif"] {
        assert!(overrides.contains(&id.to_owned()), "{id} in {overrides:?}");
    }
    assert!(
        rule_ids(&rules["global"], "content").contains(&".m.rule.contains_user_name".to_owned())
    );
    let (_, first) = s
        .get(
            "/_matrix/client/v3/sync?timeout=0&set_presence=offline",
            Some(&bob),
        )
        .await;
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let mut expected = (0, 0);
    for (txn, content, highlights) in [
        (
            "plain",
            json!({ "msgtype": "m.text", "body": "nothing to see" }),
            false,
        ),
        (
            "name",
            json!({ "msgtype": "m.text", "body": "ask Bobby Tables" }),
            true,
        ),
        (
            "user",
            json!({ "msgtype": "m.text", "body": "ping bob please" }),
            true,
        ),
        (
            "room",
            json!({ "msgtype": "m.text", "body": "@room meeting" }),
            true,
        ),
        // With m.mentions the legacy rules stand aside: naming bob is not a mention.
        (
            "intentional",
            json!({ "msgtype": "m.text", "body": "Bobby Tables", "m.mentions": {} }),
            false,
        ),
    ] {
        s.send_message(&alice, &room, txn, content).await;
        expected.0 += 1;
        expected.1 += i64::from(highlights);
        let (c, _) = counts(&s, &bob, &room, &since, "").await;
        assert_eq!(c, expected, "after {txn}");
    }
}

#[tokio::test]
async fn rule_lists_by_kind_and_malformed_rule_paths() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (status, list) = s
        .get(
            "/_matrix/client/v3/pushrules/global/override/",
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{list}");
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|r| r["rule_id"] == ".m.rule.master"),
        "{list}"
    );
    for (method, path) in [
        ("GET", "/pushrules/global"),
        ("GET", "/pushrules/global/room"),
        ("GET", "/pushrules/not_a_scope/"),
        ("GET", "/pushrules/global/not_a_kind/"),
        (
            "GET",
            "/pushrules/global/override/.m.rule.master/not_an_attr",
        ),
        ("PUT", "/pushrules/"),
        ("PUT", "/pushrules/global"),
        ("PUT", "/pushrules/global/room"),
        ("PUT", "/pushrules/global/room/"),
        ("PUT", "/pushrules/not_a_scope/room/x"),
        (
            "PUT",
            "/pushrules/global/override/.m.rule.master/not_an_attr",
        ),
    ] {
        let url = format!("/_matrix/client/v3{path}");
        let res = match method {
            "GET" => s.get(&url, Some(&alice)).await,
            _ => {
                s.put(&url, Some(&alice), json!({ "actions": ["notify"] }))
                    .await
            }
        };
        assert_error(&res, 400, "M_UNRECOGNIZED");
    }
    // Without a token, the token is what is missing.
    let res = s.get("/_matrix/client/v3/pushrules/global", None).await;
    assert_error(&res, 401, "M_MISSING_TOKEN");
}
