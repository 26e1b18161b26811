"""MGP masking, SAM's two-step update, DeiT-LT heads and stages shared between methods."""

import json

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from ltbench.execution.runner import execute_run
from ltbench.planning.sweep import plan_runs
from ltbench.store.sqlite import ResultStore
from ltbench.training.models.mae import MaskedAutoencoder
from ltbench.training.sam import SAM


def tiny_mae(mask_ratio=0.75):
    enc = VisionTransformer(img_size=8, patch_size=2, in_chans=1, num_classes=0, embed_dim=16, depth=1, num_heads=2)
    return MaskedAutoencoder(enc, decoder_dim=8, decoder_depth=1, decoder_heads=2, mask_ratio=mask_ratio)


def test_mae_mask_ratio_is_exact_per_image():
    mae = tiny_mae()
    torch.manual_seed(0)
    ids_keep, mask, ids_restore = mae.random_masking(5, "cpu")
    assert mae.num_patches == 16
    assert ids_keep.shape == (5, 4) and mask.sum(1).tolist() == [12.0] * 5  # 75% of 16 hidden
    for b in range(5):  # the kept ids are exactly the unmasked positions
        assert sorted(ids_keep[b].tolist()) == torch.nonzero(mask[b] == 0).flatten().tolist()
    assert len({tuple(sorted(r.tolist())) for r in ids_keep}) > 1  # a different mask per image


def test_mae_encoder_sees_only_visible_patches():
    mae = tiny_mae()
    seen = {}

    def record_tokens(module, inputs, output):
        seen["tokens"] = inputs[0].shape[1]

    mae.encoder.blocks.register_forward_hook(record_tokens)
    mae(torch.randn(3, 1, 8, 8))
    assert seen["tokens"] == 4 + 1  # 4 visible patches + the class token


def test_mae_loss_only_on_masked_patches():
    mae = tiny_mae()
    imgs = torch.randn(2, 1, 8, 8)
    target = mae.patchify(imgs)
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    mask = torch.zeros(2, 16)
    mask[:, :12] = 1
    pred = target.clone()
    pred[:, 12:] += 100.0  # wrong only on visible patches: no loss
    assert mae.loss(imgs, pred, mask).item() == pytest.approx(0.0, abs=1e-6)
    pred = target.clone()
    pred[:, :12] += 2.0  # wrong by 2 on every masked pixel: MSE 4
    assert mae.loss(imgs, pred, mask).item() == pytest.approx(4.0, rel=1e-5)


def test_patchify_matches_patch_embedding_order():
    mae = tiny_mae()
    imgs = torch.arange(64.0).view(1, 1, 8, 8)
    patches = mae.patchify(imgs)
    assert patches[0, 1].tolist() == [2.0, 3.0, 10.0, 11.0]  # second patch of the first row
    assert patches[0, 4].tolist() == [16.0, 17.0, 24.0, 25.0]  # first patch of the second row


def test_sam_two_step_update_by_hand():
    # f(w) = 0.5 * w^2 * a with a = (1, 4); gradient a * w.
    a = torch.tensor([1.0, 4.0])
    w = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    sam = SAM(torch.optim.SGD([w], lr=0.1), rho=0.5)

    def closure():
        sam.zero_grad()
        loss = 0.5 * (a * w * w).sum()
        loss.backward()
        return loss

    loss = sam.step(closure)
    assert loss.item() == pytest.approx(2.5)
    g = torch.tensor([1.0, 4.0])  # gradient at w = (1, 1)
    e = 0.5 * g / g.norm()  # ascent step to w + e
    g_adv = a * (torch.tensor([1.0, 1.0]) + e)  # the gradient there updates the original w
    expected = torch.tensor([1.0, 1.0]) - 0.1 * g_adv
    assert w.detach().tolist() == pytest.approx(expected.tolist(), rel=1e-6)


def test_shared_stages_run_once_and_deit_heads_are_stored(tmp_path):
    specs = plan_runs(
        ["mgp", "livt", "deit_lt", "cnn_ldam_drw_sam"], ["digits_lt"], "smoke", seeds=[0, 1], out_dir=tmp_path
    )
    names = [s.config.method.name for s in specs]
    assert names.count("mgp_pretrain") == 2  # one MGP stage per seed, shared by mgp and livt
    assert names.count("cnn_ldam_drw_sam") == 2  # the baseline runs are also the students' teachers
    teachers = {s.config.seed: s for s in specs if s.config.method.name == "cnn_ldam_drw_sam"}
    students = [s for s in specs if s.config.method.name == "deit_lt"]
    assert all(dict(s.needs)["teacher"] == teachers[s.config.seed].run_dir for s in students)
    assert names.index("mgp_pretrain") < names.index("mgp") and names.index("cnn_ldam_drw_sam") < names.index("deit_lt")

    store = ResultStore(tmp_path / "s.db")
    for spec in specs:
        execute_run(spec, store, "cpu")
    pretrain = store.records(method="mgp_pretrain")
    assert len(pretrain) == 2 and all(p["results"] == {} for p in pretrain)
    # running the sweep again trains nothing: every stage is found done
    assert all(execute_run(s, store, "cpu").get("skipped") for s in specs)
    deit = store.records(method="deit_lt")[0]
    assert deit["needs"] == {"teacher": teachers[deit["seed"]].run_id}
    heads = deit["results"]["last"]["heads"]
    assert set(heads) == {"cls", "dist"} and sum(heads["cls"]["total"]) == 500
    assert deit["results"]["last"]["correct"].any() or heads["dist"]["correct"].any()
    livt_cfg = store.records(method="livt")[0]["config"]
    assert livt_cfg["train"]["layer_decay"] == 0.75 and livt_cfg["train"]["global_pool"] == "avg"


def test_failed_teacher_fails_its_students(tmp_path, monkeypatch):
    specs = plan_runs(["deit_lt"], ["digits_lt"], "smoke", out_dir=tmp_path)
    store = ResultStore(tmp_path / "s.db")
    student = specs[-1]
    record = execute_run(student, store, "cpu")  # the teacher never ran
    assert record["status"] == "failed" and "DependencyFailed" in record["error"] and "teacher" in record["error"]
    assert json.loads((student.run_dir / "record.json").read_text())["status"] == "failed"
