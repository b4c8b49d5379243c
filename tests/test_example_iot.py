"""The IoT example (examples/iot) in a real headless Chromium, driven by Selenium
through Debian's chromedriver: the pages load, a simulated reading reaches the
device page within a second, a command from the form reaches the actor and its
result shows, and the page keeps updating after ``kill -9`` of the node that
hosts the device. Every test saves a screenshot under ``test-results/iot/`` when
it fails. Without Chromium these tests fail (CI installs it in ``.ci/run``);
``DNA_SKIP_BROWSER=1`` skips them, saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "test-results" / "iot"
sys.path.insert(0, str(ROOT))  # `examples` imports from the repository root

from examples.iot.harness import CHROMEDRIVER, CHROMIUM, Proc, new_chromium, start_web  # noqa: E402


def _need_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install '.[test]')")
    if not missing:
        return
    why = (f"the browser tests need {', '.join(missing)}: apt-get install chromium "
           f"chromium-driver (CI's .ci/run installs them)")
    if os.environ.get("DNA_SKIP_BROWSER"):
        pytest.skip(f"DNA_SKIP_BROWSER is set; {why}")
    pytest.fail(why)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _need_browser()
    profile = tempfile.mkdtemp(prefix="iot-chromium-")
    driver = new_chromium(Path(profile))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@contextlib.contextmanager
def screenshot_on_failure(driver: Any, name: str) -> Iterator[None]:
    try:
        yield
    except BaseException:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{name}.png"
        try:
            driver.save_screenshot(str(path))
            (RESULTS / f"{name}.html").write_text(driver.page_source)
        except Exception as exc:  # the browser itself may be what failed
            print(f"no screenshot for {name}: {exc!r}", file=sys.stderr)
        else:
            print(f"screenshot of the failure: {path}", file=sys.stderr)
        raise


# ---------------------------------------------------------------- processes


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One web process hosting the actors on SQLite, simulating 3 devices at 5/s."""
    tmp = tmp_path_factory.mktemp("iot-single")
    web, url = start_web(tmp, f"sqlite://{tmp / 'iot.db'}",
                         "--sites", "1", "--devices", "3", "--rate", "5")
    try:
        yield url
    finally:
        web.stop()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def wait_until(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.01)


def text(driver: Any, element_id: str) -> str:
    from selenium.common.exceptions import WebDriverException

    try:
        return str(driver.find_element("id", element_id).text)
    except WebDriverException:  # replaced between lookup and read: ask again
        return ""


def open_live(driver: Any, url: str) -> None:
    driver.get(url)
    wait_until("the event stream is live", lambda: text(driver, "live") == "live", 10)


# ---------------------------------------------------------------- tests


def test_sites_page_lists_sites_and_devices(browser: Any, single: str) -> None:
    with screenshot_on_failure(browser, "sites_page"):
        wait_until("the simulator registered 3 devices",
                   lambda: sum(len(s["devices"]) for s in get_json(single + "/api/sites")) == 3,
                   10)
        open_live(browser, single + "/")
        assert browser.title == "Sites · DNA IoT"
        links = browser.find_elements("css selector", "a.device-link")
        assert sorted(a.text for a in links) == ["sensor-01", "sensor-02", "sensor-03"]
        card = browser.find_element("css selector", "section.site[data-site='site-1']")
        assert "3 devices" in card.text
        links[0].click()
        wait_until("the device page", lambda: text(browser, "device-name") == "sensor-01", 10)


def test_reading_from_the_simulator_shows_within_a_second(browser: Any, single: str) -> None:
    from examples.iot.simulator import HttpSink, Simulator

    with screenshot_on_failure(browser, "reading_within_a_second"):
        # a device only this test writes to, so the value it sends is the last one shown
        open_live(browser, single + "/devices/lab/probe-1")
        assert text(browser, "seq") == "0"

        async def send() -> float:
            sink = HttpSink(single)
            try:
                sim = Simulator(sink, [("lab", "probe-1")], rate=1)
                await sim.send("lab", "probe-1", value=777.25)
                return time.monotonic()
            finally:
                await sink.close()

        sent = asyncio.run(send())
        wait_until("777.25 on the page", lambda: text(browser, "last") == "777.25", 1.0)
        assert time.monotonic() - sent < 1.0
        assert text(browser, "seq") == "1"
        # the page measured it too: from the reading's timestamp to the screen
        lat = browser.execute_script("return IoT.latencies")
        assert len(lat) == 1 and 0 <= lat[0] < 1000, lat

        # and a device the simulator drives keeps moving on the page: 5 readings/s
        open_live(browser, single + "/devices/site-1/sensor-02")
        first = int(browser.find_element("tag name", "body").get_attribute("data-seq"))
        wait_until("a new simulated reading", lambda: int(
            browser.find_element("tag name", "body").get_attribute("data-seq")) > first, 1.0)


def test_command_from_the_form_reaches_the_actor(browser: Any, single: str) -> None:
    from selenium.webdriver.support.ui import Select

    with screenshot_on_failure(browser, "command_form"):
        open_live(browser, single + "/devices/site-1/sensor-03")
        Select(browser.find_element("id", "command")).select_by_value("rename")
        browser.find_element("id", "arg").send_keys("Boiler room")
        browser.find_element("id", "send").click()
        wait_until("the command's result", lambda: text(browser, "command-result")
                   == "rename: label is now 'Boiler room'", 5)
        assert text(browser, "label") == "Boiler room"
        # the actor has it, durably: another request reads it back from the actor
        snap = get_json(single + "/api/devices/site-1/sensor-03")
        assert snap["state"]["label"] == "Boiler room"
        assert snap["commands"][0][1:] == ["rename", "Boiler room", "label is now 'Boiler room'"]

        # a bad argument: the actor's error shows, and nothing changed
        Select(browser.find_element("id", "command")).select_by_value("calibrate")
        arg = browser.find_element("id", "arg")
        arg.clear()
        arg.send_keys("warm")
        browser.find_element("id", "send").click()
        wait_until("the error", lambda: text(browser, "command-result")
                   == "error: calibrate takes a number, not 'warm'", 5)
        snap = get_json(single + "/api/devices/site-1/sensor-03")
        assert snap["state"]["offset"] == 0 and snap["state"]["commands"] == 1


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[list[Proc], str]]:
    """Two ``dna node`` processes on one SQLite file and the web as a client node
    (simulating 2 devices at 10 readings/s each)."""
    secret = tmp_path / "secret"
    secret.write_text("a test secret that is long enough")
    secret.chmod(0o600)  # dna node refuses a secret other users can read
    store = f"sqlite://{tmp_path / 'iot.db'}"
    nodes: list[Proc] = []
    web = None
    try:
        for i in range(2):
            nodes.append(Proc([sys.executable, "-m", "dna", "node", "--store", store,
                               "--listen", "127.0.0.1:0", "--secret-file", str(secret),
                               "--app", "examples.iot.actors"], tmp_path / f"node{i}.log"))
        for n in nodes:
            n.wait_for(r"listening on")
        web, url = start_web(tmp_path, store, "--client", "--listen", "127.0.0.1:0",
                             "--secret-file", str(secret), "--sites", "1", "--devices", "2",
                             "--rate", "10")
        yield nodes, url
    finally:
        for p in [web, *nodes]:
            if p is not None:
                p.stop()


def test_page_keeps_updating_after_the_owner_is_killed(
    browser: Any, cluster: tuple[list[Proc], str]
) -> None:
    nodes, url = cluster
    pids = {n.p.pid for n in nodes}

    def seq() -> int:
        return int(browser.find_element("tag name", "body").get_attribute("data-seq") or 0)

    with screenshot_on_failure(browser, "failover"):
        open_live(browser, url + "/devices/site-1/sensor-01")
        wait_until("readings flowing", lambda: seq() >= 5, 5)
        owner = int(text(browser, "node-pid"))
        assert owner in pids
        os.kill(owner, signal.SIGKILL)
        at_kill = seq()
        killed = time.monotonic()
        (survivor,) = pids - {owner}
        wait_until("the device re-activated on the other node",
                   lambda: text(browser, "node-pid") == str(survivor), 15)
        wait_until("readings flowing again", lambda: seq() >= at_kill + 10, 10)
        print(f"failover seen on the page after {time.monotonic() - killed:.2f} s",
              file=sys.stderr)
        assert text(browser, "live") == "live"


def test_a_bad_reading_in_a_batch_records_nothing(single: str) -> None:
    from examples.iot.simulator import HttpSink

    async def post(rows: list[dict[str, Any]]) -> tuple[int, Any]:
        sink = HttpSink(single)
        try:
            return await sink.request("POST", "/api/readings", {"readings": rows})
        finally:
            await sink.close()

    good = {"site": "lab", "device": "batch-1", "value": 1.5}
    status, reply = asyncio.run(post([good, {"site": "lab", "device": "batch-1", "value": "x"}]))
    assert status == 400 and reply["error"].startswith("reading 1:"), reply
    assert get_json(single + "/api/devices/lab/batch-1")["seq"] == 0
    assert asyncio.run(post([good, good])) == (202, {"ok": True, "readings": 2})
    assert get_json(single + "/api/devices/lab/batch-1")["seq"] == 2
