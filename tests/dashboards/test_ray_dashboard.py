"""README's way to watch searches in the Ray dashboard, followed in a real (headless Debian)
Chromium: ``ray start --head``, a search that joins it, the token that ``ray get-auth-token``
prints typed into the dashboard's sign-in, and the search as a running job in its Jobs view."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import USER_SPACE, free_port, needs, write_space
from tests.dashboards.test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS
from tests.platform.test_cluster import _kill_processes_with

pytestmark = pytest.mark.own_ray

SLOW = """\
import time

from tuneforge.trainables import report


def train(config):
    for step in range(40):
        time.sleep(1)
        report({"score": config["x"] * step})
"""

_BIN = Path(sys.executable).parent


def test_a_search_that_joins_a_head_is_a_running_job_in_its_dashboard(tmp_path: Path) -> None:
    needs(Path(CHROMIUM).is_file(), "Debian's chromium")
    from playwright.sync_api import sync_playwright

    temp_dir = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must fit in 107 bytes
    port, dashboard_port = free_port(), free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_TMPDIR": temp_dir}
    head = subprocess.Popen([str(_BIN / "ray"), "start", "--block", "--head", "--port", str(port),
                             "--num-cpus", "2", "--include-dashboard", "true",
                             "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port),
                             "--disable-usage-stats"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    search = None
    try:
        deadline = time.monotonic() + 120
        while socket.socket().connect_ex(("127.0.0.1", dashboard_port)) != 0:
            assert time.monotonic() < deadline and head.poll() is None, "the head did not start"
            time.sleep(1)
        write_space(tmp_path, SLOW, "slow.py")
        write_space(tmp_path, USER_SPACE.format(reference="slow.py:train"), "slow.yaml")
        search = subprocess.Popen([str(_BIN / "tuneforge"), "search", "slow.yaml", "--trials", "2",
                                   "--address", f"127.0.0.1:{port}",
                                   "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
                                  cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
        first_lines = []
        while not any("dashboard http" in line for line in first_lines):
            line = search.stdout.readline()
            assert line, "".join(first_lines)
            first_lines.append(line)
        url = f"http://127.0.0.1:{dashboard_port}"
        line = first_lines[-1]  # a `ray up` config on this machine adds how to reach it from yours
        assert f"dashboard {url}, job 'tuneforge search slow (random)': it stays up after the search" in line
        assert line.rstrip().endswith("it asks for the token `ray get-auth-token` prints"), line
        token = subprocess.run([str(_BIN / "ray"), "get-auth-token"], env=env, capture_output=True, text=True,
                               check=True).stdout.split()[-1]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{url}/#/jobs", wait_until="load")
            box = page.get_by_role("textbox", name="Authentication Token")  # the dashboard's sign-in
            box.fill(token)
            page.get_by_role("button", name="Submit").click()
            row = page.locator("tr", has_text="tuneforge search slow (random)")
            row.first.wait_for(timeout=60_000)
            assert "RUNNING" in row.first.inner_text()
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "ray-dashboard-jobs.png"))
            browser.close()
    finally:
        if search is not None:
            search.kill()
            search.wait(timeout=60)
        head.terminate()
        head.wait(timeout=60)
        _kill_processes_with(f"RAY_TMPDIR={temp_dir}")
        shutil.rmtree(temp_dir, ignore_errors=True)
