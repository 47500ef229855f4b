//! `/sync` through a real client: two matrix-sdk 0.18 clients (what Element X is built on)
//! sync against axon, and what one user sends must reach the other intact: invites and
//! joins, messages with replies, edits, reactions and threads, typing and read receipts,
//! VoIP call signalling, custom event types, long-polling, and a restored session resuming
//! from its sync token.
//!
//! Events are received the way applications receive them: event handlers
//! (`Client::add_event_handler`) that the sdk calls while it processes each `sync_once`
//! response, plus the response itself (`SyncResponse::rooms`) where raw JSON is wanted.

mod common;
#[path = "common/sdk.rs"]
mod sdk;

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::TestServer;
use matrix_sdk::{
    Client, Room, RoomState,
    authentication::matrix::MatrixSession,
    config::SyncSettings,
    event_handler::SyncEvent,
    ruma::{
        OwnedEventId, OwnedRoomId, OwnedUserId, OwnedVoipId, RoomId, UserId, VoipVersionId,
        api::client::{
            receipt::create_receipt::v3::ReceiptType as SendReceiptType,
            room::create_room::v3::Request as CreateRoomRequest,
        },
        events::{
            AnySyncTimelineEvent,
            call::{
                SessionDescription, StreamMetadata, StreamPurpose,
                answer::{CallAnswerEventContent, OriginalSyncCallAnswerEvent},
                candidates::{
                    CallCandidatesEventContent, Candidate, OriginalSyncCallCandidatesEvent,
                },
                hangup::{CallHangupEventContent, OriginalSyncCallHangupEvent, Reason},
                invite::{CallInviteEventContent, OriginalSyncCallInviteEvent},
            },
            reaction::{OriginalSyncReactionEvent, ReactionEventContent},
            receipt::{ReceiptThread, ReceiptType, SyncReceiptEvent},
            relation::{Annotation, Reply, Thread},
            room::message::{
                OriginalSyncRoomMessageEvent, Relation, ReplacementMetadata,
                RoomMessageEventContent, RoomMessageEventContentWithoutRelation,
            },
            typing::SyncTypingEvent,
        },
        serde::Raw,
        uint,
    },
    store::RoomLoadSettings,
    sync::{State, SyncResponse},
};
use sdk::{client, register};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// How long a test waits for something to arrive through sync before it fails.
const WAIT: Duration = Duration::from_secs(10);
/// The long-poll timeout of each `/sync` request made while waiting.
const POLL: Duration = Duration::from_secs(1);

/// A registered, logged-in client that has done its initial sync, so that everything
/// after this arrives through incremental syncs.
async fn user(server: &TestServer, name: &str) -> Client {
    let c = client(&server.base).await;
    register(&c, name, &format!("{name}-password")).await;
    sync_until(&c, "the initial sync", |_| Some(())).await;
    c
}

fn me(c: &Client) -> OwnedUserId {
    c.user_id().expect("logged in").to_owned()
}

/// Syncs `client` (`sync_once`, long-polling `POLL` at a time, from the token the client
/// stored) until `done` returns something; fails the test after `WAIT`.
async fn sync_until<T>(
    client: &Client,
    what: &str,
    done: impl FnMut(&SyncResponse) -> Option<T>,
) -> T {
    sync_until_from(client, SyncSettings::default().timeout(POLL), what, done).await
}

/// As `sync_until`, with `first` as the settings of the first request.
async fn sync_until_from<T>(
    client: &Client,
    first: SyncSettings,
    what: &str,
    mut done: impl FnMut(&SyncResponse) -> Option<T>,
) -> T {
    let who = client
        .user_id()
        .map(ToString::to_string)
        .unwrap_or_default();
    let mut settings = first;
    let outcome = tokio::time::timeout(WAIT, async {
        loop {
            let response = client
                .sync_once(settings.clone())
                .await
                .unwrap_or_else(|e| panic!("{who}: /sync failed while waiting for {what}: {e}"));
            if let Some(found) = done(&response) {
                return found;
            }
            settings = SyncSettings::default().timeout(POLL);
        }
    })
    .await;
    outcome.unwrap_or_else(|_| panic!("{who}: {what} did not arrive through /sync within {WAIT:?}"))
}

fn json<T>(raw: &Raw<T>) -> Value {
    raw.deserialize_as_unchecked().expect("event JSON")
}

/// The timeline events of a joined room in one sync response, as JSON.
fn timeline(response: &SyncResponse, room: &RoomId) -> Vec<Value> {
    response
        .rooms
        .joined
        .get(room)
        .map(|r| r.timeline.events.iter().map(|e| json(e.raw())).collect())
        .unwrap_or_default()
}

/// The state and timeline events of a joined room in one sync response, as JSON.
fn state_and_timeline(response: &SyncResponse, room: &RoomId) -> Vec<Value> {
    let Some(update) = response.rooms.joined.get(room) else {
        return Vec::new();
    };
    let (State::Before(state) | State::After(state)) = &update.state;
    let mut events: Vec<Value> = state.iter().map(json).collect();
    events.extend(timeline(response, room));
    events
}

/// Whether a response shows `user` joined to `room` (their join in its state or timeline).
fn shows_join(response: &SyncResponse, room: &RoomId, user: &UserId) -> bool {
    state_and_timeline(response, room).iter().any(|e| {
        e["type"] == "m.room.member"
            && e["state_key"] == user.as_str()
            && e["content"]["membership"] == "join"
    })
}

/// Events of type `Ev` that a client's event handler received through sync, in order of
/// arrival, each with the room it came in.
struct Inbox<Ev>(Arc<Mutex<Vec<(OwnedRoomId, Ev)>>>);

impl<Ev> Clone for Inbox<Ev> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<Ev: SyncEvent + DeserializeOwned + Clone + Send + 'static> Inbox<Ev> {
    /// Registers an event handler for `Ev` on `client`.
    fn new(client: &Client) -> Self {
        let inbox = Self(Arc::default());
        let sink = inbox.clone();
        client.add_event_handler(move |ev: Ev, room: Room| {
            let sink = sink.clone();
            async move { sink.0.lock().unwrap().push((room.room_id().to_owned(), ev)) }
        });
        inbox
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The events received in `room` from position `from` on that `pred` accepts.
    fn matching_from(&self, from: usize, room: &RoomId, pred: impl Fn(&Ev) -> bool) -> Vec<Ev> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .skip(from)
            .filter(|(r, ev)| r == room && pred(ev))
            .map(|(_, ev)| ev.clone())
            .collect()
    }

    fn matching(&self, room: &RoomId, pred: impl Fn(&Ev) -> bool) -> Vec<Ev> {
        self.matching_from(0, room, pred)
    }

    fn first(&self, room: &RoomId, pred: impl Fn(&Ev) -> bool) -> Option<Ev> {
        self.matching(room, pred).into_iter().next()
    }
}

/// Alice creates a room inviting bob; bob sees the invite through sync and joins; both
/// see bob's join through sync. Returns the room's ID.
async fn invite_and_join(alice: &Client, bob: &Client) -> OwnedRoomId {
    let (alice_id, bob_id) = (me(alice), me(bob));
    let mut request = CreateRoomRequest::new();
    request.invite = vec![bob_id.clone()];
    request.name = Some("Sync test".to_owned());
    let room_id = alice
        .create_room(request)
        .await
        .expect("createRoom")
        .room_id()
        .to_owned();

    let invite = sync_until(bob, "the invite", |r| {
        r.rooms.invited.get(&room_id).cloned()
    })
    .await;
    let stripped: Vec<Value> = invite.invite_state.events.iter().map(json).collect();
    let member = stripped
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == bob_id.as_str())
        .unwrap_or_else(|| panic!("the invite state holds bob's membership: {stripped:?}"));
    assert_eq!(member["content"]["membership"], "invite", "{member}");
    assert_eq!(member["sender"], alice_id.as_str(), "{member}");
    assert!(
        stripped
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Sync test"),
        "the invite state holds the room name: {stripped:?}"
    );
    let bob_room = bob.get_room(&room_id).expect("the sdk knows the invite");
    assert_eq!(bob_room.state(), RoomState::Invited);
    assert_eq!(bob_room.name().as_deref(), Some("Sync test"));

    bob_room.join().await.expect("join");
    sync_until(bob, "bob's own join", |r| {
        shows_join(r, &room_id, &bob_id).then_some(())
    })
    .await;
    assert_eq!(bob.get_room(&room_id).unwrap().state(), RoomState::Joined);
    sync_until(alice, "bob's join", |r| {
        shows_join(r, &room_id, &bob_id).then_some(())
    })
    .await;
    room_id
}

/// Two users in one room, each client synced past bob's join.
async fn pair(server: &TestServer) -> (Client, Client, OwnedRoomId) {
    let alice = user(server, "alice").await;
    let bob = user(server, "bob").await;
    let room_id = invite_and_join(&alice, &bob).await;
    (alice, bob, room_id)
}

fn room(c: &Client, room_id: &RoomId) -> Room {
    c.get_room(room_id).expect("room known to the client")
}

async fn send_text(room: &Room, content: RoomMessageEventContent) -> OwnedEventId {
    room.send(content).await.expect("send").response.event_id
}

#[tokio::test]
async fn messages_replies_edits_reactions_and_threads() {
    let server = TestServer::start().await;
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let alice_messages = Inbox::<OriginalSyncRoomMessageEvent>::new(&alice);
    let alice_reactions = Inbox::<OriginalSyncReactionEvent>::new(&alice);
    let bob_messages = Inbox::<OriginalSyncRoomMessageEvent>::new(&bob);
    let room_id = invite_and_join(&alice, &bob).await;
    let (alice_id, bob_id) = (me(&alice), me(&bob));
    let (alice_room, bob_room) = (room(&alice, &room_id), room(&bob, &room_id));

    // a plain message, alice -> bob
    let hello = send_text(
        &alice_room,
        RoomMessageEventContent::text_plain("Hello Bob ✓"),
    )
    .await;
    let got = sync_until(&bob, "alice's message", |_| {
        bob_messages.first(&room_id, |e| e.event_id == hello)
    })
    .await;
    assert_eq!(got.sender, alice_id);
    assert_eq!(got.content.body(), "Hello Bob ✓");
    assert!(got.content.relates_to.is_none(), "{got:?}");

    // a reply, bob -> alice
    let mut reply = RoomMessageEventContent::text_plain("Hi Alice");
    reply.relates_to = Some(Relation::Reply(Reply::with_event_id(hello.clone())));
    let reply = send_text(&bob_room, reply).await;
    let got = sync_until(&alice, "bob's reply", |_| {
        alice_messages.first(&room_id, |e| e.event_id == reply)
    })
    .await;
    assert_eq!(got.sender, bob_id);
    assert_eq!(got.content.body(), "Hi Alice");
    match &got.content.relates_to {
        Some(Relation::Reply(r)) => assert_eq!(r.in_reply_to.event_id, hello),
        other => panic!("expected an m.in_reply_to relation, got {other:?}"),
    }

    // an edit of the first message, alice -> bob
    let edit = RoomMessageEventContentWithoutRelation::text_plain("Hello Bob (edited)")
        .make_replacement(ReplacementMetadata::new(hello.clone(), None));
    let edit = send_text(&alice_room, edit).await;
    let got = sync_until(&bob, "alice's edit", |_| {
        bob_messages.first(&room_id, |e| e.event_id == edit)
    })
    .await;
    assert_eq!(got.sender, alice_id);
    assert_eq!(got.content.body(), "* Hello Bob (edited)");
    match &got.content.relates_to {
        Some(Relation::Replacement(r)) => {
            assert_eq!(r.event_id, hello);
            assert_eq!(r.new_content.msgtype.body(), "Hello Bob (edited)");
        }
        other => panic!("expected an m.replace relation, got {other:?}"),
    }

    // a reaction to the first message, bob -> alice
    let reaction = bob_room
        .send(ReactionEventContent::new(Annotation::new(
            hello.clone(),
            "👍".to_owned(),
        )))
        .await
        .expect("react")
        .response
        .event_id;
    let got = sync_until(&alice, "bob's reaction", |_| {
        alice_reactions.first(&room_id, |e| e.event_id == reaction)
    })
    .await;
    assert_eq!(got.sender, bob_id);
    assert_eq!(got.content.relates_to.event_id, hello);
    assert_eq!(got.content.relates_to.key, "👍");

    // a thread on the first message: alice starts it, bob answers in it
    let mut in_thread = RoomMessageEventContent::text_plain("Thread start");
    in_thread.relates_to = Some(Relation::Thread(Thread::plain(
        hello.clone(),
        hello.clone(),
    )));
    let in_thread = send_text(&alice_room, in_thread).await;
    let got = sync_until(&bob, "alice's thread message", |_| {
        bob_messages.first(&room_id, |e| e.event_id == in_thread)
    })
    .await;
    assert_eq!(got.content.body(), "Thread start");
    match &got.content.relates_to {
        Some(Relation::Thread(t)) => {
            assert_eq!(t.event_id, hello);
            assert_eq!(
                t.in_reply_to.as_ref().map(|r| &r.event_id),
                Some(&hello),
                "reply fallback"
            );
            assert!(t.is_falling_back);
        }
        other => panic!("expected an m.thread relation, got {other:?}"),
    }
    let mut thread_reply = RoomMessageEventContent::text_plain("Answer in thread");
    thread_reply.relates_to = Some(Relation::Thread(Thread::reply(
        hello.clone(),
        in_thread.clone(),
    )));
    let thread_reply = send_text(&bob_room, thread_reply).await;
    let got = sync_until(&alice, "bob's thread reply", |_| {
        alice_messages.first(&room_id, |e| e.event_id == thread_reply)
    })
    .await;
    assert_eq!(got.sender, bob_id);
    assert_eq!(got.content.body(), "Answer in thread");
    match &got.content.relates_to {
        Some(Relation::Thread(t)) => {
            assert_eq!(t.event_id, hello);
            assert_eq!(
                t.in_reply_to.as_ref().map(|r| &r.event_id),
                Some(&in_thread)
            );
            assert!(!t.is_falling_back);
        }
        other => panic!("expected an m.thread relation, got {other:?}"),
    }

    // one more round of syncs: nothing arrives twice
    sync_until(&alice, "a quiet sync", |_| Some(())).await;
    sync_until(&bob, "a quiet sync", |_| Some(())).await;
    for id in [&hello, &edit, &in_thread] {
        assert_eq!(
            bob_messages.matching(&room_id, |e| &e.event_id == id).len(),
            1,
            "bob received {id} once"
        );
    }
    for id in [&reply, &thread_reply] {
        assert_eq!(
            alice_messages
                .matching(&room_id, |e| &e.event_id == id)
                .len(),
            1,
            "alice received {id} once"
        );
    }
    assert_eq!(
        alice_reactions
            .matching(&room_id, |e| e.event_id == reaction)
            .len(),
        1
    );
    // each side also sees its own messages come back, in the order they were sent
    let own: Vec<OwnedEventId> = alice_messages
        .matching(&room_id, |e| e.sender == alice_id)
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(own, vec![hello, edit, in_thread]);
}

#[tokio::test]
async fn typing_and_read_receipts() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = pair(&server).await;
    let (alice_id, bob_id) = (me(&alice), me(&bob));
    let (alice_room, bob_room) = (room(&alice, &room_id), room(&bob, &room_id));
    let bob_typing = Inbox::<SyncTypingEvent>::new(&bob);
    let bob_messages = Inbox::<OriginalSyncRoomMessageEvent>::new(&bob);
    let alice_receipts = Inbox::<SyncReceiptEvent>::new(&alice);

    // alice types: bob sees her in m.typing
    alice_room.typing_notice(true).await.expect("typing");
    sync_until(&bob, "alice typing", |_| {
        bob_typing
            .first(&room_id, |e| e.content.user_ids.contains(&alice_id))
            .map(|_| ())
    })
    .await;
    // she stops: a later m.typing no longer lists her
    let seen = bob_typing.len();
    alice_room.typing_notice(false).await.expect("stop typing");
    let stopped = sync_until(&bob, "alice no longer typing", |_| {
        bob_typing
            .matching_from(seen, &room_id, |e| !e.content.user_ids.contains(&alice_id))
            .into_iter()
            .next()
    })
    .await;
    assert!(stopped.content.user_ids.is_empty(), "{stopped:?}");

    // bob reads alice's message: alice gets his m.receipt
    let message = send_text(&alice_room, RoomMessageEventContent::text_plain("Read me")).await;
    sync_until(&bob, "alice's message", |_| {
        bob_messages.first(&room_id, |e| e.event_id == message)
    })
    .await;
    bob_room
        .send_single_receipt(
            SendReceiptType::Read,
            ReceiptThread::Unthreaded,
            message.clone(),
        )
        .await
        .expect("receipt");
    let receipt = sync_until(&alice, "bob's read receipt", |_| {
        alice_receipts.first(&room_id, |e| {
            e.content.user_receipt(&bob_id, ReceiptType::Read).is_some()
        })
    })
    .await;
    let (event_id, data) = receipt
        .content
        .user_receipt(&bob_id, ReceiptType::Read)
        .unwrap();
    assert_eq!(event_id, message);
    assert!(data.ts.is_some(), "the receipt carries its timestamp");
    assert_eq!(data.thread, ReceiptThread::Unthreaded);
}

const OFFER_SDP: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
a=sendrecv\r\na=rtpmap:111 opus/48000/2\r\n";
const ANSWER_SDP: &str = "v=0\r\no=- 1029384756 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
a=recvonly\r\na=rtpmap:111 opus/48000/2\r\n";

fn candidate(text: &str, mid: &str, index: u32) -> Candidate {
    let mut c = Candidate::new(text.to_owned());
    c.sdp_mid = Some(mid.to_owned());
    c.sdp_m_line_index = Some(index.into());
    c
}

#[tokio::test]
async fn voip_call_signalling() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = pair(&server).await;
    let (alice_id, bob_id) = (me(&alice), me(&bob));
    let (alice_room, bob_room) = (room(&alice, &room_id), room(&bob, &room_id));
    let call_id = OwnedVoipId::from("c-0123456789");
    let alice_party = OwnedVoipId::from("alice-party");
    let bob_party = OwnedVoipId::from("bob-party");

    let bob_invites = Inbox::<OriginalSyncCallInviteEvent>::new(&bob);
    let bob_candidates = Inbox::<OriginalSyncCallCandidatesEvent>::new(&bob);
    let bob_hangups = Inbox::<OriginalSyncCallHangupEvent>::new(&bob);
    let alice_answers = Inbox::<OriginalSyncCallAnswerEvent>::new(&alice);
    let alice_candidates = Inbox::<OriginalSyncCallCandidatesEvent>::new(&alice);
    // bob's client answers every call invite from someone else as it arrives
    {
        let bob_party = bob_party.clone();
        bob.add_event_handler(
            move |ev: OriginalSyncCallInviteEvent, room: Room, client: Client| {
                let bob_party = bob_party.clone();
                async move {
                    if Some(&*ev.sender) == client.user_id() {
                        return;
                    }
                    let answer = CallAnswerEventContent::version_1(
                        SessionDescription::new("answer".to_owned(), ANSWER_SDP.to_owned()),
                        ev.content.call_id.clone(),
                        bob_party,
                    );
                    room.send(answer).await.expect("answer the call");
                }
            },
        );
    }

    let mut invite = CallInviteEventContent::version_1(
        call_id.clone(),
        alice_party.clone(),
        uint!(60000),
        SessionDescription::new("offer".to_owned(), OFFER_SDP.to_owned()),
    );
    invite.invitee = Some(bob_id.clone());
    invite.sdp_stream_metadata.insert(
        "stream-1".to_owned(),
        StreamMetadata::new(StreamPurpose::UserMedia),
    );
    alice_room.send(invite).await.expect("call invite");

    let got = sync_until(&bob, "alice's call invite", |_| {
        bob_invites.first(&room_id, |e| e.content.call_id == call_id)
    })
    .await;
    assert_eq!(got.sender, alice_id);
    assert_eq!(got.content.version, VoipVersionId::V1);
    assert_eq!(got.content.party_id.as_ref(), Some(&alice_party));
    assert_eq!(got.content.lifetime, uint!(60000));
    assert_eq!(got.content.offer.session_type, "offer");
    assert_eq!(got.content.offer.sdp, OFFER_SDP);
    assert_eq!(got.content.invitee.as_ref(), Some(&bob_id));
    let metadata = got
        .content
        .sdp_stream_metadata
        .get("stream-1")
        .expect("stream metadata");
    assert_eq!(metadata.purpose, StreamPurpose::UserMedia);

    let answer = sync_until(&alice, "bob's answer", |_| {
        alice_answers.first(&room_id, |e| e.content.call_id == call_id)
    })
    .await;
    assert_eq!(answer.sender, bob_id);
    assert_eq!(answer.content.version, VoipVersionId::V1);
    assert_eq!(answer.content.party_id.as_ref(), Some(&bob_party));
    assert_eq!(answer.content.answer.session_type, "answer");
    assert_eq!(answer.content.answer.sdp, ANSWER_SDP);

    // ICE candidates both ways
    let alice_sent = vec![
        candidate(
            "candidate:1 1 UDP 2122252543 192.0.2.10 50000 typ host",
            "0",
            0,
        ),
        candidate(
            "candidate:2 1 UDP 1686052607 198.51.100.7 50001 typ srflx raddr 192.0.2.10 rport 50000",
            "0",
            0,
        ),
    ];
    alice_room
        .send(CallCandidatesEventContent::version_1(
            call_id.clone(),
            alice_party.clone(),
            alice_sent.clone(),
        ))
        .await
        .expect("alice's candidates");
    let bob_sent = vec![candidate(
        "candidate:3 1 UDP 2122252543 203.0.113.5 60000 typ host",
        "audio",
        1,
    )];
    bob_room
        .send(CallCandidatesEventContent::version_1(
            call_id.clone(),
            bob_party.clone(),
            bob_sent.clone(),
        ))
        .await
        .expect("bob's candidates");

    let got = sync_until(&bob, "alice's candidates", |_| {
        bob_candidates.first(&room_id, |e| e.sender == alice_id)
    })
    .await;
    assert_eq!(got.content.call_id, call_id);
    assert_eq!(got.content.party_id.as_ref(), Some(&alice_party));
    assert_eq!(got.content.version, VoipVersionId::V1);
    assert_candidates(&got.content.candidates, &alice_sent);
    let got = sync_until(&alice, "bob's candidates", |_| {
        alice_candidates.first(&room_id, |e| e.sender == bob_id)
    })
    .await;
    assert_eq!(got.content.call_id, call_id);
    assert_eq!(got.content.party_id.as_ref(), Some(&bob_party));
    assert_candidates(&got.content.candidates, &bob_sent);

    // alice hangs up
    alice_room
        .send(CallHangupEventContent::version_1(
            call_id.clone(),
            alice_party.clone(),
            Reason::UserHangup,
        ))
        .await
        .expect("hangup");
    let got = sync_until(&bob, "alice's hangup", |_| {
        bob_hangups.first(&room_id, |e| e.content.call_id == call_id)
    })
    .await;
    assert_eq!(got.sender, alice_id);
    assert_eq!(got.content.party_id.as_ref(), Some(&alice_party));
    assert_eq!(got.content.version, VoipVersionId::V1);
    assert_eq!(got.content.reason.as_str(), "user_hangup");

    // bob's handler answered exactly once, and the invite reached him once
    assert_eq!(
        alice_answers
            .matching(&room_id, |e| e.content.call_id == call_id)
            .len(),
        1
    );
    assert_eq!(
        bob_invites
            .matching(&room_id, |e| e.content.call_id == call_id)
            .len(),
        1
    );
}

fn assert_candidates(got: &[Candidate], sent: &[Candidate]) {
    assert_eq!(got.len(), sent.len(), "{got:?}");
    for (g, s) in got.iter().zip(sent) {
        assert_eq!(g.candidate, s.candidate);
        assert_eq!(g.sdp_mid, s.sdp_mid);
        assert_eq!(g.sdp_m_line_index, s.sdp_m_line_index);
    }
}

#[tokio::test]
async fn custom_event_types_arrive_intact() {
    let server = TestServer::start().await;
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let bob_timeline = Inbox::<Raw<AnySyncTimelineEvent>>::new(&bob);
    let alice_timeline = Inbox::<Raw<AnySyncTimelineEvent>>::new(&alice);
    let room_id = invite_and_join(&alice, &bob).await;
    let (alice_id, bob_id) = (me(&alice), me(&bob));
    let (alice_room, bob_room) = (room(&alice, &room_id), room(&bob, &room_id));
    let by_id = |id: &OwnedEventId| {
        let id = id.to_string();
        move |e: &Raw<AnySyncTimelineEvent>| json(e)["event_id"] == id.as_str()
    };

    // a custom message-like event, alice -> bob
    let content = json!({
        "body": "custom ✓",
        "nested": {"list": [1, -2, "three", null, {"deep": true}], "empty": {}},
        "number": 9007199254740991_i64,
        "escapes": "line\nbreak \"quoted\" \\ back\tslash",
    });
    let custom = alice_room
        .send_raw("org.example.custom", content.clone())
        .await
        .expect("send custom")
        .response
        .event_id;
    let got = sync_until(&bob, "alice's custom event", |_| {
        bob_timeline.first(&room_id, by_id(&custom))
    })
    .await;
    let got = json(&got);
    assert_eq!(got["type"], "org.example.custom", "{got}");
    assert_eq!(got["sender"], alice_id.as_str(), "{got}");
    assert_eq!(got["content"], content, "content intact");
    assert!(got["origin_server_ts"].is_u64(), "{got}");

    // and back, bob -> alice
    let back = json!({"reply": "custom back", "n": -1});
    let custom_back = bob_room
        .send_raw("org.example.custom", back.clone())
        .await
        .expect("send custom back")
        .response
        .event_id;
    let got = sync_until(&alice, "bob's custom event", |_| {
        alice_timeline.first(&room_id, by_id(&custom_back))
    })
    .await;
    let got = json(&got);
    assert_eq!(got["type"], "org.example.custom");
    assert_eq!(got["sender"], bob_id.as_str());
    assert_eq!(got["content"], back);

    // a custom state event arrives in the timeline with its state key
    let state_content = json!({"setting": "on", "level": 3});
    let custom_state = alice_room
        .send_state_event_raw("org.example.custom.state", "key-1", state_content.clone())
        .await
        .expect("send custom state")
        .event_id;
    let got = sync_until(&bob, "alice's custom state event", |_| {
        bob_timeline.first(&room_id, by_id(&custom_state))
    })
    .await;
    let got = json(&got);
    assert_eq!(got["type"], "org.example.custom.state");
    assert_eq!(got["state_key"], "key-1");
    assert_eq!(got["content"], state_content);
}

#[tokio::test]
async fn restored_session_resumes_from_its_sync_token() {
    let server = TestServer::start().await;
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    // every timeline event bob's first client ever received
    let first_seen = Inbox::<Raw<AnySyncTimelineEvent>>::new(&bob);
    let room_id = invite_and_join(&alice, &bob).await;
    let alice_room = room(&alice, &room_id);
    let bob_id = me(&bob);

    let before = send_text(
        &alice_room,
        RoomMessageEventContent::text_plain("before you left"),
    )
    .await;
    // bob syncs until he has it; the token of that last response is where he stopped
    let token = sync_until(&bob, "the message before leaving", |r| {
        timeline(r, &room_id)
            .iter()
            .any(|e| e["event_id"] == before.as_str())
            .then(|| r.next_batch.clone())
    })
    .await;
    // what an app writes to disk
    let saved = serde_json::to_string(&bob.matrix_auth().session().unwrap()).unwrap();
    let seen_before: BTreeSet<String> = first_seen
        .matching(&room_id, |_| true)
        .iter()
        .map(|e| json(e)["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(seen_before.contains(before.as_str()));
    drop(bob);

    // while bob is away
    let away1 = send_text(
        &alice_room,
        RoomMessageEventContent::text_plain("while you were away 1"),
    )
    .await;
    let away2 = send_text(
        &alice_room,
        RoomMessageEventContent::text_plain("while you were away 2"),
    )
    .await;

    // a new client restores the session; its store is empty, so it is given the token
    let session: MatrixSession = serde_json::from_str(&saved).unwrap();
    let restored = client(&server.base).await;
    restored
        .matrix_auth()
        .restore_session(session, RoomLoadSettings::default())
        .await
        .expect("restore");
    assert_eq!(restored.user_id(), Some(&*bob_id));
    let resumed = Inbox::<Raw<AnySyncTimelineEvent>>::new(&restored);
    let received = || -> Vec<Value> {
        resumed
            .matching(&room_id, |_| true)
            .iter()
            .map(json)
            .collect()
    };
    sync_until_from(
        &restored,
        SyncSettings::default().token(token).timeout(POLL),
        "the messages sent while away",
        |_| {
            let ids: Vec<Value> = received()
                .into_iter()
                .map(|e| e["event_id"].clone())
                .collect();
            (ids.contains(&json!(away1.as_str())) && ids.contains(&json!(away2.as_str())))
                .then_some(())
        },
    )
    .await;
    // one more sync from the stored token: nothing new, nothing again
    sync_until(&restored, "a quiet sync", |_| Some(())).await;

    let received = received();
    let ids: Vec<&str> = received
        .iter()
        .map(|e| e["event_id"].as_str().expect("event_id"))
        .collect();
    let position = |id: &OwnedEventId| ids.iter().position(|i| *i == id.as_str());
    assert!(
        position(&away1) < position(&away2),
        "in the order sent: {ids:?}"
    );
    let bodies: Vec<&Value> = received
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| &e["content"]["body"])
        .collect();
    assert_eq!(
        bodies,
        [
            &json!("while you were away 1"),
            &json!("while you were away 2")
        ],
        "exactly the messages sent while away: {received:?}"
    );
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "an event arrived twice: {ids:?}");
    let again: Vec<&&str> = ids.iter().filter(|i| seen_before.contains(**i)).collect();
    assert!(
        again.is_empty(),
        "events the first client had already seen arrived again: {again:?}"
    );
}

#[tokio::test]
async fn long_poll_returns_when_an_event_arrives() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = pair(&server).await;
    let alice_room = room(&alice, &room_id);
    // drain whatever is pending
    bob.sync_once(SyncSettings::default().timeout(Duration::ZERO))
        .await
        .expect("drain");

    // A long timeout: had the pending sync not been woken by the send, it would end empty
    // at its timeout and the assertion below would fail (no timing is asserted).
    let poller = bob.clone();
    let poll = tokio::spawn(async move {
        poller
            .sync_once(SyncSettings::default().timeout(Duration::from_secs(30)))
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let wake = send_text(&alice_room, RoomMessageEventContent::text_plain("wake up")).await;
    let response = tokio::time::timeout(Duration::from_secs(60), poll)
        .await
        .expect("the long poll returned")
        .expect("sync task")
        .expect("/sync");
    assert!(
        timeline(&response, &room_id)
            .iter()
            .any(|e| e["event_id"] == wake.as_str()),
        "the pending /sync returned with the new event: {response:?}"
    );
}
