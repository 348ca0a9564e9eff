"""/view and /upload routes: folders are never left, risky types are downloads, no duplicates."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from aiohttp import FormData, web
from PIL import Image

from app.files import add_file_routes
from app.security import SecurityPolicy, client_max_size, security_middlewares


def _png(color=(255, 0, 0, 255), size=(8, 6), mode="RGBA") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
async def client(aiohttp_client, folders):
    policy = SecurityPolicy(max_upload_bytes=64 * 1024)
    app = web.Application(middlewares=security_middlewares(policy),
                          client_max_size=client_max_size(policy))
    add_file_routes(app.router)
    add_file_routes(app.router, "/api")
    test_client = await aiohttp_client(app)
    policy.port = test_client.port
    return test_client


def _assert_error(body: dict, status_type: str) -> None:
    assert set(body["error"]) == {"type", "message", "details", "extra_info"}
    assert body["error"]["type"] == status_type


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# --- /view ---------------------------------------------------------------------------------


async def test_view_serves_an_output_image(client, folders):
    (folders.output / "a.png").write_bytes(_png())
    resp = await client.get("/view", params={"filename": "a.png"})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "image/png"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Disposition"].startswith('inline; filename="a.png"')
    assert await resp.read() == _png()


async def test_view_subfolder_type_and_api_prefix(client, folders):
    (folders.input / "sub").mkdir()
    (folders.input / "sub" / "b.png").write_bytes(_png())
    resp = await client.get("/api/view", params={"filename": "b.png", "subfolder": "sub",
                                                  "type": "input"})
    assert resp.status == 200
    resp = await client.get("/view", params={"filename": "b.png [input]", "subfolder": "sub"})
    assert resp.status == 200


async def test_view_missing_is_404(client):
    resp = await client.get("/view", params={"filename": "nope.png"})
    assert resp.status == 404
    _assert_error(await resp.json(), "not_found")


@pytest.mark.parametrize("params", [
    {"filename": "../secret.txt"},
    {"filename": "secret.txt", "subfolder": ".."},
    {"filename": "secret.txt", "subfolder": "../"},
    {"filename": "x/../../secret.txt"},
    {"filename": "secret.txt", "subfolder": "a/../.."},
])
async def test_view_traversal_is_refused(client, folders, params):
    (folders.base / "secret.txt").write_text("secret")
    resp = await client.get("/view", params=params)
    assert resp.status == 403
    _assert_error(await resp.json(), "forbidden_path")


async def test_view_absolute_path_is_refused(client, folders):
    secret = folders.base / "secret.txt"
    secret.write_text("TOPSECRET")
    resp = await client.get("/view", params={"filename": str(secret)})
    assert resp.status in (400, 403)
    assert "TOPSECRET" not in await resp.text()
    resp = await client.get("/view", params={"filename": "secret.txt",
                                             "subfolder": str(folders.base)})
    assert resp.status in (400, 403)


@pytest.mark.parametrize("params", [{"filename": "a\x00.png"}, {"filename": ""}, {},
                                    {"filename": "a.png", "type": "models"}])
async def test_view_invalid_request_is_400(client, params):
    resp = await client.get("/view", params=params)
    assert resp.status == 400
    assert "error" in await resp.json()


async def test_view_symlink_out_of_the_folder_is_refused(client, folders, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(_png())
    os.symlink(outside / "secret.png", folders.output / "link.png")
    os.symlink(outside, folders.output / "linkdir")
    resp = await client.get("/view", params={"filename": "link.png"})
    assert resp.status == 403
    _assert_error(await resp.json(), "forbidden_path")
    resp = await client.get("/view", params={"filename": "secret.png", "subfolder": "linkdir"})
    assert resp.status == 403


async def test_view_symlink_inside_the_folder_is_fine(client, folders):
    (folders.output / "real.png").write_bytes(_png())
    os.symlink(folders.output / "real.png", folders.output / "alias.png")
    resp = await client.get("/view", params={"filename": "alias.png"})
    assert resp.status == 200


@pytest.mark.parametrize("name", ["page.html", "pic.svg", "app.js", "mod.mjs", "doc.xhtml",
                                  "data.xml", "run.sh", "noext", "weights.latent"])
async def test_view_risky_types_are_downloads(client, folders, name):
    (folders.output / name).write_text("<script>alert(1)</script>")
    resp = await client.get("/view", params={"filename": name})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_view_video_is_inline_and_supports_ranges(client, folders):
    (folders.output / "clip.mp4").write_bytes(bytes(range(256)) * 4)
    resp = await client.get("/view", params={"filename": "clip.mp4"},
                            headers={"Range": "bytes=0-9"})
    assert resp.status == 206
    assert resp.headers["Content-Type"] == "video/mp4"
    assert resp.headers["Content-Disposition"].startswith("inline;")
    assert await resp.read() == bytes(range(10))


async def test_view_preview_webp_and_jpeg(client, folders):
    (folders.output / "a.png").write_bytes(_png(size=(16, 12)))
    resp = await client.get("/view", params={"filename": "a.png", "preview": "webp;50"})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "image/webp"
    data = await resp.read()
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    assert Image.open(io.BytesIO(data)).size == (16, 12)
    resp = await client.get("/view", params={"filename": "a.png", "preview": "jpeg;80"})
    assert resp.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(await resp.read())).format == "JPEG"


async def test_view_channels(client, folders):
    (folders.output / "a.png").write_bytes(_png(color=(10, 20, 30, 128)))
    resp = await client.get("/view", params={"filename": "a.png", "channel": "rgb"})
    rgb = Image.open(io.BytesIO(await resp.read()))
    assert rgb.mode == "RGB" and rgb.getpixel((0, 0)) == (10, 20, 30)
    resp = await client.get("/view", params={"filename": "a.png", "channel": "a"})
    alpha = Image.open(io.BytesIO(await resp.read()))
    assert alpha.mode == "RGBA" and alpha.getpixel((0, 0))[3] == 128


# --- /upload/image -------------------------------------------------------------------------


def _form(data: bytes, name: str = "pic.png", **fields: str) -> FormData:
    form = FormData()
    for key, value in fields.items():
        form.add_field(key, value)
    form.add_field("image", data, filename=name, content_type="image/png")
    return form


async def test_upload_then_view(client, folders):
    resp = await client.post("/upload/image", data=_form(_png()))
    assert resp.status == 200
    assert await resp.json() == {"name": "pic.png", "subfolder": "", "type": "input"}
    assert (folders.input / "pic.png").read_bytes() == _png()
    resp = await client.get("/view", params={"filename": "pic.png", "type": "input"})
    assert await resp.read() == _png()


async def test_upload_dedupes_by_content(client, folders):
    red, blue = _png((255, 0, 0, 255)), _png((0, 0, 255, 255))
    first = await (await client.post("/upload/image", data=_form(red))).json()
    second = await (await client.post("/upload/image", data=_form(red))).json()
    assert first["name"] == second["name"] == "pic.png"
    third = await (await client.post("/upload/image", data=_form(blue))).json()
    assert third["name"] == "pic (1).png"
    again = await (await client.post("/upload/image", data=_form(blue))).json()
    assert again["name"] == "pic (1).png"
    green = await (await client.post("/upload/image", data=_form(_png((0, 255, 0, 255))))).json()
    assert green["name"] == "pic (2).png"
    assert _files(folders.input) == ["pic (1).png", "pic (2).png", "pic.png"]
    assert (folders.input / "pic (1).png").read_bytes() == blue


async def test_upload_overwrite(client, folders):
    await client.post("/upload/image", data=_form(_png((255, 0, 0, 255))))
    blue = _png((0, 0, 255, 255))
    resp = await client.post("/upload/image", data=_form(blue, overwrite="true"))
    assert (await resp.json())["name"] == "pic.png"
    assert (folders.input / "pic.png").read_bytes() == blue
    assert _files(folders.input) == ["pic.png"]


async def test_upload_type_and_subfolder_after_the_file(client, folders):
    form = FormData()
    form.add_field("image", _png(), filename="c.png", content_type="image/png")
    form.add_field("subfolder", "clips/day1")
    form.add_field("type", "temp")
    resp = await client.post("/api/upload/image", data=form)
    assert await resp.json() == {"name": "c.png", "subfolder": "clips/day1", "type": "temp"}
    assert (folders.temp / "clips" / "day1" / "c.png").read_bytes() == _png()
    assert _files(folders.input) == []  # the temp file did not stay behind


@pytest.mark.parametrize("name", ["page.html", "pic.svg", "x.js", "noext"])
async def test_upload_of_non_images_is_refused(client, folders, name):
    resp = await client.post("/upload/image", data=_form(b"<html></html>", name=name))
    assert resp.status == 400
    _assert_error(await resp.json(), "invalid_extension")
    assert _files(folders.input) == []


async def test_upload_traversal_is_refused_or_contained(client, folders):
    resp = await client.post("/upload/image", data=_form(_png(), subfolder="../escape"))
    assert resp.status == 403
    raw = (b'--XyZ\r\nContent-Disposition: form-data; name="image"; '
           b'filename="../../evil.png"\r\nContent-Type: image/png\r\n\r\n'
           + _png() + b"\r\n--XyZ--\r\n")
    resp = await client.post("/upload/image", data=raw,
                             headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    assert resp.status == 200
    assert (await resp.json())["name"] == "evil.png"
    assert _files(folders.base) == ["input/evil.png"]


async def test_upload_too_big_is_413_and_leaves_nothing(client, folders):
    big = os.urandom(100 * 1024)
    resp = await client.post("/upload/image", data=_form(big))
    assert resp.status == 413
    body = await resp.json()
    _assert_error(body, "payload_too_large")
    assert body["error"]["extra_info"] == {"limit": 64 * 1024}
    assert _files(folders.base) == []


async def test_chunked_upload_too_big_is_413_and_leaves_nothing(client, folders):
    big = os.urandom(100 * 1024)
    raw = (b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
           b"Content-Type: image/png\r\n\r\n" + big + b"\r\n--XyZ--\r\n")

    async def chunks():
        for i in range(0, len(raw), 8192):
            yield raw[i:i + 8192]

    resp = await client.post("/upload/image", data=chunks(),
                             headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    assert resp.status == 413
    _assert_error(await resp.json(), "payload_too_large")
    assert _files(folders.base) == []


async def test_upload_without_image_is_400(client):
    form = FormData()
    form.add_field("type", "input")
    resp = await client.post("/upload/image", data=form)
    assert resp.status == 400
    resp = await client.post("/upload/image", json={"image": "x"})
    assert resp.status == 400
    resp = await client.post("/upload/image", data=b"garbage",
                             headers={"Content-Type": "multipart/form-data"})
    assert resp.status == 400
    _assert_error(await resp.json(), "invalid_upload")


# --- /upload/mask --------------------------------------------------------------------------


async def test_upload_mask_applies_alpha_to_the_original(client, folders):
    (folders.input / "orig.png").write_bytes(_png((10, 20, 30, 255), size=(8, 6)))
    mask = _png((0, 0, 0, 40), size=(8, 6))
    form = _form(mask, name="clipspace-mask.png", subfolder="clipspace")
    form.add_field("original_ref", json.dumps({"filename": "orig.png", "type": "input"}))
    resp = await client.post("/upload/mask", data=form)
    assert resp.status == 200
    body = await resp.json()
    assert body == {"name": "clipspace-mask.png", "subfolder": "clipspace", "type": "input"}
    result = Image.open(folders.input / "clipspace" / "clipspace-mask.png")
    assert result.mode == "RGBA" and result.getpixel((0, 0)) == (10, 20, 30, 40)


async def test_upload_mask_refuses_an_original_outside(client, folders):
    form = _form(_png(), name="m.png")
    form.add_field("original_ref", json.dumps({"filename": "../secret.png", "type": "input"}))
    resp = await client.post("/upload/mask", data=form)
    assert resp.status == 403
    assert _files(folders.input) == []
