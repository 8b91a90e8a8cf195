"""Lifecycle hooks: module-level functions next to the handler, found by name.

* ``start(cfg)`` runs once before the port opens (``cfg`` is the environment as a dict):
  open connections, load models, read settings. If it raises, the function does not start.
* ``stop()`` runs once after the last request, on SIGTERM: flush and close.
* ``ready()`` and ``alive()`` answer Knative's readiness and liveness probes
  (``/health/readiness``, ``/health/liveness``): return True/False or ``(ok, message)``.
"""

import logging

logger = logging.getLogger(__name__)

state = {"greeting": None, "served": 0, "ready": False}


def start(cfg):
    state["greeting"] = cfg.get("GREETING", "Hello")
    state["ready"] = True
    logger.info("started with greeting %r", state["greeting"])


def stop():
    logger.info("stopping after %d requests", state["served"])
    state["ready"] = False


def ready():
    return state["ready"], f"served {state['served']} requests"


def alive():
    return True


def handler(body: dict):
    state["served"] += 1
    return {"message": f"{state['greeting']}, {body.get('name', 'world')}!", "served": state["served"]}
