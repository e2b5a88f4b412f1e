"""The emulator's HTTP side: Crossmint's routes, the ``/_emulator`` control routes, the server."""

from __future__ import annotations

import hmac
import json
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler
from werkzeug.wrappers import Request, Response

from ._state import ENDPOINTS, EmulatorState, Profile, Rejected

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

API_PREFIX = "/api/2024-09-26"
CONTROL_PREFIX = "/_emulator/"
#: Larger request bodies are answered with 413.
MAX_BODY = 64 * 1024

_URL_MAP = Map(
    [
        Rule("/.well-known/jwks.json", endpoint="jwks", methods=["GET"]),
        Rule(f"{API_PREFIX}/session/sdk/auth/refresh", endpoint="refresh", methods=["POST"]),
        Rule(f"{API_PREFIX}/session/sdk/auth/logout", endpoint="logout", methods=["POST"]),
        Rule(f"{API_PREFIX}/sdk/auth/user/<user_id>", endpoint="user", methods=["GET"]),
        Rule("/_emulator/config", endpoint="config", methods=["GET"]),
        Rule("/_emulator/requests", endpoint="requests", methods=["GET"]),
        Rule("/_emulator/sessions", endpoint="sessions", methods=["POST"]),
        Rule("/_emulator/one-time-secrets", endpoint="one-time-secrets", methods=["POST"]),
        Rule("/_emulator/jwt", endpoint="jwt", methods=["POST"]),
        Rule("/_emulator/rotate-keys", endpoint="rotate-keys", methods=["POST"]),
        Rule("/_emulator/fail-next", endpoint="fail-next", methods=["POST"]),
        Rule("/_emulator/latency", endpoint="latency", methods=["POST"]),
        Rule("/_emulator/down", endpoint="down", methods=["POST"]),
        Rule("/_emulator/configure", endpoint="configure", methods=["POST"]),
        Rule("/_emulator/reset", endpoint="reset", methods=["POST"]),
    ],
    merge_slashes=False,
)


def _json(data: object, status: int = 200) -> Response:
    return Response(json.dumps(data), status, content_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"message": message}, status)


def api_endpoint(method: str, path: str) -> str | None:
    """The Crossmint endpoint a request is for, if any."""
    try:
        endpoint, _ = _URL_MAP.bind("emulator").match(path, method)
    except HTTPException:
        return None
    return endpoint if endpoint in ENDPOINTS else None


def _read_body(request: Request) -> bytes:
    """The body, read up to :data:`MAX_BODY`, chunked bodies included.

    werkzeug's ``max_content_length`` cuts a chunked body at the limit
    without an error, so the limit is enforced here.

    :raises Rejected: 413 for a larger body.
    """
    too_large = Rejected(413, f"Request body is larger than {MAX_BODY} bytes")
    if (request.content_length or 0) > MAX_BODY:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_BODY:
        chunk = request.stream.read(MAX_BODY + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > MAX_BODY:
        raise too_large
    return b"".join(chunks)


def _read_json(request: Request) -> object:
    """The body as JSON; an empty body is ``{}``.

    :raises Rejected: 413 for a body over :data:`MAX_BODY`, 400 for bad JSON.
    """
    data = _read_body(request)
    if not data.strip():
        return {}
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise Rejected(400, "Request body is not valid JSON") from None


def _object(request: Request) -> dict[str, Any]:
    data = _read_json(request)
    if not isinstance(data, dict):
        raise Rejected(400, "Request body must be a JSON object")
    return data


def _field(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    """``data[name]`` when it has the right type, ``default`` when it is absent."""
    value = data.get(name, default)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # JSON true is no number, though Python's bool is an int.
    if value is not default and (
        not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
    ):
        raise Rejected(400, f"'{name}' has the wrong type")
    return value


def _refresh_secret(request: Request) -> str:
    data = _object(request)
    secret = data.get("refresh")
    if not isinstance(secret, str) or not secret:
        raise Rejected(400, "Expected a JSON object with a string 'refresh'")
    return secret


class EmulatorApp:
    """The emulator as a WSGI application.

    :param state: what the emulator knows.
    :param api_key: the only key accepted in ``x-api-key``.
    :param config: the JSON served at ``/_emulator/config``.
    :param stopping: set when the server stops, to cut injected latency short.
    """

    def __init__(
        self,
        state: EmulatorState,
        api_key: str,
        config: Callable[[], Mapping[str, object]],
        stopping: threading.Event,
    ) -> None:
        self.state = state
        self.api_key = api_key
        self.config = config
        self.stopping = stopping

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        try:
            endpoint, args = _URL_MAP.bind_to_environ(environ).match()
        except HTTPException as error:
            response = _error(error.code or 500, error.description or error.name)
        else:
            try:
                if endpoint in ENDPOINTS:
                    response = self._api(request, endpoint, args)
                else:
                    response = self._control(request, endpoint)
            except Rejected as rejected:
                response = _error(rejected.status, rejected.message)
        return response(environ, start_response)

    def _api(self, request: Request, endpoint: str, args: Mapping[str, Any]) -> Response:
        self.state.count(endpoint)
        latency = self.state.latency
        if latency:
            self.stopping.wait(latency)
        fault = self.state.take_fault(endpoint)
        if fault is not None:
            return Response(fault.body, fault.status, content_type="application/json")
        if endpoint == "jwks":
            return _json(self.state.key_set())
        given = request.headers.get("x-api-key")
        if not given:
            raise Rejected(401, "Missing API key: send it in the x-api-key header")
        if not hmac.compare_digest(given.encode(), self.api_key.encode()):
            raise Rejected(401, "Invalid API key")
        if endpoint == "refresh":
            return _json(self.state.refresh(_refresh_secret(request)))
        if endpoint == "logout":
            self.state.logout(_refresh_secret(request))
            return _json({})
        user = self.state.user(args["user_id"])
        if user is None:
            raise Rejected(404, "User not found")
        return _json(user)

    def _control(self, request: Request, endpoint: str) -> Response:
        state = self.state
        if endpoint == "config":
            return _json(self.config())
        if endpoint == "requests":
            return _json(state.counters())
        data = _object(request)
        if endpoint in ("sessions", "one-time-secrets"):
            user_id = _field(data, "user_id", str, None)
            if not user_id:
                raise Rejected(400, "'user_id' must be a non-empty string")
            profile = Profile(
                _field(data, "email", str, None),
                _field(data, "phone_number", str, None),
                _field(data, "user_fields", dict, None),
            )
            if endpoint == "one-time-secrets":
                return _json({"secret": state.one_time_secret(user_id, profile)})
            jwt_ttl = _field(data, "jwt_ttl", int, None)
            return _json(state.create_session(user_id, profile, jwt_ttl))
        if endpoint == "jwt":
            user_id = _field(data, "user_id", str, None)
            if not user_id:
                raise Rejected(400, "'user_id' must be a non-empty string")
            token = state.issue_jwt(
                user_id,
                ttl=_field(data, "ttl", int, None),
                claims=_field(data, "claims", dict, None),
                header=_field(data, "header", dict, None),
            )
            return _json({"jwt": token})
        if endpoint == "rotate-keys":
            kid = state.rotate_keys(keep_old=_field(data, "keep_old", bool, True))
            return _json({"kid": kid})
        if endpoint == "reset":
            state.reset()
            return _json({})
        if endpoint == "down":
            state.down = _field(data, "down", bool, True)
            return _json({"down": state.down})
        try:
            if endpoint == "latency":
                state.latency = _field(data, "seconds", (int, float), 0)
                return _json({"seconds": state.latency})
            if endpoint == "fail-next":
                raw = _field(data, "raw", str, None)
                state.add_fault(
                    _field(data, "n", int, 1),
                    _field(data, "status", int, 503),
                    raw.encode() if raw is not None else data.get("body"),
                    _field(data, "endpoint", str, None),
                )
                return _json({})
            settings = state.configure(
                jwt_ttl=_field(data, "jwt_ttl", int, None),
                refresh_ttl=_field(data, "refresh_ttl", (int, float), None),
                reuse_window=_field(data, "reuse_window", (int, float), None),
            )
            return _json(settings.to_json())
        except ValueError as error:
            raise Rejected(400, str(error)) from None


def make_handler(state: EmulatorState) -> type[WSGIRequestHandler]:
    """A request handler that drops API requests while the emulator is down, and logs no paths."""

    class Handler(WSGIRequestHandler):
        def run_wsgi(self) -> None:
            path = urlsplit(self.path).path
            if state.down and not path.startswith(CONTROL_PREFIX):
                endpoint = api_endpoint(self.command, path)
                if endpoint is not None:
                    state.count(endpoint)
                # Read the body first, so that the client fails reading the answer,
                # always, rather than sometimes while still sending.
                length = self.headers.get("Content-Length", "")
                if length.isdigit() and int(length) <= MAX_BODY:
                    self.rfile.read(int(length))
                # SO_LINGER 0: close() sends a TCP reset, without a FIN or a byte of answer.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
                self.close_connection = True
                return
            super().run_wsgi()

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass

    return Handler
