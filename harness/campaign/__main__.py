"""``python -m harness.campaign --run-cell JOB``: the child process that runs one campaign cell."""
import sys

from harness.campaign.running import _run_cell_child

if len(sys.argv) == 3 and sys.argv[1] == "--run-cell":
    sys.exit(_run_cell_child(sys.argv[2]))
sys.stderr.write("usage: python -m harness.campaign --run-cell JOB_JSON (internal; use `dynharness campaign`)\n")
sys.exit(3)
