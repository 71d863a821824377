"""La comparaison pas à pas (helpers.stepwise) : exacte sur tous les cas du jeu, relue par le lecteur."""

import random

import pytest

from helpers import stepwise
from helpers.analytes import load_analytes
from helpers.data import load_instructions
from helpers.status import parse_statuses


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
            assert check["correct"] == check["lines"] >= 1
            assert check["reasoning_status"] == label["statut"]
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
    assert (check["lines"], check["correct"]) == (2, 1)
    assert check["reasoning_status"] == "bas"  # le raisonnement (faux) dit bas, la réponse normal
    assert stepwise.check_reasoning("Sodium : bas")["reasoning_status"] is None


def test_drills_are_reproducible_and_right():
    rows = stepwise.drills(50, seed=3)
    assert rows == stepwise.drills(50, seed=3) and len(rows) == 50
    for row in rows:
        assert stepwise.check_reasoning(row["output"])["correct"] == 1
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
        assert stepwise.check_reasoning(case["output"])["reasoning_status"] == label["statut"]
        assert parse_statuses(case["output"], case["labels"]) == {label["code"]: label["statut"]}
    short = format_prompt("Consigne.", steps[0]["input"], style="court")
    assert short == SHORT_PROMPT_FR.format(instruction="Consigne.", input=steps[0]["input"])
    assert len(short) < len(format_prompt("Consigne.", steps[0]["input"])) / 2
    minimal = format_prompt("Consigne.", steps[0]["input"], style="minimal")
    assert minimal == f"Consigne.\n{steps[0]['input']}\n" and "###" not in minimal
    with pytest.raises(ValueError, match="Format de réponse inconnu"):
        analyte_cases(reports, "raisonnement")
    with pytest.raises(ValueError, match="Style de prompt inconnu"):
        format_prompt("Consigne.", "", style="long")


def test_study_scores_reasoning_and_keeps_one_row_per_variant(tmp_path, monkeypatch):
    from helpers import llm_study
    from helpers.llm import analyte_cases
    from helpers.profiles import get_profile

    cases = analyte_cases(load_instructions(get_profile("smoke"))["validation"], "pas_a_pas")
    gold = list(cases["output"])
    assert stepwise.reasoning_scores(gold, cases) == {"reasoning_correct": 1.0, "status_follows_reasoning": 1.0}
    wrong = [text.replace("→ <", "→ >", 1) for text in gold]  # un signe faux, statut inchangé
    scores = stepwise.reasoning_scores(wrong, cases)
    assert scores["reasoning_correct"] < 1.0 and scores["status_follows_reasoning"] < 1.0
    row = {c: 0 for c in llm_study.STUDY_COLUMNS} | {"variant": "a"}
    path = tmp_path / "etude.csv"
    llm_study.save_row(row, path)
    llm_study.save_row(row | {"accuracy": 0.5}, path)
    table = llm_study.save_row(row | {"variant": "b"}, path)
    assert list(table["variant"]) == ["a", "b"] and table.set_index("variant").loc["a", "accuracy"] == 0.5
    assert llm_study.main(["inconnue"]) == 2
    assert all(spec["description"] for spec in llm_study.VARIANTS.values())
    assert llm_study.study_path().parent.name == "mesures"


def test_chat_prompt_uses_the_model_template_and_few_shot_turns():
    from transformers import AutoTokenizer

    from helpers.llm import analyte_cases, base_prompt, chat_prompt, few_shot_examples, format_prompt
    from helpers.models import model_path
    from helpers.profiles import get_profile

    tok = AutoTokenizer.from_pretrained(model_path("tiny-mistral"))
    with pytest.raises(ValueError, match="gabarit de conversation"):
        chat_prompt(tok, "Consigne.", "Sodium : 134 mmol/L")
    tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    cases = analyte_cases(load_instructions(get_profile("cpu"))["train"])
    shots = few_shot_examples(cases, seed=1)
    assert sorted(c["labels"][0]["statut"] for c in shots) == ["bas", "normal", "élevé"]
    text = chat_prompt(tok, "Consigne.", "Sodium : 134 mmol/L", shots)
    assert text.count("<|user|>") == 4 and text.count("<|assistant|>") == 4 and text.endswith("<|assistant|>")
    assert shots[0]["output"] in text
    assert text.startswith("<|system|>Consigne.") and text.count("Consigne.") == 1  # consigne dite une fois
    # Gabarit sans rôle système : la consigne ouvre le premier tour utilisateur.
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('non') }}"
        "{% endif %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    text = chat_prompt(tok, "Consigne.", "Sodium : 134 mmol/L", shots)
    assert text.startswith("<|user|>Consigne.\n\n") and text.count("Consigne.") == 1
    # Format étranger imposé (chat=False) : exemples et cas écrits à la suite, sans gabarit.
    plain = base_prompt(tok, "Consigne.", "Sodium : 134 mmol/L", shots, chat=False)
    assert "<|" not in plain and plain.endswith(format_prompt("Consigne.", "Sodium : 134 mmol/L", "court"))


def test_mistral_inst_template_renders_the_instruct_format():
    from transformers import AutoTokenizer

    from helpers.llm import MISTRAL_INST_TEMPLATE
    from helpers.models import model_path

    tok = AutoTokenizer.from_pretrained(model_path("tiny-mistral"))
    messages = [
        {"role": "system", "content": "Consigne."},
        {"role": "user", "content": "Sodium 150"},
        {"role": "assistant", "content": "élevé"},
        {"role": "user", "content": "Sodium 134"},
    ]
    text = tok.apply_chat_template(messages, chat_template=MISTRAL_INST_TEMPLATE, tokenize=False)
    assert text == "<s>[INST] Sodium 150 [/INST]élevé</s>[INST] Consigne.\n\nSodium 134 [/INST]"


def test_accuracy_gain_is_paired_and_has_an_interval():
    import pandas as pd

    from helpers.status import accuracy_gain, status_recall

    rows = []
    for i in range(60):
        expected = ("bas", "normal", "normal", "élevé")[i % 4]
        rows.append(
            {
                "model": "finetuned",
                "row": i,
                "code": "NA",
                "expected": expected,
                "predicted": expected if i % 10 else "normal",
                "correct": bool(i % 10),
            }
        )
        rows.append(
            {
                "model": "base",
                "row": i,
                "code": "NA",
                "expected": expected,
                "predicted": "normal",
                "correct": expected == "normal",
            }
        )
    scored = pd.DataFrame(rows)
    gain = accuracy_gain(scored, "finetuned", "base")
    assert gain["gain"] == pytest.approx(54 / 60 - 30 / 60)
    assert gain["ci_low"] < gain["gain"] < gain["ci_high"] and gain["ci_low"] > 0
    constant = accuracy_gain(scored, "finetuned", "constante")
    assert constant["gain"] == pytest.approx(54 / 60 - 30 / 60)  # « normal » partout : la moitié
    recall = status_recall(scored, "base")
    assert recall["normal"] == 1.0 and recall["bas"] == recall["élevé"] == 0.0


def test_stop_early_skips_the_upper_bound_once_the_value_is_low():
    analytes = load_analytes()
    low = stepwise.stepwise_case(analytes["NA"], 134, "homme", stop_early=True)
    assert low.output == "min 134 / 136 : 11= 33= 46< → <\nSodium : bas"
    high = stepwise.stepwise_case(analytes["NA"], 150, "homme", stop_early=True)
    assert high.output == stepwise.stepwise_case(analytes["NA"], 150, "homme").output
    assert high.output.splitlines()[1].startswith("max") and high.status == "élevé"
    reports = load_instructions()["validation"]
    from helpers.llm import analyte_cases

    full, short = analyte_cases(reports, "pas_a_pas"), analyte_cases(reports, "pas_a_pas_arret")
    assert full["labels"] == short["labels"] and full["input"] == short["input"]
    shorter = 0
    for case in short:
        check = stepwise.check_reasoning(case["output"])
        assert check["correct"] == check["lines"] and check["reasoning_status"] == case["labels"][0]["statut"]
        assert parse_statuses(case["output"], case["labels"]) == {
            case["labels"][0]["code"]: case["labels"][0]["statut"]
        }
    shorter = sum(len(a) < len(b) for a, b in zip(short["output"], full["output"]))
    assert shorter == sum(c["labels"][0]["statut"] == "bas" and "max" in f for c, f in zip(short, full["output"]))
    assert shorter > 0


def test_drills_with_several_pairs_and_their_mix_into_training():
    from datasets import Dataset

    from helpers.profiles import get_profile
    from helpers.training import with_drills

    rows = stepwise.drills(20, seed=2, pairs=4)
    assert all(r["instruction"] == stepwise.DRILL_INSTRUCTION for r in rows)
    for r in rows:
        pairs, lines = r["input"].splitlines(), r["output"].splitlines()
        assert len(pairs) == len(lines) == 4
        for pair, line in zip(pairs, lines):
            a, b = pair.split(" et ")
            assert line.split(" : ")[0].endswith(f"{a} / {b}") and stepwise.check_reasoning(line)["correct"] == 1
    with pytest.raises(ValueError, match="Exercices invalides"):
        stepwise.drills(3, pairs=0)
    cfg = get_profile("smoke").llm
    from dataclasses import replace

    cfg = replace(cfg, drill_examples=5, drill_pairs=2, table_drills=0, prompt_style="court")
    task = Dataset.from_list([{"prompt": f"p{i}", "completion": "c</s>"} for i in range(10)])
    mixed = with_drills(task, cfg, "</s>", seed=0)
    assert len(mixed) == 15 and sum(p.startswith("p") for p in mixed["prompt"]) == 10
    drills_seen = [c for p, c in zip(mixed["prompt"], mixed["completion"]) if not p.startswith("p")]
    assert all(c.endswith("</s>") and c.count("\n") == 1 for c in drills_seen)
    assert list(mixed["prompt"]) != sorted(mixed["prompt"], key=lambda p: not p.startswith("p"))  # mélangés


def test_parse_statuses_reads_an_unnamed_single_value_and_base_prompt_without_template():
    from transformers import AutoTokenizer

    from helpers.llm import base_prompt, format_prompt
    from helpers.models import model_path

    label = [{"code": "NA", "analyte": "Sodium"}]
    assert parse_statuses("Le résultat est bas (référence : normal).", label) == {"NA": "bas"}
    assert parse_statuses("Je ne sais pas.", label) == {"NA": None}
    assert parse_statuses("Il est bas, normal ou élevé par rapport à la référence.", label) == {"NA": None}
    assert parse_statuses("La valeur n'est pas élevée : elle est normale.", label) == {"NA": "normal"}
    two = [{"code": "NA", "analyte": "Sodium"}, {"code": "K", "analyte": "Potassium"}]
    assert parse_statuses("Le résultat est bas.", two) == {"NA": None, "K": None}  # ambigu : rien
    tok = AutoTokenizer.from_pretrained(model_path("tiny-mistral"))  # modèle de base : pas de gabarit
    shot = {"instruction": "Consigne.", "input": "Sodium : 150", "output": "Sodium : élevé"}
    text = base_prompt(tok, "Consigne.", "Sodium : 134", [shot])
    assert text == format_prompt("Consigne.", "Sodium : 150", "court") + "Sodium : élevé\n\n" + format_prompt(
        "Consigne.", "Sodium : 134", "court"
    )


def test_in_batches_by_length_groups_similar_prompts_and_keeps_order():
    from helpers.runtime import in_batches

    seen = []

    def fake(batch):
        seen.append(batch)
        return [p.upper() for p in batch]

    prompts = ["aaaa", "b", "cc", "dddddd", "e"]
    assert in_batches(fake, prompts, 2, by_length=True) == [p.upper() for p in prompts]
    assert seen == [["b", "e"], ["cc", "aaaa"], ["dddddd"]]


def test_digit_table_drills_cover_the_sign_table_in_the_reasoning_format():
    rows = stepwise.digit_table_drills(50, seed=4, pairs=20)
    assert rows == stepwise.digit_table_drills(50, seed=4, pairs=20)
    seen = set()
    for r in rows:
        pairs, out = r["input"].split(), r["output"].split()
        assert len(pairs) == len(out) == 20 and r["instruction"] == stepwise.TABLE_INSTRUCTION
        for pair, step in zip(pairs, out):
            x, y = pair
            assert step == pair + ("<" if x < y else ">" if x > y else "=")
            seen.add(pair)
    assert len(seen) >= 95  # 1 000 paires tirées : presque toute la table
    with pytest.raises(ValueError, match="Exercices invalides"):
        stepwise.digit_table_drills(1, pairs=0)


def test_short_instruction_and_length_grouping_reach_the_trainer(tmp_path):
    from dataclasses import replace

    from helpers.llm import ANALYTE_INSTRUCTION, STEPWISE_INSTRUCTION, analyte_cases
    from helpers.profiles import get_profile
    from helpers.training import qlora_datasets

    reports = load_instructions(get_profile("smoke"))["validation"]
    assert set(analyte_cases(reports)["instruction"]) == {ANALYTE_INSTRUCTION}
    assert set(analyte_cases(reports, "pas_a_pas_arret", STEPWISE_INSTRUCTION)["instruction"]) == {STEPWISE_INSTRUCTION}
    profile = get_profile("smoke")
    profile = replace(
        profile,
        llm=replace(
            profile.llm, instruction=STEPWISE_INSTRUCTION, table_drills=3, drill_examples=2, group_by_length=True
        ),
    )

    class Tok:
        eos_token = "</s>"

        def __call__(self, text, **kw):
            return {"input_ids": [0] * len(text.split())}

    train, _ = qlora_datasets(profile, Tok())
    assert sum(STEPWISE_INSTRUCTION in p for p in train["prompt"]) == len(train) - 5
    assert sum(stepwise.TABLE_INSTRUCTION in p for p in train["prompt"]) == 3


def test_trainer_groups_by_length_and_keeps_fp32_adapters_on_cpu(tmp_path):
    """Le trainer des scripts reçoit le réglage du profil, et des adaptateurs fp32 hors bf16 (TRL
    les met en bf16 : mesuré ici sur le modèle miniature)."""
    from dataclasses import replace

    import torch

    from helpers import training
    from helpers.profiles import get_profile

    profile = get_profile("smoke")
    profile = replace(profile, llm=replace(profile.llm, group_by_length=True))
    model, tokenizer, _ = training.load_qlora_model(profile, "bitsandbytes")
    train, val = training.qlora_datasets(profile, tokenizer)
    trainer = training.qlora_trainer(profile, model, tokenizer, train, val, tmp_path)
    assert trainer.args.train_sampling_strategy == "group_by_length"
    assert {p.dtype for p in trainer.model.parameters() if p.requires_grad} == {torch.float32}


@pytest.mark.parametrize(
    "change, kinds",
    [
        (lambda t: t, []),
        (lambda t: t.replace("98>", "98<"), ["signe entre deux chiffres"]),
        (lambda t: t.replace("min 091 / 080", "min 091 / 081"), ["nombres mal recopiés"]),
        (lambda t: t.replace("00= 98>", "00= 88="), ["chiffres des paires"]),
        (lambda t: t.replace("max 091 / 100 : 01< → <\n", ""), ["ligne manquante ou en trop"]),
        (lambda t: t.replace("01< → <", "01< 10> → <"), ["comparaison arrêtée trop tôt ou trop tard"]),
        (lambda t: t.replace(": normal", ": élevé"), ["statut contraire au raisonnement"]),
        (lambda t: t.replace("98> → >", "98> → <"), ["signe final", "statut contraire au raisonnement"]),
    ],
)
def test_reasoning_errors_name_what_went_wrong(change, kinds):
    gold = "min 091 / 080 : 00= 98> → >\nmax 091 / 100 : 01< → <\nVolume globulaire moyen : normal"
    assert stepwise.reasoning_errors(change(gold), gold) == kinds
    table = stepwise.error_table([change(gold)], [{"output": gold}])
    assert list(table.index) == list(stepwise.ERROR_KINDS) and int(table.sum()) == len(kinds)


def test_the_reader_accepts_stepwise_reasoning_in_a_full_report_answer():
    """Profil gpu (comptes rendus entiers) : une réponse qui raisonne pas à pas pour chaque valeur
    reste lue correctement — les lignes de raisonnement ne nomment aucun analyte."""
    analytes = load_analytes()
    reports = load_instructions()["test"]
    n = 0
    for report in reports:
        answer = "\n".join(
            stepwise.stepwise_case(analytes[lb["code"]], lb["valeur"], report["sexe"], stop_early=True).output
            for lb in report["labels"]
        )
        assert parse_statuses(answer, report["labels"]) == {lb["code"]: lb["statut"] for lb in report["labels"]}
        n += 1
    assert n >= 50


def test_the_cpu_profile_is_the_variant_chosen_on_validation():
    """Le profil cpu reprend exactement les réglages de la variante retenue par l'étude, et celle-ci
    a la meilleure exactitude de validation du tableau versionné parmi les variantes qui tiennent le
    budget de temps."""
    import pandas as pd

    from helpers import llm_study
    from helpers.profiles import get_profile

    cpu = get_profile("cpu").llm
    chosen = llm_study.VARIANTS[llm_study.CHOSEN_VARIANT]
    assert chosen["drills"] == 0
    assert {k: getattr(cpu, k) for k in chosen["llm"]} == chosen["llm"]
    table = pd.read_csv(llm_study.study_path())
    assert set(table["variant"]) <= set(llm_study.VARIANTS)
    assert llm_study.best_within_budget(table) == llm_study.CHOSEN_VARIANT
    assert llm_study.best_within_budget(table, budget_s=1e9) == table.loc[table["accuracy"].idxmax(), "variant"]
    with pytest.raises(ValueError, match="Aucune variante"):
        llm_study.best_within_budget(table, budget_s=0)
    assert table["commit"].notna().all() and table["threads"].notna().all()


def test_study_variants_do_not_inherit_the_current_cpu_profile():
    """Le profil cpu est devenu la variante retenue : les autres variantes doivent fixer chaque
    levier elles-mêmes, sinon les relancer mesurerait autre chose que leur ligne du tableau."""
    from helpers import llm_study

    levers = set(llm_study._NEUTRAL)
    for name, spec in llm_study.VARIANTS.items():
        assert levers <= set(spec["llm"]), name
    statut = llm_study.VARIANTS["statut"]["llm"]
    assert (statut["answer_format"], statut["prompt_style"], statut["max_steps"], statut["table_drills"]) == (
        "statut",
        "alpaca",
        40,
        0,
    )
