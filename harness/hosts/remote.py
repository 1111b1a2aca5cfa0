"""Bootstrap of a host's worker, sent as source through the execnet channel.

It needs nothing but the standard library until it has checked that the host's Python has
the same cxl-harness version installed as the coordinator; then the installed package's
:func:`harness.hosts.worker.serve` takes over the channel.
"""

from __future__ import annotations

import sys
from typing import Any


def main(channel: Any) -> None:
    hello = channel.receive(60)
    want = hello["version"]
    try:
        import harness
        from harness.hosts import worker
    except Exception as exc:  # noqa: BLE001 - reported to the coordinator, by host
        channel.send({"error": f"cannot import cxl-harness with {sys.executable}: {exc}",
                      "fix": f"install cxl-harness {want} into that Python (pip install cxl-harness=={want}) "
                             "or name the right one with python: in the hosts file"})
        return
    have = getattr(harness, "__version__", "unknown")
    if have != want:
        channel.send({"error": f"cxl-harness {have} is installed with {sys.executable}, the coordinator "
                               f"runs {want}",
                      "fix": f"install the same version on every host (pip install cxl-harness=={want})"})
        return
    worker.serve(channel, hello)


if __name__ == "__channelexec__":
    main(channel)  # type: ignore[name-defined]  # noqa: F821 - execnet provides it
