"""The `vgrout` command."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("vgrout: commands are being built", file=sys.stderr)
    return 2
