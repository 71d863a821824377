"""Clés anglaises des sorties : la migration ponctuelle des anciennes sorties, et ce qu'écrit le cours."""

import importlib.util
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _migration():
    spec = importlib.util.spec_from_file_location("migrate_output_keys", ROOT / "scripts" / "migrate_output_keys.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_migration_renames_headers_and_keys_once_and_spares_models(tmp_path):
    mig = _migration()
    root = tmp_path / "cpu"
    (root / "comparison" / "bras_b_prime" / "modele").mkdir(parents=True)
    csv = root / "comparison" / "comparison.csv"
    csv.write_text('bras,exactitude_statuts,provenance\nA,0.1234567890123,"a, b"\n', encoding="utf-8")
    gaps = root / "comparison" / "oubli_ecarts.csv"
    gaps.write_text("bras,depart,mesure,ecart\nB,base,perte_francais_courant,0.5\n", encoding="utf-8")
    summary = root / "run_summary.json"
    summary.write_text(
        json.dumps({"profil": "cpu", "notebooks": [{"statut": "ok", "secondes": 3}], "versions": {"peft": "1"}}),
        encoding="utf-8",
    )
    model = root / "comparison" / "bras_b_prime" / "modele" / "config.json"
    model.write_text('{"pas": 1}', encoding="utf-8")
    untouched = model.read_bytes()

    changed = mig.migrate(root)

    assert sorted(p.name for p in changed) == ["comparison.csv", "oubli_ecarts.csv", "run_summary.json"]
    assert gaps.read_text(encoding="utf-8") == "arm,baseline,measure,gap\nB,base,fluent_french_loss,0.5\n"
    assert csv.read_text(encoding="utf-8") == 'arm,status_accuracy,provenance\nA,0.1234567890123,"a, b"\n'
    assert json.loads(summary.read_text(encoding="utf-8")) == {
        "profile": "cpu",
        "notebooks": [{"status": "ok", "seconds": 3}],
        "versions": {"peft": "1"},
    }
    assert model.read_bytes() == untouched  # un modèle enregistré n'est pas une sortie du cours
    assert mig.migrate(root) == []  # une seconde fois : rien à faire
    with pytest.raises(FileNotFoundError, match="introuvable"):
        mig.migrate(tmp_path / "absent")


def test_new_keys_are_english_snake_case():
    mig = _migration()
    new = set(mig.RENAMED.values())
    assert all(k.isascii() and k == k.lower() and " " not in k and "@" not in k for k in new), sorted(new)
    assert not new & set(mig.RENAMED), "une nouvelle clé ne doit pas être aussi une ancienne"


def test_display_labels_cover_the_renamed_columns_that_are_shown():
    from helpers.text import DISPLAY_LABELS

    shown = {  # colonnes des tableaux que montrent les notebooks et la page des résultats
        "arm", "approach", "trainable_params", "examples_seen", "train_seconds", "own_memory_mb", "artifact_mb",
        "latency_ms", "status_accuracy", "status_accuracy_low", "status_accuracy_high", "eval_loss",
        "ci_low", "ci_high", "gap", "queries", "significant", "hit_at_1", "hit_at_3", "query_kind",
        "true_positives", "false_positives", "misses", "recall", "own_mb", "load_mb", "peak_mb",
    }  # fmt: skip
    assert shown <= set(DISPLAY_LABELS), sorted(shown - set(DISPLAY_LABELS))


def _keys(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            if k not in ("versions", "profile", "environment"):
                yield from _keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from _keys(v)


@pytest.mark.integration
def test_the_course_writes_no_old_french_key():
    """Ce qu'a écrit l'exécution nbval (profil smoke) : aucun en-tête CSV, aucune clé JSON ancienne."""
    run = os.environ.get("COURSE_REFERENCE_RUN", "")
    root = Path(run) / "smoke"
    if not root.is_dir():
        pytest.skip("pas d'exécution nbval à relire (make test la fait avant les tests d'intégration)")
    mig = _migration()
    old = set(mig.RENAMED)
    found = {}
    for path in root.rglob("*"):
        if not path.is_file() or path.suffix not in (".csv", ".json") or mig._skipped(path, root):
            continue
        if path.suffix == ".csv":
            keys = path.read_text(encoding="utf-8").partition("\n")[0].split(",")
        else:
            keys = list(_keys(json.loads(path.read_text(encoding="utf-8"))))
        if bad := sorted(set(keys) & old):
            found[str(path.relative_to(root))] = bad
    assert len(list(root.rglob("*.csv"))) >= 10, "l'exécution nbval n'a presque rien écrit"
    assert not found, found
