"""Alignment losses against the papers' formulas, recomputed here in plain Python floats on fixed log-probs."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from tuneforge.train import losses as L  # noqa: E402

# Two preference pairs: policy and reference log-probs (sums for DPO-style losses, means for ipo/orpo/simpo).
PC, PR = [-12.5, -30.25], [-14.0, -29.0]
RC, RR = [-13.0, -31.5], [-13.5, -28.0]
MEAN_C, MEAN_R = [-0.75, -1.6], [-1.1, -1.4]
BETA = 0.3


def t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def h(i: int) -> float:
    """The DPO log-ratio difference of pair i: (pi_c - ref_c) - (pi_r - ref_r)."""
    return (PC[i] - RC[i]) - (PR[i] - RR[i])


def dpo(loss: str, **kw) -> tuple:
    return L.dpo_losses(t(PC), t(PR), t(RC), t(RR), loss=loss, beta=BETA, **kw)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_sigmoid_dpo_and_label_smoothing(eps: float) -> None:
    losses, chosen, rejected = dpo("sigmoid", label_smoothing=eps)
    expected = [-(1 - eps) * logsig(BETA * h(i)) - eps * logsig(-BETA * h(i)) for i in range(2)]
    assert losses.tolist() == pytest.approx(expected, abs=1e-6)
    assert chosen.tolist() == pytest.approx([BETA * (PC[i] - RC[i]) for i in range(2)], abs=1e-6)
    assert rejected.tolist() == pytest.approx([BETA * (PR[i] - RR[i]) for i in range(2)], abs=1e-6)


def test_hinge() -> None:
    expected = [max(0.0, 1 - BETA * h(i)) for i in range(2)]
    assert dpo("hinge")[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_ipo() -> None:
    expected = [(h(i) - 1 / (2 * BETA)) ** 2 for i in range(2)]
    assert dpo("ipo")[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_kto_pair() -> None:
    chosen_ratio = [PC[i] - RC[i] for i in range(2)]
    rejected_ratio = [PR[i] - RR[i] for i in range(2)]
    z_chosen = max(0.0, sum(chosen_ratio) / 2)
    z_rejected = max(0.0, sum(rejected_ratio) / 2)
    expected = [
        ((1 - sig(BETA * (chosen_ratio[i] - z_rejected))) + (1 - sig(BETA * (z_chosen - rejected_ratio[i])))) / 2
        for i in range(2)
    ]
    assert dpo("kto_pair")[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_orpo_needs_no_reference() -> None:
    losses, chosen, _ = L.dpo_losses(t(MEAN_C), t(MEAN_R), None, None, loss="orpo", beta=BETA)
    expected = []
    for c, r in zip(MEAN_C, MEAN_R, strict=True):
        odds_c, odds_r = math.exp(c) / (1 - math.exp(c)), math.exp(r) / (1 - math.exp(r))
        expected.append(-c - BETA * logsig(math.log(odds_c / odds_r)))
    assert losses.tolist() == pytest.approx(expected, abs=1e-6)
    assert chosen.tolist() == pytest.approx([BETA * c for c in MEAN_C], abs=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.4])
def test_simpo_margin(gamma: float) -> None:
    losses, _, _ = L.dpo_losses(t(MEAN_C), t(MEAN_R), None, None, loss="simpo", beta=BETA, simpo_gamma=gamma)
    expected = [-logsig(BETA * c - BETA * r - gamma) for c, r in zip(MEAN_C, MEAN_R, strict=True)]
    assert losses.tolist() == pytest.approx(expected, abs=1e-6)


def test_ftx_and_bco_mix() -> None:
    base = t([0.4, 0.9])
    bco = L.bco_losses(t([0.2, -0.1]), t([-0.3, 0.05]), delta=0.01)
    expected_bco = [-logsig(c - 0.01) - logsig(-(r - 0.01)) for c, r in ((0.2, -0.3), (-0.1, 0.05))]
    assert bco.tolist() == pytest.approx(expected_bco, abs=1e-6)
    mixed = L.mix_preference_losses(base, t(MEAN_C), ftx=0.5, bco=bco, bco_weight=2.0)
    expected = [(b + 2.0 * c) / 3.0 + 0.5 * -m for b, c, m in zip([0.4, 0.9], expected_bco, MEAN_C, strict=True)]
    assert mixed.tolist() == pytest.approx(expected, abs=1e-6)


def test_unknown_loss_is_refused() -> None:
    with pytest.raises(ValueError, match="sigmoid"):
        dpo("nope")


def test_kto_losses_and_kl_from_mismatched_pairs() -> None:
    logps, ref = [-10.0, -20.0, -15.0], [-11.0, -19.0, -15.5]
    kl_logps, ref_kl = [-30.0, -28.0, -26.0], [-31.0, -27.5, -26.1]
    tags = [True, False, True]
    losses, rewards, kl = L.kto_losses(
        t(logps), t(ref), t(kl_logps), t(ref_kl), torch.tensor(tags), beta=BETA, chosen_weight=1.5,
        rejected_weight=0.7,
    )  # fmt: skip
    z = max(0.0, sum(a - b for a, b in zip(kl_logps, ref_kl, strict=True)) / 3)
    expected = []
    for lp, rf, tag in zip(logps, ref, tags, strict=True):
        ratio = lp - rf
        expected.append(1.5 * (1 - sig(BETA * (ratio - z))) if tag else 0.7 * (1 - sig(BETA * (z - ratio))))
    assert float(kl) == pytest.approx(z, abs=1e-9)
    assert losses.tolist() == pytest.approx(expected, abs=1e-6)
    assert rewards.tolist() == pytest.approx([BETA * (a - b) for a, b in zip(logps, ref, strict=True)], abs=1e-6)


def test_kto_kl_is_clamped_at_zero_and_has_no_gradient() -> None:
    kl_logps = t([-30.0]).requires_grad_()
    _, _, kl = L.kto_losses(t([-1.0]), t([-1.0]), kl_logps, t([-20.0]), torch.tensor([True]))
    assert float(kl) == 0.0 and not kl.requires_grad


def test_token_logps_and_ld_dpo_weighting() -> None:
    logits = torch.randn(2, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[-100, -100, 3, 4, 5], [-100, 1, 2, 6, -100]])
    logps, mask = L.token_logps(logits, labels)
    log_softmax = torch.log_softmax(logits, -1)
    first = [float(log_softmax[0, p - 1, labels[0, p]]) for p in (2, 3, 4)]
    assert float(logps[0].sum()) == pytest.approx(sum(first), abs=1e-9)
    assert mask.sum(-1).tolist() == [3, 3]
    weighted = L.sequence_logps(logps, mask, torch.tensor([2, 2]), ld_alpha=0.25)
    assert float(weighted[0]) == pytest.approx(first[0] + first[1] + 0.25 * first[2], abs=1e-9)


def test_reward_model_loss() -> None:
    loss = L.pairwise_reward_loss(t([1.0, 0.2]), t([0.5, 0.7]))
    assert float(loss) == pytest.approx(-(logsig(0.5) + logsig(-0.5)) / 2, abs=1e-6)


def test_gae_matches_the_recursion() -> None:
    rewards, values = t([[0.0, 0.5, 1.0, 0.0]]), t([[0.2, 0.1, -0.3, 9.0]])
    mask = t([[1, 1, 1, 0]])
    adv, returns = L.gae(rewards, values, mask, gamma=0.9, lam=0.8)
    r, v = [0.0, 0.5, 1.0], [0.2, 0.1, -0.3]
    expected, last = [0.0] * 3, 0.0
    for i in reversed(range(3)):
        nxt = v[i + 1] if i + 1 < 3 else 0.0
        last = r[i] + 0.9 * nxt - v[i] + 0.9 * 0.8 * last
        expected[i] = last
    assert adv[0, :3].tolist() == pytest.approx(expected, abs=1e-9) and float(adv[0, 3]) == 0.0
    assert returns[0, :3].tolist() == pytest.approx([a + b for a, b in zip(expected, v, strict=True)], abs=1e-9)


def test_grpo_group_advantages_and_clipping() -> None:
    adv = L.group_advantages(t([1.0, 0.0, 0.0, 1.0, 1.0, 1.0]), group_size=3)
    std = math.sqrt(((2 / 3) ** 2 + 2 * (1 / 3) ** 2) / 2)
    assert adv[:3].tolist() == pytest.approx([x / (std + 1e-4) for x in (2 / 3, -1 / 3, -1 / 3)])
    assert adv[3:].tolist() == [0.0, 0.0, 0.0]
    logps, old = t([[0.0, math.log(1.5)]]), t([[0.0, 0.0]])
    losses = L.grpo_token_losses(logps, old, None, t([2.0]), beta=0.0, epsilon=0.2)
    assert losses[0].tolist() == pytest.approx([-2.0, -2.0 * 1.2])
    kl = L.k3_kl(t([-1.0]), t([-1.5]))
    assert float(kl) == pytest.approx(math.exp(-0.5) + 0.5 - 1)
