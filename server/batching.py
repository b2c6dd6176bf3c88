"""Dynamic batching: one worker thread per model owns a :class:`~textgen.sampling.DecodeBatch`.

Request threads turn each prompt of a request into rows (:meth:`Batcher.prepare`) and
:meth:`Batcher.submit` them as one :class:`Job`.
The worker admits waiting jobs whenever the batch has room (a job joins at the next step and its
rows leave as they finish), steps every row together, and hands each job its text as it is
released: a streaming request reads :attr:`Job.events`, a plain one waits on :attr:`Job.done`.
Each row keeps its own sampling parameters, seed and form constraint, so a seeded request writes
the same text alone or batched.  The wait queue is bounded: a full queue raises :class:`QueueFull`.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from server.error_kinds import ErrorKind
from server.metrics import Metrics
from server.settings import Batching
from textgen.export import LoadedModel
from textgen.forms import prepare_form
from textgen.sampling import DecodeBatch, Row, Sample, SamplingParams

log = logging.getLogger("server")


class QueueFull(Exception):
    """The model's wait queue is full; come back after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the generation queue is full; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Failure:
    """Why a job ended without its samples: its error kind, and words for the client."""

    kind: ErrorKind
    message: str


CANCELLED = Failure(ErrorKind.CANCELLED, "the request was cancelled")
STEP_FAILED = Failure(ErrorKind.GENERATION_FAILED, "generation failed (logged on the server)")


class JobFailed(Exception):
    """The worker could not take a job (``kind`` says why; details are in the log)."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class TextEvent:
    """Row ``index`` released ``text`` (its next characters)."""

    index: int
    text: str
    start: int
    """Where ``text`` starts in the row's generated text (its characters released before)."""
    logprobs: list[float] | None = None
    """Each character's log-probability, for a row that tracks them."""
    top: list[dict[str, float]] | None = None
    """Each character's most likely characters, for a row that asked for ``top_logprobs``."""


@dataclass(frozen=True)
class FinishEvent:
    """Row ``index`` finished; ``sample`` is its whole result."""

    index: int
    sample: Sample


@dataclass(frozen=True)
class DoneEvent:
    """Every row of the job finished: the last event."""


@dataclass(frozen=True)
class ErrorEvent:
    """The job failed or was cancelled (``failure`` says which): the last event."""

    failure: Failure


JobEvent = TextEvent | FinishEvent | DoneEvent | ErrorEvent
"""What a streaming job's :attr:`Job.events` carries: text and finish events, then one done or error event."""


@dataclass
class PromptRows:
    """One prompt's rows (``params.candidates`` of them), as :meth:`Batcher.prepare` builds them."""

    read: str
    """The prompt as the model reads it (a form may add a title line or ``\\begin{...}``)."""
    echo: str
    """Text returned before each sample's own (a ``latex`` form's opening and prompt, else "")."""
    rows: list[Row]


@dataclass(eq=False)
class Job:
    """One request: ``n`` rows generated together; events and samples come back to the request thread.

    The batcher's worker reports through :meth:`emit_text`, :meth:`finish_row` and :meth:`fail`;
    the request thread reads :attr:`events` (a streaming job) or waits on :attr:`done`.
    """

    rows: list[Row]
    stream: bool = False
    events: queue.SimpleQueue[JobEvent] = field(default_factory=queue.SimpleQueue)
    """:class:`TextEvent` and :class:`FinishEvent` (streaming jobs only), then :class:`DoneEvent` or
    :class:`ErrorEvent` (every job)."""
    done: threading.Event = field(default_factory=threading.Event)
    samples: dict[int, Sample] = field(default_factory=dict)
    failure: Failure | None = None
    cancelled: bool = False
    enqueued: float = field(default_factory=time.perf_counter)
    started: float | None = None
    finished: float | None = None

    @property
    def queue_ms(self) -> float:
        return 1000 * ((self.started or self.finished or time.perf_counter()) - self.enqueued)

    @property
    def generate_ms(self) -> float:
        if self.started is None:
            return 0.0
        return 1000 * ((self.finished or time.perf_counter()) - self.started)

    def emit_text(self, index: int, text: str) -> None:
        """Row ``index`` released ``text`` (an event for a streaming job; a plain one reads its samples),
        with its characters' log-probabilities when the row tracks them."""
        if not self.stream:
            return
        row = self.rows[index]
        start = row.emitted - len(text)  # the row's characters released before these
        # the worker records a character's numbers before it releases its text
        logprobs = row.char_logprobs[start:row.emitted] if row.params.wants_logprobs else None
        top = row.top[start:row.emitted] if row.params.top_logprobs else None
        self.events.put(TextEvent(index, text, start, logprobs, top))

    def finish_row(self, index: int, sample: Sample) -> None:
        """Row ``index`` is done with ``sample``; after the last row the job is :attr:`done`."""
        self.samples[index] = sample
        if self.stream:
            self.events.put(FinishEvent(index, sample))
        if len(self.samples) == len(self.rows):
            self._close(DoneEvent())

    def fail(self, failure: Failure) -> None:
        """End the job with ``failure`` (a job already done sends no more events)."""
        self.failure = failure
        self._close(ErrorEvent(failure))

    def _close(self, event: DoneEvent | ErrorEvent) -> None:
        if self.done.is_set():
            return
        self.finished = time.perf_counter()
        self.events.put(event)
        self.done.set()


class Batcher:
    """The decoding worker of one model, run as ``settings`` (the server's ``batching`` section) say."""

    def __init__(
        self,
        name: str,
        loaded: LoadedModel,
        settings: Batching,
        *,
        metrics: Metrics,
        device: str = "cpu",
        onednn: bool = False,
    ) -> None:
        self.name = name
        self.loaded = loaded
        self.settings = settings
        self.metrics = metrics
        # This model's series, looked up once: the worker updates them at every step.
        self._queue_depth = metrics.queue_depth.labels(model=name)
        self._active_rows = metrics.active_rows.labels(model=name)
        self._batch_size = metrics.batch_size.labels(model=name)
        self._generated_chars = metrics.generated_chars.labels(model=name)
        self._encoder_rows = metrics.encoder_rows.labels(model=name)
        self._encoder_seconds = metrics.encoder_seconds.labels(model=name)
        # oneDNN's LSTM kernel costs 1.1-5x the native one per decoding step on CPU (docs/SERVING.md);
        # DecodeBatch switches it for its own model calls.
        self.batch = DecodeBatch(loaded, device, onednn=onednn, on_read=self._record_read)
        self._pending: deque[Job] = deque()
        self._cancelled: list[Job] = []
        self._running: set[Job] = set()
        self._cond = threading.Condition()
        self._closing = False
        self._step_seconds = settings.first_step_s  # moving average, for Retry-After
        self._thread = threading.Thread(target=self._loop, name=f"textgen-batcher-{name}", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- request side
    def prepare(self, prompt: str, params: SamplingParams, form: Mapping[str, Any] | None = None) -> PromptRows:
        """The ``params.candidates`` rows of ``prompt`` (``best_of``, else ``n``) under ``form``.

        Raises ``TokenizerError`` or ``SamplingError`` for a prompt the model cannot read and
        ``FormError`` for a form it cannot write, each naming the field."""
        self.loaded.tokenizer.encode(prompt)  # TokenizerError: a 422 naming the prompt
        read, new_constraint, echo = prompt, None, ""
        prepared = prepare_form(form, self.loaded, prompt)
        if prepared is not None:
            read, new_constraint, echo = prepared.prompt, prepared.new_constraint, prepared.echo
        rows = [self.batch.make_row(read, params, index=index,
                                    constraint=new_constraint() if new_constraint else None)
                for index in range(params.candidates)]
        return PromptRows(read, echo, rows)

    def submit(self, parts: Sequence[PromptRows], *, stream: bool = False) -> Job:
        """Queue the rows of ``parts`` as one job; it joins the batch at the next step with room.
        Raises :class:`QueueFull`, or :class:`JobFailed` while the worker is stopping."""
        job = Job([row for part in parts for row in part.rows], stream=stream)
        for index, row in enumerate(job.rows):
            row.tag = (job, index)
        with self._cond:
            if self._closing:
                raise JobFailed(ErrorKind.SHUTTING_DOWN, "the server is shutting down")
            if len(self._pending) >= self.settings.queue_length and not self._has_room(job):
                raise QueueFull(self._retry_after())
            self._pending.append(job)
            self._queue_depth.set(len(self._pending))
            self._cond.notify()
        return job

    def cancel(self, job: Job) -> None:
        """Drop a job (its client went away): waiting, it leaves the queue; running, its rows leave the batch."""
        with self._cond:
            if job.done.is_set() or job.cancelled:
                return
            job.cancelled = True
            if job in self._pending:
                self._pending.remove(job)
                self._queue_depth.set(len(self._pending))
                job.fail(CANCELLED)
            else:
                self._cancelled.append(job)
                self._cond.notify()

    def busy(self) -> bool:
        """Whether any job is waiting or running."""
        with self._cond:
            return bool(self._pending or self._running)

    def close(self, timeout: float | None = None) -> None:
        """Stop the worker after the running and waiting jobs are done; wait for that at most ``timeout``
        seconds (``settings.close_timeout_s`` by default), after which the worker finishes them alone."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(self.settings.close_timeout_s if timeout is None else timeout)

    def _has_room(self, job: Job) -> bool:
        rows = len(self.batch) + sum(len(j.rows) for j in self._pending)
        return rows + len(job.rows) <= self.settings.max_batch_size

    def _retry_after(self) -> int:
        """Seconds until the queue has likely moved on: the waiting rows' steps at the current pace."""
        waiting = sum(len(j.rows) * j.rows[0].params.max_new_chars for j in self._pending)
        rounds = waiting / max(1, self.settings.max_batch_size)
        return int(min(self.settings.retry_after_max_s, max(1, math.ceil(rounds * self._step_seconds))))

    # ----------------------------------------------------------------- worker side
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not (self._pending or self._cancelled or len(self.batch) or self._closing):
                    self._cond.wait()
                if self._closing and not (self._pending or len(self.batch)):
                    return
                if not len(self.batch) and self._pending and self.settings.max_wait_ms > 0:
                    self._gather()
                cancelled, self._cancelled = self._cancelled, []
                admitted = self._admit()
            try:
                self._work(cancelled, admitted)
            except Exception:  # never let the worker die: fail what it held and start afresh
                log.exception("batcher %s failed", self.name)
                self._reset(STEP_FAILED)

    def _gather(self) -> None:
        """An idle model waits ``max_wait_ms`` for more requests, so that they start together."""
        deadline = time.perf_counter() + self.settings.max_wait_ms / 1000
        while sum(len(j.rows) for j in self._pending) < self.settings.max_batch_size and not self._closing:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._cond.wait(remaining)

    def _admit(self) -> list[Job]:
        admitted, rows = [], len(self.batch)
        while self._pending:
            job = self._pending[0]
            if rows and rows + len(job.rows) > self.settings.max_batch_size:
                break  # a job larger than the batch still runs, alone
            admitted.append(self._pending.popleft())
            rows += len(job.rows)
        self._running.update(admitted)
        self._queue_depth.set(len(self._pending))
        return admitted

    def _work(self, cancelled: list[Job], admitted: list[Job]) -> None:
        for job in cancelled:
            self.batch.remove(job.rows)
            self._done(job, CANCELLED)
        if admitted:  # one add for all: each add re-stacks the whole batch state
            started = time.perf_counter()
            for job in admitted:
                job.started = started
            self.batch.add([row for job in admitted for row in job.rows])
            for job in admitted:
                for index, row in enumerate(job.rows):
                    if row.finished:  # nothing to generate (max_new_chars 0, a form complete already)
                        self._finish(job, index, row)
        if not len(self.batch):
            self._active_rows.set(0)
            return
        self._batch_size.observe(len(self.batch))
        self._active_rows.set(len(self.batch))
        started = time.perf_counter()
        out = self.batch.step()
        weight = self.settings.step_time_weight
        self._step_seconds = (1 - weight) * self._step_seconds + weight * (time.perf_counter() - started)
        for row, text in out:
            job, index = row.tag
            if text:
                job.emit_text(index, text)
            if row.finished:
                self._finish(job, index, row)
        self._active_rows.set(len(self.batch))

    def _record_read(self, rows: int, seconds: float) -> None:
        self._encoder_rows.observe(rows)
        self._encoder_seconds.inc(seconds)

    def _finish(self, job: Job, index: int, row: Row) -> None:
        sample = row.sample()
        self._generated_chars.inc(sample.generated_chars)
        job.finish_row(index, sample)
        if job.done.is_set():
            self._done(job)

    def _done(self, job: Job, failure: Failure | None = None) -> None:
        if failure is not None:
            job.fail(failure)
        with self._cond:
            self._running.discard(job)

    def _reset(self, failure: Failure) -> None:
        with self._cond:
            jobs = list(self._running)
            self._running.clear()
            self._cancelled.clear()
        self.batch.remove(list(self.batch.rows))
        for job in jobs:
            job.fail(failure)
        self._active_rows.set(0)
