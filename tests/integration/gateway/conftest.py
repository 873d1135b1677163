"""One live stack for every gateway test (package scope; see gateway_stack)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .gateway_stack import Stack, live_stack


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with live_stack(tmp_path_factory.mktemp("gateway-stack")) as s:
        yield s
