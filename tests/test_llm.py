"""Plomberie des notebooks 04–05 : prompt, variante compacte, garde Unsloth, lecture des statuts."""
import builtins
import sys

import pandas as pd
import pytest

from helpers import llm
from helpers.data import load_instructions


@pytest.fixture(scope="module")
def instructions():
    return load_instructions()


def L(*codes):
    return [{"code": c} for c in codes]


# --------------------------------------------------------------------------- prompt
def test_prompt_has_the_alpaca_sections_in_order():
    prompt = llm.format_prompt("Interprétez.", "Hb : 10,9 g/dL")
    assert prompt.startswith("Vous êtes un médecin professionnel spécialisé dans l'analyse des "
                             "résultats de laboratoire médical.")
    positions = [prompt.index(s) for s in ("### Instruction:\nInterprétez.", "### Input:\nHb : 10,9 g/dL",
                                            "### Response:\n")]
    assert positions == sorted(positions) and prompt.endswith("### Response:\n")
    with pytest.raises(ValueError, match="Instruction vide"):
        llm.format_prompt("  ", "x")


def test_sft_dataset_adds_eos_and_keeps_labels(instructions):
    ds = llm.sft_dataset(instructions["validation"].select(range(3)), "<|im_end|>")
    assert ds.column_names == ["prompt", "completion", "id", "labels"]
    assert all(c.endswith("<|im_end|>") for c in ds["completion"])
    assert ds[0]["completion"].startswith(instructions["validation"][0]["output"])
    assert "### Input:\nPatient :" in ds[0]["prompt"]
    with pytest.raises(ValueError, match="EOS"):
        llm.sft_dataset(instructions["validation"].select(range(1)), "")
    with pytest.raises(ValueError, match="Style de réponse inconnu"):
        llm.sft_dataset(instructions["validation"].select(range(1)), "</s>", style="court")


def test_compact_style_puts_reference_before_status(instructions):
    row = instructions["test"][0]
    ds = llm.sft_dataset(instructions["test"].select([0]), "</s>", style="compact")
    lines = ds[0]["completion"].removesuffix("</s>").split("\n")
    assert len(lines) == len(row["labels"])
    for line, label in zip(lines, row["labels"]):
        assert line.index("(référence :") < line.index("→") and line.endswith(f"→ {label['statut']}")
    assert ds[0]["prompt"].count("(référence :") == len(row["labels"])


def test_with_reference_ranges_checks_label_count(instructions):
    row = dict(instructions["test"][0])
    row["labels"] = row["labels"][:-1]
    with pytest.raises(ValueError, match="plus de lignes de résultats"):
        llm.with_reference_ranges(row)
    row["labels"] = list(instructions["test"][0]["labels"]) * 2
    with pytest.raises(ValueError, match="plus d'étiquettes"):
        llm.with_reference_ranges(row)
    bad = dict(instructions["test"][0], labels=[{"code": "XYZ", "statut": "bas", "valeur": 1.0}])
    with pytest.raises(ValueError, match="Analyte inconnu"):
        llm.compact_output(bad)


# --------------------------------------------------------------------------- Unsloth
def test_unsloth_guard_without_gpu_attempts_no_import(monkeypatch):
    monkeypatch.setattr(llm.runtime, "cuda_available", lambda: False)
    real_import = builtins.__import__

    def guarded(name, *args, **kwargs):
        if name.split(".")[0] == "unsloth":
            raise AssertionError("import d'unsloth tenté sans GPU")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", guarded)
    with pytest.raises(llm.UnslothUnavailableError, match="GPU CUDA"):
        llm.load_unsloth()
    assert "unsloth" not in sys.modules


def test_unsloth_is_not_installed_on_cpu_machines():
    """Installer unsloth sans GPU tirerait plusieurs Go de CUDA : requirements.txt ne le fait pas."""
    import importlib.util

    if llm.runtime.cuda_available():
        pytest.skip("machine avec GPU : unsloth y est attendu")
    assert importlib.util.find_spec("unsloth") is None


# --------------------------------------------------------------------------- statuts
@pytest.mark.parametrize("text, codes, expected", [
    ("- TSH : 4,81 mUI/L — élevé (référence : 0,4 à 4 mUI/L). Signification habituelle d'une "
     "valeur haute : hypothyroïdie (fruste si T4L normale).\n- T4 libre : 5,9 pmol/L — bas",
     ("TSH", "T4L"), {"TSH": "élevé", "T4L": "bas"}),
    ("- Hémoglobine : 10,9 g/dL (référence : 12 à 16 g/dL) → bas", ("HB",), {"HB": "bas"}),
    ("La TSH est légèrement élevée. La T4 libre est dans les normes.", ("TSH", "T4L"),
     {"TSH": "élevé", "T4L": "normal"}),
    ("Votre ferritine n'est pas basse, mais le fer sérique est bas.", ("FERRITINE", "FER"),
     {"FERRITINE": "normal", "FER": "bas"}),
    ("Votre ferritine n'est pas basse ; le fer est bas.", ("FERRITINE", "FER"),
     {"FERRITINE": "normal", "FER": "bas"}),
    ("Cholestérol total : ni bas ni élevé.\nLDL-cholestérol : élevé", ("CT", "LDL"),
     {"CT": "normal", "LDL": "élevé"}),
    ("- Urée : 1,5 mmol/L — à la limite inférieure de la normale", ("UREE",), {"UREE": "normal"}),
    ("- CPK : 3020 UI/L — pas normal, nettement augmentées", ("CPK",), {"CPK": "élevé"}),
    ("- CRP : 3,3 mg/L — normal.\n- Magnésium : 0,56 mmol/L — bas", ("CRP", "MG"),
     {"CRP": "normal", "MG": "bas"}),
    ("HÉMOGLOBINE : BASSE", ("HB",), {"HB": "bas"}),
    ("L’hémoglobine n’est pas élevée.", ("HB",), {"HB": "normal"}),
    ("Rien à signaler.", ("CPK",), {"CPK": None}),
])
def test_parse_statuses_on_tricky_french(text, codes, expected):
    assert llm.parse_statuses(text, L(*codes)) == expected


def test_parser_reads_every_reference_answer(instructions):
    """Sur les réponses de référence (complètes et compactes), le lecteur retrouve 100 % des statuts."""
    for split in ("validation", "test"):
        d = instructions[split]
        full = llm.score_answers(list(d["output"]), d, "ref")
        compact = llm.score_answers([llm.compact_output(r) for r in d], d, "compact")
        assert full["correct"].all() and compact["correct"].all()


def test_score_answers_counts_unparsed_as_wrong(instructions):
    cases = instructions["test"].select(range(2))
    scored = llm.score_answers(["Je ne sais pas.", cases[1]["output"]], cases, "base")
    n0 = len(cases[0]["labels"])
    assert (scored["predit"].iloc[:n0] == "introuvable").all()
    table = llm.accuracy_table(scored)
    assert list(table.columns) == ["model", "n_cases", "n_values", "accuracy"]
    assert table["n_cases"].item() == 2 and table["n_values"].item() == len(scored)
    assert table["accuracy"].item() == pytest.approx(1 - n0 / len(scored))
    conf = llm.confusion(scored, "base")
    assert int(conf.to_numpy().sum()) == len(scored) and conf["introuvable"].sum() == n0
    with pytest.raises(ValueError, match="autant"):
        llm.score_answers(["x"], cases, "base")
    with pytest.raises(ValueError, match="chaîne"):
        llm.parse_statuses(None, L("HB"))
    assert isinstance(scored, pd.DataFrame)


# --------------------------------------------------------------------------- mémoire
def test_mistral_7b_parameter_count_from_architecture():
    p = llm.mistral_7b_parameters()
    assert p["total"] == pytest.approx(7.248e9, rel=0.001)  # 7,25 milliards (fiche du modèle)
    mem = llm.theoretical_memory(p["lineaires"], p["autres"]).set_index("format")["go"]
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
    groups = llm.parameter_groups(model)
    assert groups == {"lineaires": 64 + 256, "autres": 800, "total": 1120}
    assert llm.lora_parameters(model, r=4) == 4 * (8 + 8) + 4 * (8 + 32)


def test_measure_memory_on_tiny_model():
    from helpers.models import model_path

    table = llm.measure_memory(model_path("tiny-mistral")).set_index("format")
    assert list(table.index) == ["fp32", "bf16", "int8", "nf4", "nf4 + double quant."]
    assert table.loc["fp32", "rapport_fp32"] == 1
    assert table.loc["bf16", "mo"] == pytest.approx(table.loc["fp32", "mo"] / 2, rel=0.01)
    assert table.loc["nf4", "mo"] <= table.loc["int8", "mo"] < table.loc["fp32", "mo"]


def test_generation_tokenizer_leaves_training_tokenizer_alone():
    from transformers import AutoTokenizer

    from helpers.models import model_path

    tok = AutoTokenizer.from_pretrained(model_path("tiny-mistral"))
    before = tok.padding_side
    gen = llm.generation_tokenizer(tok)
    assert gen.padding_side == "left" and tok.padding_side == before and gen.pad_token is not None
    batch = gen(["court", "un texte nettement plus long"], padding=True, return_tensors="pt")
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][0, -1] == 1
