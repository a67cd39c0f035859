"""Reports: a run's self-contained ``report.html``, a campaign's index page, JUnit XML and Markdown.

``harness.reports.html.write_run_report(run_dir)`` is what the runner calls at
the end of every run; ``dynharness report DIR`` rebuilds any of them.
"""
