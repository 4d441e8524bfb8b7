"""The profile API's OpenAPI 3.1 description, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

_CUSTOMER = {"name": "customer", "in": "path", "required": True, "schema": {"type": "string"}}
_ERROR = {
    "description": "error",
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"error": {"type": "string"}}}
        }
    },
}
_OBJECT = {"content": {"application/json": {"schema": {"type": "object"}}}}


def _get(summary: str, parameters: list[dict[str, Any]], **answers: str) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "found"} | _OBJECT}
    responses |= {"401": _ERROR, "404": _ERROR}
    responses |= {code.removeprefix("r"): {"description": text} for code, text in answers.items()}
    return {"get": {"summary": summary, "parameters": parameters, "responses": responses}}


def _query(name: str, description: str, required: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": {"type": "string"},
    }


def openapi() -> dict[str, Any]:
    merged = {"r301": "merged into another customer: Location names it", "r410": "erased"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "omnistitch profile API",
            "version": "1",
            "description": "Customers as the output topics describe them, by id or by any "
            "identifier (normalised as the stitcher does). Bearer tokens; see README.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/customers/{customer}": _get("A customer's profile", [_CUSTOMER], **merged),
            "/v1/lookup": _get(
                "The customer holding an identifier",
                [
                    _query("namespace", "email, phone, loyalty_id, customer_id, device_id, …"),
                    _query("value", "the value as any channel writes it"),
                ],
                r400="the identifier is not usable",
            ),
            "/v1/clienteling": _get(
                "What a sales assistant may see of the customer holding an identifier "
                "(a loyalty card, a phone): first name, open support case; with consent for "
                "personalisation also recent interest, abandoned cart, preferred store",
                [
                    _query("namespace", "loyalty_id, phone, email, …"),
                    _query("value", "the value as the till or the assistant types it"),
                ],
            ),
            "/v1/customers/{customer}/journey": _get(
                "The journey, newest first, paged",
                [
                    _CUSTOMER,
                    _query("limit", "events per page (1-500, default 50)", False),
                    _query("before", "the cursor `next` of the previous page", False),
                ],
                r410="erased",
            ),
            "/v1/customers/{customer}/graph": _get(
                "The identity graph: identifiers and customers, evidence as edges",
                [_CUSTOMER],
                r410="erased",
            ),
            "/v1/customers/{customer}/changes": _get(
                "Identity changes naming the customer", [_CUSTOMER], r410="erased"
            ),
            "/v1/customers/{customer}/possible-matches": _get(
                "Customers found similar, not merged (for review)", [_CUSTOMER], r410="erased"
            ),
            "/v1/explain": _get(
                "Why two identifiers are one customer (answered by the running worker)",
                [
                    _query("left", "NAMESPACE:VALUE or a customer id"),
                    _query("right", "NAMESPACE:VALUE or a customer id"),
                ],
                r202="sent; no answer within the timeout",
            ),
            "/v1/kpis": _get(
                "Omnichannel KPIs from the journeys (docs/kpis.md)",
                [_query("lookback_days", "attribution and conversion lookback", False)],
            ),
            "/v1/operations": {
                "post": {
                    "summary": "An identity operation (link, accept, reject, unlink, split, "
                    "junk, remove, erase), applied by the running worker once",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["kind", "left"],
                                    "properties": {
                                        "kind": {"type": "string"},
                                        "left": {"type": "string"},
                                        "right": {"type": "string"},
                                        "reason": {"type": "string"},
                                        "operation_id": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {"description": "the worker's result"} | _OBJECT,
                        "202": {"description": "sent; no answer within the timeout"},
                        "400": _ERROR,
                        "401": _ERROR,
                        "403": _ERROR,
                    },
                }
            },
            "/health/live": {"get": {"summary": "Liveness", "security": [], "responses": {}}},
            "/health/ready": {
                "get": {
                    "summary": "Ready: caught up with the topics",
                    "security": [],
                    "responses": {},
                }
            },
            "/metrics": {"get": {"summary": "Prometheus metrics", "security": [], "responses": {}}},
        },
    }
