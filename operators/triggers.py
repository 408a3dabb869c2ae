"""A trigger that waits, in the triggerer, for a pipeline's Deployments to finish rolling out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from .hooks import ClusterHook


class IpaRolloutTrigger(BaseTrigger):
    def __init__(
        self,
        *,
        namespace: str,
        names: list[str],
        backend: str = "simulated",
        kubernetes_conn_id: str | None = None,
        simulated_state_file: str | None = None,
        simulated_startup_s: float = 0.0,  # the operators' value: when a simulated rollout is done
        poll_s: float = 5.0,
        timeout_s: float = 900.0,
    ):
        super().__init__()
        self.namespace, self.names, self.backend = namespace, names, backend
        self.kubernetes_conn_id, self.simulated_state_file = kubernetes_conn_id, simulated_state_file
        self.simulated_startup_s = simulated_startup_s
        self.poll_s, self.timeout_s = poll_s, timeout_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "ipa_airflow_provider.triggers.IpaRolloutTrigger",
            {
                "namespace": self.namespace,
                "names": self.names,
                "backend": self.backend,
                "kubernetes_conn_id": self.kubernetes_conn_id,
                "simulated_state_file": self.simulated_state_file,
                "simulated_startup_s": self.simulated_startup_s,
                "poll_s": self.poll_s,
                "timeout_s": self.timeout_s,
            },
        )

    def _pending(self) -> list[str]:
        from ipa_airflow.cluster.backends import RolloutStatus

        backend = ClusterHook(
            self.backend,
            kubernetes_conn_id=self.kubernetes_conn_id,
            simulated_state_file=self.simulated_state_file,
            simulated_startup_s=self.simulated_startup_s,
        ).get_conn()
        pending = []
        for name in self.names:
            obj = backend.get(self.namespace, name)
            if obj is None or not RolloutStatus.of(obj).complete:
                pending.append(name)
        return pending

    async def run(self) -> AsyncIterator[TriggerEvent]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while True:
            pending = await asyncio.to_thread(self._pending)
            if not pending:
                yield TriggerEvent(
                    {"status": "success", "message": f"{len(self.names)} deployments available"}
                )
                return
            if loop.time() >= deadline:
                yield TriggerEvent({"status": "timeout", "message": f"still rolling out: {pending}"})
                return
            await asyncio.sleep(self.poll_s)
