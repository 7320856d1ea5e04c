"""report.html: the check's report.md rendered as one self-contained HTML page.

report.md is the single source of the report's sections (``report.report_markdown``); this module
renders that text as HTML, so a section added to report.md appears in report.html with no change
here. It converts the subset of Markdown the report is written in: headings, paragraphs, bullet
lists, pipe tables, fenced code blocks, images on a line of their own, ``**bold**`` and
```code``` spans. Figures are embedded as base64 data URIs read from the files the Markdown links;
the page has inline CSS only: no script, no font, no image or link that leaves the file.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
_IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<path>[^)\s]+)\)\s*$")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_NUMBER = re.compile(r"^[-+]?(\d[\d,]*\.?\d*|\.\d+)([eE][-+]?\d+)?%?$|^-?inf$|^nan$")
# A verdict's leading word in capitals (OK:, PROBLEMS:, MISFIT in, CANNOT BE COMPUTED:, ...),
# after the check's name in bold.
_VERDICT = re.compile(r"^(?:<strong>[^<]*</strong>\s*)?(?P<word>[A-Z]{2,}(?: [A-Z]{2,})*)(?=:| in )")

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0;
       color: #1d1d1f; background: #fff; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 1.5em 2em 4em; }
h1 { font-size: 1.6em; border-bottom: 2px solid #ccc; padding-bottom: .3em; }
h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
nav { font-size: .9em; background: #f6f6f6; padding: .5em 1em; border-radius: 4px; }
nav a { margin-right: 1em; color: #0b5cad; text-decoration: none; }
code, pre { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .9em; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; border-radius: 4px; }
table { border-collapse: collapse; margin: 1em 0; font-size: .88em; }
th, td { border-bottom: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.table-wrap { overflow-x: auto; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; }
ul.verdicts { padding-left: 0; }
ul.verdicts li { border-left: 4px solid #999; padding: .2em .6em; list-style: none; margin-bottom: .4em; }
ul.verdicts li.ok { border-left-color: #2e7d32; }
ul.verdicts li.flag { border-left-color: #c62828; background: #fff5f5; }
.missing { color: #c62828; }
"""


# src= or href= that is neither a data URI nor an anchor in the page
_EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*(?!["']?(?:data:|#))""", re.IGNORECASE)


def external_references(page: str) -> list[str]:
    """What in an HTML page could load or link anything outside it (a self-contained page has
    nothing): src or href other than a data URI or an anchor, script, link, iframe, object, embed
    and base elements, and CSS url() and @import.

    Parameters
    ----------
    page : str
        HTML text.

    Returns
    -------
    list of str
        The offending fragments; empty for a self-contained page.
    """
    found = [m.group(0) for m in _EXTERNAL.finditer(page)]
    found += re.findall(r"<(?:script|link|iframe|object|embed|base)\b[^>]*>", page, flags=re.IGNORECASE)
    found += re.findall(r"@import|url\(", page, flags=re.IGNORECASE)
    return found


def inline(text: str) -> str:
    """Markdown inline markup to HTML: code spans, bold, and links as plain text (no href)."""
    out = []
    for i, piece in enumerate(re.split(r"(`[^`]*`)", text)):
        if i % 2:  # a code span: shown as written
            out.append(f"<code>{html.escape(piece[1:-1])}</code>")
            continue
        piece = piece.replace("\\|", "|")
        piece = html.escape(piece)
        piece = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", piece)
        # a link keeps its text and shows its target as text: the page links nowhere
        piece = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r"\1 (\2)", piece)
        out.append(piece)
    return "".join(out)


def slug(title: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    taken.add(name)
    return name


def _cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [c.strip() for c in _CELL_SPLIT.split(line)]


def table(lines: list[str]) -> str:
    """A pipe table (header, separator, rows) as an HTML table; numeric cells right-aligned."""
    head = _cells(lines[0])
    separator = len(lines) > 1 and set(lines[1].strip()) <= set("|-: ")
    body = [_cells(line) for line in lines[2 if separator else 1 :]]
    rows = ["<tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr>"]
    for cells in body:
        tds = []
        for j, c in enumerate(cells):
            numeric = j > 0 and _NUMBER.match(c.replace("\\|", "|")) is not None
            tds.append(f'<td class="num">{inline(c)}</td>' if numeric else f"<td>{inline(c)}</td>")
        rows.append("<tr>" + "".join(tds) + "</tr>")
    return '<div class="table-wrap"><table>\n' + "\n".join(rows) + "\n</table></div>"


def image(alt: str, path: str, base: Path) -> str:
    """An image embedded as a data URI from ``base / path``; a visible note when it is missing
    or of a type that cannot be embedded (never a link to the file)."""
    file = base / path
    mime = IMAGE_TYPES.get(file.suffix.lower())
    if mime is None or not file.is_file():
        why = "not found" if mime else "not an image type the report embeds"
        return f'<p class="missing">Figure {html.escape(alt)} ({html.escape(path)}): {why}.</p>'
    data = base64.b64encode(file.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:{mime};base64,{data}" alt="{html.escape(alt, quote=True)}">'
        f"<figcaption>{html.escape(alt)}</figcaption></figure>"
    )


def bullet_list(items: list[str]) -> str:
    """A bullet list; a list of verdicts (an item opening with OK:, PROBLEMS:, MISFIT in, ...) gets
    a green or red bar per item, grey for its items without such a word."""
    bodies = [inline(t) for t in items]
    words = [m.group("word") if (m := _VERDICT.match(b)) else "" for b in bodies]
    if not any(words):
        return "<ul>\n" + "\n".join(f"<li>{b}</li>" for b in bodies) + "\n</ul>"
    kinds = ["ok" if w == "OK" else "flag" if w else "note" for w in words]
    return '<ul class="verdicts">\n' + "\n".join(f'<li class="{k}">{b}</li>' for k, b in zip(kinds, bodies)) + "\n</ul>"


def render_blocks(markdown: str, base: Path) -> tuple[str, list[tuple[str, str]], str]:
    """(body HTML, [(anchor, title)] of the level-2 headings, the level-1 title) of Markdown text."""
    lines = markdown.splitlines()
    out: list[str] = []
    toc: list[tuple[str, str]] = []
    taken: set[str] = set()
    title = ""
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            out.append("<p>" + inline(" ".join(paragraph)) + "</p>")
            paragraph.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            flush()
            lang = stripped[3:].strip()
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            cls = f' class="language-{html.escape(lang, quote=True)}"' if lang else ""
            out.append(f"<pre><code{cls}>" + html.escape("\n".join(lines[i + 1 : j])) + "</code></pre>")
            i = j + 1
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        if heading:
            flush()
            level, text = len(heading.group(1)), heading.group(2).strip()
            anchor = slug(re.sub(r"[`*]", "", text), taken)
            if level == 1 and not title:
                title = re.sub(r"[`*]", "", text)
            if level == 2:
                toc.append((anchor, re.sub(r"[`*]", "", text)))
            out.append(f'<h{level} id="{anchor}">{inline(text)}</h{level}>')
        elif stripped.startswith("|"):
            flush()
            j = i
            while j < len(lines) and lines[j].strip().startswith("|"):
                j += 1
            out.append(table(lines[i:j]))
            i = j
            continue
        elif re.match(r"^[-*]\s+", stripped):
            flush()
            items = []
            j = i
            while j < len(lines) and lines[j].strip():
                if re.match(r"^[-*]\s+", lines[j].strip()):
                    items.append(re.sub(r"^[-*]\s+", "", lines[j].strip()))
                else:  # a continuation line of the item above
                    items[-1] += " " + lines[j].strip()
                j += 1
            out.append(bullet_list(items))
            i = j
            continue
        elif _IMAGE.match(stripped):
            flush()
            m = _IMAGE.match(stripped)
            out.append(image(m.group("alt"), m.group("path"), base))
        elif not stripped:
            flush()
        else:
            paragraph.append(stripped)
        i += 1
    flush()
    return "\n".join(out), toc, title


def render(markdown: str, base: str | Path) -> str:
    """The whole page: the Markdown report as HTML, figures embedded, a contents line on top.

    Parameters
    ----------
    markdown : str
        The report's Markdown (report.md's text).
    base : str or pathlib.Path
        The folder the Markdown's image paths are relative to.

    Returns
    -------
    str
        A complete HTML document that references nothing outside itself.
    """
    body, toc, title = render_blocks(markdown, Path(base))
    nav = ""
    if toc:
        nav = "<nav>" + "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t in toc) + "</nav>"
    if body.startswith("<h1"):  # the contents line goes under the title
        end = body.index("</h1>") + len("</h1>")
        body = body[:end] + "\n" + nav + body[end:]
    else:
        body = nav + "\n" + body
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title or 'bayes-spill report')}</title>\n"
        f"<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
