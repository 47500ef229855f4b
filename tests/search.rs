//! Message search (`POST /search`): full-text with stemming over bodies, names and topics
//! of the rooms one is in; keys, order (rank, recent) and paging; context with profiles;
//! the rooms' state; groupings; highlights; what a user may not see (other rooms, history
//! before joining, redacted messages) never found; the error paths.

mod common;

use common::{TestServer, assert_error};
use serde_json::{Value, json};

async fn search(s: &TestServer, token: &str, criteria: Value) -> Value {
    let (status, body) = s
        .post(
            "/_matrix/client/v3/search",
            Some(token),
            json!({"search_categories": {"room_events": criteria}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["search_categories"]["room_events"].clone()
}

fn found(events: &Value) -> Vec<String> {
    events["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let e = &r["result"];
            e["content"]["body"]
                .as_str()
                .or(e["content"]["name"].as_str())
                .or(e["content"]["topic"].as_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn full_text_search_of_ones_rooms() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "correct horse battery").await;
    let (bob, _) = s.register("bob", "correct horse battery").await;
    let (carol, _) = s.register("carol", "correct horse battery").await;
    let room = s
        .create_room(&alice, json!({"preset": "public_chat", "name": "Fox Den"}))
        .await;
    s.join(&bob, &room).await;
    let msg = |body: &str| json!({"msgtype": "m.text", "body": body});
    s.send_message(&alice, &room, "1", msg("the quick brown fox"))
        .await;
    s.send_message(&bob, &room, "2", msg("lazy dogs sleeping in the sun"))
        .await;
    s.send_message(&alice, &room, "3", msg("another fox appears"))
        .await;
    let elsewhere = s
        .create_room(&carol, json!({"preset": "private_chat"}))
        .await;
    s.send_message(&carol, &elsewhere, "4", msg("a secret fox"))
        .await;

    // Bodies and the name; stemming ("dog" finds "dogs"); never carol's private room.
    let all = search(&s, &alice, json!({"search_term": "fox"})).await;
    let mut texts = found(&all);
    texts.sort();
    assert_eq!(
        texts,
        vec!["Fox Den", "another fox appears", "the quick brown fox"]
    );
    assert_eq!(all["count"], 3);
    assert_eq!(all["highlights"], json!(["fox"]));
    assert_eq!(
        found(&search(&s, &alice, json!({"search_term": "dog"})).await),
        vec!["lazy dogs sleeping in the sun"]
    );
    let names = search(
        &s,
        &alice,
        json!({"search_term": "fox", "keys": ["content.name"]}),
    )
    .await;
    assert_eq!(found(&names), vec!["Fox Den"]);
    assert!(found(&search(&s, &alice, json!({"search_term": "secret"})).await).is_empty());

    // Newest first, one at a time.
    let criteria = |batch: Option<&str>| {
        let _ = batch;
        json!({"search_term": "fox", "order_by": "recent", "keys": ["content.body"],
               "filter": {"limit": 1}})
    };
    let first = search(&s, &alice, criteria(None)).await;
    assert_eq!(found(&first), vec!["another fox appears"]);
    let next = first["next_batch"]
        .as_str()
        .expect("a next_batch")
        .to_owned();
    let (status, second) = s
        .post(
            &format!("/_matrix/client/v3/search?next_batch={next}"),
            Some(&alice),
            json!({"search_categories": {"room_events": criteria(Some(&next))}}),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    let second = &second["search_categories"]["room_events"];
    assert_eq!(found(second), vec!["the quick brown fox"]);
    assert!(second["next_batch"].is_null(), "{second}");

    // Context with profiles, the room's state, groupings.
    let rich = search(
        &s,
        &alice,
        json!({"search_term": "dogs", "include_state": true,
               "event_context": {"before_limit": 1, "after_limit": 1, "include_profile": true},
               "groupings": {"group_by": [{"key": "room_id"}, {"key": "sender"}]}}),
    )
    .await;
    let context = &rich["results"][0]["context"];
    assert_eq!(
        context["events_before"][0]["content"]["body"],
        "the quick brown fox"
    );
    assert_eq!(
        context["events_after"][0]["content"]["body"],
        "another fox appears"
    );
    assert!(
        context["profile_info"]["@bob:localhost"].is_object(),
        "{context}"
    );
    let state = rich["state"][&room].as_array().unwrap();
    assert!(state.iter().any(|e| e["type"] == "m.room.create"));
    let event_id = rich["results"][0]["result"]["event_id"].clone();
    assert_eq!(
        rich["groups"]["room_id"][&room]["results"],
        json!([event_id])
    );
    assert_eq!(
        rich["groups"]["sender"]["@bob:localhost"]["results"],
        json!([event_id])
    );

    // A redacted message is found no more.
    let redact_id = all["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["result"]["content"]["body"] == "another fox appears")
        .unwrap()["result"]["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/redact/{redact_id}/r1"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !found(&search(&s, &alice, json!({"search_term": "appears"})).await)
            .contains(&"another fox appears".to_owned())
    );

    // History from before one joined, in a room that hides it, is not found.
    let hidden = s
        .create_room(
            &alice,
            json!({"preset": "public_chat", "initial_state": [{
                "type": "m.room.history_visibility", "state_key": "",
                "content": {"history_visibility": "joined"}}]}),
        )
        .await;
    s.send_message(&alice, &hidden, "5", msg("before carol came"))
        .await;
    s.join(&carol, &hidden).await;
    s.send_message(&alice, &hidden, "6", msg("after carol came"))
        .await;
    assert_eq!(
        found(&search(&s, &carol, json!({"search_term": "carol came"})).await),
        vec!["after carol came"]
    );
}

#[tokio::test]
async fn search_errors() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "correct horse battery").await;
    let post = |body: Value| {
        let s = &s;
        let alice = alice.clone();
        async move {
            s.post("/_matrix/client/v3/search", Some(&alice), body)
                .await
        }
    };
    let result = post(json!({})).await;
    assert_error(&result, 400, "M_BAD_JSON");
    let result = post(json!({"search_categories": {"room_events": {
        "search_term": "x", "order_by": "loudest"}}}))
    .await;
    assert_error(&result, 400, "M_INVALID_PARAM");
    let result = post(json!({"search_categories": {"room_events": {
        "search_term": "x", "keys": ["content.secret"]}}}))
    .await;
    assert_error(&result, 400, "M_INVALID_PARAM");
    let result = post(json!({"search_categories": {"room_events": {
        "search_term": "x".repeat(2000)}}}))
    .await;
    assert_error(&result, 400, "M_INVALID_PARAM");
    let result = s
        .post(
            "/_matrix/client/v3/search?next_batch=nonsense",
            Some(&alice),
            json!({"search_categories": {"room_events": {"search_term": "x"}}}),
        )
        .await;
    assert_error(&result, 400, "M_INVALID_PARAM");
    // Query syntax never fails: a term is just words.
    let answer = post(json!({"search_categories": {"room_events": {
        "search_term": "\"unbalanced & | ! ( )"}}}))
    .await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    let result = s
        .post(
            "/_matrix/client/v3/search",
            None,
            json!({"search_categories": {}}),
        )
        .await;
    assert_error(&result, 401, "M_MISSING_TOKEN");
}
