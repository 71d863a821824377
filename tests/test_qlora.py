"""Plomberie des notebooks 04–05 : mémoire d'entraînement, génération par lots, exemples, sorties."""

import json

import pandas as pd
import pytest

from helpers import MEDICAL_DISCLAIMER, llm, memory, qlora, runtime, status
from helpers.data import load_instructions


# --------------------------------------------------------------------------- mémoire
def test_training_memory_counts_bytes_per_parameter():
    table = memory.training_memory(total=1_000_000_000, trainable=10_000_000, linear=900_000_000)
    go = dict(zip(table["détail"], table["go"]))
    assert go["bf16 + AdamW fp32"] == 16.0  # 2 + 2 + 4 + 8 octets par paramètre
    assert go["bf16 + AdamW 8 bits"] == 10.0
    assert go["base bf16 figée + AdamW fp32"] == pytest.approx(2.0 + 0.16)
    nf4 = 0.9 * (0.5 + 1 / 64 + 4 / (64 * 256)) + 0.1 * 2
    assert go["base nf4 figée + AdamW fp32"] == pytest.approx(nf4 + 0.16, abs=0.006)
    assert go["base nf4 figée + AdamW 8 bits"] < go["base nf4 figée + AdamW fp32"]
    with pytest.raises(ValueError, match="incohérents"):
        memory.training_memory(total=10, trainable=1, linear=20)


def test_mistral_qlora_fits_a_free_colab_gpu():
    p = memory.mistral_7b_parameters()
    table = memory.training_memory(p["total"], memory.mistral_7b_lora_parameters(16), p["lineaires"])
    assert table["go"].iloc[0] > 100 and table["go"].iloc[-1] < 6  # 116 Go contre ~4,6 Go


# --------------------------------------------------------------------------- chemins et tailles
def test_adapter_paths_and_clear_error_when_missing(outputs):
    assert qlora.adapter_dir("cpu") == outputs / "cpu" / "llm" / "adapter"
    with pytest.raises(FileNotFoundError, match="notebook 04"):
        qlora.require_adapter("cpu")
    qlora.adapter_dir("cpu").mkdir(parents=True)
    (qlora.adapter_dir("cpu") / "adapter_config.json").write_text("{}")
    (qlora.adapter_dir("cpu") / "poids.bin").write_bytes(b"x" * 2_000_000)
    assert qlora.require_adapter("cpu") == qlora.adapter_dir("cpu")
    assert memory.dir_size_mb(qlora.adapter_dir("cpu")) == pytest.approx(2.0, abs=0.01)
    assert memory.base_model_size_mb(str(qlora.adapter_dir("cpu"))) == pytest.approx(2.0, abs=0.01)
    assert memory.base_model_size_mb("organisation-inexistante/modele") is None
    with pytest.raises(FileNotFoundError):
        memory.dir_size_mb(outputs / "absent")


def test_training_summary_round_trip(outputs):
    with pytest.raises(FileNotFoundError, match="notebook 04"):
        qlora.load_training_summary("smoke")
    qlora.save_training_summary({"steps": 3, "perte": 0.5}, "smoke")
    assert qlora.load_training_summary("smoke") == {"steps": 3, "perte": 0.5}


# --------------------------------------------------------------------------- génération
def test_in_batches_keeps_order_and_checks_counts():
    calls = []

    def fake(batch):
        calls.append(len(batch))
        return [p.upper() for p in batch]

    assert runtime.in_batches(fake, ["a", "b", "c", "d", "e"], 2) == ["A", "B", "C", "D", "E"]
    assert calls == [2, 2, 1]
    with pytest.raises(ValueError, match="2 réponses pour un lot de 1"):
        runtime.in_batches(lambda b: ["x", "y"], ["a"], 4)
    with pytest.raises(ValueError, match="Taille de lot invalide"):
        runtime.in_batches(fake, ["a"], 0)


@pytest.fixture(scope="module")
def cases():
    return llm.analyte_cases(load_instructions()["test"].select(range(3)))


def test_examples_show_every_answer_with_the_disclaimer(cases):
    right = list(cases["output"])
    wrong = ["Rien à dire."] * len(cases)
    scored = pd.concat([status.score_answers(right, cases, "finetuned"), status.score_answers(wrong, cases, "base")])
    good = qlora.examples(scored, {"base": wrong, "finetuned": right}, cases, "finetuned", correct=True, n=2)
    assert len(good) == 2 and list(good.columns) == ["entrée", "expected", "base", "finetuned"]
    text = qlora.format_examples(good, MEDICAL_DISCLAIMER)
    assert text.count(MEDICAL_DISCLAIMER) == 4  # 2 exemples × 2 réponses
    bad = qlora.examples(scored, {"finetuned": right}, cases, "finetuned", correct=False)
    assert "aucun exemple" in qlora.format_examples(bad, MEDICAL_DISCLAIMER)


def test_answer_profile_detects_a_constant_answer(cases):
    constant = [f"{c['output'].split(' : ')[0]} : normal" for c in cases]
    scored = status.score_answers(constant, cases, "finetuned")
    row = qlora.answer_profile(scored).iloc[0]
    assert row["most_given_status"] == "normal" and row["most_given_share"] == 1.0
    assert row["readable_status"] == 1.0
    share_normal = (scored["expected"] == "normal").mean()
    assert row["accuracy"] == pytest.approx(share_normal, abs=1e-3)


def test_save_status_results_writes_the_required_columns(outputs, cases):
    answers = {"base": ["?"] * len(cases), "finetuned": list(cases["output"])}
    scored = pd.concat([status.score_answers(a, cases, m) for m, a in answers.items()])
    accuracy = status.accuracy_table(scored)
    paths = qlora.save_status_results(accuracy, scored, answers, cases, "smoke")
    csv = pd.read_csv(paths["accuracy"])
    assert list(csv.columns) == ["model", "n_cases", "n_values", "accuracy"]
    assert csv.set_index("model").loc["finetuned", "accuracy"] == 1.0
    assert csv.set_index("model").loc["finetuned", "n_cases"] == 3  # comptes rendus, pas prompts
    lines = paths["answers"].read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(cases) and json.loads(lines[0])["finetuned"] == cases[0]["output"]
    with pytest.raises(ValueError, match="Colonnes manquantes"):
        qlora.save_status_results(accuracy.drop(columns="n_cases"), scored, answers, cases, "smoke")


# --------------------------------------------------------------------------- diagnostic
def test_comparison_pairs_are_balanced_and_close():
    pairs = qlora.comparison_pairs(40, seed=3)
    assert len(pairs) == 40 and sum(truth for _, _, truth in pairs) == 20
    for a, b, truth in pairs:
        x, y = float(a.replace(",", ".")), float(b.replace(",", "."))
        assert (x > y) == truth and x != y and 0.6 < y / x < 1.4
    assert qlora.comparison_pairs(10, seed=3) == pairs[:10]


class _AlwaysYes:
    """Faux modèle : préfère toujours le premier jeton de « oui »."""

    def __init__(self, yes_id):
        import torch

        self.yes_id, self.weight = yes_id, torch.nn.Parameter(torch.zeros(1))

    def parameters(self):
        return iter([self.weight])

    def __call__(self, input_ids, attention_mask=None):
        from types import SimpleNamespace

        import torch

        logits = torch.zeros(input_ids.shape[0], input_ids.shape[1], 10_000)
        logits[:, -1, self.yes_id] = 1.0
        return SimpleNamespace(logits=logits)


def test_comparison_probe_gives_chance_for_a_constant_answer():
    from transformers import AutoTokenizer

    from helpers.models import model_path

    tokenizer = AutoTokenizer.from_pretrained(model_path("tiny-mistral"))
    yes = tokenizer("oui", add_special_tokens=False)["input_ids"][0]
    assert qlora.comparison_probe(_AlwaysYes(yes), tokenizer, n=20, batch_size=8) == 0.5


# --------------------------------------------------------------------------- piège bitsandbytes CPU
def _lora_grads(model, batch):
    import torch

    model.zero_grad(set_to_none=True)
    model.train()
    model(**batch, labels=batch["input_ids"]).loss.backward()
    # un gradient absent (None) = le graphe est coupé : on le note par des zéros
    return {
        n: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
        for n, p in model.named_parameters()
        if p.requires_grad
    }


def _tiny_qlora(guard: bool):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from helpers.models import model_path

    path = model_path("tiny-mistral")
    torch.manual_seed(0)
    bnb = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
    )
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=bnb, device_map="cpu")
    if guard:
        assert qlora.disable_cpu_weight_packing(model) > 0
    lora = LoraConfig(
        r=4,
        lora_alpha=4,
        target_modules=["q_proj", "v_proj", "down_proj"],
        task_type="CAUSAL_LM",
        init_lora_weights=False,
    )  # B ≠ 0 : les gradients traversent les poids 4 bits
    model = get_peft_model(model, lora)
    batch = AutoTokenizer.from_pretrained(path)(["Hémoglobine : 10,9 g/dL"], return_tensors="pt")
    return model, batch


def _eval_forward(model, batch):
    import torch

    model.eval()
    with torch.no_grad():
        model(**batch)


def test_evaluation_does_not_corrupt_qlora_gradients_once_guarded():
    import torch

    model, batch = _tiny_qlora(guard=True)
    fresh = _lora_grads(model, batch)
    _eval_forward(model, batch)  # comme trainer.evaluate() ou generate avant l'entraînement
    after = _lora_grads(model, batch)
    assert fresh.keys() == after.keys()
    assert all(torch.allclose(fresh[k], after[k], atol=1e-6) for k in fresh)


@pytest.mark.skipif(runtime.cpu_4bit_kernel() != "fusionné", reason="empaquetage CPU : AVX512-BF16 requis")
def test_without_guard_bitsandbytes_packing_changes_gradients():
    """Le piège existe bien dans la version épinglée : s'il disparaît, ce test le signalera."""

    model, batch = _tiny_qlora(guard=False)
    fresh = _lora_grads(model, batch)
    _eval_forward(model, batch)
    after = _lora_grads(model, batch)
    assert _relative_error(fresh, after) > 0.5  # gradients faux (ou absents)
    assert qlora.disable_cpu_weight_packing(model) > 0  # l'empaquetage est annulé…
    restored = _lora_grads(model, batch)
    # … et les gradients redeviennent justes, à l'arrondi près (l'inverse de bitsandbytes garde
    # les échelles déquantifiées au lieu de leur double quantification)
    assert _relative_error(fresh, restored) < 1e-2


def _relative_error(a: dict, b: dict) -> float:
    import torch

    num = torch.sqrt(sum(((a[k] - b[k]) ** 2).sum() for k in a))
    return float(num / torch.sqrt(sum((a[k] ** 2).sum() for k in a)))


def test_plot_losses_draws_train_base_and_final():
    import matplotlib

    matplotlib.use("Agg")
    history = [{"step": i, "loss": 5.0 / i} for i in range(1, 6)] + [
        {"step": 3, "eval_loss": 0.9},
        {"step": 5, "eval_loss": 0.8},
    ]
    fig = qlora.plot_losses(history, base_eval_loss=4.8, final_eval_loss=0.8)
    assert list(fig.axes[0].get_lines()[1].get_xdata()) == [3]  # la finale n'est pas dessinée deux fois
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["entraînement", "validation", "validation, modèle fine-tuné", "validation, modèle de base"]
    with pytest.raises(ValueError, match="Historique"):
        qlora.plot_losses([{"step": 1, "eval_loss": 1.0}])


def test_load_answers_checks_they_answer_these_cases(outputs):
    import pandas as pd

    from helpers.qlora import load_answers, save_status_results

    cases = [{"id": "a", "input": "Sodium : 140"}, {"id": "b", "input": "Potassium : 6"}]
    with pytest.raises(FileNotFoundError, match="notebook 05"):
        load_answers("smoke", cases)
    accuracy = pd.DataFrame({"model": ["finetuned"], "n_cases": [2], "n_values": [2], "accuracy": [0.5]})
    save_status_results(
        accuracy, pd.DataFrame(), {"base": ["x", "y"], "finetuned": ["Sodium : normal", "?"]}, cases, "smoke"
    )
    assert load_answers("smoke", cases) == ["Sodium : normal", "?"]
    assert load_answers("smoke", cases, label="base") == ["x", "y"]
    with pytest.raises(ValueError, match="ne correspond pas au cas « b »"):
        load_answers("smoke", [cases[0], {"id": "b", "input": "Potassium : 7"}])
    with pytest.raises(ValueError, match="2 réponses pour 1 cas"):
        load_answers("smoke", cases[:1])
    with pytest.raises(ValueError, match="pas de réponse « autre »"):
        load_answers("smoke", cases, label="autre")


def test_prefix_cache_generation_matches_plain_generation():
    """Le début commun calculé une fois puis recopié donne les réponses d'une génération ordinaire."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from helpers.llm import generation_tokenizer
    from helpers.models import model_path

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_path("tiny-mistral")).eval()
    tok = generation_tokenizer(AutoTokenizer.from_pretrained(model_path("tiny-mistral")))
    shared = "Consigne : dites le statut.\nSodium : 150 → élevé\nPotassium : 3,1 → bas\n"
    prompts = [shared + case for case in ("Chlore : 99", "Calcium : 2,71 mmol/L", "CRP : 3", "Urée : 12,5")]
    settings = dict(max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)

    def plain(batch):
        enc = tok(batch, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**enc, **settings)
        return tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)

    expected = runtime.in_batches(plain, prompts, 3, by_length=True)
    got = qlora.generate_with_prefix_cache(model, tok, prompts, 3, **settings)
    assert got == expected and any(got)
    assert qlora.generate_with_prefix_cache(model, tok, [], 3, **settings) == []
    with pytest.raises(ValueError, match="Taille de lot"):
        qlora.generate_with_prefix_cache(model, tok, prompts, 0, **settings)


def test_confusion_plot_titles_are_french_labels():
    import pandas as pd

    from helpers.qlora import plot_confusion

    table = pd.DataFrame([[2, 0], [1, 3]], index=["bas", "normal"], columns=["bas", "normal"])
    fig = plot_confusion({"finetuned": table, "base_few_shot": table})
    assert [ax.get_title() for ax in fig.axes] == ["fine-tuné", "base (few-shot)"]
    with pytest.raises(ValueError, match="Aucune matrice"):
        plot_confusion({})


def test_merging_into_the_dequantized_base_gives_back_the_trained_model(tmp_path):
    """La fusion du notebook 04 : dans les poids nf4 déquantifiés, le modèle fusionné calcule ce que
    calculait la base 4 bits + l'adaptateur ; dans les poids d'origine, non (mesuré au notebook 08)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from helpers.models import model_path

    model, batch = _tiny_qlora(guard=True)  # base 4 bits + LoRA dont B ≠ 0
    model.eval()
    model.save_pretrained(tmp_path / "adapter")
    with torch.no_grad():
        trained = model(**batch).logits
    path = model_path("tiny-mistral")
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)
    bnb.bnb_4bit_compute_dtype = torch.float32
    base = qlora.dequantized_base(str(path), bnb)
    assert not any("4bit" in type(m).__name__ for m in base.modules())  # plus rien de quantifié
    original = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    layer = "model.layers.0.self_attn.q_proj.weight"
    rounded, exact = base.state_dict()[layer], original.state_dict()[layer]
    assert rounded.dtype == torch.float32 and 0 < (rounded - exact).abs().max() < exact.abs().max()
    gaps = {}
    for name, weights in (("déquantifiés", base), ("origine", original)):
        merged = PeftModel.from_pretrained(weights, str(tmp_path / "adapter")).merge_and_unload().eval()
        with torch.no_grad():
            gaps[name] = (merged(**batch).logits - trained).abs().max().item()
    assert gaps["déquantifiés"] < 1e-3 < gaps["origine"], gaps
