"""Writing a command's files together: all of them, each atomically, or (after a failure) none.

``FileBatch`` collects files (and the directories to create for them) and ``commit`` writes them with
``genogate.tls.write_file``; should one fail, the files already written and the directories created are
removed again. Nothing is ever overwritten. Secrets get mode 0600. ``Report`` lists what a command created,
for printing (file names and what they are, never their contents). Shared by ``node.admin`` and
``coordinator.admin``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from genogate import tls
from genogate.errors import LocalError


@dataclass
class Report:
    """What a command did, for printing: created files, then notes."""

    created: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    changed: bool = True
    """False when the command found everything already as asked (``status`` "unchanged" in JSON)."""

    def lines(self) -> list[str]:
        width = max((len(str(p)) for p, _ in self.created), default=0)
        out = ["created:"] if self.created else []
        out += [f"  {str(p):<{width}}  {what}" for p, what in self.created]
        return out + self.notes

    def to_json(self, status: str) -> dict[str, object]:
        """``--json``: ``status`` (e.g. "created", "added"; "unchanged" when nothing changed), the files
        created and the notes."""
        return {
            "status": status if self.changed else "unchanged",
            "created": [{"path": str(p), "what": what} for p, what in self.created],
            "notes": list(self.notes),
        }


@dataclass
class FileBatch:
    """Files to write together: all of them, or (after a failure) none."""

    files: list[tuple[Path, bytes, int, str]] = field(default_factory=list)
    dirs: list[tuple[Path, int]] = field(default_factory=list)

    def add(self, path: Path, data: bytes, what: str, *, secret: bool = False) -> None:
        self.files.append((path, data, 0o600 if secret else 0o644, what))

    def commit(self, report: Report) -> None:
        existing = [str(p) for p, *_ in self.files if p.exists() or p.is_symlink()]
        if existing:
            raise LocalError(f"refusing to overwrite existing files: {', '.join(existing)}")
        made_dirs: list[Path] = []
        written: list[Path] = []
        try:
            for directory, mode in self.dirs:
                made_dirs.extend(_mkdirs(directory, mode))
            for path, data, mode, what in self.files:
                tls.write_file(path, data, mode=mode)
                written.append(path)
                report.created.append((path, what))
        except BaseException as exc:
            for path in reversed(written):
                path.unlink(missing_ok=True)
            for directory in reversed(made_dirs):
                try:
                    directory.rmdir()
                except OSError:
                    pass
            if isinstance(exc, FileExistsError):
                raise LocalError(str(exc)) from None
            if isinstance(exc, OSError):
                raise LocalError(f"{exc.filename or ''}: cannot write ({exc.strerror}); nothing was created") from None
            raise


def _mkdirs(directory: Path, mode: int) -> list[Path]:
    """Create ``directory`` and missing parents; returns those created, outermost first."""
    missing = []
    probe = directory
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    if not probe.is_dir():
        raise LocalError(f"{probe} is not a directory")
    made = []
    for d in reversed(missing):
        os.mkdir(d, mode)
        os.chmod(d, mode)  # exactly ``mode``, whatever the umask
        made.append(d)
    return made
