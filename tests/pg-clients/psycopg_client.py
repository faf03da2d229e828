"""Coffer's Postgres wire protocol through psycopg 3, as an app would use it.

libpq reads the connection from the environment (PGHOST, PGPORT, PGUSER =
the app's client id, PGPASSWORD = an access token, PGDATABASE = vault). The
token's grant is expected to be
    contacts.people(birthday,display_name,favorite,given_name):read+write
    tasks.lists:read
Asserts as it goes (exit status 1 with the reason on failure) and prints one
JSON line of what it saw.
"""

import datetime
import json

import psycopg

INSERT = "INSERT INTO contacts.people (display_name, given_name, favorite, birthday) VALUES (%s, %s, %s, %s)"
BY_NAME = (
    "SELECT id, display_name, given_name, favorite, birthday, _seq FROM contacts.people WHERE display_name = %s"
)


def refusal(cur, query, params=()):
    """The SQLSTATE `query` fails with (it must fail)."""
    try:
        cur.execute(query, params)
    except psycopg.DatabaseError as e:
        return e.sqlstate
    raise AssertionError(f"{query} was not refused")


def main():
    seen = {"driver": f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__})"}
    # Coffer commits each statement as it runs, so the session says so.
    with psycopg.connect(autocommit=True) as conn, conn.cursor() as cur:
        # A driver probe.
        version = cur.execute("SELECT version()").fetchone()[0]
        assert version.startswith("PostgreSQL 16") and "Coffer" in version, version
        seen["version"] = version

        # Insert with parameters; then the same statement prepared on the
        # server (a named statement) and run again with other values.
        cur.execute(INSERT, ("Grace Hopper", "Grace", True, datetime.date(1906, 12, 9)))
        assert cur.rowcount == 1, cur.rowcount
        cur.execute(INSERT, ("Alan Turing", None, False, datetime.date(1912, 6, 23)), prepare=True)
        cur.execute(INSERT, ("Edsger Dijkstra", "Edsger", False, datetime.date(1930, 5, 11)), prepare=True)
        assert cur.rowcount == 1, cur.rowcount

        # Select with a parameter, prepared, results in text and in binary:
        # the types come back as Python's.
        for binary in (False, True):
            cur.execute(BY_NAME, ("Grace Hopper",), prepare=True, binary=binary)
            rows = cur.fetchall()
            assert len(rows) == 1, rows
            row_id, name, given, favorite, birthday, seq = rows[0]
            assert (name, given, favorite, birthday) == ("Grace Hopper", "Grace", True, datetime.date(1906, 12, 9)), rows
            assert isinstance(row_id, str) and isinstance(seq, int), rows
        seen["types"] = {c.name: type(v).__name__ for c, v in zip(cur.description, rows[0])}

        # Parameters sent in binary (%b): a bool, a date and a small int
        # (psycopg sends it as int2).
        cur.execute(
            "SELECT count(*) FROM contacts.people WHERE favorite = %b AND birthday < %b AND _seq > %s",
            (False, datetime.date(1920, 1, 1), 0),
        )
        assert cur.fetchone() == (1,)
        assert [c.name for c in cur.description] == ["count"], cur.description

        # Update and delete with parameters.
        cur.execute(
            "UPDATE contacts.people SET given_name = %s, birthday = %s WHERE id = %s",
            ("Grace Brewster", datetime.date(1906, 12, 9), row_id),
        )
        assert cur.rowcount == 1, cur.rowcount
        cur.execute("DELETE FROM contacts.people WHERE display_name = %s AND favorite = %s", ("Alan Turing", False))
        assert cur.rowcount == 1, cur.rowcount

        # COPY in (one atomic insert) and out.
        with cur.copy("COPY contacts.people (display_name) FROM STDIN") as copy:
            for name in ("Barbara Liskov", "Frances Allen", "Margaret Hamilton"):
                copy.write_row((name,))
        assert cur.rowcount == 3, cur.rowcount
        query = "COPY (SELECT display_name, given_name, favorite FROM contacts.people ORDER BY display_name) TO STDOUT"
        with cur.copy(query) as copy:
            copied = list(copy.rows())
        assert copied == [
            ("Barbara Liskov", None, None),
            ("Edsger Dijkstra", "Edsger", "f"),
            ("Frances Allen", None, None),
            ("Grace Hopper", "Grace Brewster", "t"),
            ("Margaret Hamilton", None, None),
        ], copied
        seen["copied"] = len(copied)

        # What the grant leaves out does not exist, or is a missing right.
        seen["refused"] = {
            "table": refusal(cur, "SELECT name FROM contacts.groups WHERE name = %s", ("Family",)),
            "column": refusal(cur, "SELECT email FROM contacts.people WHERE id = %s", (row_id,)),
            "right": refusal(cur, "INSERT INTO tasks.lists (name) VALUES (%s)", ("Groceries",)),
        }
        assert seen["refused"] == {"table": "42P01", "column": "42703", "right": "42501"}, seen["refused"]
        # The session goes on after a refusal.
        left = cur.execute("SELECT count(*) FROM contacts.people").fetchone()
        assert left == (5,), left
        seen["id"] = row_id
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
