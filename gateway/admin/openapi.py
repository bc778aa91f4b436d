"""The admin API's OpenAPI 3.1 document, generated from the same Structs that validate the bodies."""

from __future__ import annotations

from typing import Any

import msgspec

from store.records import AnalyticsRecord
from sync.entities import KINDS

_REF = "#/components/schemas/{name}"


def document() -> dict[str, Any]:
    structs = [kind.struct for kind in KINDS.values()] + [AnalyticsRecord]
    _, components = msgspec.json.schema_components(structs, ref_template=_REF)
    paths: dict[str, Any] = {}
    for kind in KINDS.values():
        ref = {"$ref": _REF.format(name=kind.struct.__name__)}
        one = {"content": {"application/json": {"schema": ref}}}
        many = {"content": {"application/json": {"schema": _data_of(ref)}}}
        id_param = [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}]
        paths[f"/api/v1/{kind.name}"] = {
            "get": {"summary": f"List {kind.name}", "responses": {"200": many}},
            "post": {"summary": f"Create one of {kind.name}", "requestBody": one, "responses": {"201": one}},
        }
        paths[f"/api/v1/{kind.name}/{{id}}"] = {
            "parameters": id_param,
            "get": {"responses": {"200": one, "404": {"description": "unknown id"}}},
            "patch": {"requestBody": one, "responses": {"200": one, "404": {"description": "unknown id"}}},
            "delete": {
                "responses": {"204": {"description": "deleted"}, "404": {"description": "unknown id"}}
            },
        }
    record = {"$ref": _REF.format(name="AnalyticsRecord")}
    paths["/api/v1/analytics/interactions"] = {
        "get": {
            "parameters": [_query(n) for n in ("app", "user", "llm", "since", "until")]
            + [_query("limit", "integer")],
            "responses": {"200": {"content": {"application/json": {"schema": _data_of(record)}}}},
        }
    }
    paths["/api/v1/analytics/usage"] = {
        "get": {
            "parameters": [
                {
                    "name": "group_by",
                    "in": "query",
                    "required": True,
                    "schema": {"enum": ["app", "user", "llm", "model", "day"]},
                },
                _query("since"),
                _query("until"),
            ],
            "responses": {"200": {"content": {"application/json": {"schema": _data_of({"type": "object"})}}}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tollgate admin API", "version": "1"},
        "security": [{"bearer": []}],
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": paths,
    }


def _data_of(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"data": {"type": "array", "items": items}}, "required": ["data"]}


def _query(name: str, type: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": type}}
