"""``torch.compile`` for the hot paths, with a clean fallback to eager when it cannot compile.

``train.compile``: ``false`` (default) never compiles; ``auto`` compiles and falls back to eager,
with one logged warning, when compiling fails (no C++ compiler, an op inductor does not support);
``true`` compiles and a failure is an error. Off by default because it does not always pay: the
first call compiles for tens of seconds, which short runs never win back (docs/speed.md). Shapes are
static (``dynamic=False``): every minibatch has the same shape, so one compile serves the whole
run. The compile happens on the first call; its time is part of the run's wall time.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Literal, TypeVar

import torch

from accord.errors import ConfigError

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


# Inductor settings for every compile: tanh as 2 / (1 + exp(-2x)) - 1 (vectorized exp; the default tanh
# kernel was most of a compiled 64-64 tanh MLP's time here, same result to ~2e-7), and random ops run
# as eager ATen kernels, so a compiled function draws exactly the numbers the eager one draws. The vector
# ISA comes from the CPU's flags without inductor's probe, a test program it compiles and loads in every
# new cache (2.5 s of a cold start on AVX2 cores; AVX-512 ones: see _skip_extension_probes); a compiler
# that cannot build for it fails the compile, which ``auto`` runs eager.
OPTIONS = {"cpp.use_decompose_tanh": True, "fallback_random": True, "cpp.vec_isa_ok": True}


@functools.cache
def _skip_extension_probes() -> None:
    """On AVX-512 CPUs, inductor's vector ISA without its probes of the bf16, VNNI and AMX extensions.

    ``cpp.vec_isa_ok`` skips the probe of AVX-512 itself but not these: six test programs compiled
    in every new cache and a Python process started per probe in every run (1.7 s of a cold start,
    docs/benchmarks.md, "Speed", sixteenth round). They decide instructions for bfloat16 and int8
    kernels only; accord's programs are float32, and inductor's code for them is the same without.
    Inductor has no setting for this, so its list of usable ISAs is replaced: AVX-512 (then AVX2) as
    the CPU's flags allow. A torch without these internals keeps its own probes. The list is the
    process's: other code compiling in it after accord gets no AMX kernels for bfloat16 and int8."""
    try:
        from torch._inductor import cpu_vec_isa as isa

        flags = isa.x86_isa_checker()
    except (ImportError, AttributeError):
        return
    if "avx512" not in flags:
        return

    class AVX512(isa.VecAVX512):  # the same ISA (name, flags, width); usable without the extension probes
        def __bool__(self) -> bool:
            return True

    usable = [AVX512(), *([isa.VecAVX2()] if "avx2" in flags else [])]
    isa.valid_vec_isa_list = lambda: usable


# The guards of the first calls, where the compiles happen, are built with dynamo's recursive dict tags:
# on a later call a module whose attributes did not change is checked by its ``__dict__``'s version tag,
# not attribute by attribute (docs/benchmarks.md, "Speed", twelfth round). Dynamo leaves this off by
# default; it is set only while these calls run, not for other code in the process.
FIRST_CALLS = 3

# Seconds this process spent compiling, reported apart from the training time that holds them
# (``compile_s`` in a run's metrics and summary): the first call of each program, where it is compiled.
# A guarded function's backward compiles on its first backward pass, outside that call, and is not counted.
_compile_seconds = [0.0]


def compile_seconds() -> float:
    """Seconds this process has spent compiling with :func:`compiled` (its programs' first calls)."""
    return _compile_seconds[0]


@contextlib.contextmanager
def _compiling() -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        _compile_seconds[0] += time.perf_counter() - start


def compiled(fn: F, setting: bool | Literal["auto"], what: str, key: str = "train.compile",
             cpp_wrapper: bool = False, shapes: Callable[..., Hashable] | None = None) -> F:
    """``fn`` compiled on its first call, or ``fn`` itself, as the setting ``key`` (``setting``) asks.

    ``cpp_wrapper``: inductor writes the code around the kernels (buffer allocation, views, calls) in
    C++ rather than Python, for a small program called very often, where that code is most of a call's
    time; it compiles longer.

    ``shapes``: for the programs training calls most (the fused collection step, PPO's minibatch step),
    whose Python state is fixed for their life and whose tensors' shapes, dtypes and devices follow
    from the value ``shapes(*args)``. A program is compiled ahead for each such value on its first call
    (dynamo's ``aot_compile``) and then called without dynamo: no guards, no per-call check at all (the
    per-call cost was a fifth of collection's time at JaxMARL's settings, docs/benchmarks.md, "Speed",
    fourteenth round). Nothing sees a changed Python attribute or a tensor of another shape than its
    value promised. Where torch has no ``aot_compile`` or it cannot compile ``fn`` whole (a graph
    break), ``fn`` is compiled as without ``shapes``, with dynamo's guards."""
    if setting not in (True, False, "auto"):
        raise ConfigError(f"{key} must be true, false or auto, got {setting!r}")
    if setting is False:
        return fn
    _skip_extension_probes()
    options: dict[str, Any] = {**OPTIONS, "cpp_wrapper": cpp_wrapper}
    if cpp_wrapper:  # the kernels at -O3, the C++ around them at -O1: ~1 s less compile a program, as fast
        options["cpp_wrapper_build_separate"] = True
    fast = torch.compile(fn, dynamic=False, options=options)
    current: list[Callable[..., Any]] = [fast]
    calls = [0]
    programs: dict[Hashable, Callable[..., Any] | None] = {}  # None: compiled with guards instead

    def call(*args: Any, **kwargs: Any) -> Any:
        if current[0] is fn:
            return fn(*args, **kwargs)
        try:
            if shapes is not None:
                value = shapes(*args)
                if value not in programs:
                    with _compiling():
                        programs[value] = _ahead(fn, args, options)
                program = programs[value]
                if program is not None:
                    return program(*args)
            if calls[0] < FIRST_CALLS:
                calls[0] += 1
                with (torch._dynamo.config.patch(use_recursive_dict_tags_for_guards=True),
                      _compiling() if calls[0] == 1 else contextlib.nullcontext()):
                    return current[0](*args, **kwargs)
            return current[0](*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - any compiler failure means: run eager
            reason = " ".join(str(e).split())[:200] or type(e).__name__
            if setting is True:
                raise ConfigError(f"{key}=true: torch.compile failed on {what} ({reason}); "
                                  f"set {key}=auto or false to run eager") from None
            logger.warning("torch.compile failed on %s, running eager (%s)", what, reason)
            current[0] = fn
            return fn(*args, **kwargs)

    return call  # type: ignore[return-value]


class _CacheableInductor(torch._TorchCompileInductorWrapper):
    """Inductor, torch.compile's default backend, with the graph's per-process name dropped first.

    Dynamo's ahead-of-time path names each graph with a fresh UUID, and AOT autograd puts that name in
    the key of its cache, which holds inductor's programs: a later run never found them and compiled
    everything again (11 s instead of 2.6 s at JaxMARL's settings, docs/benchmarks.md, "Speed",
    fifteenth round). The name serves only precompile's serialization, which accord does not use; the
    guarded path keys the same cache without it."""

    def __call__(self, gm: torch.fx.GraphModule, inputs: list[Any], **kwargs: Any) -> Any:
        gm._backend_id = None  # type: ignore[assignment]
        return super().__call__(gm, inputs, **kwargs)


def _ahead(fn: Callable[..., Any], args: tuple[Any, ...], options: dict[str, Any]) -> Callable[..., Any] | None:
    """``fn`` compiled whole for ``args`` by dynamo's ahead-of-time path and called without guards, or
    None where torch has no such path or it fails (logged: the guarded compile runs instead)."""
    func, bound = getattr(fn, "__func__", fn), getattr(fn, "__self__", None)
    head = () if bound is None else (bound,)
    backend = _CacheableInductor("default", options, dynamic=False)
    aot_compile = getattr(torch.compile(func, backend=backend, dynamic=False, fullgraph=True), "aot_compile", None)
    if aot_compile is None:
        return None
    try:
        program = aot_compile(((*head, *args), {}))
    except Exception as e:  # noqa: BLE001 - a graph break, a cache switched off: compile with guards
        logger.info("ahead-of-time compile not possible (%s); compiling with guards", " ".join(str(e).split())[:200])
        return None
    program.disable_guard_check()
    return functools.partial(program, *head)
