"""Préparation de la documentation Sphinx (``make docs``), appelée par ``docs/conf.py``.

* :func:`prepare_notebooks` — copie dans ``docs/notebooks/`` la version **exécutée** de chaque
  notebook quand ``make course`` l'a produite (et qu'elle correspond au notebook du dépôt),
  sinon la version du dépôt, sans sorties ; une note en tête dit laquelle, avec le profil et la
  date. La documentation n'exécute jamais rien.
* :func:`write_results_page` — ``docs/_generated/resultats.rst`` : tableaux et figures lus dans
  ``outputs/<profil>/``, avec le profil et la date de l'exécution qui les a produits.
* :func:`check_links` — liens internes du site construit (fichiers et ancres).

    python -m helpers.docs                  # prépare (ce que fait conf.py)
    python -m helpers.docs --check docs/_build/html
"""

from __future__ import annotations

import argparse
import datetime as dt
import html.parser
import json
import shutil
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from .measures import MEASURES_DIR
from .outputs import written_path
from .paths import NOTEBOOKS_DIR, REPO_ROOT
from .text import for_display, french_int, french_typography_rst

DOCS_DIR = REPO_ROOT / "docs"
GENERATED_DIR = DOCS_DIR / "_generated"
#: Profil dont on préfère montrer les résultats : le plus proche de la recette d'origine d'abord.
PROFILE_ORDER = ("gpu", "cpu", "smoke")


def _cells(path: Path) -> list[tuple[str, str]]:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return [(c.cell_type, c.source) for c in nb.cells]


def _date(path: Path) -> str:
    return dt.datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")


def executed_copy(notebook: Path) -> tuple[Path, str] | None:
    """Copie exécutée à rendre pour ``notebook`` : ``(chemin, profil)``, ou ``None``.

    On prend le premier profil de :data:`PROFILE_ORDER` dont ``outputs/<profil>/notebooks/``
    contient une copie **aux cellules identiques** à celles du dépôt (sinon la copie est
    périmée : le notebook a changé depuis son exécution).
    """
    source = _cells(notebook)
    for profile in PROFILE_ORDER:
        copy = written_path(profile, f"notebooks/{notebook.name}")
        if copy.exists() and _cells(copy) == source:
            return copy, profile
    return None


def prepare_notebooks(dest: Path | None = None) -> list[dict]:
    """Copie les notebooks à rendre dans ``dest`` (``docs/notebooks/``) ; renvoie leur provenance."""
    import nbformat

    dest = dest or DOCS_DIR / "notebooks"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    records = []
    for notebook in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")):
        found = executed_copy(notebook)
        nb = nbformat.read(found[0] if found else notebook, as_version=4)
        if found:
            note = (
                f"*Version exécutée* par `make course`, profil **{found[1]}**, le {_date(found[0])} : "
                "les sorties ci-dessous viennent de cette exécution."
            )
        else:
            note = (
                "*Version sans sorties* (celle du dépôt) : exécutez `make course`, puis `make docs`, "
                "pour voir ici les résultats de votre machine."
            )
        cell = nbformat.v4.new_markdown_cell(f"```{{note}}\n{note}\n```")
        cell.id = "docs-provenance"
        nb.cells.insert(1, cell)
        # Cellules avec « !pip » / « %cd » : coloration IPython, pas Python pur.
        nb.metadata.setdefault("language_info", {})["pygments_lexer"] = "ipython3"
        nbformat.write(nb, dest / notebook.name)
        records.append(
            {
                "notebook": notebook.stem,
                "profile": found[1] if found else None,
                "date": _date(found[0]) if found else None,
            }
        )
    return records


# --------------------------------------------------------------------------- page des résultats
def rst_table(df: pd.DataFrame, title: str = "", decimals: int = 3) -> str:
    """Tableau reStructuredText (``list-table``) ; les flottants arrondis à ``decimals``, nombres écrits
    à la française (virgule décimale, milliers séparés par une espace fine insécable)."""
    if df.empty:
        raise ValueError(f"Tableau vide : {title or 'sans titre'}.")

    # Colonnes flottantes aux valeurs toutes entières (comptes lus avec des NaN) : sans décimales.
    whole = {c for c in df.columns if pd.api.types.is_float_dtype(df[c]) and df[c].dropna().map(float.is_integer).all()}

    def cell(v, column) -> str:  # à la française : « 0,123 », « 21 639 552 »
        if isinstance(v, float):
            if pd.isna(v):
                return ""
            return french_int(v) if column in whole else f"{v:.{decimals}f}".replace(".", ",")
        if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            return french_int(v)
        return str(v).replace("\n", " ")

    lines = [f".. list-table:: {title}".rstrip(), "   :header-rows: 1", ""]
    columns = list(df.columns)
    for row in [columns, *df.itertuples(index=False)]:
        cells = [cell(v, c) if row is not columns else str(v) for v, c in zip(row, columns)]
        lines.append("   * - " + cells[0])
        lines.extend("     - " + c for c in cells[1:])
    return "\n".join(lines) + "\n"


#: (clé du registre :data:`helpers.outputs.OUTPUTS`, titre, colonnes gardées ou None) — tableaux
#: montrés s'ils existent.
RESULT_TABLES = (
    ("embeddings/ndcg.csv", "NDCG@10, MRR@10 et rappel@10 par dimension (notebook 02)", None),
    ("embeddings/bootstrap_gains.csv", "Gains du fine-tuning et intervalles bootstrap (notebook 03)", None),
    (
        "embeddings/ecart_dimensions.csv",
        "Rétention : NDCG@10 à 64 dimensions contre pleine dimension, écart et intervalle bootstrap (notebook 03)",
        None,
    ),
    (
        "embeddings/rescoring_echelle.csv",
        "Binaire et rescoring dans un index grossi de distracteurs (notebook 03)",
        None,
    ),
    ("llm/status_accuracy.csv", "Exactitude des statuts sur les cas de test (notebook 05)", None),
    (
        "comparison/comparison.csv",
        "Les trois approches côte à côte (notebook 06)",
        [
            "arm",
            "approach",
            "trainable_params",
            "examples_seen",
            "train_seconds",
            "own_memory_mb",
            "artifact_mb",
            "latency_ms",
            "ndcg_at_10",
            "accuracy_at_1",
            "ndcg_natural",
            "ndcg_natural_base",
            "status_accuracy",
            "status_accuracy_low",
            "status_accuracy_high",
            "eval_loss",
        ],
    ),
    (
        "comparison/memoire_par_bras.csv",
        "Mémoire de chaque bras, mesurée dans un processus à part (notebook 06)",
        None,
    ),
    (
        "comparison/oubli.csv",
        "Oubli : questions générales (intervalles de Wilson) et perte sur du français courant (notebook 06)",
        None,
    ),
    (
        "comparison/oubli_ecarts.csv",
        "Oubli : écarts appariés au modèle de départ et intervalles bootstrap (notebook 06)",
        None,
    ),
    ("case_study/rag_taux_de_succes.csv", "Recherche des passages : taux de succès (notebook 07)", None),
    ("case_study/statuts_avec_sans_contexte.csv", "Statuts avec et sans contexte (notebook 07)", None),
    ("case_study/detection_changements.csv", "Changements significatifs : précision et rappel (notebook 07)", None),
    (
        "assistant/bornes.csv",
        "L'assistant sur des valeurs près des bornes, contre le test, et la réponse constante (notebook 08)",
        None,
    ),
    (
        "assistant/modele_fusionne.csv",
        "L'assistant servi par la base 4 bits et l'adaptateur, puis par le modèle fusionné exporté (notebook 08)",
        None,
    ),
    ("assistant/couts_index.csv", "Index de l'assistant : réglage choisi contre pleine dimension (notebook 08)", None),
)
#: (clé du registre, légende)
RESULT_FIGURES = (
    ("embeddings/ndcg_par_dimension.png", "NDCG@10 par dimension Matryoshka, base et fine-tuné"),
    ("embeddings/compromis_octets_ndcg.png", "Compromis taille d'index / qualité"),
    ("llm/pertes_entrainement.png", "Pertes d'entraînement et de validation du QLoRA"),
    ("llm/confusion_statuts.png", "Statuts attendus et lus, base et fine-tuné"),
    ("comparison/couts_des_trois_bras.png", "Coûts mesurés des trois approches"),
    ("comparison/courbe_apprentissage.png", "Courbe d'apprentissage des embeddings"),
    ("comparison/pertes_par_exemple.png", "Pertes de B et C en fonction des exemples vus"),
    ("case_study/erreurs_prevision.png", "Erreur de prévision de la dernière visite"),
    ("assistant/latences.png", "Latence de l'assistant, compte rendu par compte rendu (notebook 08)"),
)


def results_profile() -> str | None:
    """Premier profil de :data:`PROFILE_ORDER` qui a des résultats dans ``outputs/``."""
    for profile in PROFILE_ORDER:
        if any(written_path(profile, key).exists() for key, *_ in RESULT_TABLES):
            return profile
    return None


def write_results_page(dest: Path | None = None) -> Path:
    """Écrit ``_generated/resultats.rst`` (inclus par ``resultats.rst``) et y copie les figures."""
    dest = dest or GENERATED_DIR / "resultats.rst"
    dest.parent.mkdir(parents=True, exist_ok=True)
    profile = results_profile()
    if profile is None:
        dest.write_text(
            ".. note::\n\n   Aucun résultat dans ``outputs/`` : exécutez ``make course`` puis "
            "``make docs`` pour remplir cette page avec les mesures de votre machine.\n",
            encoding="utf-8",
        )
        return dest
    figures = dest.parent / "figures"
    if figures.exists():
        shutil.rmtree(figures)
    figures.mkdir()
    parts = [
        f".. note::\n\n   Résultats du profil **{profile}**, lus dans ``outputs/{profile}/`` ; chaque tableau "
        "et chaque figure indique la date de l'exécution qui l'a produit.\n"
    ]
    for key, title, columns in RESULT_TABLES:
        path = written_path(profile, key)
        if not path.exists():
            continue
        df = pd.read_csv(path)
        if columns:
            df = df[[c for c in columns if c in df.columns]]
        parts.append(
            rst_table(for_display(df), title) + f"\nSource : ``outputs/{profile}/{key}``, écrit le {_date(path)}.\n"
        )
    for key, caption in RESULT_FIGURES:
        path = written_path(profile, key)
        if not path.exists():
            continue
        copy = key.replace("/", "_")
        shutil.copy2(path, figures / copy)
        parts.append(
            f".. figure:: /_generated/figures/{copy}\n   :width: 100%\n\n   {caption} — profil {profile}, "
            f"{_date(path)}.\n"
        )
    dest.write_text(french_typography_rst("\n".join(parts)), encoding="utf-8")
    return dest


def write_gpu_check_page(dest: Path | None = None, measures: Path | None = None) -> Path:
    """Écrit ``_generated/gpu_check.rst`` (inclus par ``gpu.rst``) : une section par exécution de
    ``python -m helpers.gpu_check`` enregistrée dans ``docs/mesures/gpu_check_*.json`` (date, GPU,
    commit, tableau PASS / FAIL / SKIP et durées, tels que le contrôle les a écrits)."""
    from .gpu_check import rst_table as check_table

    dest = dest or GENERATED_DIR / "gpu_check.rst"
    dest.parent.mkdir(parents=True, exist_ok=True)
    records = sorted((measures or MEASURES_DIR).glob("gpu_check_*.json"))
    if not records:
        dest.write_text(".. note::\n\n   Aucune exécution du contrôle GPU enregistrée.\n", encoding="utf-8")
        return dest
    parts = []
    for path in records:
        run = json.loads(path.read_text(encoding="utf-8"))
        results = run["results"]
        passed = sum(r["status"] == "PASS" for r in results)
        title = f"{run['date']} — {run['gpu'].split(',')[0]} — commit {run.get('commit', 'inconnu')}"
        parts.append(f"{title}\n{'~' * len(title)}\n")
        parts.append(
            f"{passed} étapes réussies sur {len(results)}, en {run['seconds']:.0f} s au total "
            f"(étapes en parallèle). {run.get('note', '')} Source : ``docs/mesures/{path.name}``.\n"
        )
        parts.append(check_table(results) + "\n")
        failed = [r for r in results if r["status"] == "FAIL"]
        for r in failed:
            parts.append(f"* ``{r['step_key']}`` : {r.get('detail', '')}\n")
        env = next((r.get("environment") for r in results if r.get("environment")), None)
        if env:
            versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())
            parts.append(
                f"Environnement : capacité de calcul {env.get('capability')}, bf16 matériel : "
                f"{'oui' if env.get('bf16_hardware') else 'non'}, précision choisie : "
                f"{env.get('profile_precision')} ; import d'Unsloth : {env.get('import_unsloth_s')} s ; "
                f"{versions}.\n"
            )
    dest.write_text(french_typography_rst("\n".join(parts)), encoding="utf-8")
    return dest


def write_durations_page(dest: Path | None = None, path: Path | None = None) -> Path:
    """Écrit ``_generated/durees.rst`` (inclus par ``durees.rst``) : la durée et le pic mémoire de
    chaque notebook sur chaque profil, lus dans ``docs/mesures/durees.csv``
    (:mod:`helpers.durations`), avec la date, le commit et les threads de chaque mesure."""
    from .durations import PROFILE_ORDER, format_seconds, load_durations, measures_by_profile, where_4bit
    from .text import french_int

    dest = dest or GENERATED_DIR / "durees.rst"
    dest.parent.mkdir(parents=True, exist_ok=True)
    table = load_durations(path)
    if table.empty:
        dest.write_text(".. note::\n\n   Aucune durée enregistrée : lancez ``make course``.\n", encoding="utf-8")
        return dest
    names = {nb.name[:2]: nb.stem for nb in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))}
    lines = [
        ".. list-table:: Durée et pic mémoire du noyau, mesurés par ``make course``",
        "   :header-rows: 1",
        "",
        "   * - Notebook",
        *[f"     - {p}" for p in PROFILE_ORDER],
    ]

    def describe(r) -> str:
        memory = f", {french_int(r['peak_rss_mb'])} Mo" if pd.notna(r["peak_rss_mb"]) else ""
        where = f"{r['date']}, commit {r['commit']}, {where_4bit(r)}"
        return f"{format_seconds(r['seconds'])}{memory} ({where})"

    for prefix in sorted(set(table["notebook"]) | set(names)):
        lines.append(f"   * - ``{names.get(prefix, prefix)}``")
        lines.extend(f"     - {text}" for text in measures_by_profile(table, prefix, describe))
    lines += budget_lines(table)
    dest.write_text(french_typography_rst("\n".join(lines) + "\n"), encoding="utf-8")
    return dest


def budget_lines(table: pd.DataFrame) -> list[str]:
    """Un tableau reStructuredText : les objectifs de durée du bilan de ``make course``
    (:data:`helpers.report.TIME_BUDGETS`, profil ``cpu``) face aux durées du tableau des mesures,
    paire par paire. Une paire n'est jugée que si ses deux notebooks ont été mesurés au même commit
    (même machine, même exécution) ; sinon la case le dit."""
    from .durations import format_seconds
    from .report import TIME_BUDGETS
    from .text import french_int

    cpu = table[table["profile"] == "cpu"].set_index("notebook")
    lines = [
        "",
        ".. list-table:: Objectifs de durée du bilan de ``make course`` (profil cpu, 2 cœurs), "
        "face aux mesures ci-dessus",
        "   :header-rows: 1",
        "",
        "   * - Notebooks",
        "     - Objectif",
        "     - Mesuré",
        "     - Tenu ?",
    ]
    for pair, budget in TIME_BUDGETS.items():
        limit = format_seconds(budget["seconds"])
        if not set(pair) <= set(cpu.index):
            measured, kept = "pas encore mesuré", "—"
        elif cpu.loc[list(pair), "commit"].nunique() > 1:
            measured, kept = "mesures de commits différents : non additionnées", "—"
        else:
            seconds = float(cpu.loc[list(pair), "seconds"].sum())
            measured = f"{format_seconds(seconds)} ({french_int(seconds)} s, commit {cpu.loc[pair[0], 'commit']})"
            kept = "oui" if seconds <= budget["seconds"] else "non"
        lines += [f"   * - {' + '.join(pair)}", f"     - {limit}", f"     - {measured}", f"     - {kept}"]
    return lines


def write_outputs_page(dest: Path | None = None) -> Path:
    """Écrit ``_generated/sorties.rst`` : le registre des sorties (:data:`helpers.outputs.OUTPUTS`),
    une ligne par fichier ou dossier, avec le notebook qui l'écrit et s'il est relu ailleurs."""
    from .outputs import OUTPUTS

    dest = dest or GENERATED_DIR / "sorties.rst"
    dest.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "chemin sous outputs/<profil>/": key + ("/" if out.is_dir else ""),
            "écrit par": out.notebook,
            "contenu": out.description,
            "relu ailleurs": "oui" if out.reread else "",
        }
        for key, out in OUTPUTS.items()
    ]
    table = rst_table(pd.DataFrame(rows), "Les sorties du cours (registre helpers.outputs.OUTPUTS)")
    dest.write_text(french_typography_rst(table), encoding="utf-8")
    return dest


def write_platforms_page(dest: Path | None = None, path: Path | None = None) -> Path:
    """Écrit ``_generated/plateformes.rst`` (inclus par ``installation.rst``) : pour chaque système,
    Python et torch de Colab, si les versions épinglées se résolvent (:mod:`helpers.platforms`)."""
    from .platforms import load_platforms, platforms_page

    dest = dest or GENERATED_DIR / "plateformes.rst"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(platforms_page(load_platforms(path)), encoding="utf-8")
    return dest


def prepare() -> dict:
    """Tout ce que la construction attend : notebooks à rendre, pages des résultats et des sorties,
    contrôle GPU, durées, plateformes."""
    GENERATED_DIR.mkdir(parents=True, exist_ok=True)
    records = prepare_notebooks()
    write_results_page()
    write_outputs_page()
    write_gpu_check_page()
    write_durations_page()
    write_platforms_page()
    (GENERATED_DIR / "provenance.json").write_text(json.dumps(records, ensure_ascii=False, indent=2), encoding="utf-8")
    return {"notebooks": records, "profil_resultats": results_profile()}


# --------------------------------------------------------------------------- liens internes
class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        for key in ("href", "src"):
            if attrs.get(key):
                self.links.append(attrs[key])


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


def check_links(html_dir: Path | str) -> list[str]:
    """Liens internes cassés du site construit : ``fichier.html → cible (raison)``.

    Les liens externes (http, mailto…) ne sont pas suivis : ce contrôle tient hors ligne.
    """
    html_dir = Path(html_dir)
    # _static/ contient des gabarits du thème (macros Jinja), pas des pages du site.
    pages = sorted(p for p in html_dir.rglob("*.html") if "_static" not in p.relative_to(html_dir).parts)
    if not pages:
        raise FileNotFoundError(f"Aucune page HTML dans {html_dir} : construisez d'abord la documentation.")
    parsed: dict[Path, _Links] = {}

    def parse(path: Path) -> _Links:  # chaque page n'est lue qu'une fois
        if path not in parsed:
            parsed[path] = _parse(path)
        return parsed[path]

    problems = []
    for page in pages:
        info = parse(page)
        for link in info.links:
            url = urlparse(link)
            if url.scheme or link.startswith("//") or link.startswith("javascript:"):
                continue
            target = page if not url.path else (page.parent / unquote(url.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            rel = page.relative_to(html_dir)
            if not target.exists():
                problems.append(f"{rel} → {link} (fichier absent)")
                continue
            if url.fragment and target.suffix == ".html":
                ids = parse(target).ids
                if unquote(url.fragment) not in ids:
                    problems.append(f"{rel} → {link} (ancre absente)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.docs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", metavar="HTML_DIR", help="vérifie les liens internes du site construit")
    args = parser.parse_args(argv)
    if args.check:
        problems = check_links(args.check)
        for p in problems:
            print("Lien cassé :", p, file=sys.stderr)
        print(f"Liens internes vérifiés dans {args.check} : {len(problems)} problème(s).")
        return 1 if problems else 0
    info = prepare()
    for r in info["notebooks"]:
        state = f"exécuté ({r['profile']}, {r['date']})" if r["profile"] else "sans sorties"
        print(f"{r['notebook']} : {state}")
    print("Résultats :", info["profil_resultats"] or "aucun")
    return 0


if __name__ == "__main__":
    sys.exit(main())
