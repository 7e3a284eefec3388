"""Helpers for the messaging tests: the operations as a client sends them, and snapshots."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

import httpx

from api.config import Settings
from models.audit import AccessEvent
from models.document import Document
from models.message import Attachment, Conversation, Message, ReadMark
from tests.factories import Person, Staff
from tests.graphql import GraphQLResult, gql

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 16
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 16
TIFF = b"II*\x00\x08\x00\x00\x00" + b"\x00" * 16
RTF = b"{\\rtf1\\ansi Compte rendu de consultation}"
TEXT = "Résultats normaux, à revoir dans 6 mois.\n".encode()
EXECUTABLE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48

File = tuple[str, bytes, str]  # filename, bytes, declared type

MESSAGE_FIELDS = """id body sentAt readAt
  sender { __typename ... on Patient { id firstName } ... on Professional { id lastName } }
  onBehalfOf { id firstName }
  attachments { id filename mimeType size sha256 contentUrl }"""
CONVERSATION_FIELDS = "id subject closed unreadCount patient { id firstName } professional { id }"

START = f"""mutation($input: StartConversationInput!) {{ startConversation(input: $input) {{
  conversation {{ {CONVERSATION_FIELDS} }} message {{ {MESSAGE_FIELDS} }} }} }}"""
SEND = f"""mutation($input: SendMessageInput!) {{ sendMessage(input: $input) {{
  message {{ {MESSAGE_FIELDS} }} }} }}"""
MARK_READ = """mutation($id: ID!) { markConversationRead(input: {conversationId: $id}) {
  conversation { id unreadCount } } }"""
CLOSE = """mutation($id: ID!) { closeConversation(input: {conversationId: $id}) {
  conversation { id closed } } }"""
SAVE = """mutation($input: SaveAttachmentInput!) { saveAttachment(input: $input) {
  document { id title category mimeType size sha256 hidden
    author { __typename ... on Patient { id } } } } }"""
CONVERSATION = f"""query($id: ID!) {{ node(id: $id) {{ ... on Conversation {{
  {CONVERSATION_FIELDS} messages(first: 50) {{ totalCount edges {{ node {{ {MESSAGE_FIELDS} }} }} }}
}} }} }}"""
NODE = "query($id: ID!) { node(id: $id) { __typename id } }"


def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def multipart(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any],
    files: list[File],
    *,
    token: str | None,
) -> GraphQLResult:
    """A GraphQL multipart request whose files fill `variables.input.attachments`."""
    variables = {"input": {**variables["input"], "attachments": [None] * len(files)}}
    mapping = {str(i): [f"variables.input.attachments.{i}"] for i in range(len(files))}
    response = await client.post(
        "/graphql",
        data={
            "operations": json.dumps({"query": query, "variables": variables}),
            "map": json.dumps(mapping),
        },
        files=[(str(i), file) for i, file in enumerate(files)],
        headers={**auth(token), "Apollo-Require-Preflight": "true"},
    )
    return GraphQLResult(response)


async def start(
    client: httpx.AsyncClient,
    token: str | None,
    patient_id: str,
    *,
    subject: str = "Résultats de votre bilan",
    body: str = "Bonjour, voici vos résultats.",
    files: list[File] | None = None,
) -> GraphQLResult:
    variables = {"input": {"patientId": patient_id, "subject": subject, "body": body}}
    if files is None:
        return await gql(client, START, variables, token=token)
    return await multipart(client, START, variables, files, token=token)


async def send(
    client: httpx.AsyncClient,
    token: str | None,
    conversation_id: str,
    body: str = "Merci docteur.",
    *,
    files: list[File] | None = None,
) -> GraphQLResult:
    variables = {"input": {"conversationId": conversation_id, "body": body}}
    if files is None:
        return await gql(client, SEND, variables, token=token)
    return await multipart(client, SEND, variables, files, token=token)


async def started(
    client: httpx.AsyncClient, staff: Staff, person: Person, files: list[File] | None = None
) -> dict[str, Any]:
    """The payload of a conversation that must start."""
    payload: dict[str, Any] = (await start(client, staff.token, person.id, files=files)).ok()
    return dict(payload["startConversation"])


async def save(
    client: httpx.AsyncClient,
    token: str | None,
    attachment_id: str,
    *,
    title: str = "Compte rendu",
    category: str = "REPORT",
) -> GraphQLResult:
    variables = {"input": {"attachmentId": attachment_id, "title": title, "category": category}}
    return await gql(client, SAVE, variables, token=token)


async def download(
    client: httpx.AsyncClient, attachment_id: str, token: str | None
) -> httpx.Response:
    return await client.get(f"/attachments/{attachment_id}/content", headers=auth(token))


def stored_files(settings: Settings) -> list[Path]:
    """Every file under the blob directory, temporary ones included."""
    return sorted(Path(d) / f for d, _, names in os.walk(settings.blob_dir) for f in names)


async def snapshot(settings: Settings) -> dict[str, Any]:
    """Every messaging and dossier row, the access log and the stored files."""
    return {
        "conversations": await Conversation.all().order_by("id").values(),
        "messages": await Message.all().order_by("id").values(),
        "attachments": await Attachment.all().order_by("id").values(),
        "read_marks": await ReadMark.all().order_by("id").values(),
        "documents": await Document.all().order_by("id").values(),
        "access_events": await AccessEvent.all().order_by("id").values(),
        "files": stored_files(settings),
    }


def error(result: GraphQLResult) -> tuple[str, Any]:
    """The one error of a result: its code and its `extensions.field`."""
    assert len(result.errors) == 1, result.errors
    extensions = result.errors[0]["extensions"]
    return extensions["code"], extensions.get("field")


class Receiving(Protocol):
    """A websocket client of either protocol (tests/test_ws_reauth.py's, e2e's LiveSocket)."""

    async def receive(self) -> dict[str, Any]: ...


async def subscription_error(socket: Receiving, op_id: str) -> list[str]:
    """The error codes an operation ended with, whatever the protocol's way of saying it."""
    codes: list[str] = []
    while True:
        message = await socket.receive()
        assert message.get("id") == op_id, message
        if message["type"] == "error":
            payload = message["payload"]
            errors = payload if isinstance(payload, list) else [payload]
            return [e["extensions"]["code"] for e in errors]
        if message["type"] in ("next", "data"):
            assert message["payload"].get("data") is None, message
            codes += [e["extensions"]["code"] for e in message["payload"]["errors"]]
        if message["type"] == "complete":
            return codes
