"""The README's configuration reference, generated from the pydantic models.

`python -m supervisor.reference --write` rewrites the blocks between the markers in README.md;
`tests/test_reference.py` fails when they are out of date, so a new setting cannot go
undocumented.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from supervisor.core.durations import parse_duration
from supervisor.core.policy import Policy
from supervisor.fleet import GatewaySpec
from supervisor.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"
#: defaults computed at run time, shown as what they resolve to for a typical user
DYNAMIC_DEFAULTS = {"state_dir": "`~/.local/state/lane-supervisor`"}


def _is_duration(field: FieldInfo) -> bool:
    return any(getattr(m, "func", None) is parse_duration for m in field.metadata)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _default(name: str, field: FieldInfo) -> str:
    if name in DYNAMIC_DEFAULTS:
        return DYNAMIC_DEFAULTS[name]
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if _is_duration(field) and isinstance(value, int | float):
        return f'`"{_duration(float(value))}"`'
    if value == {}:
        return "`{}`"
    if isinstance(value, tuple | list):
        return "`[" + ", ".join(f'"{v}"' for v in value) + "]`"
    return f"`{value}`"


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def fleet_table() -> str:
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for name, field in Policy.model_fields.items():
        rows.append(f"| `{name}` | {_default(name, field)} | {_one_line(field.description)} |")
    return "\n".join(rows)


def gateway_table() -> str:
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for name, field in GatewaySpec.model_fields.items():
        if name in {"policy", "token"}:
            continue
        meaning = _one_line(field.description) or {
            "name": "1-63 of letters, digits, `._-`; names Redis keys and tasks",
            "url": "`ws://` or `wss://` URL of the gateway",
            "token_env": "environment variable holding the gateway token (or `token_file`)",
            "token_file": "file holding the token, relative to the fleet file (or `token_env`)",
            "labels": "a table of strings, for paging routes",
            "client_mode": "client mode sent on connect",
        }.get(name, "")
        default = "required" if field.is_required() else _default(name, field)
        rows.append(f"| `{name}` | {default} | {meaning} |")
    return "\n".join(rows)


def settings_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        rows.append(
            f"| `SUPERVISOR_{name.upper()}` | {_default(name, field)} | "
            f"{_one_line(field.description)} |"
        )
    return "\n".join(rows)


BLOCKS = {"fleet": fleet_table, "gateway": gateway_table, "settings": settings_table}


def render(text: str) -> str:
    """`text` with every generated block replaced by its current content."""
    for name, make in BLOCKS.items():
        pattern = re.compile(
            rf"(<!-- reference:{name} -->\n)(?:.*?\n)?(<!-- /reference:{name} -->)", re.DOTALL
        )
        if not pattern.search(text):
            raise ValueError(f"README has no <!-- reference:{name} --> block")
        table = make()
        text = pattern.sub(lambda m, t=table: m.group(1) + t + "\n" + m.group(2), text)  # type: ignore[misc]
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite README.md in place")
    args = parser.parse_args(argv)
    current = README.read_text()
    fresh = render(current)
    if args.write:
        README.write_text(fresh)
        return 0
    if fresh != current:
        print("README.md's configuration reference is out of date: run "
              "python -m supervisor.reference --write", file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
