"""The custom optimizers against independent computations: GaLore's projected Adam step, Muon's orthogonalised
update, BAdam's block switching order, and which parameters each optimizer takes (no Trainer, no training run)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")


class Toy(torch.nn.Module):
    """Named like a decoder: two layers of one linear weight and a norm, an embedding and a head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed_tokens = torch.nn.Embedding(10, 12)
        self.layers = torch.nn.ModuleList(
            torch.nn.ModuleDict({"proj": torch.nn.Linear(12, 12), "norm": torch.nn.LayerNorm(12)}) for _ in range(2)
        )
        self.lm_head = torch.nn.Linear(12, 10, bias=False)
        self.config = type("Config", (), {"hidden_size": 12, "num_attention_heads": 2, "num_key_value_heads": 2})()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer["norm"](x + torch.tanh(layer["proj"](x)))
        return torch.nn.functional.cross_entropy(self.lm_head(x).flatten(0, 1), ids.flatten())


def _build(model: torch.nn.Module, tmp_path: Path, **values: object) -> torch.optim.Optimizer:
    from transformers import TrainingArguments

    from tuneforge.config import load_config
    from tuneforge.train.optimizers import optimizer_factory

    cfg = load_config({"finetuning_type": "full", "learning_rate": 0.01, "optim": "adamw_torch", **values}, paths=False)
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=0.01, optim=cfg.training.optim, report_to=[])
    factory = optimizer_factory(cfg)
    assert factory is not None
    return factory(model, args)


def _eigh_basis(gram: torch.Tensor, rank: int) -> torch.Tensor:
    """Top-`rank` eigenvectors of a symmetric matrix (the singular vectors of G, found without an SVD)."""
    values, vectors = torch.linalg.eigh(gram.double())
    return vectors[:, values.argsort(descending=True)[:rank]]


def test_galore_step_is_adam_in_the_top_singular_subspace(tmp_path: Path) -> None:
    """First GaLore-AdamW step on a 6x12 weight (std: rows < cols, project from the left): the update is
    -lr * scale * Q (m / (sqrt(v) + eps)) with Q the top-r left singular vectors of G, m and v Adam's first moments
    of Q^T G (bias-corrected); Q from an eigendecomposition of G G^T, not the SVD the library uses."""
    model = torch.nn.Sequential()
    model.add_module("proj", torch.nn.Linear(12, 6, bias=False))
    optimizer = _build(model, tmp_path, use_galore=True, galore_rank=2, galore_scale=0.5, galore_target="proj")
    weight = model.proj.weight
    before, grad = weight.detach().clone(), torch.randn(6, 12, generator=torch.Generator().manual_seed(3))
    weight.grad = grad.clone()
    optimizer.step()

    q = _eigh_basis(grad @ grad.T, 2)
    low = q.T @ grad.double()
    beta2, eps, lr = 0.999, 1e-8, 0.01
    m_hat, v_hat = low, low**2  # (1 - b) g / (1 - b): the bias-corrected moments after one step
    step = m_hat / (v_hat.sqrt() + eps / math.sqrt(1 - beta2))  # library: eps added before the bias correction
    expected = before.double() - lr * 0.5 * (q @ step)
    torch.testing.assert_close(weight.detach().double(), expected, atol=1e-5, rtol=1e-5)


def test_galore_takes_only_target_weights_and_keeps_decay_groups(tmp_path: Path) -> None:
    model = Toy()
    optimizer = _build(model, tmp_path, use_galore=True, galore_target="proj", weight_decay=0.1)
    projected = [g for g in optimizer.param_groups if "rank" in g]
    assert len(projected) == 1 and {id(p) for p in projected[0]["params"]} == {
        id(layer["proj"].weight) for layer in model.layers
    }
    nodecay = next(g for g in optimizer.param_groups if "rank" not in g and g["weight_decay"] == 0.0)
    assert any(p is model.layers[0]["norm"].weight for p in nodecay["params"])  # norms and biases: no decay
    assert projected[0]["rank"] == 16 and projected[0]["update_proj_gap"] == 200  # LLaMA-Factory's defaults


def test_a_target_matching_no_weight_is_refused(tmp_path: Path) -> None:
    from tuneforge.errors import ConfigError

    with pytest.raises(ConfigError, match=r"`apollo_target: up_proj` matches no .*proj"):
        _build(Toy(), tmp_path, use_apollo=True, apollo_target="up_proj")


def _polar(matrix: torch.Tensor) -> torch.Tensor:
    """U V^T of a full-rank wide matrix, from (G G^T)^(-1/2) G: the nearest semi-orthogonal matrix."""
    values, vectors = torch.linalg.eigh((matrix @ matrix.T).double())
    return vectors @ torch.diag(values.rsqrt()) @ vectors.T @ matrix.double()


def test_muon_update_is_the_orthogonalised_gradient(tmp_path: Path) -> None:
    """One Muon step from a zero momentum: the update is -lr * 0.2 * sqrt(max(rows, cols)) * NS5(G) with
    NS5(G) close to the polar factor U V^T (quintic Newton-Schulz: singular values near 1, same directions);
    weight decay multiplies the weight by 1 - lr * wd; embeddings, the head and 1-D parameters go to AdamW."""
    from tuneforge.train.optim_parts import CombinedOptimizer

    model = Toy()
    optimizer = _build(model, tmp_path, use_muon=True, weight_decay=0.1)
    assert isinstance(optimizer, CombinedOptimizer)
    muon_ids = {id(p) for g in optimizer.parts["muon"].param_groups for p in g["params"]}
    assert muon_ids == {id(layer["proj"].weight) for layer in model.layers}

    weight = model.layers[0]["proj"].weight
    before, grad = weight.detach().clone(), torch.randn(12, 12, generator=torch.Generator().manual_seed(5))
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    weight.grad = grad.clone()
    optimizer.step()
    lr_adjusted = 0.01 * 0.2 * math.sqrt(12)
    update = (before * (1 - 0.01 * 0.1) - weight.detach()) / lr_adjusted
    polar = _polar(grad)
    cosine = float((update.double() * polar).sum() / (update.double().norm() * polar.norm()))
    singular = torch.linalg.svdvals(update.double())
    assert cosine > 0.95 and float(singular.min()) > 0.5 and float(singular.max()) < 1.3


def _active_layer(model: Toy, before: dict[str, torch.Tensor]) -> set[int]:
    return {i for i, layer in enumerate(model.layers) if not torch.equal(layer["proj"].weight, before[str(i)])}


# BAdam switches after each step s with (s + 1) % k == 0: before step s it has switched s // k times (k > 1), or
# s - 1 times (k = 1). (switch mode, interval k, start block) -> block trained at step s (from 1), of 2 blocks:
BLOCK_ORDERS = {
    ("ascending", 2, None): lambda s: (s // 2) % 2,
    ("descending", 1, None): lambda s: (1 - (s - 1)) % 2,
    ("fixed", 1, 1): lambda s: 1,
    ("ascending", -1, None): lambda s: 0,
}


@pytest.mark.parametrize(("mode", "interval", "start"), list(BLOCK_ORDERS))
def test_badam_switches_blocks_in_order(mode: str, interval: int, start: int | None, tmp_path: Path) -> None:
    """Layer-mode BAdam updates one decoder layer per step, taking turns ascending from the first block or
    descending from the last; `fixed` stays on its start block and an interval of -1 never switches.
    The embedding and head are in no block and never change."""
    model = Toy()
    values = {"badam_switch_mode": mode, "badam_switch_interval": interval, "badam_start_block": start}
    optimizer = _build(model, tmp_path, use_badam=True, **{k: v for k, v in values.items() if v is not None})
    embed, ids = model.embed_tokens.weight.detach().clone(), torch.tensor([[1, 2, 3, 4, 5]])
    for step in range(1, 6):
        before = {str(i): layer["proj"].weight.detach().clone() for i, layer in enumerate(model.layers)}
        model(ids).backward()
        optimizer.step()
        optimizer.zero_grad()
        assert _active_layer(model, before) == {BLOCK_ORDERS[(mode, interval, start)](step)}, (mode, step)
    assert torch.equal(model.embed_tokens.weight, embed)


def test_badam_ratio_updates_the_asked_share(tmp_path: Path) -> None:
    """Ratio mode: each weight gets a sparse update on `badam_update_ratio` of its entries; the embedding stays."""
    model = Toy()
    optimizer = _build(model, tmp_path, use_badam=True, badam_mode="ratio", badam_update_ratio=0.25)
    weight, embed = model.layers[0]["proj"].weight, model.embed_tokens.weight.detach().clone()
    before = weight.detach().clone()
    model(torch.tensor([[1, 2, 3, 4, 5]])).backward()
    optimizer.step()
    changed = int((weight.detach() != before).sum())
    assert changed == int(weight.numel() * 0.25) and torch.equal(model.embed_tokens.weight, embed)


def test_adam_mini_gets_the_model_shape(tmp_path: Path) -> None:
    model = Toy()
    optimizer = _build(model, tmp_path, use_adam_mini=True, weight_decay=0.1)
    assert type(optimizer).__name__ == "Adam_mini" and optimizer.dim == 12 and optimizer.n_heads == 2
    norm = next(g for g in optimizer.param_groups if g["name"] == "layers.0.norm.weight")
    assert norm["weight_decay"] == 0.0  # Adam-mini's own rule: no decay on norms and biases


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"use_galore": True, "galore_layerwise": True}, "galore_layerwise"),
        ({"use_apollo": True, "apollo_layerwise": True}, "apollo_layerwise"),
        ({"use_badam": True, "badam_mode": "ratio"}, "badam_mode: ratio"),
        ({"use_badam": True}, "ZeRO-3"),
    ],
)
def test_several_processes_refuse_what_runs_in_one(values: dict, says: str) -> None:
    """LLaMA-Factory's distributed rules, checked before any work: layer-wise updates and ratio-mode BAdam run in
    one process; layer-mode BAdam over several needs ZeRO-3."""
    from tuneforge.config import load_config
    from tuneforge.errors import ConfigError
    from tuneforge.train.optimizers import check_optimizers

    cfg = load_config({"finetuning_type": "full", **values}, paths=False)
    check_optimizers(cfg, world=1)
    with pytest.raises(ConfigError, match=says):
        check_optimizers(cfg, world=2)


@pytest.mark.parametrize(
    "values",
    [
        {"use_apollo": True, "apollo_rank": 2, "apollo_update_interval": 1},  # seeded random projections
        {"use_galore": True, "galore_rank": 2, "galore_layerwise": True, "galore_update_interval": 5},
        {"use_muon": True},
        {"use_adam_mini": True},
    ],
    ids=["apollo", "galore-layerwise", "muon", "adam-mini"],
)
def test_projected_state_round_trips_a_weights_only_load(values: dict, tmp_path: Path) -> None:
    """A second optimizer loading the first's saved state (torch.load(weights_only=True), as the Trainer does)
    takes the same next step: projectors, their seeds, the per-weight optimizers and both halves of Muon come back."""
    import copy
    import io

    first = Toy()
    second = copy.deepcopy(first)
    optimizer = _build(first, tmp_path, **values)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    for _ in range(2):
        first(ids).backward()
        optimizer.step()
        optimizer.zero_grad()
    saved = io.BytesIO()
    torch.save(optimizer.state_dict(), saved)
    saved.seek(0)
    second.load_state_dict(first.state_dict())
    reloaded = _build(second, tmp_path, **values)
    reloaded.load_state_dict(torch.load(saved, weights_only=True))
    for model, opt in ((first, optimizer), (second, reloaded)):
        model(ids).backward()
        opt.step()
        opt.zero_grad()
    for (name, a), b in zip(first.named_parameters(), second.parameters(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def _projected_group(optimizer: torch.optim.Optimizer) -> dict:
    return next(g for g in optimizer.param_groups if "rank" in g)


def _settings(group: dict, keys: str) -> dict:
    return {k: group[k] for k in keys.split()}


# Every LLaMA-Factory key of these optimizers, set to a non-default value, reaches the library object it configures.
KEYS_REACH = [
    (
        {"use_galore": True, "galore_rank": 3, "galore_update_interval": 7, "galore_scale": 0.25,
         "galore_proj_type": "left"},
        lambda o: _settings(_projected_group(o), "rank update_proj_gap scale proj_type")
        == {"rank": 3, "update_proj_gap": 7, "scale": 0.25, "proj_type": "left"},
    ),
    ({"use_galore": True, "galore_layerwise": True}, lambda o: type(o).__name__ == "LayerwiseOptimizer"),
    (
        {"use_apollo": True, "apollo_rank": 3, "apollo_update_interval": 7, "apollo_scale": 4.0, "apollo_proj": "svd",
         "apollo_proj_type": "right", "apollo_scale_type": "tensor", "apollo_scale_front": True},
        lambda o: _settings(_projected_group(o), "rank update_proj_gap scale proj proj_type scale_type scale_front")
        == {"rank": 3, "update_proj_gap": 7, "scale": 4.0, "proj": "svd", "proj_type": "right",
            "scale_type": "tensor", "scale_front": True},
    ),
    ({"use_apollo": True, "apollo_layerwise": True}, lambda o: type(o).__name__ == "LayerwiseOptimizer"),
    (
        {"use_badam": True, "badam_switch_interval": 9, "badam_start_block": 1, "badam_switch_mode": "descending",
         "badam_verbose": 2},
        lambda o: (o.switch_block_every, o.active_param_prefixs, o.switch_mode, o.verbose)
        == (9, ["layers.1."], "descending", 2),
    ),
    (
        {"use_badam": True, "badam_mode": "ratio", "badam_update_ratio": 0.3, "badam_mask_mode": "scatter"},
        lambda o: (type(o).__name__, o.update_ratio, o.mask_mode) == ("BlockOptimizerRatio", 0.3, "scatter"),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("values", "reached"), KEYS_REACH, ids=lambda v: ",".join(v) if isinstance(v, dict) else "")
def test_every_key_reaches_the_library(values: dict, reached, tmp_path: Path) -> None:
    assert reached(_build(Toy(), tmp_path, **values))
