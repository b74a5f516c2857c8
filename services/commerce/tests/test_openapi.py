"""The served OpenAPI document says what each commerce route answers, refusals included."""

from __future__ import annotations

from typing import Any

import httpx

# Routes that find a thing by an id in their path, and answer 404 when it is not the tenant's.
_NO_LOOKUP = ("/rooms/{room_id}/lineup", "/cart/items/{sku_id}")


def test_every_route_declares_its_refusals_with_the_error_body(commerce: httpx.Client) -> None:
    document: dict[str, Any] = commerce.get("/openapi.json").json()
    error_body = document["components"]["schemas"]["ErrorBody"]
    assert set(error_body["required"]) == {"error", "message"}
    operations = [
        (path, method, operation)
        for path, methods in document["paths"].items()
        if path.startswith("/v1/")
        for method, operation in methods.items()
    ]
    assert len(operations) > 30
    for path, method, operation in operations:
        where = f"{method.upper()} {path}"
        responses = operation["responses"]
        for status in ("400", "401", "403"):
            assert status in responses, where
        if "{" in path and not path.endswith(_NO_LOOKUP) and path != "/v1/rooms/{room_id}/pin":
            assert "404" in responses, where
        if operation.get("parameters") or operation.get("requestBody"):
            assert "422" in responses, where
        for status, answer in responses.items():
            if status.startswith("4"):
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (where, status)


def test_server_side_rules_are_in_the_schema(commerce: httpx.Client) -> None:
    schemas = commerce.get("/openapi.json").json()["components"]["schemas"]
    assert "after starts_at" in schemas["FlashSaleIn"]["properties"]["ends_at"]["description"]
    assert "after opens_at" in schemas["LotteryIn"]["properties"]["closes_at"]["description"]
    assert "at least shares" in schemas["RedPacketIn"]["properties"]["total_minor"]["description"]
    stock = schemas["SkuIn"]["properties"]["stock"]
    assert (stock["minimum"], stock["maximum"]) == (0, 2**31 - 1)
    price = schemas["SkuIn"]["properties"]["price_minor"]
    assert price["maximum"] == 2**53 - 1
    room = schemas["RedPacketIn"]["properties"]["room_id"]
    assert room["pattern"] == "^[A-Za-z0-9._:-]{1,200}$"
