"""MkDocs hook: a notebook page's table of contents points at its headings.

mkdocs-jupyter (0.26.3) builds a notebook's table of contents with Python-Markdown, which
drops inline code from a heading's text and id ("`jax.grad` runs the hand-written backward"
-> `#runs-the-hand-written-backward`), while nbconvert, which renders the page, keeps it
(`id="jaxgrad-runs-the-hand-written-backward"`): every such entry was a broken link and its
title lost the code. Both list the same headings in the same order, so each entry takes the
id and text of the heading it stands for.
"""

from __future__ import annotations

import html
import re

from mkdocs.exceptions import PluginError

HEADING = re.compile(r'<h([1-6]) id="([^"]+)"[^>]*>(.*?)</h\1>', re.S)
ANCHOR_LINK = re.compile(r'<a class="anchor-link"[^>]*>.*?</a>', re.S)


def _entries(toc):
    for item in toc:
        yield item
        yield from _entries(item.children)


def on_page_content(content, page, config, files):
    if not page.file.src_uri.endswith(".ipynb"):
        return content
    headings = [(int(level), anchor, html.unescape(re.sub(r"<[^>]+>", "", ANCHOR_LINK.sub("", text))).strip())
                for level, anchor, text in HEADING.findall(content)]
    entries = list(_entries(page.toc))
    depth = {entry.level for entry in entries}
    headings = [h for h in headings if h[0] in depth or not depth]
    if len(headings) != len(entries):
        raise PluginError(f"{page.file.src_uri}: {len(entries)} table-of-contents entries but {len(headings)} "
                          "headings; docs/hooks/notebook_toc.py cannot pair them")
    for entry, (_, anchor, text) in zip(entries, headings):
        entry.id, entry.title = anchor, text
    return content
