"""A real OpenSSH server for tests: 127.0.0.1, a free port, key-only, keys and known_hosts made here.

The client side is an ssh config file (``EDGE_BERT_SSH_CONFIG``, passed to ssh as ``-F``) with the test's
key and known_hosts and StrictHostKeyChecking yes, so host-key checking is on exactly as for a user.
Under CI (conftest.IN_CI) a missing sshd fails the tests instead of skipping them.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import unavailable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def client_config(path: Path, key: Path, known_hosts: Path) -> Path:
    path.write_text(
        "Host 127.0.0.1\n"
        f"  IdentityFile {key}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {known_hosts}\n  GlobalKnownHostsFile /dev/null\n"
        "  StrictHostKeyChecking yes\n  LogLevel ERROR\n"
    )
    return path


@dataclass
class Sshd:
    root: Path
    port: int
    user: str
    config: Path  # client config: the test key, known_hosts with the server's real host key
    device_dir: Path  # where the "device" keeps bundles (SetEnv EDGE_BERT_DEVICE_DIR)
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"


def require(binary: str) -> str:
    found = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if not found:
        unavailable(f"{binary} is not installed (apt-get install -y openssh-server openssh-client)")
    return found


def start_sshd(root: Path) -> Sshd:
    sshd = require("sshd")
    require("ssh")
    root.mkdir(parents=True, exist_ok=True)
    host_key, client_key = keygen(root / "host_key"), keygen(root / "client_key")
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    device_dir = root / "device"
    port = free_port()
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nLogLevel ERROR\n"
        f"SetEnv EDGE_BERT_DEVICE_DIR={device_dir}\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    log = (root / "sshd.log").open("w")
    process = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"sshd did not start: {(root / 'sshd.log').read_text()}")
            time.sleep(0.1)
    known_hosts = root / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {(root / 'host_key.pub').read_text()}")
    client = client_config(root / "ssh_config", client_key, known_hosts)
    return Sshd(root, port, getpass.getuser(), client, device_dir, process)
