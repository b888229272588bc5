"""The pipeline spec and its `deckhand.yaml` form: the source of truth the bot reads back for
`/pipeline edit`, written with a fixed key order so the same spec always gives the same bytes.
The modal's field-by-field checks live in bot.pipeline_form.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

KINDS = ("api", "worker", "batch")
STRATEGIES = ("canary", "blue-green")
SPEC_VERSION = 1


@dataclass(frozen=True)
class PipelineSpec:
    service: str
    team: str
    kind: str
    repo: str
    image: str
    clusters: tuple[str, ...]
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    strategy: str | None = None       # api / worker
    replicas: int | None = None       # api / worker
    port: int | None = None           # api
    health_path: str | None = None    # api
    schedule: str | None = None       # batch
    tag: str | None = None            # pinned image tag
    track: str | None = None          # base image whose "latest" version (pointer file) the batch runs
    env: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["clusters"] = list(self.clusters)
        data["env"] = [list(pair) for pair in self.env]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PipelineSpec":
        data = dict(data)
        data["clusters"] = tuple(data.get("clusters") or ())
        data["env"] = tuple(tuple(pair) for pair in data.get("env") or ())
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    @property
    def tag_policy(self) -> str:
        return f"track latest of {self.track}" if self.track else f"pinned {self.tag or 'latest'}"

    def digest(self) -> str:
        """Identifies the spec's content: equal digests mean an edit changed nothing."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def image_ref(self, pointer: dict[str, str] | None = None) -> str:
        """The image the workload runs. A tracking batch runs its repository at the pointer's version."""
        if self.track:
            version = (pointer or {}).get(self.track)
            if version is None:
                raise KeyError(self.track)
            return f"{self.image}:{version}"
        return f"{self.image}:{self.tag or 'latest'}"


# -- deckhand.yaml ---------------------------------------------------------------------------------

SPEC_HEADER = ("# deckhand pipeline spec: the source of truth for the files beside it.\n"
               "# Change it with `/pipeline edit {service}` in Slack; the bot re-renders the rest.\n")


def dump_spec(spec: PipelineSpec) -> str:
    """Stable text: fixed key order, no timestamps, so the same spec always gives the same bytes."""
    data: dict[str, Any] = {"version": SPEC_VERSION, "service": spec.service, "team": spec.team,
                            "kind": spec.kind, "repo": spec.repo, "image": spec.image}
    if spec.kind == "api":
        data.update(port=spec.port, health_path=spec.health_path)
    if spec.kind == "batch":
        data["schedule"] = spec.schedule
    if spec.track:
        data["tag_policy"] = {"track": spec.track}
    elif spec.tag:
        data["tag_policy"] = {"pinned": spec.tag}
    if spec.strategy:
        data["strategy"] = spec.strategy
    data["clusters"] = list(spec.clusters)
    if spec.replicas is not None:
        data["replicas"] = spec.replicas
    data["resources"] = {"requests": {"cpu": spec.cpu_request, "memory": spec.memory_request},
                         "limits": {"cpu": spec.cpu_limit, "memory": spec.memory_limit}}
    if spec.env:
        data["env"] = [{"name": k, "value": v} for k, v in spec.env]
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=120)
    return SPEC_HEADER.format(service=spec.service) + body


class SpecError(ValueError):
    """deckhand.yaml could not be read back; the message names the file and the field."""


def load_spec(text: str, path: str = "deckhand.yaml") -> PipelineSpec:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path} is not valid YAML ({exc.__class__.__name__}); fix it by hand or recreate it") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path} is not a mapping of keys")
    if data.get("version") != SPEC_VERSION:
        raise SpecError(f"{path}: version {data.get('version')!r} is not supported (expected {SPEC_VERSION})")
    unknown = _unknown_keys(data)
    if unknown:
        # dump_spec writes no other key: one here was added by hand and would be silently dropped.
        raise SpecError(f"{path}: unknown field `{unknown}`; deckhand.yaml holds only what the form asks")
    try:
        resources = data.get("resources") or {}
        policy = data.get("tag_policy") or {}
        return PipelineSpec(
            service=str(data["service"]), team=str(data["team"]), kind=str(data["kind"]), repo=str(data["repo"]),
            image=str(data["image"]), clusters=tuple(str(c) for c in data.get("clusters") or ()),
            cpu_request=str(resources["requests"]["cpu"]), cpu_limit=str(resources["limits"]["cpu"]),
            memory_request=str(resources["requests"]["memory"]), memory_limit=str(resources["limits"]["memory"]),
            strategy=data.get("strategy"), replicas=data.get("replicas"), port=data.get("port"),
            health_path=data.get("health_path"), schedule=data.get("schedule"),
            tag=None if policy.get("pinned") is None else str(policy["pinned"]),
            track=policy.get("track"),
            env=tuple((str(e["name"]), "" if e.get("value") is None else str(e["value"]))
                      for e in data.get("env") or ()),
        )
    except (KeyError, TypeError) as exc:
        raise SpecError(f"{path}: required field {exc} is missing or malformed") from None


_KEYS = {"version", "service", "team", "kind", "repo", "image", "port", "health_path", "schedule", "tag_policy",
         "strategy", "clusters", "replicas", "resources", "env"}


def _unknown_keys(data: dict) -> str | None:
    for key in data:
        if key not in _KEYS:
            return str(key)
    nested = [("resources", data.get("resources"), {"requests", "limits"}),
              ("tag_policy", data.get("tag_policy"), {"track", "pinned"})]
    resources = data.get("resources") if isinstance(data.get("resources"), dict) else {}
    nested += [(f"resources.{k}", resources.get(k), {"cpu", "memory"}) for k in ("requests", "limits")]
    nested += [(f"env[{i}]", e, {"name", "value"}) for i, e in enumerate(data.get("env") or [])
               if isinstance(data.get("env"), list)]
    for where, value, allowed in nested:
        if isinstance(value, dict):
            extra = [k for k in value if k not in allowed]
            if extra:
                return f"{where}.{extra[0]}"
    return None


def summary(spec: PipelineSpec, image: str | None = None) -> list[tuple[str, str]]:
    """(label, value) pairs for Slack and the PR body."""
    pairs = [("Kind", spec.kind), ("Team", spec.team)]
    if spec.strategy:
        pairs.append(("Strategy", spec.strategy))
    pairs.append(("Clusters", ", ".join(spec.clusters)))
    pairs.append(("Image", image or f"{spec.image} ({spec.tag_policy})"))
    if spec.kind == "api":
        pairs.append(("Port / health", f"{spec.port} {spec.health_path}"))
    if spec.kind == "batch":
        pairs.append(("Schedule", spec.schedule or ""))
    if spec.replicas is not None:
        pairs.append(("Replicas", str(spec.replicas)))
    pairs.append(("CPU request / limit", f"{spec.cpu_request} / {spec.cpu_limit}"))
    pairs.append(("Memory request / limit", f"{spec.memory_request} / {spec.memory_limit}"))
    pairs.append(("Source", spec.repo))
    if spec.env:
        pairs.append(("Env", ", ".join(k for k, _ in spec.env)))
    return pairs
