"""Settings: one table that drives the environment variables, the command-line flags and the docs.

Precedence: a command-line flag beats its environment variable, which beats the default.
Bad values are reported by name (``PYFUNC_THREADS must be …``) before anything starts.
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass, fields

from ._errors import PyfuncError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    import argparse
    from typing import Any, Callable, Mapping, NamedTuple, Optional


class ConfigError(PyfuncError):
    """A setting has a value pyfunc cannot use."""


# The messages below say what the value must be, never Python's own words ("invalid literal for
# int() with base 10"): they end up in a one-line start-up error an operator reads.
def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("must be a whole number") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number") from None
    if value != value or value in (float("inf"), float("-inf")):  # nan, inf: no timeout means 0
        raise ValueError("must be a finite number")
    return value


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _bounded_int(highest: int) -> Callable[[str], int]:
    """A whole number from 1 to ``highest`` (a port; a thread count the machine can start)."""
    def parse(text: str) -> int:
        value = _positive_int(text)
        if value > highest:
            raise ValueError(f"must be at most {highest}")
        return value

    return parse


def _non_negative_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _positive_float(text: str) -> float:
    value = _float(text)
    if not value > 0:
        raise ValueError("must be positive")
    return value


def _size(text: str) -> int:
    """Bytes, with an optional K/M/G suffix (binary multiples): ``10M`` is 10 MiB."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    factor = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    number = text[:-1] if factor > 1 else text
    try:
        value = int(_float(number) * factor)
    except ValueError:
        raise ValueError("must be a number of bytes, with an optional K, M or G suffix") from None
    if value < 1:
        raise ValueError("must be positive")
    return value


def _budget(text: str) -> Any:
    """``auto`` (from the cgroup memory limit), ``0`` (no budget) or bytes like ``_size``."""
    value = text.strip().lower()
    if value == "auto":
        return "auto"
    if value in ("0", "off"):
        return 0
    return _size(text)


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return parse


def _dedupe(text: str) -> str:
    """``PYFUNC_DEDUPE``: off, memory, or a redis:// (rediss://, unix://) URL."""
    value = text.strip()
    if value.lower() in ("off", "false", "0", "no", "memory"):
        return "memory" if value.lower() == "memory" else "off"
    if value.startswith(("redis://", "rediss://", "unix://")):
        return value
    raise ValueError("must be off, memory or a redis://host:port/db URL")


def _jwks_url(text: str) -> str:
    """``PYFUNC_OIDC_JWKS_URL``: https://, or http:// to a loopback host only (a test's key server)."""
    from urllib.parse import urlsplit

    value = text.strip()
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost"):
        return value
    raise ValueError("must be an https:// URL (http:// only to 127.0.0.1, ::1 or localhost)")


def _workers(text: str) -> int:
    """``PYFUNC_WORKERS``: a number of server processes, or ``auto`` (0: one per CPU the
    container may use, pyfunc._workers.cpu_limit)."""
    if text.strip().lower() == "auto":
        return 0
    try:
        return _positive_int(text)
    except ValueError:
        raise ValueError("must be auto or a whole number of at least 1") from None


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


if TYPE_CHECKING:
    class Setting(NamedTuple):
        name: str          # attribute of Config
        env: str
        flag: str
        default: Any
        parse: Callable[[str], Any]
        help: str
else:  # the same record, immutable: a frozen dataclass's generated code costs ~1 ms of every start
    Setting = collections.namedtuple("Setting", "name env flag default parse help")


# Most threads a pool may be given: far beyond what a pod serves (Knative's containerConcurrency
# is at most 1000), well under what would exhaust the machine at start.
MAX_THREADS = 10_000

SETTINGS: tuple[Setting, ...] = (
    Setting("handler", "PYTHON_HANDLER", "--handler", "handler.handler", str,
            "the function to serve: module.func, pkg.mod.func or module:func"),
    Setting("port", "PORT", "--port", 8080, _bounded_int(65535), "TCP port to listen on (Knative sets PORT)"),
    Setting("host", "PYFUNC_HOST", "--host", "0.0.0.0", str, "address to listen on"),
    Setting("threads", "PYFUNC_THREADS", "--threads", 8, _bounded_int(MAX_THREADS),
            "worker threads always kept (the pool's core); unset, 4 per CPU the cgroup's quota allows, "
            "2 to 8 (8 without a quota on 2 cores or more); enough for CPU-bound handlers"),
    Setting("workers", "PYFUNC_WORKERS", "--workers", 1, _workers,
            "server processes sharing the port, each with its own threads, start() and memory "
            "(docs/serving.md, \"Workers\"): a number, or auto (one per CPU of the container's "
            "quota, else of the machine); 1 starts fastest and uses least memory"),
    Setting("max_threads", "PYFUNC_MAX_THREADS", "--max-threads", 256, _bounded_int(MAX_THREADS),
            "most worker threads: the pool grows past PYFUNC_THREADS while its workers are blocked "
            "(sync handlers waiting on I/O) and requests wait; async handlers hold none while they await"),
    Setting("thread_idle_timeout", "PYFUNC_THREAD_IDLE_TIMEOUT", "--thread-idle-timeout", 30.0,
            _non_negative_float, "seconds a worker beyond PYFUNC_THREADS may stay idle before it ends"),
    Setting("connection_limit", "PYFUNC_CONNECTION_LIMIT", "--connection-limit", 1024, _positive_int,
            "open connections accepted at once; further ones wait in the listen backlog"),
    Setting("backlog", "PYFUNC_BACKLOG", "--backlog", 1024, _positive_int, "listen backlog"),
    Setting("max_body_size", "PYFUNC_MAX_BODY_SIZE", "--max-body-size", 10 << 20, _size,
            "largest request body in bytes (K/M/G suffixes allowed); larger gets 413"),
    Setting("max_body_bytes_in_flight", "PYFUNC_MAX_BODY_BYTES_IN_FLIGHT", "--max-body-bytes-in-flight", "auto",
            _budget, "request bytes (by Content-Length) received or served at once; a request beyond "
            "gets 503 with Retry-After instead of the memory it would take (auto: a third of the cgroup "
            "memory limit above 48 MiB, none without a limit; 0: no limit; one body is always admitted)"),
    Setting("max_header_size", "PYFUNC_MAX_HEADER_SIZE", "--max-header-size", 64 << 10, _size,
            "largest request head (request line + headers); larger gets 431"),
    Setting("channel_timeout", "PYFUNC_CHANNEL_TIMEOUT", "--channel-timeout", 60.0, _non_negative_float,
            "seconds an idle or stalled client connection is kept before it is closed"),
    Setting("receive_timeout", "PYFUNC_RECEIVE_TIMEOUT", "--receive-timeout", 30.0, _non_negative_float,
            "seconds a client may take to send one whole request once it has started; a slower "
            "one (slow-loris) is disconnected (0: no limit)"),
    Setting("timeout", "PYFUNC_TIMEOUT", "--timeout", 0.0, _non_negative_float,
            "seconds one invocation may take before a 504 (0: no limit); unset, Knative's "
            "REVISION_TIMEOUT_SECONDS when the environment has it"),
    Setting("max_concurrency", "PYFUNC_MAX_CONCURRENCY", "--max-concurrency", 0, _non_negative_int,
            "invocations in progress at once before 429 (0: no limit; like containerConcurrency)"),
    Setting("shutdown_timeout", "PYFUNC_SHUTDOWN_TIMEOUT", "--shutdown-timeout", 0.0, _non_negative_float,
            "seconds SIGTERM waits for in-flight requests (0: until they finish; the platform's "
            "SIGKILL bounds it, on Knative the revision's timeoutSeconds)"),
    Setting("dedupe", "PYFUNC_DEDUPE", "--dedupe", "off", _dedupe,
            "redelivery dedup on CloudEvent source + id (docs/delivery.md): off, memory (this "
            "process) or redis://host:port/db (shared by every pod; extra pyfunc-invoker[redis])"),
    Setting("dedupe_ttl", "PYFUNC_DEDUPE_TTL", "--dedupe-ttl", 600.0, _positive_float,
            "seconds a completed event is remembered (the dedup window; make it longer than the "
            "Trigger's whole retry schedule)"),
    Setting("dedupe_size", "PYFUNC_DEDUPE_SIZE", "--dedupe-size", 10000, _positive_int,
            "events remembered by PYFUNC_DEDUPE=memory (least recently used forgotten first)"),
    Setting("dedupe_memory", "PYFUNC_DEDUPE_MEMORY", "--dedupe-memory", 16 << 20, _size,
            "bytes of stored replies (status, headers, body) PYFUNC_DEDUPE=memory keeps at most"),
    Setting("dedupe_max_reply", "PYFUNC_DEDUPE_MAX_REPLY", "--dedupe-max-reply", 64 << 10, _size,
            "largest reply body stored for duplicates; a larger reply is remembered as 202 (the "
            "duplicate gets no reply event, and does not run)"),
    Setting("dedupe_lease", "PYFUNC_DEDUPE_LEASE", "--dedupe-lease", 0.0, _non_negative_float,
            "seconds an event stays claimed by an invocation that never finishes (a killed pod) "
            "(0: PYFUNC_TIMEOUT + 30, or 600 without a timeout)"),
    Setting("dedupe_namespace", "PYFUNC_DEDUPE_NAMESPACE", "--dedupe-namespace", "", str,
            "prefix of the dedup keys, so functions sharing a Redis do not dedup each other "
            "(empty: K_SERVICE, else the handler's name)"),
    Setting("metrics", "PYFUNC_METRICS", "--metrics", False, _boolean,
            "serve GET /metrics in the Prometheus text format (extra pyfunc-invoker[metrics]; "
            "off by default: importing prometheus_client lengthens every cold start, docs/delivery.md)"),
    # --- authenticated delivery (_oidc.py, docs/security.md "Authenticated delivery")
    Setting("oidc_audience", "PYFUNC_OIDC_AUDIENCE", "--oidc-audience", "", str,
            "verify each request's bearer token (Knative Eventing's OIDC) and require this `aud` "
            "(empty: no verification; extra pyfunc-invoker[oidc]); probes and /metrics need none"),
    Setting("oidc_issuer", "PYFUNC_OIDC_ISSUER", "--oidc-issuer", "", str,
            "the `iss` tokens must have; its /.well-known/openid-configuration gives the keys "
            "(empty: the cluster's service-account issuer, discovered through the pod's API access)"),
    Setting("oidc_jwks_url", "PYFUNC_OIDC_JWKS_URL", "--oidc-jwks-url", "", _jwks_url,
            "fetch the signing keys (JWKS) here instead of from the issuer's discovery document "
            "(https://; http:// only on loopback)"),
    Setting("oidc_allowed_subjects", "PYFUNC_OIDC_ALLOWED_SUBJECTS", "--oidc-allowed-subjects", "", str,
            "comma-separated globs of the token `sub`s allowed to deliver (like an EventPolicy's "
            "`from`); a valid token from any other sender gets 403 (empty: every sender)"),
    Setting("oidc_refetch_interval", "PYFUNC_OIDC_REFETCH_INTERVAL", "--oidc-refetch-interval", 30.0,
            _non_negative_float,
            "least seconds between two fetches of the signing keys when a token names an unknown "
            "key (a rotation), so bogus tokens cannot make pyfunc hammer the issuer"),
    Setting("reply_mode", "PYFUNC_REPLY_MODE", "--reply-mode", "auto",
            _choice("auto", "binary", "structured", "batch"),
            "content mode of reply events: auto (same as the request), binary, structured, batch"),
    Setting("log_format", "PYFUNC_LOG_FORMAT", "--log-format", "text", _choice("text", "json"),
            "log line format"),
    Setting("log_level", "PYFUNC_LOG_LEVEL", "--log-level", "INFO",
            lambda t: _choice("debug", "info", "warning", "error", "critical")(t).upper(),
            "lowest level logged (the handler's logging.info is shown by default)"),
    Setting("access_log", "PYFUNC_ACCESS_LOG", "--access-log", True, _boolean,
            "one log line per request"),
    Setting("serve_load_errors", "PYFUNC_SERVE_LOAD_ERRORS", "--serve-load-errors", False, _boolean,
            "answer every request with a 500 naming a handler load error instead of exiting "
            "(what `pyfunc run --reload` runs its server with)"),
    Setting("debug", "PYFUNC_DEBUG", "--debug", False, _boolean,
            "put the exception class and message of a failed invocation in its 500 body (local use "
            "only: off, a 500 names no exception and the details are only in the log)"),
)
# Set by Knative on queue-proxy (and by a manifest on the function, if it wants): the revision's
# timeoutSeconds. PYFUNC_TIMEOUT, when unset, follows it.
REVISION_TIMEOUT = "REVISION_TIMEOUT_SECONDS"


# Each setting's default, written once (in SETTINGS): Config's fields take theirs from here.
_DEFAULT: dict[str, Any] = {setting.name: setting.default for setting in SETTINGS}


def _setting(name: str) -> Setting:
    return next(setting for setting in SETTINGS if setting.name == name)


# repr, == and hash as the dataclass would generate them, written once below: generated, they
# are compiled from source at every start (~1 ms of a cold start for 31 fields).
@dataclass(frozen=True, repr=False, eq=False)
class Config:
    """Everything the server needs to know, validated."""

    directory: str = "."
    handler: str = _DEFAULT["handler"]
    port: int = _DEFAULT["port"]
    host: str = _DEFAULT["host"]
    threads: int = _DEFAULT["threads"]
    workers: int = _DEFAULT["workers"]  # 0: auto
    max_threads: int = _DEFAULT["max_threads"]
    thread_idle_timeout: float = _DEFAULT["thread_idle_timeout"]
    connection_limit: int = _DEFAULT["connection_limit"]
    backlog: int = _DEFAULT["backlog"]
    max_body_size: int = _DEFAULT["max_body_size"]
    max_body_bytes_in_flight: Any = _DEFAULT["max_body_bytes_in_flight"]  # "auto" or bytes (0: no budget)
    max_header_size: int = _DEFAULT["max_header_size"]
    channel_timeout: float = _DEFAULT["channel_timeout"]
    receive_timeout: float = _DEFAULT["receive_timeout"]
    timeout: float = _DEFAULT["timeout"]
    max_concurrency: int = _DEFAULT["max_concurrency"]
    shutdown_timeout: float = _DEFAULT["shutdown_timeout"]
    dedupe: str = _DEFAULT["dedupe"]
    dedupe_ttl: float = _DEFAULT["dedupe_ttl"]
    dedupe_size: int = _DEFAULT["dedupe_size"]
    dedupe_memory: int = _DEFAULT["dedupe_memory"]
    dedupe_max_reply: int = _DEFAULT["dedupe_max_reply"]
    dedupe_lease: float = _DEFAULT["dedupe_lease"]
    dedupe_namespace: str = _DEFAULT["dedupe_namespace"]
    metrics: bool = _DEFAULT["metrics"]
    oidc_audience: str = _DEFAULT["oidc_audience"]
    oidc_issuer: str = _DEFAULT["oidc_issuer"]
    oidc_jwks_url: str = _DEFAULT["oidc_jwks_url"]
    oidc_allowed_subjects: str = _DEFAULT["oidc_allowed_subjects"]
    oidc_refetch_interval: float = _DEFAULT["oidc_refetch_interval"]
    reply_mode: str = _DEFAULT["reply_mode"]
    log_format: str = _DEFAULT["log_format"]
    log_level: str = _DEFAULT["log_level"]
    access_log: bool = _DEFAULT["access_log"]
    # When set, a handler that fails to load is served as a 500 naming the error instead of
    # ending the process (used by `pyfunc run --reload`).
    serve_load_errors: bool = _DEFAULT["serve_load_errors"]
    # When set, 500 bodies name the exception (class and message); off, only the log does.
    debug: bool = _DEFAULT["debug"]

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, field.name) for field in fields(self))

    def __repr__(self) -> str:
        pairs = (f"{field.name}={getattr(self, field.name)!r}" for field in fields(self))
        return f"{self.__class__.__qualname__}({', '.join(pairs)})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    @classmethod
    def load(
        cls,
        environ: Optional[Mapping[str, str]] = None,
        args: Optional[argparse.Namespace] = None,
        **overrides: Any,
    ) -> Config:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = environ.get(setting.env)
            if raw is not None and raw.strip() != "":
                values[setting.name] = _parse(setting, raw, setting.env)
            flag_value = getattr(args, setting.name, None) if args is not None else None
            if flag_value is not None:
                values[setting.name] = (
                    flag_value if not isinstance(flag_value, str) else _parse(setting, flag_value, setting.flag)
                )
        if "timeout" not in values and (revision_timeout := environ.get(REVISION_TIMEOUT, "").strip()):
            # Knative's revision timeout: queue-proxy answers 504 then, so pyfunc stops the
            # invocation then too and logs the 504, instead of running on and logging a 200.
            values["timeout"] = _parse(_setting("timeout"), revision_timeout, REVISION_TIMEOUT)
        if args is not None and getattr(args, "directory", None):
            values["directory"] = args.directory
        values.update(overrides)
        if "threads" not in values:
            # Unset: from the CPUs the pod may use (its cgroup's quota), not the node's cores.
            from ._cgroup import default_threads

            values["threads"] = default_threads()
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def _parse(setting: Setting, raw: str, source: str) -> Any:
    try:
        return setting.parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{source}={raw!r} is invalid: {exc}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per setting; values stay strings so ``Config.load`` parses them."""
    import argparse  # only with flags: `python -m pyfunc DIR` alone parses none (pyfunc.cli)

    for setting in SETTINGS:
        if setting.parse is _boolean:
            parser.add_argument(setting.flag, dest=setting.name, action=argparse.BooleanOptionalAction,
                                default=None, help=f"{setting.help} [env {setting.env}]")
            continue
        parser.add_argument(
            setting.flag, dest=setting.name, default=None, metavar=setting.name.upper(),
            help=f"{setting.help} [env {setting.env}, default {setting.default}]",
        )


def settings_markdown() -> str:
    """The settings as one Markdown table (env var, flag, default, meaning), for docs/serving.md and the README.

    Generated from ``SETTINGS`` so the documentation cannot drift from the code; a test checks
    that the docs contain exactly this table.
    """
    rows = ["| Environment variable | Flag | Default | What it does |", "|---|---|---|---|"]
    for setting in SETTINGS:
        flag = setting.flag
        if setting.parse is _boolean:
            flag = f"{flag} / --no-{flag[2:]}"
        text = setting.help.replace("|", "\\|")
        rows.append(f"| `{setting.env}` | `{flag}` | `{_default_text(setting)}` | {text} |")
    return "\n".join(rows) + "\n"


def _default_text(setting: Setting) -> str:
    value = setting.default
    if value == "":
        return "(empty)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if setting.parse is _size:
        for suffix, factor in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
            if value % factor == 0:
                return f"{value // factor}{suffix}"
    if setting.parse is _workers and value == 0:
        return "auto"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
