"""Campaigns: a matrix of test runs (N/R/W, versioning modes, workloads, faults) and its summary.

A campaign file (TOML, ``docs/campaigns.md``) expands into *cells*; each cell
is a set of dotted spec overrides plus the expectations that must hold for
it. Cells run one after another (or side by side: below), each in its own child process
(``python -m harness.campaign --run-cell``, a session of its own) so a
per-cell time limit can stop it (SIGTERM: the runner heals and tears down on
that path; after a grace the process group is killed and the campaign tears
the cluster down) and a cell that crashes cannot take the campaign down.
Every cell's run is stored as usual under ``histories/<campaign>.<cell>/``;
the campaign folder ``histories/campaigns/<name>/<ts>/`` holds
``campaign.json`` (definition + per-cell outcome, rewritten after every cell,
so an interrupted campaign keeps its finished cells and ``--resume``
continues it), ``summary.md``, ``junit.xml`` and ``index.html``.

Side by side: ``run_campaign(..., pool=...)`` hands the cells to a CellPool
(``dask_pool``: a local Dask cluster for ``--jobs K``, or the user's for
``--scheduler``; ``dask_worker`` is a cell as a Dask task; ``harness.backends.local_share``
keeps local runs and cells from disturbing each other on a host without node cgroups).
``shards`` splits a campaign for a CI matrix and merges the folders back.
"""

from harness.campaign.definition import (AXES, BUILTIN_DIR, CampaignDef, Cell, cell_specs, cell_spec, load_campaign,
                                         parse_campaign, validate_cells)
from harness.campaign.running import (FINISHED, CampaignRun, CellPool, CellResult, CellRunner, CellWatch,
                                      SubprocessCellRunner, finish_cell, new_campaign_dir, record_cell, run_campaign)

__all__ = ["AXES", "BUILTIN_DIR", "CampaignDef", "Cell", "cell_specs", "cell_spec", "load_campaign", "parse_campaign",
           "validate_cells",
           "FINISHED", "CampaignRun", "CellPool", "CellResult", "CellRunner", "CellWatch", "SubprocessCellRunner",
           "finish_cell", "new_campaign_dir", "record_cell", "run_campaign"]
