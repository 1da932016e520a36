"""Devices: where validate and bench run. ``local``, ``ssh://user@host[:port]``, ``emu:rpi4|rpi5|android-arm64``."""

from __future__ import annotations

from edge_bert.devices.base import DeviceError, Transport


def open_device(spec: str, remote_python: str = "python3") -> Transport:
    """The transport for a --device value."""
    if spec in ("", "local"):
        from edge_bert.devices.local import LocalTransport

        return LocalTransport()
    if spec.startswith("ssh://"):
        from edge_bert.devices.ssh import SshTransport

        return SshTransport(spec, remote_python)
    if spec.startswith("emu:"):
        from edge_bert.devices.emu import EmuTransport

        return EmuTransport(spec, remote_python)
    raise DeviceError(f"{spec}: unknown device; use local, ssh://user@host[:port] or emu:rpi4|rpi5|android-arm64")


__all__ = ["DeviceError", "Transport", "open_device"]
