"""Debian's chromium driven by Playwright, kept on 127.0.0.1, with screenshots kept as artifacts.

Playwright's own browser download cannot work here (and CI must not depend on it):
the browser is ``/usr/bin/chromium``, which ``scripts/install-system-deps`` installs.
Every request the browser makes goes through :class:`LocalOnly`: one to any host but
127.0.0.1 is aborted and recorded, so a test can assert that none happened.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WIDTHS = (1280, 390)


def artifacts_dir() -> Path:
    """Where screenshots go: ``$DONJON_ARTIFACTS/console`` or ``build/artifacts/console``."""
    base = os.environ.get("DONJON_ARTIFACTS")
    path = Path(base) / "console" if base else REPO / "build" / "artifacts" / "console"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class LocalOnly:
    """A route handler: 127.0.0.1 passes, anything else is aborted and remembered."""

    seen: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def __call__(self, route: Any) -> None:
        url = route.request.url
        self.seen.append(url)
        if urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("blockedbyclient")


@contextmanager
def chromium(profile: Path, guard: LocalOnly) -> Iterator[Any]:
    """A browser context with a fresh profile, its traffic through ``guard``; or a skip."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (scripts/install-system-deps installs chromium)")
    shutil.rmtree(profile, ignore_errors=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            args=ARGS,
            headless=True,
            ignore_https_errors=True,  # the test Steward's HTTPS certificate is its own
            viewport={"width": WIDTHS[0], "height": 900},
            locale="en-GB",
            timezone_id="UTC",
        )
        context.route("**/*", guard)
        context.set_default_timeout(20_000)
        try:
            yield context
        finally:
            context.close()


def screenshot(page: Any, name: str) -> list[Path]:
    """Full-page screenshots at every width in :data:`WIDTHS`; the viewport is put back."""
    out = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        path = artifacts_dir() / f"{name}-{width}.png"
        page.screenshot(path=str(path), full_page=True)
        out.append(path)
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})
    return out
