"""Slack fakes for tests.

`SlackFake` is a real HTTP server on a free loopback port that speaks the Slack Web API wire format
(form-encoded or JSON bodies, `Authorization: Bearer` tokens, `{"ok": ...}` answers with Slack's real
field names and error codes, 429 + `Retry-After`), keeps the state the bot cares about (messages with
threads and edits, ephemerals, views, response_url posts), records every call and can inject failures.
It refuses what Slack refuses (tests/test_fake_slack_rules.py): trigger_ids once within 3 s, views.push onto
an open modal, posting only where the bot is a member (`join`, `leave`; None = everywhere), response_urls 5
times in 30 minutes, unknown users and channels (`add_users`, `add_channels`), and Block Kit it would reject.
Time for those rules runs on `fake.clock` (monotonic seconds), which a test may replace.
Point the bot at it with `SLACK_API_URL=fake.api_url` (WebClient `base_url`); `.../api/`, `.../api`
and the bare root all work.

`SlackSender` (alias `SlackSigner`) plays Slack towards the app: it POSTs slash commands,
block_actions, view_submission / view_closed and Events API envelopes to the app's real
`/slack/events` endpoint, signed exactly as Slack signs them (`v0=HMAC-SHA256(secret,
"v0:{timestamp}:{body}")` in `X-Slack-Signature`, `X-Slack-Request-Timestamp`).

`SocketModeGateway` (socket_mode.py) is Slack's Socket Mode side: `apps.connections.open` with the
app token, a WebSocket server with single-use tickets, `hello`, envelopes and their acks, `disconnect`
frames, abrupt drops (RST, FIN) and an outage switch. `SocketModeSender` sends SlackSender's payloads
as envelopes through it.

Fixtures `slack_fake` and `socket_gateway` live in tests/fixtures.py (this package imports no pytest).
"""
from __future__ import annotations

from .common import (APP_ID, BOT_ID, BOT_USER_ID, BOT_USER_NAME, JSON_FIELDS, SESSION_METHODS, TEAM_DOMAIN,
                     TEAM_ID, TEAM_NAME, VERIFICATION_TOKEN, WORKSPACE_URL, Call, Json)
from .limits import (KNOWN_BLOCK_TYPES, MAX_ACTION_ID, MAX_ACTIONS_ELEMENTS, MAX_BLOCK_ID, MAX_BUTTON_TEXT,
                     MAX_BUTTON_VALUE, MAX_CALLBACK_ID, MAX_CONTEXT_ELEMENTS, MAX_HEADER_TEXT, MAX_LABEL,
                     MAX_MESSAGE_BLOCKS, MAX_OPTION_TEXT, MAX_OPTION_VALUE, MAX_OPTIONS, MAX_PRIVATE_METADATA,
                     MAX_SECTION_FIELD_TEXT, MAX_SECTION_FIELDS, MAX_SECTION_TEXT, MAX_TEXT, MAX_URL,
                     MAX_VIEW_BLOCKS, MAX_VIEW_BUTTON_TEXT, MAX_VIEW_TITLE, validate_message_blocks, validate_view)
from .sender import SlackSender, SlackSigner, normalize_state_values, slack_signature
from .server import SlackFake
from .socket_mode import APP_TOKEN, Ack, AckTimeout, SocketModeGateway
from .socket_sender import AckResponse, SocketModeSender

__all__ = [
    "APP_ID", "BOT_ID", "BOT_USER_ID", "BOT_USER_NAME", "JSON_FIELDS", "KNOWN_BLOCK_TYPES", "SESSION_METHODS",
    "TEAM_DOMAIN", "TEAM_ID", "TEAM_NAME", "VERIFICATION_TOKEN", "WORKSPACE_URL",
    "MAX_ACTION_ID", "MAX_ACTIONS_ELEMENTS", "MAX_BLOCK_ID", "MAX_BUTTON_TEXT", "MAX_BUTTON_VALUE",
    "MAX_CALLBACK_ID", "MAX_CONTEXT_ELEMENTS", "MAX_HEADER_TEXT", "MAX_LABEL", "MAX_MESSAGE_BLOCKS",
    "MAX_OPTION_TEXT", "MAX_OPTION_VALUE", "MAX_OPTIONS", "MAX_PRIVATE_METADATA", "MAX_SECTION_FIELD_TEXT",
    "MAX_SECTION_FIELDS", "MAX_SECTION_TEXT", "MAX_TEXT", "MAX_URL", "MAX_VIEW_BLOCKS", "MAX_VIEW_BUTTON_TEXT",
    "MAX_VIEW_TITLE",
    "APP_TOKEN", "Ack", "AckResponse", "AckTimeout", "SocketModeGateway", "SocketModeSender",
    "Call", "Json", "SlackFake", "SlackSender", "SlackSigner", "normalize_state_values", "slack_signature",
    "validate_message_blocks", "validate_view",
]

