"""The Ray engine: the shared core inside Ray Data actors, on a local or an existing Ray cluster.

Pipeline: the path list as Arrow blocks (`ray.data.from_arrow`, one block = whole batches) ->
`map_batches(ScoreActor, compute=ActorPoolStrategy(size=N))`, each actor reading, decoding and running
its batches -> rows streamed back to the driver (`iter_batches`), which writes them (`writers`).
Actors read the bytes themselves (`inputs.read_bytes`), so a file that cannot be read is a row with its
reason, as in the local engine; `read_binary_files` would fail the whole job on one unreadable file.

Guarantees:
- the deadlock of an actor pool holding every CPU cannot happen: `plan_actors` keeps `IO_CPUS` free
  and refuses --actors x --threads-per-actor beyond what the cluster has (ConfigError, exit 2);
- the artifact travels as bytes through the object store and is checked by sha256 on every actor;
- a cluster rali-edge did not start is never shut down (`ray_connection`);
- every input path comes back exactly once (the driver counts; a mismatch is a BatchRunError).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from rali_edge.batch.core import open_artifact_runner
from rali_edge.batch.rows import ScoredRows, from_arrow
from rali_edge.errors import ConfigError, RaliEdgeError

IO_CPUS = 0.5          # never given to actors: Ray Data's own tasks (splitting, moving blocks) need CPU
MAX_BLOCKS = 2000      # input blocks: enough to spread work, few enough to keep the driver light


class BatchRunError(RaliEdgeError):
    """The Ray job itself failed (not one image): exit 1; parts already written stay."""


def plan_actors(cluster_cpus: float, actors: int | None, threads: int, cluster_gpus: float = 0.0,
                gpus_per_actor: float = 0.0) -> int:
    """How many actors to start: all that fit beside IO_CPUS (None), or `actors` if they fit."""
    free = cluster_cpus - IO_CPUS
    fit = int(free // threads) if free >= threads else 0
    if gpus_per_actor > 0:
        fit = min(fit, int(cluster_gpus // gpus_per_actor))
    if fit < 1:
        raise ConfigError(f"the Ray cluster has {cluster_cpus:g} CPUs and {cluster_gpus:g} GPUs: not enough for one "
                          f"actor of {threads} CPUs (+{gpus_per_actor:g} GPUs) with {IO_CPUS} CPU kept free")
    if actors is None:
        return fit
    if actors > fit:
        raise ConfigError(f"--actors {actors} x --threads-per-actor {threads} do not fit the Ray cluster "
                          f"({cluster_cpus:g} CPUs, {IO_CPUS} kept free for Ray Data's own tasks, "
                          f"{cluster_gpus:g} GPUs): at most {fit}; more would starve those tasks and hang")
    return actors


@contextmanager
def ray_connection(address: str | None) -> Iterator[None]:
    """Ray, connected: the caller's session if one is open (left open), else ray.init(address).
    Only a ray.init made here is undone here: ray.shutdown() stops what that call started (a local
    cluster) and only disconnects from a cluster that was already running."""
    ray = _import_ray()
    if ray.is_initialized():
        yield
        return
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, ValueError) as exc:
        raise ConfigError(f"--ray-address {address}: cannot connect to Ray ({exc})") from None
    try:
        yield
    finally:
        ray.shutdown()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray Data: pip install 'rali-edge[ray]'") from None
    return ray


@dataclass(frozen=True)
class RayEngine:
    address: str | None = None        # None: RAY_ADDRESS, else the latest local cluster, else a new one
    actors: int | None = None         # None: as many as fit (plan_actors)
    threads_per_actor: int = 1
    gpus_per_actor: float = 0.0
    batch_size: int = 32
    device: str | None = None         # torch device, bundles only
    progress: bool = True

    def __post_init__(self) -> None:
        for name, low in (("batch_size", 1), ("threads_per_actor", 1), ("actors", 1), ("gpus_per_actor", 0)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise ConfigError(f"--{name.replace('_', '-')} {value}: must be >= {low}")

    @contextmanager
    def session(self, files) -> Iterator[RaySession]:
        """Connect, plan the actors, read the artifact's metadata once here, put its bytes in the store."""
        with ray_connection(self.address):
            ray = _import_ray()
            res = ray.cluster_resources()
            actors = plan_actors(res.get("CPU", 0.0), self.actors, self.threads_per_actor, res.get("GPU", 0.0),
                                 self.gpus_per_actor)
            metadata = open_artifact_runner(files.path).metadata
            yield RaySession(self, files, (ray.put(files.blobs()),), actors, metadata)


@dataclass
class RaySession:
    engine: RayEngine
    files: object
    artifact: tuple
    actors: int
    metadata: object

    def score(self, paths: Sequence[str]) -> Iterator[ScoredRows]:
        from tqdm import tqdm

        seen = 0
        with _quiet_ray_data(), tqdm(total=len(paths), desc=f"scoring on Ray ({self.actors} actors)", unit="img",
                                     disable=not self.engine.progress) as bar:
            try:
                for table in self._dataset(paths).iter_batches(batch_size=None, batch_format="pyarrow"):
                    rows = from_arrow(table)
                    seen += len(rows)
                    bar.update(len(rows))
                    yield rows
            except _ray_errors() as exc:
                raise BatchRunError(f"the Ray job failed: {exc}") from exc
        if seen != len(paths):
            raise BatchRunError(f"Ray returned {seen} rows for {len(paths)} inputs")

    def _dataset(self, paths: Sequence[str]):
        import pyarrow as pa
        import ray

        from rali_edge.batch.ray_worker import ScoreActor

        e = self.engine
        per_block = e.batch_size * max(1, math.ceil(len(paths) / (e.batch_size * MAX_BLOCKS)))
        blocks = [pa.table({"path": pa.array(paths[i:i + per_block], pa.string())})
                  for i in range(0, len(paths), per_block)]
        kwargs = {"artifact": self.artifact, "name": self.files.path.name, "sha256": self.files.sha256,
                  "threads": e.threads_per_actor, "device": e.device}
        return ray.data.from_arrow(blocks).map_batches(
            ScoreActor, batch_size=e.batch_size, batch_format="pyarrow", fn_constructor_kwargs=kwargs,
            compute=ray.data.ActorPoolStrategy(size=self.actors), num_cpus=e.threads_per_actor,
            num_gpus=e.gpus_per_actor or None)


def _ray_errors() -> tuple[type[BaseException], ...]:
    from ray.exceptions import RayError

    return (RayError,)


@contextmanager
def _quiet_ray_data() -> Iterator[None]:
    """One progress bar (ours) instead of Ray Data's per-operator bars; the setting is restored."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    before = ctx.enable_progress_bars
    ctx.enable_progress_bars = False
    try:
        yield
    finally:
        ctx.enable_progress_bars = before
