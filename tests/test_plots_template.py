"""The offline `dvc plots` template (dvc_plots/offline.html) works without a CDN.

Regenerate the template with scripts/make_plots_template.py.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import load_script

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "dvc_plots" / "offline.html"
SCRIPT = ROOT / "scripts" / "make_plots_template.py"

CSV = "epoch,accuracy\n0,0.3125\n1,0.4571\n2,0.5389\n"


def _template_text():
    return TEMPLATE.read_text(encoding="utf8")


def _load_script():
    return load_script(str(SCRIPT.relative_to(ROOT)))


def _assert_offline_page(html):
    """Vega libraries inline, no CDN, and the CSV's data embedded."""
    assert "/* vega */" in html and "/* vega-lite */" in html and "/* vega-embed */" in html
    assert "cdn.jsdelivr.net" not in html
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.IGNORECASE)
    assert "vegaEmbed('#" in html
    for value in ("0.3125", "0.4571", "0.5389"):
        assert value in html


def test_template_exists_and_is_small():
    assert TEMPLATE.is_file()
    assert TEMPLATE.stat().st_size < 2 * 1024 * 1024


def test_template_has_dvc_placeholders():
    html = _template_text()
    assert html.count("{plot_divs}") == 1  # required by dvc_render
    assert "{scripts}" not in html  # dvc_render would insert CDN <script src> tags there


def test_template_has_no_remote_scripts():
    html = _template_text()
    assert not re.search(r"<script[^>]*\bsrc\s*=\s*[\"']?https?://", html, re.IGNORECASE)
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.IGNORECASE)
    # Exactly the three inline scripts, each closed once: the inlined JS holds
    # no stray "</script" that would end an element early.
    assert len(re.findall(r"<script\b", html, re.IGNORECASE)) == 3
    assert len(re.findall(r"</script", html, re.IGNORECASE)) == 3
    assert "sourceMappingURL" not in html


def test_make_inline_safe_neutralises_html_breakers():
    script = _load_script()
    js = 'var a="</script>",b="</SCRIPT >",c="<!--";\n//# sourceMappingURL=x.min.js.map\n'
    safe = script.make_inline_safe(js, "test")
    assert "</script" not in safe.lower() and "<!--" not in safe
    assert "sourceMappingURL" not in safe
    assert '"\\x3C/script>"' in safe  # same string value in JS
    # dvc_render fills the template with str.replace, not str.format: no brace doubling.
    assert script.make_inline_safe("f({a:1})", "t") == "f({a:1})"
    with pytest.raises(SystemExit):
        script.make_inline_safe('x="{plot_divs}"', "test")


def test_render_html_with_dvc_render(tmp_path):
    from dvc_render import VegaRenderer, render_html

    datapoints = [
        {"epoch": "0", "accuracy": "0.3125"},
        {"epoch": "1", "accuracy": "0.4571"},
        {"epoch": "2", "accuracy": "0.5389"},
    ]
    renderer = VegaRenderer(datapoints, "acc.csv", x="epoch", y="accuracy")
    out = tmp_path / "out" / "index.html"
    render_html([renderer], out, html_template=str(TEMPLATE))
    html = out.read_text(encoding="utf8")
    _assert_offline_page(html)
    assert "{plot_divs}" not in html and "{refresh_tag}" not in html


def test_dvc_plots_show_uses_template(tmp_path):
    if shutil.which("git") is None:
        pytest.fail("git is required for this test")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    (tmp_path / "acc.csv").write_text(CSV)
    (tmp_path / "dvc.yaml").write_text(
        "plots:\n  - acc.csv:\n      x: epoch\n      y: accuracy\n"
    )

    def run(*cmd):
        subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=60)

    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    run(
        sys.executable, "-m", "dvc", "plots", "show",
        "--html-template", str(TEMPLATE), "-o", "out",
    )
    _assert_offline_page((tmp_path / "out" / "index.html").read_text(encoding="utf8"))
