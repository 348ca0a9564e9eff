"""Whatever a client sends, the server answers with a status below 500 and keeps serving."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.app.live_server import LiveServer

ROUTES = [("POST", "/prompt"), ("GET", "/prompt"), ("GET", "/queue"), ("POST", "/queue"),
          ("POST", "/interrupt"), ("GET", "/history"), ("POST", "/history"),
          ("GET", "/history/x"), ("GET", "/object_info"), ("GET", "/object_info/EmptyImage"),
          ("GET", "/view"), ("POST", "/upload/image"), ("GET", "/system_stats"),
          ("GET", "/models"), ("GET", "/models/checkpoints"), ("GET", "/extensions"),
          ("POST", "/free"), ("GET", "/api/queue"), ("POST", "/api/prompt")]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=16)
bodies = (json_values.map(lambda v: json.dumps(v).encode())
          | st.binary(max_size=64)
          | st.fixed_dictionaries({"prompt": json_values}).map(lambda v: json.dumps(v).encode()))
queries = st.dictionaries(st.sampled_from(["filename", "type", "subfolder", "max_items",
                                           "offset", "preview", "channel", "x"]),
                          st.text(max_size=12), max_size=4)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with LiveServer(tmp_path_factory.mktemp("fuzz")) as server:
        yield server


def send(live: LiveServer, method: str, path: str, body: bytes, query: dict) -> int:
    url = f"{live.url}{path}?{urllib.parse.urlencode(query)}"
    request = urllib.request.Request(url, method=method, data=body if method == "POST" else None,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        if exc.code < 500:
            payload = exc.read()
            if exc.code == 400 and path.endswith("/prompt"):
                error = json.loads(payload)["error"]
                assert {"type", "message", "details", "extra_info"} <= error.keys()
        return exc.code


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(route=st.sampled_from(ROUTES), body=bodies, query=queries)
def test_no_input_gets_a_server_error(live, route, body, query):
    method, path = route
    assert send(live, method, path, body, query) < 500
    assert live.proc.poll() is None
