"""Samplers (Kang et al., ICLR 2020): class frequencies against n_j^q worked out by hand."""

import numpy as np
import pytest
import torch

from ltbench.config.specs import RecipeError
from ltbench.data.memory import DeviceBatches
from ltbench.data.samplers import SAMPLERS, epoch_indices
from ltbench.data.stream import EpochBatchSampler

# 640, 160, 40, 10 images: sqrt is proportional to 8, 4, 2, 1.
COUNTS = [640, 160, 40, 10]
N = sum(COUNTS)  # 850
LABELS = torch.tensor(np.random.default_rng(0).permutation(np.repeat(np.arange(4), COUNTS)))
BY_HAND = {
    1.0: [640 / 850, 160 / 850, 40 / 850, 10 / 850],
    0.5: [8 / 15, 4 / 15, 2 / 15, 1 / 15],
    0.0: [0.25, 0.25, 0.25, 0.25],
}


def hand_probs(sampling, epoch, epochs):
    """p_j by hand: n^q for a fixed q; progressive mixes q = 1 and q = 0 linearly."""
    if not sampling.progressive:
        return BY_HAND[sampling.q]
    a = 0.0 if epochs == 1 else (epoch - 1) / (epochs - 1)
    return [(1 - a) * p1 + a * p0 for p1, p0 in zip(BY_HAND[1.0], BY_HAND[0.0])]


def freqs(indices) -> np.ndarray:
    return np.bincount(LABELS[torch.as_tensor(indices)].numpy(), minlength=4) / len(indices)


def test_hand_values():
    assert sum(BY_HAND[0.5]) == pytest.approx(1.0)
    assert [c**0.5 for c in COUNTS] == pytest.approx([8 * 10**0.5, 4 * 10**0.5, 2 * 10**0.5, 10**0.5])
    assert SAMPLERS.get("instance").class_probs(torch.tensor(COUNTS)).tolist() == pytest.approx(BY_HAND[1.0])
    assert SAMPLERS.get("square_root").class_probs(torch.tensor(COUNTS)).tolist() == pytest.approx(BY_HAND[0.5])
    assert SAMPLERS.get("class_balanced").class_probs(torch.tensor(COUNTS)).tolist() == pytest.approx(BY_HAND[0.0])


@pytest.mark.parametrize("name", SAMPLERS.names())
@pytest.mark.parametrize("epoch", [1, 3, 5])
def test_class_frequencies_match_n_to_the_q(name, epoch):
    sampling = SAMPLERS.get(name)
    drawn = [epoch_indices(name, LABELS, torch.Generator().manual_seed(s), epoch, 5) for s in range(60)]
    assert all(len(d) == N for d in drawn)  # an epoch draws as many samples as there are images
    got = freqs(torch.cat(drawn))  # 51,000 draws: standard error below 0.0022
    probs = sampling.class_probs(torch.tensor(COUNTS), epoch, 5)
    assert probs.tolist() == pytest.approx(hand_probs(sampling, epoch, 5), abs=1e-12)
    assert got.tolist() == pytest.approx(hand_probs(sampling, epoch, 5), abs=0.01)


def test_images_within_a_class_are_uniform_and_with_replacement():
    drawn = torch.cat([epoch_indices("class_balanced", LABELS, torch.Generator().manual_seed(s)) for s in range(60)])
    rare = torch.nonzero(LABELS == 3).flatten()  # 10 images, each drawn with p = 1/4 * 1/10
    per_image = torch.stack([(drawn == i).sum() for i in rare]).double() / len(drawn)
    assert per_image.tolist() == pytest.approx([0.025] * 10, abs=0.004)
    one = epoch_indices("class_balanced", LABELS, torch.Generator().manual_seed(0))
    assert len(torch.unique(one)) < N  # with replacement: repeats within an epoch


def test_instance_is_the_plain_permutation():
    for seed in (0, 7):
        got = epoch_indices("instance", LABELS, torch.Generator().manual_seed(seed), 3, 5)
        assert torch.equal(got, torch.randperm(N, generator=torch.Generator().manual_seed(seed)))
    assert freqs(got).tolist() == pytest.approx(BY_HAND[1.0], abs=1e-12)  # exactly n_j / N


def test_progressive_goes_from_instance_to_class_balanced():
    p = SAMPLERS.get("progressive")
    assert (p.mix(1, 10), p.mix(10, 10), p.mix(4, 10)) == (0.0, 1.0, pytest.approx(1 / 3))
    counts = torch.tensor(COUNTS)
    assert p.class_probs(counts, 1, 10).tolist() == pytest.approx(BY_HAND[1.0])  # q = 1
    assert p.class_probs(counts, 10, 10).tolist() == pytest.approx(BY_HAND[0.0])  # q = 0
    # epoch 4 of 10: a = 3/9; class 3: (2/3) * 10/850 + (1/3) * 1/4
    assert p.class_probs(counts, 4, 10)[3].item() == pytest.approx(2 / 3 * 10 / 850 + 1 / 3 * 0.25)
    assert p.class_probs(counts, 1, 1).tolist() == pytest.approx(BY_HAND[1.0])  # one epoch: instance


def test_empty_class_is_never_drawn():
    labels = torch.tensor([0, 0, 0, 2])  # class 1 has no image (0^0 must not give it mass)
    probs = SAMPLERS.get("class_balanced").class_probs(torch.bincount(labels))
    assert probs.tolist() == pytest.approx([0.5, 0.0, 0.5])
    drawn = epoch_indices("class_balanced", labels, torch.Generator().manual_seed(1))
    assert set(drawn.tolist()) <= {0, 1, 2, 3}


def _memory(sampler="instance", n=None):
    labels = LABELS.numpy() if n is None else LABELS.numpy()[:n]
    images = np.zeros((len(labels), 1, 4, 4), dtype=np.uint8)
    return DeviceBatches(images, labels, [0.5], [0.5], "cpu", sampler=sampler)


def test_in_memory_instance_order_is_unchanged():
    batches = _memory()
    ys = torch.cat([y for _, y in batches.train_batches(100, 11)])
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(11))
    assert torch.equal(ys, LABELS[perm[:800]])  # 8 full batches of 100; the rest dropped
    ys_later = torch.cat([y for _, y in batches.train_batches(100, 11, epoch=4, epochs=5)])
    assert torch.equal(ys_later, ys)  # the epoch number changes nothing for instance sampling


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_in_memory_batches_follow_the_sampler(name):
    batches = _memory(name)
    sampling = SAMPLERS.get(name)
    for epoch in (1, 5):
        ys = torch.cat([y for s in range(40) for _, y in batches.train_batches(170, s, epoch, 5)])
        assert len(ys) == 40 * N  # 5 batches of 170 = 850 per epoch
        got = np.bincount(ys.numpy(), minlength=4) / len(ys)
        assert got.tolist() == pytest.approx(hand_probs(sampling, epoch, 5), abs=0.01)
    # an epoch is a function of (seed, epoch): a resumed run draws it again exactly
    again = [torch.cat([y for _, y in batches.train_batches(170, 9, 3, 5)]) for _ in range(2)]
    assert torch.equal(again[0], again[1])


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_streamed_sampler_follows_the_sampler(name):
    sampler = EpochBatchSampler(N, 85, shuffle=True, drop_last=True, labels=LABELS.numpy(), sampler=name)
    for epoch in (1, 5):
        drawn = []
        for s in range(40):
            sampler.set_epoch(s, epoch, 5)
            batches = list(sampler)
            assert len(batches) == len(sampler) == 10
            drawn += [i for idx, _ in batches for i in idx]
        got = freqs(drawn)
        assert got.tolist() == pytest.approx(hand_probs(SAMPLERS.get(name), epoch, 5), abs=0.01)
        sampler.set_epoch(3, epoch, 5)
        assert list(sampler) == list(sampler)  # an epoch is a function of its seed (resume)


def test_streamed_instance_order_is_unchanged_and_eval_is_ordered():
    for labels in (None, LABELS.numpy()):
        sampler = EpochBatchSampler(N, 85, shuffle=True, drop_last=True, labels=labels)
        sampler.set_epoch(5, 2, 3)
        g = torch.Generator().manual_seed(5)
        perm = torch.randperm(N, generator=g).tolist()
        seeds = torch.randint(0, 2**62, (10,), generator=g).tolist()
        assert list(sampler) == [(perm[b * 85 : (b + 1) * 85], seeds[b]) for b in range(10)]
    ordered = EpochBatchSampler(N, 100, shuffle=False, drop_last=False, labels=LABELS.numpy(), sampler="progressive")
    assert [i for idx, _ in ordered for i in idx] == list(range(N))  # evaluation ignores the sampler


def test_stream_batches_hand_the_sampler_to_the_loader(catalog, tmp_path):
    from ltbench.data.sources import Split
    from ltbench.data.stream import StreamBatches

    split = Split(LABELS.numpy(), paths=tuple(f"{i}.jpg" for i in range(N)))
    spec = catalog.datasets.get("places_lt")
    batches = StreamBatches(tmp_path, split, spec, 16, "cpu", workers=0, sampler="class_balanced")
    loader = batches._loader(True, 85)
    assert loader.sampler.sampler == "class_balanced"
    assert batches._loader(False, 85).sampler.shuffle is False


def test_sampler_setting_is_validated(smoke_config):
    assert smoke_config("cnn_ce").train.sampler == "instance"
    for name in SAMPLERS.names():
        assert smoke_config("cnn_ce", f"sampler={name}").train.sampler == name
    from ltbench.planning.sweep import plan_runs

    with pytest.raises(RecipeError, match="unknown sampler 'class_balance'. Did you mean 'class_balanced'") as e:
        plan_runs(["cnn_ce"], ["digits_lt"], "smoke", overrides=["sampler=class_balance"])  # when the plan is made
    assert all(name in str(e.value) for name in SAMPLERS.names())  # the valid choices are listed


def test_bad_sampler_in_a_recipe_file(tmp_path):
    from ltbench.planning.catalog import load_method

    path = tmp_path / "bad_sampler.toml"
    path.write_text(
        'name = "bad_sampler"\ntitle = "t"\npaper = "p"\nversion = 1\nmodel = "cnn"\nloss = "ce"\n'
        '[budgets.smoke]\nepochs = 1\nbatch_size = 8\nlr = 0.1\nwarmup_epochs = 0\nsampler = "balanced"\n'
    )
    with pytest.raises(RecipeError, match=r"budgets.smoke: unknown sampler 'balanced'.*Valid: .*class_balanced"):
        load_method(path)


def test_fit_passes_the_epoch_to_the_sampler(smoke_config, digits, tmp_path, monkeypatch):
    from ltbench.training.loop import fit

    seen = []
    original = DeviceBatches.train_batches

    def spy(self, batch_size, seed, epoch=1, epochs=1):
        seen.append((self.sampler, epoch, epochs))
        return original(self, batch_size, seed, epoch, epochs)

    monkeypatch.setattr(DeviceBatches, "train_batches", spy)
    fit(smoke_config("ce", "sampler=progressive", "epochs=3"), digits, tmp_path)
    assert seen == [("progressive", 1, 3), ("progressive", 2, 3), ("progressive", 3, 3)]
