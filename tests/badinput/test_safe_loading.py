"""Safe loading and secrets: the pickle opt-in warns what it allows, and a database password
never appears in what skiptune prints or stores.

(That nothing is unpickled without ``--trust-pickle``, with a payload that would write a
file, is in the corpus: ``pickle-that-runs-code`` and ``raw-pickle-that-runs-code``.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from skiptune import cli
from tests.forked import Command, run_command, run_commands
from tests.tuner.helpers import DEMO, pg_schema, require_postgres

SECRET = "SECRETPW"
TINY = ("--nfe", "3", "--rungs", "16,32", "--trials", "1", "--device", "cpu")


@pytest.mark.parametrize(("app", "argv"), [(cli.search_app, []), (cli.app, ["sample"])],
                         ids=["skiptune-search", "skiptune-sample"])
def test_the_pickle_opt_in_says_why_it_is_dangerous(app: object, argv: list[str]) -> None:
    result = CliRunner().invoke(app, [*argv, "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "--trust-pickle" in text
    assert "DANGEROUS: unpickling runs whatever code the file carries" in text
    assert "only for files from a source you trust" in text


@pytest.mark.slow
def test_a_postgresql_password_is_never_printed_nor_stored(tmp_path: Path) -> None:
    require_postgres()
    import psycopg

    with pg_schema() as url:
        # The local server trusts its clients and ignores the password: it only has to travel.
        secret_url = url.replace("://postgres@", f"://postgres:{SECRET}@")
        assert SECRET in secret_url
        schema = url.rsplit("search_path%3D", 1)[1]
        search = ("search", "--model", str(DEMO), *TINY)
        searched = run_command(Command((*search, "--db", secret_url), tmp_path))
        assert searched.returncode == 0, searched.stderr
        read = run_commands([Command((command, "--db", secret_url), tmp_path)
                             for command in ("studies", "best", "front")])
        assert all(r.returncode == 0 for r in read), [r.stderr for r in read]
        # An error that names the database names it masked.
        refused = run_command(Command((*search, "--seed", "1", "--db", secret_url), tmp_path))
        assert refused.returncode == 1 and "postgres:***@127.0.0.1" in refused.stderr
        for result in (searched, *read, refused):
            assert SECRET not in result.stdout + result.stderr

        # Nothing stored: every row of every table of the study's schema, as text (skiptune's
        # runs, front and statistics; Optuna's studies, trials and their user and system
        # attributes).
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test") as connection:
            tables = [row[0] for row in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,))]
            assert {"skiptune_runs", "study_user_attributes", "trial_user_attributes"} <= set(
                tables)
            rows = 0
            for table in tables:
                for (text,) in connection.execute(f'SELECT t::text FROM "{schema}"."{table}" t'):
                    rows += 1
                    assert SECRET not in text, f"{table}: {text[:200]}"
            assert rows > 20                  # the search did store its trials and records
