"""The int8 screen of the LM head: its bound holds, and the arg-max it finds is the whole product's, bit for bit."""

from __future__ import annotations

import pytest
import torch

from tuneforge.infer import head_screen
from tuneforge.infer.head_screen import BLOCK, MOST_ROWS, Screen, agrees, build, quantise
from tuneforge.infer.lm_head import HalfProduct
from tuneforge.infer.sampling import best

pytestmark = pytest.mark.skipif(not hasattr(torch, "_int_mm"), reason="this torch build has no int8 matrix product")


def weight(words: int = 4096, hidden: int = 64, seed: int = 0) -> torch.Tensor:
    """A head part whose words have norms spread over two orders of magnitude (as trained heads do)."""
    generator = torch.Generator().manual_seed(seed)
    scale = torch.logspace(-2, 0, words)[torch.randperm(words, generator=generator)]
    return torch.randn(words, hidden, generator=generator) * scale[:, None] * 0.05


def screened(part: torch.Tensor) -> tuple[Screen, HalfProduct]:
    product = HalfProduct(part)
    return Screen(part, product.columns), product


def rows_of(count: int, seed: int, hidden: int = 64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, hidden, generator=generator) * torch.rand(count, 1, generator=generator) * 4


def test_the_proven_distance_bounds_every_score(one_thread) -> None:
    screen, product = screened(weight())
    for seed in range(20):
        flat = rows_of(MOST_ROWS, seed)
        rows = quantise(flat)
        gap = (product(flat) - screen.scores(rows)).abs().amax(dim=1)
        assert bool((gap <= torch.tensor(screen.slack(rows))).all()), (gap, screen.slack(rows))
        assert bool((gap > 0).all())  # the scores are approximations: the bound is doing work


def test_screening_finds_the_whole_products_arg_max(one_thread) -> None:
    screen, product = screened(weight(seed=1))
    found_any = 0
    for seed in range(40):
        for count in range(1, MOST_ROWS + 1):
            flat = rows_of(count, 100 * seed + count)
            found = screen.best(quantise(flat))
            if found is None:
                continue
            found_any += 1
            expected = best(product(flat))
            assert found == (expected[0].tolist(), expected[1].tolist())
    assert found_any >= 100  # nearly every call was screened, not handed back


def test_a_tie_across_blocks_keeps_the_first_index(one_thread) -> None:
    part = weight(seed=2)
    part[3 * BLOCK + 5] = part[7 * BLOCK + 1] = 0.0
    part[3 * BLOCK + 5, 0] = part[7 * BLOCK + 1, 0] = 10.0
    screen, _ = screened(part)
    flat = torch.zeros(1, part.shape[1])
    flat[0, 0] = 1.0
    assert screen.best(quantise(flat)) == ([10.0], [3 * BLOCK + 5])


def test_too_many_close_words_hand_back_to_the_whole_product(one_thread) -> None:
    part = torch.ones(4096, 64) * 0.01  # every word scores the same: all blocks are candidates
    screen, _ = screened(part)
    assert screen.best(quantise(torch.ones(1, 64))) is None


def test_rows_that_cannot_be_quantised_are_refused() -> None:
    assert quantise(torch.zeros(1, 64)) is None
    assert quantise(torch.full((1, 64), float("nan"))) is None
    assert quantise(torch.tensor([[1.0, float("inf")]])) is None
    rows = quantise(torch.tensor([[1.0, -0.5, 0.25]]))
    approx = rows.levels.float() * rows.scales
    expected = torch.linalg.vector_norm(torch.tensor([[1.0, -0.5, 0.25]]) - approx, dim=1)
    assert rows.error == pytest.approx(expected.tolist()) and rows.error[0] > 0


def test_build_refuses_a_screen_whose_blocks_do_not_carry_the_products_bits(one_thread) -> None:
    part = weight(seed=3)
    product = HalfProduct(part)
    assert agrees(Screen(part, product.columns), product)
    nudged = lambda flat: product(flat) + 1e-6  # noqa: E731 - another product's bits
    assert not agrees(Screen(part, product.columns), nudged)
    assert build(part, product.columns, nudged) is None


def test_build_refuses_a_screen_that_measures_slower(one_thread, monkeypatch: pytest.MonkeyPatch) -> None:
    part = weight(seed=4)
    product = HalfProduct(part)
    times = iter([1.0, 0.5])  # the screen is timed first
    monkeypatch.setattr(head_screen, "_fastest", lambda call, calls: next(times))
    assert build(part, product.columns, product) is None


def test_parts_are_screened_against_their_common_best(one_thread) -> None:
    from tuneforge.infer.head_screen import Part
    from tuneforge.infer.head_screen import best as screened_best

    whole = weight(8192, seed=5)
    whole[100] = whole[4096 + 9] = 0.0
    whole[100, 0] = whole[4096 + 9, 0] = 10.0  # a tie across the parts: the first index wins
    parts = [screened(whole[:4096]), screened(whole[4096:])]
    for seed in range(20):
        flat = rows_of(MOST_ROWS, 200 + seed)
        if seed == 0:
            flat[0] = 0.0
            flat[0, 0] = 1.0
        rows = quantise(flat)
        found = screened_best([Part(s, s.tops(rows), o) for (s, _), o in zip(parts, (0, 4096), strict=True)], rows)
        logits = torch.cat([product(flat) for _, product in parts], dim=1)
        if found is not None:
            assert found == tuple(part.tolist() for part in best(logits))
        if seed == 0:
            assert found is not None and found[1][0] == 100
