"""Process and browser helpers shared by the example's tests and its figures script:
start the web process (or a ``dna node``) as a child and wait for it to listen, and
open Debian's headless Chromium through its own chromedriver (Selenium's driver
download cannot work offline)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["CHROMEDRIVER", "CHROMIUM", "CHROMIUM_FLAGS", "ROOT", "Proc", "new_chromium",
           "start_web"]

ROOT = Path(__file__).resolve().parents[2]  # the repository root: `examples` imports from it
CHROMIUM = os.environ.get("DNA_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("DNA_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1200,900",
]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


class Proc:
    """A child process (run from the repository root) whose output goes to ``log``."""

    def __init__(self, cmd: list[str], log: Path) -> None:
        self.log = log
        self.out = open(log, "w")  # closed in stop()
        self.p = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=self.out,
                                  stderr=subprocess.STDOUT, text=True)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """The first match of ``pattern`` in the output; AssertionError with the output
        if it does not come within ``timeout`` seconds or the process ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.log.read_text())
            if m:
                return m
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} from {self.p.args!r}:\n{self.log.read_text()}")

    def stop(self) -> None:
        """SIGTERM (a node drains, the web stops), SIGKILL after 15 s."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.out.close()


def start_web(tmp: Path, store: str, *args: str) -> tuple[Proc, str]:
    """``python -m examples.iot web --store STORE --port 0 ARGS``; returns it and its URL."""
    web = Proc([sys.executable, "-m", "examples.iot", "web", "--store", store,
                "--port", "0", *args], tmp / "web.log")
    try:
        return web, web.wait_for(r"IoT dashboard on (http://\S+)").group(1)
    except BaseException:
        web.stop()
        raise


def new_chromium(profile: Path) -> Any:
    """A Selenium driver of headless Chromium with a fresh profile in ``profile``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
