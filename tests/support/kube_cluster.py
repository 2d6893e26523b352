"""A real Kubernetes control plane for tests: Debian's etcd, and kube-apiserver and kube-scheduler built from Debian's
`kubernetes` source package by `scripts/build-kube.sh`.

Everything listens on 127.0.0.1 on free ports, with state and certificates in a temporary directory. The API server
authenticates with static tokens: an admin (``system:masters``, for the test itself and the fake node) and
``optio``, a user with no rights until a test binds it to the Role the deployment manifests ship, so Optio's calls
are authorised exactly as they would be in a cluster. No controller-manager runs: nothing here depends on
controllers other than the scheduler: the ServiceAccount admission plugin (it needs the token controller) and
TaintNodesByCondition (its not-ready taint is lifted by the node lifecycle controller) are off, and Optio deletes its
own Secrets instead of relying on the garbage collector alone.

The node is :mod:`tests.support.fake_kubelet`; the API server proxies ``pods/log`` to it with a client certificate
signed by the test CA, and checks its serving certificate against that CA.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KUBE_BIN_ENV = "OPTIO_KUBE_BIN"
DEFAULT_BIN = Path.home() / ".cache" / "optio-ci" / "kube" / "bin"
BINARIES = ("etcd", "kube-apiserver", "kube-scheduler")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kube_bin() -> Path:
    """Where the binaries are; skips the test when they are missing, unless CI said they must be there."""
    configured = os.environ.get(KUBE_BIN_ENV)
    path = Path(configured) if configured else DEFAULT_BIN
    missing = [name for name in BINARIES if not os.access(path / name, os.X_OK)]
    if missing:
        message = f"Kubernetes test binaries missing in {path}: {', '.join(missing)} (run scripts/build-kube.sh)"
        if configured:
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class Pki:
    """A CA and the certificates the control plane and the node present; PEM files in ``root``."""

    root: Path
    ca_key: ec.EllipticCurvePrivateKey = field(init=False)
    ca_cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "optio-test-ca")])
        now = datetime.datetime.now(datetime.UTC)
        self.ca_cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(self.ca_key, hashes.SHA256())
        )
        (self.root / "ca.crt").write_bytes(self.ca_cert.public_bytes(serialization.Encoding.PEM))

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.crt"

    def issue(self, name: str, *, common_name: str, server: bool, client: bool,
              organization: str | None = None) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if organization:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH]
                                                                          if client else [])
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder().subject_name(x509.Name(attrs)).issuer_name(self.ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.DNSName("kubernetes"), x509.DNSName("kubernetes.default"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
            ]), critical=False)
        cert = builder.sign(self.ca_key, hashes.SHA256())
        crt, pem = self.root / f"{name}.crt", self.root / f"{name}.key"
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
        return crt, pem


def _rsa_key(path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


@dataclass
class KubeCluster:
    """A running etcd + kube-apiserver + kube-scheduler; ``stop()`` ends them and removes their state."""

    root: Path
    bin_dir: Path
    url: str = ""
    admin_token: str = "optio-test-admin-token"
    optio_token: str = "optio-test-optio-token"
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    pki: Pki | None = None
    kubelet_client_cert: tuple[Path, Path] | None = None
    kubelet_serving_cert: tuple[Path, Path] | None = None

    @property
    def ca_file(self) -> Path:
        assert self.pki is not None
        return self.pki.ca_file

    def kubeconfig(self, token: str, path: Path) -> Path:
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: test\n  cluster:\n    server: {self.url}\n    certificate-authority: {self.ca_file}\n"
            f"users:\n- name: user\n  user:\n    token: {token}\n"
            "contexts:\n- name: test\n  context:\n    cluster: test\n    user: user\ncurrent-context: test\n"
        )
        return path

    def start(self) -> KubeCluster:
        self.pki = Pki(self.root / "pki")
        apiserver_cert = self.pki.issue("apiserver", common_name="kube-apiserver", server=True, client=False)
        self.kubelet_client_cert = self.pki.issue("apiserver-kubelet-client", common_name="kube-apiserver-kubelet",
                                                  server=False, client=True, organization="system:masters")
        self.kubelet_serving_cert = self.pki.issue("kubelet", common_name="fake-node", server=True, client=False)
        sa_key = self.root / "pki" / "sa.key"
        _rsa_key(sa_key)
        tokens = self.root / "tokens.csv"
        tokens.write_text(f'{self.admin_token},admin,admin-uid,"system:masters"\n'
                          f"{self.optio_token},optio,optio-uid\n")
        logs = self.root / "logs"
        logs.mkdir()

        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn("etcd", [
            str(self.bin_dir / "etcd"), "--name", "test", "--data-dir", str(self.root / "etcd"),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"test=http://127.0.0.1:{peer_port}", "--log-level", "warn",
        ], logs)
        self._wait(lambda: httpx.get(f"{etcd_url}/health", timeout=2).status_code == 200, "etcd")

        self.url = f"https://127.0.0.1:{api_port}"
        self._spawn("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"),
            "--etcd-servers", etcd_url, "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--secure-port", str(api_port), "--insecure-port", "0", "--cert-dir", str(self.root / "certs"),
            "--tls-cert-file", str(apiserver_cert[0]), "--tls-private-key-file", str(apiserver_cert[1]),
            "--client-ca-file", str(self.ca_file), "--token-auth-file", str(tokens),
            "--authorization-mode", "RBAC", "--anonymous-auth=false",
            "--service-account-key-file", str(sa_key), "--service-account-signing-key-file", str(sa_key),
            "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-cluster-ip-range", "10.0.0.0/24",
            "--disable-admission-plugins", "ServiceAccount,TaintNodesByCondition",
            "--kubelet-certificate-authority", str(self.ca_file),
            "--kubelet-client-certificate", str(self.kubelet_client_cert[0]),
            "--kubelet-client-key", str(self.kubelet_client_cert[1]),
            "--kubelet-preferred-address-types", "InternalIP",
            "--enable-priority-and-fairness=false", "--profiling=false", "--logtostderr", "-v", "1",
        ], logs)
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        tls = ssl.create_default_context(cafile=str(self.ca_file))
        self._wait(lambda: httpx.get(f"{self.url}/readyz", headers=headers, verify=tls,
                                     timeout=3).status_code == 200, "kube-apiserver", timeout_s=90)

        scheduler_config = self.kubeconfig(self.admin_token, self.root / "scheduler.kubeconfig")
        self._spawn("kube-scheduler", [
            str(self.bin_dir / "kube-scheduler"), "--kubeconfig", str(scheduler_config),
            "--leader-elect=false", "--port", "0", "--secure-port", "0", "--logtostderr", "-v", "1",
        ], logs)
        return self

    def _spawn(self, name: str, argv: list[str], logs: Path) -> None:
        out = (logs / f"{name}.log").open("wb")
        try:
            self.procs.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        finally:
            out.close()

    def _wait(self, ready: object, what: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}: {self.tail_logs()}")
            try:
                if ready():  # type: ignore[operator]
                    return
            except (httpx.HTTPError, OSError) as exc:
                last = exc
            time.sleep(0.2)
        raise RuntimeError(f"{what} not ready after {timeout_s}s ({last}): {self.tail_logs()}")

    def tail_logs(self, lines: int = 30) -> str:
        out = []
        for path in sorted((self.root / "logs").glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def start_cluster(root: Path | None = None) -> KubeCluster:
    bin_dir = kube_bin()
    root = root or Path(tempfile.mkdtemp(prefix="optio-kube-"))
    cluster = KubeCluster(root=root, bin_dir=bin_dir)
    try:
        return cluster.start()
    except BaseException:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise
