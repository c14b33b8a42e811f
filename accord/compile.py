"""``torch.compile`` for the hot paths, with a clean fallback to eager when it cannot compile.

``train.compile``: ``false`` (default) never compiles; ``auto`` compiles and falls back to eager,
with one logged warning, when compiling fails (no C++ compiler, an op inductor does not support);
``true`` compiles and a failure is an error. Off by default because it does not always pay: the
first call compiles for tens of seconds, which short runs never win back (docs/speed.md). Shapes are
static (``dynamic=False``): every minibatch has the same shape, so one compile serves the whole
run. The compile happens on the first call; its time is part of the run's wall time.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import torch

from accord.errors import ConfigError

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


# Inductor settings for every compile: tanh as 2 / (1 + exp(-2x)) - 1 (vectorized exp; the default tanh
# kernel was most of a compiled 64-64 tanh MLP's time here, same result to ~2e-7), and random ops run
# as eager ATen kernels, so a compiled function draws exactly the numbers the eager one draws. The vector
# ISA (AVX2 here) comes from the CPU's flags without inductor's probe, a test program it compiles and
# loads in every new cache (2.5 s of a cold start); a compiler that cannot build for it fails the compile,
# which ``auto`` runs eager.
OPTIONS = {"cpp.use_decompose_tanh": True, "fallback_random": True, "cpp.vec_isa_ok": True}

# The guards of the first calls, where the compiles happen, are built with dynamo's recursive dict tags:
# on a later call a module whose attributes did not change is checked by its ``__dict__``'s version tag,
# not attribute by attribute (docs/benchmarks.md, "Speed", twelfth round). Dynamo leaves this off by
# default; it is set only while these calls run, not for other code in the process.
FIRST_CALLS = 3


def compiled(fn: F, setting: bool | Literal["auto"], what: str, key: str = "train.compile",
             cpp_wrapper: bool = False, tensor_guards_only: bool = False) -> F:
    """``fn`` compiled on its first call, or ``fn`` itself, as the setting ``key`` (``setting``) asks.

    ``cpp_wrapper``: inductor writes the code around the kernels (buffer allocation, views, calls) in
    C++ rather than Python, for a small program called very often, where that code is most of a call's
    time; it compiles longer.

    ``tensor_guards_only``: before each call, check only what dynamo's portable guards check (every
    tensor's shape, strides, dtype and device; grad mode and autocast), not the Python state ``fn`` read
    while it was traced (modules' attributes, the config, globals). Only for a function whose Python
    state stays as it was for the compiled function's life, everything that changes between calls being
    a tensor argument or a tensor attribute: a changed Python attribute is then not seen. The two hot
    programs of training qualify (the fused collection step, PPO's minibatch step); their guards were
    7 % of an iteration at JaxMARL's settings (docs/benchmarks.md, "Speed", thirteenth round). ``fn`` (a
    function or a bound method) gets a code object of its own (:func:`_own_code`)."""
    if setting not in (True, False, "auto"):
        raise ConfigError(f"{key} must be true, false or auto, got {setting!r}")
    if setting is False:
        return fn
    options: dict[str, Any] = {**OPTIONS, "cpp_wrapper": cpp_wrapper}
    target: Callable[..., Any] = fn
    portable = getattr(torch.compiler, "keep_portable_guards_unsafe", None)  # recent torch; else all guards
    if tensor_guards_only and portable is not None:
        options["guard_filter_fn"] = portable
        target = _own_code(fn)
    fast = torch.compile(target, dynamic=False, options=options)
    current: list[Callable[..., Any]] = [fast]
    calls = [0]

    def call(*args: Any, **kwargs: Any) -> Any:
        if current[0] is fn:
            return fn(*args, **kwargs)
        try:
            if calls[0] < FIRST_CALLS:
                calls[0] += 1
                with torch._dynamo.config.patch(use_recursive_dict_tags_for_guards=True):
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


def _own_code(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` running a copy of its code object. Dynamo keeps compiled programs with the code they were
    compiled from, so every learner's bound ``_functional_step`` shares one cache; a program whose guards
    check tensors alone would serve another learner whose tensors have the same shapes but whose Python
    state (activation, coefficients) differs. A copy of the code keeps each instance's programs apart."""
    func = getattr(fn, "__func__", fn)
    if not isinstance(func, types.FunctionType):
        raise TypeError(f"tensor_guards_only needs a function or a bound method, got {type(fn).__name__}")
    own = types.FunctionType(func.__code__.replace(), func.__globals__, func.__name__, func.__defaults__,
                             func.__closure__)
    own.__kwdefaults__, own.__qualname__ = func.__kwdefaults__, func.__qualname__
    bound_to = getattr(fn, "__self__", None)
    return own if bound_to is None else types.MethodType(own, bound_to)
