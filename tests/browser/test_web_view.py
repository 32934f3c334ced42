"""The live page in real headless Chromium (Debian's package, driven by Playwright), on a real worker fed by
`orderflow replay` of the ESH4 session with its control API: the page shows the replayed book, updates live, and
its playback controls pause, resume, change the speed and seek the replay. A screenshot is written to
``test-artifacts/web_view.png`` (docs/web_view.png is a copy)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.stack.testing import LocalStack, free_ports
from tests.streams.harness import REPO_ROOT, Pipeline, Worker, get_json, replay, tail, unique_prefix, wait_for
from tests.streams.sessions import ESH4

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
INSTRUMENT = 17077
ARTIFACT = REPO_ROOT / "test-artifacts" / "web_view.png"
NS = 1_000_000_000
EVENING = 1703545200 * NS  # 2023-12-25T23:00:00Z: the Globex session opens; before it, a snapshot at midnight
EVENING_TEXT = "2023-12-25T23:00:00Z"


@pytest.fixture
def live(stack: LocalStack, tmp_path: Path) -> Iterator[tuple[Pipeline, Worker, subprocess.Popen[bytes], int]]:
    """A worker that applied the ESH4 day up to the open, and whose /control/* drives a replay of the evening
    session from there at 5x."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (ops/bootstrap.sh installs Debian's chromium)")
    if not ESH4.is_file():
        pytest.skip(f"{ESH4} is absent")
    control_port = free_ports(1)[0]
    pipeline = Pipeline(stack, unique_prefix(), 1, tmp_path / "p",
                        env_extra={"ORDERFLOW_STREAMS_CONTROL_URL": f"http://127.0.0.1:{control_port}"})
    pipeline.base.mkdir(parents=True)
    pipeline.create_topics()
    replay_log = pipeline.base / "replay.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        worker = pipeline.start("w1")
        pipeline.wait_healthy(worker)
        replay(pipeline, ESH4, "--end", EVENING_TEXT)  # the day up to the open, as fast as possible
        cmd = [sys.executable, "-m", "streams.cli", "--log-format", "text", "replay", str(ESH4), "--topic",
               pipeline.topics.frames, "--bootstrap", pipeline.bootstrap, "--control-port", str(control_port),
               "--start", EVENING_TEXT, "--speed", "5", "--no-progress"]
        with replay_log.open("ab") as log:
            proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=pipeline.env(), stdout=log, stderr=subprocess.STDOUT)
        wait_for("the replay's control API", lambda: get_json(f"http://127.0.0.1:{control_port}/status")[0] == 200)
        yield pipeline, worker, proc, control_port
    except BaseException:
        print(f"replay log:\n{tail(replay_log)}\nworker log:\n{tail(pipeline.base / 'w1.log')}")
        raise
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        pipeline.close()


def text(page: Any, selector: str) -> str:
    return str(page.text_content(selector) or "")


def updates(page: Any) -> int:
    return int(page.get_attribute("#updates", "data-count") or 0)


def session_ts(page: Any) -> int:
    return int(page.get_attribute("#session-time", "data-ts") or 0)


def best(page: Any, side: str) -> int:
    """Raw price of the best level the ladder shows on ``side`` (bid or ask)."""
    return int(page.get_attribute(f"#ladder tr.{side}.best", "data-price") or 0)


def test_the_page_shows_the_replayed_book_and_drives_the_replay(
        live: tuple[Pipeline, Worker, subprocess.Popen[bytes], int]) -> None:
    from playwright.sync_api import sync_playwright

    _, worker, _, control_port = live
    control = f"http://127.0.0.1:{control_port}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            # the page loads, shows the book of the replayed session, and updates live
            page.goto(f"{worker.url}/view?instrument={INSTRUMENT}")
            wait_for("the page connected", lambda: text(page, "#conn") == "live", timeout=30)
            wait_for("the replay's status on the page", lambda: text(page, "#speed") == "5×", timeout=30)
            page.wait_for_selector("#ladder tr.bid.best", timeout=30_000)
            assert page.locator("#ladder tr.bid").count() == 20 and page.locator("#ladder tr.ask").count() == 20
            wait_for("session time in the evening session", lambda: session_ts(page) >= EVENING, timeout=60)
            seen = updates(page)
            wait_for("live updates", lambda: updates(page) > seen + 5, timeout=60)
            wait_for("trades on the tape", lambda: page.locator("#trades tbody tr").count() > 0, timeout=60)

            # pause stops updates (the button), and the page then shows exactly the worker's book
            page.click("#play")
            wait_for("the replay paused", lambda: get_json(control + "/status")[1]["state"] == "paused")
            wait_for("the page to show the worker's book", lambda: shows_worker_book(page, worker), timeout=30)
            time.sleep(2.0)  # frames already sent when the pause came are applied by now
            paused_at, paused_seq = updates(page), text(page, "#seq")
            time.sleep(3.0)
            assert (updates(page), text(page, "#seq")) == (paused_at, paused_seq)
            assert text(page, "#play") == "play"

            # resume restarts them (the space bar)
            page.keyboard.press("Space")
            wait_for("the replay playing", lambda: get_json(control + "/status")[1]["state"] == "playing")
            wait_for("updates after resume", lambda: updates(page) > paused_at, timeout=60)

            # speed: + steps up from 5x
            page.keyboard.press("+")
            wait_for("a faster replay", lambda: (get_json(control + "/status")[1]["speed"] or 0) > 5)

            time.sleep(4.0)  # a few seconds of data in the charts and the tape
            ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACT), full_page=True)
            assert ARTIFACT.stat().st_size > 20_000

            # seek jumps forward again, by half an hour, to a session time the page then shows
            target = EVENING + 1800 * NS
            page.fill("#seek-to", "2023-12-25T23:30:00Z")
            page.click("#seek-go")
            wait_for("session time after the seek", lambda: session_ts(page) >= target, timeout=60)
            wait_for("the replay's position after the seek", lambda: text(page, "#position") >= "2023-12-25 23:30")
            assert errors == []
        finally:
            browser.close()


def shows_worker_book(page: Any, worker: Worker) -> bool:
    """The ladder's best bid and ask equal the worker's /books view of the instrument."""
    status, doc = worker.book(INSTRUMENT, depth=1)
    if status != 200 or not doc["bid"] or not doc["ask"]:
        return False
    try:
        return best(page, "bid") == doc["bid"]["price_raw"] and best(page, "ask") == doc["ask"]["price_raw"]
    except Exception:
        return False
