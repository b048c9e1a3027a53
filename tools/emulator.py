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
str ... not DynamoType" while DynamoDB items were being written). The dump must also answer
while queue pollers are waiting (`make dev` always has two): an SQS long poll lets go of the lock
while it waits for a message (it changes nothing then), and a waiting dump goes before new
requests, so it waits only for the requests already running. Without both, 20 s long polls kept
the lock taken and the dump starved for minutes.
TransactWriteItems honours `ClientRequestToken` as DynamoDB documents it (moto ignores it): a
repeat of a committed call within 10 minutes answers as the first did and changes nothing, and
the same token with other parameters is `IdempotentParameterMismatchException`. The SDK retries
an attempt that timed out with the same token; without this, a slow emulator (a long dump, a busy
machine) applied the retry a second time and a version-guarded write failed its own condition.
A transaction backs up only its own items (moto deep-copied every table it touched: O(table)
per transaction, O(n^2) for n rows written one transaction each).
`GET /_emulator/ses/raw-messages` lists the raw emails SES accepted, for tests: the whole-state
dump walks every object moto ever tracked (every item of every test's tables), seconds by the end
of a run, and all requests wait for it.
See docs/architecture.md, "The local emulator".
"""

import argparse
import hashlib
import io
import json
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.sqs.models import Queue, SQSBackend
from werkzeug.serving import run_simple

DYNAMODB_TARGET_PREFIX = "DynamoDB_"
TRANSACT_WRITE_TARGET = "DynamoDB_20120810.TransactWriteItems"
STATE_DUMP_PREFIX = "/moto-api/data.json"
SES_RAW_MESSAGES_PATH = "/_emulator/ses/raw-messages"
# DynamoDB's idempotency window for TransactWriteItems' ClientRequestToken.
IDEMPOTENCY_WINDOW_SECONDS = 600


class SharedExclusiveLock:
    """Many holders in shared mode, or one in exclusive mode. A waiting exclusive holder goes
    before new shared ones: requests overlapping each other must not starve it."""

    def __init__(self):
        self.condition = threading.Condition()
        self.shared = 0
        self.exclusive = False
        self.exclusive_waiting = 0
        self.held = threading.local()

    def _acquire_shared(self):
        with self.condition:
            self.condition.wait_for(lambda: not self.exclusive and not self.exclusive_waiting)
            self.shared += 1

    def _release_shared(self):
        with self.condition:
            self.shared -= 1
            self.condition.notify_all()

    @contextmanager
    def holding_shared(self):
        self._acquire_shared()
        self.held.shared = True
        try:
            yield
        finally:
            self.held.shared = False
            self._release_shared()

    @contextmanager
    def released_while_waiting(self):
        """Lets go of this thread's shared hold (if any) for a wait that touches no state."""
        if not getattr(self.held, "shared", False):
            yield
            return
        self.held.shared = False
        self._release_shared()
        try:
            yield
        finally:
            self._acquire_shared()
            self.held.shared = True

    @contextmanager
    def holding_exclusive(self):
        with self.condition:
            self.exclusive_waiting += 1
            try:
                self.condition.wait_for(lambda: not self.exclusive and self.shared == 0)
            finally:
                self.exclusive_waiting -= 1
                self.condition.notify_all()
            self.exclusive = True
        try:
            yield
        finally:
            with self.condition:
                self.exclusive = False
                self.condition.notify_all()


def wait_for_messages_outside(lock):
    """moto's SQS long poll waits in `Queue.wait_for_messages` (1 s at a time, then looks at the
    queue again); it holds no half-made change there, so the wait need not hold the lock."""
    wait_for_messages = Queue.wait_for_messages

    def wait_without_lock(queue, timeout):
        with lock.released_while_waiting():
            wait_for_messages(queue, timeout)

    Queue.wait_for_messages = wait_without_lock


class TransactionTokens:
    """The committed TransactWriteItems of the last 10 minutes, by ClientRequestToken: the
    request's digest and the answer it got. Used under the DynamoDB lock."""

    def __init__(self):
        self.committed = {}

    def _expire(self, now):
        stale = [token for token, (_, at, _) in self.committed.items() if now - at > IDEMPOTENCY_WINDOW_SECONDS]
        for token in stale:
            del self.committed[token]

    def handle(self, app, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            request = json.loads(body)
        except ValueError:
            return list(app(environ, start_response))
        token = request.pop("ClientRequestToken", None) if isinstance(request, dict) else None
        if not token:
            return list(app(environ, start_response))
        digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        now = time.monotonic()
        self._expire(now)
        if token in self.committed:
            first_digest, _, answer = self.committed[token]
            if first_digest != digest:
                return mismatch(start_response)
            status, headers, chunks = answer
            start_response(status, headers)
            return chunks
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return start_response(status, headers, exc_info)

        chunks = list(app(environ, capture))
        if captured.get("status", "").startswith("200"):
            self.committed[token] = (digest, now, (captured["status"], captured["headers"], chunks))
        return chunks


def mismatch(start_response):
    body = json.dumps(
        {
            "__type": "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException",
            "message": "The request uses the same client token as a previous, but non-identical request.",
        }
    ).encode()
    start_response(
        "400 Bad Request",
        [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(body)))],
    )
    return [body]


def ses_raw_messages(start_response):
    """The raw emails SES accepted (every account and region), oldest first."""
    from moto.core.model_instances import model_data

    tracked = model_data.get("ses", {}).get("RawMessage")
    messages = [
        {
            "id": message.id,
            "source": message.source,
            "destinations": message.destinations,
            "raw_data": message.raw_data,
        }
        for message in list(tracked.instances_tracked if tracked else [])
    ]
    body = json.dumps(messages).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class LinearizableDynamoDB:
    """WSGI middleware: one DynamoDB request at a time, everything else as it comes, and the
    state dump alone."""

    def __init__(self, app):
        self.app = app
        self.dynamodb = threading.Lock()
        self.tokens = TransactionTokens()
        self.state = SharedExclusiveLock()
        wait_for_messages_outside(self.state)

    def __call__(self, environ, start_response):
        # Every response is drained inside its locks: a WSGI app may do its work lazily while
        # its body is iterated.
        if environ.get("PATH_INFO", "").startswith(STATE_DUMP_PREFIX):
            with self.state.holding_exclusive():
                return list(self.app(environ, start_response))
        with self.state.holding_shared():
            if environ.get("PATH_INFO", "") == SES_RAW_MESSAGES_PATH:
                return ses_raw_messages(start_response)
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            if target.startswith(DYNAMODB_TARGET_PREFIX):
                with self.dynamodb:
                    if target == TRANSACT_WRITE_TARGET:
                        return self.tokens.handle(self.app, environ, start_response)
                    return list(self.app(environ, start_response))
            return list(self.app(environ, start_response))


def sends_without_counting():
    """moto's SendMessage reads `queue.attributes` only for ContentBasedDeduplication, but that
    property counts every message of the queue (visible, delayed, in flight) each time, so
    enqueueing n messages took O(n^2): 2,500 messages about 70 s, 5,000 several minutes (a
    release tick's test). While a message is sent, the property answers just that attribute."""
    full_attributes = Queue.attributes
    sending = threading.local()

    def attributes(queue):
        if not getattr(sending, "active", False):
            return full_attributes.fget(queue)
        if not queue.fifo_queue:
            return {}
        value = queue.content_based_deduplication
        return {"ContentBasedDeduplication": str(value).lower() if isinstance(value, bool) else value}

    send_message = SQSBackend.send_message

    def send_message_counting_nothing(backend, *args, **kwargs):
        sending.active = True
        try:
            return send_message(backend, *args, **kwargs)
        finally:
            sending.active = False

    Queue.attributes = property(attributes)
    SQSBackend.send_message = send_message_counting_nothing


def transactions_that_copy_only_their_items():
    """moto backs up every table a TransactWriteItems touches with a deep copy of the whole table,
    to put it back if the transaction is cancelled: each transaction cost O(table), so a run
    that writes n items in n transactions cost O(n^2) (a 1,000-row import 27x slower per row than
    a 10-row one; a 1,000-person sequence grew the emulator to 15 GB). DynamoDB's own cost is per
    item. So the backup is of the transaction's own items: each one's state before the call
    (absent, or a copy), put back in reverse order if moto cancels or rejects it. The DynamoDB
    lock (LinearizableDynamoDB) makes sure nothing else runs in between."""
    import copy as copy_module

    import moto.dynamodb.models as dynamodb_models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    transacting = threading.local()

    class TableSharingCopy:
        """`copy` as moto's DynamoDB backend sees it: inside a transaction, its "backup" of a
        table is the table itself (the items are backed up below); everything else is copied."""

        def __getattr__(self, name):
            return getattr(copy_module, name)

        @staticmethod
        def deepcopy(value, memo=None):
            if isinstance(value, Table) and getattr(transacting, "active", False):
                return value
            return copy_module.deepcopy(value, memo)

    def item_keys(backend, transact_items):
        for entry in transact_items:
            for op in entry.values():
                table = backend.tables.get(op.get("TableName")) if isinstance(op, dict) else None
                if table is None:
                    continue
                attributes = op.get("Key") or op.get("Item") or {}
                try:
                    hash_value = DynamoType(attributes[table.hash_key_attr])
                    range_value = (DynamoType(attributes[table.range_key_attr])
                                   if table.range_key_attr is not None else None)
                except (KeyError, TypeError):
                    continue  # moto rejects the call before it writes anything of it
                yield table, hash_value, range_value

    def restore(table, hash_value, range_value, before):
        if before is None:
            table.delete_item(hash_value, range_value)
        elif range_value is not None:
            table.items[hash_value][range_value] = before
        else:
            table.items[hash_value] = before

    transact_write_items = DynamoDBBackend.transact_write_items

    def transact_write_items_backing_up_items(backend, transact_items):
        backup = []
        for table, hash_value, range_value in item_keys(backend, transact_items):
            try:
                current = table.get_item(hash_value, range_value)
            except Exception:  # a key moto will reject: nothing of it is written
                continue
            backup.append((table, hash_value, range_value, copy_module.deepcopy(current)))
        transacting.active = True
        try:
            return transact_write_items(backend, transact_items)
        except Exception:
            for table, hash_value, range_value, before in reversed(backup):
                restore(table, hash_value, range_value, before)
            raise
        finally:
            transacting.active = False

    dynamodb_models.copy = TableSharingCopy()
    DynamoDBBackend.transact_write_items = transact_write_items_backing_up_items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=4566)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: sys.exit(0))
    sends_without_counting()
    transactions_that_copy_only_their_items()
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
