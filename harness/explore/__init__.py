"""``dynharness explore``: search fault schedules for a failing run and shrink it to a reproducer.

A fixed test runs one schedule drawn from its seed; a bug that needs a particular mix of faults
(a crash right after a partition, a clock step during one) is found by luck. Explore does for fault
schedules what hypothesis does for function inputs: it lets hypothesis draw *cases* (which faults,
when, on which nodes, for how long, plus the workload's size) from the space the spec allows, runs
each as a real short test, and when one fails, lets hypothesis shrink it (fewer faults, fewer
nodes touched, shorter windows, fewer keys and clients, shorter runs) while it still fails.

- :mod:`harness.explore.case`: a case as data, its hypothesis strategy, and the schedule and spec
  overrides it turns into (what ``run --replay-schedule`` replays).
- :mod:`harness.explore.search`: the search: k-of-k confirmation of failures (runs are not
  deterministic), the time budget, the log of every case, hypothesis's example database.
- :mod:`harness.explore.real_runs`: a case as a real run (``harness.runner.run_test``).
- :mod:`harness.explore.folder`: what one explore leaves under ``histories/explore/<time>/``.
"""
