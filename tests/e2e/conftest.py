"""Fixtures every end-to-end module shares: its work dir and its own fresh local AWS endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.fleet import kept_on_failure, recording_endpoint


@pytest.fixture(scope="module")
def workdir(request) -> Iterator[Path]:
    """The module's work dir, named after it (edgeml-e2e-<module>-...), kept when one of its tests failed."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    with kept_on_failure(request, f"edgeml-e2e-{name}-") as path:
        yield path


@pytest.fixture(scope="module")
def recorded_endpoint(workdir):
    """(endpoint, its request log): a fresh local AWS endpoint for the module, recording every request."""
    with recording_endpoint(workdir / "aws") as (aws, requests):
        yield aws, requests


@pytest.fixture(scope="module")
def endpoint(recorded_endpoint):
    """The module's local AWS endpoint (LocalAwsEndpoint)."""
    return recorded_endpoint[0]
