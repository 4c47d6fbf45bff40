"""Which engine runs a batch, built from command-line options; an option of the other engine is refused.

`ENGINES` names the engine classes (loaded when used); `ENGINE_OPTIONS` the options only that engine takes. Options are
never dropped: `--actors` with the local engine is an UnsupportedOptionError (exit 2), not ignored.
"""

from __future__ import annotations

from enum import Enum

from rali_edge.errors import UnsupportedOptionError


class EngineName(str, Enum):
    local = "local"
    ray = "ray"


# "module:Class", loaded when used: the command line imports this table without numpy, PIL or Ray.
ENGINES: dict[EngineName, str] = {EngineName.local: "rali_edge.batch.local:LocalEngine",
                                  EngineName.ray: "rali_edge.batch.ray_engine:RayEngine"}

# engine -> {its own option (keyword of the engine class): the command-line spelling}
ENGINE_OPTIONS: dict[EngineName, dict[str, str]] = {
    EngineName.local: {"decode_threads": "--decode-threads"},
    EngineName.ray: {"address": "--ray-address", "actors": "--actors", "threads_per_actor": "--threads-per-actor",
                     "gpus_per_actor": "--gpus-per-actor"},
}


def check_engine_options(name: EngineName, **engine_options) -> dict:
    """The options given (not None); one that belongs to another engine is an UnsupportedOptionError."""
    own = ENGINE_OPTIONS[name]
    given = {k: v for k, v in engine_options.items() if v is not None}
    for key in given:
        if key not in own:
            spelling = next(s for opts in ENGINE_OPTIONS.values() for k, s in opts.items() if k == key)
            raise UnsupportedOptionError(f"{spelling} applies to another engine, not --engine {name.value} "
                                         f"(it takes {', '.join(own.values()) or 'no engine options'})")
    return given


def make_engine(name: EngineName, batch_size: int, device: str | None = None, progress: bool = True,
                **engine_options):
    """The engine `name` with the options given (None: not given); another engine's option is refused."""
    from rali_edge.export.formats import load_object

    given = check_engine_options(name, **engine_options)
    return load_object(ENGINES[name])(batch_size=batch_size, device=device, progress=progress, **given)


def validator_for(name: EngineName, **engine_options):
    """`validate_artifacts` (local) or its Ray counterpart, called the same way (`rali-edge validate`)."""
    import functools

    given = check_engine_options(name, **engine_options)
    if name is EngineName.local:
        from rali_edge.validate import validate_artifacts

        return validate_artifacts
    from rali_edge.batch.drift import validate_on_ray

    return functools.partial(validate_on_ray, ray_options=given)
