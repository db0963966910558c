"""Write the variable tables of each role's README from its meta/argument_specs.yml.

Usage: .venv/bin/python tools/role_docs.py [--check]
The text above the first "## Variables" heading is the role's own; everything from there on is generated.
With --check, exit 1 and name the roles whose README is out of date.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
MARK = "## Variables"


def _cell(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (dict, list, bool)) or value is None else str(value)
    return text.replace("|", "\\|")


def _rows(options: dict[str, Any], prefix: str = "") -> list[str]:
    """One row per option, and one per suboption of a dict option (``fault_params.delay``)."""
    rows = []
    for name, option in options.items():
        default = "(required)" if option.get("required") else _cell(option.get("default", ""))
        description = option.get("description", "")
        description = " ".join(description) if isinstance(description, list) else description
        if option.get("choices"):
            description += " One of: " + ", ".join(map(str, option["choices"])) + "."
        rows.append(f"| `{prefix}{name}` | `{default}` | {description} |")
        if option.get("type") == "dict" and option.get("options") and prefix == "":
            rows += _rows(option["options"], f"{name}.")
    return rows


def variables_section(specs: dict[str, Any]) -> str:
    lines: list[str] = []
    for entry, data in specs.items():
        lines += [f"{MARK} (entry point `{entry}`)", ""]
        if data.get("short_description"):
            lines += [data["short_description"], ""]
        lines += ["| variable | default | description |", "|---|---|---|"]
        lines += _rows(data.get("options") or {})
        lines.append("")
    return "\n".join(lines)


def render(role: Path) -> str:
    readme = role / "README.md"
    intro = readme.read_text().split(MARK, 1)[0].rstrip() + "\n\n" if readme.exists() else f"# Role `{role.name}`\n\n"
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    return intro + variables_section(specs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    stale = []
    for role in sorted(path for path in (ROOT / "roles").iterdir() if path.is_dir()):
        text = render(role)
        readme = role / "README.md"
        if readme.exists() and readme.read_text() == text:
            continue
        stale.append(role.name)
        if not args.check:
            readme.write_text(text)
    if args.check and stale:
        print("out of date: " + ", ".join(stale) + " (run tools/role_docs.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
