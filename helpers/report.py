"""Bilan chiffré d'une exécution du cours : qualité et coût, comparés aux objectifs.

``python -m helpers.report [--profile cpu]`` relit ``outputs/<profil>/`` (scores des notebooks,
``run_summary.json`` de ``make course``) et imprime, pour chaque objectif, la mesure et
« atteint » ou « NON atteint ». ``make course`` l'imprime à la fin. Rien n'est recalculé ni
supposé : une mesure absente est signalée comme telle.
"""
from __future__ import annotations

import argparse
import json
import sys

from .paths import outputs_root

#: Objectifs de coût des notebooks 02 + 03 sur le profil cpu (2 cœurs).
EMBEDDING_BUDGET = {"secondes": 8 * 60, "pic_rss_mo": 6 * 1024}


def _run_summary(profile_name: str) -> dict | None:
    path = outputs_root() / profile_name / "run_summary.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def embedding_report(profile_name: str) -> list[str]:
    """Lignes du bilan des notebooks 02–03 (qualité sur les splits de test, temps, mémoire)."""
    from .embeddings import MissingResultsError, check_targets, load_results, results_table

    lines = [f"Embeddings Matryoshka — profil {profile_name}"]
    try:
        scores, _ = load_results(profile_name)
    except MissingResultsError as err:
        return lines + [f"  pas de résultats : {err}"]
    for split in ("test_questions", "test_analytes"):
        table = results_table(scores, split)
        lines.append(f"  {split} — NDCG@10 par dimension (base → fine-tuné) :")
        for row in table.itertuples():
            lines.append(f"    {row.Dimension:>5}  {row[2]:.4f} → {row[3]:.4f}  ({row.Gain:+.4f})")
    for row in check_targets(scores).itertuples():
        state = "atteint" if row.atteint else "NON atteint"
        lines.append(f"  [{state}] {row.split} : {row.critère} — {row.mesure}")
    summary = _run_summary(profile_name)
    runs = {r["notebook"][:2]: r for r in (summary or {}).get("notebooks", [])}
    if {"02", "03"} <= set(runs) and all(runs[k]["statut"] == "ok" for k in ("02", "03")):
        seconds = runs["02"]["secondes"] + runs["03"]["secondes"]
        peak = max(runs["02"]["pic_rss_noyau_mo"], runs["03"]["pic_rss_noyau_mo"])
        for label, value, budget, unit in (
                ("durée 02 + 03", seconds, EMBEDDING_BUDGET["secondes"], "s"),
                ("pic mémoire (noyau)", peak, EMBEDDING_BUDGET["pic_rss_mo"], "Mo")):
            state = "atteint" if value <= budget else "NON atteint"
            lines.append(f"  [{state}] {label} : {value:.0f} {unit} (objectif ≤ {budget} {unit}, "
                         f"mesuré par make course le {summary['date']})")
    else:
        lines.append("  durée et mémoire : pas d'exécution complète de 02 et 03 par make course "
                     "dans run_summary.json")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.report", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None, help="profil dont relire les résultats (défaut : détecté)")
    args = parser.parse_args(argv)
    if args.profile is None:
        from .profiles import detect_profile

        args.profile = detect_profile().name
    print("\n".join(embedding_report(args.profile)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
