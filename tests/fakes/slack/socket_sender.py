"""SocketModeSender: what SlackSender sends over HTTP, sent as Socket Mode envelopes instead.

Slack puts the same payloads in Socket Mode envelopes that it POSTs in HTTP mode: a slash command's
form fields become the `slash_commands` payload object, an interaction's `payload=` JSON the
`interactive` payload, an Events API body the `events_api` payload. Nothing is signed (the socket
is the authentication). Each call returns an `AckResponse` shaped like the `requests.Response`
tests read over HTTP: status 200 and the ack's payload as the JSON body.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Optional, Union
from urllib.parse import parse_qs

from .common import Json
from .sender import SlackSender
from .socket_mode import Ack, SocketModeGateway


class AckResponse:
    """An ack, read like an HTTP response: `status_code`, `text`, `json()`."""

    def __init__(self, ack: Ack):
        self.ack = ack
        self.status_code = 200
        self.ok = True
        self.text = json.dumps(ack.payload) if ack.payload else ""
        self.content = self.text.encode()
        self.headers = {"content-type": "application/json"} if ack.payload else {}

    def json(self) -> Any:
        if not self.text:
            raise ValueError("the ack carried no payload")
        return json.loads(self.text)


class SocketModeSender(SlackSender):
    def __init__(self, gateway: SocketModeGateway, fake=None, *, timeout: float = 10.0):
        super().__init__("http://socket-mode.invalid", "", fake or gateway.slack, timeout=timeout)
        self.gateway = gateway

    def raw(self, body: Union[str, bytes, Json], headers: Optional[Dict[str, str]] = None, sign: bool = True,
            timestamp=None, signature=None, content_type: Optional[str] = None) -> AckResponse:
        if not sign or timestamp is not None or signature is not None:
            raise TypeError("Socket Mode envelopes carry no signature: signature tests are HTTP-only")
        if isinstance(body, dict):
            body, content_type = json.dumps(body), "application/json"
        if isinstance(body, bytes):
            body = body.decode()
        return self._send(body, content_type or "application/x-www-form-urlencoded", None, None, headers)

    def _send(self, body: str, content_type: str, retry_num: Optional[int], retry_reason: Optional[str],
              headers: Optional[Dict[str, str]]) -> AckResponse:
        if "json" in content_type:
            kind, payload = "events_api", json.loads(body)
        else:
            fields = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
            if "payload" in fields:
                kind, payload = "interactive", json.loads(fields["payload"])
            else:
                kind, payload = "slash_commands", fields
        ack = self.gateway.send_envelope(kind, payload, retry_attempt=retry_num or 0,
                                         retry_reason=retry_reason or "", timeout=self.timeout)
        return AckResponse(ack)
