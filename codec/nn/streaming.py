"""Typed streaming state, as moshi's `StreamingModule[State]`.

A layer that streams declares its state as a dataclass of tensors (batch first) and says how
to make a fresh one; one entry point turns every such layer inside a module stateful:

    with streaming(model, batch_size=2):          # creates and resets every layer's state
        y1 = model(x1); y2 = model(x2)            # chunks of whole hops (or frames)
        reset_streaming(model, torch.tensor([True, False]))   # item 0 starts a new stream
        saved = get_streaming_state(model)        # {layer name: State}, readable...
        set_streaming_state(model, saved)         # ...and passed back
        tensors = state_tensors(model)            # flat {"layer.field": tensor}: what an
        load_state_tensors(model, tensors)        # exported step graph takes and returns

The states go away when the block ends. A layer updates its state by replacing its fields
with new tensors (never writing into them), so a state taken out stays as it was and a traced
step reads its state from inputs and writes it to outputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Generic, TypeVar

import torch
from torch import nn


@dataclasses.dataclass
class State:
    """The tensors one layer carries between calls, each batch first. `fresh(batch, like)`
    makes the state of streams that have seen nothing; `reset(mask)` restarts the items where
    mask (batch,) is True."""

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensor fields by name (what an exported step passes in and out)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, value in tensors.items():
            setattr(self, name, value)

    def batch_size(self) -> int:
        return next(iter(self.tensors().values())).shape[0]

    def reset(self, mask: torch.Tensor) -> None:
        fresh = self.fresh_like(self)
        for name, value in self.tensors().items():
            keep = mask.to(value.device).view(-1, *([1] * (value.ndim - 1)))
            setattr(self, name, torch.where(keep, getattr(fresh, name), value))

    @classmethod
    def fresh_like(cls, state: State) -> State:
        """A fresh state of the same shapes as `state`: every tensor zero (a state whose
        fresh value is not zeros overrides this)."""
        zeros = {name: torch.zeros_like(value) for name, value in state.tensors().items()}
        return dataclasses.replace(state, **zeros)


S = TypeVar("S", bound=State)


class StreamingModule(nn.Module, Generic[S]):
    """A layer that keeps a state of type S between calls inside `streaming(...)`.

    Subclasses implement `init_streaming_state(batch_size)` (None for a layer that does not
    stream in its configuration, e.g. a non-causal conv, which then runs as offline)."""

    def __init__(self):
        super().__init__()
        self._streaming_state: S | None = None

    @property
    def is_streaming(self) -> bool:
        return self._streaming_state is not None

    def init_streaming_state(self, batch_size: int) -> S | None:
        raise NotImplementedError

    def streaming_state(self, batch: int) -> S:
        """This layer's state, checked against the batch size of the input at hand."""
        state = self._streaming_state
        have = state.batch_size()
        if have != batch:
            raise ValueError(
                f"streaming state was made for a batch of {have}, got a batch of {batch} "
                "(pass batch_size= to streaming())"
            )
        return state

    def _device(self) -> torch.device:
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")


def streaming_layers(module: nn.Module) -> dict[str, StreamingModule]:
    return {name: m for name, m in module.named_modules() if isinstance(m, StreamingModule)}


@contextlib.contextmanager
def streaming(module: nn.Module, batch_size: int = 1):
    """Every streaming layer inside `module` stateful for the block, its state fresh for
    `batch_size` streams; the states are dropped when the block ends."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    layers = list(streaming_layers(module).values())
    for layer in layers:
        if layer.is_streaming:
            raise RuntimeError(f"{type(layer).__name__} is already streaming")
    try:
        for layer in layers:
            layer._streaming_state = layer.init_streaming_state(batch_size)
        yield module
    finally:
        for layer in layers:
            layer._streaming_state = None


def is_streaming(module: nn.Module) -> bool:
    return any(m.is_streaming for m in streaming_layers(module).values())


def _states(module: nn.Module) -> dict[str, State]:
    states = {n: m._streaming_state for n, m in streaming_layers(module).items() if m.is_streaming}
    if not states:
        raise RuntimeError("not streaming: call inside `with streaming(module, batch_size)`")
    return states


def get_streaming_state(module: nn.Module) -> dict[str, State]:
    """{layer name: a copy of its State}; what `set_streaming_state` takes back."""
    return {name: dataclasses.replace(state) for name, state in _states(module).items()}


def set_streaming_state(module: nn.Module, states: dict[str, State]) -> None:
    layers = streaming_layers(module)
    mine = _states(module)
    if set(states) != set(mine):
        raise ValueError("the state given is not this module's (different streaming layers)")
    for name, state in states.items():
        layers[name]._streaming_state = dataclasses.replace(state)


def reset_streaming(module: nn.Module, mask: torch.Tensor | None = None) -> None:
    """Restart the streams of the items where `mask` (batch,) is True (all without a mask)."""
    for state in _states(module).values():
        if mask is None:
            mask = torch.ones(state.batch_size(), dtype=torch.bool)
        state.reset(mask)


def state_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every streaming layer's state tensors, flat: {"layer.field": tensor}, in module order."""
    return {
        f"{layer}.{field}": value
        for layer, state in _states(module).items()
        for field, value in state.tensors().items()
    }


def load_state_tensors(module: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """The inverse of `state_tensors`: every field of every state, by its flat name."""
    states = _states(module)
    expected = {f"{layer}.{field}" for layer, s in states.items() for field in s.tensors()}
    if set(tensors) != expected:
        missing = sorted(expected - set(tensors)) or sorted(set(tensors) - expected)
        raise ValueError(f"state tensors do not fit this module (first mismatch: {missing[0]})")
    for layer, state in states.items():
        state.load({field: tensors[f"{layer}.{field}"] for field in state.tensors()})
