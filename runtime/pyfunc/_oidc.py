"""Authenticated delivery: verify the OIDC bearer token Knative Eventing sends with each event.

With Eventing's ``authentication-oidc`` feature on, every delivery (Broker, Channel, Source)
carries ``Authorization: Bearer <JWT>``: a service-account token the cluster's issuer minted
for the sender's OIDC identity, with the sink's audience. Eventing leaves checking it to the
sink; an unchecked token authenticates nothing. Off unless ``PYFUNC_OIDC_AUDIENCE`` is set;
then every request to the function (not the health probes, not ``/metrics``) must carry a
token that:

* is signed (RS256 or ES256 only: never ``none``, never an HMAC keyed with a public key) by a
  key of the issuer's JWKS, found by ``kid``;
* has ``iss`` = ``PYFUNC_OIDC_ISSUER`` (default: the cluster's service-account issuer, read
  from the API server's discovery document with the pod's own token and CA) and ``aud``
  containing ``PYFUNC_OIDC_AUDIENCE``;
* is within ``exp``/``nbf``/``iat``, give or take :data:`SKEW` seconds;
* and, with ``PYFUNC_OIDC_ALLOWED_SUBJECTS``, has a ``sub`` matching one of its globs (else 403).

Anything else is a 401 whose body says only that a valid token is needed: which check failed
(and so what a forger should change) is only in the log. The JWKS is fetched on first use,
kept for its ``Cache-Control: max-age`` (bounded), and fetched again when a token names a key
it lacks (a rotation) at most once per ``PYFUNC_OIDC_REFETCH_INTERVAL``. PyJWT (with
``cryptography``) does the JWT work: the ``oidc`` extra, imported only when this is on.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import threading
import time

from ._config import ConfigError
from ._responses import Response, problem

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

__all__ = ["Verifier", "from_config"]

logger = logging.getLogger("pyfunc")

ALGORITHMS = {"RS256": "RSA", "ES256": "EC"}  # accepted alg -> the key type it must be verified with
SKEW = 30  # seconds of clock difference allowed on exp, nbf and iat
KEYS_LIFETIME = 300.0  # seconds a JWKS is kept when its response says nothing (Cache-Control)
KEYS_LIFETIME_BOUNDS = (30.0, 86400.0)  # and whatever it says, within these
FETCH_TIMEOUT = 5.0
MAX_DOCUMENT = 1 << 20  # bytes of a discovery document or JWKS read at most
VERIFIED_TOKENS = 1024  # tokens remembered as verified (each sender has one at a time)
RETRY_AFTER = "5"  # a 503 while no keys can be fetched: Knative retries the delivery
SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
ACCEPT = "application/json, application/jwk-set+json"
IN_CLUSTER_API = "https://kubernetes.default.svc"  # when KUBERNETES_SERVICE_HOST is not set
EXTRA = "pip install 'pyfunc-invoker[oidc]'"


class Refused(Exception):
    """A request without a valid token: 401; the message (the log's reason) never reaches the client."""


class KeysUnavailable(Exception):
    """No signing keys could be fetched: pyfunc cannot tell valid from invalid, 503."""


def from_config(config: Any) -> Optional[Verifier]:
    """The :class:`Verifier` that ``PYFUNC_OIDC_*`` asks for, or None when ``PYFUNC_OIDC_AUDIENCE`` is empty."""
    audience = config.oidc_audience.strip()
    if not audience:
        return None
    try:
        import jwt
        from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: F401 - RS256/ES256 need it
    except ImportError:
        raise ConfigError(f"PYFUNC_OIDC_AUDIENCE is set but PyJWT with cryptography is not installed: {EXTRA}") \
            from None
    issuer = config.oidc_issuer.strip()
    cluster = _ServiceAccount.find()
    if not issuer and cluster is None:
        raise ConfigError("PYFUNC_OIDC_AUDIENCE is set but PYFUNC_OIDC_ISSUER is not, and there is no in-cluster "
                          f"service account ({SERVICE_ACCOUNT}) to discover the cluster's issuer with")
    subjects = [glob.strip() for glob in config.oidc_allowed_subjects.split(",") if glob.strip()]
    source = _KeySource(issuer, config.oidc_jwks_url.strip(), cluster)
    keys = KeySet(source, config.oidc_refetch_interval)
    logger.info("verifying bearer tokens: audience %s, issuer %s%s", audience, issuer or "(the cluster's)",
                f", senders {', '.join(subjects)}" if subjects else "")
    return Verifier(jwt, keys, audience, subjects)


class Verifier:
    """Checks the bearer token of one request; built only when ``PYFUNC_OIDC_AUDIENCE`` is set."""

    def __init__(self, jwt: Any, keys: KeySet, audience: str, subjects: list[str]) -> None:
        self._jwt = jwt
        self.keys = keys
        self.audience = audience
        self.subjects = subjects
        # Tokens verified before: token -> (claims, kid, key, exp). A sender reuses its token
        # until it nears expiry (Knative's dispatchers cache theirs), and checking one costs
        # ~0.6 ms (PyJWT validates the base64 in Python, then RSA): the same bytes under the
        # same key verify the same way, so only the clock and the key set are checked again.
        self._verified: dict[str, tuple[dict[str, Any], str, Any, float]] = {}

    def refuse(self, environ: dict[str, Any]) -> Optional[Response]:
        """None when the request may go on; else the 401, 403 or 503 to answer it with (logged)."""
        try:
            claims = self.claims(environ.get("HTTP_AUTHORIZATION"))
        except Refused as exc:
            logger.warning("refused a request without a valid token (401): %s", exc)
            response = problem(401, "unauthenticated", "this function accepts only requests with a valid bearer token")
            response.headers.append(("WWW-Authenticate", "Bearer"))
            return response
        except KeysUnavailable as exc:
            logger.error("cannot verify bearer tokens, answering 503: %s", exc)
            response = problem(503, "token-keys-unavailable",
                               "the function cannot verify tokens right now; retry later")
            response.headers.append(("Retry-After", RETRY_AFTER))
            return response
        subject = claims.get("sub")
        if self.subjects and not (isinstance(subject, str)
                                  and any(fnmatch.fnmatchcase(subject, glob) for glob in self.subjects)):
            logger.warning("refused a valid token from a sender not allowed (403): sub %r", subject)
            return problem(403, "sender-not-allowed", "the sender of this request may not deliver to this function")
        return None

    def claims(self, authorization: Optional[str]) -> dict[str, Any]:
        """The verified claims of an ``Authorization`` header's token; raises :class:`Refused` (why, for the log)."""
        jwt = self._jwt
        if not authorization:
            raise Refused("no Authorization header")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Refused("the Authorization header is not 'Bearer <token>'")
        known = self._verified.get(token)
        if known is not None:
            # nbf and iat only grow truer; exp and the key (rotated away, or refetched) may not.
            if time.time() <= known[3] + SKEW and self.keys.cached(known[1]) is known[2]:
                return known[0]
            self._verified.pop(token, None)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Refused("the token is not a JWT") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise Refused(f"the token is signed with alg {str(alg)[:20]!r}; only {', '.join(ALGORITHMS)} are accepted")
        kid = header.get("kid")
        key = self.keys.find(kid if isinstance(kid, str) else None, alg)
        if key is None:
            raise Refused(f"no key of the issuer's has kid {str(kid)[:80]!r} for {alg}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[alg], audience=self.audience, issuer=self.keys.issuer(), leeway=SKEW,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError:
            raise Refused("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Refused("the token is not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise Refused("the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise Refused("the token is from another issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Refused(f"the token has no {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise Refused("the token's signature does not verify") from None
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            raise Refused(f"the token is invalid ({type(exc).__name__})") from None
        issued = claims.get("iat")
        if isinstance(issued, (int, float)) and issued > time.time() + SKEW:  # PyJWT < 2.10 does not check it
            raise Refused("the token is not valid yet (iat in the future)")
        exp = claims.get("exp")
        if isinstance(kid, str) and isinstance(exp, (int, float)):
            if len(self._verified) >= VERIFIED_TOKENS:
                try:
                    self._verified.pop(next(iter(self._verified)), None)  # the oldest
                except (RuntimeError, StopIteration):  # another thread changed it meanwhile
                    self._verified.clear()
            self._verified[token] = (claims, kid, key, float(exp))
        return claims


class KeySet:
    """The issuer's signing keys by ``kid``: fetched on first use, kept for their lifetime, fetched
    again for an unknown ``kid`` at most once per ``min_interval`` (any fetch counts, failed or not)."""

    def __init__(self, source: _KeySource, min_interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.min_interval = min_interval
        self.clock = clock
        self._keys: Optional[dict[str, tuple[str, Any]]] = None  # kid -> (key type, public key)
        self._expires = 0.0
        self._last_attempt: Optional[float] = None
        self._lock = threading.Lock()
        self.fetches = 0  # for the log and tests

    def issuer(self) -> str:
        return self.source.issuer()

    def cached(self, kid: str) -> Any:
        """The key known for ``kid`` while the key set is fresh; None otherwise (never fetches)."""
        keys = self._keys
        if keys is None or self.clock() >= self._expires:
            return None
        found = keys.get(kid)
        return found[1] if found is not None else None

    def find(self, kid: Optional[str], alg: str) -> Any:
        """The public key for ``kid`` (None: the token names none) usable with ``alg``, or None."""
        keys = self._keys
        now = self.clock()
        if keys is None or now >= self._expires or (kid is not None and kid not in keys):
            keys = self._refresh(keys, kid, now)
        if kid is None:  # no kid: only an issuer with a single key of that type is unambiguous
            usable = [key for kty, key in keys.values() if kty == ALGORITHMS[alg]]
            return usable[0] if len(usable) == 1 else None
        found = keys.get(kid)
        if found is None or found[0] != ALGORITHMS[alg]:
            return None
        return found[1]

    def _refresh(self, seen: Optional[dict[str, tuple[str, Any]]], kid: Optional[str],
                 now: float) -> dict[str, tuple[str, Any]]:
        with self._lock:
            keys = self._keys
            if keys is not None and keys is not seen:  # another thread fetched them meanwhile
                return keys
            last = self._last_attempt
            if last is not None and now - last < self.min_interval:
                if keys is None:
                    raise KeysUnavailable("the last fetch of the signing keys failed; next try "
                                          f"in {self.min_interval - (now - last):.0f}s")
                return keys  # rate-limited: the unknown kid stays unknown, the stale keys serve
            self._last_attempt = now
            self.fetches += 1
            try:
                document, max_age = self.source.jwks()
                fresh = _parse_jwks(document)
            except KeysUnavailable as exc:
                if keys is None:
                    raise
                logger.warning("fetching the signing keys again failed (keeping the %d known): %s", len(keys), exc)
                return keys
            low, high = KEYS_LIFETIME_BOUNDS
            self._expires = now + min(max(max_age if max_age is not None else KEYS_LIFETIME, low), high)
            self._keys = fresh
            logger.info("fetched %d signing key(s) of the token issuer%s", len(fresh),
                        f" (a token named the unknown kid {kid[:80]!r})" if seen is not None and kid else "")
            return fresh


def _parse_jwks(document: Any) -> dict[str, tuple[str, Any]]:
    """``{"keys": [JWK, ...]}`` → kid → (key type, public key); keys pyfunc cannot use are skipped."""
    import jwt

    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeysUnavailable("the JWKS is not a JSON object with a 'keys' list")
    keys: dict[str, tuple[str, Any]] = {}
    for index, jwk in enumerate(document["keys"]):
        if not isinstance(jwk, dict) or jwk.get("kty") not in ("RSA", "EC") or jwk.get("use", "sig") != "sig":
            continue
        if jwk.get("alg") not in (None, *ALGORITHMS) or (jwk["kty"] == "EC" and jwk.get("crv") != "P-256"):
            continue
        try:
            key = jwt.PyJWK(jwk).key
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            logger.warning("skipping key %s of the JWKS: %s", jwk.get("kid", index), type(exc).__name__)
            continue
        keys[str(jwk.get("kid", f"#{index}"))] = (jwk["kty"], key)
    return keys


class _ServiceAccount:
    """The pod's own API access: its token and the cluster CA (Kubernetes mounts both)."""

    def __init__(self, directory: str) -> None:
        self.ca = os.path.join(directory, "ca.crt")
        self._token = os.path.join(directory, "token")

    @classmethod
    def find(cls) -> Optional[_ServiceAccount]:
        directory = SERVICE_ACCOUNT
        if os.path.isfile(os.path.join(directory, "token")) and os.path.isfile(os.path.join(directory, "ca.crt")):
            return cls(directory)
        return None

    def token(self) -> str:
        with open(self._token) as file:  # read each time: the kubelet rotates it
            return file.read().strip()


class _KeySource:
    """Where the keys come from: ``PYFUNC_OIDC_JWKS_URL``, else the issuer's discovery document's
    ``jwks_uri``. Without ``PYFUNC_OIDC_ISSUER``, the issuer is the API server's own
    (``/.well-known/openid-configuration`` of ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``,
    as client-go's in-cluster config finds it, asked with the pod's token: the service-account
    issuer discovery every cluster since 1.21 serves), and its keys are fetched from the same
    API server (the discovery's ``jwks_uri`` names the API server by an address the pod may not
    reach, or trust)."""

    def __init__(self, issuer: str, jwks_url: str, cluster: Optional[_ServiceAccount]) -> None:
        self._issuer = issuer
        self._jwks_url = jwks_url
        self.cluster = cluster

    def issuer(self) -> str:
        if not self._issuer:  # discovered with the keys (jwks), under the key set's rate limit
            raise KeysUnavailable("the cluster's issuer is not discovered yet")
        return self._issuer

    def jwks(self) -> tuple[Any, Optional[float]]:
        if self._jwks_url:
            if not self._issuer:
                self._discover()
            return self._get(self._jwks_url)
        jwks_uri = self._discover()
        return self._get(jwks_uri)

    def _discover(self) -> str:
        """The ``jwks_uri`` of the issuer's discovery document (and the issuer, when not given)."""
        from urllib.parse import urlsplit

        base = self._issuer or _api_server()
        document, _ = self._get(base.rstrip("/") + "/.well-known/openid-configuration")
        if not isinstance(document, dict) or not isinstance(document.get("jwks_uri"), str):
            raise KeysUnavailable(f"the discovery document of {base} has no jwks_uri")
        issuer = document.get("issuer")
        if not self._issuer:
            if not isinstance(issuer, str) or not issuer:
                raise KeysUnavailable(f"the discovery document of {base} has no issuer")
            self._issuer = issuer
            logger.info("the cluster's service-account issuer is %s", issuer)
            # The API server's jwks_uri names its advertised address; the pod reaches (and
            # trusts, with the cluster CA) the same server as kubernetes.default.svc.
            return _api_server() + urlsplit(document["jwks_uri"]).path
        if issuer != self._issuer:  # OpenID Connect Discovery 1.0 §4.3
            raise KeysUnavailable(f"the discovery document of {base} names another issuer ({str(issuer)[:200]!r})")
        return str(document["jwks_uri"])

    def _get(self, url: str) -> tuple[Any, Optional[float]]:
        """GET a JSON document over TLS (the system CAs and the cluster's), and its max-age."""
        import ssl
        import urllib.error
        import urllib.request
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1",
                                                                                         "localhost")):
            raise KeysUnavailable(f"refusing to fetch keys over {parts.scheme or 'no scheme'}: {url}")
        # The discovery document is application/json, a key set application/jwk-set+json (RFC 7517
        # §8.5); Kubernetes' API server answers 406 to a key set request that accepts only the first.
        request = urllib.request.Request(url, headers={"Accept": ACCEPT})
        context = None
        if parts.scheme == "https":
            context = ssl.create_default_context()
            if self.cluster is not None:
                context.load_verify_locations(self.cluster.ca)
                # The pod's token goes only to the cluster's own API server.
                if parts.hostname and (parts.hostname == "kubernetes.default.svc"
                                       or parts.hostname.startswith("kubernetes.default.svc.")
                                       or parts.hostname == os.environ.get("KUBERNETES_SERVICE_HOST", "").strip("[]")):
                    request.add_header("Authorization", f"Bearer {self.cluster.token()}")
        try:
            with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT, context=context) as response:
                body = response.read(MAX_DOCUMENT + 1)
                cache_control = response.headers.get("Cache-Control", "")
        except urllib.error.HTTPError as exc:
            raise KeysUnavailable(f"GET {url}: {exc.code} {exc.reason}") from None
        except (OSError, ValueError) as exc:
            raise KeysUnavailable(f"GET {url}: {exc}") from None
        if len(body) > MAX_DOCUMENT:
            raise KeysUnavailable(f"GET {url}: the document is over {MAX_DOCUMENT} bytes")
        try:
            document = json.loads(body)
        except ValueError:
            raise KeysUnavailable(f"GET {url}: not JSON") from None
        return document, _max_age(cache_control)


def _api_server() -> str:
    """The cluster's API server as a pod reaches it (client-go's rest.InClusterConfig)."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "").strip()
    if not host:
        return IN_CLUSTER_API
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6
    return f"https://{host}:{os.environ.get('KUBERNETES_SERVICE_PORT', '443').strip() or '443'}"


def _max_age(cache_control: str) -> Optional[float]:
    for directive in cache_control.split(","):
        name, _, value = directive.strip().partition("=")
        if name.lower() == "no-store" or name.lower() == "no-cache":
            return 0.0
        if name.lower() == "max-age":
            try:
                return float(value.strip('"'))
            except ValueError:
                return None
    return None
