"""La mémoire d'un bras du notebook 06, seule : pas à exemples égaux, tableau, sonde du noyau et
erreurs du processus à part."""

import pytest

from helpers import isolated, memory
from helpers.profiles import get_profile


def test_matched_steps_cover_the_examples():
    assert isolated.matched_steps(80, 4) == 20
    assert isolated.matched_steps(81, 4) == 21
    assert isolated.matched_steps(2400, 8) == 300
    with pytest.raises(ValueError, match="positifs"):
        isolated.matched_steps(0, 4)


def test_memory_table_subtracts_the_start():
    runs = {
        "B": {
            "steps": 5,
            "libraries_rss_mb": 300.4,
            "loaded_model_rss_mb": 1350.0,
            "first_step_peak_rss_mb": 2300,
            "peak_rss_mb": 2800,
        },
        "C": {
            "method": "noyau, pic remis à zéro (vérifié)",
            "steps": 20,
            "start_rss_mb": 1310.0,
            "loaded_model_rss_mb": None,
            "peak_rss_mb": 4000,
            "peak_gpu_reserved_mb": 1200,
        },
    }
    table = isolated.memory_table(runs)
    assert table.loc["B", "own_mb"] == 2500 and table.loc["C", "own_mb"] == 2690
    assert table.loc["B", "measure"] == "processus à part" and table.loc["C", "peak_gpu_reserved_mb"] == 1200
    assert table.loc["B", "load_mb"] == 1050 and table.loc["C", "load_mb"] != table.loc["C", "load_mb"]


def test_memory_probe_sees_an_allocation_after_a_verified_reset():
    import numpy as np

    probe = memory.MemoryProbe()
    assert probe.verified  # Linux : VmHWM ramené à VmRSS
    block = np.ones(64 * 1024 * 1024 // 8)  # 64 Mo touchés
    probe.mark("modele_charge")
    record = probe.stop(steps=1)
    del block
    assert record["method"].endswith("(vérifié)") and record["steps"] == 1
    assert record["peak_rss_mb"] - record["start_rss_mb"] >= 60
    assert record["loaded_model_rss_mb"] >= record["start_rss_mb"] + 60


def test_measure_arm_reports_a_failed_child_in_french(tmp_path):
    with pytest.raises(RuntimeError, match="(?s)Bras B en processus à part : échec \\(code 1\\).*entier positif"):
        isolated.measure_arm(get_profile("smoke"), "B", 0, tmp_path)
    with pytest.raises(ValueError, match="Bras inconnu « Z »"):
        isolated.measure_arm(get_profile("smoke"), "Z", 1, tmp_path)


def test_run_arm_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="Bras inconnu"):
        isolated.run_arm(get_profile("smoke"), "D", 1, tmp_path)
    with pytest.raises(ValueError, match="entier positif"):
        isolated.run_arm(get_profile("smoke"), "B", 0, tmp_path)
