"""The local AWS emulator: moto's server, with DynamoDB made linearizable.

Usage: tools/emulator -H HOST -p PORT   (the same flags as moto_server)

Why not plain `moto_server`: moto serves requests on a thread each (werkzeug, threaded=True)
and its DynamoDB backend checks conditions and writes without a lock, so two concurrent
conditional PutItem / TransactWriteItems on one key can both succeed, and a cancelled
transaction can leave items behind when another request interleaves. Real DynamoDB never
does that (every single-item write and every transaction is atomic and serialisable), and our
uniqueness guards and counters rely on it. So every DynamoDB request (the ones whose
`X-Amz-Target` is `DynamoDB_<version>.<Operation>`) runs under one lock, reads included, which
makes the emulator's DynamoDB linearizable; every other service (SQS long polls, KMS, SES,
Cognito) stays concurrent. And `GET /moto-api/data.json` (the emulator's state, which tests read
to see sent email) runs alone: moto checks each attribute is JSON-serialisable and then
serialises it, so a request changing state in between made it answer 500 (seen: "keys must be
str ... not DynamoType" while DynamoDB items were being written).
See docs/architecture.md, "The local emulator".
"""

import argparse
import os
import signal
import sys
import threading
from contextlib import contextmanager

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

DYNAMODB_TARGET_PREFIX = "DynamoDB_"
STATE_DUMP_PREFIX = "/moto-api/data.json"


class SharedExclusiveLock:
    """Many holders in shared mode, or one in exclusive mode."""

    def __init__(self):
        self.condition = threading.Condition()
        self.shared = 0
        self.exclusive = False

    @contextmanager
    def holding_shared(self):
        with self.condition:
            self.condition.wait_for(lambda: not self.exclusive)
            self.shared += 1
        try:
            yield
        finally:
            with self.condition:
                self.shared -= 1
                self.condition.notify_all()

    @contextmanager
    def holding_exclusive(self):
        with self.condition:
            self.condition.wait_for(lambda: not self.exclusive and self.shared == 0)
            self.exclusive = True
        try:
            yield
        finally:
            with self.condition:
                self.exclusive = False
                self.condition.notify_all()


class LinearizableDynamoDB:
    """WSGI middleware: one DynamoDB request at a time, everything else as it comes, and the
    state dump alone."""

    def __init__(self, app):
        self.app = app
        self.dynamodb = threading.Lock()
        self.state = SharedExclusiveLock()

    def __call__(self, environ, start_response):
        # Every response is drained inside its locks: a WSGI app may do its work lazily while
        # its body is iterated.
        if environ.get("PATH_INFO", "").startswith(STATE_DUMP_PREFIX):
            with self.state.holding_exclusive():
                return list(self.app(environ, start_response))
        with self.state.holding_shared():
            if environ.get("HTTP_X_AMZ_TARGET", "").startswith(DYNAMODB_TARGET_PREFIX):
                with self.dynamodb:
                    return list(self.app(environ, start_response))
            return list(self.app(environ, start_response))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=4566)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        LinearizableDynamoDB(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
