"""Batch jobs on a Ray cluster: ``predict``, ``evaluate`` and the fine-tune's feature pass,
with ``--ray [ADDRESS]``.

The plain path cuts each job into units (32 photos for ``predict``, a forward pass's photos for
``evaluate``, 4 photos of one view for the feature pass) and runs them on threads in this
process, each on one BLAS thread (``training.parallel``). Here the same units go to Ray actors,
one per CPU of the cluster, each holding the model and running its numpy engine on one BLAS
thread; the results come back in order. The work is the same function on the same inputs on
one BLAS thread, so the output is the plain path's, bit for bit (on nodes with the same CPU
kind and libraries: another CPU may take other BLAS kernels).

Why Ray core (actors and ``ray.wait``) and not Ray Data: the units and their order are fixed
by the plain path, and reading this module should show all of the distribution: submit a
unit to the least busy worker, take results as they finish, hand them on in order. Ray Data
would bring pyarrow and pandas, its own batch sizes and a second copy of the batching rules.

What a worker gets: the weights file's bytes (it builds its own model from them, as
``models.load`` does from a file; no object of ours is pickled), a JSON-able spec, and units
of plain data (photo bytes, or ``uint8`` pixels); it returns plain arrays and strings.

Failures: a worker process that dies is restarted by Ray and its unfinished units are run
again (``MAX_RESTARTS`` times), so nothing is lost, and each unit's result is taken once, so
nothing is doubled. ``KeyboardInterrupt`` (Ctrl-C, or ``SIGTERM`` through the command line)
kills the workers, and ``Cluster.close`` stops a cluster this process started.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from micrograd.backend import cpu_count
from models.classifier import Scored
from models.preprocess import ImageError, read_file

if TYPE_CHECKING:
    from training.finetune import FeatureJob, FeatureUnit

#: How to get Ray, in the words of the one-line error when it is missing.
INSTALL = "pip install '.[ray]' (Ray is pinned in requirements-ray.txt)"
#: Seconds to wait for a cluster's address to answer before saying it does not.
CONNECT_TIMEOUT_S = 10
#: Times a worker is restarted, and a unit it was running tried again, before the job fails.
MAX_RESTARTS = 3
#: Units waiting at each worker besides the one it runs, so it never idles between two.
QUEUED_PER_WORKER = 1
#: Every worker's numpy runs on one BLAS thread: the cluster's parallelism is its workers.
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class ClusterError(Exception):
    """A cluster that cannot be started, joined or used; ``str(err)`` is one line."""


def import_ray() -> Any:
    """The ``ray`` module, or ``ClusterError`` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


# ------------------------------------------------------------------------------ the jobs


def _score_job(blob: bytes, spec: dict[str, Any]) -> Callable[[list[bytes]], Any]:
    """``models.Classifier.score`` on a unit of photo bytes -> ``(logits, errors)``."""
    from models import load_bytes

    classifier = load_bytes(blob)
    batch_size = spec.get("batch_size")

    def score(unit: list[bytes]) -> tuple[Any, tuple[tuple[int, str], ...]]:
        scored = classifier.score(unit, batch_size)
        return scored.logits, scored.errors

    return score


def _feature_job(blob: bytes, spec: dict[str, Any]) -> Callable[[Any], Any]:
    """``training.finetune.FeatureJob`` on ``(view, start, pixels)`` -> float16 features."""
    from training.finetune import FeatureJob

    return FeatureJob.from_spec(blob, spec)


JOBS: dict[str, Callable[[bytes, dict[str, Any]], Callable[[Any], Any]]] = {
    "score": _score_job,
    "features": _feature_job,
}


class Worker:
    """A Ray actor: builds one job from the weights' bytes and runs its units."""

    def __init__(self, job: str, blob: bytes, spec: dict[str, Any]) -> None:
        self.run_unit = JOBS[job](blob, spec)

    def run(self, unit: Any) -> Any:
        return self.run_unit(unit)

    def pid(self) -> int:
        return os.getpid()


# ------------------------------------------------------------------------------ the cluster


class Cluster:
    """A Ray cluster to run jobs on, connected on first use.

    address: None starts a cluster on this machine, one worker per CPU this process may use;
        ``"auto"`` joins the cluster ``ray start`` made on this machine; ``"ray://host:10001"``
        (Ray Client) or ``"host:6379"`` joins a remote one. Its nodes need this project
        installed, the same version, with ``pip install '.[ray]'``.

    ``close()`` (or leaving a ``with`` block) stops a cluster started here, and only
    disconnects from one joined.
    """

    def __init__(self, address: str | None = None) -> None:
        self.address = address
        self.ray: Any = None
        self.worker_pids: list[int] = []  # the running job's workers, for tests and messages
        self.running: weakref.WeakSet[Iterator[Any]] = weakref.WeakSet()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> Any:
        """Start or join the cluster (once); ``ClusterError`` in one line when that fails."""
        if self.ray is not None:
            return self.ray
        ray = import_ray()
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,  # stdout is the job's output; a worker's errors come back
            "logging_level": logging.ERROR,
        }
        if self.address is None:
            options["num_cpus"] = cpu_count()
        else:
            options["address"] = self.address
            _check_reachable(self.address)
        try:
            ray.init(**options)
        except KeyboardInterrupt:
            ray.shutdown()  # what was started of a local cluster goes too
            raise
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
            where = "start a local Ray cluster" if self.address is None else f"join {self.address}"
            raise ClusterError(f"cannot {where}: {_first_line(exc)}") from None
        self.ray = ray
        return ray

    def workers(self) -> int:
        """One per CPU of the cluster."""
        ray = self.connect()
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    def close(self) -> None:
        for running in list(self.running):
            running.close()
        if self.ray is not None:
            self.ray.shutdown()
            self.ray = None

    def map(
        self,
        job: str,
        blob: bytes,
        spec: dict[str, Any],
        units: Iterable[Any],
        done: Callable[[int], None] | None = None,
    ) -> Iterator[Any]:
        """See ``_map``. A job still running when the cluster closes (Ctrl-C while its
        caller was busy) is stopped first, its workers killed while Ray is still up."""
        running = self._map(job, blob, spec, units, done)
        self.running.add(running)
        return running

    def _map(
        self,
        job: str,
        blob: bytes,
        spec: dict[str, Any],
        units: Iterable[Any],
        done: Callable[[int], None] | None,
    ) -> Iterator[Any]:
        """Run ``JOBS[job]`` on every unit, on every worker of the cluster; yield the results
        in the units' order. ``done(i)`` is called as unit ``i`` finishes (in any order).

        At most ``workers * (1 + QUEUED_PER_WORKER)`` units are out at once, so neither the
        object store nor the results waiting for an earlier one grow with the job. A worker
        that dies is replaced and its units are sent again, each at most ``MAX_RESTARTS``
        times; each unit's result is taken once.
        """
        ray = self.connect()
        actor = ray.remote(Worker).options(num_cpus=1, runtime_env={"env_vars": ONE_THREAD})
        weights = ray.put(blob)  # shipped once per node, however many workers it has
        pool = [actor.remote(job, weights, spec) for _ in range(self.workers())]
        try:
            self.worker_pids = ray.get([w.pid.remote() for w in pool])
            # result -> (unit index, the unit, the worker's slot, the worker)
            pending: dict[Any, tuple[int, Any, int, Any]] = {}
            tries: dict[int, int] = {}
            queue = iter(enumerate(units))

            def submit(slot: int, i: int, unit: Any) -> None:
                pending[pool[slot].run.remote(unit)] = (i, unit, slot, pool[slot])

            for _ in range(1 + QUEUED_PER_WORKER):
                for slot in range(len(pool)):
                    for i, unit in itertools.islice(queue, 1):
                        submit(slot, i, unit)
            finished: dict[int, Any] = {}
            following = 0
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                i, unit, slot, worker = pending.pop(ref)
                try:
                    finished[i] = ray.get(ref)
                except ray.exceptions.RayActorError:  # the worker died: replace it, send again
                    tries[i] = tries.get(i, 0) + 1
                    if tries[i] > MAX_RESTARTS:
                        raise ClusterError(
                            f"a worker died {tries[i]} times running part {i + 1} of the job"
                        ) from None
                    if pool[slot] is worker:  # the first of its units to come back
                        pool[slot] = actor.remote(job, weights, spec)
                    submit(slot, i, unit)
                    continue
                if done is not None:
                    done(i)
                for j, following_unit in itertools.islice(queue, 1):
                    submit(slot, j, following_unit)
                while following in finished:
                    yield finished.pop(following)
                    following += 1
        except ray.exceptions.RayError as exc:
            message = f"the cluster could not finish the job: {_first_line(exc)}"
            raise ClusterError(message) from None
        finally:
            for w in pool:
                ray.kill(w)
            self.worker_pids = []

    def score(
        self,
        weights: Path,
        runs: Iterable[Sequence[str]],
        batch_size: int | None = None,
        done: Callable[[int], None] | None = None,
    ) -> Iterator[Scored]:
        """``Classifier.score`` on each run of photo paths, on the workers: yields one
        ``Scored`` per run, in order, as the plain path would. This process reads the files
        (so the workers need no access to them) and ships their bytes."""
        shipped: list[tuple[list[int], tuple[tuple[int, str], ...]]] = []  # per run in flight

        def units() -> Iterator[list[bytes]]:
            for run in runs:
                sent, data, unreadable = [], [], []
                for i, path in enumerate(run):
                    try:
                        data.append(read_file(path))
                        sent.append(i)
                    except ImageError as exc:
                        unreadable.append((i, str(exc)))
                shipped.append((sent, tuple(unreadable)))
                yield data

        spec = {"batch_size": batch_size}
        results = self.map("score", Path(weights).read_bytes(), spec, units(), done)
        for index, (logits, errors) in enumerate(results):
            sent, unreadable = shipped[index]
            shipped[index] = ([], ())  # let the run's bookkeeping go
            merged = sorted([*unreadable, *((sent[i], message) for i, message in errors)])
            yield Scored(logits, tuple(merged))

    def features(
        self, job: FeatureJob, units: Iterable[FeatureUnit], done: Callable[[int], None]
    ) -> Iterator[Any]:
        """The feature pass's units (``training.finetune.RunUnits``) on the workers."""
        if job.pretrained is None:
            raise ValueError("a feature job needs its pretrained file to run on a cluster")
        yield from self.map("features", job.pretrained.read_bytes(), job.spec, units, done)


def _check_reachable(address: str) -> None:
    """``ClusterError`` at once if nothing listens at a ``[ray://]host:port`` address (Ray
    itself would keep trying for minutes); ``auto`` is left to Ray, which answers at once."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterError(f"cannot join {address}: nothing answers there ({reason})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
