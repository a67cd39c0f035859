"""``python -m targets.dynamo``: start one node (see ``docs/store.md``)."""
from __future__ import annotations

import logging
import sys

from targets.adapter import TargetError


def main(argv: list[str] | None = None) -> int:
    """Parse the node's flags/config, run it until SIGTERM; one-line error and exit 3 on bad input."""
    from targets.dynamo import config, eventloop, server
    try:
        cfg = config.load(sys.argv[1:] if argv is None else argv)
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format=f"%(asctime)s {cfg.name} %(name)s %(levelname)s %(message)s")
        eventloop.run(server.serve(cfg), cfg.event_loop)
    except TargetError as exc:
        print(f"targets.dynamo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
