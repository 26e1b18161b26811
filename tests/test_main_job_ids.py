"""The main job's run ids, pinned: a refactor that moves code must not move a result's identity.

A run id is the hash of what a run computes (docs/architecture.md, "Run identity is lineage").
These are the ids of ``ltbench run`` with no arguments, as stored before the package became
subpackages (issue 21). If a change alters one on purpose (a recipe's ``version`` bumped, a
setting that changes results), say so in the change and update the id here; if it alters one
by accident, stored results would silently stop matching their recipes.
"""

from ltbench.planning.sweep import main_job_methods, plan_runs

PINNED = {
    "bal_bce on mnist_lt (quick, seed 0)": "eaf3e343bd96899e",
    "bce on mnist_lt (quick, seed 0)": "49eccc96b7efc48f",
    "ce on mnist_lt (quick, seed 0)": "62ac81a85b3bd9ad",
    "cnn_ce on mnist_lt (quick, seed 0)": "989acdc4a5a69d1b",
    "cnn_la on mnist_lt (quick, seed 0)": "8f0739680932d5cb",
    "cnn_ldam_drw on mnist_lt (quick, seed 0)": "732d8250873ae23b",
    "cnn_ldam_drw_sam on mnist_lt (quick, seed 0)": "0e498cfbf2c429ce",
    "deit_lt on mnist_lt (quick, seed 0)": "c2536bffcda233aa",
    "la on mnist_lt (quick, seed 0)": "79a8e9f5219f0de0",
    "mgp_pretrain on mnist_lt (quick, seed 0)": "a02ed73576ef43e6",
    "livt on mnist_lt (quick, seed 0)": "8a78d4a50e3251cd",
    "mgp on mnist_lt (quick, seed 0)": "784cca4313935744",
}


def test_the_main_jobs_run_ids_are_the_stored_ones(tmp_path):
    specs = plan_runs(main_job_methods(), out_dir=tmp_path)
    got = {s.label: s.run_id[:16] for s in specs}
    assert {k: v for k, v in got.items() if k in PINNED} == PINNED
    assert set(PINNED) <= set(got)  # every pinned stage is still planned
