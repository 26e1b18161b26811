"""`ltbench bench` produces every figure it promises (numbers are not asserted: no timed tests)."""

import pytest


@pytest.mark.slow
def test_bench_reports_every_figure(tmp_path):
    from ltbench.bench import benchmark

    r = benchmark("ce", "digits_lt", "smoke", epochs=1, reference_workers=0)
    for key in ("limit_img_s", "ltbench_img_s", "reference_img_s", "start_to_first_step_s", "peak_memory_mb"):
        assert r[key] > 0, key
    assert r["ratio"] == pytest.approx(r["ltbench_img_s"] / r["limit_img_s"], rel=1e-2)
    assert r["machine"]["threads"] >= 1 and r["versions"]["torch"]


def test_bench_report_times_each_phase():
    from ltbench.bench import bench_report

    r = bench_report(runs=30, num_classes=5, methods=3)
    assert r["runs"] == 30 and all(r[k] >= 0 for k in ("ingest_s", "read_store_s", "write_report_s"))
