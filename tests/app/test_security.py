"""Host, Origin, token and body-size middlewares, driven through HTTP."""

from __future__ import annotations

import json

import pytest
from aiohttp import FormData, WSServerHandshakeError, web

from app.security import (
    SecurityPolicy,
    client_max_size,
    host_allowed,
    is_loopback,
    origin_allowed,
    security_middlewares,
    split_host_header,
    startup_warning,
)


async def _echo(request: web.Request) -> web.Response:
    data = await request.json()
    return web.json_response({"got": data})


async def _hello(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _ws(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_json({"type": "status"})
    await ws.close()
    return ws


def _app(policy: SecurityPolicy) -> web.Application:
    app = web.Application(middlewares=security_middlewares(policy),
                          client_max_size=client_max_size(policy))
    app.router.add_get("/hello", _hello)
    app.router.add_post("/prompt", _echo)
    app.router.add_get("/ws", _ws)
    app.router.add_post("/form", _form)
    return app


@pytest.fixture
def make_client(aiohttp_client):
    """Start an app for a policy; the policy's port becomes the test server's port."""

    async def make(**policy_args):
        policy = SecurityPolicy(**policy_args)
        client = await aiohttp_client(_app(policy))
        policy.port = client.port
        return client, policy

    return make


def _assert_error(body: dict, type_: str) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "message", "details", "extra_info"}
    assert body["error"]["type"] == type_


# --- pure helpers -------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.5.6.7", "::1", "[::1]", "localhost",
                                  "LOCALHOST", "::ffff:127.0.0.1"])
def test_is_loopback(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.2", "example.com", "",
                                  "localhost.example.com", "128.0.0.1"])
def test_is_not_loopback(host):
    assert not is_loopback(host)


def test_startup_warning():
    assert startup_warning(SecurityPolicy()) is None
    assert startup_warning(SecurityPolicy(host="0.0.0.0", auth_token="t")) is None
    warning = startup_warning(SecurityPolicy(host="0.0.0.0"))
    assert warning and "token" in warning
    assert startup_warning(SecurityPolicy(host="192.168.1.2"))


def test_split_host_header():
    assert split_host_header("127.0.0.1:8188") == ("127.0.0.1", 8188)
    assert split_host_header("[::1]:8188") == ("::1", 8188)
    assert split_host_header("LocalHost") == ("localhost", None)
    for bad in ("", "::1", "[::1", "host:abc", "host:0", ":80", "[::1]x"):
        assert split_host_header(bad) is None


def test_host_allowed_rules():
    loop = SecurityPolicy(port=8188)
    assert host_allowed(loop, "127.0.0.1:8188")
    assert host_allowed(loop, "localhost:8188")
    assert host_allowed(loop, "[::1]:8188")
    assert not host_allowed(loop, "127.0.0.1:9999")
    assert not host_allowed(loop, "localhost")  # no port means 80
    assert host_allowed(SecurityPolicy(port=80), "localhost")
    assert not host_allowed(loop, "evil.example:8188")
    assert not host_allowed(loop, None)
    lan = SecurityPolicy(host="192.168.1.2")
    assert host_allowed(lan, "192.168.1.2:8188")
    assert host_allowed(lan, "localhost:8188")
    assert not host_allowed(lan, "evil.example:8188")
    anywhere = SecurityPolicy(host="0.0.0.0", auth_token="t")
    assert host_allowed(anywhere, "evil.example")


def test_origin_allowed_rules():
    assert origin_allowed(None, "127.0.0.1:8188")
    assert origin_allowed("http://127.0.0.1:8188", "127.0.0.1:8188")
    assert origin_allowed("HTTPS://LocalHost:8188", "localhost:8188")
    assert not origin_allowed("http://127.0.0.1:8188.evil.com", "127.0.0.1:8188")
    assert not origin_allowed("http://evil.example", "127.0.0.1:8188")
    assert not origin_allowed("null", "127.0.0.1:8188")


# --- through HTTP -------------------------------------------------------------------------


async def test_plain_request_passes(make_client):
    client, _ = await make_client()
    resp = await client.get("/hello")
    assert resp.status == 200
    assert await resp.json() == {"ok": True}


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1:1",
                                  "192.168.1.2:{port}"])
async def test_wrong_host_is_403(make_client, host):
    client, policy = await make_client()
    resp = await client.get("/hello", headers={"Host": host.format(port=policy.port)})
    assert resp.status == 403
    _assert_error(await resp.json(), "forbidden_host")


async def test_localhost_host_with_port_passes(make_client):
    client, policy = await make_client()
    resp = await client.get("/hello", headers={"Host": f"localhost:{policy.port}"})
    assert resp.status == 200


async def test_wildcard_bind_accepts_any_host(make_client):
    client, _ = await make_client(host="0.0.0.0", auth_token="s3cret")
    resp = await client.get("/hello", headers={"Host": "kinema.lan",
                                               "Authorization": "Bearer s3cret"})
    assert resp.status == 200


async def test_same_origin_passes(make_client):
    client, policy = await make_client()
    resp = await client.get("/hello", headers={"Origin": f"http://127.0.0.1:{policy.port}"})
    assert resp.status == 200


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1",
                                    "http://localhost:{port}"])
async def test_origin_mismatch_is_403(make_client, origin):
    client, policy = await make_client()
    resp = await client.post("/prompt", json={"x": 1},
                             headers={"Origin": origin.format(port=policy.port)})
    assert resp.status == 403
    _assert_error(await resp.json(), "forbidden_origin")


async def test_cross_site_fetch_is_403(make_client):
    client, _ = await make_client()
    resp = await client.get("/hello", headers={"Sec-Fetch-Site": "cross-site"})
    assert resp.status == 403
    _assert_error(await resp.json(), "forbidden_origin")
    assert (await client.get("/hello", headers={"Sec-Fetch-Site": "same-origin"})).status == 200


async def test_cross_origin_websocket_is_refused(make_client):
    client, _ = await make_client()
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers={"Origin": "http://evil.example"})
    assert refused.value.status == 403
    ws = await client.ws_connect("/ws")
    assert (await ws.receive_json()) == {"type": "status"}
    await ws.close()


@pytest.mark.parametrize("headers,query", [
    ({}, ""),
    ({"Authorization": "Bearer wrong"}, ""),
    ({"Authorization": "Basic s3cret"}, ""),
    ({}, "?token=wrong"),
    ({}, "?token="),
])
async def test_missing_or_wrong_token_is_401(make_client, headers, query):
    client, _ = await make_client(auth_token="s3cret")
    resp = await client.get(f"/hello{query}", headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    _assert_error(await resp.json(), "unauthorized")


@pytest.mark.parametrize("headers,query", [
    ({"Authorization": "Bearer s3cret"}, ""),
    ({"Authorization": "bearer  s3cret "}, ""),
    ({}, "?token=s3cret"),
])
async def test_right_token_passes(make_client, headers, query):
    client, _ = await make_client(auth_token="s3cret")
    resp = await client.get(f"/hello{query}", headers=headers)
    assert resp.status == 200


async def test_websocket_needs_token(make_client):
    client, _ = await make_client(auth_token="s3cret")
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/ws")
    assert refused.value.status == 401
    ws = await client.ws_connect("/ws?token=s3cret")
    assert (await ws.receive_json()) == {"type": "status"}
    await ws.close()


async def test_json_within_limit_passes(make_client):
    client, _ = await make_client(max_json_bytes=1024)
    resp = await client.post("/prompt", json={"a": "x" * 500})
    assert resp.status == 200
    assert (await resp.json())["got"]["a"] == "x" * 500


async def test_big_json_with_content_length_is_413(make_client):
    client, _ = await make_client(max_json_bytes=1024)
    resp = await client.post("/prompt", json={"a": "x" * 5000})
    assert resp.status == 413
    body = await resp.json()
    _assert_error(body, "payload_too_large")
    assert body["error"]["extra_info"] == {"limit": 1024}


async def test_big_chunked_json_is_413(make_client):
    client, _ = await make_client(max_json_bytes=1024)
    payload = json.dumps({"a": "x" * 5000}).encode()

    async def chunks():
        for i in range(0, len(payload), 512):
            yield payload[i:i + 512]

    resp = await client.post("/prompt", data=chunks(),
                             headers={"Content-Type": "application/json"})
    assert resp.status == 413
    body = await resp.json()
    _assert_error(body, "payload_too_large")
    assert body["error"]["extra_info"] == {"limit": 1024}


async def _form(request: web.Request) -> web.Response:
    post = await request.post()
    upload = post["f"]
    assert isinstance(upload, web.FileField)
    return web.json_response({"n": len(upload.file.read())})


async def test_multipart_gets_the_upload_limit(make_client):
    client, _ = await make_client(max_json_bytes=1024, max_upload_bytes=4096)
    for size, status in ((2000, 200), (3000, 200), (8000, 413)):
        data = FormData()
        data.add_field("f", b"x" * size, filename="a.bin")
        resp = await client.post("/form", data=data)
        assert resp.status == status
        body = await resp.json()
        if status == 200:
            assert body == {"n": size}
        else:
            _assert_error(body, "payload_too_large")
            assert body["error"]["extra_info"] == {"limit": 4096}


async def test_chunked_multipart_over_the_upload_limit_is_413(make_client):
    client, _ = await make_client(max_json_bytes=1024, max_upload_bytes=4096)
    raw = (b'--XyZ\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n\r\n'
           + b"x" * 8000 + b"\r\n--XyZ--\r\n")

    async def chunks():
        for i in range(0, len(raw), 1000):
            yield raw[i:i + 1000]

    resp = await client.post("/form", data=chunks(),
                             headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    assert resp.status == 413
    _assert_error(await resp.json(), "payload_too_large")
