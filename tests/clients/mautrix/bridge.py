"""A bridge as mautrix-python builds one (its state file, mx-state.json, goes in the working
directory, which the test makes temporary), against axon: it receives transactions, creates a
puppet by registration, replies as the puppet with a massaged timestamp, makes a room for
an alias of its namespace when asked, sees typing and to-device messages, and (MSC3202)
hears of device list changes and its puppet's one-time key counts.

usage: bridge.py <homeserver URL> <appservice port> <human access token> [--timeout S]
Exits 0 when every step worked; prints what it did.
"""

import argparse
import asyncio
import json
import logging
import sys

import aiohttp
from mautrix.api import Method
from mautrix.appservice import AppService
from mautrix.types import EventType, Membership, MessageType, TextMessageEventContent

AS_TOKEN = "as-token-of-the-bridge"
HS_TOKEN = "hs-token-of-the-bridge"
PUPPET = "@bridge_alice:localhost"
HUMAN = "@human:localhost"
MASSAGED_TS = 1500000000000


async def main(hs: str, port: int, human_token: str) -> None:
    seen = {"invite": asyncio.Event(), "message": asyncio.Event(), "typing": asyncio.Event(),
            "to_device": asyncio.Event(), "device_lists": asyncio.Event(),
            "otk_counts": asyncio.Event()}
    puppet_device = {}

    async def query_alias(alias: str):
        # An alias of the namespace that does not exist yet: made on demand.
        if alias == "#bridge_lookup:localhost":
            room_id = await appservice.intent.create_room(alias_localpart="bridge_lookup")
            # mautrix answers 404 for an empty (falsy) answer.
            return {"room_id": room_id}
        return None

    appservice = AppService(
        server=hs, domain="localhost", as_token=AS_TOKEN, hs_token=HS_TOKEN,
        bot_localpart="bridgebot", id="bridge", query_alias=query_alias,
        ephemeral_events=True, encryption_events=True,
    )

    @appservice.matrix_event_handler
    async def on_event(evt) -> None:
        if evt.type == EventType.ROOM_MEMBER and evt.state_key == PUPPET \
                and evt.content.membership == Membership.INVITE:
            seen["invite"].set()
        elif evt.type == EventType.ROOM_MESSAGE and evt.sender == HUMAN \
                and evt.content.body == "hello bridge":
            seen["message"].set()
        elif evt.type == EventType.TYPING and HUMAN in (evt.content.user_ids or []):
            seen["typing"].set()

    async def on_to_device(evt) -> None:
        if evt.to_user_id == PUPPET and evt.sender == HUMAN:
            seen["to_device"].set()

    async def on_device_lists(lists) -> None:
        if HUMAN in (lists.changed or []):
            seen["device_lists"].set()

    async def on_otk_counts(counts) -> None:
        count = counts.get(PUPPET, {}).get(puppet_device.get("id"))
        if count is not None and count.signed_curve25519 == 2:
            seen["otk_counts"].set()

    appservice.to_device_handler = on_to_device
    appservice.device_list_handler = on_device_lists
    appservice.otk_handler = on_otk_counts
    await appservice.start(host="127.0.0.1", port=port)
    try:
        async with aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {human_token}"}) as human:
            async def call(method: str, path: str, body=None):
                async with human.request(method, f"{hs}/_matrix/client/v3{path}",
                                         json=body) as r:
                    text = await r.text()
                    if r.status != 200:
                        raise RuntimeError(f"{method} {path}: {r.status} {text}")
                    return json.loads(text)

            bot = appservice.intent
            await bot.ensure_registered()
            puppet = bot.user(PUPPET)
            await puppet.ensure_registered()
            print("puppet registered")

            room = (await call("POST", "/createRoom", {"invite": [PUPPET]}))["room_id"]
            await asyncio.wait_for(seen["invite"].wait(), 20)
            print("invite received in a transaction")
            await puppet.join_room_by_id(room)
            await call("PUT", f"/rooms/{room}/send/m.room.message/m1",
                       {"msgtype": "m.text", "body": "hello bridge"})
            await asyncio.wait_for(seen["message"].wait(), 20)
            print("message received in a transaction")

            await puppet.send_message_event(
                room, EventType.ROOM_MESSAGE,
                TextMessageEventContent(msgtype=MessageType.TEXT, body="hi from the bridge"),
                timestamp=MASSAGED_TS)
            history = await call("GET", f"/rooms/{room}/messages?dir=b&limit=10")
            reply = [e for e in history["chunk"] if e.get("sender") == PUPPET
                     and e["content"].get("body") == "hi from the bridge"]
            assert reply, history
            assert reply[0]["origin_server_ts"] == MASSAGED_TS, reply[0]
            print("puppet replied with a massaged timestamp")

            found = await call("GET", "/directory/room/%23bridge_lookup:localhost")
            assert found["room_id"].startswith("!"), found
            print("alias made on demand:", found["room_id"])

            await call("PUT", f"/rooms/{room}/typing/{HUMAN}", {"typing": True, "timeout": 30000})
            await asyncio.wait_for(seen["typing"].wait(), 20)
            print("typing received")

            login = await puppet.api.request(
                Method.POST, "/_matrix/client/v3/login",
                {"type": "m.login.application_service",
                 "identifier": {"type": "m.id.user", "user": "bridge_alice"}})
            device = login["device_id"]
            await call("PUT", "/sendToDevice/org.example.ping/td1",
                       {"messages": {PUPPET: {device: {"ping": 1}}}})
            await asyncio.wait_for(seen["to_device"].wait(), 20)
            print("to-device message received")

            # The human's device gets keys: the bridge hears the device list changed.
            me = await call("GET", "/account/whoami")
            human_device = me["device_id"]
            await call("POST", "/keys/upload", {"device_keys": {
                "user_id": HUMAN, "device_id": human_device,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                "keys": {f"curve25519:{human_device}": "c", f"ed25519:{human_device}": "e"},
                "signatures": {}}})
            await asyncio.wait_for(seen["device_lists"].wait(), 20)
            print("device list change received")

            # The puppet's device uploads two one-time keys; its next message carries
            # the count.
            puppet_device["id"] = device
            async with aiohttp.ClientSession(
                    headers={"Authorization": f"Bearer {login['access_token']}"}) as p:
                async with p.post(f"{hs}/_matrix/client/v3/keys/upload", json={
                        "one_time_keys": {"signed_curve25519:K1": {"key": "k1"},
                                          "signed_curve25519:K2": {"key": "k2"}}}) as r:
                    assert r.status == 200, await r.text()
            await puppet.send_text(room, "counting keys")
            await asyncio.wait_for(seen["otk_counts"].wait(), 20)
            print("one-time key counts received")
    finally:
        await appservice.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("homeserver")
    parser.add_argument("port", type=int)
    parser.add_argument("human_token")
    parser.add_argument("--timeout", type=int, default=120)
    args = parser.parse_args()
    # mautrix's log (requests, transactions) goes to stderr, which a failing test shows.
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    try:
        asyncio.run(asyncio.wait_for(main(args.homeserver, args.port, args.human_token),
                                     args.timeout))
    except Exception as e:  # noqa: BLE001 - report anything, fail the test
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        raise
