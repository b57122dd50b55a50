"""Shared fixtures for the Python end-to-end tests: the real eventhost
binary (target/debug/eventhost) with the workspace's plugins
(target/debug), built by `cargo build --workspace` beforehand."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_DIR = REPO / "target" / "debug"
EVENTHOST = BUILD_DIR / "eventhost"

# How long anything may take before a test is declared hung (never a speed limit).
HANG_GUARD = 60.0


def printer(output: Path) -> str:
    """A [[plugins]] entry for the printer, recording events as JSON lines."""
    return (
        '[[plugins]]\nname = "printer"\n[plugins.config]\nformat = "json"\n'
        f"output = {json.dumps(str(output))}\n"
    )


class Eventhost:
    """An eventhost process, its log in a file.

    With `run` (the default) it serves the HTTP API on a free port
    (`url`); with `replay -` each line the test writes with `feed` is
    published as one event.
    """

    def __init__(self, workdir: Path, plugins: str, args=("run",)):
        if not EVENTHOST.exists():
            raise RuntimeError(f"{EVENTHOST} is missing: run `cargo build --workspace` first")
        self.workdir = workdir
        config = workdir / "config.toml"
        config.write_text(
            "[host]\n"
            f"plugin_dirs = [{json.dumps(str(BUILD_DIR))}]\n"
            'data_dir = "data"\n'
            "shutdown_timeout_ms = 2000\n"
            "[api]\n"
            'bind = "127.0.0.1:0"\n\n'
            "[admin]\n"
            'bind = "127.0.0.1:0"\n\n' + plugins
        )
        self.args = tuple(args)
        self.log_path = workdir / "eventhost.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(EVENTHOST), "--config", str(config), *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=workdir,
                env={**os.environ, "RUST_LOG": "info"},
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, needle: str, timeout: float = HANG_GUARD) -> str:
        """Waits for a log line containing `needle` and returns it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log().splitlines():
                if needle in line:
                    return line
            if self.process.poll() is not None:
                raise AssertionError(
                    f"eventhost exited ({self.process.returncode}) before logging {needle!r}:\n{self.log()}"
                )
            time.sleep(0.02)
        raise AssertionError(f"eventhost did not log {needle!r} within {timeout}s:\n{self.log()}")

    @property
    def url(self) -> str:
        """The HTTP API's base URL (with `run`)."""
        line = self.wait_for_log("HTTP API on http://")
        return "http://" + line.split("HTTP API on http://", 1)[1].split(";", 1)[0].strip()

    def feed(self, line: str):
        """Writes one line to eventhost's standard input (one event for `replay -`)."""
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def events(self, count: int, timeout: float = HANG_GUARD) -> list:
        """The events the printer recorded in events.jsonl, once there are `count`."""
        path = self.workdir / "events.jsonl"
        deadline = time.monotonic() + timeout
        while True:
            lines = path.read_text().splitlines() if path.exists() else []
            if len(lines) >= count or time.monotonic() > deadline:
                return [json.loads(line) for line in lines]
            time.sleep(0.02)

    def stop(self) -> int:
        """Stops eventhost and returns its exit status: a replay by ending its
        input, anything else with SIGTERM. Kills it if it hangs."""
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        if self.args[:1] != ("replay",):
            self.process.terminate()
        try:
            return self.process.wait(timeout=HANG_GUARD)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"eventhost did not stop:\n{self.log()}")


@pytest.fixture
def eventhost(tmp_path):
    """Starts eventhost: `eventhost(plugins_toml, args=("run",))`.
    Every host a test started is stopped when the test ends."""
    started = []

    def start(plugins: str, args=("run",)) -> Eventhost:
        host = Eventhost(tmp_path, plugins, args)
        started.append(host)
        return host

    yield start
    for host in started:
        if host.process.poll() is None:
            host.stop()


@pytest.fixture
def node(eventhost, tmp_path):
    """A running node with the printer recording every event; it must stop cleanly."""
    host = eventhost(printer(tmp_path / "events.jsonl"))
    yield host
    code = host.stop()
    assert "panicked" not in host.log(), host.log()
    assert code == 0, f"eventhost exited with {code}:\n{host.log()}"
