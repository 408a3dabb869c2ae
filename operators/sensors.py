"""A sensor for rollouts: pokes, or defers to IpaRolloutTrigger where the wait is long."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator

from .triggers import IpaRolloutTrigger


class IpaRolloutSensor(BaseSensorOperator):
    template_fields: Sequence[str] = ("namespace", "names")
    SUCCESS_STATES = ("success",)

    def __init__(
        self,
        *,
        namespace: str,
        names: list[str],
        backend: str = "simulated",
        kubernetes_conn_id: str | None = None,
        simulated_state_file: str | None = None,
        simulated_startup_s: float = 0.0,  # the operators' value: when a simulated rollout is done
        deferrable: bool = False,
        poll_s: float = 5.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.namespace, self.names, self.backend = namespace, names, backend
        self.kubernetes_conn_id, self.simulated_state_file = kubernetes_conn_id, simulated_state_file
        self.simulated_startup_s = simulated_startup_s
        self.deferrable, self.poll_s = deferrable, poll_s

    def _trigger(self) -> IpaRolloutTrigger:
        return IpaRolloutTrigger(
            namespace=self.namespace,
            names=list(self.names),
            backend=self.backend,
            kubernetes_conn_id=self.kubernetes_conn_id,
            simulated_state_file=self.simulated_state_file,
            simulated_startup_s=self.simulated_startup_s,
            poll_s=self.poll_s,
            timeout_s=self.timeout,
        )

    def execute(self, context) -> Any:
        if self.deferrable:
            self.defer(trigger=self._trigger(), method_name="execute_complete")
        return super().execute(context)

    def poke(self, context) -> bool:
        pending = self._trigger()._pending()
        self.log.info("waiting for %s", pending or "nothing")
        return not pending

    def execute_complete(self, context, event: dict[str, Any]) -> None:
        from airflow.sdk.exceptions import AirflowException

        if event.get("status") not in self.SUCCESS_STATES:
            raise AirflowException(f"rollout did not finish: {event.get('message')}")
        self.log.info(event.get("message"))
