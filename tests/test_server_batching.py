"""The server's workers without HTTP: a :class:`Batcher` cancels, survives a failing step and caps its
Retry-After; the :class:`ModelRegistry` reloads an export whose files changed.  Untrained exports
(``contract_exports``): none of this depends on what the weights write."""

from __future__ import annotations

import queue
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from server_fixtures import CONTRACT_MODELS, ENGLISH, TANG_VERSE, write_untrained_export

from server.batching import (
    CANCELLED,
    STEP_FAILED,
    Batcher,
    DoneEvent,
    ErrorEvent,
    FinishEvent,
    Job,
    JobEvent,
    QueueFull,
    TextEvent,
)
from server.metrics import Metrics
from server.registry import ModelRegistry, ModelUnavailable
from server.settings import Batching, ServerSettings
from textgen.export import LoadedModel, load_export
from textgen.sampling import SamplingParams, generate

EN_MODEL = CONTRACT_MODELS[0]
RESET = STEP_FAILED  # what a job hears when a step raised
LONG = SamplingParams(max_new_chars=1_000_000, seed=1)  # runs until it is cancelled
SHORT = SamplingParams(max_new_chars=20, seed=2)
WAIT_S = 30


class BrokenForm:
    """A form constraint (:class:`textgen.sampling.Constraint`) whose mask cannot be computed: the step
    that asks for it raises, as a buggy form would."""

    def allowed(self) -> None:
        raise RuntimeError("this form cannot say what comes next")

    def advance(self, token: int, text: str) -> None:
        """Nothing to record."""

    def is_complete(self) -> bool:
        return False


@pytest.fixture(scope="module")
def english(contract_exports: Path) -> LoadedModel:
    return load_export(contract_exports / EN_MODEL)


@pytest.fixture
def batcher_of(english: LoadedModel) -> Iterator[Callable[..., Batcher]]:
    """``batcher_of(**batching)``: a Batcher of the untrained English model; closed after the test."""
    made: list[Batcher] = []

    def make(**batching) -> Batcher:
        made.append(Batcher("untrained", english, Batching(max_wait_ms=0, **batching), metrics=Metrics()))
        return made[-1]

    yield make
    for batcher in made:
        batcher.close()


def submit(batcher: Batcher, params: SamplingParams, constraint: type | None = None) -> Job:
    """A streaming job of ``params`` after "the" (each row under a ``constraint()`` of its own if given)."""
    part = batcher.prepare("the", params)
    if constraint is not None:
        for row in part.rows:
            row.constraint = constraint()
    return batcher.submit([part], stream=True)


def next_event(job: Job) -> JobEvent:
    return job.events.get(timeout=WAIT_S)


def last_event(job: Job) -> JobEvent:
    """The job's last event, once it is done."""
    assert job.done.wait(WAIT_S), "the job never ended"
    events = []
    while True:
        try:
            events.append(job.events.get_nowait())
        except queue.Empty:
            return events[-1]


def assert_serves(batcher: Batcher) -> None:
    """A new job runs to its end: the worker is alive and its batch is free."""
    job = submit(batcher, SHORT)
    assert isinstance(last_event(job), DoneEvent) and job.failure is None
    assert len(job.samples[0].text) == SHORT.max_new_chars
    assert not batcher.busy()


def test_a_job_streams_its_text_then_its_sample_then_done(batcher_of):
    batcher = batcher_of(max_batch_size=4)
    job = submit(batcher, SamplingParams(max_new_chars=30, n=2, seed=3))
    assert job.done.wait(WAIT_S)
    events = [job.events.get_nowait() for _ in range(job.events.qsize())]
    assert isinstance(events[-1], DoneEvent) and not any(isinstance(e, DoneEvent) for e in events[:-1])
    for index in (0, 1):
        texts = [e.text for e in events if isinstance(e, TextEvent) and e.index == index]
        (finish,) = [e for e in events if isinstance(e, FinishEvent) and e.index == index]
        assert "".join(texts) == finish.sample.text == job.samples[index].text
        assert finish.sample.generated_chars == 30


def test_cancelling_a_waiting_job_drops_it_from_the_queue(batcher_of):
    batcher = batcher_of(max_batch_size=1)
    running = submit(batcher, LONG)
    assert isinstance(next_event(running), TextEvent)  # it holds the batch's only row
    waiting = submit(batcher, SHORT)
    batcher.cancel(waiting)
    assert waiting.done.is_set() and waiting.failure == CANCELLED and waiting.started is None
    assert last_event(waiting) == ErrorEvent(CANCELLED)
    assert not running.done.is_set()  # the running job goes on
    batcher.cancel(running)
    assert last_event(running) == ErrorEvent(CANCELLED)
    assert_serves(batcher)


def test_cancelling_a_running_job_frees_its_rows(batcher_of):
    batcher = batcher_of(max_batch_size=4)
    running = submit(batcher, SamplingParams(max_new_chars=1_000_000, n=2, seed=4))
    assert isinstance(next_event(running), TextEvent)
    batcher.cancel(running)
    assert last_event(running) == ErrorEvent(CANCELLED) and running.failure == CANCELLED
    assert running.samples == {}
    batcher.cancel(running)  # twice is harmless
    assert_serves(batcher)


def test_a_step_that_raises_fails_the_running_jobs_and_the_worker_serves_on(batcher_of):
    batcher = batcher_of(max_batch_size=4)
    bystander = submit(batcher, LONG)
    assert isinstance(next_event(bystander), TextEvent)
    broken = submit(batcher, SHORT, constraint=BrokenForm)  # joins the batch: the next step raises
    for job in (broken, bystander):
        assert last_event(job) == ErrorEvent(RESET) and job.failure == RESET
    assert not batcher.busy()
    assert_serves(batcher)


def test_a_full_queue_asks_for_at_most_retry_after_max_s(batcher_of):
    batcher = batcher_of(max_batch_size=1, queue_length=1, retry_after_max_s=7)
    running = submit(batcher, LONG)
    assert isinstance(next_event(running), TextEvent)  # it holds the only row
    waiting = submit(batcher, LONG)  # the one place in the queue: a million steps, far over the cap at any pace
    with pytest.raises(QueueFull) as refused:
        submit(batcher, SHORT)
    assert refused.value.retry_after == 7
    for job in (waiting, running):
        batcher.cancel(job)
        assert isinstance(last_event(job), ErrorEvent)
    assert_serves(batcher)


# --------------------------------------------------------------------------- the registry
@pytest.fixture
def registry(tmp_path: Path) -> Iterator[ModelRegistry]:
    """A registry over an empty checkpoints folder of its own (``registry.root``)."""
    registry = ModelRegistry(ServerSettings(checkpoints=tmp_path / "checkpoints"), Metrics())
    registry.root.mkdir()
    yield registry
    registry.close()


def test_a_changed_export_is_reloaded_and_the_old_weights_finish_their_jobs(registry, contract_exports):
    shutil.copytree(contract_exports / EN_MODEL, registry.root / EN_MODEL)
    old = registry.get(EN_MODEL)
    assert registry.get(EN_MODEL) is old  # unchanged files: the same worker
    params = SamplingParams(max_new_chars=500, seed=5)
    job = submit(old, params)
    write_untrained_export(registry.root / EN_MODEL, TANG_VERSE, "gru")  # exported again under that name
    new = registry.get(EN_MODEL)
    assert new is not old and registry.get(EN_MODEL) is new
    assert new.loaded.info.model.cell == "gru" and old.loaded.info.model.cell == "lstm"
    assert isinstance(last_event(job), DoneEvent)  # the old worker finished it, on the old weights:
    assert job.samples[0].text == generate(old.loaded, "the", params)[0].text
    assert_serves(new)


def test_a_failed_load_is_retried_after_retry_failed_s_or_when_its_files_change(tmp_path, contract_exports):
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(contract_exports / "broken", checkpoints / "broken")
    metrics = Metrics()
    failures = metrics.model_loads.labels(model="broken", outcome="failed")
    remembering = ModelRegistry(ServerSettings(checkpoints=checkpoints, retry_failed_s=3600), metrics)
    for _ in range(2):
        with pytest.raises(ModelUnavailable):
            remembering.get("broken")
    assert failures._value.get() == 1  # the second request heard the remembered failure
    retrying = ModelRegistry(ServerSettings(checkpoints=checkpoints, retry_failed_s=0), metrics)
    for _ in range(2):
        with pytest.raises(ModelUnavailable):
            retrying.get("broken")
    assert failures._value.get() == 3  # tried each time
    write_untrained_export(checkpoints / "broken", ENGLISH, "lstm")  # mended: its files changed
    try:
        assert_serves(remembering.get("broken"))
    finally:
        remembering.close()
        retrying.close()
