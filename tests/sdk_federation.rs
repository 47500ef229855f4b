//! Real clients on three federated axon servers: matrix-sdk 0.18 clients (what Element X
//! is built on), alice on hs1, bob on hs2, charlie on hs3. alice's room invites bob; his
//! client sees the invite and joins; they talk with messages, edits, reactions, threads
//! and redactions, each reaching the other client through sync; charlie joins by alias;
//! while hs2 is down alice and charlie talk, and bob's client, back, gets it all in
//! order; a ban on hs1 removes charlie everywhere; a knock from hs3 is let in on hs1.

mod common;
#[path = "common/federation.rs"]
mod federation;
#[path = "common/sdk.rs"]
mod sdk;

use std::time::Duration;

use federation::start_federated;
use matrix_sdk::{
    Client, RoomState,
    config::SyncSettings,
    ruma::{
        OwnedEventId, RoomId, RoomOrAliasId,
        api::client::room::create_room::v3::Request as CreateRoomRequest,
        events::{
            reaction::ReactionEventContent,
            relation::{Annotation, Thread},
            room::message::{
                Relation, ReplacementMetadata, RoomMessageEventContent,
                RoomMessageEventContentWithoutRelation,
            },
        },
        serde::Raw,
    },
    sync::SyncResponse,
};
use sdk::{client, register};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_secs(1);

/// Syncs until `done` finds something in a response; fails after `WAIT`.
async fn sync_until<T>(
    c: &Client,
    what: &str,
    mut done: impl FnMut(&SyncResponse) -> Option<T>,
) -> T {
    let who = c.user_id().map(ToString::to_string).unwrap_or_default();
    tokio::time::timeout(WAIT, async {
        loop {
            let response = c
                .sync_once(SyncSettings::default().timeout(POLL))
                .await
                .unwrap_or_else(|e| panic!("{who}: /sync failed waiting for {what}: {e}"));
            if let Some(found) = done(&response) {
                return found;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{who}: {what} did not arrive within {WAIT:?}"))
}

fn json<T>(raw: &Raw<T>) -> Value {
    raw.deserialize_as_unchecked().expect("event JSON")
}

/// The room's timeline events in one response, as JSON.
fn timeline(response: &SyncResponse, room: &RoomId) -> Vec<Value> {
    response
        .rooms
        .joined
        .get(room)
        .map(|r| r.timeline.events.iter().map(|e| json(e.raw())).collect())
        .unwrap_or_default()
}

/// Syncs until an event `pred` accepts shows in the room's timeline; returns it.
async fn sees(c: &Client, room: &RoomId, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    sync_until(c, what, |r| timeline(r, room).into_iter().find(|e| pred(e))).await
}

async fn user(base: &str, name: &str) -> Client {
    let c = client(base).await;
    register(&c, name, &format!("{name}-password")).await;
    c.sync_once(SyncSettings::default())
        .await
        .expect("initial sync");
    c
}

async fn send(c: &Client, room: &RoomId, content: RoomMessageEventContent) -> OwnedEventId {
    c.get_room(room)
        .expect("room known")
        .send(content)
        .await
        .expect("send")
        .response
        .event_id
}

fn body_is(body: &'static str) -> impl Fn(&Value) -> bool {
    move |e| e["content"]["body"] == body
}

#[tokio::test]
async fn three_servers_with_real_clients() {
    let hs1 = start_federated(|_| {}).await;
    let mut hs2 = start_federated(|_| {}).await;
    let hs3 = start_federated(|_| {}).await;
    let alice = user(&hs1.base, "alice").await;
    let bob = user(&hs2.base, "bob").await;
    let charlie = user(&hs3.base, "charlie").await;
    let bob_id = bob.user_id().unwrap().to_owned();
    let charlie_id = charlie.user_id().unwrap().to_owned();

    // alice's public room, with an alias, inviting bob.
    let mut request = CreateRoomRequest::new();
    request.invite = vec![bob_id.clone()];
    request.name = Some("Across".to_owned());
    request.room_alias_name = Some("across".to_owned());
    request.preset =
        Some(matrix_sdk::ruma::api::client::room::create_room::v3::RoomPreset::PublicChat);
    let room_id = alice
        .create_room(request)
        .await
        .expect("createRoom")
        .room_id()
        .to_owned();
    let invite = sync_until(&bob, "the invite", |r| {
        r.rooms.invited.get(&room_id).cloned()
    })
    .await;
    let stripped: Vec<Value> = invite.invite_state.events.iter().map(json).collect();
    assert!(
        stripped
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Across"),
        "{stripped:?}"
    );
    let bob_room = bob.get_room(&room_id).expect("the sdk knows the invite");
    assert_eq!(bob_room.state(), RoomState::Invited);
    bob_room.join().await.expect("bob joins through hs1");
    sees(&alice, &room_id, "bob's join", |e| {
        e["type"] == "m.room.member"
            && e["state_key"] == bob_id.as_str()
            && e["content"]["membership"] == "join"
    })
    .await;

    // Messages, an edit, a reaction, a thread reply and a redaction, across.
    let hello = send(
        &alice,
        &room_id,
        RoomMessageEventContent::text_plain("hello bob"),
    )
    .await;
    sees(&bob, &room_id, "alice's message", body_is("hello bob")).await;
    let edit = RoomMessageEventContentWithoutRelation::text_plain("hello bob!")
        .make_replacement(ReplacementMetadata::new(hello.clone(), None));
    send(&alice, &room_id, edit).await;
    let got = sees(&bob, &room_id, "alice's edit", body_is("* hello bob!")).await;
    assert_eq!(got["content"]["m.relates_to"]["rel_type"], "m.replace");
    bob.get_room(&room_id)
        .unwrap()
        .send(ReactionEventContent::new(Annotation::new(
            hello.clone(),
            "👍".to_owned(),
        )))
        .await
        .expect("react");
    let got = sees(&alice, &room_id, "bob's reaction", |e| {
        e["type"] == "m.reaction"
    })
    .await;
    assert_eq!(got["content"]["m.relates_to"]["key"], "👍");
    let mut in_thread = RoomMessageEventContent::text_plain("in a thread");
    in_thread.relates_to = Some(Relation::Thread(Thread::plain(
        hello.clone(),
        hello.clone(),
    )));
    send(&bob, &room_id, in_thread).await;
    let got = sees(
        &alice,
        &room_id,
        "bob's thread reply",
        body_is("in a thread"),
    )
    .await;
    assert_eq!(got["content"]["m.relates_to"]["rel_type"], "m.thread");
    let oops = send(
        &alice,
        &room_id,
        RoomMessageEventContent::text_plain("oops"),
    )
    .await;
    sees(&bob, &room_id, "alice's oops", body_is("oops")).await;
    alice
        .get_room(&room_id)
        .unwrap()
        .redact(&oops, None, None)
        .await
        .expect("redact");
    sees(&bob, &room_id, "alice's redaction", |e| {
        e["type"] == "m.room.redaction" && e["redacts"] == oops.as_str()
            || e["content"]["redacts"] == oops.as_str()
    })
    .await;

    // charlie joins by alias, through hs1.
    let alias = RoomOrAliasId::parse(format!("#across:{}", hs1.name())).unwrap();
    charlie
        .join_room_by_id_or_alias(&alias, &[])
        .await
        .expect("charlie joins by alias");
    sees(&bob, &room_id, "charlie's join", |e| {
        e["type"] == "m.room.member" && e["state_key"] == charlie_id.as_str()
    })
    .await;

    // hs2 is down while alice and charlie talk.
    hs2.shut_down().await;
    let away = [
        "while you were out 1",
        "while you were out 2",
        "while you were out 3",
    ];
    for (i, text) in away.iter().enumerate() {
        let from = if i % 2 == 0 { &alice } else { &charlie };
        send(from, &room_id, RoomMessageEventContent::text_plain(*text)).await;
        let other = if i % 2 == 0 { &charlie } else { &alice };
        sees(other, &room_id, "the last message", body_is(text)).await;
    }
    let hs2 = hs2.restart().await;
    // bob's client, on the restarted server (a new address), logs in and catches up.
    let bob = client(&hs2.base).await;
    bob.matrix_auth()
        .login_username("bob", "bob-password")
        .send()
        .await
        .expect("login");
    let mut seen: Vec<String> = Vec::new();
    sync_until(&bob, "the messages sent while hs2 was down", |r| {
        for e in timeline(r, &room_id) {
            if let Some(body) = e["content"]["body"].as_str() {
                seen.push(body.to_owned());
            }
        }
        away.iter()
            .all(|a| seen.iter().any(|s| s == a))
            .then_some(())
    })
    .await;
    let order: Vec<&str> = seen
        .iter()
        .map(String::as_str)
        .filter(|s| away.contains(s))
        .collect();
    assert_eq!(order, away, "bob's client has them in order");

    // A ban on hs1 removes charlie everywhere.
    alice
        .get_room(&room_id)
        .unwrap()
        .ban_user(&charlie_id, Some("enough"))
        .await
        .expect("ban");
    sync_until(&charlie, "charlie's ban", |r| {
        r.rooms.left.get(&room_id).map(|_| ())
    })
    .await;
    sees(&bob, &room_id, "charlie's ban", |e| {
        e["type"] == "m.room.member"
            && e["state_key"] == charlie_id.as_str()
            && e["content"]["membership"] == "ban"
    })
    .await;

    // A knock from hs3 on a room of hs1, let in.
    let mut request = CreateRoomRequest::new();
    request.name = Some("Knock knock".to_owned());
    request.initial_state = vec![
        Raw::new(&serde_json::json!({
            "type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}
        }))
        .unwrap()
        .cast_unchecked(),
    ];
    let knock_room = alice
        .create_room(request)
        .await
        .expect("createRoom")
        .room_id()
        .to_owned();
    let via = vec![matrix_sdk::ruma::OwnedServerName::try_from(hs1.name()).unwrap()];
    let knock_target = RoomOrAliasId::parse(knock_room.as_str()).unwrap();
    charlie.knock(knock_target, None, via).await.expect("knock");
    sees(&alice, &knock_room, "charlie's knock", |e| {
        e["type"] == "m.room.member"
            && e["state_key"] == charlie_id.as_str()
            && e["content"]["membership"] == "knock"
    })
    .await;
    alice
        .get_room(&knock_room)
        .unwrap()
        .invite_user_by_id(&charlie_id)
        .await
        .expect("let charlie in");
    sync_until(&charlie, "the invite after the knock", |r| {
        r.rooms.invited.get(&knock_room).map(|_| ())
    })
    .await;
    charlie
        .get_room(&knock_room)
        .unwrap()
        .join()
        .await
        .expect("charlie joins");
    sees(&alice, &knock_room, "charlie's join", |e| {
        e["type"] == "m.room.member"
            && e["state_key"] == charlie_id.as_str()
            && e["content"]["membership"] == "join"
    })
    .await;
}
