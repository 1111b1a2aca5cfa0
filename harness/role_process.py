"""One group of log roles in its own OS process, attached to a shared region file.

Run by the coordinator (``harness.log``) as ``python -m harness.role_process ...``; writes its
statistics and per-batch records to ``--out`` (an .npz file) for the coordinator to merge.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

import numpy as np

from harness.log import LogConfig, LogHandle, attach_check
from harness.region import Region


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.role_process")
    p.add_argument("--region", required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--config", required=True, help="LogConfig as JSON")
    p.add_argument("--roles", type=int, required=True)
    p.add_argument("--pub-brokers", type=int, default=0xFFFFFFFF)
    p.add_argument("--sub-mask", type=int, default=0xFFFFFFFF)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    cfg = LogConfig(**json.loads(a.config))
    with Region.file(a.region, a.size, create=False, lock=False) as region:
        attach_check(region, cfg)
        h = LogHandle(region, cfg)
        try:
            rc = h.run(a.roles, a.pub_brokers, a.sub_mask)
            stats = h.stats()
            recs: dict[str, Any] = h.records() if cfg.recording else {}
        finally:
            h.close()
    np.savez(a.out, __stats__=np.frombuffer(json.dumps({"rc": rc, "stats": stats}).encode(), dtype=np.uint8),
             **recs)
    return 0


def config_json(cfg: LogConfig) -> str:
    return json.dumps(asdict(cfg))


if __name__ == "__main__":
    sys.exit(main())
