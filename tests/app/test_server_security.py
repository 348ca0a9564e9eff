"""A live server refuses what it must: no token, foreign Host, cross-site Origin."""

from __future__ import annotations

import urllib.error
import urllib.request

import aiohttp
import pytest

from tests.app.live_server import LiveServer

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    with LiveServer(tmp_path_factory.mktemp("guarded"), "--auth-token", TOKEN) as server:
        yield server


def status(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_every_route_needs_the_token(guarded):
    for path in ("/queue", "/api/queue", "/object_info", "/history", "/view?filename=x",
                 "/system_stats", "/"):
        assert status(guarded.url + path) == 401, path
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert status(guarded.url + "/queue", auth) == 200
    assert status(guarded.url + f"/queue?token={TOKEN}") == 200
    assert status(guarded.url + "/queue", {"Authorization": "Bearer wrong"}) == 401


async def test_websocket_needs_the_token(guarded):
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(f"{guarded.url}/ws?clientId=x")
        assert info.value.status == 401
        async with http.ws_connect(f"{guarded.url}/ws?clientId=x&token={TOKEN}") as ws:
            hello = await ws.receive_json(timeout=10)
            assert hello["type"] == "status"


def test_foreign_host_and_cross_site_origin_are_refused(guarded):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    host = f"127.0.0.1:{guarded.port}"
    assert status(guarded.url + "/queue", {**auth, "Host": f"evil.example:{guarded.port}"}) == 403
    assert status(guarded.url + "/queue", {**auth, "Origin": "null"}) == 403
    assert status(guarded.url + "/queue", {**auth, "Origin": "http://evil.example"}) == 403
    assert status(guarded.url + "/queue", {**auth, "Origin": f"http://{host}"}) == 200


async def test_cross_site_websocket_is_refused(guarded):
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(f"{guarded.url}/ws?token={TOKEN}",
                                  headers={"Origin": "http://evil.example"})
        assert info.value.status == 403


def test_opening_the_canvas_with_the_token_lets_its_own_files_load(guarded):
    import http.cookiejar

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{guarded.url}/?token={TOKEN}", timeout=10) as response:
        assert response.status == 200
    cookie = next(c for c in jar if c.name == "kinema_token")
    assert cookie.has_nonstandard_attr("HttpOnly")
    # Scripts and styles cannot send a header: the cookie carries the token for them.
    with opener.open(f"{guarded.url}/scripts/app.js", timeout=10) as response:
        assert response.status == 200
    assert status(guarded.url + "/scripts/app.js") == 401
