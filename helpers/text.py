"""Le texte français que lit l'étudiant : nombres et typographie.

* :func:`french_float` — virgule décimale (« 0,902 ») pour les nombres affichés ;
* :func:`french_typography` — espaces insécables avant « : ; ? ! » et à l'intérieur des guillemets
  « », hors du code (``…``), des formules ($…$), des liens et des blocs de code ;
* :func:`typography_issues` — ce qui reste à corriger dans un texte (le test des notebooks s'en sert).

Les fichiers que relit du code (CSV, JSON) gardent le point décimal et les espaces ordinaires.
"""
from __future__ import annotations

import re

NBSP = "\u00a0"
#: Ce qui ne se touche pas : blocs de code, code en ligne, formules, cibles de liens et d'images.
_PROTECTED = re.compile(r"```.*?```|`[^`\n]*`|\$\$.*?\$\$|\$[^$\n]*\$|\]\([^)\s]*\)|<[^>\n]*>", re.S)
#: Une espace ordinaire là où le français veut une insécable.
_BEFORE = re.compile(r" (?=[:;?!](?:\s|$|[)»*_.,]))")
_AFTER_OPENING = re.compile(r"« ")
_BEFORE_CLOSING = re.compile(r" »")


def french_float(x: float) -> str:
    """Un nombre à virgule tel qu'on l'écrit en français : virgule décimale, six chiffres
    significatifs au plus, sans zéros inutiles (``0.9021`` → « 0,9021 », ``293.5`` → « 293,5 »)."""
    return f"{x:.6g}".replace(".", ",")


def _unprotected(text: str):
    """Les morceaux de ``text`` hors zones protégées, avec leur position : ``(début, morceau)``."""
    start = 0
    for match in _PROTECTED.finditer(text):
        yield start, text[start:match.start()], match.group(0)
        start = match.end()
    yield start, text[start:], ""


def french_typography(text: str) -> str:
    """``text`` avec des espaces insécables avant « : ; ? ! », après « « » et avant « » », sauf
    dans le code, les formules et les liens (Markdown)."""
    out = []
    for _, free, protected in _unprotected(text):
        free = _BEFORE.sub(NBSP, free)
        free = _AFTER_OPENING.sub("«" + NBSP, free)
        free = _BEFORE_CLOSING.sub(NBSP + "»", free)
        out.append(free + protected)
    return "".join(out)


def typography_issues(text: str, context: int = 25) -> list[str]:
    """Les passages de ``text`` (hors code, formules et liens) où une espace ordinaire se trouve là
    où le français veut une insécable ; liste vide si tout est juste."""
    issues = []
    for start, free, _ in _unprotected(text):
        for pattern in (_BEFORE, _AFTER_OPENING, _BEFORE_CLOSING):
            for match in pattern.finditer(free):
                at = start + match.start()
                issues.append(text[max(0, at - context): at + context].replace("\n", " "))
    return issues


def fix_notebook(path) -> int:
    """Applique :func:`french_typography` aux cellules Markdown d'un notebook ; renvoie le nombre de
    cellules modifiées. Le reste du fichier (code, identifiants, métadonnées) est intact."""
    import json
    from pathlib import Path

    path = Path(path)
    notebook = json.loads(path.read_text(encoding="utf-8"))
    changed = 0
    for cell in notebook["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        before = "".join(cell["source"])
        after = french_typography(before)
        if after != before:
            cell["source"] = after.splitlines(keepends=True)
            changed += 1
    if changed:
        path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m helpers.text",
                                     description="Typographie française des cellules Markdown des notebooks.")
    parser.add_argument("--fix", nargs="+", metavar="NOTEBOOK", required=True, help="notebooks à corriger")
    args = parser.parse_args(argv)
    for name in args.fix:
        print(f"{name} : {fix_notebook(name)} cellule(s) corrigée(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
