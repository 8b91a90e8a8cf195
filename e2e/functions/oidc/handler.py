"""The function of e2e/test_cluster_oidc.py: any event that passes pyfunc's token check is logged and acknowledged."""

import logging


def handler(event):
    logging.info("delivered: %s from %s", event["id"], event["source"])
    return None
