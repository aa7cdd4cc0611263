"""Print the newest CPU build of torch (`torch-*+cpu-cpXY-*.whl`) in pip's find-links, or nothing.

scripts/setup asks this when https://download.pytorch.org/whl/cpu does not answer: a machine
with a local wheelhouse then gets the CPU build instead of PyPI's CUDA build.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys


def find_links() -> list[str]:
    conf = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    dirs = [
        d
        for line in conf.splitlines()
        if "find-links" in line
        for d in line.split("=", 1)[1].strip("'\" ").split()
    ]
    dirs += os.environ.get("PIP_FIND_LINKS", "").split()
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


def version(wheel: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", os.path.basename(wheel).split("-")[1].split("+")[0])]


def main() -> None:
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    wheels = [w for d in find_links() for w in glob.glob(os.path.join(d, f"torch-*+cpu-{tag}-{tag}-*.whl"))]
    print(max(wheels, key=version) if wheels else "")


if __name__ == "__main__":
    main()
