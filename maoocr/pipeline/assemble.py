"""Pages → document: full text, markdown and stats, in page order; failed pages keep their place and reason."""

from __future__ import annotations

from collections import Counter

from maoocr.protocol.ocr import DocumentResult, DocumentStats, PageResult

PAGE_BREAK = "\n\f\n"  # form feed between pages: the traditional page separator of plain text


def assemble(fmt: str, pages: list[PageResult]) -> DocumentResult:
    pages = sorted(pages, key=lambda p: p.index)
    text = PAGE_BREAK.join(p.text for p in pages)
    markdown = "\n\n".join(_page_markdown(p) for p in pages)
    stats = DocumentStats(
        pages=len(pages), pages_failed=sum(p.status == "failed" for p in pages),
        lines=sum(len(p.lines) for p in pages), characters=sum(len(p.text) for p in pages),
        strategies=dict(Counter(p.strategy for p in pages if p.strategy)),
        total_ms=round(sum(p.timings_ms.get("page_total", 0.0) for p in pages), 1))
    return DocumentResult(format=fmt, pages=pages, text=text, markdown=markdown, stats=stats)


def _page_markdown(page: PageResult) -> str:
    # An HTML comment marks each page: invisible when rendered, yet a reader can still find page N.
    head = f"<!-- page {page.page} -->"
    if page.status == "failed":
        return f"{head}\n\n> This page failed: {page.error.message if page.error else 'unknown reason'}"
    return f"{head}\n\n{page.markdown or page.text}"
