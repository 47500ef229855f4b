//! Joining through a hostile server (the stand-in of tests/common/fake_remote.rs serving
//! rooms of its own): a `make_join` template of another room, or a room whose create
//! event is forged, is refused with nothing kept; state events with a bad signature or
//! failing their auth rules are left out and not stored while the join goes through (as
//! Synapse does) and the room works; another room's event in a `/backfill` answer is not
//! taken in; a join through a liar and then an honest server succeeds through the second;
//! a server that only knows the v1 `send_join` is joined through it.

mod common;
#[path = "common/fake_remote.rs"]
mod fake_remote;
#[path = "common/federation.rs"]
mod federation;

use common::TestServer;
use fake_remote::{Draft, FakeRemote};
use federation::start_federated;
use ruma::{CanonicalJsonObject, CanonicalJsonValue, RoomVersionId};
use serde_json::{Value, json};

/// A v11 room held by the stand-in: create, the creator's join, power levels, public
/// join rules; the events by name.
struct FakeRoom {
    room_id: String,
    events: Vec<CanonicalJsonObject>,
    ids: Vec<String>,
}

fn fake_room(remote: &FakeRemote) -> FakeRoom {
    fake_room_named(remote, "hostile")
}

fn fake_room_named(remote: &FakeRemote, name: &str) -> FakeRoom {
    let rules = RoomVersionId::V11.rules().unwrap();
    let room_id = format!("!{name}:{}", remote.name);
    let creator = format!("@creator:{}", remote.name);
    let mut events: Vec<CanonicalJsonObject> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let steps: [(&str, Option<&str>, Value); 4] = [
        ("m.room.create", Some(""), json!({"room_version": "11"})),
        (
            "m.room.member",
            Some(&creator),
            json!({"membership": "join"}),
        ),
        (
            "m.room.power_levels",
            Some(""),
            json!({"users": {creator.clone(): 100}}),
        ),
        (
            "m.room.join_rules",
            Some(""),
            json!({"join_rule": "public"}),
        ),
    ];
    for (i, (kind, state_key, content)) in steps.into_iter().enumerate() {
        let auth: Vec<String> = ids.iter().take(3).cloned().collect();
        let event = remote.pdu(
            &room_id,
            &rules,
            Draft {
                sender: &creator,
                kind,
                state_key,
                content,
                prev: ids.last().cloned().into_iter().collect(),
                auth,
                depth: i as i64 + 1,
            },
        );
        ids.push(FakeRemote::event_id(&event, &rules));
        events.push(event);
    }
    FakeRoom {
        room_id,
        events,
        ids,
    }
}

/// The make_join template for `user` in the room.
fn template(room: &FakeRoom, user: &str) -> Value {
    json!({
        "room_id": room.room_id, "sender": user, "type": "m.room.member", "state_key": user,
        "content": {"membership": "join"}, "prev_events": [room.ids[3]],
        "auth_events": [room.ids[0], room.ids[2], room.ids[3]], "depth": 5,
        "origin_server_ts": axon::server::now_ms(),
    })
}

fn answer(remote: &FakeRemote, make_join: Value, state: &[CanonicalJsonObject]) {
    let mut canned = remote.canned.lock().unwrap();
    canned.clear();
    canned.push((
        "GET".into(),
        "/_matrix/federation/v1/make_join/".into(),
        json!({"room_version": "11", "event": make_join}),
    ));
    canned.push((
        "PUT".into(),
        "/_matrix/federation/v2/send_join/".into(),
        json!({"origin": remote.name, "state": state, "auth_chain": state}),
    ));
}

async fn join(s: &TestServer, token: &str, room: &str, via: &[&str]) -> (u16, Value) {
    let via: Vec<String> = via.iter().map(|v| format!("via={v}")).collect();
    let (status, body) = s
        .post(
            &format!("/_matrix/client/v3/join/{room}?{}", via.join("&")),
            Some(token),
            json!({}),
        )
        .await;
    (status.as_u16(), body)
}

/// Nothing of the room is held: not joined, no state readable.
async fn nothing_kept(s: &TestServer, token: &str, room: &str) {
    let (status, body) = s.get("/_matrix/client/v3/joined_rooms", Some(token)).await;
    assert_eq!(status, 200);
    assert_eq!(body["joined_rooms"], json!([]), "{body}");
    assert!(
        s.hs.storage.room(room).await.unwrap().is_none(),
        "{room} kept"
    );
}

#[tokio::test]
async fn hostile_join_answers() {
    let s = start_federated(|_| {}).await;
    let (token, _) = s.register("bob", "correct horse battery").await;
    let bob = format!("@bob:{}", s.name());
    let remote = FakeRemote::start().await;
    let rules = RoomVersionId::V11.rules().unwrap();

    // A template of another room: refused, nothing kept.
    let room = fake_room_named(&remote, "astray");
    let mut elsewhere = template(&room, &bob);
    elsewhere["room_id"] = json!(format!("!elsewhere:{}", remote.name));
    answer(&remote, elsewhere, &room.events);
    let (status, body) = join(&s, &token, &room.room_id, &[&remote.name]).await;
    assert!(status >= 400, "another room's template was used: {body}");
    nothing_kept(&s, &token, &room.room_id).await;

    // A room whose create event is forged cannot be joined at all.
    let room = fake_room_named(&remote, "uncreated");
    let mut forged = room.events.clone();
    forge_signature(&mut forged[0], &remote.name);
    answer(&remote, template(&room, &bob), &forged);
    let (status, body) = join(&s, &token, &room.room_id, &[&remote.name]).await;
    assert!(
        status >= 400,
        "a room with a forged create event was joined: {body}"
    );
    nothing_kept(&s, &token, &room.room_id).await;

    // A state event with a forged signature, and one its auth events do not allow (a
    // stranger naming the room): each left out, not stored; the join goes through and
    // the room works.
    let room = fake_room_named(&remote, "tampered");
    let mut tampered = room.events.clone();
    let mut topic = remote.pdu(
        &room.room_id,
        &rules,
        Draft {
            sender: &format!("@creator:{}", remote.name),
            kind: "m.room.topic",
            state_key: Some(""),
            content: json!({"topic": "forged"}),
            prev: vec![room.ids[3].clone()],
            auth: vec![
                room.ids[0].clone(),
                room.ids[1].clone(),
                room.ids[2].clone(),
            ],
            depth: 5,
        },
    );
    let topic_id = FakeRemote::event_id(&topic, &rules);
    forge_signature(&mut topic, &remote.name);
    tampered.push(topic);
    let stranger = remote.pdu(
        &room.room_id,
        &rules,
        Draft {
            sender: &format!("@stranger:{}", remote.name),
            kind: "m.room.name",
            state_key: Some(""),
            content: json!({"name": "Taken over"}),
            prev: vec![room.ids[3].clone()],
            auth: vec![room.ids[0].clone(), room.ids[2].clone()],
            depth: 5,
        },
    );
    let stranger_id = FakeRemote::event_id(&stranger, &rules);
    tampered.push(stranger);
    answer(&remote, template(&room, &bob), &tampered);
    let (status, body) = join(&s, &token, &room.room_id, &[&remote.name]).await;
    assert_eq!(status, 200, "{body}");
    for (what, id) in [("forged", &topic_id), ("unauthorised", &stranger_id)] {
        assert!(
            s.hs.storage.event(id).await.unwrap().is_none(),
            "the {what} state event was stored"
        );
    }
    let (status, body) = s
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.name/",
                room.room_id
            ),
            Some(&token),
        )
        .await;
    assert_eq!(status, 404, "the stranger's name is not the room's: {body}");

    // Paging back asks the server for history; it answers with another room's event,
    // which is not taken in, and the page is answered with what is here.
    let other = fake_room_named(&remote, "elsewhere");
    remote.canned.lock().unwrap().push((
        "GET".into(),
        "/_matrix/federation/v1/backfill/".into(),
        json!({"origin": remote.name, "origin_server_ts": 0, "pdus": [other.events[3]]}),
    ));
    let (status, page) = s
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=10",
                room.room_id
            ),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        s.hs.storage.event(&other.ids[3]).await.unwrap().is_none(),
        "another room's event was taken in through backfill"
    );
    let (status, body) = s
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/t1",
                room.room_id
            ),
            Some(&token),
            json!({"msgtype": "m.text", "body": "still working"}),
        )
        .await;
    assert_eq!(status, 200, "the room keeps working: {body}");
}

/// Replaces the server's signatures of `event` with ones that do not verify.
fn forge_signature(event: &mut CanonicalJsonObject, server: &str) {
    if let Some(CanonicalJsonValue::Object(signatures)) = event.get_mut("signatures")
        && let Some(CanonicalJsonValue::Object(by_key)) = signatures.get_mut(server)
    {
        for value in by_key.values_mut() {
            *value = CanonicalJsonValue::String("AAAA".repeat(22));
        }
    }
}

/// A liar first in `via` does not stop the join: the next server is asked.
#[tokio::test]
async fn a_lying_server_is_passed_over_for_the_next() {
    let hs1 = start_federated(|_| {}).await;
    let hs2 = start_federated(|_| {}).await;
    let (alice, _) = hs1.register("alice", "correct horse battery").await;
    let (bob, _) = hs2.register("bob", "correct horse battery").await;
    let room = hs1
        .create_room(
            &alice,
            json!({"preset": "public_chat", "room_version": "11"}),
        )
        .await;
    let liar = FakeRemote::start().await;
    let fake = fake_room(&liar);
    // The liar answers with a template of its own room.
    answer(
        &liar,
        template(&fake, &format!("@bob:{}", hs2.name())),
        &fake.events,
    );
    let (status, body) = join(&hs2, &bob, &room, &[&liar.name, &hs1.name()]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_id"], room.as_str());
}

/// A server that only knows the v1 `send_join` (404 to v2): the join goes through v1,
/// whose answer is wrapped as `[200, {...}]`.
#[tokio::test]
async fn a_join_through_a_server_that_only_knows_v1() {
    let s = start_federated(|_| {}).await;
    let (token, _) = s.register("bob", "correct horse battery").await;
    let bob = format!("@bob:{}", s.name());
    let remote = FakeRemote::start().await;
    let room = fake_room_named(&remote, "old");
    {
        let mut canned = remote.canned.lock().unwrap();
        canned.push((
            "GET".into(),
            "/_matrix/federation/v1/make_join/".into(),
            json!({"room_version": "11", "event": template(&room, &bob)}),
        ));
        canned.push((
            "PUT".into(),
            "/_matrix/federation/v1/send_join/".into(),
            json!([200, {"origin": remote.name, "state": room.events, "auth_chain": room.events}]),
        ));
    }
    let (status, body) = join(&s, &token, &room.room_id, &[&remote.name]).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.join_rules/",
                room.room_id
            ),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["join_rule"], "public");
}
