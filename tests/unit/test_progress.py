"""``genogate.progress`` and the words the command lines print (``genogate.words``): the progress lines of
ingest and synth, on a terminal (a real pty) and off it (a pipe), from real subprocesses; plural forms; enum
values in JSON."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from genogate.progress import Progress, amount, duration
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb
from genogate.words import enum_word, message_json, plural

NODE = str(Path(sys.executable).with_name("genogate-node"))
PLAIN_LINE = re.compile(r"^(synth|ingest): +\d+\.\d%, .+ of .+, .+/s, ETA (\d+s|\d+m\d\ds|-)( \(.+\))?$")


def test_plain_lines_every_interval_and_a_last_line() -> None:
    out = io.StringIO()
    p = Progress(1000, what="job", unit="variants", stream=out, interval=0.0, tty=False)
    p.update(0)  # the rate's origin: nothing printed yet
    assert out.getvalue() == ""
    time.sleep(0.01)
    p.update(500, "chr1")
    p.done(1000)
    first, last = out.getvalue().splitlines()
    assert first.startswith("job:  50.0%, 500 of 1,000 variants, ") and first.endswith(" (chr1)")
    assert "ETA " in first and "ETA -" not in first
    assert re.fullmatch(r"job: done, 1,000 variants in \d+s \(.+ variants/s\)", last)


def test_no_line_before_the_interval_has_passed() -> None:
    out = io.StringIO()
    p = Progress(10, stream=out, interval=3600.0, tty=False)
    for i in range(10):
        p.update(i)
    assert out.getvalue() == ""
    p.done(10)
    assert out.getvalue() == ""  # a quick job stays quiet, also at its end


def test_the_terminal_line_is_redrawn_in_place_and_cleared() -> None:
    out = io.StringIO()
    p = Progress(2_000_000, what="ingest", stream=out, tty=True)
    p.update(0)
    time.sleep(0.25)
    p.update(1_000_000, "a.vcf.gz")
    text = out.getvalue()
    assert text.startswith("\ringest: [############            ]  50.0%, 1.0 MB of 2.0 MB, ") and "\n" not in text
    p.done()
    assert out.getvalue().endswith("\r") and "\n" not in out.getvalue()


def test_amounts_and_durations() -> None:
    assert [amount(n, "bytes") for n in (12, 12_345, 12_345_678, 2.5e9)] == ["12 B", "12.3 kB", "12.3 MB", "2.5 GB"]
    assert amount(1234, "sites") == "1,234 sites"
    assert [duration(s) for s in (0.4, 42, 185, 3720)] == ["0s", "42s", "3m05s", "1h02m"]


def test_plural() -> None:
    assert [plural(n, "query") for n in (0, 1, 2)] == ["0 queries", "1 query", "2 queries"]
    assert plural(1, "entry") == "1 entry" and plural(3, "entry") == "3 entries"
    assert plural(2, "day") == "2 days" and plural(2, "match") == "2 matches" and plural(2, "site") == "2 sites"
    assert plural(1204, "study", "studies") == "1,204 studies" and plural(2, "person", "people") == "2 people"


def test_enum_values_in_json_are_the_words_the_query_json_uses() -> None:
    response = cpb.GetStudyBudgetResponse(
        sites=[
            cpb.SiteBudget(site="a", status=pb.SITE_STATUS_ANSWERED),
            cpb.SiteBudget(site="b", status=pb.SITE_STATUS_REFUSED, reason=pb.ERROR_REASON_GRANT_MISSING),
            cpb.SiteBudget(site="c", status=pb.SITE_STATUS_TIMED_OUT),
        ]
    )
    doc = message_json(response)
    assert [(s["status"], s.get("reason")) for s in doc["sites"]] == [
        ("answered", None),
        ("refused", "GRANT_MISSING"),
        ("timed_out", None),
    ]
    assert enum_word(cpb.StudyState.DESCRIPTOR.values_by_name["STUDY_STATE_APPROVED"]) == "approved"
    assert enum_word(pb.QueryKind.DESCRIPTOR.values_by_name["QUERY_KIND_CASE_CONTROL"]) == "case_control"


# Real subprocesses -------------------------------------------------------------------------------------------


def test_synth_and_ingest_print_periodic_lines_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    synth = subprocess.run(
        [NODE, "synth", "--samples", "60", "--variants", "3000", "--out", str(tmp_path), "--progress-interval", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = synth.stderr.splitlines()
    assert len(lines) >= 3, synth.stderr
    assert all(PLAIN_LINE.match(line) for line in lines[:-1]), synth.stderr
    assert re.fullmatch(r"synth: done, 3,000 variants in \d+s \(.+\)", lines[-1])
    assert "\r" not in synth.stderr
    assert "vcf      " in synth.stdout  # stdout stays the result

    ingest = subprocess.run(
        [NODE, "ingest", "--store", str(tmp_path / "s.db"), "--vcf", str(tmp_path / "cohort.vcf.gz"),
         "--samples", str(tmp_path / "samples.tsv"), "--progress-interval", "0", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )  # fmt: skip
    lines = ingest.stderr.splitlines()
    assert len(lines) >= 2 and all(PLAIN_LINE.match(line) for line in lines[:-1]), ingest.stderr
    assert " kB of " in lines[0] and "cohort.vcf.gz" in lines[0]
    assert lines[-1].startswith("ingest: done, ")
    import json

    assert json.loads(ingest.stdout)["status"] == "ingested"


def test_synth_redraws_one_line_on_a_terminal(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [NODE, "synth", "--samples", "60", "--variants", "20000", "--out", str(tmp_path)],
            stdout=subprocess.DEVNULL,
            stderr=follower,
        )
        os.close(follower)
        chunks = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if ready:
                try:
                    data = os.read(leader, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(leader)
    text = b"".join(chunks).decode()
    assert "\rsynth: [" in text and "ETA " in text and "variants/s" in text, text
    assert "\n" not in text.replace("\r\n", "\n").strip("\r ")  # redrawn, never a new line
    assert "done," not in text  # the line is cleared, not followed by a summary
