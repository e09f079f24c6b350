"""Browser fixtures: Debian's Chromium driven by Playwright (never a downloaded browser).

Screenshots go to ``$SCREENSHOT_DIR`` or ``screenshots/web`` under the repository root.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, sync_playwright

from gateway import (
    GatewayAgent,
    GatewayConfig,
    InstrumentConfig,
    ProbeConfig,
    Reading,
    SimulatedProbe,
)
from tests.e2e.helpers import ingest_thread
from tests.web.stack import Stack, running_stack

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
]
DESKTOP: ViewportSize = {"width": 1366, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Per module, not per session: while Playwright's sync API is open it keeps an event loop
    running in the main thread, under which the tests calling asyncio.run fail; closed with
    its module, it lets the suite run in any order."""
    assert shutil.which(CHROMIUM) is not None, (
        f"{CHROMIUM} not found: install the Debian package chromium (apt-get install chromium;"
        " .ci/run does it) or set CHROMIUM_PATH"
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    path = Path(os.environ.get("SCREENSHOT_DIR") or REPO / "screenshots" / "web")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def stack(database_url: str) -> Iterator[Stack]:
    with running_stack(database_url) as s:
        yield s


@pytest.fixture
def new_page(browser: Browser, stack: Stack) -> Iterator[Callable[..., Page]]:
    """Open pages in fresh browser contexts (own storage); every request must stay local."""
    contexts: list[BrowserContext] = []
    foreign: list[str] = []

    def make(*, viewport: ViewportSize = DESKTOP, locale: str = "en-US",
             timezone_id: str | None = None) -> Page:
        """``timezone_id`` (an IANA name) sets the browser's zone; by default the host's."""
        context = browser.new_context(
            viewport=viewport, locale=locale, timezone_id=timezone_id, accept_downloads=True,
            device_scale_factor=1, is_mobile=viewport is PHONE, has_touch=viewport is PHONE,
        )
        contexts.append(context)
        page = context.new_page()
        page.on("request", lambda r: None if r.url.startswith(
            (stack.url, "data:", "blob:")) else foreign.append(r.url))
        page.on("pageerror", lambda exc: foreign.append(f"page error: {exc}"))
        return page

    yield make
    for context in contexts:
        context.close()
    assert foreign == [], "requests outside the server, or script errors"


@pytest.fixture
def live_gateway(
    stack: Stack, mqtt_url: str, topic_prefix: str, tmp_path: Path
) -> Iterator[SimulatedProbe]:
    """A real gateway agent with a simulated probe for icp-1 (neu-ac), reporting through a
    real ingest worker: a test changes the instrument's state with ``set``."""
    gateway_id = f"{topic_prefix}-gw"
    stack.sql(
        "INSERT INTO instrument (id, name, institution_id, gateway_id, category_code)"
        " VALUES ('icp-1', '电感耦合等离子体质谱仪', 'neu-ac', %s, '010102')",
        (gateway_id,),
    )
    probe = SimulatedProbe(Reading(power_w=20.0))
    config = GatewayConfig(
        gateway_id=gateway_id, mqtt_url=mqtt_url, topic_prefix=topic_prefix,
        outbox_path=tmp_path / "outbox.sqlite", sample_interval_s=0.2,
        publish_interval_s=1.0, require_ingest_online=True,
        instruments=[InstrumentConfig(id="icp-1", probe=ProbeConfig(kind="simulated"))],
    )
    agent = GatewayAgent(config, probes={"icp-1": probe})
    stop = threading.Event()
    with ingest_thread(database_url=stack.database_url, mqtt_url=mqtt_url,
                       topic_prefix=topic_prefix):
        agent.start()
        thread = threading.Thread(target=agent.run_forever, args=(stop,), name="web-gateway")
        thread.start()
        try:
            yield probe
        finally:
            stop.set()
            thread.join(10)
            agent.stop()
