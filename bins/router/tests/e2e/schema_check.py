"""Validates every JSON response against Qdrant's OpenAPI document.

The response schema is taken from the spec's `paths` (method, path template, status code), so
each endpoint is checked against exactly what Qdrant documents for it; `$ref`s resolve into
`components/schemas`. OpenAPI 3.0's `nullable: true` is rewritten into JSON Schema's
`"type": [T, "null"]`, which is what it means.

Validation runs first through `jsonschema_rs` (compiled, in Rust: the suite validates tens of
thousands of responses, and Python's `jsonschema` spent most of the suite's time on them), with
formats not asserted, as Python's `Draft7Validator` does by default. Python's `jsonschema`
stays the authority: whenever the compiled validator finds a fault, the response is checked
again by it, and only what it reports fails the test (with its message and path).
"""

from __future__ import annotations

import copy
import json
import pathlib
import re
from collections import Counter
from typing import Any

import jsonschema
import jsonschema_rs


def _nullable_to_json_schema(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _nullable_to_json_schema(v) for k, v in node.items()}
        if out.pop("nullable", False):
            if "type" in out:
                t = out["type"]
                out["type"] = (t if isinstance(t, list) else [t]) + ["null"]
                if "enum" in out:
                    out["enum"] = list(out["enum"]) + [None]
            elif "$ref" in out or "allOf" in out or "anyOf" in out or "oneOf" in out:
                out = {"anyOf": [out, {"type": "null"}]}
        return out
    if isinstance(node, list):
        return [_nullable_to_json_schema(v) for v in node]
    return node


class SchemaChecker:
    def __init__(self, spec_path: pathlib.Path):
        spec = json.loads(pathlib.Path(spec_path).read_text())
        self.components = _nullable_to_json_schema(spec["components"])
        self.routes: list[tuple[re.Pattern, str, dict]] = []
        for template, methods in spec["paths"].items():
            pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$")
            literal = len(re.sub(r"\{[^}]+\}", "", template))
            for method, op in methods.items():
                if isinstance(op, dict) and "responses" in op:
                    self.routes.append((pattern, method.upper(), op, literal, template))
        # The most literal template wins (`/points/delete` over `/points/{id}`).
        self.routes.sort(key=lambda r: -r[3])
        self.failures: list[str] = []
        self.checked: Counter = Counter()
        self.failed_schemas: Counter = Counter()
        self.unknown: Counter = Counter()
        # One compiled pair of validators per response schema (keyed by the schema's id:
        # the spec's operation objects live as long as the checker).
        self._validators: dict[int, tuple[jsonschema.Draft7Validator,
                                          jsonschema_rs.Draft7Validator]] = {}

    def operation(self, method: str, path: str):
        for pattern, m, op, _, template in self.routes:
            if m == method and pattern.match(path):
                return op, template
        return None, None

    def schema_for(self, op: dict, status: int) -> dict | None:
        responses = op["responses"]
        for key in (str(status), f"{str(status)[0]}XX", "default"):
            if key in responses:
                content = responses[key].get("content", {})
                if "application/json" in content:
                    return content["application/json"].get("schema")
                return None
        return None

    def check(self, method: str, path: str, status: int, content_type: str, body: bytes) -> None:
        op, template = self.operation(method, path)
        if op is None:
            self.unknown[f"{method} {path}"] += 1
            return
        name = f"{method} {template} -> {status}"
        if "application/json" not in content_type:
            schema = self.schema_for(op, status)
            if schema is not None:
                self._fail(name, f"content-type {content_type!r}, JSON expected")
            return
        schema = self.schema_for(op, status)
        if schema is None:
            return
        self.checked[name] += 1
        try:
            value = json.loads(body)
        except ValueError as e:
            self._fail(name, f"not JSON: {e}")
            return
        python, compiled = self._validators_for(schema)
        if compiled.is_valid(value):
            return
        errors = sorted(python.iter_errors(value), key=str)
        if errors:
            e = errors[0]
            where = "/".join(str(p) for p in e.absolute_path)
            self._fail(name, f"at /{where}: {e.message[:300]}")

    def _validators_for(self, schema: dict):
        key = id(schema)
        if key not in self._validators:
            full = copy.copy(_nullable_to_json_schema(schema))
            full["components"] = self.components
            self._validators[key] = (
                jsonschema.Draft7Validator(full),
                jsonschema_rs.Draft7Validator(full, validate_formats=False),
            )
        return self._validators[key]

    def _fail(self, name: str, message: str) -> None:
        self.failed_schemas[name] += 1
        self.failures.append(f"{name}: {message}")

    def middleware(self, request, call_next):
        response = call_next(request)
        response.read()
        self.check(request.method, request.url.path, response.status_code,
                   response.headers.get("content-type", ""), response.content)
        return response

    def report(self) -> str:
        lines = [f"OpenAPI check: {sum(self.checked.values())} JSON responses over "
                 f"{len(self.checked)} operations and statuses"]
        for name, n in sorted(self.checked.items()):
            bad = self.failed_schemas.get(name, 0)
            lines.append(f"  {'FAIL' if bad else 'ok  '} {name}: {n} checked, {bad} failed")
        for name, n in sorted(self.failed_schemas.items()):
            if name not in self.checked:
                lines.append(f"  FAIL {name}: {n} failed")
        for name, n in sorted(self.unknown.items()):
            lines.append(f"  not in spec: {name} ({n})")
        return "\n".join(lines)
