"""OpenAPI additions drf-spectacular cannot infer: the Server-Sent Events stream (a plain async view)."""

from __future__ import annotations

from typing import Any

LIVE_PATH = "/api/v1/sessions/{id}/live"


def add_live_stream(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Postprocessing hook: document GET sessions/{id}/live."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    result.setdefault("paths", {})[LIVE_PATH] = {
        "get": {
            "operationId": "sessions_live",
            "summary": "Watch a session live (Server-Sent Events)",
            "description": (
                "A `text/event-stream`: an `event: session` with the session (status, energy_wh, power_w, "
                "duration_s, cost; `transitions` empty) when the stream opens and whenever the session "
                "changes (compute the running duration from `started_at` in between), comment lines as "
                "keep-alive, and a last `event: end` once the session is COMPLETED or FAILED, after which "
                "the server closes the stream. A stream that has run for CPO_DRIVER_LIVE_MAX_S (an hour by "
                "default) ends with `event: timeout`: reconnect to go on. A driver may keep a few streams "
                "open at once "
                "(CPO_DRIVER_LIVE_MAX_PER_DRIVER, 5 by default); beyond that, or when the server watches as "
                "many sessions as it can, the answer is 429 `too_many_streams`."
            ),
            "tags": ["sessions"],
            "parameters": [{"in": "path", "name": "id", "required": True, "schema": {"type": "integer"}}],
            "security": [{"jwtAuth": []}],
            "responses": {
                "200": {
                    "description": "The event stream",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "401": {"description": "Not authenticated", "content": error},
                "404": {"description": "Not one of your sessions", "content": error},
                "429": {"description": "Too many open streams (`too_many_streams`)", "content": error},
                "503": {"description": "Live updates are unavailable right now", "content": error},
            },
        }
    }
    return result
