"""Les mesures versionnées du cours, dans ``docs/mesures/`` : durées des notebooks
(:mod:`helpers.durations`), études de réglage des notebooks 02 et 04 (:mod:`helpers.embedding_study`,
:mod:`helpers.llm_study`), contrôles GPU. Chaque ligne porte son commit, sa date et ses threads ;
les CSV sont relus par les notebooks et la documentation.

Couche de base : la ligne de commande commune des études et la mise à jour de leurs CSV.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from .paths import REPO_ROOT

#: Dossier des mesures versionnées (relues par les notebooks et la documentation).
MEASURES_DIR = REPO_ROOT / "docs" / "mesures"


def replace_variant_rows(rows: pd.DataFrame, path, columns: list[str]) -> pd.DataFrame:
    """Remplace, dans le CSV d'une étude, les lignes des variantes de ``rows`` par ``rows`` (colonnes
    ``columns``, dans cet ordre) ; commun à cette étude et à :mod:`helpers.embedding_study`."""
    table = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=columns)
    table = pd.concat([table[~table["variant"].isin(set(rows["variant"]))], rows], ignore_index=True)
    table.reindex(columns=columns).to_csv(path, index=False)
    return table


def study_main(argv: list[str] | None, *, prog: str, description: str, variants: dict, run) -> int:
    """Ligne de commande commune aux études (celle-ci et :mod:`helpers.embedding_study`) : ``--liste``,
    refus d'une variante inconnue (code 2), puis ``run(nom)`` pour chaque variante demandée (toutes
    par défaut), hors ligne."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("variantes", nargs="*", help="variantes à exécuter (par défaut : toutes)")
    parser.add_argument("--liste", action="store_true")
    args = parser.parse_args(argv)
    if args.liste:
        width = max(map(len, variants)) + 1
        for name, spec in variants.items():
            print(f"{name:<{width}}{spec['description']}")
        return 0
    unknown = set(args.variantes) - set(variants)
    if unknown:
        print(f"Variante(s) inconnue(s) : {', '.join(sorted(unknown))}.", file=sys.stderr)
        return 2
    from .runtime import go_offline

    go_offline()
    for name in args.variantes or list(variants):
        run(name)
    return 0
