"""Run the real eventhost binary for Python end-to-end tests.

The binary and the plugins must be built first (`cargo build --workspace`,
as tests/run.sh does); the node listens on a free loopback port, which is
read from its log.
"""

import json
import pathlib
import signal
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = ROOT / "target" / "debug"
EVENTHOST = BUILD / "eventhost"


class Node:
    """An `eventhost run` process with the printer recording every event."""

    def __init__(self, workdir: pathlib.Path, plugins: str = ""):
        assert EVENTHOST.exists(), f"{EVENTHOST} is missing: run `cargo build --workspace` first"
        self.workdir = workdir
        self.events_file = workdir / "events.jsonl"
        config = workdir / "config.toml"
        config.write_text(
            "[host]\n"
            f"plugin_dirs = [{json.dumps(str(BUILD))}]\n"
            "shutdown_timeout_ms = 500\n"
            "[api]\n"
            'bind = "127.0.0.1:0"\n'
            "[[plugins]]\n"
            'name = "printer"\n'
            "[plugins.config]\n"
            'format = "json"\n'
            f"output = {json.dumps(str(self.events_file))}\n" + plugins
        )
        self.log_file = workdir / "eventhost.log"
        self.process = subprocess.Popen(
            [str(EVENTHOST), "--config", str(config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=self.log_file.open("w"),
            cwd=workdir,
        )
        line = self.wait_for_log("HTTP API on http://")
        address = line.split("HTTP API on http://", 1)[1].split(";", 1)[0].strip()
        self.url = f"http://{address}"

    def log(self) -> str:
        return self.log_file.read_text()

    def wait_for_log(self, needle: str, timeout: float = 30.0) -> str:
        """Waits until a log line contains `needle` and returns that line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log().splitlines():
                if needle in line:
                    return line
            if self.process.poll() is not None:
                raise AssertionError(f"eventhost exited ({self.process.returncode}):\n{self.log()}")
            time.sleep(0.02)
        raise AssertionError(f"eventhost did not log {needle!r} within {timeout}s:\n{self.log()}")

    def events(self, count: int, timeout: float = 20.0) -> list:
        """The events the printer recorded, once there are at least `count`."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.events_file.read_text().splitlines() if self.events_file.exists() else []
            if len(lines) >= count or time.monotonic() > deadline:
                return [json.loads(line) for line in lines]
            time.sleep(0.02)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path)
    yield n
    code = n.stop()
    assert "panicked" not in n.log(), n.log()
    assert code == 0, f"eventhost exited with {code}:\n{n.log()}"
