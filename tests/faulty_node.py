"""A real node server process with test-only faults injected in front of its Query RPC.

Run as ``python -m tests.faulty_node serve --config NODE.toml`` (``tests.processes.start_server`` does). The
faults are read from the JSON file named by ``$GENOGATE_TEST_FAULTS`` at every Query call, so a test can
change them while the process runs:

* ``{"delay_s": 5}``: hold every Query answer for 5 seconds (a slow site);
* ``{"drop_next": 1}``: let the node answer the next Query in full (it charges, stores and signs), then
  drop that answer and return UNAVAILABLE instead, as a lost response would look to the caller.

Nothing else about the node changes: same config, same store, ledger, mTLS and servicer.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import grpc

QUERY = "/genogate.v1.NodeService/Query"


class Faults(grpc.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, path: Path):
        self.path = path

    def _read(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
            return data
        except (OSError, ValueError):
            return {}

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if details.method != QUERY or handler is None:
            return handler
        inner = handler.unary_unary

        def faulty(request: Any, context: grpc.ServicerContext) -> Any:
            faults = self._read()
            response = inner(request, context)
            if faults.get("drop_next", 0) > 0:
                faults["drop_next"] -= 1
                self.path.write_text(json.dumps(faults))
                context.abort(grpc.StatusCode.UNAVAILABLE, "injected: response dropped")
            time.sleep(float(faults.get("delay_s", 0)))
            return response

        return grpc.unary_unary_rpc_method_handler(
            faulty,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def main() -> int:
    from genogate.log import configure
    from node.app import serve
    from node.config import check_files, load_node_config

    args = sys.argv[1:]
    if len(args) != 3 or args[0] != "serve" or args[1] != "--config":
        print("usage: python -m tests.faulty_node serve --config NODE.toml", file=sys.stderr)
        return 2
    config = load_node_config(Path(args[2]))
    check_files(config)
    configure(config.log.level, config.log.format)
    return serve(config, [Faults(Path(os.environ["GENOGATE_TEST_FAULTS"]))])


if __name__ == "__main__":
    raise SystemExit(main())
