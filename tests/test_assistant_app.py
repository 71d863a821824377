"""La page web de l'assistant (notebook 08) : la fonction d'analyse, l'API par son client, et la
page elle-même dans un vrai navigateur sans écran (Chromium du système, piloté par selenium)."""

import os
import shutil
import socket
from pathlib import Path

import pandas as pd
import pytest

from helpers import MEDICAL_DISCLAIMER, assistant, assistant_app
from helpers.data import load_retrieval

GOOD = assistant_app.EXAMPLE_CSV
BAD = "patient_id,sexe,age,analyte,valeur,unite\np1,femme,40,Licorne,3,g/L\n"


@pytest.fixture(scope="module")
def helper():
    """Un vrai assistant (modèle d'embeddings du profil smoke, index float32) dont le « modèle de
    langage » répond « normal » partout : les valeurs anormales sont donc signalées."""
    from helpers.models import load_sentence_transformer
    from helpers.profiles import get_profile

    corpus = [p for p in load_retrieval()["corpus"] if p["code"] in ("FERRITINE", "HB", "TSH")]
    embedder = load_sentence_transformer("multilingual-e5-small", "multilingual-e5-small")
    index = assistant.PassageIndex.build(embedder, corpus, assistant.RetrievalChoice("plein", 384, "float32"))

    def always_normal(prompts):
        return ["Ferritine : normal\nHémoglobine : normal\nTSH : normal"] * len(prompts)

    return assistant.Assistant(get_profile("smoke"), embedder, index, corpus, always_normal)


def test_analyse_shows_statuses_explanation_and_disclaimer(helper, tmp_path):
    table, text, error = assistant_app.analyse(helper, "texte", GOOD)
    assert error == "" and list(table["statut (règle)"]) == ["bas", "bas", "normal"]
    assert "compte rendu" in table.columns and "passage" in table.columns  # étiquettes françaises
    assert list(table["concordant"]) == ["non", "non", "oui"]
    assert "Réponse du modèle de langage retenue" in text and MEDICAL_DISCLAIMER in text
    path = tmp_path / "mes_resultats.csv"
    path.write_text(GOOD, encoding="utf-8")
    assert assistant_app.analyse(helper, "fichier", str(path))[0].equals(table)
    form = pd.DataFrame([["p2", "homme", "60", "TSH", "2", "mUI/L"], [""] * 6], columns=assistant.RESULT_COLUMNS)
    table, text, error = assistant_app.analyse(helper, "formulaire", form)
    assert error == "" and list(table["statut (règle)"]) == ["normal"] and MEDICAL_DISCLAIMER in text


def test_analyse_turns_every_error_into_a_french_message(helper, tmp_path):
    path = tmp_path / "erreurs.csv"
    path.write_text(BAD, encoding="utf-8")
    table, text, error = assistant_app.analyse(helper, "fichier", str(path))
    assert table.empty and text == ""
    assert error.startswith("❌ **Données refusées.** erreurs.csv, ligne 2, colonne « analyte » : analyte inconnu")
    assert str(tmp_path) not in error  # aucun chemin de la machine
    assert "Aucun fichier choisi" in assistant_app.analyse(helper, "fichier", None)[2]
    assert "Rien à analyser" in assistant_app.analyse(helper, "texte", "")[2]

    class Broken:
        def answer_rows(self, rows):
            raise RuntimeError("/chemin/secret : panne")

    error = assistant_app.analyse(Broken(), "texte", GOOD)[2]
    assert "n'a pas pu répondre** (RuntimeError)" in error and "/chemin" not in error and "Traceback" not in error


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(helper):
    """La page servie sur un port libre de 127.0.0.1, le temps des tests du module."""
    demo = assistant_app.build_app(helper)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_the_api_answers_through_its_client(served, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(served, verbose=False)
    table, text, error = client.predict(GOOD, api_name="/analyser_texte")
    assert error == "" and MEDICAL_DISCLAIMER in text
    assert table["headers"][:3] == ["compte rendu", "code", "analyte"] and len(table["data"]) == 3
    path = tmp_path / "erreurs.csv"
    path.write_text(BAD, encoding="utf-8")
    _, _, error = client.predict(handle_file(str(path)), api_name="/analyser_fichier")
    assert "ligne 2, colonne « analyte »" in error


def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        message = "Chromium et chromedriver absents (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message + " : make test les installe en CI.")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,2000",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.mark.integration
def test_the_page_in_a_real_browser(served, tmp_path):
    """Un rapport soumis, le tableau des statuts et l'avertissement visibles ; un mauvais fichier
    affiche son erreur en français dans la page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _browser()
    try:
        browser.get(served)
        wait = WebDriverWait(browser, 60)
        wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, "#analyser-texte"))).click()
        wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#statuts"), "statut (règle)"))
        wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#explication"), "Ferritine : 9"))
        page = browser.find_element(By.TAG_NAME, "body").text
        assert "Avertissement" in page and "avis médical" in page
        browser.save_screenshot(str(Path(os.environ.get("ASSISTANT_SCREENSHOT", tmp_path / "page.png"))))

        bad = tmp_path / "mauvais.csv"
        bad.write_text(BAD, encoding="utf-8")
        browser.find_element(By.XPATH, "//button[@role='tab' and contains(., 'Choisir un fichier')]").click()
        picker = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#fichier input[type=file]")))
        browser.execute_script("arguments[0].style.display = 'block';", picker)  # champ caché par Gradio
        picker.send_keys(str(bad))
        wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, "#analyser-fichier"))).click()
        wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#erreur"), "mauvais.csv, ligne 2"))
        error = browser.find_element(By.CSS_SELECTOR, "#erreur").text
        assert "analyte inconnu « Licorne »" in error and "Traceback" not in browser.page_source
    finally:
        browser.quit()
