"""The Markdown report of a run: a header saying what it was measured on, then one table per
case (`jaxseq.timing.format_cases`)."""

from __future__ import annotations

from typing import Sequence

from jaxseq.timing import format_cases


def _header(meta: dict) -> list[str]:
    """The bullet lines about the machine, software, date, timing mode and load."""
    lines = [
        f"- Machine: {meta.get('host_cpu')} ({meta.get('cpu_count')} cores; "
        f"{', '.join(meta.get('cpu_flags', []))}), {meta.get('platform')}",
        f"- Software: jax {meta.get('jax')} ({meta.get('jax_backend')}), flax {meta.get('flax')}, "
        f"torch {meta.get('torch')} (torch threads: {meta.get('torch_threads')}), numpy {meta.get('numpy')}, "
        f"python {meta.get('python')}",
        f"- Date: {meta.get('date')}; XLA_FLAGS: `{meta.get('xla_flags') or '(none)'}`; "
        f"malloc tuned: {meta.get('malloc_tuned')}",
        f"- Timing: {meta.get('timing_mode')}",
        f"- Load average (1/5/15 min) at start: {meta.get('load_average')}, at end: {meta.get('load_average_end')}",
    ]
    if meta.get("best_matmul_gflops"):
        lines.append(f"- Best matmul rate measured: {meta['best_matmul_gflops']:.0f} GFLOP/s "
                     f"(the '% best mm' column is relative to it)")
    if meta.get("mode"):
        lines.append(f"- Mode: {meta['mode']}")
    return lines + [
        "- Medians of interleaved rounds (A B C A B C ...) after warm-up; ratio = contender "
        "median / reference median (> 1: the reference is faster). float32 throughout.",
        "",
    ]


def format_table(results: Sequence[dict], *, title: str | None = "Benchmarks", meta: dict | None = None,
                 with_meta: bool = True) -> str:
    """Markdown: an optional title, an optional header (machine, load) and one table per case."""
    lines: list[str] = [f"# {title}", ""] if title else []
    if with_meta and meta:
        lines += _header(meta)
    return "\n".join(lines) + ("\n" if lines else "") + format_cases(results)
