"""A real headless Chromium (Debian's package) driven by Playwright, for the web pages.

Playwright's own browser download cannot work on machines without the internet, so the tests
launch Debian's ``/usr/bin/chromium`` through ``executable_path`` and install it with apt
when it is missing.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from services.host import ServiceUnavailable, apt_install

logger = logging.getLogger(__name__)

DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
# Chinese glyphs for the pages' screenshots; without them every hanzi renders as a box.
NOTO_CJK = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")

# Without these, Chromium keeps trying to reach Google's services, which a closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> Path:
    """Debian's Chromium, installing it when missing.

    Raises:
        ServiceUnavailable: not installed and cannot be installed.
    """
    _ensure_cjk_fonts()
    if DEBIAN_CHROMIUM.exists():
        return DEBIAN_CHROMIUM
    on_path = shutil.which("chromium")
    if on_path:
        return Path(on_path)
    apt_install("chromium")
    if not DEBIAN_CHROMIUM.exists():
        raise ServiceUnavailable(f"chromium is not installed ({DEBIAN_CHROMIUM} is missing)")
    return DEBIAN_CHROMIUM


def _ensure_cjk_fonts() -> None:
    """Install Debian's Noto CJK fonts when missing; pages still work without them."""
    if NOTO_CJK.exists():
        return
    try:
        apt_install("fonts-noto-cjk")
    except ServiceUnavailable as exc:
        logger.warning("no CJK fonts, screenshots will show boxes for Chinese: %s", exc)
