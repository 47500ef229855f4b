//! Gaps in what another server sends (against the stand-in server): prev events fetched
//! with `get_missing_events`; a gap behind the oldest of those filled from the state at
//! it; an event pushed with prev events the sender withholds refused; an event whose
//! auth events belong to another room refused without fetching anything, and a
//! redaction of another room's event refused. A rejected event is kept out of sight but
//! known: an event built on it is taken, and neither its state nor itself is served.

mod common;
#[path = "common/fake_remote.rs"]
mod fake_remote;
#[path = "common/federation.rs"]
mod federation;
#[path = "common/shared_room.rs"]
mod shared_room;

use fake_remote::FakeRemote;
use federation::start_federated;
use serde_json::json;
use shared_room::{bodies, message, rules, send_txn, shared_room};

#[tokio::test]
async fn missing_prev_events_are_fetched_from_the_sender() {
    let s = start_federated(|_| {}).await;
    let (token, _) = s.register("alice", "correct horse battery").await;
    let remote = FakeRemote::start().await;
    let room = shared_room(&s, &token, &remote).await;
    let first = message(
        &remote,
        &room,
        "first",
        vec![room.bob_join.clone()],
        room.depth + 1,
    );
    let first_id = FakeRemote::event_id(&first, &rules());
    let second = message(
        &remote,
        &room,
        "second",
        vec![first_id.clone()],
        room.depth + 2,
    );
    let second_id = FakeRemote::event_id(&second, &rules());
    remote
        .missing
        .lock()
        .unwrap()
        .push(serde_json::to_value(&first).unwrap());
    let (status, answer) = send_txn(&s, &remote, "m1", vec![second]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["pdus"][&second_id], json!({}), "{answer}");
    assert_eq!(bodies(&s, &token, &room.id).await, vec!["second", "first"]);
}

/// A gap behind the events get_missing_events gives is filled from the state at it, as
/// the sender has it; an event pushed with prev events the sender does not give is
/// refused (its state is never taken on the sender's word), as Synapse does.
#[tokio::test]
async fn a_gap_before_fetched_events_is_recovered_from_the_state_at_it() {
    let s = start_federated(|_| {}).await;
    let (token, _) = s.register("alice", "correct horse battery").await;
    let remote = FakeRemote::start().await;
    let room = shared_room(&s, &token, &remote).await;
    // The room's state as it stands (bob's join included): the state before `unseen`.
    let (_, state) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{}/state", room.id),
            Some(&token),
        )
        .await;
    let state_ids: Vec<String> = state
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    // `unseen` never reaches axon (only through /event, once its state is asked for);
    // get_missing_events yields `fetched`, which follows it; `after` is pushed.
    let unseen = message(
        &remote,
        &room,
        "unseen",
        vec![room.bob_join.clone()],
        room.depth + 1,
    );
    let unseen_id = FakeRemote::event_id(&unseen, &rules());
    let fetched = message(
        &remote,
        &room,
        "fetched",
        vec![unseen_id.clone()],
        room.depth + 2,
    );
    let fetched_id = FakeRemote::event_id(&fetched, &rules());
    let after = message(
        &remote,
        &room,
        "after the gap",
        vec![fetched_id.clone()],
        room.depth + 3,
    );
    let after_id = FakeRemote::event_id(&after, &rules());
    remote
        .events
        .lock()
        .unwrap()
        .insert(unseen_id.clone(), serde_json::to_value(&unseen).unwrap());
    remote
        .state_ids
        .lock()
        .unwrap()
        .insert(unseen_id.clone(), (state_ids, Vec::new()));
    remote
        .missing
        .lock()
        .unwrap()
        .push(serde_json::to_value(&fetched).unwrap());

    let (status, answer) = send_txn(&s, &remote, "gap", vec![after]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["pdus"][&after_id], json!({}), "{answer}");
    // The fetched event and the one after it are in the timeline; the one in the gap is
    // kept for lookups only (an outlier), and its state is not served.
    assert_eq!(
        bodies(&s, &token, &room.id).await,
        vec!["after the gap", "fetched"]
    );
    let outlier = s.hs.storage.event(&unseen_id).await.unwrap().unwrap();
    assert_eq!(outlier.stream_pos, None);
    let (status, _) = remote
        .request(
            &s,
            "GET",
            &format!(
                "/_matrix/federation/v1/state_ids/{}?event_id={unseen_id}",
                room.id
            ),
            None,
        )
        .await;
    assert_eq!(status, 404);
    // The room goes on: alice's next message builds on the event after the gap.
    let next = s
        .send_message(
            &token,
            &room.id,
            "n1",
            json!({"msgtype": "m.text", "body": "next"}),
        )
        .await;
    let stored = s.hs.storage.event(&next).await.unwrap().unwrap();
    let prevs: Vec<String> = stored.pdu["prev_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    assert!(prevs.contains(&after_id), "{prevs:?}");

    // A pushed event whose prev event get_missing_events does not give is refused, with
    // a reason, though the sender would answer for the state there.
    let withheld = message(
        &remote,
        &room,
        "withheld",
        vec![after_id.clone()],
        room.depth + 4,
    );
    let withheld_id = FakeRemote::event_id(&withheld, &rules());
    remote
        .state_ids
        .lock()
        .unwrap()
        .insert(withheld_id.clone(), (Vec::new(), Vec::new()));
    let orphan = message(
        &remote,
        &room,
        "orphan",
        vec![withheld_id.clone()],
        room.depth + 5,
    );
    let orphan_id = FakeRemote::event_id(&orphan, &rules());
    let (status, answer) = send_txn(&s, &remote, "orphan", vec![orphan]).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["pdus"][&orphan_id]["error"].is_string(), "{answer}");
    assert!(s.hs.storage.event(&orphan_id).await.unwrap().is_none());
    assert!(s.hs.storage.event(&withheld_id).await.unwrap().is_none());
}

/// An event whose auth events include one of another room (which this server holds) can
/// never be authorised: rejected (kept out of sight), without asking the sender for
/// anything.
#[tokio::test]
async fn an_event_authorised_by_another_rooms_event_is_refused() {
    let s = start_federated(|_| {}).await;
    let (token, _) = s.register("alice", "correct horse battery").await;
    let remote = FakeRemote::start().await;
    let first = shared_room(&s, &token, &remote).await;
    let second = shared_room(&s, &token, &remote).await;
    // A message with the first room's power levels among its auth events.
    let crossed = remote.pdu(
        &second.id,
        &rules(),
        fake_remote::Draft {
            sender: &second.bob,
            kind: "m.room.message",
            state_key: None,
            content: json!({"msgtype": "m.text", "body": "crossed"}),
            prev: vec![second.bob_join.clone()],
            auth: vec![
                second.create.clone(),
                first.power_levels.clone(),
                second.bob_join.clone(),
            ],
            depth: second.depth + 1,
        },
    );
    let crossed_id = FakeRemote::event_id(&crossed, &rules());
    let (status, answer) = send_txn(&s, &remote, "crossed", vec![crossed]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["pdus"][&crossed_id], json!({}), "{answer}");
    // Kept as rejected (known, never shown nor served).
    let kept = s.hs.storage.event(&crossed_id).await.unwrap().unwrap();
    assert!(kept.rejected && kept.stream_pos.is_none());
    assert!(bodies(&s, &token, &second.id).await.is_empty());
}

/// A redaction sent in one room for an event of another is rejected: kept out of sight,
/// and the event stays as it was.
#[tokio::test]
async fn a_redaction_of_another_rooms_event_is_refused() {
    let s = start_federated(|_| {}).await;
    let (token, _) = s.register("alice", "correct horse battery").await;
    let remote = FakeRemote::start().await;
    let first = shared_room(&s, &token, &remote).await;
    let second = shared_room(&s, &token, &remote).await;
    let said = message(
        &remote,
        &first,
        "kept",
        vec![first.bob_join.clone()],
        first.depth + 1,
    );
    let said_id = FakeRemote::event_id(&said, &rules());
    let (status, answer) = send_txn(&s, &remote, "said", vec![said]).await;
    assert_eq!(answer["pdus"][&said_id], json!({}), "{status} {answer}");
    // Room v11 names the target in the content.
    let redaction = remote.pdu(
        &second.id,
        &rules(),
        fake_remote::Draft {
            sender: &second.bob,
            kind: "m.room.redaction",
            state_key: None,
            content: json!({"redacts": said_id}),
            prev: vec![second.bob_join.clone()],
            auth: vec![
                second.create.clone(),
                second.power_levels.clone(),
                second.bob_join.clone(),
            ],
            depth: second.depth + 1,
        },
    );
    let redaction_id = FakeRemote::event_id(&redaction, &rules());
    let (status, answer) = send_txn(&s, &remote, "redaction", vec![redaction]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["pdus"][&redaction_id], json!({}), "{answer}");
    // Kept as rejected (known, never shown nor served).
    let kept = s.hs.storage.event(&redaction_id).await.unwrap().unwrap();
    assert!(kept.rejected && kept.stream_pos.is_none());
    assert_eq!(bodies(&s, &token, &first.id).await, vec!["kept"]);
}

/// A rejected event (from a user who is not in the room) is not shown nor served, but an
/// event the sender built on it is taken: the rejected event does not leave a gap.
#[tokio::test]
async fn events_built_on_a_rejected_event_are_taken() {
    let s = start_federated(|_| {}).await;
    let (token, _) = s.register("alice", "correct horse battery").await;
    let remote = FakeRemote::start().await;
    let room = shared_room(&s, &token, &remote).await;
    let stranger = format!("@stranger:{}", remote.name);
    let rejected = remote.pdu(
        &room.id,
        &rules(),
        fake_remote::Draft {
            sender: &stranger,
            kind: "m.room.message",
            state_key: None,
            content: json!({"msgtype": "m.text", "body": "not a member"}),
            prev: vec![room.bob_join.clone()],
            auth: vec![room.create.clone(), room.power_levels.clone()],
            depth: room.depth + 1,
        },
    );
    let rejected_id = FakeRemote::event_id(&rejected, &rules());
    let after = message(
        &remote,
        &room,
        "built on it",
        vec![rejected_id.clone()],
        room.depth + 2,
    );
    let after_id = FakeRemote::event_id(&after, &rules());
    let (status, answer) = send_txn(&s, &remote, "rejected", vec![rejected, after]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["pdus"][&rejected_id], json!({}), "{answer}");
    assert_eq!(answer["pdus"][&after_id], json!({}), "{answer}");
    assert_eq!(bodies(&s, &token, &room.id).await, vec!["built on it"]);
    for path in [
        format!("/_matrix/federation/v1/event/{rejected_id}"),
        format!(
            "/_matrix/federation/v1/state_ids/{}?event_id={rejected_id}",
            room.id
        ),
    ] {
        let (status, body) = remote.request(&s, "GET", &path, None).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, body) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{}/event/{rejected_id}", room.id),
            Some(&token),
        )
        .await;
    assert_eq!(status, 404, "{body}");
}
