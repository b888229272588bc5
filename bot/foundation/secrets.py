"""Secrets: only ever from the environment, never in the config file, never shown (repr, logs).
bot/foundation/config.py re-exports them."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Mapping


HOOK_SECRET_PREFIX = "DECKHAND_HOOK_SECRET_"


def hook_secret_env(cluster: str) -> str:
    """The variable holding a cluster's own node-join secret: prod-a -> DECKHAND_HOOK_SECRET_PROD_A
    (upper-cased; anything but A-Z and 0-9 becomes `_`, as environment variable names allow)."""
    return HOOK_SECRET_PREFIX + re.sub(r"[^A-Z0-9]", "_", cluster.upper())


@dataclass(frozen=True)
class Secrets:
    """Secrets only ever come from the environment; repr() never shows them."""

    slack_bot_token: str | None
    slack_signing_secret: str | None
    slack_app_token: str | None
    slack_api_url: str | None
    github_token: str | None
    hook_secret: str | None
    github_webhook_secret: str | None
    # DECKHAND_HOOK_SECRET_<CLUSTER>: a cluster's own node-join secret (see hook_secret_env), keyed by
    # the variable's suffix. A report for that cluster is then accepted only with this secret.
    cluster_hook_secrets: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Secrets":
        env = os.environ if env is None else env
        get = lambda key: env.get(key) or None  # noqa: E731 - empty means unset
        return cls(
            slack_bot_token=get("SLACK_BOT_TOKEN"),
            slack_signing_secret=get("SLACK_SIGNING_SECRET"),
            slack_app_token=get("SLACK_APP_TOKEN"),
            slack_api_url=get("SLACK_API_URL"),
            github_token=get("GITHUB_TOKEN"),
            hook_secret=get("DECKHAND_HOOK_SECRET"),
            github_webhook_secret=get("GITHUB_WEBHOOK_SECRET"),
            cluster_hook_secrets={key[len(HOOK_SECRET_PREFIX):]: value for key, value in env.items()
                                  if key.startswith(HOOK_SECRET_PREFIX) and len(key) > len(HOOK_SECRET_PREFIX)
                                  and value},
        )

    def values(self) -> list[str]:
        """Every secret value set, for log redaction."""
        found = [v for k, v in self.__dict__.items() if v and isinstance(v, str) and k != "slack_api_url"]
        return found + [v for v in self.cluster_hook_secrets.values() if v]

    def cluster_hook_secret(self, cluster: str) -> str | None:
        return self.cluster_hook_secrets.get(hook_secret_env(cluster)[len(HOOK_SECRET_PREFIX):]) or None

    def __repr__(self) -> str:
        return "Secrets(" + ", ".join(f"{k}={'set' if v else 'unset'}" for k, v in self.__dict__.items()) + ")"
