"""Shared test helpers, and a private cache folder for the whole test run.

Tests that need an optional tool call ``optional_import("torch")`` (or ``require_tool``): on a
user's machine they skip cleanly when the tool is missing; with ``REQUIRE_OPTIONAL_TOOLS=1``
(set by ``.ci/run``) a missing tool fails the test instead of hiding it behind a skip.
"""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import tempfile
from types import ModuleType

import pytest

STRICT = os.environ.get("REQUIRE_OPTIONAL_TOOLS") == "1"

# Decoded-image caches of the test run go to a temporary folder, removed at exit, never into
# the user's ~/.cache (the variable is read when a cache is opened, also by subprocesses).
if "HOTDOG_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="hotdog-test-cache-")
    os.environ["HOTDOG_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)


def optional_import(name: str) -> ModuleType:
    """Import ``name`` or skip (fail under ``REQUIRE_OPTIONAL_TOOLS=1``)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if STRICT:
            pytest.fail(f"{name} is required in CI but cannot be imported: {exc}")
        pytest.skip(f"{name} is not installed")


def require_tool(path_or_name: str) -> str:
    """Return the path of an executable, or skip (fail under ``REQUIRE_OPTIONAL_TOOLS=1``)."""
    found = shutil.which(path_or_name)
    if found is None:
        if STRICT:
            pytest.fail(f"{path_or_name} is required in CI but was not found")
        pytest.skip(f"{path_or_name} is not installed")
    return found
