"""Exponential moving average of a model's weights (the weights voxar releases).

After each optimiser step, ``ema.update(model)`` moves every floating-point parameter of the shadow copy towards the
model: ``shadow <- d * shadow + (1 - d) * param``; buffers (e.g. running statistics) are copied as they are. With
``warmup=True`` the decay used at update ``n`` (counting from 0) is ``min(decay, (1 + n) / (10 + n))``, so short runs
are not dominated by the random initialisation; with ``warmup=False`` it is always ``decay``.

The shadow is kept in float32 on the model's device and keyed like ``model.state_dict()`` (of the bare module: a DDP
wrapper is unwrapped), so ``ema.state_dict()["shadow"]`` can be loaded into a fresh model.
"""

from __future__ import annotations

from typing import Any

import torch

from voxar.train.distributed import unwrap


class EMA:
    """EMA of ``model``'s parameters, initialised to its current weights."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999, *, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        bare = unwrap(model)
        self._param_names = {name for name, _ in bare.named_parameters()}
        self.shadow: dict[str, torch.Tensor] = {}
        for name, value in bare.state_dict().items():
            v = value.detach().clone()
            self.shadow[name] = v.float() if v.is_floating_point() else v

    def current_decay(self) -> float:
        """The decay the next :meth:`update` will use."""
        if not self.warmup:
            return self.decay
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the shadow towards ``model`` (a bare module or its DDP wrapper)."""
        d = self.current_decay()
        state = unwrap(model).state_dict()
        for name, shadow in self.shadow.items():
            value = state[name].detach()
            if name in self._param_names and shadow.is_floating_point():
                shadow.lerp_(value.to(shadow.device, shadow.dtype), 1.0 - d)
            else:
                shadow.copy_(value.to(shadow.device, shadow.dtype))
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        """Write the averaged weights into ``model`` (cast to its parameters' dtypes and devices)."""
        bare = unwrap(model)
        state = bare.state_dict()
        missing = sorted(set(state) ^ set(self.shadow))
        if missing:
            raise ValueError(f"EMA and model disagree on weight names: {', '.join(missing[:5])}")
        for name, value in state.items():
            value.copy_(self.shadow[name].to(value.device, value.dtype))

    def model_state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights as a model state dict (float32 copies on the CPU)."""
        return {k: v.detach().to("cpu").clone() for k, v in self.shadow.items()}

    def to(self, device: torch.device | str) -> EMA:
        """Move the shadow to ``device``; returns self."""
        self.shadow = {k: v.to(device) for k, v in self.shadow.items()}
        return self

    def state_dict(self) -> dict[str, Any]:
        """Plain-container state: ``{decay, warmup, num_updates, shadow: {name: tensor}}``."""
        return {
            "decay": self.decay,
            "warmup": self.warmup,
            "num_updates": self.num_updates,
            "shadow": {k: v.detach().clone() for k, v in self.shadow.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; weight names must match (tensors keep this EMA's devices)."""
        shadow = state["shadow"]
        diff = sorted(set(shadow) ^ set(self.shadow))
        if diff:
            raise ValueError(f"EMA state does not match the model: differing weight names {', '.join(diff[:5])}")
        for name, value in shadow.items():
            self.shadow[name] = value.detach().to(self.shadow[name].device, self.shadow[name].dtype).clone()
        self.decay = float(state.get("decay", self.decay))
        self.warmup = bool(state.get("warmup", self.warmup))
        self.num_updates = int(state.get("num_updates", 0))
