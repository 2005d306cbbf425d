"""The OpenAPI document: every route summarized, typed, secured, with its errors declared."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api

ERROR_REF = "#/components/schemas/ErrorResponse"


def _ref(response: dict[str, Any]) -> str | None:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    ref: str | None = schema.get("$ref")
    return ref


async def test_every_api_operation_is_documented(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    scheme = spec["components"]["securitySchemes"]["ApiKey"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-API-Key")

    operations = [
        (path, method, op)
        for path, item in spec["paths"].items()
        if path.startswith("/api/v1/")
        for method, op in item.items()
    ]
    assert len(operations) >= 7
    for path, method, op in operations:
        where = f"{method.upper()} {path}"
        assert op.get("summary"), where
        assert {"ApiKey": []} in op.get("security", []), where
        responses = op["responses"]
        success = next(code for code in responses if code.startswith("2"))
        assert _ref(responses[success]), f"{where}: no response model"
        errors = {"401"} | ({"403"} if method != "get" else set())
        if op.get("parameters") or op.get("requestBody"):
            errors.add("422")
        for code in errors:
            assert code in responses, f"{where}: {code} not declared"
        for code, response in responses.items():
            if code[0] in "45":
                assert _ref(response) == ERROR_REF, f"{where}: {code} without the error model"
                assert response["content"]["application/json"].get("examples"), where

    schemas = spec["components"]["schemas"]
    for name in ("OrderPage", "OrderDetail", "PositionList", "SignalOut", "TradingStateOut"):
        assert schemas[name].get("examples"), f"{name} has no example"
    assert spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]["text/plain"]
    assert "security" not in spec["paths"]["/metrics"]["get"]
