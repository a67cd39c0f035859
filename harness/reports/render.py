"""Jinja2 rendering with the report's CSS and JS inlined: every page is one file that needs no network.

Assets live in ``harness/reports/assets`` and are pasted into the page;
data for scripts goes into ``<script type="application/json">`` with ``</``
escaped, so no value from a history can close the script tag.
"""
from __future__ import annotations

import base64
import gzip
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

HERE = Path(__file__).parent


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)
    env.globals["asset"] = lambda name: jinja2.utils.markupsafe.Markup((HERE / "assets" / name).read_text(encoding="utf-8"))
    env.filters["json_script"] = json_script
    env.globals["embed_data"] = embed_data
    return env


def json_script(value: Any) -> jinja2.utils.markupsafe.Markup:
    """JSON safe to put inside a <script> element (``<``, ``>``, ``&`` escaped as unicode)."""
    return jinja2.utils.markupsafe.Markup(_escape_json(json.dumps(value, separators=(",", ":"), default=str)))


#: Data larger than this is embedded gzip-compressed (base64): a 100,000-op run's 6 MB of JSON becomes
#: ~1.5 MB the browser reads and parses several times faster; smaller data stays readable JSON.
COMPRESS_ABOVE = 1_000_000


def embed_data(value: Any, element_id: str) -> jinja2.utils.markupsafe.Markup:
    """A <script> element holding the page's data: JSON, or gzip+base64 of it when large."""
    text = json.dumps(value, separators=(",", ":"), default=str)
    if len(text) <= COMPRESS_ABOVE:
        return jinja2.utils.markupsafe.Markup(
            f'<script type="application/json" id="{element_id}">{_escape_json(text)}</script>')
    packed = base64.b64encode(gzip.compress(text.encode("utf-8"), 6)).decode("ascii")
    return jinja2.utils.markupsafe.Markup(
        f'<script type="application/octet-stream" id="{element_id}" data-encoding="gzip-base64">{packed}</script>')


def _escape_json(text: str) -> str:
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(template: str, **context: Any) -> str:
    """Render one of ``templates/`` with the shared globals."""
    return _env().get_template(template).render(**context)
