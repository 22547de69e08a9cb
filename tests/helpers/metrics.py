"""Reading ``/metrics`` in a test: Prometheus text parsed by prometheus-client's parser.

On server backends the text comes from the server's ``/metrics`` route over
HTTP (with the API key, which it requires); embedded, from the same collector
over the test's own store.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

Backend = Any  # the contract conftest's record


def scrape(backend: Backend) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample as ``{name: {sorted labels: value}}``."""
    if backend.api_url is not None:
        response = httpx.get(
            backend.api_url + "/metrics",
            headers={"Authorization": f"Bearer {os.environ['HEADWAY_API_KEY']}"},
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text
    else:
        from prometheus_client import generate_latest

        from headway.server.metrics import metrics_registry

        local = backend.client
        text = generate_latest(metrics_registry(lambda: local)).decode()  # type: ignore[arg-type,return-value]
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def lim(name: str, scope: str = "global") -> tuple[tuple[str, str], ...]:
    return (("limit", name), ("scope", scope))
