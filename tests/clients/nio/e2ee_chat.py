#!/usr/bin/env python3
"""An encrypted chat between two matrix-nio clients, the way nio bots do it.

Usage: e2ee_chat.py HOMESERVER_URL [--timeout SECONDS]

Two clients register (nio's register: m.login.dummy), set display names and run nio's
sync loop (which uploads device and one-time keys and queries keys). Alice creates a room
with m.room.encryption (m.megolm.v1.aes-sha2) and invites Bob; Bob sees the invite (the
inviter, the room name and the stripped state) before he joins with nio's join (POST
/join with no body). Alice queries Bob's keys, verifies his device, claims a one-time key
and shares her Megolm session explicitly; Bob sends through room_send with
ignore_unverified_devices=True (joined members, keys query, claim and share done by nio).
Messages go both ways, and each side must see the other's messages decrypted from
Megolm: RoomMessageText with the right body, decrypted, from the sender's identity key,
and no undecryptable MegolmEvent. Both sides must see each other's display names.

Exits 0 and prints "OK ..." on success; on any failed check prints "FAIL: ..." and exits
1. Everything is bounded by --timeout (default 120 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import tempfile
import time
import traceback
import urllib.request
from collections.abc import Callable

from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    InviteMemberEvent,
    JoinResponse,
    KeysClaimResponse,
    KeysQueryResponse,
    KeysUploadResponse,
    MegolmEvent,
    ProfileSetDisplayNameResponse,
    RegisterResponse,
    RoomCreateResponse,
    RoomGetStateEventResponse,
    RoomInviteResponse,
    RoomMessageText,
    RoomSendResponse,
    ShareGroupSessionResponse,
)

MEGOLM = "m.megolm.v1.aes-sha2"
STEP_TIMEOUT = 30.0


class Failure(Exception):
    """A check that did not hold."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)


def log(message: str) -> None:
    print(f"[{time.monotonic() - START:6.2f}s] {message}", flush=True)


START = time.monotonic()


class Person:
    """One nio client, its sync loop and what it has seen."""

    def __init__(self, homeserver: str, name: str, display_name: str, store: str):
        self.name = name
        self.display_name = display_name
        self.username = f"nio_{name}_{secrets.token_hex(4)}"
        self.password = secrets.token_urlsafe(16)
        config = AsyncClientConfig(
            encryption_enabled=True,
            store_sync_tokens=True,
            max_timeouts=3,
            max_limit_exceeded=0,
            request_timeout=30,
        )
        path = os.path.join(store, name)
        os.makedirs(path)
        self.client = AsyncClient(homeserver, store_path=path, config=config)
        self.messages: list[RoomMessageText] = []
        self.undecryptable: list[MegolmEvent] = []
        self.invites: list[InviteMemberEvent] = []
        self.errors: list[ErrorResponse] = []
        self.responses: dict[str, int] = {}
        self.uploads: list[KeysUploadResponse] = []
        self.sync_task: asyncio.Task | None = None

        self.client.add_event_callback(self._on_text, RoomMessageText)
        self.client.add_event_callback(self._on_megolm, MegolmEvent)
        self.client.add_event_callback(self._on_invite, InviteMemberEvent)
        self.client.add_response_callback(self._on_error, ErrorResponse)
        self.client.add_response_callback(
            self._on_keys_response, (KeysUploadResponse, KeysQueryResponse, KeysClaimResponse)
        )

    @property
    def user_id(self) -> str:
        return self.client.user_id

    async def _on_text(self, room, event: RoomMessageText) -> None:
        self.messages.append(event)

    async def _on_megolm(self, room, event: MegolmEvent) -> None:
        self.undecryptable.append(event)

    async def _on_invite(self, room, event: InviteMemberEvent) -> None:
        self.invites.append(event)

    async def _on_error(self, response: ErrorResponse) -> None:
        self.errors.append(response)

    async def _on_keys_response(self, response) -> None:
        if isinstance(response, KeysUploadResponse):
            self.uploads.append(response)
        kind = type(response).__name__
        self.responses[kind] = self.responses.get(kind, 0) + 1

    def no_errors(self) -> None:
        check(
            not self.errors,
            f"{self.name}'s sync loop got error responses: "
            + "; ".join(f"{type(e).__name__}: {e}" for e in self.errors),
        )

    async def register(self) -> None:
        response = await self.client.register(
            self.username, self.password, device_name=f"nio {self.name}"
        )
        check(
            isinstance(response, RegisterResponse),
            f"{self.name}: register failed: {response}",
        )
        check(
            self.client.logged_in and self.client.olm is not None,
            f"{self.name}: not logged in with an olm account after register",
        )
        log(f"{self.name} registered as {self.user_id} device {self.client.device_id}")
        response = await self.client.set_displayname(self.display_name)
        check(
            isinstance(response, ProfileSetDisplayNameResponse),
            f"{self.name}: set_displayname failed: {response}",
        )

    def start_syncing(self) -> None:
        self.sync_task = asyncio.ensure_future(
            self.client.sync_forever(timeout=5000, full_state=True)
        )

    def sync_alive(self) -> None:
        if self.sync_task is not None and self.sync_task.done():
            exc = self.sync_task.exception()
            raise Failure(f"{self.name}'s sync loop stopped: {exc!r}")

    async def close(self) -> None:
        if self.sync_task is not None and not self.sync_task.done():
            self.sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.sync_task
        await self.client.close()

    def device_of(self, other: Person):
        devices = {d.id: d for d in self.client.device_store.active_user_devices(other.user_id)}
        return devices.get(other.client.device_id)


async def wait_for(what: str, predicate: Callable[[], bool], *watch: Person) -> None:
    """Polls `predicate` until it holds while the sync loops of `watch` run meanwhile."""
    deadline = time.monotonic() + STEP_TIMEOUT
    while True:
        for person in watch:
            person.sync_alive()
        if predicate():
            return
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {STEP_TIMEOUT:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


def raw_sync(homeserver: str, token: str) -> dict:
    """One plain /sync, for what nio parses away (the full stripped invite state)."""
    request = urllib.request.Request(
        f"{homeserver}/_matrix/client/v3/sync?timeout=0",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


async def expect_message(
    reader: Person, sender: Person, room_id: str, body: str
) -> RoomMessageText:
    """Waits until `reader` decrypted `sender`'s message `body`, and checks how."""

    def seen() -> RoomMessageText | None:
        reader.sync_alive()
        for event in reader.messages:
            if event.sender == sender.user_id and event.body == body:
                return event
        return None

    def undecryptable_from_sender() -> list[MegolmEvent]:
        return [e for e in reader.undecryptable if e.sender == sender.user_id]

    deadline = time.monotonic() + STEP_TIMEOUT
    while (event := seen()) is None:
        bad = undecryptable_from_sender()
        if bad:
            raise Failure(
                f"{reader.name} could not decrypt {sender.name}'s message(s): "
                + "; ".join(
                    f"{e.event_id} session {e.session_id} sender_key {e.sender_key}" for e in bad
                )
            )
        if time.monotonic() > deadline:
            raise Failure(
                f"{reader.name} did not receive {sender.name}'s message {body!r} within "
                f"{STEP_TIMEOUT:.0f}s (texts seen: {[e.body for e in reader.messages]!r})"
            )
        await asyncio.sleep(0.05)

    check(
        isinstance(event, RoomMessageText),
        f"{reader.name}: {body!r} arrived as {type(event).__name__}",
    )
    check(event.decrypted, f"{reader.name}: {body!r} arrived in clear, not Megolm-encrypted")
    check(
        event.session_id is not None
        and event.sender_key == sender.client.olm.account.identity_keys["curve25519"],
        f"{reader.name}: {body!r} was not decrypted with {sender.name}'s Megolm session "
        f"(sender_key {event.sender_key}, session {event.session_id})",
    )
    check(
        room_id in reader.client.rooms and event.event_id,
        f"{reader.name}: {body!r} has no event ID or room",
    )
    check(
        not undecryptable_from_sender(),
        f"{reader.name} also got undecryptable events from {sender.name}",
    )
    log(
        f"{reader.name} decrypted {sender.name}'s {body!r} "
        f"(event {event.event_id}, verified={event.verified})"
    )
    return event


async def send_text(sender: Person, room_id: str, body: str, **kwargs) -> str:
    response = await sender.client.room_send(
        room_id,
        "m.room.message",
        {"msgtype": "m.text", "body": body},
        **kwargs,
    )
    check(
        isinstance(response, RoomSendResponse),
        f"{sender.name}: room_send failed: {response}",
    )
    return response.event_id


async def scenario(homeserver: str, store: str) -> None:
    alice = Person(homeserver, "alice", "Alice Nio", store)
    bob = Person(homeserver, "bob", "Bob Nio", store)
    try:
        await run(homeserver, alice, bob)
    finally:
        await alice.close()
        await bob.close()


async def run(homeserver: str, alice: Person, bob: Person) -> None:
    # Registration, then nio's sync loop: keys upload after the first sync.
    await alice.register()
    await bob.register()
    for person in (alice, bob):
        person.start_syncing()
    for person in (alice, bob):
        await wait_for(
            f"{person.name}'s keys upload",
            lambda p=person: bool(p.uploads) and not p.client.should_upload_keys,
            person,
        )
        person.no_errors()
        count = person.uploads[0].signed_curve25519_count
        check(
            count > 0,
            f"{person.name}: keys/upload counts {count} signed_curve25519 one-time keys",
        )
        log(f"{person.name} uploaded device keys and {count} one-time keys")

    # Alice: an encrypted room, and an invitation for Bob.
    room_name = f"nio e2ee {secrets.token_hex(3)}"
    created = await alice.client.room_create(
        name=room_name,
        initial_state=[
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": MEGOLM},
            }
        ],
    )
    check(isinstance(created, RoomCreateResponse), f"alice: room_create failed: {created}")
    room_id = created.room_id
    log(f"alice created {room_id}")
    await wait_for(
        "alice to see her room as encrypted",
        lambda: room_id in alice.client.rooms and alice.client.rooms[room_id].encrypted,
        alice,
    )
    state = await alice.client.room_get_state_event(room_id, "m.room.encryption")
    check(
        isinstance(state, RoomGetStateEventResponse) and state.content.get("algorithm") == MEGOLM,
        f"alice: the room's m.room.encryption state is {state}",
    )
    invited = await alice.client.room_invite(room_id, bob.user_id)
    check(isinstance(invited, RoomInviteResponse), f"alice: room_invite failed: {invited}")

    # Bob sees the invite before joining: the inviter, the room's name, his membership.
    await wait_for(
        "bob to see alice's invite",
        lambda: room_id in bob.client.invited_rooms,
        bob,
    )
    invite_room = bob.client.invited_rooms[room_id]
    check(
        invite_room.inviter == alice.user_id,
        f"bob: invite's inviter is {invite_room.inviter!r}, not {alice.user_id}",
    )
    check(
        invite_room.name == room_name,
        f"bob: invite state's room name is {invite_room.name!r}, not {room_name!r}",
    )
    own = [
        e
        for e in bob.invites
        if e.state_key == bob.user_id and e.membership == "invite" and e.sender == alice.user_id
    ]
    check(own, f"bob: no m.room.member invite from alice in the invite state ({bob.invites!r})")
    check(room_id not in bob.client.rooms, "bob: the room is joined before he joined it")
    # The stripped state nio does not model: the spec's recommended create, join rules
    # and encryption events, so a client knows the room will be encrypted.
    sync = await asyncio.to_thread(raw_sync, homeserver, bob.client.access_token)
    stripped = sync.get("rooms", {}).get("invite", {}).get(room_id, {}).get("invite_state", {})
    types = {e.get("type"): e for e in stripped.get("events", [])}
    for wanted in ("m.room.create", "m.room.join_rules", "m.room.encryption"):
        check(
            wanted in types,
            f"bob: invite_state has no {wanted} (it has {sorted(types)})",
        )
    algorithm = types["m.room.encryption"].get("content", {}).get("algorithm")
    check(algorithm == MEGOLM, f"bob: invite_state's m.room.encryption algorithm is {algorithm!r}")
    log(f"bob sees the invite from {invite_room.inviter} to {invite_room.name!r}: {sorted(types)}")

    # Bob joins with nio's join (POST /join/{room} with no body).
    joined = await bob.client.join(room_id)
    check(isinstance(joined, JoinResponse), f"bob: join failed: {joined}")
    check(joined.room_id == room_id, f"bob: join answered room {joined.room_id!r}")
    await wait_for(
        "bob to see the room joined and encrypted",
        lambda: (
            room_id in bob.client.rooms
            and room_id not in bob.client.invited_rooms
            and bob.client.rooms[room_id].encrypted
            and alice.user_id in bob.client.rooms[room_id].users
        ),
        bob,
    )
    await wait_for(
        "alice to see bob join",
        lambda: (
            bob.user_id in alice.client.rooms[room_id].users
            and bob.user_id not in alice.client.rooms[room_id].invited_users
        ),
        alice,
    )
    log("bob joined; both see each other in the room")

    # Display names, from the member events each side synced.
    for reader, other in ((alice, bob), (bob, alice)):
        room = reader.client.rooms[room_id]
        name = room.user_name(other.user_id)
        check(
            name == other.display_name,
            f"{reader.name}: {other.name}'s display name in the room is {name!r}, "
            f"not {other.display_name!r}",
        )
        own_name = room.user_name(reader.user_id)
        check(
            own_name == reader.display_name,
            f"{reader.name}: own display name in the room is {own_name!r}",
        )
    log("display names: alice sees 'Bob Nio', bob sees 'Alice Nio'")

    # Alice: keys query (by her sync loop), explicit verification, claim, share.
    await wait_for(
        "alice to know bob's device (keys query)",
        lambda: alice.device_of(bob) is not None,
        alice,
    )
    bob_device = alice.device_of(bob)
    check(
        bob_device.ed25519 == bob.client.olm.account.identity_keys["ed25519"]
        and bob_device.curve25519 == bob.client.olm.account.identity_keys["curve25519"],
        "alice: bob's device keys from keys query are not his identity keys",
    )
    check(
        bob_device.display_name == "nio bob",
        f"alice: bob's device display name is {bob_device.display_name!r}",
    )
    alice.client.verify_device(bob_device)
    log(f"alice queried and verified bob's device {bob_device.id}")

    if not alice.client.rooms[room_id].members_synced:
        members = await alice.client.joined_members(room_id)
        check(
            not isinstance(members, ErrorResponse),
            f"alice: joined_members failed: {members}",
        )
    missing = alice.client.get_missing_sessions(room_id)
    check(
        bob.client.device_id in missing.get(bob.user_id, []),
        f"alice: no Olm session missing for bob's device before claiming ({missing!r})",
    )
    claimed = await alice.client.keys_claim(missing)
    check(isinstance(claimed, KeysClaimResponse), f"alice: keys_claim failed: {claimed}")
    bob_keys = claimed.one_time_keys.get(bob.user_id, {}).get(bob.client.device_id, {})
    check(
        any(k.startswith("signed_curve25519:") for k in bob_keys),
        f"alice: keys_claim gave no signed_curve25519 key for bob's device: "
        f"{claimed.one_time_keys!r} failures {claimed.failures!r}",
    )
    check(
        not alice.client.get_missing_sessions(room_id),
        "alice: still missing Olm sessions after the claim",
    )
    shared = await alice.client.share_group_session(room_id)
    check(
        isinstance(shared, ShareGroupSessionResponse),
        f"alice: share_group_session failed: {shared}",
    )
    check(
        (bob.user_id, bob.client.device_id) in shared.users_shared_with,
        f"alice: Megolm session not shared with bob's device ({shared.users_shared_with!r})",
    )
    log("alice claimed a one-time key of bob's and shared her Megolm session")

    # Messages both ways.
    first = "hello bob, from alice (megolm)"
    await send_text(alice, room_id, first)
    received = await expect_message(bob, alice, room_id, first)
    check(not received.verified, "bob: alice's message is verified, yet bob verified nothing")

    reply = "hi alice, bob here (megolm)"
    await send_text(bob, room_id, reply, ignore_unverified_devices=True)
    received = await expect_message(alice, bob, room_id, reply)
    check(
        received.verified,
        "alice: bob's message is not marked verified, though she verified his device",
    )

    again = "second message from alice, same session"
    await send_text(alice, room_id, again)
    await expect_message(bob, alice, room_id, again)

    for person in (alice, bob):
        person.sync_alive()
        person.no_errors()
        check(
            not person.undecryptable,
            f"{person.name} has undecryptable events: {[e.event_id for e in person.undecryptable]}",
        )
        check(
            person.responses.get("KeysQueryResponse", 0) > 0,
            f"{person.name}'s sync loop never queried keys",
        )
    log(f"key requests seen: alice {alice.responses}, bob {bob.responses}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("homeserver", help="e.g. http://127.0.0.1:8008")
    parser.add_argument("--timeout", type=float, default=120.0, help="for the whole run")
    args = parser.parse_args()
    homeserver = args.homeserver.rstrip("/")

    logging.basicConfig(
        level=os.environ.get("NIO_LOG", "WARNING"),
        format="%(levelname)s %(name)s: %(message)s",
    )

    # A backstop should the event loop itself be stuck.
    def hard_timeout(signum, frame):
        print(f"FAIL: the whole run took over {args.timeout + 15:g}s", file=sys.stderr)
        os._exit(1)

    signal.signal(signal.SIGALRM, hard_timeout)
    signal.alarm(int(args.timeout) + 15)

    with tempfile.TemporaryDirectory(prefix="nio-e2ee-") as store:
        try:
            asyncio.run(asyncio.wait_for(scenario(homeserver, store), args.timeout))
        except Failure as failure:
            print(f"FAIL: {failure}", file=sys.stderr)
            return 1
        except TimeoutError:
            print(f"FAIL: the whole run took over {args.timeout:g}s", file=sys.stderr)
            return 1
        except Exception:  # noqa: BLE001 (any crash is a failure, with its traceback)
            traceback.print_exc()
            print("FAIL: unexpected exception (above)", file=sys.stderr)
            return 1
    print(f"OK e2ee chat with matrix-nio in {time.monotonic() - START:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
