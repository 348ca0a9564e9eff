"""The workflow embedded in encoded files, in the places the canvas reader looks
(``web/scripts/metadata.js``), so dropping an output on the canvas reopens its graph.

- MP4/MOV: container tags ``prompt`` and ``workflow`` (written as ``mdta`` keys with
  ``movflags=use_metadata_tags``) and a ``comment`` holding ``{"prompt": …, "workflow": …}``.
- WebM/MKV: container tags ``prompt`` and ``workflow`` (Matroska SimpleTags).
- WebP: an EXIF chunk whose IFD0 strings are ``prompt:<json>`` (Model) and ``workflow:<json>``
  (Make), as ComfyUI's SaveAnimatedWEBP writes them.
- GIF: a comment extension holding ``{"prompt": …, "workflow": …}``.
- PNG: text chunks, as SaveImage writes them.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

EXIF_MODEL, EXIF_MAKE = 0x0110, 0x010F
VP8X_EXIF_FLAG = 0x08
# The application extension that makes a GIF loop: 19 bytes, the count in the last three.
NETSCAPE_LOOP = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"


def workflow_texts(prompt: Any, extra_pnginfo: Mapping[str, Any] | None) -> dict[str, str]:
    """``prompt`` and each ``extra_pnginfo`` entry (the canvas ``workflow``) as JSON text."""
    texts = {"prompt": json.dumps(prompt)} if prompt is not None else {}
    for key, value in (extra_pnginfo or {}).items():
        texts[key] = json.dumps(value)
    return texts


def comment_text(texts: Mapping[str, str]) -> str:
    """One JSON object holding every entry (for a single comment field)."""
    return json.dumps({key: json.loads(value) for key, value in texts.items()})


def container_tags(texts: Mapping[str, str], with_comment: bool) -> dict[str, str]:
    """Container metadata: one tag per entry, plus the combined comment (MP4)."""
    tags = dict(texts)
    if with_comment and texts:
        tags["comment"] = comment_text(texts)
    return tags


def webp_exif(texts: Mapping[str, str]) -> bytes:
    """TIFF bytes of an EXIF block with ``key:json`` strings: prompt in Model, the rest from
    Make downwards (ComfyUI's layout)."""
    exif = Image.Exif()
    tag = EXIF_MAKE
    for key, value in texts.items():
        if key == "prompt":
            exif[EXIF_MODEL] = f"prompt:{value}"
        else:
            exif[tag] = f"{key}:{value}"
            tag -= 1
    data = exif.tobytes()
    return data[6:] if data.startswith(b"Exif\0\0") else data  # WebP holds the bare TIFF


def add_webp_exif(path: Path, exif: bytes) -> None:
    """Append an EXIF chunk to the WebP at ``path``, in place.

    An animated WebP is already extended (VP8X first): the chunk goes at the end, where the
    format puts it, and two header fields are patched. A still image written in the simple
    format gets a VP8X header first, which means rewriting it (it is one frame: small).
    """
    chunk = _riff_chunk(b"EXIF", exif)
    with open(path, "r+b") as fh:
        header = fh.read(30)
        if header[:4] != b"RIFF" or header[8:12] != b"WEBP":
            raise ValueError(f"{path.name} is not a WebP file")
        if header[12:16] == b"VP8X":
            fh.seek(20)
            fh.write(bytes([header[20] | VP8X_EXIF_FLAG]))
            fh.seek(0, 2)
            fh.write(chunk)
            size = fh.tell() - 8
        else:
            fh.seek(12)
            body = fh.read()
            width, height, alpha = _simple_canvas(body)
            flags = VP8X_EXIF_FLAG | (0x10 if alpha else 0)
            vp8x = _riff_chunk(b"VP8X", bytes([flags, 0, 0, 0])
                               + (width - 1).to_bytes(3, "little")
                               + (height - 1).to_bytes(3, "little"))
            fh.seek(12)
            fh.write(vp8x + body + chunk)
            size = fh.tell() - 8
        fh.seek(4)
        fh.write(struct.pack("<I", size))


def _riff_chunk(fourcc: bytes, payload: bytes) -> bytes:
    pad = b"\0" if len(payload) % 2 else b""
    return fourcc + struct.pack("<I", len(payload)) + payload + pad


def _simple_canvas(body: bytes) -> tuple[int, int, bool]:
    """Width, height and alpha of a simple-format WebP's single VP8 or VP8L chunk."""
    kind, data = body[:4], body[8:]
    if kind == b"VP8 ":  # frame tag (3 bytes), start code (3), then 14-bit sizes
        width, height = struct.unpack("<HH", data[6:10])
        return width & 0x3FFF, height & 0x3FFF, False
    if kind == b"VP8L":  # signature byte, then width-1 and height-1 (14 bits each), alpha
        bits = int.from_bytes(data[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool(bits >> 28 & 1)
    raise ValueError(f"unexpected WebP chunk {kind!r}")


def add_gif_comment(path: Path, text: str) -> None:
    """Put a comment extension before the GIF's first frame (where readers such as Pillow
    look), after the colour table and loop extension; the file is copied once to do so."""
    data = text.encode()
    blocks = b"".join(bytes([len(part)]) + part
                      for part in (data[i:i + 255] for i in range(0, len(data), 255)))
    comment = b"\x21\xfe" + blocks + b"\x00"
    copy = path.with_name(path.name + ".comment")
    try:
        with open(path, "rb") as src, open(copy, "wb") as dst:
            head = src.read(13)  # signature and logical screen descriptor
            if head[:3] != b"GIF":
                raise ValueError(f"{path.name} is not a GIF file")
            packed = head[10]
            if packed & 0x80:  # a global colour table follows
                head += src.read(3 * 2 ** ((packed & 7) + 1))
            loop = src.read(len(NETSCAPE_LOOP))
            if loop.startswith(NETSCAPE_LOOP[:14]):
                head, loop = head + loop, b""
            dst.write(head + comment + loop)
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(copy, path)
    finally:
        copy.unlink(missing_ok=True)
