"""Generator and detector agree on every keyed decision, and the null is exact."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from distillguard.watermark import WatermarkConfig, WatermarkKey, collect_tuples, detect_ids
from distillguard.watermark import _seeding as S
from distillguard.watermark._scheme import LayerKeys

from .keys import fixed_key


@pytest.mark.parametrize(("h", "self_hash"), [(1, False), (3, False), (2, True)])
def test_vocab_values_equal_tuple_values(h: int, self_hash: bool) -> None:
    key = WatermarkKey.generate(WatermarkConfig(context_width=h, self_hash=self_hash))
    keys = LayerKeys.of(key.current)
    rng = np.random.default_rng(0)
    windows = rng.integers(0, 300, size=(5, h))
    ctx = S.context_ids(windows)
    vocab = S.global_values_vocab = keys.global_values_vocab(windows, ctx, S.token_hashes(300))
    tokens = rng.integers(0, 300, size=5)
    single = keys.global_values(windows, ctx, tokens, S.hashes_of_tokens(tokens))
    assert np.array_equal(vocab[np.arange(5), tokens], single)
    # the account layer: all-symbol table agrees with the per-symbol value
    symbols = rng.integers(0, key.config.account_alphabet, size=5)
    one = keys.account_values(ctx, symbols, S.hashes_of_tokens(tokens))
    table = keys.account_values_all_symbols(ctx, S.hashes_of_tokens(tokens))
    assert np.array_equal(table[np.arange(5), symbols], one)


def test_green_fraction_is_gamma_and_versions_differ() -> None:
    key = fixed_key(3, WatermarkConfig(gamma=0.3))
    keys = LayerKeys.of(key.current)
    windows = np.arange(2000).reshape(-1, 1)
    vals = S.unit(keys.global_values_vocab(windows, S.context_ids(windows), S.token_hashes(500)))
    assert abs(float((vals < 0.3).mean()) - 0.3) < 0.005
    other = LayerKeys.of(key.rotate().current)
    assert other.global_key != keys.global_key


@pytest.mark.parametrize("scheme", ["kgw", "gumbel"])
def test_p_values_are_uniform_under_h0(scheme: str) -> None:
    key = fixed_key(1, WatermarkConfig(scheme=scheme, controls=0))  # a random key fails 1 in ~100
    rng = np.random.default_rng(1)
    ps = [
        detect_ids(key, [rng.integers(0, 500, size=300).tolist()], controls=False).p_value
        for _ in range(300)
    ]
    # kgw p-values are discrete (conservative); both must be super-uniform and near uniform
    assert float(np.mean(np.array(ps) <= 0.05)) <= 0.08
    assert float(np.mean(np.array(ps) <= 0.5)) >= 0.35
    if scheme == "gumbel":
        assert stats.kstest(ps, "uniform").pvalue > 0.001


def test_tuples_scored_once_and_prompt_windows_dropped() -> None:
    seq = list(range(50))
    once = collect_tuples([seq], 2)
    many = collect_tuples([seq] * 10, 2)
    assert once.tokens.size == many.tokens.size == 48
    assert many.dropped_repeats == 9 * 48
    copied = collect_tuples([list(range(100))], 2, prompts=[list(range(20, 40))])
    assert copied.dropped_prompt == 18 and copied.tokens.size == 98 - 18


def test_short_text_is_not_enough() -> None:
    key = WatermarkKey.generate()
    det = detect_ids(key, [[1, 2, 3, 4, 5]])
    assert not det.enough and "not enough scored tokens" in det.verdict
    assert det.to_json()["scored_tuples"] == 4


def test_torch_maps_equal_numpy_maps() -> None:
    """The generator's int64 tensor maps return the detector's uint64 bits."""
    import torch

    rng = np.random.default_rng(3)
    z = rng.integers(0, 2**63, size=4000, dtype=np.uint64) * np.uint64(3)  # all 64 bits used
    zt = torch.from_numpy(z.view(np.int64))
    assert np.array_equal(S.mix64(z).view(np.int64), S.mix64_t(zt).numpy())
    windows = rng.integers(0, 32000, size=(200, 3))
    wt = torch.from_numpy(windows)
    assert np.array_equal(S.context_ids(windows).view(np.int64), S.context_ids_t(wt).numpy())
    key = np.uint64(0xF123456789ABCDEF)
    assert np.array_equal(S.anchors(key, windows).view(np.int64), S.anchors_t(S.signed_key(key), wt).numpy())
    assert np.array_equal(
        S.keyed_context(key, z).view(np.int64), S.keyed_context_t(S.signed_key(key), zt).numpy()
    )
    for length in (8, 7, 3):
        assert np.array_equal(S.positions(z, length), S.positions_t(zt, length).numpy())
    assert np.array_equal(S.unit(z), S.unit_t(zt).numpy())
    for gamma in (0.25, 0.5, 0.1, 1 / 3):
        assert np.array_equal(S.unit(z) < gamma, S.below_t(zt, S.green_threshold(gamma)).numpy())


@pytest.mark.parametrize(
    "config",
    [
        WatermarkConfig(),
        WatermarkConfig(account_delta=0.0),
        WatermarkConfig(context_width=3),
        WatermarkConfig(context_width=2, self_hash=True),
        WatermarkConfig(scheme="gumbel"),
    ],
    ids=["h1", "h1-no-account", "h3", "selfhash-h2", "gumbel"],
)
def test_processor_green_lists_equal_detector_values(config: WatermarkConfig) -> None:
    import torch

    key = WatermarkKey.generate(config)
    keys = LayerKeys.of(key.current)
    proc = key.logits_processor("acct-1")
    rng = np.random.default_rng(4)
    ids = rng.integers(0, 500, size=(6, 10))
    glob, account = proc.green_masks(torch.from_numpy(ids), 500)
    h = config.context_width
    win = ids[:, -h:]
    ctx = S.context_ids(win)
    ref = S.unit(keys.global_values_vocab(win, ctx, S.token_hashes(500))) < config.gamma
    assert np.array_equal(ref, glob.numpy())
    if config.account_delta == 0:
        assert account is None
        return
    assert account is not None
    code = np.asarray(S.account_code(key.current.secret, 1, "acct-1", 8, 512))
    symbols = np.repeat(code[keys.positions(ctx)], 500)
    values = keys.account_values(np.repeat(ctx, 500), symbols, np.tile(S.token_hashes(500), 6))
    assert np.array_equal(S.unit(values).reshape(6, 500) < config.gamma, account.numpy())
    # a step's output: kgw adds delta / account_delta to exactly those logits; gumbel picks one
    scores = torch.zeros(6, 500)
    out = proc(torch.from_numpy(ids), scores)
    if config.scheme == "kgw":
        want = config.delta * glob.float() + config.account_delta * account.float()
        assert torch.equal(out, want)
    else:
        assert (torch.isfinite(out).sum(dim=1) >= 1).all()
