"""Run the Grafana panels' SQL on a current ClickHouse (chdb-core, in-process).

Usage: chdb_panels.py SQL_DIR DUMP_DIR QUERIES_JSON
  SQL_DIR       the migrations (sql/*.sql), run in order as portwatch migrate runs
                them (statements end with a line ending in ';')
  DUMP_DIR      one TABLE.tsv per table, dumped from the test's ClickHouse 18.16
  QUERIES_JSON  [{"id": ..., "sql": ...}], macros already expanded

Prints one JSON object: {id: {"columns": [...], "rows": N} or {"error": "..."}}.
"""
import json
import os
import sys
import tempfile

from chdb import session

sql_dir, dump_dir, queries_path = sys.argv[1:4]
s = session.Session(tempfile.mkdtemp(prefix="chdb-"))
s.query("CREATE DATABASE IF NOT EXISTS portwatch")
s.query("USE portwatch")


def statements(text):
    out, cur = [], []
    for line in text.splitlines():
        if line.strip().startswith("--") and not cur:
            continue
        cur.append(line)
        if line.rstrip().endswith(";"):
            out.append("\n".join(cur).rstrip().rstrip(";"))
            cur = []
    return [x for x in out if x.strip()]


for name in sorted(f for f in os.listdir(sql_dir) if f.endswith(".sql")):
    for stmt in statements(open(os.path.join(sql_dir, name)).read()):
        s.query(stmt)

for name in sorted(os.listdir(dump_dir)):
    table = name[: -len(".tsv")]
    path = os.path.join(dump_dir, name)
    if os.path.getsize(path) > 0:
        s.query(f"INSERT INTO portwatch.{table} FROM INFILE '{path}' FORMAT TabSeparated")

results = {}
for q in json.load(open(queries_path)):
    try:
        answer = json.loads(str(s.query(q["sql"], "JSON")))
        results[q["id"]] = {
            "columns": [m["name"] for m in answer["meta"]],
            "rows": len(answer["data"]),
        }
    except Exception as e:  # the SQL this ClickHouse refuses: reported, not raised
        results[q["id"]] = {"error": str(e)[:2000]}
print(json.dumps(results))
