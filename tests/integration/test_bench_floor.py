"""The federation benchmark's floor and profiler (``bench.relay_floor``, ``bench.relay_server``,
``bench.echo_server``, ``bench.cpu``, ``bench.profiled``), on real processes with real mutual TLS on 127.0.0.1.
No timing is asserted: only what each part must do whatever the machine's speed."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from bench.cpu import cpu_seconds
from bench.echo_server import METHOD as ECHO
from bench.message_sizes import measure
from bench.profiled import UNSEEN, merged, summarize
from bench.relay_floor import ONE_VARIANT, THOUSAND_VARIANTS, Floor, Sizes, interleaved, percentile, throughput
from bench.relay_server import METHOD as RELAY

ROOT = Path(__file__).resolve().parents[2]
SIZES = Sizes(request=1234, reply=567, combined=8910)


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _credentials(work: Path, *, client_cert: bool = True) -> grpc.ChannelCredentials:
    ca = (work / "ca.pem").read_bytes()
    if not client_cert:
        return grpc.ssl_channel_credentials(root_certificates=ca)
    key, cert = (work / "researcher.key").read_bytes(), (work / "researcher.pem").read_bytes()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


@pytest.fixture(scope="module")
def floor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Floor]:
    with Floor(tmp_path_factory.mktemp("floor") / "work", 3, SIZES) as f:
        yield f


@pytest.mark.parametrize("relay", ["asyncio", "futures"])
def test_a_call_reaches_every_echo_server_with_the_exact_bytes(relay: str, tmp_path: Path) -> None:
    with Floor(tmp_path / "work", 3, SIZES, relay=relay) as f:  # type: ignore[arg-type]
        before = f.echo_stats()  # the start-up call
        assert [s["requests"] for s in before] == [1, 1, 1]
        replies = [f.reply() for _ in range(4)]
        f.call()
        after = f.echo_stats()
    assert all(len(r) == SIZES.combined for r in replies)
    digest = hashlib.sha256(f.request).hexdigest()
    assert len(f.request) == SIZES.request
    for s in after:
        assert s == {"requests": 6, "bytes": 6 * SIZES.request, "last_sha256": digest}


def test_an_echo_server_replies_its_size_and_refuses_a_client_without_a_certificate(floor: Floor) -> None:
    port = (floor.dir / "site-1.port").read_text()
    options = [("grpc.ssl_target_name_override", "site-1")]
    with grpc.secure_channel(f"127.0.0.1:{port}", _credentials(floor.dir), options=options) as ch:
        assert len(ch.unary_unary(ECHO)(b"x" * 10, timeout=30)) == SIZES.reply
    with grpc.secure_channel(f"127.0.0.1:{port}", _credentials(floor.dir, client_cert=False), options=options) as ch:
        with pytest.raises(grpc.RpcError) as err:
            ch.unary_unary(ECHO)(b"x", timeout=30)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails: mutual TLS only


def test_the_relay_refuses_a_client_without_a_certificate(floor: Floor) -> None:
    port = (floor.dir / "relay.port").read_text()
    with grpc.secure_channel(f"127.0.0.1:{port}", _credentials(floor.dir, client_cert=False)) as ch:
        with pytest.raises(grpc.RpcError) as err:
            ch.unary_unary(RELAY)(b"x", timeout=30)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_pids_are_live_processes_and_all_exit_after_close(tmp_path: Path) -> None:
    f = Floor(tmp_path / "work", 2, SIZES, relay="futures")
    try:
        pids = f.pids()
        assert set(pids) == {"relay", "echo"} and len(pids["relay"]) == 1 and len(pids["echo"]) == 2
        assert all(_alive(p) for p in pids["relay"] + pids["echo"])
        assert os.getpid() not in pids["relay"] + pids["echo"]
    finally:
        f.close()
    assert not any(_alive(p) for p in pids["relay"] + pids["echo"])
    f.close()  # idempotent


def test_floors_sharing_a_work_directory_keep_to_their_own(tmp_path: Path) -> None:
    (tmp_path / "theirs.txt").write_text("kept")
    with Floor(tmp_path, 1, SIZES) as a, Floor(tmp_path, 1, SIZES) as b:
        a.call()
        b.call()
        assert a.dir != b.dir and a.dir.parent == b.dir.parent == tmp_path
    assert (tmp_path / "theirs.txt").read_text() == "kept"


def test_a_site_that_stops_fails_the_call_with_a_grpc_error(tmp_path: Path) -> None:
    with Floor(tmp_path / "work", 2, SIZES) as f:
        os.kill(f.pids()["echo"][1], signal.SIGKILL)
        with pytest.raises(grpc.RpcError):
            f.call()


def test_interleaved_runs_each_callable_n_times_round_robin() -> None:
    order: list[str] = []
    calls = [lambda: order.append("a"), lambda: order.append("b"), lambda: order.append("c")]
    times = interleaved(calls, 4)
    assert order == ["a", "b", "c"] * 4
    assert [len(t) for t in times] == [4, 4, 4]
    assert all(x >= 0 for t in times for x in t)


def test_interleaved_times_each_call_with_its_own_clock() -> None:
    slow = interleaved([lambda: time.sleep(0.02), lambda: None], 3)
    assert min(slow[0]) >= 0.02 and max(slow[1]) < min(slow[0])  # a lower bound of sleep(), not a speed


def test_throughput_counts_completed_calls_through_the_relay(floor: Floor) -> None:
    before = floor.echo_stats()[0]["requests"]
    qps = throughput(floor.call, 4, 0.5)
    done = floor.echo_stats()[0]["requests"] - before
    assert qps > 0 and done > 0


def test_throughput_raises_the_first_failure() -> None:
    def boom() -> None:
        raise RuntimeError("the call failed")

    with pytest.raises(RuntimeError, match="the call failed"):
        throughput(boom, 3, 0.2)


def test_percentile_interpolates_between_ranks() -> None:
    xs = [4.0, 1.0, 3.0, 2.0, 5.0]
    assert percentile(xs, 0.5) == 3.0
    assert percentile(xs, 0.0) == 1.0 and percentile(xs, 1.0) == 5.0
    assert percentile([1.0, 2.0], 0.5) == 1.5
    assert percentile(list(map(float, range(101))), 0.99) == pytest.approx(99.0)
    with pytest.raises(ValueError):
        percentile(xs, 99)


def test_the_floor_sizes_are_genogate_s_real_message_sizes(tmp_path: Path) -> None:
    """``bench.message_sizes`` measured again on the demo federation: the constants are within 10% of today's
    messages (they change by a few bytes with a query's filter and its noisy values)."""
    measured = measure(tmp_path / "demo")
    for name, sizes in (("ONE_VARIANT", ONE_VARIANT), ("THOUSAND_VARIANTS", THOUSAND_VARIANTS)):
        for field in ("request", "reply", "combined"):
            assert measured[name][field] == pytest.approx(getattr(sizes, field), rel=0.1), (name, field)
    # a 1,000-variant query names 1,000 variants and its release carries 1,000 values
    assert THOUSAND_VARIANTS.request > 10 * ONE_VARIANT.request
    assert THOUSAND_VARIANTS.reply > 100 * ONE_VARIANT.reply


BUSY = """
    import threading, time

    def busy_function(seconds):
        t0, x = time.process_time(), 0
        while time.process_time() - t0 < seconds:
            x += 1

    def idle():
        time.sleep(SECONDS * 3)

    t = threading.Thread(target=idle, name="idler")
    t.start()
    busy_function(SECONDS)
    t.join()
"""


def test_profiled_finds_the_busy_function_and_weighs_an_idle_thread_nothing(tmp_path: Path) -> None:
    script = tmp_path / "busy.py"
    script.write_text(textwrap.dedent(BUSY).replace("SECONDS", "0.6"))
    out = tmp_path / "profile.json"
    subprocess.run([sys.executable, "-m", "bench.profiled", str(out), "--", str(script)], cwd=ROOT, check=True)
    top = summarize(out, top=3)
    assert top[0][0].endswith("busy.py:busy_function")
    assert top[0][1] > 90 and top[0][2] >= top[0][1]
    data = json.loads(out.read_text())
    threads = {t["name"]: t for t in data["threads"]}
    assert threads["idler"]["samples"] > 0 and threads["idler"]["cpu_s"] == 0
    assert threads["MainThread"]["cpu_s"] > 0
    assert data["samples"] > 0 and data["cpu_s"]["attributed"] <= data["cpu_s"]["process"] + 0.02


BURSTS = """
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    def task_function():
        t0 = time.thread_time()
        while time.thread_time() - t0 < 0.006:
            pass

    pause = threading.Event()  # never set: Event.wait is a standard-library wait, as the worker's queue.get is
    with ThreadPoolExecutor(max_workers=1) as pool:
        for _ in range(100):  # the worker: 6 ms of CPU, then a wait in its queue of at least 1 ms, and again
            pool.submit(task_function).result()
            pause.wait(0.001)
"""


def test_profiled_credits_bursts_to_the_work_not_to_the_executor_s_wait(tmp_path: Path) -> None:
    script = tmp_path / "bursts.py"
    script.write_text(textwrap.dedent(BURSTS))
    out = tmp_path / "profile.json"
    subprocess.run([sys.executable, "-m", "bench.profiled", str(out), "--", str(script)], cwd=ROOT, check=True)
    # bursts the sampler saw at neither end (a loaded machine stretches its intervals) are reported apart
    top = [row for row in summarize(out, top=50) if row[0] != UNSEEN]
    assert top[0][0].endswith("bursts.py:task_function")
    assert not any(fn.endswith("thread.py:_worker") for fn, _, _ in top)


def test_profiled_writes_its_profile_on_sigterm(tmp_path: Path) -> None:
    script = tmp_path / "forever.py"
    script.write_text("def forever_function():\n    while True:\n        pass\n\nforever_function()\n")
    out = tmp_path / "profile.json"
    proc = subprocess.Popen([sys.executable, "-m", "bench.profiled", str(out), "--", str(script)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while cpu_seconds(proc.pid) < 1.0 and time.monotonic() < deadline:  # past start-up, into the loop
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert summarize(out)[0][0].endswith("forever.py:forever_function")


def test_profiled_forgets_on_sigusr2_and_writes_on_sigusr1_while_the_target_runs(tmp_path: Path) -> None:
    script = tmp_path / "phases.py"
    script.write_text(
        "import time\n\ndef warm_up_function():\n    t0 = time.process_time()\n"
        "    while time.process_time() - t0 < 1.0:\n        pass\n\n"
        "def steady_function():\n    while True:\n        pass\n\nwarm_up_function()\nsteady_function()\n"
    )
    out = tmp_path / "profile.json"
    proc = subprocess.Popen([sys.executable, "-m", "bench.profiled", str(out), "--", str(script)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while cpu_seconds(proc.pid) < 2.0 and time.monotonic() < deadline:  # into steady_function
            time.sleep(0.1)
        proc.send_signal(signal.SIGUSR2)
        time.sleep(0.5)
        proc.send_signal(signal.SIGUSR1)
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None  # still running
        functions = [fn for fn, _, _ in summarize(out, top=50)]
        assert functions[0].endswith("phases.py:steady_function")
        assert not any(fn.endswith("warm_up_function") for fn in functions)  # forgotten
    finally:
        proc.kill()
        proc.wait()


def test_profiled_runs_a_module_with_its_arguments(tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.profiled", str(out), "--", "-m", "json.tool", "--compact", "-"],
        cwd=ROOT,
        input='{"a":  [1, 2]}',
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == '{"a":[1,2]}'
    assert out.exists()


def test_cpu_seconds_of_a_busy_child_increases() -> None:
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        first = cpu_seconds(child.pid)
        deadline = time.monotonic() + 60
        while cpu_seconds(child.pid) <= first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cpu_seconds(child.pid) > first
    finally:
        child.kill()
        child.wait()


def test_sitecustomize_profiles_only_the_processes_its_environment_names(tmp_path: Path) -> None:
    # How bench.node_profile profiles servers another program starts: bench/sitecustomize on PYTHONPATH.
    script = tmp_path / "busy.py"
    script.write_text(textwrap.dedent(BUSY).replace("SECONDS", "1.3"))  # over the second a profile needs
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "bench" / "sitecustomize"), str(ROOT)]),
        "GENOGATE_SAMPLE_OUT": str(tmp_path / "prof-{pid}.json"),
        "GENOGATE_SAMPLE_MODULE": "busy.py",
    }
    subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, check=True)
    subprocess.run([sys.executable, "-c", "import time; time.sleep(1.2)"], cwd=tmp_path, env=env, check=True)
    profiles = sorted(tmp_path.glob("prof-*.json"))
    assert len(profiles) == 1  # the second process's command line does not name busy.py
    assert summarize(profiles[0], top=1)[0][0].endswith("busy.py:busy_function")
    (fn, own, incl), *_ = merged([profiles[0], profiles[0]])
    assert fn.endswith("busy.py:busy_function") and own > 90 and incl >= own
