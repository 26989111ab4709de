"""The morning view of a folder run: index.html with each input beside its result, and failures.

Thumbnails are small JPEGs under OUT/.gallery/; the page has its style inline and no scripts, so
it opens from disk, mid-run too (it is rewritten atomically after every photo).
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import cv2
import numpy as np

from pipeline.image_io import atomic_path, read_photo, resize_long_side
from pipeline.report import BatchReport

INDEX = "index.html"
THUMBS = ".gallery"
THUMB_SIDE = 240

_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}
.grid{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;background:#fff;border:1px solid #ddd;padding:6px;border-radius:4px}
figure img{height:120px;margin-right:4px}
figcaption{font-size:.8em;max-width:500px;word-break:break-all}
.failed td{padding:2px 10px}.counts span{margin-right:1.5em}"""


def thumbnail_path(root: Path, output: Path, kind: str) -> Path:
    relative = output.relative_to(root)
    return root / THUMBS / relative.parent / f"{relative.name}.{kind}.jpg"


def write_thumbnail(root: Path, source: Path, output: Path) -> None:
    """Thumbnails of the input and its result (best effort: the gallery shows a link without
    one)."""
    for kind, path in (("input", source), ("result", output)):
        target = thumbnail_path(root, output, kind)
        try:
            rgb = resize_long_side(read_photo(path).rgb, THUMB_SIDE)
            bgr = cv2.cvtColor(np.round(rgb * 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
            with atomic_path(target) as tmp:
                cv2.imwrite(str(tmp), bgr, [cv2.IMWRITE_JPEG_QUALITY, 80])
        except Exception:
            continue


def _link(root: Path, path: Path) -> str:
    return html.escape(os.path.relpath(path, root).replace(os.sep, "/"), quote=True)


def render(report: BatchReport) -> str:
    root = report.output
    done = [r for r in report.results if r.status in ("done", "skipped") and r.item.output.exists()]
    failed = report.of("failed")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>stylize: "
        f"{html.escape(root.name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(str(report.input))} &rarr; {html.escape(str(root))}</h1>",
        f"<p class='counts'><span>done {len(report.of('done'))}</span><span>skipped (done before) "
        f"{len(report.of('skipped'))}</span>"
        f"<span>failed {len(failed)}</span></p>",
    ]
    for style in sorted({r.item.style_image for r in done}):
        parts.append(f"<h2>style: {html.escape(style.name)}</h2><div class='grid'>")
        for r in (r for r in done if r.item.style_image == style):
            thumbs = "".join(
                f"<a href='{_link(root, target)}'><img alt='{kind}' "
                f"src='{_link(root, thumbnail_path(root, r.item.output, kind))}'></a>"
                for kind, target in (("input", r.item.source), ("result", r.item.output))
            )
            caption = html.escape(str(r.item.source.name))
            parts.append(
                f"<figure class='done' data-output='{_link(root, r.item.output)}'>"
                f"{thumbs}<figcaption>{caption}</figcaption></figure>"
            )
        parts.append("</div>")
    if failed:
        parts.append("<h2>failed</h2><table class='failed'>")
        for r in failed:
            parts.append(
                f"<tr><td class='file'>{html.escape(str(r.item.source))}</td><td "
                f"class='reason'>{html.escape(r.reason)}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_gallery(report: BatchReport) -> Path:
    path = report.output / INDEX
    with atomic_path(path) as tmp:
        tmp.write_text(render(report), encoding="utf-8")
    return path
