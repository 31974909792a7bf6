"""Time budgets of full-preset chapters: FLOP counted on the meta device, a per-GPU table."""
import pytest

from upgan_lib import budget


def test_gpu_table_lookup():
    assert budget.peak_tflops("Tesla T4") == 65.0
    assert budget.peak_tflops("NVIDIA A100-SXM4-40GB") == 312.0  # not the A10
    assert budget.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert budget.peak_tflops("Some Future GPU") is None and budget.peak_tflops(None) is None


def test_training_step_flop_matches_the_benchmark_count():
    # benchmarks/bench_train_step.py --preset full counted 69.7 GFLOP per image on the real step
    flop = budget.upgan_step_flop("full")
    assert flop == pytest.approx(69.7e9, rel=0.05)
    assert budget.upgan_step_flop("full", ("adv", "l2", "mask")) < 0.6 * flop  # the VGG-19 is a large part


def test_estimate_and_what_is_printed(capsys):
    work = [budget.Work("main", 1000, 1e12)]
    est = budget.estimate(work, name="Tesla T4")
    assert est["seconds"] == pytest.approx(1e15 / (65e12 * budget.UTILIZATION))
    budget.print_estimate("07 training", work, name="Tesla T4")
    assert "07 training: expected about 62 s on Tesla T4" in capsys.readouterr().out
    assert budget.estimate(work, name=None)["seconds"] is None  # a CPU: no estimate, said so
    budget.print_estimate("07 training", work, name=None)
    assert "no time estimate" in capsys.readouterr().out
