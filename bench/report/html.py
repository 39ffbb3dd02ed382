"""The study's single self-contained report file: report.html with the tables and the plots embedded
(base64 PNG), so it opens in any browser with nothing beside it; report.md is the same in markdown with
the images as files beside it."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.core.records import atomic_write_text

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #555; font-size: 0.9em; }
"""


@dataclass(frozen=True)
class Section:
    title: str
    text: str = ""
    table: pd.DataFrame | None = None
    images: tuple[Path, ...] = ()


def write_html(path: Path, title: str, sections: list[Section]) -> Path:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]  # fmt: skip
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.text:
            parts += [f"<p class='note'>{html.escape(line)}</p>" for line in s.text.split("\n") if line]
        if s.table is not None and not s.table.empty:
            parts.append(s.table.to_html(index=False, escape=True, border=0))
        for image in s.images:
            data = base64.b64encode(image.read_bytes()).decode()
            parts.append(f"<img alt='{html.escape(image.stem)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    atomic_write_text(path, "\n".join(parts))
    return path


def write_markdown(path: Path, title: str, sections: list[Section]) -> Path:
    parts = [f"# {title}", ""]
    for s in sections:
        parts += [f"## {s.title}", ""]
        if s.text:
            parts += [s.text, ""]
        if s.table is not None and not s.table.empty:
            parts += [s.table.to_markdown(index=False), ""]
        parts += [f"![{image.stem}]({image.name})" for image in s.images]
        parts.append("")
    atomic_write_text(path, "\n".join(parts))
    return path
