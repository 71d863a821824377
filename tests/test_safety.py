"""Sécurité du code du cours : pas de code distant exécuté, poids en safetensors, aucun envoi au hub
ni jeton affiché. Le code des notebooks est lu comme celui des helpers."""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent


def sources() -> list[tuple[str, str]]:
    """(emplacement, texte) de chaque module de helpers/ et de chaque cellule de code des notebooks."""
    out = [(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8")) for p in sorted((ROOT / "helpers").glob("*.py"))]
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        out += [(f"{nb_path.name}:{c.id}", c.source) for c in nb.cells if c.cell_type == "code"]
    return out


FORBIDDEN = {
    r"trust_remote_code\s*=\s*True": "exécute du code téléchargé depuis le hub",
    r"safe_serialization\s*=\s*False": "écrit des poids au format pickle",
    r"\btorch\.save\(": "écrit un pickle (utilisez save_pretrained / safetensors)",
    r"\bpickle\.loads?\(": "désérialise un pickle",
    r"weights_only\s*=\s*False": "charge un pickle arbitraire",
    r"\.push_to_hub\(": "envoie au hub sans option explicite",
    r"print\([^)]*\b(HF_TOKEN|HUGGING_FACE_HUB_TOKEN|hf_token|token)\b": "affiche un jeton",
}


@pytest.mark.parametrize("pattern", list(FORBIDDEN))
def test_no_unsafe_call(pattern):
    hits = [
        where
        for where, text in sources()
        for line in text.splitlines()
        if re.search(pattern, line) and not line.lstrip().startswith("#")
    ]
    assert not hits, f"{FORBIDDEN[pattern]} : {hits}"


def test_saved_models_are_safetensors(tmp_path):
    """Ce que save_pretrained écrit avec les versions épinglées : safetensors, jamais de .bin."""
    from transformers import AutoModelForCausalLM

    from helpers.models import model_path

    model = AutoModelForCausalLM.from_pretrained(str(model_path("tiny-mistral")))
    model.save_pretrained(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)


def test_the_scan_would_catch_a_leak():
    """Le motif du jeton attrape un vrai affichage, pas un tokenizer."""
    pattern = next(p for p, why in FORBIDDEN.items() if why == "affiche un jeton")
    assert re.search(pattern, 'print(os.environ["HF_TOKEN"])') and re.search(pattern, "print(token)")
    assert not re.search(pattern, "print(tokenizer.decode(x))")
