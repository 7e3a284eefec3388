"""Messages as they arrive, over the `graphql-transport-ws` websocket.

    .venv/bin/python -m api.examples.live                       # as Dr Martin: prints each message
    .venv/bin/python -m api.examples.live --send "Bonjour !"    # as Jean Petit: replies to her

The first logs in as the demo professional, subscribes to `messageReceived` and prints every
message of her conversations as it is sent; the second, from another terminal, logs in as
a patient and posts in their latest open conversation. Only the standard library and
`websockets` are used: copy it into any project.

No message is missed between the page read at start and the live stream: the subscription
starts `after` the `cursor` of the newest message already there, so the server first replays
anything committed since (the protocol never confirms that a subscription is active). A
client that loses its socket resubscribes the same way, `after` the last message it got.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

DEFAULT_URL = os.environ.get("ESPACE_SANTE_URL", "http://127.0.0.1:8000")
PASSWORD = "demo-password-2026"
PROFESSIONAL = "dr.martin@demo.espace-sante.localhost"
PATIENT = "jean@demo.espace-sante.localhost"

LOGIN = """
mutation Login($email: String!, $password: String!) {
  login(input: {email: $email, password: $password}) {
    token
    challenge { id }
    viewer {
      ... on Professional { firstName lastName }
      ... on Patient { firstName lastName }
    }
  }
}"""
DASHBOARD = """
query Dashboard {
  viewer {
    ... on Professional {
      unreadMessageCount
      conversations(first: 1) { totalCount nodes { lastMessage { cursor } } }
    }
  }
}"""
SUBSCRIPTION = """
subscription Live($after: String) {
  messageReceived(after: $after) {
    sentAt
    body
    sender {
      ... on Patient { firstName lastName }
      ... on Professional { firstName lastName }
    }
    onBehalfOf { firstName lastName }
    conversation { subject }
    attachments { filename }
  }
}"""
MY_CONVERSATIONS = """
query MyConversations {
  viewer {
    ... on Patient { conversations(first: 20) { edges { node { id subject closed } } } }
  }
}"""
SEND = """
mutation Send($conversationId: ID!, $body: String!) {
  sendMessage(input: {conversationId: $conversationId, body: $body}) { message { id } }
}"""


class Failure(Exception):
    """What went wrong, in one line."""


def post(url: str, query: str, variables: dict[str, Any], token: str | None = None) -> Any:
    """One GraphQL request over HTTP; its `data`, or `Failure` with the first error."""
    request = urllib.request.Request(  # noqa: S310 (the URL is the user's own --url)
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={
            "Content-Type": "application/json",
            "Accept": "application/graphql-response+json, application/json",
            **({"Authorization": f"Bearer {token}"} if token else {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            body = json.load(response)
    except urllib.error.HTTPError as exc:  # GraphQL-over-HTTP answers 4xx with a JSON body
        body = json.load(exc)
    except urllib.error.URLError as exc:
        raise Failure(f"cannot reach {url}: {exc.reason} (is ./scripts/demo running?)") from exc
    if body.get("errors"):
        error = body["errors"][0]
        code = error.get("extensions", {}).get("code", "")
        raise Failure(f"{error.get('message')} {code}".strip())
    return body["data"]


def log_in(url: str, email: str, password: str) -> tuple[str, str]:
    """The token and the viewer's name."""
    payload = post(url, LOGIN, {"email": email, "password": password})["login"]
    if payload["token"] is None:
        raise Failure("two-factor login is on: run the demo with TWO_FACTOR=false")
    viewer = payload["viewer"] or {}
    return payload["token"], f"{viewer.get('firstName', '')} {viewer.get('lastName', '')}".strip()


def newest_cursor(url: str, token: str) -> tuple[str | None, int, int]:
    """The cursor of the newest message of the viewer's conversations (None when there is
    none), the number of conversations and of unread messages."""
    viewer = post(url, DASHBOARD, {}, token)["viewer"]
    conversations = viewer["conversations"]
    cursor = None
    if conversations["nodes"]:  # latest first: its last message is the newest
        cursor = (conversations["nodes"][0]["lastMessage"] or {}).get("cursor")
    return cursor, conversations["totalCount"], viewer["unreadMessageCount"]


def describe(message: dict[str, Any]) -> str:
    sent = datetime.fromisoformat(message["sentAt"]).astimezone()
    sender = message["sender"] or {}
    who = f"{sender.get('firstName', '')} {sender.get('lastName', '')}".strip() or "?"
    if message["onBehalfOf"]:
        who += f" (for {message['onBehalfOf']['firstName']})"
    subject = (message["conversation"] or {}).get("subject", "")
    files = "".join(f" [{a['filename']}]" for a in message["attachments"])
    return f"[{sent:%H:%M:%S}] {who} · {subject}: {message['body']}{files}"


async def listen(url: str, email: str, password: str, count: int | None) -> None:
    token, name = await asyncio.to_thread(log_in, url, email, password)
    cursor, conversations, unread = await asyncio.to_thread(newest_cursor, url, token)
    print(f"Logged in as {name}: {conversations} conversations, {unread} unread messages.")
    ws_url = "ws" + url.removeprefix("http") + "/graphql"
    async with connect(ws_url, subprotocols=[Subprotocol("graphql-transport-ws")]) as socket:
        await socket.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        )
        ack = json.loads(await socket.recv())
        if ack.get("type") != "connection_ack":
            raise Failure(f"the server refused the connection: {ack}")
        subscribe = {"query": SUBSCRIPTION, "variables": {"after": cursor}}
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
        print("Listening for new messages (Ctrl-C to stop)…", flush=True)
        received = 0
        async for raw in socket:
            event = json.loads(raw)
            if event["type"] == "ping":
                await socket.send(json.dumps({"type": "pong"}))
            elif event["type"] == "next":
                if event["payload"].get("errors"):
                    raise Failure(event["payload"]["errors"][0]["message"])
                print(describe(event["payload"]["data"]["messageReceived"]), flush=True)
                received += 1
                if count is not None and received >= count:
                    return
            elif event["type"] == "error":
                raise Failure(event["payload"][0]["message"])
            elif event["type"] == "complete":
                return


def send(url: str, email: str, password: str, body: str) -> None:
    token, name = log_in(url, email, password)
    edges = post(url, MY_CONVERSATIONS, {}, token)["viewer"]["conversations"]["edges"]
    open_ones = [edge["node"] for edge in edges if not edge["node"]["closed"]]
    if not open_ones:
        raise Failure(f"{name} has no open conversation (only professionals start one)")
    conversation = open_ones[0]  # the latest
    post(url, SEND, {"conversationId": conversation["id"], "body": body}, token)
    print(f"{name} sent to «{conversation['subject']}»: {body}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m api.examples.live",
        description="Print messages as they arrive (professional), or send one (patient).",
    )
    parser.add_argument("--url", default=DEFAULT_URL, help="the server (default: %(default)s)")
    parser.add_argument(
        "--email", help=f"login (default: {PROFESSIONAL}, or {PATIENT} with --send)"
    )
    parser.add_argument("--password", default=PASSWORD, help="password (default: the demo's)")
    parser.add_argument("--send", metavar="TEXT", help="post TEXT in your latest open conversation")
    parser.add_argument("--count", type=int, help="stop after this many messages")
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")
    try:
        if args.send is not None:
            send(url, args.email or PATIENT, args.password, args.send)
        else:
            asyncio.run(listen(url, args.email or PROFESSIONAL, args.password, args.count))
    except Failure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ConnectionClosed as exc:
        print(f"error: the server closed the connection ({exc})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
