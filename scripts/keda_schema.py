"""Regenerate the vendored JSON Schemas of KEDA's ScaledObject and TriggerAuthentication.

    python -m venv /tmp/keda && /tmp/keda/bin/pip install cloudcoil-models-keda==2.16.1.0
    /tmp/keda/bin/python scripts/keda_schema.py

The schemas come from the pydantic models of ``cloudcoil-models-keda`` (PyPI, Apache-2.0), which are
generated from KEDA's CustomResourceDefinitions. Two changes make them as strict as the API server is with
a structural CRD: every object refuses properties it does not declare, and a manifest must say its
``apiVersion``, ``kind`` and ``metadata``. ``make deploy-check`` validates ``deploy/kubernetes/keda/*.yaml``
against them with check-jsonschema. The package is not a dependency of the project: install it only to
regenerate (it pins the KEDA version in ``deploy/kubernetes/keda/schema/SOURCE.md``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes" / "keda" / "schema"
"""Where the schemas are vendored, beside their SOURCE.md and LICENSE."""


def tighten(node: Any) -> Any:
    """Drop pydantic's titles and null defaults; make every object with properties refuse unknown ones."""
    if isinstance(node, list):
        return [tighten(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: tighten(v) for k, v in node.items() if k != "title" and not (k == "default" and v is None)}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def manifest_schema(model: Any, kind: str) -> dict[str, Any]:
    """The JSON Schema a manifest of ``model`` must meet."""
    schema = tighten(model.model_json_schema(by_alias=True, mode="validation"))
    props = schema["properties"]
    props["apiVersion"] = {"const": "keda.sh/v1alpha1"}
    props["kind"] = {"const": kind}
    props["metadata"] = {"$ref": "#/$defs/ObjectMeta"}
    schema["$defs"]["ObjectMeta"]["required"] = ["name"]
    schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def main() -> int:
    """Write the schemas; 0 on success."""
    from cloudcoil.models.keda.v1alpha1 import (  # type: ignore[import-not-found]
        ScaledObject,
        TriggerAuthentication,
    )

    for model, kind in ((ScaledObject, "ScaledObject"), (TriggerAuthentication, "TriggerAuthentication")):
        path = SCHEMA_DIR / f"{kind.lower()}.json"
        path.write_text(json.dumps(manifest_schema(model, kind), indent=1, sort_keys=True) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
