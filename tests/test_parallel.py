import os
import time

import pytest

from discovery.errors import DiscoveryError
from discovery.parallel import TaskFailure, map_with_timeout


def _work(x):
    if isinstance(x, str) and x.startswith("child:"):  # a worker that starts a program and then overruns
        import subprocess

        proc = subprocess.Popen(["sleep", "60"])
        with open(x[len("child:"):], "w") as fh:
            fh.write(str(proc.pid))
        time.sleep(30)
    if x == "slow":
        time.sleep(30)
    if x == "crash":
        os._exit(3)  # a worker dying mid-task, as a C extension calling exit() would
    if x == "error":
        raise ValueError("bad item")
    if x == "threads":
        import torch

        return os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads()
    return x * 2


def test_workers_share_the_cores_for_their_numeric_threads(monkeypatch):
    """As many workers as cores: one torch thread each (more only contend and inflate the CPU seconds);
    one worker on two cores: two."""
    import discovery.parallel as parallel

    monkeypatch.setattr(parallel, "default_workers", lambda: 2)
    assert dict(map_with_timeout(_work, ["threads", "threads"], workers=2, progress=False))["threads"] == ("1", 1)
    assert dict(map_with_timeout(_work, ["threads"], workers=1, progress=False))["threads"] == ("2", 2)


def test_failures_are_reported_and_the_batch_carries_on():
    items = [1, "slow", 2, "crash", "error", 3]
    results = dict(map_with_timeout(_work, items, timeout=3.0, workers=2, progress=False))
    assert results[1] == 2 and results[2] == 4 and results[3] == 6
    assert isinstance(results["slow"], TaskFailure) and results["slow"].kind == "timeout"
    assert results["crash"].kind == "crash"
    assert results["error"].kind == "error" and "bad item" in results["error"].message


def test_workers_that_always_crash_stop_the_batch():
    with pytest.raises(DiscoveryError, match="crashed"):
        list(map_with_timeout(_work, ["crash"] * 20, timeout=5.0, workers=2, progress=False))


def test_an_overrunning_worker_takes_the_programs_it_started_with_it(tmp_path):
    pid_file = tmp_path / "child.pid"
    ((_, result),) = list(map_with_timeout(_work, [f"child:{pid_file}"], timeout=2.0, workers=1, progress=False))
    assert result.kind == "timeout"
    pid = int(pid_file.read_text())
    for _ in range(50):  # the kill is delivered at once; reaping may take a moment
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{pid}/stat") as fh:  # a zombie (killed, not yet reaped by init) counts as gone
            if fh.read().split()[2] == "Z":
                break
        time.sleep(0.1)
    else:
        pytest.fail(f"the worker's child {pid} outlived it")
