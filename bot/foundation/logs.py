"""Logging: one line per event, JSON when LOG_FORMAT=json, secrets redacted everywhere."""
from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from typing import Any

# Token shapes, redacted even if the secret was never configured here: Slack (xoxb-, xoxp-, xapp-…),
# GitHub (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_), JWTs (a Kubernetes service account token is one:
# base64url header "eyJ…", payload, signature), and the value of any Bearer or Authorization header.
TOKEN_PATTERNS = re.compile(
    r"(xox[abposr]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/-]{8,}=*)")
# "Authorization: token abc", "'authorization': 'Basic abc=='": keep the name, drop the credentials.
AUTHORIZATION = re.compile(r"""((?i:authorization|x-api-key|private-token)["']?\s*[:=]\s*["']?)"""
                           r"""(?:(?i:bearer|token|basic)\s+)?[^\s"',;}\]]+""")
REDACTED = "[redacted]"

# Every secret value deckhand was configured with (build_context and setup_logging add them), so that
# redact() needs no arguments and any caller (logs, Slack posts, metrics) gets the same answer.
_known_secrets: list[str] = []
_known_lock = threading.Lock()


def remember_secrets(secrets: list[str | None]) -> None:
    global _known_secrets
    with _known_lock:
        merged = set(_known_secrets) | {s for s in secrets if s and len(s) >= 6}
        _known_secrets = sorted(merged, key=len, reverse=True)


def redact(text: str, secrets: list[str] | None = None) -> str:
    """`text` without any configured secret or token-shaped string. The one redactor: logs, every
    Slack post (bot/foundation/context.py's client, commands/kit.py's respond) and /metrics use it."""
    for secret in (secrets if secrets is not None else _known_secrets):
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = AUTHORIZATION.sub(lambda m: m.group(1) + REDACTED, text)
    return TOKEN_PATTERNS.sub(REDACTED, text)


def redact_deep(value: Any) -> Any:
    """redact() every string inside dicts, lists and tuples (Block Kit payloads)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_deep(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_deep(v) for v in value)
    return value


class Redactor(logging.Filter):
    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)
        remember_secrets(self.secrets)

    def scrub(self, text: str) -> str:
        return redact(text, self.secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = self.scrub(message), None
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry)


def setup_logging(secrets: list[str], level: str | None = None, stream=None) -> Redactor:
    handler = logging.StreamHandler(stream or sys.stderr)
    if os.environ.get("LOG_FORMAT", "").lower() == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    redactor = Redactor(secrets)
    handler.addFilter(redactor)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("LOG_LEVEL") or "INFO").upper())
    # apscheduler.scheduler: one "Adding job tentatively" line per job at every start (jobs/ logs one line).
    for noisy in ("urllib3", "waitress.queue", "apscheduler.executors.default", "apscheduler.scheduler",
                  "github.Requester"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    bolt = logging.getLogger("deckhand.bolt")
    if not any(isinstance(f, BoltTokenNotice) for f in bolt.filters):
        bolt.addFilter(BoltTokenNotice())
    return redactor


class BoltTokenNotice(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment itself even when given a client
    (slack_bolt/app/app.py: `token = token or os.environ.get("SLACK_BOT_TOKEN")`) and then warns that
    the token "will be unused" — at every start, about a client made from that very token."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()
