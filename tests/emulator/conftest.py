"""Fixtures for the emulator tests: one emulator per session, reset before each test, and the contract."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from helpers import OPENAPI
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from emulator.counters import route_template
from emulator.profile import Distribution, Profile
from emulator.server import EmulatorHandle, running_emulator

FAST = Profile(
    seed=7,
    run_queued_s=0.02,
    run_duration=Distribution(kind="uniform", min=0.1, max=0.3),
    response_queued_s=0.02,
    response_duration=Distribution(kind="uniform", min=0.1, max=0.3),
    file_index_duration=Distribution(kind="uniform", min=0.05, max=0.2),
    poll_after_ms=50,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`client.beta.*` warns "deprecated" from typing_extensions with the caller's module, which the
    project's openai-module filter does not catch; the Assistants API is what these tests exercise."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning"))


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorHandle]:
    """One emulator for the whole session, on a free port."""
    with running_emulator(FAST) as handle:
        yield handle


@pytest.fixture
def emulator(emulator_server: EmulatorHandle) -> EmulatorHandle:
    """The emulator with no faults (webhook faults included), zeroed counters and the fast profile (which
    has no webhook URL)."""
    emulator_server.clear_faults()
    emulator_server.clear_webhook_faults()
    emulator_server.reset_counters()
    emulator_server.set_profile(FAST)
    return emulator_server


@pytest.fixture
def client(emulator: EmulatorHandle) -> Iterator[openai.OpenAI]:
    """The real openai client pointed at the emulator."""
    with openai.OpenAI(base_url=emulator.base_url, api_key=emulator.api_key) as sdk:
        yield sdk


@dataclass
class Recorded:
    """One exchange seen by the client: method, route template (without /v1), status and JSON body."""

    method: str
    template: str
    status: int
    body: Any


@dataclass
class Recorder:
    """Collects every JSON response the client receives, through an httpx2 event hook."""

    seen: list[Recorded] = field(default_factory=list)

    def hook(self, response: httpx2.Response) -> None:
        response.read()
        if not response.headers.get("content-type", "").startswith("application/json"):
            return
        path = route_template(response.request.url.path).removeprefix("/v1")
        self.seen.append(Recorded(response.request.method, path, response.status_code, response.json()))


@pytest.fixture
def recorder() -> Recorder:
    """A fresh recorder."""
    return Recorder()


@pytest.fixture
def recorded_client(emulator: EmulatorHandle, recorder: Recorder) -> Iterator[openai.OpenAI]:
    """The openai client, with every response body recorded for contract checks."""
    http = openai.DefaultHttpxClient(event_hooks={"response": [recorder.hook]})
    with openai.OpenAI(base_url=emulator.base_url, api_key=emulator.api_key, http_client=http) as sdk:
        yield sdk


def _nullable_to_null_branch(node: Any) -> Any:
    """OpenAPI's `nullable: true` becomes a JSON Schema null branch, everywhere in the document."""
    if isinstance(node, list):
        return [_nullable_to_null_branch(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _nullable_to_null_branch(value) for key, value in node.items()}
    if converted.pop("nullable", False) is True:
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


class Contract:
    """The response schemas openapi.json names for each path, method and status, with refs resolved."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry: Registry = Registry().with_resource("urn:openapi", resource)

    def schema_ref(self, method: str, template: str, status: int) -> str:
        """The `$ref` of the JSON response schema for that operation and status."""
        operation = self.document["paths"][template][method.lower()]
        responses = operation["responses"]
        response = responses.get(str(status)) or responses.get("default")
        content = (response or {}).get("content", {})
        if "application/json" not in content:
            # POST /responses documents only its stream; its JSON body is the Response object.
            if template == "/responses" and method == "POST":
                return "#/components/schemas/Response"
            raise LookupError(f"no JSON schema for {method} {template} {status}")
        ref: str = content["application/json"]["schema"]["$ref"]
        return ref

    def validator(self, ref: str) -> Draft202012Validator:
        """A validator for the component at `ref`."""
        return Draft202012Validator({"$ref": f"urn:openapi{ref}"}, registry=self.registry)

    def errors(self, method: str, template: str, status: int, body: Any) -> list[str]:
        """Every schema violation of `body`; errors are checked against {"error": Error}."""
        if status >= 400:
            validator = self.validator("#/components/schemas/Error")
            return [e.message for e in validator.iter_errors(body.get("error"))]
        ref = self.schema_ref(method, template, status)
        return [f"{e.json_path}: {e.message}"[:400] for e in self.validator(ref).iter_errors(body)]


@pytest.fixture(scope="session")
def contract() -> Contract:
    """The API contract from openapi.json, nullable fields made JSON-Schema-valid."""
    return Contract(_nullable_to_null_branch(json.loads(OPENAPI.read_text())))


@pytest.fixture
def check_contract(contract: Contract, recorder: Recorder) -> Callable[[], list[tuple[str, str, int]]]:
    """Validate everything recorded so far; returns the (method, template, status) covered."""

    def check() -> list[tuple[str, str, int]]:
        failures = []
        for seen in recorder.seen:
            for error in contract.errors(seen.method, seen.template, seen.status, seen.body):
                failures.append(f"{seen.method} {seen.template} {seen.status}: {error}")
        assert not failures, "\n".join(failures[:30])
        return sorted({(s.method, s.template, s.status) for s in recorder.seen})

    return check
