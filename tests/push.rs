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
