"""Local copies of the scripts and styles the HTML reports otherwise load from public CDNs, so
that the Great Expectations Data Docs and `dvc plots show` open without the internet.

The files come from npm packages pinned by tools/web-assets/package-lock.json, which
`make setup` installs (`WARDROBE_WEB_ASSETS` names another node_modules directory).

- `localize_site(site)`: the Data Docs under `site` load every asset from
  `site/static/vendor/`, copied there; GX's remote logo (whose URL carries a data-context id)
  becomes the local copy GX ships.
- `python -m wardrobe.webassets dvc-template OUT`: the page template for `dvc plots show`
  (`.dvc/config.local`: plots.html_template), with vega, vega-lite and vega-embed inlined.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from wardrobe.errors import WardrobeError
from wardrobe.fsio import atomic_file, project_root

log = logging.getLogger(__name__)

ASSETS = {  # what Great Expectations' Data Docs load -> the file under node_modules
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css":
        "bootstrap/dist/css/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js":
        "bootstrap/dist/js/bootstrap.min.js",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/dist/jquery.min.js",
    # Bootstrap 4.3.1 needs popper.js 1.14.7 or newer; GX's page names 1.12.9.
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js":
        "popper.js/dist/umd/popper.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css":
        "bootstrap-table/dist/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js":
        "bootstrap-table/dist/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker/dist/css/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker/dist/js/bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css":
        "@fortawesome/fontawesome-free/css/all.min.css",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "@forevolve/bootstrap-dark/dist/css/bootstrap-prefers-dark.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega/build/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite/build/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed/build/vega-embed.min.js",
}  # fmt: skip
COMPANIONS = {  # files a stylesheet loads by relative URL
    "@fortawesome/fontawesome-free/css/all.min.css": "@fortawesome/fontawesome-free/webfonts",
}
VEGA = ("vega/build/vega.min.js", "vega-lite/build/vega-lite.min.js",
        "vega-embed/build/vega-embed.min.js")  # fmt: skip
GX_REMOTE_IMAGE = re.compile(r"https://great-expectations-web-assets\.s3[^\"')\s]*")
# Subresource integrity and CORS attributes fail on file:// pages; the files are pinned by npm.
INTEGRITY = re.compile(r'\s(?:integrity|crossorigin)="[^"]*"')
REMOTE_RESOURCE = re.compile(
    r"<(?:script|img)\b[^>]*\ssrc=\"(https?://[^\"]+)\"|<link\b[^>]*\shref=\"(https?://[^\"]+)\""
    r"|url\(['\"]?(https?://[^'\")]+)"
)


class AssetsMissing(WardrobeError):
    """The npm packages holding the web assets are not installed."""


def assets_dir() -> Path:
    """node_modules of tools/web-assets (or WARDROBE_WEB_ASSETS)."""
    configured = os.environ.get("WARDROBE_WEB_ASSETS")
    return Path(configured) if configured else project_root() / "tools/web-assets/node_modules"


def require_assets(assets: Path) -> None:
    if not all((assets / rel).is_file() for rel in ASSETS.values()):
        raise AssetsMissing(
            f"{assets}: the pinned web assets are not installed; run `make setup` (it needs "
            "npm) or point WARDROBE_WEB_ASSETS at a node_modules directory holding them"
        )


def localize_site(site: Path, assets: Path | None = None) -> list[str]:
    """Rewrite every page and stylesheet under `site` to load its assets from
    site/static/vendor/ and GX's images from site/static/images/; return the remote URLs
    that are still loaded (none, for the Data Docs of this GX version)."""
    assets = assets or assets_dir()
    require_assets(assets)
    vendor, logo = site / "static" / "vendor", site / "static" / "images" / "logo-long.png"
    remaining = []
    for path in sorted([*site.rglob("*.html"), *site.rglob("*.css")]):
        text = original = path.read_text()
        for url, rel in ASSETS.items():
            if url in text:
                _copy(assets, rel, vendor)
                text = re.sub(re.escape(url) + r'(?=["\')])', _relative(vendor / rel, path), text)
        text = GX_REMOTE_IMAGE.sub(_relative(logo, path), text)
        text = INTEGRITY.sub("", text)
        if text != original:
            path.write_text(text)
        remaining += [next(filter(None, m.groups())) for m in REMOTE_RESOURCE.finditer(text)]
    return sorted(set(remaining))


def _copy(assets: Path, rel: str, vendor: Path) -> None:
    for item in (rel, COMPANIONS.get(rel)):
        if item and not (vendor / item).exists():
            (vendor / item).parent.mkdir(parents=True, exist_ok=True)
            copy = shutil.copytree if (assets / item).is_dir() else shutil.copyfile
            copy(assets / item, vendor / item)


def _relative(target: Path, page: Path) -> str:
    return Path(os.path.relpath(target, page.parent)).as_posix()


def dvc_template(assets: Path | None = None) -> str:
    """DVC's plots page with the vega scripts inlined instead of loaded from a CDN. Without a
    {scripts} placeholder, DVC adds no script tags of its own."""
    assets = assets or assets_dir()
    require_assets(assets)
    scripts = "\n".join(f"<script>\n{(assets / rel).read_text()}\n</script>" for rel in VEGA)
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n{refresh_tag}\n<meta charset="utf-8">\n'
        f"<title>DVC Plot</title>\n{scripts}\n"
        "<style>table { border-spacing: 15px; }</style>\n</head>\n"
        "<body>\n{plot_divs}\n</body>\n</html>\n"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    template = commands.add_parser("dvc-template", help="write the `dvc plots show` template")
    template.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    with atomic_file(args.out) as tmp:
        tmp.write_text(dvc_template())
    print(f"webassets: {args.out} written (vega, vega-lite and vega-embed inlined)")


if __name__ == "__main__":
    from wardrobe.cli import run_stage

    run_stage("webassets", main)
