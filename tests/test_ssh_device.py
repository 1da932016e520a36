"""validate, bench and device check through ``--device ssh://`` against a real OpenSSH server on 127.0.0.1.

The server is started here (key-only, test keys); the client honours the user's ssh config, which the
tests point at theirs with EDGE_BERT_SSH_CONFIG (ssh -F). Host-key checking stays on throughout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import unavailable
from sshd_server import client_config, free_port, keygen, start_sshd
from typer.testing import CliRunner

from edge_bert.cli import app
from edge_bert.devices.base import DeviceError
from edge_bert.devices.ssh import SshTransport

TINY_PROFILE = Path(__file__).parent / "profiles" / "tiny-random.toml"
PYTHON = sys.executable  # the device's Python with edge-bert: this venv's, reached over ssh
BARE_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.base_prefix + "/bin/python3"
runner = CliRunner()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from conftest import save_tiny_model

    from edge_bert.convert.pipeline import convert

    root = tmp_path_factory.mktemp("ssh-bundle")
    model = save_tiny_model("bert", root / "model")
    (outcome,) = convert(str(model), str(TINY_PROFILE), root / "out", recipes=["dynamic-int8"], log=lambda _: None)
    return outcome.bundle


def test_validate_bench_and_check_over_ssh(sshd, bundle, tmp_path):
    local = runner.invoke(app, ["validate", str(bundle), "--json", "-"])
    assert local.exit_code == 0, local.output
    result = runner.invoke(app, ["validate", str(bundle), "--device", sshd.url, "--remote-python", PYTHON])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "tokenizer reproduces golden ids" in result.output
    (report,) = Path("reports").glob(f"{bundle.name}@ssh*.validate.json")
    remote = json.loads(report.read_text())
    assert remote["device"] == {"id": sshd.url, "kind": "ssh", "emulated": False}
    assert remote["emulated"] is False and Path(remote["path"]).is_relative_to(sshd.device_dir)
    assert remote["bundle_id"] == json.loads(local.stdout)["bundle_id"]
    assert remote["parity"] == json.loads(local.stdout)["parity"]  # same machine, same runtime: same figures
    assert report.with_suffix(".md").exists()  # next to, not over, the local run's reports/BUNDLE.validate.json

    bench = runner.invoke(
        app,
        [
            "bench",
            str(bundle),
            "--device",
            sshd.url,
            "--remote-python",
            PYTHON,
            "--runs",
            "3",
            "--warmup",
            "1",
            "--seq-lengths",
            "16,32",
            "--json",
            "bench.json",
            "--thread-sweep",
            "1,2",
            "--sustained",
            "1",
        ],
    )
    assert bench.exit_code == 0, bench.output
    timing = json.loads(Path("bench.json").read_text())
    assert timing["schema"] == "edge-bert/bench/v2" and timing["device"]["kind"] == "ssh"
    assert [row["seq_length"] for row in timing["latency"]] == [16, 32] and "emulated" not in bench.output
    # part 5: a thread sweep (each count in its own runner process), burst vs sustained, clock and temperature
    assert [row["threads"] for row in timing["thread_sweep"]] == [1, 2] and timing["best_threads"] in (1, 2)
    assert timing["sustained"]["runs"] >= 8 and timing["sustained"]["sustained_p50_ms"] > 0
    assert set(timing["board"]["before"]) >= {"cpu_mhz", "temperature_c"} and "burst p50" in bench.output

    check = runner.invoke(app, ["device", "check", sshd.url, "--remote-python", PYTHON, "--json", "-"])
    assert check.exit_code == 0, check.output
    info = json.loads(check.stdout)
    assert info["versions"]["onnxruntime"] and info["machine"]["cpu_count"] and info["disk_free_gib"] > 0
    assert info["missing"] == [] or all("litert" in m["what"] for m in info["missing"])


def test_recopy_skipped_when_checksums_match(sshd, bundle):
    transport = SshTransport(sshd.url, PYTHON)
    first = transport.put(bundle)
    again = transport.put(bundle)
    assert again == first and transport.last_sent == []
    (Path(first) / "golden.npz").write_bytes(b"stale")  # a changed file on the device is sent again, alone
    transport.put(bundle)
    assert transport.last_sent == ["golden.npz"]


def test_interrupted_copy_is_never_used(sshd, bundle):
    transport = SshTransport(sshd.url, PYTHON)
    model = bundle / "model.onnx"
    data = model.read_bytes()
    rel = "bundles/interrupted"
    header = [{"name": "model.onnx", "size": len(data), "sha256": "0" * 64}]
    payload = json.dumps(header).encode() + b"\n" + data[: len(data) // 2]  # the link drops halfway
    with pytest.raises(DeviceError, match="interrupted"):
        transport._receiver("receive", rel, stdin=payload)
    target = sshd.device_dir / rel
    (partial,) = (sshd.device_dir / ".incoming").glob("*.partial")
    assert not (target / "model.onnx").exists() and partial.stat().st_size == len(data) // 2
    # the bundle's own copy dropped halfway: the half file is never taken for the real one
    remote = Path(transport.put(bundle))
    (remote / "model.onnx").unlink()
    result = runner.invoke(app, ["validate", str(bundle), "--device", sshd.url, "--remote-python", PYTHON])
    assert result.exit_code == 0, result.output
    assert (remote / "model.onnx").read_bytes() == data


def test_changed_host_key_is_refused(sshd, bundle, tmp_path, monkeypatch):
    wrong = keygen(tmp_path / "other_host_key")
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {Path(str(wrong) + '.pub').read_text()}")
    monkeypatch.setenv("EDGE_BERT_SSH_CONFIG", str(client_config(tmp_path / "cfg", sshd.root / "client_key", known)))
    result = runner.invoke(app, ["validate", str(bundle), "--device", sshd.url, "--remote-python", PYTHON])
    assert result.exit_code == 2
    assert sshd.url in result.output and "host key does not match" in result.output
    assert "Traceback" not in result.output


def test_unreachable_port():
    url = f"ssh://nobody@127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["device", "check", url])
    assert result.exit_code == 2 and "connection refused" in result.output and url in result.output


def test_device_without_edge_bert(sshd, bundle):
    result = runner.invoke(app, ["validate", str(bundle), "--device", sshd.url, "--remote-python", BARE_PYTHON])
    assert result.exit_code == 2
    assert "edge-bert is not installed" in result.output and 'pip install "edge-bert[onnx]"' in result.output
    check = runner.invoke(app, ["device", "check", sshd.url, "--remote-python", BARE_PYTHON])
    assert check.exit_code == 1 and "missing: edge-bert" in check.output
    missing = runner.invoke(app, ["device", "check", sshd.url, "--remote-python", "/nonexistent/python3"])
    assert missing.exit_code == 2 and "--remote-python" in missing.output


def test_device_addresses_that_could_be_options_are_refused():
    for spec in ("ssh://-oProxyCommand=touch%20x", "ssh://user@-host", "ssh://a b@host", "ssh://host/path"):
        with pytest.raises(DeviceError, match="ssh://"):
            SshTransport(spec)


def test_failed_gate_exits_1_and_profile_file_goes_along(sshd, bundle, tmp_path):
    strict = tmp_path / "strict.toml"
    text = TINY_PROFILE.read_text().replace(
        "[onnx.recipe.dynamic-int8]\n", "[onnx.recipe.dynamic-int8]\ngates = { min_cosine = 0.9999999 }\n"
    )
    strict.write_text(text)
    result = runner.invoke(app, ["validate", str(bundle), "--device", sshd.url, "--remote-python", PYTHON,
                                 "--profile", str(strict)])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output
    (report,) = Path("reports").glob(f"{bundle.name}@ssh*.validate.json")
    assert json.loads(report.read_text())["gates"]["min_cosine"]["threshold"] == 0.9999999


def test_dropped_connection_is_one_clear_line(sshd, bundle, tmp_path):
    """The device's side of the connection dies mid-command (its sshd session is killed)."""
    dies = tmp_path / "python-that-drops-the-link"
    dies.write_text("#!/bin/sh\nkill -9 $PPID\nsleep 5\n")
    dies.chmod(0o755)
    result = runner.invoke(app, ["validate", str(bundle), "--device", sshd.url, "--remote-python", str(dies)])
    assert result.exit_code == 2, result.output
    assert sshd.url in result.output and "connection dropped" in result.output and "Traceback" not in result.output


def test_full_disk_on_the_device(bundle, tmp_path_factory, monkeypatch):
    """The device's bundle directory on a 64 KiB tmpfs: the copy fails with one line, nothing half-written."""
    import subprocess

    server = start_sshd(tmp_path_factory.mktemp("sshd-full"))
    server.device_dir.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(server.device_dir)]
    mounted = subprocess.run(mount, capture_output=True, text=True, check=False)
    try:
        if mounted.returncode != 0:  # CI runs as root (.ci/run installs with apt-get): there it must mount
            unavailable(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
        monkeypatch.setenv("EDGE_BERT_SSH_CONFIG", str(server.config))
        result = runner.invoke(app, ["validate", str(bundle), "--device", server.url, "--remote-python", PYTHON])
        assert result.exit_code == 2, result.output
        assert server.url in result.output and "No space left on device" in result.output
        assert "free some disk there" in result.output
        assert not list(server.device_dir.glob("bundles/*/model.onnx"))
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)
        if mounted.returncode == 0:
            subprocess.run(["umount", str(server.device_dir)], check=False)


def test_validate_with_labelled_data_over_ssh(sshd, bundle, tmp_path):
    """--data is a local file: it is copied to the device and the accuracy figures come back with the result."""
    from conftest import LABELS, sst2_dev

    data = tmp_path / "labelled.tsv"
    data.write_text("text\tlabel\n" + "".join(f"{t}\t{LABELS[2 * y]}\n" for t, y in sst2_dev(limit=30)))
    local = runner.invoke(app, ["validate", str(bundle), "--data", str(data), "--json", "-"])
    remote = runner.invoke(app, ["validate", str(bundle), "--data", str(data), "--json", "-", "--device", sshd.url,
                                 "--remote-python", PYTHON])  # fmt: skip
    # measured: both pass (exit 0): the bundle has no fp32 reference, so the data gives accuracy only and the
    # parity gates decide, and they pass on this bundle
    assert local.exit_code == 0, local.output
    assert remote.exit_code == 0, remote.output
    assert "accuracy only" in json.loads(remote.stdout)["accuracy"]["notes"][0]
    local_accuracy, remote_accuracy = json.loads(local.stdout)["accuracy"], json.loads(remote.stdout)["accuracy"]
    assert remote_accuracy["rows"] == 30 and remote_accuracy["metrics"]["rows"] == 30
    assert remote_accuracy["metrics"] == local_accuracy["metrics"]  # same runtime: the same figures, row by row
