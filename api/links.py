"""What the OpenAPI document says beyond the routes: links between operations, and the edge's
413 on every operation with a body.

**Links** (OpenAPI 3 ``links``) say how an answer leads to the next call: a submitted signal to
``GET /api/v1/signals/{signal_id}``, a listed order to its detail and its cancel, a dead letter
to its detail, redrive and discard. Clients and tools follow them; schemathesis's stateful
tests use them to chain calls (tests/api/test_schema_conformance.py).

**413**: the body size limit (:mod:`api.edge`) applies to every route that takes a body, so
each such operation declares it.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

from api.schemas import error_example

__all__ = ["LINKS", "install_openapi_extras"]

_V1 = "/api/v1"

#: (path, method, status) → {link name: (target path, target method, parameters)}.
LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, dict[str, str]]]] = {
    ("/signals", "post", "202"): {
        "GetSignal": ("/signals/{signal_id}", "get", {"signal_id": "$response.body#/signal_id"}),
    },
    ("/signals", "post", "200"): {
        "GetSignal": ("/signals/{signal_id}", "get", {"signal_id": "$response.body#/signal_id"}),
    },
    ("/signals", "get", "200"): {
        "GetSignal": (
            "/signals/{signal_id}",
            "get",
            {"signal_id": "$response.body#/items/0/signal_id"},
        ),
    },
    ("/signals/{signal_id}", "get", "200"): {
        "GetOrder": ("/orders/{order_ref}", "get", {"order_ref": "$response.body#/orders/0/id"}),
    },
    ("/orders", "get", "200"): {
        "GetOrder": ("/orders/{order_ref}", "get", {"order_ref": "$response.body#/items/0/id"}),
        "CancelOrder": (
            "/orders/{order_ref}/cancel",
            "post",
            {"order_ref": "$response.body#/items/0/id"},
        ),
    },
    ("/orders/{order_ref}", "get", "200"): {
        "CancelOrder": ("/orders/{order_ref}/cancel", "post", {"order_ref": "$response.body#/id"}),
        "GetSignal": ("/signals/{signal_id}", "get", {"signal_id": "$response.body#/signal_id"}),
    },
    ("/orders/{order_ref}/cancel", "post", "202"): {
        "GetOrder": ("/orders/{order_ref}", "get", {"order_ref": "$response.body#/id"}),
    },
    ("/positions", "get", "200"): {
        "ListSnapshots": (
            "/positions/{symbol}/snapshots",
            "get",
            {"symbol": "$response.body#/items/0/symbol"},
        ),
    },
    ("/dead-letters", "get", "200"): {
        name: (target, method, {"dead_letter_id": "$response.body#/items/0/id"})
        for name, target, method in (
            ("GetDeadLetter", "/dead-letters/{dead_letter_id}", "get"),
            ("RedriveDeadLetter", "/dead-letters/{dead_letter_id}/redrive", "post"),
            ("DiscardDeadLetter", "/dead-letters/{dead_letter_id}/discard", "post"),
        )
    },
    ("/trading-state", "put", "200"): {
        "GetTradingState": ("/trading-state", "get", {}),
    },
}


def _add_links(schema: dict[str, Any]) -> None:
    paths = schema.get("paths", {})
    for (path, method, status), links in LINKS.items():
        response = paths.get(_V1 + path, {}).get(method, {}).get("responses", {}).get(status)
        if response is None:
            continue  # the route changed: the test of the links says so
        out = response.setdefault("links", {})
        for name, (target, target_method, parameters) in links.items():
            operation = paths.get(_V1 + target, {}).get(target_method)
            if operation is None:
                continue
            link: dict[str, Any] = {"operationId": operation["operationId"]}
            if parameters:
                link["parameters"] = parameters
            out[name] = link


def _add_413(schema: dict[str, Any]) -> None:
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if "requestBody" not in operation or "413" in responses or "401" not in responses:
                continue
            refused = copy.deepcopy(responses["401"])
            refused["description"] = (
                "The body is larger than `OM_API_MAX_BODY_BYTES` (default 1 MiB); refused "
                "before it is read"
            )
            example = error_example(
                "payload_too_large",
                "the request body is larger than 1048576 bytes (OM_API_MAX_BODY_BYTES)",
                {"max_bytes": 1048576},
            )
            for media in refused.get("content", {}).values():
                media.pop("example", None)
                media["examples"] = {"payload_too_large": example}
            responses["413"] = refused


def install_openapi_extras(app: FastAPI) -> None:
    """Make ``app.openapi()`` add the links and the 413s (once; the document is cached)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        _add_links(schema)
        _add_413(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
