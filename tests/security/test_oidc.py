"""Authenticated delivery (PYFUNC_OIDC_*): a real pyfunc server verifies real tokens against a real JWKS server.

The keys are generated here with ``cryptography``; the JWKS is served over HTTP on loopback
(PYFUNC_OIDC_JWKS_URL, the only place http:// is allowed) by a server that counts its fetches;
tokens are signed with PyJWT exactly as a Kubernetes service-account issuer signs them (RS256,
a ``kid``, ``iss``/``aud``/``sub``/``exp``/``iat``/``nbf``). Every refusal is checked on the
wire (status, problem body, nothing about keys or claims) and in the log (the reason).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

jwt = pytest.importorskip("jwt")
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
from jwt.algorithms import ECAlgorithm, RSAAlgorithm  # noqa: E402

from support import free_port, make_event, send, start_server, write_function  # noqa: E402

AUDIENCE = "https://pyfunc.example/fn"
ISSUER = "https://kubernetes.default.svc.cluster.local"
SENDER = "system:serviceaccount:default:oidc-broker-ingress"

ECHO = """
def handler(event):
    return {"type": "com.example.reply"}, {"got": event.data}
"""

# Words a 401/403 body must not contain: what a forger would learn from (key ids, claims, causes).
SECRETS = ("kid", "expired", "audience", "issuer", "signature", "alg", "nbf", "iat", "sub", "exp")


class Key:
    """A signing key and its public JWK."""

    def __init__(self, kid: str, kind: str = "RSA") -> None:
        self.kid = kid
        if kind == "RSA":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.alg = "RS256"
            jwk = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            self.alg = "ES256"
            jwk = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        self.jwk = {**jwk, "kid": kid, "use": "sig", "alg": self.alg}

    def token(self, headers: dict | None = None, **overrides) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": [AUDIENCE], "sub": SENDER, "iat": now, "nbf": now, "exp": now + 3600}
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": self.kid, **(headers or {})})


class JwksServer:
    """The issuer's JWKS on loopback: its keys can be rotated, its fetches are counted."""

    def __init__(self, keys: list[Key]) -> None:
        self.keys = keys
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                owner.fetches += 1
                body = json.dumps({"keys": [key.jwk for key in owner.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "max-age=3600")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/openid/v1/jwks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def rsa_key() -> Key:
    return Key("rsa-1")


@pytest.fixture(scope="module")
def ec_key() -> Key:
    return Key("ec-1", "EC")


@pytest.fixture(scope="module")
def jwks(rsa_key, ec_key):
    server = JwksServer([rsa_key, ec_key])
    yield server
    server.close()


def _env(jwks: JwksServer, **extra: str) -> dict:
    return {"PYFUNC_OIDC_AUDIENCE": AUDIENCE, "PYFUNC_OIDC_ISSUER": ISSUER, "PYFUNC_OIDC_JWKS_URL": jwks.url,
            "PYFUNC_METRICS": "true", **extra}


@pytest.fixture(scope="module")
def server(serve_module, jwks):
    return serve_module(ECHO, env=_env(jwks))


def _post(server, token: str | None, scheme: str = "Bearer") -> requests.Response:
    headers = {"Authorization": f"{scheme} {token}".strip()} if token is not None else {}
    return send(server.url, make_event({"n": 1}), headers=headers)


def _refused(response: requests.Response, status: int = 401) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json()
    text = json.dumps(body).lower()
    assert not [word for word in SECRETS if word in text.replace("token", "")], body
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
    return body


def _wait_for_log(server, text: str) -> str:
    deadline = time.monotonic() + 10
    while text not in server.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    return server.logs()


# ------------------------------------------------------------------ accepted


def test_a_valid_rs256_token_is_accepted(server, rsa_key):
    response = _post(server, rsa_key.token())
    assert response.status_code == 200, response.text
    assert response.headers["ce-type"] == "com.example.reply"


def test_a_valid_es256_token_is_accepted(server, ec_key):
    assert _post(server, ec_key.token()).status_code == 200


def test_the_audience_may_be_a_plain_string(server, rsa_key):
    assert _post(server, rsa_key.token(aud=AUDIENCE)).status_code == 200


def test_probes_and_metrics_need_no_token(server):
    assert requests.get(server.url + "/health/readiness", timeout=10).status_code == 200
    assert requests.get(server.url + "/health/liveness", timeout=10).status_code == 200
    assert requests.get(server.url + "/metrics", timeout=10).status_code == 200


# ------------------------------------------------------------------ refused: 401, the reason only in the log


@pytest.mark.parametrize("case, reason", [
    ("none", "no Authorization header"),
    ("empty-bearer", "is not 'Bearer <token>'"),
    ("basic", "is not 'Bearer <token>'"),
    ("not-a-jwt", "is not a JWT"),
    ("garbage", "is not a JWT"),
])
def test_a_missing_or_malformed_header_is_401(server, case, reason):
    token, scheme = {"none": (None, "Bearer"), "empty-bearer": ("", "Bearer"), "basic": ("dXNlcjpwYXNz", "Basic"),
                     "not-a-jwt": ("not.a.jwt", "Bearer"), "garbage": ("\u00e9t\u00e9" * 50, "Bearer")}[case]
    if case == "garbage":
        response = requests.post(server.url, data=b"{}", timeout=10, headers={
            "Authorization": b"Bearer \xc3\xa9\xffx.y\xfe.z", "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/t",
            "ce-type": "t"})
    else:
        response = _post(server, token, scheme)
    _refused(response)
    assert reason in _wait_for_log(server, reason)


def test_an_expired_token_is_401(server, rsa_key):
    now = int(time.time())
    _refused(_post(server, rsa_key.token(iat=now - 7200, nbf=now - 7200, exp=now - 3600)))
    assert "the token has expired" in _wait_for_log(server, "the token has expired")


def test_a_token_not_valid_yet_is_401(server, rsa_key):
    _refused(_post(server, rsa_key.token(nbf=int(time.time()) + 600)))
    assert "not valid yet" in _wait_for_log(server, "not valid yet")


def test_a_token_issued_in_the_future_is_401(server, rsa_key):
    now = int(time.time())
    _refused(_post(server, rsa_key.token(iat=now + 600, nbf=None)))


def test_a_token_for_another_audience_is_401(server, rsa_key):
    _refused(_post(server, rsa_key.token(aud=["https://other.example/fn"])))
    assert "another audience" in _wait_for_log(server, "another audience")


def test_a_token_from_another_issuer_is_401(server, rsa_key):
    _refused(_post(server, rsa_key.token(iss="https://evil.example")))
    assert "another issuer" in _wait_for_log(server, "another issuer")


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "aud", "iss"])
def test_a_token_without_a_required_claim_is_401(server, rsa_key, missing):
    _refused(_post(server, rsa_key.token(**{missing: None})))


def test_an_hs256_token_keyed_with_the_public_key_is_401(server, rsa_key):
    # The classic confusion: HMAC "signed" with the RSA public key a verifier might use as a secret.
    from cryptography.hazmat.primitives import serialization

    public = rsa_key.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": SENDER, "iat": now, "exp": now + 60}
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = {"alg": "HS256", "kid": rsa_key.kid}
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    token = signing_input + "." + b64(hmac.new(public, signing_input.encode(), hashlib.sha256).digest())
    _refused(_post(server, token))
    assert "alg 'HS256'" in _wait_for_log(server, "alg 'HS256'")


def test_an_unsigned_alg_none_token_is_401(server, rsa_key):
    token = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": SENDER, "iat": int(time.time()),
                        "exp": int(time.time()) + 60}, None, algorithm="none", headers={"kid": rsa_key.kid})
    _refused(_post(server, token))
    assert "alg 'none'" in _wait_for_log(server, "alg 'none'")


def test_a_token_signed_by_another_key_with_a_known_kid_is_401(server, rsa_key):
    forger = Key(rsa_key.kid)
    _refused(_post(server, forger.token()))
    assert "signature does not verify" in _wait_for_log(server, "signature does not verify")


def test_a_key_of_the_wrong_type_for_the_alg_is_401(server, ec_key):
    # An RS256 header naming the EC key's kid: the key cannot verify RS256.
    rsa_signer = Key(ec_key.kid)
    _refused(_post(server, rsa_signer.token()))


# ------------------------------------------------------------------ 403: a valid token from a sender not allowed


def test_a_sender_not_allowed_is_403_and_an_allowed_one_passes(serve, jwks, rsa_key):
    running = serve(ECHO, env=_env(jwks, PYFUNC_OIDC_ALLOWED_SUBJECTS="system:serviceaccount:default:oidc-broker-*, "
                                                                       "system:serviceaccount:ops:mailer"))
    assert _post(running, rsa_key.token()).status_code == 200
    assert _post(running, rsa_key.token(sub="system:serviceaccount:ops:mailer")).status_code == 200
    body = _refused(_post(running, rsa_key.token(sub="system:serviceaccount:default:intruder")), 403)
    assert body["reason"] == "sender-not-allowed"
    assert "intruder" in _wait_for_log(running, "intruder")
    # Validity comes first: an invalid token from an allowed sender is still a 401, not a 403.
    _refused(_post(running, rsa_key.token(aud="https://other.example")))


# ------------------------------------------------------------------ keys: rotation, rate limit, no keys


def test_an_unknown_kid_refetches_the_keys_and_a_rotated_key_is_accepted(serve):
    old, new = Key("old"), Key("new")
    issuer = JwksServer([old])
    try:
        running = serve(ECHO, env=_env(issuer, PYFUNC_OIDC_REFETCH_INTERVAL="0"))
        token = old.token()
        assert _post(running, token).status_code == 200
        assert issuer.fetches == 1
        assert _post(running, token).status_code == 200  # the same token again: remembered as verified
        assert _post(running, old.token(sub=SENDER + "-2")).status_code == 200
        assert issuer.fetches == 1  # the keys are cached for the response's max-age
        issuer.keys = [new]  # the issuer rotates its key
        assert _post(running, new.token()).status_code == 200
        assert issuer.fetches == 2
        # The token verified before, under a key now gone from the JWKS: no longer accepted.
        _refused(_post(running, token))
        assert issuer.fetches == 3  # refetched for the unknown kid, still unknown
    finally:
        issuer.close()


def test_unknown_kids_refetch_at_most_once_per_interval(serve):
    known = Key("known")
    issuer = JwksServer([known])
    try:
        running = serve(ECHO, env=_env(issuer, PYFUNC_OIDC_REFETCH_INTERVAL="3600"))
        assert _post(running, known.token()).status_code == 200
        assert issuer.fetches == 1
        for n in range(20):  # a flood of tokens naming keys the issuer never had
            _refused(_post(running, Key(f"bogus-{n}").token()))
        assert issuer.fetches == 1
        assert _post(running, known.token()).status_code == 200  # the known key still serves
    finally:
        issuer.close()


def test_no_reachable_keys_is_a_503_the_sender_retries(serve, rsa_key):

    running = serve(ECHO, env={"PYFUNC_OIDC_AUDIENCE": AUDIENCE, "PYFUNC_OIDC_ISSUER": ISSUER,
                               "PYFUNC_OIDC_JWKS_URL": f"http://127.0.0.1:{free_port()}/jwks"})
    response = _post(running, rsa_key.token())
    assert response.status_code == 503, response.text
    assert response.json()["reason"] == "token-keys-unavailable" and response.headers["Retry-After"]
    assert "cannot verify bearer tokens" in _wait_for_log(running, "cannot verify bearer tokens")


# ------------------------------------------------------------------ settings


def test_without_the_package_the_setting_is_a_one_line_error(tmp_path):
    directory = write_function(tmp_path / "fn", ECHO)
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "jwt":
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
from pyfunc.cli import main_module
sys.exit(main_module(sys.argv[1:]))
"""
    env = {"PYFUNC_OIDC_AUDIENCE": AUDIENCE, "PYFUNC_OIDC_ISSUER": ISSUER, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code, str(directory)], capture_output=True, text=True, timeout=60,
                          env=env)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("pyfunc: error:")]
    assert len(lines) == 1 and "PYFUNC_OIDC_AUDIENCE" in lines[0] and "pyfunc-invoker[oidc]" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_an_http_jwks_url_off_loopback_is_refused_by_name(tmp_path):
    directory = write_function(tmp_path / "fn", ECHO)
    running = start_server(directory, {"PYFUNC_OIDC_AUDIENCE": AUDIENCE, "PYFUNC_OIDC_ISSUER": ISSUER,
                                       "PYFUNC_OIDC_JWKS_URL": "http://issuer.example/jwks"}, wait=False)
    assert running.process.wait(60) != 0
    assert "PYFUNC_OIDC_JWKS_URL" in running.logs() and "Traceback" not in running.logs()


def test_outside_a_cluster_an_audience_without_issuer_is_refused_by_name(tmp_path):
    directory = write_function(tmp_path / "fn", ECHO)
    running = start_server(directory, {"PYFUNC_OIDC_AUDIENCE": AUDIENCE}, wait=False)
    assert running.process.wait(60) != 0
    assert "PYFUNC_OIDC_ISSUER" in running.logs() and "Traceback" not in running.logs()


def test_verification_is_off_by_default(serve_module):
    running = serve_module(ECHO)
    assert send(running.url, make_event({"n": 1})).status_code == 200


# ------------------------------------------------------------------ the default issuer: the cluster's own


def _tls_pair(tmp_path):
    """A self-signed certificate for 127.0.0.1 (the "cluster CA" and the API server's certificate)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "apiserver.crt", tmp_path / "apiserver.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _tls_server(handler: type, cert, key) -> ThreadingHTTPServer:
    """An HTTPS server on loopback with the certificate of _tls_pair, serving in a thread."""
    import ssl

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_without_an_issuer_the_clusters_is_discovered_with_the_pods_own_access(tmp_path, monkeypatch, rsa_key):
    """The API server's discovery document over TLS (the service account's CA), asked with the pod's
    token, names the issuer; the keys come from the same server, also with the token."""
    from pyfunc import _oidc
    from pyfunc._config import Config

    cert, key = _tls_pair(tmp_path)
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("pod-token\n")
    (account / "ca.crt").write_bytes(cert.read_bytes())
    seen: list[tuple[str, str]] = []

    class ApiServer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append((self.path, self.headers.get("Authorization", "")))
            if self.headers.get("Authorization") != "Bearer pod-token":
                self.send_response(401)
                self.end_headers()
                return
            if self.path == "/.well-known/openid-configuration":
                # The real API server names itself by its advertised address, which pods may not reach.
                document, produces = {"issuer": ISSUER, "jwks_uri": "https://192.0.2.1:6443/openid/v1/jwks"}, \
                    "application/json"
            elif self.path == "/openid/v1/jwks":
                document, produces = {"keys": [rsa_key.jwk]}, "application/jwk-set+json"
            else:
                self.send_response(404)
                self.end_headers()
                return
            # As Kubernetes' API server (go-restful's Produces): 406 unless Accept names the type.
            accepted = {part.split(";")[0].strip() for part in self.headers.get("Accept", "*/*").split(",")}
            if not accepted & {produces, "*/*"}:
                self.send_response(406)
                self.end_headers()
                return
            body = json.dumps(document).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    api = _tls_server(ApiServer, cert, key)
    try:
        monkeypatch.setattr(_oidc, "SERVICE_ACCOUNT", str(account))
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(api.server_address[1]))
        verifier = _oidc.from_config(Config(oidc_audience=AUDIENCE))
        assert verifier is not None
        assert verifier.claims("Bearer " + rsa_key.token())["sub"] == SENDER
        assert verifier.keys.issuer() == ISSUER
        assert seen == [("/.well-known/openid-configuration", "Bearer pod-token"),
                        ("/openid/v1/jwks", "Bearer pod-token")]
        with pytest.raises(_oidc.Refused, match="another issuer"):
            verifier.claims("Bearer " + rsa_key.token(iss="https://evil.example"))
    finally:
        api.shutdown()
        api.server_close()


def test_the_pods_token_never_goes_to_another_host(tmp_path, monkeypatch, rsa_key):
    """An explicit issuer elsewhere (over TLS the cluster CA verifies): no pod token goes with its discovery."""
    from pyfunc import _oidc

    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("pod-token")
    cert, key = _tls_pair(tmp_path)
    (account / "ca.crt").write_bytes(cert.read_bytes())
    monkeypatch.setattr(_oidc, "SERVICE_ACCOUNT", str(account))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    seen: list[str] = []

    class Issuer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    issuer = _tls_server(Issuer, cert, key)
    try:
        source = _oidc._KeySource(f"https://127.0.0.1:{issuer.server_address[1]}", "", _oidc._ServiceAccount.find())
        with pytest.raises(_oidc.KeysUnavailable, match="404"):
            source.jwks()
        assert seen == [""]
    finally:
        issuer.shutdown()
        issuer.server_close()
