"""The documentation site (issue 24): `mkdocs build --strict` passes, its internal links and
anchors resolve, every package's public names have their API entry, the results pages come
from `benchmarks/results/*.json`, and the home page in a real browser has its navigation and
search.

One strict build per session (a module fixture, about 10-25 s), into a temporary folder: a
broken link or anchor in a page, a missing page, or an mkdocstrings lookup that fails is an
error there (mkdocs.yml's `validation` settings warn, and `--strict` fails on a warning; a
test below checks that those settings do fail on a broken link and anchor). The browser test
runs where Debian's Chromium is installed (`apt-get install chromium`) and is skipped
elsewhere, saying so.
"""

from __future__ import annotations

import functools
import http.server
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["layers", "kernels", "nn", "nnx", "models", "train", "inference", "data"]  # each with its __all__
MODULES = ["metrics", "gradcheck", "theory"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          cwd=config.parent, env=ENV, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.fail("mkdocs is not installed: the docs extra, pip install -e '.[docs]' (make test installs it)")
    out = tmp_path_factory.mktemp("site")
    done = mkdocs_build(ROOT / "mkdocs.yml", out)
    assert done.returncode == 0, "mkdocs build --strict failed:\n" + done.stderr[-4000:]
    return out


def test_the_strict_build_passes_and_has_every_page(site):
    nav_pages = re.findall(r":\s*([\w/.-]+\.(?:md|ipynb))\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert len(nav_pages) >= 30
    for page in nav_pages:
        built = site / re.sub(r"(index)?\.(md|ipynb)$", "", page) / "index.html"
        assert built.is_file(), f"{page} was not built"
    assert (site / "search" / "search_index.json").is_file()


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        for key in ("href", "src"):
            if attrs.get(key) and not (tag == "link" and key == "href" and "stylesheet" not in (attrs.get("rel") or "")):
                self.hrefs.append(attrs[key])


@functools.cache
def _parsed(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def _target(site: Path, page: Path, href: str) -> tuple[Path, str] | None:
    """The file and fragment an internal link of `page` points to; None for an external one."""
    url = urlparse(href)
    if url.scheme or url.netloc or href.startswith(("mailto:", "javascript:")):
        return None
    base = "/" + str(page.relative_to(site)).replace(os.sep, "/")
    path = unquote(urlparse(urljoin(base, url.path)).path) if url.path else base
    target = site / path.lstrip("/")
    if target.is_dir() or path.endswith("/"):
        target = target / "index.html"
    return target, unquote(url.fragment)


def test_every_internal_link_and_anchor_of_the_built_site_resolves(site):
    broken = []
    pages = sorted(site.rglob("*.html"))
    checked = 0
    for page in pages:
        for href in _parsed(page).hrefs:
            target = _target(site, page, href)
            if target is None:
                continue
            path, fragment = target
            checked += 1
            if not path.exists():
                broken.append(f"{page.relative_to(site)}: {href} (no {path.relative_to(site)})")
            elif fragment and path.suffix == ".html" and fragment not in _parsed(path).ids:
                broken.append(f"{page.relative_to(site)}: {href} (no anchor #{fragment})")
    assert checked > 1000, checked
    assert not broken, f"{len(broken)} broken links:\n" + "\n".join(broken[:40])


def test_the_validation_settings_fail_a_broken_link_and_a_broken_anchor(tmp_path):
    """What makes the strict build a link check: mkdocs.yml's `validation`, on a two-page site."""
    import yaml  # mkdocs's own dependency

    validation = yaml.safe_load(re.search(r"^validation:\n(?:  .*\n)+", (ROOT / "mkdocs.yml").read_text(),
                                          re.M).group(0))["validation"]
    for link in ("other.md#no-such-heading", "missing.md"):
        (tmp_path / "docs").mkdir(exist_ok=True)
        (tmp_path / "docs" / "index.md").write_text(f"# Home\n\n[a link]({link})\n")
        (tmp_path / "docs" / "other.md").write_text("# Other\n\n## A heading\n")
        (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump({"site_name": "t", "validation": validation}))
        done = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
        assert done.returncode != 0 and link.split("#")[-1] in done.stderr, (link, done.stderr[-2000:])


def _public_names(module_name: str) -> list[str]:
    module = importlib.import_module(f"jaxseq.{module_name}")
    names = getattr(module, "__all__", None)
    if names is None:  # a module without __all__: its public functions and classes defined there
        names = [name for name, value in vars(module).items() if not name.startswith("_")
                 and getattr(value, "__module__", None) == module.__name__ and callable(value)]
    return list(names)


@pytest.mark.parametrize("module_name", PACKAGES + MODULES)
def test_every_public_name_has_its_api_entry(site, module_name):
    page = site / "api" / module_name / "index.html"
    ids = _parsed(page).ids
    # a name that is also its module's name (jaxseq.layers.rnn, the function, from jaxseq/layers/rnn.py) is
    # documented from that module: jaxseq.layers.rnn.rnn
    missing = [name for name in _public_names(module_name)
               if f"jaxseq.{module_name}.{name}" not in ids and f"jaxseq.{module_name}.{name}.{name}" not in ids]
    assert not missing, f"api/{module_name}: no entry for {missing}"
    assert "doc-source" in page.read_text(encoding="utf-8") or "Source code in" in page.read_text(encoding="utf-8")


def test_the_results_pages_come_from_every_recorded_json_with_machine_date_and_mode(site):
    recorded = sorted(str(p.relative_to(ROOT / "benchmarks" / "results"))
                      for p in (ROOT / "benchmarks" / "results").rglob("*.json"))
    text = (site / "results" / "speed" / "index.html").read_text() + (site / "results" / "quality" / "index.html").read_text()
    for name in recorded:
        line = re.search(rf"benchmarks/results/{re.escape(name)}</code> — machine: ([^;<]+); date: ([^;<]+); mode: ([^<]+)",
                         text)
        assert line and "not recorded" not in line.group(0), f"{name}: no provenance line on the results pages"
        run = json.loads((ROOT / "benchmarks" / "results" / name).read_text())
        assert run.get("meta", run)["date"] in line.group(2)  # the ablation records its date at the top level
    # a number from the JSON, rendered by the report function: the first speed run's jaxseq median
    first = json.loads((ROOT / "benchmarks" / "results" / "latest-1core.json").read_text())["results"][0]
    assert re.search(rf">{first['median_ms']:.1f}</td>", (site / "results" / "speed" / "index.html").read_text())


def test_a_recorded_json_that_no_page_shows_fails_the_build():
    spec = importlib.util.spec_from_file_location("results_pages", ROOT / "docs" / "hooks" / "results_pages.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    from mkdocs.exceptions import PluginError

    with pytest.raises(PluginError, match="lm_speed.json .*shown on no page"):
        hook._checked_all_listed({name for name, _ in hook.SPEED_RUNS if name != "lm_speed.json"}
                                 | {name for name, _, _ in hook.QUALITY_RUNS}, "page")
    assert hook._checked_all_listed({name for name, _ in hook.SPEED_RUNS}
                                    | {name for name, _, _ in hook.QUALITY_RUNS}, "page") == "page"


@pytest.fixture(scope="module")
def served(site):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_the_home_page_in_chromium_has_the_navigation_and_the_search(served, site):
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                              "--disable-component-update", "--disable-sync", "--no-first-run",
                              f"--user-data-dir={profile}", "--virtual-time-budget=3000", "--dump-dom", served],
                             capture_output=True, text=True, timeout=120).stdout
    assert "<title>jaxseq</title>" in dom, dom[:500]
    nav = re.findall(r'class="md-nav__link[^"]*"[^>]*href="([^"]+)"', dom) + \
        re.findall(r'href="([^"]+)"[^>]*class="md-nav__link', dom)
    for page in ("getting-started/", "guides/layers/", "guides/language-models/", "api/layers/", "results/speed/",
                 "notebooks/RNN_Captioning/", "changelog/"):
        assert any(href.rstrip("/").endswith(page.rstrip("/")) for href in nav), f"navigation has no {page}"
    assert 'class="md-search__input"' in dom and "data-md-component=\"search" in dom
    index = json.loads((site / "search" / "search_index.json").read_text())
    locations = {doc["location"] for doc in index["docs"]}
    assert {"getting-started/", "api/layers/", "guides/language-models/"} <= locations
    assert any("lstm_backward" in doc["title"] for doc in index["docs"])


def test_the_readme_is_a_front_page_that_links_every_guide():
    """Issue 24: the README is about 150-250 lines; what it no longer holds is in the guides,
    and it links each of them (docs/guides/*.md) and Getting started."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert 150 <= len(readme.splitlines()) <= 250, len(readme.splitlines())
    linked = set(re.findall(r"\]\((docs/[\w/.-]+\.md)\)", readme))
    guides = {str(p.relative_to(ROOT)) for p in (ROOT / "docs" / "guides").glob("*.md")}
    assert guides | {"docs/getting-started.md"} <= linked, sorted(guides - linked)
    assert all((ROOT / path).is_file() for path in linked)
    assert "torch==2.13.0" in readme and "download.pytorch.org/whl/cpu" in readme  # jaxseq[dev] and CPU-only torch


def test_the_api_pages_show_doctests_as_code_and_labelled_blocks_as_lists(site):
    """docs/hooks/griffe_docstrings.py: without it a doctest is three nested quotes run into one
    line, and an `Inputs:` block a collapsed box (both were so before it)."""
    pages = {name: (site / "api" / name / "index.html").read_text(encoding="utf-8") for name in PACKAGES + MODULES}
    assert not [name for name, html in pages.items() if "<blockquote>" in html]
    assert not [name for name, html in pages.items() if re.search(r'<details class="(inputs|fields)"', html)]
    assert '<span class="gp">&gt;&gt;&gt; </span>' in pages["nn"]  # LSTM's doctest, a highlighted session
    assert re.search(r"<strong>Fields:</strong></p>\s*<ul>", pages["models"])  # ClassificationTransformer's fields
