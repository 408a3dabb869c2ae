"""The router over an in-process HTTP transport (httpx.MockTransport): stages in order, the least busy
replica, waiting for a replica until the drop deadline, failures counted, never raised."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import httpx
import pytest

from ipa_airflow.serving.router import ROUND_ROBIN, Router
from ipa_airflow.serving.v2 import ModelInput


@dataclass(frozen=True)
class Rep:
    url: str
    variant: str
    model: str


class FakeCluster:
    def __init__(self, stages: dict[str, list[str]]):
        self.reps = {s: [Rep(u, "v1", s) for u in urls] for s, urls in stages.items()}
        self.version = 0
        self.refused: set[str] = set()
        self.inflight: dict[str, int] = {}

    def replicas(self, stage, pipeline=None):
        return list(self.reps.get(stage, []))

    def acquire(self, url):
        if url in self.refused:
            return False
        self.inflight[url] = self.inflight.get(url, 0) + 1
        return True

    def release(self, url):
        self.inflight[url] -= 1


class Ticking:
    """A clock that advances a second each time it is read."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 1.0
        return self.now


def router(cluster, handler, **kw) -> Router:
    reads: list[tuple[str, str]] = kw.pop("reads", [])

    def inputs(url, model):
        reads.append((url, model))
        return ModelInput("x", "FP32", (3,))

    return Router(
        cluster, kw.pop("stages", ["a", "b"]), inputs=inputs, transport=httpx.MockTransport(handler), **kw
    )


def ok_handler(log):
    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert body["inputs"][0]["shape"] == [1, 3]
        log.append(f"{request.url.host}{request.url.path}")
        return httpx.Response(200, json={"outputs": []})

    return handle


def test_a_request_goes_through_the_stages_in_order():
    cluster = FakeCluster({"a": ["http://a0"], "b": ["http://b0"]})
    log, reads = [], []

    async def main():
        async with router(cluster, ok_handler(log), reads=reads) as r:
            return [await r.send(i) for i in range(3)]

    results = asyncio.run(main())
    assert all(x.ok and not x.error for x in results)
    assert log == ["a0/v2/models/a/infer", "b0/v2/models/b/infer"] * 3
    assert all(len(x.stage_latency_s) == 2 and x.latency_s == x.done - x.arrived for x in results)
    assert reads == [("http://a0", "a"), ("http://b0", "b")]  # each stage's input read once
    assert cluster.inflight == {"http://a0": 0, "http://b0": 0}


def test_the_least_busy_replica_gets_the_request_and_a_retired_one_none():
    cluster = FakeCluster({"a": ["http://a0", "http://a1", "http://a2"]})
    cluster.refused.add("http://a2")  # retired since the router read the endpoints
    hits = []

    async def main():
        gate = asyncio.Event()

        async def handle(request):
            hits.append(request.url.host)
            if len(hits) == 1:
                await gate.wait()  # the first request stays outstanding
            return httpx.Response(200, json={})

        r = Router(
            cluster,
            ["a"],
            inputs=lambda u, m: ModelInput("x", "FP32", (1,)),
            transport=httpx.MockTransport(handle),
        )
        first = asyncio.create_task(r.send(0))
        while not hits:
            await asyncio.sleep(0)
        results = [await r.send(i) for i in range(1, 4)]
        gate.set()
        results.append(await first)
        await r.aclose()
        return results

    results = asyncio.run(main())
    assert all(x.ok for x in results)
    busy = hits[0]
    assert busy not in hits[1:] and "a2" not in hits  # never the busy one, never the retired one


def test_round_robin_alternates():
    cluster = FakeCluster({"a": ["http://a0", "http://a1"]})
    log = []

    async def main():
        async with router(cluster, ok_handler(log), stages=["a"], policy=ROUND_ROBIN) as r:
            for i in range(4):
                await r.send(i)

    asyncio.run(main())
    assert sorted(log[:2]) == ["a0/v2/models/a/infer", "a1/v2/models/a/infer"] and log[2:] == log[:2]


def test_a_stage_without_a_ready_replica_drops_the_request_at_the_deadline():
    cluster = FakeCluster({"a": ["http://a0"]})  # stage b has none
    clock = Ticking()

    async def main():
        async with router(cluster, ok_handler([]), clock=clock, drop_after_s=5, wait_poll_s=0) as r:
            return await r.send("r1")

    result = asyncio.run(main())
    assert result.dropped and not result.ok and result.stage == "b"
    assert "stage 'b' had no ready replica within 5 s" in result.error
    assert result.latency_s >= 5 and len(result.stage_latency_s) == 1


def test_a_replica_that_becomes_ready_while_a_request_waits_serves_it():
    cluster = FakeCluster({"a": []})
    log = []

    async def main():
        async with router(cluster, ok_handler(log), stages=["a"], wait_poll_s=0) as r:
            waiting = asyncio.create_task(r.send(0))
            for _ in range(5):
                await asyncio.sleep(0)
            cluster.reps["a"] = [Rep("http://a0", "v1", "a")]
            cluster.version += 1
            return await waiting

    assert asyncio.run(main()).ok and log == ["a0/v2/models/a/infer"]


@pytest.mark.parametrize(
    "answer, expected",
    [
        (lambda req: httpx.Response(500, json={"error": "model failed"}), "HTTP 500"),
        (lambda req: (_ for _ in ()).throw(httpx.ConnectError("refused")), "ConnectError: refused"),
    ],
)
def test_an_http_failure_counts_as_failed_and_is_not_raised(answer, expected):
    cluster = FakeCluster({"a": ["http://a0"], "b": ["http://b0"]})

    async def main():
        async with router(cluster, answer) as r:
            return await r.send(7)

    result = asyncio.run(main())
    assert not result.ok and not result.dropped and result.stage == "a" and result.request_id == 7
    assert expected in result.error and "http://a0" in result.error
    assert cluster.inflight == {"http://a0": 0}  # released


def test_a_model_without_inputs_fails_the_request_with_the_reason():
    cluster = FakeCluster({"a": ["http://a0"]})

    def inputs(url, model):
        raise ValueError(f"{url}/v2/models/{model} lists no inputs: log the model with a signature")

    async def main():
        async with Router(cluster, ["a"], inputs=inputs, transport=httpx.MockTransport(ok_handler([]))) as r:
            return await r.send(0)

    result = asyncio.run(main())
    assert not result.ok and "lists no inputs" in result.error


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="list of stage names"):
        Router(FakeCluster({}), "a")
    with pytest.raises(ValueError, match="routing policy"):
        Router(FakeCluster({}), ["a"], policy="random")


@dataclass(frozen=True)
class BatchRep:
    url: str
    variant: str
    model: str
    max_batch: int


def test_a_replica_gets_at_most_its_batch_and_the_rest_wait_or_are_dropped():
    """MLServer would queue without bound; the router keeps a replica at its batch size, as the
    simulator's server takes one batch at a time: the third request waits for an answer, and one that
    finds no room before its deadline is dropped, not sent."""
    cluster = FakeCluster({"a": []})
    cluster.reps["a"] = [BatchRep("http://a0", "v1", "a", 2)]
    gate = asyncio.Event()
    most = [0]

    async def handle(request: httpx.Request) -> httpx.Response:
        most[0] = max(most[0], cluster.inflight["http://a0"])
        await gate.wait()
        return httpx.Response(200, json={"outputs": []})

    async def scenario():
        async with Router(
            cluster,
            ["a"],
            inputs=lambda url, model: ModelInput("x", "FP32", (3,)),
            transport=httpx.MockTransport(handle),
            drop_after_s=30.0,
        ) as r:
            sends = [asyncio.create_task(r.send(i)) for i in range(3)]
            late = asyncio.create_task(r.send(9, arrived=r.clock() - 29.9))  # 0.1 s left to find room
            done = await asyncio.wait_for(late, 5)
            gate.set()
            return done, await asyncio.gather(*sends)

    dropped, results = asyncio.run(scenario())
    assert dropped.dropped and not dropped.ok
    assert all(x.ok for x in results) and most[0] == 2
