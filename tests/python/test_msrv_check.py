"""tests/msrv_check.py, CI's check that every declared rust-version is true:
it passes on the workspace as it is, and fails, naming the crate, the
dependency and the fix, when a declaration is made false."""

import json
import subprocess
import sys

import pytest

from conftest import REPO

CHECK = REPO / "tests" / "msrv_check.py"


@pytest.fixture(scope="module")
def metadata():
    run = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    return json.loads(run.stdout)


def run_check(tmp_path, metadata):
    saved = tmp_path / "metadata.json"
    saved.write_text(json.dumps(metadata))
    return subprocess.run(
        [sys.executable, str(CHECK), "--metadata", str(saved)], capture_output=True, text=True
    )


def package(metadata, name):
    return next(p for p in metadata["packages"] if p["name"] == name)


def test_the_workspace_passes(tmp_path, metadata):
    run = run_check(tmp_path, metadata)
    assert run.returncode == 0, run.stderr
    assert "every workspace crate's rust-version holds" in run.stdout


def test_a_dependency_newer_than_the_declaration_fails(tmp_path, metadata):
    redb = package(metadata, "redb")
    package(metadata, "eventhost")["rust_version"] = "1.85"
    run = run_check(tmp_path, metadata)
    assert run.returncode == 1
    assert (
        f"error: eventhost declares rust-version 1.85, but redb {redb['version']} needs rustc "
        f"{redb['rust_version']} (eventhost -> redb)" in run.stderr
    ), run.stderr
    assert "cargo update -p redb --precise" in run.stderr


def test_a_transitive_dependency_counts(tmp_path, metadata):
    # The amqp plugin reaches amq-protocol only through lapin.
    protocol = package(metadata, "amq-protocol")
    protocol["rust_version"] = "1.999"
    run = run_check(tmp_path, metadata)
    assert run.returncode == 1
    assert "eventhost-amqp declares rust-version" in run.stderr, run.stderr
    assert "-> lapin -> " in run.stderr and "amq-protocol" in run.stderr, run.stderr


def test_a_workspace_crate_counts_and_every_crate_must_declare(tmp_path, metadata):
    package(metadata, "eventhost-plugin-api")["rust_version"] = "1.99"
    package(metadata, "fixture-valid-only")["rust_version"] = None
    run = run_check(tmp_path, metadata)
    assert run.returncode == 1
    assert "eventhost-printer declares rust-version" in run.stderr, run.stderr
    assert "raise eventhost-printer's rust-version to 1.99" in run.stderr, run.stderr
    assert "fixture-valid-only declares no rust-version" in run.stderr, run.stderr
