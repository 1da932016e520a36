"""``ssh://user@host[:port]``: a Raspberry Pi or any Linux box, through the system OpenSSH client.

The user's own ``~/.ssh/config``, keys and known_hosts apply; host-key checking stays as configured
(on by default) and BatchMode makes an unknown or changed key a refusal, never a prompt.
``EDGE_BERT_SSH_CONFIG`` names an ssh config file passed as ``-F`` (as ``ssh -F`` would read it).
ssh joins the remote command into one string for the remote shell, so every word is shlex-quoted:
no shell string is built from user input. Bundles are copied with checksums (receiver.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

from edge_bert.bundle import MANIFEST, open_bundle
from edge_bert.devices.base import Completed, DeviceError, Transport, read_option_file, run_local

_RECEIVER = (Path(__file__).with_name("receiver.py")).read_text(encoding="utf-8")
_HOST = re.compile(r"^[A-Za-z0-9_.:\[\]%-]+$")
_USER = re.compile(r"^[A-Za-z0-9_.-]+$")

#: ssh's stderr -> what to tell the user (first match wins).
_PROBLEMS = (
    (
        "REMOTE HOST IDENTIFICATION HAS CHANGED",
        "its host key does not match your known_hosts: refused. If the "
        "device was reinstalled, check the new key and remove the old one (ssh-keygen -R HOST)",
    ),
    (
        "Host key verification failed",
        "its host key is not in your known_hosts or does not match: refused. "
        "Connect once with plain `ssh` to check and accept the key",
    ),
    ("Connection refused", "connection refused: is sshd running on the device, on this port?"),
    ("Permission denied", "your ssh key was not accepted: add it to the device's ~/.ssh/authorized_keys (ssh-copy-id)"),
    ("Could not resolve hostname", "unknown host name: check the address"),
    ("timed out", "no answer: the device is off, asleep or unreachable from here"),
    ("No route to host", "no route to host: check the network"),
    ("closed by remote host", "the connection dropped: check the network and run the command again"),
    ("Connection closed", "the connection dropped: check the network and run the command again"),
    ("Connection reset", "the connection dropped: check the network and run the command again"),
    ("Broken pipe", "the connection dropped: check the network and run the command again"),
)


def parse_ssh(spec: str) -> tuple[str | None, str, int | None]:
    """``ssh://user@host:port`` -> (user, host, port); refuses anything ssh could read as an option."""
    try:
        parts = urlsplit(spec)
        host = parts.hostname or ""
    except ValueError as exc:  # e.g. a bracketed host that is not an IPv6 address
        raise DeviceError(f"{spec!r}: not a device address ({exc}); use ssh://user@host[:port]") from exc
    try:
        port = parts.port
    except ValueError as exc:
        raise DeviceError(f"{spec!r}: the port must be a number from 1 to 65535") from exc
    if port == 0:
        raise DeviceError(f"{spec!r}: the port must be a number from 1 to 65535")
    if (
        parts.scheme != "ssh"
        or not host
        or not _HOST.fullmatch(host)
        or host.startswith("-")
        or parts.path not in ("", "/")
    ):
        raise DeviceError(f"{spec}: not a device address; use ssh://user@host or ssh://user@host:port")
    if parts.username and (not _USER.fullmatch(parts.username) or parts.username.startswith("-")):
        raise DeviceError(f"{spec}: the user name may hold only letters, digits, '.', '_' and '-'")
    return parts.username, host, port


class SshTransport(Transport):
    kind = "ssh"

    def __init__(self, spec: str, python: str = "python3") -> None:
        # commands start in the home directory on the device and every word is quoted (no ~ expansion there),
        # so "~/venv/bin/python" is passed as the equivalent relative path
        super().__init__(spec, python[2:] if python.startswith("~/") else python)
        self.user, self.host, self.port = parse_ssh(spec)

    def ssh_argv(self) -> list[str]:
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=15"]
        if config := os.environ.get("EDGE_BERT_SSH_CONFIG"):
            argv += ["-F", config]
        if self.port:
            argv += ["-p", str(self.port)]
        return [*argv, "--", f"{self.user}@{self.host}" if self.user else self.host]

    def execute(self, argv: list[str], stdin: bytes | None = None, timeout: float | None = None) -> Completed:
        remote = " ".join(shlex.quote(word) for word in argv)
        done = run_local([*self.ssh_argv(), remote], stdin, timeout)
        if done.returncode == 255:
            raise DeviceError(f"{self.id}: {self.connection_problem(done.stderr)}")
        if done.returncode == 127 and ("not found" in done.stderr or "No such file" in done.stderr):
            raise DeviceError(
                f"{self.id}: {argv[0]} is not found on the device; install Python 3.11+ there "
                "or name the right one with --remote-python"
            )
        return done

    def connection_problem(self, stderr: str) -> str:
        for marker, message in _PROBLEMS:
            if marker in stderr:
                return message.replace("HOST", f"[{self.host}]:{self.port}" if self.port else self.host)
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        return f"ssh failed: {lines[-1] if lines else 'no message'}"

    def _receiver(self, mode: str, rel: str, stdin: bytes | None = None) -> dict:
        done = self.python_script(_RECEIVER, mode, rel, stdin=stdin)
        try:
            answer = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, RecursionError, IndexError):
            raise DeviceError(f"{self.id}: {self.explain_failure(done)}") from None
        if "error" in answer:
            hint = "; free some disk there" if "No space left" in answer["error"] else "; run the command again"
            raise DeviceError(f"{self.id}: {answer['error']}{hint}")
        return answer

    def sync(self, rel: str, content: dict[str, bytes]) -> tuple[str, list[str]]:
        """Copy ``content`` (name -> bytes; sent in this order) to REL on the device, skipping files whose
        sha256 already matches there. Returns the directory on the device and the names sent."""
        there = self._receiver("hashes", rel)
        if not isinstance(there.get("dir"), str) or not isinstance(there.get("files"), dict):
            raise DeviceError(f"{self.id}: the device answered the file listing with something else; refused")
        if not there.get("edge_bert"):
            raise DeviceError(f"{self.id}: {self.explain_failure(Completed(1, '', 'No module named edge_bert'))}")
        wanted = {name: hashlib.sha256(data).hexdigest() for name, data in content.items()}
        send = [name for name, digest in wanted.items() if there["files"].get(name) != digest]
        if send:
            header = [{"name": n, "size": len(content[n]), "sha256": wanted[n]} for n in send]
            payload = json.dumps(header).encode() + b"\n" + b"".join(content[n] for n in send)
            self._receiver("receive", rel, stdin=payload)
        return there["dir"], send

    def put(self, bundle: Path) -> str:
        """Send the bundle's files as ``open_bundle`` verified them (confined, no links, listed, size and
        sha256 matched), from the verified bytes: nothing else on the host is read or sent."""
        verified = open_bundle(bundle)
        content = {name: verified.read(name) for name in verified.manifest.files}
        content[MANIFEST] = verified.manifest_bytes  # last: a half-copied bundle never has a matching manifest
        rel = f"bundles/{verified.path.name}-{verified.manifest_sha256[:12]}"
        remote, self.last_sent = self.sync(rel, content)
        return remote

    def put_file(self, path: Path) -> str:
        """Send one file an option names (labelled data, a profile, texts), read once."""
        data = read_option_file(path)
        rel = f"files/{hashlib.sha256(data).hexdigest()[:12]}"
        remote, self.last_sent = self.sync(rel, {path.name: data})
        return f"{remote}/{path.name}"
