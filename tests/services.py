"""Real service processes and fault seams for tests: a private mosquitto, a TCP proxy."""

from __future__ import annotations

import contextlib
import glob
import ipaddress
import os
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


@dataclass(frozen=True)
class TlsFiles:
    """A private CA and a certificate it issued for 127.0.0.1 and localhost (PEM files)."""

    ca: Path
    certificate: Path
    key: Path

    @classmethod
    def issue(cls, folder: Path) -> TlsFiles:
        folder.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC)

        def build(subject: str, issuer: x509.Name | None, key: ec.EllipticCurvePrivateKey,
                  signer: ec.EllipticCurvePrivateKey, *, ca: bool) -> x509.Certificate:
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
            builder = (x509.CertificateBuilder().subject_name(name)
                       .issuer_name(issuer or name).public_key(key.public_key())
                       .serial_number(x509.random_serial_number())
                       .not_valid_before(now - timedelta(minutes=5))
                       .not_valid_after(now + timedelta(days=1))
                       .add_extension(x509.BasicConstraints(ca=ca, path_length=None),
                                      critical=True))
            if not ca:
                builder = builder.add_extension(x509.SubjectAlternativeName([
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.DNSName("localhost")]), critical=False)
            return builder.sign(signer, hashes.SHA256())

        ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
            ec.SECP256R1())
        ca_cert = build("test CA", None, ca_key, ca_key, ca=True)
        cert = build("127.0.0.1", ca_cert.subject, key, ca_key, ca=False)
        files = cls(folder / "ca.pem", folder / "broker.pem", folder / "broker.key")
        files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        files.certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files.key.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        return files


class Mosquitto:
    """A private mosquitto on a free port; stop() and start() keep its persistence file."""

    def __init__(
        self,
        workdir: Path,
        *,
        users: dict[str, str] | None = None,
        acl: str | None = None,
        extra: str = "",
        tls: bool = False,
    ) -> None:
        """``tls``: the listener takes TLS only, with a certificate of a private CA
        (``self.tls``) for 127.0.0.1."""
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.tls = TlsFiles.issue(workdir) if tls else None
        lines = [
            f"listener {self.port} 127.0.0.1",
            *([f"certfile {self.tls.certificate}", f"keyfile {self.tls.key}"] if self.tls
              else []),
            "persistence true",
            f"persistence_location {workdir}/",
            f"log_dest file {workdir}/mosquitto.log",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            "max_packet_size 1048576",
        ]
        if users is None:
            lines.append("allow_anonymous true")
        else:
            pwfile = workdir / "passwd"
            pwfile.touch()
            for name, password in users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(pwfile), name, password], check=True
                )
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        if acl is not None:
            (workdir / "acl").write_text(acl)
            lines.append(f"acl_file {workdir}/acl")
        lines.append(extra)
        self.config = workdir / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        if os.geteuid() == 0:
            shutil.chown(workdir, "mosquitto", "mosquitto")
            for child in workdir.iterdir():
                shutil.chown(child, "mosquitto", "mosquitto")

    @property
    def url(self) -> str:
        if self.tls:
            return f"mqtts://127.0.0.1:{self.port}?ca={self.tls.ca}"
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop (SIGTERM: mosquitto saves its state first) or crash it (SIGKILL)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None


class TcpProxy:
    """Forwards a local port to a target; ``down()`` cuts every connection and refuses new ones."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def up(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self._listener = sock
        self._stop.clear()
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def down(self) -> None:
        self._stop.set()
        if self._listener:
            with contextlib.suppress(OSError):  # wakes the accept() thread, freeing the port
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, server]
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        pair = {a: b, b: a}
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([a, b], [], [], 0.2)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()


@contextlib.contextmanager
def running(proxy: TcpProxy) -> Iterator[TcpProxy]:
    proxy.up()
    try:
        yield proxy
    finally:
        proxy.down()


class Postgres:
    """A private PostgreSQL server on a free port, for what a test may not do to the shared
    one (its ``postgres`` database, pg_hba.conf); trust authentication for every role.

    Its data directory lies in ``workdir``: run as root, the server runs as the ``postgres``
    user (initdb refuses root), so ``workdir`` must be one that user can enter."""

    def __init__(self, workdir: Path) -> None:
        self.data = workdir / "data"
        self.port = free_port()
        self._user = "postgres" if os.geteuid() == 0 else None
        workdir.mkdir(parents=True, exist_ok=True)
        if self._user:
            shutil.chown(workdir, self._user, self._user)
        self._run("initdb", "--no-sync", "--auth=trust", "--username=postgres", "-D",
                  str(self.data))

    def url(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        self._run("pg_ctl", "start", "--wait", "-D", str(self.data), "-l",
                  str(self.data / "server.log"), "-o",
                  f"-p {self.port} -c listen_addresses=127.0.0.1"
                  f" -c unix_socket_directories={self.data} -c fsync=off")

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "--wait", "--mode=fast", "-D", str(self.data))

    def _run(self, program: str, *args: str) -> None:
        subprocess.run([_server_program(program), *args], check=True, capture_output=True,
                       user=self._user)


def _server_program(name: str) -> str:
    """``initdb`` or ``pg_ctl``: on the PATH, else where Debian's postgresql package puts
    them (the newest version's), which is not on the PATH."""
    found = shutil.which(name) or max(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                                      key=lambda p: int(p.split("/")[4]), default=None)
    assert found, f"{name} not found: install the Debian package postgresql"
    return found
