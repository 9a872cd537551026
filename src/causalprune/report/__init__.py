"""One self-contained HTML report from run folders and a sweep: build.py assembles it from the
sections of sections.py, written with the small HTML helpers of html.py."""

from .build import build_report, describe, report_rows

__all__ = ["build_report", "describe", "report_rows"]
