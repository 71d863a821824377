"""La comparaison pas à pas (helpers.stepwise) : exacte sur tous les cas du jeu, relue par le lecteur."""
import random

import pytest

from helpers import stepwise
from helpers.analytes import load_analytes
from helpers.data import load_instructions
from helpers.llm import parse_statuses


def test_aligned_numbers_share_width_and_decimals():
    assert stepwise.aligned([91, 80, 100], 0) == ["091", "080", "100"]
    assert stepwise.aligned([4.2, 3.5, 5.1], 1) == ["4,2", "3,5", "5,1"]
    assert stepwise.aligned([0.45, 12], 2) == ["00,45", "12,00"]
    with pytest.raises(ValueError, match="négatives"):
        stepwise.aligned([-1, 2], 0)


def test_example_of_the_lesson():
    assert stepwise.comparison_line("min", "091", "080") == "min 091 / 080 : 00= 98> → >"
    assert stepwise.comparison_line("max", "091", "100") == "max 091 / 100 : 01< → <"
    assert stepwise.digit_steps("5,10", "5,10") == ("55= 11= 00=", "=")
    with pytest.raises(ValueError, match="non alignés"):
        stepwise.digit_steps("91", "080")


def test_digit_steps_agree_with_arithmetic_on_random_pairs():
    rng = random.Random(0)
    for _ in range(2000):
        a, b = stepwise.drill_pair(rng)
        _, sign = stepwise.digit_steps(a, b)
        x, y = float(a.replace(",", ".")), float(b.replace(",", "."))
        assert sign == ("<" if x < y else ">" if x > y else "="), (a, b)


def test_every_test_value_gets_the_status_of_its_reference_range():
    analytes = load_analytes()
    reports = load_instructions()["test"]
    n = 0
    for report in reports:
        for label in report["labels"]:
            case = stepwise.stepwise_case(analytes[label["code"]], label["valeur"], report["sexe"])
            assert case.status == label["statut"], (label, case)
            check = stepwise.check_reasoning(case.output)
            assert check["justes"] == check["lignes"] >= 1
            assert check["statut_du_raisonnement"] == label["statut"]
            n += 1
    assert n > 200


def test_the_course_reader_reads_only_the_status_line():
    analytes = load_analytes()
    na = analytes["NA"]
    case = stepwise.stepwise_case(na, 134, "homme")
    assert case.input == "Sodium : 134 mmol/L (référence : 136 à 145 mmol/L)"
    assert case.output.splitlines()[-1] == "Sodium : bas"
    assert parse_statuses(case.output, [{"code": "NA", "analyte": "Sodium"}]) == {"NA": "bas"}


def test_check_reasoning_sees_a_wrong_sign_and_a_status_that_does_not_follow():
    text = "min 091 / 080 : 00= 98< → <\nmax 091 / 100 : 01< → <\nVolume globulaire moyen : normal"
    check = stepwise.check_reasoning(text)
    assert (check["lignes"], check["justes"]) == (2, 1)
    assert check["statut_du_raisonnement"] == "bas"  # le raisonnement (faux) dit bas, la réponse normal
    assert stepwise.check_reasoning("Sodium : bas")["statut_du_raisonnement"] is None


def test_drills_are_reproducible_and_right():
    rows = stepwise.drills(50, seed=3)
    assert rows == stepwise.drills(50, seed=3) and len(rows) == 50
    for row in rows:
        assert stepwise.check_reasoning(row["output"])["justes"] == 1
    equal = sum(row["output"].endswith("→ =") for row in stepwise.drills(1000, seed=1))
    assert 50 <= equal <= 160  # environ une fois sur dix


def test_analyte_cases_in_the_stepwise_format_and_the_short_prompt():
    from helpers.llm import SHORT_PROMPT_FR, analyte_cases, format_prompt
    from helpers.profiles import get_profile

    reports = load_instructions(get_profile("smoke"))["validation"]
    plain, steps = analyte_cases(reports), analyte_cases(reports, "pas_a_pas")
    assert len(plain) == len(steps) and plain["labels"] == steps["labels"]
    for case in steps:
        label = case["labels"][0]
        assert stepwise.check_reasoning(case["output"])["statut_du_raisonnement"] == label["statut"]
        assert parse_statuses(case["output"], case["labels"]) == {label["code"]: label["statut"]}
    short = format_prompt("Consigne.", steps[0]["input"], style="court")
    assert short == SHORT_PROMPT_FR.format(instruction="Consigne.", input=steps[0]["input"])
    assert len(short) < len(format_prompt("Consigne.", steps[0]["input"])) / 2
    with pytest.raises(ValueError, match="Format de réponse inconnu"):
        analyte_cases(reports, "raisonnement")
    with pytest.raises(ValueError, match="Style de prompt inconnu"):
        format_prompt("Consigne.", "", style="long")


def test_study_scores_reasoning_and_keeps_one_row_per_variant(tmp_path, monkeypatch):
    from helpers import llm_study
    from helpers.llm import analyte_cases
    from helpers.profiles import get_profile

    monkeypatch.setenv("COURSE_OUTPUTS_DIR", str(tmp_path))
    cases = analyte_cases(load_instructions(get_profile("smoke"))["validation"], "pas_a_pas")
    gold = list(cases["output"])
    assert llm_study.reasoning_scores(gold, cases) == {"raisonnement_juste": 1.0, "statut_suit_raisonnement": 1.0}
    wrong = [text.replace("→ <", "→ >", 1) for text in gold]  # un signe faux, statut inchangé
    scores = llm_study.reasoning_scores(wrong, cases)
    assert scores["raisonnement_juste"] < 1.0 and scores["statut_suit_raisonnement"] < 1.0
    row = {c: 0 for c in llm_study.STUDY_COLUMNS} | {"variante": "a"}
    llm_study.save_row(row)
    llm_study.save_row(row | {"exactitude": 0.5})
    table = llm_study.save_row(row | {"variante": "b"})
    assert list(table["variante"]) == ["a", "b"] and table.set_index("variante").loc["a", "exactitude"] == 0.5
    assert llm_study.main(["inconnue"]) == 2


def test_chat_prompt_uses_the_model_template_and_few_shot_turns():
    from transformers import AutoTokenizer

    from helpers.llm import analyte_cases, chat_prompt, few_shot_examples
    from helpers.models import model_path
    from helpers.profiles import get_profile

    tok = AutoTokenizer.from_pretrained(model_path("tiny-mistral"))
    with pytest.raises(ValueError, match="gabarit de conversation"):
        chat_prompt(tok, "Consigne.", "Sodium : 134 mmol/L")
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    cases = analyte_cases(load_instructions(get_profile("cpu"))["train"])
    shots = few_shot_examples(cases, seed=1)
    assert sorted(c["labels"][0]["statut"] for c in shots) == ["bas", "normal", "élevé"]
    text = chat_prompt(tok, "Consigne.", "Sodium : 134 mmol/L", shots)
    assert text.count("<|user|>") == 4 and text.count("<|assistant|>") == 4 and text.endswith("<|assistant|>")
    assert shots[0]["output"] in text


def test_accuracy_gain_is_paired_and_has_an_interval():
    import pandas as pd

    from helpers.llm import accuracy_gain, status_recall

    rows = []
    for i in range(60):
        expected = ("bas", "normal", "normal", "élevé")[i % 4]
        rows.append({"model": "finetuned", "row": i, "code": "NA", "attendu": expected,
                     "predit": expected if i % 10 else "normal", "correct": bool(i % 10)})
        rows.append({"model": "base", "row": i, "code": "NA", "attendu": expected, "predit": "normal",
                     "correct": expected == "normal"})
    scored = pd.DataFrame(rows)
    gain = accuracy_gain(scored, "finetuned", "base")
    assert gain["gain"] == pytest.approx(54 / 60 - 30 / 60)
    assert gain["ic_bas"] < gain["gain"] < gain["ic_haut"] and gain["ic_bas"] > 0
    constant = accuracy_gain(scored, "finetuned", "constante")
    assert constant["gain"] == pytest.approx(54 / 60 - 30 / 60)  # « normal » partout : la moitié
    recall = status_recall(scored, "base")
    assert recall["normal"] == 1.0 and recall["bas"] == recall["élevé"] == 0.0
