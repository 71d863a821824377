"""Contrôle des notebooks exécutés par nbval (``make test``, profil smoke).

nbval (``--nbval-lax``) vérifie qu'aucune cellule n'échoue, pas ce qu'elle montre. Ce crochet fait
aussi échouer une cellule qui affiche du texte sur la sortie d'erreur (un avertissement de
bibliothèque) ou un chemin de la machine : ce qu'un élève lirait dans sa copie exécutée
(:func:`helpers.course.output_problems`). Il ne touche pas aux autres tests.
"""

import pytest


def ends_with_semicolon(source: str) -> bool:
    """La cellule finit-elle par « ; » ? Jupyter (JupyterLab, Colab, make course) n'affiche alors pas
    son résultat. nbval exécute les cellules sans les inscrire dans l'historique d'IPython, où IPython
    lit ce « ; » : sous nbval, le résultat apparaît quand même, sans qu'un élève le voie jamais."""
    import tokenize

    from IPython.core.displayhook import DisplayHook

    try:
        return DisplayHook.semicolon_at_end_of_expression(source)
    except (SyntaxError, tokenize.TokenError):  # ce que tokenize ne lit pas : pas de « ; » final sûr
        return False


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield  # une cellule en erreur s'arrête ici, avec l'erreur de nbval
    outputs = getattr(item, "test_outputs", None)  # posé par nbval sur chaque cellule exécutée
    if outputs is not None:
        from helpers.course import output_problems

        if ends_with_semicolon(item.cell.source):  # Jupyter n'afficherait pas ce résultat
            outputs = [out for out in outputs if out.get("output_type") != "execute_result"]
        problems = output_problems(outputs)
        if problems:
            source = "\n".join(item.cell.source.splitlines()[:3])
            raise AssertionError(
                f"{item.name} montre à l'élève ce qu'il ne devrait pas voir :\n  "
                + "\n  ".join(problems)
                + f"\nDébut de la cellule :\n{source}"
            )
    return result
