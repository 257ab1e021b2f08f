"""Plain torch helpers for the lottery-ticket example: data, model, training, pruning.

Nothing here knows about dagger_wf. Every random choice (batch order, random pruning)
draws from the `generator` passed in, or from torch's global RNG (which the framework
seeds from each state's key) when there is none; `build_mlp`'s weight init uses the global
RNG, `initialise` draws fresh initial weights from a generator.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

Dataset = tuple[torch.Tensor, torch.Tensor]
Masks = dict[str, torch.Tensor]

TRAIN_FRACTION = 0.8
PRUNING_TECHNIQUES = ("magnitude", "random")


def load_digits_split(seed: int = 0) -> tuple[Dataset, Dataset]:
    """Return fixed (train, eval) splits of scikit-learn's bundled 8x8 digits.

    The split uses its own numpy RandomState so it is the same for every state,
    whatever the framework seeded.
    """
    digits = load_digits()
    x = digits.data.astype(np.float32) / 16.0  # pixel values are integers in [0, 16]
    y = digits.target.astype(np.int64)
    order = np.random.RandomState(seed).permutation(len(x))
    cut = int(TRAIN_FRACTION * len(x))
    train, held_out = order[:cut], order[cut:]
    return (
        (torch.from_numpy(x[train]), torch.from_numpy(y[train])),
        (torch.from_numpy(x[held_out]), torch.from_numpy(y[held_out])),
    )


def build_mlp(name: str) -> nn.Sequential:
    """Build a freshly initialised model; `name` is the root's `model_name` property."""
    if name == "mlp":
        return nn.Sequential(
            nn.Linear(64, 128),
            nn.ReLU(),
            nn.Linear(128, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )
    raise ValueError(f"unknown model {name!r}; expected 'mlp'")


@torch.no_grad()
def initialise(model: nn.Module, generator: torch.Generator) -> None:
    """Draw every Linear layer's weights and biases again, as `nn.Linear` does, from `generator`."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            bound = 1 / math.sqrt(module.in_features)
            module.bias.uniform_(-bound, bound, generator=generator)


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Linear weight matrices, the only parameters pruning touches (biases stay dense)."""
    return {
        f"{module_name}.weight" if module_name else "weight": module.weight
        for module_name, module in model.named_modules()
        if isinstance(module, nn.Linear)
    }


def snapshot_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copy all parameters and buffers, e.g. the initial weights that rewinding returns to."""
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Zero the pruned weights in place (masks hold True for weights that survive)."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask)


def train_epochs(
    model: nn.Module,
    train_data: Dataset,
    nb_epochs: int,
    lr: float,
    batch_size: int = 64,
    masks: Masks | None = None,
    generator: torch.Generator | None = None,
) -> list[tuple[float, float]]:
    """Train with SGD(momentum=0.9) and return per-epoch (mean loss, train accuracy).

    With `masks`, pruned weights get no gradient (so no momentum either) and are zeroed
    again after each step, so they stay exactly zero.
    """
    x, y = train_data
    params = dict(model.named_parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    model.train()
    for _ in range(nb_epochs):
        order = torch.randperm(len(x), generator=generator)
        total_loss, correct = 0.0, 0
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            logits = model(x[batch])
            loss = loss_fn(logits, y[batch])
            optimizer.zero_grad()
            loss.backward()
            if masks:
                for name, mask in masks.items():
                    params[name].grad.mul_(mask)
            optimizer.step()
            if masks:
                apply_masks(model, masks)
            total_loss += loss.item() * len(batch)
            correct += (logits.argmax(dim=1) == y[batch]).sum().item()
        history.append((total_loss / len(x), correct / len(x)))
    return history


@torch.no_grad()
def evaluate(model: nn.Module, eval_data: Dataset) -> float:
    """Classification accuracy on `eval_data`; leaves the model's train/eval mode as it was."""
    x, y = eval_data
    was_training = model.training
    model.eval()
    accuracy = (model(x).argmax(dim=1) == y).float().mean().item()
    model.train(was_training)
    return accuracy


@torch.no_grad()
def prune_model(
    model: nn.Module, technique: str, fraction: float, generator: torch.Generator | None = None
) -> Masks:
    """Prune `fraction` of all Linear weights globally, apply it, and return the masks.

    "magnitude" removes the smallest |w| across all layers at once (global magnitude
    pruning); "random" removes a uniformly random subset, the usual control. Weights
    already at zero count as candidates, so pruning an already-pruned model with a
    larger fraction extends the earlier mask.
    """
    params = prunable_parameters(model)
    flat = torch.cat([p.detach().flatten() for p in params.values()])
    nb_pruned = round(fraction * flat.numel())
    if technique == "magnitude":
        # A stable sort breaks ties by position, so the mask is deterministic.
        pruned = torch.sort(flat.abs(), stable=True).indices[:nb_pruned]
    elif technique == "random":
        pruned = torch.randperm(flat.numel(), generator=generator)[:nb_pruned]
    else:
        raise ValueError(f"unknown pruning technique {technique!r}; expected {PRUNING_TECHNIQUES}")
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    keep[pruned] = False
    masks = {}
    offset = 0
    for name, param in params.items():
        masks[name] = keep[offset : offset + param.numel()].view_as(param).clone()
        offset += param.numel()
    apply_masks(model, masks)
    return masks


@torch.no_grad()
def rewind(model: nn.Module, initial_weights: dict[str, torch.Tensor], masks: Masks) -> None:
    """Reset every weight to its initial value, keeping pruned ones at zero (lottery ticket)."""
    model.load_state_dict(initial_weights)
    apply_masks(model, masks)


@torch.no_grad()
def sparsity(model: nn.Module) -> float:
    """Fraction of Linear weights that are exactly zero."""
    params = prunable_parameters(model).values()
    zeros = sum((p == 0).sum().item() for p in params)
    return zeros / sum(p.numel() for p in params)
