"""Regenerate the wire code in ``genogate/wire/v1`` from ``proto/genogate/v1``, or check it for drift.

    python tools/protogen.py           # regenerate genogate/wire/v1/*_pb2.py, *_pb2_grpc.py and *.pyi
    python tools/protogen.py --check   # exit 1, listing the files, if the committed code is stale

The protos keep the package ``genogate.v1`` (wire names such as ``genogate.v1.NodeService``), but the
generated modules live in ``genogate.wire.v1`` and protoc derives Python imports from proto *paths*. So the
sources are copied into a scratch tree at ``genogate/wire/v1/*.proto`` with their
``import "genogate/v1/..."`` lines rewritten, and compiled from there: ``node_pb2`` then imports
``genogate.wire.v1.common_pb2``.

Uses ``python -m grpc_tools.protoc`` and the mypy-protobuf plugins installed next to this interpreter, at
the versions pinned in pyproject.toml (a warning names any mismatch: other versions write other code).
The output depends only on the proto sources and those versions.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = ROOT / "proto" / "genogate" / "v1"
OUT_DIR = ROOT / "genogate" / "wire" / "v1"
SOURCE_PREFIX = "genogate/v1/"  # how the protos import each other
TARGET_PREFIX = "genogate/wire/v1/"  # the Python package path the generated code must import from
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
PINNED_TOOLS = ("grpcio-tools", "mypy-protobuf")

_IMPORT_RE = re.compile(r'^(\s*import\s+(?:public\s+|weak\s+)?")' + re.escape(SOURCE_PREFIX), re.MULTILINE)


class ProtogenError(Exception):
    """A problem the user must fix (missing plugin, protoc failure); printed as one message."""


def _is_generated(path: Path) -> bool:
    return path.is_file() and path.name.endswith(GENERATED_SUFFIXES)


def _plugin(name: str) -> Path:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise ProtogenError(f"{path} not found: install the dev extras (pip install -e '.[dev]')")
    return path


def _version_warnings() -> list[str]:
    """Differences between the installed generator versions and the ``==`` pins in pyproject.toml."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    specs = [s for group in project.get("optional-dependencies", {}).values() for s in group]
    warnings = []
    for tool in PINNED_TOOLS:
        pins = [s.split("==", 1)[1].strip() for s in specs if re.match(rf"{re.escape(tool)}\s*==", s)]
        if not pins:
            continue
        try:
            installed = metadata.version(tool)
        except metadata.PackageNotFoundError:
            installed = "not installed"
        if installed != pins[0]:
            warnings.append(f"{tool} is {installed}, pyproject.toml pins {pins[0]}")
    return warnings


def generate(dest: Path) -> list[Path]:
    """Compile every proto into ``dest`` (flat); return the generated files, sorted."""
    protos = sorted(PROTO_DIR.glob("*.proto"))
    if not protos:
        raise ProtogenError(f"no .proto files in {PROTO_DIR}")
    with tempfile.TemporaryDirectory(prefix="protogen-") as scratch:
        src_root = Path(scratch) / "src"
        out_root = Path(scratch) / "out"
        src_dir = src_root / TARGET_PREFIX
        src_dir.mkdir(parents=True)
        out_root.mkdir()
        for proto in protos:
            text = proto.read_text(encoding="utf-8")
            rewritten = _IMPORT_RE.sub(r"\g<1>" + TARGET_PREFIX, text)
            (src_dir / proto.name).write_text(rewritten, encoding="utf-8")

        import grpc_tools

        well_known = Path(grpc_tools.__file__).parent / "_proto"
        cmd = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{src_root}",
            f"-I{well_known}",
            f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
            f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
            f"--python_out={out_root}",
            f"--grpc_python_out={out_root}",
            f"--mypy_out={out_root}",
            f"--mypy_grpc_out={out_root}",
            *(TARGET_PREFIX + p.name for p in protos),  # relative to -I: descriptor names stay stable
        ]
        done = subprocess.run(cmd, cwd=src_root, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ProtogenError(f"protoc failed (exit {done.returncode}):\n{done.stderr.strip()}")

        dest.mkdir(parents=True, exist_ok=True)
        written = []
        for produced in sorted((out_root / TARGET_PREFIX).iterdir()):
            if not _is_generated(produced):
                continue
            target = dest / produced.name
            # Normalise line endings and the trailing newline so the output never depends on the platform.
            text = produced.read_text(encoding="utf-8").replace("\r\n", "\n").rstrip("\n") + "\n"
            target.write_text(text, encoding="utf-8", newline="\n")
            written.append(target)
        return written


def _write() -> int:
    with tempfile.TemporaryDirectory(prefix="protogen-") as tmp:
        fresh = generate(Path(tmp))
        names = {p.name for p in fresh}
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        for stale in sorted(p for p in OUT_DIR.iterdir() if _is_generated(p) and p.name not in names):
            stale.unlink()
            print(f"removed {stale.relative_to(ROOT)}")
        for path in fresh:
            shutil.copyfile(path, OUT_DIR / path.name)
    init = OUT_DIR / "__init__.py"
    if not init.exists():
        init.write_text("")
    print(f"generated {len(fresh)} files in {OUT_DIR.relative_to(ROOT)}")
    return 0


def _check() -> int:
    with tempfile.TemporaryDirectory(prefix="protogen-") as tmp:
        fresh = {p.name: p for p in generate(Path(tmp))}
        committed = {p.name: p for p in OUT_DIR.iterdir() if _is_generated(p)} if OUT_DIR.is_dir() else {}
        problems = []
        for name in sorted(fresh.keys() | committed.keys()):
            if name not in committed:
                problems.append(f"missing   {name}")
            elif name not in fresh:
                problems.append(f"stale     {name} (no proto generates it)")
            elif not filecmp.cmp(fresh[name], committed[name], shallow=False):
                problems.append(f"differs   {name}")
    if not problems:
        print(f"{OUT_DIR.relative_to(ROOT)} is up to date with {PROTO_DIR.relative_to(ROOT)}")
        return 0
    print(
        f"generated wire code in {OUT_DIR.relative_to(ROOT)} is out of date with {PROTO_DIR.relative_to(ROOT)}:",
        file=sys.stderr,
    )
    for line in problems:
        print(f"  {line}", file=sys.stderr)
    for warning in _version_warnings():
        print(f"  note: {warning}", file=sys.stderr)
    print("run `make proto` (python tools/protogen.py) and commit the result", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="regenerate into a temporary directory and fail on any difference",
    )
    args = parser.parse_args(argv)
    if not args.check:
        for warning in _version_warnings():
            print(f"warning: {warning}; the output will not match CI", file=sys.stderr)
    try:
        return _check() if args.check else _write()
    except ProtogenError as exc:
        print(f"protogen: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
