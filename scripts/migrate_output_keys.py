"""Migration ponctuelle : colonnes CSV et clés JSON des sorties, du français vers l'anglais.

Depuis la réorganisation (issue 19), tout ce que le code relit (``outputs/<profil>/``,
``docs/mesures/``) a des clés anglaises en ``snake_case`` ; les étiquettes françaises ne sont
posées qu'à l'affichage (``helpers.text.for_display``). Ce script renomme, sur place, les clés des
sorties écrites avant ce changement, pour qu'elles restent lisibles sans refaire ``make course`` :

    python scripts/migrate_output_keys.py outputs/cpu docs/mesures

Il ne touche ni aux modèles enregistrés (dossiers avec ``config.json``, ``adapter_config.json`` ou
``tokenizer.json``), ni aux checkpoints, ni aux copies exécutées des notebooks. Une seconde
exécution ne change plus rien. Les formats d'entrée (jeu de données, « Vos données ») ne changent
pas : ce sont des formats documentés, en français.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

#: Ancienne clé → nouvelle clé, partout dans les sorties.
RENAMED = {
    "bras": "arm",
    "approche": "approach",
    "modele": "model",
    "modèle": "model",
    "parametres_entraines": "trainable_params",
    "parametres_total": "total_params",
    "exemples_vus": "examples_seen",
    "secondes_entrainement": "train_seconds",
    "pic_rss_mo": "peak_rss_mb",
    "pic_gpu_mo": "peak_gpu_mb",
    "memoire_propre_mo": "own_memory_mb",
    "taille_artefact_mo": "artifact_mb",
    "latence_ms": "latency_ms",
    "ndcg_naturel": "ndcg_natural",
    "ndcg_naturel_base": "ndcg_natural_base",
    "exactitude_statuts": "status_accuracy",
    "exactitude_statuts_bas": "status_accuracy_low",
    "exactitude_statuts_haut": "status_accuracy_high",
    "perte_validation": "eval_loss",
    "paires": "pairs",
    "mesure": "measure",
    "pas": "steps",
    "depart_mo": "start_mb",
    "chargement_mo": "load_mb",
    "pic_mo": "peak_mb",
    "propre_au_bras_mo": "own_mb",
    "questions_fr_bas": "questions_fr_low",
    "questions_fr_haut": "questions_fr_high",
    "questions_en_bas": "questions_en_low",
    "questions_en_haut": "questions_en_high",
    "perte_francais_courant": "fluent_french_loss",
    "depart": "baseline",
    "depart_valeur": "baseline_value",
    "bras_valeur": "arm_value",
    "ecart": "gap",
    "bas": "low",
    "haut": "high",
    "langue": "language",
    "reponse": "answer",
    "famille": "family",
    "vue": "view",
    "lignes": "rows",
    "vrais_positifs": "true_positives",
    "faux_positifs": "false_positives",
    "manques": "misses",
    "rappel": "recall",
    "derniere_valeur": "last_value",
    "tendance_lineaire": "linear_trend",
    "lissage_exponentiel": "exponential_smoothing",
    "requête": "query_kind",
    "hit@1": "hit_at_1",
    "hit@3": "hit_at_3",
    "hit@1_ic_bas": "hit_at_1_low",
    "hit@1_ic_haut": "hit_at_1_high",
    "requetes": "queries",
    "ic_bas": "ci_low",
    "ic_haut": "ci_high",
    "significatif": "significant",
    "dim_pleine": "full_dim",
    "ndcg_pleine": "ndcg_full",
    "vecteurs": "vectors",
    "octets_par_vecteur": "bytes_per_vector",
    "octets_theoriques": "theoretical_bytes",
    "précision": "precision",
    "Mo_par_million": "mb_per_million",
    "candidats": "candidates",
    "part_index_pct": "index_share_pct",
    "Dimension": "dim",
    "Score initial": "base_score",
    "Score final": "final_score",
    "Gain": "gain",
    "Gain (%)": "gain_pct",
    "variante": "variant",
    "exactitude": "accuracy",
    "rappel_bas": "recall_low",
    "rappel_normal": "recall_normal",
    "rappel_eleve": "recall_high",
    "introuvables": "unparsed",
    "raisonnement_juste": "reasoning_correct",
    "statut_suit_raisonnement": "status_follows_reasoning",
    "valeurs": "values",
    "exercices": "drills",
    "secondes_generation": "generation_seconds",
    "attendu": "expected",
    "predit": "predicted",
    "profil": "profile",
    "secondes": "seconds",
    "ndcg_fine_tune": "ndcg_finetuned",
    "compte_rendu": "report",
    "resume": "summary",
    "controle_ton": "tone_check",
    "controle_statuts": "status_check",
    "titre": "title",
    "valeur": "value",
    "statut_labo": "lab_status",
    "statut_modele": "model_status",
    "rss_bibliotheques_mo": "libraries_rss_mb",
    "rss_modele_charge_mo": "loaded_model_rss_mb",
    "pic_rss_par_pas_mo": "peak_rss_per_step_mb",
    "pic_rss_premier_pas_mo": "first_step_peak_rss_mb",
    "pic_gpu_reserve_mo": "peak_gpu_reserved_mb",
    "pic_gpu_alloue_mo": "peak_gpu_allocated_mb",
    "moteur": "backend",
    "methode": "method",
    "integrite_splits": "split_integrity",
    "analytes_de_test": "test_analytes",
    "comptes_rendus": "reports",
    "reglages": "settings",
    "raison": "reason",
    "statut": "status",
    "erreur": "error",
    "copie_executee": "executed_copy",
    "pic_rss_noyau_mo": "kernel_peak_rss_mb",
    "paires_entrainement": "train_pairs",
    "parametres": "params",
    "parametres_stockes": "stored_params",
    "source_modele": "model_source",
    "empreinte_modele_mo": "model_footprint_mb",
    "exemples_entrainement": "train_examples",
    "exemples_validation": "eval_examples",
    "historique": "history",
    "memoire_apres_chargement": "memory_after_load",
    "memoire_apres_entrainement": "memory_after_training",
    "memoire_par_format": "memory_by_format",
    "mo": "mb",
    "rapport_fp32": "fp32_ratio",
    "taille_adaptateur_mo": "adapter_mb",
    "taille_base_mo": "base_mb",
    "perte_validation_base": "eval_loss_base",
    "perte_validation_finetune": "eval_loss_finetuned",
    "reprise_depuis": "resumed_from",
    "lot_global": "global_batch",
    "lot_par_processus": "per_process_batch",
    "entrainement": "training",
    "echantillons": "samples",
    "resultats": "results",
    "etape": "step_key",
    "verifie": "checks",
    "nom": "name",
    "cellule": "cell",
    "avertissements": "warnings",
    "environnement": "environment",
    "capacite": "capability",
    "bf16_avec_emulation": "bf16_emulated",
    "bf16_materiel": "bf16_hardware",
    "precision_profil": "profile_precision",
    "transformers_avant_unsloth": "transformers_before_unsloth",
}
#: Valeurs de cellules CSV qui nomment une clé (colonne « mesure » de ``comparison/oubli_ecarts.csv``).
VALUES = {"perte_francais_courant": "fluent_french_loss"}
#: Clés dont le contenu est un dictionnaire de noms qui ne sont pas des clés du cours (paquets).
OPAQUE = {"versions"}
#: Un dossier qui contient l'un de ces fichiers est un modèle enregistré : on n'y touche pas.
MODEL_MARKERS = ("config.json", "adapter_config.json", "tokenizer.json")


def rename(value):
    """``value`` (JSON décodé) avec ses clés renommées, récursivement."""
    if isinstance(value, dict):
        return {RENAMED.get(k, k): (v if k in OPAQUE else rename(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [rename(v) for v in value]
    return value


def _skipped(path: Path, root: Path) -> bool:
    """Fichier d'un checkpoint ou d'un modèle enregistré (sous ``root``)."""
    inside = [p for p in path.parents if p == root or root in p.parents]
    return any(p.name.startswith("checkpoint") for p in inside) or any(
        (p / m).is_file() for p in inside for m in MODEL_MARKERS
    )


def migrate_file(path: Path) -> bool:
    """Renomme les clés d'un CSV (en-tête) ou d'un JSON. Renvoie ``True`` si le fichier a changé."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        new = json.dumps(rename(json.loads(text)), ensure_ascii=False, indent=2) + ("\n" if text.endswith("\n") else "")
        if json.loads(new) == json.loads(text):
            return False
    elif path.suffix == ".csv":
        first, sep, rest = text.partition("\n")
        header = next(csv.reader([first]), [])
        if not any(c in RENAMED for c in header):
            return False
        for old, new in VALUES.items():  # des valeurs qui sont elles-mêmes des clés (oubli_ecarts.csv)
            rest = rest.replace(f",{old},", f",{new},")
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow([RENAMED.get(c, c) for c in header])
        new = out.getvalue() + sep + rest  # seul l'en-tête change : les valeurs restent à l'octet près
    else:
        return False
    path.write_text(new, encoding="utf-8")
    return True


def migrate(root: Path) -> list[Path]:
    """Migre tous les CSV et JSON sous ``root`` (hors modèles et checkpoints) ; renvoie les fichiers changés."""
    if not root.is_dir():
        raise FileNotFoundError(f"Dossier introuvable : {root}")
    changed = []
    for path in sorted(root.rglob("*")):
        if path.suffix in (".csv", ".json") and path.is_file() and not _skipped(path, root):
            if migrate_file(path):
                changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dossiers", nargs="+", type=Path, help="par exemple outputs/cpu docs/mesures")
    args = parser.parse_args(argv)
    for root in args.dossiers:
        changed = migrate(root)
        print(f"{root} : {len(changed)} fichier(s) migré(s).")
        for path in changed:
            print(f"  {path.relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
