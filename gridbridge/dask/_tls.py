"""Per-cluster TLS: a CA that exists for one :class:`GridCluster`, and the certificates the
scheduler and its workers present to each other (mutual TLS, ``require_encryption``).

Invariant: only a party holding a certificate signed by *this* cluster's CA can talk to its
scheduler, and a private key is never on a command line, in a job's spec, event or launch
record, or in a file another user can read. The CA's key lives in memory for the moment it
signs and is then dropped, so no new certificate can ever be issued for the cluster::

    GridCluster(...)  ──> ClusterTLS.create(): CA ─signs─> scheduler cert (scheduler + client
        roles, files 0600 in a 0700 folder here)  and  worker cert (kept in memory)
    worker job submitted ──> publish(<job prefix>/dask-tls.json, 0600): CA, worker cert, key
    worker bootstrap (``python -m gridbridge.dask.worker tls://...``)
        ──> reads $GRIDBRIDGE_CHECKPOINT/dask-tls.json ──> 0600 files in a 0700 temp folder
        ──> distributed.Worker(security=...) ──> exit: the folder is removed
    worker job stopped ──> withdraw(<job prefix>/dask-tls.json); cluster closed ──> folder gone

Why the job's checkpoint prefix carries the worker's key, not its environment or argv: a job's
``env`` and ``command`` are part of its spec, which the state store keeps, ``gridbridge
status``/``explain`` show and the adapter copies into the launch record; the prefix is the one
place the control plane derives for the job alone (``<checkpoint_root>/<job id>``, never a
user's choice), which the runtime already hands the job as ``GRIDBRIDGE_CHECKPOINT`` and which
every site of the federation can already read. It is exactly as private as the job's own
checkpoints; on a local filesystem the file is 0600.

Whether a cluster needs any of this is :func:`wants_tls`: yes when one of its sites runs
workers on another host, or when asked; else plain tcp on loopback (nothing leaves the host).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from distributed.security import Security

if TYPE_CHECKING:
    from collections.abc import Sequence

    from gridbridge.config import GridConfig

__all__ = ["BUNDLE", "ClusterTLS", "on_this_host", "wants_tls", "worker_security"]

BUNDLE = "dask-tls.json"
"""The worker's CA, certificate and key, under the worker job's checkpoint prefix."""
_VALID_DAYS = 30
"""How long a cluster's certificates are good for: longer than any sensible cluster's life,
short enough that a leaked worker key does not stay useful for long."""
_POLL_S = 0.2
_PRIVATE_DIR = 0o700


def on_this_host(config: GridConfig, sites: Sequence[str]) -> bool:
    """Every candidate site runs its jobs on this host (``local`` sites do)."""
    return all(config.site(s).adapter == "local" for s in sites)


def wants_tls(config: GridConfig, sites: Sequence[str], security: bool | None) -> bool:
    """TLS when asked, or when a worker may run on another host: a scheduler reachable
    from other hosts without it would run whatever anyone who can reach it sends."""
    if security is None or security:
        return bool(security) or not on_this_host(config, sites)
    if not on_this_host(config, sites):
        remote = [s for s in sites if config.site(s).adapter != "local"]
        raise ValueError(f"security=False: site(s) {', '.join(map(repr, remote))} run "
                         "workers on other hosts, which need TLS; leave security unset or "
                         "limit sites to local ones")
    return False


@dataclass(frozen=True)
class _Issued:
    cert_pem: bytes
    key_pem: bytes


def _private_folder(prefix: str) -> Path:
    """A fresh folder only its owner can enter (``mkdtemp`` makes it 0700)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(_PRIVATE_DIR)
    return folder


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` 0600 from the start (never briefly world-readable), then write."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


class ClusterTLS:
    """One cluster's certificates. ``folder`` holds ``ca.pem``, ``scheduler.pem`` and
    ``scheduler-key.pem`` (0600); :meth:`close` removes it."""

    def __init__(self, folder: Path, worker: _Issued) -> None:
        self.folder = folder
        self._worker = worker

    @classmethod
    def create(cls, name: str) -> ClusterTLS:
        """A new CA named after the cluster, and its scheduler and worker certificates."""
        ca_cert, ca_key = _new_ca(name)
        scheduler = _issue(ca_cert, ca_key, f"{name} scheduler")
        worker = _issue(ca_cert, ca_key, f"{name} worker")
        folder = _private_folder("gridbridge-dask-tls-")
        try:
            _write_private(folder / "ca.pem", _cert_pem(ca_cert))
            _write_private(folder / "scheduler.pem", scheduler.cert_pem)
            _write_private(folder / "scheduler-key.pem", scheduler.key_pem)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return cls(folder, worker)

    def security(self) -> Security:
        """The scheduler's side: it listens with the scheduler certificate, and this process
        (the cluster and its Dask clients) connects with the same one."""
        ca, cert, key = (str(self.folder / n) for n in
                         ("ca.pem", "scheduler.pem", "scheduler-key.pem"))
        return Security(  # type: ignore[no-untyped-call]
            tls_ca_file=ca, tls_scheduler_cert=cert, tls_scheduler_key=key,
            tls_client_cert=cert, tls_client_key=key, require_encryption=True)

    def bundle(self) -> bytes:
        """What a worker needs: the CA certificate, the worker certificate and its key."""
        ca = (self.folder / "ca.pem").read_text()
        return json.dumps({"ca": ca, "cert": self._worker.cert_pem.decode(),
                           "key": self._worker.key_pem.decode()}).encode()

    def publish(self, prefix: str) -> None:
        """Put the worker bundle under a worker job's prefix (0600 on a local filesystem)."""
        from gridbridge.wire import put_bytes

        put_bytes(f"{prefix}/{BUNDLE}", self.bundle())

    def withdraw(self, prefix: str) -> None:
        """Remove a stopped worker job's bundle (best effort: the job is over either way)."""
        _remove(f"{prefix}/{BUNDLE}")

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _remove(url: str) -> None:
    import fsspec

    with contextlib.suppress(FileNotFoundError):
        fs, path = fsspec.core.url_to_fs(url)
        fs.rm(path)


@contextlib.contextmanager
def worker_security(prefix: str, timeout_s: float) -> Iterator[Security]:
    """The worker's side: wait up to ``timeout_s`` for the bundle under ``prefix`` (the
    cluster publishes it just after it submits the job), copy it to 0600 files in a 0700
    folder for the worker's life, and remove them when it ends."""
    data = _await_bundle(f"{prefix}/{BUNDLE}", timeout_s)
    folder = _private_folder("gridbridge-dask-worker-")
    try:
        for field in ("ca", "cert", "key"):
            _write_private(folder / f"{field}.pem", str(data[field]).encode())
        ca, cert, key = (str(folder / f"{f}.pem") for f in ("ca", "cert", "key"))
        yield Security(  # type: ignore[no-untyped-call]
            tls_ca_file=ca, tls_worker_cert=cert, tls_worker_key=key,
            tls_client_cert=cert, tls_client_key=key, require_encryption=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _await_bundle(url: str, timeout_s: float) -> dict[str, object]:
    from gridbridge.wire import get_bytes

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            data = json.loads(get_bytes(url))
        except FileNotFoundError:
            if time.monotonic() >= deadline:
                raise SystemExit(f"gridbridge.dask.worker: no TLS bundle at {url} after "
                                 f"{timeout_s:g}s; the cluster publishes it for its own "
                                 "worker jobs only") from None
            time.sleep(_POLL_S)
            continue
        if not isinstance(data, dict) or not {"ca", "cert", "key"} <= set(data):
            raise SystemExit(f"gridbridge.dask.worker: {url} is not a TLS bundle")
        return data


# certificates ---------------------------------------------------------------------------------

def _new_ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(f"{name} CA")
    usage = x509.KeyUsage(digital_signature=False, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=True, crl_sign=True, encipher_only=False,
                          decipher_only=False)
    cert = (_builder(subject, subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _issue(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
           common_name: str) -> _Issued:
    """A leaf certificate good for both ends of a connection (a worker both listens and
    dials; so does the scheduler's process, as the cluster's client)."""
    key = ec.generate_private_key(ec.SECP256R1())
    both_ends = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                       ExtendedKeyUsageOID.CLIENT_AUTH])
    cert = (_builder(_name(common_name), ca_cert.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(both_ends, critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("dask-internal")]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return _Issued(cert_pem=_cert_pem(cert), key_pem=key_pem)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])


def _builder(subject: x509.Name, issuer: x509.Name,
             public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))  # clocks disagree a bit
            .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS)))


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)
