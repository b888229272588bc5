"""pytest fixtures: `kube_fake` and `kube_fake_factory`."""
from __future__ import annotations

from typing import Any

import pytest

from .server import KubeFake


@pytest.fixture
def kube_fake():
    """A started KubeFake, stopped after the test; fails the test if an on_write hook raised."""
    fake = KubeFake().start()
    try:
        yield fake
    finally:
        fake.stop()
    fake.check_hooks()


@pytest.fixture
def kube_fake_factory():
    """`kube_fake_factory(**KubeFake kwargs)` starts another independent fake; all stop at teardown."""
    fakes: list[KubeFake] = []

    def start(**kwargs: Any) -> KubeFake:
        fake = KubeFake(**kwargs).start()
        fakes.append(fake)
        return fake

    yield start
    for fake in fakes:
        fake.stop()
    for fake in fakes:
        fake.check_hooks()
