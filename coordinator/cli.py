"""``genogate-coordinator``: the access committee's service (arrives with the studies issue)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="genogate-coordinator",
        description="Coordinator of a genogate federation: node registry, studies, grants, fan-out.",
    )
    parser.add_argument("--version", action="version", version="genogate-coordinator 0.1.0")
    parser.parse_args(argv)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
