"""Installed size of a serving environment: the files of the distributions that a
list of requirements pulls in, as installed in the running Python's environment.

    python bench/serving_size.py REQUIREMENT...        # e.g. the model's requirements.txt
    python bench/serving_size.py -r requirements-serve.txt

Run it with the Python of the environment that holds them (the project venv
for the registered model's requirements, before and after; the serving venv for
requirements-serve.txt). Each requirement's dependencies are followed through
the installed metadata (extras included); the size is the sum of the files each
distribution's RECORD lists, as ``du`` counts bytes, plus none of pip or setuptools.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib.metadata import Distribution, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def closure(requirements: list[str], strict: bool = False) -> dict[str, Distribution]:
    """The installed distributions these requirements and theirs need (a missing one
    raises PackageNotFoundError); with ``strict``, each installed version must match."""
    found: dict[str, Distribution] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        found[name] = dist = distribution(requirement.name)
        if strict and not requirement.specifier.contains(dist.version, prereleases=True):
            raise ValueError(f"{requirement}: {dist.version} is installed")
        for extra in requirement.extras or {""}:
            for dependency in map(Requirement, dist.requires or []):
                if dependency.marker is None or dependency.marker.evaluate({"extra": extra}):
                    todo.append(dependency)
    return found


def size(dist: Distribution) -> int:
    total = 0
    for file in dist.files or []:
        path = Path(dist.locate_file(file))
        if path.is_file():
            total += path.stat().st_size
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("requirements", nargs="*")
    parser.add_argument("-r", dest="file", help="a requirements file")
    args = parser.parse_args()
    wanted = list(args.requirements)
    if args.file:
        # pip's rule: a comment starts at a "#" that begins the line or follows a space.
        text = Path(args.file).read_text()
        lines = [re.split(r"(?:^|\s)#", line)[0].strip() for line in text.splitlines()]
        wanted += [line for line in lines if line and not line.startswith("-")]
    dists = closure(wanted)
    sizes = sorted(((size(d), name) for name, d in dists.items()), reverse=True)
    total = sum(s for s, _ in sizes)
    print(f"{sys.executable}: {len(dists)} distributions, {total / 2**20:.0f} MiB")
    print("largest: " + ", ".join(f"{name} {s / 2**20:.0f}" for s, name in sizes[:8]))


if __name__ == "__main__":
    main()
