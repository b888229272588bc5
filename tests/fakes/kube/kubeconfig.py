"""kubeconfig files pointing at one or more fakes."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Mapping

import yaml

if TYPE_CHECKING:
    from .server import KubeFake


def write_kubeconfig(path: str | os.PathLike, fakes: Mapping[str, KubeFake], current_context: str | None = None,
                     namespace: str = "default") -> str:
    """Write a kubeconfig with one context (and cluster and user of the same name) per fake."""
    if not fakes:
        raise ValueError("write_kubeconfig needs at least one fake")
    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": n, "cluster": {"server": f.url, "insecure-skip-tls-verify": True}}
                     for n, f in fakes.items()],
        "users": [{"name": n, "user": {"token": f.token}} for n, f in fakes.items()],
        "contexts": [{"name": n, "context": {"cluster": n, "user": n, "namespace": namespace}} for n in fakes],
        "current-context": current_context or next(iter(fakes)),
    }
    path = os.fspath(path)
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(config, fh, sort_keys=False)
    return path

