"""La page web locale de l'assistant du notebook 08 (Gradio), lancée par ``make assistant``.

    python -m helpers.assistant_app            # profil détecté, http://127.0.0.1:7860
    python -m helpers.assistant_app --port 7861

Trois façons de donner des résultats, chacune avec son bouton : coller un CSV « Vos données », choisir
un fichier (``.csv`` ou ``.jsonl``), remplir le formulaire. La page rend le tableau des statuts (ceux
de la règle, avec ceux du modèle et le passage qui explique chaque valeur anormale), l'explication et
l'avertissement médical. Une donnée refusée s'affiche en français dans la page, avec la ligne et la
colonne ; une erreur imprévue aussi, sans trace ni chemin de la machine.

Chaque bouton est aussi une route de l'API (``/analyser_texte``, ``/analyser_fichier``,
``/analyser_formulaire``), qu'appelle ``gradio_client`` dans les tests.
"""

from __future__ import annotations

import argparse
import logging

import pandas as pd

from . import MEDICAL_DISCLAIMER

TITLE = "Assistant pédagogique : lire un bilan biologique"
EXAMPLE_CSV = """patient_id,sexe,age,analyte,valeur,unite
exemple,femme,54,Ferritine,9,µg/L
exemple,femme,54,Hémoglobine,"11,2",g/dL
exemple,femme,54,TSH,2.1,mUI/L
"""
#: Ce que montre la page avant toute analyse, et à côté de chaque réponse.
WARNING = (
    f"⚠️ **Données synthétiques, usage pédagogique.** {MEDICAL_DISCLAIMER} Les statuts affichés sont "
    "calculés par la règle (intervalles de référence du cours) ; une explication du modèle de langage "
    "qui les contredit n'est jamais montrée."
)
log = logging.getLogger(__name__)


def _empty() -> pd.DataFrame:
    from .assistant import REPLY_COLUMNS
    from .text import for_display

    return for_display(pd.DataFrame(columns=["report", *REPLY_COLUMNS]))


def analyse(helper, source: str, value) -> tuple[pd.DataFrame, str, str]:
    """Analyse ``value`` (texte collé, chemin d'un fichier ou tableau du formulaire, selon ``source``)
    avec ``helper`` (:class:`helpers.assistant.Assistant`). Renvoie ``(tableau affiché, explication
    en Markdown, message d'erreur en Markdown)`` ; jamais d'exception : une erreur devient un message."""
    from .assistant import rows_from_file, rows_from_table, rows_from_text
    from .data import DatasetValidationError
    from .text import for_display

    try:
        if source == "texte":
            rows = rows_from_text(value or "")
        elif source == "fichier":
            if not value:
                raise ValueError(
                    "Aucun fichier choisi : choisissez un fichier .csv ou .jsonl au format « Vos données »."
                )
            rows = rows_from_file(value)
        else:
            rows = rows_from_table(value if isinstance(value, pd.DataFrame) else pd.DataFrame(value))
        replies = helper.answer_rows(rows)
    except (DatasetValidationError, ValueError, UnicodeDecodeError) as err:
        return _empty(), "", f"❌ **Données refusées.** {err}"
    except Exception as err:  # imprévu : un message, pas une trace (le détail va au journal du serveur)
        log.exception("analyse impossible")
        return (
            _empty(),
            "",
            f"❌ **L'assistant n'a pas pu répondre** ({type(err).__name__}). "
            "Réessayez ; si cela persiste, signalez-le.",
        )
    table = pd.concat([r.table.assign(report=r.report_id) for r in replies], ignore_index=True)
    table = for_display(table[["report", *[c for c in table.columns if c != "report"]]])
    text = "\n\n".join(f"### Compte rendu « {r.report_id} »\n\n" + r.text.replace("\n", "  \n") for r in replies)
    return table, text, ""


def build_app(helper):
    """La page Gradio autour de ``helper`` (un :class:`helpers.assistant.Assistant`, ou tout objet
    qui a sa méthode ``answer_rows``). Renvoie le ``gr.Blocks`` ; ``.launch()`` le sert."""
    import gradio as gr

    from .assistant import RESULT_COLUMNS

    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\n\n{WARNING}", elem_id="avertissement")
        with gr.Tab("Coller des résultats"):
            text = gr.Textbox(value=EXAMPLE_CSV, lines=8, label="Résultats au format CSV « Vos données »")
            text_button = gr.Button("Analyser le texte", variant="primary", elem_id="analyser-texte")
        with gr.Tab("Choisir un fichier"):
            upload = gr.File(
                label="Fichier .csv ou .jsonl", file_types=[".csv", ".jsonl"], type="filepath", elem_id="fichier"
            )
            file_button = gr.Button("Analyser le fichier", variant="primary", elem_id="analyser-fichier")
        with gr.Tab("Remplir le formulaire"):
            form = gr.Dataframe(
                headers=list(RESULT_COLUMNS),
                value=[["", "", "", "", "", ""]] * 3,
                column_count=(len(RESULT_COLUMNS), "fixed"),
                interactive=True,
                type="pandas",
                label="Une ligne par valeur (sexe : homme ou femme)",
            )
            form_button = gr.Button("Analyser le formulaire", variant="primary", elem_id="analyser-formulaire")
        error = gr.Markdown(elem_id="erreur")
        table = gr.Dataframe(value=_empty(), label="Statuts", interactive=False, elem_id="statuts")
        explanation = gr.Markdown(elem_id="explication")
        outputs = [table, explanation, error]
        text_button.click(lambda v: analyse(helper, "texte", v), text, outputs, api_name="analyser_texte")
        file_button.click(lambda v: analyse(helper, "fichier", v), upload, outputs, api_name="analyser_fichier")
        form_button.click(lambda v: analyse(helper, "formulaire", v), form, outputs, api_name="analyser_formulaire")
    return demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.assistant_app", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=7860, help="port local (7860 par défaut)")
    parser.add_argument("--hote", default="127.0.0.1", help="adresse d'écoute (127.0.0.1 : cette machine seule)")
    args = parser.parse_args(argv)

    from . import setup_course
    from .assistant import load_assistant

    profile = setup_course("assistant (make assistant)")
    helper = load_assistant(profile)
    print(f"Assistant prêt (profil {profile.name}) : http://{args.hote}:{args.port} — Ctrl+C pour arrêter.")
    build_app(helper).launch(server_name=args.hote, server_port=args.port, share=False, show_error=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
