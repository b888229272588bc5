"""Settings: one YAML file (non-secret) plus secrets from the environment.

Every error names the file, the key path and what is wrong, e.g.
``deckhand.yaml: clusters[1].prometheus_url: not a URL``. Unknown keys are errors.
"""
from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import kubernetes_validate.utils
import yaml
from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.foundation.secrets import HOOK_SECRET_PREFIX, Secrets, hook_secret_env  # noqa: F401 - re-exported
from bot.foundation.values import Duration, Fraction, Url, format_duration, parse_duration  # noqa: F401

_SLACK_ID = re.compile(r"^[A-Z0-9]{2,}$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- Prometheus: one endpoint per cluster, or one query endpoint for the fleet ---------------------
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")  # Prometheus label names (data model docs)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# requests builds these itself or deckhand sets them from bearer_token_env: a header here would be
# a token written into the config file, or would fight the client.
_RESERVED_HEADERS = {"authorization", "host", "content-length", "content-type"}


class PrometheusAccess(Strict):
    """How to reach and authenticate to a Prometheus-compatible query API. Secrets only by env name."""

    headers: dict[str, str] = {}
    bearer_token_env: str | None = None
    ca_file: str | None = None

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                raise ValueError(f"{name!r} is not an HTTP header name")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"{name} cannot be set here (a token goes in the environment: use bearer_token_env)")
            if not isinstance(value, str) or "\n" in value or "\r" in value:
                raise ValueError(f"the value of {name} must be one line of text")
        return v

    @field_validator("bearer_token_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.match(v):
            raise ValueError("must be the name of an environment variable (e.g. PROMETHEUS_TOKEN), not the token")
        return v


class SharedPrometheus(PrometheusAccess):
    """`prometheus:` — one query endpoint (Thanos Query, Mimir, VictoriaMetrics...) for every cluster
    without its own prometheus_url; every series there carries `cluster_label` naming its cluster."""

    url: Url
    cluster_label: str = "cluster"

    @field_validator("cluster_label")
    @classmethod
    def _label(cls, v: str) -> str:
        if not _LABEL_NAME.match(v) or v.startswith("__"):
            raise ValueError(f"{v!r} is not a Prometheus label name")
        return v


class Cluster(PrometheusAccess):
    name: str
    context: str | None = None
    kubeconfig: str | None = None
    # Optional when `prometheus:` serves this cluster (Settings checks); its own URL wins.
    prometheus_url: Url | None = None
    cluster_label_value: str | None = None  # on the shared endpoint; default the name
    istio_api_version: Literal["v1", "v1beta1"] = "v1"

    @field_validator("name")
    @classmethod
    def _dns_name(cls, v: str) -> str:
        if not _NAME.match(v) or len(v) > 63:
            raise ValueError("must be a DNS-1123 label (lowercase letters, digits, '-')")
        return v

    @field_validator("cluster_label_value")
    @classmethod
    def _label_value(cls, v: str | None) -> str | None:
        if v is not None and (not v or len(v) > 253 or any(ord(c) < 32 for c in v)):
            raise ValueError("must be 1-253 printable characters")
        return v

    @property
    def label_value(self) -> str:
        return self.cluster_label_value or self.name


class GitHub(Strict):
    api_url: Url = "https://api.github.com"
    repo: str
    base_branch: str = "main"
    reviewers: list[str] = []
    team_reviewers: list[str] = []
    labels: list[str] = ["deckhand"]

    @field_validator("repo")
    @classmethod
    def _owner_name(cls, v: str) -> str:
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", v):
            raise ValueError("must be owner/name")
        return v


class Channels(Strict):
    alerts: str
    approvals: str
    audit: str | None = None

    @field_validator("alerts", "approvals", "audit")
    @classmethod
    def _channel(cls, v: str | None) -> str | None:
        if v is not None and not _SLACK_ID.match(v):
            raise ValueError("must be a Slack channel ID such as C0123ABC")
        return v


def _slack_ids(values: list[str]) -> list[str]:
    for v in values:
        if not isinstance(v, str) or not _SLACK_ID.match(v) or v[0] not in "UWS":
            raise ValueError(f"{v!r} is not a Slack user (U…/W…) or user group (S…) ID")
    return values


class Roles(Strict):
    devops: list[str] = []

    @field_validator("devops")
    @classmethod
    def _ids(cls, v: list[str]) -> list[str]:
        return _slack_ids(v)


class Team(Strict):
    usergroup: str | None = None
    channel: str | None = None
    members: list[str] = []

    @field_validator("usergroup")
    @classmethod
    def _group(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"S[A-Z0-9]+", v):
            raise ValueError("must be a Slack user group ID such as S0123ABC")
        return v

    @field_validator("channel")
    @classmethod
    def _channel(cls, v: str | None) -> str | None:
        if v is not None and not _SLACK_ID.match(v):
            raise ValueError("must be a Slack channel ID such as C0123ABC")
        return v

    @field_validator("members")
    @classmethod
    def _members(cls, v: list[str]) -> list[str]:
        return _slack_ids(v)


class Labels(Strict):
    app: str = "app"
    team: str = "team"
    track: str = "track"
    version: str = "version"


class Canary(Strict):
    steps: list[int] = [10, 25, 50, 100]
    stale_after: Duration = timedelta(hours=72)
    rollout_timeout: Duration = timedelta(minutes=10)
    reminder_schedule: Duration = timedelta(hours=1)

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[int]) -> list[int]:
        if not v or any(not 0 < s <= 100 for s in v) or v != sorted(set(v)):
            raise ValueError("must be increasing percentages between 1 and 100")
        if v[-1] != 100:
            raise ValueError("the last step must be 100")
        return v


def _cron(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("not a cron expression")
    try:
        CronTrigger.from_crontab(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a cron expression ({exc})") from None
    return value


Cron = Annotated[str, BeforeValidator(_cron)]


class Idle(Strict):
    window: Duration = timedelta(days=7)
    schedule: Cron = "0 10 * * 1-5"
    repeat_interval: Duration = timedelta(days=7)
    exclude_namespaces: list[str] = ["kube-system", "istio-system"]
    snooze: Duration = timedelta(days=30)


class NodeJoin(Strict):
    interval: Duration = timedelta(minutes=2)
    not_ready_after: Duration = timedelta(minutes=10)
    startup_timeout: Duration = timedelta(minutes=15)
    max_unhealthy: Fraction = 0.4
    csr_pending_after: Duration = timedelta(minutes=10)
    retention: Duration = timedelta(days=90)  # join reports and resolved incidents (/nodes history)


class Deletion(Strict):
    request_ttl: Duration = timedelta(hours=72)


def _kubernetes_minor(value: Any) -> str:
    """`1.32` (or `1.32.4`, `v1.32`) -> "1.32": the schemas generated objects are checked against."""
    if isinstance(value, float):
        raise ValueError(f"write the version quoted, e.g. \"1.30\" (YAML reads {value} as a number)")
    match = re.fullmatch(r"v?(1)\.(\d{1,3})(\.\d+)?", value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"{value!r} is not a Kubernetes version such as \"1.32\"")
    minor = f"{match.group(1)}.{match.group(2)}"
    known = sorted({".".join(v.split(".")[:2]) for v in kubernetes_validate.utils.all_versions()},
                   key=lambda v: int(v.split(".")[1]))
    if minor not in known:
        raise ValueError(f"no Kubernetes schemas for {minor} in this deckhand (kubernetes-validate knows "
                         f"{known[0]} to {known[-1]})")
    return minor


class Pipelines(Strict):
    path: str = "services/{team}/{service}"
    templates: str | None = None
    pointer_file: str = "batch-images.yaml"
    max_replicas: int = Field(default=20, ge=1, le=1000)
    poll_interval: Duration = timedelta(minutes=5)
    namespace: str = "{team}"  # Kubernetes namespace of generated objects; {team} and {service} expand
    # The clusters' Kubernetes minor: every rendered object is validated against its schemas before a PR.
    kubernetes_version: Annotated[str, BeforeValidator(_kubernetes_minor)] = "1.32"

    @field_validator("path", "namespace")
    @classmethod
    def _placeholders(cls, v: str, info) -> str:
        unknown = set(re.findall(r"\{([^}]*)\}", v)) - {"team", "service"}
        if unknown:
            raise ValueError(f"unknown placeholder {{{sorted(unknown)[0]}}}; use {{team}} and {{service}}")
        if info.field_name == "path" and "{service}" not in v:
            raise ValueError("must contain {service}, e.g. services/{team}/{service}")
        return v


class Waves(Strict):
    """Node maintenance waves (/nodes wave): drain, reinstall, rejoin without taking a role below its floor."""

    enabled: bool = True
    role_label: str = "node-role.kubernetes.io/*"   # a label key, or a key prefix ending in * (suffix = role)
    interval: Duration = timedelta(seconds=30)     # how often a running wave is advanced
    node_timeout: Duration = timedelta(minutes=45)  # the modal's default per-node timeout

    @field_validator("role_label")
    @classmethod
    def _role_label(cls, v: str) -> str:
        key = v[:-1] if v.endswith("*") else v
        if not re.fullmatch(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]?[-A-Za-z0-9_.]*", key) or "*" in key or not key:
            raise ValueError(f"{v!r} is not a label key (e.g. node-role.kubernetes.io/* or node.example.com/role)")
        return v

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: timedelta) -> timedelta:
        if v < timedelta(seconds=5):
            raise ValueError("must be at least 5s")
        return v


class Lease(Strict):
    # Which configured cluster holds the Lease; unset = the cluster deckhand runs in (in-cluster),
    # and no election at all when deckhand runs outside Kubernetes.
    cluster: str | None = None
    namespace: str | None = None
    name: str = "deckhand"
    duration: Duration = timedelta(seconds=30)


# Namespaces deckhand never writes to, whoever asks: the control plane's and the mesh's.
BUILTIN_PROTECTED = ("kube-system", "kube-public", "kube-node-lease", "istio-system")
# Kubernetes mounts the pod's namespace here (the ServiceAccount token volume).
SERVICEACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def own_namespace(env: dict[str, str] | None = None, path: str | None = None) -> str | None:
    """deckhand's own namespace: POD_NAMESPACE (the Deployment sets it from the downward API), else the
    in-cluster ServiceAccount's namespace file, else None (running outside Kubernetes)."""
    env = os.environ if env is None else env
    name = (env.get("POD_NAMESPACE") or "").strip()
    if not name:
        try:
            name = Path(path or SERVICEACCOUNT_NAMESPACE).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
    return name if _NAME.match(name) and len(name) <= 63 else None


def _protected(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ValueError("must be a list of namespace names")
    for name in value:
        if not isinstance(name, str) or not _NAME.match(name) or len(name) > 63:
            raise ValueError(f"{name!r} is not a namespace name (a DNS-1123 label)")
    # deckhand's own namespace is always protected: nothing it is told may delete or patch deckhand.
    own = own_namespace()
    return list(dict.fromkeys([*value, *([own] if own else [])]))


class Settings(Strict):
    clusters: list[Cluster]
    github: GitHub | None = None
    channels: Channels
    roles: Roles = Roles()
    teams: dict[str, Team] = {}
    labels: Labels = Labels()
    canary: Canary = Canary()
    idle: Idle = Idle()
    node_join: NodeJoin = NodeJoin()
    deletion: Deletion = Deletion()
    pipelines: Pipelines = Pipelines()
    lease: Lease = Lease()
    prometheus: SharedPrometheus | None = None
    waves: Waves = Waves()
    protected_namespaces: Annotated[list[str], BeforeValidator(_protected)] = Field(
        default=list(BUILTIN_PROTECTED), validate_default=True)

    @model_validator(mode="after")
    def _unique_clusters(self) -> "Settings":
        seen: set[str] = set()
        for cluster in self.clusters:
            if cluster.name in seen:
                raise ValueError(f"clusters: duplicate cluster name {cluster.name!r}")
            seen.add(cluster.name)
        return self

    @model_validator(mode="after")
    def _prometheus_for_every_cluster(self) -> "Settings":
        """Every cluster needs somewhere to ask about traffic: its own URL or the shared endpoint.
        A cluster with neither would be skipped by every scan forever, so it is a mistake, said now."""
        problems = []
        values: dict[str, str] = {}
        for i, cluster in enumerate(self.clusters):
            if cluster.prometheus_url is None and self.prometheus is None:
                problems.append(f"clusters[{i}].prometheus_url: required key is missing "
                                "(or set prometheus.url to serve every cluster from one query endpoint)")
            if cluster.prometheus_url is not None and cluster.cluster_label_value is not None:
                problems.append(f"clusters[{i}].cluster_label_value: only used on the shared prometheus.url; "
                                "this cluster has its own prometheus_url")
            if cluster.prometheus_url is None and self.prometheus is not None:
                other = values.setdefault(cluster.label_value, cluster.name)
                if other != cluster.name:
                    problems.append(f"clusters[{i}].cluster_label_value: {cluster.label_value!r} is also "
                                    f"cluster {other!r}: their series could not be told apart")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def cluster(self, name: str) -> Cluster | None:
        return next((c for c in self.clusters if c.name == name), None)

    def is_protected(self, namespace: str | None) -> bool:
        return bool(namespace) and namespace in self.protected_namespaces


class ConfigError(Exception):
    """The configuration is invalid; `problems` lists one `file: path: message` line each."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _key_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif str(part).startswith(("function-", "function_")):
            continue
        else:
            path += ("." if path else "") + str(part)
    return path


def _message(error: dict) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


def parse_settings(data: Any, source: str = "deckhand.yaml") -> Settings:
    if data is None:
        raise ConfigError([f"{source}: the file is empty"])
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: the top level must be a mapping of keys"])
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            path = _key_path(error["loc"])
            problems.append(f"{source}: {path}: {_message(error)}" if path else f"{source}: {_message(error)}")
        raise ConfigError(problems) from None


def load_settings(path: str | os.PathLike) -> Settings:
    path = Path(path)
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found (set DECKHAND_CONFIG or copy deploy/deckhand.example.yaml)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot be read: {exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{name}: {where}invalid YAML: {problem}"]) from None
    return parse_settings(data, name)
