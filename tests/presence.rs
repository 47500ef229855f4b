//! Presence: `GET/PUT /presence/{userId}/status`, presence in /sync (set_presence, changes
//! from people sharing a room, long-poll wake-ups), activity, the idle and offline
//! timeouts, and the config switch.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, assert_error};
use serde_json::{Value, json};

async fn sync(s: &TestServer, token: &str, query: &str) -> Value {
    let (status, res) = s
        .get(&format!("/_matrix/client/v3/sync?{query}"), Some(token))
        .await;
    assert_eq!(status, 200, "{res}");
    res
}

/// The `m.presence` events of a sync, by sender.
fn presence_of<'a>(res: &'a Value, user: &str) -> Vec<&'a Value> {
    res["presence"]["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["sender"] == user)
                .map(|e| {
                    assert_eq!(e["type"], "m.presence", "{e}");
                    &e["content"]
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn put_presence(s: &TestServer, token: &str, user: &str, body: Value) -> (u16, Value) {
    let (status, res) = s
        .put(
            &format!("/_matrix/client/v3/presence/{user}/status"),
            Some(token),
            body,
        )
        .await;
    (status.as_u16(), res)
}

/// Syncs bob (who does not change his own presence) until alice's presence matches
/// `want`, or fails after `within`.
async fn wait_for_presence(
    s: &TestServer,
    bob: &str,
    since: &mut String,
    want: impl Fn(&Value) -> bool,
    within: Duration,
) -> Value {
    let start = Instant::now();
    loop {
        let res = sync(
            s,
            bob,
            &format!("since={since}&timeout=1000&set_presence=offline"),
        )
        .await;
        *since = res["next_batch"].as_str().unwrap().to_owned();
        if let Some(found) = presence_of(&res, "@alice:localhost")
            .into_iter()
            .rev()
            .find(|c| want(c))
        {
            return found.clone();
        }
        assert!(
            start.elapsed() < within,
            "alice's presence did not arrive in {within:?}"
        );
    }
}

#[tokio::test]
async fn status_endpoints_and_their_errors() {
    let s = TestServer::start().await;
    let (alice, bob, _room) = s.alice_and_bob_in_a_room().await;
    let (carol, _) = s.register("carol", "password-carol").await;

    // Before anything is set: offline.
    let (status, res) = s
        .get(
            "/_matrix/client/v3/presence/@alice:localhost/status",
            Some(&bob),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["presence"], "offline", "{res}");

    let (status, res) = put_presence(
        &s,
        &alice,
        "@alice:localhost",
        json!({"presence": "online", "status_msg": "at the desk"}),
    )
    .await;
    assert_eq!(status, 200, "{res}");
    let (status, res) = s
        .get(
            "/_matrix/client/v3/presence/@alice:localhost/status",
            Some(&bob),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["presence"], "online", "{res}");
    assert_eq!(res["status_msg"], "at the desk", "{res}");
    assert_eq!(res["currently_active"], true, "{res}");
    assert!(res["last_active_ago"].as_u64().unwrap() < 60_000, "{res}");

    // Unavailable without a message clears the message, as a PUT sets both.
    let (status, _) = put_presence(
        &s,
        &alice,
        "@alice:localhost",
        json!({"presence": "unavailable"}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, res) = s
        .get(
            "/_matrix/client/v3/presence/@alice:localhost/status",
            Some(&alice),
        )
        .await;
    assert_eq!(res["presence"], "unavailable", "{res}");
    assert!(res.get("status_msg").is_none_or(Value::is_null), "{res}");
    assert!(res.get("currently_active").is_none(), "{res}");

    // Carol shares no room with alice.
    let res = s
        .get(
            "/_matrix/client/v3/presence/@alice:localhost/status",
            Some(&carol),
        )
        .await;
    assert_error(&res, 403, "M_FORBIDDEN");
    // Nobody sets another user's presence.
    let res = put_presence(&s, &bob, "@alice:localhost", json!({"presence": "offline"})).await;
    assert_eq!(res.0, 403, "{}", res.1);
    assert_eq!(res.1["errcode"], "M_FORBIDDEN");
    // Not a presence state; a message too long; no token.
    let res = put_presence(
        &s,
        &alice,
        "@alice:localhost",
        json!({"presence": "dancing"}),
    )
    .await;
    assert_eq!(res.0, 400, "{}", res.1);
    let res = put_presence(
        &s,
        &alice,
        "@alice:localhost",
        json!({"presence": "online", "status_msg": "x".repeat(5000)}),
    )
    .await;
    assert_eq!(res.0, 400, "{}", res.1);
    assert_eq!(res.1["errcode"], "M_INVALID_PARAM");
    let res = s
        .get("/_matrix/client/v3/presence/@alice:localhost/status", None)
        .await;
    assert_error(&res, 401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn sync_carries_presence_and_wakes_on_change() {
    let s = TestServer::start().await;
    let (alice, bob, _room) = s.alice_and_bob_in_a_room().await;
    let (carol, _) = s.register("carol", "password-carol").await;

    // Alice's own sync (set_presence defaults to online) makes her online; bob's initial
    // sync has it, and bob's own (he asked for offline) is not invented.
    let res = sync(&s, &alice, "timeout=0").await;
    let own = presence_of(&res, "@alice:localhost");
    assert_eq!(own.last().unwrap()["presence"], "online", "{res}");
    let res = sync(&s, &bob, "timeout=0&set_presence=offline").await;
    let seen = presence_of(&res, "@alice:localhost");
    assert_eq!(seen.len(), 1, "{res}");
    assert_eq!(seen[0]["presence"], "online");
    assert_eq!(seen[0]["currently_active"], true);
    assert!(presence_of(&res, "@bob:localhost").is_empty(), "{res}");
    let mut since = res["next_batch"].as_str().unwrap().to_owned();

    // A long poll wakes for a status change of someone sharing a room.
    let waiting = {
        let (base, http, bob, since) = (s.base.clone(), s.http.clone(), bob.clone(), since.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let res: Value = http
                .get(format!(
                    "{base}/_matrix/client/v3/sync?since={since}&timeout=20000&set_presence=offline"
                ))
                .bearer_auth(bob)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (started.elapsed(), res)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = put_presence(
        &s,
        &alice,
        "@alice:localhost",
        json!({"presence": "unavailable", "status_msg": "lunch"}),
    )
    .await;
    assert_eq!(status, 200);
    let (waited, res) = waiting.await.unwrap();
    assert!(waited < Duration::from_secs(15), "not woken: {waited:?}");
    let seen = presence_of(&res, "@alice:localhost");
    assert_eq!(seen.len(), 1, "{res}");
    assert_eq!(seen[0]["presence"], "unavailable");
    assert_eq!(seen[0]["status_msg"], "lunch");
    since = res["next_batch"].as_str().unwrap().to_owned();

    // Nothing changed: nothing again. Carol, in no room with alice, never sees her.
    let res = sync(
        &s,
        &bob,
        &format!("since={since}&timeout=0&set_presence=offline"),
    )
    .await;
    assert!(presence_of(&res, "@alice:localhost").is_empty(), "{res}");
    let res = sync(&s, &carol, "timeout=0&set_presence=offline").await;
    assert!(presence_of(&res, "@alice:localhost").is_empty(), "{res}");

    // Activity brings an idle user back online.
    let (status, _) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{_room}/send/m.room.message/t1"),
            Some(&alice),
            json!({"msgtype": "m.text", "body": "back"}),
        )
        .await;
    assert_eq!(status, 200);
    let res = sync(
        &s,
        &bob,
        &format!("since={since}&timeout=0&set_presence=offline"),
    )
    .await;
    let seen = presence_of(&res, "@alice:localhost");
    assert_eq!(seen.last().unwrap()["presence"], "online", "{res}");
    assert_eq!(seen.last().unwrap()["status_msg"], "lunch", "{res}");

    // A filter without m.presence has none.
    let res = sync(
        &s,
        &bob,
        &format!(
            "timeout=0&set_presence=offline&filter={}",
            urlencode(r#"{"presence":{"types":["m.nothing"]}}"#)
        ),
    )
    .await;
    assert!(
        res["presence"]["events"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{res}"
    );
    // Someone who joins later gets alice's current presence at once.
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/join/{_room}"),
            Some(&carol),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let res = sync(&s, &carol, "timeout=0&set_presence=offline").await;
    assert_eq!(
        presence_of(&res, "@alice:localhost").last().unwrap()["presence"],
        "online",
        "{res}"
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn idle_and_offline_timeouts() {
    let s = TestServer::start_with(|env| {
        env.insert("AXON_PRESENCE__IDLE_AFTER_SECS".into(), "1".into());
        env.insert("AXON_PRESENCE__OFFLINE_AFTER_SECS".into(), "3".into());
    })
    .await;
    let (alice, bob, _room) = s.alice_and_bob_in_a_room().await;
    let res = sync(&s, &bob, "timeout=0&set_presence=offline").await;
    let mut since = res["next_batch"].as_str().unwrap().to_owned();

    // Online by PUT, then no activity: idle after ~1 s, offline after ~3 s.
    let (status, _) = put_presence(
        &s,
        &alice,
        "@alice:localhost",
        json!({"presence": "online"}),
    )
    .await;
    assert_eq!(status, 200);
    wait_for_presence(
        &s,
        &bob,
        &mut since,
        |c| c["presence"] == "online",
        Duration::from_secs(5),
    )
    .await;
    let idle = wait_for_presence(
        &s,
        &bob,
        &mut since,
        |c| c["presence"] == "unavailable",
        Duration::from_secs(10),
    )
    .await;
    assert!(idle.get("currently_active").is_none(), "{idle}");
    wait_for_presence(
        &s,
        &bob,
        &mut since,
        |c| c["presence"] == "offline",
        Duration::from_secs(10),
    )
    .await;

    // A client that keeps long-polling with set_presence=unavailable stays unavailable
    // (not offline) across several offline timeouts.
    let keep_syncing = {
        let (base, http, alice) = (s.base.clone(), s.http.clone(), alice.clone());
        tokio::spawn(async move {
            let mut since: Option<String> = None;
            loop {
                let q = since
                    .as_deref()
                    .map(|t| format!("&since={t}"))
                    .unwrap_or_default();
                let res: Value = http
                    .get(format!(
                        "{base}/_matrix/client/v3/sync?timeout=4000&set_presence=unavailable{q}"
                    ))
                    .bearer_auth(&alice)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                since = res["next_batch"].as_str().map(str::to_owned);
            }
        })
    };
    wait_for_presence(
        &s,
        &bob,
        &mut since,
        |c| c["presence"] == "unavailable",
        Duration::from_secs(5),
    )
    .await;
    let hold_until = Instant::now() + Duration::from_secs(7);
    while Instant::now() < hold_until {
        let res = sync(
            &s,
            &bob,
            &format!("since={since}&timeout=1000&set_presence=offline"),
        )
        .await;
        since = res["next_batch"].as_str().unwrap().to_owned();
        for c in presence_of(&res, "@alice:localhost") {
            assert_eq!(c["presence"], "unavailable", "went {c} while syncing");
        }
    }
    // The client stops: offline follows.
    keep_syncing.abort();
    wait_for_presence(
        &s,
        &bob,
        &mut since,
        |c| c["presence"] == "offline",
        Duration::from_secs(15),
    )
    .await;
}

#[tokio::test]
async fn presence_can_be_switched_off() {
    let s = TestServer::start_with(|env| {
        env.insert("AXON_PRESENCE__ENABLED".into(), "false".into());
    })
    .await;
    let (alice, bob, _room) = s.alice_and_bob_in_a_room().await;
    let res = put_presence(
        &s,
        &alice,
        "@alice:localhost",
        json!({"presence": "online"}),
    )
    .await;
    assert_eq!(res.0, 403, "{}", res.1);
    assert_eq!(res.1["errcode"], "M_FORBIDDEN");
    let res = s
        .get(
            "/_matrix/client/v3/presence/@alice:localhost/status",
            Some(&bob),
        )
        .await;
    assert_error(&res, 403, "M_FORBIDDEN");
    sync(&s, &alice, "timeout=0").await;
    let res = sync(&s, &bob, "timeout=0").await;
    assert!(
        res["presence"]["events"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{res}"
    );
}
