"""The ``inprocess`` backend: Flower's message API with clients run in turn, in this process.

A Flower ``Grid`` is how a ServerApp talks to SuperNodes. This one hands each message straight
to the ClientApp of its destination node, one node at a time in node-id order, keeping every
node's ``Context`` between messages (SecAgg+'s client mod stores its protocol state there). The
ServerApp and ClientApp are the same objects the Ray backend and a real deployment run; only the
transport differs. It costs nothing to start, needs no Ray, and is deterministic: the natural
choice for one GPU, where clients would take turns on it anyway.

Like Flower's simulation engine, a ClientApp exception becomes an error reply; unlike it, the
error is also kept (``errors``) so the caller can fail the run with the client's traceback.
"""

from __future__ import annotations

import copy
import traceback
import uuid
from collections.abc import Iterable

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode
from flwr.serverapp.grid import Grid
from flwr.supercore.run import Run

PARTITION_ID_KEY = "partition-id"
NUM_PARTITIONS_KEY = "num-partitions"


class InProcessGrid(Grid):
    def __init__(self, client_app: ClientApp, num_nodes: int, run_id: int = 1) -> None:
        self.client_app = client_app
        self._run = Run.create_empty(run_id)
        # Node ids are arbitrary positive integers in Flower; small fixed ones keep order stable.
        self.node_ids = [1000 + i for i in range(num_nodes)]
        self.contexts = {
            nid: Context(run_id=run_id, node_id=nid,
                         node_config={PARTITION_ID_KEY: i, NUM_PARTITIONS_KEY: num_nodes},
                         state=RecordDict(), run_config={})
            for i, nid in enumerate(self.node_ids)
        }
        self._replies: dict[str, Message] = {}
        self.errors: list[str] = []

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.node_ids)

    def _deliver(self, msg: Message) -> Message:
        nid = msg.metadata.dst_node_id
        if nid not in self.contexts:
            raise ValueError(f"message for unknown node {nid}")
        # A real transport serialises messages: the client gets its own copy (SecAgg+'s mod
        # pops keys from what it receives, and the server reuses one content for all nodes).
        delivered = copy.deepcopy(msg)
        try:
            reply = self.client_app(delivered, self.contexts[nid])
        except Exception as err:  # noqa: BLE001 - reported to the server as Flower does
            pid = self.contexts[nid].node_config[PARTITION_ID_KEY]
            tb = traceback.format_exc()
            self.errors.append(f"client partition {pid} (node {nid}): {err}\n{tb}")
            reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
                                  reason=f"{type(err).__name__}: {err}"), reply_to=delivered)
        reply = copy.deepcopy(reply)
        reply.metadata.__dict__["_message_id"] = str(uuid.uuid4())
        return reply

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in sorted(messages, key=lambda m: m.metadata.dst_node_id):
            md = msg.metadata
            md.__dict__["_message_id"] = str(uuid.uuid4())
            reply = self._deliver(msg)
            self._replies[md.message_id] = reply
            ids.append(md.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        return list(self.pull_messages(self.push_messages(messages)))
