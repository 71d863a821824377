"""Plomberie des notebooks 04–05 : prompt, cas d'un analyte, garde Unsloth, lecture des statuts."""

import builtins
import sys

import pandas as pd
import pytest

from helpers import llm, memory, runtime, status
from helpers.data import load_instructions


@pytest.fixture(scope="module")
def instructions():
    return load_instructions()


def L(*codes):
    return [{"code": c} for c in codes]


# --------------------------------------------------------------------------- prompt
def test_prompt_has_the_alpaca_sections_in_order():
    prompt = llm.format_prompt("Interprétez.", "Hb : 10,9 g/dL")
    assert prompt.startswith("Vous êtes l'assistant pédagogique d'un cours sur les analyses de laboratoire")
    positions = [
        prompt.index(s) for s in ("### Instruction:\nInterprétez.", "### Input:\nHb : 10,9 g/dL", "### Response:\n")
    ]
    assert positions == sorted(positions) and prompt.endswith("### Response:\n")
    with pytest.raises(ValueError, match="Instruction vide"):
        llm.format_prompt("  ", "x")


def test_prompt_role_is_a_teaching_assistant_who_defers_to_professionals():
    # Le rôle ne doit pas contredire l'avertissement médical du cours : pas de persona de médecin,
    # pas de diagnostic, renvoi vers un professionnel de santé ; le garde-fou du notebook 07 l'accepte.
    from helpers.rag import prudence_issues

    preamble = llm.ALPACA_PROMPT_FR.split("###")[0]
    assert "vous n'êtes pas médecin" in preamble and "sans diagnostic ni traitement" in preamble
    assert "Vous êtes un médecin" not in preamble
    assert prudence_issues(preamble) == []


def test_analyte_cases_one_value_per_prompt_with_its_range(instructions):
    reports = instructions["test"].select(range(5))
    cases = llm.analyte_cases(reports)
    assert len(cases) == sum(len(r["labels"]) for r in reports)
    first = cases[0]
    label = reports[0]["labels"][0]
    assert first["case_id"] == reports[0]["id"] and first["labels"] == [label]
    assert "(référence :" in first["input"] and first["output"].endswith(f": {label['statut']}")
    # la réponse de référence est lue correctement par le parseur : la boucle est cohérente
    for case in cases:
        assert status.parse_statuses(case["output"], case["labels"]) == {
            case["labels"][0]["code"]: case["labels"][0]["statut"]
        }
    with pytest.raises(ValueError, match="vide"):
        llm.analyte_cases(reports.select([]))


def test_analyte_cases_reject_unknown_analyte_and_status(instructions):
    row = dict(instructions["test"][0])
    with pytest.raises(ValueError, match="Analyte inconnu"):
        llm.analyte_cases([dict(row, labels=[{"code": "XYZ", "statut": "bas", "valeur": 1.0}])])
    bad = dict(row["labels"][0], statut="très haut")
    with pytest.raises(ValueError, match="statut inconnu"):
        llm.analyte_cases([dict(row, labels=[bad])])


def test_balance_statuses_equalises_counts(instructions):
    cases = llm.analyte_cases(instructions["validation"].select(range(40)))
    balanced = llm.balance_statuses(cases, seed=1)
    counts = pd.Series([labels[0]["statut"] for labels in balanced["labels"]]).value_counts()
    assert set(counts.index) == set(llm.STATUSES) and counts.nunique() == 1
    assert counts.iloc[0] == min(pd.Series([labels[0]["statut"] for labels in cases["labels"]]).value_counts())
    with pytest.raises(ValueError, match="un seul analyte"):
        llm.balance_statuses(instructions["validation"].select(range(3)))
    only_normal = cases.filter(lambda c: c["labels"][0]["statut"] == "normal")
    with pytest.raises(ValueError, match="aucun exemple"):
        llm.balance_statuses(only_normal)


class _CharTokenizer:
    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": list(text)}


def test_check_lengths_refuses_truncation():
    from datasets import Dataset

    ds = Dataset.from_dict({"prompt": ["abc", "abcdef"], "completion": ["x</s>", "y</s>"]})
    lengths = llm.check_lengths(ds, _CharTokenizer(), max_length=20)
    assert list(lengths) == [8, 11]
    with pytest.raises(ValueError, match="1 exemple\\(s\\) dépassent max_length=10"):
        llm.check_lengths(ds, _CharTokenizer(), max_length=10)


def test_mistral_lora_parameters_match_the_usual_figure():
    # r = 16 sur les 7 projections : 41 943 040 paramètres (le chiffre qu'affiche Unsloth)
    assert memory.mistral_7b_lora_parameters(16) == 41_943_040


# --------------------------------------------------------------------------- Unsloth
def test_unsloth_guard_without_gpu_attempts_no_import(monkeypatch):
    monkeypatch.setattr(runtime, "cuda_available", lambda: False)
    real_import = builtins.__import__

    def guarded(name, *args, **kwargs):
        if name.split(".")[0] == "unsloth":
            raise AssertionError("import d'unsloth tenté sans GPU")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", guarded)
    with pytest.raises(runtime.UnslothUnavailableError, match="GPU CUDA"):
        runtime.load_unsloth()
    assert "unsloth" not in sys.modules


def test_unsloth_is_not_installed_on_cpu_machines():
    """Installer unsloth sans GPU tirerait plusieurs Go de CUDA : requirements.txt ne le fait pas."""
    import importlib.util

    if runtime.cuda_available():
        pytest.skip("machine avec GPU : unsloth y est attendu")
    assert importlib.util.find_spec("unsloth") is None


# --------------------------------------------------------------------------- statuts
@pytest.mark.parametrize(
    "text, codes, expected",
    [
        (
            "- TSH : 4,81 mUI/L — élevé (référence : 0,4 à 4 mUI/L). Signification habituelle d'une "
            "valeur haute : hypothyroïdie (fruste si T4L normale).\n- T4 libre : 5,9 pmol/L — bas",
            ("TSH", "T4L"),
            {"TSH": "élevé", "T4L": "bas"},
        ),
        ("- Hémoglobine : 10,9 g/dL (référence : 12 à 16 g/dL) → bas", ("HB",), {"HB": "bas"}),
        (
            "La TSH est légèrement élevée. La T4 libre est dans les normes.",
            ("TSH", "T4L"),
            {"TSH": "élevé", "T4L": "normal"},
        ),
        (
            "Votre ferritine n'est pas basse, mais le fer sérique est bas.",
            ("FERRITINE", "FER"),
            {"FERRITINE": "normal", "FER": "bas"},
        ),
        (
            "Votre ferritine n'est pas basse ; le fer est bas.",
            ("FERRITINE", "FER"),
            {"FERRITINE": "normal", "FER": "bas"},
        ),
        (
            "Cholestérol total : ni bas ni élevé.\nLDL-cholestérol : élevé",
            ("CT", "LDL"),
            {"CT": "normal", "LDL": "élevé"},
        ),
        ("- Urée : 1,5 mmol/L — à la limite inférieure de la normale", ("UREE",), {"UREE": "normal"}),
        ("- CPK : 3020 UI/L — pas normal, nettement augmentées", ("CPK",), {"CPK": "élevé"}),
        ("- CRP : 3,3 mg/L — normal.\n- Magnésium : 0,56 mmol/L — bas", ("CRP", "MG"), {"CRP": "normal", "MG": "bas"}),
        ("HÉMOGLOBINE : BASSE", ("HB",), {"HB": "bas"}),
        ("L’hémoglobine n’est pas élevée.", ("HB",), {"HB": "normal"}),
        ("Rien à signaler.", ("CPK",), {"CPK": None}),
    ],
)
def test_parse_statuses_on_tricky_french(text, codes, expected):
    assert status.parse_statuses(text, L(*codes)) == expected


def test_parser_reads_every_reference_answer(instructions):
    """Sur les réponses de référence (rédigées et « Nom : statut »), le lecteur retrouve 100 % des statuts."""
    for split in ("validation", "test"):
        d = instructions[split]
        full = status.score_answers(list(d["output"]), d, "ref")
        cases = llm.analyte_cases(d)
        short = status.score_answers(list(cases["output"]), cases, "court")
        assert full["correct"].all() and short["correct"].all()
        assert short["case_id"].nunique() == len(d)  # regroupé par compte rendu d'origine


def test_score_answers_counts_unparsed_as_wrong(instructions):
    cases = instructions["test"].select(range(2))
    scored = status.score_answers(["Je ne sais pas.", cases[1]["output"]], cases, "base")
    n0 = len(cases[0]["labels"])
    assert (scored["predicted"].iloc[:n0] == "introuvable").all()
    table = status.accuracy_table(scored)
    assert list(table.columns) == ["model", "n_cases", "n_values", "accuracy"]
    assert table["n_cases"].item() == 2 and table["n_values"].item() == len(scored)
    assert table["accuracy"].item() == pytest.approx(1 - n0 / len(scored))
    conf = status.confusion(scored, "base")
    assert int(conf.to_numpy().sum()) == len(scored) and conf["introuvable"].sum() == n0
    with pytest.raises(ValueError, match="autant"):
        status.score_answers(["x"], cases, "base")
    with pytest.raises(ValueError, match="chaîne"):
        status.parse_statuses(None, L("HB"))
    assert isinstance(scored, pd.DataFrame)


# --------------------------------------------------------------------------- mémoire
def test_mistral_7b_parameter_count_from_architecture():
    p = memory.mistral_7b_parameters()
    assert p["total"] == pytest.approx(7.248e9, rel=0.001)  # 7,25 milliards (fiche du modèle)
    mem = memory.theoretical_memory(p["lineaires"], p["autres"]).set_index("format")["go"]
    assert mem["fp32"] == pytest.approx(29.0, rel=0.01)
    assert mem["bf16"] == pytest.approx(14.5, rel=0.01)
    assert 3.9 < mem["nf4 + double quant."] < mem["nf4"] < 4.6
    assert list(mem) == sorted(mem, reverse=True)


def test_parameter_groups_and_lora_count():
    import torch

    model = torch.nn.Sequential()
    model.add_module("q_proj", torch.nn.Linear(8, 8, bias=False))
    model.add_module("up_proj", torch.nn.Linear(8, 32, bias=False))
    model.add_module("lm_head", torch.nn.Linear(8, 100, bias=False))
    groups = memory.parameter_groups(model)
    assert groups == {"lineaires": 64 + 256, "autres": 800, "total": 1120}
    assert memory.lora_parameters(model, r=4) == 4 * (8 + 8) + 4 * (8 + 32)


def test_measure_memory_on_tiny_model():
    from helpers.models import model_path

    table = memory.measure_memory(model_path("tiny-mistral")).set_index("format")
    assert list(table.index) == ["fp32", "bf16", "int8", "nf4", "nf4 + double quant."]
    assert table.loc["fp32", "fp32_ratio"] == 1
    assert table.loc["bf16", "mb"] == pytest.approx(table.loc["fp32", "mb"] / 2, rel=0.01)
    assert table.loc["nf4", "mb"] <= table.loc["int8", "mb"] < table.loc["fp32", "mb"]


def test_generation_tokenizer_leaves_training_tokenizer_alone():
    from transformers import AutoTokenizer

    from helpers.models import model_path

    tok = AutoTokenizer.from_pretrained(model_path("tiny-mistral"))
    before = tok.padding_side
    gen = llm.generation_tokenizer(tok)
    assert gen.padding_side == "left" and tok.padding_side == before and gen.pad_token is not None
    batch = gen(["court", "un texte nettement plus long"], padding=True, return_tensors="pt")
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][0, -1] == 1


# --------------------------------------------------------------------------- repli sans Unsloth
def test_gpu_without_unsloth_falls_back_to_bitsandbytes(monkeypatch):
    from helpers import runtime
    from helpers.profiles import get_profile

    monkeypatch.setattr(runtime, "cuda_available", lambda: True)
    monkeypatch.setitem(sys.modules, "unsloth", None)  # « pas installé » : import → ImportError
    with pytest.warns(runtime.CourseFallbackWarning) as caught:
        cfg, module = runtime.select_backend(get_profile("gpu").llm)
    assert cfg.backend == "bitsandbytes" and module is None
    err = " ".join(str(w.message) for w in caught)
    assert "Unsloth n'est pas installé" in err and "Repli : bitsandbytes" in err
    with pytest.raises(runtime.UnslothUnavailableError, match="pas installé"):
        runtime.select_backend(get_profile("gpu").llm, "unsloth")


def test_unsloth_left_out_by_the_colab_cell_says_why(monkeypatch):
    from helpers import runtime
    from helpers.profiles import get_profile

    reason = "pip refuse l'Unsloth épinglé avec le torch de cette image Colab (torch 2.15.0+cu128)"
    monkeypatch.setattr(runtime, "skipped_unsloth_reason", lambda repo=None: reason)
    monkeypatch.setattr(runtime, "cuda_available", lambda: True)
    monkeypatch.setitem(sys.modules, "unsloth", None)
    with pytest.warns(runtime.CourseFallbackWarning) as caught:
        cfg, _ = runtime.select_backend(get_profile("gpu").llm)
    err = " ".join(str(w.message) for w in caught)
    assert cfg.backend == "bitsandbytes" and reason in err
    assert "%pip install -r requirements-gpu.txt" not in err  # le conseil habituel échouerait de nouveau


def test_unsloth_failing_at_import_falls_back(monkeypatch, tmp_path):
    from helpers import runtime
    from helpers.profiles import get_profile

    (tmp_path / "unsloth.py").write_text("raise RuntimeError('triton incompatible avec ce CUDA')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "unsloth", raising=False)
    monkeypatch.setattr(runtime, "cuda_available", lambda: True)
    with pytest.warns(runtime.CourseFallbackWarning) as caught:
        cfg, _ = runtime.select_backend(get_profile("gpu").llm)
    assert cfg.backend == "bitsandbytes"
    err = " ".join(str(w.message) for w in caught)
    assert "échoue à l'import (RuntimeError : triton incompatible" in err and "Dépannage" in err


def test_cpu_profile_never_tries_unsloth(monkeypatch, capsys):
    from helpers.profiles import get_profile

    monkeypatch.setitem(sys.modules, "unsloth", None)
    cfg, module = runtime.select_backend(get_profile("cpu").llm)
    assert cfg.backend == "bitsandbytes" and module is None
    assert "Unsloth n'est pas importé" in capsys.readouterr().out


def test_qlora_gpu_memory_estimate_adds_up():
    est = memory.qlora_gpu_memory_gb(16, 2, 2048)
    assert est["poids_4bits"] == pytest.approx(4.14, abs=0.01)  # même chiffre que le notebook 04
    parts = sum(v for k, v in est.items() if k != "total")
    assert est["total"] == pytest.approx(parts, abs=0.02)
    assert memory.qlora_gpu_memory_gb(16, 1, 512)["total"] < est["total"]
