"""``edge-bert matrix --ray``: a real local Ray instance (2 CPUs, started by the test) runs the same tiny matrix
as the local pool (same cells, statuses and parity figures, latency within timing noise); a Ray worker killed
mid-conversion is retried, one killed on every attempt is recorded as ``worker-died`` while the rest finish;
an existing cluster (a head from ``ray start``) runs the cells of the devices its nodes offer; without Ray,
``--ray`` is one line saying what to install."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from conftest import require_module
from typer.testing import CliRunner

require_module("ray", "the Ray executor needs the ray extra: pip install 'edge-bert[ray]'")

from test_matrix import UNREACHABLE, _matrix

from edge_bert.cli import app
from edge_bert.limits import usable_cpus
from edge_bert.matrix.ray_executor import RayExecutor, device_resource
from edge_bert.matrix.run import run_matrix
from edge_bert.matrix.spec import cells, read_matrix
from edge_bert.matrix.steps import step_env
from edge_bert.results.io import load_result

ROOT = Path(__file__).parent.parent
runner = CliRunner()


def test_device_resources_are_safe_names():
    assert device_resource("local") == "device:local"
    assert device_resource("ssh://pi@rpi5-lab") == "device:rpi5-lab"
    assert device_resource("ssh://pi@rpi5-lab:22") == "device:rpi5-lab"
    assert device_resource("ssh://pi@10.0.0.7:2222") == "device:10.0.0.7-2222"
    assert device_resource("emu:rpi5") == "device:emu-rpi5"
    assert device_resource("ssh://pi@[fe80::1]") == "device:fe80--1"


def test_ray_runs_the_same_cells_as_the_pool(tiny_models, tmp_path):
    spec = _matrix(tmp_path, tiny_models["bert"], ["local"], name="same")
    spec.write_text(spec.read_text().replace("threads = 1\n", ""))  # the default: this machine's usable cores
    outs = {how: tmp_path / how for how in ("pool", "ray")}
    pool = runner.invoke(app, ["matrix", str(spec), "--out", str(outs["pool"])])
    on_ray = runner.invoke(app, ["matrix", str(spec), "--out", str(outs["ray"]), "--ray", "local"])
    assert pool.exit_code == 0 and on_ray.exit_code == 0, (pool.output, on_ray.output)
    indexes = {how: json.loads((out / "matrix.json").read_text()) for how, out in outs.items()}
    assert [(c["key"], c["status"]) for c in indexes["pool"]["cells"]] == [
        (c["key"], c["status"]) for c in indexes["ray"]["cells"]
    ]
    assert [c["status"] for c in indexes["ray"]["cells"]] == ["done", "done"]
    conversions_end = max(end for _, end in indexes["ray"]["conversions"].values())
    assert conversions_end <= min(c["device_steps"][0] for c in indexes["ray"]["cells"])  # honest timing
    for pooled, rayed in zip(indexes["pool"]["cells"], indexes["ray"]["cells"], strict=True):
        checked = {how: load_result(outs[how] / cell["validate"]) for how, cell in (("pool", pooled), ("ray", rayed))}
        timed = {how: load_result(outs[how] / cell["bench"]) for how, cell in (("pool", pooled), ("ray", rayed))}
        assert checked["ray"].passed and checked["ray"].parity == checked["pool"].parity  # same figures
        # the driver's copy of the bundle, not the worker's scratch folder, is what the results name
        assert checked["ray"].path.startswith(str(outs["ray"] / "bundles")), checked["ray"].path
        # set explicitly in both (Ray's workers run with OMP_NUM_THREADS=1, which must not reach a step)
        assert timed["ray"].settings.threads == timed["pool"].settings.threads == usable_cpus()
        assert (outs["ray"] / "reports" / rayed["key"]).is_dir()
        for length, p50 in timed["pool"].p50_ms().items():  # a loaded 2-core box: within 5x, not a speed claim
            assert p50 / 5 <= timed["ray"].p50_ms()[length] <= p50 * 5, (length, p50, timed["ray"].p50_ms())


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
    return False


def _kill_convert_workers(kills: dict[str, int], killed: list[tuple[str, int]], stop: threading.Event) -> None:
    """SIGKILL the Ray worker (and its step) running ``convert --recipe R``, ``kills[R]`` times each."""
    seen: set[int] = set()
    while not stop.is_set() and any(kills.values()):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                worker = (Path("/proc") / str(parent) / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue
            if b"edge_bert.cli" not in argv or b"convert" not in argv or not worker.startswith(b"ray::"):
                continue
            recipe = argv[argv.index(b"--recipe") + 1].decode()
            if parent in seen or not kills.get(recipe) or not _descends_from(parent, os.getpid()):
                continue
            os.kill(parent, signal.SIGKILL)  # the worker: Ray sees it die and retries the task or gives up
            os.kill(int(entry.name), signal.SIGKILL)  # its step, which would go on as an orphan
            seen.add(parent)
            kills[recipe] -= 1
            killed.append((recipe, parent))
        time.sleep(0.1)


def test_a_killed_worker_is_retried_or_recorded_never_lost(tiny_models, tmp_path):
    spec_path = _matrix(tmp_path, tiny_models["bert"], ["local"], name="killed")
    spec_path.write_text(spec_path.read_text().replace("threads = 1\n", ""))
    spec, base = read_matrix(spec_path)
    all_cells = cells(spec, base)
    out = tmp_path / "out"
    kills = {"fp32": 2, "dynamic-int8": 1}  # one retry each: fp32 dies on both attempts, int8 on its first
    killed: list[tuple[str, int]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_kill_convert_workers, args=(kills, killed, stop), daemon=True)
    executor = RayExecutor("local", spec.devices, retries=1)

    def threads_on_a_worker() -> tuple[str | None, str]:  # Ray's own setting, and what a step is given
        return os.environ.get("OMP_NUM_THREADS"), step_env(spec)["OMP_NUM_THREADS"]

    ray_says = os.environ.get("OMP_NUM_THREADS", "1")  # Ray sets 1 unless the driver has it set
    assert executor.ray.get(executor.ray.remote(threads_on_a_worker).remote()) == (ray_says, str(usable_cpus()))
    watcher.start()
    try:
        index = run_matrix(spec, base, all_cells, out, 2, lambda *_: None, executor)
    finally:
        stop.set()
        executor.close()
        watcher.join()
    assert sorted(recipe for recipe, _ in killed) == ["dynamic-int8", "fp32", "fp32"], killed
    assert all(not Path(f"/proc/{pid}").exists() for _, pid in killed)  # they really died
    by_recipe = {c["recipe"]: c for c in index["cells"]}
    assert by_recipe["fp32"]["status"] == "failed" and by_recipe["fp32"]["exit_class"] == "worker-died"
    assert "convert" in by_recipe["fp32"]["reason"]
    assert by_recipe["dynamic-int8"]["status"] == "done"  # retried on a new worker, then validated and benched
    assert load_result(out / by_recipe["dynamic-int8"]["bench"]).p50_ms()
    assert json.loads((out / "matrix.json").read_text())["cells"] == index["cells"]  # the index has both


def test_ray_missing_is_one_line_naming_the_extra(tiny_models, tmp_path):
    spec = _matrix(tmp_path, tiny_models["bert"], ["local"], name="noray")
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'ray':\n"
        "            raise ImportError('no ray here')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from edge_bert.cli import main\n"
        f"sys.argv = ['edge-bert', 'matrix', {str(spec)!r}, '--out', {str(tmp_path / 'out')!r}, '--ray', 'local']\n"
        "main()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "pip install 'edge-bert[ray]'" in lines[0]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_existing_cluster_runs_only_the_devices_its_nodes_offer(tiny_models, tmp_path):
    """``--ray HEAD:PORT``: a head started by ``ray start`` offering device:local; a device no node offers is a
    failed cell naming the ``ray start`` line that would offer it, and the rest finish."""
    port = _free_port()
    # Ray's token authentication with a token of this test's own, for the head and the matrix alike
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
         "--node-ip-address=127.0.0.1", "--num-cpus=2", "--include-dashboard=false",
         '--resources={"device:local": 1}'],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    spec = _matrix(tmp_path, tiny_models["bert"], ["local", UNREACHABLE], name="cluster")
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "edge_bert.cli", "matrix", str(spec), "--out", str(out), "--ray", f"127.0.0.1:{port}"]
    try:
        deadline = time.monotonic() + 120
        while True:  # the head takes a few seconds to listen
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
            if done.returncode != 2 or time.monotonic() > deadline:
                break
            time.sleep(2)
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # the head we started and what it started, nothing else
        head.wait(timeout=90)
        found = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"  # left behind: a plain ray.init()
        if found.is_file() and found.read_text().strip().endswith(f":{port}"):  # would try to join the dead head
            found.unlink()
    assert done.returncode == 1, done.stderr[-2000:]
    cells = {(c["recipe"], c["device"]): c for c in json.loads((out / "matrix.json").read_text())["cells"]}
    for recipe in ("fp32", "dynamic-int8"):
        assert cells[(recipe, "local")]["status"] == "done"
        refused = cells[(recipe, UNREACHABLE)]
        assert refused["status"] == "failed" and refused["exit_class"] == "input"
        assert refused["reason"].startswith("no Ray node offers device:127.0.0.1-9: ")
        assert """--resources='{"device:127.0.0.1-9": 1}'""" in refused["reason"]
