"""The runner's ledger work on one node, in one process (on a lab node every Ansible task costs about a second):
before a run, empty the node's ledgers; after it, record the worker processes alive and pack every ledger, as it
is at that instant, into one archive for the controller to fetch. Both first measure the node's clock against
the broker's (a ``clock`` record in the node's event ledger).

    python -m chaoslab.node.ledgers reset --events E [--ledger F ...]
    python -m chaoslab.node.ledgers collect --node N --events E --archive A [--alive F] [--file NAME=PATH ...]

Workers may still be running tasks while the ledgers are collected (a backlog the drain did not finish): each
file goes into the archive with the size it had when the archive was begun, so a line written meanwhile is
either whole in it or not in it at all, bar the last one, which readers of a ledger skip when it is partial.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
from pathlib import Path

from chaoslab.ledger import LedgerWriter
from chaoslab.node.clock_record import record_clock
from chaoslab.node.node_procs import alive_record


def reset(ledgers: list[Path]) -> list[str]:
    """Empty each ledger that exists (writers keep appending to the same files); the names emptied."""
    emptied = []
    for path in ledgers:
        try:
            with open(path, "r+b") as handle:
                handle.truncate(0)
        except FileNotFoundError:
            continue
        emptied.append(str(path))
    return emptied


def pack(files: dict[str, Path], archive: Path) -> list[str]:
    """Every file that exists into a tar archive under its name (written whole, then renamed into place)."""
    packed = []
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".part")
    with tarfile.open(partial, "w") as tar:
        for name, path in files.items():
            try:
                with open(path, "rb") as handle:
                    info = tar.gettarinfo(arcname=name, fileobj=handle)
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    tar.addfile(info, handle)
            except FileNotFoundError:
                continue
            packed.append(name)
    os.replace(partial, archive)
    return packed


def _file(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or "/" in name or name.startswith("."):
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=PATH with a plain file name")
    return name, Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaoslab.node.ledgers", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["reset", "collect"])
    parser.add_argument("--events", required=True, help="the node's event ledger (its clock record goes there)")
    parser.add_argument("--ledger", action="append", default=[], help="reset: a task ledger to empty")
    parser.add_argument("--node", default="", help="collect: the node's name, for the alive record")
    parser.add_argument("--alive", default="", help="collect: the worker ledger to append the alive record to")
    parser.add_argument("--file", type=_file, action="append", default=[], help="collect: NAME=PATH to pack")
    parser.add_argument("--archive", default="", help="collect: the archive to write")
    parser.add_argument("--no-clock", action="store_true", help="skip measuring the clock (tests without Redis)")
    args = parser.parse_args(argv)
    if args.action == "collect" and not args.archive:
        parser.error("collect needs --archive")
    result: dict[str, object] = {}
    if args.action == "reset":
        result["emptied"] = reset([Path(path) for path in [*args.ledger, args.events]])
    if not args.no_clock:
        result["clock"] = record_clock(args.events)
    if args.action == "collect":
        if args.alive:
            with LedgerWriter(args.alive, "always") as ledger:
                ledger.write(alive_record(args.node))
        result["packed"] = pack(dict(args.file), Path(args.archive))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
