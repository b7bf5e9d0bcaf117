"""`python -m tests.chaos --size full|bounded [--only 1,7] [--write CHAOS.md]`: the table."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.chaos.oracle import table
from tests.chaos.runner import BY_ID, run

START, END = "<!-- chaos:table:start -->", "<!-- chaos:table:end -->"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--size", choices=("bounded", "full"), default="bounded")
    parser.add_argument("--only", help="comma-separated fault ids (e.g. 1,7,13b)")
    parser.add_argument("--root", type=Path, help="where logs and data go (kept); default: tmp")
    parser.add_argument("--write", type=Path, help="write the table (markdown) to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    if only and not only <= set(BY_ID):
        parser.error(f"unknown fault id(s): {', '.join(sorted(only - set(BY_ID)))}")
    root = args.root or Path(tempfile.mkdtemp(prefix="lane-chaos-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    when = datetime.datetime.now(datetime.UTC)

    def show(row: object) -> None:
        print(table([row]).splitlines()[-1], flush=True)  # type: ignore[list-item]

    print(f"chaos suite, size {args.size}, data under {root}", flush=True)
    rows = run(args.size, root, only, on_row=show)
    took = time.monotonic() - started
    text = table(rows)
    print()
    print(text)
    failed = [r for r in rows if not r.ok]
    for r in failed:
        print(f"\n{r.fault}: NOT OK", file=sys.stderr)
        for p in r.problems[:20]:
            print(f"  {p}", file=sys.stderr)
    print(f"\n{len(rows) - len(failed)}/{len(rows)} rows clean in {took / 60:.1f} min")
    if args.write:
        block = (
            f"{START}\nSize **{args.size}**, run {when:%Y-%m-%d %H:%M} UTC "
            f"(`python -m tests.chaos --size {args.size}"
            + (f" --only {args.only}" if args.only else "")
            + f"`), {took / 60:.1f} min on {os.cpu_count()} cores "
            f"({platform.python_implementation()} {platform.python_version()}); "
            f"{len(rows) - len(failed)}/{len(rows)} rows clean.\n\n{text}\n"
            + "".join(
                f"\n**{r.fault}**, not clean:\n" + "".join(f"* {p}\n" for p in r.problems[:8])
                for r in failed
            )
            + END
        )
        old = args.write.read_text() if args.write.exists() else ""
        if START in old and END in old:
            new = old[: old.index(START)] + block + old[old.index(END) + len(END) :]
        else:
            new = f"# Chaos and security suite\n\n{block}\n"
        args.write.write_text(new)
    if args.root is None and not args.keep and not failed:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
