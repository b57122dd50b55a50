#!/usr/bin/env python3
"""The declared minimum Rust must be true.

Fails when a crate of the workspace declares a `rust-version` older than
what one of the crates it builds with needs: a locked dependency (direct or
transitive, every platform's) or another workspace crate. Every workspace
crate must declare one, so that nothing goes unchecked. Reads
`cargo metadata --format-version 1 --locked`, which has each package's
`rust_version` and the resolved graph; only the standard library is used.

    python3 tests/msrv_check.py                  # the workspace this file is in
    python3 tests/msrv_check.py --metadata FILE  # a saved `cargo metadata` output

Exit status: 0 every declaration holds, 1 at least one does not (one line
each, naming the crate, the dependency, the path between them and the fix),
2 cargo metadata could not be read.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path


def version(text):
    """'1.85' or '1.85.0' as a comparable tuple."""
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def show(v):
    return ".".join(str(p) for p in v).removesuffix(".0")


def check(metadata):
    """Returns the list of problems, each one line."""
    packages = {p["id"]: p for p in metadata["packages"]}
    members = set(metadata["workspace_members"])
    nodes = {n["id"]: n for n in metadata["resolve"]["nodes"]}

    def deps(pkg_id, with_dev):
        for dep in nodes[pkg_id]["deps"]:
            kinds = {k["kind"] for k in dep["dep_kinds"]}
            if with_dev or kinds - {"dev"}:
                yield dep["pkg"]

    def label(pkg_id):
        p = packages[pkg_id]
        return f"{p['name']} {p['version']}"

    problems = []
    for member in sorted(members, key=lambda i: packages[i]["name"]):
        name = packages[member]["name"]
        declared = packages[member]["rust_version"]
        if declared is None:
            problems.append(
                f"{name} declares no rust-version: add `rust-version.workspace = true` "
                f"to {packages[member]['manifest_path']}"
            )
            continue
        declared = version(declared)
        # Breadth-first, so the path reported is a shortest one. The
        # member's dev-dependencies count (its tests build with them);
        # a dependency's do not.
        via = {member: None}
        queue = [member]
        while queue:
            current = queue.pop(0)
            for dep in deps(current, with_dev=current == member):
                if dep in via:
                    continue
                via[dep] = current
                queue.append(dep)
                needs = packages[dep]["rust_version"]
                if needs is None or version(needs) <= declared:
                    continue
                path = [dep]
                while via[path[-1]] is not None:
                    path.append(via[path[-1]])
                chain = " -> ".join(packages[p]["name"] for p in reversed(path))
                dep_name = packages[dep]["name"]
                fix = (
                    f"raise {name}'s rust-version to {show(version(needs))}"
                    if dep in members
                    else f"raise {name}'s rust-version to {show(version(needs))}, or pin an "
                    f"older {dep_name} (`cargo update -p {dep_name} --precise <version>`)"
                )
                problems.append(
                    f"{name} declares rust-version {show(declared)}, but {label(dep)} needs "
                    f"rustc {show(version(needs))} ({chain}): {fix}"
                )
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metadata", type=Path, help="read this `cargo metadata` output instead")
    args = parser.parse_args()
    if args.metadata:
        metadata = json.loads(args.metadata.read_text())
    else:
        root = Path(__file__).resolve().parent.parent
        run = subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked"],
            cwd=root,
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            sys.stderr.write(run.stderr)
            print("msrv check: cargo metadata failed (see above)", file=sys.stderr)
            return 2
        metadata = json.loads(run.stdout)
    problems = check(metadata)
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    if problems:
        return 1
    declared = sorted(
        {p["rust_version"] for p in metadata["packages"] if p["id"] in metadata["workspace_members"]},
        key=version,
    )
    print(
        f"msrv check: every workspace crate's rust-version holds for its locked dependencies "
        f"(declared: {', '.join(declared)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
