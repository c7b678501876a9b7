"""A real browser for the dashboard's tests: Debian's chromium, driven by Playwright.

Playwright never downloads a browser here (``.ci/run`` installs the package with
``PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1`` and nothing runs ``playwright install``); it drives the system's ``/usr/bin/chromium`` (installed by ``.ci/run``), headless,
with nothing that reaches out to the network on its own.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = Path(os.environ.get("OUTLOOP_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: `.ci/run` installs Debian's chromium"
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def png_facts(data: bytes) -> tuple[int, int, int]:
    """Width, height and how many distinct rows its image data has (a blank page: a few)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos = 8
    width = height = 0
    color_type = 0
    idat = b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, _depth, color_type = struct.unpack(">IIBB", chunk[:10])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    channels = {2: 3, 6: 4, 0: 1, 4: 2}.get(color_type, 4)
    stride = width * channels + 1
    # rows as filtered, without their filter byte: not pixels, but a page of text and
    # lines yields hundreds of different ones, a blank or one-colour page a handful
    rows = {raw[i * stride + 1 : (i + 1) * stride] for i in range(height)}
    return width, height, len(rows)
