"""What a device is and what it can run: sent as source to the device (``device check``).

Standard library only and no edge_bert import, because it must answer on a device where edge-bert or
its runtimes are missing: that is exactly what it is asked to find out.
"""

import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import sys
from pathlib import Path

FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_int8",
    "asimd",
    "asimddp",
    "asimdhp",
    "i8mm",
    "bf16",
    "sve",
    "sve2",
)
DISTS = ("edge-bert", "numpy", "tokenizers", "onnxruntime", "ai-edge-litert", "tflite-runtime", "openvino")


def cpuinfo():
    fields = {}
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return fields
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def meminfo():
    out = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                out[key] = round(int(value.split()[0]) / 1024**2, 2)
    except (OSError, ValueError, IndexError):
        pass
    return out


def sensors():
    """CPU clock (MHz) per core and temperatures (deg C) from /sys, where the board exposes them."""
    freq, temps = {}, {}
    for path in sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq")):
        try:
            freq[path.parts[-3]] = int(path.read_text()) / 1000
        except (OSError, ValueError):
            pass
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        try:
            kind = (zone / "type").read_text().strip()
            temps[f"{zone.name}:{kind}"] = int((zone / "temp").read_text()) / 1000
        except (OSError, ValueError):
            pass
    return {"cpu_mhz": freq, "temperature_c": temps}


def versions():
    found = {}
    for dist in DISTS:
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = None
    if found["edge-bert"] is None and importlib.util.find_spec("edge_bert") is not None:
        found["edge-bert"] = "source tree"
    return found


def probe():
    info = cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    mem = meminfo()
    home = os.path.expanduser("~")
    return {
        "machine": {
            "machine": platform.machine(),
            "cpu_model": info.get("model name") or info.get("Model") or info.get("Hardware") or "unknown",
            "cpu_count": os.cpu_count(),
            "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "isa_flags": sorted(flags & set(FLAGS)),
            "mem_total_gib": mem.get("MemTotal"),
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
        },
        "python_executable": sys.executable,
        "mem_available_gib": mem.get("MemAvailable"),
        "disk_free_gib": round(shutil.disk_usage(home).free / 1024**3, 2),
        "versions": versions(),
        "sensors": sensors(),
    }


if __name__ == "__main__":
    print(json.dumps(probe()))
