#!/usr/bin/env python3
"""Build an offline HTML template for `dvc plots show` / `dvc plots diff`.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so without
internet the plots render blank.  This script inlines the three minified
libraries into a template that dvc_render can fill in.

Get the libraries from the npm registry (the versions DVC's dvc_render pins):

    mkdir -p /tmp/vega && cd /tmp/vega
    npm pack vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2
    for f in *.tgz; do mkdir -p "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}"; done

then, from the repository root:

    python scripts/make_plots_template.py /tmp/vega
    # or name the three files explicitly, in this order:
    python scripts/make_plots_template.py vega.min.js vega-lite.min.js vega-embed.min.js

and use it with:

    dvc plots show --html-template dvc_plots/offline.html

How dvc_render fills a template (dvc_render/html.py, HTML.embed): it calls
str.replace() for "{scripts}", "{plot_divs}" and "{refresh_tag}", not
str.format().  So braces in the inlined JavaScript must NOT be doubled, and
the only requirement is that the JS itself never contains one of those three
placeholders.  "{plot_divs}" is mandatory.  "{scripts}" is left out on
purpose: dvc_render would put the CDN <script src=...> tags there.
"""

import argparse
import json
import re
import sys
from pathlib import Path

# Load order matters: vega-lite needs vega, vega-embed needs both.
LIBRARIES = ["vega", "vega-lite", "vega-embed"]

# Placeholders that dvc_render replaces (plain str.replace, see module doc).
REQUIRED_PLACEHOLDERS = ["{plot_divs}"]
OPTIONAL_PLACEHOLDERS = ["{refresh_tag}"]
ALL_DVC_PLACEHOLDERS = ["{scripts}", "{plot_divs}", "{refresh_tag}"]

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "dvc_plots" / "offline.html"

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
    <!-- Offline template built by scripts/make_plots_template.py.
{provenance}
    -->
{inline_scripts}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def find_library(sources, name):
    """Return the path of `<name>.min.js` among the given files/folders."""
    filename = f"{name}.min.js"
    for src in sources:
        if src.is_file() and src.name == filename:
            return src
    for src in sources:
        if src.is_dir():
            # `npm pack` tarballs extract to <dir>/package/build/<name>.min.js
            matches = sorted(src.rglob(f"build/{filename}")) or sorted(src.rglob(filename))
            if matches:
                return matches[0]
    sys.exit(f"error: could not find {filename} in: {', '.join(map(str, sources))}")


def describe(js_path, name):
    """'name version (license)' from the package.json next to build/, if any."""
    package_json = js_path.parent.parent / "package.json"
    if package_json.is_file():
        meta = json.loads(package_json.read_text(encoding="utf8"))
        return f"{meta.get('name', name)} {meta.get('version', '?')} ({meta.get('license', '?')})"
    return f"{name} (version unknown, from {js_path.name})"


def make_inline_safe(js, name):
    """Make minified JS safe to put between <script> and </script>."""
    # A trailing source-map comment would point at a file we do not ship.
    js = re.sub(r"\n?//# sourceMappingURL=\S+\s*$", "", js)
    # "</script" would end the element early, and "<!--" can switch the HTML
    # parser into its "script data escaped" state.  In minified code these only
    # occur inside string or regex literals, where "\x3C" means the same "<".
    js = re.sub(r"<(?=/script)", r"\\x3C", js, flags=re.IGNORECASE)
    js = js.replace("<!--", "\\x3C!--")
    for placeholder in ALL_DVC_PLACEHOLDERS:
        if placeholder in js:
            sys.exit(f"error: {name} contains '{placeholder}', which dvc_render would replace")
    return js


def build_template(js_paths):
    """Return the template HTML for a {library name: .min.js path} mapping."""
    provenance = []
    scripts = []
    for name in LIBRARIES:
        path = js_paths[name]
        js = make_inline_safe(path.read_text(encoding="utf8"), name)
        provenance.append(f"    {describe(path, name)}")
        scripts.append(f'    <script type="text/javascript">/* {name} */\n{js}\n    </script>')
    html = PAGE.format(
        provenance="\n".join(provenance),
        inline_scripts="\n".join(scripts),
        refresh_tag="{refresh_tag}",
        plot_divs="{plot_divs}",
    )
    for placeholder in REQUIRED_PLACEHOLDERS:
        assert html.count(placeholder) == 1, placeholder
    return html


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "sources",
        nargs="+",
        type=Path,
        help="the three .min.js files, or folder(s) where the npm pack tarballs were extracted",
    )
    parser.add_argument(
        "-o", "--output", type=Path, default=DEFAULT_OUTPUT,
        help="where to write the template (default: dvc_plots/offline.html)",
    )
    args = parser.parse_args(argv)

    js_paths = {name: find_library(args.sources, name) for name in LIBRARIES}
    html = build_template(js_paths)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(html, encoding="utf8")
    size = args.output.stat().st_size
    print(f"wrote {args.output} ({size / 1024:.0f} KiB)")
    for name in LIBRARIES:
        print(f"  {describe(js_paths[name], name)}: {js_paths[name]}")


if __name__ == "__main__":
    main()
