"""The create/edit modal's values checked field by field, all at once, in words a developer
understands. Pure (no network), so it runs inside the view_submission ack: the caller passes what it
knows about existing services and base images (bot.pipeline_catalog caches them).
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

from croniter import croniter

from bot.foundation.config import Settings
from bot.pipelines.spec import KINDS, STRATEGIES, PipelineSpec
from bot.foundation.resources import parse_quantity

# Modal fields, in the order the modal shows them; each is also the input's block_id.
FIELDS = ("service", "team", "kind", "repo", "image", "port", "health_path", "schedule", "tag_policy",
          "strategy", "clusters", "replicas", "cpu_request", "cpu_limit", "memory_request", "memory_limit", "env")

# Kubernetes derives names from ours: "<svc>-canary" / "<svc>-green" must stay a 63-character
# label, and a CronJob name is capped at 52 because its Jobs append an 11-character suffix.
MAX_NAME = {"api": 56, "worker": 56, "batch": 52}
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # DNS-1035: Service names must start with a letter
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# Patterns are used with fullmatch: `$` alone would also accept a trailing newline.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"
_IMAGE = re.compile(rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*$")
# owner/name, or its https:// (a host and optional port: never `user:token@`) or git@host: address.
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
_REPO = re.compile(rf"^(?:https://{_HOST}(?::[0-9]{{1,5}})?/|git@{_HOST}:)?[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+$")
_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "API_KEY", "PRIVATE_KEY", "CREDENTIAL")
_CPU = re.compile(r"^(\d+(\.\d+)?|\.\d+)m?$", re.ASCII)  # \d alone also matches "١٢", which Kubernetes rejects
_MEMORY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$", re.ASCII)
_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
MAX_ENV = 50


@dataclass(frozen=True)
class Known:
    """What the form is checked against without network: cached names and base images."""

    existing: Callable[[str], str | None] = lambda name: None  # name -> "where it exists", or None
    base_images: frozenset[str] | None = None  # None: not loaded yet (checked again after the ack)


def check_form(form: dict[str, Any], settings: Settings, known: Known = Known(),
               mode: str = "create") -> tuple[PipelineSpec | None, dict[str, str]]:
    """Validate modal values (block_id -> str or list). Returns (spec, {}) or (None, {block_id: message})."""
    errors: dict[str, str] = {}
    text = lambda key: str(form.get(key) or "").strip()  # noqa: E731

    kind = text("kind")
    if kind not in KINDS:
        errors["kind"] = ("Choose what runs: api (serves HTTP), worker (runs continuously) or batch "
                          "(runs on a schedule).")
    service = text("service")
    problem = name_problem(service, kind if kind in KINDS else "api")
    if problem:
        errors["service"] = problem
    elif mode == "create":
        where = known.existing(service)
        if where:
            errors["service"] = (f"`{service}` already exists {where}. Pick another name, "
                                 f"or use `/pipeline edit {service}` to change it.")
    team = text("team")
    if team not in settings.teams:
        teams = ", ".join(sorted(settings.teams)) or "none configured"
        errors["team"] = f"Choose one of the configured teams: {teams}."

    repo = text("repo").removesuffix("/")
    repo_problem = repository_problem(repo)
    if repo_problem:
        errors["repo"] = repo_problem

    image = text("image")
    image_problem = image_repository_problem(image)
    if image_problem:
        errors["image"] = image_problem

    port = health_path = schedule = strategy = replicas = None
    if kind == "api":
        port, port_problem = _port(text("port"))
        if port_problem:
            errors["port"] = port_problem
        health_path = text("health_path")
        if not health_path:
            errors["health_path"] = "An api needs a health-check path, e.g. `/healthz`."
        elif not _PATH.fullmatch(health_path) or len(health_path) > 200:
            errors["health_path"] = f"`{health_path}` isn't a URL path: start with `/`, no spaces, e.g. `/healthz`."
    if kind == "batch":
        schedule = " ".join(text("schedule").split())
        schedule_problem = cron_problem(schedule)
        if schedule_problem:
            errors["schedule"] = schedule_problem
    tag, track, tag_problem = tag_policy(text("tag_policy"), kind, known.base_images)
    if tag_problem:
        errors["tag_policy"] = tag_problem

    if kind in ("api", "worker"):
        strategy = text("strategy")
        if strategy not in STRATEGIES:
            errors["strategy"] = "Choose how releases roll out: canary or blue-green."
        replicas, replicas_problem = _replicas(text("replicas"), settings.pipelines.max_replicas)
        if replicas_problem:
            errors["replicas"] = replicas_problem

    chosen = form.get("clusters") or []
    chosen = [chosen] if isinstance(chosen, str) else list(chosen)
    configured = [c.name for c in settings.clusters]
    unknown = [c for c in chosen if c not in configured]
    if not chosen:
        errors["clusters"] = "Choose at least one cluster to deploy to."
    elif unknown:
        errors["clusters"] = f"Unknown cluster {', '.join(unknown)}; choose from {', '.join(configured)}."
    clusters = tuple(c for c in configured if c in chosen)  # config order: same input, same bytes

    resources = {}
    for which, parser in (("cpu", _cpu), ("memory", _memory)):
        request, request_problem = parser(text(f"{which}_request"), "request")
        limit, limit_problem = parser(text(f"{which}_limit"), "limit")
        if request_problem:
            errors[f"{which}_request"] = request_problem
        if limit_problem:
            errors[f"{which}_limit"] = limit_problem
        elif request is not None and limit is not None and parse_quantity(limit) < parse_quantity(request):
            errors[f"{which}_limit"] = f"The limit ({limit}) must be at least the request ({request})."
        resources[which] = (request, limit)

    env, env_problem = parse_env(str(form.get("env") or ""))
    if env_problem:
        errors["env"] = env_problem

    if errors:
        return None, errors
    return PipelineSpec(
        service=service, team=team, kind=kind, repo=repo, image=image, clusters=clusters,
        cpu_request=resources["cpu"][0], cpu_limit=resources["cpu"][1],
        memory_request=resources["memory"][0], memory_limit=resources["memory"][1],
        strategy=strategy, replicas=replicas, port=port, health_path=health_path, schedule=schedule,
        tag=tag, track=track, env=env,
    ), {}


def validate_spec(spec: PipelineSpec, settings: Settings) -> list[str]:
    """A spec read back from Git (deckhand.yaml), held to exactly the modal's rules before anything is
    rendered from it: [] when the modal would have produced this very spec, else one line per field.
    A hand edit can put anything in Git; what the form refuses must not reach a template this way."""
    form = form_from_spec(spec)
    checked, errors = check_form(form, settings, Known(), mode="edit")
    problems = [f"{field}: {message}" for field, message in errors.items()]
    if checked is not None:
        mine, theirs = spec.to_dict(), checked.to_dict()
        mine["clusters"], theirs["clusters"] = sorted(mine["clusters"]), sorted(theirs["clusters"])  # config order
        problems += [f"{field}: `{str(mine[field])[:60]}` is not what the form would write (it reads back as "
                     f"`{str(theirs[field])[:60]}`)" for field in FIELD_ORDER if mine.get(field) != theirs.get(field)]
    return problems


# PipelineSpec fields, for naming the one that differs.
FIELD_ORDER = ("service", "team", "kind", "repo", "image", "port", "health_path", "schedule", "tag", "track",
               "strategy", "clusters", "replicas", "cpu_request", "cpu_limit", "memory_request", "memory_limit", "env")


def name_problem(name: str, kind: str = "api") -> str | None:
    limit = MAX_NAME.get(kind, 52)
    if not name:
        return "Enter the service name, e.g. `payments-api`."
    if len(name) > limit:
        why = "CronJobs add an 11-character suffix to their Jobs" if kind == "batch" else \
            "Kubernetes adds `-canary` / `-green` to it"
        return f"`{name}` is {len(name)} characters; a {kind} name may have at most {limit} ({why})."
    if not _NAME.fullmatch(name):
        return (f"`{name}` isn't a valid Kubernetes name: use lowercase letters, digits and `-`, start with a "
                "letter and end with a letter or digit, e.g. `payments-api`.")
    return None


def repository_problem(repo: str) -> str | None:
    """The source repository lands in the CI pipeline, which may expand variables and will use any
    credentials in the URL: accept neither."""
    if not repo:
        return "Enter the source repository, e.g. `org/payments-api`."
    if "$" in repo or "{" in repo or "}" in repo or "%" in repo:
        return (f"`{repo[:80]}` contains a variable or an escape (`$`, `{{`, `%`); enter the plain repository, "
                "e.g. `org/payments-api`. CI credentials never belong in it.")
    scheme, sep, rest = repo.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return (f"`{repo[:80]}` carries credentials (`user@` before the host); enter the repository without them, "
                "e.g. `https://github.com/org/payments-api`. The CI system has its own credentials.")
    if not _REPO.fullmatch(repo) or len(repo) > 200 or any(part in (".", "..") for part in re.split(r"[/:]", repo)):
        return f"`{repo[:80]}` isn't a repository: use `owner/name` or its https:// or git@ address."
    return None


def image_repository_problem(image: str) -> str | None:
    if not image:
        return "Enter the image repository, e.g. `registry.example.com/payments/api`."
    last = image.rsplit("/", 1)[-1]
    if "@" in image:
        return f"`{image}` has a digest; enter the repository only (the tag comes from the tag policy)."
    if ":" in last:
        return (f"`{image}` includes a tag (`:{last.split(':', 1)[1]}`); enter the repository only, e.g. "
                f"`{image.rsplit(':', 1)[0]}`. The tag comes from the tag policy.")
    if not _IMAGE.fullmatch(image) or len(image) > 255:
        hint = " Use lowercase." if image.lower() != image and _IMAGE.fullmatch(image.lower()) else ""
        return f"`{image}` isn't an image repository such as `registry.example.com/team/app`.{hint}"
    return None


def cron_problem(schedule: str) -> str | None:
    example = "e.g. `0 3 * * *` for 03:00 every day or `*/15 * * * *` for every 15 minutes"
    if not schedule:
        return f"A batch needs a cron schedule, {example}."
    if schedule in _CRON_MACROS:
        return None
    if schedule.startswith(("CRON_TZ=", "TZ=")):
        return "Kubernetes doesn't accept a time zone inside the schedule; schedules run in UTC."
    if len(schedule.split()) != 5 or not croniter.is_valid(schedule):
        return (f"`{schedule}` isn't a cron schedule: it needs 5 fields (minute hour day-of-month month "
                f"day-of-week), {example}.")
    return None


def tag_policy(text: str, kind: str, base_images: frozenset[str] | None) -> tuple[str | None, str | None, str | None]:
    """`pinned <tag>` or `track latest of <base image>` -> (tag, track, problem)."""
    words = text.split()
    if not words:
        if kind == "batch":
            return None, None, "A batch needs an image tag policy: `pinned <tag>` or `track latest of <base image>`."
        return None, None, None  # api / worker start at `latest` until their pipeline deploys a release
    if words[0] == "pinned" and len(words) == 2:
        if not _TAG.fullmatch(words[1]):
            return None, None, f"`{words[1]}` isn't an image tag (letters, digits, `_`, `.`, `-`; at most 128)."
        return words[1], None, None
    if words[:3] == ["track", "latest", "of"] and len(words) == 4:
        if kind != "batch":
            return None, None, "Only batch pipelines can track a base image; use `pinned <tag>` here."
        base = words[3]
        problem = image_repository_problem(base)
        if problem:
            return None, None, problem.replace("Enter the image repository", "Enter the base image")
        if base_images is not None and base not in base_images:
            known = ", ".join(f"`{b}`" for b in sorted(base_images)) or "none yet"
            return None, None, f"`{base}` isn't in the batch image pointer file. Known base images: {known}."
        return None, base, None
    return None, None, f"`{text}` isn't a tag policy: write `pinned <tag>` (e.g. `pinned 1.4.2`)" + (
        " or `track latest of <base image>`." if kind == "batch" else ".")


def _port(text: str) -> tuple[int | None, str | None]:
    if not text:
        return None, "An api needs the container port it listens on, e.g. `8080`."
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:  # "²".isdigit() is True
        return None, f"`{text}` isn't a port: use a number from 1 to 65535."
    return int(text), None


def _replicas(text: str, maximum: int) -> tuple[int | None, str | None]:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= maximum:
        return None, f"`{text or '(empty)'}` isn't a replica count: use a whole number from 1 to {maximum}."
    return int(text), None


def _cpu(text: str, which: str) -> tuple[str | None, str | None]:
    if not text:
        return None, f"Enter the CPU {which}, e.g. `250m` (a quarter core) or `1`."
    if not _CPU.fullmatch(text):
        return None, f"`{text}` isn't a CPU quantity: use millicores like `250m` or cores like `0.5` or `2`."
    if parse_quantity(text) < Decimal("0.001"):
        return None, f"The CPU {which} must be at least `1m`."
    return text, None


def _memory(text: str, which: str) -> tuple[str | None, str | None]:
    if not text:
        return None, f"Enter the memory {which}, e.g. `512Mi` or `1Gi`."
    if re.match(r"^\d+(\.\d+)?\s*(MB|GB|KB|mb|gb|kb|Mb|Gb|mi|gi)$", text):
        return None, (f"`{text}` isn't a Kubernetes quantity: write mebibytes as `Mi` and gibibytes as `Gi`, "
                      "e.g. `512Mi`.")
    if not _MEMORY.fullmatch(text):
        return None, f"`{text}` isn't a memory quantity: use e.g. `256Mi`, `512Mi` or `2Gi`."
    if parse_quantity(text) < 4 * 2**20:
        return None, f"`{text}` is under 4 MiB, too little for a container; did you mean `{text}Mi`?"
    return text, None


def parse_env(text: str) -> tuple[tuple[tuple[str, str], ...], str | None]:
    """`KEY=value` per line -> pairs in order. Secrets must not land in Git in plain text."""
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep:
            return (), f"Line {number} (`{line[:40]}`) has no `=`; write one `KEY=value` per line."
        if not _ENV_KEY.fullmatch(key):
            return (), f"Line {number}: `{key[:40]}` isn't an environment variable name (letters, digits, `_`)."
        if key in seen:
            return (), f"`{key}` is set twice; keep one."
        if any(ch != "\t" and unicodedata.category(ch) == "Cc" for ch in value):
            # YAML rejects most control characters (U+007F...) and Kubernetes no better: say so here,
            # in the modal, rather than fail to render after the modal has closed.
            return (), f"Line {number}: the value of `{key}` contains a control character; remove it."
        if any(word in key.upper() for word in _SECRET_WORDS):
            return (), (f"`{key}` looks like a secret. Values here are committed to Git in plain text; "
                        "put secrets in a Kubernetes Secret instead.")
        seen.add(key)
        pairs.append((key, value.strip()))
    if len(pairs) > MAX_ENV:
        return (), f"{len(pairs)} variables is more than {MAX_ENV}; use a ConfigMap for that many."
    return tuple(pairs), None


def form_from_spec(spec: PipelineSpec) -> dict[str, Any]:
    """The modal's initial values for `/pipeline edit`."""
    return {
        "service": spec.service, "team": spec.team, "kind": spec.kind, "repo": spec.repo, "image": spec.image,
        "port": str(spec.port) if spec.port else "", "health_path": spec.health_path or "",
        "schedule": spec.schedule or "", "tag_policy": spec.tag_policy if (spec.tag or spec.track) else "",
        "strategy": spec.strategy or "", "clusters": list(spec.clusters),
        "replicas": str(spec.replicas) if spec.replicas else "",
        "cpu_request": spec.cpu_request, "cpu_limit": spec.cpu_limit,
        "memory_request": spec.memory_request, "memory_limit": spec.memory_limit,
        "env": "\n".join(f"{k}={v}" for k, v in spec.env),
    }


DEFAULT_FORM = {"kind": "", "port": "8080", "health_path": "/healthz", "strategy": "canary", "replicas": "2",
                "cpu_request": "100m", "cpu_limit": "500m", "memory_request": "128Mi", "memory_limit": "512Mi"}
