"""EmulatorAdmin: the admin API over HTTP, usable from any process (tests, benchmarks)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from emulator.profile import Profile


class EmulatorAdmin:
    """Helpers over `/_emulator/...`; `base_url` may be the server root or its `/v1` URL."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        root = base_url.rstrip("/")
        self.root = root[: -len("/v1")] if root.endswith("/v1") else root
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.root}/_emulator{path}", data=data, method=method)
        request.add_header("content-type", "application/json")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read() or b"null")

    def health(self) -> bool:
        """Whether the emulator answers."""
        return bool(self._call("GET", "/health").get("ok"))

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Switch faults on (see emulator.faults.Faults for the fields); replaces the previous set."""
        result: dict[str, Any] = self._call("POST", "/faults", faults)
        return result

    def clear_faults(self) -> None:
        """Switch every fault off."""
        self._call("DELETE", "/faults")

    def counters(self) -> dict[str, Any]:
        """The request counters (see emulator.counters.Counters.snapshot)."""
        result: dict[str, Any] = self._call("GET", "/counters")
        return result

    def trace(self, routes: list[str]) -> None:
        """Keep the timeline of `routes` ("POST /v1/responses"...) from now on, afresh."""
        self._call("PUT", "/timeline", {"routes": routes})

    def timeline(self) -> dict[str, Any]:
        """The traced routes' arrivals ``[t, route]`` and 429s ``[answered at, route, wait until]``."""
        result: dict[str, Any] = self._call("GET", "/timeline")
        return result

    def reset_counters(self) -> None:
        """Zero the counters."""
        self._call("POST", "/reset")

    def reset_state(self) -> None:
        """Zero the counters and forget every object."""
        self._call("POST", "/reset?state=1")

    def profile(self) -> Profile:
        """The profile in force."""
        return Profile.model_validate(self._call("GET", "/profile"))

    def set_profile(self, profile: Profile) -> Profile:
        """Replace the profile."""
        return Profile.model_validate(self._call("PUT", "/profile", profile.model_dump()))

    def update_profile(self, **fields: Any) -> Profile:
        """Change some profile fields, keeping the rest."""
        return Profile.model_validate(self._call("PATCH", "/profile", fields))

    def age(self, object_id: str, seconds: float) -> None:
        """Make a thread, vector store, file, conversation or assistant look `seconds` older."""
        self._call("POST", "/age", {"id": object_id, "seconds": seconds})

    def create_files(self, count: int, prefix: str = "doc", size: int = 64) -> list[str]:
        """Create `count` small `assistants` files at once (no upload requests); their ids, in order."""
        result: list[str] = self._call("POST", "/files", {"count": count, "prefix": prefix, "bytes": size})[
            "data"
        ]
        return result

    def run_detail(self, run_id: str) -> dict[str, Any]:
        """Precise timestamps (e.g. `completed_at_precise`) and metadata of a run."""
        result: dict[str, Any] = self._call("GET", f"/runs/{run_id}")
        return result

    def runs(self, *, completed: bool = False, since: float | None = None) -> list[dict[str, Any]]:
        """Precise details of all runs (only completed ones, or those ended since `since`, if asked)."""
        query = "&".join(
            q
            for q in ("completed=1" if completed else "", f"since={since}" if since is not None else "")
            if q
        )
        result: list[dict[str, Any]] = self._call("GET", f"/runs?{query}")["data"]
        return result

    def response_detail(self, response_id: str) -> dict[str, Any]:
        """Precise timestamps and metadata of a response."""
        result: dict[str, Any] = self._call("GET", f"/responses/{response_id}")
        return result

    def responses(self, *, completed: bool = False) -> list[dict[str, Any]]:
        """Precise details of all responses."""
        result: list[dict[str, Any]] = self._call("GET", f"/responses?{'completed=1' if completed else ''}")[
            "data"
        ]
        return result

    def webhooks(self) -> dict[str, Any]:
        """The webhook settings in force: {"urls", "secret", "retry", "faults"}."""
        result: dict[str, Any] = self._call("GET", "/webhooks")
        return result

    def set_webhooks(
        self,
        *,
        urls: list[str] | None = None,
        secret: str | None = None,
        retry: dict[str, Any] | None = None,
        faults: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Replace the settings given (see emulator.profile.WebhookRetry and emulator.faults.WebhookFaults for
        the fields of `retry` and `faults`; fields left out take their defaults); keep the others."""
        given = {"urls": urls, "secret": secret, "retry": retry, "faults": faults}
        result: dict[str, Any] = self._call(
            "PUT", "/webhooks", {k: v for k, v in given.items() if v is not None}
        )
        return result

    def set_webhook_faults(self, **faults: Any) -> dict[str, Any]:
        """Switch webhook faults on (see emulator.faults.WebhookFaults); replaces the previous set."""
        return self.set_webhooks(faults=faults)

    def clear_webhook_faults(self) -> None:
        """Switch every webhook fault off."""
        self.set_webhooks(faults={})

    def webhook_counters(self) -> dict[str, Any]:
        """The webhook counters (see emulator.counters.WEBHOOK_COUNTERS), with "events" and "pending"."""
        result: dict[str, Any] = self.counters()["webhooks"]
        return result

    def emit_webhooks(
        self, count: int = 1, event_type: str = "response.completed", object_id: str | None = None
    ) -> list[str]:
        """Send `count` events now (naming `object_id`, else made-up response ids); their event ids."""
        body: dict[str, Any] = {"count": count, "type": event_type}
        if object_id is not None:
            body["id"] = object_id
        result: list[str] = self._call("POST", "/webhooks/emit", body)["data"]
        return result
