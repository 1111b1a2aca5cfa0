"""The shared log, driven from Python: configure, run (threads or processes), get a result.

No Python runs inside the log: one C call runs every role to completion while a Python thread
only polls a progress counter for the progress bar.

- ``config``: LogConfig and the C core's numbers (light: no numpy, no C core);
- ``binding``: the C log over a region (format, attach, LogHandle);
- ``processes``: role processes on a shared region file, supervised;
- ``result``: LogResult from the C statistics and records;
- ``live``: the runs in progress, for a signal handler to stop.

Running *and checking* a log is ``harness.runlog.run_log``, above this package and the checks.
"""

from harness.log.binding import (LogHandle, attach_check, c_config, explain_size, format_region,
                                 layout_parts, layout_size, region_size)
from harness.log.config import (F_DETERMINISTIC, LOSS_CORRUPT, LOSS_TIMEOUT, MAX_BATCHES, MAX_BROKERS,
                                MAX_GOI_SLOTS, MAX_PBR_SLOTS, MAX_ROLES, MAX_SUBSCRIBERS, NO_CLIENT,
                                RECORD_LIMIT, REC_ACK, REC_COMMIT, REC_DELIVER, REC_LOSS, REC_ORDER,
                                REC_PUBLISH, ROLE_ALL, ROLE_KIND_NAMES, ROLE_PUBLISHERS, ROLE_SCANNERS,
                                ROLE_SUBSCRIBERS, SCHEDULING, VARIANTS, LogConfig, config_json,
                                workload_config)
from harness.log.live import request_stop_all
from harness.log.processes import (RoleGroup, RoleProcess, RoleResult, merge_records, merge_stats,
                                   open_private, shm_region, start_role_processes, stop_role_processes,
                                   supervise)
from harness.log.result import Latency, LogResult, latency_from_hist, make_result

__all__ = [
    "F_DETERMINISTIC", "LOSS_CORRUPT", "LOSS_TIMEOUT", "MAX_BATCHES", "MAX_BROKERS", "MAX_GOI_SLOTS",
    "MAX_PBR_SLOTS", "MAX_ROLES", "MAX_SUBSCRIBERS", "NO_CLIENT", "RECORD_LIMIT", "REC_ACK", "REC_COMMIT",
    "REC_DELIVER", "REC_LOSS", "REC_ORDER", "REC_PUBLISH", "ROLE_ALL", "ROLE_KIND_NAMES", "ROLE_PUBLISHERS",
    "ROLE_SCANNERS", "ROLE_SUBSCRIBERS", "SCHEDULING", "VARIANTS", "Latency", "LogConfig", "LogHandle",
    "LogResult", "RoleGroup", "RoleProcess", "RoleResult", "attach_check", "c_config", "config_json", "explain_size", "layout_parts",
    "format_region", "latency_from_hist", "layout_size", "make_result", "merge_records", "merge_stats",
    "open_private", "region_size", "request_stop_all", "shm_region", "start_role_processes",
    "stop_role_processes", "supervise", "workload_config",
]
