"""Read and edit the output of any submodule by its dotted name.

In the spirit of baukit's ``nethook``: a forward hook is installed for the
duration of a ``with`` block and always removed on exit, also when the forward
pass raises.

    with Trace(G, "synthesis.b8.conv0") as t:
        img = G.synthesis(ws)
    t.output                                      # the layer's output [N, C, H, W]

    def zero_channel(output, layer):              # edit_output(output, layer_name)
        output = output.clone()
        output[:, 3] = 0
        return output
    with Trace(G, "synthesis.b8.conv0", edit_output=zero_channel):
        img = G.synthesis(ws)

    with TraceDict(G, ["synthesis.b4.conv1", "synthesis.b8.conv0"], stop=True) as td:
        G.synthesis(ws)                           # stops right after the last listed layer runs
    td["synthesis.b4.conv1"].output

Early stop: with ``stop=True`` the hook raises :class:`StopForward` after the
(last) traced layer has run; the context manager swallows it, so the forward
pass simply ends there.  Only that exception is swallowed; anything else
propagates after the hooks are removed.

A module that runs several times inside one ``with`` block keeps the output of
its last call (``edit_output`` is applied to every call).

Layers skipped by a cache (e.g. the generator's incremental synthesis reusing
activations) do not run, so their hooks do not fire; trace with ``cache=None``
when every layer must be observed.

Threads: a hook acts only on forward passes of the thread that installed it. The app
shares one generator between its visitors' threads: a dissection reading (and stopping
after) a layer in one thread must neither see nor stop another visitor's render that
runs through the same module meanwhile.
"""
from __future__ import annotations

import difflib
import inspect
import threading
from collections import OrderedDict
from typing import Any, Callable, Iterable

import torch
from torch import nn

__all__ = [
    "LayerNotFoundError",
    "StopForward",
    "Trace",
    "TraceDict",
    "get_module",
    "layer_names",
]

EditFn = Callable[..., Any]  # edit_output(output, layer_name) -> new output; (output) -> new output also accepted


class StopForward(Exception):
    """Raised inside a hook to end the forward pass early.

    Only the Trace / TraceDict that raised it swallows it, so nested traces
    with different stop layers behave as expected.
    """

    def __init__(self, trace: "Trace") -> None:
        super().__init__(f"forward pass stopped after layer {trace.layer!r}")
        self.trace = trace


class LayerNotFoundError(KeyError):
    """A dotted layer name that is not a submodule of the network."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


def layer_names(net: nn.Module) -> list[str]:
    """All dotted submodule names of ``net`` (the root itself is ``""`` and not listed)."""
    return [name for name, _ in net.named_modules() if name]


def get_module(net: nn.Module, name: str) -> nn.Module:
    """The submodule of ``net`` called ``name`` (dotted, as in ``named_modules()``).

    Raises LayerNotFoundError naming the closest existing names when there is none.
    """
    if not isinstance(name, str):
        raise TypeError(f"layer name must be a str, got {type(name).__name__}")
    if name == "":
        return net
    try:
        return net.get_submodule(name)
    except AttributeError:
        pass
    names = layer_names(net)
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    if not close:  # fall back to names sharing the last component, e.g. "conv0" -> "...b8.conv0"
        last = name.rsplit(".", 1)[-1]
        close = [n for n in names if n.rsplit(".", 1)[-1] == last][:5]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise LayerNotFoundError(
        f"{type(net).__name__} has no layer named {name!r}.{hint} "
        f"(It has {len(names)} named layers; list them with interp.nethook.layer_names(net).)"
    )


def _edit_arity(fn: EditFn) -> int:
    """1 when ``fn`` takes only the output, 2 when it also takes the layer name."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: assume the full form
        return 2
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return 2
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return 2 if len(positional) >= 2 else 1


def _copy(value: Any, clone: bool, detach: bool) -> Any:
    """Detach / clone tensors inside (nested tuples / lists / dicts of) tensors."""
    if isinstance(value, torch.Tensor):
        if detach:
            value = value.detach()
        if clone:
            value = value.clone()
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(v, clone, detach) for v in value)
    if isinstance(value, dict):
        return {k: _copy(v, clone, detach) for k, v in value.items()}
    return value


class Trace:
    """Retain and/or edit one layer's output during the ``with`` block.

    Args:
        net:            the network holding the layer.
        layer:          dotted name of the submodule ("" or None: ``net`` itself).
        retain_output:  keep the (possibly edited) output in ``self.output``.
        retain_input:   keep the layer's first positional input in ``self.input``.
        clone:          clone retained tensors (so later in-place ops cannot change them).
        detach:         detach retained tensors from the autograd graph.
        edit_output:    ``fn(output, layer_name) -> new output`` (or ``fn(output)``); a
                        returned None keeps the output unchanged.
        stop:           end the forward pass right after this layer ran.

    The hook acts only in the thread that created the Trace (forward passes of other
    threads through the same module are neither read, edited nor stopped).
    """

    def __init__(
        self,
        net: nn.Module,
        layer: str | None = None,
        retain_output: bool = True,
        retain_input: bool = False,
        clone: bool = False,
        detach: bool = False,
        edit_output: EditFn | None = None,
        stop: bool = False,
    ) -> None:
        if edit_output is not None and not callable(edit_output):
            raise TypeError(f"edit_output must be callable, got {type(edit_output).__name__}")
        self.layer = layer or ""
        self.module = get_module(net, self.layer)
        self.output: Any = None
        self.input: Any = None
        self._retain_output = retain_output
        self._retain_input = retain_input
        self._clone = clone
        self._detach = detach
        self._edit = edit_output
        self._edit_arity = _edit_arity(edit_output) if edit_output is not None else 0
        self._stop = stop
        self._owner = threading.get_ident()
        self._handle = self.module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: tuple, output: Any) -> Any:
        if threading.get_ident() != self._owner:     # another thread's forward pass through a shared module
            return None
        if self._retain_input:
            self.input = _copy(inputs[0] if len(inputs) == 1 else inputs, self._clone, self._detach)
        if self._edit is not None:
            edited = self._edit(output, self.layer) if self._edit_arity == 2 else self._edit(output)
            if edited is not None:
                output = edited
        if self._retain_output:
            self.output = _copy(output, self._clone, self._detach)
        if self._stop:
            raise StopForward(self)
        return output

    def close(self) -> None:
        """Remove the hook (idempotent)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __enter__(self) -> "Trace":
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> bool:
        self.close()
        return isinstance(exc_value, StopForward) and exc_value.trace is self


class TraceDict(OrderedDict):
    """Several :class:`Trace` objects at once, keyed by layer name.

    ``edit_output(output, layer_name)`` is shared by all layers (use the name to
    dispatch).  With ``stop=True`` the forward pass ends after the *last layer
    in the given order* has run; list layers in execution order.
    """

    def __init__(
        self,
        net: nn.Module,
        layers: Iterable[str],
        retain_output: bool = True,
        retain_input: bool = False,
        clone: bool = False,
        detach: bool = False,
        edit_output: EditFn | None = None,
        stop: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(layers, str):
            raise TypeError("layers must be a list of layer names, not a single string; use Trace for one layer")
        layers = list(dict.fromkeys(layers))  # unique, order kept
        if not layers:
            raise ValueError("TraceDict needs at least one layer name")
        for name in layers:  # resolve every name before installing any hook
            get_module(net, name)
        try:
            for i, name in enumerate(layers):
                self[name] = Trace(
                    net,
                    name,
                    retain_output=retain_output,
                    retain_input=retain_input,
                    clone=clone,
                    detach=detach,
                    edit_output=edit_output,
                    stop=stop and i == len(layers) - 1,
                )
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for trace in self.values():
            trace.close()

    def __enter__(self) -> "TraceDict":
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> bool:
        self.close()
        return isinstance(exc_value, StopForward) and any(exc_value.trace is t for t in self.values())
