"""Certificates for a local control plane, made with the system's openssl.

Every component talks TLS on 127.0.0.1 and users authenticate with client
certificates whose Organisation is their group, as in a kubeadm cluster.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def sa_key(self) -> Path:
        return self.directory / "sa.key"

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"


def _openssl(*args: str, cwd: Path, stdin: str | None = None) -> None:
    subprocess.run(
        ["openssl", *args],
        cwd=cwd,
        check=True,
        input=stdin,
        text=True,
        capture_output=True,
    )


def _sign(pki: Pki, name: str, subject: str, extensions: str) -> None:
    d = pki.directory
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-subj", subject, "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d,
    )
    (d / f"{name}.ext").write_text(extensions)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "3650", "-out", f"{name}.crt",
        "-extfile", f"{name}.ext", cwd=d,
    )


def make_pki(directory: Path, clients: dict[str, str]) -> Pki:
    """Create a CA, a serving certificate for 127.0.0.1 and one client cert per entry.

    `clients` maps a file name to a subject such as "/O=system:masters/CN=admin".
    Elliptic-curve keys keep this fast (well under a second in all).
    """
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory)
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "3650", "-subj", "/CN=kubetune-local-ca",
        "-keyout", "ca.key", "-out", "ca.crt", cwd=directory,
    )
    _sign(
        pki, "serving", "/CN=kube-apiserver",
        "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
        "extendedKeyUsage=serverAuth\n",
    )
    for name, subject in clients.items():
        _sign(pki, name, subject, "extendedKeyUsage=clientAuth\n")
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=directory)
    return pki
