"""Jinja2 rendering with the report's CSS and JS inlined: every page is one file that needs no network.

Assets live in ``harness/reports/assets`` and are pasted into the page;
data for scripts goes into ``<script type="application/json">`` with ``</``
escaped, so no value from a history can close the script tag.
"""
from __future__ import annotations

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
    return env


def json_script(value: Any) -> jinja2.utils.markupsafe.Markup:
    """JSON safe to put inside a <script> element (``<``, ``>``, ``&`` escaped as unicode)."""
    text = json.dumps(value, separators=(",", ":"), default=str)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return jinja2.utils.markupsafe.Markup(text)


def render_page(template: str, **context: Any) -> str:
    """Render one of ``templates/`` with the shared globals."""
    return _env().get_template(template).render(**context)
