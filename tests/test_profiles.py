import os

import pytest

from helpers import runtime
from helpers.profiles import PROFILE_NAMES, ProfileError, detect_profile, get_profile


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_every_profile_holds_every_knob(name):
    p = get_profile(name)
    assert p.name == name
    dims = p.embedding.matryoshka_dims
    assert list(dims) == sorted(dims, reverse=True) and len(set(dims)) == len(dims)
    assert set(p.llm.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    text = p.describe()
    assert "matryoshka_dims" in text and "lora_r" in text and "learning_rate" in text


def test_gpu_profile_follows_the_seed_recipe():
    p = get_profile("gpu")
    assert p.embedding.model_id == "intfloat/multilingual-e5-large"
    assert p.embedding.matryoshka_dims == (1024, 768, 512, 256, 128, 64)
    assert p.embedding.learning_rate == 2e-5 and p.embedding.epochs == 1
    assert p.llm.model_id == "unsloth/mistral-7b-v0.3" and p.llm.backend == "unsloth"
    assert (p.llm.lora_r, p.llm.lora_alpha, p.llm.batch_size, p.llm.gradient_accumulation_steps) == (16, 16, 2, 4)
    assert p.llm.learning_rate == 2e-4 and p.llm.optim == "adamw_8bit" and p.llm.max_seq_length == 2048


def test_cpu_and_smoke_use_offline_models():
    from helpers.models import OFFLINE_MODELS

    for name in ("cpu", "smoke"):
        p = get_profile(name)
        assert p.embedding.model_id in OFFLINE_MODELS and p.llm.model_id in OFFLINE_MODELS
        assert p.embedding.matryoshka_dims[0] == 384  # dimension de multilingual-e5-small
    assert get_profile("smoke").llm.model_id == "tiny-mistral"


def test_unknown_profile_gives_french_error():
    with pytest.raises(ProfileError, match="Profil inconnu"):
        get_profile("tpu")


def test_env_override(clean_env):
    clean_env.setenv("COURSE_PROFILE", "smoke")
    p = detect_profile()
    assert p.name == "smoke" and "COURSE_PROFILE" in p.reason
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # hors profil gpu : bibliothèques hors ligne


def test_bad_env_override(clean_env):
    clean_env.setenv("COURSE_PROFILE", "rapide")
    with pytest.raises(ProfileError, match="COURSE_PROFILE='rapide'"):
        detect_profile()


def test_gpu_requested_without_cuda_falls_back(clean_env):
    clean_env.setenv("COURSE_PROFILE", "gpu")
    clean_env.setattr(runtime, "cuda_available", lambda: False)
    p = detect_profile()
    assert p.name == "cpu" and "aucun GPU" in p.reason


@pytest.mark.parametrize(
    "cuda,hub,expected", [(True, True, "gpu"), (True, False, "cpu"), (False, True, "cpu"), (False, False, "cpu")]
)
def test_automatic_choice(clean_env, cuda, hub, expected):
    clean_env.setattr(runtime, "cuda_available", lambda: cuda)
    clean_env.setattr(runtime, "hub_reachable", lambda timeout=2.0: hub)
    p = detect_profile()
    assert p.name == expected
    assert p.reason  # toujours une explication en français
    if cuda and not hub:
        assert "injoignable" in p.reason


def test_embedding_settings_are_consistent():
    """Dimensions décroissantes, 64 présent (objectif du cours), coûts mesurables sur chaque profil."""
    for name in ("gpu", "cpu", "smoke"):
        e = get_profile(name).embedding
        assert list(e.matryoshka_dims) == sorted(e.matryoshka_dims, reverse=True)
        assert e.latency_vectors >= (100_000 if name != "smoke" else 1_000)
        assert e.bootstrap_resamples >= 100 and e.eval_batch_size > 0
    assert 64 in get_profile("gpu").embedding.matryoshka_dims and 64 in get_profile("cpu").embedding.matryoshka_dims
    assert not get_profile("gpu").embedding.freeze_word_embeddings  # la recette d'origine, intacte
    assert get_profile("cpu").embedding.freeze_word_embeddings


def test_comparison_settings_are_consistent():
    """Bras C : le même petit modèle hors ligne sur cpu/smoke ; courbe croissante, sous le jeu complet."""
    from helpers.models import OFFLINE_MODELS

    for name in PROFILE_NAMES:
        c = get_profile(name).comparison
        assert c.full_offline_model in OFFLINE_MODELS
        assert list(c.curve_sizes) == sorted(set(c.curve_sizes)) and len(c.curve_sizes) >= 2
        assert c.full_max_steps > 0 and c.latency_queries > 0 and c.latency_prompts > 0
    assert get_profile("cpu").comparison.full_model_id == get_profile("cpu").llm.offline_model
    assert get_profile("gpu").comparison.full_model_id.startswith("HuggingFaceTB/SmolLM2")
    assert "full_max_steps" in get_profile("cpu").describe()


# --------------------------------------------------------------------------- replis matériels
from helpers.profiles import choose_precision, gpu_fit_warning  # noqa: E402


@pytest.mark.parametrize(
    "requested,cuda,bf16_ok,expected,warns",
    [
        (None, True, True, "bf16", False),
        (None, True, False, "fp16", False),
        (None, False, False, "fp32", False),
        ("bf16", True, True, "bf16", False),
        ("bf16", True, False, "fp16", True),
        ("fp16", True, False, "fp16", False),
        ("bf16", False, False, "fp32", True),
        ("fp32", True, True, "fp32", False),
    ],
)
def test_precision_choice_and_bf16_fallback(requested, cuda, bf16_ok, expected, warns):
    precision, warning = choose_precision(requested, cuda, bf16_ok)
    assert precision == expected
    assert (warning is not None) == warns
    if requested == "bf16" and cuda and not bf16_ok:
        assert "ne le gère pas" in warning and "fp16" in warning


def test_unknown_precision_is_refused():
    with pytest.raises(ProfileError, match="Précision inconnue « fp8 »"):
        choose_precision("fp8", True, True)


def test_bf16_requested_on_a_t4_gives_fp16_profile(clean_env):
    clean_env.setenv("COURSE_PRECISION", "bf16")
    clean_env.setattr(runtime, "cuda_available", lambda: True)
    clean_env.setattr(runtime, "bf16_supported", lambda: False)
    with pytest.warns(runtime.CourseFallbackWarning, match="repli sur fp16"):
        p = get_profile("gpu")
    assert p.embedding.precision == p.llm.precision == "fp16"


def test_gpu_fit_warning_is_computed_before_loading():
    gpu = get_profile("gpu")
    assert gpu_fit_warning(gpu, 15.0) is None  # un T4 de Colab suffit d'après l'estimation
    small = gpu_fit_warning(gpu, 7.0)
    assert "GPU de 7,0 Go" in small and "lot de 1 et 512 jetons" in small and "COURSE_PROFILE=cpu" in small
    tiny = gpu_fit_warning(gpu, 4.0)
    assert "lot de 1" not in tiny and "Choisissez le profil cpu" in tiny
    assert gpu_fit_warning(get_profile("cpu"), 1.0) is None  # le profil cpu ne charge pas Mistral
    assert gpu_fit_warning(gpu, None) is None


def test_small_gpu_warning_reaches_the_profile_reason(clean_env):
    clean_env.setattr(runtime, "cuda_available", lambda: True)
    clean_env.setattr(runtime, "hub_reachable", lambda timeout=2.0: True)
    clean_env.setattr(runtime, "gpu_memory_gb", lambda: 6.0)
    with pytest.warns(runtime.CourseFallbackWarning, match="COURSE_PROFILE=cpu"):
        p = detect_profile()
    assert p.name == "gpu" and "Attention : GPU de 6,0 Go" in p.reason


def test_course_save_merged_switches_the_merged_export(clean_env):
    from helpers.profiles import apply_environment

    assert not apply_environment(get_profile("gpu")).llm.save_merged
    assert apply_environment(get_profile("cpu")).llm.save_merged
    clean_env.setenv("COURSE_SAVE_MERGED", "1")
    gpu = apply_environment(get_profile("gpu"))
    assert gpu.llm.save_merged and "COURSE_SAVE_MERGED" in gpu.reason
    clean_env.setenv("COURSE_SAVE_MERGED", "0")
    assert not apply_environment(get_profile("cpu")).llm.save_merged
    clean_env.setenv("COURSE_SAVE_MERGED", "oui")
    with pytest.raises(ProfileError, match="COURSE_SAVE_MERGED : « oui » ; attendu 1"):
        apply_environment(get_profile("gpu"))
