"""ComfyUI's file routes (``/view``, ``/upload/image``, ``/upload/mask``), inside their folders.

Every user-given name goes through ``engine.folders.resolve_inside``, which also resolves
symlinks, so nothing outside input/output/temp is ever read or written. Files that a browser
could run (HTML, SVG, scripts, XML, anything not plainly media/JSON/text) are sent as
downloads, never rendered. Uploads stream to a hidden temp file while counted against the
upload limit, are renamed into place atomically, and never store the same bytes twice.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from aiohttp import BodyPartReader, web
from PIL import Image, PngImagePlugin

from app.security import POLICY_REQUEST_KEY, SecurityPolicy, json_error, too_large
from engine.folders import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    UnsafePathError,
    active_folders,
    resolve_inside,
)

CHUNK = 256 * 1024
MAX_FIELD_BYTES = 64 * 1024
# ComfyUI clients upload videos (LoadVideo's upload button) through /upload/image too.
UPLOAD_EXTENSIONS = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
# Types a browser may show inline; everything else is a download (octet-stream).
INLINE_TYPES: dict[str, str] = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
    ".gif": "image/gif", ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff",
    ".avif": "image/avif", ".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm",
    ".mov": "video/quicktime", ".mkv": "video/x-matroska", ".avi": "video/x-msvideo",
    ".wav": "audio/wav", ".mp3": "audio/mpeg", ".flac": "audio/flac", ".ogg": "audio/ogg",
    ".m4a": "audio/mp4", ".opus": "audio/opus", ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
_place_lock = threading.Lock()


class FileError(Exception):
    """A request that cannot be served; becomes a structured JSON error."""

    def __init__(self, status: int, type_: str, message: str, details: str = "") -> None:
        super().__init__(message)
        self.status, self.type, self.message, self.details = status, type_, message, details

    def response(self) -> web.Response:
        return json_error(self.status, self.type, self.message, self.details)


def _folder_and_name(type_: str, subfolder: str, filename: str) -> tuple[Path, Path]:
    """(folder root, resolved file path) for a ComfyUI ``type``/``subfolder``/``filename``."""
    for kind in ("input", "output", "temp"):  # ComfyUI's annotated names: "x.png [input]"
        if filename.endswith(f" [{kind}]"):
            filename, type_ = filename[: -len(kind) - 3], kind
    if not filename or "\x00" in filename + subfolder:
        raise FileError(400, "invalid_filename", "Invalid file name.", repr(filename))
    try:
        root = active_folders().directory(type_).resolve()
    except UnsafePathError as exc:
        raise FileError(400, "invalid_type", str(exc)) from exc
    name = f"{subfolder}/{filename}" if subfolder else filename
    if ".." in name.replace("\\", "/").split("/"):
        raise FileError(403, "forbidden_path", "'..' is not allowed in file names.", name)
    try:
        return root, resolve_inside(root, name)
    except UnsafePathError as exc:
        raise FileError(403, "forbidden_path", "The path leaves its folder.", str(exc)) from exc


def _disposition(kind: str, name: str) -> str:
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_"
                       for c in name)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _convert(path: Path, preview: str | None, channel: str) -> tuple[bytes, str]:
    """ComfyUI's ``preview`` (webp/jpeg at a quality) and ``channel`` (rgb, a) conversions."""
    with Image.open(path) as img:
        img.load()
        if preview is not None:
            parts = preview.split(";")
            fmt = parts[0] if parts[0] in ("webp", "jpeg") and "a" not in channel else "webp"
            quality = int(parts[-1]) if parts[-1].isdigit() else 90
            out = img.convert("RGB") if fmt == "jpeg" or channel == "rgb" else img
            if out.mode not in ("RGB", "RGBA", "L", "LA"):
                out = out.convert("RGBA")
            buffer = io.BytesIO()
            out.save(buffer, format=fmt.upper(), quality=min(quality, 100))
            return buffer.getvalue(), f"image/{fmt}"
        if channel == "rgb":
            out = img.convert("RGB")
        else:  # "a": the alpha as an RGBA image, like ComfyUI
            alpha = img.getchannel("A") if "A" in img.getbands() else Image.new("L", img.size, 255)
            out = Image.new("RGBA", img.size)
            out.putalpha(alpha)
        buffer = io.BytesIO()
        out.save(buffer, format="PNG")
        return buffer.getvalue(), "image/png"


async def view(request: web.Request) -> web.StreamResponse:
    """``GET /view``: a file from input/output/temp, images optionally converted."""
    query = request.query
    try:
        _, path = _folder_and_name(query.get("type", "output") or "output",
                                   query.get("subfolder", ""), query.get("filename", ""))
    except FileError as err:
        return err.response()
    if not path.is_file():
        return json_error(404, "not_found", "File not found.", path.name)
    headers = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox",
               "Cache-Control": "no-cache"}
    ext = path.suffix.lower()
    channel = query.get("channel", "").lower()
    preview = query.get("preview")
    if ext in IMAGE_EXTENSIONS and (preview is not None or channel in ("rgb", "a")):
        try:
            loop = asyncio.get_running_loop()
            body, content_type = await loop.run_in_executor(None, _convert, path, preview,
                                                            channel)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            return json_error(400, "invalid_image", "Cannot convert this image.", str(exc))
        headers["Content-Disposition"] = _disposition("inline", path.name)
        return web.Response(body=body, content_type=content_type, headers=headers)
    if ext in INLINE_TYPES:
        headers["Content-Type"] = INLINE_TYPES[ext]
        headers["Content-Disposition"] = _disposition("inline", path.name)
    else:
        headers["Content-Type"] = "application/octet-stream"
        headers["Content-Disposition"] = _disposition("attachment", path.name)
    return web.FileResponse(path, headers=headers)


@dataclass
class _Upload:
    """What a multipart upload carried: its text fields and the file streamed to disk."""

    fields: dict[str, str] = field(default_factory=dict)
    filename: str = ""
    tmp: Path | None = None


def _upload_limit(request: web.Request) -> int:
    return request.get(POLICY_REQUEST_KEY, SecurityPolicy()).max_upload_bytes


def _new_temp(directory: Path) -> tuple[int, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix=".upload-", suffix=".part")
    return fd, Path(name)


async def _receive(request: web.Request, limit: int) -> tuple[_Upload, Path]:
    """Read the multipart body; the ``image`` part streams to a temp file, counted."""
    if not request.content_type.startswith("multipart/"):
        raise FileError(400, "invalid_upload", "Expected a multipart/form-data body.")
    upload, total = _Upload(), 0
    reader = await request.multipart()
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise FileError(400, "invalid_upload", "Nested multipart is not supported.")
            if part.name == "image" and upload.tmp is None and part.filename is not None:
                upload.filename = part.filename.replace("\\", "/").rsplit("/", 1)[-1]
                if Path(upload.filename).suffix.lower() not in UPLOAD_EXTENSIONS:
                    raise FileError(400, "invalid_extension",
                                    "Only images and videos can be uploaded.",
                                    f"{upload.filename!r}: allowed "
                                    f"{', '.join(sorted(UPLOAD_EXTENSIONS))}")
                folder = upload.fields.get("type", "input")
                folder = folder if folder in ("input", "output", "temp") else "input"
                fd, upload.tmp = _new_temp(active_folders().directory(folder))
                with os.fdopen(fd, "wb") as fh:
                    while chunk := await part.read_chunk(CHUNK):
                        total += len(chunk)
                        if total > limit:
                            raise FileError(413, "payload_too_large", "")
                        fh.write(chunk)
                continue
            keep = bool(part.name) and part.filename is None  # a text field, not a file
            data = bytearray()
            while chunk := await part.read_chunk(CHUNK):
                total += len(chunk)
                if total > limit:
                    raise FileError(413, "payload_too_large", "")
                if keep:
                    data.extend(chunk)
                    if len(data) > MAX_FIELD_BYTES:
                        raise FileError(400, "invalid_upload", f"Field {part.name!r} is too long.")
            if keep:
                upload.fields.setdefault(str(part.name), data.decode("utf-8", "replace"))
    except BaseException:
        if upload.tmp is not None:
            upload.tmp.unlink(missing_ok=True)
        raise
    if upload.tmp is None:
        raise FileError(400, "invalid_upload", "No 'image' file in the upload.")
    return upload, upload.tmp


def _same_bytes(a: Path, b: Path) -> bool:
    """Whether two files hold identical bytes (sizes first, then chunk by chunk)."""
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            chunk = fa.read(CHUNK)
            if chunk != fb.read(CHUNK):
                return False
            if not chunk:
                return True


def _move(src: Path, dest: Path) -> None:
    """Rename ``src`` onto ``dest``; copies through a temp file in dest's folder across devices."""
    try:
        os.replace(src, dest)
    except OSError:
        fd, tmp = _new_temp(dest.parent)
        with os.fdopen(fd, "wb") as out, src.open("rb") as source:
            shutil.copyfileobj(source, out, CHUNK)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
        src.unlink(missing_ok=True)


def _place(tmp: Path, root: Path, target: Path, overwrite: bool) -> str:
    """Move ``tmp`` to ``target`` (or ``name (N).ext``), reusing a file with identical bytes.

    Returns the final file name. ``tmp`` is gone afterwards whatever happens.
    """
    try:
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        target.parent.mkdir(parents=True, exist_ok=True)
        resolve_inside(root, target.relative_to(root).as_posix())  # re-check after mkdir
        stem, ext = target.stem, target.suffix
        with _place_lock:
            for n in range(100_000):
                candidate = target if n == 0 else target.with_name(f"{stem} ({n}){ext}")
                if candidate.is_file() and _same_bytes(tmp, candidate):
                    return candidate.name
                if not candidate.exists() or (overwrite and n == 0 and candidate.is_file()):
                    _move(tmp, candidate)
                    return candidate.name
        raise FileError(409, "name_exhausted", "No free file name.", target.name)
    finally:
        tmp.unlink(missing_ok=True)


def _fields_target(upload: _Upload) -> tuple[str, str, Path, Path, bool]:
    type_ = upload.fields.get("type", "input") or "input"
    subfolder = upload.fields.get("subfolder", "")
    root, target = _folder_and_name(type_, subfolder, upload.filename)
    overwrite = upload.fields.get("overwrite", "").lower() in ("true", "1")
    return type_, subfolder, root, target, overwrite


async def _handle_upload(request: web.Request, mask: bool) -> web.Response:
    limit = _upload_limit(request)
    try:
        upload, tmp = await _receive(request, limit)
    except FileError as err:
        return too_large(limit, "upload") if err.status == 413 else err.response()
    except ValueError as exc:  # malformed multipart
        return json_error(400, "invalid_upload", "Malformed multipart body.", str(exc))
    loop = asyncio.get_running_loop()
    try:
        type_, subfolder, root, target, overwrite = _fields_target(upload)
        if mask:
            await loop.run_in_executor(None, _apply_mask, upload, tmp)
        name = await loop.run_in_executor(None, _place, tmp, root, target, overwrite)
    except FileError as err:
        return err.response()
    except UnsafePathError as exc:
        return json_error(403, "forbidden_path", "The path leaves its folder.", str(exc))
    finally:
        tmp.unlink(missing_ok=True)
    return web.json_response({"name": name, "subfolder": subfolder, "type": type_})


async def upload_image(request: web.Request) -> web.Response:
    """``POST /upload/image``: store an image in input/output/temp; ComfyUI's reply shape."""
    return await _handle_upload(request, mask=False)


def _apply_mask(upload: _Upload, tmp: Path) -> None:
    """Replace ``tmp`` (the uploaded mask) by the referenced original with the mask's alpha."""
    try:
        ref = json.loads(upload.fields.get("original_ref", ""))
        if not isinstance(ref, dict):
            raise ValueError("original_ref must be a JSON object")
    except ValueError as exc:
        raise FileError(400, "invalid_original_ref", "Bad 'original_ref'.", str(exc)) from exc
    _, original = _folder_and_name(str(ref.get("type") or "output"),
                                   str(ref.get("subfolder") or ""), str(ref.get("filename", "")))
    if not original.is_file():
        raise FileError(404, "not_found", "The original image was not found.", original.name)
    try:
        with Image.open(original) as source, Image.open(tmp) as mask_file:
            info = PngImagePlugin.PngInfo()
            for key, value in getattr(source, "text", {}).items():
                info.add_text(key, value)
            result = source.convert("RGBA")
            alpha = mask_file.convert("RGBA").getchannel("A")
            if alpha.size != result.size:
                alpha = alpha.resize(result.size, Image.Resampling.BILINEAR)
            result.putalpha(alpha)
            buffer = io.BytesIO()
            result.save(buffer, format="PNG", compress_level=4, pnginfo=info)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise FileError(400, "invalid_image", "Cannot read the mask or original.",
                        str(exc)) from exc
    tmp.write_bytes(buffer.getvalue())


async def upload_mask(request: web.Request) -> web.Response:
    """``POST /upload/mask``: the original named by ``original_ref`` with the upload's alpha."""
    return await _handle_upload(request, mask=True)


def add_file_routes(router: web.UrlDispatcher, prefix: str = "") -> None:
    """Register ``/view``, ``/upload/image`` and ``/upload/mask`` under ``prefix``."""
    router.add_get(f"{prefix}/view", view, allow_head=True)
    router.add_post(f"{prefix}/upload/image", upload_image)
    router.add_post(f"{prefix}/upload/mask", upload_mask)
