"""Le chemin GPU du cours, vérifié sur CPU : chaque défaut trouvé par la première exécution sur GPU
(issue 15) a ici un test qui échouait avant sa correction.

1. rechargement du 02 en précision mixte ; 2. fp16 + bitsandbytes (GradScaler) ; 3. dtype passé à
Unsloth ; 4. bf16 « émulé » sur T4 ; 5. repli sans hub et ses dimensions ; 6. avertissement
max_length à chaque lot ; 7. Unsloth choisi avant sentence-transformers.
"""

import json
import os
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import runtime
from helpers.paths import NOTEBOOKS_DIR, REPO_ROOT


# --------------------------------------------------------------------------- 4. bf16 sur T4
class FakeCuda:
    """``torch.cuda`` d'une carte donnée : ``is_bf16_supported`` compte l'émulation par défaut,
    comme torch le fait (un T4 répond donc « oui »)."""

    def __init__(self, capability):
        self.capability = capability

    def is_available(self):
        return True

    def get_device_capability(self, index=0):
        return self.capability

    def is_bf16_supported(self, including_emulation=True):
        return self.capability[0] >= 8 or including_emulation


@pytest.mark.parametrize("capability,native", [((7, 5), False), ((7, 0), False), ((8, 0), True), ((9, 0), True)])
def test_bf16_needs_real_hardware_support(monkeypatch, capability, native):
    fake = FakeCuda(capability)
    monkeypatch.setattr(torch, "cuda", fake)
    monkeypatch.setattr(torch.version, "hip", None, raising=False)
    assert fake.is_bf16_supported() is True  # ce que répondait l'ancien test, même sur un T4
    assert runtime.bf16_supported() is native


def test_t4_gets_fp16_in_the_gpu_profile(monkeypatch):
    from helpers.profiles import get_profile

    monkeypatch.delenv("COURSE_PRECISION", raising=False)
    monkeypatch.setattr(torch, "cuda", FakeCuda((7, 5)))
    monkeypatch.setattr(torch.version, "hip", None, raising=False)
    profile = get_profile("gpu")
    assert profile.llm.precision == profile.embedding.precision == "fp16"
    monkeypatch.setattr(torch, "cuda", FakeCuda((8, 0)))
    assert get_profile("gpu").llm.precision == "bf16"


# --------------------------------------------------------------------------- 3. dtype passé à Unsloth
class FakeFastLanguageModel:
    calls: list = []

    @classmethod
    def from_pretrained(cls, **kwargs):
        cls.calls.append(kwargs)
        return FakeModel(), types.SimpleNamespace(eos_token="</s>")

    @classmethod
    def get_peft_model(cls, model, **kwargs):
        return model

    @classmethod
    def for_inference(cls, model):
        return model


class FakeModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.generation_config = types.SimpleNamespace(max_length=32768)


@pytest.fixture
def fake_unsloth(monkeypatch):
    module = types.ModuleType("unsloth")
    module.FastLanguageModel = FakeFastLanguageModel
    FakeFastLanguageModel.calls = []
    monkeypatch.setitem(sys.modules, "unsloth", module)
    monkeypatch.setattr(runtime, "cuda_available", lambda: True)
    return FakeFastLanguageModel


@pytest.mark.parametrize("precision,dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_training_passes_the_profile_dtype_to_unsloth(fake_unsloth, precision, dtype):
    from helpers.profiles import get_profile
    from helpers.training import load_qlora_model

    profile = get_profile("smoke")
    profile = replace(profile, llm=replace(profile.llm, backend="unsloth", precision=precision))
    load_qlora_model(profile, "unsloth")
    assert fake_unsloth.calls[-1]["dtype"] == dtype  # dtype=None laissait Unsloth choisir bf16


def test_reloading_for_inference_passes_the_dtype_and_quiets_max_length(fake_unsloth, outputs):
    from helpers.profiles import get_profile
    from helpers.qlora import adapter_dir, load_finetuned_llm

    profile = get_profile("smoke")
    profile = replace(profile, llm=replace(profile.llm, backend="unsloth", precision="fp16"))
    adapter_dir(profile.name).mkdir(parents=True)
    (adapter_dir(profile.name) / "adapter_config.json").write_text("{}")
    model, _ = load_finetuned_llm(profile)
    assert fake_unsloth.calls[-1]["dtype"] == torch.float16
    assert model.generation_config.max_length is None


def test_notebooks_pass_a_dtype_to_unsloth():
    for name in ("04_qlora_mistral_unsloth.ipynb", "05_inference_mistral.ipynb"):
        code = _code(NOTEBOOKS_DIR / name)
        assert "FastLanguageModel.from_pretrained(" in code and "dtype=None" not in code, name


# --------------------------------------------------------------------------- 2. fp16 + GradScaler
def _adapter_dtypes(model):
    return {p.dtype for p in model.parameters() if p.requires_grad}


@pytest.mark.parametrize("precision,expected", [("fp16", {torch.float32}), ("fp32", {torch.float32})])
def test_fp16_trainer_keeps_fp32_adapters(smoke, tmp_path, precision, expected):
    """TRL met les adaptateurs d'un modèle quantifié en bf16 ; en fp16, le GradScaler ne sait pas
    les « déséchelonner » (erreur au premier pas sur un T4) : ils doivent rester en fp32. En fp32
    (CPU) aussi : des adaptateurs bf16 arrondiraient chaque mise à jour."""
    from helpers.training import load_qlora_model, qlora_datasets, qlora_trainer

    profile = replace(smoke, llm=replace(smoke.llm, precision=precision))
    model, tokenizer, _ = load_qlora_model(profile, "bitsandbytes")
    train, val = qlora_datasets(profile, tokenizer)
    trainer = qlora_trainer(profile, model, tokenizer, train, val, tmp_path, max_steps=1)
    assert _adapter_dtypes(trainer.model) == expected


def test_upcast_adapters_touches_only_trainable_weights():
    from helpers.llm import upcast_adapters

    layer = torch.nn.Linear(4, 4).to(torch.bfloat16)
    frozen = torch.nn.Linear(4, 4).to(torch.bfloat16).requires_grad_(False)
    model = torch.nn.Sequential(layer, frozen)
    assert upcast_adapters(model) == 2  # poids et biais de la couche entraînable
    assert layer.weight.dtype == torch.float32 and frozen.weight.dtype == torch.bfloat16
    assert upcast_adapters(model) == 0


# --------------------------------------------------------------------------- 1. rechargement du 02
@pytest.mark.parametrize("precision,tol", [("fp32", 1e-5), ("fp16", 2**-10), ("bf16", 2**-7)])
def test_reload_tolerance_is_the_epsilon_of_the_compute_format(precision, tol):
    from helpers.embeddings import reload_tolerance

    assert reload_tolerance(precision) == pytest.approx(tol)
    with pytest.raises(ValueError, match="Précision inconnue"):
        reload_tolerance("int8")


def test_bf16_trained_model_reloads_with_same_weights_within_tolerance(smoke, tmp_path):
    """Après un entraînement en bf16 (possible sur CPU), le modèle en mémoire calcule encore sous
    autocast : l'ancienne tolérance fixe de 1e-5 échoue, la comparaison du notebook réussit."""
    from sentence_transformers import SentenceTransformer

    from helpers import training
    from helpers.data import load_retrieval
    from helpers.embeddings import reload_tolerance, same_weights, training_pairs

    profile = replace(smoke, embedding=replace(smoke.embedding, precision="bf16", train_pairs=16))
    retrieval = load_retrieval(profile)
    pairs = training_pairs(retrieval["train"], retrieval["corpus"])
    model = training.train_embeddings(profile, pairs, tmp_path / "ckpt", max_steps=2)["model"]
    model.save_pretrained(str(tmp_path / "m"))
    reloaded = SentenceTransformer(str(tmp_path / "m"))
    probe = ["Que signifie une ferritine basse ?"]
    gap = np.abs(reloaded.encode_query(probe) - model.encode_query(probe)).max()
    assert same_weights(model, reloaded)
    assert gap > 1e-5, "l'écart de précision mixte a disparu : la tolérance n'est plus justifiée"
    assert gap <= reload_tolerance("bf16")


def test_same_weights_sees_a_changed_weight(smoke):
    from helpers.models import load_sentence_transformer

    a = load_sentence_transformer(smoke.embedding.model_id, smoke.embedding.offline_model)
    b = load_sentence_transformer(smoke.embedding.model_id, smoke.embedding.offline_model)
    from helpers.embeddings import same_weights

    assert same_weights(a, b)
    with torch.no_grad():
        next(p for p in b.parameters()).view(-1)[0] += 1e-3
    assert not same_weights(a, b)


# --------------------------------------------------------------------------- 5. repli sans hub
def test_gpu_profile_without_hub_uses_the_fallback_dims(clean_env):
    from helpers.profiles import detect_profile

    clean_env.setenv("COURSE_PROFILE", "gpu")
    clean_env.setattr(runtime, "cuda_available", lambda: True)
    clean_env.setattr(runtime, "hub_reachable", lambda timeout=2.0: False)
    profile = detect_profile()
    assert profile.name == "gpu"
    assert profile.embedding.model_id == "multilingual-e5-small"
    assert profile.embedding.matryoshka_dims == (384, 256, 128, 64, 32)  # pas 1024…64
    assert profile.llm.model_id == "smollm2-135m-instruct"
    assert "injoignable" in profile.reason and "384" in profile.reason


def test_gpu_profile_with_hub_keeps_e5_large(clean_env):
    from helpers.profiles import detect_profile

    clean_env.setenv("COURSE_PROFILE", "gpu")
    clean_env.setattr(runtime, "cuda_available", lambda: True)
    clean_env.setattr(runtime, "hub_reachable", lambda timeout=2.0: True)
    profile = detect_profile()
    assert profile.embedding.model_id == "intfloat/multilingual-e5-large"
    assert profile.embedding.matryoshka_dims[0] == 1024


def test_a_fallback_loaded_midway_brings_its_dims(smoke, capsys):
    """Hub joignable au choix du profil, puis coupé au chargement : e5-small arrive avec des
    dimensions 1024…64 demandées ; il apporte les siennes au lieu d'une DimensionError."""
    from helpers.embeddings import DimensionError, check_dims, matryoshka_dims
    from helpers.models import load_sentence_transformer

    model = load_sentence_transformer("multilingual-e5-small", "multilingual-e5-small")
    gpu_like = replace(smoke.embedding, matryoshka_dims=(1024, 768, 512, 256, 128, 64))
    with pytest.raises(DimensionError):
        check_dims(gpu_like.matryoshka_dims, 384)
    assert matryoshka_dims(gpu_like, model) == (384, 256, 128, 64, 32)
    assert "repli" in capsys.readouterr().out
    model.course_offline_name = None  # un modèle choisi, pas un repli : l'erreur reste
    with pytest.raises(DimensionError):
        matryoshka_dims(gpu_like, model)


# --------------------------------------------------------------------------- 6. max_length
def test_quiet_max_length_removes_the_per_batch_warning(smoke):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from helpers.llm import quiet_max_length
    from helpers.models import model_path

    path = model_path("tiny-mistral")
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    model.generation_config.max_length = 4096  # ce qu'Unsloth inscrit
    inputs = tok(["Sodium : 134 mmol/L"], return_tensors="pt")
    warnings = []
    handler = _ListHandler(warnings)
    hf_logging.get_logger("transformers.generation.utils").addHandler(handler)
    try:
        model.generate(**inputs, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
        assert any("seem to have been set" in w for w in warnings)
        warnings.clear()
        assert quiet_max_length(model) == 1
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    finally:
        hf_logging.get_logger("transformers.generation.utils").removeHandler(handler)
    assert not any("seem to have been set" in w for w in warnings)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3  # max_new_tokens décide toujours


class _ListHandler:
    level = 0

    def __init__(self, sink):
        self.sink = sink

    def handle(self, record):
        self.sink.append(record.getMessage())

    emit = handle


# --------------------------------------------------------------------------- 7. ordre des imports
def _code(path: Path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def _cells_until_backend(path: Path) -> str:
    """Le code des cellules qui précèdent le choix du moteur, jusqu'à lui inclus (sans la cellule
    Colab ni les commandes IPython)."""
    cells = [
        ("".join(c["source"]))
        for c in json.loads(path.read_text(encoding="utf-8"))["cells"]
        if c["cell_type"] == "code"
    ][1:]
    kept = []
    for source in cells:
        lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
        for i, line in enumerate(lines):
            if "select_backend(" in line and "import" not in line:
                return "\n".join(kept + lines[:i])
        kept += lines
    raise AssertionError(f"{path.name} : aucun appel à select_backend")


@pytest.mark.parametrize(
    "name",
    [
        "04_qlora_mistral_unsloth.ipynb",
        "05_inference_mistral.ipynb",
        "06_embeddings_vs_modele_complet.ipynb",
        "07_cas_etude_analyses_sang.ipynb",
    ],
)
def test_backend_is_chosen_before_transformers_is_imported(name):
    code = _cells_until_backend(NOTEBOOKS_DIR / name)
    check = code + (
        "\nimport sys\nloaded = [m for m in ('transformers', 'sentence_transformers', 'trl', 'peft') "
        "if m in sys.modules]\nassert not loaded, loaded\n"
    )
    env = {**os.environ, "COURSE_PROFILE": "smoke", "PYTHONPATH": str(REPO_ROOT)}
    res = subprocess.run(
        [sys.executable, "-c", check], cwd=NOTEBOOKS_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-1500:]


# --------------------------------------------------------------------------- variables du profil
def test_environment_points_the_profile_at_local_models_and_caps_samples(clean_env, tmp_path):
    from helpers.profiles import detect_profile

    folder = tmp_path / "mon-e5"
    folder.mkdir()
    (folder / "modules.json").write_text("[]")
    (folder / "config.json").write_text(json.dumps({"hidden_size": 512}))
    clean_env.setenv("COURSE_PROFILE", "smoke")
    clean_env.setenv("COURSE_EMBEDDING_MODEL", str(folder))
    clean_env.setenv("COURSE_LLM_MODEL", "tiny-mistral-7b")
    clean_env.setenv("COURSE_TRAIN_SAMPLES", "10")
    clean_env.setenv("COURSE_EVAL_SAMPLES", "2")
    p = detect_profile()
    assert p.embedding.model_id == str(folder.resolve())
    assert p.embedding.matryoshka_dims == (512, 384, 128, 32)  # dimension du dossier, puis celles du profil
    assert (p.llm.model_id, p.llm.offline_model) == ("tiny-mistral-7b", "tiny-mistral-7b")
    assert (p.embedding.train_pairs, p.embedding.eval_queries, p.llm.train_examples, p.llm.eval_examples) == (
        10,
        2,
        10,
        2,
    )
    assert "COURSE_LLM_MODEL" in p.reason


def test_environment_rejects_a_missing_folder_and_bad_numbers(clean_env):
    from helpers.profiles import ProfileError, detect_profile

    clean_env.setenv("COURSE_PROFILE", "smoke")
    clean_env.setenv("COURSE_LLM_MODEL", "./introuvable")
    with pytest.raises(ProfileError, match="COURSE_LLM_MODEL.*introuvable"):
        detect_profile()
    clean_env.delenv("COURSE_LLM_MODEL")
    clean_env.setenv("COURSE_TRAIN_SAMPLES", "beaucoup")
    with pytest.raises(ProfileError, match="COURSE_TRAIN_SAMPLES"):
        detect_profile()


def test_gpu_stand_ins_keep_the_gpu_shapes(tmp_path, monkeypatch):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoConfig

    from helpers.models import OFFLINE_MODELS, model_path

    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    e5 = SentenceTransformer(str(model_path("tiny-e5-large", quiet=True)))
    assert e5.get_embedding_dimension() == 1024 and e5.prompts["query"] == "query: "
    assert OFFLINE_MODELS["tiny-e5-large"].matryoshka_dims == (1024, 768, 512, 256, 128, 64)
    config = AutoConfig.from_pretrained(model_path("tiny-mistral-7b", quiet=True))
    assert config.max_position_embeddings == 32768 and config.sliding_window is None


def test_gpu_check_reports_missing_requirements(tmp_path):
    from helpers.gpu_check import missing_requirements

    req = tmp_path / "requirements-gpu.txt"
    req.write_text(
        "# commentaire\nnumpy>=1\nfaiss-cpu==1.15.1\nsentence-transformers[train]==6.2.0\n"
        "paquet-qui-n-existe-pas==1.0\n",
        encoding="utf-8",
    )
    assert missing_requirements(req) == ["paquet-qui-n-existe-pas"]
